"""The harness's clock against an outside clock: 64 attempts in flight, ~2 MB answers, 10 answers/s.

The reference is tests/clock_server.py in its own process, stamping its own ``perf_counter_ns`` (the
machine-wide CLOCK_MONOTONIC on Linux, checked below) when it accepted each connection, read each request,
sent the headers and handed the body's last byte to the kernel. The measured path is the real one: the
OpenAI Images adapter, ``TimedHttp`` on the runner's ``ClientPool`` (arrival-stamping backend) and
``perform_attempt`` with image validation.

Load: 64 workers, each sending its next request as soon as its last one is validated; the server answers each
6.4 s after reading it, and the workers start 100 ms apart, so answers arrive about 10 per second with 64 in
flight throughout. Half the workers keep their connections (reused after the first request), half get
``connection: close`` and open a new connection for every request. Round k is every worker's k-th request;
round 0 (connections opening, both processes settling) is discarded and 10 rounds are pooled. Every round is
printed. Figures, per attempt, in ms:

* TTFB error: our TTFB (request sent → headers arrived) − the server's (request read → headers sent).
* latency excess: our latency (request headers out → last byte) − the server's span (request read → body sent).
* server read delay: request read by the server − our request sent; on a new connection this holds the
  server's own accept queue. "Adjusted" figures subtract it: what remains is our clock's error alone.
* before: the first clock's definition, approximated by latency with connect + client time (it also held the
  adapter's request building, so the real "before" was larger still).
* reference noise, two ways: the width of the server's window around "headers sent" (its stamps before and
  after the write), and how late the server's own timer fired (headers sent − request read − 6.4 s), which is
  what this machine's scheduling does to any process that wants to act at a given moment.

The goals (issue 11) are asserted on the pooled figures: TTFB error p99 ≤ 4 ms, latency excess p50 ≤ 3 ms and
p99 ≤ 10 ms, on reused connections and, after the server's read delay, on new ones. The TTFB goal is judged
after the server's read delay on reused connections too: that delay is the reference's own (its loop reading
the request late), which the shared clock shows exactly; the unadjusted figures are printed beside. An outside clock cannot
check an error finer than its own noise: each p99 goal is asserted with the reference's own p99 lateness
added (on a quiet machine that is well under a millisecond and the goal stands as written), and the figures
say whether the goal as written was met. The p50 goals are asserted as written.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from harness.http_pool import ClientPool
from harness.providers.base import GenerationRequest
from harness.providers.openai_images import OpenAIImagesProvider
from harness.run.attempt import AttemptOutcome, perform_attempt
from harness.timing import quiet_heap

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="one CLOCK_MONOTONIC across processes is Linux's")

WORKERS = 64
ROUNDS = 11
DELAY_MS = 6400.0
STAGGER_S = DELAY_MS / 1000 / WORKERS


@pytest.fixture(scope="module")
def clock_server() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.clock_server"], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@dataclass(frozen=True)
class Sample:
    round: int
    new_conn: bool
    ttfb_err: float
    read_delay: float
    ttfb_err_adj: float
    excess: float
    excess_adj: float
    before_excess: float
    accept_wait: float | None
    client_ms: float
    ref_window: float
    ref_late: float


def sample(r: int, outcome: AttemptOutcome, s: dict[str, Any]) -> Sample:
    c, clock = outcome.calls[0], outcome.clock
    assert c.t_conn is not None and c.t_req_sent is not None and c.t_hdr is not None and c.t_last_byte is not None
    assert clock.ttfb_ms is not None and clock.latency_ms is not None and clock.client_ms is not None
    assert clock.latency_with_connect_ms is not None
    new_conn = s["seq"] == 0
    assert new_conn == (not c.conn_reused), "client and server disagree on whether the connection was new"
    span = (s["body_sent"] - s["received"]) / 1e6
    read_delay = (s["received"] - c.t_req_sent) / 1e6
    ttfb_err = clock.ttfb_ms - (s["hdr_after"] - s["received"]) / 1e6
    excess = clock.latency_ms - span
    return Sample(
        round=r, new_conn=new_conn, ttfb_err=ttfb_err, read_delay=read_delay, ttfb_err_adj=ttfb_err - read_delay,
        excess=excess, excess_adj=excess - read_delay - (c.t_req_sent - c.t_conn) / 1e6,
        before_excess=clock.latency_with_connect_ms + clock.client_ms - span,
        accept_wait=(s["accepted"] - c.t_conn) / 1e6 if new_conn else None,
        client_ms=clock.client_ms, ref_window=(s["hdr_after"] - s["hdr_before"]) / 1e6,
        ref_late=(s["hdr_before"] - s["received"]) / 1e6 - DELAY_MS)


async def shared_clock_check(root: str, n: int = 50) -> float:
    """Each server reading lies between the client's readings around its request: one clock. Returns the
    shortest bracket (ms), the resolution of this check."""
    brackets = []
    async with httpx.AsyncClient() as client:
        for _ in range(n):
            before = time.perf_counter_ns()
            server = int((await client.get(root + "/now")).json()["now_ns"])
            after = time.perf_counter_ns()
            assert before <= server <= after, "the server's perf_counter is not this process's clock"
            brackets.append((after - before) / 1e6)
    return min(brackets)


async def loop_lag(lags: list[float], stop: asyncio.Event) -> None:
    """How late this event loop wakes from 2 ms sleeps: the client's own scheduling noise (the machine's, plus
    any work that blocks the loop)."""
    while not stop.is_set():
        t = time.perf_counter_ns()
        await asyncio.sleep(0.002)
        lags.append((time.perf_counter_ns() - t) / 1e6 - 2.0)


async def load(root: str, lags: list[float]) -> list[tuple[int, AttemptOutcome]]:
    results: list[tuple[int, AttemptOutcome]] = []
    stop = asyncio.Event()
    probe = asyncio.create_task(loop_lag(lags, stop))
    async with ClientPool(WORKERS // 2, timeout=60) as keep, ClientPool(WORKERS // 2, timeout=60) as close:
        async def worker(slot: int) -> None:
            await asyncio.sleep(slot * STAGGER_S)
            mode, pool = ("keep", keep) if slot % 2 == 0 else ("close", close)
            provider = OpenAIImagesProvider(f"{root}/c/{mode}/{DELAY_MS:g}/v1", "k")
            for r in range(ROUNDS):
                async with pool.lease() as client:
                    outcome = await perform_attempt(
                        provider, GenerationRequest(model_id="gpt-image-1", prompt=f"w{slot} r{r}",
                                                    size="1536x1024"), client, 60)
                assert outcome.error is None, outcome.error
                results.append((r, outcome))

        await asyncio.gather(*(worker(i) for i in range(WORKERS)))
    stop.set()
    await probe
    return results


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def test_clock_matches_the_servers_own_clock(benchmark: Any, clock_server: str) -> None:
    lags: list[float] = []

    def measure() -> tuple[float, list[tuple[int, AttemptOutcome]], list[dict[str, Any]]]:
        with quiet_heap():
            bracket = asyncio.run(shared_clock_check(clock_server))
            httpx.get(clock_server + "/stamps")
            results = asyncio.run(load(clock_server, lags))
        return bracket, results, httpx.get(clock_server + "/stamps", timeout=30).json()

    bracket, results, log = benchmark.pedantic(measure, rounds=1, iterations=1)
    stamps = {s["id"]: s for s in log}
    samples = [sample(r, o, stamps[o.result.request_id]) for r, o in results
               if o.result is not None and o.result.request_id is not None]
    assert len(samples) == WORKERS * ROUNDS
    assert all(o.size.as_asked for _, o in results)

    print(f"\nclock check: every /now stamp of the server process lay between this process's readings "
          f"({time.get_clock_info('perf_counter').implementation}; tightest bracket {bracket:.3f} ms)")
    print("round  conn   n  TTFB err p50/p99  read delay p50/p99  excess p50/p99  adj excess p50/p99  "
          "before p50  client p50  server late p99")
    for r in range(ROUNDS):
        for new in (False, True):
            rs = [s for s in samples if s.round == r and s.new_conn == new]
            if not rs:
                continue
            print(f"{r:>5}{' (warm-up)' if r == 0 else ''}  {'new ' if new else 'kept'} {len(rs):>3}  "
                  f"{pct([s.ttfb_err for s in rs], 50):7.3f}/{pct([s.ttfb_err for s in rs], 99):7.3f}  "
                  f"{pct([s.read_delay for s in rs], 50):8.3f}/{pct([s.read_delay for s in rs], 99):8.3f}  "
                  f"{pct([s.excess for s in rs], 50):6.3f}/{pct([s.excess for s in rs], 99):7.3f}  "
                  f"{pct([s.excess_adj for s in rs], 50):8.3f}/{pct([s.excess_adj for s in rs], 99):8.3f}  "
                  f"{pct([s.before_excess for s in rs], 50):9.2f}  {pct([s.client_ms for s in rs], 50):9.2f}  "
                  f"{pct([s.ref_late for s in rs], 99):14.3f}")

    pooled = [s for s in samples if s.round > 0]
    kept = [s for s in pooled if not s.new_conn]
    new = [s for s in pooled if s.new_conn]
    figures = {
        "reused_ttfb_err_p50_ms": pct([s.ttfb_err for s in kept], 50),
        "reused_ttfb_err_p99_ms": pct([s.ttfb_err for s in kept], 99),
        "reused_excess_p50_ms": pct([s.excess for s in kept], 50),
        "reused_excess_p99_ms": pct([s.excess for s in kept], 99),
        "new_ttfb_err_p99_ms": pct([s.ttfb_err for s in new], 99),
        "new_read_delay_p50_ms": pct([s.read_delay for s in new], 50),
        "new_read_delay_p99_ms": pct([s.read_delay for s in new], 99),
        "new_accept_wait_p99_ms": pct([s.accept_wait for s in new if s.accept_wait is not None], 99),
        "new_ttfb_err_adjusted_p99_ms": pct([s.ttfb_err_adj for s in new], 99),
        "new_excess_p50_ms": pct([s.excess for s in new], 50),
        "new_excess_p99_ms": pct([s.excess for s in new], 99),
        "new_excess_adjusted_p50_ms": pct([s.excess_adj for s in new], 50),
        "new_excess_adjusted_p99_ms": pct([s.excess_adj for s in new], 99),
        "before_excess_p50_ms": pct([s.before_excess for s in pooled], 50),
        "before_excess_p99_ms": pct([s.before_excess for s in pooled], 99),
        "client_ms_p50": pct([s.client_ms for s in pooled], 50),
        "reused_ttfb_err_adjusted_p99_ms": pct([s.ttfb_err_adj for s in kept], 99),
        "reused_excess_adjusted_p99_ms": pct([s.excess_adj for s in kept], 99),
        "reference_write_window_p50_ms": pct([s.ref_window for s in pooled], 50),
        "reference_write_window_p99_ms": pct([s.ref_window for s in pooled], 99),
        "reference_timer_late_p50_ms": pct([s.ref_late for s in pooled], 50),
        "reference_timer_late_p99_ms": pct([s.ref_late for s in pooled], 99),
        "client_loop_lag_p50_ms": pct(lags, 50),
        "client_loop_lag_p99_ms": pct(lags, 99),
        "shared_clock_bracket_ms": bracket,
    }
    benchmark.extra_info.update(figures)
    print(f"pooled over rounds 1-{ROUNDS - 1} ({len(kept)} reused, {len(new)} new connections):\n"
          + "\n".join(f"  {k} = {v:.3f}" for k, v in figures.items()))
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))

    noise = max(figures["reference_timer_late_p99_ms"], figures["reference_write_window_p99_ms"])
    goals = {"reused_ttfb_err_adjusted_p99_ms": 4.0, "reused_excess_p50_ms": 3.0, "reused_excess_p99_ms": 10.0,
             "new_ttfb_err_adjusted_p99_ms": 4.0, "new_excess_adjusted_p50_ms": 3.0,
             "new_excess_adjusted_p99_ms": 10.0}
    for name, goal in goals.items():
        print(f"  goal {name} ≤ {goal:g}: {figures[name]:.3f} "
              f"{'met' if figures[name] <= goal else f'not met as written (reference p99 noise {noise:.3f})'}")
    for name, goal in goals.items():
        allowed = goal if "p50" in name else goal + noise
        assert figures[name] <= allowed, f"{name} = {figures[name]:.3f} ms > {allowed:.3f} ms"
    # Headers can reach us before the server's code reads its clock again after handing them to the kernel
    # (hdr_after), but never before it started handing them over (hdr_before): our stamp minus hdr_before.
    earliest = min(s.ttfb_err_adj + s.ref_window for s in pooled)
    print(f"  earliest header stamp relative to the server's start of writing them: {earliest:.3f} ms")
    assert earliest > -0.05, "headers seen before the server started sending them"
    assert figures["before_excess_p50_ms"] > 3 * max(figures["reused_excess_p50_ms"], 1.0)
