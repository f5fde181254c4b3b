"""The Replicate adapter against its sandbox server: ``Prefer: wait`` and the fall back to polling, single and
list outputs, edits, deadlines and cancel on timeout, and every error shape Replicate sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.challenges import load
from harness.errors import ConfigError
from harness.providers.base import ChallengeKind, ErrorKind, GenerationRequest
from harness.providers.common import scaled_poll_interval
from harness.providers.fal import MASK_INSTRUCTION
from harness.providers.replicate import ReplicateProvider, classify, failure, output_urls, provider_timings
from harness.run import AttemptOutcome, RunOptions, perform_attempt, start_run
from harness.sandbox.faults import EXPECTED_KIND, Fault
from harness.sandbox.replicate import version_id
from harness.sandbox.servers import SandboxServer
from harness.store import Store
from harness.store import runs as run_store
from harness.targets import load_targets, resolve_keys, select
from harness.wire import replicate as wire
from tests.conftest import image, mask

pytestmark = pytest.mark.anyio
SCALE = 0.01


def provider(sandbox: SandboxServer, key: str = "sandbox-key", **options: object) -> ReplicateProvider:
    opts = {"time_scale": SCALE, **options}
    return ReplicateProvider(ReplicateProvider.sandbox_base_url(sandbox.root, opts), key, opts)


class Recorder:
    """httpx hooks keeping every request (body read) and response."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.responses: list[httpx.Response] = []

    async def request(self, request: httpx.Request) -> None:
        await request.aread()
        self.requests.append(request)

    async def response(self, response: httpx.Response) -> None:
        await response.aread()
        self.responses.append(response)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=30, event_hooks={"request": [self.request], "response": [self.response]})

    def inputs(self) -> list[dict[str, object]]:
        return [json.loads(r.content)["input"] for r in self.requests if r.method == "POST"]


def labels(outcome: AttemptOutcome) -> list[str]:
    out: list[str] = []
    for call in outcome.calls:
        if not (out and out[-1] == call.label == "status"):
            out.append(call.label)
    return out


# ---- Prefer: wait, polling, outputs -----------------------------------------------------------------------


async def test_prefer_wait_answers_with_the_output_in_the_create_call(sandbox: SandboxServer) -> None:
    recorder = Recorder()
    req = GenerationRequest(model_id="google/nano-banana", prompt="a watercolor fox", aspect_ratio="16:9", seed=3)
    async with recorder.client() as c:
        outcome = await perform_attempt(provider(sandbox), req, c, 30)
    assert outcome.error is None, outcome.error
    create = recorder.requests[0]
    assert create.url.path.endswith("/replicate/v1/models/google/nano-banana/predictions")
    assert create.headers["prefer"] == "wait=60" and create.headers["authorization"] == "Bearer sandbox-key"
    assert json.loads(create.content) == {"input": {"prompt": "a watercolor fox", "seed": 3, "aspect_ratio": "16:9"}}
    answer = recorder.responses[0]
    assert answer.status_code == 201 and answer.headers["location"] == answer.json()["urls"]["get"]
    assert isinstance(answer.json()["output"], str)
    assert [c.label for c in outcome.calls] == ["submit", "download"]
    assert [(i.width, i.height) for i in outcome.images] == [(1344, 768)]
    clock = outcome.clock
    assert clock.ttfb_ms is not None and clock.download_ms is not None and clock.latency_ms is not None
    assert clock.ttfb_ms > clock.download_ms and clock.ttfb_ms <= clock.latency_ms
    result = outcome.result
    assert result is not None and result.request_id == answer.json()["id"]
    assert result.provider_timings["queue_time"] >= 0 and "created_at" in result.provider_timings


