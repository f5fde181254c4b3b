"""Conversations on protocols that keep none: each turn is an edit fed the previous turn's output.

fal, Replicate and OpenAI's Images API serve image models as stateless endpoints: a multi-turn challenge becomes a chain of edit
requests, turn *k* sending turn *k-1*'s output image (plus the turn's own references) with the turn's
instruction. The "reply" such an adapter returns for the next turn is therefore not a provider message but
the output it received, in a form :mod:`harness.run.sequence` can store and give back on resume:

* ``{"images": [{"url": "data:image/...;base64,..."}]}``: the output as a data URL (the sequence store
  swaps its bytes for the image's SHA-256 and restores them on resume);
* :data:`LIVE_KEY`: ``{"url": ...}``, the URL the provider itself issued for that output. It is valid only
  while the conversation runs in this process: Replicate deletes API prediction outputs after an hour
  (https://replicate.com/docs/topics/predictions/lifecycle#data-retention) and a sandbox's files vanish with
  it, so the stored reply never keeps it (:func:`harness.run.sequence.pack_reply` drops the key) and a
  resumed conversation feeds the data URL instead.

OpenAI's ``/images/edits`` takes only uploads, so it is always fed the bytes
(:func:`previous_output_bytes`). Both fal (``image_urls`` "URLs or Base64 data URIs", https://fal.ai/models/fal-ai/nano-banana/edit/api) and
Replicate (file inputs as HTTP URLs or data URLs,
https://replicate.com/docs/topics/predictions/input-files) take either form. Target option ``chain_input``:
``url`` (default: the provider's own URL while it is live, a data URL after a resume) or ``data`` (always
upload the bytes, e.g. for a gateway that cannot fetch the provider's URLs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pybase64

from harness.errors import ConfigError
from harness.providers.base import ChallengeKind, Exchange, GenerationRequest, OutputImage
from harness.providers.common import image_data_url

LIVE_KEY = "$live"
"""Reply key for what is valid only while the conversation runs in this process (never stored)."""
CHAIN_INPUTS = ("url", "data")


def chain_input(options: Mapping[str, Any]) -> str:
    """The target's ``chain_input`` option (``url`` by default); a clear error for anything else."""
    value = str(options.get("chain_input", "url"))
    if value not in CHAIN_INPUTS:
        raise ConfigError(f"target option chain_input must be one of {', '.join(CHAIN_INPUTS)}, got {value!r}")
    return value


def previous_output(history: Sequence[Exchange], prefer_url: bool) -> str | None:
    """The image to feed the next turn: the last turn's output, by the provider's live URL when it has one
    and ``prefer_url``, else as the data URL the reply holds; ``None`` before the first turn."""
    if not history:
        return None
    reply = history[-1].reply
    live = reply.get(LIVE_KEY)
    if prefer_url and isinstance(live, Mapping) and isinstance(live.get("url"), str):
        return str(live["url"])
    images = reply.get("images")
    if isinstance(images, list) and images and isinstance(images[0], Mapping):
        url = images[0].get("url")
        if isinstance(url, str) and url:
            return url
    raise ConfigError("the previous turn's stored reply holds no output image to continue the conversation from")


def previous_output_bytes(history: Sequence[Exchange]) -> tuple[bytes, str] | None:
    """The last turn's output as ``(bytes, mime)``, decoded from the data URL its reply holds, for an
    endpoint that takes uploads rather than URLs (OpenAI's ``/images/edits``); ``None`` before the first turn."""
    url = previous_output(history, prefer_url=False)
    if url is None:
        return None
    header, _, text = url.partition(",")
    if not header.startswith("data:image/") or not header.endswith(";base64"):
        raise ConfigError("the previous turn's stored reply holds no image bytes to continue the conversation from")
    return pybase64.b64decode(text, validate=True), header[5:].split(";")[0]


def chained_image_urls(request: GenerationRequest, options: Mapping[str, Any]) -> list[str]:
    """Every image a conversation turn sends, as the edit endpoint's URLs: the previous output first (so
    "the image" an instruction speaks of is the one being refined), then the turn's own references."""
    first = previous_output(request.history, prefer_url=chain_input(options) == "url")
    refs = [image_data_url(ref) for ref in request.references]
    return [first, *refs] if first is not None else refs


def is_chained_edit(request: GenerationRequest) -> bool:
    """Whether this request is a conversation turn that sends images (any turn after the first, or a first
    turn with starting images); a first turn with none is a plain text-to-image request."""
    return request.kind == ChallengeKind.MULTI_TURN and bool(request.history or request.references)


def chained_reply(images: Sequence[OutputImage]) -> dict[str, Any]:
    """The reply a chained adapter returns for the next turn (see the module docstring). Only the first
    image continues the conversation (a turn asks for one). Encoded with SIMD base64 (well under a
    millisecond per MB), so it does not hold up the event loop that stamps other responses."""
    first = images[0]
    text = pybase64.b64encode(first.data).decode("ascii")
    reply: dict[str, Any] = {"images": [{"url": f"data:{first.mime or 'image/png'};base64,{text}"}]}
    if first.source_url and not first.source_url.startswith("data:"):
        reply[LIVE_KEY] = {"url": first.source_url}
    return reply
