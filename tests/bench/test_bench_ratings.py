"""Rating speed on an arena-sized vote log: one million votes over 100 models, and 1.67 M battle files.

Goals (issue 5): Bradley–Terry fit well under a second with sandwich intervals included (aggregation from
the raw vote frame included too); 1,000 bootstrap rounds in seconds on 2 cores. Compared in the same run
with a straightforward per-vote logistic-regression fit (scipy L-BFGS on one row per vote, the shape of
sklearn-based arena code), and bootstrap replicates with FastChat-style L-BFGS refits of the resampled
counts (and, for information, full Newton refits). Figures
land in ``extra_info`` and are printed; the asserts compare ratios measured in the same run.

Goals (issue 13): from opening a battle file of 1.67 M votes (the size of Chatbot Arena's public battle
log; synthesised here, never downloaded) to the fitted board with intervals — what ``harness ratings
--votes`` does after its imports — under 1.5 s for CSV and 2 s for JSON Lines with the columnar (pyarrow)
reader, printed every round beside the plain reader (the csv/json modules) on the same file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from harness.battles import read_battle_file
from harness.ratings import PairCounts, RatingOptions, aggregate, fit, leaderboard, sandwich_intervals
from harness.ratings.bradley_terry import INITIAL_RATING, RATING_SCALE
from harness.ratings.intervals import bootstrap_intervals, resampled_cells

N_VOTES = 1_000_000
N_MODELS = 100


@pytest.fixture(scope="module")
def million_votes() -> pd.DataFrame:
    """Votes between random pairs of 100 models with strengths spread like an arena (sd 150 Elo points),
    random sides, 10 % ties (a third of them both-bad)."""
    rng = np.random.default_rng(2024)
    strength = rng.normal(0.0, 150.0, N_MODELS) / RATING_SCALE
    a = rng.integers(N_MODELS, size=N_VOTES)
    b = (a + rng.integers(1, N_MODELS, size=N_VOTES)) % N_MODELS
    u = rng.random(N_VOTES)
    tie = rng.random(N_VOTES) < 0.1
    winner = np.where(tie, np.where(rng.random(N_VOTES) < 1 / 3, 3, 2),
                      np.where(u < expit(strength[a] - strength[b]), 0, 1))
    names = np.array([f"model-{i:03d}" for i in range(N_MODELS)], dtype=object)
    labels = np.array(["model_a", "model_b", "tie", "tie (bothbad)"], dtype=object)
    return pd.DataFrame({"model_a": names[a], "model_b": names[b], "winner": labels[winner]})


def per_vote_logistic_fit(votes: pd.DataFrame) -> np.ndarray:
    """The straightforward way: one row per vote, score 1/0/½, L-BFGS on the mean log-loss."""
    models = sorted(set(votes["model_a"]) | set(votes["model_b"]))
    index = {m: i for i, m in enumerate(models)}
    a = votes["model_a"].map(index).to_numpy()
    b = votes["model_b"].map(index).to_numpy()
    score = votes["winner"].map({"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}).to_numpy()
    n, m = len(votes), len(models)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        d = theta[a] - theta[b]
        value = -float(np.mean(score * log_expit(d) + (1 - score) * log_expit(-d)))
        r = (expit(d) - score) / n
        return value, np.bincount(a, r, minlength=m) - np.bincount(b, r, minlength=m)

    result = minimize(loss, np.zeros(m), jac=True, method="L-BFGS-B",
                      options={"maxiter": 10_000, "gtol": 1e-12, "ftol": 1e-15})
    theta = result.x - result.x.mean()
    return np.asarray(INITIAL_RATING + RATING_SCALE * theta)


def test_bradley_terry_with_sandwich_intervals_on_a_million_votes(benchmark: Any,
                                                                   million_votes: pd.DataFrame) -> None:
    def ours() -> tuple[Any, Any]:
        counts = aggregate(million_votes)
        result = fit(counts)
        return result, sandwich_intervals(counts, result)

    result, intervals = benchmark.pedantic(ours, rounds=5, iterations=1, warmup_rounds=1)
    ours_s = float(benchmark.stats.stats.median)
    t = time.perf_counter()
    counts = aggregate(million_votes)
    aggregate_s = time.perf_counter() - t
    t = time.perf_counter()
    baseline = per_vote_logistic_fit(million_votes)
    baseline_s = time.perf_counter() - t
    ratio = baseline_s / ours_s
    gap = float(np.max(np.abs(baseline - result.ratings)))
    benchmark.extra_info.update(fit_with_sandwich_s=ours_s, aggregation_s=aggregate_s, per_vote_lbfgs_s=baseline_s,
                                ratio=ratio, newton_steps=result.iterations, max_gradient=result.max_gradient,
                                max_rating_gap_vs_per_vote=gap, pairs=counts.n_pairs)
    print(f"\n1M votes / 100 models: aggregate + Newton + sandwich {ours_s * 1000:.0f} ms "
          f"(aggregation {aggregate_s * 1000:.0f} ms, {result.iterations} Newton steps, |grad| "
          f"{result.max_gradient:.1e}); per-vote L-BFGS {baseline_s:.2f} s; ratio {ratio:.1f}x; "
          f"max rating difference {gap:.4f} Elo; median 95% CI half-width "
          f"{np.median(intervals.high - result.ratings):.2f} Elo")
    assert result.max_gradient <= 1e-9
    assert gap < 0.05
    assert ratio >= 5.0


def lbfgs_on_counts(counts: PairCounts) -> np.ndarray:
    """FastChat's ``compute_bt`` shape: L-BFGS on the weighted (pair, outcome) rows, no Hessian."""
    n = counts.wins_first + counts.wins_second + counts.ties + counts.both_bad
    y = counts.wins_first + 0.5 * (counts.ties + counts.both_bad)
    f, s, m, total = counts.first, counts.second, counts.n_models, float(n.sum())

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        d = theta[f] - theta[s]
        value = -float(np.sum(y * log_expit(d) + (n - y) * log_expit(-d))) / total
        r = (n * expit(d) - y) / total
        return value, np.bincount(f, r, minlength=m) - np.bincount(s, r, minlength=m)

    result = minimize(loss, np.zeros(m), jac=True, method="L-BFGS-B",
                      options={"maxiter": 10_000, "gtol": 1e-12, "ftol": 1e-15})
    return np.asarray(result.x - result.x.mean())


