"""Statistics of multi-turn challenges: per target, success and latency by turn index (does the latency grow
with the history?), what each turn re-sends (bytes, input tokens), and per conversation the share completed,
the turn where the others failed, the time to the final image and the cost of the whole conversation.

Input: a run's attempts with ``provider_timings_json`` (each attempt of a conversation carries its turn,
:mod:`harness.run.sequence`) and ``usage_json``. A turn's outcome is its turn-ending attempt (retries of the
turn fold into it: its cost adds up over them); a conversation's outcome is its final attempt. Requests
never sent (``error_kind = "not_sent"``) are left out of every figure, as in the provider table.

Rows are typed and versioned (``schema_version``) for ``harness stats RUN --by turn --json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from harness.records import NOT_SENT
from harness.run.sequence import SEQUENCE_KEY
from harness.stats.intervals import wilson

TURN_SCHEMA_VERSION: Final = 1

COLUMNS = ("challenge_id", "variant", "target", "sample", "attempt", "final", "ok", "error_kind", "latency_ms",
           "time_to_image_ms", "bytes_sent", "cost_usd", "usage_json", "provider_timings_json")
"""Attempt columns the turn statistics read (pass as ``columns=`` to ``attempts_frame``)."""


class TurnRow(BaseModel):
    """One target at one turn index, over every conversation of the run that reached that turn."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = Field(TURN_SCHEMA_VERSION, description="version of this row's JSON form")
    target: str
    turn: int = Field(description="1-based turn index")
    n: int = Field(description="turns that ended (succeeded, or failed with no retry left)")
    successes: int
    success_rate: float | None
    success_low: float | None = Field(description="Wilson 95 % interval, low end")
    success_high: float | None = Field(description="Wilson 95 % interval, high end")
    latency_p50_ms: float | None = Field(description="median provider latency of the turn's successful answers")
    latency_mean_ms: float | None
    bytes_sent_mean: float | None = Field(description="mean request bytes of the turn: its history re-sent")
    input_tokens_mean: float | None = Field(description="mean input tokens billed for the turn (history included)")
    cost_mean_usd: float | None = Field(description="mean cost of the turn, its retries included")


class SequenceRow(BaseModel):
    """One target's conversations over the run."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = Field(TURN_SCHEMA_VERSION, description="version of this row's JSON form")
    target: str
    n: int = Field(description="conversations that ended (a final attempt is recorded)")
    completed: int = Field(description="conversations whose every turn succeeded")
    completed_share: float | None
    completed_low: float | None = Field(description="Wilson 95 % interval, low end")
    completed_high: float | None = Field(description="Wilson 95 % interval, high end")
    failed_at_turn: dict[str, int] = Field(description="failed conversations by the turn that failed (1-based)")
    time_to_final_image_p50_ms: float | None = Field(
        description="median time from the first turn's start to the last turn's image, completed conversations")
    cost_mean_usd: float | None = Field(description="mean cost of a whole conversation, failed ones included")
    cost_per_completed_usd: float | None = Field(description="everything spent / conversations completed")
    latency_growth: float | None = Field(
        description="median latency of the last turn index over the first's (1.0: history adds no latency)")
    input_token_growth: float | None = Field(
        description="mean input tokens of the last turn index over the first's (token-priced models pay for it)")


@dataclass
class TurnStats:
    """Both views of a run's conversations."""

    turns: list[TurnRow] = field(default_factory=list)
    sequences: list[SequenceRow] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": TURN_SCHEMA_VERSION, "turns": [r.model_dump() for r in self.turns],
                "sequences": [r.model_dump() for r in self.sequences]}


def _mark(text: Any) -> Mapping[str, Any] | None:
    if not isinstance(text, str) or not text:
        return None
    mark = json.loads(text).get(SEQUENCE_KEY)
    return mark if isinstance(mark, Mapping) else None


def _input_tokens(text: Any) -> float:
    if not isinstance(text, str) or not text:
        return np.nan
    value = json.loads(text).get("input_tokens")
    return float(value) if isinstance(value, (int, float)) else np.nan


def turn_frame(attempts: pd.DataFrame) -> pd.DataFrame:
    """The attempts of conversations with their turn columns (``turn``, ``turns``, ``turn_final``,
    ``input_tokens``); single requests and never-sent requests are dropped."""
    marks = [_mark(t) for t in attempts["provider_timings_json"]]
    keep = np.array([m is not None for m in marks], dtype=bool)
    if "error_kind" in attempts:
        keep &= (attempts["error_kind"].astype(object) != NOT_SENT).to_numpy()
    frame = attempts.loc[keep].copy()
    kept = [m for m, k in zip(marks, keep, strict=True) if k]
    frame["turn"] = [int(m["turn"]) for m in kept if m is not None]
    frame["turns"] = [int(m["turns"]) for m in kept if m is not None]
    frame["turn_final"] = [bool(m["turn_final"]) for m in kept if m is not None]
    frame["input_tokens"] = [_input_tokens(u) for u in frame.get("usage_json", pd.Series([None] * len(frame)))]
    for c in ("target", "challenge_id", "variant"):
        frame[c] = frame[c].astype(str)
    return frame


