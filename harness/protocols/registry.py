"""The one protocol registry: the built-in specs plus every installed ``harness.protocols`` entry point.

A plugin registers a protocol without editing the harness (see docs/protocols.md)::

    [project.entry-points."harness.protocols"]
    echo-images = "my_package.spec:SPEC"          # a ProtocolSpec: adapter, sandbox server, profile
    my-protocol = "my_package.adapter:MyProvider"  # a Provider subclass alone: adapter only, no sandbox

Built-in names win over an entry point of the same name. An entry point that cannot be loaded does not break
the other protocols: its name stays known and using it raises the reason (:func:`get_spec`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from harness.errors import ConfigError
from harness.protocols.builtin import BUILTIN_SPECS
from harness.protocols.spec import ProtocolSpec

ENTRY_POINT_GROUP = "harness.protocols"


class UnknownProtocolError(LookupError):
    """Raised for a protocol name that is neither built in nor registered by an entry point."""


@dataclass(frozen=True)
class BrokenPlugin:
    """An entry point that did not give a usable protocol: its ``name = value`` and why."""

    name: str
    value: str
    reason: str


def builtin_specs() -> dict[str, ProtocolSpec]:
    """The built-in protocols by name, in listing order."""
    return {s.name: s for s in BUILTIN_SPECS}


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().partition("\n")[0]


def _spec_of(ep: EntryPoint) -> ProtocolSpec:
    """The spec an entry point gives: a :class:`ProtocolSpec`, or a Provider subclass (adapter only)."""
    from harness.providers.base import Provider

    where = f"entry point {ep.name} = {ep.value!r} in group {ENTRY_POINT_GROUP}"
    try:
        obj = ep.load()
    except Exception as exc:
        raise ConfigError(f"{where}: cannot be loaded: {type(exc).__name__}: {exc}") from exc
    if isinstance(obj, ProtocolSpec):
        if obj.name != ep.name:
            raise ConfigError(f"{where}: its spec is named {obj.name!r}; the entry point must use that name")
        return obj
    if isinstance(obj, type) and issubclass(obj, Provider):
        return ProtocolSpec(name=ep.name, adapter=ep.value, description=_first_line(obj.__doc__))
    raise ConfigError(f"{where}: gives a {type(obj).__name__}, not a ProtocolSpec or a Provider subclass")


def plugin_specs() -> dict[str, ProtocolSpec | BrokenPlugin]:
    """Every installed entry point's protocol (built-in names excluded), or why it cannot be used."""
    builtin = builtin_specs()
    found: dict[str, ProtocolSpec | BrokenPlugin] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in builtin or ep.name in found:
            continue
        try:
            found[ep.name] = _spec_of(ep)
        except (ConfigError, ValueError) as exc:
            found[ep.name] = BrokenPlugin(ep.name, ep.value, str(exc))
    return found


def protocol_specs() -> dict[str, ProtocolSpec]:
    """Every usable protocol by name: built-ins first, then plugins."""
    specs = builtin_specs()
    specs.update({n: s for n, s in plugin_specs().items() if isinstance(s, ProtocolSpec)})
    return specs


def available_protocols() -> dict[str, str]:
    """Every known protocol name with the ``module:Class`` of its adapter (a broken plugin's entry point
    value: it is known, and using it says what is wrong)."""
    found = {n: s.adapter for n, s in builtin_specs().items()}
    for name, spec in plugin_specs().items():
        found[name] = spec.adapter if isinstance(spec, ProtocolSpec) else spec.value
    return found


def get_spec(name: str) -> ProtocolSpec:
    """The spec of ``name``; :class:`UnknownProtocolError` with suggestions when no protocol has that name,
    ``ConfigError`` with the reason when its plugin cannot be loaded."""
    builtin = builtin_specs()
    if name in builtin:
        return builtin[name]
    plugins = plugin_specs()
    spec = plugins.get(name)
    if isinstance(spec, BrokenPlugin):
        raise ConfigError(f"protocol {name!r}: {spec.reason}")
    if spec is None:
        known = [*builtin, *plugins]
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownProtocolError(f"unknown protocol {name!r}; known: {', '.join(sorted(known))}.{hint}")
    return spec


@dataclass(frozen=True)
class SandboxLayout:
    """What the sandbox serves: ``served`` maps each simulated provider name to its spec; ``skipped`` maps a
    protocol name to why the sandbox does not serve it."""

    served: dict[str, ProtocolSpec]
    skipped: dict[str, str]


def sandbox_layout() -> SandboxLayout:
    """Which protocols the sandbox mounts, and why the others are left out (no server, a broken plugin, a
    simulated name or mount prefix already taken). Imports no server."""
    served: dict[str, ProtocolSpec] = {}
    skipped: dict[str, str] = {}
    for name, spec in [*builtin_specs().items(), *plugin_specs().items()]:
        if isinstance(spec, BrokenPlugin):
            skipped[name] = spec.reason
        elif spec.server is None:
            skipped[name] = "its spec names no sandbox server (adapter only); run its targets without --sandbox"
        elif spec.sandbox_name in served:
            skipped[name] = f"simulated provider name {spec.sandbox_name!r} is already served by " \
                            f"{served[spec.sandbox_name].name!r}"
        elif clash := next((s for s in served.values() if _overlaps(s.mount, spec.mount)), None):
            skipped[name] = f"mount prefix {spec.mount!r} overlaps {clash.mount!r} of {clash.name!r}"
        else:
            served[spec.sandbox_name] = spec
    return SandboxLayout(served, skipped)


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def simulated_provider(protocol: str) -> str | None:
    """The sandbox's name for the provider that speaks ``protocol``, or ``None`` when the sandbox does not
    serve it. Built-in protocols are answered without scanning the installed entry points."""
    builtin = builtin_specs().get(protocol)
    if builtin is not None:
        return builtin.sandbox_name if builtin.has_sandbox else None
    return next((n for n, s in sandbox_layout().served.items() if s.name == protocol), None)


def require_sandbox(protocol: str) -> ProtocolSpec:
    """The spec of ``protocol`` when the sandbox serves it; otherwise ``ConfigError`` saying why (for
    ``--sandbox`` runs, before any request is sent)."""
    spec = get_spec(protocol)
    layout = sandbox_layout()
    if layout.served.get(spec.sandbox_name) != spec:
        reason = layout.skipped.get(protocol, "it is not served")
        raise ConfigError(f"protocol {protocol!r} cannot run in the sandbox: {reason}")
    return spec
