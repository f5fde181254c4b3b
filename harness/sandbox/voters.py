"""A simulated voter panel with known model strengths, for ``harness demo`` and the rating tests.

The panel looks at outputs of a run (rows of :func:`harness.store.runs.outputs_frame`), pairs two outputs
of the same challenge and variant from different targets, shows them on random sides and votes the way the
rating model says people do, so that the ratings the harness computes can be checked against the truth.

How a vote is cast, for a left output of model ``L`` and a right one of model ``R``:

* strengths are Elo-scale ratings: ``S = strength[model] + category_offsets[category][model]``, and the left
  output gets ``position_bias`` extra points (voters' preference for the first image they see);
* ``σ = 1 / (1 + 10^((S_R − S_L − bias)/400))`` is the left output's expected score;
* a tie happens with probability ``tie_rate · 4σ(1−σ)`` — most often between equal models, as in the
  arena data (Tang et al. 2025, "Drawing Conclusions from Draws", arXiv:2510.02306) — and is "both are bad"
  with probability ``both_bad_share``; otherwise left wins with probability ``σ − P(tie)/2``.

**Looking at the pictures.** Given ``looks`` (each output's quality as read from its pixels by
:func:`harness.sandbox.imagery.read`: the share of the prompt's elements it renders, less what an edit
disturbs), :meth:`VoterPanel.cast` replaces the model strengths by what each voter sees:
``S = quality_points · (look + ε) + category offset``, with ``ε ~ N(0, perception_sd)`` drawn afresh for
each output of each vote (voters misjudge). The pictures' quality is what the models' strengths drive
(:func:`harness.sandbox.imagery.render_probability`), so the board still orders the models by strength,
and an automatic metric agrees with this panel only as far as it reads the same pixels.

That choice keeps the expected score of every vote at exactly ``σ`` when ties count ½, so the
Bradley–Terry fit with LMArena's tie convention (``--ties half``) is consistent for the true strengths:
with no position bias, no noisy voters and no category offsets, the fitted ratings converge to
``strength − mean(strength) + 1000`` (:meth:`VoterPanel.truth`). Noisy voters ignore the images (only the
side sways them)
and pull estimates toward each other, which the voter-agreement statistics detect.

Votes carry ``source="simulated"``, distinct voter ids (some voters far more active than others),
timestamps from a Poisson stream and lognormal decision times (median 6 s, 95th percentile 20 s, the
order of a careful look at two images). Everything is deterministic given the seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import ConfigError
from harness.sandbox.imagery import DEFAULT_STRENGTHS as DEFAULT_STRENGTHS
from harness.store.votes import Vote

_Z95 = 1.6448536269514722


@dataclass(frozen=True)
class PanelSettings:
    """How the simulated panel votes.

    ``strengths``: Elo-scale truth per model. ``tie_rate``: tie probability between equal models (0–0.5;
    it falls with the gap). ``both_bad_share``: share of ties voted "both are bad". ``category_offsets``:
    extra Elo points per category and model (a model better at typography than at portraits).
    ``position_bias``: Elo points the left output gains. ``noisy_fraction``: share of voters who ignore
    the images. ``voters``: panel size. ``start``: Unix time of the first vote; ``mean_gap_s``: mean
    seconds between votes. ``decision_median_ms``/``decision_p95_ms``: lognormal decision time.
    ``quality_points``: Elo points one unit of pixel quality is worth to a voter who looks at the pictures;
    ``perception_sd``: standard deviation of a voter's error in reading one picture's quality.
    """

    strengths: Mapping[str, float] = field(default_factory=lambda: DEFAULT_STRENGTHS)
    tie_rate: float = 0.12
    both_bad_share: float = 0.3
    category_offsets: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    position_bias: float = 10.0
    noisy_fraction: float = 0.1
    voters: int = 40
    start: float = 1_767_225_600.0
    mean_gap_s: float = 20.0
    decision_median_ms: float = 6_000.0
    decision_p95_ms: float = 20_000.0
    quality_points: float = 600.0
    perception_sd: float = 0.15

    def __post_init__(self) -> None:
        checks = [
            (0.0 <= self.tie_rate <= 0.5, f"tie_rate must be within [0, 0.5], not {self.tie_rate}"),
            (0.0 <= self.both_bad_share <= 1.0, f"both_bad_share must be within [0, 1], not {self.both_bad_share}"),
            (0.0 <= self.noisy_fraction <= 1.0, f"noisy_fraction must be within [0, 1], not {self.noisy_fraction}"),
            (self.voters >= 1, f"voters must be at least 1, not {self.voters}"),
            (self.mean_gap_s > 0, f"mean_gap_s must be positive, not {self.mean_gap_s}"),
            (0 < self.decision_median_ms <= self.decision_p95_ms,
             "decision times need 0 < decision_median_ms <= decision_p95_ms"),
            (math.isfinite(self.position_bias), "position_bias must be finite"),
            (self.quality_points >= 0, f"quality_points must be >= 0, not {self.quality_points}"),
            (self.perception_sd >= 0, f"perception_sd must be >= 0, not {self.perception_sd}"),
            (all(math.isfinite(v) for v in self.strengths.values()), "strengths must be finite"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"voter panel: {message}")


class VoterPanel:
    """A seeded panel: voter ids, which of them are noisy, and :meth:`cast` to vote on outputs."""

    def __init__(self, settings: PanelSettings | None = None, seed: int = 0) -> None:
        self.settings = settings or PanelSettings()
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        n = self.settings.voters
        self.voters: tuple[str, ...] = tuple(f"sim-{seed}-voter-{i:03d}" for i in range(n))
        n_noisy = round(self.settings.noisy_fraction * n)
        noisy = self._rng.choice(n, size=n_noisy, replace=False) if n_noisy else np.array([], dtype=int)
        self._noisy = np.zeros(n, dtype=bool)
        self._noisy[noisy] = True
        self.noisy_voters: frozenset[str] = frozenset(self.voters[i] for i in noisy)
        activity = 1.0 / np.arange(1, n + 1) ** 0.8
        self._activity = self._rng.permutation(activity / activity.sum())
        self._clock = self.settings.start

    def strength(self, model: str, category: str | None = None) -> float:
        """True Elo-scale strength of ``model`` (in ``category``, offsets included)."""
        if model not in self.settings.strengths:
            known = ", ".join(sorted(self.settings.strengths))
            raise ConfigError(f"voter panel has no strength for model {model!r}; known: {known}")
        offset = self.settings.category_offsets.get(category or "", {}).get(model, 0.0)
        return float(self.settings.strengths[model]) + float(offset)

    def truth(self, models: list[str] | tuple[str, ...], category: str | None = None) -> dict[str, float]:
        """True strengths of ``models`` shifted to mean 1000: what a Bradley–Terry fit (mean 1000) of
        this panel's votes on exactly these models estimates."""
        raw = {m: self.strength(m, category) for m in models}
        mean = sum(raw.values()) / len(raw) if raw else 0.0
        return {m: v - mean + 1000.0 for m, v in raw.items()}

    def cast(self, outputs: pd.DataFrame, n_votes: int, looks: Mapping[str, float] | None = None) -> list[Vote]:
        """``n_votes`` votes on pairs drawn from ``outputs``.

        ``outputs`` needs ``attempt_id``, ``run_id``, ``challenge_id``, ``variant``, ``target``, ``model``
        and ``sha256`` (as :func:`harness.store.runs.outputs_frame` returns); optional ``category`` and
        ``kind`` columns are copied into the votes and select category offsets. A pair is two outputs of
        the same challenge and variant from different targets; every (challenge, variant) with at least
        two targets is equally likely, then every pair of its targets, then every output of each.

        ``looks`` (output SHA-256 → pixel quality, see :func:`harness.quality.readings.pixel_looks`) makes
        the panel judge the pictures instead of the models' strengths; every output needs one.
        """
        if n_votes < 0:
            raise ConfigError(f"voter panel: n_votes must be >= 0, not {n_votes}")
        needed = ("attempt_id", "run_id", "challenge_id", "variant", "target", "model", "sha256")
        missing = [c for c in needed if c not in outputs.columns]
        if missing:
            raise ConfigError(f"voter panel: outputs lack column(s) {', '.join(missing)}")
        if looks is None:
            for model in pd.unique(outputs["model"]):
                self.strength(str(model))
        else:
            unseen = sorted({str(v) for v in outputs["sha256"]} - set(looks))
            if unseen:
                raise ConfigError(f"voter panel: no pixel quality for {len(unseen)} output(s), e.g. {unseen[0]}")
        rows = outputs.reset_index(drop=True)
        slots: list[list[np.ndarray[Any, Any]]] = []
        for _, group in rows.groupby(["challenge_id", "variant"], sort=True):
            by_target = [g.index.to_numpy() for _, g in group.groupby("target", sort=True)]
            if len(by_target) >= 2:
                slots.append(by_target)
        if n_votes == 0:
            return []
        if not slots:
            raise ConfigError("voter panel: no challenge has outputs from two different targets to compare")
        rng = self._rng
        left_rows = np.empty(n_votes, dtype=np.intp)
        right_rows = np.empty(n_votes, dtype=np.intp)
        for i, g in enumerate(rng.integers(len(slots), size=n_votes)):
            targets = slots[int(g)]
            first, second = rng.choice(len(targets), size=2, replace=False)
            pair = [targets[int(first)], targets[int(second)]]
            picked = [int(t[int(rng.integers(len(t)))]) for t in pair]
            swap = rng.random() < 0.5
            left_rows[i], right_rows[i] = (picked[1], picked[0]) if swap else (picked[0], picked[1])
        left, right = rows.iloc[left_rows], rows.iloc[right_rows]
        categories = _optional_column(left, "category")
        kinds = _optional_column(left, "kind")
        if looks is None:
            voter_index, outcomes = self._votes(left["model"].astype(str).tolist(),
                                                right["model"].astype(str).tolist(), categories)
        else:
            voter_index, outcomes = self._looked_votes(
                [float(looks[str(v)]) for v in left["sha256"]], [float(looks[str(v)]) for v in right["sha256"]],
                left["model"].astype(str).tolist(), right["model"].astype(str).tolist(), categories)
        voted_at, decision_ms = self._times(n_votes)
        return [
            Vote(
                vote_uid=f"sim-{rng.bytes(12).hex()}", left_target=str(lt), right_target=str(rt),
                left_model=str(lm), right_model=str(rm), outcome=outcome, voted_at=float(at), source="simulated",
                run_id=str(lr), challenge_id=str(ch), variant=str(va), category=cat, kind=kind,
                left_attempt_id=int(la), right_attempt_id=int(ra), left_sha=str(ls), right_sha=str(rs),
                voter=self.voters[int(v)], shown_at=float(at) - float(ms) / 1000.0, decision_ms=float(ms),
            )
            for lt, rt, lm, rm, outcome, at, lr, ch, va, cat, kind, la, ra, ls, rs, v, ms in zip(
                left["target"], right["target"], left["model"], right["model"], outcomes, voted_at,
                left["run_id"], left["challenge_id"], left["variant"], categories, kinds, left["attempt_id"],
                right["attempt_id"], left["sha256"], right["sha256"], voter_index, decision_ms, strict=True)
        ]

    def simulate_battles(self, models: list[str] | tuple[str, ...], n_votes: int,
                         category: str | None = None) -> pd.DataFrame:
        """``n_votes`` votes in battle format between uniformly drawn pairs of ``models`` (random sides),
        cast by this panel — the statistics tests' input, without a run behind it. Columns: ``model_a``,
        ``model_b``, ``winner``, ``category``, ``voter``, ``tstamp``, ``decision_ms``."""
        if len(models) < 2:
            raise ConfigError("voter panel: need at least two models to simulate votes")
        rng = self._rng
        a = rng.integers(len(models), size=n_votes)
        b = (a + rng.integers(1, len(models), size=n_votes)) % len(models)
        left = [models[int(i)] for i in a]
        right = [models[int(i)] for i in b]
        voter_index, outcomes = self._votes(left, right, [category] * n_votes)
        voted_at, decision_ms = self._times(n_votes)
        winner = {"left": "model_a", "right": "model_b", "tie": "tie", "both_bad": "tie (bothbad)"}
        return pd.DataFrame({
            "model_a": pd.Series(left, dtype=object), "model_b": pd.Series(right, dtype=object),
            "winner": pd.Series([winner[o] for o in outcomes], dtype=object),
            "category": pd.Series([category] * n_votes, dtype=object),
            "voter": pd.Series([self.voters[int(v)] for v in voter_index], dtype=object),
            "tstamp": voted_at, "decision_ms": decision_ms,
        })

    def outcome_probabilities(self, left: str, right: str, category: str | None = None,
                              noisy: bool = False) -> tuple[float, float, float]:
        """``(P(left wins), P(right wins), P(tie or both bad))`` for one vote of an honest (or noisy) voter."""
        s = self.settings
        gap = -s.position_bias if noisy else (
            self.strength(right, category) - self.strength(left, category) - s.position_bias)
        expected = 1.0 / (1.0 + 10.0 ** (gap / 400.0))
        p_tie = s.tie_rate * 4.0 * expected * (1.0 - expected)
        return expected - p_tie / 2.0, 1.0 - expected - p_tie / 2.0, p_tie

    def _votes(self, left: list[str], right: list[str], categories: list[str | None]
               ) -> tuple[np.ndarray[Any, Any], list[str]]:
        rng = self._rng
        n = len(left)
        voter_index = rng.choice(len(self.voters), size=n, p=self._activity)
        noisy = self._noisy[voter_index]
        cache: dict[tuple[str, str, str | None, bool], tuple[float, float, float]] = {}
        probs = np.empty((n, 3))
        for i, key in enumerate(zip(left, right, categories, noisy.tolist(), strict=True)):
            if key not in cache:
                cache[key] = self.outcome_probabilities(*key)
            probs[i] = cache[key]
        u = rng.random(n)
        bad = rng.random(n) < self.settings.both_bad_share
        outcomes = np.where(u < probs[:, 0], "left", np.where(u < probs[:, 0] + probs[:, 1], "right",
                                                                np.where(bad, "both_bad", "tie")))
        return voter_index, [str(o) for o in outcomes]

    def _looked_votes(self, left: list[float], right: list[float], left_models: list[str],
                      right_models: list[str], categories: list[str | None]
                      ) -> tuple[np.ndarray[Any, Any], list[str]]:
        """Votes of voters who look at the pictures: utilities from pixel quality read with noise."""
        s = self.settings
        rng = self._rng
        n = len(left)
        voter_index = rng.choice(len(self.voters), size=n, p=self._activity)
        noisy = self._noisy[voter_index]
        seen = rng.normal(0.0, s.perception_sd, size=(n, 2)) + np.column_stack([left, right])
        offsets = np.array([[s.category_offsets.get(c or "", {}).get(m, 0.0) for m in pair]
                            for c, pair in zip(categories, zip(left_models, right_models, strict=True),
                                               strict=True)]).reshape(n, 2)
        utility = s.quality_points * seen + offsets
        gap = np.where(noisy, 0.0, utility[:, 1] - utility[:, 0]) - s.position_bias
        expected = 1.0 / (1.0 + 10.0 ** (gap / 400.0))
        p_tie = s.tie_rate * 4.0 * expected * (1.0 - expected)
        p_left, p_right = expected - p_tie / 2.0, 1.0 - expected - p_tie / 2.0
        u = rng.random(n)
        bad = rng.random(n) < s.both_bad_share
        outcomes = np.where(u < p_left, "left", np.where(u < p_left + p_right, "right",
                                                         np.where(bad, "both_bad", "tie")))
        return voter_index, [str(o) for o in outcomes]

    def _times(self, n: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        s = self.settings
        rng = self._rng
        voted_at = self._clock + np.cumsum(rng.exponential(s.mean_gap_s, size=n))
        if n:
            self._clock = float(voted_at[-1])
        sigma = math.log(s.decision_p95_ms / s.decision_median_ms) / _Z95
        decision_ms = s.decision_median_ms * np.exp(sigma * rng.standard_normal(n))
        return voted_at, decision_ms


def _optional_column(rows: pd.DataFrame, column: str) -> list[str | None]:
    """A column's values as strings, None where missing (or everywhere when there is no such column)."""
    if column not in rows.columns:
        return [None] * len(rows)
    return [None if pd.isna(v) else str(v) for v in rows[column].tolist()]
