"""Typed records that cross module boundaries and are persisted: runs, attempts, outputs.

Every persisted record carries the store's ``schema_version`` through its table; exports add a
``schema_version`` field to each row. Times: ``*_at`` are wall-clock UTC (ISO 8601 strings or Unix seconds
as named); every ``*_ms`` is a duration in milliseconds measured with ``perf_counter_ns``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from harness.outcomes import NOT_SENT as NOT_SENT  # re-exported: the word lives in harness.outcomes
from harness.outcomes import RunStatus
from harness.timing import AttemptClock

RUN_HOST_ENV = "HARNESS_RUN_HOST"
"""Environment variable naming the host an attempt is recorded under (default: :func:`socket.gethostname`),
for machines whose host name says nothing (containers) or tests that play several hosts on one."""


def run_host() -> str:
    """The host this process records its attempts under: ``$HARNESS_RUN_HOST`` or the machine's host name."""
    return os.environ.get(RUN_HOST_ENV, "").strip() or socket.gethostname()


FLATTENED: Mapping[str, Any] = MappingProxyType({"column": "flatten"})
"""Field metadata: the field is a record whose own fields are stored as columns (by their names)."""
FLATTENED_NULLABLE: Mapping[str, Any] = MappingProxyType({"column": "flatten", "nullable": True})
"""As :data:`FLATTENED`, with every one of those columns nullable (some points of an attempt are never reached)."""
STORED_AS_JSON: Mapping[str, Any] = MappingProxyType({"column": "json"})
"""Field metadata: a mapping stored as JSON text in the column ``<name>_json`` (NULL when empty)."""
NOT_STORED: Mapping[str, Any] = MappingProxyType({"column": None})
"""Field metadata: not a column of the record's table (kept in another table, a file, or nowhere)."""


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """One image of a successful attempt, stored as ``images/<sha256>.<ext>``.

    ``sha256`` is empty while the record waits for the store writer, which hashes the bytes off the event loop.
    """

    idx: int
    sha256: str
    ext: str
    width: int
    height: int
    nbytes: int


@dataclass(frozen=True, slots=True)
class RequestKey:
    """Identifies one logical request of a run; resume finishes exactly the keys without a final attempt."""

    challenge_id: str
    variant: str
    target: str
    sample: int


@dataclass(slots=True, kw_only=True)
class AttemptRecord:
    """One HTTP-level attempt of a logical request (retries produce several, the last has ``final``).

    The record is the one definition of the store's ``attempts`` columns (:mod:`harness.store.runs` derives
    its table, insert and frame columns from these fields, in this order): a scalar field is a column of its
    own name, ``key`` and ``clock`` give one column per field of theirs (:data:`FLATTENED`), ``usage`` and
    ``provider_timings`` are stored as JSON in ``<name>_json`` (:data:`STORED_AS_JSON`), and what is marked
    :data:`NOT_STORED` lives elsewhere (outputs in their own table, bytes in image files). A field added
    later must be nullable or have a default: older stores gain its column on their next write.

    ``sched_ms``/``start_ms`` are relative to the run's start (open-loop schedule and actual start);
    ``started_at`` is Unix seconds (UTC) for plotting over time. ``cost_usd`` is what this attempt costs
    (0 for unbilled failures); ``cost_source`` says how it was computed (``per_image``, ``tokens``,
    ``provider_reported``, ``billable_units``, ``predict_time``, ``none``).
    """

    run_id: str
    key: RequestKey = field(metadata=FLATTENED)
    attempt: int
    final: bool
    model: str
    provider: str
    protocol: str
    ok: bool
    error_kind: str | None = None
    """Why the attempt failed, one of :class:`harness.outcomes.ErrorKind` or
    :data:`harness.outcomes.NOT_SENT`; ``None`` when it succeeded."""
    http_status: int | None = None
    provider_code: str | None = None
    error_message: str | None = None
    request_id: str | None = None
    started_at: float
    sched_ms: float
    start_ms: float
    clock: AttemptClock = field(metadata=FLATTENED_NULLABLE)
    retry_wait_ms: float | None = None
    retry_after_ms: float | None = None
    n_images: int = 0
    width: int | None = None
    height: int | None = None
    cost_usd: float = 0.0
    cost_source: str = "none"
    billed: bool = False
    usage: dict[str, Any] = field(default_factory=dict, metadata=STORED_AS_JSON)
    provider_timings: dict[str, Any] = field(default_factory=dict, metadata=STORED_AS_JSON)
    finish_reason: str | None = None
    size_requested: str | None = None
    """The size asked for, as sent: ``WxH`` pixels or ``W:H`` aspect ratio; ``None`` when the request named none."""
    size_as_asked: bool | None = None
    """Whether every delivered image has the requested size (or aspect ratio, within 1 %); ``None`` when
    nothing was delivered or nothing was requested. A different size is a success unless ``--strict-size``."""
    time_to_image_ms: float | None = None
    """On the final attempt of a logical request: first attempt's start to this attempt's end, every retry and
    Retry-After wait included (ms); the attempt's end is its start plus ``latency_with_connect_ms``. With one
    attempt it is that attempt's own span. Set on failed finals too (the time until the harness gave up: use
    ``ok`` to keep successes); ``None`` on non-final attempts and on requests never sent. Within one process
    it is measured on the monotonic clock; across a resume it runs from the first attempt's stored
    ``started_at`` (wall clock), so it includes the time the run was stopped."""
    host: str | None = field(default_factory=run_host)
    """The machine that made the attempt (:func:`run_host`): shards of one run started on several hosts are
    told apart by it. ``None`` in stores written before it was recorded."""
    region: str | None = None
    """Where the attempt's run (or shard) ran, as ``harness run --region`` labelled it (a free label such as
    ``eu-west``); ``None`` when not said."""
    outputs: list[OutputRecord] = field(default_factory=list, metadata=NOT_STORED)
    image_bytes: list[bytes] = field(default_factory=list, repr=False, metadata=NOT_STORED)
    """Validated image bytes waiting to be written by the store writer (never persisted in the DB)."""


@dataclass(frozen=True, slots=True)
class FinalOutcome:
    """How one logical request ended, as much as deciding whether its target is dead needs (a resume replays
    the stored ones so the first final attempts are counted across processes)."""

    challenge_id: str
    ok: bool
    error_kind: str | None
    http_status: int | None
    provider_code: str | None
    error_message: str | None


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A run as listed by ``harness runs``.

    ``status``: one of :class:`~harness.outcomes.RunStatus` (running, finished, interrupted, failed)."""

    id: str
    created_at: str
    finished_at: str | None
    status: RunStatus
    harness_version: str
    sandbox: bool
    time_scale: float | None
    label: str | None
    config: dict[str, Any]
    attempts: int = 0
    requests_done: int = 0
    requests_planned: int = 0
    clock_version: int = 1
    """The measurement definitions the run's figures follow (:data:`harness.timing.CLOCK_VERSION`)."""
    interrupted_at: str | None = None
    """For a run whose process died or was stopped without finishing (``status`` ``interrupted``): when it
    last did something (its last attempt's end, or when it was last started), ISO 8601 UTC."""
    held_by: str | None = None
    """For a ``running`` run: the live process executing it (``process PID on HOST since ...``)."""