def _num(series: pd.Series) -> np.ndarray[Any, Any]:
    values: np.ndarray[Any, Any] = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return values


def _mean(values: np.ndarray[Any, Any]) -> float | None:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else None


def _median(values: np.ndarray[Any, Any]) -> float | None:
    values = values[~np.isnan(values)]
    return float(np.median(values)) if len(values) else None


def _share(successes: int, n: int) -> tuple[float | None, float | None, float | None]:
    if n == 0:
        return None, None, None
    interval = wilson(successes, n)
    return interval.estimate, interval.low, interval.high


KEY = ["target", "challenge_id", "variant", "sample"]


def turn_stats(attempts: pd.DataFrame) -> TurnStats:
    """Per-turn and per-conversation rows of every target that ran a multi-turn challenge."""
    frame = turn_frame(attempts)
    out = TurnStats()
    if frame.empty:
        return out
    cost_by_turn = frame.groupby([*KEY, "turn"], sort=False)["cost_usd"].sum()
    ended = frame[frame["turn_final"]]
    for (target, turn), group in ended.groupby(["target", "turn"], sort=True):
        ok = group["ok"].astype(bool).to_numpy()
        rate, low, high = _share(int(ok.sum()), len(group))
        costs = [float(cost_by_turn[(target, c, v, s, turn)]) for c, v, s in
                 zip(group["challenge_id"], group["variant"], group["sample"], strict=True)]
        latency = _num(group["latency_ms"])[ok]
        out.turns.append(TurnRow(
            target=str(target), turn=int(turn), n=len(group), successes=int(ok.sum()), success_rate=rate,
            success_low=low, success_high=high, latency_p50_ms=_median(latency), latency_mean_ms=_mean(latency),
            bytes_sent_mean=_mean(_num(group["bytes_sent"])), input_tokens_mean=_mean(_num(group["input_tokens"])),
            cost_mean_usd=float(np.mean(costs)) if costs else None))
    finals = frame[frame["final"].astype(bool)]
    totals = frame.groupby(KEY, sort=False)["cost_usd"].sum()
    for target, group in finals.groupby("target", sort=True):
        ok = group["ok"].astype(bool).to_numpy()
        completed = int(ok.sum())
        share, low, high = _share(completed, len(group))
        failed = group.loc[~ok, "turn"].value_counts().sort_index()
        spent = [float(totals[(target, c, v, s)]) for c, v, s in
                 zip(group["challenge_id"], group["variant"], group["sample"], strict=True)]
        rows = [r for r in out.turns if r.target == target]
        first, last = (rows[0], rows[-1]) if rows else (None, None)
        out.sequences.append(SequenceRow(
            target=str(target), n=len(group), completed=completed, completed_share=share, completed_low=low,
            completed_high=high, failed_at_turn={str(int(k)): int(v) for k, v in failed.items()},
            time_to_final_image_p50_ms=_median(_num(group["time_to_image_ms"])[ok]),
            cost_mean_usd=float(np.mean(spent)) if spent else None,
            cost_per_completed_usd=float(np.sum(spent)) / completed if completed else None,
            latency_growth=_ratio(last.latency_p50_ms if last else None, first.latency_p50_ms if first else None),
            input_token_growth=_ratio(last.input_tokens_mean if last else None,
                                      first.input_tokens_mean if first else None)))
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def rows_for(stats: TurnStats, targets: Iterable[str] | None = None) -> TurnStats:
    """``stats`` restricted to ``targets`` (all when ``None``)."""
    if targets is None:
        return stats
    keep = set(targets)
    return TurnStats([r for r in stats.turns if r.target in keep], [r for r in stats.sequences if r.target in keep])


def _fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}{unit}"


def print_turn_stats(stats: TurnStats, *, title: str) -> None:
    """The two tables of ``harness stats RUN --by turn``: by turn, then by conversation."""
    from rich.table import Table

    from harness.cli._common import out_console

    console = out_console()
    if not stats.turns:
        console.print(f"{title}: no multi-turn challenge was run", markup=False)
        return
    table = Table(title=f"{title} — by turn (a conversation re-sends its history every turn)")
    for name in ("target", "turn", "n", "success (95 % CI)", "latency p50 ms", "bytes sent", "input tokens",
                 "cost / turn"):
        table.add_column(name, justify="left" if name == "target" else "right")
    for r in stats.turns:
        success = (f"{r.success_rate:.0%} ({r.success_low:.0%}–{r.success_high:.0%})"
                   if r.success_rate is not None and r.success_low is not None and r.success_high is not None else "—")
        table.add_row(r.target, str(r.turn), str(r.n), success, _fmt(r.latency_p50_ms),
                      _fmt(r.bytes_sent_mean), _fmt(r.input_tokens_mean), _fmt(r.cost_mean_usd, digits=4))
    console.print(table)
    table = Table(title=f"{title} — by conversation")
    for name in ("target", "n", "completed (95 % CI)", "failed at turn", "time to final image p50 ms",
                 "cost / conversation", "cost / completed", "latency last/first", "input tokens last/first"):
        table.add_column(name, justify="left" if name == "target" else "right")
    for s in stats.sequences:
        share = (f"{s.completed_share:.0%} ({s.completed_low:.0%}–{s.completed_high:.0%})"
                 if s.completed_share is not None and s.completed_low is not None and s.completed_high is not None
                 else "—")
        failed = ", ".join(f"{k}: {v}" for k, v in s.failed_at_turn.items()) or "—"
        table.add_row(s.target, str(s.n), share, failed, _fmt(s.time_to_final_image_p50_ms),
                      _fmt(s.cost_mean_usd, digits=4), _fmt(s.cost_per_completed_usd, digits=4),
                      _fmt(s.latency_growth, "×", 2), _fmt(s.input_token_growth, "×", 2))
    console.print(table)