async def test_when_the_wait_expires_the_adapter_polls_urls_get_until_succeeded(sandbox: SandboxServer) -> None:
    recorder = Recorder()
    req = GenerationRequest(model_id="black-forest-labs/flux-schnell", prompt="a fox", aspect_ratio="3:2")
    async with recorder.client() as c:
        outcome = await perform_attempt(provider(sandbox, wait_s=1, early_output=False), req, c, 30)
    assert outcome.error is None, outcome.error
    first = recorder.responses[0].json()
    assert first["status"] == wire.STARTING and first["output"] is None
    assert labels(outcome) == ["submit", "status", "download"]
    polls = [r for r in recorder.requests if r.method == "GET" and "/predictions/" in r.url.path]
    assert polls and all(str(r.url) == first["urls"]["get"] for r in polls)
    clock = outcome.clock
    assert clock.poll_interval_ms == pytest.approx(scaled_poll_interval(0.5, SCALE) * 1000)
    polled = [r.json()["status"] for r in recorder.responses
              if r.request.method == "GET" and "/predictions/" in r.request.url.path]
    assert polled[-1] == wire.SUCCEEDED
    if wire.PROCESSING in polled:
        assert clock.run_ms is not None and clock.run_ms > 0 and clock.queue_ms is not None
    else:
        assert clock.run_ms is None and clock.queue_ms is None, \
            "the first poll found it done: the queue/run split is unknown to the client, never 0"
    timings = outcome.result.provider_timings if outcome.result else {}
    assert timings["predict_time"] > 0 and timings["total_time"] >= timings["predict_time"]
    created, started = (wire.parse_timestamp(timings[k]) for k in ("created_at", "started_at"))
    assert created is not None and started is not None
    assert timings["queue_time"] == pytest.approx((started - created).total_seconds())
    assert "completed_at" in timings
    assert [(i.width, i.height) for i in outcome.images] == [(1216, 832)]


async def test_without_prefer_the_create_call_is_only_an_acknowledgement(sandbox: SandboxServer) -> None:
    recorder = Recorder()
    req = GenerationRequest(model_id="google/nano-banana", prompt="a fox", aspect_ratio="1:1")
    async with recorder.client() as c:
        outcome = await perform_attempt(provider(sandbox, wait_s=0), req, c, 30)
    assert outcome.error is None, outcome.error
    assert "prefer" not in recorder.requests[0].headers
    assert labels(outcome) == ["submit", "status", "download"]
    clock = outcome.clock
    assert clock.ttfb_ms is not None and clock.latency_ms is not None and clock.queue_ms is not None
    assert clock.ttfb_ms < clock.latency_ms / 2
    assert clock.submit_ms is not None and clock.submit_ms + clock.queue_ms + (clock.run_ms or 0) <= clock.latency_ms


