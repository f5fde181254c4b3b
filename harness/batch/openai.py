"""OpenAI's Batch API for image generations (https://platform.openai.com/docs/guides/batch; wire facts in
:mod:`harness.wire.openai_images`).

Submit: the requests as a JSONL file (one ``{"custom_id", "method": "POST", "url": "/v1/images/generations",
"body"}`` per line, the body exactly as the interactive adapter sends it) uploaded with ``POST /files``
(``purpose=batch``), then ``POST /batches`` with ``endpoint`` and ``completion_window: "24h"``. Poll:
``GET /batches/{id}``; ``validating`` is pending, ``in_progress``/``finalizing``/``cancelling`` running,
``completed``/``failed``/``expired``/``cancelled`` terminal. Collect: ``GET /files/{id}/content`` of the
``output_file_id`` and ``error_file_id``; each line is correlated by ``custom_id``. A line whose
``response.status_code`` is 200 is parsed as the interactive answer would be; another status is classified
from its error body as the interactive endpoint's error would be; a line with only ``error`` (``batch_expired``,
``batch_cancelled``) is a ``timeout``: the batch's window ended before the request ran, and it is not billed
("Developers will be charged for any completed work", https://help.openai.com/en/articles/9197833-batch-api-faq).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from harness.batch.model import JobState, JobStatus, LineOutcome
from harness.batch.protocol import BatchProtocol
from harness.providers.base import ChallengeKind, ErrorKind, GenerationRequest, ProviderError
from harness.providers.common import json_or_none, trim
from harness.providers.openai_images import OpenAIImagesProvider, classify, result_from_body
from harness.wire import openai_images as wire

STATES = {"validating": JobState.PENDING, "in_progress": JobState.RUNNING, "finalizing": JobState.RUNNING,
          "cancelling": JobState.RUNNING, "completed": JobState.SUCCEEDED, "failed": JobState.FAILED,
          "expired": JobState.EXPIRED, "cancelled": JobState.CANCELLED}
"""OpenAI's ``Batch.status`` -> the harness's job state."""


class OpenAIBatch(BatchProtocol):
    """Batch mode of the ``openai-images`` protocol (generations only: a batch line's body is JSON)."""

    protocol = "openai-images"
    max_requests = wire.BATCH_MAX_REQUESTS
    kinds = (ChallengeKind.TEXT_TO_IMAGE,)
    discount = wire.BATCH_DISCOUNT
    discount_url = wire.BATCH_DISCOUNT_URL

    @property
    def _adapter(self) -> OpenAIImagesProvider:
        assert isinstance(self.provider, OpenAIImagesProvider)
        return self.provider

    def _headers(self) -> dict[str, str]:
        return self._adapter._headers()

    def input_file(self, lines: Mapping[str, GenerationRequest]) -> bytes:
        """The JSONL input of a job (one request per line, keyed by ``custom_id``)."""
        rows = []
        for key, request in lines.items():
            body = self._adapter.request_body(request)
            body.pop("stream", None)
            body.pop("partial_images", None)
            rows.append(json.dumps({"custom_id": key, "method": "POST", "url": wire.BATCH_ENDPOINT, "body": body}))
        return ("\n".join(rows) + "\n").encode()

    async def _checked(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise classify(response.status_code, response.content, response.headers)
        body = json_or_none(response.content)
        if not isinstance(body, dict):
            raise ProviderError(ErrorKind.BAD_OUTPUT, "batch API answer is not a JSON object",
                                http_status=response.status_code)
        return body

    async def submit(self, client: httpx.AsyncClient, lines: Mapping[str, GenerationRequest], name: str) -> str:
        base = self.provider.base_url
        data = self.input_file(lines)
        uploaded = await self._checked(await client.post(
            base + wire.FILES_PATH, headers=self._headers(), data={"purpose": wire.BATCH_PURPOSE},
            files={"file": (f"{name}.jsonl", data, "application/jsonl")}))
        created = await self._checked(await client.post(
            base + wire.BATCHES_PATH, headers=self._headers(),
            json={"input_file_id": uploaded["id"], "endpoint": wire.BATCH_ENDPOINT,
                  "completion_window": wire.BATCH_COMPLETION_WINDOW, "metadata": {"harness_job": name}}))
        return str(created["id"])

    async def poll(self, client: httpx.AsyncClient, job_id: str) -> JobStatus:
        body = await self._checked(await client.get(f"{self.provider.base_url}{wire.BATCHES_PATH}/{job_id}",
                                                    headers=self._headers()))
        status = str(body.get("status"))
        state = STATES.get(status)
        if state is None:
            raise ProviderError(ErrorKind.BAD_OUTPUT, f"batch {job_id} has unknown status {status!r}")
        raw_errors = body.get("errors")
        errors = raw_errors.get("data") if isinstance(raw_errors, dict) else None
        message = None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            line = f" (line {first.get('line')})" if first.get("line") is not None else ""
            message = trim(f"{first.get('code')}: {first.get('message')}{line}")
        return JobStatus(state, status, _file_id(body.get("output_file_id")), _file_id(body.get("error_file_id")),
                         message)

    async def _lines(self, client: httpx.AsyncClient, file_id: str | None) -> dict[str, tuple[dict[str, Any], int]]:
        if not file_id:
            return {}
        response = await client.get(f"{self.provider.base_url}{wire.FILES_PATH}/{file_id}/content",
                                    headers=self._headers())
        if response.status_code >= 400:
            raise classify(response.status_code, response.content, response.headers)
        out: dict[str, tuple[dict[str, Any], int]] = {}
        for raw in response.content.splitlines():
            entry = json_or_none(raw)
            if isinstance(entry, dict) and isinstance(entry.get("custom_id"), str):
                out[entry["custom_id"]] = (entry, len(raw))
        return out

    async def collect(self, client: httpx.AsyncClient, job_id: str, status: JobStatus,
                      keys: Sequence[str]) -> dict[str, LineOutcome]:
        lines = await self._lines(client, status.results_ref)
        lines.update(await self._lines(client, status.errors_ref))
        outcomes: dict[str, LineOutcome] = {}
        for key in keys:
            found = lines.get(key)
            if found is None:
                reason = status.message or f"batch {job_id} ended {status.provider_state} without this request"
                code = f"batch_{status.provider_state}"
                kind = ErrorKind.TIMEOUT if status.state is JobState.EXPIRED else (
                    ErrorKind.INVALID_REQUEST if status.state is JobState.FAILED else ErrorKind.SERVER_ERROR)
                outcomes[key] = LineOutcome(error=ProviderError(kind, trim(reason), provider_code=code))
                continue
            entry, nbytes = found
            outcomes[key] = await self._outcome(entry, nbytes)
        return outcomes

    async def _outcome(self, entry: dict[str, Any], nbytes: int) -> LineOutcome:
        response = entry.get("response")
        if not isinstance(response, dict):
            raw_error = entry.get("error")
            err: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
            code = str(err.get("code") or "batch_error")
            kind = ErrorKind.TIMEOUT if code in (wire.BATCH_EXPIRED_CODE, wire.BATCH_CANCELLED_CODE) \
                else ErrorKind.SERVER_ERROR
            return LineOutcome(error=ProviderError(kind, trim(str(err.get("message") or code)), provider_code=code),
                               nbytes=nbytes)
        request_id = response.get("request_id")
        raw_status = response.get("status_code")
        status_code = raw_status if isinstance(raw_status, int) and not isinstance(raw_status, bool) else 0
        body = response.get("body")
        if status_code == 0:
            return LineOutcome(error=ProviderError(ErrorKind.BAD_OUTPUT, f"result line has no status code "
                                                   f"({trim(repr(raw_status))})"), nbytes=nbytes)
        if status_code != 200:
            error = classify(status_code, json.dumps(body).encode(),
                             {wire.REQUEST_ID_HEADER: str(request_id)} if request_id else {})
            return LineOutcome(error=error, nbytes=nbytes)
        try:
            result = await self.provider.vet(result_from_body(body, str(request_id) if request_id else None, None))
        except ProviderError as error:
            return LineOutcome(error=error, nbytes=nbytes)
        return LineOutcome(result=result, nbytes=nbytes)


def _file_id(value: Any) -> str | None:
    """A file id as the batch object gives it (a non-empty string), else None."""
    return value if isinstance(value, str) and value else None
