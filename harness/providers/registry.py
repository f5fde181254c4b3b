"""Protocol name -> adapter class, imported lazily on first use.

The protocols themselves are registered once, in :mod:`harness.protocols` (built-in specs plus the
entry-point group ``harness.protocols``); this module keeps the adapter-facing names the runner uses.
"""

from __future__ import annotations

from harness.protocols.builtin import BUILTIN_SPECS
from harness.protocols.registry import ENTRY_POINT_GROUP, UnknownProtocolError, available_protocols, get_spec
from harness.providers.base import Provider

BUILTIN_PROTOCOLS: dict[str, str] = {s.name: s.adapter for s in BUILTIN_SPECS}
"""Built-in protocol name -> ``module:Class`` of its adapter."""

__all__ = ["BUILTIN_PROTOCOLS", "ENTRY_POINT_GROUP", "UnknownProtocolError", "available_protocols",
           "get_protocol"]


def get_protocol(name: str) -> type[Provider]:
    """The adapter class for ``name``; a clear error with suggestions when it is unknown."""
    return get_spec(name).adapter_class()
