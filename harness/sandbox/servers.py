"""Run the simulated providers: one uvicorn server on loopback, each provider under its own path prefix.

``harness run --sandbox`` starts it in a child process (:mod:`harness.sandbox.process`), so the client being
measured and the servers never share an interpreter; ``harness sandbox serve`` runs it alone.
What is served comes from the protocol specs (:mod:`harness.protocols`): every built-in protocol and every
installed plugin whose spec names a server, under the spec's mount prefix. A provider's base URL, for a root
``http://127.0.0.1:PORT``, is ``spec.sandbox_base_url(root)``: ``{root}/openai/v1`` for ``openai-images``,
``{root}/fal/queue`` for fal's queue host (:meth:`SandboxServer.base_urls` maps every served one).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import select
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from starlette.applications import Starlette
from starlette.routing import Mount

from harness.errors import ConfigError
from harness.protocols.builtin import BUILTIN_SPECS
from harness.protocols.registry import sandbox_layout, simulated_provider
from harness.sandbox.profiles import ProviderProfile, load_profiles
from harness.sandbox.simulation import ConnectionFaults, SandboxSettings, SimulatedProvider

SERVERS: dict[str, tuple[str, str, str]] = {
    s.sandbox_name: (s.server, s.mount, s.name) for s in BUILTIN_SPECS if s.server is not None
}
"""Built-in simulated provider -> (server class, mount prefix, protocol it speaks), derived from the built-in
protocol specs; plugins' servers are in :func:`available_servers`."""


class _ProtocolToProvider(Mapping[str, str]):
    """Protocol name -> the sandbox's name for the provider that speaks it, read from the registry on each
    use, so installed plugins are included."""

    def _table(self) -> dict[str, str]:
        return {spec.name: name for name, spec in sandbox_layout().served.items()}

    def __getitem__(self, protocol: str) -> str:
        name = simulated_provider(protocol)
        if name is None:
            raise KeyError(protocol)
        return name

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


PROTOCOL_TO_PROVIDER: Mapping[str, str] = _ProtocolToProvider()
"""Protocol -> simulated provider name (``openai-images`` -> ``openai``), plugins included."""


def available_servers() -> dict[str, tuple[str, str, str]]:
    """The simulated providers (built-in and plugins') whose server module is present:
    name -> (server class, mount prefix, protocol)."""
    return {name: (spec.server, spec.mount, spec.name) for name, spec in sandbox_layout().served.items()
            if spec.server is not None and importlib.util.find_spec(spec.server.split(":")[0])}


@dataclass(frozen=True)
class SandboxApp:
    """The sandbox's ASGI app, the simulated providers it serves, and why any protocol is left out
    (protocol name -> reason)."""

    app: ConnectionFaults
    served: tuple[str, ...]
    skipped: dict[str, str]


def build_sandbox(settings: SandboxSettings, profiles: Mapping[str, ProviderProfile]) -> SandboxApp:
    """Mount every servable protocol's server under its prefix. A plugin's server or profile that cannot be
    loaded is skipped with its reason rather than stopping the built-in ones."""
    layout = sandbox_layout()
    builtin = {s.name for s in BUILTIN_SPECS}
    mounts: list[Mount] = []
    skipped = dict(layout.skipped)
    for name, spec in layout.served.items():
        try:
            server_cls = spec.server_class()
            profile = profiles[name] if name in profiles else spec.default_profile()
            sim = SimulatedProvider(name=name, profile=profile, settings=settings)
            app = server_cls(sim).app()
        except ConfigError as exc:
            if spec.name in builtin:
                raise
            skipped[spec.name] = str(exc)
            continue
        except Exception as exc:
            if spec.name in builtin:
                raise
            skipped[spec.name] = f"its sandbox server failed to start: {type(exc).__name__}: {exc}"
            continue
        mounts.append(Mount(spec.mount, app=app))
    served = tuple(name for name, spec in layout.served.items() if spec.name not in skipped)
    return SandboxApp(ConnectionFaults(Starlette(routes=mounts)), served, skipped)


def build_app(settings: SandboxSettings, profiles: Mapping[str, ProviderProfile]) -> ConnectionFaults:
    """One ASGI app serving every simulated provider under its prefix."""
    return build_sandbox(settings, profiles).app


