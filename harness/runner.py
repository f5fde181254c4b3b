"""Runs challenges x targets x samples against real APIs or the sandbox, and records every attempt.

Scheduling is open-loop per target: each request gets a scheduled time from the target's pacing (its
requests-per-minute limit, or none) before anything is sent, and that time is recorded, so client-side
queueing behind the concurrency limit shows up as ``start_ms - sched_ms`` instead of vanishing
(coordinated omission). Per-target concurrency limits, timeouts (connect, read, total) and optional retries
(honouring ``Retry-After``; every attempt recorded) live here once, for every protocol.

Persistence: a writer thread commits attempts in small transactions (image files first, then the rows), so a
``kill -9`` loses at most attempts not yet committed, and ``resume`` redoes exactly the requests without a
final attempt — never one twice, never one skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import queue
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from harness import __version__
from harness.challenges import Captions, Challenge, Params
from harness.errors import ConfigError
from harness.http_pool import ClientPool
from harness.images import CheckedImage, check_images_async
from harness.pricing import Cost, failure_cost, success_cost
from harness.providers.base import (
    ChallengeKind,
    ErrorKind,
    GenerationRequest,
    GenerationResult,
    InputImage,
    Provider,
    ProviderError,
)
from harness.providers.registry import get_protocol
from harness.records import AttemptRecord, OutputRecord, RequestKey
from harness.store import Store
from harness.store import runs as run_store
from harness.targets import Credential, Target
from harness.timing import AttemptClock, CallTiming, TimedHttp, now_ns, quiet_heap, summarize

DEFAULT_TIMEOUT_S = 300.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
MAX_RETRY_WAIT_S = 120.0


@dataclass(frozen=True)
class RunOptions:
    """How to run. Durations in seconds; in sandbox mode every simulated wait and timeout (total and read
    timeouts, pacing, retry waits) is multiplied by ``time_scale`` so a scaled run behaves like the real-time
    one, only faster. The connect timeout is not scaled: connecting to loopback is real, not simulated."""

    samples: int = 1
    concurrency: int = 4
    timeout_s: float = DEFAULT_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    retries: int = 0
    stream: bool | None = None
    rpm: float | None = None
    respect_limits: bool = True
    variants: tuple[str, ...] = ()
    shard: tuple[int, int] | None = None
    sandbox: bool = False
    time_scale: float = 1.0
    sandbox_profile: str | None = None
    sandbox_faults: bool = True
    seed: int = 0
    label: str | None = None
    http2: bool = False

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale if self.sandbox else seconds


@dataclass(frozen=True)
class WorkItem:
    """One logical request to perform."""

    key: RequestKey
    challenge: Challenge
    target: Target
    first_attempt: int = 1


class RunObserver:
    """Receives progress events; the CLI renders them (Rich bar or plain lines)."""

    def on_start(self, run_id: str, total: int, already_done: int) -> None:
        """The run starts with ``total`` requests, ``already_done`` of them finished earlier (resume)."""

    def on_attempt(self, record: AttemptRecord) -> None:
        """An attempt finished (final or about to be retried)."""

    def on_finish(self, run_id: str, status: str) -> None:
        """The run ended with ``status`` (finished, interrupted, failed)."""


def new_run_id(now: datetime | None = None) -> str:
    """``20261121T101500Z-3f2a`` style: sortable UTC time plus a random suffix."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(2)}"


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _shard_of(key: RequestKey, count: int) -> int:
    text = f"{key.challenge_id}\x00{key.variant}\x00{key.target}\x00{key.sample}"
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) % count


def unsupported_pairs(challenges: Sequence[Challenge], targets: Sequence[Target]) -> list[tuple[str, str]]:
    """(challenge id, target name) pairs skipped because the target cannot do the challenge's kind."""
    return [(c.id, t.name) for c in challenges for t in targets if not t.supports(c.kind)]


def plan_items(challenges: Sequence[Challenge], targets: Sequence[Target], options: RunOptions) -> list[WorkItem]:
    """Every (challenge, variant, target, sample) of the run, filtered by variants, shard and the kinds each
    target supports (see :func:`unsupported_pairs`)."""
    items: list[WorkItem] = []
    for challenge in challenges:
        variants = [v for v in challenge.prompts if not options.variants or v in options.variants]
        for variant in variants:
            for target in targets:
                if not target.supports(challenge.kind):
                    continue
                for sample in range(options.samples):
                    key = RequestKey(challenge.id, variant, target.name, sample)
                    if options.shard and _shard_of(key, options.shard[1]) != options.shard[0]:
                        continue
                    items.append(WorkItem(key, challenge, target))
    if options.variants and not items:
        raise ConfigError(f"no challenge has variant(s) {', '.join(options.variants)}")
    return items


