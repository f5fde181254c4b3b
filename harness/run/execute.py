"""The event-loop side of a run: open-loop dispatch per target, concurrency and pacing, retries, stopping a
dead target, and the attempt records handed to the store writer.

Scheduling is open-loop per target: each request gets a scheduled time from the target's pacing (its
requests-per-minute limit, or none) before anything is sent, and that time is recorded, so client-side
queueing behind the concurrency limit shows up as ``start_ms - sched_ms`` instead of vanishing
(coordinated omission). Per-target concurrency limits, timeouts (connect, read, total) and optional retries
(honouring ``Retry-After``; every attempt recorded) live here once, for every protocol.

A request's retry budget is counted by attempt number, so a resumed run continues a request's budget
rather than granting a fresh one, and waits out the ``Retry-After`` its last stored attempt was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import re
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import httpx

from harness.challenges import Challenge
from harness.errors import HarnessError
from harness.http_pool import ClientPool
from harness.outcomes import NOT_SENT, RunStatus
from harness.providers.base import ErrorKind, Exchange, GenerationRequest, Provider, ProviderError
from harness.providers.registry import get_protocol
from harness.records import AttemptRecord, FinalOutcome, RequestKey
from harness.redaction import Redactor
from harness.run.attempt import AttemptContext, AttemptOutcome, attempt_record, perform_attempt
from harness.run.items import WorkItem, build_request, build_turn_request
from harness.run.options import MAX_RETRY_WAIT_S, RunObserver, RunOptions
from harness.run.sequence import (
    OFF_LOOP_BYTES,
    SEQUENCE_KEY,
    Conversation,
    TurnMark,
    image_reader,
    is_conversation,
    pack_reply_async,
    resume_conversation,
    stored_attempts,
    turns_of,
)
from harness.run.writer import StoreWriter
from harness.spend import TIMEOUT_COST_SOURCE, SpendCaps, SpendGuard, SpendTotals
from harness.store import Store
from harness.store import runs as run_store
from harness.store.core import store_write_error
from harness.targets import Credential, Target
from harness.timing import AttemptClock, now_ns

DEAD_STATUSES = frozenset({400, 401, 403, 404})
"""HTTP statuses that can mark a target as dead: a wrong key (401, 403), a model or route that does not
exist (404), a request the target rejects whatever it says (400 naming the model or a parameter). Never
429, 5xx, timeouts or connection failures: those clear with time."""

_MODEL_OR_PARAMETER = re.compile(
    r"model|parameter|param\b|unknown|unrecognized|unsupported|not supported|does not exist|not found|invalid_api",
    re.IGNORECASE)


@dataclass
class DeadTargetWatch:
    """Decides from a target's first final attempts whether it is dead: the first ``after`` of them all
    failed with the same client error that no retry fixes (same error kind, HTTP status and provider code).

    A 400 counts only when its message names the model or a parameter, and, when the target has requests of
    several challenges, only once it has failed alike on at least two challenges: a 400 about one challenge's
    prompt or image says nothing about the target. Any other first final closes the watch for good.
    """

    after: int
    several_challenges: bool
    seen: int = 0
    signature: tuple[str | None, int | None, str | None] | None = None
    challenges: set[str] = field(default_factory=set)
    closed: bool = False
    first_message: str = ""

    def observe(self, record: AttemptRecord) -> str | None:
        """Take one final attempt (in completion order); the reason when the target is now dead."""
        return self.take(FinalOutcome(record.key.challenge_id, record.ok, record.error_kind, record.http_status,
                                      record.provider_code, record.error_message))

    def take(self, final: FinalOutcome) -> str | None:
        """:meth:`observe` for a stored final attempt."""
        if self.closed or self.after <= 0:
            return None
        signature = (final.error_kind, final.http_status, final.provider_code)
        eligible = (not final.ok and final.error_kind in ("auth", "invalid_request")
                    and final.http_status in DEAD_STATUSES
                    and (final.http_status != 400 or bool(_MODEL_OR_PARAMETER.search(final.error_message or ""))))
        if not eligible or (self.signature is not None and signature != self.signature):
            self.closed = True
            return None
        if self.signature is None:
            self.signature = signature
            self.first_message = (final.error_message or "")[:300]
        self.seen += 1
        self.challenges.add(final.challenge_id)
        if self.seen < self.after:
            return None
        if final.http_status == 400 and self.several_challenges and len(self.challenges) < 2:
            return None
        self.closed = True
        code = f" {final.provider_code}" if final.provider_code else ""
        return (f"stopped after its first {self.seen} requests all failed with HTTP {final.http_status} "
                f"{final.error_kind}{code}: {self.first_message}")


HISTORY_PER_TARGET = 64
"""How many of a target's first stored final attempts a resume replays into its dead-target watch."""


