"""The sandbox keeps the profiles' time: its own process, deadline timers, images drawn once, and the intended
delay stated on every response so a run's fidelity can be judged (harness.stats.fidelity)."""

from __future__ import annotations

import asyncio
import io
import math
import os
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from harness.records import RunInfo
from harness.sandbox import imagery
from harness.sandbox.profiles import DEFAULT_PROFILES
from harness.sandbox.scale import (
    CLIENT_BUDGET_PER_S,
    RECOMMENDED_TIME_SCALE,
    demanded_rate,
    min_time_scale,
    time_scale_warning,
)
from harness.sandbox.servers import SandboxServer
from harness.sandbox.simulation import INTENDED_HEADER, SandboxSettings, SimulatedProvider, start_timeline
from harness.stats.fidelity import (
    MAX_DEVIATION_PCT,
    fidelity_for_run,
    fidelity_report,
    fidelity_rows,
    fidelity_warning,
    profile_draws,
)
from harness.targets import load_targets

GEMINI = "/gemini/v1beta/models/gemini-2.5-flash-image:generateContent"


def test_the_sandbox_serves_from_its_own_process_and_stops_with_it() -> None:
    server = SandboxServer(settings=SandboxSettings(time_scale=0.01, faults=False)).start()
    proc = server._process
    assert proc is not None and proc.pid != os.getpid() and proc.poll() is None
    assert httpx.get(server.root + "/openai/v1/files/none").status_code == 404
    server.stop()
    assert proc.poll() is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.root + "/openai/v1/files/none")


def test_a_sync_answer_states_its_generation_and_body_time_and_arrives_no_earlier(sandbox: SandboxServer) -> None:
    body = {"contents": [{"parts": [{"text": "a fox on a bicycle"}]}]}
    started = time.perf_counter()
    answer = httpx.post(sandbox.root + GEMINI, json=body, headers={"x-goog-api-key": "k"}, timeout=30)
    took_ms = (time.perf_counter() - started) * 1000
    assert answer.status_code == 200
    intended = float(answer.headers[INTENDED_HEADER])
    assert intended > 0
    assert took_ms >= intended - 2.0


def test_a_rejected_key_belongs_to_no_generation_and_says_zero(sandbox: SandboxServer) -> None:
    answer = httpx.post(sandbox.root + GEMINI, json={"contents": [{"parts": [{"text": "x"}]}]},
                        headers={"x-goog-api-key": "invalid"}, timeout=30)
    assert answer.status_code >= 400
    assert float(answer.headers[INTENDED_HEADER]) == 0


def test_every_call_of_a_queued_job_states_the_jobs_intended_delay(sandbox: SandboxServer) -> None:
    auth = {"Authorization": "Key sandbox-key"}
    with httpx.Client(timeout=30) as c:
        submitted = c.post(sandbox.root + "/fal/queue/fal-ai/nano-banana", json={"prompt": "a heron"}, headers=auth)
        intended = float(submitted.headers[INTENDED_HEADER])
        assert intended > 0
        job = submitted.json()
        while (status := c.get(job["status_url"], headers=auth)).json()["status"] != "COMPLETED":
            assert float(status.headers[INTENDED_HEADER]) == intended
            time.sleep(0.01)
        result = c.get(job["response_url"], headers=auth)
        image = c.get(result.json()["images"][0]["url"])
    assert image.status_code == 200
    assert float(result.headers[INTENDED_HEADER]) == intended == float(image.headers[INTENDED_HEADER])


def test_work_between_sleeps_is_absorbed_by_the_deadline_not_added() -> None:
    sim = SimulatedProvider("openai", DEFAULT_PROFILES["openai"], SandboxSettings(time_scale=1.0))

    async def request() -> float:
        start_timeline()
        began = time.monotonic()
        time.sleep(0.05)
        await sim.sleep(0.1)
        time.sleep(0.02)
        await sim.sleep(0.1)
        return time.monotonic() - began

    took = asyncio.run(request())
    assert 0.2 <= took < 0.2 + 0.04


def test_a_timeline_wait_that_is_not_simulated_time_does_not_shorten_the_next_sleep() -> None:
    sim = SimulatedProvider("fal", DEFAULT_PROFILES["fal"], SandboxSettings(time_scale=1.0))

    async def request() -> float:
        start_timeline()
        await asyncio.sleep(0.1)
        sim.resume()
        began = time.monotonic()
        await sim.sleep(0.05)
        return time.monotonic() - began

    assert asyncio.run(request()) >= 0.049


