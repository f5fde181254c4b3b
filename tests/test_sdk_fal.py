"""The official ``fal-client`` SDK works against the sandbox unchanged: through its own host variables, over TLS.

fal_client has no base-URL argument and no plain-HTTP mode: it builds every URL as ``https://{FAL_RUN_HOST}/``
and ``https://{FAL_QUEUE_RUN_HOST}/`` (``fal_client.client.RUN_URL_FORMAT`` / ``QUEUE_URL_FORMAT``, with both
hosts read from the environment when ``fal_client.auth`` is imported). So these tests serve the same sandbox
app over TLS on 127.0.0.1, with a certificate from a throwaway CA, and run the SDK in a subprocess whose
environment sets ``FAL_RUN_HOST=127.0.0.1:PORT/fal/run``, ``FAL_QUEUE_RUN_HOST=127.0.0.1:PORT/fal/queue``,
``SSL_CERT_FILE`` (httpx then trusts that CA) and ``FAL_KEY``. Nothing in the SDK is patched; it follows the
``status_url``/``response_url``/``cancel_url`` the sandbox returns and downloads from its CDN route.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fal_client.auth
import fal_client.client
import pytest

from harness.sandbox.servers import SandboxServer
from harness.sandbox.simulation import SandboxSettings
from harness.wire import fal as wire
from tests.certificates import make_certificates
from tests.conftest import photo_like

SCENARIOS = textwrap.dedent('''
    import json, sys, traceback
    import httpx, fal_client
    from io import BytesIO
    from PIL import Image

    client = fal_client.SyncClient()
    report = {}

    def size(url):
        return list(Image.open(BytesIO(httpx.get(url).content)).size)

    def scenario(fn):
        try:
            report[fn.__name__] = fn()
        except fal_client.client.FalClientHTTPError as exc:
            report[fn.__name__] = {"http_error": exc.status_code, "message": str(exc.message),
                                   "error_type": exc.error_type}
        except Exception as exc:
            report[fn.__name__] = {"crash": traceback.format_exc()}

    @scenario
    def queue():
        handle = client.submit("fal-ai/flux/dev", {"prompt": "a fox", "image_size": "square"})
        events = list(handle.iter_events(with_logs=True, interval=0.01))
        result = handle.get(interval=0.01)
        return {"urls": [handle.status_url, handle.response_url, handle.cancel_url],
                "events": [type(e).__name__ for e in events], "metrics": events[-1].metrics,
                "logs": events[-1].logs, "image": result["images"][0], "size": size(result["images"][0]["url"]),
                "nsfw": result["has_nsfw_concepts"]}

    @scenario
    def subscribe():
        updates = []
        result = client.subscribe("fal-ai/nano-banana", {"prompt": "a fox", "aspect_ratio": "3:2"}, with_logs=True,
                                  interval=0.01, on_queue_update=lambda s: updates.append(type(s).__name__))
        return {"updates": updates, "size": size(result["images"][0]["url"]), "description": result["description"]}

    @scenario
    def run():
        result = client.run("fal-ai/nano-banana-pro", {"prompt": "a fox", "aspect_ratio": "1:1", "resolution": "2K",
                                                        "output_format": "jpeg"})
        return {"size": size(result["images"][0]["url"]), "content_type": result["images"][0]["content_type"]}

    @scenario
    def edit():
        reference = fal_client.encode(open(sys.argv[1], "rb").read(), "image/png")
        result = client.subscribe("fal-ai/nano-banana/edit", {"prompt": "make it blue", "image_urls": [reference]},
                                  interval=0.01)
        return {"size": size(result["images"][0]["url"])}

    @scenario
    def validation():
        return client.run("fal-ai/nano-banana", {"prompt": "x", "aspect_ratio": "7:3"})

    @scenario
    def wrong_key():
        return fal_client.SyncClient(key="invalid").run("fal-ai/flux/dev", {"prompt": "x"})

    @scenario
    def refused():
        handle = client.submit("fal-ai/nano-banana", {"prompt": "x [sandbox-fault:refused]"})
        final = list(handle.iter_events(interval=0.01))[-1]
        report["refused_status"] = {"error": final.error, "error_type": final.error_type}
        return handle.get(interval=0.01)

    @scenario
    def cancel():
        handle = client.submit("fal-ai/flux/dev", {"prompt": "x [sandbox-fault:timeout]"})
        handle.cancel()
        final = handle.status()
        try:
            handle.cancel()
            again = None
        except fal_client.client.FalClientHTTPError as exc:
            again = exc.status_code
        return {"status": type(final).__name__, "error_type": final.error_type, "cancel_again": again}

    print(json.dumps(report))
''')


@pytest.fixture(scope="module")
def tls_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """The sandbox app served over TLS on 127.0.0.1 (100x faster than real time, no random faults); yields
    its port and the CA file to trust."""
    directory = tmp_path_factory.mktemp("tls")
    ca, cert, key = make_certificates(directory)
    server = SandboxServer(settings=SandboxSettings(time_scale=0.01, faults=False, seed=5),
                           ssl_certfile=cert, ssl_keyfile=key).start()
    assert server.root.startswith("https://")
    port = server.port
    yield port, ca
    server.stop()


@pytest.fixture(scope="module")
def report(tls_sandbox: tuple[int, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What each SDK scenario observed (one subprocess runs them all; each scenario fails on its own)."""
    port, ca = tls_sandbox
    reference = tmp_path_factory.mktemp("ref") / "ref.png"
    reference.write_bytes(photo_like((96, 64), 4))
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(FAL_RUN_HOST=f"127.0.0.1:{port}{wire.SANDBOX_PREFIX}{wire.SANDBOX_RUN}",
               FAL_QUEUE_RUN_HOST=f"127.0.0.1:{port}{wire.SANDBOX_PREFIX}{wire.SANDBOX_QUEUE}",
               SSL_CERT_FILE=str(ca), FAL_KEY="sandbox-key-id:sandbox-key-secret", NO_PROXY="127.0.0.1")
    proc = subprocess.run([sys.executable, "-c", SCENARIOS, str(reference)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    observed: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    crashes = {name: r["crash"] for name, r in observed.items() if isinstance(r, dict) and "crash" in r}
    assert not crashes, crashes
    return observed


def test_fal_client_builds_only_https_urls_from_its_host_variables() -> None:
    assert f"https://{fal_client.auth.FAL_RUN_HOST}/" == fal_client.client.RUN_URL_FORMAT
    assert f"https://{fal_client.auth.FAL_QUEUE_RUN_HOST}/" == fal_client.client.QUEUE_URL_FORMAT


def test_submit_status_and_result_follow_the_returned_urls(report: dict[str, Any],
                                                           tls_sandbox: tuple[int, Path]) -> None:
    port, _ = tls_sandbox
    queue = report["queue"]
    base = f"https://127.0.0.1:{port}/fal/queue/fal-ai/flux/requests/"
    assert all(url.startswith(base) for url in queue["urls"])
    assert queue["events"][-1] == "Completed" and set(queue["events"]) <= {"Queued", "InProgress", "Completed"}
    assert queue["metrics"]["inference_time"] > 0
    assert queue["logs"] and queue["logs"][0]["source"] == "USER"
    assert queue["image"]["url"].startswith(f"https://127.0.0.1:{port}/fal/cdn/files/")
    assert queue["size"] == [512, 512] == [queue["image"]["width"], queue["image"]["height"]]
    assert queue["nsfw"] == [False]


def test_subscribe_reports_queue_updates_and_gets_a_gemini_sized_image(report: dict[str, Any]) -> None:
    sub = report["subscribe"]
    assert sub["updates"][-1] == "Completed"
    assert sub["size"] == [1248, 832]
    assert sub["description"] == ""


def test_run_calls_the_sync_host(report: dict[str, Any]) -> None:
    assert report["run"] == {"size": [2048, 2048], "content_type": "image/jpeg"}


def test_an_edit_with_a_data_url_follows_the_input_aspect_ratio(report: dict[str, Any]) -> None:
    assert report["edit"]["size"] == [1248, 832]


def test_errors_reach_the_sdk_as_fal_client_http_errors(report: dict[str, Any]) -> None:
    validation = report["validation"]
    assert validation["http_error"] == 422 and "literal_error" in validation["message"]
    assert report["wrong_key"] == {"http_error": 401, "message": wire.AUTH_NO_USER, "error_type": None}
    refused = report["refused"]
    assert refused["http_error"] == 422 and "content_policy_violation" in refused["message"]
    assert report["refused_status"]["error_type"] == "content_policy_violation"
    assert report["refused_status"]["error"]


def test_cancel_ends_the_request_and_a_second_cancel_is_refused(report: dict[str, Any]) -> None:
    assert report["cancel"] == {"status": "Completed", "error_type": "request_cancelled", "cancel_again": 400}
