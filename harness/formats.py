"""Every format the harness persists or prints for machines, with its version constant, in one list.

Each version is defined once, beside the code that writes the format (imported here, never restated); this
list is what docs/formats.md shows and what tests/test_formats.py holds the package to: an integer
``*VERSION*`` constant defined anywhere in the package must be listed here. A format's version is bumped
when a key is removed or changes meaning; readers accept every version up to their own and refuse newer
ones with a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.arena.leaderboard import LEADERBOARD_SCHEMA_VERSION
from harness.battles.table import SCHEMA_VERSION as BATTLE_FILE_VERSION
from harness.cli.challenges import CHALLENGES_JSON_SCHEMA_VERSION
from harness.cli.run import RUN_JSON_SCHEMA_VERSION
from harness.cli.runs import RUNS_JSON_SCHEMA_VERSION
from harness.cli.store import STORE_REPORT_SCHEMA_VERSION
from harness.cli.targets import TARGETS_JSON_SCHEMA_VERSION
from harness.cli.votes import IMPORT_SUMMARY_SCHEMA_VERSION
from harness.gate.evaluate import COMPARISON_SCHEMA_VERSION
from harness.judge.report import JUDGE_SCHEMA_VERSION
from harness.planning import PLAN_SCHEMA_VERSION
from harness.quality.agreement import AGREEMENT_SCHEMA_VERSION
from harness.quality.section import QUALITY_SECTION_SCHEMA_VERSION
from harness.quality.voters import VOTER_QUALITY_SCHEMA_VERSION
from harness.ratings.leaderboard import RATINGS_SCHEMA_VERSION
from harness.ratings.style import STYLE_SCHEMA_VERSION
from harness.report.site import EXPORT_SCHEMA_VERSION
from harness.run.options import CONFIG_VERSION
from harness.run.sequence import STATE_VERSION
from harness.scoring.summary import SCORE_SCHEMA_VERSION
from harness.stats.bymodel import MODEL_VIEW_SCHEMA_VERSION
from harness.stats.byregion import REGION_VIEW_SCHEMA_VERSION
from harness.stats.table import ROW_SCHEMA_VERSION
from harness.stats.turns import TURN_SCHEMA_VERSION
from harness.store.core import SCHEMA_VERSION as STORE_SCHEMA_VERSION
from harness.sweep.results import SCHEMA_VERSION as SWEEP_SCHEMA_VERSION
from harness.sweep.spec import LABEL_VERSION
from harness.timing import CLOCK_VERSION
from harness.trend.build import TREND_SCHEMA_VERSION


@dataclass(frozen=True)
class Format:
    """One persisted or machine-read format."""

    name: str
    version: int
    constant: str
    """Where the version is defined: ``module.NAME``."""
    carried_in: str
    """Where a reader finds the version (a column, a key, a label field)."""
    what: str


FORMATS: tuple[Format, ...] = (
    Format("store tables", STORE_SCHEMA_VERSION, "harness.store.core.SCHEMA_VERSION",
           "`meta.schema_version`", "the SQLite or PostgreSQL store: runs, attempts, votes, scores"),
    Format("run configuration", CONFIG_VERSION, "harness.run.options.CONFIG_VERSION",
           "`schema_version` in `runs.config_json`", "a run's options as stored (resume reads them)"),
    Format("measurement clock", CLOCK_VERSION, "harness.timing.CLOCK_VERSION",
           "`runs.clock_version`", "what latency, TTFB and the phases of a run's attempts mean"),
    Format("conversation turn marks", STATE_VERSION, "harness.run.sequence.STATE_VERSION",
           "`attempts.provider_timings_json`", "a multi-turn attempt's turn and reply"),
    Format("attempt and stats export", STORE_SCHEMA_VERSION, "harness.store.core.SCHEMA_VERSION",
           "`schema_version` column", "`harness export` CSV, Parquet and JSON Lines"),
    Format("battle file", BATTLE_FILE_VERSION, "harness.battles.table.SCHEMA_VERSION",
           "`schema_version` column", "votes as CSV, JSON Lines or a JSON array (`harness votes export`)"),
    Format("run result", RUN_JSON_SCHEMA_VERSION, "harness.cli.run.RUN_JSON_SCHEMA_VERSION",
           "`schema_version` key", "the object `harness run --json` prints (rows versioned apart)"),
    Format("comparison", COMPARISON_SCHEMA_VERSION, "harness.gate.evaluate.COMPARISON_SCHEMA_VERSION",
           "`schema_version` key", "`harness compare --json`"),
    Format("provider rows", ROW_SCHEMA_VERSION, "harness.stats.table.ROW_SCHEMA_VERSION",
           "`schema_version` key", "`harness stats --json`, `harness run --json`"),
    Format("model views", MODEL_VIEW_SCHEMA_VERSION, "harness.stats.bymodel.MODEL_VIEW_SCHEMA_VERSION",
           "`schema_version` key", "`harness stats RUN --by model --json`"),
    Format("region views", REGION_VIEW_SCHEMA_VERSION, "harness.stats.byregion.REGION_VIEW_SCHEMA_VERSION",
           "`schema_version` key", "`harness stats RUN --by region --json`"),
    Format("turn rows", TURN_SCHEMA_VERSION, "harness.stats.turns.TURN_SCHEMA_VERSION",
           "`schema_version` key", "`harness stats RUN --by turn --json`"),
    Format("trend", TREND_SCHEMA_VERSION, "harness.trend.build.TREND_SCHEMA_VERSION",
           "`schema_version` key", "`harness trend SERIES --json`"),
    Format("sweep label", LABEL_VERSION, "harness.sweep.spec.LABEL_VERSION",
           "`v=` in `runs.label`", "the label that ties a sweep's runs together"),
    Format("sweep results", SWEEP_SCHEMA_VERSION, "harness.sweep.results.SCHEMA_VERSION",
           "`schema_version` key", "`harness sweep --json`"),
    Format("score summary", SCORE_SCHEMA_VERSION, "harness.scoring.summary.SCORE_SCHEMA_VERSION",
           "`schema_version` key", "`harness score --json`"),
    Format("ratings", RATINGS_SCHEMA_VERSION, "harness.ratings.leaderboard.RATINGS_SCHEMA_VERSION",
           "`schema_version` key", "`harness ratings --json`"),
    Format("sample-size plan", PLAN_SCHEMA_VERSION, "harness.planning.PLAN_SCHEMA_VERSION",
           "`schema_version` key", "`harness plan --json`"),
    Format("judge summary", JUDGE_SCHEMA_VERSION, "harness.judge.report.JUDGE_SCHEMA_VERSION",
           "`schema_version` key", "`harness judge RUN --json`, `harness judge report --json`"),
    Format("judge agreement", AGREEMENT_SCHEMA_VERSION, "harness.quality.agreement.AGREEMENT_SCHEMA_VERSION",
           "`schema_version` key", "`harness judge agreement --json`"),
    Format("style-controlled board", STYLE_SCHEMA_VERSION, "harness.ratings.style.STYLE_SCHEMA_VERSION",
           "`schema_version` key", "`harness judge style --json`"),
    Format("voter quality", VOTER_QUALITY_SCHEMA_VERSION, "harness.quality.voters.VOTER_QUALITY_SCHEMA_VERSION",
           "`schema_version` key", "`harness judge voters --json`"),
    Format("quality report section", QUALITY_SECTION_SCHEMA_VERSION,
           "harness.quality.section.QUALITY_SECTION_SCHEMA_VERSION", "`schema_version` key",
           "the report's quality section input"),
    Format("live leaderboard", LEADERBOARD_SCHEMA_VERSION, "harness.arena.leaderboard.LEADERBOARD_SCHEMA_VERSION",
           "`schema_version` key", "the arena's public leaderboard JSON"),
    Format("run listing", RUNS_JSON_SCHEMA_VERSION, "harness.cli.runs.RUNS_JSON_SCHEMA_VERSION",
           "`schema_version` key", "`harness runs --json`"),
    Format("target listing", TARGETS_JSON_SCHEMA_VERSION, "harness.cli.targets.TARGETS_JSON_SCHEMA_VERSION",
           "`schema_version` key", "`harness targets list --json`"),
    Format("challenge listing", CHALLENGES_JSON_SCHEMA_VERSION,
           "harness.cli.challenges.CHALLENGES_JSON_SCHEMA_VERSION", "`schema_version` key",
           "`harness challenges validate/list --json`"),
    Format("vote import summary", IMPORT_SUMMARY_SCHEMA_VERSION, "harness.cli.votes.IMPORT_SUMMARY_SCHEMA_VERSION",
           "`schema_version` key", "`harness votes import`'s JSON summary"),
    Format("store migrate and scrub report", STORE_REPORT_SCHEMA_VERSION,
           "harness.cli.store.STORE_REPORT_SCHEMA_VERSION", "`schema_version` key",
           "`harness store migrate --json`, `harness store scrub --json`"),
    Format("report data files", EXPORT_SCHEMA_VERSION, "harness.report.site.EXPORT_SCHEMA_VERSION",
           "`schema_version` key", "the JSON files beside a static report's pages"),
)


def markdown_table() -> str:
    """The formats as the Markdown table docs/formats.md carries (the test checks it is current)."""
    lines = ["| format | version | defined in | version found in | what |", "|---|---|---|---|---|"]
    lines += [f"| {f.name} | {f.version} | `{f.constant}` | {f.carried_in} | {f.what} |" for f in FORMATS]
    return "\n".join(lines) + "\n"