def test_each_drawing_is_made_once_and_every_answer_still_has_bytes_of_its_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    real = imagery.render

    def counting(*args: object, **kwargs: object) -> bytes:
        calls.append(args[3])  # type: ignore[arg-type]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(imagery, "render", counting)
    cache = imagery.ImageCache()
    for fmt in ("PNG", "JPEG", "WEBP"):
        calls.clear()
        images = [cache.get_or_render("gpt-image-1", f"prompt {i}", 1, (256, 256), fmt=fmt) for i in range(32)]
        assert len(calls) <= imagery.VARIANTS
        assert len(set(images)) == len(images), "no two answers share an image file"
        pixels = {Image.open(io.BytesIO(data)).tobytes() for data in images}
        assert len(pixels) == len(calls) > 1
        assert cache.get_or_render("gpt-image-1", "prompt 3", 1, (256, 256), fmt=fmt) == images[3]
    several = {cache.get_or_render("gpt-image-1", "one prompt", seed, (256, 256)) for seed in range(3)}
    assert len({Image.open(io.BytesIO(d)).tobytes() for d in several}) == 2, "consecutive seeds, other drawings"


def frame(target: str, intended: list[float], measured: list[float], poll_ms: float = 0.0,
          queue_seen: bool = False) -> pd.DataFrame:
    n = len(intended)
    return pd.DataFrame({"target": [target] * n, "ok": [1] * n, "intended_ms": intended, "latency_ms": measured,
                         "poll_interval_ms": [poll_ms] * n, "queue_ms": [5.0 if queue_seen else None] * n,
                         "run_ms": [None] * n})


def test_fidelity_is_measured_minus_intended_with_half_a_poll_allowed_for_queue_apis() -> None:
    rng = np.random.default_rng(1)
    intended = rng.uniform(200, 400, 200)
    sync = frame("a@google", list(intended), list(intended + 3.0))
    polled = frame("b@fal", list(intended), list(intended + 3.0 + rng.uniform(0, 20, 200)), poll_ms=20.0,
                   queue_seen=True)
    rows = {r.target: r for r in fidelity_rows(pd.concat([sync, polled], ignore_index=True))}
    assert rows["a@google"].deviation_p50_ms == pytest.approx(3.0)
    assert rows["a@google"].allowance_ms == 0
    assert rows["b@fal"].allowance_ms == 10.0
    assert rows["b@fal"].deviation_p50_ms == pytest.approx(3.0, abs=2.0)
    assert all(r.faithful for r in rows.values())
    for r in rows.values():
        assert r.deviation_p50_low_ms is not None and r.deviation_p50_high_ms is not None
        assert r.deviation_p50_low_ms <= r.deviation_p50_ms <= r.deviation_p50_high_ms


def test_failed_attempts_and_runs_without_the_header_are_left_out() -> None:
    f = frame("a@google", [100.0, 100.0], [101.0, 900.0])
    f.loc[1, "ok"] = 0
    (row,) = fidelity_rows(f)
    assert row.n == 1 and row.deviation_p50_ms == pytest.approx(1.0)
    assert row.deviation_p50_low_ms is None, "one attempt cannot bound a median"
    assert fidelity_rows(f.drop(columns=["intended_ms"])) == []


def test_a_slow_machine_is_told_which_time_scale_to_use_instead() -> None:
    rows = fidelity_rows(frame("a@google", [100.0] * 50, [130.0] * 50))
    assert not rows[0].faithful and rows[0].deviation_pct == pytest.approx(30.0)
    warning = fidelity_warning(rows, 0.005)
    assert warning is not None
    assert "cannot simulate scale 0.005 faithfully; use ≥ 0.05" in warning
    assert fidelity_warning(fidelity_rows(frame("a@google", [100.0] * 50, [104.0] * 50)), 0.005) is None
    assert MAX_DEVIATION_PCT == 5.0


def test_latencies_drawn_from_the_profile_pass_ks_and_a_shifted_ranking_is_caught() -> None:
    scale = 0.01
    targets = [{"name": "gemini-2.5-flash-image@google", "protocol": "gemini", "model": "gemini-2.5-flash-image"},
               {"name": "gpt-image-1@openai", "protocol": "openai-images", "model": "gpt-image-1"}]
    parts = []
    for i, t in enumerate(targets):
        from harness.stats.fidelity import profile_for

        spec = profile_for(t, DEFAULT_PROFILES)
        assert spec is not None
        ms = profile_draws(*spec, n=300, seed=10 + i) * scale * 1000
        parts.append(frame(str(t["name"]), list(ms), list(ms + 1.0)))
    report = fidelity_report(pd.concat(parts, ignore_index=True), time_scale=scale, targets=targets)
    assert report.faithful and report.warning is None
    assert all(r.ks_n == 300 and r.ks_p_value is not None and r.ks_p_value > 0.001 for r in report.rows)
    (check,) = report.rank_checks
    assert check.faster == "gemini-2.5-flash-image@google" and check.agrees
    swapped = pd.concat(parts, ignore_index=True)
    swapped["target"] = swapped["target"].map({"gemini-2.5-flash-image@google": "gpt-image-1@openai",
                                               "gpt-image-1@openai": "gemini-2.5-flash-image@google"})
    bad = fidelity_report(swapped, time_scale=scale, targets=targets)
    assert not bad.ranking_agrees
    assert all(r.ks_p_value is not None and r.ks_p_value < 1e-6 for r in bad.rows)


