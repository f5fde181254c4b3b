"""Multi-turn challenges as a user writes them: turns, per-turn variants and images, and every problem listed
with its file and field before any request (an empty turn list, a missing image, too many images, a request
over Gemini's 20 MB inline limit as the history grows)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from harness.challenges import (
    MAX_CONVERSATION_IMAGES,
    MAX_INLINE_REQUEST_BYTES,
    Challenge,
    Params,
    base64_size,
    conversation_load,
    estimated_answer_bytes,
    load,
    validate,
)
from harness.providers.base import ChallengeKind
from tests.conftest import image, photo_like


def write_suite(root: Path, *challenges: dict[str, Any]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "start.png").write_bytes(photo_like((96, 64), 1))
    (root / "scarf.png").write_bytes(photo_like((80, 80), 2))
    (root / "suite.yaml").write_text(yaml.safe_dump({"challenges": list(challenges)}, sort_keys=False),
                                     encoding="utf-8")
    return root


def conversation(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "smile-then-scarf", "title": "Smile, then a scarf", "category": "portraiture", "kind": "multi-turn",
        "references": ["start.png"],
        "variables": {"colour": "red"},
        "turns": [
            {"prompt": "Make him smile", "variants": {"terse": "Smile"}, "preserve": ["face identity"]},
            {"prompt": "Add a {{ colour }} scarf like this one", "references": ["scarf.png"]},
            {"prompt": "Now make it night", "variants": {"terse": "Night"}},
        ],
        "params": {"aspect_ratio": "1:1", "seed": 42},
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def problems_of(root: Path) -> list[tuple[str, str, str]]:
    _, problems = validate(root)
    return [(p.file, p.field, p.reason) for p in problems]


def test_a_conversation_loads_with_its_turns_images_and_per_turn_variants(tmp_path: Path) -> None:
    root = write_suite(tmp_path / "s", conversation())
    (challenge,) = load(root)
    assert challenge.kind == ChallengeKind.MULTI_TURN
    assert [t.prompts for t in challenge.turns] == [
        {"default": "Make him smile", "terse": "Smile"},
        {"default": "Add a red scarf like this one", "terse": "Add a red scarf like this one"},
        {"default": "Now make it night", "terse": "Night"},
    ]
    assert [[r.name for r in t.references] for t in challenge.turns] == [["start.png"], ["scarf.png"], []]
    assert [r.name for r in challenge.references] == ["start.png", "scarf.png"]
    assert challenge.turns[0].preserve == ("face identity",)
    assert set(challenge.prompts) == {"default", "terse"}
    assert challenge.prompts["terse"].splitlines() == ["1. Smile", "2. Add a red scarf like this one", "3. Night"]
    assert challenge.frozen()["turns"][1]["references"] == [challenge.references[1].sha256]


def test_changing_one_turn_changes_the_content_hash_and_renaming_the_title_does_not(tmp_path: Path) -> None:
    (base,) = load(write_suite(tmp_path / "a", conversation()))
    (renamed,) = load(write_suite(tmp_path / "b", conversation(title="Another title")))
    turns = conversation()["turns"]
    turns[2] = {"prompt": "Now make it dawn"}
    (changed,) = load(write_suite(tmp_path / "c", conversation(turns=turns)))
    assert base.content_hash == renamed.content_hash
    assert changed.content_hash != base.content_hash


def test_an_empty_or_missing_turn_list_is_a_problem_of_the_turns_field(tmp_path: Path) -> None:
    root = write_suite(tmp_path / "s", conversation(turns=[]), conversation(id="no-turns", turns=None))
    suite = str(root / "suite.yaml")
    assert [(f, fld) for f, fld, _ in problems_of(root)] == [(suite, "challenges[0].turns"),
                                                               (suite, "challenges[1].turns")]
    assert all("at least one turn" in reason for _, _, reason in problems_of(root))


def test_a_turn_naming_a_missing_image_is_listed_with_its_turn_and_index(tmp_path: Path) -> None:
    turns = conversation()["turns"]
    turns[1]["references"] = ["scarf.png", "hat.png"]
    root = write_suite(tmp_path / "s", conversation(turns=turns))
    (problem,) = problems_of(root)
    assert problem[:2] == (str(root / "suite.yaml"), "challenges[0].turns[1].references[1]")
    assert "reference file not found: hat.png" in problem[2]


def test_every_problem_of_a_conversation_is_listed_in_one_run(tmp_path: Path) -> None:
    turns = [{"prompt": "A {{ missing }} hat", "colour": "red"}, {"prompt": "ok", "variants": {"default": "x"}}]
    root = write_suite(tmp_path / "s", conversation(turns=turns, prompt="top-level", params={"n": 2}))
    fields = [fld for _, fld, _ in problems_of(root)]
    assert sorted(fields) == ["challenges[0].params.n", "challenges[0].prompt", "challenges[0].turns[0].colour"]
    turns = [{"prompt": "A {{ missing }} hat"}, {"prompt": "ok", "variants": {"default": "x"}}]
    root = write_suite(tmp_path / "t", conversation(turns=turns, prompt="top-level", params={"n": 2}))
    assert [fld for _, fld, _ in problems_of(root)] == [
        "challenges[0].prompt", "challenges[0].params.n", "challenges[0].turns[0].prompt",
        "challenges[0].turns[1].variants.default"]


def test_turns_on_a_single_request_kind_and_a_prompt_missing_elsewhere_are_reported(tmp_path: Path) -> None:
    root = write_suite(tmp_path / "s", {"id": "edit", "title": "t", "category": "other", "kind": "edit",
                                        "references": ["start.png"], "turns": [{"prompt": "x"}]})
    assert [(fld, reason) for _, fld, reason in problems_of(root)] == [
        ("challenges[0].turns", "only 'multi-turn' challenges take turns, this one is 'edit'"),
        ("challenges[0].prompt", "required field is missing"),
    ]


def test_more_images_than_any_multi_turn_protocol_takes_is_reported_at_the_turn_that_exceeds(
        tmp_path: Path) -> None:
    turns = [{"prompt": f"step {i}", "references": ["scarf.png", "scarf.png"]} for i in range(5)]
    root = write_suite(tmp_path / "s", conversation(turns=turns))
    (problem,) = problems_of(root)
    # turn k holds 1 start + 2 per turn so far + the k-1 earlier answers: turn 5 holds 1 + 10 + 4 = 15
    assert problem[1] == "challenges[0].turns[4]"
    assert "turn 5 would hold 15 images" in problem[2] and str(MAX_CONVERSATION_IMAGES) in problem[2]


def test_a_history_that_outgrows_geminis_inline_limit_is_reported_before_any_request(tmp_path: Path) -> None:
    turns = [{"prompt": f"step {i}"} for i in range(4)]
    root = write_suite(tmp_path / "s", conversation(turns=turns, params={"aspect_ratio": "1:1", "size": "2K"}))
    (problem,) = problems_of(root)
    # a 2K square answer is estimated at 2048 * 2048 * 3 bytes: 16.8 MB in base64, so turn 3 (two answers) is over
    assert problem[1] == "challenges[0].turns[2]"
    assert "over Gemini's 20 MB inline request limit" in problem[2]
    small = write_suite(tmp_path / "t", conversation(turns=turns, params={"aspect_ratio": "1:1", "size": "1K"}))
    assert problems_of(small) == []


def test_the_starter_suite_has_six_conversations_drawn_from_the_seeds() -> None:
    challenges = load(Path(__file__).resolve().parents[1] / "challenges" / "starter")
    talks: dict[str, Challenge] = {c.id: c for c in challenges if c.kind == ChallengeKind.MULTI_TURN}
    assert len(talks) >= 6
    smile = talks["portrait-smile-refinement"]
    assert "Duchenne" in smile.turns[0].prompts["default"] and len(smile.turns) >= 3
    assert all("face identity" in t.preserve for t in smile.turns)
    assert all(len(t.turns) >= 2 for t in talks.values())
    assert {c.category for c in talks.values()} >= {"portraiture", "character", "product", "design", "typography"}


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 500)), min_size=1, max_size=8),
       st.integers(1, 10_000_000))
def test_each_turn_resends_everything_before_it(turns: list[tuple[int, int]], answer: int) -> None:
    pictures = [[image("r.png", (16, 16), i)] * n for i, (n, _) in enumerate(turns)]
    chars = [c for _, c in turns]
    loads = conversation_load(pictures, chars, answer)
    for k, load_ in enumerate(loads):
        refs = sum(len(p) for p in pictures[: k + 1])
        assert load_.images == refs + k
        expected = sum(chars[: k + 1]) + sum(base64_size(len(r.data)) for p in pictures[: k + 1] for r in p)
        assert load_.request_bytes == expected + k * base64_size(answer)
    assert all(a.request_bytes <= b.request_bytes for a, b in itertools.pairwise(loads))


def test_answer_estimate_follows_the_tier_and_aspect_ratio() -> None:
    assert estimated_answer_bytes(Params(aspect_ratio="1:1")) == 1024 * 1024 * 3
    assert estimated_answer_bytes(Params(aspect_ratio="16:9", size="2K")) == int(2048 * 2048 * 9 / 16 * 3)
    assert estimated_answer_bytes(Params(size="1536x1024")) == int(1536 * 1536 * 2 / 3 * 3)
    assert base64_size(estimated_answer_bytes(Params(size="4K"))) > MAX_INLINE_REQUEST_BYTES


def test_a_hostile_conversation_is_refused_before_its_images_are_read(tmp_path: Path) -> None:
    many_turns = [{"prompt": "x", "references": ["scarf.png"]} for _ in range(5000)]
    many_images = [{"prompt": "x", "references": ["scarf.png"] * 5000}]
    root = write_suite(tmp_path / "s", conversation(turns=many_turns), conversation(id="wide", turns=many_images))
    assert [(fld, reason) for _, fld, reason in problems_of(root)] == [
        ("challenges[0].turns", "5000 turns; at most 16"),
        ("challenges[1].turns[0].references", "5000 images in one turn; a conversation holds at most 14"),
    ]
