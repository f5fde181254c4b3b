"""Keys go only to their own origins, and URLs a provider names reach only public addresses: each promise
tried with a hostile provider on loopback that redirects, names foreign status URLs and points downloads at
this machine."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpcore
import pytest
from PIL import Image

from harness import origins
from harness.http_pool import ClientPool, GuardedBackend
from harness.network import ArrivalBackend
from harness.origins import OriginPolicy, RefusedURL, address_problem, origin_of, redirect_keeps_credentials
from harness.providers.base import GenerationRequest, Provider
from harness.providers.registry import get_protocol
from harness.run import perform_attempt
from harness.run.attempt import AttemptOutcome
from harness.targets import Target
from tests.test_redaction_providers import CREDENTIAL_HEADERS, KEY, MODELS, Seen, hostile_server, sent_key

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def png(size: tuple[int, int] = (1024, 1024)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def adapter(protocol: str, base_url: str, *, allow_private_network: bool | None = None, **options: Any) -> Provider:
    cls = get_protocol(protocol)
    policy = cls.origin_policy(base_url, allow_private_network=allow_private_network)
    return cls(base_url, KEY, {"wait_s": 0, "poll_interval_s": 0.01, **options} if protocol == "replicate"
               else {"poll_interval_s": 0.01, **options} if protocol == "fal" else options, policy=policy)


async def attempt(provider: Provider, protocol: str) -> AttemptOutcome:
    request = GenerationRequest(model_id=MODELS[protocol], prompt="a fox", aspect_ratio="1:1", seed=1)
    async with ClientPool(1, timeout=10, follow_redirects=True) as pool, pool.lease() as client:
        return await perform_attempt(provider, request, client, 20)


def credentials_seen(seen: list[Seen]) -> list[str]:
    return [f"{s.method} {s.path}: {name}" for s in seen for name in CREDENTIAL_HEADERS if name in s.headers]


# ---- redirects -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", list(MODELS))
async def test_a_redirect_to_another_origin_carries_no_key(protocol: str) -> None:
    """Gemini's ``x-goog-api-key`` used to follow a 307 anywhere (httpx strips only ``Authorization``)."""
    with hostile_server(lambda s, r: (401, {}, b"no")) as elsewhere, \
            hostile_server(lambda s, r: (307, {"location": elsewhere.root + s.path}, b"")) as base:
        outcome = await attempt(adapter(protocol, base.root), protocol)
    assert base.seen and all(sent_key(s.headers) == KEY for s in base.seen)
    assert elsewhere.seen, "the redirect was followed"
    assert credentials_seen(elsewhere.seen) == []
    assert outcome.error is not None


def test_redirect_rules() -> None:
    url = __import__("httpx").URL
    policy = OriginPolicy.for_urls(["https://queue.fal.run"], allow_private_network=False)
    assert redirect_keeps_credentials(policy, url("https://queue.fal.run/a"), url("https://queue.fal.run/b"))
    assert not redirect_keeps_credentials(policy, url("https://queue.fal.run/a"), url("http://queue.fal.run/b"))
    assert not redirect_keeps_credentials(policy, url("https://queue.fal.run/a"), url("https://evil.example/b"))
    assert not redirect_keeps_credentials(None, url("https://a.example/"), url("https://a.example:8443/"))
    assert redirect_keeps_credentials(None, url("https://a.example/x"), url("https://A.example:443/y"))


def test_fal_documents_its_queue_and_run_hosts_as_one_service() -> None:
    policy = get_protocol("fal").origin_policy("https://queue.fal.run")
    assert policy.may_send_credentials("https://queue.fal.run/fal-ai/flux/requests/1/status")
    assert policy.may_send_credentials("https://fal.run/fal-ai/flux/dev")
    assert not policy.may_send_credentials("http://queue.fal.run/x")
    assert not policy.may_send_credentials("https://v3.fal.media/files/x.png")
    assert not policy.allow_private_network


