"""The sweep's levels, labels and knee rule, checked on their own: any increasing positive list of levels is
accepted and survives the run label it is stored in, anything else is refused naming the option, and the knee
is the last level before throughput stops rising by the minimum gain or 429s begin."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import ConfigError
from harness.sweep import SweepSpec, find_knee, parse_label, parse_levels
from harness.sweep.results import SweepLevel

increasing_ints = st.lists(st.integers(1, 10_000), min_size=1, max_size=12, unique=True).map(sorted)
increasing_rates = st.lists(st.floats(0.01, 1e5, allow_nan=False), min_size=1, max_size=12, unique=True).map(sorted)


@given(increasing_ints)
def test_any_increasing_concurrency_levels_are_read_back_exactly(levels: list[int]) -> None:
    assert parse_levels(",".join(map(str, levels)), "concurrency") == tuple(float(v) for v in levels)


@given(increasing_rates, st.integers(1, 500), st.floats(0, 0.99), st.floats(0, 5),
       st.none() | st.floats(0.001, 1e6))
def test_a_level_label_carries_the_whole_sweep(levels: list[float], n: int, share: float, gain: float,
                                               spend: float | None) -> None:
    spec = SweepSpec(sweep_id="20261205T101500Z-3f2a", mode="rpm", levels=tuple(levels), requests=n,
                     max_429_share=share, min_gain=gain, max_spend_usd=spend)
    for level in levels:
        assert parse_label(spec.label(level), "r") == (spec, level)
        assert spec.label(level).startswith(f"sweep:{spec.sweep_id}:rpm=")


@given(st.lists(st.integers(-5, 50), min_size=2, max_size=8))
def test_levels_that_do_not_rise_or_are_not_positive_are_refused_naming_the_option(levels: list[int]) -> None:
    rising = all(b > a for a, b in itertools.pairwise(levels)) and min(levels) > 0
    text = ",".join(map(str, levels))
    if rising:
        assert parse_levels(text, "concurrency")
        return
    with pytest.raises(ConfigError, match=r"^--concurrency: level"):
        parse_levels(text, "concurrency")


def test_a_label_from_a_newer_harness_or_another_tool_is_refused_not_guessed() -> None:
    spec = SweepSpec(sweep_id="s", mode="concurrency", levels=(1.0, 2.0))
    newer = spec.label(1.0).replace(" v=1 ", " v=2 ")
    with pytest.raises(ConfigError, match="run r1: sweep label version 2 is newer"):
        parse_label(newer, "r1")
    with pytest.raises(ConfigError, match="run r2: label 'sweep:s:c=1' is not a sweep label"):
        parse_label("sweep:s:c=1", "r2")
    with pytest.raises(ConfigError, match="names level 3"):
        parse_label(spec.label(1.0).replace(":c=1 ", ":c=3 "), "r3")


def level(value: float, throughput: float, rate_limited: int = 0, n: int = 20) -> SweepLevel:
    return SweepLevel(
        sweep_id="s", mode="concurrency", level=value, run_id=f"s-c{value:g}", status="finished", target="t",
        time_scale=None, planned=n, n=n, not_sent=0, attempts=n, successes=n - rate_limited, success_rate=None,
        success_ci_low=None, success_ci_high=None, rate_limited=rate_limited, rate_limited_share=rate_limited / n,
        p50_ms=None, p50_ci_low_ms=None, p50_ci_high_ms=None, p95_ms=None, p95_ci_low_ms=None,
        p95_ci_high_ms=None, images=n - rate_limited, window_s=1.0, throughput_per_s=throughput,
        throughput_ci_low=None, throughput_ci_high=None, cost_usd=0.0, withheld={},
    )


def test_the_knee_is_the_last_level_before_throughput_stops_rising() -> None:
    knee = find_knee([level(1, 1.0), level(2, 1.9), level(4, 3.0), level(8, 3.1), level(16, 3.0)], 0.1)
    assert (knee.level, knee.cause) == (4, "saturated")
    assert knee.statement.startswith("knee at c=4 (3 images/s): throughput stops rising at c=8: 3.1 images/s, +3%")


def test_the_knee_is_the_last_level_before_429s_begin() -> None:
    knee = find_knee([level(1, 1.0), level(2, 2.0), level(4, 3.5, rate_limited=3)], 0.1)
    assert (knee.level, knee.cause) == (2, "rate_limited")
    assert "429s begin at c=4: 3 of 20 attempts (15%)" in knee.statement


def test_429s_at_the_lowest_level_leave_no_knee_and_say_to_sweep_lower() -> None:
    knee = find_knee([level(1, 1.0, rate_limited=1), level(2, 2.0)], 0.1)
    assert knee.level is None and knee.cause == "rate_limited" and "sweep lower" in knee.statement


@given(st.lists(st.floats(0.01, 100), min_size=1, max_size=10), st.floats(0, 1))
def test_without_429s_the_knee_is_followed_only_by_levels_that_add_less_than_the_gain(
        throughputs: list[float], gain: float) -> None:
    levels = [level(2**i, t) for i, t in enumerate(throughputs)]
    knee = find_knee(levels, gain)
    if knee.level is None:
        assert knee.cause == "none" and "sweep higher" in knee.statement
        for i in range(1, len(throughputs)):
            assert throughputs[i] >= (1 + gain) * throughputs[i - 1] and throughputs[i] > throughputs[i - 1]
        return
    assert knee.cause == "saturated"
    at = next(i for i, lv in enumerate(levels) if lv.level == knee.level)
    nxt = at + 1
    assert throughputs[nxt] < (1 + gain) * throughputs[at] or throughputs[nxt] <= throughputs[at]
    assert throughputs[at] == max(throughputs[:nxt])
    for i in range(1, nxt):
        assert throughputs[i] >= (1 + gain) * throughputs[i - 1] and throughputs[i] > throughputs[i - 1]


def test_unfinished_levels_do_not_decide_the_knee() -> None:
    running = level(4, 0.1).model_copy(update={"status": "interrupted"})
    knee = find_knee([level(1, 1.0), level(2, 2.0), running], 0.1)
    assert knee.level is None and "throughput still rose at c=2" in knee.statement
