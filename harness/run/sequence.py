"""Multi-turn challenges in a run: where a conversation stands, what each turn's attempt records about it, and
how a resumed run picks a conversation up from its last completed turn.

A conversation (one logical request of a multi-turn challenge) is recorded as the attempts of its turns, in
order, under the request's own key: attempt numbers run on across turns (a turn's retries included), and
only the attempt that ends the conversation is ``final`` (the last turn's answer, or the turn that failed
for good). Each of these attempts carries ``provider_timings["sequence"]`` (:class:`TurnMark`): the turn
(1-based), the number of turns, whether the attempt ended its turn, and, for a completed turn, the model's
reply as the provider returned it with every image payload replaced by the SHA-256 of its bytes in the
image store (:func:`pack_reply`). A resume rebuilds the history from those replies and the image store
(:func:`unpack_reply`) and sends the next turn; nothing is sent twice and no conversation starts over.

The key never reaches a stored reply: adapters remove it from every result (``Provider.generate``), the
reply included.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pybase64

from harness.challenges import Challenge, Turn, thaw_turns
from harness.errors import ConfigError
from harness.providers.base import ChallengeKind, Exchange
from harness.providers.chain import LIVE_KEY
from harness.records import RequestKey
from harness.store.images import image_name

SEQUENCE_KEY = "sequence"
"""Key of the conversation state in an attempt's ``provider_timings`` JSON."""
STATE_VERSION = 1
"""Version of the stored :class:`TurnMark` layout."""
IMAGE_REF = "$image"
"""Key of an image payload moved to the image store: ``{"$image": sha256, "ext": "png"}``."""
OFF_LOOP_BYTES = 256 * 1024
"""Replies whose image payloads are larger than this are packed in a worker thread."""


@dataclass(frozen=True, slots=True)
class TurnMark:
    """What an attempt of a conversation records about its place in it."""

    turn: int
    """1-based turn index."""
    turns: int
    """Turns in the conversation."""
    turn_final: bool
    """Whether this attempt ended its turn (it succeeded, or failed with no retry left)."""
    reply: dict[str, Any] | None = None
    """The model's reply of a completed turn, image payloads by hash (:func:`pack_reply`)."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"version": STATE_VERSION, "turn": self.turn, "turns": self.turns,
                                "turn_final": self.turn_final}
        if self.reply is not None:
            data["reply"] = self.reply
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TurnMark:
        return cls(int(data["turn"]), int(data["turns"]), bool(data["turn_final"]),
                   data.get("reply") if isinstance(data.get("reply"), dict) else None)


def turn_mark(provider_timings: Mapping[str, Any] | None) -> TurnMark | None:
    """The :class:`TurnMark` an attempt's ``provider_timings`` carries, or ``None`` for a single request."""
    data = (provider_timings or {}).get(SEQUENCE_KEY)
    return TurnMark.from_json(data) if isinstance(data, Mapping) else None


def is_conversation(challenge: Challenge) -> bool:
    return challenge.kind == ChallengeKind.MULTI_TURN


# ---- replies in the store ---------------------------------------------------------------------------------


_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


def _payload(node: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """``(field, mime, base64 text)`` when ``node`` holds an inline image: Gemini ``inlineData``
    (``mimeType``/``mime_type`` and ``data``) or a ``data:`` URL (OpenRouter ``image_url.url``)."""
    mime = node.get("mimeType") or node.get("mime_type")
    if isinstance(mime, str) and isinstance(node.get("data"), str) and mime.startswith("image/"):
        return "data", mime, str(node["data"])
    url = node.get("url")
    if isinstance(url, str) and url.startswith("data:image/") and ";base64," in url[:64]:
        header, _, payload = url.partition(",")
        return "url", header[5:].split(";")[0], payload
    return None


def pack_reply(reply: Mapping[str, Any], stored: Iterable[str]) -> dict[str, Any]:
    """``reply`` with every inline image whose bytes are in the image store (SHA-256 in ``stored``: the
    attempt's validated outputs) replaced by ``{"$image": sha256, "ext": ...}``.

    An image the store does not keep stays inline, except in a Gemini ``thought: true`` part (an interim
    thought image, which carries no signature and is not an answer): such parts are left out of the stored
    reply. A payload whose base64 is not canonical (so re-encoding its bytes would not give it back exactly)
    also stays inline. What a chained adapter marks as valid only while the conversation is live
    (:data:`harness.providers.chain.LIVE_KEY`, a provider URL that expires) is never stored."""
    keep = set(stored)
    reply = {k: v for k, v in reply.items() if k != LIVE_KEY}

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            out = []
            for item in node:
                if isinstance(item, Mapping) and item.get("thought") and _has_unstored_image(item, keep):
                    continue
                out.append(walk(item))
            return out
        if not isinstance(node, Mapping):
            return node
        found = _payload(node)
        if found is not None:
            name, mime, text = found
            raw = pybase64.b64decode(text, validate=True)
            sha = hashlib.sha256(raw).hexdigest()
            if sha in keep and pybase64.b64encode(raw).decode("ascii") == text:
                ref = {IMAGE_REF: sha, "ext": _EXT.get(mime, "png"), "mime": mime}
                return {**{k: walk(v) for k, v in node.items() if k != name}, name: ref}
        return {k: walk(v) for k, v in node.items()}

    return dict(walk(reply))


def _has_unstored_image(part: Mapping[str, Any], keep: set[str]) -> bool:
    for value in part.values():
        if isinstance(value, Mapping) and (found := _payload(value)) is not None:
            return hashlib.sha256(pybase64.b64decode(found[2])).hexdigest() not in keep
    return False


async def pack_reply_async(reply: Mapping[str, Any], stored: Iterable[str], image_bytes: int) -> dict[str, Any]:
    """:func:`pack_reply`, in a worker thread when the answer's images (``image_bytes`` in all) are large:
    decoding and hashing megabytes would hold up the event loop that stamps other responses' arrivals."""
    stored = list(stored)
    if image_bytes > OFF_LOOP_BYTES:
        return await asyncio.to_thread(pack_reply, reply, stored)
    return pack_reply(reply, stored)


def unpack_reply(packed: Mapping[str, Any], read: Callable[[str, str], bytes]) -> dict[str, Any]:
    """The reply as the provider returned it: each ``{"$image": sha}`` replaced by the base64 of the bytes
    ``read(sha, ext)`` gives (a data URL where the reply had one)."""

    def walk(node: Any, name: str | None = None) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, Mapping):
            return node
        if IMAGE_REF in node:
            text = pybase64.b64encode(read(str(node[IMAGE_REF]), str(node.get("ext", "png")))).decode("ascii")
            return f"data:{node.get('mime', 'image/png')};base64,{text}" if name == "url" else text
        return {k: walk(v, k) for k, v in node.items()}

    return dict(walk(packed))