async def test_a_list_output_is_downloaded_file_by_file(sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    req = GenerationRequest(model_id="black-forest-labs/flux-schnell", prompt="two foxes", aspect_ratio="9:16", n=2,
                            seed=5)
    outcome = await perform_attempt(provider(sandbox, output_format="png"), req, client, 30)
    assert outcome.error is None, outcome.error
    assert [c.label for c in outcome.calls if c.label != "status"] == ["submit", "download", "download"]
    assert [(i.width, i.height) for i in outcome.images] == [(768, 1344), (768, 1344)]
    assert outcome.images[0].data != outcome.images[1].data


async def test_two_images_from_a_single_output_model_take_two_predictions(sandbox: SandboxServer) -> None:
    recorder = Recorder()
    req = GenerationRequest(model_id="google/nano-banana", prompt="a fox", aspect_ratio="1:1", n=2, seed=10)
    async with recorder.client() as c:
        outcome = await perform_attempt(provider(sandbox), req, c, 30)
    assert outcome.error is None, outcome.error
    assert sorted(int(str(i["seed"])) for i in recorder.inputs()) == [10, 11]
    assert len(outcome.images) == 2 and outcome.images[0].data != outcome.images[1].data
    assert outcome.result is not None and len(outcome.result.request_id.split(",")) == 2
    assert len(outcome.result.provider_timings["predictions"]) == 2


@pytest.mark.parametrize(("output", "urls"), [
    ("https://replicate.delivery/a.png", ["https://replicate.delivery/a.png"]),
    (["u1", "u2"], ["u1", "u2"]), (None, []), ([], []),
    ({"image": "https://x/y.png", "n": 3}, ["https://x/y.png"]),
])
def test_outputs_that_are_one_url_or_a_list_give_every_url(output: object, urls: list[str]) -> None:
    assert output_urls(output) == urls


# ---- edits -------------------------------------------------------------------------------------------------


async def test_edit_sends_references_in_image_input_and_matches_the_input_ratio(sandbox: SandboxServer) -> None:
    recorder = Recorder()
    refs = (image("a.png", (96, 64), 1), image("b.png", (80, 80), 2))
    req = GenerationRequest(model_id="google/nano-banana", prompt="put them together", kind=ChallengeKind.COMPOSE,
                            references=refs)
    async with recorder.client() as c:
        outcome = await perform_attempt(provider(sandbox), req, c, 30)
    assert outcome.error is None, outcome.error
    sent = recorder.inputs()[0]
    assert sent["aspect_ratio"] == wire.MATCH_INPUT_IMAGE
    urls = sent["image_input"]
    assert isinstance(urls, list) and len(urls) == 2 and all(str(u).startswith("data:image/png;base64,") for u in urls)
    assert outcome.result is not None and outcome.result.expected_size is None
    assert [(i.width, i.height) for i in outcome.images] == [(1248, 832)]


async def test_inpainting_adds_the_mask_as_an_image_with_an_instruction(sandbox: SandboxServer) -> None:
    recorder = Recorder()
    req = GenerationRequest(model_id="google/nano-banana", prompt="flowers", kind=ChallengeKind.INPAINT,
                            references=(image("a.png", (96, 64), 1),), mask=mask((96, 64)), aspect_ratio="1:1")
    async with recorder.client() as c:
        outcome = await perform_attempt(provider(sandbox), req, c, 30)
    assert outcome.error is None, outcome.error
    sent = recorder.inputs()[0]
    assert isinstance(sent["image_input"], list) and len(sent["image_input"]) == 2
    assert str(sent["prompt"]).endswith(MASK_INSTRUCTION)
    assert outcome.result is not None and outcome.result.expected_size == (1024, 1024)


async def test_version_and_deployment_options_use_their_routes(sandbox: SandboxServer) -> None:
    for options, path in [({"version": f"google/nano-banana:{version_id('google/nano-banana')}"}, "/predictions"),
                          ({"version": version_id("google/nano-banana")}, "/predictions"),
                          ({"deployment": "google/nano-banana"}, "/deployments/google/nano-banana/predictions")]:
        recorder = Recorder()
        async with recorder.client() as c:
            outcome = await perform_attempt(provider(sandbox, **options),
                                            GenerationRequest(model_id="google/nano-banana", prompt="x"), c, 30)
        assert outcome.error is None, (options, outcome.error)
        assert recorder.requests[0].url.path.endswith("/replicate/v1" + path)
        if "version" in options:
            assert json.loads(recorder.requests[0].content)["version"] == options["version"]


# ---- deadlines, cancel, errors -----------------------------------------------------------------------------


async def test_a_cancel_after_deadline_ends_the_prediction_as_a_timeout(sandbox: SandboxServer) -> None:
    recorder = Recorder()
    req = GenerationRequest(model_id="google/nano-banana-pro", prompt="a fox [sandbox-fault:timeout]")
    async with recorder.client() as c:
        outcome = await perform_attempt(provider(sandbox, cancel_after="2s"), req, c, 30)
    assert recorder.requests[0].headers["cancel-after"] == "2s"
    assert outcome.error is not None and outcome.error.kind == ErrorKind.TIMEOUT
    assert outcome.error.provider_code in (wire.CANCELED, wire.ABORTED)


async def test_a_runner_timeout_cancels_the_prediction(sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    req = GenerationRequest(model_id="black-forest-labs/flux-schnell", prompt="a fox [sandbox-fault:timeout]")
    outcome = await perform_attempt(provider(sandbox, wait_s=0), req, client, 0.8)
    assert outcome.error is not None and outcome.error.kind == ErrorKind.TIMEOUT
    cancel = [c for c in outcome.calls if c.label == "cancel"]
    assert len(cancel) == 1 and cancel[0].method == "POST" and cancel[0].status == 200
    async with httpx.AsyncClient() as c:
        after = (await c.get(cancel[0].url.removesuffix("/cancel"),
                             headers={"Authorization": "Bearer sandbox-key"})).json()
    assert after["status"] == wire.CANCELED and after["completed_at"]


@pytest.mark.parametrize("wait_s", [60, 0])
@pytest.mark.parametrize("fault", list(Fault))
async def test_every_sandbox_fault_is_classified_as_its_taxonomy_kind(sandbox: SandboxServer,
                                                                      client: httpx.AsyncClient, fault: Fault,
                                                                      wait_s: int) -> None:
    model = "google/nano-banana" if wait_s else "black-forest-labs/flux-schnell"
    req = GenerationRequest(model_id=model, prompt=f"a fox [sandbox-fault:{fault.value}]", aspect_ratio="1:1")
    outcome = await perform_attempt(provider(sandbox, wait_s=wait_s, output_format="png"), req, client,
                                    1.0 if fault == Fault.TIMEOUT else 30)
    expected = EXPECTED_KIND[fault]
    if expected is None:
        assert outcome.error is None, outcome.error
    else:
        assert outcome.error is not None, f"{fault} was not detected"
        assert outcome.error.kind == expected, (fault, outcome.error)
        assert "sandbox-key" not in outcome.error.message


async def test_wrong_key_unknown_model_and_bad_input_keep_replicates_codes(sandbox: SandboxServer,
                                                                           client: httpx.AsyncClient) -> None:
    cases = [
        (provider(sandbox, key="invalid"), GenerationRequest(model_id="google/nano-banana", prompt="x"),
         ErrorKind.AUTH, 401, "Unauthenticated"),
        (provider(sandbox), GenerationRequest(model_id="google/no-such-model", prompt="x"), ErrorKind.INVALID_REQUEST,
         404, "Not found"),
        (provider(sandbox, output_format="gif"), GenerationRequest(model_id="google/nano-banana", prompt="x"),
         ErrorKind.INVALID_REQUEST, 422, "enum"),
        (provider(sandbox), GenerationRequest(model_id="black-forest-labs/flux-schnell", prompt="x", n=7),
         ErrorKind.INVALID_REQUEST, 422, "number_lte"),
        (provider(sandbox, version="0" * 64), GenerationRequest(model_id="google/nano-banana", prompt="x"),
         ErrorKind.INVALID_REQUEST, 422, "Invalid version or not permitted"),
    ]
    for prov, req, kind, status, code in cases:
        outcome = await perform_attempt(prov, req, client, 10)
        err = outcome.error
        assert err is not None
        assert (err.kind, err.http_status, err.provider_code) == (kind, status, code), err


async def test_the_sandbox_speaks_replicates_headers(sandbox: SandboxServer) -> None:
    base = ReplicateProvider.sandbox_base_url(sandbox.root, {})
    url = base + wire.MODEL_PREDICTIONS.format(owner="google", name="nano-banana")
    async with httpx.AsyncClient(timeout=10) as c:
        token = await c.post(url, json={"input": {"prompt": "x"}}, headers={"Authorization": "Token k",
                                                                           "Prefer": "wait=2"})
        assert token.status_code == 201 and token.headers["location"] == token.json()["urls"]["get"]
        bad = await c.post(url, json={"input": {"prompt": "x"}}, headers={"Authorization": "Bearer k",
                                                                         "Prefer": "wait=90"})
        assert bad.status_code == 400 and "between 1 and 60" in bad.json()["detail"]
        throttled = await c.post(url, json={"input": {"prompt": "x"}},
                                 headers={"Authorization": "Bearer k", "x-sandbox-fault": "rate_limited"})
        assert throttled.status_code == 429 and throttled.headers["retry-after"] == "30"
        assert classify(429, throttled.content, throttled.headers).retry_after_s == 30
        missing = await c.post(url, json={"input": {}}, headers={"Authorization": "Bearer k"})
        assert missing.status_code == 422
        assert missing.json()["invalid_fields"] == [{"type": "required", "field": "input",
                                                     "description": "prompt is required"}]
        listed = await c.get(base + "/predictions", headers={"Authorization": "Token k"})
        assert listed.status_code == 200 and listed.json()["results"][0]["id"] == token.json()["id"]


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "code", "retry"),
    [
        (401, {"title": "Unauthenticated", "detail": "You did not pass a valid authentication token", "status": 401},
         {}, ErrorKind.AUTH, "Unauthenticated", None),
        (402, {"title": "Insufficient credit", "detail": "You have insufficient credit to run this model. Go to "
               "https://replicate.com/account/billing#billing to purchase credit.", "status": 402}, {},
         ErrorKind.QUOTA_EXHAUSTED, "Insufficient credit", None),
        (403, {"title": "Forbidden", "detail": "You do not have permission to run this model.", "status": 403}, {},
         ErrorKind.AUTH, "Forbidden", None),
        (404, {"title": "Not found", "detail": "The requested resource could not be found.", "status": 404}, {},
         ErrorKind.INVALID_REQUEST, "Not found", None),
        (422, {"title": "Input validation failed", "detail": "- input: prompt is required\n", "status": 422,
               "invalid_fields": [{"type": "required", "field": "input", "description": "prompt is required"}]}, {},
         ErrorKind.INVALID_REQUEST, "required", None),
        (422, {"title": "Invalid version or not permitted", "detail": "The specified version does not exist (or "
               "perhaps you don't have permission to use it?)", "status": 422}, {}, ErrorKind.INVALID_REQUEST,
         "Invalid version or not permitted", None),
        (429, {"detail": "Request was throttled. Your rate limit resets in ~30s.", "status": 429},
         {"retry-after": "30"}, ErrorKind.RATE_LIMITED, None, 30.0),
        (429, {"detail": "Request was throttled. Your rate limit resets in ~12s.", "status": 429}, {},
         ErrorKind.RATE_LIMITED, None, 12.0),
        (429, {"detail": "Request was throttled. Your rate limit for creating predictions is reduced to 6 requests "
               "per minute with a burst of 1 requests until you add a payment method. Your rate limit resets in "
               "~8s.", "status": 429}, {}, ErrorKind.RATE_LIMITED, None, 8.0),
        (500, {"title": "Internal Server Error", "detail": "oops", "status": 500}, {}, ErrorKind.SERVER_ERROR,
         "Internal Server Error", None),
        (503, {"title": "Service Unavailable", "status": 503}, {"retry-after": "5"}, ErrorKind.SERVER_ERROR,
         "Service Unavailable", 5.0),
        (502, b"<html><body>502 Bad Gateway</body></html>", {}, ErrorKind.SERVER_ERROR, None, None),
    ],
)
def test_real_replicate_error_bodies_map_to_the_taxonomy(status: int, body: object, headers: dict[str, str],
                                                          kind: ErrorKind, code: str | None,
                                                          retry: float | None) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    err = classify(status, content, httpx.Headers(headers))
    assert (err.kind, err.provider_code, err.retry_after_s, err.http_status) == (kind, code, retry, status)
    assert err.message


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        ("failed", "The input or output was flagged as sensitive. Please try again with different inputs. (E005)",
         ErrorKind.REFUSED),
        ("failed", "NSFW content detected. Try running it again, or try a different prompt.", ErrorKind.REFUSED),
        ("failed", "All generated images contained NSFW content. Try running it again with a different prompt.",
         ErrorKind.REFUSED),
        ("failed", "Your prompt was blocked by the safety filter.", ErrorKind.REFUSED),
        ("failed", "CUDA out of memory. Tried to allocate 2.00 GiB", ErrorKind.SERVER_ERROR),
        ("failed", "Prediction interrupted; please retry (code: PA)", ErrorKind.SERVER_ERROR),
        ("failed", None, ErrorKind.SERVER_ERROR),
        ("canceled", None, ErrorKind.TIMEOUT),
        ("aborted", None, ErrorKind.TIMEOUT),
    ],
)
def test_predictions_that_end_without_output_are_classified_by_status_and_error_text(
        status: str, error: str | None, kind: ErrorKind) -> None:
    err = failure({"id": "p1", "status": status, "error": error}, 200)
    assert (err.kind, err.provider_code, err.request_id) == (kind, status, "p1")
    assert err.message