def build_request(item: WorkItem, target: Target, options: RunOptions) -> GenerationRequest:
    """The protocol-neutral request for a work item."""
    ch = item.challenge
    params: Params = ch.params
    seed = None if params.seed is None else params.seed + item.key.sample
    stream = target.stream if options.stream is None else options.stream
    return GenerationRequest(
        model_id=target.model, prompt=ch.prompts[item.key.variant], kind=ch.kind, references=ch.references,
        mask=ch.mask, aspect_ratio=params.aspect_ratio, size=params.size, seed=seed, n=params.n, stream=stream,
    )


class StoreWriter:
    """Commits attempts from a dedicated thread (one connection, small transactions, images first)."""

    def __init__(self, db_path: Path, images_dir: Path | None) -> None:
        self._queue: queue.Queue[AttemptRecord | None] = queue.Queue()
        self._db_path = db_path
        self._images_dir = images_dir
        self.error: BaseException | None = None
        self.committed = 0
        self._thread = threading.Thread(target=self._run, name="harness-store-writer", daemon=True)
        self._thread.start()

    def put(self, record: AttemptRecord) -> None:
        if self.error is not None:
            raise RuntimeError(f"store writer failed: {self.error}") from self.error
        self._queue.put(record)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"store writer failed: {self.error}") from self.error

    def _run(self) -> None:
        try:
            store = Store.open(self._db_path, images_dir=self._images_dir)
        except BaseException as exc:
            self.error = exc
            return
        try:
            done = False
            while not done:
                batch: list[AttemptRecord] = []
                item = self._queue.get()
                while True:
                    if item is None:
                        done = True
                        break
                    batch.append(item)
                    if len(batch) >= 256:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    for record in batch:
                        record.outputs = [replace(out, sha256=store.put_image(data, out.ext, out.sha256 or None))
                                          for out, data in zip(record.outputs, record.image_bytes, strict=True)]
                        record.image_bytes = []
                    run_store.insert_attempts(store, batch)
                    self.committed += len(batch)
        except BaseException as exc:
            self.error = exc
            traceback.print_exc(file=sys.stderr)
        finally:
            store.close()


@dataclass
class AttemptOutcome:
    """One attempt's result or classified error, its validated images and its clock."""

    result: GenerationResult | None
    images: list[CheckedImage]
    error: ProviderError | None
    clock: AttemptClock
    t_start: int
    calls: list[CallTiming]


