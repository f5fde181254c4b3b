"""``harness score``: CLIP scores of a run's outputs into the store, computing only what is new.

Steps:

1. plan every output not yet scored by this scorer (:mod:`harness.scoring.plan`); masks are decoded in the
   worker pool;
2. read the embedding cache for every image and text key the plan needs;
3. embed the missing texts in batches (each distinct prompt, chunk and caption once);
4. embed the missing images in batches of ``batch_size``: worker threads decode, crop and preprocess the
   next ``prefetch`` batches while the model runs on the current one; each batch's embeddings are written
   to the cache as soon as they exist, so an interrupted run loses at most one batch. On the CPU the model
   and the decoders share the cores, so the workers run at idle priority (they take only cycles the model
   leaves) and the model's thread decodes any image of its next batch that no worker has started;
5. pixel metrics of inpainting outputs run in the worker pool;
6. every output's rows are written in one transaction (an output is either fully scored or not at all).

A second ``harness score`` of the same run plans nothing (its outputs are scored); scoring a new run that
shares prompts, references or images with earlier ones only embeds what the cache lacks. The counters in
:class:`ScoreReport` say what was computed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, computed_field

from harness.errors import ConfigError
from harness.scoring import pixels as pixel_ops
from harness.scoring.backbone import Backbone, Tensor
from harness.scoring.kinds import output_rows
from harness.scoring.metrics import Vector
from harness.scoring.plan import ImageSource, OutputJob, PlanError, TextPlanner, plan_output, text_key
from harness.store import Store
from harness.store import runs as run_store
from harness.store import scores as score_store

IMAGE, TEXT = "image", "text"
ROWS_PER_TRANSACTION = 256
"""Outputs whose rows are written per transaction."""


@dataclass(frozen=True)
class ScoreOptions:
    """``batch_size``: images (and texts) per model call. ``workers``: decode threads (0: automatic, see
    :meth:`pool_size`). ``prefetch``: batches prepared ahead of the model. ``force``: re-score outputs that
    already have scores from this scorer (embeddings still come from the cache)."""

    batch_size: int = 32
    workers: int = 0
    prefetch: int = 4
    force: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.workers < 0 or self.prefetch < 0:
            raise ConfigError("workers and prefetch cannot be negative")

    def pool_size(self, device: str) -> int:
        """Decode threads: ``workers`` when set; otherwise up to 4 on CPU (the model needs the cores too)
        and up to 16 with an accelerator (decoding is then the CPU's whole job), never above the CPU count."""
        if self.workers:
            return self.workers
        return max(1, min(4 if device == "cpu" else 16, os.cpu_count() or 1))


class ScoreReport(BaseModel):
    """What one scoring pass did (what ``harness score --json`` prints under ``report``).

    ``images_embedded``/``texts_embedded`` count model computations (cache misses); ``*_cached`` count
    embeddings read from the cache. ``embed_seconds`` is the wall time of the image-embedding stage and
    ``images_per_s`` its throughput (images embedded per second, decode included).
    """

    model_config = ConfigDict(extra="forbid")

    scorer: str
    scorer_id: str
    runs: list[str]
    outputs: int = 0
    outputs_scored: int = 0
    outputs_skipped: int = 0
    outputs_failed: int = 0
    images_embedded: int = 0
    images_cached: int = 0
    texts_embedded: int = 0
    texts_cached: int = 0
    pixel_jobs: int = 0
    rows_written: int = 0
    embed_seconds: float = 0.0
    seconds: float = 0.0
    problems: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def images_per_s(self) -> float | None:
        if self.images_embedded == 0 or self.embed_seconds <= 0:
            return None
        return self.images_embedded / self.embed_seconds

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _load_tensor(backbone: Backbone, source: ImageSource) -> Tensor:
    image = pixel_ops.load_rgb(source.path)
    if source.box is not None:
        image = image.crop(source.box)
    return backbone.image_tensor(image)


def yield_cpu_to_model() -> None:
    """Put the calling worker thread at idle scheduling priority: Linux ``SCHED_IDLE``, or nice 19 where that
    is refused. Elsewhere nothing changes (a thread's priority cannot be set apart from its process's there).

    On a CPU-only machine every cycle a decoder takes is one the model's threads lose, and a model thread
    preempted in the middle of a parallel section stalls its siblings too. At idle priority the decoders run
    in the gaps the model leaves; what they have not started when the model needs it, the model's own thread
    decodes at normal priority (see :func:`embed_image_batches`), so a busy machine slows scoring down but
    never starves it.
    """
    tid = threading.get_native_id()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            return
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, 19)


def decode_pool(options: ScoreOptions, device: str) -> ThreadPoolExecutor:
    """The image stage's decoder threads; at idle priority when the model runs on the CPU (the planning and
    pixel-metric stages, where the model does not run, use a pool at normal priority)."""
    return ThreadPoolExecutor(options.pool_size(device), thread_name_prefix="score-decode",
                              initializer=yield_cpu_to_model if device == "cpu" else None)


