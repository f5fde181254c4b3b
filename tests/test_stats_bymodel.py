"""One model, every provider: a buyer choosing where to buy one model sees its providers ranked, with
intervals, and only the differences the data support, corrected for the number of pairs."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from harness.challenges import load
from harness.cli import cli
from harness.cli.tables import cost_decimals, print_model_views
from harness.run import RunOptions, start_run
from harness.stats.bymodel import MODEL_VIEW_SCHEMA_VERSION, ModelView, model_views
from harness.stats.intervals import newcombe
from harness.stats.pairwise import holm, newcombe_p, ratio_interval
from harness.stats.source import effective_timeout_ms, stats_frame_columns
from harness.store import Store
from harness.store import runs as run_store
from harness.targets import load_targets, resolve_keys, select
from tests.test_compare_sandbox import write_suite
from tests.test_stats_table import attempt, failed

MODEL = "gemini-2.5-flash-image"
FAST = f"{MODEL}@google"
SLOW = f"{MODEL}@replicate"
ALONE = "gpt-image-1@openai"
PROFILES = """\
gemini: {latency: {median_s: 1.0, p95_s: 1.5}, transfer: {median_s: 0.05, p95_s: 0.1}, faults: {server_error: 0.4}}
replicate: {latency: {median_s: 4.0, p95_s: 5.0}, run: {median_s: 3.5, p95_s: 4.5}, faults: {}}
openai: {latency: {median_s: 2.0, p95_s: 3.0}, faults: {}}
"""
"""Google serves the model four times faster than Replicate but fails 40 % of its requests; gpt-image-1 has
one provider. At time scale 0.05 the simulated medians are 50 ms and 200 ms."""


def two_provider_run(root: Path) -> tuple[Path, str]:
    """A real sandbox run: two providers of one model with very different profiles, and a lone model."""
    profile = root / "profiles.yaml"
    profile.write_text(PROFILES, encoding="utf-8")
    chosen = select(load_targets(), [FAST, SLOW, ALONE])
    options = RunOptions(sandbox=True, time_scale=0.05, sandbox_profile=str(profile), samples=10, concurrency=2,
                         respect_limits=False, seed=1)
    db = root / "harness.db"
    run_id = start_run(db, load(write_suite(root / "suite")), chosen, resolve_keys(chosen, sandbox=True),
                       options).run_id
    return db, run_id


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return two_provider_run(tmp_path_factory.mktemp("bymodel"))


@pytest.fixture(scope="module")
def attempts(run: tuple[Path, str]) -> tuple[pd.DataFrame, float | None]:
    db, run_id = run
    with Store.open(db, readonly=True) as store:
        info = run_store.get_run(store, run_id)
        frame = run_store.attempts_frame(store, [run_id], columns=stats_frame_columns(store, ("target",)))
    return frame, effective_timeout_ms(info)


def views_by_model(views: list[ModelView]) -> dict[str, ModelView]:
    return {v.model: v for v in views}


# --- ranking and the differences the data support -----------------------------------------------------------

def test_the_faster_provider_ranks_first_and_the_data_support_both_of_its_differences(
        attempts: tuple[pd.DataFrame, float | None]) -> None:
    frame, timeout = attempts
    views = views_by_model(model_views(frame, timeout_ms=timeout))
    view = views[MODEL]
    assert [p.target for p in view.providers] == [FAST, SLOW] and [p.rank for p in view.providers] == [1, 2]
    fast, slow = view.providers
    assert fast.label == "@google" and slow.label == "@replicate"
    assert fast.p50_ci_low_ms is not None and fast.p50_ci_high_ms is not None
    assert fast.p50_ci_low_ms <= fast.p50_ms <= fast.p50_ci_high_ms  # type: ignore[operator]
    latency = next(d for d in view.differences if d.metric == "latency_p50")
    assert latency.supported and latency.better == FAST and latency.test == "Mann-Whitney U"
    assert latency.estimate is not None and latency.ci_high is not None and latency.ci_high < 0
    assert latency.p_adjusted is not None and latency.p_adjusted < 0.05
    assert re.match(r"@google faster than @replicate: p50 −\d+ % \[−\d+ %, −\d+ %\], Holm-adjusted p",
                    latency.statement), latency.statement
    success = next(d for d in view.differences if d.metric == "success_rate")
    assert success.supported and success.better == SLOW and success.test == "Newcombe"
    assert success.estimate == pytest.approx(slow.success_rate - fast.success_rate)  # type: ignore[operator]


def test_ranking_by_success_puts_the_reliable_provider_first(attempts: tuple[pd.DataFrame, float | None]) -> None:
    frame, timeout = attempts
    view = views_by_model(model_views(frame, rank_by="success", timeout_ms=timeout))[MODEL]
    assert [p.target for p in view.providers] == [SLOW, FAST]
    assert view.ranked_on.startswith("success rate")


def test_ranking_by_cost_orders_by_cost_per_image_with_intervals_that_contain_it(
        attempts: tuple[pd.DataFrame, float | None]) -> None:
    frame, timeout = attempts
    view = views_by_model(model_views(frame, rank_by="cost", timeout_ms=timeout))[MODEL]
    costs = [p.cost_per_image_usd for p in view.providers]
    assert None not in costs and costs == sorted(costs)  # type: ignore[type-var]
    for p in view.providers:
        assert p.cost_per_image_ci_low_usd is not None and p.cost_per_image_ci_high_usd is not None
        assert p.cost_per_image_ci_low_usd <= p.cost_per_image_usd <= p.cost_per_image_ci_high_usd  # type: ignore


def test_equal_prices_share_a_rank_though_their_sums_differ_in_the_last_bits() -> None:
    rows = ([attempt(i, target="m@a", provider="a", model="m", cost_usd=0.1) for i in range(10)]
            + [attempt(100 + i, target="m@b", provider="b", model="m", cost_usd=0.1) for i in range(3)]
            + [attempt(200 + i, target="m@c", provider="c", model="m", cost_usd=0.2) for i in range(3)])
    view = model_views(pd.DataFrame(rows), rank_by="cost")[0]
    assert [(p.provider, p.rank) for p in view.providers] == [("a", 1), ("b", 1), ("c", 3)]


def test_a_model_with_one_provider_is_listed_with_a_note_not_ranked(
        attempts: tuple[pd.DataFrame, float | None]) -> None:
    frame, timeout = attempts
    views = model_views(frame, timeout_ms=timeout)
    assert [v.model for v in views] == [MODEL, "gpt-image-1"], "ranked models first"
    alone = views[1]
    assert alone.note is not None and "one provider (openai)" in alone.note
    assert alone.differences == [] and [p.rank for p in alone.providers] == [None]


def test_providers_drawn_from_one_distribution_show_no_supported_difference() -> None:
    rng = np.random.default_rng(11)
    rows: list[dict[str, Any]] = []
    for k, provider in enumerate(("a", "b", "c")):
        for i in range(60):
            ok = rng.random() > 0.1
            values: dict[str, Any] = {"target": f"m@{provider}", "provider": provider, "model": "m", "sample": i,
                      "latency_ms": float(rng.lognormal(np.log(1000), 0.3))}
            rows.append(attempt(1000 * k + i, **values) if ok else failed(1000 * k + i, **values))
    view = model_views(pd.DataFrame(rows), seed=4)[0]
    assert len(view.differences) == 6, "three pairs, latency and success"
    assert not view.supported
    assert all(d.p_adjusted is not None and d.p_value is not None and d.p_adjusted >= d.p_value
               for d in view.differences)


def test_too_few_successes_leave_a_pair_untested_with_the_reason() -> None:
    rows = ([attempt(i, target="m@a", provider="a", model="m") for i in range(10)]
            + [attempt(100 + i, target="m@b", provider="b", model="m") for i in range(3)]
            + [failed(200 + i, target="m@b", provider="b", model="m") for i in range(5)])
    view = model_views(pd.DataFrame(rows))[0]
    latency = next(d for d in view.differences if d.metric == "latency_p50")
    assert latency.test is None and not latency.supported and "needs at least 6" in latency.reason
    assert [p.rank for p in view.providers] == [1, None], "a withheld p50 is not ranked"


def test_unknown_rank_or_alpha_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot rank by 'speed'"):
        model_views(pd.DataFrame([attempt(0)]), rank_by="speed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha"):
        model_views(pd.DataFrame([attempt(0)]), alpha=1.5)


# --- the statistics underneath ------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=12))
def test_holm_lies_between_the_raw_p_value_and_bonferroni_and_keeps_their_order(p: list[float]) -> None:
    adjusted = holm(p)
    m = len(p)
    for raw, adj in zip(p, adjusted, strict=True):
        assert raw <= adj + 1e-12 and adj <= min(1.0, m * raw) + 1e-12
    for i in range(m):
        for j in range(m):
            if p[i] < p[j]:
                assert adjusted[i] <= adjusted[j]


def test_holm_matches_a_worked_example() -> None:
    # Holm (1979): sorted p 0.01, 0.02, 0.03, 0.04 with m = 4 -> 0.04, 0.06, 0.06, 0.06
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 200), st.integers(1, 200), st.data(), st.sampled_from([0.01, 0.05, 0.1]))
def test_the_newcombe_p_value_is_below_alpha_exactly_when_the_interval_excludes_zero(
        n_a: int, n_b: int, data: st.DataObject, alpha: float) -> None:
    k_a = data.draw(st.integers(0, n_a))
    k_b = data.draw(st.integers(0, n_b))
    p = newcombe_p(k_a, n_a, k_b, n_b)
    interval = newcombe(k_a, n_a, k_b, n_b, 1 - alpha)
    excludes = interval.low > 0 or interval.high < 0
    assert 0 <= p <= 1
    if abs(p - alpha) > 1e-9:
        assert (p < alpha) == excludes


def test_a_ratio_interval_contains_its_estimate_and_is_none_without_images() -> None:
    cost = np.array([0.04, 0.04, 0.0, 0.04, 0.04, 0.08])
    images = np.array([1, 1, 0, 1, 1, 1])
    interval = ratio_interval(cost, images, resamples=500, seed=1)
    assert interval is not None and interval[0] <= cost.sum() / images.sum() <= interval[1]
    assert ratio_interval(cost, np.zeros(6), resamples=100, seed=1) is None


# --- the command --------------------------------------------------------------------------------------------

def test_stats_by_model_prints_each_models_providers_and_the_supported_lines(run: tuple[Path, str]) -> None:
    db, run_id = run
    result = CliRunner().invoke(cli, ["stats", run_id, "--by", "model", "--slo", "150ms", "--db", str(db)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "ranked by latency p50 (fastest first)" in out and MODEL in out
    assert "@google faster than @replicate" in out and "@replicate more reliable than @google" in out
    assert "gpt-image-1: one provider (openai)" in out
    assert "method, latency p50: Mann–Whitney U, Holm-adjusted" in out and "Newcombe" in out
    assert "goodput ≤ 150 ms" in out


def test_stats_by_model_json_carries_its_version_and_follows_its_schema(run: tuple[Path, str]) -> None:
    import jsonschema_rs

    db, run_id = run
    runner = CliRunner()
    schema = json.loads(runner.invoke(cli, ["stats", "--schema", "--by", "model"]).output)
    assert schema["title"] == "ModelView"
    views = json.loads(runner.invoke(cli, ["stats", run_id, "--by", "model", "--json", "--rank-by", "ttfb",
                                           "--db", str(db)]).output)
    validator = jsonschema_rs.validator_for(schema)
    for view in views:
        validator.validate(view)
        assert view["schema_version"] == MODEL_VIEW_SCHEMA_VERSION
    ranked = views[0]
    assert ranked["rank_by"] == "ttfb" and {d["metric"] for d in ranked["differences"]} == {
        "latency_p50", "success_rate", "ttfb_p50"}
    assert ModelView.model_validate(ranked).providers[0].target == FAST


def test_by_model_with_another_split_or_rank_by_without_it_is_a_clear_error(run: tuple[Path, str]) -> None:
    db, run_id = run
    runner = CliRunner()
    mixed = runner.invoke(cli, ["stats", run_id, "--by", "model,variant", "--db", str(db)])
    assert mixed.exit_code == 2 and "--by model" in mixed.output and "variant" in mixed.output
    stray = runner.invoke(cli, ["stats", run_id, "--rank-by", "cost", "--db", str(db)])
    assert stray.exit_code == 2 and "--rank-by applies to --by model" in stray.output


@pytest.mark.parametrize("width", [80, 120, 200])
def test_the_model_table_keeps_every_provider_and_price_whole(
        attempts: tuple[pd.DataFrame, float | None], width: int) -> None:
    frame, timeout = attempts
    views = model_views(frame, timeout_ms=timeout, slo_ms=150.0)
    buffer = io.StringIO()
    print_model_views(views, "run", console=Console(file=buffer, width=width, no_color=True, soft_wrap=True,
                                                    highlight=False))
    out = buffer.getvalue()
    for label in ("@google", "@replicate"):
        assert re.search(rf"(^|[│ ]){re.escape(label)}($|[│ ])", out, re.M), f"{label} cut at {width}:\n{out}"
    ranked = views[0]
    decimals = cost_decimals(p.cost_per_image_usd for p in ranked.providers)
    prices = {f"${p.cost_per_image_usd:.{decimals}f}" for p in ranked.providers}
    assert len(prices) == len({p.cost_per_image_usd for p in ranked.providers}), "different costs read differently"
    for price in prices:
        assert re.search(rf"(^|[│ ]){re.escape(price)}($|[│ ])", out, re.M), f"{price} cut at {width}:\n{out}"
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= width


def test_with_an_objective_providers_rank_by_goodput_and_its_differences_are_tested(
        attempts: tuple[pd.DataFrame, float | None]) -> None:
    """At 120 ms, between the two medians, the fast flaky provider meets the objective more often than the
    slow reliable one, which meets it almost never; at one minute the order flips to the success rates."""
    frame, timeout = attempts
    tight = views_by_model(model_views(frame, rank_by="goodput", slo_ms=120.0, timeout_ms=timeout))[MODEL]
    assert tight.ranked_on.startswith("goodput within 120 ms")
    assert [p.target for p in tight.providers] == [FAST, SLOW]
    goodput = next(d for d in tight.differences if d.metric == "goodput")
    assert goodput.supported and goodput.better == FAST
    assert goodput.statement.startswith("@google more often within the objective than @replicate: goodput +")
    loose = views_by_model(model_views(frame, rank_by="goodput", slo_ms=60_000.0, timeout_ms=timeout))[MODEL]
    assert [p.target for p in loose.providers] == [SLOW, FAST]
    assert [p.goodput for p in loose.providers] == [p.success_rate for p in loose.providers]


def test_ranking_by_goodput_without_an_objective_is_refused(run: tuple[Path, str]) -> None:
    db, run_id = run
    with pytest.raises(ValueError, match="needs an objective"):
        model_views(pd.DataFrame([attempt(0)]), rank_by="goodput")
    result = CliRunner().invoke(cli, ["stats", run_id, "--by", "model", "--rank-by", "goodput", "--db", str(db)])
    assert result.exit_code == 2 and "--rank-by goodput needs --slo" in result.output


def test_edge_cases_give_plain_json_numbers_never_nan_or_infinity() -> None:
    """Identical latencies on both sides, a provider that never succeeds, free and billed failures."""
    rows = ([attempt(i, target="m@a", provider="a", model="m", latency_ms=1000.0, cost_usd=0.0) for i in range(8)]
            + [attempt(100 + i, target="m@b", provider="b", model="m", latency_ms=1000.0) for i in range(8)]
            + [failed(200 + i, target="m@c", provider="c", model="m", cost_usd=0.04, billed=1) for i in range(8)]
            + [attempt(300 + i, target="m@d", provider="d", model="m", cost_usd=0.04) for i in range(2)]
            + [failed(310 + i, target="m@d", provider="d", model="m", cost_usd=0.04, billed=1) for i in range(6)])
    for rank_by in ("p50", "cost", "success", "ttfb", "time_to_image"):
        (view,) = model_views(pd.DataFrame(rows), rank_by=rank_by, slo_ms=2000.0, goodput_measure="latency",
                              resamples=300)
        json.dumps(view.to_json(), allow_nan=False)
        same = next(d for d in view.differences if d.metric == "latency_p50" and {d.better, d.worse} == {"m@a", "m@b"})
        assert not same.supported
        never = next(p for p in view.providers if p.target == "m@c")
        assert never.cost_per_image_usd is None and never.p50_ms is None
    assert [p.target for p in model_views(pd.DataFrame(rows), rank_by="cost")[0].providers][:2] == ["m@a", "m@b"]
