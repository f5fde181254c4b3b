"""The gate uses a quality metric only where the voters agree with it (``min_agreement``)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.gate import compare
from harness.gate.config import GateConfig
from harness.gate.evaluate import Side
from harness.gate.trust import distrust_reasons, signal_name
from harness.quality.agreement import agreement
from harness.sandbox.profiles import DEFAULT_PROFILES
from tests.test_agreement import flipping_signal, synthetic_votes
from tests.test_compare import attempts_from_profile, scores_for

SCORER = "ViT-B-32-quickgelu/openai"
SIGNAL = signal_name("clip_t", SCORER)


def report_with(p_agree: float, n: int) -> dict[str, object]:
    votes = synthetic_votes(n, seed=3)
    signal = flipping_signal(votes, p_agree, seed=4)
    renamed = type(signal)(name=SIGNAL, family=signal.family, prefer=signal.prefer)
    return agreement(votes, [renamed])


def test_a_metric_the_voters_agree_with_is_trusted_and_one_they_do_not_is_named_with_its_share() -> None:
    assert distrust_reasons(report_with(0.9, 400), 0.6) == {SIGNAL: None}
    (reason,) = distrust_reasons(report_with(0.5, 400), 0.6).values()
    assert reason is not None and "below the gate's 60%" in reason and "%" in reason.split("agree with it")[1]


def test_a_metric_with_too_few_overlapping_votes_is_not_used_and_says_why() -> None:
    (reason,) = distrust_reasons(report_with(0.9, 10), 0.6).values()
    assert reason is not None and "not measured" in reason and "at least 30 needed" in reason


def sides(shift: float) -> tuple[Side, Side]:
    rng, nrng = random.Random(5), np.random.default_rng(5)
    profile = DEFAULT_PROFILES["openai"]
    a, b = attempts_from_profile(rng, profile, 40), attempts_from_profile(rng, profile, 40)
    return Side("a", a, scores_for(a, nrng, 0.0)), Side("b", b, scores_for(b, nrng, shift))


def test_an_untrusted_metric_can_neither_fail_a_template_nor_count_among_the_tests() -> None:
    base, worse = sides(-0.05)
    config = GateConfig(resamples=500, min_agreement=0.6)
    used = compare(base, worse, config, {SIGNAL: None})
    unused = compare(base, worse, config, {SIGNAL: "voters agree with it 50% [45%–55%] of the time"})
    unmeasured = compare(base, worse, config, {})
    assert used.regressed and any(c.check == "score:clip_t" and c.status == "regression" for c in used.checks)
    for result in (unused, unmeasured):
        clip = [c for c in result.checks if c.check == "score:clip_t"]
        assert clip and all(c.status == "skipped" and (c.reason or "").startswith("not used: ") for c in clip)
        assert result.tests == used.tests - len(clip), "a metric not used takes no share of alpha"
    assert "no votes on these runs measure clip:" in (unmeasured.checks[-1].reason or "")


def test_min_agreement_is_a_share_between_zero_and_one_in_the_gate_file_and_on_the_command_line() -> None:
    with pytest.raises(ValueError, match="min_agreement"):
        GateConfig(min_agreement=1.5)
    result = CliRunner().invoke(cli, ["compare", "r1", "r2", "--min-agreement", "71"])
    assert result.exit_code == 2 and "--min-agreement" in result.output


def test_on_a_voted_sandbox_run_only_human_votes_count_unless_asked(
        judged_run: tuple[Path, str, object]) -> None:
    """The simulated panel's votes are not people's: by default they measure nothing for the gate; asked to
    count every vote (a sandbox demonstration), the pixel reading the panel looks at is trusted at 55 %."""
    from harness.gate.trust import metric_trust
    from harness.store import Store

    db, run_id, _ = judged_run
    with Store.open(db, readonly=True) as store:
        human = metric_trust(store, [run_id], 0.55)
        everyone = metric_trust(store, [run_id], 0.55, sources=None)
    assert human and all(reason is not None and "not measured" in reason for reason in human.values())
    assert everyone["reading:sandbox"] is None
    assert set(everyone) == set(human)
