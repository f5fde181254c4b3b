"""The echo-images adapter: one POST, the PNG in the body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.providers.base import GenerationRequest, GenerationResult, OutputImage, Provider, ProviderError
from harness.providers.common import parse_retry_after, status_kind
from harness.timing import TimedHttp
from harness_echo_images import wire


class EchoImagesProvider(Provider):
    """Echo Images: POST a prompt, get the PNG back (test plugin)."""

    protocol = "echo-images"

    async def exchange(self, request: GenerationRequest, http: TimedHttp) -> GenerationResult:
        width, height = wire.pixel_size(request.size)
        response = await http.request(
            "POST", self.base_url + wire.GENERATE_PATH, label="generate",
            json={"model": request.model_id, "prompt": request.prompt, "width": width, "height": height},
            headers={"Authorization": f"Bearer {self.api_key}"},
        )
        request_id = response.headers.get(wire.REQUEST_ID_HEADER)
        if response.status_code != 200:
            body: Any = response.json() if response.headers.get("content-type", "").startswith(
                "application/json") else {}
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise ProviderError(status_kind(response.status_code), str(error.get("message") or response.text),
                                http_status=response.status_code, provider_code=error.get("code"),
                                retry_after_s=parse_retry_after(response.headers), request_id=request_id)
        return GenerationResult(images=[OutputImage(response.content, response.headers.get("content-type"))],
                                request_id=request_id, expected_size=(width, height))

    @classmethod
    def sandbox_base_url(cls, sandbox_root: str, options: Mapping[str, Any]) -> str:
        return sandbox_root.rstrip("/") + wire.SANDBOX_PREFIX


class EchoImagesDirectProvider(EchoImagesProvider):
    """Echo Images registered as an adapter alone (the older entry-point form): the sandbox does not serve it."""

    protocol = "echo-images-direct"
