"""Starting and resuming runs: create the run in the store, start the sandbox when asked, execute, and
leave an honest status behind."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import __version__
from harness.challenges import Captions, Challenge, Params
from harness.errors import ConfigError
from harness.providers.base import ChallengeKind, InputImage
from harness.providers.registry import get_protocol
from harness.run.execute import Runner, RunResult
from harness.run.items import WorkItem, plan_items, unsupported_pairs
from harness.run.options import RunObserver, RunOptions
from harness.store import Store
from harness.store import runs as run_store
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
