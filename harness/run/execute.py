"""The event-loop side of a run: open-loop dispatch per target, concurrency and pacing, retries, and the
attempt records handed to the store writer.

Scheduling is open-loop per target: each request gets a scheduled time from the target's pacing (its
requests-per-minute limit, or none) before anything is sent, and that time is recorded, so client-side
queueing behind the concurrency limit shows up as ``start_ms - sched_ms`` instead of vanishing
(coordinated omission). Per-target concurrency limits, timeouts (connect, read, total) and optional retries
(honouring ``Retry-After``; every attempt recorded) live here once, for every protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from harness.http_pool import ClientPool
from harness.providers.base import GenerationRequest, Provider, ProviderError
from harness.providers.registry import get_protocol
from harness.records import AttemptRecord
from harness.run.attempt import AttemptContext, attempt_record, perform_attempt
from harness.run.items import WorkItem, build_request
from harness.run.options import MAX_RETRY_WAIT_S, RunObserver, RunOptions
from harness.run.writer import StoreWriter
from harness.targets import Credential, Target
from harness.timing import now_ns


@dataclass
class _TargetRuntime:
    target: Target
    provider: Provider
    semaphore: asyncio.Semaphore
    interval_s: float
    pool: ClientPool


@dataclass
class RunResult:
    run_id: str
    status: str
    attempts: int
    requests: int


@dataclass
class Runner:
    """Executes a planned run against the store at ``db_path``."""

    db_path: Path
    options: RunOptions
    observer: RunObserver = field(default_factory=RunObserver)
    images_dir: Path | None = None

    async def execute(self, run_id: str, items: Sequence[WorkItem], targets: Sequence[Target],
                      credentials: dict[str, Credential], base_urls: dict[str, str], already_done: int) -> RunResult:
        """Perform ``items`` and record every attempt; returns when all are final or the run is cancelled."""
        opts = self.options
        runtimes: dict[str, _TargetRuntime] = {}
        timeout = httpx.Timeout(connect=opts.connect_timeout_s, read=opts.scaled(opts.timeout_s),
                                write=opts.scaled(opts.timeout_s), pool=None)
        for t in targets:
            protocol = get_protocol(t.protocol)
            options = {**t.options, "time_scale": opts.time_scale} if opts.sandbox else t.options
            provider = protocol(base_urls[t.name], credentials[t.name].key, options)
            limit = opts.concurrency
            if opts.respect_limits and t.concurrency is not None:
                limit = min(limit, t.concurrency)
            rpm = opts.rpm if opts.rpm is not None else (t.rpm if opts.respect_limits else None)
            interval = opts.scaled(60.0 / rpm) if rpm else 0.0
            pool = ClientPool(limit, timeout=timeout, http2=opts.http2, follow_redirects=True,
                              trust_env=not opts.sandbox)
            runtimes[t.name] = _TargetRuntime(t, provider, asyncio.Semaphore(limit), interval, pool)
        writer = StoreWriter(self.db_path, self.images_dir)
        self.observer.on_start(run_id, len(items) + already_done, already_done)
        status = "finished"
        attempts = 0
        try:
            async with contextlib.AsyncExitStack() as stack:
                for rt in runtimes.values():
                    stack.push_async_callback(rt.pool.aclose)
                t0 = now_ns()
                by_target: dict[str, list[WorkItem]] = {}
                for item in items:
                    by_target.setdefault(item.key.target, []).append(item)
                counter = [0]

                async def dispatch(name: str, todo: list[WorkItem]) -> None:
                    rt = runtimes[name]
                    tasks: set[asyncio.Task[None]] = set()
                    failures: list[BaseException] = []

                    def finished(task: asyncio.Task[None]) -> None:
                        tasks.discard(task)
                        if not task.cancelled() and task.exception() is not None:
                            failures.append(task.exception())  # type: ignore[arg-type]
                    for i, item in enumerate(todo):
                        sched_ns = t0 + int(i * rt.interval_s * 1e9)
                        delay = (sched_ns - now_ns()) / 1e9
                        if delay > 0:
                            await asyncio.sleep(delay)
                        await rt.semaphore.acquire()
                        task = asyncio.create_task(self._request(run_id, item, rt, writer, t0, sched_ns, counter))
                        tasks.add(task)
                        task.add_done_callback(finished)
                    if tasks:
                        await asyncio.gather(*tasks)
                    if failures:
                        raise failures[0]

                await asyncio.gather(*(dispatch(n, todo) for n, todo in by_target.items()))
                attempts = counter[0]
        except asyncio.CancelledError:
            status = "interrupted"
            raise
        except BaseException:
            status = "failed"
            raise
        finally:
            writer.close()
            self.observer.on_finish(run_id, status)
        return RunResult(run_id, status, attempts, len(items))

    async def _request(self, run_id: str, item: WorkItem, rt: _TargetRuntime, writer: StoreWriter, t0: int,
                       sched_ns: int, counter: list[int]) -> None:
        try:
            request = build_request(item, rt.target, self.options)
            attempt = item.first_attempt
            wait_ms: float | None = None
            while True:
                async with rt.pool.lease() as client:
                    record, error = await self._attempt(run_id, item, rt, client, request, attempt, t0, sched_ns,
                                                        wait_ms)
                retry = (error is not None and error.kind.retryable
                         and attempt - item.first_attempt < self.options.retries)
                record.final = not retry
                writer.put(record)
                counter[0] += 1
                self.observer.on_attempt(record)
                if not retry:
                    return
                assert error is not None
                wait_s = min(error.retry_after_s if error.retry_after_s is not None
                             else 2.0 ** (attempt - item.first_attempt), MAX_RETRY_WAIT_S)
                wait_ms = self.options.scaled(wait_s) * 1000.0
                await asyncio.sleep(self.options.scaled(wait_s))
                attempt += 1
        finally:
            rt.semaphore.release()

    async def _attempt(self, run_id: str, item: WorkItem, rt: _TargetRuntime, client: httpx.AsyncClient,
                       request: GenerationRequest, attempt: int, t0: int, sched_ns: int,
                       wait_ms: float | None) -> tuple[AttemptRecord, ProviderError | None]:
        started_at = time.time()
        outcome = await perform_attempt(rt.provider, request, client, self.options.scaled(self.options.timeout_s))
        context = AttemptContext(run_id=run_id, key=item.key, target=rt.target, attempt=attempt,
                                 started_at=started_at, sched_ms=(sched_ns - t0) / 1e6,
                                 start_ms=(outcome.t_start - t0) / 1e6, retry_wait_ms=wait_ms)
        return attempt_record(outcome, context), outcome.error
