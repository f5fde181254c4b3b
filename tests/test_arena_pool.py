"""What the arena may pair: only successful outputs, two different targets, the same challenge variant.

This module also builds the sandbox store every arena test module uses (once per session: the build is
keyed on pytest's session temp folder, so later modules reuse it).
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.arena.pool import load_pool
from harness.challenges import load
from harness.errors import ConfigError
from harness.run import RunOptions, start_run
from harness.store import Store
from harness.targets import load_targets, resolve_keys, select
from tests.conftest import mask_png, photo_like

ASTRONAUT = (Path(__file__).resolve().parents[1] / "challenges" / "assets" / "astronaut.png",
             Path("/tmp/skimg/skimage/data/astronaut.png"))
TARGET_NAMES = ("gpt-image-1@openai", "gpt-image-1.5@openai", "dalle3@openai", "mini@openai")
XSS_PROMPT = 'A fox <script>alert("pwned")</script> & "friends" <img src=x onerror=alert(1)>'

USER_TARGETS = """targets:
  - name: dalle3@openai
    model: dall-e-3
    provider: openai
    protocol: openai-images
    base_url: https://api.openai.com/v1
    api_key_env: OPENAI_API_KEY
    price_per_image_usd: 0.04
  - name: mini@openai
    model: gpt-image-1-mini
    provider: openai
    protocol: openai-images
    base_url: https://api.openai.com/v1
    api_key_env: OPENAI_API_KEY
    price_per_image_usd: 0.011
"""

SUITE = f"""challenges:
  - id: fox
    title: Fox
    category: illustration
    kind: text-to-image
    prompt: '{XSS_PROMPT}'
    variants: {{terse: "fox, newspaper"}}
  - id: lake
    title: Lake at dawn
    category: photorealism
    kind: text-to-image
    prompt: A calm mountain lake at dawn, mist over the water
  - id: smile
    title: Smile
    category: portraiture
    kind: edit
    prompt: Make the astronaut smile
    references: [astronaut.png]
  - id: flowers
    title: Flowers
    category: photorealism
    kind: inpaint
    prompt: Fill the masked area with flowers
    references: [astronaut.png]
    mask: mask.png
"""


@dataclass(frozen=True)
class ArenaStore:
    """A sandbox store: one run with four targets over five challenge variants, one of every kind the
    arena shows differently (plain, with a reference, with a reference and a mask)."""

    db: Path
    run_id: str
    cache_dir: Path

    @property
    def names(self) -> tuple[str, ...]:
        """Every target, model and provider name, which no page may show before a vote."""
        return (*TARGET_NAMES, "gpt-image-1", "gpt-image-1.5", "dall-e-3", "gpt-image-1-mini", "openai")


def reference_png() -> bytes:
    """The openly licensed astronaut photo (scikit-image data) when present, else a synthetic photo."""
    found = next((p for p in ASTRONAUT if p.is_file()), None)
    return found.read_bytes() if found else photo_like((512, 512), seed=3)


def _sandbox_run(root: Path, db: Path, targets: list[str], profile: str) -> str:
    suite = root / "suite"
    if not suite.exists():
        suite.mkdir(parents=True)
        (suite / "astronaut.png").write_bytes(reference_png())
        (suite / "mask.png").write_bytes(mask_png((512, 512)))
        (suite / "suite.yaml").write_text(SUITE, encoding="utf-8")
        (root / "targets.yaml").write_text(USER_TARGETS, encoding="utf-8")
    (root / "profile.yaml").write_text(profile, encoding="utf-8")
    chosen = select(load_targets(root / "targets.yaml"), targets)
    options = RunOptions(sandbox=True, time_scale=0.005, samples=1, timeout_s=4000, connect_timeout_s=1000,
                         sandbox_profile=str(root / "profile.yaml"))
    return start_run(db, load(suite), chosen, resolve_keys(chosen, sandbox=True), options).run_id


def build_arena_store(root: Path) -> ArenaStore:
    """Run the sandbox once into ``root`` (reused when already built)."""
    db = root / "results" / "harness.db"
    marker = root / "run_id"
    if not marker.exists():
        run_id = _sandbox_run(root, db, list(TARGET_NAMES), "openai: {faults: {}}\n")
        marker.write_text(run_id, encoding="utf-8")
    return ArenaStore(db, marker.read_text(encoding="utf-8"), root / "arena-cache")


def clone_store(source: ArenaStore, dest: Path) -> ArenaStore:
    """A private copy of the store's database (the image files are shared), for tests that vote."""
    dest.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(source.db) as src, sqlite3.connect(dest / "harness.db") as dst:
        src.backup(dst)
    (dest / "images").symlink_to(source.db.parent / "images", target_is_directory=True)
    return ArenaStore(dest / "harness.db", source.run_id, source.cache_dir)


@pytest.fixture(scope="session")
def arena_store(tmp_path_factory: pytest.TempPathFactory) -> ArenaStore:
    return build_arena_store(tmp_path_factory.getbasetemp() / "arena-store")


