"""``harness score RUN_ID...``: CLIP scores of the runs' outputs into the store (only what is new)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from harness.cli._common import (
    EXIT_CHECK_FAILED,
    db_option,
    err_console,
    handle_errors,
    out_console,
    plain_output,
    print_json,
)
from harness.errors import HarnessError
from harness.scoring.backbone import DEVICES, PRECISIONS
from harness.scoring.summary import ConsistencyOutput, ScoreOutput
from harness.scoring.weights import DEFAULT_MODEL, DEFAULT_PRETRAINED
from harness.store import Store
from harness.store import runs as run_store


def _forbid_downloads() -> None:
    """Make every Hugging Face client in this process offline; must run before they are imported."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def _fmt(value: float | None) -> str:
    return "—" if value is None or value != value else f"{value:.4f}"


def _cell(mean: float | None, low: float | None, high: float | None, digits: int = 3) -> str:
    if mean is None:
        return "—"
    ci = f" ({low:.{digits}f}–{high:.{digits}f})" if low is not None and high is not None else ""
    return f"{mean:.{digits}f}{ci}"


CONSISTENCY_HEADINGS = {"clip_i_first": "CLIP-I to first", "clip_i_prev": "CLIP-I to previous",
                        "clip_t_turn": "CLIP-T of the turn", "l1_prev": "L1 to previous ↓",
                        "psnr_prev": "PSNR to previous dB"}


def print_consistency(result: ConsistencyOutput) -> None:
    """The two consistency tables of ``harness score``: per turn index, then per conversation."""
    console = out_console()
    metrics = list(CONSISTENCY_HEADINGS)
    table = Table("target", "turn", "n", *CONSISTENCY_HEADINGS.values(),
                  title=escape(f"{result.scorer} — consistency by turn (mean, 95 % CI)"))
    cells: dict[tuple[str, int], dict[str, str]] = {}
    counts: dict[tuple[str, int], int] = {}
    for r in result.turns:
        cells.setdefault((r.target, r.turn), {})[r.metric] = _cell(r.mean, r.low, r.high)
        counts[(r.target, r.turn)] = max(counts.get((r.target, r.turn), 0), r.n_images)
    for (target, turn), row in sorted(cells.items()):
        table.add_row(escape(target), str(turn), str(counts[(target, turn)]),
                      *(row.get(m, "—") for m in metrics))
    console.print(table)
    table = Table("target", "metric", "conversations (incomplete)", "mean over turns", "worst turn", "last turn",
                  "change first→last", title=escape(f"{result.scorer} — consistency by conversation"))
    by: dict[tuple[str, str], dict[str, str]] = {}
    sizes: dict[tuple[str, str], str] = {}
    for s in result.sequences:
        by.setdefault((s.target, s.metric), {})[s.aggregate] = _cell(s.mean, s.low, s.high)
        if s.aggregate == "mean":
            sizes[(s.target, s.metric)] = f"{s.n_sequences} ({s.n_incomplete})"
    for (target, metric), row in sorted(by.items(), key=lambda kv: (kv[0][0], metrics.index(kv[0][1]))):
        table.add_row(escape(target), CONSISTENCY_HEADINGS[metric], sizes.get((target, metric), "—"),
                      *(row.get(a, "—") for a in ("mean", "worst", "last", "change")))
    console.print(table)
    for rec in result.conversations:
        if rec.note:
            console.print(escape(f"{rec.target} · {rec.challenge_id}/{rec.variant} sample {rec.sample}: {rec.note}"))


@click.command()
@click.argument("run_ids", nargs=-1, metavar="RUN_ID...")
@click.option("--model", default=DEFAULT_MODEL, show_default=True,
              help="open_clip architecture name, hf-hub:ORG/REPO, or local-dir:/path/to/folder.")
@click.option("--pretrained", default=None, metavar="TAG_OR_FILE",
              help=f"Weights of a built-in architecture: a tag or a weights file [default: {DEFAULT_PRETRAINED} "
                   f"for {DEFAULT_MODEL}].")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="auto: fp32 on CPU, fp16 mixed precision on CUDA.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Images (and texts) per model call.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Image decoding threads (0: up to 4 on CPU, up to 16 with a GPU, at most the CPU count).")
@click.option("--allow-download", is_flag=True,
              help="Let open_clip fetch missing weights from the Hugging Face hub (off: fail at once instead).")