def test_a_target_can_name_more_credential_origins_and_mark_itself_local() -> None:
    target = Target(name="gw", model="m", provider="p", protocol="openai-images", base_url="https://gw.example/v1",
                    credential_origins=("https://files.gw.example",), allow_private_network=True)
    policy = target.origin_policy()
    assert policy.may_send_credentials("https://files.gw.example/x") and policy.allow_private_network
    assert Target(name="l", model="m", provider="p", protocol="gemini",
                  base_url="http://127.0.0.1:9000").origin_policy().allow_private_network
    with pytest.raises(ValueError, match="not an http"):
        Target(name="x", model="m", provider="p", protocol="gemini", base_url="https://a.example",
               credential_origins=("ftp://a.example",))


async def test_a_redirect_to_a_private_address_is_refused_for_a_public_target() -> None:
    """The generate call itself redirected to a cloud metadata address: refused before any connection."""
    with hostile_server(lambda s, r: (307, {"location": "http://169.254.169.254/latest/meta-data/"}, b"")) as base:
        outcome = await attempt(adapter("gemini", base.root, allow_private_network=False), "gemini")
    assert outcome.error is not None and outcome.error.provider_code == "refused_url"
    assert "169.254.169.254" in outcome.error.message and "link-local" in outcome.error.message


async def test_a_name_that_does_not_resolve_is_a_connection_failure_not_a_refusal() -> None:
    with hostile_server(answering("openai-images", "http://no-such-host.invalid/x.png")) as base:
        outcome = await attempt(adapter("openai-images", base.root, allow_private_network=False), "openai-images")
    assert outcome.error is not None and outcome.error.kind.value == "connection"


# ---- URLs named in answers -------------------------------------------------------------------------------


async def test_fal_never_sends_the_key_to_a_status_url_on_another_origin() -> None:
    with hostile_server(lambda s, r: (200, {}, b'{"status": "COMPLETED"}')) as elsewhere:
        def submit(seen: Seen, root: str) -> tuple[int, dict[str, str], bytes]:
            body = {"request_id": "r1", "status_url": f"{elsewhere.root}/s", "response_url": f"{elsewhere.root}/r",
                    "cancel_url": f"{elsewhere.root}/c"}
            return 200, {"content-type": "application/json"}, json.dumps(body).encode()

        with hostile_server(submit) as base:
            outcome = await attempt(adapter("fal", base.root), "fal")
    assert elsewhere.seen == []
    assert outcome.error is not None and outcome.error.provider_code == "refused_url"
    assert "status_url" in outcome.error.message and outcome.error.kind.value == "bad_output"


async def test_replicate_polls_its_own_origin_not_the_url_the_answer_names() -> None:
    image = base64.b64encode(png()).decode()
    with hostile_server(lambda s, r: (200, {}, b"{}")) as elsewhere:
        def predictions(seen: Seen, root: str) -> tuple[int, dict[str, str], bytes]:
            if seen.method == "POST":
                body: dict[str, Any] = {"id": "p1", "status": "starting",
                                        "urls": {"get": f"{elsewhere.root}/p1", "cancel": f"{elsewhere.root}/c"}}
                return 201, {"location": f"{elsewhere.root}/p1"}, json.dumps(body).encode()
            body = {"id": "p1", "status": "succeeded", "output": [f"data:image/png;base64,{image}"]}
            return 200, {}, json.dumps(body).encode()

        with hostile_server(predictions) as base:
            outcome = await attempt(adapter("replicate", base.root), "replicate")
    assert elsewhere.seen == []
    assert [s.path for s in base.seen if s.method == "GET"] == ["/predictions/p1"]
    assert outcome.error is None, outcome.error


def image_answer(protocol: str, url: str) -> bytes:
    if protocol == "openai-images":
        return json.dumps({"data": [{"url": url}]}).encode()
    if protocol == "openrouter":
        message = {"role": "assistant", "images": [{"type": "image_url", "image_url": {"url": url}}]}
        return json.dumps({"id": "g1", "choices": [{"message": message, "finish_reason": "stop"}]}).encode()
    if protocol == "fal":
        return json.dumps({"images": [{"url": url}]}).encode()
    return json.dumps({"id": "p1", "status": "succeeded", "output": [url]}).encode()


