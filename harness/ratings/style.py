"""Bradley–Terry with style covariates: how much of a model's lead is presentation.

LMArena's style control for text (https://blog.lmarena.ai/blog/2024/style-control/, code in
https://github.com/lmarena/arena-rank) fits a logistic Bradley–Terry model with, besides the models, the
*differences* of style features between the two answers; the model coefficients are then the ratings with
style held equal. Adapted to images, the features are what the harness holds about each output, whatever
the voter saw: delivered size, aspect ratio, file size, sharpness and latency (:data:`COVARIATES`).

Model, for a vote between outputs ``l`` and ``r`` of models ``i`` and ``j``::

    P(l beats r) = σ(θ_i − θ_j + Σ_k β_k · z_k),   z_k = (f_k(l) − f_k(r)) / sd_k

where ``f_k`` is the feature (log pixels, |log aspect|, log bytes, log sharpness, log latency) and ``sd_k``
the standard deviation of its differences over the votes, so each ``β_k`` is in log-odds per standard
deviation of difference. Ties count half (LMArena's convention, as the plain board). The fit is the exact
maximum-likelihood optimum: Newton's method with the analytic Hessian on the concave log-likelihood, the
mean θ fixed at 0 (ratings mean 1000 on the Elo scale, 400/ln 10 points per unit of θ); a tiny ridge
(:data:`RIDGE`) keeps it finite when a model wins every vote. Intervals are Wald intervals from the inverse
Hessian (the observed information; its Moore–Penrose inverse is the covariance under the mean-zero gauge,
since the constant model direction is exactly its null space).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd
from scipy.special import expit

from harness.errors import HarnessError
from harness.ratings.bradley_terry import INITIAL_RATING, RATING_SCALE

STYLE_SCHEMA_VERSION: Final = 1
"""Version of the JSON of a style-controlled board (:meth:`StyleFit.as_dict`) and of ``harness judge style
--json`` (both boards and the coefficients)."""
COVARIATES = ("pixels", "aspect", "file_size", "sharpness", "latency")
"""Style features per output: delivered ``width·height`` (log), ``|log(width/height)|``, file size in bytes
(log), sharpness (log variance of a Laplacian of the grey image), latency of its request in ms (log)."""
RIDGE = 1e-6
"""L2 penalty per vote on every parameter: keeps the optimum finite, moves nothing measurably."""
Z95 = 1.959963984540054


class StyleError(HarnessError):
    """The votes cannot support the fit (fewer than two models, no votes)."""


@dataclass(frozen=True)
class StyleFit:
    """A style-controlled fit: ``ratings`` (Elo scale, mean 1000) with ``rating_se``; ``coefficients``
    (log-odds per SD of feature difference) with ``coefficient_se``; ``scales`` the SD of each feature's
    differences; ``n_votes``; ``iterations``; ``max_gradient`` at the optimum."""

    models: tuple[str, ...]
    ratings: dict[str, float]
    rating_se: dict[str, float]
    coefficients: dict[str, float]
    coefficient_se: dict[str, float]
    scales: dict[str, float]
    n_votes: int
    iterations: int
    max_gradient: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema_version": STYLE_SCHEMA_VERSION, "method": "bradley-terry with style covariates (LMArena style control)",
            "n_votes": self.n_votes,
            "ratings": [{"model": m, "rating": self.ratings[m], "low": self.ratings[m] - Z95 * self.rating_se[m],
                         "high": self.ratings[m] + Z95 * self.rating_se[m]}
                        for m in sorted(self.models, key=lambda m: -self.ratings[m])],
            "coefficients": [{"covariate": k, "beta": b, "low": b - Z95 * self.coefficient_se[k],
                              "high": b + Z95 * self.coefficient_se[k], "sd_of_difference": self.scales[k]}
                             for k, b in self.coefficients.items()],
        }


def fit_style(left: Sequence[str], right: Sequence[str], score: Sequence[float],
              differences: Mapping[str, Sequence[float]], *, max_iter: int = 100, gtol: float = 1e-10) -> StyleFit:
    """Fit the model of the module to votes: ``left``/``right`` models, ``score`` the left side's result
    (1 win, 0 loss, 0.5 tie), ``differences`` raw feature differences (left minus right) per covariate.
    A covariate whose differences are all zero (no information) is left out."""
    models = tuple(sorted(set(left) | set(right)))
    if len(models) < 2 or not len(score):
        raise StyleError("style control needs votes between at least two models")
    index = {m: i for i, m in enumerate(models)}
    n, m = len(score), len(models)
    x_models = np.zeros((n, m))
    rows = np.arange(n)
    x_models[rows, [index[a] for a in left]] += 1.0
    x_models[rows, [index[b] for b in right]] -= 1.0
    names, columns, scales = [], [], {}
    for name, values in differences.items():
        d = np.asarray(values, dtype=float)
        sd = float(d.std())
        if not np.isfinite(sd) or sd == 0.0:
            continue
        names.append(name)
        columns.append(d / sd)
        scales[name] = sd
    x = np.column_stack([x_models, *columns]) if columns else x_models
    y = np.asarray(score, dtype=float)
    p = x.shape[1]
    centre = np.zeros(p)
    centre[:m] = 1.0 / math.sqrt(m)
    w = np.zeros(p)
    ridge = RIDGE * n

    def loss(v: np.ndarray[Any, Any]) -> float:
        eta = x @ v
        return float(np.sum(np.logaddexp(0.0, eta) - y * eta) + 0.5 * ridge * v @ v)

    iterations = 0
    while True:
        prob = expit(x @ w)
        grad = x.T @ (prob - y) + ridge * w
        if np.max(np.abs(grad)) / n <= gtol or iterations >= max_iter:
            break
        iterations += 1
        hess = (x * (prob * (1 - prob))[:, None]).T @ x + ridge * np.eye(p) + np.outer(centre, centre)
        step = -np.linalg.solve(hess, grad)
        t, f0 = 1.0, loss(w)
        while loss(w + t * step) > f0 + 1e-4 * t * float(grad @ step) and t > 1e-10:
            t /= 2
        w = w + t * step
        w[:m] -= w[:m].mean()
    prob = expit(x @ w)
    info = (x * (prob * (1 - prob))[:, None]).T @ x
    cov = np.linalg.pinv(info, hermitian=True)  # the constant direction is info's null space: mean-zero gauge
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    return StyleFit(
        models=models,
        ratings={mod: INITIAL_RATING + RATING_SCALE * float(w[i]) for mod, i in index.items()},
        rating_se={mod: RATING_SCALE * float(se[i]) for mod, i in index.items()},
        coefficients={k: float(w[m + j]) for j, k in enumerate(names)},
        coefficient_se={k: float(se[m + j]) for j, k in enumerate(names)},
        scales=scales, n_votes=n, iterations=iterations, max_gradient=float(np.max(np.abs(grad)) / n))


def features(pixels: float, aspect: float, file_size: float, sharpness: float, latency_ms: float
             ) -> dict[str, float]:
    """The transformed features of one output (see :data:`COVARIATES`); non-positive inputs give NaN."""
    def log(v: float) -> float:
        return math.log(v) if v and v > 0 else math.nan
    return {"pixels": log(pixels), "aspect": abs(log(aspect)) if aspect > 0 else math.nan,
            "file_size": log(file_size), "sharpness": log(sharpness), "latency": log(latency_ms)}


def fit_votes(votes: pd.DataFrame, per_output: Mapping[str, Mapping[str, float]],
              covariates: Sequence[str] = COVARIATES) -> StyleFit:
    """Fit votes (``left_sha``, ``right_sha``, ``outcome``, ``left_model``, ``right_model``) with the
    features of each output by SHA-256; votes lacking a feature of either side are left out."""
    keep: list[int] = []
    diffs: dict[str, list[float]] = {c: [] for c in covariates}
    for i, (a, b) in enumerate(zip(votes["left_sha"], votes["right_sha"], strict=True)):
        fa, fb = per_output.get(str(a)), per_output.get(str(b))
        if fa is None or fb is None:
            continue
        values = [fa[c] - fb[c] for c in covariates]
        if not all(np.isfinite(values)):
            continue
        keep.append(i)
        for c, v in zip(covariates, values, strict=True):
            diffs[c].append(v)
    rows = votes.iloc[keep]
    score = rows["outcome"].map({"left": 1.0, "right": 0.0}).fillna(0.5)
    return fit_style(rows["left_model"].astype(str).tolist(), rows["right_model"].astype(str).tolist(),
                     score.tolist(), diffs)
