"""Removes the run's API keys, in every common encoding, from text and JSON-like values.

A provider can echo what it was sent (``401 You sent: {'authorization': 'Bearer sk-…'}``), put it in a
request id, in usage JSON, or inside the image it returns. Whatever it sent, the key must never reach the
store, the terminal, exports, reports or the arena. A :class:`Redactor` is built once per run from the keys
the run loaded (:class:`harness.targets.Credential`) and is applied where every path meets: each provider
adapter's results and errors (:meth:`harness.providers.base.Provider.generate`) and every record the store
writer receives (:class:`harness.run.writer.StoreWriter`). ``harness store scrub`` uses the same matcher on
stores and reports written before keys were redacted.

Encodings matched, for each key ``k``: ``k`` itself (so ``Bearer k``, ``Key k``, ``Token k`` lose the key),
percent-encoded ``k`` (either hex case, ``+`` or ``%20`` for spaces), JSON- and Python-escaped ``k``,
HTML-escaped ``k``, and base64 (standard and URL-safe alphabets) of ``k`` alone *or inside any longer value*
such as HTTP Basic's ``user:k``: base64 encodes three bytes as four characters, so the characters that depend
only on ``k`` are the same whatever precedes it, given its offset modulo 3; all three alignments are matched.

A message cut short by a length limit may end in the first part of a key: a trailing piece of a key of at
least :data:`MIN_PARTIAL` characters (optionally followed by ``…``) is removed as well.

Keys shorter than :data:`SHORT_KEY` characters (a test key such as ``abc``) are matched only as whole tokens
(not inside a longer run of letters, digits, ``-`` or ``_``), so ordinary words are not blanked out, and only
raw and percent-encoded. Such a key gives no protection worth the name: use real keys.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "[REDACTED]"
"""What a key (or any encoding of it) is replaced with."""
SHORT_KEY = 8
"""Keys with fewer characters are matched only as whole tokens, raw or percent-encoded."""
MIN_PARTIAL = 6
"""The shortest trailing piece of a key (a message cut mid-key) that is removed."""
MIN_BASE64_CORE = 8
"""The shortest base64 run that identifies a key inside a longer encoded value."""
_TOKEN_CHARS = r"A-Za-z0-9_\-"


def _percent_pattern(text: str) -> str:
    """A regex for ``text``'s percent-encodings: ``%2f`` and ``%2F`` alike."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "%" and i + 2 < len(text) and re.fullmatch(r"[0-9A-Fa-f]{2}", text[i + 1:i + 3]):
            hi, lo = text[i + 1], text[i + 2]
            out.append("%" + "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in (hi, lo)))
            i += 3
        else:
            out.append(re.escape(text[i]))
            i += 1
    return "".join(out)


def _base64_cores(key: bytes) -> set[str]:
    """The base64 characters that depend only on ``key``, for each of its three possible alignments."""
    cores: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + key).decode("ascii").rstrip("=")
        start = -(-offset * 4 // 3) if offset else 0
        # characters whose 6 bits all come from key bytes: skip the ones sharing bits with the padding prefix,
        # and the last character when the key's last byte straddles it (it depends on what follows).
        end_bits = (offset + len(key)) * 8
        full_chars = end_bits // 6
        core = encoded[start:full_chars]
        if len(core) >= MIN_BASE64_CORE:
            cores.add(core)
            cores.add(core.replace("+", "-").replace("/", "_"))
    return cores


def _patterns(key: str) -> list[str]:
    """Regex alternatives that match ``key`` and its encodings (longest first is decided by the caller)."""
    if len(key) < SHORT_KEY:
        bound = f"(?<![{_TOKEN_CHARS}])(?:{{}})(?![{_TOKEN_CHARS}])"
        alts = {re.escape(key), _percent_pattern(quote(key, safe="")), _percent_pattern(quote_plus(key, safe=""))}
        return [bound.format("|".join(sorted(alts, key=len, reverse=True)))]
    plain = {
        key,
        json.dumps(key)[1:-1],
        json.dumps(key, ensure_ascii=False)[1:-1],
        json.dumps(key)[1:-1].replace("/", "\\/"),
        repr(key)[1:-1],
        html.escape(key),
        html.escape(key, quote=False),
    }
    alts = {re.escape(p) for p in plain}
    alts |= {_percent_pattern(quote(key, safe="")), _percent_pattern(quote_plus(key, safe="")),
             _percent_pattern(quote(key, safe="/"))}
    raw = key.encode("utf-8")
    alts |= {re.escape(core) for core in _base64_cores(raw)}
    alts.add(re.escape(repr(raw)[2:-1]))
    return sorted(alts, key=len, reverse=True)


@dataclass(frozen=True)
class Redactor:
    """Replaces the keys it was built with by :data:`REDACTED` in text, JSON-like values and records.

    An empty redactor (no keys) returns everything unchanged at almost no cost."""

    keys: tuple[str, ...] = ()
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    _partials: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)
    _needles: tuple[bytes, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = tuple(sorted({k for k in self.keys if k}, key=len, reverse=True))
        object.__setattr__(self, "keys", keys)
        alts: list[str] = []
        for key in keys:
            alts.extend(_patterns(key))
        pattern = re.compile("|".join(sorted(set(alts), key=len, reverse=True))) if alts else None
        object.__setattr__(self, "_pattern", pattern)
        long_keys = tuple(k for k in keys if len(k) >= SHORT_KEY)
        object.__setattr__(self, "_partials", long_keys)
        needles = {k.encode("utf-8") for k in long_keys}
        needles |= {core.encode("ascii") for k in long_keys for core in _base64_cores(k.encode("utf-8"))}
        object.__setattr__(self, "_needles", tuple(needles))

    def __repr__(self) -> str:
        return f"Redactor({len(self.keys)} key(s))"

    @classmethod
    def for_keys(cls, keys: Iterable[str]) -> Redactor:
        return cls(tuple(keys))

    @classmethod
    def for_credentials(cls, credentials: Iterable[Any]) -> Redactor:
        """From :class:`harness.targets.Credential` objects (anything with a ``key`` attribute)."""
        return cls(tuple(str(c.key) for c in credentials))

    def __bool__(self) -> bool:
        return self._pattern is not None

    # ---- text --------------------------------------------------------------------------------------------

    def text(self, value: str) -> str:
        """``value`` without any key; a trailing piece of a key cut by a length limit is removed too."""
        return self.text_counted(value)[0]

    def text_counted(self, value: str) -> tuple[str, int]:
        """``value`` without any key, and how many occurrences were removed."""
        pattern = self._pattern
        if pattern is None or not value:
            return value, 0
        out, count = pattern.subn(REDACTED, value)
        out, cut = self._cut_tail(out)
        return out, count + cut

    def _cut_tail(self, value: str) -> tuple[str, int]:
        """Remove a key's first characters left at the end of a truncated message."""
        body = value[:-1] if value.endswith("…") else value
        ellipsis = value[len(body):]
        best = 0
        for key in self._partials:
            for n in range(min(len(key) - 1, len(body)), MIN_PARTIAL - 1, -1):
                if n <= best:
                    break
                if body.endswith(key[:n]):
                    best = n
                    break
        if not best:
            return value, 0
        return body[:-best] + REDACTED + ellipsis, 1

    def contains(self, data: bytes | str) -> bool:
        """Whether ``data`` holds any key. Bytes (an image that may hide a key in its metadata) are searched
        for the raw key and its base64 forms only, with ``bytes.find``: microseconds for a large image."""
        if self._pattern is None:
            return False
        if isinstance(data, bytes):
            return any(needle in data for needle in self._needles)
        return self._pattern.search(data) is not None

    # ---- structured values ---------------------------------------------------------------------------------

    def value(self, value: Any) -> Any:
        """A JSON-like value (str, list, tuple, dict with str keys, numbers) with every string redacted."""
        return self.value_counted(value)[0]

    def value_counted(self, value: Any) -> tuple[Any, int]:
        if self._pattern is None:
            return value, 0
        if isinstance(value, str):
            return self.text_counted(value)
        if isinstance(value, Mapping):
            total = 0
            out: dict[Any, Any] = {}
            for k, v in value.items():
                new_k, n1 = self.value_counted(k) if isinstance(k, str) else (k, 0)
                new_v, n2 = self.value_counted(v)
                out[new_k] = new_v
                total += n1 + n2
            return (out if total else value), total
        if isinstance(value, (list, tuple)):
            items = [self.value_counted(v) for v in value]
            total = sum(n for _, n in items)
            if not total:
                return value, 0
            seq = [v for v, _ in items]
            return (tuple(seq) if isinstance(value, tuple) else seq), total
        return value, 0

    def fields_in_place(self, obj: Any, skip: Iterable[str] = ()) -> int:
        """Redact every string, dict and list field of a dataclass instance in place (nested dataclasses too);
        returns how many occurrences were removed. Fields named in ``skip`` (raw image bytes) are left alone."""
        if self._pattern is None or not is_dataclass(obj) or isinstance(obj, type):
            return 0
        skipped = set(skip)
        total = 0
        for f in fields(obj):
            if f.name in skipped:
                continue
            current = getattr(obj, f.name)
            if is_dataclass(current) and not isinstance(current, type):
                params = getattr(type(current), "__dataclass_params__", None)
                if params is not None and not params.frozen:
                    total += self.fields_in_place(current)
                    continue
                new, n = self._frozen(current)
            else:
                new, n = self.value_counted(current)
            if n:
                object.__setattr__(obj, f.name, new)
                total += n
        return total

    def _frozen(self, obj: Any) -> tuple[Any, int]:
        changes: dict[str, Any] = {}
        total = 0
        for f in fields(obj):
            new, n = self.value_counted(getattr(obj, f.name))
            if n:
                changes[f.name] = new
                total += n
        if not total:
            return obj, 0
        return replace(obj, **changes), total


def redact_exception(exc: BaseException, redactor: Redactor) -> None:
    """Redact an exception's message in place (its ``args``), for errors raised by HTTP libraries whose text
    can quote a URL or a header the provider chose."""
    if not redactor:
        return
    args, n = redactor.value_counted(exc.args)
    if n:
        exc.args = tuple(args)
