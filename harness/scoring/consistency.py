"""Consistency of multi-turn conversations: does each turn keep what came before, and follow its instruction?

Per completed turn *k* of a conversation (its output image ``I_k``, the turn's instruction ``P_k`` for the
conversation's variant, and the turn's ``preserve`` list from the challenge):

============= =========================================================================== ===========
metric        definition                                                                  direction
============= =========================================================================== ===========
clip_i_first  cos(E_I(I_k), E_I(I_1)), turns k ≥ 2: how much of the first answer survives   higher
clip_i_prev   cos(E_I(I_k), E_I(I_{k−1})); turn 1: to the first starting image, if any      higher
clip_t_turn   cos(E_I(I_k), E_T(P_k)): the turn's own instruction (as the pipeline's CLIP-T) higher
l1_prev       mean |I_k − I_{k−1}| over every pixel and RGB channel, values in [0, 1]        lower
psnr_prev     10 · log10(1 / MSE) over the same pixels, dB, capped at 100                   higher
============= =========================================================================== ===========

The pixel metrics are computed only where the turn names what it must keep (``preserve``): there, what the
turn did not set out to change should come back pixel for pixel. A turn carries no mask, so they compare the
whole frame, ``I_k`` resized (bicubic) to ``I_{k−1}``'s size, with the formulas of
:func:`harness.scoring.metrics.preservation` (every pixel kept): the intended edit is part of the difference, and a turn that changed a small region scores close to its
untouched frame. Turn 1's previous image is the first starting image when the conversation started from images.

Embeddings come from the scoring pipeline's cache (:mod:`harness.store.scores`, keyed by image SHA-256 and
text SHA-256): :func:`embed_conversations` embeds only what is missing (every turn's image and instruction;
the final image and the last instruction are usually already there), and :func:`consistency` reads them back,
so a report can show consistency without loading a model. Only completed turns are scored: a conversation that
failed at turn 2 contributes its turn 1, and its record says so.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np
from PIL import Image

from harness.scoring import pixels as pixel_ops
from harness.scoring.backbone import Backbone
from harness.scoring.metrics import PSNR_CAP_DB, Vector, cosine
from harness.scoring.pipeline import IMAGE, TEXT, ScoreOptions, decode_pool, embed_image_batches
from harness.scoring.plan import ImageSource, text_key
from harness.scoring.summary import (
    ConsistencyMetric,
    ConsistencyOutput,
    ConsistencySequenceRow,
    ConsistencyTurnRow,
    ConversationConsistency,
    SequenceAggregate,
    TurnConsistency,
    cluster_bootstrap_mean,
)
from harness.stats.turns import STRIP_COLUMNS, Strip, turn_strips
from harness.store import Store
from harness.store import runs as run_store
from harness.store import scores as score_store

MULTI_TURN = "multi-turn"
METRICS: tuple[ConsistencyMetric, ...] = get_args(ConsistencyMetric)
HIGHER_IS_BETTER: dict[ConsistencyMetric, bool] = {
    "clip_i_first": True, "clip_i_prev": True, "clip_t_turn": True, "l1_prev": False, "psnr_prev": True}
AGGREGATES: tuple[SequenceAggregate, ...] = get_args(SequenceAggregate)
__all__ = ["METRICS", "Conversation", "EmbedCounts", "consistency", "conversations", "embed_conversations",
           "pixel_change", "pixel_values", "score_conversation", "sequence_rows", "turn_rows"]


@dataclass(frozen=True, slots=True)
class TurnImage:
    """A completed turn's output, instruction and what it had to keep."""

    turn: int
    sha: str
    ext: str
    prompt: str | None
    preserve: tuple[str, ...]


@dataclass(frozen=True)
class Conversation:
    """One conversation of a run: its strip, the first starting image (SHA-256, extension) if it had one, and
    its completed turns in order."""

    strip: Strip
    start: tuple[str, str] | None
    turns: tuple[TurnImage, ...]


def _turn_prompt(spec: Mapping[str, Any], variant: str) -> str | None:
    prompts = spec.get("prompts") or {}
    text = prompts.get(variant) or next(iter(prompts.values()), None)
    return None if text is None else str(text)