def embed_image_batches(backbone: Backbone, sources: Sequence[tuple[str, ImageSource]], pool: ThreadPoolExecutor,
                        batch_size: int, prefetch: int, failures: dict[str, str]
                        ) -> Iterator[tuple[list[str], np.ndarray[Any, Any]]]:
    """Yield ``(keys, embeddings)`` per batch, decoding up to ``prefetch`` batches ahead in ``pool``.

    When a batch is due, any of its images that no worker has started yet is taken back from the pool and
    decoded on the calling thread: the model would otherwise wait for a worker that may be at idle priority.
    A source that cannot be read is left out of its batch and recorded in ``failures`` (key: reason).
    """
    batches = [list(sources[i:i + batch_size]) for i in range(0, len(sources), batch_size)]
    queue: deque[tuple[list[tuple[str, ImageSource]], list[Future[Tensor]]]] = deque()
    upcoming = iter(batches)

    def submit_next() -> None:
        batch = next(upcoming, None)
        if batch is not None:
            queue.append((batch, [pool.submit(_load_tensor, backbone, src) for _, src in batch]))

    for _ in range(prefetch + 1):
        submit_next()
    while queue:
        batch, futures = queue.popleft()
        keys: list[str] = []
        tensors: list[Tensor] = []
        for (key, source), future in zip(batch, futures, strict=True):
            try:
                tensors.append(_load_tensor(backbone, source) if future.cancel() else future.result())
                keys.append(key)
            except Exception as exc:
                failures[key] = f"cannot read {source.path}: {type(exc).__name__}: {exc}"
        submit_next()
        if tensors:
            yield keys, backbone.encode_images(tensors)


def _embed_texts(backbone: Backbone, store: Store, scorer_id: str, texts: dict[str, str], batch_size: int,
                 found: dict[str, Vector]) -> int:
    missing = [(k, t) for k, t in sorted(texts.items()) if k not in found]
    for start in range(0, len(missing), batch_size):
        chunk = missing[start:start + batch_size]
        vectors = backbone.encode_texts([t for _, t in chunk])
        items = [(k, vectors[i]) for i, (k, _) in enumerate(chunk)]
        score_store.put_embeddings(store, scorer_id, TEXT, items)
        found.update(items)
    return len(missing)


@dataclass
class _Planned:
    """Jobs of the outputs to score, with the problems of those that cannot be."""

    jobs: list[OutputJob] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _challenges(store: Store, run_ids: Sequence[str]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(run_id, str(c["id"])): c for run_id in run_ids for c in run_store.run_challenges(store, run_id)}


def _plan(store: Store, backbone: Backbone, run_ids: Sequence[str], pool: ThreadPoolExecutor, force: bool,
          report: ScoreReport) -> _Planned:
    frame = run_store.outputs_frame(store, run_ids)
    report.outputs = len(frame)
    planned = _Planned()
    if frame.empty:
        return planned
    done = set() if force else score_store.scored_outputs(store, report.scorer_id, frame["attempt_id"].tolist())
    rows = [r for r in frame.to_dict("records") if (int(r["attempt_id"]), int(r["idx"])) not in done]
    report.outputs_skipped = len(frame) - len(rows)
    challenges = _challenges(store, run_ids)
    masks_needed = {str(c["mask"]["sha256"]): store.image_path(str(c["mask"]["sha256"]), str(c["mask"]["ext"]))
                    for c in challenges.values() if c.get("mask")}
    futures = {sha: pool.submit(pixel_ops.read_mask, path) for sha, path in masks_needed.items()}
    masks: dict[str, pixel_ops.MaskInfo] = {}
    bad_masks: dict[str, str] = {}
    for sha, future in futures.items():
        try:
            masks[sha] = future.result()
        except Exception as exc:
            bad_masks[sha] = f"cannot read mask {masks_needed[sha]}: {type(exc).__name__}: {exc}"
    texts = TextPlanner(backbone.count_tokens, backbone.context_length)
    for row in rows:
        where = f"output {row['idx']} of attempt {row['attempt_id']} ({row['challenge_id']}/{row['variant']}, " \
                f"{row['target']})"
        challenge = challenges.get((str(row["run_id"]), str(row["challenge_id"])))
        try:
            if challenge is None:
                raise PlanError(f"run {row['run_id']} has no frozen challenge {row['challenge_id']!r}")
            mask = challenge.get("mask")
            if mask and str(mask["sha256"]) in bad_masks:
                raise PlanError(bad_masks[str(mask["sha256"])])
            planned.jobs.append(plan_output(row, challenge, store.image_path, masks, texts))
        except (PlanError, KeyError, ValueError) as exc:
            planned.problems.append(f"{where}: {exc}")
    return planned


