"""Asking a judge about a run's outputs: cached, resumable, under the run's spend cap.

For each question (:func:`harness.judge.pairs.sample_questions`) the judge is shown the rubric of the
challenge's kind (:mod:`harness.judge.rubric`) with the request, the challenge's source images when the
rubric uses them, then "Image A" and "Image B". Each answer is stored as it arrives
(:mod:`harness.store.judgements`), so an interrupted judge resumes where it stopped and a question already
answered — by this run or any other with the same two images, judge and rubric — is never paid for again.

Spend: every question is bounded before it is sent (prompt tokens for the text and images plus the
completion limit, at the prices the provider's model list gives) and is only sent when everything already
spent on the run (its generations and its judgements) plus the bounds still in flight plus this bound fits
under the cap. Without prices a capped judge refuses to start: it could not keep the promise.

The store's connection is used by one thread at a time (a lock around every read and write, each done in a
worker thread so the event loop never waits on the database). A failed request without a reported cost is
counted at its bound: the provider may still bill it.

Retries follow the judged run's policy: ``retries`` (default: the run's stored ``RunOptions.retries``). An
answer the rubric cannot parse is stored as ``unparseable`` with the raw text and asked again at once until
its try number reaches ``retries`` (each try is a row). A failed request is stored as ``error``; when a retry
can cure it (429, 5xx, timeout, a dropped connection) it is asked again in the same invocation after the
runner's wait (:func:`harness.run.execute.retry_wait_s`: the provider's ``Retry-After``, else 1 s, 2 s, 4 s …),
up to ``retries`` more times; what is still failed is asked again by the next ``harness judge`` of the run (an
error is not an answer). Nothing is guessed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from harness.errors import ConfigError
from harness.judge.backends import JudgeError as JudgeError
from harness.judge.backends import backend_for
from harness.judge.pairs import Question, sample_across, sample_questions
from harness.judge.report import JUDGE_SCHEMA_VERSION
from harness.judge.rubric import Rubric, parse_verdict, rubric_for
from harness.judge.target import JudgeTarget
from harness.providers.base import ProviderError
from harness.providers.openrouter import LabelledImage
from harness.quality.readings import challenge_text
from harness.run.execute import retry_wait_from
from harness.run.options import RunOptions
from harness.store import judgements as jstore
from harness.store import runs as run_store
from harness.store.core import Store
from harness.wire import openrouter as wire

TEXT_TOKENS_BOUND = 600
"""Prompt tokens the rubric and request are bounded by (rubrics are about 150 tokens; long prompts fit)."""
IMAGE_TOKENS_BOUND = 1800
"""Prompt tokens one image is bounded by (OpenAI counts at most 1105 for a detail-high 1024² image at
https://platform.openai.com/docs/guides/images-vision#calculating-costs; Gemini 258 per 768² tile)."""
MIME = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}


@dataclass(frozen=True)
class JudgeOptions:
    """``pairs``: pairs to ask (each in both orders). ``seed``: which pairs. ``concurrency``: questions in
    flight. ``retries``: re-asks of an unparseable answer or a retryable failure (``None``: the judged run's
    own ``retries``). ``max_spend_usd``: cap for the run's total spend (generations and judgements; ``None``:
    the run's own cap, if any)."""

    pairs: int = 50
    seed: int = 0
    concurrency: int = 4
    retries: int | None = None
    max_spend_usd: float | None = None


@dataclass
class JudgeSummary:
    """What one ``harness judge`` did: questions in the sample, answered from the cache, asked now (tries),
    verdicts, unparseable and failed tries, USD the provider reported, questions not sent for the cap, failed requests asked again in this invocation, the retry budget used."""

    judge: str
    run_id: str
    questions: int = 0
    cached: int = 0
    asked: int = 0
    verdicts: int = 0
    unparseable: int = 0
    errors: int = 0
    spent_usd: float = 0.0
    not_sent_for_cap: int = 0
    retried_errors: int = 0
    retries: int = 0
    rubrics: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"schema_version": JUDGE_SCHEMA_VERSION, **self.__dict__}