@dataclass
class _TargetRuntime:
    target: Target
    provider: Provider
    semaphore: asyncio.Semaphore
    interval_s: float
    pool: ClientPool
    watch: DeadTargetWatch
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: str | None = None
    not_sent: int = 0


@dataclass
class _Step:
    """A conversation turn being sent: its 1-based index, the number of turns, where its retry budget starts,
    and (once it ended) the attempt number the next turn starts at."""

    turn: int
    turns: int
    first_attempt: int
    """The attempt number of the turn's first attempt: a turn's retry budget counts from it."""
    next_attempt: int = 0


@dataclass
class RunResult:
    """How a run (or one resume of it) ended. ``stopped_targets`` maps each target stopped as dead to the
    reason; ``not_sent`` counts the requests recorded as not sent because of it."""

    run_id: str
    status: str
    attempts: int
    requests: int
    stopped_targets: dict[str, str] = field(default_factory=dict)
    not_sent: int = 0
    spend: SpendTotals | None = None
    """What the run has spent, per target and overall (this process and earlier ones of the same run)."""
    spend_capped: dict[str, str] = field(default_factory=dict)
    """The targets a spend cap stopped, with the reason (also in ``stopped_targets``)."""


def _unsent_clock() -> AttemptClock:
    """The clock of a request never sent: no time points, zero bytes and zero HTTP calls."""
    values: dict[str, object] = {f.name: None if "None" in str(f.type) else 0 for f in fields(AttemptClock)}
    return AttemptClock(**values)  # type: ignore[arg-type]


def _span_ms(outcome: AttemptOutcome) -> float:
    """From an attempt's start to its end (its last byte, or where it gave up), ms."""
    clock = outcome.clock
    span = clock.latency_with_connect_ms if clock.latency_with_connect_ms is not None else clock.latency_ms
    return float(span) if span is not None else 0.0


def _writer_failure(exc: BaseException, db: Path, run_id: str) -> BaseException:
    """The store writer's failure as the one clear error the user sees (the writer wraps the cause)."""
    cause = exc.__cause__ if isinstance(exc, RuntimeError) and exc.__cause__ is not None else exc
    if isinstance(cause, HarnessError):
        return cause
    if isinstance(cause, (sqlite3.Error, OSError)):
        return store_write_error(cause, db, run_id)
    return exc


