"""A sandbox run of 200 requests reproduces its provider profile's p50, p95 and success rate.

The run goes through the real runner at time scale 0.25, with the concurrency that finishes in about ten
seconds: the two cores then carry the decoding and rendering without queueing (at 0.05 and 40 in flight they
do not, and CPU contention, not the profile, sets the latency); measured latencies are divided by the scale and
compared with the profile's own distribution: the profile's exact quantile must fall inside the
distribution-free 99 % confidence interval of the measured quantile (order statistics), and the success
count must be consistent with the profile's success probability (two-sided binomial test at 0.1 %).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from harness.challenges import load
from harness.run import RunOptions, start_run
from harness.sandbox.profiles import DEFAULT_PROFILES, ProviderProfile
from harness.store import Store
from harness.store import runs as run_store
from harness.targets import load_targets, resolve_keys, select

N = 200
TIME_SCALE = 0.25
TARGET_DURATION_S = 10.0
PROMPTS = 20
TARGETS = {"openai": "gpt-image-1@openai", "gemini": "gemini-2.5-flash-image@google",
           "openrouter": "gemini-2.5-flash-image@openrouter", "fal": "gemini-2.5-flash-image@fal",
           "replicate": "gemini-2.5-flash-image@replicate"}


def quantile_ci(sorted_values: np.ndarray, q: float, confidence: float = 0.99) -> tuple[float, float]:
    """Distribution-free CI of the q-quantile from order statistics (binomial bounds)."""
    n = len(sorted_values)
    alpha = 1 - confidence
    lo = int(stats.binom.ppf(alpha / 2, n, q))
    hi = int(stats.binom.ppf(1 - alpha / 2, n, q)) + 1
    return float(sorted_values[max(lo - 1, 0)]), float(sorted_values[min(hi - 1, n - 1)])


def profile_quantiles(profile: ProviderProfile, model: str, qs: tuple[float, ...]) -> list[float]:
    """Quantiles of the profile's end-to-end time (generation plus body transfer), by Monte Carlo when the
    transfer adds a second term, exactly otherwise."""
    speed = profile.speed(model)
    if profile.transfer is None:
        return [profile.latency.quantile(q) * speed for q in qs]
    rng = random.Random(7)
    draws = np.array([profile.latency.sample(rng) * speed + profile.transfer.sample(rng) for _ in range(200_000)])
    return [float(np.quantile(draws, q)) for q in qs]


@pytest.mark.slow
@pytest.mark.parametrize("provider", sorted(TARGETS))
def test_a_200_request_run_reproduces_the_profile(provider: str, tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "s.yaml").write_text("challenges:\n" + "".join(
        f"  - {{id: c{i}, title: c, category: other, kind: text-to-image, prompt: 'scene {i}',"
        f" params: {{aspect_ratio: '1:1'}}}}\n" for i in range(PROMPTS)), encoding="utf-8")
    chosen = select(load_targets(), [TARGETS[provider]])
    profile = DEFAULT_PROFILES[provider]
    concurrency = max(1, round(N * profile.latency.median_s * TIME_SCALE / TARGET_DURATION_S))
    db = tmp_path / "r" / "h.db"
    result = start_run(db, load(suite), chosen, resolve_keys(chosen, sandbox=True),
                       RunOptions(sandbox=True, time_scale=TIME_SCALE, concurrency=concurrency, respect_limits=False,
                                  samples=N // PROMPTS, seed=11))
    with Store.open(db, readonly=True) as store:
        frame = run_store.attempts_frame(store, [result.run_id])
    assert len(frame) == N
    successes = int(frame["ok"].sum())
    expected_success = 1 - profile.failure_rate
    assert stats.binomtest(successes, N, expected_success).pvalue > 0.001, (successes, expected_success)

    latency = np.sort(frame.loc[frame["ok"] == 1, "latency_ms"].to_numpy() / 1000 / TIME_SCALE)
    p50, p95 = profile_quantiles(profile, chosen[0].model_name, (0.5, 0.95))
    lo50, hi50 = quantile_ci(latency, 0.5)
    lo95, hi95 = quantile_ci(latency, 0.95)
    assert lo50 <= p50 <= hi50, (p50, lo50, hi50)
    assert lo95 <= p95 <= hi95, (p95, lo95, hi95)
