"""``harness judge RUN --judge MODEL@PROVIDER``: ask a vision model which of two outputs is better;
``harness judge report RUN --judge …``: its position bias and self-preference; ``harness judge agreement
RUN``: how far each automatic signal agrees with the store's pairwise votes (docs/judge.md, docs/quality.md).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click
import httpx

from harness.cli._common import db_option, err_console, handle_errors, out_console, plain_output, print_json
from harness.judge.ask import JudgeOptions, JudgeSummary, check_judge, judge_run
from harness.judge.inprocess import BASE_URL, sandbox_client
from harness.judge.target import JudgeTarget
from harness.store import Store
from harness.store import runs as run_store

SANDBOX_KEY = "sandbox-judge-key"
"""The key sent to the embedded sandbox (it accepts any but its one invalid key)."""


class _DefaultAsk(click.Group):
    """``harness judge RUN …`` is ``harness judge ask RUN …``: a first word that is no sub-command is a run."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                            list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["ask", *args]
        return super().resolve_command(ctx, args)


@click.group(cls=_DefaultAsk)
def judge() -> None:
    """Pairwise vision-model judge of a run's outputs (`harness judge RUN --judge MODEL@PROVIDER`)."""


@judge.command("ask")
@click.argument("run_id", metavar="RUN")
@click.option("--judge", "judge_spec", required=True, metavar="MODEL@PROVIDER",
              help="Chat model that takes images, e.g. google/gemini-2.5-flash@openrouter.")
@click.option("--pairs", type=click.IntRange(min=1), default=50, show_default=True,
              help="Pairs of outputs to ask about (each in both orders).")
@click.option("--seed", type=int, default=0, show_default=True, help="Which pairs are sampled.")
@click.option("--concurrency", type=click.IntRange(min=1, max=64), default=4, show_default=True)
@click.option("--retries", type=click.IntRange(min=0, max=5), default=None,
              help="Re-asks of an answer without a readable verdict or of a failed request that a retry can "
                   "cure, with the runner's waits (each try is stored). Default: the run's own --retries.")
@click.option("--max-spend", "max_spend", type=click.FloatRange(min=0), default=None, metavar="USD",
              help="Cap on the run's total spend, generations and judgements together (default: the run's cap).")
@click.option("--sandbox/--no-sandbox", default=None,
              help="Ask the sandbox's judges, in this process (default: when the run itself was sandboxed).")
@click.option("--base-url", default=None, metavar="URL", help="Provider base URL (default: the provider's own).")
@click.option("--against", "against", default=None, metavar="BASE_RUN",
              help="Pair each of RUN's outputs with BASE_RUN's output of the same challenge and target (what "
                   "`harness compare BASE_RUN RUN --judge …` reads); asked under RUN's cap and retries.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@db_option
@handle_errors
def ask(run_id: str, judge_spec: str, pairs: int, seed: int, concurrency: int, retries: int | None,
        max_spend: float | None, sandbox: bool | None, base_url: str | None, against: str | None, as_json: bool,
        db: Path) -> None:
    """Ask a judge about sampled pairs of RUN's outputs (or RUN's against BASE_RUN's); answers are stored,
    cached and resumable."""
    target = JudgeTarget.parse(judge_spec)
    options = JudgeOptions(pairs=pairs, seed=seed, concurrency=concurrency, retries=retries, max_spend_usd=max_spend)
    with Store.open(db) as store:
        info = run_store.get_run(store, run_id)
        use_sandbox = bool(info.config.get("sandbox")) if sandbox is None else sandbox
        api_key = SANDBOX_KEY if use_sandbox else target.api_key()
        check_judge(target, api_key, use_sandbox)
        url = BASE_URL if use_sandbox else (base_url or target.default_base_url())
        summary = asyncio.run(_ask(store, info.id, target, options, url, api_key, as_json, use_sandbox, against))
    if as_json:
        print_json(summary.as_dict())
        return
    out_console().print(
        f"{summary.judge} on {summary.run_id}: {summary.questions} questions ({summary.cached} cached), "
        f"{summary.asked} asked: {summary.verdicts} verdicts, {summary.unparseable} unparseable, "
        f"{summary.errors} failed ({summary.retried_errors} asked again), {summary.spent_usd:.4f} USD"
        + (f"; {summary.not_sent_for_cap} not sent (spend cap)" if summary.not_sent_for_cap else ""))


async def _ask(store: Store, run_id: str, target: JudgeTarget, options: JudgeOptions, url: str,
               api_key: str | None, quiet: bool, sandbox: bool, against: str | None = None) -> JudgeSummary:
    """Ask through a real provider, or the sandbox's judges in this process (no server, no port)."""
    console = err_console()
    step = 10 if plain_output() else 1

    def progress(s: JudgeSummary) -> None:
        if not quiet and s.asked % step == 0:
            console.print(f"asked {s.asked}: {s.verdicts} verdicts, {s.unparseable} unparseable, {s.errors} failed")

    client = sandbox_client(provider=target.provider) if sandbox else httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=10.0))
    async with client:
        return await judge_run(store, run_id, target, options, client=client, base_url=url, api_key=api_key,
                               progress=progress, against=against)