class _Ledger:
    """Spent plus in-flight bounds never over the cap (USD)."""

    def __init__(self, cap: float | None, spent: float) -> None:
        self.cap = cap
        self.spent = spent
        self.in_flight = 0.0

    def reserve(self, bound: float) -> bool:
        if self.cap is not None and self.spent + self.in_flight + bound > self.cap:
            return False
        self.in_flight += bound
        return True

    def settle(self, bound: float, cost: float | None) -> None:
        self.in_flight -= bound
        self.spent += bound if cost is None else cost


def _request_parts(store: Store, question: Question, rubric: Rubric, challenge: dict[str, Any]
                   ) -> tuple[str, list[LabelledImage]]:
    request = challenge_text(challenge, question.variant)
    images: list[LabelledImage] = []
    if rubric.uses_sources:
        for i, ref in enumerate(challenge.get("references") or [], start=1):
            images.append(LabelledImage(f"Source image {i}:", store.images.read(str(ref["sha256"]), str(ref["ext"])),
                                        MIME.get(str(ref["ext"]).lower(), "image/png")))
        mask = challenge.get("mask")
        if mask:
            images.append(LabelledImage("Mask (white marks the region to repaint):",
                                        store.images.read(str(mask["sha256"]), str(mask["ext"])),
                                        MIME.get(str(mask["ext"]).lower(), "image/png")))
    for label, side in (("Image A:", question.first), ("Image B:", question.second)):
        images.append(LabelledImage(label, store.images.read(side.sha256, side.ext),
                                    MIME.get(side.ext.lower(), "image/png")))
    return rubric.prompt(request), images


