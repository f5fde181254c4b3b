"""The run machinery: options, the logical requests of a run, one attempt, dispatch, the store writer, and
starting or resuming a run. Import from here; the submodules are its parts."""

from harness.run.attempt import AttemptOutcome, classify_exception, perform_attempt
from harness.run.execute import Runner, RunResult
from harness.run.items import WorkItem, build_request, plan_items, unsupported_pairs
from harness.run.lifecycle import (
    frozen_config,
    new_run_id,
    resume_run,
    start_run,
    store_references,
    thaw_challenges,
)
from harness.run.options import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    MAX_RETRY_WAIT_S,
    RunObserver,
    RunOptions,
)
from harness.run.writer import StoreWriter

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "MAX_RETRY_WAIT_S",
    "AttemptOutcome",
    "RunObserver",
    "RunOptions",
    "RunResult",
    "Runner",
    "StoreWriter",
    "WorkItem",
    "build_request",
    "classify_exception",
    "frozen_config",
    "new_run_id",
    "perform_attempt",
    "plan_items",
    "resume_run",
    "start_run",
    "store_references",
    "thaw_challenges",
    "unsupported_pairs",
]