def conversations(store: Store, run_ids: Sequence[str]) -> list[Conversation]:
    """Every conversation of ``run_ids`` (multi-turn challenges only), from their turn strips."""
    frozen: dict[tuple[str, str], dict[str, Any]] = {}
    for run_id in run_ids:
        for challenge in run_store.run_challenges(store, run_id):
            if challenge.get("kind") == MULTI_TURN:
                frozen[(run_id, str(challenge["id"]))] = challenge
    if not frozen:
        return []
    ids = sorted({run_id for run_id, _ in frozen})
    attempts = run_store.attempts_frame(store, ids, columns=list(STRIP_COLUMNS), with_challenge=False)
    outputs = run_store.outputs_frame(store, ids, final_only=False)
    out: list[Conversation] = []
    for strip in turn_strips(attempts, outputs, frozen):
        challenge = frozen.get((strip.run_id, strip.challenge_id), {})
        specs = list(challenge.get("turns") or [])
        exts = {str(r["sha256"]): str(r["ext"]) for r in challenge.get("references") or []}
        start = next(((sha, exts[sha]) for sha in strip.start_images if sha in exts), None)
        turns: list[TurnImage] = []
        for s in strip.steps:
            if not s.ok or not s.image_sha256:
                break  # a turn without an image ends what can be compared turn to turn
            prompt = _turn_prompt(specs[s.turn - 1], strip.variant) if s.turn - 1 < len(specs) else s.prompt
            turns.append(TurnImage(s.turn, s.image_sha256, s.image_ext or "png", prompt, tuple(s.preserve)))
        out.append(Conversation(strip, start, tuple(turns)))
    return out


def _needs(convs: Sequence[Conversation], image_path: Callable[[str, str], Path]
           ) -> tuple[dict[str, ImageSource], dict[str, str]]:
    images: dict[str, ImageSource] = {}
    texts: dict[str, str] = {}
    for conv in convs:
        if conv.start is not None and conv.turns:
            images[conv.start[0]] = ImageSource(image_path(*conv.start))
        for t in conv.turns:
            images[t.sha] = ImageSource(image_path(t.sha, t.ext))
            if t.prompt is not None:
                texts[text_key(t.prompt)] = t.prompt
    return images, texts


@dataclass
class EmbedCounts:
    """What :func:`embed_conversations` computed (model runs) and found in the cache; ``failures``: image
    key → why it could not be read."""

    images_embedded: int = 0
    images_cached: int = 0
    texts_embedded: int = 0
    texts_cached: int = 0
    failures: dict[str, str] = field(default_factory=dict)


def embed_conversations(store: Store, run_ids: Sequence[str], backbone: Backbone,
                        options: ScoreOptions | None = None) -> EmbedCounts:
    """Put every turn image, starting image and turn instruction of ``run_ids``' conversations into the
    embedding cache of ``backbone``'s scorer (only those missing are computed, batch by batch, each batch
    written as soon as it exists). The scorer must be registered (``score_runs`` does it)."""
    options = options or ScoreOptions()
    scorer_id = backbone.info.id
    images, texts = _needs(conversations(store, run_ids), store.image_path)
    counts = EmbedCounts()
    have_texts = score_store.cached_embeddings(store, scorer_id, TEXT, texts)
    counts.texts_cached = len(have_texts)
    missing_texts = [(k, t) for k, t in sorted(texts.items()) if k not in have_texts]
    for start in range(0, len(missing_texts), options.batch_size):
        chunk = missing_texts[start:start + options.batch_size]
        vectors = backbone.encode_texts([t for _, t in chunk])
        score_store.put_embeddings(store, scorer_id, TEXT, [(k, vectors[i]) for i, (k, _) in enumerate(chunk)])
        counts.texts_embedded += len(chunk)
    have_images = score_store.cached_embeddings(store, scorer_id, IMAGE, images)
    counts.images_cached = len(have_images)
    missing = [(k, images[k]) for k in sorted(images) if k not in have_images]
    with decode_pool(options, backbone.device) as pool:
        for keys, vectors in embed_image_batches(backbone, missing, pool, options.batch_size, options.prefetch,
                                                 counts.failures):
            score_store.put_embeddings(store, scorer_id, IMAGE, [(k, vectors[i]) for i, k in enumerate(keys)])
            counts.images_embedded += len(keys)
    return counts


def _psnr(mse: float) -> float:
    """PSNR of a mean squared error on [0, 1] values, capped as :func:`harness.scoring.metrics.preservation`."""
    return PSNR_CAP_DB if mse <= 10 ** (-PSNR_CAP_DB / 10) else min(PSNR_CAP_DB, 10 * math.log10(1.0 / mse))


def pixel_change(output: Path, previous: Path) -> dict[str, float]:
    """``l1_prev`` and ``psnr_prev`` of ``output`` against ``previous`` over the whole frame (``output``
    resized bicubically to ``previous``'s size when they differ): the values of
    :func:`harness.scoring.metrics.preservation` with every pixel kept, computed exactly on the 8-bit values
    (a megapixel pair in tens of milliseconds rather than the masked path's boolean gathers)."""
    prev = pixel_ops.load_rgb(previous)
    out = pixel_ops.load_rgb(output)
    if out.size != prev.size:
        out = out.resize(prev.size, Image.Resampling.BICUBIC)
    diff = np.abs(np.asarray(out, dtype=np.int16) - np.asarray(prev, dtype=np.int16)).astype(np.int32)
    count = diff.size
    l1 = float(diff.sum(dtype=np.int64)) / (count * 255.0)
    mse = float((diff * diff).sum(dtype=np.int64)) / (count * 255.0 * 255.0)
    return {"l1_prev": l1, "psnr_prev": _psnr(mse)}