@judge.command("report")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN...")
@click.option("--judge", "judge_spec", required=True, metavar="MODEL@PROVIDER")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@db_option
@handle_errors
def report(run_ids: tuple[str, ...], judge_spec: str, as_json: bool, db: Path) -> None:
    """A judge's position bias and self-preference on RUN's outputs (from stored verdicts only)."""
    from harness.judge.report import JUDGE_SCHEMA_VERSION, final_verdicts, position_bias, self_preference

    target = JudgeTarget.parse(judge_spec)
    with Store.open(db, readonly=True) as store:
        ids = [run_store.get_run(store, r).id for r in run_ids]
        verdicts = final_verdicts(store, ids, target.spec)
        data: dict[str, Any] = {"schema_version": JUDGE_SCHEMA_VERSION, "judge": target.spec, "runs": ids,
                                "questions": len(verdicts),
                                "position": position_bias(verdicts) if not verdicts.empty else None,
                                "self_preference": self_preference(store, ids, target.spec)}
    if as_json:
        print_json(data)
        return
    console = out_console()
    console.print(f"{target.spec}: {data['questions']} stored answers on {', '.join(ids)}")
    pos = data["position"]
    if pos:
        fw = pos["first_wins"]
        if fw["share"] is not None:
            console.print(f"image shown first wins {fw['share']:.0%} [{fw['low']:.0%}–{fw['high']:.0%}] of "
                          f"{fw['n']} decisive verdicts (50 % is unbiased)")
        c = pos["consistent"]
        if c["share"] is not None:
            console.print(f"both orders agree on {c['share']:.0%} [{c['low']:.0%}–{c['high']:.0%}] of {c['n']} pairs")
        console.print(f"ties {pos['ties']}, unparseable {pos['unparseable']}, failed {pos['errors']}")
    sp = data["self_preference"]
    jo, vo = sp["judge_own_wins"], sp["voters_own_wins"]
    if jo["share"] is None:
        console.print(f"self-preference: no verdict pits the {sp['family']} family against another")
    else:
        line = (f"self-preference ({sp['family']}): the judge gives its family {jo['share']:.0%} "
                f"[{jo['low']:.0%}–{jo['high']:.0%}] of {jo['n']} decisive verdicts")
        if vo["share"] is not None:
            line += f"; the voters {vo['share']:.0%} [{vo['low']:.0%}–{vo['high']:.0%}] of {vo['n']}"
        console.print(line)


@judge.command("agreement")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN...")
@click.option("--source", "sources", multiple=True, metavar="SOURCE",
              help="Only votes from these sources (arena, simulated, import; repeatable). Default: every vote.")
@click.option("--min-votes", type=click.IntRange(min=1), default=30, show_default=True,
              help="Compared votes below which a share is withheld.")
@click.option("--readings/--no-readings", default=None,
              help="Include the sandbox's pixel reading as a signal (default: when every run was sandboxed).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (schema_version 1).")
@db_option
@handle_errors
def agreement_command(run_ids: tuple[str, ...], sources: tuple[str, ...], min_votes: int, readings: bool | None,
                      as_json: bool, db: Path) -> None:
    """How often each automatic signal (CLIP metrics, pixel metrics, judges) agrees with RUN's votes."""
    from rich.table import Table

    from harness.quality.agreement import agreement, votes_frame
    from harness.quality.signals import all_signals

    with Store.open(db, readonly=True) as store:
        ids = [run_store.get_run(store, r).id for r in run_ids]
        votes = votes_frame(store, ids, sources or None)
        data = agreement(votes, all_signals(store, ids, readings=readings), min_votes=min_votes, runs=ids)
    if as_json:
        print_json(data)
        return
    console = out_console()
    if not data["signals"]:
        console.print("no automatic signal is stored for these runs (run `harness score` or `harness judge`)")
        return
    table = Table(title=f"Agreement with {data['votes']} votes on {', '.join(ids)}")
    for column in ("signal", "agrees", "ties ½", "compared", "signal ties", "vote ties", "board ρ"):
        table.add_column(column)
    for entry in data["signals"]:
        cell = entry["overall"]
        share = (f"{cell['share']:.0%} [{cell['low']:.0%}–{cell['high']:.0%}]" if "share" in cell
                 else f"withheld: {cell['withheld']}")
        board = entry["board"]
        rho = f"{board['spearman']:.2f} ({board['models']} models)" if "spearman" in board else board["withheld"]
        half = f"{cell['share_ties_half']:.0%}" if "share_ties_half" in cell else "—"
        table.add_row(entry["signal"], share, half, str(cell["compared"]), str(cell["signal_ties"]),
                      str(cell["vote_ties"]), rho)
    console.print(table)