def test_every_challenge_variant_with_two_targets_becomes_a_matchup(arena_store: ArenaStore) -> None:
    with Store.open(arena_store.db, readonly=True) as store:
        pool = load_pool(store)
    keys = {(m.challenge_id, m.variant) for m in pool.matchups}
    assert keys == {("fox", "default"), ("fox", "terse"), ("lake", "default"), ("smile", "default"),
                    ("flowers", "default")}
    assert pool.targets == tuple(sorted(TARGET_NAMES))
    by_id = {(m.challenge_id, m.variant): m for m in pool.matchups}
    assert [p.label for p in by_id["smile", "default"].references] == ["Reference 1"]
    assert [p.label for p in by_id["flowers", "default"].references] == ["Reference 1", "Mask"]
    assert by_id["lake", "default"].references == ()
    assert by_id["fox", "default"].prompt == XSS_PROMPT
    assert by_id["fox", "terse"].prompt == "fox, newspaper"


def test_only_successful_outputs_of_the_same_challenge_are_pooled(tmp_path: Path, arena_store: ArenaStore) -> None:
    """A second run whose every request fails adds nothing; each entry is a successful attempt of exactly
    the matchup's challenge variant and target."""
    store_copy = clone_store(arena_store, tmp_path / "copy")
    failed_run = _sandbox_run(tmp_path, store_copy.db, ["gpt-image-1@openai"],
                              "openai: {faults: {server_error: 1.0}}\n")
    with Store.open(store_copy.db, readonly=True) as store:
        failures = store.conn.execute("SELECT COUNT(*) FROM attempts WHERE run_id=? AND ok=0",
                                      (failed_run,)).fetchone()[0]
        pool = load_pool(store)
        attempts = {r[0]: tuple(r[1:]) for r in store.conn.execute(
            "SELECT id, ok, challenge_id, variant, target, run_id FROM attempts")}
    assert failures == 5
    assert set(pool.run_ids) == {arena_store.run_id, failed_run}
    for m in pool.matchups:
        for target, entries in m.entries.items():
            for e in entries:
                assert attempts[e.attempt_id] == (1, m.challenge_id, m.variant, target, arena_store.run_id)


def test_targets_can_be_restricted_by_name_or_glob(arena_store: ArenaStore) -> None:
    with Store.open(arena_store.db, readonly=True) as store:
        pool = load_pool(store, targets=["gpt-image-1*", "mini@openai"])
        assert pool.targets == ("gpt-image-1.5@openai", "gpt-image-1@openai", "mini@openai")
        with pytest.raises(ConfigError, match=r"'flux\*' matches no target .*dalle3@openai"):
            load_pool(store, targets=["flux*"])
        with pytest.raises(ConfigError, match="at least two different targets"):
            load_pool(store, targets=["mini@openai"])
        with pytest.raises(Exception, match="no run 'nope'"):
            load_pool(store, run_ids=["nope"])
        assert load_pool(store, run_ids=["latest"]).run_ids == (arena_store.run_id,)


def test_outputs_whose_image_file_is_gone_are_left_out(tmp_path: Path, arena_store: ArenaStore) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    with sqlite3.connect(arena_store.db) as src, sqlite3.connect(copy / "harness.db") as dst:
        src.backup(dst)
    shutil.copytree(arena_store.db.parent / "images", copy / "images")
    with Store.open(copy / "harness.db", readonly=True) as store:
        sha, ext = store.conn.execute(
            "SELECT o.sha256, o.ext FROM outputs o JOIN attempts a ON a.id=o.attempt_id"
            " WHERE a.challenge_id='lake' AND a.target='mini@openai'").fetchone()
        store.image_path(sha, ext).unlink()
        pool = load_pool(store)
    assert pool.skipped_missing == 1
    lake = next(m for m in pool.matchups if m.challenge_id == "lake")
    assert "mini@openai" not in lake.entries and len(lake.entries) == 3


def test_outputs_of_the_same_challenge_from_several_runs_are_pooled(tmp_path: Path, arena_store: ArenaStore) -> None:
    """A later run of one target joins the earlier run's matchups (same challenge content), so a provider
    benchmarked another day still meets the others."""
    store_copy = clone_store(arena_store, tmp_path / "copy")
    later = _sandbox_run(tmp_path, store_copy.db, ["gpt-image-1@openai"], "openai: {faults: {}}\n")
    with Store.open(store_copy.db, readonly=True) as store:
        pool = load_pool(store)
        chosen = load_pool(store, run_ids=[later, arena_store.run_id], targets=["gpt-image-1@openai", "mini*"])
    assert len(pool.matchups) == 5
    for m in pool.matchups:
        assert {e.run_id for e in m.entries["gpt-image-1@openai"]} == {arena_store.run_id, later}
        assert {e.run_id for e in m.entries["dalle3@openai"]} == {arena_store.run_id}
    assert chosen.targets == ("gpt-image-1@openai", "mini@openai")