def classify_exception(exc: BaseException) -> ProviderError:
    """The taxonomy class of an exception raised while performing an attempt."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return ProviderError(ErrorKind.TIMEOUT, f"no complete answer within the timeout ({type(exc).__name__})")
    if isinstance(exc, httpx.HTTPError):
        return ProviderError(ErrorKind.CONNECTION, f"{type(exc).__name__}: {exc}".rstrip(": "))
    return ProviderError(ErrorKind.BAD_OUTPUT, f"unexpected response shape ({type(exc).__name__}: {exc})",
                         provider_code="adapter_parse_error")


async def perform_attempt(provider: Provider, request: GenerationRequest, client: httpx.AsyncClient,
                          timeout_s: float) -> AttemptOutcome:
    """Send one attempt through ``provider`` within ``timeout_s`` (total), validate its images, classify any
    failure. The timed region runs from just before the first byte is sent to the validated images."""
    http = TimedHttp(client)
    t_start = now_ns()
    result: GenerationResult | None = None
    checked: list[CheckedImage] = []
    error: ProviderError | None = None
    try:
        async with asyncio.timeout(timeout_s):
            result = await provider.generate(request, http)
            checked = await check_images_async(result.images, request.n, result.expected_size)
    except (ProviderError, TimeoutError, httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError,
            IndexError) as exc:
        error = classify_exception(exc)
    t_ready = now_ns()
    if error is not None and result is not None and error.request_id is None:
        error.request_id = result.request_id
    clock = summarize(http.calls, http.marks, t_start, t_ready, http.poll_interval_s)
    return AttemptOutcome(result, checked, error, clock, t_start, http.calls)


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
        result, checked, error, clock = outcome.result, outcome.images, outcome.error, outcome.clock
        t_start = outcome.t_start
        target = rt.target
        if error is None and result is not None:
            cost: Cost = success_cost(target, usage=result.usage, provider_cost_usd=result.provider_cost_usd,
                                      billable_units=result.billable_units, provider_timings=result.provider_timings,
                                      image_sizes=[(c.width, c.height) for c in checked])
        else:
            billed = bool(error and error.billed)
            usage = error.usage if error else {}
            cost = failure_cost(target, billed=billed, usage=usage)
        last_status = outcome.calls[-1].status if outcome.calls else None
        record = AttemptRecord(
            run_id=run_id, key=item.key, model=target.model_name, provider=target.provider,
            protocol=target.protocol, attempt=attempt, final=True, ok=error is None, started_at=started_at,
            sched_ms=(sched_ns - t0) / 1e6, start_ms=(t_start - t0) / 1e6, clock=clock,
            error_kind=error.kind.value if error else None,
            http_status=(error.http_status if error and error.http_status is not None else last_status),
            provider_code=error.provider_code if error else None,
            error_message=error.message if error else None,
            request_id=(error.request_id if error else (result.request_id if result else None)),
            retry_wait_ms=wait_ms,
            retry_after_ms=error.retry_after_s * 1000.0 if error and error.retry_after_s is not None else None,
            n_images=len(checked), width=checked[0].width if checked else None,
            height=checked[0].height if checked else None, cost_usd=cost.usd, cost_source=cost.source,
            billed=cost.billed, usage=(result.usage if result else (error.usage if error else {})),
            provider_timings=result.provider_timings if result else {},
            finish_reason=result.finish_reason if result else None,
            outputs=[OutputRecord(i, "", c.ext, c.width, c.height, len(c.data)) for i, c in enumerate(checked)],
            image_bytes=[c.data for c in checked],
        )
        return record, error


def frozen_config(options: RunOptions, challenges_path: str | None, targets_file: str | None,
                  target_names: Sequence[str]) -> dict[str, Any]:
    """The run configuration as stored (never any key)."""
    data = asdict(options)
    data["variants"] = list(options.variants)
    data["shard"] = list(options.shard) if options.shard else None
    data.update(challenges_path=challenges_path, targets_file=targets_file, targets=list(target_names),
                schema_version=1)
    return data


def store_references(store: Store, challenges: Sequence[Challenge]) -> None:
    """Put every reference image and mask into the content-addressed image store."""
    rows = []
    for ch in challenges:
        for img in (*ch.references, *([ch.mask] if ch.mask else [])):
            ext = img.mime.split("/")[1].replace("jpeg", "jpg")
            store.put_image(img.data, ext, img.sha256)
            rows.append((img.sha256, ext, img.width, img.height, len(img.data)))
    run_store.record_images(store, rows)


def thaw_challenges(store: Store, frozen: Sequence[dict[str, Any]]) -> list[Challenge]:
    """Rebuild a run's challenges from its stored snapshot (references read back from the image store)."""

    def image(meta: dict[str, Any]) -> InputImage:
        path = store.image_path(meta["sha256"], meta["ext"])
        if not path.is_file():
            raise ConfigError(f"reference image {path} of the stored run is missing from the image store")
        return InputImage(name=meta["name"], data=path.read_bytes(), mime=meta["mime"], width=meta["width"],
                          height=meta["height"], sha256=meta["sha256"])

    out = []
    for c in frozen:
        out.append(Challenge(
            id=c["id"], version=c["version"], title=c["title"], category=c["category"], kind=ChallengeKind(c["kind"]),
            prompts=c["prompts"], params=Params.model_validate(c["params"]),
            references=tuple(image(r) for r in c["references"]), mask=image(c["mask"]) if c["mask"] else None,
            captions=Captions.model_validate(c["captions"]) if c.get("captions") else None, tags=tuple(c["tags"]), source_file=c["source_file"], content_hash=c["content_hash"],
            templates=c.get("templates", {}),
        ))
    return out


ObserverFactory = Callable[[], RunObserver]


def _base_urls(targets: Sequence[Target], sandbox_root: str | None) -> dict[str, str]:
    if sandbox_root is None:
        return {t.name: t.base_url for t in targets}
    return {t.name: get_protocol(t.protocol).sandbox_base_url(sandbox_root, t.options) for t in targets}


