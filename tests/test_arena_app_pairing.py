"""The arena pairs models by default: two providers of one model never meet (the by-model board would drop
that vote); pairing by target, for provider-quality studies, lets them meet."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from harness.arena.app import create_app
from harness.arena.config import ArenaConfig
from harness.arena.service import ArenaService
from harness.errors import ConfigError
from tests.test_arena_api import GENEROUS, arena, client, rows, run
from tests.test_arena_pool import ArenaStore, build_arena_store, clone_store


@pytest.fixture(scope="session")
def arena_store(tmp_path_factory: pytest.TempPathFactory) -> ArenaStore:
    return build_arena_store(tmp_path_factory.getbasetemp() / "arena-store")


def two_providers_of_dalle(arena_store: ArenaStore, dest: Path) -> ArenaStore:
    """A copy of the sandbox store in which mini@openai serves dall-e-3 too (two providers of one model)."""
    store = clone_store(arena_store, dest)
    with sqlite3.connect(store.db) as conn:
        conn.execute("UPDATE attempts SET model='dall-e-3' WHERE target='mini@openai'")
    return store


def serve(store: ArenaStore, n: int, **overrides: object) -> list[tuple[str, str, str, str]]:
    with arena(store, min_exposure=0, **overrides) as app:
        async def go() -> None:
            async with client(app) as c:
                for _ in range(n):
                    (await c.get("/api/pair")).raise_for_status()

        run(go())
    return [(str(a), str(b), str(c), str(d)) for a, b, c, d in
            rows(store.db, "SELECT left_target, right_target, left_model, right_model FROM arena_pairs")]


def test_the_arena_never_pairs_one_model_against_itself_by_default(tmp_path: Path, arena_store: ArenaStore) -> None:
    store = two_providers_of_dalle(arena_store, tmp_path / "store")
    served = serve(store, 120)
    assert len(served) == 120
    assert all(lm != rm for _, _, lm, rm in served)
    # both providers of dall-e-3 still get shown
    shown = {t for lt, rt, _, _ in served for t in (lt, rt)}
    assert {"dalle3@openai", "mini@openai"} <= shown


def test_pairing_by_target_lets_two_providers_of_one_model_meet(tmp_path: Path, arena_store: ArenaStore) -> None:
    store = two_providers_of_dalle(arena_store, tmp_path / "store")
    with arena(store, min_exposure=0) as app:
        assert app.state.arena.pair_by == "model"
    config = ArenaConfig(db=store.db, cache_dir=store.cache_dir, seed=3, min_exposure=0, voter_votes=GENEROUS,
                         ip_votes=GENEROUS, ip_new_voters=GENEROUS)
    app = create_app(config, pair_by="target")
    try:
        async def go() -> None:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://arena.test") as c:
                for _ in range(150):
                    (await c.get("/api/pair")).raise_for_status()

        run(go())
    finally:
        app.state.arena.close()
    served = rows(store.db, "SELECT left_model, right_model FROM arena_pairs")
    assert any(lm == rm == "dall-e-3" for lm, rm in served)


def test_an_arena_of_one_model_only_says_to_pair_by_target(tmp_path: Path, arena_store: ArenaStore) -> None:
    store = clone_store(arena_store, tmp_path / "store")
    with sqlite3.connect(store.db) as conn:
        conn.execute("UPDATE attempts SET model='dall-e-3'")
    config = ArenaConfig(db=store.db, cache_dir=store.cache_dir)
    with pytest.raises(ConfigError, match="pair by target"):
        ArenaService(config)
    with pytest.raises(ConfigError, match="pair by must be one of model, target"):
        ArenaService(config, pair_by="provider")  # type: ignore[arg-type]
