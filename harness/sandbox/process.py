"""The sandbox's own process: ``python -m harness.sandbox.process`` serves the simulated providers.

The sandbox runs apart from the client it is measured by, so neither one's CPU work (the client decoding
images, the servers encoding answers) delays the other's clock: in one process they would share a GIL, and a
run with many targets measured the machine instead of the profiles. :class:`~harness.sandbox.servers.SandboxServer`
starts this module and talks to it over its standard streams:

* stdin, first line: the configuration as JSON (:func:`config_line`); the process then waits for stdin to
  close, and shuts down when it does — also when the parent dies without a word, so no sandbox outlives
  the run that started it;
* stdout, one line: ``{"port": N, "served": [...], "skipped": {protocol: reason}}`` once the server accepts
  connections, or ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import uvicorn

from harness.sandbox.profiles import ProviderProfile
from harness.sandbox.simulation import SandboxSettings


def config_line(settings: SandboxSettings, profiles: Mapping[str, ProviderProfile], host: str, port: int,
                ssl_certfile: Path | None, ssl_keyfile: Path | None) -> str:
    """The configuration line the parent writes to the child's stdin."""
    return json.dumps({
        "settings": asdict(settings), "profiles": {k: p.model_dump(mode="json") for k, p in profiles.items()},
        "host": host, "port": port, "ssl_certfile": str(ssl_certfile.resolve()) if ssl_certfile else None,
        "ssl_keyfile": str(ssl_keyfile.resolve()) if ssl_keyfile else None,
    }) + "\n"


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _serve(cfg: dict[str, Any]) -> None:
    from harness.sandbox.servers import build_sandbox

    settings = SandboxSettings(**cfg["settings"])
    profiles = {k: ProviderProfile.model_validate(v) for k, v in cfg["profiles"].items()}
    sandbox = build_sandbox(settings, profiles)
    config = uvicorn.Config(
        sandbox.app, host=cfg["host"], port=cfg["port"], log_level="warning", lifespan="off",
        access_log=False, backlog=4096, timeout_keep_alive=75, loop="none", http="auto",
        timeout_graceful_shutdown=1, ssl_certfile=cfg["ssl_certfile"], ssl_keyfile=cfg["ssl_keyfile"],
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.005)
    if not server.started:
        failure: BaseException | None = None
        with contextlib.suppress(BaseException):
            failure = task.exception()
        _say({"error": f"sandbox server failed to start on {cfg['host']}:{cfg['port']}: {failure!r}"})
        return
    sockets = [s for srv in server.servers for s in srv.sockets]
    _say({"port": sockets[0].getsockname()[1], "served": list(sandbox.served), "skipped": sandbox.skipped})
    loop = asyncio.get_running_loop()

    def wait_for_parent() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(setattr, server, "should_exit", True)

    threading.Thread(target=wait_for_parent, name="sandbox-parent-watch", daemon=True).start()
    await task


def main() -> None:
    try:
        cfg = json.loads(sys.stdin.readline())
    except ValueError as exc:
        _say({"error": f"bad sandbox configuration line: {exc}"})
        raise SystemExit(2) from exc
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(cfg))
    else:
        uvloop.run(_serve(cfg))


if __name__ == "__main__":
    main()
