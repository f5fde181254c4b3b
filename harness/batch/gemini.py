"""Gemini Batch Mode with inline requests (https://ai.google.dev/gemini-api/docs/batch-mode; wire facts in
:mod:`harness.wire.gemini`).

Submit: ``POST {base}/v1beta/models/{model}:batchGenerateContent`` with the requests inline, each the
``GenerateContentRequest`` the interactive adapter would send and ``metadata.key`` its line key (a request for
``n`` images is ``n`` lines, ``key.0`` … with consecutive seeds, as the interactive adapter sends ``n`` calls);
the answer is an Operation named ``batches/{id}``. Poll: ``GET {base}/v1beta/batches/{id}``;
``metadata.state`` ``BATCH_STATE_PENDING`` is pending, ``…_RUNNING`` running, the rest terminal. Collect: the
inlined responses (``metadata.output.inlinedResponses.inlinedResponses``), matched by ``metadata.key``; a
``response`` is read as the interactive answer (images, usage, safety blocks), an ``error`` (a
``google.rpc.Status``) is classified as the interactive error with that status would be. An expired job has no
results ("The job will not have any results to retrieve", the guide's job states): each of its requests fails
as a ``timeout`` with code ``batch_expired``, unbilled.

Jobs are kept small (:data:`MAX_REQUESTS`): inline responses come back inside the poll's answer, and image
jobs of 150 2K requests (about 1.2 GB of answer) have been reported unretrievable — ``batches.get`` failing
with 503/504 while smaller jobs stream
(https://discuss.ai.google.dev/t/gemini-batch-api-succeeded-image-batch-jobs-unretrievable-batches-get-503s-at-the-default-deadline-and-504s-at-extended-deadlines-results-billed-inaccessible/174261).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from harness.batch.model import JobState, JobStatus, LineOutcome
from harness.batch.protocol import BatchProtocol
from harness.providers.base import (
    ChallengeKind,
    ErrorKind,
    GenerationRequest,
    GenerationResult,
    ProviderError,
)
from harness.providers.common import json_or_none, trim
from harness.providers.gemini import Answer, build_body, classify, classify_status, image_config
from harness.wire import gemini as wire

MAX_REQUESTS = 50
"""Requests per job the harness sends by default (a target's ``batch_max_requests`` may lower it); see the
module docstring for why jobs of images are kept small."""

STATES = {"BATCH_STATE_PENDING": JobState.PENDING, "BATCH_STATE_RUNNING": JobState.RUNNING,
          "BATCH_STATE_SUCCEEDED": JobState.SUCCEEDED, "BATCH_STATE_FAILED": JobState.FAILED,
          "BATCH_STATE_CANCELLED": JobState.CANCELLED, "BATCH_STATE_EXPIRED": JobState.EXPIRED,
          "JOB_STATE_PENDING": JobState.PENDING, "JOB_STATE_RUNNING": JobState.RUNNING,
          "JOB_STATE_SUCCEEDED": JobState.SUCCEEDED, "JOB_STATE_FAILED": JobState.FAILED,
          "JOB_STATE_CANCELLED": JobState.CANCELLED, "JOB_STATE_EXPIRED": JobState.EXPIRED}
"""The REST ``metadata.state`` (and the SDK's ``JOB_STATE_*`` spelling of it) -> the harness's job state."""

HTTP_OF_RPC = {1: 499, 3: 400, 4: 504, 5: 404, 7: 403, 8: 429, 13: 500, 14: 503, 16: 401}
"""HTTP status of each ``google.rpc.Code`` (google/rpc/code.proto's mapping), to classify an inlined error as
the interactive endpoint's error with that status."""
STATUS_OF_RPC = {1: "CANCELLED", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
                 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 13: "INTERNAL", 14: "UNAVAILABLE",
                 16: "UNAUTHENTICATED"}


class GeminiBatch(BatchProtocol):
    """Batch mode of the ``gemini`` protocol (inline requests; text-to-image and edits with inline images)."""

    protocol = "gemini"
    max_requests = MAX_REQUESTS
    kinds = (ChallengeKind.TEXT_TO_IMAGE, ChallengeKind.EDIT, ChallengeKind.COMPOSE)
    discount = wire.BATCH_DISCOUNT
    discount_url = wire.BATCH_DISCOUNT_URL

    def _headers(self) -> dict[str, str]:
        return {wire.API_KEY_HEADER: self.provider.api_key}

    def _version(self) -> str:
        return str(self.provider.options.get("api_version", wire.API_VERSION))

    def inline_requests(self, lines: Mapping[str, GenerationRequest]) -> list[dict[str, Any]]:
        """The job's inline requests: one per image asked for, ``metadata.key`` ``<line>.<i>``."""
        out: list[dict[str, Any]] = []
        for key, request in lines.items():
            options = {**self.provider.options, **request.options}
            ratio, tier = image_config(request.model_id, request, options.get("image_size"))
            for i in range(request.n):
                seed = None if request.seed is None else request.seed + i
                out.append({"request": build_body(request, options, seed, ratio, tier),
                            "metadata": {"key": f"{key}.{i}"}})
        return out

    async def submit(self, client: httpx.AsyncClient, lines: Mapping[str, GenerationRequest], name: str) -> str:
        models = {request.model_id for request in lines.values()}
        if len(models) != 1:
            raise ProviderError(ErrorKind.INVALID_REQUEST, f"a batch job serves one model, not {sorted(models)}")
        body = {"batch": {"displayName": name,
                          "inputConfig": {"requests": {"requests": self.inline_requests(lines)}}}}
        data = json.dumps(body).encode()
        if len(data) > wire.BATCH_MAX_INLINE_BYTES:
            raise ProviderError(ErrorKind.INVALID_REQUEST,
                                f"the job's inline requests take {len(data) / 1e6:.1f} MB, over Batch Mode's "
                                f"{wire.BATCH_MAX_INLINE_BYTES / 1e6:.0f} MB inline limit; lower batch_max_requests")
        url = self.provider.base_url + wire.method_path(models.pop(), wire.BATCH_GENERATE, self._version())
        response = await client.post(url, headers={**self._headers(), "content-type": "application/json"},
                                     content=data)
        if response.status_code >= 400:
            raise classify(response.status_code, response.content, response.headers)
        answer = json_or_none(response.content)
        if not isinstance(answer, dict) or not str(answer.get("name", "")).startswith("batches/"):
            raise ProviderError(ErrorKind.BAD_OUTPUT, "batchGenerateContent answered no batches/{id} operation",
                                http_status=response.status_code)
        return str(answer["name"])

    async def poll(self, client: httpx.AsyncClient, job_id: str) -> JobStatus:
        url = f"{self.provider.base_url}/{self._version()}/{job_id}"
        response = await client.get(url, headers=self._headers())
        if response.status_code >= 400:
            raise classify(response.status_code, response.content, response.headers)
        body = json_or_none(response.content)
        metadata = body.get("metadata") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(metadata, dict):
            raise ProviderError(ErrorKind.BAD_OUTPUT, f"{job_id}: answer is not a batch operation")
        raw_state = str(metadata.get("state"))
        state = STATES.get(raw_state)
        if state is None:
            raise ProviderError(ErrorKind.BAD_OUTPUT, f"{job_id} has unknown state {raw_state!r}")
        output = metadata.get("output") or body.get("response") or {}
        outer = output.get("inlinedResponses") if isinstance(output, dict) else None
        inner = outer.get("inlinedResponses") if isinstance(outer, dict) else None
        inline = inner if isinstance(inner, list) else []
        error = body.get("error") if isinstance(body.get("error"), dict) else None
        message = str(error.get("message")) if error else None
        responses_file = output.get("responsesFile") if isinstance(output, dict) else None
        return JobStatus(state, raw_state, str(responses_file) if responses_file else None, None, message,
                         [r for r in inline if isinstance(r, dict)])

    async def collect(self, client: httpx.AsyncClient, job_id: str, status: JobStatus,
                      keys: Sequence[str]) -> dict[str, LineOutcome]:
        by_key: dict[str, dict[str, Any]] = {}
        for entry in status.inline:
            meta = entry.get("metadata")
            if isinstance(meta, dict) and isinstance(meta.get("key"), str):
                by_key[meta["key"]] = entry
        outcomes: dict[str, LineOutcome] = {}
        for key in keys:
            parts = sorted((k for k in by_key if k.rpartition(".")[0] == key), key=lambda k: int(k.rpartition(".")[2]))
            if not parts:
                outcomes[key] = LineOutcome(error=self._missing(job_id, status))
                continue
            outcomes[key] = await self._merged([by_key[k] for k in parts])
        return outcomes

    def _missing(self, job_id: str, status: JobStatus) -> ProviderError:
        if status.state is JobState.EXPIRED:
            return ProviderError(ErrorKind.TIMEOUT, f"{job_id} expired before this request ran: "
                                 f"{wire.BATCH_EXPIRED_NOTE}", provider_code="batch_expired")
        if status.results_ref is not None:
            return ProviderError(ErrorKind.BAD_OUTPUT, f"{job_id} put its results in the file {status.results_ref}; "
                                 "the harness reads inline responses only", provider_code="responses_file")
        kind = ErrorKind.INVALID_REQUEST if status.state is JobState.FAILED else ErrorKind.SERVER_ERROR
        reason = status.message or f"{job_id} ended {status.provider_state} without an answer for this request"
        return ProviderError(kind, trim(reason), provider_code=f"batch_{status.state.value}")

    async def _merged(self, entries: list[dict[str, Any]]) -> LineOutcome:
        images = []
        usage: dict[str, Any] = {}
        first: Answer | None = None
        nbytes = 0
        for entry in entries:
            nbytes += len(json.dumps(entry))
            error = entry.get("error")
            if isinstance(error, dict):
                code = error.get("code")
                http = HTTP_OF_RPC.get(code, 500) if isinstance(code, int) else 500
                rpc = {**error, "status": error.get("status") or STATUS_OF_RPC.get(code if isinstance(code, int)
                                                                                    else 2, "UNKNOWN")}
                return LineOutcome(error=classify_status(http, rpc, {}), nbytes=nbytes)
            response = entry.get("response")
            if not isinstance(response, dict):
                return LineOutcome(error=ProviderError(ErrorKind.BAD_OUTPUT, "inlined response has neither "
                                                       "`response` nor `error`"), nbytes=nbytes)
            answer = Answer()
            try:
                answer.add(response, "inlined response")
            except ProviderError as exc:
                return LineOutcome(error=exc, nbytes=nbytes)
            failure = answer.failure()
            if failure is not None:
                return LineOutcome(error=failure, nbytes=nbytes)
            first = first or answer
            images.extend(answer.images)
            for name, value in answer.usage.items():
                usage[name] = usage.get(name, 0) + value
        assert first is not None
        result = GenerationResult(images=images, request_id=first.response_id, usage=usage,
                                  text="".join(first.texts) or None, finish_reason=first.finish_reason)
        try:
            return LineOutcome(result=await self.provider.vet(result), nbytes=nbytes)
        except ProviderError as exc:
            return LineOutcome(error=exc, nbytes=nbytes)
