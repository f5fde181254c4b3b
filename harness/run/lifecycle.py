"""Starting and resuming runs: create the run in the store, start the sandbox when asked, execute, and
leave an honest status behind."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import __version__
from harness.challenges import Captions, Challenge, Params
from harness.errors import ConfigError, HarnessError
from harness.providers.base import ChallengeKind, InputImage
from harness.providers.registry import get_protocol
from harness.records import FinalOutcome
from harness.run.execute import HISTORY_PER_TARGET, Runner, RunResult, retry_wait_from
from harness.run.items import WorkItem, plan_items, unsupported_pairs
from harness.run.lock import locks_for
from harness.run.options import CONFIG_VERSION, RunObserver, RunOptions
from harness.spend import SpendGuard, check_caps, plans_for
from harness.store import Store
from harness.store import runs as run_store
from harness.store.core import store_write_error
from harness.targets import Credential, Target
from harness.timing import quiet_heap


def new_run_id(now: datetime | None = None) -> str:
    """``20261121T101500Z-3f2a`` style: sortable UTC time plus a random suffix."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(2)}"


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")



def frozen_config(options: RunOptions, challenges_path: str | None, targets_file: str | None,
                  target_names: Sequence[str]) -> dict[str, Any]:
    """The run configuration as stored (never any key): the options (:meth:`RunOptions.to_config`, read
    back with :meth:`RunOptions.from_config`) plus where the challenges and targets came from."""
    data = options.to_config()
    data.update(challenges_path=challenges_path, targets_file=targets_file, targets=list(target_names),
                schema_version=CONFIG_VERSION)
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


def thaw_target(frozen: dict[str, Any]) -> Target:
    """The :class:`Target` of a stored snapshot (see :meth:`Target.from_frozen`)."""
    return Target.from_frozen(frozen)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends a run the way Ctrl-C does (status ``interrupted``, committed attempts kept): the handler
    raises SIGINT, which asyncio turns into cancelling the run. Only in the main thread, where handlers live."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def start_run(db_path: Path, challenges: Sequence[Challenge], targets: Sequence[Target],
              credentials: dict[str, Credential], options: RunOptions, *, challenges_path: str | None = None,
              targets_file: str | None = None, observer: RunObserver | None = None,
              run_id: str | None = None) -> RunResult:
    """Create a run in the store and execute it (blocking). The run is locked by this process from before
    it exists until it ends (see :mod:`harness.run.lock`)."""
    items = plan_items(challenges, targets, options)
    if options.sandbox:
        from harness.protocols import require_sandbox

        for t in targets:
            require_sandbox(t.protocol)
    if options.spend_caps.any:
        check_caps(plans_for(items, targets, options), options.spend_caps)
    planned = (len(plan_items(challenges, targets, dataclasses.replace(options, shard=None))) if options.shard
               else len(items))
    run_id = run_id or new_run_id()
    with Store.open(db_path) as store:
        lock = locks_for(store).acquire(run_store.lock_id(run_id, options.shard))
        try:
            store_references(store, challenges)
            run_store.create_run(
                store, run_id=run_id, created_at=_utc_now(), harness_version=__version__, sandbox=options.sandbox,
                time_scale=options.time_scale if options.sandbox else None, label=options.label,
                planned=planned,
                config={**frozen_config(options, challenges_path, targets_file, [t.name for t in targets]),
                        "unsupported": [list(p) for p in unsupported_pairs(challenges, targets)]},
                challenges=[c.frozen() for c in challenges], targets=[t.frozen() for t in targets],
                shard=options.shard,
            )
        except (sqlite3.Error, OSError) as exc:
            lock.release()
            raise store_write_error(exc, store.path) from None
        except BaseException:
            lock.release()
            raise
        images_dir = store.images_dir
    with lock:
        return _execute(db_path, images_dir, run_id, items, targets, credentials, options, observer,
                        already_done=0)