STARTUP_TIMEOUT_S = 60.0
"""How long the sandbox process may take to import and bind (seconds; generous for a loaded machine)."""


@dataclass
class SandboxServer:
    """A running sandbox in its own process; use as a context manager. ``root`` is ``http://127.0.0.1:PORT``.

    The servers run in a child process (:mod:`harness.sandbox.process`), never beside the client being
    measured: a client and a sandbox sharing one interpreter share its GIL, and each one's CPU work then lands
    in the other's timings. Closing the child's stdin stops it; so does the parent's death.
    """

    settings: SandboxSettings = field(default_factory=SandboxSettings)
    profiles: Mapping[str, ProviderProfile] = field(default_factory=lambda: load_profiles(None))
    host: str = "127.0.0.1"
    port: int = 0
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    """With a certificate and key the sandbox speaks HTTPS (for SDKs that only build ``https://`` URLs,
    such as fal-client with ``FAL_RUN_HOST``/``FAL_QUEUE_RUN_HOST`` pointed at it)."""
    root: str = ""
    served: tuple[str, ...] = ()
    """The simulated providers the running sandbox serves (set by :meth:`start`)."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Protocol name -> why the running sandbox does not serve it (no server, a plugin that failed to load)."""
    _process: subprocess.Popen[str] | None = None

    def base_urls(self) -> dict[str, str]:
        """Each served simulated provider's base URL (what its SDK's ``base_url`` should be)."""
        return {name: spec.sandbox_base_url(self.root) for name, spec in sandbox_layout().served.items()
                if name in self.served}

    def start(self) -> SandboxServer:
        from harness.sandbox.process import config_line

        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.sandbox.process"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, bufsize=1,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(config_line(self.settings, self.profiles, self.host, self.port, self.ssl_certfile,
                                         self.ssl_keyfile))
            proc.stdin.flush()
            answer = _read_line(proc.stdout, STARTUP_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            _end(proc)
            raise RuntimeError(f"sandbox server failed to start on {self.host}:{self.port}: {exc}") from exc
        if "port" not in answer:
            _end(proc)
            raise RuntimeError(str(answer.get("error") or f"sandbox server failed to start: {answer}"))
        self.port = int(str(answer["port"]))
        served, skipped = answer.get("served", []), answer.get("skipped", {})
        self.served = tuple(str(n) for n in served) if isinstance(served, list) else ()
        self.skipped = {str(k): str(v) for k, v in skipped.items()} if isinstance(skipped, dict) else {}
        self.root = f"{'https' if self.ssl_certfile else 'http'}://{self.host}:{self.port}"
        self._process = proc
        return self

    def stop(self) -> None:
        if self._process is not None:
            _end(self._process)
        self._process = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _read_line(stream: IO[str], timeout_s: float) -> dict[str, object]:
    """The child's one JSON line, or ``TimeoutError``/``ValueError`` (it died or said something else)."""
    ready, _, _ = select.select([stream], [], [], timeout_s)
    if not ready:
        raise TimeoutError(f"no answer within {timeout_s:g} s")
    line = stream.readline()
    if not line:
        raise ValueError("the sandbox process exited before it was ready")
    answer = json.loads(line)
    if not isinstance(answer, dict):
        raise ValueError(f"unexpected answer {line!r}")
    return answer


def _end(proc: subprocess.Popen[str]) -> None:
    """Close the child's stdin (it shuts down gracefully), then terminate and kill if it lingers."""
    with contextlib.suppress(OSError):
        if proc.stdin is not None:
            proc.stdin.close()
    for escalate in (None, proc.terminate, proc.kill):
        if escalate is not None:
            with contextlib.suppress(OSError):
                escalate()
        try:
            proc.wait(timeout=5)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(OSError):
        if proc.stdout is not None:
            proc.stdout.close()


def start_sandbox(time_scale: float = 1.0, faults: bool = True, seed: int = 0,
                  profile_file: Path | None = None, port: int = 0, ssl_certfile: Path | None = None,
                  ssl_keyfile: Path | None = None) -> SandboxServer:
    """Start a sandbox in its own process (call ``stop()`` or use it as a context manager)."""
    return SandboxServer(settings=SandboxSettings(time_scale=time_scale, faults=faults, seed=seed),
                         profiles=load_profiles(profile_file), port=port, ssl_certfile=ssl_certfile,
                         ssl_keyfile=ssl_keyfile).start()
