"""Ratings from pairwise votes: Bradley–Terry with honest intervals, online Elo, ranks and breakdowns.

Typical use (what ``harness ratings`` and the report do)::

    from harness.ratings import RatingOptions, leaderboard, read_battles
    board = leaderboard(read_battles(path), RatingOptions(ci="sandwich", anchor=("sd-3.5-large", 940)))
    board.rows                  # typed RatingRow: model, rating, ci_low, ci_high, votes, rank_best, rank_worst ...
    board.board()               # RatingBoard: the versioned JSON form (method, intervals, anchor, votes, rows)

With an anchor the anchor model's interval has zero width and the others' are those of their difference to
it (FastChat's anchoring); without one the intervals are centred. ``board.intervals`` says which.

Votes from the store come from :func:`harness.store.votes.battles_frame`; pass them through
:func:`validate_battles` first. Modules:

* :mod:`~harness.ratings.battles` – file reading, validation, aggregation into pair counts;
* :mod:`~harness.ratings.bradley_terry` – the MLE (Newton, exact), Davidson ties, a second solver;
* :mod:`~harness.ratings.intervals` – sandwich and bootstrap intervals, rank spread;
* :mod:`~harness.ratings.elo` – online Elo (secondary column);
* :mod:`~harness.ratings.leaderboard` – :class:`RatingRow`, :class:`RatingBoard`, :class:`Leaderboard`,
  :func:`leaderboard`;
* :mod:`~harness.ratings.breakdowns` – per-category/kind boards, "best for", win-rate and predicted
  win-rate matrices, matchups per challenge, position bias, voter agreement.
"""

from harness.ratings.battles import (
    WINNERS,
    BattleError,
    PairCounts,
    aggregate,
    read_battles,
    validate_battles,
)
from harness.ratings.bradley_terry import BTFit, RatingError, fit, fit_mm, win_probability
from harness.ratings.breakdowns import (
    BestFor,
    PositionBias,
    average_win_rate,
    battle_count_matrix,
    best_for,
    leaderboards_by,
    matchups,
    panel_agreement,
    position_bias,
    predicted_win_rate,
    voter_agreement,
    win_rate_matrix,
)
from harness.ratings.elo import EloSettings, elo_bootstrap, online_elo
from harness.ratings.intervals import Intervals, bootstrap_intervals, rank_spread, sandwich_intervals
from harness.ratings.leaderboard import (
    RATINGS_SCHEMA_VERSION,
    AnchorSpec,
    Leaderboard,
    RatingBoard,
    RatingOptions,
    RatingRow,
    leaderboard,
)

__all__ = [
    "RATINGS_SCHEMA_VERSION",
    "WINNERS",
    "AnchorSpec",
    "BTFit",
    "BattleError",
    "BestFor",
    "EloSettings",
    "Intervals",
    "Leaderboard",
    "PairCounts",
    "PositionBias",
    "RatingBoard",
    "RatingError",
    "RatingOptions",
    "RatingRow",
    "aggregate",
    "average_win_rate",
    "battle_count_matrix",
    "best_for",
    "bootstrap_intervals",
    "elo_bootstrap",
    "fit",
    "fit_mm",
    "leaderboard",
    "leaderboards_by",
    "matchups",
    "online_elo",
    "panel_agreement",
    "position_bias",
    "predicted_win_rate",
    "rank_spread",
    "read_battles",
    "sandwich_intervals",
    "validate_battles",
    "voter_agreement",
    "win_probability",
    "win_rate_matrix",
]
