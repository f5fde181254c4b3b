"""The official ``replicate`` SDK works against the sandbox unchanged but for ``base_url`` (and the token).

The SDK's paths start with ``/v1``, so its base URL is the sandbox's ``/replicate`` prefix. Outputs come back
as plain URL strings: the SDK wraps only ``https:`` URLs in ``FileOutput``, and the sandbox is plain HTTP.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
import replicate
from PIL import Image
from replicate.exceptions import ModelError, ReplicateError

from harness.sandbox.replicate import version_id
from harness.sandbox.servers import SandboxServer
from harness.wire import replicate as wire

POLL_S = 0.01
"""The SDK's poll interval for these tests (its default is 0.5 s; the sandbox runs 100x faster)."""


def sdk_base(sandbox: SandboxServer) -> str:
    return sandbox.base_urls()["replicate"].removesuffix("/v1")


@pytest.fixture
def transport() -> Iterator[httpx.HTTPTransport]:
    """The connection pool the SDK's client uses (passed through its ``**kwargs`` to httpx): the SDK has no
    ``close()``, so the test closes the pool itself."""
    pool = httpx.HTTPTransport()
    yield pool
    pool.close()


@pytest.fixture
def client(sandbox: SandboxServer, transport: httpx.HTTPTransport) -> replicate.Client:
    c = replicate.Client(api_token="r8_sandbox", base_url=sdk_base(sandbox), transport=transport)
    c.poll_interval = POLL_S
    return c


def fetch(url: str) -> Image.Image:
    with httpx.Client(timeout=10) as http:
        response = http.get(url)
    response.raise_for_status()
    return Image.open(io.BytesIO(response.content))


def test_run_returns_nano_bananas_single_output_url(client: replicate.Client, sandbox: SandboxServer) -> None:
    output = client.run("google/nano-banana", input={"prompt": "a watercolor fox", "aspect_ratio": "16:9",
                                                     "output_format": "png"})
    assert isinstance(output, str) and output.startswith(sandbox.root)
    assert fetch(output).size == (1344, 768)


def test_run_with_a_short_wait_falls_back_to_polling_and_returns_the_list(client: replicate.Client) -> None:
    output = client.run("black-forest-labs/flux-schnell", input={"prompt": "two foxes", "num_outputs": 2,
                                                                 "aspect_ratio": "4:3", "output_format": "jpg"},
                        wait=1)
    assert isinstance(output, list) and len(output) == 2
    assert {fetch(url).size for url in output} == {(1152, 896)}


def test_create_then_wait_polls_to_succeeded_with_metrics(client: replicate.Client) -> None:
    prediction = client.models.predictions.create(model="black-forest-labs/flux-schnell",
                                                  input={"prompt": "a fox", "output_format": "png"})
    assert prediction.status == wire.STARTING
    assert prediction.urls is not None and prediction.urls["get"].endswith(f"/v1/predictions/{prediction.id}")
    prediction.wait()
    assert prediction.status == wire.SUCCEEDED
    assert isinstance(prediction.output, list) and len(prediction.output) == 1
    assert prediction.metrics is not None and prediction.metrics["predict_time"] > 0
    assert prediction.started_at and prediction.completed_at and prediction.created_at
    assert "Running prediction" in (prediction.logs or "")


def test_a_version_id_creates_through_the_predictions_route(client: replicate.Client) -> None:
    prediction = client.predictions.create(version=version_id("google/nano-banana"), input={"prompt": "a fox"},
                                           wait=True)
    assert prediction.model == "google/nano-banana"
    assert prediction.version == version_id("google/nano-banana")
    assert prediction.status in (wire.PROCESSING, wire.SUCCEEDED) and isinstance(prediction.output, str)
    reloaded = client.predictions.get(prediction.id)
    assert reloaded.id == prediction.id


def test_cancel_stops_a_running_prediction(client: replicate.Client) -> None:
    prediction = client.models.predictions.create(model="google/nano-banana",
                                                  input={"prompt": "a fox [sandbox-fault:timeout]"})
    prediction.cancel()
    assert prediction.status == wire.CANCELED
    assert client.predictions.get(prediction.id).status == wire.CANCELED


def test_the_output_stream_sends_the_file_then_done(client: replicate.Client) -> None:
    prediction = client.models.predictions.create(model="google/nano-banana", input={"prompt": "a fox"})
    events = list(prediction.stream())
    kinds = [e.event.value for e in events]
    assert kinds == ["output", "done"]
    assert str(events[0]).startswith("http")


def test_a_failed_prediction_raises_model_error_with_replicates_text(client: replicate.Client) -> None:
    with pytest.raises(ModelError) as info:
        client.run("google/nano-banana", input={"prompt": "a fox [sandbox-fault:refused]"})
    assert info.value.prediction.status == wire.FAILED
    assert "(E005)" in str(info.value)


@pytest.mark.parametrize(
    ("token", "model", "model_input", "status", "title"),
    [
        ("invalid", "google/nano-banana", {"prompt": "x"}, 401, "Unauthenticated"),
        ("r8_sandbox", "google/nano-banana", {"prompt": "x [sandbox-fault:quota_exhausted]"}, 402,
         "Insufficient credit"),
        ("r8_sandbox", "google/nano-banana", {"prompt": "x", "output_format": "gif"}, 422,
         wire.VALIDATION_TITLE),
        ("r8_sandbox", "google/no-such-model", {"prompt": "x"}, 404, "Not found"),
        ("r8_sandbox", "google/nano-banana", {"prompt": "x [sandbox-fault:rate_limited]"}, 429,
         "Request was throttled"),
    ],
)
def test_http_errors_raise_replicate_error_with_problem_details(sandbox: SandboxServer,
                                                                transport: httpx.HTTPTransport, token: str,
                                                                model: str, model_input: dict[str, object],
                                                                status: int, title: str) -> None:
    c = replicate.Client(api_token=token, base_url=sdk_base(sandbox), transport=transport)
    with pytest.raises(ReplicateError) as info:
        c.models.predictions.create(model=model, input=model_input)
    assert (info.value.status, info.value.title) == (status, title)
    assert info.value.detail
