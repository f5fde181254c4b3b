"""The provider performance table: one typed row per target (or per target and challenge, kind, category, variant).

Every column of a row comes from the same logical requests (:mod:`harness.stats.requests`). A row is a
:class:`ProviderRow`; each field's description (and so the JSON schema, ``harness stats --schema``) says what
it means. ``None`` where a value does not exist or is withheld, with the reason in ``withheld``; ``*_ms`` in
milliseconds, ``*_usd`` in US dollars. Requests recorded as never sent (``error_kind = "not_sent"``: a dead
target stopped early, a spend cap) count only in ``not_sent``: every other column, ``n`` and the success
rate included, is over the requests that were sent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from harness.stats.fidelity import FidelityRow, fidelity_rows
from harness.stats.goodput import DEFAULT_MEASURE, Measure, goodput_counts, goodput_of
from harness.stats.intervals import CONFIDENCE, quantile_interval, wilson
from harness.stats.requests import OPTIONAL_COLUMNS, PHASE_COLUMNS, logical_requests

Array = np.ndarray[Any, Any]

ROW_SCHEMA_VERSION: Final = 1
"""Version of the provider row's JSON form (``harness stats --json``, ``harness run --json``). Bump it when a
key is removed or changes meaning; added keys keep the version."""

STATS_COLUMNS = ("target", "model", "provider", "n", "success_rate", "p50_ms", "p95_ms", "ttfb_p50_ms",
                 "cost_per_image_usd")
"""The columns every consumer can rely on."""

LATENCY_PERCENTILES = (50, 90, 95, 99)
FAILURE_TAIL = 0.05
"""Failure share above which the failure-inclusive p95 lies beyond the timeout."""

BY_ALIASES = {"target": "target", "challenge": "challenge_id", "challenge_id": "challenge_id", "kind": "kind",
              "category": "category", "variant": "variant", "model": "model", "provider": "provider",
              "run": "run_id", "run_id": "run_id"}
"""Names accepted by ``--by`` and the attempt column each groups on."""

GROUP_FIELDS = ("run_id", "challenge_id", "variant", "kind", "category")
"""Grouping keys a row carries only when the table was split by them."""

NOT_RECORDED = "not recorded in this run (the harness release that ran it did not measure it yet)"


def _ms(doc: str) -> Any:
    return Field(description=f"{doc} (ms)")


def _lo(doc: str) -> Any:
    return Field(description=f"lower end of the 95 % interval of {doc} (ms)")


def _hi(doc: str) -> Any:
    return Field(description=f"upper end of the 95 % interval of {doc} (ms)")


class ProviderRow(BaseModel):
    """One row of the provider table. ``to_dict()`` gives the plain-dict form (the keys of the JSON without
    ``schema_version``); ``to_json()`` the versioned JSON object."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(ROW_SCHEMA_VERSION, description="version of this row's JSON form")
    target: str = Field(description="who served the requests: the target's name (model@provider)")
    model: str = Field(description="the target's model")
    provider: str = Field(description="the target's provider")
    run_id: str | None = Field(None, description="the run (present when split by run)")
    challenge_id: str | None = Field(None, description="the challenge (present when split by challenge)")
    variant: str | None = Field(None, description="the prompt variant (present when split by variant)")
    kind: str | None = Field(None, description="the challenge kind (present when split by kind)")
    category: str | None = Field(None, description="the challenge category (present when split by category)")

    n: int = Field(description="logical requests sent (final attempt recorded; never-sent ones excluded)")
    not_sent: int = Field(description="logical requests recorded as never sent (dead target, spend cap)")
    attempts: int = Field(description="HTTP attempts, retries included")
    attempts_per_request: float | None = Field(description="attempts / n")
    successes: int = Field(description="requests whose final attempt succeeded")
    success_rate: float | None = Field(description="successes / n")
    success_ci_low: float | None = Field(description="Wilson 95 % interval of the success rate, lower end")
    success_ci_high: float | None = Field(description="Wilson 95 % interval of the success rate, upper end")
    first_attempt_success_rate: float | None = Field(description="share of requests whose first attempt succeeded")
    rate_limited_share: float | None = Field(description="429 (rate_limited) attempts / all attempts")
    errors: dict[str, int] = Field(description="failed requests by error class")
    withheld: dict[str, str] = Field(description="{column: reason} for every figure withheld")

    p50_ms: float | None = _ms("latency p50 of successful requests (type 7)")
    p50_ci_low_ms: float | None = _lo("the latency p50")
    p50_ci_high_ms: float | None = _hi("the latency p50")
    p90_ms: float | None = _ms("latency p90 of successful requests")
    p90_ci_low_ms: float | None = _lo("the latency p90")
    p90_ci_high_ms: float | None = _hi("the latency p90")
    p95_ms: float | None = _ms("latency p95 of successful requests")
    p95_ci_low_ms: float | None = _lo("the latency p95")
    p95_ci_high_ms: float | None = _hi("the latency p95")
    p99_ms: float | None = _ms("latency p99 of successful requests")
    p99_ci_low_ms: float | None = _lo("the latency p99")
    p99_ci_high_ms: float | None = _hi("the latency p99")
    p95_with_failures_ms: float | None = _ms("p95 over all requests with failures counted at the run's timeout")
    p95_with_failures_censored: bool | None = Field(
        description="true when failures exceed 5 %: the p95 then lies beyond the timeout (shown as '> timeout')")
    timeout_ms: float | None = _ms("the run's effective per-attempt timeout")

    ttfb_n: int = Field(description="successful requests with a time to first byte")
    ttfb_p50_ms: float | None = _ms("time to first byte p50 of successful requests")
    ttfb_p50_ci_low_ms: float | None = _lo("the TTFB p50")
    ttfb_p50_ci_high_ms: float | None = _hi("the TTFB p50")
    ttfb_p95_ms: float | None = _ms("time to first byte p95 of successful requests")
    ttfb_p95_ci_low_ms: float | None = _lo("the TTFB p95")
    ttfb_p95_ci_high_ms: float | None = _hi("the TTFB p95")

    time_to_image_n: int = Field(description="successful requests with a recorded time to image")
    time_to_image_p50_ms: float | None = _ms(
        "time to image p50: first attempt's start to the final image, retries and waits included")
    time_to_image_p50_ci_low_ms: float | None = _lo("the time-to-image p50")
    time_to_image_p50_ci_high_ms: float | None = _hi("the time-to-image p50")
    time_to_image_p90_ms: float | None = _ms("time to image p90")
    time_to_image_p90_ci_low_ms: float | None = _lo("the time-to-image p90")
    time_to_image_p90_ci_high_ms: float | None = _hi("the time-to-image p90")
    time_to_image_p95_ms: float | None = _ms("time to image p95")
    time_to_image_p95_ci_low_ms: float | None = _lo("the time-to-image p95")
    time_to_image_p95_ci_high_ms: float | None = _hi("the time-to-image p95")
    time_to_image_p99_ms: float | None = _ms("time to image p99")
    time_to_image_p99_ci_low_ms: float | None = _lo("the time-to-image p99")
    time_to_image_p99_ci_high_ms: float | None = _hi("the time-to-image p99")

    latency_with_connect_n: int = Field(description="successful requests with a recorded latency with connect")
    latency_with_connect_p50_ms: float | None = _ms(
        "latency with connect p50: the final attempt's latency plus its connection set-up")
    latency_with_connect_p50_ci_low_ms: float | None = _lo("the latency-with-connect p50")
    latency_with_connect_p50_ci_high_ms: float | None = _hi("the latency-with-connect p50")
    latency_with_connect_p95_ms: float | None = _ms("latency with connect p95")
    latency_with_connect_p95_ci_low_ms: float | None = _lo("the latency-with-connect p95")
    latency_with_connect_p95_ci_high_ms: float | None = _hi("the latency-with-connect p95")

    client_n: int = Field(description="final attempts with a recorded client time")
    client_p50_ms: float | None = _ms(
        "client time p50: the harness's own work after the last byte (decoding, validation), off the clock")
    client_p50_ci_low_ms: float | None = _lo("the client-time p50")
    client_p50_ci_high_ms: float | None = _hi("the client-time p50")

    size_as_asked_n: int = Field(description="successful requests whose delivered size was checked against the "
                                             "requested one")
    size_as_asked: float | None = Field(description="share of those whose images all have the size asked for")
    size_as_asked_ci_low: float | None = Field(description="Wilson 95 % interval of size_as_asked, lower end")
    size_as_asked_ci_high: float | None = Field(description="Wilson 95 % interval of size_as_asked, upper end")

    fidelity_n: int = Field(description="sandbox runs: successful attempts carrying the delay the sandbox "
                                        "intended (0 elsewhere); fidelity is per target, whatever the split")
    fidelity_intended_p50_ms: float | None = _ms("sandbox runs: median delay the sandbox intended")
    fidelity_deviation_p50_ms: float | None = _ms(
        "sandbox runs: median of measured − intended (less the mean poll wait of polling queue APIs)")
    fidelity_deviation_p95_ms: float | None = _ms("sandbox runs: p95 of measured − intended")
    fidelity_deviation_pct: float | None = Field(
        description="sandbox runs: the median deviation as a percentage of the intended median")
    fidelity_faithful: bool | None = Field(
        description="sandbox runs: the median deviation is within 5 % of the intended median")

    submit_p50_ms: float | None = _ms("queue APIs: submit phase median")
    queue_p50_ms: float | None = _ms("queue APIs: queue phase median")
    queue_p95_ms: float | None = _ms("queue APIs: queue phase p95")
    run_p50_ms: float | None = _ms("queue APIs: run phase median")
    fetch_p50_ms: float | None = _ms("queue APIs: fetch phase median")
    download_p50_ms: float | None = _ms("queue APIs: download phase median")
    poll_interval_ms: float | None = _ms("queue APIs: the status poll interval that bounds the phases' precision")

    slo_ms: float | None = Field(None, description="the latency objective goodput is measured against (ms; "
                                                   "`harness stats --slo`); null when none was set")
    goodput_measure: Literal["time_to_image", "latency"] | None = Field(
        None, description="the time compared with the objective: time_to_image (first attempt's start to the "
                          "final image, retries and waits included) or latency (provider time)")
    goodput_n: int | None = Field(None, description="requests judged against the objective: every failure and "
                                                    "every success with the measured time")
    goodput_hits: int | None = Field(None, description="requests that succeeded within the objective")
    goodput: float | None = Field(None, description="goodput_hits / goodput_n: share of requests that succeeded "
                                                    "within slo_ms (failures count as misses)")
    goodput_ci_low: float | None = Field(None, description="Wilson 95 % interval of goodput, lower end")
    goodput_ci_high: float | None = Field(None, description="Wilson 95 % interval of goodput, upper end")

    images: int = Field(description="successful images")
    window_s: float | None = Field(description="last request end − first request scheduled, wall clock (s)")
    images_per_min: float | None = Field(description="throughput: images / window")
    cost_total_usd: float = Field(description="everything billed, failures included (USD)")
    billed_failures: int = Field(description="billed failed attempts")
    cost_per_image_usd: float | None = Field(description="cost_total_usd / images (USD)")
    invariant_violations: int = Field(description="attempts breaking 0 <= TTFB <= latency or queue + run <= latency")
    invariant_attempt_ids: list[int] = Field(description="up to five of those attempts' ids")

    mode: Literal["interactive", "batch"] | None = Field(
        None, description="batch: the target sent its requests as provider batch jobs (docs/batch.md); its "
                          "latency columns are then per-request turnaround (its job's submit to all results); "
                          "null when not known")
    batch_of: str | None = Field(None, description="batch targets: the interactive target they mirror (shown "
                                                   "next to it)")
    batch_jobs: int | None = Field(None, description="batch targets: jobs whose results were collected")
    job_turnaround_p50_ms: float | None = Field(
        None, description="batch targets: median job turnaround, from a job's submit being acknowledged to all its "
                          "results in hand (ms)")
    job_turnaround_max_ms: float | None = Field(None, description="batch targets: the slowest job's turnaround (ms)")

    SCORE_COLUMN_PATTERN: ClassVar[str] = r"^(score_scorer|[A-Za-z0-9_]+_(mean|low|high|n))$"
    """Keys a JSON row may add from the CLIP score summary (``<metric>_mean``, ``_low``, ``_high``, ``_n``)."""

    def group_keys(self) -> dict[str, str | None]:
        """The grouping keys this row was split by (beyond the target)."""
        return {k: getattr(self, k) for k in GROUP_FIELDS if k in self.model_fields_set}

    def to_dict(self) -> dict[str, Any]:
        """The plain-dict form: every key of the JSON row except ``schema_version``; grouping keys only when
        the table was split by them."""
        return self.model_dump(exclude={"schema_version", *(k for k in GROUP_FIELDS
                                                             if k not in self.model_fields_set)})

    def to_json(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The versioned JSON object (``schema_version`` first), with ``extra`` columns (score summaries)."""
        return {"schema_version": self.schema_version, **self.to_dict(), **(extra or {})}

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> ProviderRow:
        """A row from its dict form (unknown keys, such as a report's ``label``, are ignored)."""
        return cls.model_validate({k: v for k, v in row.items() if k in cls.model_fields})

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """JSON schema of one row as ``harness stats --json`` prints it."""
        schema = cls.model_json_schema(mode="serialization")
        schema["$id"] = f"urn:image-arena-harness:provider-row:v{ROW_SCHEMA_VERSION}"
        schema["title"] = "ProviderRow"
        schema["description"] = ("One row of `harness stats --json`: the provider statistics of a target (or of a "
                                 "target and a split). *_ms in milliseconds, *_usd in US dollars; null where a "
                                 "figure does not exist or is withheld, with the reason in `withheld`.")
        schema["required"] = sorted({*schema.get("required", []), "schema_version"} - set(GROUP_FIELDS))
        schema["additionalProperties"] = False
        schema["patternProperties"] = {cls.SCORE_COLUMN_PATTERN: {"type": ["number", "integer", "string", "null"]}}
        return schema


def rows_json(rows: Iterable[ProviderRow], extra: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The JSON form of ``rows``; ``extra`` maps a target to further columns (its score summary)."""
    return [r.to_json((extra or {}).get(r.target)) for r in rows]


def _column(group: pd.DataFrame, name: str, mask: Array | None = None) -> Array:
    """Finite values of a numeric column (of the rows in ``mask``); empty when the column is absent."""
    if name not in group.columns:
        return np.empty(0)
    column = group[name]
    numeric = pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
    arr: Array = (column if numeric else pd.to_numeric(column, errors="coerce")).to_numpy(dtype=float,
                                                                                           na_value=np.nan)
    if mask is not None:
        arr = arr[mask]
    return arr[~np.isnan(arr)]


def _percentiles(row: dict[str, Any], prefix: str, values: Array, qs: Sequence[int], what: str,
                 confidence: float, absent: str | None = None) -> None:
    """``<prefix>p<q>_ms`` with its interval for each ``q``; all withheld with ``absent`` when given."""
    x = np.sort(values)
    for p in qs:
        col = f"{prefix}p{p}_ms"
        qi = quantile_interval(x, p / 100, confidence, sorted_=True, what=what)
        row[col] = qi.value
        row[f"{col[:-3]}_ci_low_ms"] = qi.low
        row[f"{col[:-3]}_ci_high_ms"] = qi.high
        if absent is not None or qi.withheld:
            row["withheld"][col] = absent or qi.withheld


def _failure_inclusive(row: dict[str, Any], ok_latency: Array, failures: int, timeout_ms: float | None,
                       confidence: float) -> None:
    n = ok_latency.size + failures
    row["timeout_ms"] = timeout_ms
    row["p95_with_failures_censored"] = None
    row["p95_with_failures_ms"] = None
    if timeout_ms is None:
        row["withheld"]["p95_with_failures_ms"] = "the run's timeout is unknown"
        return
    values = np.concatenate([np.minimum(ok_latency, timeout_ms), np.full(failures, timeout_ms)])
    qi = quantile_interval(values, 0.95, confidence, what="requests")
    if qi.withheld:
        row["withheld"]["p95_with_failures_ms"] = qi.withheld
        return
    censored = failures / n > FAILURE_TAIL
    row["p95_with_failures_censored"] = censored
    row["p95_with_failures_ms"] = timeout_ms if censored else qi.value


def _phases(row: dict[str, Any], group: pd.DataFrame, ok: Array, confidence: float) -> None:
    for c in PHASE_COLUMNS:
        if c != "poll_interval_ms":
            row[f"{c[:-3]}_p50_ms"] = None
    row["queue_p95_ms"] = None
    row["poll_interval_ms"] = None
    if _column(group, "queue_ms", ok).size == 0:
        return
    for c in PHASE_COLUMNS:
        if c not in group.columns:
            continue
        values = _column(group, c, ok)
        if c == "poll_interval_ms":
            row[c] = float(np.max(values)) if values.size else None
            continue
        qi = quantile_interval(values, 0.5, confidence, what=f"{c[:-3]} phases")
        row[f"{c[:-3]}_p50_ms"] = qi.value
        if qi.withheld:
            row["withheld"][f"{c[:-3]}_p50_ms"] = qi.withheld
        if c == "queue_ms":
            q95 = quantile_interval(values, 0.95, confidence, what="queue phases")
            row["queue_p95_ms"] = q95.value
            if q95.withheld:
                row["withheld"]["queue_p95_ms"] = q95.withheld


def unrecorded_columns(frame: pd.DataFrame) -> frozenset[str]:
    """The optional columns (:data:`OPTIONAL_COLUMNS`) that ``frame`` lacks or holds only nulls in: figures
    built on them were not measured by the harness that wrote the run."""
    return frozenset(c for c in OPTIONAL_COLUMNS if c not in frame.columns or frame[c].isna().all())


def _recorded(group: pd.DataFrame, name: str, mask: Array, unrecorded: frozenset[str]) -> tuple[Array, str | None]:
    """Values of an optional column (rows in ``mask``) and, when the run never recorded it, why."""
    if name in unrecorded or name not in group.columns:
        return np.empty(0), NOT_RECORDED
    return _column(group, name, mask), None


def _new_measures(row: dict[str, Any], group: pd.DataFrame, ok: Array, confidence: float,
                  unrecorded: frozenset[str]) -> None:
    """Time to image, latency with connect, client time and size as asked (columns newer than the first store)."""
    tti, absent = _recorded(group, "time_to_image_ms", ok, unrecorded)
    row["time_to_image_n"] = int(tti.size)
    _percentiles(row, "time_to_image_", tti, LATENCY_PERCENTILES, "successful requests with a time to image",
                 confidence, absent)
    connect, absent = _recorded(group, "latency_with_connect_ms", ok, unrecorded)
    row["latency_with_connect_n"] = int(connect.size)
    _percentiles(row, "latency_with_connect_", connect, (50, 95),
                 "successful requests with a latency with connect", confidence, absent)
    client, absent = _recorded(group, "client_ms", np.ones(len(group), dtype=bool), unrecorded)
    row["client_n"] = int(client.size)
    _percentiles(row, "client_", client, (50,), "requests with a client time", confidence, absent)
    asked, absent = _recorded(group, "size_as_asked", ok, unrecorded)
    row["size_as_asked_n"] = int(asked.size)
    row["size_as_asked"] = row["size_as_asked_ci_low"] = row["size_as_asked_ci_high"] = None
    if asked.size:
        interval = wilson(int((asked != 0).sum()), int(asked.size), confidence)
        row.update(size_as_asked=interval.estimate, size_as_asked_ci_low=interval.low,
                   size_as_asked_ci_high=interval.high)
    else:
        row["withheld"]["size_as_asked"] = absent or ("no successful request has its delivered size checked "
                                                      "against a requested one")


def _fidelity(row: dict[str, Any], fidelity: FidelityRow | None, unrecorded: frozenset[str]) -> None:
    """The target's sandbox fidelity (:mod:`harness.stats.fidelity`), or why there is none."""
    row.update(fidelity_n=0, fidelity_intended_p50_ms=None, fidelity_deviation_p50_ms=None,
               fidelity_deviation_p95_ms=None, fidelity_deviation_pct=None, fidelity_faithful=None)
    if fidelity is None:
        if "intended_ms" not in unrecorded:
            row["withheld"]["fidelity_deviation_p50_ms"] = ("no successful attempt of this target carries the "
                                                            "delay the sandbox intended")
        return
    row.update(fidelity_n=fidelity.n, fidelity_intended_p50_ms=fidelity.intended_p50_ms,
               fidelity_deviation_p50_ms=fidelity.deviation_p50_ms,
               fidelity_deviation_p95_ms=fidelity.deviation_p95_ms,
               fidelity_deviation_pct=fidelity.deviation_pct if math.isfinite(fidelity.deviation_pct) else None,
               fidelity_faithful=fidelity.faithful)


def _goodput(row: dict[str, Any], group: pd.DataFrame, slo_ms: float, measure: Measure,
             confidence: float) -> None:
    """The goodput columns against ``slo_ms`` (``group`` holds sent requests only)."""
    result = goodput_of(goodput_counts(group, slo_ms, measure), row["target"], slo_ms, measure, confidence)
    row.update(slo_ms=slo_ms, goodput_measure=measure, goodput_n=result.n, goodput_hits=result.hits,
               goodput=result.share, goodput_ci_low=result.low, goodput_ci_high=result.high)
    if result.withheld:
        row["withheld"]["goodput"] = result.withheld


def _error_counts(kinds: pd.Series) -> dict[str, int]:
    """Failed requests per error class, sorted by class name (classes without failures left out)."""
    counts = kinds.astype(object).fillna("unknown").value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items()) if v}


def _label(group: pd.DataFrame, column: str) -> str:
    values = group[column].unique()
    return str(values[0]) if len(values) == 1 else ", ".join(sorted(map(str, values)))


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def group_row(group: pd.DataFrame, keys: Mapping[str, Any], *, timeout_ms: float | None = None,
              confidence: float = CONFIDENCE, unrecorded: frozenset[str] | None = None,
              fidelity: FidelityRow | None = None, slo_ms: float | None = None,
              goodput_measure: Measure = DEFAULT_MEASURE) -> ProviderRow:
    """The table row of one group of logical requests (a frame from :func:`logical_requests`).

    ``unrecorded``: the optional columns the whole run lacks (:func:`unrecorded_columns`; default: this
    group's own); ``fidelity``: the sandbox fidelity of the group's target (sandbox runs); ``slo_ms``: the
    latency objective of the goodput columns (:mod:`harness.stats.goodput`; none without it)."""
    unrecorded = unrecorded_columns(group) if unrecorded is None else unrecorded
    labels = {"target": _label(group, "target"), "model": _label(group, "model"),
              "provider": _label(group, "provider")}
    never = group["not_sent"].to_numpy(dtype=bool) if "not_sent" in group.columns else np.zeros(len(group), bool)
    not_sent = int(never.sum())
    if not_sent:
        group = group[~never]
    ok_mask = group["ok"].to_numpy(dtype=bool)
    n = len(group)
    successes = int(ok_mask.sum())
    attempts = int(group["attempts"].sum())
    interval = wilson(successes, n, confidence) if n else None
    row: dict[str, Any] = {**labels, **{k: (None if v is None else str(v)) for k, v in keys.items()}}
    row.update(
        n=n, not_sent=not_sent, attempts=attempts, attempts_per_request=_ratio(attempts, n), successes=successes,
        success_rate=_ratio(successes, n), success_ci_low=interval.low if interval else None,
        success_ci_high=interval.high if interval else None,
        first_attempt_success_rate=float(group["first_ok"].astype(bool).mean()) if n else None,
        rate_limited_share=_ratio(float(group["rate_limited"].sum()), attempts),
        errors=_error_counts(group.loc[~ok_mask, "error_kind"]),
        withheld={},
    )
    latency = _column(group, "latency_ms", ok_mask)
    _percentiles(row, "", latency, LATENCY_PERCENTILES, "successful requests", confidence)
    _failure_inclusive(row, latency, n - successes, timeout_ms, confidence)
    ttfb = _column(group, "ttfb_ms", ok_mask)
    row["ttfb_n"] = int(ttfb.size)
    _percentiles(row, "ttfb_", ttfb, (50, 95), "successful requests with a TTFB", confidence)
    _new_measures(row, group, ok_mask, confidence, unrecorded)
    _fidelity(row, fidelity, unrecorded)
    _phases(row, group, ok_mask, confidence)
    if slo_ms is not None:
        _goodput(row, group, slo_ms, goodput_measure, confidence)
    images = int(group["n_images"].to_numpy()[ok_mask].sum())
    window_s = float(group["ready_at"].max() - group["sched_at"].min()) if n else math.nan
    has_window = math.isfinite(window_s) and window_s > 0
    cost = math.fsum(group["cost_usd"].to_numpy(dtype=float))
    bad = group["invariant_violations"].to_numpy() > 0
    row.update(
        images=images, window_s=window_s if has_window else None,
        images_per_min=60.0 * images / window_s if has_window else None,
        cost_total_usd=cost, billed_failures=int(group["billed_failure"].sum()),
        cost_per_image_usd=cost / images if images else None,
        invariant_violations=int(group["invariant_violations"].sum()),
        invariant_attempt_ids=[int(i) for i in group["id"].to_numpy()[bad][:5]] if "id" in group.columns else [],
    )
    return ProviderRow(**row)


def resolve_by(by: Sequence[str]) -> tuple[str, ...]:
    """Map ``--by`` names (``challenge``, ``kind`` …) to attempt columns; raises ``ValueError`` on unknown ones."""
    unknown = [b for b in by if b not in BY_ALIASES]
    if unknown:
        raise ValueError(f"cannot group by {', '.join(unknown)}; choose from {', '.join(sorted(BY_ALIASES))}")
    return tuple(dict.fromkeys(BY_ALIASES[b] for b in by))


def provider_rows(attempts: pd.DataFrame, by: Sequence[str] = ("target",), *, timeout_ms: float | None = None,
                  confidence: float = CONFIDENCE, slo_ms: float | None = None,
                  goodput_measure: Measure = DEFAULT_MEASURE) -> list[ProviderRow]:
    """One typed row per ``by`` group (default: per target) of the attempts of one or more runs.

    ``timeout_ms`` is the run's effective per-attempt timeout, needed for the failure-inclusive p95;
    ``slo_ms`` a latency objective (ms) for the goodput columns, measured by ``goodput_measure``.
    """
    if attempts.empty:
        return []
    columns = resolve_by(by)
    missing = [c for c in columns if c not in attempts.columns]
    if missing:
        raise ValueError(f"attempts frame lacks grouping column(s) {', '.join(missing)}")
    requests = logical_requests(attempts, extra=columns)
    unrecorded = unrecorded_columns(requests)
    fidelity = {} if "intended_ms" in unrecorded else {f.target: f for f in fidelity_rows(attempts)}
    rows: list[ProviderRow] = []
    for keys, group in requests.groupby(list(columns), sort=True, observed=True, dropna=False):
        key_tuple = keys if isinstance(keys, tuple) else (keys,)
        key_map = {c: (None if isinstance(v, float) and math.isnan(v) else v)
                   for c, v in zip(columns, key_tuple, strict=True)}
        target = _label(group, "target")
        rows.append(group_row(group, key_map, timeout_ms=timeout_ms, confidence=confidence,
                              unrecorded=unrecorded, fidelity=fidelity.get(target), slo_ms=slo_ms,
                              goodput_measure=goodput_measure))
    return rows


def provider_table(attempts: pd.DataFrame, by: Sequence[str] = ("target",), *, timeout_ms: float | None = None,
                   confidence: float = CONFIDENCE, slo_ms: float | None = None,
                   goodput_measure: Measure = DEFAULT_MEASURE) -> list[dict[str, Any]]:
    """:func:`provider_rows` in dict form (:meth:`ProviderRow.to_dict`), for readers that take rows as dicts."""
    return [r.to_dict() for r in provider_rows(attempts, by, timeout_ms=timeout_ms, confidence=confidence,
                                               slo_ms=slo_ms, goodput_measure=goodput_measure)]


BATCH_SHARED_PREFIXES = ("p50", "p90", "p95", "p99", "time_to_image_", "latency_with_connect_")
"""Latency figures whose intervals a batch row does not show: its requests' times are their jobs'."""
BATCH_SHARED_REASON = ("the requests of one batch job share its turnaround, so they are not independent draws; "
                       "read the job turnaround columns for the spread between jobs")
ROW_FIELDS = tuple(ProviderRow.model_fields)


@dataclass(frozen=True)
class BatchFacts:
    """What the provider table needs to know about one batch target: its twin and its jobs' turnarounds (ms)."""

    target: str
    batch_of: str | None
    turnarounds_ms: tuple[float, ...]


def with_batch_columns(rows: Sequence[ProviderRow], facts: Mapping[str, BatchFacts]) -> list[ProviderRow]:
    """``rows`` with the batch columns of each batch target (``facts`` by target name) and every batch row moved
    right after its interactive twin's rows, so the two read side by side. Other rows keep their order and get
    ``mode`` interactive."""
    out: list[ProviderRow] = []
    for row in rows:
        fact = facts.get(row.target)
        if fact is None:
            out.append(row.model_copy(update={"mode": "interactive"}))
            continue
        times = np.sort(np.asarray(fact.turnarounds_ms, dtype=float))
        update: dict[str, Any] = {
            "mode": "batch", "batch_of": fact.batch_of, "batch_jobs": int(times.size),
            "job_turnaround_p50_ms": float(np.median(times)) if times.size else None,
            "job_turnaround_max_ms": float(times[-1]) if times.size else None}
        shared = [f for f in ROW_FIELDS if f.endswith(("_ci_low_ms", "_ci_high_ms"))
                  and f.startswith(BATCH_SHARED_PREFIXES) and getattr(row, f) is not None]
        update.update({f: None for f in shared})
        if shared:
            update["withheld"] = {**row.withheld, "interval across a batch job's requests": BATCH_SHARED_REASON}
        out.append(row.model_copy(update=update))
    def twin_of(row: ProviderRow, among: Sequence[ProviderRow]) -> int | None:
        return next((i for i, o in enumerate(among) if o.target == row.batch_of
                     and o.group_keys() == row.group_keys()), None)

    batch = [r for r in out if r.mode == "batch" and twin_of(r, out) is not None]
    ordered = [r for r in out if not any(r is b for b in batch)]
    for r in batch:
        at = twin_of(r, ordered)
        assert at is not None
        ordered.insert(at + 1, r)
    return ordered