def _record_status(db_path: Path, run_id: str, status: str, *, quiet: bool,
                   shard: tuple[int, int] | None = None) -> None:
    """Store how the run ended. When the store cannot take it (full, read-only) and another error is already
    on its way (``quiet``), that error is the one reported: ``harness runs`` still shows the run as
    interrupted, because its lock died with this process."""
    try:
        with Store.open(db_path) as store:
            run_store.set_run_status(store, run_id, status, _utc_now() if status == "finished" else None,
                                     shard=shard)
    except (HarnessError, sqlite3.Error, OSError) as exc:
        if not quiet:
            raise store_write_error(exc, db_path, run_id) from None


def _execute(db_path: Path, images_dir: Path, run_id: str, items: Sequence[WorkItem], targets: Sequence[Target],
             credentials: dict[str, Credential], options: RunOptions, observer: RunObserver | None,
             already_done: int, history: Mapping[str, Sequence[FinalOutcome]] | None = None,
             already_spent: Mapping[str, float] | None = None) -> RunResult:
    runner = Runner(db_path, options, observer or RunObserver(), images_dir,
                    SpendGuard.for_run(options.spend_caps, already_spent))
    status = "failed"
    try:
        with _sigterm_as_interrupt(), _maybe_sandbox(options) as sandbox:
            base_urls = _base_urls(targets, sandbox.root if sandbox else None)
            with quiet_heap():
                result = asyncio.run(runner.execute(run_id, items, targets, credentials, base_urls, already_done,
                                                    history))
            status = result.status
    except KeyboardInterrupt:
        status = "interrupted"
        _record_status(db_path, run_id, status, quiet=True, shard=options.shard)
        raise
    except BaseException:
        _record_status(db_path, run_id, status, quiet=True, shard=options.shard)
        raise
    _record_status(db_path, run_id, status, quiet=False, shard=options.shard)
    return result


def resume_run(db_path: Path, run_id: str, credentials_for: Callable[[Sequence[Target], bool], dict[str, Credential]],
               observer: RunObserver | None = None) -> RunResult:
    """Finish an interrupted run: perform exactly the requests that have no final attempt yet, each continuing
    its retry count and first waiting out the wait its last attempt was given.

    Refuses (:class:`~harness.errors.RunLockedError`) while another live process holds the run."""
    with Store.open(db_path) as store:
        info = run_store.get_run(store, run_id)
        config = run_store.shard_config(store, info.id) or info.config
        options = RunOptions.from_config(config)
        lock = locks_for(store).acquire(run_store.lock_id(info.id, options.shard))
        try:
            challenges = thaw_challenges(store, run_store.run_challenges(store, info.id))
            targets = [thaw_target(t) for t in run_store.run_targets(store, info.id)]
            done, unfinished = run_store.request_progress(store, info.id)
            history = run_store.first_finals(store, info.id, HISTORY_PER_TARGET)
            already_spent = run_store.spend_by_target(store, info.id)
            images_dir = store.images_dir
            credentials = credentials_for(targets, options.sandbox)
            planned = plan_items(challenges, targets, options)
            todo = [_continued(i, unfinished.get(i.key), options) for i in planned if i.key not in done]
            run_store.set_run_status(store, info.id, "running")
        except (sqlite3.Error, OSError) as exc:
            lock.release()
            raise store_write_error(exc, store.path, info.id) from None
        except BaseException:
            lock.release()
            raise
    with lock:
        return _execute(db_path, images_dir, info.id, todo, targets, credentials, options, observer,
                        already_done=len(done), history=history, already_spent=already_spent)


def _continued(item: WorkItem, progress: run_store.UnfinishedRequest | None, options: RunOptions) -> WorkItem:
    """``item`` resumed from where its stored attempts left it (unchanged when it has none)."""
    if progress is None:
        return item
    retry_after_s = progress.last_retry_after_ms / 1000.0 if progress.last_retry_after_ms is not None else None
    wait_s = options.scaled(retry_wait_from(retry_after_s, progress.last_attempt))
    return WorkItem(item.key, item.challenge, item.target, first_attempt=progress.last_attempt + 1,
                    first_started_at=progress.first_started_at, not_before=progress.last_ended_at + wait_s)
