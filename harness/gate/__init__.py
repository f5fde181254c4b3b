"""The regression gate behind ``harness compare``: gate file, selectors, checks, Markdown and JUnit output."""

from harness.gate.config import GateConfig, Threshold, load_gate
from harness.gate.evaluate import CheckResult, Comparison, Side, compare
from harness.gate.selectors import Selector, parse_selector

__all__ = ["CheckResult", "Comparison", "GateConfig", "Selector", "Side", "Threshold", "compare", "load_gate",
           "parse_selector"]