@judge.command("style")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN...")
@click.option("--source", "sources", multiple=True, metavar="SOURCE",
              help="Only votes from these sources (arena, simulated, import; repeatable). Default: every vote.")
@click.option("--json", "as_json", is_flag=True, help="Print both boards and the coefficients as JSON.")
@db_option
@handle_errors
def style_command(run_ids: tuple[str, ...], sources: tuple[str, ...], as_json: bool, db: Path) -> None:
    """RUN's board with style held equal (size, aspect, file size, sharpness, latency) beside the plain one."""
    from rich.table import Table

    from harness.quality.agreement import votes_frame
    from harness.quality.covariates import style_report

    with Store.open(db, readonly=True) as store:
        ids = [run_store.get_run(store, r).id for r in run_ids]
        data = style_report(store, votes_frame(store, ids, sources or None), ids)
    if as_json:
        print_json(data)
        return
    console = out_console()
    plain = {r["model"]: r for r in data["plain"]["ratings"]}
    board = Table(title=f"Style-controlled board ({data['style']['n_votes']} votes)")
    for column in ("model", "style-controlled", "plain"):
        board.add_column(column)
    for row in data["style"]["ratings"]:
        p = plain[row["model"]]
        board.add_row(row["model"], f"{row['rating']:.0f} [{row['low']:.0f}–{row['high']:.0f}]",
                      f"{p['rating']:.0f} [{p['low']:.0f}–{p['high']:.0f}]")
    console.print(board)
    coefficients = Table(title="Style coefficients (log-odds per SD of the left−right difference)")
    for column in ("covariate", "β [95 %]", "SD of difference"):
        coefficients.add_column(column)
    for c in data["style"]["coefficients"]:
        coefficients.add_row(c["covariate"], f"{c['beta']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]",
                             f"{c['sd_of_difference']:.3g}")
    console.print(coefficients)


@judge.command("voters")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN...")
@click.option("--source", "sources", multiple=True, metavar="SOURCE", help="Only votes from these sources.")
@click.option("--min-votes", type=click.IntRange(min=1), default=20, show_default=True,
              help="Decisive votes a voter needs before their agreement is judged.")
@click.option("--min-decision-ms", type=click.FloatRange(min=0), default=1500.0, show_default=True,
              help="A median decision time below this flags a voter as too fast to have looked.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@db_option
@handle_errors
def voters_command(run_ids: tuple[str, ...], sources: tuple[str, ...], min_votes: int, min_decision_ms: float,
                   as_json: bool, db: Path) -> None:
    """Voters at chance or too fast, and what removing them would change (nobody is removed)."""
    from harness.quality.voters import voter_quality, voter_votes

    with Store.open(db, readonly=True) as store:
        ids = [run_store.get_run(store, r).id for r in run_ids]
        data = voter_quality(voter_votes(store, ids, sources or None), min_votes=min_votes,
                             min_decision_ms=min_decision_ms)
    if as_json:
        print_json(data)
        return
    console = out_console()
    console.print(f"{len(data['flagged'])} of {len(data['voters'])} voters flagged ({data['flagged_votes']} of "
                  f"{data['votes']} votes); {data['note']}")
    for v in data["voters"]:
        if v["flags"]:
            share = f"{v['agreement']:.0%} [{v['low']:.0%}–{v['high']:.0%}]" if "agreement" in v else "—"
            console.print(f"  {v['voter']}: {', '.join(v['flags'])}; agreement {share} of {v['decisive']}, "
                          f"median {v.get('median_decision_ms', float('nan')):.0f} ms")
    for row in data["impact"]:
        change = f"{row['change']:+.0f}" if row["change"] is not None else "—"
        console.print(f"  {row['model']}: {row['rating']:.0f} -> without flagged {change}")