def test_thousand_bootstrap_rounds_on_a_million_votes(benchmark: Any, million_votes: pd.DataFrame) -> None:
    counts = aggregate(million_votes)
    point = fit(counts)

    boot = benchmark.pedantic(lambda: bootstrap_intervals(counts, point, rounds=1000, seed=0), rounds=1,
                              iterations=1)
    boot_s = float(benchmark.stats.stats.median)
    per_round: dict[str, float] = {}
    for name, refit in (("newton", lambda c: fit(c, start=point.theta).theta), ("lbfgs", lbfgs_on_counts)):
        t = time.perf_counter()
        done = 0
        for block in resampled_cells(counts, 20, seed=0):
            for cells in block:
                refit(counts.with_cells(cells))
                done += 1
        per_round[name] = (time.perf_counter() - t) / done
    ours = boot_s / 1000
    ratio = per_round["lbfgs"] / ours
    sandwich = sandwich_intervals(counts, point)
    width_ratio = float(np.median((boot.high - boot.low) / (sandwich.high - sandwich.low)))
    benchmark.extra_info.update(bootstrap_1000_s=boot_s, full_newton_per_round_s=per_round["newton"],
                                lbfgs_per_round_s=per_round["lbfgs"], ratio_vs_lbfgs=ratio,
                                degenerate_rounds=boot.degenerate_rounds, width_bootstrap_over_sandwich=width_ratio)
    print(f"\n1,000 bootstrap rounds on 1M votes / 100 models: {boot_s:.2f} s ({ours * 1000:.2f} ms per round, "
          f"multinomial draw included); per round, full Newton refit {per_round['newton'] * 1000:.1f} ms, "
          f"FastChat-style L-BFGS refit {per_round['lbfgs'] * 1000:.1f} ms (ratio {ratio:.1f}x); "
          f"bootstrap/sandwich interval width {width_ratio:.3f}")
    assert boot.degenerate_rounds == 0
    assert abs(width_ratio - 1.0) < 0.1
    assert ratio >= 1.5


