"""Score formulas per challenge kind, on L2-normalised CLIP embeddings (E_I image, E_T text).

Every CLIP number is a cosine of two unit vectors, so it lies in [-1, 1]; for real image–caption pairs it
clusters around 0.2–0.35. Names, definitions and direction (all are "higher is better" except the pixel
error ``l1_outside_mask``):

================== ============================================================================== ========
metric             definition                                                                     kinds
================== ============================================================================== ========
clip_t_cos         cos(E_I(out), E_T(prompt)), prompt truncated to the context keeping EOT          all
clip_t_100         100 · clip_t_cos (torchmetrics / diffusers scale, per image, no clamp)            all
clipscore          2.5 · max(clip_t_cos, 0) (Hessel et al. 2021 CLIP-S, w = 2.5, no caption prefix)  all
clip_t_chunk_mean  mean over sentence chunks c of cos(E_I(out), E_T(c)); only for truncated prompts  all
clip_t_chunk_min   minimum of the same (exposes the one sentence the image ignores)                 all
clip_i_source      cos(E_I(out), E_I(references[0])): preservation of the source image              edit
clip_t_caption     cos(E_I(out), E_T(captions.target)) (InstructPix2Pix sim_1)                      edit
clip_direction     cos(E_I(out) − E_I(src), E_T(target caption) − E_T(source caption))              edit
clip_i_ref_mean    mean over references r of cos(E_I(out), E_I(r))                                 compose
clip_i_ref_min     minimum of the same (catches a dropped subject)                                  compose
clip_t_mask_crop   cos(E_I(crop of out to the mask's bounding box), E_T(prompt))                    inpaint
l1_outside_mask    mean |out − source| over unmasked pixels and RGB channels, values in [0, 1]      inpaint
psnr_outside_mask  10 · log10(1 / MSE) over the same pixels, dB, capped at PSNR_CAP_DB             inpaint
================== ============================================================================== ========
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Vector = np.ndarray[Any, Any]

CLIPSCORE_W = 2.5
"""Hessel et al.'s CLIP-S weight, "scaled for readability" (jmhessel/clipscore)."""

PSNR_CAP_DB = 100.0
"""PSNR reported when the unmasked region is unchanged (MSE 0): a finite ceiling keeps means finite."""


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """What a metric means: its unit and whether a higher value is better."""

    name: str
    higher_is_better: bool
    unit: str
    description: str


METRICS: dict[str, MetricInfo] = {m.name: m for m in (
    MetricInfo("clip_t_cos", True, "cosine", "CLIP image–prompt cosine (prompt truncated keeping EOT)"),
    MetricInfo("clip_t_100", True, "100·cosine", "100 × clip_t_cos (torchmetrics scale, unclamped)"),
    MetricInfo("clipscore", True, "CLIP-S", "2.5 × max(clip_t_cos, 0), Hessel et al. 2021"),
    MetricInfo("clip_t_chunk_mean", True, "cosine", "mean image–sentence-chunk cosine of a truncated prompt"),
    MetricInfo("clip_t_chunk_min", True, "cosine", "lowest image–sentence-chunk cosine of a truncated prompt"),
    MetricInfo("clip_i_source", True, "cosine", "CLIP image cosine to the edit's source image"),
    MetricInfo("clip_t_caption", True, "cosine", "CLIP image cosine to the edit's target caption"),
    MetricInfo("clip_direction", True, "cosine", "directional CLIP similarity of the edit (needs captions)"),
    MetricInfo("clip_i_ref_mean", True, "cosine", "mean CLIP image cosine to the composed references"),
    MetricInfo("clip_i_ref_min", True, "cosine", "lowest CLIP image cosine to a composed reference"),
    MetricInfo("clip_t_mask_crop", True, "cosine", "CLIP cosine of the masked region's crop to the prompt"),
    MetricInfo("l1_outside_mask", False, "mean |Δ| in [0, 1]", "pixel change outside the inpainting mask"),
    MetricInfo("psnr_outside_mask", True, "dB", "PSNR of the unmasked region against the source"),
)}


def cosine(a: Vector, b: Vector) -> float:
    """Cosine similarity of two vectors (they need not be normalised; a zero vector gives 0)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def clip_t_values(cos: float) -> dict[str, float]:
    """The three published scales of one image–text cosine."""
    return {"clip_t_cos": cos, "clip_t_100": 100.0 * cos, "clipscore": CLIPSCORE_W * max(cos, 0.0)}


def chunk_values(image: Vector, chunks: Sequence[Vector]) -> dict[str, float]:
    """Mean and minimum image–chunk cosine over a long prompt's sentence chunks."""
    if not chunks:
        raise ValueError("a prompt needs at least one chunk")
    values = [cosine(image, c) for c in chunks]
    return {"clip_t_chunk_mean": float(np.mean(values)), "clip_t_chunk_min": float(min(values))}


def direction(out: Vector, src: Vector, target_caption: Vector, source_caption: Vector) -> float:
    """Directional CLIP similarity (Gal et al.; InstructPix2Pix ``sim_direction``) of normalised embeddings."""
    return cosine(out - src, target_caption - source_caption)


def reference_values(out: Vector, references: Sequence[Vector]) -> dict[str, float]:
    """Mean and minimum image–image cosine of an output to each reference of a composition."""
    if not references:
        raise ValueError("a composition needs at least one reference")
    values = [cosine(out, r) for r in references]
    return {"clip_i_ref_mean": float(np.mean(values)), "clip_i_ref_min": float(min(values))}


def preservation(out: Vector, source: Vector, keep: Vector) -> dict[str, float] | None:
    """L1 and PSNR of ``out`` against ``source`` over pixels where ``keep`` is true.

    ``out`` and ``source`` are ``H×W×3`` arrays of the same shape with values in [0, 1]; ``keep`` is an
    ``H×W`` boolean array. ``None`` when no pixel is kept (the mask covers the whole image).
    """
    if out.shape != source.shape or out.shape[:2] != keep.shape:
        raise ValueError(f"shapes differ: output {out.shape}, source {source.shape}, mask {keep.shape}")
    n = int(np.count_nonzero(keep))
    if n == 0:
        return None
    diff = (out[keep] - source[keep]).astype(np.float64)
    l1 = float(np.abs(diff).mean())
    mse = float((diff * diff).mean())
    psnr = PSNR_CAP_DB if mse <= 10 ** (-PSNR_CAP_DB / 10) else min(PSNR_CAP_DB, 10 * math.log10(1.0 / mse))
    return {"l1_outside_mask": l1, "psnr_outside_mask": psnr}
