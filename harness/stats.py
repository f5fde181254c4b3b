"""Provider performance statistics from stored attempts.

Every column of a row comes from the same set of attempts: the final attempt of each logical request in
the run (retries are counted separately). Percentiles use linear interpolation (numpy's default, Hyndman–Fan
type 7) over successful requests, always shown with ``n``. Failures stay in the success-rate denominator.
Cost per image divides everything billed (failures included) by the successful images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

STATS_COLUMNS = ("target", "model", "provider", "n", "success_rate", "p50_ms", "p95_ms", "ttfb_p50_ms",
                 "cost_per_image_usd")


def _pct(values: np.ndarray[Any, Any], q: float) -> float | None:
    return float(np.percentile(values, q)) if values.size else None


def provider_table(attempts: pd.DataFrame, by: Sequence[str] = ("target",)) -> list[dict[str, Any]]:
    """One row per target (or per ``by`` group) with the contract columns."""
    if attempts.empty:
        return []
    final = attempts[attempts["final"] == 1]
    billed = attempts.groupby(list(by), sort=False)["cost_usd"].sum()
    rows: list[dict[str, Any]] = []
    for keys, group in final.groupby(list(by), sort=False):
        ok = group[group["ok"] == 1]
        latency = ok["latency_ms"].to_numpy(dtype=float)
        ttfb = ok["ttfb_ms"].dropna().to_numpy(dtype=float)
        total_cost = float(billed.loc[keys])
        images = int(ok["n_images"].sum())
        key_tuple = keys if isinstance(keys, tuple) else (keys,)
        row: dict[str, Any] = dict(zip(by, key_tuple, strict=True))
        row.update(
            target=row.get("target", group["target"].iloc[0]),
            model=group["model"].iloc[0], provider=group["provider"].iloc[0], n=len(group),
            success_rate=len(ok) / len(group), p50_ms=_pct(latency, 50), p95_ms=_pct(latency, 95),
            ttfb_p50_ms=_pct(ttfb, 50), cost_per_image_usd=(total_cost / images) if images else None,
        )
        rows.append(row)
    return rows