def test_provider_timings_keep_metrics_timestamps_and_the_queue_split() -> None:
    timings = provider_timings({
        "metrics": {"predict_time": 0.61, "total_time": 1.24, "image_count": 1},
        "created_at": "2026-08-01T12:00:00.000Z", "started_at": "2026-08-01T12:00:00.600Z",
        "completed_at": "2026-08-01T12:00:01.240Z"})
    assert timings["predict_time"] == 0.61 and timings["total_time"] == 1.24
    assert timings["queue_time"] == pytest.approx(0.6)
    assert timings["completed_at"] == "2026-08-01T12:00:01.240Z"


@given(st.integers(1, 60))
def test_prefer_wait_takes_one_to_sixty_seconds(seconds: int) -> None:
    assert wire.parse_prefer_wait(f"wait={seconds}") == seconds
    assert wire.parse_prefer_wait("wait") == wire.MAX_WAIT_S


@given(st.one_of(st.integers(61, 10_000), st.integers(-100, 0)))
def test_prefer_wait_outside_the_range_is_rejected(seconds: int) -> None:
    with pytest.raises(ValueError):
        wire.parse_prefer_wait(f"wait={seconds}")


@given(st.integers(0, 48 * 3600))
def test_cancel_after_durations_round_trip(seconds: int) -> None:
    assert wire.parse_duration(wire.format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "seconds"), [("1m", 60), ("90s", 90), ("1h30m", 5400), ("500ms", 0.5),
                                               ("2m30s", 150)])