@click.option("--hf-cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Hugging Face hub cache folder [default: HF_HUB_CACHE or HF_HOME/hub].")
@click.option("--force", is_flag=True, help="Re-score outputs that already have scores from this scorer.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the counters and the summary as JSON (with schema_version).")
@click.option("--schema", "schema", is_flag=True, help="Print the JSON schema of the --json output and exit.")
@db_option
@handle_errors
def score(run_ids: tuple[str, ...], model: str, pretrained: str | None, device: str, precision: str,
          batch_size: int, workers: int, allow_download: bool, hf_cache: Path | None, force: bool, as_json: bool,
          schema: bool, db: Path) -> None:
    """CLIP-T (cosine, 100·cos, CLIPScore), long-prompt chunk scores, edit / compose / inpaint metrics, and
    the consistency of multi-turn conversations turn by turn (docs/consistency.md).

    Default backbone: ViT-B-32-quickgelu with OpenAI weights, the backbone of published CLIPScore numbers.
    Weights are never downloaded unless --allow-download is given. Embeddings are cached in the store, so
    scoring again, or scoring a new run, computes only what is new.
    """
    if schema:
        print_json(ScoreOutput.json_schema())
        return
    if not run_ids:
        raise click.UsageError("Missing argument 'RUN_ID...'.")
    try:
        _score(run_ids, model, pretrained, device, precision, batch_size, workers, allow_download, hf_cache, force,
               as_json, db)
    except HarnessError as exc:
        # Messages hold brackets (pip extras, list indices) that Rich would read as markup.
        raise HarnessError(str(exc)) from None


def _score(run_ids: tuple[str, ...], model: str, pretrained: str | None, device: str, precision: str,
           batch_size: int, workers: int, allow_download: bool, hf_cache: Path | None, force: bool, as_json: bool,
           db: Path) -> None:
    if not allow_download:
        _forbid_downloads()
    from harness.scoring import BackboneSpec, ScoreOptions, load_backbone, score_runs, summarise_scores
    from harness.scoring.consistency import consistency, embed_conversations
    from harness.scoring.summary import summary_rows
    from harness.store.scores import scores_frame

    console = err_console()
    with Store.open(db) as store:
        ids = list(dict.fromkeys(run_store.get_run(store, r).id for r in run_ids))
        options = ScoreOptions(batch_size=batch_size, workers=workers, force=force)
        started = time.perf_counter()
        backbone = load_backbone(BackboneSpec(model=model, pretrained=pretrained, device=device,
                                              precision=precision, allow_download=allow_download, cache_dir=hf_cache))
        info = backbone.info
        console.print(escape(f"scorer {info.name} on {info.device} ({info.precision}), loaded in "
                             f"{time.perf_counter() - started:.1f} s"))
        last = [0.0]

        def progress(stage: str, done: int, total: int) -> None:
            if plain_output() and time.monotonic() - last[0] < 5 and done < total:
                return
            last[0] = time.monotonic()
            console.print(f"  {stage}: {done}/{total} embedded")

        report = score_runs(store, ids, backbone, options, progress=progress)
        summary = summarise_scores(scores_frame(store, ids, scorer=info.id))
        embedded = embed_conversations(store, ids, backbone, options)
        consistent = consistency(store, ids, info.id)
    problems = [*(f"conversation image {key}: {why}" for key, why in embedded.failures.items()),
                *(consistent.problems if consistent else [])]
    for problem in [*report.problems, *problems]:
        console.print(f"[yellow]warning:[/] {escape(problem)}", markup=True)
    rate = report.images_per_s
    console.print(
        f"{report.outputs_scored} output(s) scored, {report.outputs_skipped} already scored, "
        f"{report.outputs_failed} failed; embedded {report.images_embedded} image(s)"
        f"{f' at {rate:.1f}/s' if rate else ''} and {report.texts_embedded} text(s), "
        f"{report.images_cached + report.texts_cached} from the cache; {report.seconds:.1f} s")
    rows = summary_rows(summary)
    if consistent is not None:
        console.print(f"conversations: embedded {embedded.images_embedded} turn image(s) and "
                      f"{embedded.texts_embedded} instruction(s), "
                      f"{embedded.images_cached + embedded.texts_cached} from the cache")
    if as_json:
        print_json(ScoreOutput(report=report.as_dict(), summary=rows, consistency=consistent).to_json())
    else:
        table = Table("metric", "target", "n", "mean (95 % CI)", "better", title=escape(info.name))
        for row in sorted(rows, key=lambda r: (r.metric, str(r.target))):
            ci = f" ({_fmt(row.low)}–{_fmt(row.high)})" if row.low is not None else ""
            table.add_row(row.metric, escape(str(row.target)), str(row.n_images), _fmt(row.mean) + ci,
                          "higher" if row.higher_is_better else "lower")
        out_console().print(table)
        if consistent is not None:
            print_consistency(consistent)
    if report.outputs_failed or problems:
        raise SystemExit(EXIT_CHECK_FAILED)