class StripTurn(BaseModel):
    """One turn of a conversation as a report's turn strip shows it."""

    model_config = ConfigDict(frozen=True)

    turn: int = Field(description="1-based turn index")
    prompt: str | None = Field(description="the turn's prompt for the conversation's variant")
    preserve: list[str] = Field(default_factory=list, description="what the turn had to keep")
    ok: bool = Field(description="whether the turn ended with an image")
    attempts: int = Field(description="attempts the turn took (retries included)")
    latency_ms: float | None
    image_sha256: str | None = Field(description="the turn's image in the image store (None when it failed)")
    image_ext: str | None
    error_kind: str | None
    error_message: str | None


class Strip(BaseModel):
    """One conversation, turn by turn (a row of a report's turn strip)."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = Field(TURN_SCHEMA_VERSION, description="version of this row's JSON form")
    run_id: str
    challenge_id: str
    variant: str
    target: str
    sample: int
    turns: int = Field(description="turns the challenge has")
    completed: bool
    failed_at_turn: int | None
    start_images: list[str] = Field(default_factory=list,
                                    description="SHA-256 of the images sent with the first turn (starting set "
                                                "and the first turn's own references)")
    time_to_final_image_ms: float | None
    cost_usd: float = Field(description="everything the conversation cost")
    steps: list[StripTurn]


STRIP_COLUMNS = ("id", "run_id", *COLUMNS, "error_message")
"""Attempt columns :func:`turn_strips` reads."""


def turn_strips(attempts: pd.DataFrame, outputs: pd.DataFrame,
                challenges: Mapping[tuple[str, str], Mapping[str, Any]]) -> list[Strip]:
    """Every conversation of ``attempts`` (``STRIP_COLUMNS``) as a turn strip: each turn's image
    (``outputs``: ``outputs_frame(..., final_only=False)`` rows, by ``attempt_id``), prompt and outcome. ``challenges`` maps
    ``(run_id, challenge_id)`` to the frozen challenge (``run_challenges``), for prompts and starting images."""
    frame = turn_frame(attempts)
    if frame.empty:
        return []
    firsts = outputs[outputs["idx"] == 0] if len(outputs) else outputs
    images = {int(a): (str(sha), str(ext)) for a, sha, ext in
              zip(firsts.get("attempt_id", []), firsts.get("sha256", []), firsts.get("ext", []), strict=True)}
    strips: list[Strip] = []
    for key, group in frame.sort_values("attempt").groupby(["run_id", *KEY], sort=True):
        run_id, target, challenge_id, variant, sample = (str(key[0]), str(key[1]), str(key[2]), str(key[3]),
                                                         int(key[4]))
        frozen = challenges.get((run_id, challenge_id), {})
        turn_specs = list(frozen.get("turns") or [])
        steps = []
        for turn, rows in group.groupby("turn", sort=True):
            last = rows.iloc[-1]
            spec = turn_specs[int(turn) - 1] if int(turn) - 1 < len(turn_specs) else {}
            image = images.get(int(last["id"])) if bool(last["ok"]) else None
            steps.append(StripTurn(
                turn=int(turn), prompt=(spec.get("prompts") or {}).get(variant), preserve=list(spec.get("preserve") or []),
                ok=bool(last["ok"]), attempts=len(rows),
                latency_ms=None if pd.isna(last["latency_ms"]) else float(last["latency_ms"]),
                image_sha256=image[0] if image else None, image_ext=image[1] if image else None,
                error_kind=None if pd.isna(last["error_kind"]) else str(last["error_kind"]),
                error_message=None if pd.isna(last.get("error_message")) else str(last.get("error_message"))))
        final = group[group["final"].astype(bool)]
        completed = bool(len(final)) and bool(final.iloc[-1]["ok"])
        failed = next((s.turn for s in steps if not s.ok), None)
        tti = final.iloc[-1]["time_to_image_ms"] if len(final) and completed else None
        start = list(turn_specs[0].get("references") or []) if turn_specs else []
        strips.append(Strip(
            run_id=run_id, challenge_id=challenge_id, variant=variant, target=target, sample=sample,
            turns=int(group["turns"].iloc[0]), completed=completed, failed_at_turn=failed,
            start_images=start,
            time_to_final_image_ms=None if tti is None or pd.isna(tti) else float(tti),
            cost_usd=float(np.nansum(_num(group["cost_usd"]))), steps=steps))
    return strips
