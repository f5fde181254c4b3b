"""What one protocol is, written once: its adapter, its sandbox server, where that server is mounted and how
it behaves by default.

A :class:`ProtocolSpec` names code by ``"module:attr"`` text and is resolved only when used, so listing the
protocols (``harness targets list``) never imports an adapter, a server or their dependencies.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.providers.base import Provider
    from harness.sandbox.profiles import ProviderProfile
    from harness.sandbox.simulation import ASGIApp, SimulatedProvider

_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class MountedServer(Protocol):
    """A sandbox server instance: gives the ASGI app that answers under the spec's mount prefix."""

    def app(self) -> ASGIApp: ...


SandboxServerClass = Callable[["SimulatedProvider"], MountedServer]
"""A sandbox server class: built with the :class:`~harness.sandbox.simulation.SimulatedProvider` that draws
its latencies and faults (``OpenAIImagesServer(sim).app()``)."""


def resolve(reference: str) -> Any:
    """The object a ``"module:attr"`` reference names (``attr`` may be dotted); ``ConfigError`` naming the
    reference when the module cannot be imported or lacks the attribute."""
    module_name, _, attr = reference.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{reference}: cannot import {module_name}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{reference}: {module_name} has no attribute {attr!r}") from None
    return obj


@dataclass(frozen=True)
class ProtocolSpec:
    """One wire protocol, registered once (built in, or by a plugin's ``harness.protocols`` entry point).

    ``name``: the protocol name targets give (``protocol: openai-images``).
    ``adapter``: ``"module:Class"`` of its :class:`~harness.providers.base.Provider` subclass.
    ``description``: one line for listings and errors.
    ``server``: ``"module:Class"`` of its simulated server (see :data:`SandboxServerClass`), or ``None`` for a
    protocol the sandbox cannot serve (its targets run only against the real API).
    ``mount``: the path prefix the server answers under in the sandbox (``/openai/v1``).
    ``base_path``: what follows the mount in the base URL an SDK is given (fal's queue host ``/queue``).
    ``profile``: the server's default behaviour (latency, faults, limits): a ``"module:attr"`` reference to a
    :class:`~harness.sandbox.profiles.ProviderProfile` (or to a function returning one), or its fields as
    plain data (``{"latency": {"median_s": 2.0, "p95_s": 4.0}}``).
    ``simulated_name``: the simulated provider's name in the sandbox (profile files, ``base_urls()``) where it
    differs from ``name`` (the built-in ``openai-images`` protocol is served as ``openai``).
    """

    name: str
    adapter: str
    description: str = ""
    server: str | None = None
    mount: str = ""
    base_path: str = ""
    profile: str | Mapping[str, Any] | None = field(default=None, hash=False)
    simulated_name: str = ""

    def __post_init__(self) -> None:
        where = f"protocol spec {self.name!r}"
        if not _NAME.match(self.name):
            raise ValueError(f"{where}: name must be lower-case letters, digits, '.', '_' or '-'")
        for label, ref in (("adapter", self.adapter), ("server", self.server)):
            if ref is not None and not _REFERENCE.match(ref):
                raise ValueError(f"{where}: {label} must be 'module:Class', got {ref!r}")
        if isinstance(self.profile, str) and not _REFERENCE.match(self.profile):
            raise ValueError(f"{where}: profile must be 'module:attr' or a mapping of fields, got {self.profile!r}")
        if self.simulated_name and not _NAME.match(self.simulated_name):
            raise ValueError(f"{where}: simulated_name must be lower-case letters, digits, '.', '_' or '-'")
        if self.server is None:
            return
        if not self.mount.startswith("/") or self.mount.endswith("/"):
            raise ValueError(f"{where}: mount must start with '/' and not end with one, got {self.mount!r}")
        if self.base_path and (not self.base_path.startswith("/") or self.base_path.endswith("/")):
            raise ValueError(f"{where}: base_path must start with '/' and not end with one, got {self.base_path!r}")
        if self.profile is None:
            raise ValueError(f"{where}: a spec with a sandbox server needs a default profile")

    @property
    def sandbox_name(self) -> str:
        """The simulated provider's name in the sandbox."""
        return self.simulated_name or self.name

    @property
    def has_sandbox(self) -> bool:
        return self.server is not None

    def sandbox_base_url(self, sandbox_root: str) -> str:
        """The base URL of this protocol's server in a sandbox at ``sandbox_root`` (``http://127.0.0.1:PORT``)."""
        return sandbox_root.rstrip("/") + self.mount + self.base_path

    def adapter_class(self) -> type[Provider]:
        """The adapter, imported now; ``ConfigError`` when it cannot be imported or is not a Provider."""
        from harness.providers.base import Provider

        cls = resolve(self.adapter)
        if not (isinstance(cls, type) and issubclass(cls, Provider)):
            raise ConfigError(f"protocol {self.name!r}: {self.adapter} is not a harness.providers.base.Provider "
                              "subclass")
        return cls

    def server_class(self) -> SandboxServerClass:
        """The sandbox server class, imported now; ``ConfigError`` when there is none or it cannot be used."""
        if self.server is None:
            raise ConfigError(f"protocol {self.name!r} has no sandbox server")
        cls = resolve(self.server)
        if not callable(cls):
            raise ConfigError(f"protocol {self.name!r}: {self.server} is not a server class")
        server: SandboxServerClass = cls
        return server

    def default_profile(self) -> ProviderProfile:
        """The server's default profile; ``ConfigError`` naming the spec when it is missing or invalid."""
        from pydantic import ValidationError

        from harness.sandbox.profiles import ProviderProfile

        where = f"protocol {self.name!r}: default profile"
        if self.profile is None:
            raise ConfigError(f"{where}: none given")
        value: Any = resolve(self.profile) if isinstance(self.profile, str) else self.profile
        if callable(value) and not isinstance(value, ProviderProfile):
            value = value()
        if isinstance(value, ProviderProfile):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a ProviderProfile or a mapping of its fields, got "
                              f"{type(value).__name__}")
        try:
            return ProviderProfile.model_validate(dict(value))
        except ValidationError as exc:
            details = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{where}: {details}") from exc
