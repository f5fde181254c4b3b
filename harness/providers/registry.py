"""Protocol registry: name -> adapter class, imported lazily on first use.

Built-in protocols are listed as ``"module:Class"`` placeholders so importing the package never imports an
adapter. Third parties add a protocol without editing this file through the entry-point group
``harness.protocols``::

    [project.entry-points."harness.protocols"]
    my-protocol = "my_package.adapter:MyProvider"
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points

from harness.providers.base import Provider

ENTRY_POINT_GROUP = "harness.protocols"

BUILTIN_PROTOCOLS: dict[str, str] = {
    "openai-images": "harness.providers.openai_images:OpenAIImagesProvider",
    "gemini": "harness.providers.gemini:GeminiProvider",
    "openrouter": "harness.providers.openrouter:OpenRouterProvider",
    "fal": "harness.providers.fal:FalProvider",
    "replicate": "harness.providers.replicate:ReplicateProvider",
}


class UnknownProtocolError(LookupError):
    """Raised for a protocol name that is neither built in nor registered by an entry point."""


def _load(spec: str) -> type[Provider]:
    module_name, _, attr = spec.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise TypeError(f"{spec} is not a harness.providers.base.Provider subclass")
    return cls


def available_protocols() -> dict[str, str]:
    """Every known protocol name with the ``module:Class`` that implements it."""
    found = dict(BUILTIN_PROTOCOLS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def get_protocol(name: str) -> type[Provider]:
    """The adapter class for ``name``; a clear error with suggestions when it is unknown."""
    known = available_protocols()
    spec = known.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownProtocolError(
            f"unknown protocol {name!r}; known: {', '.join(sorted(known))}.{hint}"
        )
    return _load(spec)