# ---- where a conversation stands -------------------------------------------------------------------------


@dataclass
class Conversation:
    """A conversation in progress: the turns done (their exchanges) and the next turn to send (0-based).
    ``retrying`` says the next turn already has a failed attempt (a resume continues its retry budget)."""

    turns: tuple[Turn, ...]
    history: list[Exchange] = field(default_factory=list)
    retrying: bool = False
    turn_first_attempt: int | None = None
    """When ``retrying``: the attempt number of the next turn's first attempt (its retry budget counts from it)."""

    @property
    def next_turn(self) -> int:
        return len(self.history)

    @property
    def done(self) -> bool:
        return len(self.history) >= len(self.turns)


@dataclass(frozen=True, slots=True)
class StoredAttempt:
    """One stored attempt of a conversation, as much as a resume needs."""

    attempt: int
    ok: bool
    mark: TurnMark


def resume_conversation(turns: Sequence[Turn], variant: str, attempts: Sequence[StoredAttempt],
                        read: Callable[[str, str], bytes]) -> Conversation:
    """Where a conversation stands after its stored attempts: every completed turn's exchange rebuilt in
    order (its reply from the store), and whether the next turn was already tried."""
    conversation = Conversation(tuple(turns))
    ordered = sorted(attempts, key=lambda a: a.attempt)
    for stored in ordered:
        mark = stored.mark
        if stored.ok and mark.turn == conversation.next_turn + 1:
            if mark.reply is None:
                raise ConfigError(f"stored turn {mark.turn} has no reply to continue the conversation from")
            turn = turns[mark.turn - 1]
            conversation.history.append(Exchange(turn.prompts[variant], turn.references,
                                                 unpack_reply(mark.reply, read)))
    last = ordered[-1] if ordered else None
    conversation.retrying = last is not None and not last.ok and last.mark.turn == conversation.next_turn + 1
    if conversation.retrying:
        conversation.turn_first_attempt = min(a.attempt for a in ordered if a.mark.turn == conversation.next_turn + 1)
    return conversation


def stored_attempts(rows: Iterable[tuple[RequestKey, int, bool, str | None]]) -> dict[RequestKey, list[StoredAttempt]]:
    """Group stored attempt rows ``(key, attempt, ok, provider_timings_json)`` of conversations by request."""
    out: dict[RequestKey, list[StoredAttempt]] = {}
    for key, attempt, ok, timings in rows:
        mark = turn_mark(json.loads(timings)) if timings else None
        if mark is not None:
            out.setdefault(key, []).append(StoredAttempt(attempt, ok, mark))
    return out


def turns_of(challenge: Challenge, frozen: Mapping[str, Any] | None) -> tuple[Turn, ...]:
    """A multi-turn challenge's turns, rebuilt from its stored snapshot when the challenge was thawed
    without them."""
    if challenge.turns or frozen is None:
        return challenge.turns
    return thaw_turns(frozen, challenge.references)


def image_reader(image_path: Callable[[str, str], Path]) -> Callable[[str, str], bytes]:
    """Read an image of the store by hash (``image_path`` is the store's ``image_path``); ``ConfigError``
    when it is missing."""

    def read(sha: str, ext: str) -> bytes:
        path = image_path(sha, ext)
        if not path.is_file():
            raise ConfigError(f"image {image_name(sha, ext)} of a stored conversation is missing from the image store "
                              f"({path}); the conversation cannot continue")
        return path.read_bytes()

    return read