def test_go_durations_parse(text: str, seconds: float) -> None:
    assert wire.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "m", "1x", "5m garbage"])
def test_malformed_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        wire.parse_duration(text)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))  # noqa: DTZ001
@settings(max_examples=50)
def test_timestamps_round_trip_to_the_microsecond(moment: datetime) -> None:
    aware = moment.replace(tzinfo=UTC)
    parsed = wire.parse_timestamp(wire.format_timestamp(aware))
    assert parsed is not None and abs(parsed - aware) < timedelta(microseconds=1)


@given(st.integers(100, 599), st.binary(max_size=300))
@settings(max_examples=200)
def test_classification_never_fails_on_arbitrary_answers(status: int, content: bytes) -> None:
    err = classify(status, content, httpx.Headers())
    assert isinstance(err.kind, ErrorKind) and err.message and err.http_status == status


@pytest.mark.parametrize(("options", "message"), [({"wait_s": 61}, "wait_s"), ({"wait_s": True}, "wait_s"),
                                                  ({"cancel_after": "soon"}, "cancel_after"),
                                                  ({"poll_interval_s": "fast"}, "poll_interval_s"),
                                                  ({"version": 3}, "version")])
def test_bad_target_options_are_rejected_naming_the_option(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ReplicateProvider("http://x", "k", options)
    assert message in str(info.value)


def test_a_sandbox_run_stores_results_and_replicates_own_timings(tiny_suite: Path, tmp_path: Path) -> None:
    chosen = select(load_targets(), ["gemini-2.5-flash-image@replicate"])
    db = tmp_path / "r" / "h.db"
    result = start_run(db, load(tiny_suite), chosen, resolve_keys(chosen, sandbox=True),
                       RunOptions(sandbox=True, time_scale=SCALE, sandbox_faults=False, concurrency=4))
    with Store.open(db, readonly=True) as store:
        frame = run_store.attempts_frame(store, [result.run_id], [*run_store.ATTEMPT_FRAME_COLUMNS,
                                                                  "provider_timings_json"])
    assert len(frame) == 5 and frame["ok"].all(), frame[["error_kind", "error_message"]]
    assert all("queue_time" in json.loads(t) for t in frame["provider_timings_json"])
    assert (frame["ttfb_ms"] <= frame["latency_ms"]).all()
    assert (frame["cost_source"] == "per_image").all()
