"""Spend control: a capped run never spends past its cap, whatever prices, latencies, failures and concurrency."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import ConfigError
from harness.pricing import RequestShape, UnboundedPrice
from harness.providers.base import GenerationRequest, InputImage
from harness.spend import (
    SPEND_CAP_REASON,
    SpendCaps,
    SpendGuard,
    SpendLedger,
    TargetPlan,
    check_caps,
    estimate,
    format_estimate,
    format_totals,
    not_sent_reason,
    shape_of,
    to_nano,
)
from harness.targets import Target, load_targets

CATALOG = load_targets()


def target(name: str = "t", **kw: Any) -> Target:
    return Target(name=name, model="m", provider="p", protocol="gemini", base_url="http://127.0.0.1:1", **kw)


def test_a_request_that_does_not_fit_is_refused_and_the_target_stops() -> None:
    ledger = SpendLedger(SpendCaps(run_usd=0.10))
    first = ledger.try_reserve("a", 0.04)
    second = ledger.try_reserve("a", 0.04)
    assert first is not None and second is not None
    assert ledger.try_reserve("a", 0.04) is None  # 0.08 in flight + 0.04 > 0.10
    assert ledger.could_ever_fit("a", 0.04)  # ...but may once they settle low
    ledger.settle(first, 0.039)
    ledger.settle_at_bound(second)  # timed out: the provider may still bill it
    assert ledger.totals().total_usd == pytest.approx(0.079)
    assert not ledger.could_ever_fit("a", 0.04)
    assert ledger.try_reserve("a", 0.02) is not None


def test_per_target_caps_stop_one_target_and_not_the_other() -> None:
    ledger = SpendLedger(SpendCaps(per_target_usd=0.05))
    held = ledger.try_reserve("dear", 0.05)
    assert held is not None
    ledger.settle(held, 0.05)
    assert not ledger.could_ever_fit("dear", 0.01)
    assert ledger.could_ever_fit("cheap", 0.05)


def test_a_resumed_run_counts_what_it_already_spent() -> None:
    ledger = SpendLedger(SpendCaps(run_usd=1.0), already_spent={"a": 0.97})
    assert ledger.try_reserve("b", 0.04) is None
    assert not ledger.could_ever_fit("b", 0.04)
    assert ledger.try_reserve("b", 0.03) is not None


def test_a_reservation_is_settled_once() -> None:
    ledger = SpendLedger(SpendCaps(run_usd=1.0))
    held = ledger.try_reserve("a", 0.1)
    assert held is not None
    ledger.release(held)
    with pytest.raises(RuntimeError, match="settled twice"):
        ledger.settle(held, 0.1)
    assert ledger.totals().total_usd == 0


def test_thousands_of_small_costs_do_not_drift_past_the_cap() -> None:
    ledger = SpendLedger(SpendCaps(run_usd=1.0))
    sent = 0
    while (held := ledger.try_reserve("a", 0.001)) is not None:
        ledger.settle(held, 0.001)
        sent += 1
    assert sent == 1000
    assert ledger.totals().total_usd <= 1.0


def test_a_provider_cost_above_the_ceiling_is_recorded_as_overrun() -> None:
    ledger = SpendLedger(SpendCaps(run_usd=1.0))
    held = ledger.try_reserve("router", 0.2)
    assert held is not None
    ledger.settle(held, 0.25)
    totals = ledger.totals()
    assert totals.total_usd == pytest.approx(0.25) and totals.overrun_usd == pytest.approx(0.05)
    assert "more than the targets' per-request ceilings" in format_totals(totals)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_a_cap_must_be_a_positive_amount(value: float) -> None:
    with pytest.raises(ConfigError, match="--max-spend must be a positive amount"):
        SpendCaps(run_usd=value)


@st.composite
def workloads(draw: st.DrawFn) -> dict[str, Any]:
    n_targets = draw(st.integers(1, 4))
    targets = {f"t{i}": draw(st.floats(0.001, 0.5)) for i in range(n_targets)}  # bound per request, USD
    return {
        "bounds": targets,
        "requests": draw(st.integers(1, 40)),
        "concurrency": draw(st.integers(1, 16)),
        "run_cap": draw(st.none() | st.floats(0.01, 3.0)),
        "target_cap": draw(st.none() | st.floats(0.01, 1.0)),
        "already": draw(st.floats(0, 0.5)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


async def simulate(w: dict[str, Any]) -> None:
    """Workers send every target's requests through the ledger at random latencies; each ends in a random
    outcome: success at a random cost up to its bound, an unbilled failure, a billed failure or a timeout."""
    rng = random.Random(w["seed"])
    caps = SpendCaps(run_usd=w["run_cap"], per_target_usd=w["target_cap"])
    ledger = SpendLedger(caps, already_spent={"t0": w["already"]})
    run_cap = None if caps.run_usd is None else to_nano(caps.run_usd, up=False)
    target_cap = None if caps.per_target_usd is None else to_nano(caps.per_target_usd, up=False)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for _ in range(w["requests"]):
        for name in w["bounds"]:
            queue.put_nowait(name)
    stopped: set[str] = set()
    initial_over = {n for n in ("t0",) if target_cap is not None and to_nano(w["already"], up=True) > target_cap}

    def check() -> None:
        spent = ledger._spent
        held = ledger._reserved
        total = sum(spent.values()) + sum(held.values())
        if run_cap is not None and to_nano(w["already"], up=True) <= run_cap:
            assert total <= run_cap, (total, run_cap)
        if target_cap is not None:
            for name in w["bounds"]:
                if name not in initial_over:
                    assert spent.get(name, 0) + held.get(name, 0) <= target_cap

    async def worker() -> None:
        while not queue.empty():
            name = queue.get_nowait()
            if name in stopped:
                continue
            bound = w["bounds"][name]
            held = await ledger.reserve(name, bound)
            if held is None:
                assert not ledger.could_ever_fit(name, bound)
                stopped.add(name)
                continue
            check()
            await asyncio.sleep(rng.random() * 0.002)
            outcome = rng.random()
            if outcome < 0.6:
                ledger.settle(held, rng.random() * bound)
            elif outcome < 0.75:
                ledger.release(held)
            elif outcome < 0.9:
                ledger.settle(held, rng.random() * bound)
            else:
                ledger.settle_at_bound(held)
            check()

    await asyncio.gather(*(worker() for _ in range(w["concurrency"])))
    check()
    assert ledger.totals().in_flight_usd == 0
    if run_cap is not None and to_nano(w["already"], up=True) <= run_cap:
        assert to_nano(ledger.totals().total_usd, up=False) <= run_cap


@settings(deadline=None, max_examples=80)
@given(workloads())
def test_random_prices_latencies_failures_and_concurrency_never_cross_the_cap(w: dict[str, Any]) -> None:
    asyncio.run(simulate(w))


def test_a_waiting_request_is_sent_once_requests_in_flight_settle_low() -> None:
    async def scenario() -> list[str]:
        ledger = SpendLedger(SpendCaps(run_usd=0.10))
        order: list[str] = []
        first = ledger.try_reserve("a", 0.08)
        assert first is not None

        async def second() -> None:
            held = await ledger.reserve("a", 0.08)
            order.append("second reserved" if held else "second refused")

        task = asyncio.create_task(second())
        await asyncio.sleep(0)
        order.append("first settles")
        ledger.settle(first, 0.01)
        await task
        return order

    assert asyncio.run(scenario()) == ["first settles", "second reserved"]


def test_a_cap_below_one_request_is_an_error_naming_the_option() -> None:
    plans = [TargetPlan(CATALOG["gemini-3-pro-image-preview@google"], [RequestShape(size="4K")])]
    with pytest.raises(ConfigError, match=r"--max-spend \$0.1 is below one request's bound for "
                                          r"gemini-3-pro-image-preview@google \(\$0.2400\).*Nothing was sent"):
        check_caps(plans, SpendCaps(run_usd=0.1))
    with pytest.raises(ConfigError, match=r"--max-spend-per-target \$0.2"):
        check_caps(plans, SpendCaps(run_usd=5, per_target_usd=0.2))
    assert check_caps(plans, SpendCaps(run_usd=0.24)) == {"gemini-3-pro-image-preview@google": 0.24}


def test_a_token_priced_target_without_a_cap_is_refused_by_name() -> None:
    bare = target("tokens-only", price_output_per_mtok_usd=30.0)
    with pytest.raises(UnboundedPrice, match="tokens-only"):
        check_caps([TargetPlan(bare, [RequestShape()])], SpendCaps(run_usd=10))


def test_shape_of_a_request_counts_prompt_bytes_images_and_references() -> None:
    ref = InputImage("r", b"x", "image/png", 1, 1, "0" * 64)
    shape = shape_of(GenerationRequest(model_id="m", prompt="héllo", size="2K", n=2, references=(ref,), mask=ref))
    assert shape == RequestShape(size="2K", images=2, prompt_bytes=6, references=2)


def test_the_estimate_states_requests_cost_range_wall_time_and_assumptions() -> None:
    flux = CATALOG["flux-dev@fal"]  # 2 concurrent
    gpt = CATALOG["gpt-image-1@openai"]  # 5 rpm
    plans = [TargetPlan(flux, [RequestShape(size="1024x1024")] * 10),
             TargetPlan(gpt, [RequestShape(size="1024x1024", prompt_bytes=400)] * 10)]
    est = estimate(plans, retries=2, concurrency=4, latency_s=20.0)
    rows = {r.target: r for r in est.rows}
    assert rows["flux-dev@fal"].requests == 10
    assert rows["flux-dev@fal"].low_usd == pytest.approx(0.25)
    assert rows["flux-dev@fal"].high_usd == pytest.approx(0.25 * 3)
    assert rows["flux-dev@fal"].limit == "2 concurrent"
    assert rows["gpt-image-1@openai"].limit == "5 rpm"
    assert rows["gpt-image-1@openai"].wall_s >= 10 * 60 / 5
    assert est.low_usd is not None and est.likely_usd is not None and est.high_usd is not None
    assert est.likely_usd <= est.low_usd <= est.high_usd
    text = format_estimate(est)
    assert "Assumptions:" in text and "retried up to 2" in text and "5 rpm" in text
    assert "flux-dev@fal" in text and "total" in text


def test_the_not_sent_reason_names_the_spend_cap() -> None:
    ledger = SpendLedger(SpendCaps(run_usd=1.0, per_target_usd=0.5))
    reason = not_sent_reason("a", 0.04, ledger)
    assert reason.startswith(SPEND_CAP_REASON) and "$0.0400" in reason and "of $1" in reason


def test_the_guard_stops_a_target_by_name_and_counts_timeouts_at_their_bound() -> None:
    async def scenario() -> tuple[list[float], dict[str, str], float]:
        guard = SpendGuard.for_run(SpendCaps(run_usd=0.30))
        pro = CATALOG["gemini-3-pro-image-preview@google"]
        request = GenerationRequest(model_id="m", prompt="a cat", size="1K")
        counted = []
        first = await guard.admit(pro, request)
        assert first is not None
        counted.append(guard.settle(first, 0.0, timed_out=True))  # the provider may still bill it
        second = await guard.admit(pro, request)
        assert second is not None
        counted.append(guard.settle(second, 0.134, timed_out=False))
        assert await guard.admit(pro, request) is None  # 0.268 spent + 0.134 > 0.30
        return counted, guard.stopped, guard.totals().total_usd

    counted, stopped, total = asyncio.run(scenario())
    assert counted == [pytest.approx(0.134), 0.134]
    assert total == pytest.approx(0.268)
    assert stopped["gemini-3-pro-image-preview@google"].startswith(SPEND_CAP_REASON)


def test_without_a_cap_the_guard_only_counts() -> None:
    async def scenario() -> float:
        guard = SpendGuard.for_run(SpendCaps())
        bare = target("tokens-only", price_output_per_mtok_usd=30.0)
        held = await guard.admit(bare, GenerationRequest(model_id="m", prompt="x"))
        assert held is not None
        guard.settle(held, 0.02, timed_out=False)
        return guard.totals().total_usd

    assert asyncio.run(scenario()) == pytest.approx(0.02)


def test_the_estimate_of_a_batch_target_sends_each_request_once_at_half_price_within_a_day() -> None:
    batch, twin = CATALOG["gpt-image-1@openai-batch"], CATALOG["gpt-image-1@openai"]
    shapes = [RequestShape(size="1024x1024", prompt_bytes=40)] * 10
    est = estimate([TargetPlan(batch, shapes), TargetPlan(twin, shapes)], retries=2, concurrency=4)
    rows = {r.target: r for r in est.rows}
    assert rows[batch.name].low_usd == pytest.approx(rows[twin.name].low_usd / 2)  # type: ignore[operator]
    assert rows[batch.name].high_usd == pytest.approx(rows[twin.name].high_usd / 2 / 3)  # type: ignore[operator]
    assert rows[batch.name].wall_s == 24 * 3600 and est.wall_s == 24 * 3600
    assert any("batch targets" in a for a in est.assumptions)
    assert "24 h window" in format_estimate(est)
