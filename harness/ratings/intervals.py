"""Uncertainty of Bradley–Terry ratings: sandwich and bootstrap intervals, and rank spreads.

* **Sandwich** (default): the robust (Huber–White) covariance ``H⁻¹ G H⁻¹`` of the M-estimator, with ``H``
  the Hessian of the negative log-likelihood and ``G`` the sum of outer products of the per-vote scores, both
  from the pair counts in closed form. It stays valid when the model is misspecified (ties scored ½, voters
  who disagree), which the plain inverse-Hessian interval is not; the Chatbot Arena paper chose it (Chiang et al.
  2024, arXiv:2403.04132) and LMArena's board uses it since July 2025 (https://github.com/lmarena/arena-rank).
  Intervals are ``rating ± z · se``, symmetric, in Elo points. Without a prior the ratings are only defined up
  to a shift, so ``H⁻¹`` is the pseudo-inverse on sum-zero ratings: each interval is
  that of a model's rating relative to the mean of all models.
* **Bootstrap**: votes resampled with replacement by drawing the pair × outcome counts from a multinomial
  (the "fast bootstrap" of FastChat and arena-rank; identical in law to resampling vote rows), each replicate
  refitted by Newton from the point estimate. Percentile intervals around the MLE (the point estimate is
  never the bootstrap median). A replicate whose resampled graph has no finite MLE (possible only with few
  votes) is left out and counted in :attr:`Intervals.degenerate_rounds`.
* **Anchored** (``reference``: FastChat's anchoring, ``scale_and_offset`` in
  ``fastchat/serve/monitor/rating_systems.py``, https://github.com/lm-sys/FastChat): every replicate (or the
  covariance) is taken relative to one reference model, so the interval of model ``i`` is that of
  ``r_i − r_ref`` placed at the reference's rating. The reference's own interval has zero width; the others
  describe the difference to it, which is wider than the centred interval for models far from the reference
  in the comparison graph (in a balanced design with ``m`` equal models, ``√(2m/(m−1))`` times as wide).
* **Rank spread** (LMArena's ranking since 2025-11): best rank = 1 + number of models whose lower bound is
  above my upper bound; worst rank = 1 + number of models whose upper bound is above my lower bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats as sps
from scipy.sparse import csr_matrix
from scipy.special import expit

from harness.ratings import bradley_terry as bt
from harness.ratings.battles import PairCounts

Array = np.ndarray[Any, np.dtype[np.float64]]
CIMethod = Literal["sandwich", "bootstrap"]
CI_METHODS: tuple[CIMethod, ...] = ("sandwich", "bootstrap")
CONFIDENCE = 0.95
DEFAULT_ROUNDS = 1000
_CHUNK = 64


@dataclass(frozen=True)
class Intervals:
    """Two-sided intervals of the ratings (Elo points, unanchored) at ``confidence``.

    ``std_error``: standard error in Elo points (bootstrap: standard deviation of the replicates).
    ``rounds``: bootstrap replicates drawn (None for sandwich); ``degenerate_rounds``: replicates left out
    because their resampled votes had no finite MLE. ``reference``: index of the model the intervals are
    relative to (None: centred, i.e. relative to the mean of all models or the prior's reference).
    """

    method: CIMethod
    confidence: float
    low: Array
    high: Array
    std_error: Array
    rounds: int | None = None
    degenerate_rounds: int = 0
    reference: int | None = None


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise bt.RatingError(f"confidence must be between 0 and 1, not {confidence}")
    return float(sps.norm.ppf(0.5 + confidence / 2.0))


def sandwich_covariance(counts: PairCounts, fit: bt.BTFit) -> Array:
    """Robust covariance of the solver's parameters (``θ``, then ``κ`` for Davidson), in nats²."""
    h = bt.hessian(counts, fit)
    g = bt.score_outer_product(counts, fit)
    m = counts.n_models
    if fit.prior_games == 0:
        gauge = np.zeros(h.shape[0])
        gauge[:m] = 1.0 / np.sqrt(m)
        h = h + np.trace(h[:m, :m]) / m * np.outer(gauge, gauge)
    bread = np.linalg.inv(h)
    cov = bread @ g @ bread
    return np.asarray((cov + cov.T) / 2.0, dtype=np.float64)


def sandwich_intervals(counts: PairCounts, fit: bt.BTFit, confidence: float = CONFIDENCE,
                       reference: int | None = None) -> Intervals:
    """Symmetric normal intervals from the sandwich covariance; with ``reference``, of ``r_i − r_ref``
    (variance ``c_ii + c_rr − 2 c_ir``) placed at each model's rating, zero-width for the reference."""
    z = _z(confidence)
    cov = sandwich_covariance(counts, fit)[: counts.n_models, : counts.n_models]
    if reference is None:
        variance = np.diag(cov)
    else:
        _check_reference(reference, counts.n_models)
        variance = np.diag(cov) + cov[reference, reference] - 2.0 * cov[:, reference]
        variance[reference] = 0.0
    se = np.sqrt(np.clip(variance, 0.0, None)) * bt.RATING_SCALE
    ratings = fit.ratings
    return Intervals("sandwich", confidence, ratings - z * se, ratings + z * se, se, reference=reference)


def _check_reference(reference: int, n_models: int) -> None:
    if not 0 <= reference < n_models:
        raise bt.RatingError(f"reference model index {reference} is outside the board's {n_models} models")


def relative_to(replicates: Array, reference: int | None) -> Array:
    """Replicates (rows) as differences to the ``reference`` column (whose entries become exactly zero);
    unchanged when ``reference`` is None."""
    if reference is None:
        return replicates
    _check_reference(reference, replicates.shape[1])
    return replicates - replicates[:, [reference]]


def bootstrap_replicates(counts: PairCounts, fit: bt.BTFit, rounds: int = DEFAULT_ROUNDS,
                         seed: int = 0) -> Array:
    """Ratings (Elo points, unanchored) refitted on ``rounds`` multinomial resamples of the votes:
    shape ``(rounds, models)``; rows of left-out degenerate replicates are NaN. Deterministic per seed.

    Replicates are refitted in blocks by the chord method — Newton steps that reuse the Hessian of the point
    fit, which differs from each replicate's own by sampling noise only — so a block costs a few sparse
    products instead of one linear solve per replicate and step. A replicate the chord steps do not bring
    to a gradient below 1e-11 (few votes, so the Hessians differ much) is refitted by full Newton; Davidson
    fits always are.
    """
    if rounds < 1:
        raise bt.RatingError(f"bootstrap needs at least one round, not {rounds}")
    cells = counts.cells()
    base_edges = _edges(cells, fit.ties)
    chord = None if fit.ties == "davidson" else _Chord(counts, fit)
    out = np.full((rounds, counts.n_models), np.nan)
    start = 0
    for block_cells in resampled_cells(counts, rounds, seed):
        stop = start + block_cells.shape[0]
        finite = np.ones(stop - start, dtype=bool)
        if fit.prior_games == 0:
            changed = np.flatnonzero((_edges(block_cells, fit.ties) != base_edges).any(axis=(1, 2)))
            for i in changed:
                if bt.comparison_components(counts.with_cells(block_cells[i]), fit.ties).max() > 0:
                    finite[i] = False
        theta = np.full((stop - start, counts.n_models), np.nan)
        pending = np.flatnonzero(finite)
        if chord is not None and pending.size:
            solved, ok = chord.solve(block_cells[pending])
            theta[pending[ok]] = solved[ok]
            pending = pending[~ok]
        for i in pending:
            refit = _newton_refit(counts.with_cells(block_cells[i]), fit)
            if refit is not None:
                theta[i] = refit
        out[start:stop] = bt.INITIAL_RATING + bt.RATING_SCALE * theta
        start = stop
    return out


def resampled_cells(counts: PairCounts, rounds: int, seed: int = 0) -> Iterator[Array]:
    """Bootstrap resamples of the votes as blocks of pair × outcome counts, shape ``(block, pairs, 4)``:
    each replicate draws as many votes as there are, with replacement, i.e. a multinomial over the observed
    (pair, outcome) cells with probabilities proportional to their counts. Deterministic per seed.

    Ties and both-bad votes enter every likelihood alike, so they are resampled as one outcome (returned in
    the tie column; the both-bad column is zero): a quarter fewer cells to draw, the same distribution of
    every fit.
    """
    cells = counts.cells()
    cells[:, 2] += cells[:, 3]
    cells[:, 3] = 0.0
    flat = cells.ravel()
    used = np.flatnonzero(flat > 0)
    total = round(float(flat.sum()))
    pvals = flat[used] / flat[used].sum()
    rng = np.random.default_rng(seed)
    for start in range(0, rounds, _CHUNK):
        size = min(rounds, start + _CHUNK) - start
        block = np.zeros((size, flat.size))
        block[:, used] = rng.multinomial(total, pvals, size=size)
        yield block.reshape(size, *cells.shape)


def _edges(cells: Array, ties: bt.TieMode) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Which directed "scored against" edges each pair carries: ``(..., pairs, 2)`` from ``(..., pairs, 4)``."""
    t = cells[..., 2] + cells[..., 3] if ties != "drop" else 0.0
    return np.stack([cells[..., 0] + t > 0, cells[..., 1] + t > 0], axis=-1)


def _newton_refit(replicate: PairCounts, fit: bt.BTFit) -> Array | None:
    d = bt.likelihood_data(replicate, fit.ties)
    if d.total == 0 or (fit.ties == "davidson" and (d.t.sum() == 0 or (d.wf + d.ws).sum() == 0)):
        return None
    x, _, max_grad = bt.newton(d, fit.prior_games, start=fit.params)
    return None if max_grad > 1e-9 else x[: d.m]


class _Chord:
    """Blocks of half/drop replicates solved by Newton steps with the point fit's Hessian."""

    max_steps = 40
    gtol = 1e-11

    def __init__(self, counts: PairCounts, fit: bt.BTFit) -> None:
        m, p = counts.n_models, counts.n_pairs
        rows = np.repeat(np.arange(p), 2)
        cols = np.stack([counts.first, counts.second], axis=1).ravel()
        signs = np.tile([1.0, -1.0], p)
        self.incidence_t = csr_matrix((signs, (cols, rows)), shape=(m, p))
        self.first, self.second = counts.first, counts.second
        self.fit = fit
        h = bt.hessian(counts, fit)
        if fit.prior_games == 0:
            h = h + np.trace(h) / m / m
        self.inverse = np.linalg.inv(h)

    def _gradient(self, theta: Array, n: Array, y: Array) -> Array:
        p = expit(theta[:, self.first] - theta[:, self.second])
        g = np.asarray((self.incidence_t @ (n * p - y).T).T)
        if self.fit.prior_games > 0:
            g = g + self.fit.prior_games * (expit(theta) - 0.5)
        return g

    def solve(self, cells: Array) -> tuple[Array, np.ndarray[Any, np.dtype[np.bool_]]]:
        """Log-strengths for each replicate in ``cells`` ``(R, pairs, 4)`` and whether each converged."""
        if self.fit.ties == "drop":
            n, y = cells[..., 0] + cells[..., 1], cells[..., 0]
        else:
            n = cells.sum(axis=-1)
            y = cells[..., 0] + 0.5 * (cells[..., 2] + cells[..., 3])
        scale = 1.0 / n.sum(axis=1, keepdims=True)
        theta = np.tile(self.fit.theta, (cells.shape[0], 1))
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(self.max_steps):
                g = self._gradient(theta, n, y)
                if np.all(np.abs(g) * scale <= self.gtol):
                    break
                theta = theta - g @ self.inverse
                if self.fit.prior_games == 0:
                    theta = theta - theta.mean(axis=1, keepdims=True)
            g = self._gradient(theta, n, y)
            ok = np.all(np.abs(g) * scale <= self.gtol, axis=1) & np.isfinite(theta).all(axis=1)
        return theta, ok


def bootstrap_intervals(counts: PairCounts, fit: bt.BTFit, rounds: int = DEFAULT_ROUNDS, seed: int = 0,
                        confidence: float = CONFIDENCE, reference: int | None = None) -> Intervals:
    """Percentile intervals from :func:`bootstrap_replicates`; with ``reference``, percentiles of each
    replicate's ``r_i − r_ref`` placed at the reference's fitted rating (FastChat's anchored bootstrap)."""
    _z(confidence)
    reps = bootstrap_replicates(counts, fit, rounds, seed)
    good = ~np.isnan(reps).any(axis=1)
    if not good.any():
        raise bt.RatingError(f"every one of {rounds} bootstrap replicates lacked a finite MLE; "
                             "use sandwich intervals or a prior")
    kept = reps[good]
    low, high, se = percentile_bounds(kept, confidence, reference)
    if reference is not None:
        base = fit.ratings[reference]
        low, high = low + base, high + base
    return Intervals("bootstrap", confidence, low, high, se, rounds, int((~good).sum()), reference)


def percentile_bounds(replicates: Array, confidence: float = CONFIDENCE, reference: int | None = None
                      ) -> tuple[Array, Array, Array]:
    """Percentile bounds and standard deviations of bootstrap ``replicates`` (rows), relative to the
    ``reference`` column when given (its bounds and deviation are then exactly zero)."""
    rel = relative_to(replicates, reference)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(rel, [tail, 100.0 - tail], axis=0)
    se = rel.std(axis=0, ddof=1) if rel.shape[0] > 1 else np.zeros(rel.shape[1])
    if reference is not None:
        low[reference] = high[reference] = se[reference] = 0.0
    return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64), np.asarray(se, dtype=np.float64)


def rank_spread(low: Array, high: Array) -> tuple[np.ndarray[Any, np.dtype[np.int64]],
                                                  np.ndarray[Any, np.dtype[np.int64]]]:
    """Best and worst plausible rank of each model from its interval (1 = top).

    best = 1 + #{others whose lower bound > my upper bound}; worst = 1 + #{others whose upper bound > my
    lower bound}. Models whose intervals overlap share ranks, so adjacent ranks are never over-claimed.
    """
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    others = ~np.eye(low.size, dtype=bool)
    best = 1 + ((low[None, :] > high[:, None]) & others).sum(axis=1)
    worst = 1 + ((high[None, :] > low[:, None]) & others).sum(axis=1)
    return best.astype(np.int64), worst.astype(np.int64)
