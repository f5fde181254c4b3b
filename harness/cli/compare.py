"""``harness compare BASE CAND``: the regression gate for CI (exit 0 pass, 1 regression, 2 usage error)."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli._common import EXIT_CHECK_FAILED, db_option, handle_errors, print_json, slo_option
from harness.errors import ConfigError
from harness.gate import compare as run_compare
from harness.gate import load_gate, parse_selector
from harness.gate.render import markdown, write_junit
from harness.gate.sides import load_side
from harness.gate.trust import metric_trust
from harness.gate.versions import check_clock_versions
from harness.judge.report import final_verdicts
from harness.judge.target import JudgeTarget
from harness.stats.goodput import MEASURES
from harness.store import Store
from harness.store import runs as run_store


@click.command()
@click.argument("runs", nargs=-1, metavar="[BASE_RUN [CAND_RUN]]")
@click.option("--a", "sel_a", metavar="SELECTOR",
              help="Baseline selector, e.g. target=gpt-image-1@openai, variant=default, run=ID (comma-separated).")
@click.option("--b", "sel_b", metavar="SELECTOR", help="Candidate selector (same form as --a).")
@click.option("--gate", "gate_file", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML gate file: alpha, resamples, seed, checks and thresholds (defaults without one).")
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write JUnit XML here (one test case per check).")
@click.option("--markdown", "markdown_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the Markdown summary here (e.g. $GITHUB_STEP_SUMMARY).")
@click.option("--slo", "slo_ms", callback=slo_option, metavar="DURATION",
              help="Latency objective: also check goodput, the share of requests that succeeded within it "
                   "(10s, 1500ms; overrides the gate file's slo).")
@click.option("--slo-measure", type=click.Choice(list(MEASURES)), default=None,
              help="The time compared with the objective (default: the gate file's, else time_to_image).")
@click.option("--min-agreement", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Use a quality metric only where the human votes on these runs agree with it at least this "
                   "share of the time (95 %% interval's lower end; e.g. 0.6); others are reported as not used.")
@click.option("--judge", "judge_spec", metavar="MODEL@PROVIDER", default=None,
              help="Also check the candidate's win share in this vision-model judge's stored verdicts between the "
                   "two sides' outputs (`harness judge RUN --judge …` asks them; overrides the gate file's judge).")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON instead of Markdown.")
@click.option("--allow-clock-mismatch", is_flag=True,
              help="Compare runs measured under different clock versions (refused by default: latency means "
                   "something else in each, which can hide a regression).")
@db_option
@handle_errors
def compare(runs: tuple[str, ...], sel_a: str | None, sel_b: str | None, gate_file: Path | None,
            junit_file: Path | None, markdown_file: Path | None, slo_ms: float | None, slo_measure: str | None,
            min_agreement: float | None, judge_spec: str | None, as_json: bool, allow_clock_mismatch: bool,
            db: Path) -> None:
    """Compare a baseline with a candidate: two runs, or two targets or prompt variants of one run.

    Latency percentiles get bootstrap intervals and a Mann-Whitney test, success rates a Newcombe interval,
    scores (when present) a paired comparison by challenge; with --slo, goodput (the share of requests that
    succeeded within the objective) like the success rate; with --judge, the candidate's win share in a
    vision-model judge's stored verdicts (Wilson interval). Exits 1 when the gate finds a regression the
    data support; refuses (exit 2) runs of different clock versions unless --allow-clock-mismatch.
    """
    a, b = parse_selector(sel_a, "--a"), parse_selector(sel_b, "--b")
    if len(runs) > 2:
        raise ConfigError(f"compare takes at most two runs (baseline, candidate), got {len(runs)}")
    base_run = a.run or (runs[0] if runs else None)
    cand_run = b.run or (runs[1] if len(runs) == 2 else runs[0] if runs else None)
    if base_run is None or cand_run is None:
        raise ConfigError("name the runs: `harness compare BASE CAND`, one run with --a/--b, or run=ID in --a/--b")
    gate = load_gate(gate_file)
    if slo_ms is not None:
        gate = gate.model_copy(update={"slo_ms": slo_ms})
    if slo_measure is not None:
        gate = gate.model_copy(update={"slo_measure": slo_measure})
    if min_agreement is not None:
        gate = gate.model_copy(update={"min_agreement": min_agreement})
    if judge_spec is not None:
        gate = gate.model_copy(update={"judge": JudgeTarget.parse(judge_spec).spec})
    with Store.open(db, readonly=True) as store:
        base_info, cand_info = run_store.get_run(store, base_run), run_store.get_run(store, cand_run)
        base_id, cand_id = base_info.id, cand_info.id
        clock_note = check_clock_versions(base_info, cand_info, allow=allow_clock_mismatch)
        if base_id == cand_id and not (a.filters or b.filters):
            raise ConfigError(f"both sides are all of run {base_id}: pick two runs, or split one run with --a/--b "
                              "(e.g. --a variant=default --b variant=terse)")
        side_a = load_side(store, base_id, a.without_run(), "--a")
        side_b = load_side(store, cand_id, b.without_run(), "--b")
        run_ids = list(dict.fromkeys((base_id, cand_id)))
        trust = None if gate.min_agreement is None else metric_trust(store, run_ids, gate.min_agreement)
        verdicts = final_verdicts(store, run_ids, gate.judge) if gate.judge is not None else None
    result = run_compare(side_a, side_b, gate, trust, verdicts)
    if clock_note is not None:
        result.notes.insert(0, clock_note)
    text = markdown(result)
    if markdown_file is not None:
        markdown_file.parent.mkdir(parents=True, exist_ok=True)
        markdown_file.write_text(text, encoding="utf-8")
    if junit_file is not None:
        write_junit(result, junit_file)
    if as_json:
        print_json(result.to_dict())
    else:
        click.echo(text, nl=False)
    if result.regressed:
        raise SystemExit(EXIT_CHECK_FAILED)