async def judge_run(store: Store, run_id: str, target: JudgeTarget, options: JudgeOptions, *,
                    client: httpx.AsyncClient, base_url: str, api_key: str | None,
                    progress: Callable[[JudgeSummary], None] = lambda _: None,
                    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                    against: str | None = None) -> JudgeSummary:
    """Ask ``target`` about sampled pairs of ``run_id``'s outputs and store every answer (see the module).
    ``sleep`` waits out a retry's wait (seconds). ``against``: a baseline run; each pair is then one of its
    outputs against one of ``run_id``'s (:func:`~harness.judge.pairs.sample_across`, what the gate's judge
    check reads), asked under ``run_id``'s spend cap and retry policy and recorded with ``run_id``."""
    info = run_store.get_run(store, run_id)
    retries = options.retries if options.retries is not None else RunOptions.from_config(info.config).retries
    summary = JudgeSummary(judge=target.spec, run_id=info.id, retries=retries)
    backend = backend_for(target, client, base_url, api_key)
    model = await backend.info()
    if "image" not in model.input_modalities:
        raise JudgeError(f"judge {target.spec} cannot take images (its input modalities: "
                         f"{', '.join(model.input_modalities) or 'none listed'}); pick a vision model")
    cap = options.max_spend_usd if options.max_spend_usd is not None else info.config.get("max_spend_usd")
    if cap is not None and (model.prompt_price is None or model.completion_price is None):
        raise JudgeError(f"judge {target.spec} has no prices in the model list, so its spend cannot be kept "
                         f"under the cap of {cap} USD; pass --max-spend only for a priced model")
    outputs = await asyncio.to_thread(run_store.outputs_frame, store, [info.id])
    if against is not None:
        base = run_store.get_run(store, against)
        if base.id == info.id:
            raise JudgeError(f"--against names the judged run itself ({info.id}); name the baseline run")
        base_outputs = await asyncio.to_thread(run_store.outputs_frame, store, [base.id])
        questions = sample_across(base_outputs, outputs, options.pairs, options.seed)
    else:
        questions = sample_questions(outputs, options.pairs, options.seed)
    summary.questions = len(questions)
    if not questions:
        return summary
    challenges = {str(c["id"]): c for c in run_store.run_challenges(store, info.id)}
    already = run_store.spend_by_run(store).get(info.id, 0.0) + jstore.spent(store, info.id)
    ledger = _Ledger(float(cap) if cap is not None else None, already)
    caches: dict[str, dict[tuple[str, str], jstore.Judgement]] = {}
    lock = asyncio.Lock()
    semaphore = asyncio.Semaphore(max(1, options.concurrency))

    def bound(n_images: int) -> float:
        return ((TEXT_TOKENS_BOUND + IMAGE_TOKENS_BOUND * n_images) * (model.prompt_price or 0.0)
                + wire.JUDGE_MAX_TOKENS * (model.completion_price or 0.0))

    async def one(question: Question) -> None:
        rubric = rubric_for(question.kind)
        async with lock:
            if rubric.id not in caches:
                caches[rubric.id] = await asyncio.to_thread(jstore.cached, store, target.spec, rubric.id)
        hit = caches[rubric.id].get((question.first.sha256, question.second.sha256))
        answered = hit is not None and (hit.verdict in ("first", "second", "tie")
                                        or (hit.verdict == "unparseable" and hit.try_no >= retries))
        if answered:
            summary.cached += 1
            return
        try_no = 0 if hit is None else hit.try_no + 1
        challenge = challenges.get(question.challenge_id, {})
        failed_tries = 0
        async with semaphore:
            while True:
                prompt, images = await asyncio.to_thread(_request_parts, store, question, rubric, challenge)
                cost_bound = bound(len(images))
                if not ledger.reserve(cost_bound):
                    summary.not_sent_for_cap += 1
                    return
                began = time.perf_counter()
                raw: str | None = None
                error: str | None = None
                cost: float | None = None
                curable = False
                retry_after_s: float | None = None
                try:
                    reply = await backend.ask(prompt, images)
                    raw, cost = reply.text, reply.cost_usd
                except ProviderError as exc:
                    error = f"{exc.kind.value}: {exc.message}"
                    curable, retry_after_s = exc.kind.retryable, exc.retry_after_s
                except httpx.HTTPError as exc:
                    error = f"transport: {type(exc).__name__}: {exc}"
                    curable = True
                latency_ms = (time.perf_counter() - began) * 1000.0
                ledger.settle(cost_bound, cost)
                verdict = parse_verdict(raw) if error is None else None
                stored = ("error" if error is not None else "unparseable" if verdict is None
                          else {"A": "first", "B": "second", "tie": "tie"}[verdict])
                row = jstore.Judgement(
                    judge=target.spec, rubric=rubric.id, first_sha=question.first.sha256,
                    second_sha=question.second.sha256, try_no=try_no, verdict=stored, run_id=info.id,
                    challenge_id=question.challenge_id, variant=question.variant, category=question.category,
                    kind=question.kind, first_attempt_id=question.first.attempt_id,
                    second_attempt_id=question.second.attempt_id, first_target=question.first.target,
                    second_target=question.second.target, first_model=question.first.model,
                    second_model=question.second.model, raw_answer=raw, error=error, cost_usd=cost,
                    latency_ms=latency_ms, judged_at=time.time())
                async with lock:
                    await asyncio.to_thread(jstore.insert_judgements, store, [row])
                    summary.asked += 1
                    summary.spent_usd += cost or 0.0
                    summary.verdicts += stored in ("first", "second", "tie")
                    summary.unparseable += stored == "unparseable"
                    summary.errors += stored == "error"
                    progress(summary)
                if stored == "error" and curable and failed_tries < retries:
                    failed_tries += 1
                    async with lock:
                        summary.retried_errors += 1
                    await sleep(retry_wait_from(retry_after_s, failed_tries))
                elif stored != "unparseable" or try_no >= retries:
                    return
                try_no += 1

    summary.rubrics = sorted({rubric_for(q.kind).id for q in questions})
    await asyncio.gather(*(one(q) for q in questions))
    return summary


def check_judge(target: JudgeTarget, api_key: str | None, sandbox: bool) -> None:
    """A real provider needs its key before anything is asked."""
    if not sandbox and not api_key:
        raise ConfigError(f"judge {target.spec} needs an API key in {' or '.join(target.key_variables())}")

