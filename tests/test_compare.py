"""The regression gate: gate files, selectors, paired scores, reports, and its measured false-alarm rate."""

from __future__ import annotations

import random
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from harness.errors import ConfigError
from harness.gate import GateConfig, Side, Threshold, compare, load_gate, parse_selector
from harness.gate.render import junit, markdown
from harness.gate.sides import read_scores
from harness.sandbox.profiles import DEFAULT_PROFILES, ProviderProfile

TARGETS = ("gpt-image-1@openai", "gpt-image-1.5@openai")


def attempts_from_profile(rng: random.Random, profile: ProviderProfile, n: int, *, slowdown: float = 1.0,
                          targets: tuple[str, ...] = TARGETS, run: str = "run") -> pd.DataFrame:
    """What a sandbox run of ``profile`` records: per target ``n`` requests, latencies drawn from the profile's
    lognormal (scaled by the model's speed), failures at the profile's fault rate, at the timeout's mercy."""
    rows: list[dict[str, Any]] = []
    for target in targets:
        speed = profile.speed(target.split("@")[0]) * slowdown
        for i in range(n):
            fails = rng.random() < profile.failure_rate
            latency = profile.latency.sample(rng) * 1000.0 * speed
            rows.append({
                "id": len(rows), "run_id": run, "challenge_id": f"c{i % 8}", "variant": "default", "target": target,
                "sample": i, "attempt": 1, "final": 1, "model": target.split("@")[0], "provider": "openai",
                "ok": int(not fails), "error_kind": "server_error" if fails else None,
                "latency_ms": 200.0 if fails else latency, "ttfb_ms": None if fails else 0.45 * latency,
                "n_images": 0 if fails else 1, "cost_usd": 0.0 if fails else 0.042, "billed": int(not fails),
                "started_at": 0.0, "sched_ms": 0.0, "start_ms": 0.0,
            })
    return pd.DataFrame(rows)


ZERO_THRESHOLDS = GateConfig(resamples=1000, checks={
    "latency_p50": Threshold(max_increase=0.0), "latency_p95": Threshold(max_increase=0.0),
    "success_rate": Threshold(max_decrease=0.0), "scores": None,
})
"""The gate's pure statistical test: any supported worsening counts, however small."""


def alarms(config: GateConfig, n: int, repetitions: int, seed: int) -> tuple[float, float, int]:
    """Compare two independent draws of the same profile ``repetitions`` times with the zero-threshold gate.

    Returns the false-alarm rates of the pure test and of the default gate, and the checks per comparison.
    Both gates see the same data and the same bootstrap (same seed, same number of checks), and the default
    gate is the pure test plus its thresholds, so one pass measures both.
    """
    rng = random.Random(seed)
    profile = DEFAULT_PROFILES["openai"]
    defaults = GateConfig().active()
    pure = default = tests = 0
    for _ in range(repetitions):
        result = compare(Side("a", attempts_from_profile(rng, profile, n)),
                         Side("b", attempts_from_profile(rng, profile, n)), config)
        tests = result.tests
        flagged = [c for c in result.regressions if c.change is not None]
        pure += bool(flagged)
        default += any(abs(c.change or 0.0) > (defaults[c.check].max_increase or defaults[c.check].max_decrease or 0)
                       for c in flagged if c.check in defaults)
    return pure / repetitions, default / repetitions, tests


@pytest.mark.slow
def test_false_alarm_rate_on_the_same_profile_stays_below_alpha() -> None:
    """Two runs of the sandbox's openai profile (20 s median, 45 s p95, 3 % faults), 80 requests per target
    and both targets: 6 checks (p50, p95, success x 2) per comparison, 600 repetitions, alpha 0.05."""
    pure_rate, default_rate, tests = alarms(ZERO_THRESHOLDS, n=80, repetitions=600, seed=1)
    assert tests == 6
    # 600 repetitions give a standard error of about 0.9 points at a true rate of 5 %
    assert pure_rate <= 0.05
    assert default_rate <= pure_rate
    print(f"\nfalse-alarm rate over 600 repetitions: zero thresholds {pure_rate:.4f}, default gate {default_rate:.4f}")


def test_the_gate_catches_a_doubled_latency_drawn_from_the_same_profile() -> None:
    rng = random.Random(3)
    profile = DEFAULT_PROFILES["openai"]
    caught = sum(compare(Side("a", attempts_from_profile(rng, profile, 40)),
                         Side("b", attempts_from_profile(rng, profile, 40, slowdown=2.0)),
                         GateConfig(resamples=500)).regressed for _ in range(20))
    assert caught >= 18