PixelResult = dict[str, float] | str
"""Pixel metrics of one (turn image, previous image) pair, or why they could not be computed."""


def pixel_pairs(convs: Sequence[Conversation]) -> dict[tuple[str, str], tuple[TurnImage, tuple[str, str]]]:
    """Every (turn image SHA-256, previous image SHA-256) pair whose pixels are compared: turns that name what
    to ``preserve`` and have a previous image."""
    pairs: dict[tuple[str, str], tuple[TurnImage, tuple[str, str]]] = {}
    for conv in convs:
        previous = conv.start
        for t in conv.turns:
            if t.preserve and previous is not None:
                pairs[(t.sha, previous[0])] = (t, previous)
            previous = (t.sha, t.ext)
    return pairs


def pixel_values(convs: Sequence[Conversation], image_path: Callable[[str, str], Path], workers: int = 0
                 ) -> dict[tuple[str, str], PixelResult]:
    """:func:`pixel_change` of every pair of :func:`pixel_pairs`, decoded in ``workers`` threads (0: up to 4,
    never above the CPU count; Pillow and numpy release the GIL for the heavy parts)."""
    pairs = pixel_pairs(convs)
    size = workers or max(1, min(4, os.cpu_count() or 1))
    results: dict[tuple[str, str], PixelResult] = {}
    with ThreadPoolExecutor(size, thread_name_prefix="consistency-pixels") as pool:
        futures = {key: pool.submit(pixel_change, image_path(t.sha, t.ext), image_path(*prev))
                   for key, (t, prev) in pairs.items()}
        for key, future in futures.items():
            try:
                results[key] = future.result()
            except (OSError, ValueError) as exc:
                results[key] = f"{type(exc).__name__}: {exc}"
    return results


def _where(conv: Conversation, turn: int) -> str:
    s = conv.strip
    return f"turn {turn} of {s.challenge_id}/{s.variant} on {s.target} (sample {s.sample}, run {s.run_id})"


def score_conversation(conv: Conversation, image: Mapping[str, Vector], text: Mapping[str, Vector],
                       pixels: Mapping[tuple[str, str], PixelResult], problems: list[str]) -> ConversationConsistency:
    """The consistency record of one conversation from cached embeddings (``image``/``text`` by key) and the
    pixel metrics of :func:`pixel_values`; a turn whose embedding is missing or whose pixels could not be
    compared gets ``None`` there and a line in ``problems``."""
    steps: list[TurnConsistency] = []
    first = image.get(conv.turns[0].sha) if conv.turns else None
    previous: tuple[str, str] | None = conv.start
    for t in conv.turns:
        own = image.get(t.sha)
        if own is None:
            problems.append(f"{_where(conv, t.turn)}: image {t.sha} has no embedding under this scorer "
                            "(run harness score with it)")
        prev_vec = image.get(previous[0]) if previous is not None else None
        prompt_vec = text.get(text_key(t.prompt)) if t.prompt is not None else None
        found = pixels.get((t.sha, previous[0])) if t.preserve and previous is not None else None
        if isinstance(found, str):
            problems.append(f"{_where(conv, t.turn)}: pixel metrics: {found}")
        values = found if isinstance(found, dict) else {}
        steps.append(TurnConsistency(
            turn=t.turn, image_sha256=t.sha, image_ext=t.ext, preserve=list(t.preserve),
            clip_i_first=cosine(own, first) if own is not None and first is not None and t.turn > 1 else None,
            clip_i_prev=cosine(own, prev_vec) if own is not None and prev_vec is not None else None,
            clip_t_turn=cosine(own, prompt_vec) if own is not None and prompt_vec is not None else None,
            l1_prev=values.get("l1_prev"), psnr_prev=values.get("psnr_prev")))
        previous = (t.sha, t.ext)
    s = conv.strip
    note = None
    if not s.completed:
        at = f"failed at turn {s.failed_at_turn}" if s.failed_at_turn else "did not finish"
        note = f"{len(steps)} of {s.turns} turns scored: the conversation {at}"
    return ConversationConsistency(
        run_id=s.run_id, challenge_id=s.challenge_id, variant=s.variant, target=s.target, sample=s.sample,
        turns=s.turns, scored_turns=len(steps), completed=s.completed, failed_at_turn=s.failed_at_turn, note=note,
        steps=steps)


