"""The words the harness uses for how things ended, defined once: why an attempt failed (:class:`ErrorKind`,
and :data:`NOT_SENT` for a request never sent), how a run stands (:class:`RunStatus`) and what a gallery
tile shows (:data:`TileOutcome`).

The stored ``attempts.error_kind`` column holds one of :data:`ERROR_KINDS` (``NULL`` for a success); the
statistics, the tables, the report and the exports read these words, never their own spellings. An
attempt's success is its ``ok`` flag, never the absence of an error kind alone.
"""

from __future__ import annotations

import enum
from typing import Final, Literal


class ErrorKind(enum.StrEnum):
    """The class of a failed attempt; shared by all adapters, the runner and the statistics."""

    RATE_LIMITED = "rate_limited"
    """The provider asked the harness to slow down (HTTP 429 and its equivalents); retryable after its
    ``Retry-After``."""
    QUOTA_EXHAUSTED = "quota_exhausted"
    """The account's quota or credit is spent (402, or a 429 whose body says so): waiting does not cure it."""
    AUTH = "auth"
    """The key was refused (401, 403)."""
    INVALID_REQUEST = "invalid_request"
    """The provider refused the request as malformed or unsupported (the other 4xx: a model, a parameter)."""
    REFUSED = "refused"
    """The provider's safety system refused the prompt or its output."""
    NO_IMAGE = "no_image"
    """A complete, well-formed answer that holds no image (text only, an empty list)."""
    SERVER_ERROR = "server_error"
    """The provider failed (5xx, 409, an error event mid-stream); retryable."""
    TIMEOUT = "timeout"
    """No complete answer within the attempt's total timeout (or the provider's 408); retryable."""
    CONNECTION = "connection"
    """The connection failed or was cut before a complete answer (DNS, TCP, TLS, a reset); retryable."""
    BAD_OUTPUT = "bad_output"
    """An answer the harness could not use: an undecodable or oversized image, a wrong count or size under
    ``--strict-size``, a shape the adapter cannot parse, an answer over a response limit."""

    @property
    def retryable(self) -> bool:
        """Whether waiting and sending the same request again can succeed."""
        return self in RETRYABLE


RETRYABLE: Final = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.SERVER_ERROR, ErrorKind.TIMEOUT,
                              ErrorKind.CONNECTION})
"""Failures a retry can cure (``--retries``)."""

NOT_SENT: Final = "not_sent"
"""``error_kind`` of a final attempt recorded for a request that was never sent: its target was stopped (a
dead target, a spend cap). Such an attempt has ``http_calls`` 0, ``ok`` false and the reason in
``error_message``; statistics keep it out of latency and success denominators and show its count."""

ERROR_KINDS: Final = frozenset({*(k.value for k in ErrorKind), NOT_SENT})
"""Every word the store's ``attempts.error_kind`` may hold (besides ``NULL`` for a success)."""


class RunStatus(enum.StrEnum):
    """How a run stands (``runs.status``, ``harness runs``)."""

    RUNNING = "running"
    """A live process holds the run (one of its shards, for a sharded run)."""
    FINISHED = "finished"
    """Every planned request has a final attempt."""
    INTERRUPTED = "interrupted"
    """Stopped by Ctrl-C or SIGTERM, or its process died; ``harness run --resume`` finishes it."""
    FAILED = "failed"
    """Stopped by an error such as a full disk; ``--resume`` finishes it once fixed."""


TileOutcome = Literal["ok", "failed", "not sent", "not run"]
"""What a report gallery tile shows for one request: an image, a failed request, a request recorded as never
sent (:data:`NOT_SENT`), or a challenge the target was not asked (its protocol cannot do the kind)."""

TILE_OUTCOMES: Final[tuple[TileOutcome, ...]] = ("ok", "failed", "not sent", "not run")
"""The tile outcomes in the order the gallery lists them."""


def tile_outcome(ok: bool, error_kind: str | None) -> TileOutcome:
    """The gallery outcome of a request's final attempt."""
    if ok:
        return "ok"
    return "not sent" if error_kind == NOT_SENT else "failed"