def test_bonferroni_splits_alpha_over_the_checks_evaluated() -> None:
    rng = random.Random(4)
    profile = DEFAULT_PROFILES["openai"]
    result = compare(Side("a", attempts_from_profile(rng, profile, 30)),
                     Side("b", attempts_from_profile(rng, profile, 30)), GateConfig(resamples=300))
    statuses = {(c.pair, c.check): c.status for c in result.checks}
    assert {s for (_, check), s in statuses.items() if check == "latency_p95"} == {"skipped"}
    assert result.tests == 4 and result.per_check_alpha == pytest.approx(0.05 / 4)
    assert result.to_dict()["bootstrap"] == "percentile"


def test_a_gate_file_merges_with_the_defaults_and_can_switch_checks_off(tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text("alpha: 0.01\nseed: 9\nchecks:\n  latency_p95: {max_increase: 0.25}\n  latency_p50: null\n"
                    "  ttfb_p50: {max_increase: 0.5}\n  score:clip_t: {max_decrease: 0.05}\n", encoding="utf-8")
    gate = load_gate(path)
    assert gate.alpha == 0.01 and gate.seed == 9 and gate.resamples == 2000
    active = gate.active()
    assert "latency_p50" not in active
    assert active["latency_p95"].max_increase == 0.25 and active["success_rate"].max_decrease == 0.03
    assert gate.score_threshold("clip_t") == Threshold(max_decrease=0.05)
    assert gate.score_threshold("aesthetic") == Threshold(max_decrease=0.02)
    assert load_gate(None) == GateConfig()


def test_goodput_is_checked_only_with_an_objective_given_in_the_gate_file_or_as_an_option(tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text("slo: 2.5s\nslo_measure: latency\nchecks:\n  goodput: {max_decrease: 0.05}\n", encoding="utf-8")
    gate = load_gate(path)
    assert gate.slo_ms == 2500.0 and gate.slo_measure == "latency"
    assert gate.active()["goodput"] == Threshold(max_decrease=0.05)
    assert "goodput" not in GateConfig().active(), "no objective, no goodput check"
    assert GateConfig(slo_ms=800.0).active()["goodput"] == Threshold(max_decrease=0.03)


def test_goodput_passes_on_the_same_profile_and_regresses_when_latency_doubles() -> None:
    rng = random.Random(5)
    profile = DEFAULT_PROFILES["openai"]
    gate = GateConfig(resamples=300, slo_ms=25_000.0, slo_measure="latency")
    base = attempts_from_profile(rng, profile, 80)
    same = compare(Side("a", base), Side("b", attempts_from_profile(rng, profile, 80)), gate)
    slow = compare(Side("a", base), Side("b", attempts_from_profile(rng, profile, 80, slowdown=2.0)), gate)
    good_same = [c for c in same.checks if c.check == "goodput"]
    good_slow = [c for c in slow.checks if c.check == "goodput"]
    assert len(good_same) == len(good_slow) == len(TARGETS)
    assert {c.status for c in good_same} <= {"ok", "improved"}
    assert {c.status for c in good_slow} == {"regression"}
    assert all(c.change is not None and c.change < -0.03 and c.bound is not None and c.bound < 0 and
               c.test == "Newcombe" and "within 25 s" in c.reason for c in good_slow)
    assert same.to_dict()["slo_ms"] == 25_000.0 and same.tests == 2 * len(TARGETS) + len(TARGETS) + \
        sum(c.status != "skipped" for c in same.checks if c.check == "latency_p95")
    text = markdown(slow)
    assert "| goodput |" in text and "within 25 s of latency" in text


def test_goodput_without_the_measured_time_is_skipped_with_the_reason() -> None:
    rng = random.Random(6)
    profile = DEFAULT_PROFILES["openai"]
    result = compare(Side("a", attempts_from_profile(rng, profile, 20)), Side("b", attempts_from_profile(rng, profile, 20)),
                     GateConfig(resamples=300, slo_ms=25_000.0))
    skipped = [c for c in result.checks if c.check == "goodput"]
    assert skipped and all(c.status == "skipped" and "no recorded time to image" in c.reason for c in skipped)


@pytest.mark.parametrize(("text", "message"), [
    ("slo: 10\n", "not a duration"),
    ("checks:\n  goodput: {max_increase: 0.1}\n", "checks.goodput: takes max_decrease"),
    ("checks:\n  latency_p42: {max_increase: 0.1}\n", "unknown check 'latency_p42'"),
    ("checks:\n  success_rate: {max_increase: 0.1}\n", "checks.success_rate: takes max_decrease"),
    ("checks:\n  latency_p95: {max_decrease: 0.1}\n", "latency checks take max_increase"),
    ("checks:\n  success_rate: {max_decrease: 3}\n", "less than or equal to 1"),
    ("alpha: 0.7\n", "alpha"),
    ("colour: red\n", "colour"),
    ("checks: [1, 2]\n", "checks must map"),
    ("alpha: [\n", "not valid YAML"),
])
def test_a_bad_gate_file_is_a_clear_error_naming_the_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_gate(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_selectors_filter_by_glob_and_name_their_run() -> None:
    sel = parse_selector("run=R1, target=gpt-image-1*, variant=terse", "--a")
    assert sel.run == "R1" and sel.filters == (("target", "gpt-image-1*"), ("variant", "terse"))
    frame = pd.DataFrame({"target": ["gpt-image-1@openai", "gpt-image-1.5@openai", "flux@fal"],
                          "variant": ["terse", "terse", "terse"]})
    assert list(sel.apply(frame)["target"]) == ["gpt-image-1@openai", "gpt-image-1.5@openai"]
    with pytest.raises(ConfigError, match="'target' is not key=value"):
        parse_selector("target", "--b")


def scores_for(side: pd.DataFrame, rng: np.random.Generator, shift: float) -> pd.DataFrame:
    """CLIP-like scores per successful attempt: a per-challenge difficulty plus noise, moved by ``shift``."""
    ok = side[side["ok"] == 1]
    difficulty = {f"c{i}": 0.24 + 0.01 * i for i in range(8)}
    return pd.DataFrame({
        "attempt_id": ok["id"].to_numpy(), "run_id": ok["run_id"].to_numpy(),
        "challenge_id": ok["challenge_id"].to_numpy(), "variant": ok["variant"].to_numpy(),
        "target": ok["target"].to_numpy(), "model": ok["model"].to_numpy(), "metric": "clip_t",
        "value": [difficulty[c] * (1 + shift) + rng.normal(0, 0.002) for c in ok["challenge_id"]],
        "scorer": "ViT-B-32-quickgelu/openai",
    })


def test_clip_scores_are_compared_paired_by_challenge() -> None:
    rng = random.Random(5)
    nrng = np.random.default_rng(5)
    profile = DEFAULT_PROFILES["openai"]
    a, b = attempts_from_profile(rng, profile, 40), attempts_from_profile(rng, profile, 40)
    base = Side("a", a, scores_for(a, nrng, 0.0))
    worse = compare(base, Side("b", b, scores_for(b, nrng, -0.05)), GateConfig(resamples=1000))
    same = compare(base, Side("b", b, scores_for(b, nrng, 0.0)), GateConfig(resamples=1000))
    clip = {c.pair: c for c in worse.checks if c.check == "score:clip_t"}
    assert set(clip) == set(TARGETS)
    for check in clip.values():
        assert check.status == "regression" and check.n_a == 8 and check.test == "Wilcoxon signed-rank"
        assert check.change == pytest.approx(-0.05, abs=0.01) and check.bound is not None and check.bound < 0
    assert all(c.status != "regression" for c in same.checks if c.check == "score:clip_t")


def test_a_lower_is_better_score_regresses_when_it_rises_and_scorers_are_never_pooled() -> None:
    rng = random.Random(9)
    nrng = np.random.default_rng(9)
    profile = DEFAULT_PROFILES["openai"]
    a, b = attempts_from_profile(rng, profile, 40), attempts_from_profile(rng, profile, 40)

    def scored(side: pd.DataFrame, shift: float) -> pd.DataFrame:
        clip = scores_for(side, nrng, shift)
        distance = clip.assign(metric="distance", higher_is_better=False)
        other = clip.assign(scorer="ViT-L-14/openai", value=clip["value"] * 10)
        return pd.concat([clip.assign(higher_is_better=True), distance, other.assign(higher_is_better=True)])

    result = compare(Side("a", a, scored(a, 0.0)), Side("b", b, scored(b, 0.05)), GateConfig(resamples=1000))
    checks = {(c.pair, c.check): c for c in result.checks if c.check.startswith("score:")}
    names = {check for _, check in checks}
    assert names == {"score:clip_t [ViT-B-32-quickgelu/openai]", "score:clip_t [ViT-L-14/openai]",
                     "score:distance [ViT-B-32-quickgelu/openai]"}
    for (_, check), c in checks.items():
        expected = "regression" if check.startswith("score:distance") else "improved"
        assert c.status == expected, (check, c)
    text = markdown(result)
    assert "| +2 % |" in text and "| −2 % |" in text


def test_scores_are_absent_without_data_and_skipped_with_too_few_challenges() -> None:
    rng = random.Random(6)
    nrng = np.random.default_rng(6)
    profile = DEFAULT_PROFILES["openai"]
    a, b = attempts_from_profile(rng, profile, 40), attempts_from_profile(rng, profile, 40)
    plain = compare(Side("a", a), Side("b", b), GateConfig(resamples=300))
    assert not [c for c in plain.checks if c.check.startswith("score:")] and not plain.notes
    one_sided = compare(Side("a", a, scores_for(a, nrng, 0.0)), Side("b", b), GateConfig(resamples=300))
    assert any("scores exist on one side only" in note for note in one_sided.notes)
    few_a = a[a["challenge_id"].isin(["c0", "c1", "c2"])]
    few_b = b[b["challenge_id"].isin(["c0", "c1", "c2"])]
    few = compare(Side("a", few_a, scores_for(few_a, nrng, 0.0)), Side("b", few_b, scores_for(few_b, nrng, -0.3)),
                  GateConfig(resamples=300))
    skipped = [c for c in few.checks if c.check == "score:clip_t"]
    assert skipped and all(c.status == "skipped" and "at least 6 challenges" in c.reason for c in skipped)


def test_scores_are_read_from_the_scores_stage_when_it_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = pd.DataFrame({"attempt_id": [1], "run_id": ["r"], "challenge_id": ["c0"], "variant": ["default"],
                          "target": ["t"], "model": ["m"], "metric": ["clip_t"], "value": [0.3], "scorer": ["s"]})
    module = types.ModuleType("harness.store.scores")
    served = {"frame": frame}
    module.__dict__["scores_frame"] = lambda store, run_ids: served["frame"]
    monkeypatch.setitem(sys.modules, "harness.store.scores", module)
    got = read_scores(object(), ["r"])  # type: ignore[arg-type]
    assert got is not None and got.equals(frame)
    served["frame"] = frame.drop(columns=["metric"])
    with pytest.raises(ConfigError, match="lack column"):
        read_scores(type("S", (), {"path": "db"})(), ["r"])
    served["frame"] = frame.iloc[:0]
    assert read_scores(object(), ["r"]) is None, "no scores means the section is absent"  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "harness.store.scores", None)
    assert read_scores(object(), ["r"]) is None, "without the scores stage the section is absent"  # type: ignore[arg-type]


def test_the_real_scores_stage_of_an_unscored_run_gives_no_section(tmp_path: Path) -> None:
    from harness.store import Store

    with Store.open(tmp_path / "harness.db") as store:
        assert read_scores(store, ["no-such-run"]) is None


def test_targets_without_a_partner_are_noted_and_disjoint_sides_are_an_error() -> None:
    rng = random.Random(7)
    profile = DEFAULT_PROFILES["openai"]
    a = attempts_from_profile(rng, profile, 20, targets=(*TARGETS, "flux-dev@fal"))
    b = attempts_from_profile(rng, profile, 20)
    result = compare(Side("a", a), Side("b", b), GateConfig(resamples=300))
    assert "only in baseline: flux-dev@fal" in result.notes
    with pytest.raises(ConfigError, match="none in common"):
        compare(Side("a", attempts_from_profile(rng, profile, 20, targets=("x@p", "y@p"))), Side("b", b))


def test_markdown_and_junit_show_every_check_with_its_verdict() -> None:
    rng = random.Random(8)
    profile = DEFAULT_PROFILES["openai"]
    result = compare(Side("baseline run", attempts_from_profile(rng, profile, 80)),
                     Side("candidate run", attempts_from_profile(rng, profile, 80, slowdown=1.6)),
                     GateConfig(resamples=500))
    text = markdown(result)
    assert text.startswith("## harness compare: REGRESSION")
    assert "| gpt-image-1@openai | latency_p50 |" in text and "**REGRESSION**" in text
    assert "Bonferroni over 6 evaluated check(s)" in text
    root = junit(result).getroot()
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == 6 == int(root.get("tests", "0"))
    assert int(root.get("failures", "0")) == len(result.regressions) == len(root.findall(".//failure"))
    assert ET.tostring(root, encoding="unicode").count("<failure") == len(result.regressions)