ARENA_VOTES = 1_670_000
GOALS_S = {"csv": 1.5, "jsonl": 2.0}


@pytest.fixture(scope="module")
def arena_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """1.67 M battles between random pairs of 100 models with fixed strengths, in FastChat's columns
    (``model_a, model_b, winner, judge, anony, tstamp``; 200,000 distinct judges; times in order), written
    as CSV and as JSON Lines."""
    rng = np.random.default_rng(13)
    strength = rng.normal(0.0, 150.0, N_MODELS) / RATING_SCALE
    a = rng.integers(N_MODELS, size=ARENA_VOTES)
    b = (a + rng.integers(1, N_MODELS, size=ARENA_VOTES)) % N_MODELS
    tie = rng.random(ARENA_VOTES) < 0.1
    winner = np.where(tie, np.where(rng.random(ARENA_VOTES) < 1 / 3, 3, 2),
                      np.where(rng.random(ARENA_VOTES) < expit(strength[a] - strength[b]), 0, 1))
    names = np.array([f"model-{i:03d}" for i in range(N_MODELS)], dtype=object)
    labels = np.array(["model_a", "model_b", "tie", "tie (bothbad)"], dtype=object)
    judges = np.array([f"arena_user_{i:06x}" for i in range(200_000)], dtype=object)
    frame = pd.DataFrame({
        "model_a": names[a], "model_b": names[b], "winner": labels[winner],
        "judge": judges[rng.integers(len(judges), size=ARENA_VOTES)], "anony": True,
        "tstamp": np.round(1.7e9 + np.sort(rng.random(ARENA_VOTES)) * 3e7, 3),
    })
    folder = tmp_path_factory.mktemp("arena")
    paths = {"csv": folder / "battles.csv", "jsonl": folder / "battles.jsonl"}
    frame.to_csv(paths["csv"], index=False)
    frame.to_json(paths["jsonl"], orient="records", lines=True)
    return paths


def _file_to_board(path: Path, engine: str) -> Callable[[], Any]:
    def run() -> Any:
        started = time.perf_counter()
        board = leaderboard(read_battle_file(path, engine=engine).to_frame(), RatingOptions())  # type: ignore[arg-type]
        print(f"  {path.suffix[1:]} {engine}: {time.perf_counter() - started:.2f} s", flush=True)
        return board

    return run


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_battle_file_to_board_at_arena_scale(benchmark: Any, arena_files: dict[str, Path], fmt: str) -> None:
    path = arena_files[fmt]
    print(f"\n1.67 M battles / 100 models, {fmt} ({path.stat().st_size / 1e6:.0f} MB), file to board:")
    board = benchmark.pedantic(_file_to_board(path, "auto"), rounds=5, iterations=1, warmup_rounds=1)
    columnar_s = float(benchmark.stats.stats.median)
    best_s = float(benchmark.stats.stats.min)
    plain_times = []
    for _ in range(2):
        started = time.perf_counter()
        plain_board = _file_to_board(path, "plain")()
        plain_times.append(time.perf_counter() - started)
    plain_s = float(np.median(plain_times))
    ratio = plain_s / columnar_s
    benchmark.extra_info.update(columnar_median_s=columnar_s, columnar_best_s=best_s, plain_median_s=plain_s,
                                ratio=ratio, goal_s=GOALS_S[fmt], votes=board.n_votes)
    print(f"{fmt}: columnar median {columnar_s:.2f} s (best {best_s:.2f} s, goal < {GOALS_S[fmt]} s); "
          f"plain reader {plain_s:.2f} s; ratio {ratio:.1f}x")
    assert board.n_votes == plain_board.n_votes == ARENA_VOTES
    assert board.ratings() == pytest.approx(plain_board.ratings(), abs=1e-9)
    assert ratio >= 3.0
    assert best_s < GOALS_S[fmt]