def test_the_request_rate_a_run_asks_follows_littles_law() -> None:
    target = {"name": "x@openai", "protocol": "openai-images", "model": "gpt-image-1"}
    lat = DEFAULT_PROFILES["openai"].latency
    mean_s = lat.median_s * math.exp(lat.sigma ** 2 / 2)
    assert demanded_rate([target], concurrency=4, time_scale=0.1) == pytest.approx(4 / (mean_s * 0.1))
    assert demanded_rate([target], concurrency=4, time_scale=0.2) == pytest.approx(
        demanded_rate([target], concurrency=4, time_scale=0.1) / 2)


def test_every_catalog_target_at_the_readmes_scale_is_within_the_clients_budget() -> None:
    catalog = list(load_targets().values())
    assert demanded_rate(catalog, concurrency=4, time_scale=0.01) > 400
    assert time_scale_warning(catalog, concurrency=4, time_scale=0.01) is not None
    assert min_time_scale(catalog, concurrency=4) <= RECOMMENDED_TIME_SCALE
    assert demanded_rate(catalog, concurrency=4, time_scale=RECOMMENDED_TIME_SCALE) <= CLIENT_BUDGET_PER_S
    assert time_scale_warning(catalog, concurrency=4, time_scale=RECOMMENDED_TIME_SCALE) is None


def run_info(sandbox: bool, config: dict[str, object]) -> RunInfo:
    return RunInfo(id="r1", created_at="2026-01-01T00:00:00Z", finished_at=None, status="finished",
                   harness_version="0", sandbox=sandbox, time_scale=0.01 if sandbox else None, label=None,
                   config=config, clock_version=2)


def test_a_stored_run_is_judged_against_the_profiles_it_ran_with(tmp_path: Path) -> None:
    target = {"name": "gpt-image-1@openai", "protocol": "openai-images", "model": "gpt-image-1"}
    ms = [50.0 + i for i in range(60)]
    attempts = frame("gpt-image-1@openai", ms, [m + 1.0 for m in ms])
    assert fidelity_for_run(run_info(False, {}), attempts, [target]) is None
    slow = tmp_path / "slow.yaml"
    slow.write_text("openai: {latency: {median_s: 200.0, p95_s: 400.0}}\n", encoding="utf-8")
    default = fidelity_for_run(run_info(True, {}), attempts, [target])
    custom = fidelity_for_run(run_info(True, {"sandbox_profile": str(slow)}), attempts, [target])
    assert default is not None and custom is not None
    assert custom.rows[0].profile_p50_ms == pytest.approx(2000.0, rel=0.05)
    assert default.rows[0].profile_p50_ms == pytest.approx(200.0, rel=0.05)
    gone = fidelity_for_run(run_info(True, {"sandbox_profile": str(tmp_path / "gone.yaml")}), attempts, [target])
    assert gone is not None and gone.warning is not None and "default profiles" in gone.warning


def test_an_image_served_by_url_repeats_its_generations_intended_delay(sandbox: SandboxServer) -> None:
    answer = httpx.post(sandbox.root + "/openai/v1/images/generations", timeout=30,
                        json={"model": "dall-e-2", "prompt": "a lighthouse", "size": "256x256"},
                        headers={"Authorization": "Bearer sandbox-key"})
    assert answer.status_code == 200
    image = httpx.get(answer.json()["data"][0]["url"], timeout=30)
    assert image.status_code == 200
    assert float(image.headers[INTENDED_HEADER]) == float(answer.headers[INTENDED_HEADER]) > 0


def test_a_batch_target_asks_the_client_for_no_answers_per_generation() -> None:
    catalog = load_targets()
    interactive = [t for t in catalog.values() if t.mode != "batch"]
    batch = [t for t in catalog.values() if t.mode == "batch"]
    assert batch, "the catalog lists batch twins"
    assert demanded_rate([*interactive, *batch], concurrency=4, time_scale=0.4) == demanded_rate(
        interactive, concurrency=4, time_scale=0.4)
