"""Sample-size planning: the planned n really delivers the promised power with the gate's own tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from harness.cli import cli
from harness.errors import ConfigError
from harness.planning import (
    empirical_sampler,
    lognormal_sampler,
    plan_quantile,
    quantile_power,
    quantile_sample_size,
    success_sample_size,
)
from harness.stats.intervals import min_n_for_quantile
from harness.stats.twosample import quantile_shift, rate_shift
from tests.test_compare_sandbox import FLAKY, sandbox_run, write_suite


@pytest.fixture(scope="module")
def flaky_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A real sandbox run whose profile fails half the requests: the store and the run id."""
    root = tmp_path_factory.mktemp("plan")
    profile = root / "flaky.yaml"
    profile.write_text(FLAKY, encoding="utf-8")
    db = root / "harness.db"
    return db, sandbox_run(db, write_suite(root / "suite"), profile, seed=4)


def test_success_sample_size_is_the_two_proportion_formula() -> None:
    p1, p2 = 0.95, 0.92
    za, zb = sps.norm.ppf(0.95), sps.norm.ppf(0.8)
    pbar = (p1 + p2) / 2
    by_hand = ((za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) / 0.03) ** 2
    assert success_sample_size(0.95, 0.03, 0.8, 0.05) == math.ceil(by_hand) == 834


def test_the_planned_success_sample_detects_the_drop_with_the_promised_power() -> None:
    n = success_sample_size(0.95, 0.05, 0.8, 0.05)
    rng = np.random.default_rng(1)
    trials = 2000
    ka, kb = rng.binomial(n, 0.95, trials), rng.binomial(n, 0.90, trials)
    pooled = (ka + kb) / (2 * n)
    z = (ka - kb) / n / np.sqrt(2 * pooled * (1 - pooled) / n)
    assert np.mean(z > sps.norm.ppf(0.95)) == pytest.approx(0.8, abs=0.03)
    newcombe = np.mean([rate_shift(int(a), n, int(b), n).upper_bound(0.05) < 0 for a, b in zip(ka[:400], kb[:400],
                                                                                                  strict=True)])
    assert newcombe == pytest.approx(0.8, abs=0.07), "the gate's Newcombe bound has about the planned power"


@given(st.floats(0.5, 0.999), st.floats(0.005, 0.2), st.floats(0.5, 0.95))
def test_success_sample_size_grows_with_power_and_shrinks_with_the_change(rate: float, change: float,
                                                                         power: float) -> None:
    if change >= rate:
        with pytest.raises(ConfigError):
            success_sample_size(rate, change, power, 0.05)
        return
    n = success_sample_size(rate, change, power, 0.05)
    assert n >= 1
    assert success_sample_size(rate, change, min(power + 0.04, 0.99), 0.05) >= n
    if 2 * change < rate:
        assert success_sample_size(rate, 2 * change, power, 0.05) <= n


def test_planned_median_sample_gives_the_gate_its_promised_power() -> None:
    sampler = lognormal_sampler(0.5)
    n, planned = quantile_sample_size(sampler, 0.5, 0.25, 0.8, 0.05, repetitions=1500, seed=0)
    assert planned >= 0.8 and n >= min_n_for_quantile(0.5)
    rng = np.random.default_rng(2)
    trials = 150
    detected = 0
    for i in range(trials):
        a = sampler(rng, (1, n))[0]
        b = sampler(rng, (1, n))[0] * 1.25
        detected += quantile_shift(a, b, 0.5, resamples=500, seed=i).lower_bound(0.05) > 0
    # 150 trials: standard error about 3.3 points at 80 %
    assert detected / trials == pytest.approx(0.8, abs=0.11)


def test_power_rises_with_the_sample_and_is_independent_of_the_latency_scale() -> None:
    sampler = lognormal_sampler(0.6)
    powers = [quantile_power(sampler, n, 0.95, 0.2, 0.05, repetitions=800, seed=3) for n in (72, 200, 600)]
    assert powers == sorted(powers) and powers[0] < 0.6 < powers[-1]
    values = np.random.default_rng(4).lognormal(0.0, 0.6, size=5000)
    fast, slow = empirical_sampler(values), empirical_sampler(values * 1000)
    assert quantile_power(fast, 100, 0.5, 0.1, 0.05, repetitions=500, seed=5) == \
        quantile_power(slow, 100, 0.5, 0.1, 0.05, repetitions=500, seed=5)


