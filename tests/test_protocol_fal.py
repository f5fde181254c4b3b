"""The fal adapter against its sandbox server: the queue flow and its phases, the status stream, sync runs,
edits, sizes, cancel on timeout, start timeouts, concurrency, and every error shape fal sends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.challenges import load
from harness.errors import ConfigError
from harness.providers.base import ChallengeKind, ErrorKind, GenerationRequest
from harness.providers.common import scaled_poll_interval
from harness.providers.fal import (
    MASK_INSTRUCTION,
    FalProvider,
    classify,
    completed_error,
    flux_image_size,
    run_base,
)
from harness.run import AttemptOutcome, RunOptions, perform_attempt, start_run
from harness.sandbox.faults import EXPECTED_KIND, Fault
from harness.sandbox.profiles import DEFAULT_PROFILES, Lognormal, ProviderProfile
from harness.sandbox.servers import SandboxServer
from harness.sandbox.simulation import SandboxSettings
from harness.store import Store
from harness.store import runs as run_store
from harness.targets import load_targets, resolve_keys, select
from harness.wire import fal as wire
from tests.conftest import image, mask

pytestmark = pytest.mark.anyio
SCALE = 0.01
"""The sandbox's time scale; passed to the adapter so its poll interval shrinks with it."""


def provider(sandbox: SandboxServer, key: str = "sandbox-key", **options: object) -> FalProvider:
    opts = {"time_scale": SCALE, **options}
    return FalProvider(FalProvider.sandbox_base_url(sandbox.root, opts), key, opts)


def labels(outcome: AttemptOutcome) -> list[str]:
    """Call labels with consecutive status polls collapsed into one."""
    out: list[str] = []
    for call in outcome.calls:
        if not (out and out[-1] == call.label == "status"):
            out.append(call.label)
    return out


