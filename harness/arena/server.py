"""Running the arena app under uvicorn: in the foreground (the CLI) or on a background thread (tests,
benchmarks, the demo). Uvicorn is told not to send a ``Server`` header nor to log requests (access logs
would hold voters' IP addresses).

Client addresses feed the per-IP rate limits and the memory of what each address has seen revealed, so
they must not be chosen by the client. Uvicorn by default believes ``X-Forwarded-For`` from 127.0.0.1
(and from ``$FORWARDED_ALLOW_IPS``), so anything reaching the arena over loopback (a local proxy passing
the header through, an SSH tunnel, another local process) could name any address per request. Here proxy
headers are off unless the operator names the proxies (``--forwarded-allow-ips``, the app's
``ArenaConfig.forwarded_allow_ips``); only a connection from one of those has its ``X-Forwarded-For``
believed, and the environment variable is ignored.

**Several workers** (:class:`WorkerPool`, ``harness arena serve --workers N``): the parent binds one
listening socket and starts N worker processes (``spawn``), each building its own app from the same
:class:`~harness.arena.config.ArenaConfig` and accepting on the inherited socket, as gunicorn and
``uvicorn --workers`` do. We chose our own small supervisor over ``uvicorn --workers`` because the latter
needs the app as an import string, so the typed configuration would have to travel through environment
variables; here it is handed to each worker as it is, every worker gets the same uvicorn settings (no
``Server`` header, no access log, proxy headers only from named proxies), and a worker that dies is
restarted. On Linux each worker listens on its own socket bound with ``SO_REUSEPORT`` to the one port (the
parent holds the port bound but not listening, so port 0 works), and the kernel spreads connections over the
workers by hashing each connection's addresses; with one shared listening socket instead, the worker that
last waited in ``accept`` takes nearly every connection (measured: 17 of 18 keep-alive clients on one of
two workers). Elsewhere (no ``SO_REUSEPORT``) the workers share the parent's listening socket. The workers share everything that
must be shared through the store: pair tokens are signed with one secret (from the configuration) and
consumed by one conditional statement, rate limits live in the store (``shared_rate_limits``), and each
worker reloads the pool every ``pool_refresh_s`` seconds."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event

import uvicorn
from fastapi import FastAPI

from harness.arena.config import ArenaConfig
from harness.errors import HarnessError

log = logging.getLogger("harness.arena")


class WorkerStartError(HarnessError):
    """A worker process exited (or hung) before it accepted connections; its own error is on stderr."""


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


class _ReadyServer(uvicorn.Server):
    """A uvicorn server that says when it accepts connections (so a pool knows its workers are up)."""

    def __init__(self, config: uvicorn.Config, ready: Event) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._ready.set()


REUSEPORT = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
"""Whether workers listen on sockets of their own that the kernel balances (Linux), or share one."""


def bind(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``host:port`` (IPv6 when the host is), listening unless told not to."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _die_with_parent() -> None:
    """On Linux, ask the kernel to send this worker SIGTERM when its parent (the supervisor) dies, even by
    SIGKILL, so no worker outlives the pool; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
        if os.getppid() == 1:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(config: ArenaConfig, address: tuple[str, int], shared: socket.socket | None, ready: Event) -> None:
    """One worker process: its own app (store connections, pool, caches), listening on its own
    ``SO_REUSEPORT`` socket, or accepting on the inherited ``shared`` one."""
    from harness.arena.app import create_app

    _die_with_parent()
    app = create_app(config)
    sock = shared if shared is not None else bind(*address, reuse_port=True)
    _ReadyServer(uvicorn_config(app, *address), ready).run(sockets=[sock])


class WorkerPool:
    """``workers`` processes serving one arena on one address; ``url`` is its root once :meth:`start`
    returns. :meth:`supervise` restarts workers that died (a crash, an out-of-memory kill) until
    :meth:`stop`; :meth:`serve_forever` does so in the foreground until SIGINT or SIGTERM."""

    def __init__(self, config: ArenaConfig, host: str = "127.0.0.1", port: int = 0, workers: int = 2) -> None:
        if workers < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.config = config
        self.workers = workers
        self._host, self._port = host, port
        self._context = multiprocessing.get_context("spawn")
        self._socket: socket.socket | None = None
        self._procs: list[SpawnProcess] = []
        self._stopping = threading.Event()
        self.restarts = 0
        self.url = ""

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def _launch(self) -> tuple[SpawnProcess, Event]:
        assert self._socket is not None
        ready = self._context.Event()
        host, port = self._socket.getsockname()[:2]
        shared = None if REUSEPORT else self._socket
        proc = self._context.Process(target=_worker_main, args=(self.config, (str(host), int(port)), shared, ready),
                                     name="arena-worker", daemon=True)
        proc.start()
        return proc, ready

    def _wait_ready(self, proc: SpawnProcess, ready: Event, timeout_s: float) -> None:
        """Wait until ``proc`` accepts connections; a stop asked meanwhile ends the wait early."""
        deadline = time.monotonic() + timeout_s
        while not ready.wait(0.05):
            if self._stopping.is_set():
                return
            if not proc.is_alive() or time.monotonic() > deadline:
                proc.kill()
                proc.join(timeout=5)
                raise WorkerStartError(f"an arena worker did not start (exit code {proc.exitcode}); its error is "
                                       "printed above")

    def start(self, timeout_s: float = 120.0) -> WorkerPool:
        """Bind the port and start every worker at once; returns when all accept connections."""
        self._socket = bind(self._host, self._port, reuse_port=REUSEPORT, listen=not REUSEPORT)
        host, port = self._socket.getsockname()[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        self.url = f"http://{shown}:{port}"
        try:
            launched = [self._launch() for _ in range(self.workers)]
            self._procs = [proc for proc, _ in launched]
            for proc, ready in launched:
                self._wait_ready(proc, ready, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def supervise(self) -> int:
        """Restart every worker that has exited; returns how many were restarted."""
        restarted = 0
        for i, proc in enumerate(list(self._procs)):
            if not proc.is_alive() and not self._stopping.is_set():
                proc.join(timeout=0)
                fresh, ready = self._launch()
                self._procs[i] = fresh
                self._wait_ready(fresh, ready, 120.0)
                restarted += 1
        self.restarts += restarted
        return restarted

    def serve_forever(self, poll_s: float = 0.5) -> None:
        """Start the workers (unless started), supervise them until SIGINT or SIGTERM, then stop them all.
        The signals are caught before the first worker starts, so a stop during start-up stops every worker
        rather than leaving them orphaned."""
        def on_signal(signum: int, frame: object) -> None:
            self._stopping.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            if self._socket is None:
                self.start()
            while not self._stopping.wait(poll_s):
                try:
                    if self.supervise():
                        log.warning("arena: restarted a worker that had exited (%d restart(s) so far)", self.restarts)
                except WorkerStartError as exc:
                    log.error("arena: %s; trying again", exc)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.stop()

    def stop(self, timeout_s: float = 20.0) -> None:
        """Ask every worker to finish (SIGTERM: uvicorn completes the requests in flight and closes the
        store), then kill those still running after ``timeout_s``."""
        self._stopping.set()
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + timeout_s
        for proc in self._procs:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None
