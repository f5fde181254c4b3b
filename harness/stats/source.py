"""What the statistics need to know about a stored run besides its attempts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.batch.stats import with_batch
from harness.records import RunInfo
from harness.stats.fidelity import fidelity_rows, fidelity_warning
from harness.stats.goodput import DEFAULT_MEASURE, Measure
from harness.stats.requests import stats_columns
from harness.stats.table import ProviderRow, provider_rows
from harness.store import Store
from harness.store import runs as run_store

CHALLENGE_COLUMNS = ("kind", "category")
"""Columns ``attempts_frame`` adds from the run's challenges rather than reading them from the attempts."""


def effective_timeout_ms(info: RunInfo) -> float | None:
    """The per-attempt timeout the run enforced, in ms: ``timeout_s``, times ``time_scale`` in sandbox runs.

    ``None`` when the run's configuration does not record one.
    """
    config: dict[str, Any] = info.config
    timeout_s = config.get("timeout_s")
    if not isinstance(timeout_s, (int, float)):
        return None
    scale = config.get("time_scale") if config.get("sandbox") else 1.0
    return float(timeout_s) * float(scale if isinstance(scale, (int, float)) else 1.0) * 1000.0


def stored_attempt_columns(store: Store) -> list[str]:
    """Attempt columns this store has and the frame reader knows. A store written by an older release and
    opened read-only has not gained the newer columns yet; reading those would fail."""
    present = set(run_store.attempt_columns(store))
    return [c for c in run_store.ATTEMPT_FRAME_COLUMNS if c in present]


def stats_frame_columns(store: Store, by: Sequence[str] = ()) -> list[str]:
    """Attempt columns to read for the provider table split ``by`` those columns: what the statistics need,
    as far as ``store`` has them."""
    readable = stored_attempt_columns(store)
    return [c for c in stats_columns(readable, by) if c not in CHALLENGE_COLUMNS and c in readable]


@dataclass(frozen=True)
class RunStats:
    """A stored run's provider table and the warning to print beside it.

    ``fidelity_warning``: for a sandbox run whose measured latencies stray more than 5 % from the delays the
    sandbox intended (:func:`harness.stats.fidelity.fidelity_warning`), what to do about it; else ``None``.
    """

    info: RunInfo
    rows: list[ProviderRow]
    fidelity_warning: str | None = None


def run_stats(store: Store, info: RunInfo, by: Sequence[str] = ("target",), *, slo_ms: float | None = None,
              goodput_measure: Measure = DEFAULT_MEASURE) -> RunStats:
    """The provider table of the stored run ``info`` split ``by`` attempt columns (resolved ``--by`` names),
    what ``harness stats`` and the summary at the end of ``harness run`` print; with ``slo_ms``, goodput
    against that objective (ms) measured on ``goodput_measure``."""
    frame = run_store.attempts_frame(store, [info.id], columns=stats_frame_columns(store, by))
    rows = provider_rows(frame, by, timeout_ms=effective_timeout_ms(info), slo_ms=slo_ms,
                         goodput_measure=goodput_measure)
    rows = with_batch(store, [info.id], rows)
    warning = None
    if info.sandbox and info.time_scale and "intended_ms" in frame.columns:
        warning = fidelity_warning(fidelity_rows(frame), float(info.time_scale))
    return RunStats(info, rows, warning)
