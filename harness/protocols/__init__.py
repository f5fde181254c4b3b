"""One spec per wire protocol (:class:`ProtocolSpec`) and the one registry of them (built-ins plus the
``harness.protocols`` entry points). See docs/protocols.md for adding a protocol."""

from harness.protocols.registry import (
    ENTRY_POINT_GROUP,
    BrokenPlugin,
    SandboxLayout,
    UnknownProtocolError,
    available_protocols,
    get_spec,
    plugin_specs,
    protocol_specs,
    require_sandbox,
    sandbox_layout,
    simulated_provider,
)
from harness.protocols.spec import ProtocolSpec, SandboxServerClass, resolve

__all__ = [
    "ENTRY_POINT_GROUP",
    "BrokenPlugin",
    "ProtocolSpec",
    "SandboxLayout",
    "SandboxServerClass",
    "UnknownProtocolError",
    "available_protocols",
    "get_spec",
    "plugin_specs",
    "protocol_specs",
    "require_sandbox",
    "resolve",
    "sandbox_layout",
    "simulated_provider",
]
