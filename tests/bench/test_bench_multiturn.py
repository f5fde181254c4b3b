"""The client's own work of keeping a conversation: each turn re-sends the whole history (earlier prompts and
images, the model's earlier answers as base64), so a turn's request grows with the history. The work per turn
(building the body: base64 of the turn's images, the history's messages, JSON serialisation as httpx sends it;
then packing the answer for the store) must stay linear in the bytes it sends: the ratio of the work at turn 4
to the work at turn 2 is about the ratio of their request bytes, for Gemini and OpenRouter alike.

Answers are 1 MB of incompressible bytes (a real 1K PNG is 1-2 MB). Figures are printed every round and kept
in the benchmark's ``extra_info``; the assert compares ratios measured in the same run (timings on a shared
machine are noisy, ratios within one run are not)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from harness.providers import gemini, openrouter
from harness.providers.base import ChallengeKind, Exchange, GenerationRequest, InputImage
from harness.providers.common import b64, data_url
from harness.run.sequence import pack_reply

ANSWER_BYTES = 1_000_000
START_BYTES = 200_000
TURNS = 4
REPEATS = 5
ROUNDS = 5


def blob(n: int, seed: int) -> bytes:
    return hashlib.shake_256(seed.to_bytes(4, "big")).digest(n) if n <= 4096 else os.urandom(n)


START = InputImage("start.png", blob(START_BYTES, 1), "image/png", 512, 512, "s" * 64)
ANSWERS = [blob(ANSWER_BYTES, 10 + i) for i in range(TURNS)]


def gemini_reply(i: int) -> dict[str, Any]:
    return {"role": "model", "parts": [{"text": f"turn {i}", "thoughtSignature": "c2ln" * 50},
                                       {"inlineData": {"mimeType": "image/png", "data": b64(ANSWERS[i])},
                                        "thoughtSignature": "c2ln" * 50}]}


def openrouter_reply(i: int) -> dict[str, Any]:
    return {"role": "assistant", "content": f"turn {i}",
            "images": [{"type": "image_url", "image_url": {"url": data_url(ANSWERS[i], "image/png")}}]}


PROTOCOLS: dict[str, tuple[Callable[..., dict[str, Any]], Callable[[int], dict[str, Any]], str]] = {
    "gemini": (gemini.build_body, gemini_reply, "gemini-2.5-flash-image"),
    "openrouter": (openrouter.build_body, openrouter_reply, "google/gemini-2.5-flash-image"),
}


def turn_work(protocol: str, turn: int) -> tuple[float, int]:
    """Best-of-``REPEATS`` seconds of the client's work for turn ``turn`` (1-based), and its request bytes."""
    build, reply, model = PROTOCOLS[protocol]
    history = tuple(Exchange(f"step {i}", (START,) if i == 0 else (), reply(i)) for i in range(turn - 1))
    request = GenerationRequest(model_id=model, prompt=f"step {turn - 1}", kind=ChallengeKind.MULTI_TURN,
                                references=(START,) if turn == 1 else (), aspect_ratio="1:1", history=history)
    answer = reply(turn - 1)
    stored = [hashlib.sha256(ANSWERS[turn - 1]).hexdigest()]
    best = float("inf")
    size = 0
    for _ in range(REPEATS):
        t = time.perf_counter()
        body = json.dumps(build(request, {}, 42, "1:1", None)).encode()
        pack_reply(answer, stored)
        best = min(best, time.perf_counter() - t)
        size = len(body)
    return best, size


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_per_turn_work_stays_linear_in_the_history_it_resends(benchmark: Any, protocol: str) -> None:
    rounds: list[dict[int, tuple[float, int]]] = []

    def one_round() -> None:
        figures = {turn: turn_work(protocol, turn) for turn in range(1, TURNS + 1)}
        rounds.append(figures)
        print(f"\n{protocol} round {len(rounds)}: " + "; ".join(
            f"turn {t}: {ms * 1000:.2f} ms for {size / 1e6:.2f} MB sent" for t, (ms, size) in figures.items()))

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    work = {t: min(r[t][0] for r in rounds) for t in range(1, TURNS + 1)}
    sent = {t: rounds[-1][t][1] for t in range(1, TURNS + 1)}
    work_ratio = work[4] / work[2]
    bytes_ratio = sent[4] / sent[2]
    benchmark.extra_info.update({"work_ms": {t: w * 1000 for t, w in work.items()}, "bytes": sent,
                                 "work_ratio_4_2": work_ratio, "bytes_ratio_4_2": bytes_ratio})
    print(f"\n{protocol}: turn 4 / turn 2 work {work_ratio:.2f}x, bytes {bytes_ratio:.2f}x "
          f"({work[4] / sent[4] * 1e9:.2f} ns per byte at turn 4, {work[2] / sent[2] * 1e9:.2f} at turn 2)")
    assert sent[1] < sent[2] < sent[3] < sent[4]
    assert 0.5 * bytes_ratio <= work_ratio <= 1.5 * bytes_ratio, "per-turn work is not linear in history bytes"
