"""``harness arena serve``: the blind pairwise voting app."""

from __future__ import annotations

import re
import secrets as random_secrets
from pathlib import Path
from typing import cast

import click

from harness.arena.config import (
    DEFAULT_MAX_SERVINGS,
    DEFAULT_POOL_REFRESH_S,
    MAX_BODY_BYTES,
    REVEAL_MEMORIES,
    SECRET_ENV,
    ArenaConfig,
    RevealMemory,
    parse_rate,
    secret_bytes,
)
from harness.arena.sampling import PAIR_BY, PairBy
from harness.cli._common import db_option, err_console, handle_errors


@click.group()
def arena() -> None:
    """Blind pairwise voting on the outputs of runs; votes feed `harness ratings`."""


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_refresh(text: str) -> float | None:
    """``--refresh``: ``30s``, ``2m``, ``500ms``, a bare number of seconds, or ``off`` (also ``0``)."""
    if text.strip().lower() in ("off", "never", "no"):
        return None
    match = _DURATION.match(text)
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration such as 30s, 2m or off", param_hint="--refresh")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2) or "s"]
    return seconds or None


@arena.command("serve")
@db_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (0.0.0.0 exposes the arena to the network).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--runs", "runs", multiple=True, metavar="RUN_ID",
              help="Runs whose outputs are voted on (repeat or separate with commas; default: every run; "
                   "`latest` names the newest).")
@click.option("--targets", "targets", multiple=True, metavar="PATTERN",
              help="Targets in the arena, by name or glob such as '*@fal' (repeat or comma-separate; default: all).")
@click.option("--secret", envvar=SECRET_ENV, show_envvar=True, default=None,
              help="Signing secret for pair tokens and voter cookies (16+ characters). Without it a random one is "
                   "drawn per process: outstanding pairs and voter ids then do not survive a restart.")
@click.option("--token-ttl", type=click.FloatRange(min=1), default=900.0, show_default=True,
              help="Seconds a served pair can be voted on.")
@click.option("--image-side", type=click.IntRange(64, 4096), default=1024, show_default=True,
              help="Every image is resampled so its longest side has this many pixels.")
@click.option("--voter-limit", default="30/10", show_default=True, metavar="PER_MIN[/BURST]",
              help="Votes per minute per voter cookie (pairs: twice as many).")
@click.option("--ip-limit", default="240/60", show_default=True, metavar="PER_MIN[/BURST]",
              help="Votes per minute per client IP (pairs: twice as many). Raise it when many voters share one "
                   "address (a company network).")
@click.option("--new-voter-limit", default="10/10", show_default=True, metavar="PER_MIN[/BURST]",
              help="New voter cookies issued per minute per client IP, so a fresh cookie does not reset the "
                   "per-voter limit.")
@click.option("--forwarded-allow-ips", "proxies", multiple=True, metavar="IP[/BITS]",
              help="Reverse proxies whose X-Forwarded-For names the client (repeat or comma-separate). Default: "
                   "none, the connecting address is the client, whatever headers say.")
@click.option("--max-body-bytes", type=click.IntRange(min=256), default=MAX_BODY_BYTES, show_default=True,
              help="Largest request body read; larger ones get 413 before parsing.")
@click.option("--max-servings", type=click.IntRange(min=0), default=DEFAULT_MAX_SERVINGS, show_default=True,
              help="Times one output may be served in all before it leaves pairing (0: no cap).")
@click.option("--reveal-memory", type=click.Choice(REVEAL_MEMORIES), default="voter+address", show_default=True,
              help="Who is never shown an output again once a vote revealed its maker: the voter cookie and "
                   "client address, the cookie only (voters share an address), or nobody (load tests).")
@click.option("--allowed-origin", "origins", multiple=True, metavar="URL",
              help="Another origin allowed to call the API (e.g. a separate front end), besides the arena's own.")
@click.option("--min-exposure", type=click.IntRange(min=0), default=10, show_default=True,
              help="Shows per target served in balanced order before active sampling starts.")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Worker processes serving the arena on one port (docs/arena-scale.md). Above 1, rate limits "
                   "live in the store and one secret signs for all of them.")
@click.option("--refresh", "refresh", default=f"{DEFAULT_POOL_REFRESH_S:g}s", show_default=True,
              metavar="DURATION|off",
              help="How often each worker re-reads the runs on offer from the store: runs finished since appear "
                   "within this, without a restart.")
@click.option("--pair-by", "pair_by", type=click.Choice(PAIR_BY), default="model", show_default=True,
              help="Pair models (two providers of one model never meet) or targets (provider-quality studies); "
                   "docs/arena.md")
