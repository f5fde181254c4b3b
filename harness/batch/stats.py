"""The provider table's batch columns from the store: which targets of a run sent batch jobs, their
interactive twins, and each collected job's turnaround (submit acknowledged -> all results, ms)."""

from __future__ import annotations

from collections.abc import Sequence

from harness.stats.table import BatchFacts, ProviderRow, with_batch_columns
from harness.store import Store, batch_jobs
from harness.store import runs as run_store


def batch_facts(store: Store, run_ids: Sequence[str]) -> dict[str, BatchFacts]:
    """Per batch target of ``run_ids``: its twin (``batch_of``) and its collected jobs' turnarounds."""
    twins: dict[str, str | None] = {}
    for run_id in run_ids:
        for frozen in run_store.run_targets(store, run_id):
            if frozen.get("mode") == "batch":
                twins[str(frozen["name"])] = frozen.get("batch_of")
    times: dict[str, list[float]] = {name: [] for name in twins}
    for job in batch_jobs.jobs_of(store, list(run_ids)):
        if job.turnaround_ms is not None:
            times.setdefault(job.target, []).append(job.turnaround_ms)
            twins.setdefault(job.target, None)
    return {name: BatchFacts(name, twins[name], tuple(times.get(name, ()))) for name in twins}


def with_batch(store: Store, run_ids: Sequence[str], rows: Sequence[ProviderRow]) -> list[ProviderRow]:
    """``rows`` of ``run_ids`` with their batch columns, each batch target beside its interactive twin
    (:func:`harness.stats.table.with_batch_columns`)."""
    return with_batch_columns(rows, batch_facts(store, run_ids))