DOWNLOADING = ["openai-images", "openrouter", "fal", "replicate"]


def answering(protocol: str, url: str) -> Any:
    def answer(seen: Seen, root: str) -> tuple[int, dict[str, str], bytes]:
        if protocol == "fal" and seen.method == "POST":
            body = {"request_id": "r1", "status_url": f"{root}/fal-ai/flux/requests/r1/status",
                    "response_url": f"{root}/fal-ai/flux/requests/r1"}
            return 200, {}, json.dumps(body).encode()
        if protocol == "fal" and seen.path.endswith("/status"):
            return 200, {}, b'{"status": "COMPLETED"}'
        return 200 if protocol != "replicate" else 201, {"content-type": "application/json"}, image_answer(protocol, url)
    return answer


@pytest.mark.parametrize("protocol", DOWNLOADING)
async def test_an_image_url_on_this_machine_is_not_fetched_for_a_public_target(protocol: str) -> None:
    """SSRF: the provider names http://127.0.0.1:<another port>/…; a public target must not fetch it."""
    with hostile_server(lambda s, r: (200, {"content-type": "image/png"}, png())) as internal, \
            hostile_server(answering(protocol, f"{internal.root}/admin/image.png")) as base:
        outcome = await attempt(adapter(protocol, base.root, allow_private_network=False), protocol)
    assert internal.seen == []
    assert outcome.error is not None and outcome.error.provider_code == "refused_url"
    assert "loopback" in outcome.error.message and outcome.error.kind.value == "bad_output"


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://localhost:1/x.png",
                                 "http://[::1]:1/x.png", "http://10.0.0.1/x.png", "http://0.0.0.0:1/",
                                 "file:///etc/passwd", "gopher://127.0.0.1/", "http://[::ffff:127.0.0.1]:1/",
                                 "http://0x7f000001:1/x.png", "http://2130706433:1/x.png"])
async def test_private_and_odd_urls_are_refused_with_a_reason(url: str) -> None:
    with hostile_server(answering("openai-images", url)) as base:
        outcome = await attempt(adapter("openai-images", base.root, allow_private_network=False), "openai-images")
    assert outcome.error is not None and outcome.error.provider_code == "refused_url", outcome.error


async def test_a_local_target_still_fetches_images_from_its_own_network() -> None:
    with hostile_server(lambda s, r: (200, {"content-type": "image/png"}, png())) as files, \
            hostile_server(answering("openai-images", f"{files.root}/x.png")) as base:
        outcome = await attempt(adapter("openai-images", base.root), "openai-images")
    assert outcome.error is None, outcome.error
    assert files.seen and credentials_seen(files.seen) == [], "downloads never carry the key"


async def test_a_non_image_answer_is_recorded_by_type_and_size_only() -> None:
    secret = b"<html>internal admin page: db password hunter2</html>"
    with hostile_server(lambda s, r: (200, {"content-type": "text/html"}, secret)) as files, \
            hostile_server(answering("openai-images", f"{files.root}/x.png")) as base:
        outcome = await attempt(adapter("openai-images", base.root), "openai-images")
    assert outcome.error is not None and outcome.error.kind.value == "bad_output"
    assert "hunter2" not in outcome.error.message and "<html" not in outcome.error.message
    assert "text/html" in outcome.error.message and str(len(secret)) in outcome.error.message


async def test_an_inline_non_image_is_recorded_by_type_and_size_only() -> None:
    body = json.dumps({"data": [{"b64_json": base64.b64encode(b"secret: hunter2 " * 4).decode()}]}).encode()
    with hostile_server(lambda s, r: (200, {}, body)) as base:
        outcome = await attempt(adapter("openai-images", base.root), "openai-images")
    assert outcome.error is not None and outcome.error.kind.value == "bad_output"
    assert "hunter2" not in outcome.error.message