def test_a_small_stored_run_with_a_gap_at_its_median_still_gets_a_finite_plan() -> None:
    """Twenty stored latencies whose two middle values are 40 % apart (the shape that made CI's plan fail):
    plain resampling settles every large sample's median on one of the two, so no size detects a 30 % change;
    the smoothed sampler plans a finite size, and that size does deliver the power under its own model."""
    rng = np.random.default_rng(11)
    stored = np.concatenate([rng.uniform(80, 100, 10), rng.uniform(140, 170, 10)])

    def plain(r: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        return stored[r.integers(0, stored.size, size=shape)]

    with pytest.raises(ConfigError, match="more than 200000 requests"):
        quantile_sample_size(plain, 0.5, 0.3, 0.8, 0.05, repetitions=300)
    n, power = quantile_sample_size(empirical_sampler(stored), 0.5, 0.3, 0.8, 0.05, repetitions=600)
    assert n < 1000 and power >= 0.8
    assert quantile_power(empirical_sampler(stored), n, 0.5, 0.3, 0.05, repetitions=2000, seed=9) >= 0.75


def test_smoothed_draws_keep_the_stored_log_mean_and_spread() -> None:
    stored = np.random.default_rng(12).lognormal(5.0, 0.4, size=20)
    draws = empirical_sampler(stored)(np.random.default_rng(13), (200, 1000))
    logs = np.log(stored)
    assert np.log(draws).mean() == pytest.approx(logs.mean(), abs=0.01)
    assert np.log(draws).std() == pytest.approx(logs.std(ddof=1), rel=0.02)
    assert len(np.unique(draws[:, :50])) == draws[:, :50].size


def test_requests_are_inflated_by_the_failure_rate_and_priced() -> None:
    plan = plan_quantile(0.5, 0.3, 0.8, 0.05, sampler=lognormal_sampler(0.4), success_rate=0.8,
                         price_per_request_usd=0.04, target="t", source="test", repetitions=600)
    assert plan.requests == math.ceil(plan.successes / 0.8)
    assert plan.cost_usd == pytest.approx(plan.requests * 0.04)


def test_plan_command_without_a_run_uses_a_lognormal(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["plan", "--metric", "p95", "--baseline-ms", "8000", "--relative-change",
                                      "0.15", "--cv", "0.5", "--price-usd", "0.04", "--repetitions", "600",
                                      "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    (plan,) = doc["targets"]
    assert plan["successes"] >= 72 and plan["power"] >= 0.8
    assert doc["total_cost_usd"] == pytest.approx(plan["requests"] * 0.04)
    success = CliRunner().invoke(cli, ["plan", "--metric", "success", "--baseline-rate", "0.95", "--change", "0.03",
                                       "--json"])
    assert json.loads(success.output)["targets"][0]["requests"] == 834


def test_plan_command_from_a_stored_run_plans_per_target(flaky_run: tuple[Path, str]) -> None:
    db, run_id = flaky_run
    result = CliRunner().invoke(cli, ["plan", "--from-run", run_id, "--metric", "p50", "--relative-change", "0.3",
                                      "--repetitions", "400", "--json", "--db", str(db)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert {p["target"] for p in doc["targets"]} == {"gpt-image-1@openai", "gpt-image-1.5@openai"}
    for plan in doc["targets"]:
        assert plan["success_rate"] < 0.9 and plan["requests"] > plan["successes"]
        assert plan["price_per_request_usd"] > 0 and plan["cost_usd"] > 0
    table = CliRunner().invoke(cli, ["plan", "--from-run", run_id, "--metric", "success", "--target",
                                     "gpt-image-1@openai", "--db", str(db)])
    assert table.exit_code == 0, table.output
    assert "requests per side" in table.output and "gpt-image-1.5" not in table.output
    missing = CliRunner().invoke(cli, ["plan", "--from-run", run_id, "--target", "flux*", "--db", str(db)])
    assert missing.exit_code == 2 and "matches no target" in missing.output


@pytest.mark.parametrize(("args", "message"), [
    (["--power", "1.2"], "--power must be in"),
    (["--alpha", "0"], "--alpha must be in"),
    (["--from-run", "x", "--cv", "0.3"], "not both"),
    (["--metric", "success", "--baseline-rate", "0.02", "--change", "0.03"], "--change must be positive"),
])
def test_plan_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["plan", *args])
    assert result.exit_code == 2 and message in result.output


def test_a_plan_from_a_stored_run_is_made_without_the_command_line(flaky_run: tuple[Path, str]) -> None:
    from harness.planning import PlanAsk, baselines_from_run, plan_document, plan_targets, validate
    from harness.store import Store

    db, run_id = flaky_run
    with Store.open(db, readonly=True) as store:
        baselines = baselines_from_run(store, run_id, ["gpt-image-1.*"])
        assert [b.target for b in baselines] == ["gpt-image-1.5@openai"]
        assert baselines_from_run(store, run_id, ["gpt-image-1@openai", "gpt-image-1.5@openai"])[0].latencies is not None
        with pytest.raises(ConfigError, match="matches no target"):
            baselines_from_run(store, run_id, ["flux*"])
    ask = PlanAsk(metric="success", relative_change=0.15, change=0.1, power=0.8, alpha=0.05, checks=2,
                  level=validate(0.8, 0.05, 2), from_run=run_id)
    plans = plan_targets(baselines, ask)
    doc = plan_document(plans, ask)
    assert doc["per_check_alpha"] == 0.025 and doc["total_requests"] == plans[0].requests
    assert plans[0].source.endswith(f"success rate of run {run_id}")


def test_the_plan_document_says_its_version_first() -> None:
    from harness.planning import PLAN_SCHEMA_VERSION, PlanAsk, plan_document

    ask = PlanAsk(metric="p95", relative_change=0.15, change=0.03, power=0.8, alpha=0.05, checks=1, level=0.05)
    doc = plan_document([], ask)
    assert next(iter(doc)) == "schema_version" and doc["schema_version"] == PLAN_SCHEMA_VERSION == 1
