"""Running the arena app under uvicorn: in the foreground (the CLI) or on a background thread (tests,
benchmarks, the demo). Uvicorn is told not to send a ``Server`` header nor to log requests (access logs
would hold voters' IP addresses).

Client addresses feed the per-IP rate limits and the memory of what each address has seen revealed, so
they must not be chosen by the client. Uvicorn by default believes ``X-Forwarded-For`` from 127.0.0.1
(and from ``$FORWARDED_ALLOW_IPS``), so anything reaching the arena over loopback (a local proxy passing
the header through, an SSH tunnel, another local process) could name any address per request. Here proxy
headers are off unless the operator names the proxies (``--forwarded-allow-ips``, the app's
``ArenaConfig.forwarded_allow_ips``); only a connection from one of those has its ``X-Forwarded-For``
believed, and the environment variable is ignored."""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI


def uvicorn_config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    """Uvicorn settings for the arena ``app`` (its ``state.arena.config`` names the trusted proxies)."""
    proxies = list(app.state.arena.config.forwarded_allow_ips)
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, server_header=False,
                          lifespan="on", proxy_headers=bool(proxies), forwarded_allow_ips=proxies or [])


def serve_forever(app: FastAPI, host: str, port: int) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM)."""
    uvicorn.Server(uvicorn_config(app, host, port)).run()


class BackgroundServer:
    """The app on a loopback port in a daemon thread; ``url`` is its root once :meth:`start` returns."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = uvicorn.Server(uvicorn_config(app, host, port))
        self._thread = threading.Thread(target=self._server.run, name="arena-server", daemon=True)
        self.url = ""

    def start(self, timeout_s: float = 20.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("arena server did not start")
            time.sleep(0.01)
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=20)