@dataclass
class Runner:
    """Executes a planned run against the store at ``db_path``."""

    db_path: Path
    options: RunOptions
    observer: RunObserver = field(default_factory=RunObserver)
    images_dir: Path | None = None
    spend: SpendGuard = field(default_factory=lambda: SpendGuard.for_run(SpendCaps()))
    """Admits each attempt under the run's spend caps and counts what it cost (see :mod:`harness.spend`)."""
    _conversations: dict[RequestKey, Conversation] = field(default_factory=dict, init=False, repr=False)
    """Resumed conversations, where each stands (loaded from the store before anything is sent)."""

    async def execute(self, run_id: str, items: Sequence[WorkItem], targets: Sequence[Target],
                      credentials: dict[str, Credential], base_urls: dict[str, str], already_done: int,
                      history: Mapping[str, Sequence[FinalOutcome]] | None = None) -> RunResult:
        """Perform ``items`` and record every attempt; returns when all are final or the run is cancelled.

        ``history``: on a resume, each target's first stored final attempts (:func:`first_finals`), so a
        target stopped before stays stopped and the first final attempts are counted across processes.

        A store write failure stops the run at once (nothing more is sent that could not be recorded) and
        is raised as :class:`~harness.errors.StoreWriteError`."""
        opts = self.options
        items = self._prepare_conversations(run_id, items)
        runtimes: dict[str, _TargetRuntime] = {}
        timeout = httpx.Timeout(connect=opts.connect_timeout_s, read=opts.scaled(opts.timeout_s),
                                write=opts.scaled(opts.timeout_s), pool=None)
        by_target: dict[str, list[WorkItem]] = {}
        for item in items:
            by_target.setdefault(item.key.target, []).append(item)
        for t in targets:
            protocol = get_protocol(t.protocol)
            options = {**t.options, "time_scale": opts.time_scale} if opts.sandbox else t.options
            # Against the sandbox the protocol's own policy for the sandbox URL applies; a real target brings
            # its credential origins and private-network setting.
            policy = None if opts.sandbox else t.origin_policy(base_urls[t.name])
            provider = protocol(base_urls[t.name], credentials[t.name].key, options, policy=policy)
            limit = opts.concurrency
            if opts.respect_limits and t.concurrency is not None:
                limit = min(limit, t.concurrency)
            rpm = opts.rpm if opts.rpm is not None else (t.rpm if opts.respect_limits else None)
            interval = opts.scaled(60.0 / rpm) if rpm else 0.0
            pool = ClientPool(limit, timeout=timeout, http2=opts.http2, follow_redirects=True,
                              trust_env=not opts.sandbox)
            challenges = {i.key.challenge_id for i in by_target.get(t.name, [])}
            watch = DeadTargetWatch(opts.dead_target_after, several_challenges=len(challenges) > 1)
            rt = _TargetRuntime(t, provider, asyncio.Semaphore(limit), interval, pool, watch)
            for final in (history or {}).get(t.name, ()):
                if final.error_kind == NOT_SENT:
                    rt.stop_reason = final.error_message or f"not sent: {t.name} was stopped"
                elif (reason := watch.take(final)) is not None:
                    rt.stop_reason = f"not sent: {t.name} {reason}"
                if rt.stop_reason is not None:
                    rt.stopped.set()
                    break
            runtimes[t.name] = rt
        writer = StoreWriter(self.db_path, self.images_dir,
                             Redactor.for_credentials(credentials[t.name] for t in targets))
        self.observer.on_start(run_id, len(items) + already_done, already_done)
        status: str = RunStatus.FINISHED
        counter = [0]
        try:
            async with contextlib.AsyncExitStack() as stack:
                for rt in runtimes.values():
                    stack.push_async_callback(rt.pool.aclose)
                t0 = now_ns()
                try:
                    async with asyncio.TaskGroup() as group:
                        for name, todo in by_target.items():
                            if runtimes[name].target.mode == "batch":
                                group.create_task(self._batch(run_id, runtimes[name], todo, writer, t0, counter))
                                continue
                            group.create_task(self._dispatch(group, run_id, runtimes[name], todo, writer, t0,
                                                             counter))
                except BaseExceptionGroup as failed:
                    first = failed.exceptions[0]
                    raise _writer_failure(first, self.db_path, run_id) from None
            try:
                writer.close()
            except RuntimeError as exc:
                raise _writer_failure(exc, self.db_path, run_id) from None
        except asyncio.CancelledError:
            status = RunStatus.INTERRUPTED
            raise
        except BaseException:
            status = RunStatus.FAILED
            raise
        finally:
            with contextlib.suppress(RuntimeError):
                writer.close()
            self.observer.on_finish(run_id, status)
        stopped = {name: rt.stop_reason for name, rt in runtimes.items() if rt.stop_reason is not None}
        capped = {name: reason for name, reason in stopped.items() if name in self.spend.stopped}
        return RunResult(run_id, status, counter[0], len(items), stopped,
                         sum(rt.not_sent for rt in runtimes.values()), self.spend.totals(), capped)

    def _prepare_conversations(self, run_id: str, items: Sequence[WorkItem]) -> list[WorkItem]:
        """Multi-turn items ready to send: their challenge's turns (rebuilt from the stored snapshot when it
        was thawed without them) and, for a resumed conversation, where it stands (its completed turns'
        replies read back from the store), so it continues from its last completed turn."""
        talks = [i for i in items if is_conversation(i.challenge)]
        missing = any(not i.challenge.turns for i in talks)
        resumed = {i.key for i in talks if i.first_attempt > 1}
        if not missing and not resumed:
            return list(items)
        out: list[WorkItem] = []
        with Store.open(self.db_path, readonly=True) as store:
            frozen = {str(c["id"]): c for c in run_store.run_challenges(store, run_id)} if missing else {}
            fixed: dict[str, Challenge] = {}
            for item in items:
                if is_conversation(item.challenge) and not item.challenge.turns:
                    challenge = fixed.get(item.challenge.id)
                    if challenge is None:
                        turns = turns_of(item.challenge, frozen.get(item.challenge.id))
                        challenge = fixed[item.challenge.id] = dataclasses.replace(item.challenge, turns=turns)
                    item = dataclasses.replace(item, challenge=challenge)
                out.append(item)
            if resumed:
                frame = run_store.attempts_frame(
                    store, [run_id], columns=["challenge_id", "variant", "target", "sample", "attempt", "ok",
                                              "provider_timings_json"], with_challenge=False)
                rows = []
                for row in frame.itertuples(index=False):
                    key = RequestKey(str(row.challenge_id), str(row.variant), str(row.target), int(row.sample))
                    if key in resumed:
                        rows.append((key, int(row.attempt), bool(row.ok), row.provider_timings_json))
                read = image_reader(store.image_path)
                by_key = {i.key: i for i in out if i.key in resumed}
                for key, attempts in stored_attempts(rows).items():
                    turns = by_key[key].challenge.turns
                    self._conversations[key] = resume_conversation(turns, key.variant, attempts, read)
        return out

    async def _batch(self, run_id: str, rt: _TargetRuntime, todo: list[WorkItem], writer: StoreWriter, t0: int,
                     counter: list[int]) -> None:
        """Send a ``mode: batch`` target's requests as provider batch jobs (see :mod:`harness.batch.runner`)."""
        from harness.batch.protocol import batch_mode
        from harness.batch.runner import BatchTargetRun

        mode = batch_mode(rt.target.protocol)
        if mode is None:
            raise HarnessError(f"target {rt.target.name!r}: protocol {rt.target.protocol!r} has no batch mode")

        def put(record: AttemptRecord) -> None:
            writer.put(record)
            counter[0] += 1
            self.observer.on_attempt(record)
            self._observe_final(rt, record)

        def not_sent(item: WorkItem, reason: str) -> None:
            if rt.stop_reason is None:
                rt.stop_reason = reason
                rt.stopped.set()
                self.observer.on_target_stopped(rt.target.name, reason)
            self._not_sent(run_id, item, item.first_attempt, rt, writer, t0, t0, counter)

        await BatchTargetRun(run_id, rt.target, mode(rt.provider), rt.pool, self.db_path, self.options, self.spend,
                             put, not_sent, t0).run(todo)

    async def _dispatch(self, group: asyncio.TaskGroup, run_id: str, rt: _TargetRuntime, todo: list[WorkItem],
                        writer: StoreWriter, t0: int, counter: list[int]) -> None:
        for i, item in enumerate(todo):
            sched_ns = t0 + int(i * rt.interval_s * 1e9)
            if not rt.stopped.is_set():
                delay = (sched_ns - now_ns()) / 1e9
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(rt.stopped.wait(), timeout=delay)
            if not rt.stopped.is_set():
                await rt.semaphore.acquire()
                if not rt.stopped.is_set():
                    group.create_task(self._request(run_id, item, rt, writer, t0, sched_ns, counter))
                    continue
                rt.semaphore.release()
            self._not_sent(run_id, item, item.first_attempt, rt, writer, t0, sched_ns, counter)

    def _not_sent(self, run_id: str, item: WorkItem, attempt: int, rt: _TargetRuntime, writer: StoreWriter,
                  t0: int, sched_ns: int, counter: list[int]) -> None:
        """Record ``item`` as a final attempt that was never sent (its target was stopped)."""
        target = rt.target
        record = AttemptRecord(
            run_id=run_id, key=item.key, model=target.model_name, provider=target.provider,
            protocol=target.protocol, attempt=attempt, final=True, ok=False, started_at=time.time(),
            sched_ms=(sched_ns - t0) / 1e6, start_ms=(now_ns() - t0) / 1e6, clock=_unsent_clock(),
            error_kind=NOT_SENT, error_message=rt.stop_reason, region=self.options.region,
        )
        writer.put(record)
        rt.not_sent += 1
        counter[0] += 1
        self.observer.on_attempt(record)

    def _stop_for_spend(self, rt: _TargetRuntime) -> None:
        """Stop ``rt``'s target: its next request could take the run past a spend cap."""
        if rt.stop_reason is None:
            rt.stop_reason = self.spend.stopped[rt.target.name]
            rt.stopped.set()
            self.observer.on_target_stopped(rt.target.name, rt.stop_reason)

    def _observe_final(self, rt: _TargetRuntime, record: AttemptRecord) -> None:
        if rt.stop_reason is not None:
            return
        reason = rt.watch.observe(record)
        if reason is not None:
            rt.stop_reason = f"not sent: {rt.target.name} {reason}"
            rt.stopped.set()
            self.observer.on_target_stopped(rt.target.name, reason)

    async def _request(self, run_id: str, item: WorkItem, rt: _TargetRuntime, writer: StoreWriter, t0: int,
                       sched_ns: int, counter: list[int]) -> None:
        holding = True
        try:
            conversation = self._conversations.get(item.key) if is_conversation(item.challenge) else None
            wait_ms: float | None = None
            continuing = conversation is not None and bool(conversation.history) and not conversation.retrying
            if (item.not_before is not None and not continuing
                    and (delay := item.not_before - time.time()) > 0):
                rt.semaphore.release()
                holding = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(rt.stopped.wait(), timeout=delay)
                await rt.semaphore.acquire()
                holding = True
                wait_ms = delay * 1000.0
            if is_conversation(item.challenge):
                await self._conversation(run_id, item, rt, writer, t0, sched_ns, counter, wait_ms,
                                         conversation or Conversation(item.challenge.turns))
                return
            request = build_request(item, rt.target, self.options)
            await self._turn(run_id, item, rt, writer, t0, sched_ns, counter, request, item.first_attempt, wait_ms,
                             None)
        finally:
            if holding:
                rt.semaphore.release()

    async def _conversation(self, run_id: str, item: WorkItem, rt: _TargetRuntime, writer: StoreWriter, t0: int,
                            sched_ns: int, counter: list[int], wait_ms: float | None,
                            conversation: Conversation) -> None:
        """Send a multi-turn challenge's turns in order, each with the conversation so far; the first turn
        that fails for good ends it (see :mod:`harness.run.sequence`)."""
        attempt = item.first_attempt
        first_ns: list[int | None] = [None]
        turns = conversation.turns
        while not conversation.done:
            index = conversation.next_turn
            request = build_turn_request(item, rt.target, self.options, index, conversation.history)
            step = _Step(index + 1, len(turns), conversation.turn_first_attempt or attempt)
            conversation.turn_first_attempt = None
            outcome = await self._turn(run_id, item, rt, writer, t0, sched_ns, counter, request, attempt, wait_ms,
                                       step, first_ns)
            if outcome is None or outcome.error is not None or outcome.result is None:
                return
            reply = outcome.result.reply or {}
            conversation.history.append(Exchange(request.prompt, request.references, reply))
            attempt = step.next_attempt
            wait_ms = None

    async def _turn(self, run_id: str, item: WorkItem, rt: _TargetRuntime, writer: StoreWriter, t0: int,
                    sched_ns: int, counter: list[int], request: GenerationRequest, attempt: int,
                    wait_ms: float | None, step: _Step | None,
                    first_ns_box: list[int | None] | None = None) -> AttemptOutcome | None:
        """Perform one request (a single challenge, or one turn of a conversation) with its retries and record
        every attempt; returns the outcome of its last attempt, or ``None`` when it was not sent.

        A conversation's attempt is final only when it ends the conversation: the last turn's answer, or a
        turn that failed with no retry left. ``first_ns_box`` carries the conversation's first start across
        its turns, so time to image on the final attempt spans every turn."""
        first_box: list[int | None] = first_ns_box if first_ns_box is not None else [None]
        while True:
            if rt.stopped.is_set():
                self._not_sent(run_id, item, attempt, rt, writer, t0, sched_ns, counter)
                return None
            reservation = await self.spend.admit(rt.target, request)
            if reservation is None:
                self._stop_for_spend(rt)
                self._not_sent(run_id, item, attempt, rt, writer, t0, sched_ns, counter)
                return None
            try:
                async with rt.pool.lease() as client:
                    outcome, record = await self._attempt(run_id, item, rt, client, request, attempt, t0,
                                                          sched_ns, wait_ms)
            except BaseException:
                self.spend.settle(reservation, 0.0, timed_out=True)  # it may have been sent: its bound
                raise
            error = outcome.error
            counted = self.spend.settle(reservation, record.cost_usd,
                                        timed_out=error is not None and error.kind is ErrorKind.TIMEOUT)
            if counted != record.cost_usd:
                record.cost_usd, record.cost_source = counted, TIMEOUT_COST_SOURCE
            if first_box[0] is None:
                first_box[0] = outcome.t_start
            tries = attempt - step.first_attempt + 1 if step is not None else attempt
            retry = (error is not None and error.kind.retryable and tries <= self.options.retries
                     and not rt.stopped.is_set())
            record.final = not retry
            if step is not None:
                record.final = not retry and (error is not None or step.turn == step.turns)
                await self._mark_turn(record, outcome, step, turn_final=not retry)
            if record.final:
                if item.first_started_at is not None:
                    before_ms = (record.started_at - item.first_started_at) * 1000.0
                else:
                    before_ms = (outcome.t_start - (first_box[0] or outcome.t_start)) / 1e6
                record.time_to_image_ms = max(before_ms, 0.0) + _span_ms(outcome)
            writer.put(record)
            counter[0] += 1
            self.observer.on_attempt(record)
            if record.final:
                self._observe_final(rt, record)
            if not retry:
                if step is not None:
                    step.next_attempt = attempt + 1
                return outcome
            assert error is not None
            wait_s = self.options.scaled(retry_wait_s(error, tries))
            wait_ms = wait_s * 1000.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rt.stopped.wait(), timeout=wait_s)
            attempt += 1

    @staticmethod
    async def _mark_turn(record: AttemptRecord, outcome: AttemptOutcome, step: _Step, *, turn_final: bool) -> None:
        """Record the attempt's place in its conversation and, for a completed turn, the model's reply with
        its images by hash (the store keeps their bytes)."""
        reply = None
        if outcome.error is None and outcome.result is not None and outcome.result.reply is not None:
            size = sum(len(image.data) for image in outcome.images)
            if size > OFF_LOOP_BYTES:
                stored = await asyncio.to_thread(lambda: [hashlib.sha256(i.data).hexdigest() for i in outcome.images])
            else:
                stored = [hashlib.sha256(image.data).hexdigest() for image in outcome.images]
            reply = await pack_reply_async(outcome.result.reply, stored, size)
        mark = TurnMark(step.turn, step.turns, turn_final, reply)
        record.provider_timings = {**record.provider_timings, SEQUENCE_KEY: mark.to_json()}

    async def _attempt(self, run_id: str, item: WorkItem, rt: _TargetRuntime, client: httpx.AsyncClient,
                       request: GenerationRequest, attempt: int, t0: int, sched_ns: int,
                       wait_ms: float | None) -> tuple[AttemptOutcome, AttemptRecord]:
        started_at = time.time()
        outcome = await perform_attempt(rt.provider, request, client, self.options.scaled(self.options.timeout_s),
                                        strict_size=self.options.strict_size, limits=self.options.limits)
        context = AttemptContext(run_id=run_id, key=item.key, target=rt.target, attempt=attempt,
                                 started_at=started_at, sched_ms=(sched_ns - t0) / 1e6,
                                 start_ms=(outcome.t_start - t0) / 1e6, retry_wait_ms=wait_ms,
                                 region=self.options.region)
        return outcome, attempt_record(outcome, context)


def retry_wait_s(error: ProviderError, attempt: int) -> float:
    """Unscaled seconds to wait after failed attempt number ``attempt`` (1-based): the provider's
    ``Retry-After`` when it gave one, else exponential backoff (1 s, 2 s, 4 s ...), at most
    :data:`MAX_RETRY_WAIT_S`."""
    return retry_wait_from(error.retry_after_s, attempt)


def retry_wait_from(retry_after_s: float | None, attempt: int) -> float:
    """:func:`retry_wait_s` from a stored ``Retry-After`` (seconds, or ``None``) and attempt number."""
    return min(retry_after_s if retry_after_s is not None else 2.0 ** (attempt - 1), MAX_RETRY_WAIT_S)
