"""Harness overhead against a zero-delay local endpoint, compared with a bare httpx loop in the same run.

Goals (issue 2): added latency p50 ≤ 1 ms; at least 500 completed attempts/s with ~100 KB images on 2 cores;
timing error p99 ≤ 2 ms at 256 in flight. The endpoint is `tests/delay_server.py` in its own process (it
shares the machine's two cores with the harness, as a local gateway would). Figures land in the benchmark's
``extra_info`` and are printed; the asserts compare ratios measured in the same run.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from harness.challenges import load
from harness.http_pool import ClientPool
from harness.providers.base import GenerationRequest
from harness.providers.openai_images import OpenAIImagesProvider
from harness.runner import RunOptions, perform_attempt, start_run
from harness.targets import Credential, Target
from harness.timing import quiet_heap

BODY = {"model": "m", "prompt": "p"}


async def bare_latencies(url: str, n: int) -> np.ndarray:
    out = []
    async with httpx.AsyncClient() as client:
        for _ in range(20):
            await (await client.post(url, json=BODY)).aread()
        for _ in range(n):
            t = time.perf_counter_ns()
            await (await client.post(url, json=BODY)).aread()
            out.append((time.perf_counter_ns() - t) / 1e6)
    return np.array(out)


async def harness_latencies(base: str, n: int) -> np.ndarray:
    provider = OpenAIImagesProvider(base, "k")
    out = []
    async with ClientPool(1) as pool, pool.lease() as client:
        for _ in range(20):
            await perform_attempt(provider, GenerationRequest(model_id="m", prompt="p"), client, 30)
        for _ in range(n):
            t = time.perf_counter_ns()
            outcome = await perform_attempt(provider, GenerationRequest(model_id="m", prompt="p"), client, 30)
            assert outcome.error is None
            out.append((time.perf_counter_ns() - t) / 1e6)
    return np.array(out)


def test_added_latency_per_request(benchmark: Any, delay_server: str) -> None:
    base = f"{delay_server}/d/0/0/100/v1"

    def measure() -> tuple[np.ndarray, np.ndarray]:
        with quiet_heap():
            bare = asyncio.run(bare_latencies(base + "/images/generations", 300))
            harness = asyncio.run(harness_latencies(base, 300))
        return bare, harness

    bare, harness = benchmark.pedantic(measure, rounds=1, iterations=1)
    added_p50 = float(np.median(harness) - np.median(bare))
    benchmark.extra_info.update(bare_p50_ms=float(np.median(bare)), harness_p50_ms=float(np.median(harness)),
                                added_p50_ms=added_p50)
    print(f"\nadded latency p50 {added_p50:.3f} ms (bare {np.median(bare):.3f} ms, harness "
          f"{np.median(harness):.3f} ms, 100 KB image decoded and validated)")
    assert added_p50 <= 1.0


def _suite(tmp_path: Path, n: int) -> Path:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "s.yaml").write_text(
        "challenges:\n" + "".join(
            f"  - {{id: c{i}, title: c, category: other, kind: text-to-image, prompt: 'p {i}'}}\n" for i in range(n)),
        encoding="utf-8")
    return suite


async def bare_throughput(url: str, n: int, concurrency: int) -> float:
    async with ClientPool(concurrency) as pool:
        async def one() -> None:
            async with pool.lease() as client:
                await (await client.post(url, json=BODY)).aread()

        await asyncio.gather(*(one() for _ in range(concurrency)))
        sem = asyncio.Semaphore(concurrency)

        async def bounded() -> None:
            async with sem:
                await one()

        t = time.perf_counter()
        await asyncio.gather(*(bounded() for _ in range(n)))
        return n / (time.perf_counter() - t)


def test_full_runner_throughput_with_100kb_images(benchmark: Any, delay_server: str, tmp_path: Path) -> None:
    """The whole runner: scheduling, attempts, validation, hashing, image files and SQLite commits."""
    n, concurrency = 2000, 32
    base = f"{delay_server}/d/0/0/100/v1"
    target = Target(name="local@bench", model="m", provider="bench", protocol="openai-images", base_url=base,
                    api_key_env=("BENCH_KEY",), price_per_image_usd=0.01)
    challenges = load(_suite(tmp_path, n))
    results: dict[str, float] = {}

    def run_harness() -> None:
        db = tmp_path / f"r{len(results)}" / "harness.db"
        t = time.perf_counter()
        result = start_run(db, challenges, [target], {target.name: Credential(target.name, "BENCH_KEY", "k")},
                           RunOptions(concurrency=concurrency, respect_limits=False))
        results["harness"] = result.requests / (time.perf_counter() - t)

    benchmark.pedantic(run_harness, rounds=1, iterations=1)
    with quiet_heap():
        results["bare"] = asyncio.run(bare_throughput(base + "/images/generations", n, concurrency))
    ratio = results["harness"] / results["bare"]
    benchmark.extra_info.update(harness_attempts_per_s=results["harness"], bare_requests_per_s=results["bare"],
                                ratio=ratio)
    print(f"\nrunner {results['harness']:.0f} attempts/s vs bare httpx {results['bare']:.0f} requests/s "
          f"(ratio {ratio:.2f}; ~100 KB images, {concurrency} in flight, server on the same 2 cores)")
    assert ratio >= 0.3


def test_timing_error_at_256_in_flight(benchmark: Any, delay_server: str) -> None:
    """256 requests in flight, answers arriving spread over 256 ms; error = when the harness recorded the
    headers minus when the server (same monotonic clock) sent them. A discarded warm-up round (the previous
    benchmark's 4,000 requests leave both processes settling), then three rounds: one round's p99 is the
    third-largest of 256 values, so the machine's noise is judged on the median round (all are reported)."""
    count, hdr0, rounds = 256, 80, 3

    async def measure() -> np.ndarray:
        async with ClientPool(count, timeout=30) as pool:
            async def one(base: str) -> float:
                async with pool.lease() as client:
                    provider = OpenAIImagesProvider(base, "k")
                    outcome = await perform_attempt(provider, GenerationRequest(model_id="m", prompt="p"), client, 30)
                    assert outcome.error is None and outcome.calls[0].t_hdr is not None
                    response_sent = outcome.result.provider_timings["server_hdr_ns"] if outcome.result else 0
                    return (outcome.calls[0].t_hdr - int(response_sent)) / 1e6

            await asyncio.gather(*(one(f"{delay_server}/d/0/0/0/v1") for _ in range(count)))
            return np.array(await asyncio.gather(*(one(f"{delay_server}/d/{hdr0 + i}/0/0/v1") for i in range(count))))

    with pytest.MonkeyPatch.context() as mp:
        from harness.providers import openai_images

        original = openai_images._processing
        mp.setattr(openai_images, "_processing",
                   lambda headers: {**original(headers), "server_hdr_ns": headers.get("x-server-hdr-ns")})

        def timed() -> list[np.ndarray]:
            with quiet_heap():
                asyncio.run(measure())
            lags = []
            for _ in range(rounds):
                with quiet_heap():
                    lags.append(asyncio.run(measure()))
            return lags

        lags = benchmark.pedantic(timed, rounds=1, iterations=1)
    p50s = [float(np.percentile(lag, 50)) for lag in lags]
    p99s = [float(np.percentile(lag, 99)) for lag in lags]
    p99 = float(np.median(p99s))
    benchmark.extra_info.update(timing_error_p50_ms=float(np.median(p50s)), timing_error_p99_ms=p99,
                                timing_error_p99_rounds_ms=p99s, in_flight=count)
    print(f"\ntiming error at {count} in flight: p50 {np.median(p50s):.3f} ms, p99 {p99:.3f} ms "
          f"(median of {rounds} rounds: {', '.join(f'{v:.3f}' for v in p99s)})")
    assert all(np.all(lag >= 0) for lag in lags)
    assert p99 <= 2.0
