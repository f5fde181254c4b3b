"""A simulated batch job moves through its phases on the sandbox's scaled clock: pending, running as long as its
slowest request plus the queue, finalizing, done; a job that fails validation ends after pending; a cancelled
one ends cancelled."""

from __future__ import annotations

from harness.sandbox.batch_clock import FINALIZING_S, PENDING_S, QUEUE_S, Fate, JobClock, Phase, fate_of


def clock(fate: Fate = Fate.COMPLETE, scale: float = 0.5) -> JobClock:
    return JobClock(created=100.0, work_s=QUEUE_S + 10.0, time_scale=scale, fate=fate)


def at(job: JobClock, simulated_s: float) -> float:
    return job.created + simulated_s * job.time_scale


def test_a_job_is_pending_then_running_then_finalizing_then_done_on_the_scaled_clock() -> None:
    job = clock()
    work = QUEUE_S + 10.0
    assert job.phase(at(job, PENDING_S / 2)) is Phase.PENDING
    assert job.phase(at(job, PENDING_S + 1)) is Phase.RUNNING
    assert job.phase(at(job, PENDING_S + work - 0.1)) is Phase.RUNNING
    assert job.phase(at(job, PENDING_S + work + FINALIZING_S / 2)) is Phase.FINALIZING
    assert job.phase(at(job, PENDING_S + work + FINALIZING_S + 0.1)) is Phase.DONE
    assert job.progress(at(job, PENDING_S + work / 2)) == 0.5


def test_a_job_that_fails_validation_is_done_after_pending() -> None:
    job = clock(Fate.FAIL)
    assert job.phase(at(job, PENDING_S / 2)) is Phase.PENDING
    assert job.phase(at(job, PENDING_S + 0.1)) is Phase.DONE


def test_prompt_markers_choose_a_jobs_fate() -> None:
    assert fate_of(["a fox", "an owl"]) is Fate.COMPLETE
    assert fate_of(["a fox", "an owl [sandbox-batch:expire]"]) is Fate.EXPIRE
    assert fate_of(["[sandbox-batch:fail] a fox"]) is Fate.FAIL
    assert fate_of(["[sandbox-batch:nonsense] a fox"]) is Fate.COMPLETE
