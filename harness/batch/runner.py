"""One batch target's part of a run: its requests go out as one or a few bounded jobs, each persisted the
moment the provider accepts it, followed to its end and turned into one final attempt per request.

* **Submit.** The target's requests are split into jobs of at most its ``batch_max_requests`` (or the
  provider's limit). Before a job is submitted the spend guard reserves the job's whole bound (every request
  at its most); requests past a cap are recorded as not sent. A job the provider refuses fails each of its
  requests as a final attempt with the provider's error (nothing was submitted, nothing billed).
* **Persist.** The job id, its requests' line keys and its bound go to the store (:mod:`harness.store.batch_jobs`)
  as soon as the provider answers, before the first poll.
* **Follow.** The job is polled every ``batch_poll_s`` seconds (time-scaled in the sandbox) until it is
  terminal; when it is, its results are collected and each request gets its final attempt: the image(s) as the
  interactive endpoint's would be checked, or the line's error. An expired, failed or cancelled job fails every
  request it returned nothing for, with the job's reason.
* **Resume.** Every stored job of the run that still carries a request without a final attempt is followed
  again, never resubmitted; only requests in no job are submitted.

A batch request's latency is its job's turnaround: from the submit being acknowledged to all the job's results
being in hand (ms, wall clock, so it spans a stopped process). The job's calls (upload, create, polls,
downloads) are the request's HTTP calls; submit, queue and run phases are as far as polls observed them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import httpx

from harness.batch.model import JobState, JobStatus, LineOutcome
from harness.batch.protocol import BatchProtocol
from harness.errors import HarnessError
from harness.http_pool import ClientPool
from harness.images import CheckedImage, SizeCheck, check_images_async, size_asked
from harness.providers.base import ErrorKind, GenerationRequest, ProviderError
from harness.records import AttemptRecord, RequestKey
from harness.run.attempt import NO_SIZE, AttemptContext, AttemptOutcome, attempt_record
from harness.run.items import WorkItem, build_request
from harness.run.options import RunOptions
from harness.spend import TIMEOUT_COST_SOURCE, Reservation, SpendGuard
from harness.store import Store, batch_jobs
from harness.targets import Target
from harness.timing import AttemptClock, now_ns

MAX_POLL_FAILURES = 10
"""Polls in a row that may fail (connection, 5xx, 429) before the run stops; the job stays stored and
``--resume`` follows it again."""

BATCH_TIMINGS_KEY = "batch"
"""Key under an attempt's ``provider_timings`` for its job: ``{"job_id", "state", "turnaround_ms"}``."""


@dataclass
class _Job:
    """A job being followed: its id, its lines (key -> request and work item), when it was acknowledged."""

    job_id: str
    lines: dict[str, tuple[GenerationRequest, WorkItem, int]]
    submitted_at: float
    reservation: Reservation | None
    start_ms: float
    calls: int = 0
    submit_ms: float | None = None
    pending_seen: float | None = None
    running_seen: float | None = None
    polls: list[float] = field(default_factory=list)


def _clock(**values: float | int | None) -> AttemptClock:
    base: dict[str, object] = {f.name: None if "None" in str(f.type) else 0 for f in fields(AttemptClock)}
    base.update(values)
    return AttemptClock(**base)  # type: ignore[arg-type]