def _summary(values: Sequence[float], clusters: Sequence[str]) -> tuple[float, float | None, float | None, int]:
    mean, low, high = cluster_bootstrap_mean(np.asarray(values, dtype=float), np.asarray(clusters))
    return mean, None if np.isnan(low) else low, None if np.isnan(high) else high, len(set(clusters))


def _cluster(c: ConversationConsistency) -> str:
    return f"{c.challenge_id}\x00{c.variant}"


def turn_rows(records: Sequence[ConversationConsistency], scorer: str) -> list[ConsistencyTurnRow]:
    """Per (target, turn index, metric): mean over the conversations that completed that turn."""
    groups: dict[tuple[str, int, ConsistencyMetric], tuple[list[float], list[str]]] = {}
    for rec in records:
        for step in rec.steps:
            for metric in METRICS:
                value = getattr(step, metric)
                if value is not None:
                    values, clusters = groups.setdefault((rec.target, step.turn, metric), ([], []))
                    values.append(float(value))
                    clusters.append(_cluster(rec))
    out = []
    for (target, turn, metric), (values, clusters) in sorted(groups.items(), key=lambda kv: (
            kv[0][0], kv[0][1], METRICS.index(kv[0][2]))):
        mean, low, high, prompts = _summary(values, clusters)
        out.append(ConsistencyTurnRow(scorer=scorer, target=target, turn=turn, metric=metric,
                                      higher_is_better=HIGHER_IS_BETTER[metric], n_images=len(values),
                                      n_prompts=prompts, mean=mean, low=low, high=high))
    return out


def _aggregate(values: Sequence[float], metric: ConsistencyMetric, how: SequenceAggregate,
               completed: bool) -> float | None:
    if not values:
        return None
    if how == "mean":
        return float(np.mean(values))
    if how == "worst":
        return float(min(values) if HIGHER_IS_BETTER[metric] else max(values))
    if not completed:
        return None
    if how == "last":
        return float(values[-1])
    return float(values[-1] - values[0]) if len(values) >= 2 else None


def sequence_rows(records: Sequence[ConversationConsistency], scorer: str) -> list[ConsistencySequenceRow]:
    """Per (target, metric, aggregate): each conversation reduced over its scored turns (mean, worst, last,
    change), then the mean over conversations with its interval (see :class:`ConsistencySequenceRow`)."""
    groups: dict[tuple[str, ConsistencyMetric, SequenceAggregate], tuple[list[float], list[str], list[bool]]] = {}
    for rec in records:
        for metric in METRICS:
            values = [float(v) for v in (getattr(s, metric) for s in rec.steps) if v is not None]
            for how in AGGREGATES:
                value = _aggregate(values, metric, how, rec.completed)
                if value is not None:
                    vals, clusters, done = groups.setdefault((rec.target, metric, how), ([], [], []))
                    vals.append(value)
                    clusters.append(_cluster(rec))
                    done.append(rec.completed)
    out = []
    for (target, metric, how), (values, clusters, done) in sorted(groups.items(), key=lambda kv: (
            kv[0][0], METRICS.index(kv[0][1]), AGGREGATES.index(kv[0][2]))):
        mean, low, high, prompts = _summary(values, clusters)
        out.append(ConsistencySequenceRow(
            scorer=scorer, target=target, metric=metric, aggregate=how, higher_is_better=HIGHER_IS_BETTER[metric],
            n_sequences=len(values), n_incomplete=done.count(False), n_prompts=prompts, mean=mean, low=low,
            high=high))
    return out


def scorer_name(store: Store, scorer_id: str) -> str:
    """The stable name of a registered scorer (its id when unknown)."""
    row = store.conn.execute("SELECT name FROM scorers WHERE id=?", (scorer_id,)).fetchone()
    return scorer_id if row is None else str(row[0])


def consistency(store: Store, run_ids: Sequence[str], scorer_id: str, workers: int = 0) -> ConsistencyOutput | None:
    """Consistency of every conversation of ``run_ids`` from ``scorer_id``'s cached embeddings and the image
    store (pixel comparisons in ``workers`` threads, see :func:`pixel_values`); ``None`` when the runs hold no
    conversation. Nothing is written."""
    convs = conversations(store, run_ids)
    if not convs:
        return None
    images, texts = _needs(convs, store.image_path)
    image = score_store.cached_embeddings(store, scorer_id, IMAGE, images)
    text = score_store.cached_embeddings(store, scorer_id, TEXT, texts)
    pixels = pixel_values(convs, store.image_path, workers)
    problems: list[str] = []
    records = [score_conversation(c, image, text, pixels, problems) for c in convs]
    name = scorer_name(store, scorer_id)
    return ConsistencyOutput(scorer=name, turns=turn_rows(records, name), sequences=sequence_rows(records, name),
                             conversations=records, problems=problems)
