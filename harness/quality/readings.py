"""Pixel readings of a run's outputs: which of its prompt's elements each picture renders and how much an
edit disturbed its reference, as :func:`harness.sandbox.imagery.read` measures them.

The sandbox draws these marks (see :mod:`harness.sandbox.imagery`), so on a sandboxed run a reading is the
quality the simulation gave the picture; on a real provider's picture there are no marks and the reading
says nothing (every element missing). The simulated panel and the sandbox judge look at pictures through
this module, and the agreement report can use it as a signal of its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from harness.providers.base import ChallengeKind
from harness.sandbox.imagery import Reading, read
from harness.store import runs as run_store
from harness.store.core import Store

READ_WORKERS = min(4, os.cpu_count() or 1)
"""Pictures decoded at once (Pillow releases the GIL while it decodes, which is most of a reading's time)."""


def challenge_text(challenge: Mapping[str, Any], variant: str) -> str:
    """The text an output of ``variant`` answered: the variant's prompt, for a conversation its last turn's."""
    prompts = challenge.get("prompts") or {}
    text = prompts.get(variant) or next(iter(prompts.values()), "")
    if challenge.get("kind") == ChallengeKind.MULTI_TURN.value:
        turns = list(challenge.get("turns") or [])
        if turns:
            last = turns[-1].get("prompts") or {}
            text = last.get(variant) or next(iter(last.values()), text)
    return str(text)


def read_outputs(store: Store, outputs: pd.DataFrame) -> dict[str, Reading]:
    """The reading of every output in ``outputs`` (rows of :func:`harness.store.runs.outputs_frame`), by the
    output's SHA-256. Edits and compositions are compared with their references; an inpainting output's
    marks are sought inside its mask; a conversation's final picture only for its last instruction's marks."""
    challenges: dict[tuple[str, str], Mapping[str, Any]] = {}
    for run_id in pd.unique(outputs["run_id"]):
        for c in run_store.run_challenges(store, str(run_id)):
            challenges[(str(run_id), str(c["id"]))] = c
    refs_cache: dict[str, bytes] = {}

    def image(entry: Mapping[str, Any]) -> bytes:
        sha = str(entry["sha256"])
        if sha not in refs_cache:
            refs_cache[sha] = store.images.read(sha, str(entry["ext"]))
        return refs_cache[sha]

    jobs: dict[str, tuple[str, str, tuple[bytes, ...], bytes | None]] = {}
    for row in outputs.itertuples(index=False):
        sha = str(row.sha256)
        if sha in jobs:
            continue
        challenge = challenges.get((str(row.run_id), str(row.challenge_id)), {})
        kind = challenge.get("kind")
        text = challenge_text(challenge, str(row.variant))
        references: tuple[bytes, ...] = ()
        mask = None
        if kind in (ChallengeKind.EDIT.value, ChallengeKind.COMPOSE.value, ChallengeKind.INPAINT.value):
            references = tuple(image(r) for r in challenge.get("references") or [])
        if kind == ChallengeKind.INPAINT.value and challenge.get("mask"):
            mask = image(challenge["mask"])
        jobs[sha] = (str(row.ext), text, references, mask)

    def one(item: tuple[str, tuple[str, str, tuple[bytes, ...], bytes | None]]) -> tuple[str, Reading]:
        sha, (ext, text, references, mask) = item
        return sha, read(store.images.read(sha, ext), text, references, mask)

    with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
        return dict(pool.map(one, jobs.items()))


def pixel_looks(store: Store, outputs: pd.DataFrame) -> dict[str, float]:
    """Each output's pixel quality (:attr:`Reading.quality`), by SHA-256: what the simulated panel's
    voters see (:meth:`harness.sandbox.voters.VoterPanel.cast` with ``looks``)."""
    return {sha: r.quality for sha, r in read_outputs(store, outputs).items()}
