"""The provider table split by region (``harness stats RUN --by region``): one table per region a run's
shards ran in, so the same targets measured from several places can be read side by side.

A logical request belongs to the region (and host) of its final attempt: a request retried after its shard
was resumed elsewhere is counted once, where it ended, with every attempt it took (the latency of a request
runs over all its attempts, see :mod:`harness.stats.requests`). Attempts recorded without a region (a run
started without ``--region``, a store from before regions) form the region ``None``, shown as "(none)".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from harness.records import RunInfo
from harness.stats.fidelity import fidelity_rows, fidelity_warning
from harness.stats.goodput import DEFAULT_MEASURE, Measure
from harness.stats.requests import KEY_COLUMNS
from harness.stats.source import effective_timeout_ms, stats_frame_columns
from harness.stats.table import ProviderRow, provider_rows
from harness.store import Store
from harness.store import runs as run_store

REGION_VIEW_SCHEMA_VERSION: Final = 1
"""Version of a region view's JSON form (``harness stats RUN --by region --json``)."""

NO_REGION = "(none)"
"""How tables name the attempts recorded without a region."""

LABEL_COLUMNS = ("region", "host")
"""The attempt columns that say where an attempt was made."""


class RegionView(BaseModel):
    """The provider table of one region of a run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(REGION_VIEW_SCHEMA_VERSION, description="version of this JSON form")
    region: str | None = Field(description="the region label (`harness run --region`); null: none recorded")
    hosts: list[str] = Field(description="the hosts whose final attempts are counted here, sorted")
    requests: int = Field(description="logical requests with a final attempt in this region")
    rows: list[ProviderRow] = Field(description="the provider table of this region's requests")

    @property
    def label(self) -> str:
        return self.region if self.region is not None else NO_REGION

    def to_json(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json", exclude={"rows"}), "rows": [r.to_json() for r in self.rows]}


def _where_requests_ended(attempts: pd.DataFrame) -> pd.DataFrame:
    """``attempts`` with ``region`` and ``host`` replaced by those of their request's final attempt (of its
    last attempt while it has none)."""
    keys = [c for c in KEY_COLUMNS if c in attempts.columns]
    frame = attempts.copy()
    for column in LABEL_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
        frame[column] = frame[column].astype(object)
    order = frame.sort_values(["final", "attempt"], kind="stable")
    last = order.groupby(keys, sort=False, observed=True, dropna=False)[list(LABEL_COLUMNS)].last()
    ended = frame[keys].merge(last.reset_index(), on=keys, how="left")
    for column in LABEL_COLUMNS:
        frame[column] = ended[column].to_numpy()
    return frame


def region_views(attempts: pd.DataFrame, by: Sequence[str] = ("target",), *, timeout_ms: float | None = None,
                 slo_ms: float | None = None, goodput_measure: Measure = DEFAULT_MEASURE) -> list[RegionView]:
    """One :class:`RegionView` per region of ``attempts`` (an ``attempts_frame`` with ``region`` and
    ``host``), each table split ``by`` as :func:`~harness.stats.table.provider_rows` splits; regions in name
    order, the unlabelled last."""
    if attempts.empty:
        return []
    frame = _where_requests_ended(attempts)
    finals = frame[frame["final"].astype(bool)]
    views = []
    labels = frame["region"].dropna().unique().tolist()
    for region in [*sorted(str(r) for r in labels), *([None] if frame["region"].isna().any() else [])]:
        mask = frame["region"].isna() if region is None else frame["region"] == region
        part = frame[mask.to_numpy()]
        ended = finals[finals["region"].isna()] if region is None else finals[finals["region"] == region]
        hosts = sorted({str(h) for h in ended["host"].dropna()})
        rows = provider_rows(part, by, timeout_ms=timeout_ms, slo_ms=slo_ms, goodput_measure=goodput_measure)
        views.append(RegionView(region=region, hosts=hosts, requests=len(ended), rows=rows))
    return views


def run_region_views(store: Store, info: RunInfo, by: Sequence[str] = ("target",), *, slo_ms: float | None = None,
                     goodput_measure: Measure = DEFAULT_MEASURE) -> tuple[list[RegionView], str | None]:
    """The region views of the stored run ``info`` and, for a sandbox run that strayed from its profiles,
    the fidelity warning (as :func:`harness.stats.source.run_stats` gives it)."""
    columns = stats_frame_columns(store, (*by, *LABEL_COLUMNS))
    frame = run_store.attempts_frame(store, [info.id], columns=columns)
    views = region_views(frame, by, timeout_ms=effective_timeout_ms(info), slo_ms=slo_ms,
                         goodput_measure=goodput_measure)
    warning = None
    if info.sandbox and info.time_scale and "intended_ms" in frame.columns:
        warning = fidelity_warning(fidelity_rows(frame), float(info.time_scale))
    return views, warning
