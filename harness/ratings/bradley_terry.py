"""Bradley–Terry maximum-likelihood ratings from pair counts, solved to the exact optimum.

Model: model ``i`` has a log-strength ``θ_i`` and ``P(i beats j) = σ(θ_i − θ_j) = 1 / (1 + e^{θ_j − θ_i})``.
Ratings are reported on the Elo scale, ``rating = 1000 + θ · 400 / ln 10`` (Elo points), so a 400-point gap
means 10:1 odds — the convention of FastChat (``fastchat/serve/monitor/rating_systems.py``,
https://github.com/lm-sys/FastChat) and LMArena (https://github.com/lmarena/arena-rank).

Ties (``tie`` and ``tie (bothbad)``) are handled three ways:

* ``half`` (default): a tie is half a win and half a loss, LMArena's convention. The likelihood is the
  binomial one with fractional successes, so the fit matches the published boards.
* ``drop``: ties are left out; only decisive votes count.
* ``davidson``: Davidson's (1970) tie model, ``P(i) ∝ √π_i/√π_j``, ``P(j) ∝ √π_j/√π_i``, ``P(tie) ∝ ν``
  with one extra parameter ``ν = e^κ`` (fitted); decisive outcomes still follow ``σ(θ_i − θ_j)``, so the
  ratings share the scale of the other modes. ``ν`` is the tie odds between two equal models, times two.

Solver: Newton's method with the analytic Hessian and a backtracking line search on the mean negative
log-likelihood (total divided by the number of votes). The likelihood is concave, so Newton converges
quadratically; it stops when every gradient component is below ``gtol`` (1e-11 by default; the tests demand
1e-9). The ratings are defined up to a common shift; the fit fixes the mean rating at 1000 (sum of ``θ`` = 0)
by adding the projector onto the constant vector to the Laplacian-shaped Hessian, which leaves the step
exact because every gradient sums to zero.

Existence. The MLE is finite and unique exactly when the comparison graph — an edge ``i → j`` whenever
``i`` scored against ``j`` (a win, or any tie in ``half``/``davidson``) — is strongly connected (Zermelo
1929, Ford 1957). When it is not (disconnected groups of models, or a model that won or lost every vote),
some ratings would be infinite or undetermined. The harness then adds a small documented prior instead of
reporting infinities: every model plays ``prior_games`` virtual games (default one) against a fixed
virtual opponent rated 1000, scored as draws (half a win each way) — the device of Coulom's Whole-History
Rating. The prior keeps every rating finite and ties separated groups to a common reference; it moves a
model that has ``n`` real votes by roughly ``1/n`` of its distance to 1000, and the fit says it was used
(:attr:`BTFit.prior_games`, :attr:`BTFit.identified`). A second, independent solver (:func:`fit_mm`,
Zermelo/Hunter's minorise–maximise iteration) reaches the same optimum and serves as a cross-check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import expit, log_expit

from harness.errors import HarnessError
from harness.ratings.battles import PairCounts

Array = np.ndarray[Any, np.dtype[np.float64]]
TieMode = Literal["half", "drop", "davidson"]
TIE_MODES: tuple[TieMode, ...] = ("half", "drop", "davidson")

INITIAL_RATING = 1000.0
"""Rating of an average model (mean rating without a prior; the virtual opponent's rating with one)."""
ELO_SCALE = 400.0
"""Elo points per factor-of-``BASE`` change in odds."""
BASE = 10.0
RATING_SCALE = ELO_SCALE / math.log(BASE)
"""Elo points per unit of log-strength ``θ`` (≈ 173.72)."""
DEFAULT_PRIOR_GAMES = 1.0
"""Virtual drawn games per model against a 1000-rated reference, used only when the MLE does not exist."""


class RatingError(HarnessError):
    """Votes cannot produce the requested ratings (e.g. a Davidson fit with no ties); the message says why."""


@dataclass(frozen=True)
class BTFit:
    """A Bradley–Terry fit.

    ``theta``: log-strengths per model (order of ``models``); ``ratings``: the same on the Elo scale
    (1000 + θ·400/ln10). ``tie_log_nu``: Davidson's ``κ = ln ν`` (None in the other modes). ``prior_games``:
    virtual draws per model that were added (0.0 when the plain MLE exists and was used). ``identified``:
    the comparison graph is strongly connected, i.e. the plain MLE exists. ``components``: label of each
    model's strongly connected component (all 0 when identified). ``n_votes``: votes the likelihood used
    (ties excluded under ``drop``). ``max_gradient``: largest absolute gradient component of the mean
    negative log-likelihood at the solution. ``log_likelihood``: total log-likelihood of the votes (prior
    excluded), in nats.
    """

    models: tuple[str, ...]
    theta: Array
    ties: TieMode
    tie_log_nu: float | None
    prior_games: float
    identified: bool
    components: np.ndarray[Any, np.dtype[np.intp]]
    n_votes: float
    iterations: int
    max_gradient: float
    log_likelihood: float

    @property
    def ratings(self) -> Array:
        """Ratings in Elo points (before any anchor)."""
        return INITIAL_RATING + RATING_SCALE * self.theta

    @property
    def params(self) -> Array:
        """The solver's parameter vector: ``θ``, then ``κ`` for Davidson."""
        if self.tie_log_nu is None:
            return self.theta
        return np.append(self.theta, self.tie_log_nu)

    def rating_of(self, model: str) -> float:
        return float(self.ratings[self.models.index(model)])


@dataclass(frozen=True)
class LikelihoodData:
    """Pair counts arranged for one tie mode: ``n`` votes per pair, ``y`` score of the first model
    (half/drop), or ``wf``/``ws``/``t`` wins and ties (davidson)."""

    m: int
    first: np.ndarray[Any, np.dtype[np.intp]]
    second: np.ndarray[Any, np.dtype[np.intp]]
    wf: Array
    ws: Array
    t: Array
    n: Array
    y: Array
    ties: TieMode
    total: float

    @property
    def k(self) -> int:
        """Number of parameters."""
        return self.m + (1 if self.ties == "davidson" else 0)


def likelihood_data(counts: PairCounts, ties: TieMode) -> LikelihoodData:
    """Arrange pair counts for the likelihood of one tie mode."""
    if ties not in TIE_MODES:
        raise RatingError(f"unknown tie handling {ties!r}; use one of {', '.join(TIE_MODES)}")
    t = counts.ties + counts.both_bad
    if ties == "drop":
        n = counts.wins_first + counts.wins_second
        y = counts.wins_first.copy()
        t = np.zeros_like(t)
    else:
        n = counts.wins_first + counts.wins_second + t
        y = counts.wins_first + 0.5 * t
    return LikelihoodData(counts.n_models, counts.first, counts.second, counts.wins_first, counts.wins_second,
                          t, n, y, ties, float(n.sum()))


def comparison_components(counts: PairCounts, ties: TieMode = "half") -> np.ndarray[Any, np.dtype[np.intp]]:
    """Strongly connected components of the "scored against" graph (one label per model)."""
    d = likelihood_data(counts, ties)
    forward = d.wf + (d.t if ties != "drop" else 0.0) > 0
    backward = d.ws + (d.t if ties != "drop" else 0.0) > 0
    rows = np.concatenate([d.first[forward], d.second[backward]])
    cols = np.concatenate([d.second[forward], d.first[backward]])
    graph = coo_matrix((np.ones(rows.size), (rows, cols)), shape=(d.m, d.m)).tocsr()
    _, labels = connected_components(graph, directed=True, connection="strong")
    return np.asarray(labels, dtype=np.intp)


def _pair_probabilities(d: LikelihoodData, x: Array) -> tuple[Array, Array, Array, Array]:
    """Per pair: ``(diff, p_first, p_second, p_tie)``; p_tie is 0 outside Davidson."""
    diff = x[d.first] - x[d.second]
    if d.ties != "davidson":
        p = expit(diff)
        return diff, p, 1.0 - p, np.zeros_like(p)
    kappa = x[d.m]
    half = diff / 2.0
    top = np.maximum(np.abs(half), kappa)
    a, b, c = np.exp(half - top), np.exp(-half - top), np.exp(kappa - top)
    denom = a + b + c
    return diff, a / denom, b / denom, c / denom


def _loss(d: LikelihoodData, x: Array, prior: float) -> float:
    """Total negative log-likelihood (nats) plus the prior's penalty."""
    diff = x[d.first] - x[d.second]
    if d.ties == "davidson":
        kappa = x[d.m]
        half = diff / 2.0
        top = np.maximum(np.abs(half), kappa)
        log_denom = top + np.log(np.exp(half - top) + np.exp(-half - top) + np.exp(kappa - top))
        ll = float(np.sum((d.wf - d.ws) * half + d.t * kappa - d.n * log_denom))
    else:
        ll = float(np.sum(d.y * log_expit(diff) + (d.n - d.y) * log_expit(-diff)))
    if prior > 0:
        theta = x[: d.m]
        ll += float(np.sum(0.5 * prior * (log_expit(theta) + log_expit(-theta))))
    return -ll


def _assemble(d: LikelihoodData, dd: Array, dk: Array | None, kk: float) -> Array:
    """Symmetric matrix over the parameters from per-pair blocks: ``dd`` multiplies
    ``(e_first − e_second)(e_first − e_second)ᵀ``, ``dk`` the θ–κ cross terms, ``kk`` the κ–κ entry."""
    out = np.zeros((d.k, d.k))
    diag = np.bincount(d.first, dd, minlength=d.m) + np.bincount(d.second, dd, minlength=d.m)
    out[d.first, d.second] = -dd
    out[d.second, d.first] = -dd
    out[np.arange(d.m), np.arange(d.m)] = diag
    if d.ties == "davidson":
        assert dk is not None
        cross = np.bincount(d.first, dk, minlength=d.m) - np.bincount(d.second, dk, minlength=d.m)
        out[: d.m, d.m] = cross
        out[d.m, : d.m] = cross
        out[d.m, d.m] = kk
    return out


def _gradient_hessian(d: LikelihoodData, x: Array, prior: float) -> tuple[Array, Array]:
    """Gradient and Hessian of the total negative log-likelihood plus prior."""
    _, pf, ps, pt = _pair_probabilities(d, x)
    g = np.zeros(d.k)
    if d.ties == "davidson":
        r = d.n * (pf - ps) / 2.0 - (d.wf - d.ws) / 2.0
        dd = d.n * ((pf + ps) - (pf - ps) ** 2) / 4.0
        dk = -d.n * (pf - ps) * pt / 2.0
        kk = float(np.sum(d.n * pt * (pf + ps)))
        g[d.m] = float(np.sum(d.n * pt - d.t))
        h = _assemble(d, dd, dk, kk)
    else:
        r = d.n * pf - d.y
        h = _assemble(d, d.n * pf * ps, None, 0.0)
    g[: d.m] = np.bincount(d.first, r, minlength=d.m) - np.bincount(d.second, r, minlength=d.m)
    if prior > 0:
        q = expit(x[: d.m])
        g[: d.m] += prior * (q - 0.5)
        h[np.arange(d.m), np.arange(d.m)] += prior * q * (1.0 - q)
    return g, h


def score_outer_product(counts: PairCounts, fit: BTFit) -> Array:
    """``G = Σ_votes s sᵀ``: the sum over votes of the outer product of each vote's score (the gradient of
    its log-likelihood) at the fit — the "meat" of the sandwich covariance. Prior terms are not data and
    are left out."""
    d = likelihood_data(counts, fit.ties)
    x = fit.params
    _, pf, ps, pt = _pair_probabilities(d, x)
    if fit.ties == "davidson":
        centre = (pf - ps) / 2.0
        s_win, s_loss, s_tie = 0.5 - centre, -0.5 - centre, -centre
        k_dec, k_tie = -pt, 1.0 - pt
        dd = d.wf * s_win**2 + d.ws * s_loss**2 + d.t * s_tie**2
        dk = (d.wf * s_win + d.ws * s_loss) * k_dec + d.t * s_tie * k_tie
        kk = float(np.sum((d.wf + d.ws) * k_dec**2 + d.t * k_tie**2))
        return _assemble(d, dd, dk, kk)
    dd = d.wf * ps**2 + d.ws * pf**2
    if fit.ties == "half":
        dd = dd + d.t * (0.5 - pf) ** 2
    return _assemble(d, dd, None, 0.0)


def hessian(counts: PairCounts, fit: BTFit) -> Array:
    """Hessian of the total negative log-likelihood (plus the prior, when one was used) at the fit — the
    "bread" of the sandwich covariance."""
    return _gradient_hessian(likelihood_data(counts, fit.ties), fit.params, fit.prior_games)[1]


def _initial(d: LikelihoodData, start: Array | None) -> Array:
    x = np.zeros(d.k)
    if start is not None:
        x[: start.size] = start[: d.k]
    if d.ties == "davidson" and (start is None or start.size <= d.m):
        ties, decisive = float(d.t.sum()), float((d.wf + d.ws).sum())
        x[d.m] = math.log(2.0 * ties / decisive)
    return x


def newton(d: LikelihoodData, prior: float, *, start: Array | None = None, gtol: float = 1e-11,
           max_iter: int = 200) -> tuple[Array, int, float]:
    """Minimise the mean negative log-likelihood (+ prior) by Newton's method with backtracking.

    Returns ``(params, iterations, max |gradient|)``, the gradient being that of the mean objective.
    """
    scale = 1.0 / d.total
    x = _initial(d, start)
    gauge = prior == 0
    f = _loss(d, x, prior) * scale
    g, h = _gradient_hessian(d, x, prior)
    g, h = g * scale, h * scale
    it = 0
    for it in range(1, max_iter + 1):
        if np.max(np.abs(g)) <= gtol:
            return x, it - 1, float(np.max(np.abs(g)))
        a = h.copy()
        if gauge:
            a[: d.m, : d.m] += np.trace(h[: d.m, : d.m]) / d.m / d.m
        step = -np.linalg.solve(a, g)
        slope = float(g @ step)
        t = 1.0
        candidate = x + step
        f_new = _loss(d, candidate, prior) * scale
        # Within the quadratic region (Newton decrement below 1e-12) a full step is taken as is: the loss
        # change there is below its rounding error, so a line search would only stall.
        while -slope > 1e-12 and f_new > f + 1e-4 * t * slope:
            t /= 2.0
            if t < 1e-12:
                break
            candidate = x + t * step
            f_new = _loss(d, candidate, prior) * scale
        if t < 1e-12:
            break
        x, f = candidate, f_new
        if gauge:
            x[: d.m] -= x[: d.m].mean()
        g, h = _gradient_hessian(d, x, prior)
        g, h = g * scale, h * scale
    return x, it, float(np.max(np.abs(g)))


def fit(counts: PairCounts, *, ties: TieMode = "half", prior_games: float | None = None,
        start: Array | None = None, gtol: float = 1e-11) -> BTFit:
    """Fit Bradley–Terry ratings to pair counts.

    ``prior_games``: None (default) uses the plain MLE when it exists and :data:`DEFAULT_PRIOR_GAMES`
    virtual draws per model when it does not; a number forces that prior (0 forbids it: a graph without a
    finite MLE then raises :class:`RatingError`). ``start``: warm start (parameters of a previous fit).
    """
    d = likelihood_data(counts, ties)
    if d.m < 2 or d.total <= 0:
        raise RatingError("need votes between at least two different models to fit ratings"
                          + (" (all votes were ties, which --ties drop leaves out)" if ties == "drop" else ""))
    if ties == "davidson":
        n_ties, n_decisive = float(d.t.sum()), float((d.wf + d.ws).sum())
        if n_ties == 0 or n_decisive == 0:
            raise RatingError("the Davidson tie model needs both ties and decisive votes "
                              f"(found {n_ties:.0f} ties, {n_decisive:.0f} decisive); use --ties half or drop")
    components = comparison_components(counts, ties)
    identified = bool(components.max() == 0)
    if prior_games is None:
        prior = 0.0 if identified else DEFAULT_PRIOR_GAMES
    else:
        if prior_games < 0 or not math.isfinite(prior_games):
            raise RatingError(f"prior_games must be a finite number >= 0, not {prior_games}")
        prior = float(prior_games)
        if prior == 0 and not identified:
            raise RatingError("the votes do not determine finite ratings (comparison graph not strongly "
                              f"connected: {components.max() + 1} groups); allow a prior")
    x, iterations, max_grad = newton(d, prior, start=start, gtol=gtol)
    if max_grad > 1e-9:
        raise RatingError(f"Bradley–Terry fit did not converge (largest gradient {max_grad:.3g} after "
                          f"{iterations} Newton steps)")
    ll = -_loss(d, x, 0.0)
    theta = x[: d.m].copy()
    kappa = float(x[d.m]) if ties == "davidson" else None
    return BTFit(counts.models, theta, ties, kappa, prior, identified, components, d.total, iterations,
                 max_grad, ll)


def fit_mm(counts: PairCounts, *, ties: Literal["half", "drop"] = "half", prior_games: float = 0.0,
           tol: float = 1e-13, max_iter: int = 1_000_000) -> Array:
    """Log-strengths by Zermelo's iteration in Hunter's (2004) minorise–maximise form, an independent check
    on :func:`fit`: ``π_i ← W_i / Σ_j n_ij / (π_i + π_j)`` with ``W_i`` model ``i``'s total score.

    Converges linearly (slowly on badly connected graphs); meant for tests and audits, not for the board.
    With ``prior_games`` the virtual opponent (π = 1) adds ``prior_games/2`` to ``W_i`` and
    ``prior_games/(π_i + 1)`` to the denominator. Returns ``θ = ln π`` (mean zero when there is no prior).
    """
    d = likelihood_data(counts, ties)
    score = np.asarray(np.bincount(d.first, d.y, minlength=d.m) + np.bincount(d.second, d.n - d.y, minlength=d.m)
                       + prior_games / 2.0, dtype=np.float64)
    pi = np.ones(d.m)
    for _ in range(max_iter):
        rate = d.n / (pi[d.first] + pi[d.second])
        denom = np.asarray(np.bincount(d.first, rate, minlength=d.m) + np.bincount(d.second, rate, minlength=d.m),
                           dtype=np.float64)
        if prior_games > 0:
            denom = denom + prior_games / (pi + 1.0)
        new = score / denom
        if prior_games == 0:
            new = new / math.exp(float(np.mean(np.log(new))))
        change = float(np.max(np.abs(np.log(new) - np.log(pi))))
        pi = new
        if change < tol:
            break
    theta = np.log(pi)
    return theta - theta.mean() if prior_games == 0 else theta


def win_probability(rating_a: float | Array, rating_b: float | Array) -> float | Array:
    """P(a beats b) implied by two ratings in Elo points: ``1 / (1 + 10^((R_b − R_a)/400))``."""
    result: float | Array = expit((np.asarray(rating_a) - np.asarray(rating_b)) / RATING_SCALE)
    return float(result) if np.ndim(result) == 0 else result