@dataclass
class BatchTargetRun:
    """Runs one batch target's requests of one run (see the module docstring)."""

    run_id: str
    target: Target
    mode: BatchProtocol
    pool: ClientPool
    db_path: Path
    options: RunOptions
    spend: SpendGuard
    put: Callable[[AttemptRecord], None]
    """Hands a final attempt to the store writer (and counts it, and tells the observer)."""
    not_sent: Callable[[WorkItem, str], None]
    """Records a request as never sent, with the reason (a spend cap)."""
    t0: int = field(default_factory=now_ns)

    async def run(self, items: Sequence[WorkItem]) -> None:
        by_key = {item.key: item for item in items}
        stored = await asyncio.to_thread(self._stored_jobs)
        followed: list[_Job] = []
        covered: set[RequestKey] = set()
        for row in stored:
            lines = {line: (build_request(by_key[key], self.target, self.options), by_key[key], attempt)
                     for line, (key, attempt) in row.keys.items() if key in by_key}
            if not lines:
                continue
            covered.update(item.key for _, item, _ in lines.values())
            bound = sum(self.spend.bound(self.target, request) for request, _, _ in lines.values())
            held = self.spend.ledger.hold(self.target.name, bound)
            followed.append(_Job(row.job_id, lines, row.submitted_at, held, 0.0))
        fresh = [item for item in items if item.key not in covered]
        size = min(self.target.batch_max_requests or self.mode.max_requests, self.mode.max_requests)
        try:
            async with asyncio.TaskGroup() as group:
                for job in followed:
                    group.create_task(self._follow(job))
                for start in range(0, len(fresh), size):
                    job_or_none = await self._submit(fresh[start:start + size], start // size)
                    if job_or_none is not None:
                        group.create_task(self._follow(job_or_none))
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None

    def _stored_jobs(self) -> list[batch_jobs.BatchJobRow]:
        with Store.open(self.db_path, readonly=True) as store:
            return batch_jobs.jobs_of(store, [self.run_id], target=self.target.name)

    async def _submit(self, chunk: list[WorkItem], index: int) -> _Job | None:
        requests = [build_request(item, self.target, self.options) for item in chunk]
        requests = [r if not r.stream else _unstreamed(r) for r in requests]
        reservation, admitted = await self.spend.admit_job(self.target, requests)
        reason = self.spend.stopped.get(self.target.name, f"not sent: {self.target.name} was stopped")
        for item in chunk[admitted:]:
            self.not_sent(item, reason)
        if reservation is None:
            return None
        lines = {f"r{i:05d}": (requests[i], chunk[i], chunk[i].first_attempt) for i in range(admitted)}
        name = f"{self.run_id}-{self.target.name}-{index}"
        t_start = now_ns()
        try:
            async with self.pool.lease() as client:
                job_id = await self.mode.submit(client, {k: r for k, (r, _, _) in lines.items()}, name)
        except (ProviderError, httpx.HTTPError) as exc:
            self.spend.settle(reservation, 0.0, timed_out=False)
            error = exc if isinstance(exc, ProviderError) else ProviderError(
                ErrorKind.CONNECTION, f"submitting the batch job failed: {type(exc).__name__}: {exc}")
            error.message = f"batch job not accepted: {error.message}"
            for request, item, attempt in lines.values():
                self._record(None, request, item, attempt, LineOutcome(error=error), state="not_submitted",
                             turnaround_ms=None, started_at=time.time(), start_ms=(t_start - self.t0) / 1e6)
            return None
        submitted_at = time.time()
        if self.mode.provider.redactor.contains(job_id):
            self.spend.settle(reservation, reservation.bound_usd, timed_out=True)  # it may run and be billed
            error = ProviderError(ErrorKind.BAD_OUTPUT, "the provider named the batch job with a text carrying this "
                                  "target's API key; the job is not stored or followed", provider_code="key_in_output")
            for request, item, attempt in lines.values():
                self._record(None, request, item, attempt, LineOutcome(error=error), state="refused_job_id",
                             turnaround_ms=None, started_at=submitted_at, start_ms=(t_start - self.t0) / 1e6,
                             at_bound=self.spend.bound(self.target, request))
            return None
        keys = {line: (item.key, attempt) for line, (_, item, attempt) in lines.items()}
        bound = reservation.bound_usd
        await asyncio.to_thread(self._persist, job_id, submitted_at, keys, bound)
        return _Job(job_id, lines, submitted_at, reservation, (t_start - self.t0) / 1e6, calls=2,
                    submit_ms=(now_ns() - t_start) / 1e6)

    def _persist(self, job_id: str, submitted_at: float, keys: dict[str, tuple[RequestKey, int]],
                 bound: float) -> None:
        with Store.open(self.db_path) as store:
            batch_jobs.record_submitted(store, self.run_id, job_id, self.target.name, self.target.protocol,
                                        submitted_at, keys, bound)

    def _save_state(self, job_id: str, state: str, turnaround_ms: float | None) -> None:
        with Store.open(self.db_path) as store:
            if turnaround_ms is None:
                batch_jobs.set_state(store, self.run_id, job_id, state)
            else:
                batch_jobs.mark_collected(store, self.run_id, job_id, state, time.time(), turnaround_ms)

    async def _follow(self, job: _Job) -> None:
        interval = self.options.scaled(self.target.batch_poll_s)
        failures = 0
        last_state: str | None = None
        while True:
            try:
                async with self.pool.lease() as client:
                    job.calls += 1
                    status = await self.mode.poll(client, job.job_id)
            except (ProviderError, httpx.HTTPError) as exc:
                failures += 1
                if isinstance(exc, ProviderError) and exc.http_status == 404:
                    await self._lost(job, exc)
                    return
                if isinstance(exc, ProviderError) and not exc.kind.retryable:
                    raise HarnessError(f"batch job {job.job_id} of {self.target.name} cannot be polled: {exc}; it "
                                       f"is kept in the store: `harness run --resume {self.run_id}` collects it") \
                        from None
                if failures >= MAX_POLL_FAILURES:
                    raise HarnessError(
                        f"batch job {job.job_id} of {self.target.name} could not be polled {failures} times in a "
                        f"row ({exc}); it is kept in the store: `harness run --resume {self.run_id}` collects it"
                    ) from None
                await asyncio.sleep(interval)
                continue
            failures = 0
            now = time.time()
            job.polls.append(now)
            if status.state is JobState.RUNNING and job.running_seen is None:
                job.running_seen = now
            if status.provider_state != last_state:
                last_state = status.provider_state
                if not status.state.terminal:
                    await asyncio.to_thread(self._save_state, job.job_id, status.provider_state, None)
            if status.state.terminal:
                await self._collect(job, status)
                return
            await asyncio.sleep(interval)

    async def _lost(self, job: _Job, error: ProviderError) -> None:
        """The provider no longer knows the job (404): each of its requests fails with that answer (a sandbox
        keeps no job across processes, so a sandboxed run resumed in a new process ends here)."""
        error.message = f"batch job {job.job_id} is unknown to the provider: {error.message}"
        status = JobStatus(JobState.FAILED, "lost", message=error.message)
        await self._collect(job, status, {line: LineOutcome(error=error) for line in job.lines})

    async def _collect(self, job: _Job, status: JobStatus,
                       outcomes: dict[str, LineOutcome] | None = None) -> None:
        t_fetch = now_ns()
        if outcomes is None:
            async with self.pool.lease() as client:
                outcomes = await self.mode.collect(client, job.job_id, status, list(job.lines))
        job.calls += int(status.results_ref is not None) + int(status.errors_ref is not None)
        fetch_ms = (now_ns() - t_fetch) / 1e6
        turnaround_ms = max(0.0, (time.time() - job.submitted_at) * 1000.0)
        total = 0.0
        records: list[AttemptRecord] = []
        for line, (request, item, attempt) in job.lines.items():
            outcome = outcomes.get(line) or LineOutcome(error=ProviderError(
                ErrorKind.SERVER_ERROR, f"batch {job.job_id} returned nothing for this request"))
            record = await self._checked_record(job, request, item, attempt, outcome, status, turnaround_ms,
                                                fetch_ms)
            total += record.cost_usd
            records.append(record)
        if job.reservation is not None:
            self.spend.settle(job.reservation, total, timed_out=False)
        for record in records:
            self.put(record)
        await asyncio.to_thread(self._save_state, job.job_id, status.provider_state, turnaround_ms)

    async def _checked_record(self, job: _Job, request: GenerationRequest, item: WorkItem, attempt: int,
                              outcome: LineOutcome, status: JobStatus, turnaround_ms: float,
                              fetch_ms: float) -> AttemptRecord:
        if outcome.result is not None:
            asked = size_asked(request.size, request.aspect_ratio, outcome.result.expected_size)
            try:
                checked, size = await check_images_async(outcome.result.images, request.n, asked,
                                                         strict=self.options.strict_size,
                                                         max_pixels=self.options.limits.max_image_pixels)
            except ProviderError as error:
                outcome = LineOutcome(error=error, nbytes=outcome.nbytes)
            else:
                return self._record(job, request, item, attempt, outcome, status.provider_state, turnaround_ms,
                                    job.submitted_at, job.start_ms, checked=checked, size=size, fetch_ms=fetch_ms)
        return self._record(job, request, item, attempt, outcome, status.provider_state, turnaround_ms,
                            job.submitted_at, job.start_ms, fetch_ms=fetch_ms)

    def _record(self, job: _Job | None, request: GenerationRequest, item: WorkItem, attempt: int,
                outcome: LineOutcome, state: str, turnaround_ms: float | None, started_at: float, start_ms: float,
                *, checked: list[CheckedImage] | None = None, size: SizeCheck = NO_SIZE,
                fetch_ms: float | None = None, at_bound: float | None = None) -> AttemptRecord:
        if job is not None and turnaround_ms is not None:
            running = job.running_seen
            clock = _clock(latency_ms=turnaround_ms, latency_with_connect_ms=turnaround_ms, submit_ms=job.submit_ms,
                           queue_ms=(running - job.submitted_at) * 1000.0 if running is not None else None,
                           run_ms=(job.polls[-1] - running) * 1000.0 if running is not None and job.polls else None,
                           fetch_ms=fetch_ms, http_calls=job.calls, bytes_received=outcome.nbytes,
                           poll_interval_ms=self.options.scaled(self.target.batch_poll_s) * 1000.0)
        else:
            clock = _clock(http_calls=2)
        outcome_ = AttemptOutcome(outcome.result if outcome.error is None else None, list(checked or []),
                                  outcome.error, clock, 0, [], size)
        context = AttemptContext(run_id=self.run_id, key=item.key, target=self.target, attempt=attempt,
                                 started_at=started_at, sched_ms=start_ms, start_ms=start_ms,
                                 region=self.options.region)
        record = attempt_record(outcome_, context)
        record.final = True
        if at_bound is not None:
            record.cost_usd, record.cost_source = at_bound, TIMEOUT_COST_SOURCE
        record.time_to_image_ms = turnaround_ms
        record.provider_timings = {**record.provider_timings, BATCH_TIMINGS_KEY: {
            "job_id": job.job_id if job is not None else None, "state": state, "turnaround_ms": turnaround_ms}}
        if job is None:
            self.put(record)
        return record


def _unstreamed(request: GenerationRequest) -> GenerationRequest:
    """A batch line is never streamed."""
    return dataclasses.replace(request, stream=False)