def _pixel_results(jobs: Sequence[OutputJob], pool: ThreadPoolExecutor, failures: dict[tuple[int, int], str]
                   ) -> dict[tuple[int, int], dict[str, float] | None]:
    futures = {(j.attempt_id, j.output_idx): (j.pixels.output, pool.submit(
        pixel_ops.preservation_outside_mask, j.pixels.output, j.pixels.source, j.pixels.mask))
        for j in jobs if j.pixels is not None}
    results: dict[tuple[int, int], dict[str, float] | None] = {}
    for key, (path, future) in futures.items():
        try:
            results[key] = future.result()
        except Exception as exc:
            failures[key] = f"pixel metrics of {path}: {type(exc).__name__}: {exc}"
    return results


def score_runs(store: Store, run_ids: Sequence[str], backbone: Backbone, options: ScoreOptions | None = None,
               progress: Callable[[str, int, int], None] | None = None) -> ScoreReport:
    """Score every output of ``run_ids`` with ``backbone`` (see the module docstring) and return the counters.

    ``progress(stage, done, total)`` is called after each image batch (stage ``"images"``).
    """
    options = options or ScoreOptions()
    started = time.perf_counter()
    info = backbone.info
    report = ScoreReport(scorer=info.name, scorer_id=info.id, runs=list(run_ids))
    score_store.register_scorer(store, score_store.ScorerRow(
        id=info.id, name=info.name, backbone=info.backbone, pretrained=info.pretrained,
        weights_sha256=info.weights_sha256, open_clip_version=info.open_clip_version, preprocess=info.preprocess,
        precision=info.precision, context_length=info.context_length,
        info={"model_cfg_sha256": info.model_cfg_sha256, "device": info.device}), _now())
    with ThreadPoolExecutor(options.pool_size(backbone.device), thread_name_prefix="score-work") as pool:
        planned = _plan(store, backbone, run_ids, pool, options.force, report)
        report.problems += planned.problems
        jobs = planned.jobs

        texts = {p.key: p.text for j in jobs for p in j.texts()}
        texts.update({text_key(c): c for j in jobs for p in j.texts() for c in p.chunks})
        text_vectors = score_store.cached_embeddings(store, info.id, TEXT, texts)
        report.texts_cached = len(text_vectors)
        report.texts_embedded = _embed_texts(backbone, store, info.id, texts, options.batch_size, text_vectors)

        sources = dict(src for j in jobs for src in j.sources)
        image_vectors = score_store.cached_embeddings(store, info.id, IMAGE, sources)
        report.images_cached = len(image_vectors)
        missing = [(k, sources[k]) for k in sorted(sources) if k not in image_vectors]
        failures: dict[str, str] = {}
        embed_start = time.perf_counter()
        with decode_pool(options, backbone.device) as decoders:
            for keys, vectors in embed_image_batches(backbone, missing, decoders, options.batch_size,
                                                     options.prefetch, failures):
                items = [(k, vectors[i]) for i, k in enumerate(keys)]
                score_store.put_embeddings(store, info.id, IMAGE, items)
                image_vectors.update(items)
                report.images_embedded += len(items)
                if progress is not None:
                    progress("images", report.images_embedded + len(failures), len(missing))
        report.embed_seconds = time.perf_counter() - embed_start

        pixel_failures: dict[tuple[int, int], str] = {}
        pixel_values = _pixel_results(jobs, pool, pixel_failures)
        report.pixel_jobs = len(pixel_values) + len(pixel_failures)

    _write_rows(store, info.id, jobs, image_vectors, text_vectors, pixel_values, failures, pixel_failures,
                options.force, report)
    report.outputs_failed = report.outputs - report.outputs_skipped - report.outputs_scored
    report.seconds = time.perf_counter() - started
    return report


def _write_rows(store: Store, scorer_id: str, jobs: Sequence[OutputJob], images: dict[str, Vector],
                texts: dict[str, Vector], pixel_values: dict[tuple[int, int], dict[str, float] | None],
                failures: dict[str, str], pixel_failures: dict[tuple[int, int], str], force: bool,
                report: ScoreReport) -> None:
    scored_at = _now()
    pending: list[score_store.ScoreRow] = []
    outputs: list[tuple[int, int]] = []

    def flush() -> None:
        if outputs:
            score_store.insert_scores(store, scorer_id, pending, scored_at, replace_outputs=outputs if force else ())
        report.rows_written += len(pending)
        report.outputs_scored += len(outputs)
        pending.clear()
        outputs.clear()

    for job in jobs:
        key = (job.attempt_id, job.output_idx)
        broken = [failures[k] for k in job.image_keys() if k in failures]
        if key in pixel_failures:
            broken.append(pixel_failures[key])
        if broken:
            report.problems.append(f"output {job.output_idx} of attempt {job.attempt_id}: {'; '.join(broken)}")
            continue
        pending += output_rows(job, images.__getitem__, texts.__getitem__, pixel_values.get(key))
        outputs.append(key)
        if len(outputs) >= ROWS_PER_TRANSACTION:
            flush()
    flush()
