"""The main job on the embedded default: a sandboxed benchmark of the starter suite.

Targets cover one model across several providers (Gemini 2.5 Flash Image on Google, OpenRouter, fal and
Replicate) and several models (Gemini 3 Pro Image, GPT Image 1, FLUX.1 [dev], SD 3.5 Large), so the
provider table and the leaderboard both have something to say.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.challenges import load
from harness.runner import RunObserver, RunOptions, RunResult, start_run
from harness.targets import load_targets, resolve_keys, select

DEMO_TARGETS = (
    "gemini-2.5-flash-image@google",
    "gemini-2.5-flash-image@openrouter",
    "gemini-2.5-flash-image@fal",
    "gemini-2.5-flash-image@replicate",
    "gemini-3-pro-image-preview@google",
    "gpt-image-1@openai",
    "flux-dev@fal",
    "sd-3.5-large@replicate",
)
DEFAULT_SUITE = Path(__file__).resolve().parent.parent / "challenges" / "starter"
DEMO_TIME_SCALE = 0.01
"""Simulated delays run 100x faster than real time (a 30 s fal request takes 0.3 s)."""


@dataclass(frozen=True)
class DemoResult:
    run: RunResult
    db: Path


def run_benchmark(db: Path, suite: Path = DEFAULT_SUITE, *, time_scale: float = DEMO_TIME_SCALE,
                  observer: RunObserver | None = None, seed: int = 0) -> DemoResult:
    """Sandboxed run of ``suite`` over :data:`DEMO_TARGETS` into the store at ``db``."""
    targets = select(load_targets(), list(DEMO_TARGETS))
    options = RunOptions(sandbox=True, time_scale=time_scale, concurrency=8, seed=seed, label="demo")
    result = start_run(db, load(suite), targets, resolve_keys(targets, sandbox=True), options,
                       challenges_path=str(suite), observer=observer)
    return DemoResult(result, db)
