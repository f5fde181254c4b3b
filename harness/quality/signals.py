"""Every automatic quality signal the harness holds about a run's outputs, as a pairwise preference.

A signal answers, for two outputs of the same challenge: which is better (``+1`` the left, ``-1`` the right),
neither (``0``, a tie), or nothing (``None``: it has no value for one of them). Per-image signals compare
values (in their own direction); the judge is pairwise already and combines its verdicts on both orders.

* ``clip:<scorer>:<metric>`` — each stored CLIP (and stored pixel) metric of one scorer
  (:func:`harness.store.scores.scores_frame`); values of different scorers never meet;
* ``pixel:edit_l1_to_source`` — for edits and compositions, the mean absolute difference (0–1) between the
  output and its first reference resized to the output's size: lower keeps more of the source, the pixel
  metric that rewards not editing at all (which is exactly what its agreement measures);
* ``reading:sandbox`` — the sandbox's own pixel reading (:func:`harness.quality.readings.read_outputs`):
  meaningful on sandboxed runs only, where it is the quality the simulation drew;
* ``judge:<MODEL@PROVIDER>`` — the stored verdicts of a vision-model judge (:mod:`harness.judge`).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image

from harness.judge.report import final_verdicts
from harness.providers.base import ChallengeKind
from harness.quality.readings import read_outputs
from harness.store import runs as run_store
from harness.store.core import Store
from harness.store.scores import scores_frame

Preference = Callable[[str, str], int | None]
"""``(left sha, right sha)`` -> +1 left better, -1 right better, 0 tie, ``None`` no opinion."""


@dataclass(frozen=True)
class Signal:
    """A named signal (``family``: ``clip``, ``pixel``, ``reading`` or ``judge``) and its preference."""

    name: str
    family: str
    prefer: Preference


def per_image(name: str, family: str, values: Mapping[str, float], higher_is_better: bool,
              tolerance: float = 0.0) -> Signal:
    """A signal from one value per output image: the better value wins; values within ``tolerance`` tie."""
    sign = 1 if higher_is_better else -1

    def prefer(left: str, right: str) -> int | None:
        a, b = values.get(left), values.get(right)
        if a is None or b is None or not (np.isfinite(a) and np.isfinite(b)):
            return None
        if abs(a - b) <= tolerance:
            return 0
        return sign if a > b else -sign

    return Signal(name, family, prefer)


def clip_signals(store: Store, run_ids: Sequence[str]) -> list[Signal]:
    """One signal per (scorer, metric) stored for the runs' outputs."""
    frame = scores_frame(store, list(run_ids))
    out = []
    for (scorer, metric), rows in frame.groupby(["scorer", "metric"], sort=True):
        values = {str(s): float(v) for s, v in zip(rows["image_sha"], rows["value"], strict=True)}
        out.append(per_image(f"clip:{scorer}:{metric}", "clip", values, bool(rows["higher_is_better"].iloc[0])))
    return out


def edit_l1(store: Store, outputs: pd.DataFrame) -> dict[str, float]:
    """``pixel:edit_l1_to_source`` of every edit and composition output (see the module)."""
    challenges: dict[tuple[str, str], Mapping[str, object]] = {}
    for run_id in pd.unique(outputs["run_id"]):
        for c in run_store.run_challenges(store, str(run_id)):
            challenges[(str(run_id), str(c["id"]))] = c
    sources: dict[str, Image.Image] = {}
    values: dict[str, float] = {}
    for row in outputs.itertuples(index=False):
        challenge = challenges.get((str(row.run_id), str(row.challenge_id)), {})
        refs = challenge.get("references")
        if challenge.get("kind") not in (ChallengeKind.EDIT.value, ChallengeKind.COMPOSE.value) or not refs:
            continue
        ref = refs[0]  # type: ignore[index]
        sha = str(ref["sha256"])
        if sha not in sources:
            with Image.open(io.BytesIO(store.images.read(sha, str(ref["ext"])))) as im:
                sources[sha] = im.convert("RGB")
        with Image.open(io.BytesIO(store.images.read(str(row.sha256), str(row.ext)))) as im:
            out = np.asarray(im.convert("RGB"), dtype=np.float32)
        src = np.asarray(sources[sha].resize((out.shape[1], out.shape[0]), Image.Resampling.BICUBIC),
                         dtype=np.float32)
        values[str(row.sha256)] = float(np.abs(out - src).mean() / 255.0)
    return values


def judge_signals(store: Store, run_ids: Sequence[str]) -> list[Signal]:
    """One signal per judge with stored verdicts on the runs' outputs: the sum over both orders of its
    verdicts (+1 for the output it picked, ties 0) decides; unparseable and failed answers are no opinion."""
    verdicts = final_verdicts(store, run_ids)
    out = []
    for judge, rows in (verdicts.groupby("judge", sort=True) if not verdicts.empty else []):
        score: dict[tuple[str, str], int] = {}
        for r in rows.itertuples():
            if r.verdict not in ("first", "second", "tie"):
                continue
            value = {"first": 1, "second": -1, "tie": 0}[r.verdict]
            key, sign = ((r.first_sha, r.second_sha), 1) if r.first_sha < r.second_sha else (
                (r.second_sha, r.first_sha), -1)
            score[key] = score.get(key, 0) + sign * value

        def prefer(left: str, right: str, score: dict[tuple[str, str], int] = score) -> int | None:
            if left < right:
                total = score.get((left, right))
                return None if total is None else int(np.sign(total))
            total = score.get((right, left))
            return None if total is None else -int(np.sign(total))

        out.append(Signal(f"judge:{judge}", "judge", prefer))
    return out


def all_signals(store: Store, run_ids: Sequence[str], *, readings: bool | None = None) -> list[Signal]:
    """Every signal the store holds for the runs; ``readings`` (default: when every run was sandboxed)
    adds the sandbox's pixel reading."""
    outputs = run_store.outputs_frame(store, list(run_ids))
    signals = clip_signals(store, run_ids)
    l1 = edit_l1(store, outputs)
    if l1:
        signals.append(per_image("pixel:edit_l1_to_source", "pixel", l1, higher_is_better=False))
    if readings is None:
        readings = all(bool(run_store.get_run(store, r).config.get("sandbox")) for r in run_ids)
    if readings:
        seen = {sha: r.quality for sha, r in read_outputs(store, outputs).items()}
        signals.append(per_image("reading:sandbox", "reading", seen, higher_is_better=True, tolerance=1e-9))
    return signals + judge_signals(store, run_ids)
