"""Concurrency and rate-limit sweeps: one bounded run per level against one target, the figures of each level
(latency percentiles, success, 429 share, throughput, all with intervals) and the knee where throughput stops
rising or 429s begin. See ``docs/sweep.md``."""

from harness.sweep.execute import SweepPlan, base_options, level_options, load_spec, run_sweep, summarize
from harness.sweep.results import Knee, SweepLevel, SweepSummary, find_knee, sweep_levels
from harness.sweep.spec import SweepSpec, parse_label, parse_levels

__all__ = [
    "Knee",
    "SweepLevel",
    "SweepPlan",
    "SweepSpec",
    "SweepSummary",
    "base_options",
    "find_knee",
    "level_options",
    "load_spec",
    "parse_label",
    "parse_levels",
    "run_sweep",
    "summarize",
    "sweep_levels",
]