@contextlib.contextmanager
def _maybe_sandbox(options: RunOptions) -> Any:
    if not options.sandbox:
        yield None
        return
    from harness.sandbox.servers import start_sandbox

    server = start_sandbox(time_scale=options.time_scale, faults=options.sandbox_faults, seed=options.seed,
                           profile_file=Path(options.sandbox_profile) if options.sandbox_profile else None)
    try:
        yield server
    finally:
        server.stop()


def start_run(db_path: Path, challenges: Sequence[Challenge], targets: Sequence[Target],
              credentials: dict[str, Credential], options: RunOptions, *, challenges_path: str | None = None,
              targets_file: str | None = None, observer: RunObserver | None = None,
              run_id: str | None = None) -> RunResult:
    """Create a run in the store and execute it (blocking)."""
    items = plan_items(challenges, targets, options)
    run_id = run_id or new_run_id()
    with Store.open(db_path) as store:
        store_references(store, challenges)
        run_store.create_run(
            store, run_id=run_id, created_at=_utc_now(), harness_version=__version__, sandbox=options.sandbox,
            time_scale=options.time_scale if options.sandbox else None, label=options.label, planned=len(items),
            config={**frozen_config(options, challenges_path, targets_file, [t.name for t in targets]),
                    "unsupported": [list(p) for p in unsupported_pairs(challenges, targets)]},
            challenges=[c.frozen() for c in challenges], targets=[t.frozen() for t in targets],
        )
        images_dir = store.images_dir
    return _execute(db_path, images_dir, run_id, items, targets, credentials, options, observer, already_done=0)


def _execute(db_path: Path, images_dir: Path, run_id: str, items: Sequence[WorkItem], targets: Sequence[Target],
             credentials: dict[str, Credential], options: RunOptions, observer: RunObserver | None,
             already_done: int) -> RunResult:
    runner = Runner(db_path, options, observer or RunObserver(), images_dir)
    status = "failed"
    try:
        with _maybe_sandbox(options) as sandbox:
            base_urls = _base_urls(targets, sandbox.root if sandbox else None)
            with quiet_heap():
                result = asyncio.run(runner.execute(run_id, items, targets, credentials, base_urls, already_done))
            status = result.status
            return result
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        with Store.open(db_path) as store:
            run_store.set_run_status(store, run_id, status, _utc_now() if status == "finished" else None)


def resume_run(db_path: Path, run_id: str, credentials_for: Callable[[Sequence[Target], bool], dict[str, Credential]],
               observer: RunObserver | None = None) -> RunResult:
    """Finish an interrupted run: perform exactly the requests that have no final attempt yet."""
    with Store.open(db_path) as store:
        info = run_store.get_run(store, run_id)
        cfg = info.config
        options = RunOptions(
            samples=cfg["samples"], concurrency=cfg["concurrency"], timeout_s=cfg["timeout_s"],
            connect_timeout_s=cfg["connect_timeout_s"], retries=cfg["retries"], stream=cfg["stream"],
            rpm=cfg["rpm"], respect_limits=cfg["respect_limits"], variants=tuple(cfg["variants"]),
            shard=(int(cfg["shard"][0]), int(cfg["shard"][1])) if cfg["shard"] else None,
            sandbox=cfg["sandbox"], time_scale=cfg["time_scale"], sandbox_profile=cfg["sandbox_profile"],
            sandbox_faults=cfg["sandbox_faults"], seed=cfg["seed"], label=cfg["label"], http2=cfg["http2"],
        )
        challenges = thaw_challenges(store, run_store.run_challenges(store, info.id))
        targets = [Target.model_validate({k: v for k, v in t.items() if k != "model_id"} | {"model": t["model_id"],
                                          "model_name": t["model"]}) for t in run_store.run_targets(store, info.id)]
        done, last = run_store.request_progress(store, info.id)
        images_dir = store.images_dir
    credentials = credentials_for(targets, options.sandbox)
    planned = plan_items(challenges, targets, options)
    todo = [WorkItem(i.key, i.challenge, i.target, first_attempt=last.get(i.key, 0) + 1)
            for i in planned if i.key not in done]
    with Store.open(db_path) as store:
        run_store.set_run_status(store, info.id, "running")
    return _execute(db_path, images_dir, info.id, todo, targets, credentials, options, observer,
                    already_done=len(done))
