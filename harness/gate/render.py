"""A comparison as Markdown (for people and CI job summaries) and JUnit XML (for CI test reports)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.gate.evaluate import IMPROVED, REGRESSION, SKIPPED, CheckResult, Comparison
from harness.stats.goodput import format_slo

VERDICT = {REGRESSION: "**REGRESSION**", IMPROVED: "improved", "ok": "ok", SKIPPED: "skipped"}


def _value(c: CheckResult, v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    if c.unit == "ms":
        return f"{v:,.0f} ms"
    if c.unit == "rate":
        return f"{100 * v:.1f} %"
    return f"{v:.4g}"


def _change(c: CheckResult) -> str:
    if c.change is None or not math.isfinite(c.change):
        return "—"
    scale, unit = (100, " pts") if c.change_kind == "points" else (100, " %")
    text = f"{scale * c.change:+.1f}{unit}"
    if c.change_low is not None and c.change_high is not None and math.isfinite(c.change_low):
        text += f" ({scale * c.change_low:+.1f} to {scale * c.change_high:+.1f})"
    return text


def _threshold(c: CheckResult) -> str:
    sign = "+" if c.worse == "up" else "−"
    unit = " pts" if c.change_kind == "points" else " %"
    return f"{sign}{100 * c.threshold:g}{unit}"


def _p(c: CheckResult) -> str:
    if c.p_value is None or not math.isfinite(c.p_value):
        return "—"
    return f"{c.p_value:.3g}"


def markdown(result: Comparison) -> str:
    """A self-contained Markdown summary: verdict, method, one table row per check, notes."""
    regressions = result.regressions
    head = (f"REGRESSION: {len(regressions)} of {len(result.checks)} checks" if regressions
            else "no regression")
    lines = [
        f"## harness compare: {head}", "",
        f"- baseline: {result.baseline}", f"- candidate: {result.candidate}",
        f"- gate: false-alarm level α = {result.gate.alpha:g} per comparison, Bonferroni over {result.tests} "
        f"evaluated check(s) (one-sided {result.per_check_alpha:.3g} each); latency and score intervals from "
        f"{result.gate.resamples} percentile-bootstrap resamples (seed {result.gate.seed}), success from Newcombe; "
        "changes shown with 95 % intervals"
        + (f"; goodput: share of requests that succeeded within {format_slo(result.gate.slo_ms)} of "
           f"{result.gate.slo_measure.replace('_', ' ')}" if result.gate.slo_ms is not None else "")
        + (f"; judge: the candidate's win share in {result.gate.judge}'s verdicts (ties half), Wilson"
           if result.gate.judge is not None else ""), "",
        "| pair | check | baseline | candidate | change (95 % CI) | allowed | test p | n (A/B) | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result.checks:
        test = f"{c.test} {_p(c)}" if c.test and c.p_value is not None else (c.test or "—")
        lines.append(f"| {c.pair} | {c.check} | {_value(c, c.baseline)} | {_value(c, c.candidate)} | {_change(c)} "
                     f"| {_threshold(c)} | {test} | {c.n_a}/{c.n_b} | {VERDICT.get(c.status, c.status)} |")
    details = [c for c in result.checks if c.status in (REGRESSION, SKIPPED)]
    if details or result.notes:
        lines.append("")
    for c in details:
        lines.append(f"- {c.pair} {c.check} ({c.status}): {c.reason}")
    for note in result.notes:
        lines.append(f"- note: {note}")
    return "\n".join(lines) + "\n"


def junit(result: Comparison) -> ET.ElementTree[ET.Element]:
    """JUnit XML: one test case per check; regressions are failures, skipped checks are skipped."""
    failures = len(result.regressions)
    skipped = sum(1 for c in result.checks if c.status == SKIPPED)
    counts = {"tests": str(len(result.checks)), "failures": str(failures), "errors": "0", "skipped": str(skipped)}
    root = ET.Element("testsuites", {"name": "harness compare", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": f"{result.baseline} vs {result.candidate}", "time": "0",
                                              **counts})
    for c in result.checks:
        case = ET.SubElement(suite, "testcase", classname=f"harness.compare.{c.pair}", name=c.check, time="0")
        summary = (f"{c.check} {_value(c, c.baseline)} -> {_value(c, c.candidate)}, change {_change(c)}, "
                   f"allowed {_threshold(c)}")
        if c.status == REGRESSION:
            failure = ET.SubElement(case, "failure", message=summary, type="regression")
            failure.text = c.reason
        elif c.status == SKIPPED:
            ET.SubElement(case, "skipped", message=c.reason)
        else:
            out = ET.SubElement(case, "system-out")
            out.text = f"{c.status}: {summary}; {c.reason}"
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(result: Comparison, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    junit(result).write(path, encoding="utf-8", xml_declaration=True)