class Recorder:
    """httpx request hook keeping every request (with its body read)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> None:
        await request.aread()
        self.requests.append(request)

    def json(self, method: str) -> dict[str, object]:
        body = json.loads(next(r for r in self.requests if r.method == method).content)
        assert isinstance(body, dict)
        return body


# ---- the queue flow ---------------------------------------------------------------------------------------


async def test_text_to_image_through_the_queue_records_every_phase(sandbox: SandboxServer,
                                                                   client: httpx.AsyncClient) -> None:
    req = GenerationRequest(model_id="fal-ai/nano-banana", prompt="a watercolor fox", aspect_ratio="16:9", seed=7)
    outcome = await perform_attempt(provider(sandbox), req, client, 30)
    assert outcome.error is None, outcome.error
    assert [(i.width, i.height) for i in outcome.images] == [(1344, 768)]
    assert labels(outcome) == ["submit", "status", "result", "download"]
    status_codes = {c.status for c in outcome.calls if c.label == "status"}
    assert status_codes <= {200, 202} and 200 in status_codes
    clock = outcome.clock
    phases = [clock.submit_ms, clock.queue_ms, clock.run_ms, clock.fetch_ms, clock.download_ms]
    assert all(p is not None and p >= 0 for p in phases), phases
    assert clock.poll_interval_ms == pytest.approx(wire_poll_ms())
    assert clock.ttfb_ms is not None and clock.latency_ms is not None
    assert 0 <= clock.ttfb_ms <= clock.latency_ms
    submit = outcome.calls[0]
    assert submit.t_hdr is not None and submit.t_req_sent is not None
    assert clock.ttfb_ms == pytest.approx((submit.t_hdr - submit.t_req_sent) / 1e6)
    assert sum(p for p in phases if p is not None) <= clock.latency_ms
    result = outcome.result
    assert result is not None
    assert result.provider_timings["inference_time"] > 0
    assert result.provider_timings["queue_position"] == 0
    assert result.billable_units == 1.0
    assert result.request_id and result.request_id in outcome.calls[1].url


def wire_poll_ms() -> float:
    return scaled_poll_interval(0.5, SCALE) * 1000


async def test_status_result_and_cancel_urls_are_followed_as_returned(sandbox: SandboxServer) -> None:
    recorder = Recorder()
    async with httpx.AsyncClient(timeout=30, event_hooks={"request": [recorder]}) as c:
        outcome = await perform_attempt(provider(sandbox), GenerationRequest(model_id="fal-ai/flux/dev", prompt="x"),
                                        c, 30)
    assert outcome.error is None, outcome.error
    submit, *rest = recorder.requests
    assert submit.url.path.endswith("/fal/queue/fal-ai/flux/dev")
    followed = [r.url.path for r in rest if r.method == "GET" and "/requests/" in r.url.path]
    assert followed and all("/fal/queue/fal-ai/flux/requests/" in p for p in followed)
    assert all(r.headers["authorization"] == "Key sandbox-key" for r in recorder.requests[:-1])
    request_id = outcome.result.request_id if outcome.result else None
    async with httpx.AsyncClient() as c:
        built = await c.get(f"{sandbox.root}/fal/queue/fal-ai/flux/dev/requests/{request_id}/status",
                            headers={"Authorization": "Key k"})
    assert built.status_code == 404


async def test_the_status_stream_gives_phases_without_poll_quantization(sandbox: SandboxServer,
                                                                        client: httpx.AsyncClient) -> None:
    req = GenerationRequest(model_id="fal-ai/flux/dev", prompt="a fox", aspect_ratio="4:3")
    outcome = await perform_attempt(provider(sandbox, status_updates="stream"), req, client, 30)
    assert outcome.error is None, outcome.error
    assert [c.label for c in outcome.calls] == ["submit", "status", "result", "download"]
    assert outcome.calls[1].url.endswith("/status/stream")
    assert outcome.clock.poll_interval_ms == 0
    assert outcome.clock.queue_ms is not None and outcome.clock.run_ms is not None
    assert outcome.clock.run_ms > 0
    assert outcome.result is not None and outcome.result.provider_timings["timings"]["inference"] > 0


async def test_sync_mode_posts_once_to_fal_run_and_ttfb_covers_the_generation(sandbox: SandboxServer,
                                                                               client: httpx.AsyncClient) -> None:
    req = GenerationRequest(model_id="fal-ai/nano-banana-pro", prompt="a fox", aspect_ratio="1:1", size="2K")
    outcome = await perform_attempt(provider(sandbox, mode="sync"), req, client, 30)
    assert outcome.error is None, outcome.error
    assert [c.label for c in outcome.calls] == ["generate", "download"]
    assert "/fal/run/fal-ai/nano-banana-pro" in outcome.calls[0].url
    assert [(i.width, i.height) for i in outcome.images] == [(2048, 2048)]
    clock = outcome.clock
    assert clock.submit_ms is None and clock.queue_ms is None
    assert clock.ttfb_ms is not None and clock.download_ms is not None and clock.latency_ms is not None
    assert clock.ttfb_ms > clock.download_ms
    assert clock.ttfb_ms <= clock.latency_ms


async def test_sync_mode_output_as_data_urls_needs_no_download(sandbox: SandboxServer,
                                                              client: httpx.AsyncClient) -> None:
    req = GenerationRequest(model_id="fal-ai/flux/dev", prompt="a fox", aspect_ratio="16:9", n=2)
    outcome = await perform_attempt(provider(sandbox, mode="sync", sync_mode=True), req, client, 30)
    assert outcome.error is None, outcome.error
    assert [c.label for c in outcome.calls] == ["generate"]
    assert [(i.width, i.height) for i in outcome.images] == [(1024, 576), (1024, 576)]
    assert outcome.images[0].data != outcome.images[1].data


def test_the_run_host_is_the_queue_host_without_its_prefix() -> None:
    assert run_base("https://queue.fal.run") == "https://fal.run"
    assert run_base("https://fal.run") == "https://fal.run"
    assert FalProvider.sandbox_base_url("http://h:1", {"mode": "sync"}) == "http://h:1/fal/run"
    assert FalProvider.sandbox_base_url("http://h:1", {}) == "http://h:1/fal/queue"


# ---- inputs and sizes -------------------------------------------------------------------------------------


async def test_edit_sends_references_as_data_urls_to_the_edit_app(sandbox: SandboxServer) -> None:
    recorder = Recorder()
    refs = (image("a.png", (96, 64), 1), image("b.png", (80, 80), 2))
    req = GenerationRequest(model_id="fal-ai/nano-banana", prompt="put them together", kind=ChallengeKind.COMPOSE,
                            references=refs)
    prov = provider(sandbox, edit_model="fal-ai/nano-banana/edit")
    async with httpx.AsyncClient(timeout=30, event_hooks={"request": [recorder]}) as c:
        outcome = await perform_attempt(prov, req, c, 30)
    assert outcome.error is None, outcome.error
    assert recorder.requests[0].url.path.endswith("/fal/queue/fal-ai/nano-banana/edit")
    body = recorder.json("POST")
    urls = body["image_urls"]
    assert isinstance(urls, list) and len(urls) == 2
    assert all(isinstance(u, str) and u.startswith("data:image/png;base64,") for u in urls)
    assert "aspect_ratio" not in body
    assert outcome.result is not None and outcome.result.expected_size is None
    assert [(i.width, i.height) for i in outcome.images] == [(1248, 832)]


async def test_inpainting_without_a_mask_field_sends_the_mask_as_one_more_image(sandbox: SandboxServer) -> None:
    recorder = Recorder()
    req = GenerationRequest(model_id="fal-ai/nano-banana/edit", prompt="flowers in the hole",
                            kind=ChallengeKind.INPAINT, references=(image("a.png", (96, 64), 1),),
                            mask=mask((96, 64)))
    async with httpx.AsyncClient(timeout=30, event_hooks={"request": [recorder]}) as c:
        outcome = await perform_attempt(provider(sandbox), req, c, 30)
    assert outcome.error is None, outcome.error
    body = recorder.json("POST")
    assert isinstance(body["image_urls"], list) and len(body["image_urls"]) == 2
    assert str(body["prompt"]).endswith(MASK_INSTRUCTION)


async def test_an_edit_for_a_text_only_app_without_edit_model_fails_before_sending(
        sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    req = GenerationRequest(model_id="fal-ai/nano-banana", prompt="smile", kind=ChallengeKind.EDIT,
                            references=(image("a.png", (32, 32)),))
    outcome = await perform_attempt(provider(sandbox), req, client, 30)
    assert outcome.error is not None and outcome.error.kind == ErrorKind.INVALID_REQUEST
    assert "edit_model" in outcome.error.message
    assert outcome.calls == []


@pytest.mark.parametrize(
    ("ratio", "size", "sent", "pixels"),
    [
        ("16:9", None, "landscape_16_9", (1024, 576)),
        ("1:1", None, "square_hd", (1024, 1024)),
        ("3:2", None, {"width": 1024, "height": 688}, (1024, 688)),
        (None, "800x600", {"width": 800, "height": 600}, (800, 600)),
        (None, None, None, (1024, 768)),
    ],
)
async def test_flux_sizes_follow_the_image_size_enum_or_a_custom_size(
        sandbox: SandboxServer, client: httpx.AsyncClient, ratio: str | None, size: str | None,
        sent: object, pixels: tuple[int, int]) -> None:
    req = GenerationRequest(model_id="fal-ai/flux/dev", prompt="a fox", aspect_ratio=ratio, size=size)
    assert flux_image_size(req) == sent
    outcome = await perform_attempt(provider(sandbox, mode="sync", sync_mode=True), req, client, 30)
    assert outcome.error is None, outcome.error
    assert (outcome.images[0].width, outcome.images[0].height) == pixels
    assert outcome.result is not None and outcome.result.expected_size == pixels


async def test_nano_banana_sizes_are_googles_grid_per_resolution(sandbox: SandboxServer,
                                                                 client: httpx.AsyncClient) -> None:
    cases = [("fal-ai/nano-banana-2", "4:3", "1K", (1200, 896)), ("fal-ai/nano-banana-pro", "9:16", "2K", (1536, 2752)),
             ("fal-ai/nano-banana-pro", None, "1376x768", (1376, 768))]
    for model, ratio, size, pixels in cases:
        req = GenerationRequest(model_id=model, prompt="a fox", aspect_ratio=ratio, size=size)
        outcome = await perform_attempt(provider(sandbox, mode="sync", sync_mode=True, output_format="jpeg"), req,
                                        client, 30)
        assert outcome.error is None, (model, outcome.error)
        assert outcome.result is not None and outcome.result.expected_size == pixels
        assert (outcome.images[0].width, outcome.images[0].height) == pixels


async def test_half_k_has_no_published_grid_so_no_size_is_expected(sandbox: SandboxServer,
                                                                     client: httpx.AsyncClient) -> None:
    req = GenerationRequest(model_id="fal-ai/nano-banana-2", prompt="a fox", aspect_ratio="1:1", size="0.5K")
    outcome = await perform_attempt(provider(sandbox, mode="sync", sync_mode=True), req, client, 30)
    assert outcome.error is None, outcome.error
    assert outcome.result is not None and outcome.result.expected_size is None
    assert outcome.images[0].width == 512


# ---- cancel, start timeout, concurrency -------------------------------------------------------------------


async def test_a_runner_timeout_cancels_the_queued_request(sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    req = GenerationRequest(model_id="fal-ai/flux/dev", prompt="a fox [sandbox-fault:timeout]")
    outcome = await perform_attempt(provider(sandbox), req, client, 0.8)
    assert outcome.error is not None and outcome.error.kind == ErrorKind.TIMEOUT
    cancel = [c for c in outcome.calls if c.label == "cancel"]
    assert len(cancel) == 1 and cancel[0].method == "PUT" and cancel[0].status == 202
    status_url = cancel[0].url.removesuffix("/cancel") + "/status"
    async with httpx.AsyncClient() as c:
        after = (await c.get(status_url, headers={"Authorization": "Key k"})).json()
    assert after["status"] == wire.COMPLETED and after["error_type"] == "request_cancelled"


def busy_profiles() -> dict[str, ProviderProfile]:
    fal = DEFAULT_PROFILES["fal"].model_copy(update={
        "concurrency": 1, "latency": Lognormal(median_s=3.0, p95_s=4.0), "run": Lognormal(median_s=2.0, p95_s=3.0)})
    return {**DEFAULT_PROFILES, "fal": fal}


@pytest.fixture
def one_runner() -> Iterator[SandboxServer]:
    """A sandbox whose fal account has one runner (the profile's concurrency), so requests wait in queue."""
    server = SandboxServer(settings=SandboxSettings(time_scale=SCALE, faults=False, seed=3),
                           profiles=busy_profiles()).start()
    yield server
    server.stop()


async def occupy(sandbox: SandboxServer, c: httpx.AsyncClient) -> dict[str, str]:
    """Submit a request that never finishes and wait until it holds the only runner."""
    base = FalProvider.sandbox_base_url(sandbox.root, {})
    submitted = (await c.post(f"{base}/fal-ai/flux/dev", json={"prompt": "hog [sandbox-fault:timeout]"},
                              headers={"Authorization": "Key sandbox-key"})).json()
    for _ in range(500):
        status = (await c.get(submitted["status_url"], headers={"Authorization": "Key sandbox-key"})).json()
        if status["status"] == wire.IN_PROGRESS:
            return dict(submitted)
        await asyncio.sleep(0.01)
    raise AssertionError("the blocking request never started")


async def test_a_request_not_started_within_start_timeout_is_cancelled(one_runner: SandboxServer,
                                                                         client: httpx.AsyncClient) -> None:
    hog = await occupy(one_runner, client)
    req = GenerationRequest(model_id="fal-ai/flux/dev", prompt="a fox")
    recorder = Recorder()
    async with httpx.AsyncClient(timeout=30, event_hooks={"request": [recorder]}) as c:
        outcome = await perform_attempt(provider(one_runner, start_timeout_s=1.0), req, c, 30)
    assert outcome.error is not None and outcome.error.kind == ErrorKind.TIMEOUT
    assert outcome.error.provider_code == "start_timeout"
    assert [c.label for c in outcome.calls][-1] == "cancel" and outcome.calls[-1].status == 202
    assert wire.REQUEST_TIMEOUT_HEADER not in recorder.requests[0].headers, "fal takes only start timeouts > 1 s"
    sync = await perform_attempt(provider(one_runner, mode="sync"), req, client, 30)
    assert sync.error is not None and sync.error.kind == ErrorKind.RATE_LIMITED and sync.error.http_status == 429
    assert sync.error.retry_after_s is not None
    await client.put(hog["cancel_url"], headers={"Authorization": "Key sandbox-key"})


async def test_fals_own_start_timeout_answers_504_and_is_a_timeout(one_runner: SandboxServer,
                                                                   client: httpx.AsyncClient) -> None:
    hog = await occupy(one_runner, client)
    recorder = Recorder()
    prov = provider(one_runner, start_timeout_s=2, time_scale=1.0, poll_interval_s=0.01)
    async with httpx.AsyncClient(timeout=30, event_hooks={"request": [recorder]}) as c:
        outcome = await perform_attempt(prov, GenerationRequest(model_id="fal-ai/flux/dev", prompt="x"), c, 30)
    assert recorder.requests[0].headers[wire.REQUEST_TIMEOUT_HEADER] == "2"
    assert outcome.error is not None and outcome.error.kind == ErrorKind.TIMEOUT
    assert (outcome.error.http_status, outcome.error.provider_code) == (504, "request_timeout")
    await client.put(hog["cancel_url"], headers={"Authorization": "Key sandbox-key"})


async def test_the_queue_absorbs_concurrency_with_queue_positions(one_runner: SandboxServer,
                                                                  client: httpx.AsyncClient) -> None:
    hog = await occupy(one_runner, client)
    prov = provider(one_runner)
    reqs = [GenerationRequest(model_id="fal-ai/flux/dev", prompt=f"fox {i}", options={"sync_mode": True})
            for i in range(3)]
    outcomes = []
    for req in reqs:
        outcomes.append(asyncio.ensure_future(perform_attempt(prov, req, client, 30)))
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    await client.put(hog["cancel_url"], headers={"Authorization": "Key sandbox-key"})
    done = await asyncio.gather(*outcomes)
    assert all(o.error is None for o in done), [o.error for o in done]
    positions = sorted(o.result.provider_timings["queue_position"] for o in done if o.result)
    assert positions == [0, 1, 2]
    span_s = (max(o.t_start + o.clock.latency_ms * 1e6 for o in done if o.clock.latency_ms)
              - min(o.t_start for o in done)) / 1e9
    busy_s = sum(o.result.provider_timings["inference_time"] for o in done if o.result)
    assert span_s >= busy_s


# ---- faults and error classification ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["queue", "sync"])
@pytest.mark.parametrize("fault", list(Fault))
async def test_every_sandbox_fault_is_classified_as_its_taxonomy_kind(sandbox: SandboxServer,
                                                                      client: httpx.AsyncClient, fault: Fault,
                                                                      mode: str) -> None:
    model = "fal-ai/nano-banana" if mode == "queue" else "fal-ai/flux/dev"
    req = GenerationRequest(model_id=model, prompt=f"a fox [sandbox-fault:{fault.value}]", aspect_ratio="1:1")
    outcome = await perform_attempt(provider(sandbox, mode=mode), req, client, 1.0 if fault == Fault.TIMEOUT else 30)
    expected = EXPECTED_KIND[fault]
    if expected is None:
        assert outcome.error is None, outcome.error
    else:
        assert outcome.error is not None, f"{fault} was not detected"
        assert outcome.error.kind == expected, (fault, outcome.error)
        assert outcome.clock.latency_ms is not None
        assert "sandbox-key" not in outcome.error.message


async def test_wrong_key_unknown_app_and_bad_input_keep_fals_codes(sandbox: SandboxServer,
                                                                   client: httpx.AsyncClient) -> None:
    cases = [
        (provider(sandbox, key="invalid"), GenerationRequest(model_id="fal-ai/flux/dev", prompt="x"), ErrorKind.AUTH,
         401, None, wire.AUTH_NO_USER),
        (provider(sandbox), GenerationRequest(model_id="fal-ai/no-such-app", prompt="x"), ErrorKind.INVALID_REQUEST,
         404, None, "not found"),
        (provider(sandbox), GenerationRequest(model_id="fal-ai/nano-banana", prompt="x", aspect_ratio="7:3"),
         ErrorKind.INVALID_REQUEST, 422, "literal_error", "aspect_ratio"),
        (provider(sandbox, mode="sync"), GenerationRequest(model_id="fal-ai/flux/dev", prompt="x", n=9),
         ErrorKind.INVALID_REQUEST, 422, "less_than_equal", "num_images"),
    ]
    for prov, req, kind, status, code, text in cases:
        outcome = await perform_attempt(prov, req, client, 10)
        err = outcome.error
        assert err is not None
        assert (err.kind, err.http_status, err.provider_code) == (kind, status, code), err
        assert text in err.message


async def test_the_sandbox_speaks_fals_auth_and_status_codes(sandbox: SandboxServer) -> None:
    base = FalProvider.sandbox_base_url(sandbox.root, {})
    async with httpx.AsyncClient(timeout=10) as c:
        bearer = await c.post(f"{base}/fal-ai/flux/dev", json={"prompt": "x"}, headers={"Authorization": "Bearer k"})
        assert bearer.status_code == 401 and bearer.json()["detail"] == wire.AUTH_BAD_FORMAT
        sub = await c.post(f"{base}/fal-ai/flux/dev", json={"prompt": "x"}, headers={"Authorization": "Key k"})
        body = sub.json()
        assert sub.status_code == 200 and body["status"] == wire.IN_QUEUE and body["queue_position"] == 0
        assert sub.headers[wire.REQUEST_ID_HEADER] == body["request_id"]
        early = await c.get(body["response_url"], headers={"Authorization": "Key k"})
        assert early.status_code == 400 and early.json()["detail"] == wire.STILL_IN_PROGRESS
        first = await c.get(body["status_url"], params={"logs": "1"}, headers={"Authorization": "Key k"})
        assert first.status_code == 202
        while (st := await c.get(body["status_url"], params={"logs": "1"}, headers={"Authorization": "Key k"})
               ).status_code == 202:
            await asyncio.sleep(0.01)
        final = st.json()
        assert final["status"] == wire.COMPLETED and final["metrics"]["inference_time"] > 0
        assert final["logs"] and {"message", "level", "source", "timestamp"} <= set(final["logs"][0])
        again = await c.put(body["cancel_url"], headers={"Authorization": "Key k"})
        assert again.status_code == 400 and again.json()["status"] == wire.ALREADY_COMPLETED
        result = await c.get(body["response_url"], headers={"Authorization": "Key k"})
        assert result.status_code == 200 and result.headers[wire.BILLABLE_UNITS_HEADER] == "1"


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "code", "retry"),
    [
        (422, {"detail": [{"loc": ["body", "prompt"], "msg": "Field required", "type": "missing",
                           "url": "https://docs.fal.ai/errors#missing", "input": {"num_images": 1}}]}, {},
         ErrorKind.INVALID_REQUEST, "missing", None),
        (422, {"detail": [{"loc": ["body", "prompt"], "msg": "flagged by a content checker",
                           "type": "content_policy_violation"}]}, {wire.RETRYABLE_HEADER: "false"},
         ErrorKind.REFUSED, "content_policy_violation", None),
        (422, {"detail": [{"loc": ["body", "image_urls", 0], "msg": "unsafe input image",
                           "type": "content_policy_violation"}]}, {}, ErrorKind.REFUSED, "content_policy_violation",
         None),
        (400, {"detail": {"error": "content_policy_violation", "message": "blocked"}}, {}, ErrorKind.REFUSED,
         "content_policy_violation", None),
        (422, {"detail": [{"loc": ["body"], "msg": "no media", "type": "no_media_generated"}]}, {},
         ErrorKind.NO_IMAGE, "no_media_generated", None),
        (422, {"detail": [{"loc": ["body", "image_url"], "msg": "too large", "type": "image_too_large",
                           "ctx": {"max_height": 4096, "max_width": 4096}}]}, {}, ErrorKind.INVALID_REQUEST,
         "image_too_large", None),
        (500, {"detail": [{"loc": ["body"], "msg": "upstream failed", "type": "downstream_service_error"}]}, {},
         ErrorKind.SERVER_ERROR, "downstream_service_error", None),
        (400, {"detail": "Invalid image size"}, {}, ErrorKind.INVALID_REQUEST, None, None),
        (504, {"detail": "Request timed out", "error_type": "request_timeout"},
         {wire.REQUEST_TIMEOUT_TYPE_HEADER: "user", wire.ERROR_TYPE_HEADER: "request_timeout"}, ErrorKind.TIMEOUT,
         "request_timeout", None),
        (504, {"detail": "Request timed out", "error_type": "request_timeout"}, {}, ErrorKind.SERVER_ERROR,
         "request_timeout", None),
        (503, {"detail": "Failed to schedule"}, {wire.ERROR_TYPE_HEADER: "runner_scheduling_failure",
                                                 "retry-after": "4"}, ErrorKind.SERVER_ERROR,
         "runner_scheduling_failure", 4.0),
        (401, {"detail": "No user found for Key ID and Secret"}, {}, ErrorKind.AUTH, None, None),
        (401, {"detail": wire.AUTH_BAD_FORMAT}, {}, ErrorKind.AUTH, None, None),
        (403, {"detail": wire.LOCKED_BALANCE}, {}, ErrorKind.QUOTA_EXHAUSTED, None, None),
        (403, {"detail": "User is locked. Reason: Admin lock. Please contact support@fal.ai"}, {}, ErrorKind.AUTH,
         None, None),
        (429, {"detail": "Too many requests"}, {"retry-after": "10"}, ErrorKind.RATE_LIMITED, None, 10.0),
        (502, b"<html><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>", {},
         ErrorKind.SERVER_ERROR, None, None),
    ],
)
def test_real_fal_error_bodies_map_to_the_taxonomy(status: int, body: object, headers: dict[str, str],
                                                    kind: ErrorKind, code: str | None, retry: float | None) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    err = classify(status, content, httpx.Headers({wire.REQUEST_ID_HEADER: "req-1", **headers}))
    assert (err.kind, err.provider_code, err.retry_after_s) == (kind, code, retry)
    assert err.http_status == status and err.request_id == "req-1"
    assert err.message


