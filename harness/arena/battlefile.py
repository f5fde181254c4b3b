"""Arena votes in and out of battle files: the store's side of :mod:`harness.battles`.

Export writes :func:`harness.store.votes.battles_frame` through :func:`harness.battles.write_battles`
(FastChat's columns first). Import turns each row of a :class:`~harness.battles.BattleTable` into a
:class:`~harness.store.votes.Vote` with ``source="import"``; model names stand in for targets, and the file's
``anony`` (unknown when absent) is kept, so an export gives it back.

Import is idempotent: each row's id is a hash of its content and of how many identical rows came before
it in the file, so importing a file twice adds nothing the second time, while genuinely repeated votes in
one file are all kept. (The hashed content — model_a, model_b, winner, category, challenge, voter, tstamp —
is the one the first release hashed, so files imported by it are recognised too.)
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path

from harness.battles import (
    WINNERS,
    BattleFileError,
    BattleTable,
    format_for_writing,
    parse_tstamp,
    read_battle_file,
    write_battles,
)
from harness.store.votes import WINNER_TO_OUTCOME, Vote

__all__ = ["BattleFileError", "format_for", "parse_tstamp", "read_battles", "table_votes", "write_battles"]

format_for = format_for_writing


def table_votes(table: BattleTable, *, now: float) -> list[Vote]:
    """The votes of ``table`` (``source="import"``). Rows without ``tstamp`` get ``now`` plus a
    microsecond per row, keeping file order."""
    models = table.models
    texts = {name: table.text(name) for name in ("category", "kind", "challenge", "voter")}
    values = {name: [*column.values, None] for name, column in texts.items()}
    codes = {name: column.codes.tolist() for name, column in texts.items()}
    seen: Counter[str] = Counter()
    votes: list[Vote] = []
    rows = zip(table.model_a.tolist(), table.model_b.tolist(), table.winner.tolist(), table.tstamp.tolist(),
               table.anony.tolist(), strict=True)
    for index, (a, b, w, t, anony) in enumerate(rows):
        tstamp = None if math.isnan(t) else t
        category, kind, challenge, voter = (values[n][codes[n][index]] for n in ("category", "kind", "challenge",
                                                                                 "voter"))
        winner = WINNERS[w]
        content = json.dumps([models[a], models[b], winner, category, challenge, voter, tstamp])
        seen[content] += 1
        uid = hashlib.sha256(f"{content}#{seen[content]}".encode()).hexdigest()[:32]
        votes.append(Vote(
            vote_uid=f"import-{uid}", left_target=models[a], right_target=models[b], left_model=models[a],
            right_model=models[b], outcome=WINNER_TO_OUTCOME[winner],
            voted_at=tstamp if tstamp is not None else now + index * 1e-6, source="import", category=category,
            kind=kind, challenge_id=challenge, voter=voter, anony=None if anony < 0 else int(anony),
        ))
    return votes


def read_battles(path: Path, fmt: str | None = None, *, now: float) -> list[Vote]:
    """Every row of a battle file as a vote (see :func:`table_votes`). Raises :class:`BattleFileError`
    listing up to ten bad rows by line."""
    return table_votes(read_battle_file(path, fmt), now=now)
