"""Multi-turn conversations as arena contenders: each side of a sequence pair is a whole conversation, turn
by turn, and the vote is on the sequence.

The pool (:mod:`harness.arena.pool`) pairs a conversation by its final image; this module gives each such
output its turn strip (:func:`harness.stats.turns.turn_strips`: each turn's instruction and image) and keeps
in the pool **only complete sequences**: every turn succeeded and every turn's image is in the image store.
A conversation that stopped early (a failed turn, an interrupted run) or lost a turn's image is left out and
counted, never paired: a shorter strip beside a full one would tell the voter that this side's provider
refused or failed where the other did not, which is itself a tell of who made it (a stricter filter, a
flakier API). Both sides of a sequence pair therefore always show the same number of turns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from harness.arena.pool import ArenaPool, Entry, Matchup
from harness.globs import select_names
from harness.stats.turns import STRIP_COLUMNS, Strip, turn_strips
from harness.store import Store
from harness.store import runs as run_store

MULTI_TURN: Final = "multi-turn"
"""The challenge kind whose matchups are sequences."""


@dataclass(frozen=True, slots=True)
class SequenceTurn:
    """One turn of a complete conversation: its instruction (for the conversation's variant) and the image
    the turn ended with."""

    turn: int
    instruction: str
    sha256: str
    ext: str


@dataclass(frozen=True, slots=True)
class SequencePool:
    """The pool with multi-turn matchups reduced to complete sequences.

    ``turns`` maps an output's attempt id (the conversation's final attempt, :attr:`Entry.attempt_id`) to its
    turns in order; ``left_out`` counts conversations of the pool's targets not paired because they are
    incomplete (a failed or unfinished turn) or miss a turn's image file."""

    pool: ArenaPool
    turns: Mapping[int, tuple[SequenceTurn, ...]] = field(default_factory=dict)
    left_out: int = 0


def _complete_turns(strip: Strip, store: Store) -> tuple[SequenceTurn, ...] | None:
    """The strip's turns when the conversation is complete and every turn's image is on disk, else None."""
    if not strip.completed or len(strip.steps) != strip.turns:
        return None
    turns = []
    for step in strip.steps:
        if not step.ok or step.image_sha256 is None or step.image_ext is None:
            return None
        if not store.image_path(step.image_sha256, step.image_ext).is_file():
            return None
        turns.append(SequenceTurn(step.turn, step.prompt or "", step.image_sha256, step.image_ext))
    return tuple(turns)


def with_sequences(store: Store, pool: ArenaPool, targets: Sequence[str] = ()) -> SequencePool:
    """``pool`` with each multi-turn matchup's outputs restricted to complete sequences (a matchup left with
    fewer than two targets is dropped), their turns, and how many conversations of its challenges were left
    out, counting the targets ``targets`` selects (names or globs, as the pool was loaded; all when empty)."""
    sequential = [m for m in pool.matchups if m.kind == MULTI_TURN]
    if not sequential:
        return SequencePool(pool)
    challenges = {(r, c["id"]): c for r in pool.run_ids for c in run_store.run_challenges(store, r)}
    runs = sorted({r for (r, _), c in challenges.items() if c.get("kind") == MULTI_TURN})  # only these have turns
    attempts = run_store.attempts_frame(store, runs, columns=list(STRIP_COLUMNS), with_challenge=False)
    outputs = run_store.outputs_frame(store, runs, final_only=False)
    keys = {(m.challenge_id, m.variant) for m in sequential}
    ran = sorted(set(attempts["target"].astype(str))) if len(attempts) else []
    counted = set(select_names(ran, targets)[0]) if targets else set(ran)
    by_request: dict[tuple[str, str, str, str, int], tuple[SequenceTurn, ...]] = {}
    left_out = 0
    for strip in turn_strips(attempts, outputs, challenges):
        if (strip.challenge_id, strip.variant) not in keys or strip.target not in counted:
            continue
        complete = _complete_turns(strip, store)
        if complete is None:
            left_out += 1
            continue
        by_request[(strip.run_id, strip.target, strip.challenge_id, strip.variant, strip.sample)] = complete
    request_of = {int(a): (str(r), str(t), str(c), str(v), int(s)) for a, r, t, c, v, s in zip(
        outputs["attempt_id"], outputs["run_id"], outputs["target"], outputs["challenge_id"], outputs["variant"],
        outputs["sample"], strict=True)} if len(outputs) else {}
    turns: dict[int, tuple[SequenceTurn, ...]] = {}
    matchups: list[Matchup] = []
    for matchup in pool.matchups:
        if matchup.kind != MULTI_TURN:
            matchups.append(matchup)
            continue
        kept: dict[str, tuple[Entry, ...]] = {}
        for target, entries in matchup.entries.items():
            complete_entries = []
            for entry in entries:
                found = by_request.get(request_of.get(entry.attempt_id, ("", "", "", "", -1)))
                if found is not None and found[-1].sha256 == entry.sha256:
                    turns[entry.attempt_id] = found
                    complete_entries.append(entry)
            if complete_entries:
                kept[target] = tuple(complete_entries)
        if len(kept) >= 2:
            matchups.append(replace(matchup, entries=kept))
    return SequencePool(replace(pool, matchups=tuple(matchups)), turns, left_out)
