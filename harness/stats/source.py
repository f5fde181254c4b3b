"""What the statistics need to know about a stored run besides its attempts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.records import RunInfo
from harness.stats.requests import stats_columns
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
    cursor = store.conn.execute("SELECT * FROM attempts LIMIT 0")
    present = {d[0] for d in cursor.description}
    return [c for c in run_store.ATTEMPT_FRAME_COLUMNS if c in present]


def stats_frame_columns(store: Store, by: Sequence[str] = ()) -> list[str]:
    """Attempt columns to read for the provider table split ``by`` those columns: what the statistics need,
    as far as ``store`` has them."""
    readable = stored_attempt_columns(store)
    return [c for c in stats_columns(readable, by) if c not in CHALLENGE_COLUMNS and c in readable]
