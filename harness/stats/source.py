"""What the statistics need to know about a stored run besides its attempts."""

from __future__ import annotations

from typing import Any

from harness.records import RunInfo


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
