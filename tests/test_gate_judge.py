"""The gate's judge check: the candidate's win share in a vision-model judge's verdicts between the two
sides' outputs, counted only when a judge is named and, with ``min_agreement``, only where voters trust it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.gate import compare, load_gate
from harness.gate.config import GateConfig, Threshold
from harness.gate.evaluate import Comparison, Side
from harness.gate.trust import judge_signal
from harness.judge.ask import JudgeOptions
from harness.judge.report import final_verdicts
from harness.sandbox.profiles import DEFAULT_PROFILES
from harness.store import Store
from tests.test_compare import attempts_from_profile
from tests.test_judge import GOOD_JUDGE, ask, sandbox_run  # noqa: F401 (fixture)

JUDGE = "openai/gpt-4o@openrouter"
TARGET = ("gpt-image-1@openai",)


def sides() -> tuple[Side, Side]:
    rng = random.Random(11)
    profile = DEFAULT_PROFILES["openai"]
    a = attempts_from_profile(rng, profile, 48, targets=TARGET, run="base")
    b = attempts_from_profile(rng, profile, 48, targets=TARGET, run="cand")
    b["id"] += 10_000
    return Side("base", a), Side("cand", b)


def verdicts(a: Side, b: Side, p_candidate: float, seed: int = 3, tie_rate: float = 0.1) -> pd.DataFrame:
    """The judge asked about every successful baseline output against the candidate's output of the same
    sample, in both orders; it prefers the candidate with probability ``p_candidate``."""
    rng = np.random.default_rng(seed)
    ok_a, ok_b = a.attempts[a.attempts["ok"] == 1], b.attempts[b.attempts["ok"] == 1].set_index("sample")
    rows = []
    for row in ok_a.itertuples():
        if row.sample not in ok_b.index:
            continue
        cand = int(ok_b.loc[row.sample, "id"])
        for first, second in ((int(row.id), cand), (cand, int(row.id))):
            draw = rng.random()
            winner = "tie" if draw < tie_rate else "cand" if rng.random() < p_candidate else "base"
            verdict = "tie" if winner == "tie" else "first" if (winner == "cand") == (first == cand) else "second"
            rows.append({"first_attempt_id": first, "second_attempt_id": second, "verdict": verdict,
                         "challenge_id": row.challenge_id})
    return pd.DataFrame(rows)


def judge_check(result: Comparison) -> tuple[str, str, int, float | None]:
    (check,) = [c for c in result.checks if c.check == "judge"]
    return check.status, check.reason, check.n_a, check.candidate


GATE = GateConfig(resamples=500, judge=JUDGE)


def test_a_candidate_the_judge_clearly_prefers_less_is_a_regression_counted_among_the_tests() -> None:
    a, b = sides()
    result = compare(a, b, GATE, verdicts=verdicts(a, b, 0.2))
    status, reason, _, share = judge_check(result)
    assert status == "regression" and share is not None and share < 0.35 and "image pairs" in reason
    without = compare(a, b, GateConfig(resamples=500))
    assert not [c for c in without.checks if c.check == "judge"], "no judge named, no judge check"
    assert result.tests == without.tests + 1, "the judge takes its share of alpha (Bonferroni)"


def test_an_equally_good_candidate_passes_and_both_orders_of_a_pair_count_once() -> None:
    a, b = sides()
    asked = verdicts(a, b, 0.5)
    status, _, n, share = judge_check(compare(a, b, GATE, verdicts=asked))
    assert status == "ok" and share is not None and 0.35 < share < 0.65
    assert n == len(asked) // 2, "one unit per pair of images, however many orders were asked"
    assert judge_check(compare(a, b, GATE, verdicts=verdicts(a, b, 0.9)))[0] == "improved"


def test_a_tolerance_lets_a_slightly_worse_candidate_pass() -> None:
    a, b = sides()
    slightly = verdicts(a, b, 0.4, seed=8)
    strict = compare(a, b, GATE, verdicts=slightly)
    lenient = compare(a, b, GATE.model_copy(update={"checks": {**GATE.checks, "judge": Threshold(max_decrease=0.3)}}),
                      verdicts=slightly)
    share = judge_check(lenient)[3]
    assert judge_check(lenient)[0] == "ok" and share is not None and share < 0.5, "worse, but within 30 points"
    assert judge_check(strict)[2] == judge_check(lenient)[2]


def test_an_untrusted_judge_is_skipped_with_the_reason_and_takes_no_share_of_alpha() -> None:
    a, b = sides()
    worse = verdicts(a, b, 0.2)
    config = GATE.model_copy(update={"min_agreement": 0.6})
    trusted = compare(a, b, config, {judge_signal(JUDGE): None}, worse)
    distrusted = compare(a, b, config, {judge_signal(JUDGE): "voters agree with it 48% [41%–55%] of the time"},
                         worse)
    unmeasured = compare(a, b, config, {}, worse)
    assert judge_check(trusted)[0] == "regression"
    for result in (distrusted, unmeasured):
        status, reason, _, share = judge_check(result)
        assert status == "skipped" and reason.startswith("not used: ") and share is None and not result.regressed
        assert result.tests == trusted.tests - 1
    assert "no votes on these runs measure judge:openai/gpt-4o@openrouter" in judge_check(unmeasured)[1]


def test_without_stored_verdicts_the_check_is_skipped_and_says_how_to_get_them() -> None:
    a, b = sides()
    status, reason, n, _ = judge_check(compare(a, b, GATE, verdicts=None))
    assert status == "skipped" and n == 0 and f"harness judge RUN --judge {JUDGE}" in reason
    unrelated = verdicts(a, b, 0.2).assign(first_attempt_id=-1)
    assert judge_check(compare(a, b, GATE, verdicts=unrelated))[0] == "skipped"


def test_the_gate_file_names_the_judge_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text(f"judge: {JUDGE}\nchecks:\n  judge: {{max_decrease: 0.05}}\n", encoding="utf-8")
    gate = load_gate(path)
    assert gate.judge == JUDGE and gate.active()["judge"].max_decrease == 0.05
    assert "judge" not in GateConfig().active()
    path.write_text("judge: gpt-4o\n", encoding="utf-8")
    with pytest.raises(Exception, match="MODEL@PROVIDER"):
        load_gate(path)
    path.write_text(f"judge: {JUDGE}\nchecks:\n  judge: {{max_increase: 0.05}}\n", encoding="utf-8")
    with pytest.raises(Exception, match=r"checks\.judge: takes max_decrease"):
        load_gate(path)


def test_compare_judge_gates_two_targets_of_a_judged_sandbox_run(sandbox_run: tuple[Path, str]) -> None:  # noqa: F811
    db, run_id = sandbox_run
    ask(db, run_id, options=JudgeOptions(pairs=40))
    base, cand = "target=gemini-3-pro-image-preview@google", "target=flux-dev@fal"
    with Store.open(db, readonly=True) as store:
        asked = final_verdicts(store, [run_id], GOOD_JUDGE.spec)
    between = asked[asked[["first_target", "second_target"]].apply(
        lambda r: {r.iloc[0], r.iloc[1]} == {"gemini-3-pro-image-preview@google", "flux-dev@fal"}, axis=1)]
    pairs = {frozenset(p) for p in zip(between["first_sha"], between["second_sha"], strict=True)}
    runner = CliRunner()
    args = ["compare", run_id, "--a", base, "--b", cand, "--judge", GOOD_JUDGE.spec, "--db", str(db), "--json"]
    result = runner.invoke(cli, args)
    assert result.exit_code in (0, 1), result.output
    data = json.loads(result.stdout)
    (check,) = [c for c in data["checks"] if c["check"] == "judge"]
    assert check["status"] != "skipped" and check["n_a"] == len(pairs) > 0 and check["test"] == "Wilson"
    assert data["regressed"] == (result.exit_code == 1)
    gated = runner.invoke(cli, [*args, "--min-agreement", "0.6"])
    (check,) = [c for c in json.loads(gated.stdout)["checks"] if c["check"] == "judge"]
    assert check["status"] == "skipped" and check["reason"].startswith("not used: "), "no human votes: not trusted"
    markdown = runner.invoke(cli, args[:-1])
    assert f"judge: the candidate's win share in {GOOD_JUDGE.spec}'s verdicts" in markdown.output


def test_a_judge_asked_across_two_runs_feeds_the_gate_of_those_runs(sandbox_run: tuple[Path, str],  # noqa: F811
                                                                   tmp_path: Path) -> None:
    from harness.challenges import load
    from harness.run import RunOptions, start_run
    from harness.targets import load_targets, resolve_keys, select
    from tests.test_judge import write_suite

    db, base_id = sandbox_run
    chosen = select(load_targets(), ["gpt-image-1@openai", "flux-dev@fal"])
    cand = start_run(db, load(write_suite(tmp_path)), chosen, resolve_keys(chosen, sandbox=True),
                     RunOptions(sandbox=True, time_scale=0.01, samples=2, sandbox_faults=False,
                                respect_limits=False)).run_id
    runner = CliRunner()
    judge = "openai/gpt-4o@openrouter"  # never rambles: every pair asked gets a verdict
    asked = runner.invoke(cli, ["judge", cand, "--against", base_id, "--judge", judge, "--pairs", "20", "--db",
                                str(db), "--json"])
    assert asked.exit_code == 0, asked.output
    summary = json.loads(asked.stdout)
    assert summary["questions"] > 0 and summary["questions"] % 2 == 0
    with Store.open(db, readonly=True) as store:
        rows = final_verdicts(store, [base_id, cand], judge)
    assert (rows["run_id"] == cand).all() and (rows["first_target"] == rows["second_target"]).all()
    result = runner.invoke(cli, ["compare", base_id, cand, "--judge", judge, "--db", str(db), "--json"])
    assert result.exit_code in (0, 1), result.output
    checks = [c for c in json.loads(result.stdout)["checks"] if c["check"] == "judge"]
    assert {c["pair"] for c in checks} == {"gpt-image-1@openai", "flux-dev@fal"}
    assert sum(c["n_a"] for c in checks) == summary["questions"] // 2, "every pair asked is one unit of the gate"
    same = runner.invoke(cli, ["judge", cand, "--against", cand, "--judge", judge, "--db", str(db)])
    assert same.exit_code == 2 and "--against names the judged run itself" in same.output
