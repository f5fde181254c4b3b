"""Blind pairwise voting on generated images: a FastAPI app (``harness arena serve``) whose votes feed the
ratings.

Modules: :mod:`~harness.arena.config` (settings), :mod:`~harness.arena.pool` (what can be paired),
:mod:`~harness.arena.sampling` (which pair next), :mod:`~harness.arena.blind` (metadata-free re-encoding),
:mod:`~harness.arena.tokens` (signed pair tokens and voter ids), :mod:`~harness.arena.ratelimit`,
:mod:`~harness.arena.service` (pairs, votes, images over the store), :mod:`~harness.arena.app` (HTTP),
:mod:`~harness.arena.server` (uvicorn), :mod:`~harness.arena.battlefile` (battle-format CSV/JSONL).
"""

from harness.arena.config import ArenaConfig, RateLimit

__all__ = ["ArenaConfig", "RateLimit"]