# ---- the address check itself ----------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "problem"), [("127.0.0.1", "loopback"), ("10.1.2.3", "private"),
                                                  ("169.254.169.254", "link-local"), ("224.0.0.1", "multicast"),
                                                  ("0.0.0.0", "unspecified"), ("::1", "loopback"),
                                                  ("fd00::1", "private"), ("100.64.0.1", "non-public"),
                                                  ("::ffff:10.0.0.1", "private"), ("240.0.0.1", "reserved")])
def test_non_public_addresses_are_named(address: str, problem: str) -> None:
    found = address_problem(address)
    assert found is not None and found.startswith(problem)


def test_public_addresses_pass() -> None:
    assert address_problem("8.8.8.8") is None and address_problem("2606:4700:4700::1111") is None


async def test_the_connection_goes_to_the_address_that_was_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name is resolved once, and the socket is opened to that checked address; a second
    resolution (which could answer 127.0.0.1) never happens."""
    answers = iter([[("8.8.4.4", 443)], [("127.0.0.1", 443)]])
    resolved: list[str] = []
    connected: list[str] = []

    async def fake_getaddrinfo(host: str, port: int, **kwargs: Any) -> list[Any]:
        resolved.append(host)
        return [(2, 1, 6, "", addr) for addr in next(answers)]

    async def fake_connect(self: ArrivalBackend, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        connected.append(host)
        raise httpcore.ConnectError("test stops here")

    import asyncio

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_getaddrinfo)
    monkeypatch.setattr(ArrivalBackend, "connect_tcp", fake_connect)
    token = origins.use_policy(OriginPolicy.for_urls(["https://api.example.com"], allow_private_network=False))
    try:
        with pytest.raises(httpcore.ConnectError):
            await GuardedBackend().connect_tcp("images.example.net", 443, timeout=5)
    finally:
        origins.reset_policy(token)
    assert resolved == ["images.example.net"] and connected == ["8.8.4.4"]


async def test_a_dns_answer_mixing_public_and_private_addresses_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake_getaddrinfo(host: str, port: int, **kwargs: Any) -> list[Any]:
        return [(2, 1, 6, "", ("8.8.4.4", port)), (2, 1, 6, "", ("10.0.0.7", port))]

    import asyncio

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(RefusedURL, match=r"10\.0\.0\.7, a private address"):
        await origins.resolve_public("images.example.net", 443)


def test_origins_are_normalised() -> None:
    assert origin_of("HTTPS://Queue.Fal.Run:443/x") == origin_of("https://queue.fal.run/y")
    assert origin_of("https://queue.fal.run.:443") == origin_of("https://queue.fal.run")
    assert origin_of("data:image/png;base64,AA") is None and origin_of("/relative") is None
    assert str(origin_of("http://[::1]:8080/x")) == "http://[::1]:8080"


async def test_an_adapter_that_overrides_generate_is_still_redacted_and_guarded() -> None:
    """A third-party adapter written against the old interface (``generate``) gets the same treatment."""
    from harness.providers.base import ErrorKind, GenerationResult, ProviderError
    from harness.timing import TimedHttp

    class Legacy(Provider):
        protocol = "legacy-test"

        @classmethod
        def sandbox_base_url(cls, sandbox_root: str, options: Any) -> str:
            return sandbox_root

        async def generate(self, request: GenerationRequest, http: TimedHttp) -> GenerationResult:
            assert origins.current_policy() is self.policy
            raise ProviderError(ErrorKind.AUTH, f"bad key {self.api_key}", provider_code=self.api_key)

    provider = Legacy("https://legacy.example", KEY)
    outcome = await attempt(provider, "openai-images")
    assert outcome.error is not None and KEY not in outcome.error.message and KEY not in str(outcome.error.provider_code)
    assert origins.current_policy() is None