def test_a_completed_status_with_error_is_classified_from_its_error_type() -> None:
    assert completed_error({"status": "COMPLETED", "error": "blocked", "error_type": "content_policy_violation"},
                           "r").kind == ErrorKind.REFUSED
    err = completed_error({"status": "COMPLETED", "error": "Runner disconnected", "error_type": "runner_disconnected"},
                          "r")
    assert (err.kind, err.provider_code, err.request_id) == (ErrorKind.SERVER_ERROR, "runner_disconnected", "r")


async def test_completed_with_error_is_a_failure_even_if_the_result_answers_200() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        base = "http://fal.test/fal-ai/x/requests/r1"
        if request.method == "POST":
            return httpx.Response(200, json={"status": "IN_QUEUE", "request_id": "r1", "response_url": base,
                                             "status_url": base + "/status", "cancel_url": base + "/cancel"})
        if request.url.path.endswith("/status"):
            return httpx.Response(200, json={"status": "COMPLETED", "error": "Runner disconnected",
                                             "error_type": "runner_disconnected", "request_id": "r1"})
        return httpx.Response(200, json={"images": [{"url": "data:image/png;base64,AAAA"}]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as c:
        outcome = await perform_attempt(FalProvider("http://fal.test", "k"),
                                        GenerationRequest(model_id="fal-ai/x", prompt="p"), c, 5)
    assert outcome.error is not None and outcome.error.kind == ErrorKind.SERVER_ERROR
    assert outcome.error.provider_code == "runner_disconnected"


async def test_an_unknown_queue_status_fails_as_a_server_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        base = "http://fal.test/o/a/requests/r"
        if request.method == "POST":
            return httpx.Response(200, json={"status": "IN_QUEUE", "request_id": "r", "response_url": base,
                                             "status_url": base + "/status", "cancel_url": base + "/cancel"})
        return httpx.Response(200, json={"status": "FAILED"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as c:
        outcome = await perform_attempt(FalProvider("http://fal.test", "k"),
                                        GenerationRequest(model_id="o/a", prompt="p"), c, 5)
    assert outcome.error is not None
    assert (outcome.error.kind, outcome.error.provider_code) == (ErrorKind.SERVER_ERROR, "FAILED")


@given(st.integers(100, 599), st.binary(max_size=300), st.sampled_from(["", "user"]))
@settings(max_examples=200)
def test_classification_never_fails_on_arbitrary_answers(status: int, content: bytes, timeout_type: str) -> None:
    err = classify(status, content, httpx.Headers({wire.REQUEST_TIMEOUT_TYPE_HEADER: timeout_type}))
    assert isinstance(err.kind, ErrorKind) and err.message and err.http_status == status


@given(st.lists(st.tuples(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=30),
                          st.sampled_from(["missing", "literal_error", "content_policy_violation"])),
                min_size=1, max_size=4))
def test_every_validation_message_survives_into_the_error(items: list[tuple[str, str, str]]) -> None:
    detail = [{"loc": ["body", field], "msg": msg, "type": type_} for field, msg, type_ in items]
    err = classify(422, json.dumps({"detail": detail}).encode(), httpx.Headers())
    refused = any(t == "content_policy_violation" for _, _, t in items)
    assert err.kind == (ErrorKind.REFUSED if refused else ErrorKind.INVALID_REQUEST)
    assert err.provider_code == items[0][2]
    assert all(" ".join(msg.split())[:20] in err.message for _, msg, _ in items)


@pytest.mark.parametrize(("app_id", "split"), [
    ("fal-ai/flux/dev", ("fal-ai/flux", "dev")),
    ("fal-ai/nano-banana", ("fal-ai/nano-banana", "")),
    ("fal-ai/flux/dev/image-to-image", ("fal-ai/flux", "dev/image-to-image")),
    ("workflows/me/pipeline/run", ("workflows/me/pipeline", "run")),
])
def test_app_ids_split_into_the_request_path_and_the_endpoint(app_id: str, split: tuple[str, str]) -> None:
    assert wire.split_app_id(app_id) == split


@pytest.mark.parametrize(("options", "message"), [({"mode": "turbo"}, "mode"), ({"poll_interval_s": -1},
                                                  "poll_interval_s"), ({"priority": "urgent"}, "priority"),
                                                  ({"status_updates": "webhook"}, "status_updates"),
                                                  ({"input": [1]}, "input")])
def test_bad_target_options_are_rejected_naming_the_option(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        FalProvider("http://x", "k", options)
    assert message in str(info.value)


def test_a_sandbox_run_stores_the_queue_phases(tiny_suite: Path, tmp_path: Path) -> None:
    chosen = select(load_targets(), ["gemini-2.5-flash-image@fal"])
    db = tmp_path / "r" / "h.db"
    result = start_run(db, load(tiny_suite), chosen, resolve_keys(chosen, sandbox=True),
                       RunOptions(sandbox=True, time_scale=SCALE, sandbox_faults=False, concurrency=4))
    with Store.open(db, readonly=True) as store:
        frame = run_store.attempts_frame(store, [result.run_id], [*run_store.ATTEMPT_FRAME_COLUMNS,
                                                                    "provider_timings_json"])
    assert len(frame) == 5 and frame["ok"].all(), frame[["error_kind", "error_message"]]
    assert all(json.loads(t)["inference_time"] > 0 for t in frame["provider_timings_json"])
    for column in ("submit_ms", "queue_ms", "run_ms", "fetch_ms", "download_ms", "poll_interval_ms"):
        assert frame[column].notna().all(), column
    assert (frame["ttfb_ms"] <= frame["latency_ms"]).all()