@click.option("--leaderboard-refresh", type=click.FloatRange(min=1), default=300.0, show_default=True,
              metavar="SECONDS",
              help="How often the public leaderboard is refitted; it only ever shows votes older than one refresh, "
                   "see docs/leaderboard.md")
@handle_errors
def serve(db: Path, host: str, port: int, runs: tuple[str, ...], targets: tuple[str, ...], secret: str | None,
          token_ttl: float, image_side: int, voter_limit: str, ip_limit: str, new_voter_limit: str,
          proxies: tuple[str, ...], max_body_bytes: int, max_servings: int, reveal_memory: str,
          origins: tuple[str, ...], min_exposure: int, workers: int, refresh: str, pair_by: str,
          leaderboard_refresh: float) -> None:
    """Serve the arena until interrupted. The page is at /, the JSON API under /api (schema: /openapi.json).

    The outputs on offer are re-read from the store every --refresh interval, so runs finished since appear
    without a restart. With --workers N, N processes serve one port; on PostgreSQL, several hosts may serve
    one store behind any proxy (same --db, same HARNESS_ARENA_SECRET)."""
    from harness.arena.server import WorkerPool, serve_forever
    from harness.arena.service import load_sequences
    from harness.store import Store
    from harness.store.url import PostgresLocation, parse_location

    refresh_s = parse_refresh(refresh)
    on_server = isinstance(parse_location(db), PostgresLocation)
    Store.open(db, readonly=True).close()
    drawn = secret is None and workers > 1
    if drawn:
        secret = random_secrets.token_urlsafe(32)
    config = ArenaConfig(
        db=db, run_ids=_split(runs), targets=_split(targets), secret=secret_bytes(secret) if secret else None,
        token_ttl_s=token_ttl, image_side=image_side, voter_votes=parse_rate(voter_limit, "--voter-limit"),
        ip_votes=parse_rate(ip_limit, "--ip-limit"), allowed_origins=origins, min_exposure=min_exposure,
        ip_new_voters=parse_rate(new_voter_limit, "--new-voter-limit"), forwarded_allow_ips=_split(proxies),
        max_body_bytes=max_body_bytes, max_servings=max_servings or None,
        reveal_memory=cast(RevealMemory, reveal_memory), pool_refresh_s=refresh_s,
        shared_rate_limits=workers > 1 or on_server, pair_by=cast(PairBy, pair_by),
        leaderboard_refresh_s=leaderboard_refresh,
    )
    with Store.open(db, readonly=True) as store:
        found = load_sequences(store, config)
    pool = found.pool
    console = err_console()
    console.print(f"arena: {len(pool.matchups)} challenge variants, {len(pool.targets)} targets, "
                  f"run(s) {', '.join(pool.run_ids)}")
    if found.left_out:
        console.print(f"arena: {found.left_out} incomplete multi-turn conversation(s) left out: only complete sequences "
                      "are paired")
    if pool.skipped_missing:
        console.print(f"warning: {pool.skipped_missing} output(s) left out: image file missing from the store")
    for reason, count in pool.skipped_formats.items():
        console.print(f"warning: {count} output(s) left out: {reason}")
    if config.forwarded_allow_ips:
        console.print(f"client addresses: X-Forwarded-For believed from {', '.join(config.forwarded_allow_ips)} only")
    if config.reveal_memory != "voter+address":
        console.print(f"warning: --reveal-memory {config.reveal_memory}: a voter can be shown outputs whose makers "
                      "an earlier vote revealed to it " + ("with a fresh cookie" if config.reveal_memory == "voter"
                                                            else "(load tests only)"))
    if config.secret is None:
        console.print(f"secret: random for this process (set {SECRET_ENV} to keep pairs and voter ids across "
                      "restarts)")
    elif drawn:
        console.print(f"secret: drawn once and shared by the {workers} workers (set {SECRET_ENV} to keep pairs and "
                      "voter ids across restarts, and on every host serving this store)")
    limits = "in the store (shared by every worker)" if config.shared_rate_limits else "in memory"
    reread = f"re-read every {refresh_s:g} s" if refresh_s else "read once at start"
    console.print(f"workers: {workers}; rate limits {limits}; runs on offer {reread}")
    shown_host = f"[{host}]" if ":" in host else host
    console.print(f"open http://{shown_host}:{port}/  (Ctrl-C stops)")
    if workers == 1:
        from harness.arena.app import create_app

        serve_forever(create_app(config), host, port)
        return
    WorkerPool(config, host, port, workers).serve_forever()
