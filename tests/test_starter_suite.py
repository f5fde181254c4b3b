"""The starter suite: valid, broad enough for every stage, and every image's provenance on record."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from PIL import Image

from harness.challenges import CATEGORIES, Challenge, validate
from harness.providers.base import ChallengeKind

ROOT = Path(__file__).resolve().parents[1]
STARTER = ROOT / "challenges" / "starter"
ASSETS = ROOT / "challenges" / "assets"
LICENSES = ASSETS / "LICENSES"
ASSET_BUDGET_BYTES = 4 * 1024 * 1024
"""The assets travel with every clone of the repository; keep them to a few MB."""
COVERED_CATEGORIES = set(CATEGORIES) - {"other"}
"""Every category the leaderboard can show, except the catch-all."""


@pytest.fixture(scope="module")
def starter() -> list[Challenge]:
    found, problems = validate(STARTER)
    assert problems == [], "\n".join(map(str, problems))
    return found


def licence_entries() -> dict[str, dict[str, str]]:
    """``LICENSES`` blocks that start with ``File:``, keyed by that path, as ``{field: value}``."""
    entries: dict[str, dict[str, str]] = {}
    for block in LICENSES.read_text(encoding="utf-8").split("\n\n"):
        lines = [line for line in block.strip().splitlines() if line.strip()]
        if not lines or not lines[0].startswith("File:"):
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        assert fields["File"] not in entries, f"{fields['File']} is listed twice"
        entries[fields["File"]] = fields
    return entries


def asset_name(image_path: Path) -> str:
    return image_path.relative_to(ASSETS).as_posix()


def used_assets(challenges: list[Challenge]) -> tuple[set[str], set[str]]:
    """The asset files used as references and as masks, relative to ``challenges/assets``."""
    references, masks = set(), set()
    for c in challenges:
        spec_dir = Path(c.source_file).parent
        from_yaml = _paths_in_yaml(Path(c.source_file))
        references |= {asset_name((spec_dir / p).resolve()) for p in from_yaml["references"]}
        masks |= {asset_name((spec_dir / p).resolve()) for p in from_yaml["mask"]}
    return references, masks


def _paths_in_yaml(file: Path) -> dict[str, list[str]]:
    doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    return {"references": list(doc.get("references", [])), "mask": [doc["mask"]] if doc.get("mask") else []}


def test_the_starter_suite_validates_with_no_problems(starter: list[Challenge]) -> None:
    assert len(starter) >= 24


def test_it_covers_every_kind_and_category(starter: list[Challenge]) -> None:
    kinds = Counter(c.kind for c in starter)
    assert set(kinds) == set(ChallengeKind)
    assert kinds[ChallengeKind.COMPOSE] >= 3 and kinds[ChallengeKind.INPAINT] >= 3
    assert {c.category for c in starter} == COVERED_CATEGORIES
    assert any(len(c.references) >= 3 for c in starter if c.kind == ChallengeKind.COMPOSE)


def test_it_gives_prompt_template_regression_tests_material(starter: list[Challenge]) -> None:
    with_variants = [c for c in starter if len(c.prompts) > 1]
    with_variables = [c for c in starter if any("{{" in t for t in c.templates.values())]
    assert len(with_variants) >= 6
    assert len(with_variables) >= 6
    assert all(c.prompts[v] != c.prompts["default"] for c in with_variants for v in c.prompts if v != "default")


def test_every_challenge_fixes_seed_count_and_aspect_ratio_for_comparable_runs(starter: list[Challenge]) -> None:
    assert {(c.params.seed, c.params.n) for c in starter} == {(42, 1)}
    assert all(c.params.aspect_ratio for c in starter)


def test_the_json_smile_prompt_reaches_the_model_as_the_arena_json(starter: list[Challenge]) -> None:
    (smile,) = [c for c in starter if c.id == "duchenne-smile-json"]
    brief = json.loads(smile.prompts["default"])
    assert brief["action"] == "image_edit"
    assert set(brief) == {"action", "reference", "change", "details", "preserve_exact", "no_changes", "style"}
    assert smile.prompts["prose"] != smile.prompts["default"]


def test_every_asset_is_used_and_every_used_image_is_an_asset(starter: list[Challenge]) -> None:
    references, masks = used_assets(starter)
    on_disk = {asset_name(p) for p in ASSETS.rglob("*") if p.is_file() and p.name != "LICENSES"}
    assert references | masks == on_disk
    assert all(name.startswith("masks/") for name in masks)
    assert not any(name.startswith("masks/") for name in references)


def test_every_asset_is_listed_in_licenses_with_source_author_licence_and_checksum(
        starter: list[Challenge]) -> None:
    entries = licence_entries()
    references, masks = used_assets(starter)
    assert set(entries) == references | masks
    for name, entry in entries.items():
        assert {"Author", "License", "Modifications", "SHA256"} <= set(entry), name
        assert ("Original" in entry) != ("Derived-from" in entry), name
        assert hashlib.sha256((ASSETS / name).read_bytes()).hexdigest() == entry["SHA256"], name
    for name in references:
        assert "Copied-from" in entries[name] and "Documented" in entries[name], name
    for name in masks:
        assert entries[name]["Derived-from"].split(" ")[0] in references, name


def test_each_mask_belongs_to_the_image_it_is_listed_as_derived_from(starter: list[Challenge]) -> None:
    entries = licence_entries()
    for c in starter:
        if c.kind != ChallengeKind.INPAINT:
            continue
        spec = _paths_in_yaml(Path(c.source_file))
        mask_name = asset_name((Path(c.source_file).parent / spec["mask"][0]).resolve())
        reference_name = asset_name((Path(c.source_file).parent / spec["references"][0]).resolve())
        assert entries[mask_name]["Derived-from"].split(" ")[0] == reference_name, c.id
        with Image.open(ASSETS / mask_name) as mask:
            assert mask.mode == "L", mask_name


def test_the_assets_stay_small() -> None:
    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert total <= ASSET_BUDGET_BYTES, f"{total} bytes of assets"


def test_references_are_distinct_photos_of_usable_size(starter: list[Challenge]) -> None:
    photos = {ref.sha256: ref for c in starter for ref in c.references}
    assert len(photos) >= 6
    assert len({ref.name for ref in photos.values()}) == len(photos)
    assert all(min(ref.width, ref.height) >= 256 for ref in photos.values())
