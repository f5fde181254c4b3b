"""Run the simulated providers: one uvicorn server on loopback, each provider under its own path prefix.

``harness run --sandbox`` starts it in-process (a background thread with its own event loop, so the
runner's loop and the servers' delays never share a scheduler); ``harness sandbox serve`` runs it alone.
Base URLs, for a root ``http://127.0.0.1:PORT``::

    openai      {root}/openai/v1
    gemini      {root}/gemini
    openrouter  {root}/openrouter/api/v1
    fal         {root}/fal/queue  (queue host; sync host {root}/fal/run)
    replicate   {root}/replicate/v1
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from harness.sandbox.profiles import ProviderProfile, load_profiles
from harness.sandbox.simulation import ConnectionFaults, SandboxSettings, SimulatedProvider

SERVERS: dict[str, tuple[str, str, str]] = {
    "openai": ("harness.sandbox.openai_images:OpenAIImagesServer", "/openai/v1", "openai-images"),
    "gemini": ("harness.sandbox.gemini:GeminiServer", "/gemini", "gemini"),
    "openrouter": ("harness.sandbox.openrouter:OpenRouterServer", "/openrouter/api/v1", "openrouter"),
    "fal": ("harness.sandbox.fal:FalServer", "/fal", "fal"),
    "replicate": ("harness.sandbox.replicate:ReplicateServer", "/replicate/v1", "replicate"),
}
"""Simulated provider -> (server class, mount prefix, protocol it speaks)."""

PROTOCOL_TO_PROVIDER = {protocol: name for name, (_, _, protocol) in SERVERS.items()}


def available_servers() -> dict[str, tuple[str, str, str]]:
    """The simulated providers whose server module is present."""
    return {name: spec for name, spec in SERVERS.items() if importlib.util.find_spec(spec[0].split(":")[0])}


def build_app(settings: SandboxSettings, profiles: Mapping[str, ProviderProfile]) -> ConnectionFaults:
    """One ASGI app serving every simulated provider under its prefix."""
    mounts = []
    for name, (spec, prefix, _) in available_servers().items():
        module_name, _, attr = spec.partition(":")
        server_cls = getattr(importlib.import_module(module_name), attr)
        sim = SimulatedProvider(name=name, profile=profiles[name], settings=settings)
        mounts.append(Mount(prefix, app=server_cls(sim).app()))
    return ConnectionFaults(Starlette(routes=mounts))


@dataclass
class SandboxServer:
    """A running sandbox; use as a context manager. ``root`` is ``http://127.0.0.1:PORT``."""

    settings: SandboxSettings = field(default_factory=SandboxSettings)
    profiles: Mapping[str, ProviderProfile] = field(default_factory=lambda: load_profiles(None))
    host: str = "127.0.0.1"
    port: int = 0
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    """With a certificate and key the sandbox speaks HTTPS (for SDKs that only build ``https://`` URLs,
    such as fal-client with ``FAL_RUN_HOST``/``FAL_QUEUE_RUN_HOST`` pointed at it)."""
    root: str = ""
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    def base_urls(self) -> dict[str, str]:
        """Each simulated provider's base URL (what its SDK's ``base_url`` should be)."""
        urls = {}
        for name, (_, prefix, _) in available_servers().items():
            urls[name] = self.root + prefix + ("/queue" if name == "fal" else "")
        return urls

    def start(self) -> SandboxServer:
        config = uvicorn.Config(
            build_app(self.settings, self.profiles), host=self.host, port=self.port, log_level="warning",
            lifespan="off", access_log=False, backlog=4096, timeout_keep_alive=75, loop="asyncio",
            timeout_graceful_shutdown=1,
            ssl_certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
            ssl_keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
        )
        server = uvicorn.Server(config)
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            async def main() -> None:
                task = asyncio.create_task(server.serve())
                while not server.started and not task.done():
                    await asyncio.sleep(0.005)
                ready.set()
                await task

            try:
                asyncio.run(main())
            except BaseException as exc:
                failure.append(exc)
                ready.set()

        thread = threading.Thread(target=serve, name="harness-sandbox", daemon=True)
        thread.start()
        ready.wait(timeout=30)
        if failure or not server.started:
            raise RuntimeError(f"sandbox server failed to start on {self.host}:{self.port}: {failure[:1]}")
        sockets = [s for srv in server.servers for s in srv.sockets]
        self.port = sockets[0].getsockname()[1]
        self.root = f"{'https' if self.ssl_certfile else 'http'}://{self.host}:{self.port}"
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_sandbox(time_scale: float = 1.0, faults: bool = True, seed: int = 0,
                  profile_file: Path | None = None, port: int = 0, ssl_certfile: Path | None = None,
                  ssl_keyfile: Path | None = None) -> SandboxServer:
    """Start a sandbox in a background thread (call ``stop()`` or use it as a context manager)."""
    return SandboxServer(settings=SandboxSettings(time_scale=time_scale, faults=faults, seed=seed),
                         profiles=load_profiles(profile_file), port=port, ssl_certfile=ssl_certfile,
                         ssl_keyfile=ssl_keyfile).start()
