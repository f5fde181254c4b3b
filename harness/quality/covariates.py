"""The style covariates of a run's outputs, from data the harness holds about each output (whatever the
arena showed a voter): delivered size and aspect ratio, file size, sharpness, and the latency of the request
that made it — the inputs of :mod:`harness.ratings.style`."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from harness.ratings.style import STYLE_SCHEMA_VERSION, StyleFit, features, fit_votes
from harness.store import runs as run_store
from harness.store.core import Store

SHARPNESS_SIDE = 512
"""Pictures are shrunk to at most this many pixels a side before their sharpness is measured (so a 4K
output and its 1K sibling are judged at the same scale)."""


def sharpness(data: bytes) -> float:
    """Variance of the 4-neighbour Laplacian of the grey picture (0–255 levels): higher is sharper."""
    with Image.open(io.BytesIO(data)) as im:
        grey = im.convert("L")
        grey.thumbnail((SHARPNESS_SIDE, SHARPNESS_SIDE))
        a = np.asarray(grey, dtype=np.float32)
    if a.shape[0] < 3 or a.shape[1] < 3:
        return 0.0
    lap = 4 * a[1:-1, 1:-1] - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:]
    return float(lap.var())


def output_features(store: Store, run_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """The transformed features (:func:`harness.ratings.style.features`) of every output, by SHA-256."""
    outputs = run_store.outputs_frame(store, list(run_ids))
    attempts = run_store.attempts_frame(store, list(run_ids), ["id", "latency_ms"], with_challenge=False)
    latency = dict(zip(attempts["id"].astype(int), attempts["latency_ms"], strict=True)) if len(attempts) else {}
    sizes = dict(store.conn.execute("SELECT sha256, nbytes FROM images").fetchall())
    out: dict[str, dict[str, float]] = {}
    for row in outputs.itertuples(index=False):
        sha = str(row.sha256)
        if sha in out:
            continue
        data = store.images.read(sha, str(row.ext))
        width, height = float(row.width or 0), float(row.height or 0)
        ms = latency.get(int(row.attempt_id))
        out[sha] = features(width * height, width / height if height else 0.0, float(sizes.get(sha) or len(data)),
                            sharpness(data), float(ms) if ms is not None and pd.notna(ms) else 0.0)
    return out


def style_report(store: Store, votes: pd.DataFrame, run_ids: Sequence[str]) -> dict[str, Any]:
    """The style-controlled board and coefficients for ``votes`` (as :func:`harness.quality.agreement.votes_frame`
    reads them), beside the plain board fitted to the same votes by the same solver without covariates (votes on an output
with a feature unknown, such as a latency never measured, are left out of both)."""
    per_output = {sha: f for sha, f in output_features(store, run_ids).items()
                  if all(np.isfinite(v) for v in f.values())}
    styled: StyleFit = fit_votes(votes, per_output)
    plain: StyleFit = fit_votes(votes, per_output, covariates=())
    return {"schema_version": STYLE_SCHEMA_VERSION, "runs": list(run_ids), "style": styled.as_dict(), "plain": plain.as_dict()}
