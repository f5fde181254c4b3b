"""Score rows of one output from its embeddings: which metrics each challenge kind gets.

* every kind: CLIP-T to the prompt (``clip_t_cos``, ``clip_t_100``, ``clipscore``), plus the sentence-chunk
  mean and minimum when the prompt is longer than CLIP's context;
* edit: ``clip_i_source``; with captions also ``clip_t_caption`` and ``clip_direction``;
* multi-turn: the final turn's image against that turn's instruction, and ``clip_i_source`` against the first
  starting image when the conversation had one;
* compose: ``clip_i_ref_mean`` and ``clip_i_ref_min`` over every reference;
* inpaint: ``clip_t_mask_crop`` (when the mask has a white region) and the pixel metrics outside the mask
  (when it has a black one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from harness.providers.base import ChallengeKind
from harness.scoring import metrics
from harness.scoring.metrics import METRICS, Vector
from harness.scoring.plan import OutputJob, TextPlan, text_key
from harness.store.scores import ScoreRow


def _row(job: OutputJob, metric: str, value: float, text: TextPlan | None = None) -> ScoreRow:
    return ScoreRow(
        attempt_id=job.attempt_id, output_idx=job.output_idx, image_sha=job.image_sha, metric=metric,
        value=float(value), higher_is_better=METRICS[metric].higher_is_better,
        truncated=None if text is None else text.truncated, prompt_tokens=None if text is None else text.tokens,
    )


def output_rows(job: OutputJob, image: Callable[[str], Vector], text: Callable[[str], Vector],
                pixels: Mapping[str, float] | None) -> list[ScoreRow]:
    """All score rows of ``job``; ``image``/``text`` return an embedding by key, ``pixels`` holds the
    preservation metrics of an inpainting output (``None`` when its mask leaves no pixel unmasked)."""
    out = image(job.image_key)
    prompt = job.prompt
    rows = [_row(job, name, value, prompt)
            for name, value in metrics.clip_t_values(metrics.cosine(out, text(prompt.key))).items()]
    if prompt.truncated and prompt.chunks:
        chunk_values = metrics.chunk_values(out, [text(text_key(c)) for c in prompt.chunks])
        rows += [_row(job, name, value, prompt) for name, value in chunk_values.items()]
    if job.kind == ChallengeKind.EDIT:
        src = image(job.reference_keys[0])
        rows.append(_row(job, "clip_i_source", metrics.cosine(out, src)))
        if job.source_caption is not None and job.target_caption is not None:
            target = text(job.target_caption.key)
            rows.append(_row(job, "clip_t_caption", metrics.cosine(out, target), job.target_caption))
            rows.append(_row(job, "clip_direction",
                             metrics.direction(out, src, target, text(job.source_caption.key)), job.target_caption))
    elif job.kind == ChallengeKind.MULTI_TURN and job.reference_keys:
        rows.append(_row(job, "clip_i_source", metrics.cosine(out, image(job.reference_keys[0]))))
    elif job.kind == ChallengeKind.COMPOSE:
        values = metrics.reference_values(out, [image(k) for k in job.reference_keys])
        rows += [_row(job, name, value) for name, value in values.items()]
    elif job.kind == ChallengeKind.INPAINT:
        if job.crop_key is not None:
            rows.append(_row(job, "clip_t_mask_crop", metrics.cosine(image(job.crop_key), text(prompt.key)), prompt))
        if pixels is not None:
            rows += [_row(job, name, value) for name, value in pixels.items()]
    return rows

