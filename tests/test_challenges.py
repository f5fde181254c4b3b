"""Challenge suites: every validation error names its file, field and reason; one run reports them all.

Each test builds a small suite in ``tmp_path`` the way a user would write one: YAML files next to real
image files, then runs ``validate``/``load`` or the ``harness challenges`` command on it.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from harness.challenges import (
    CATEGORIES,
    Challenge,
    ChallengeError,
    Problem,
    load,
    read_image,
    render_template,
    validate,
)
from harness.cli import cli
from harness.errors import HarnessError
from tests.conftest import mask_png, photo_like

# ---- building suites ------------------------------------------------------------------------------------


def challenge(**fields: Any) -> dict[str, Any]:
    """A valid text-to-image challenge, with ``fields`` replaced (``None`` removes a field)."""
    base: dict[str, Any] = {"id": "fox", "title": "Fox", "category": "illustration", "kind": "text-to-image",
                            "prompt": "A watercolor fox reading a newspaper",
                            "params": {"aspect_ratio": "1:1", "seed": 42}}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def write_yaml(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def suite(root: Path, *challenges: Mapping[str, Any], name: str = "suite.yaml") -> Path:
    """A suite folder with photos ``a.png`` (96x64) and ``b.png`` (80x80), a mask ``mask.png`` (96x64) and
    ``challenges`` in one file."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "a.png").write_bytes(photo_like((96, 64), 1))
    (root / "b.png").write_bytes(photo_like((80, 80), 2))
    (root / "mask.png").write_bytes(mask_png((96, 64)))
    write_yaml(root / name, {"challenges": list(challenges)})
    return root


def only_problem(path: Path) -> Problem:
    found, problems = validate(path)
    assert len(problems) == 1, problems
    assert found == []
    return problems[0]


def inpaint(**fields: Any) -> dict[str, Any]:
    """A valid inpaint challenge on ``a.png`` with ``mask.png``, with ``fields`` replaced."""
    return challenge(**{"id": "fill", "kind": "inpaint", "category": "photorealism",
                        "prompt": "Fill the hole with flowers", "references": ["a.png"], "mask": "mask.png", **fields})


def png(size: tuple[int, int], mode: str, fill: int | tuple[int, ...]) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, fill).save(out, format="PNG")
    return out.getvalue()


# ---- one test per error kind ----------------------------------------------------------------------------


def test_unknown_kind_is_reported_with_the_kinds_to_choose_from(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", challenge(kind="edt"))
    problem = only_problem(root)
    assert problem.file == str(root / "suite.yaml")
    assert problem.field == "challenges[0].kind"
    assert "unknown kind 'edt'" in problem.reason
    assert "did you mean 'edit'" in problem.reason
    assert "text-to-image, edit, compose, inpaint" in problem.reason


def test_missing_reference_file_names_the_path_it_looked_at(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", challenge(kind="compose", references=["a.png", "photos/cat.png"]))
    problem = only_problem(root)
    assert (problem.file, problem.field) == (str(root / "suite.yaml"), "challenges[0].references[1]")
    assert "reference file not found: photos/cat.png" in problem.reason
    assert str(root / "photos" / "cat.png") in problem.reason


def test_mask_of_a_different_size_than_its_image_is_reported_with_both_sizes(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", inpaint(mask="small-mask.png"))
    (root / "small-mask.png").write_bytes(mask_png((48, 32)))
    problem = only_problem(root)
    assert (problem.file, problem.field) == (str(root / "suite.yaml"), "challenges[0].mask")
    assert "mask is 48x32 but its image references[0] is 96x64" in problem.reason


def test_undefined_template_variable_is_reported_for_the_prompt_and_each_variant(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", challenge(prompt="A {{ animal }} in a {{ hat }}", variables={"animal": "fox"},
                                           variants={"terse": "{{ animl }}, hat"}))
    _, problems = validate(root)
    assert [(p.file, p.field) for p in problems] == [
        (str(root / "suite.yaml"), "challenges[0].prompt"),
        (str(root / "suite.yaml"), "challenges[0].variants.terse"),
    ]
    assert "template variable(s) undefined: hat" in problems[0].reason
    assert "template variable(s) undefined: animl" in problems[1].reason


def test_duplicate_id_names_where_it_was_first_defined(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", challenge(id="fox"), name="a.yaml")
    write_yaml(root / "b.yaml", challenge(id="fox", title="Another fox"))
    found, problems = validate(root)
    assert [c.id for c in found] == ["fox"]
    assert len(problems) == 1
    assert (problems[0].file, problems[0].field) == (str(root / "b.yaml"), "id")
    assert problems[0].reason == f"duplicate id 'fox' (first defined in {root / 'a.yaml'} challenges[0])"


def test_unknown_field_is_reported_with_the_field_it_resembles(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", challenge(catgory="nature"))
    problem = only_problem(root)
    assert (problem.file, problem.field) == (str(root / "suite.yaml"), "challenges[0].catgory")
    assert problem.reason == "unknown field; did you mean 'category'?"


def test_unknown_param_is_reported_inside_params(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", challenge(params={"aspect_ratio": "1:1", "sed": 42}))
    problem = only_problem(root)
    assert problem.field == "challenges[0].params.sed"
    assert problem.reason == "unknown field; did you mean 'seed'?"


@pytest.mark.parametrize("ratio", ["16-9", "16/9", "0:1", "wide", "1:1:1"])
def test_bad_aspect_ratio_is_reported(tmp_path: Path, ratio: str) -> None:
    root = suite(tmp_path / "s", challenge(params={"aspect_ratio": ratio}))
    problem = only_problem(root)
    assert (problem.file, problem.field) == (str(root / "suite.yaml"), "challenges[0].params.aspect_ratio")
    assert f"aspect_ratio must be WIDTH:HEIGHT such as '16:9' (quoted in YAML), not {ratio!r}" == problem.reason


def test_unquoted_aspect_ratio_that_yaml_reads_as_a_number_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    (root / "fox.yaml").write_text("id: fox\ntitle: Fox\ncategory: illustration\nkind: text-to-image\n"
                                   "prompt: A fox\nparams: {aspect_ratio: 16:9}\n", encoding="utf-8")
    problem = only_problem(root)
    assert (problem.file, problem.field) == (str(root / "fox.yaml"), "params.aspect_ratio")
    assert problem.reason == ("must be a string, but YAML read the unquoted value as 969; quote it "
                              "(YAML 1.1 reads an unquoted 16:9 as the number 969)")


@pytest.mark.parametrize(("kind", "references", "want"), [
    ("text-to-image", ["a.png"], "kind 'text-to-image' takes no references, found 1"),
    ("edit", [], "kind 'edit' takes 1 to 16 references, found 0"),
    ("compose", ["a.png"], "kind 'compose' takes 2 to 16 references, found 1"),
    ("inpaint", ["a.png", "b.png"], "kind 'inpaint' takes exactly 1 reference, found 2"),
])
def test_wrong_number_of_references_for_the_kind_is_reported(tmp_path: Path, kind: str, references: list[str],
                                                               want: str) -> None:
    fields: dict[str, Any] = {"kind": kind, "references": references}
    if kind == "inpaint":
        fields["mask"] = "mask.png"
    root = suite(tmp_path / "s", challenge(**fields))
    problem = only_problem(root)
    assert (problem.file, problem.field, problem.reason) == (str(root / "suite.yaml"), "challenges[0].references",
                                                             want)


def test_mask_on_a_challenge_that_is_not_inpaint_is_reported(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", challenge(kind="edit", references=["a.png"], mask="mask.png"))
    problem = only_problem(root)
    assert (problem.file, problem.field) == (str(root / "suite.yaml"), "challenges[0].mask")
    assert problem.reason == "only 'inpaint' challenges take a mask, this one is 'edit'"


def test_inpaint_without_a_mask_is_reported(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", inpaint(mask=None))
    problem = only_problem(root)
    assert (problem.field, problem.reason) == (
        "challenges[0].mask", "kind 'inpaint' needs a mask image (white = repaint, black = keep)")


@pytest.mark.parametrize(("mask", "want"), [
    (png((96, 64), "RGBA", (255, 255, 255, 0)), "mask must be a single-channel PNG (mode 'L'"),
    (png((96, 64), "L", 0), "mask is all black: it marks no region to repaint"),
    (png((96, 64), "L", 255), "mask is all white: it repaints the whole image; use kind 'edit' instead"),
])
def test_mask_that_breaks_the_white_means_repaint_convention_is_reported(tmp_path: Path, mask: bytes,
                                                                          want: str) -> None:
    root = suite(tmp_path / "s", inpaint())
    (root / "mask.png").write_bytes(mask)
    problem = only_problem(root)
    assert problem.field == "challenges[0].mask"
    assert problem.reason.startswith(want)


def test_jpeg_mask_is_reported(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", inpaint(mask="mask.jpg"))
    Image.open(io.BytesIO(mask_png((96, 64)))).save(root / "mask.jpg", format="JPEG")
    problem = only_problem(root)
    assert problem.field == "challenges[0].mask"
    assert problem.reason.startswith("mask must be a PNG")


def test_invalid_yaml_is_reported_with_line_and_column(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    (root / "broken.yaml").write_text("id: fox\ntitle: Fox\nprompt: [unclosed\nkind: edit\n", encoding="utf-8")
    problem = only_problem(root)
    assert (problem.file, problem.field) == (str(root / "broken.yaml"), "(file)")
    assert problem.reason.startswith("not valid YAML at line 4, column 5:")


def test_a_key_written_twice_is_reported_instead_of_silently_overwritten(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    (root / "twice.yaml").write_text("id: fox\ntitle: Fox\ncategory: nature\nkind: text-to-image\n"
                                     "prompt: A fox\nprompt: A badger\n", encoding="utf-8")
    problem = only_problem(root)
    assert (problem.file, problem.field) == (str(root / "twice.yaml"), "(file)")
    assert problem.reason.startswith("not valid YAML at line 6, column 1: found duplicate key 'prompt'")


def test_a_suite_file_with_keys_beside_its_challenges_list_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "s"
    write_yaml(root / "suite.yaml", {"defaults": {"seed": 42}, "challenges": [challenge()]})
    found, problems = validate(root)
    assert [c.id for c in found] == ["fox"]
    assert [(p.file, p.field, p.reason) for p in problems] == [
        (str(root / "suite.yaml"), "defaults", "unknown field; a suite file holds only `challenges:`")]


def test_id_that_is_not_a_string_is_reported_and_the_rest_still_checked(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", challenge(id=12, category="portrait"))
    _, problems = validate(root)
    assert [(p.file, p.field) for p in problems] == [(str(root / "suite.yaml"), "challenges[0].id"),
                                                      (str(root / "suite.yaml"), "challenges[0].category")]
    assert problems[0].reason == "must be a string (quote it in YAML), not 12"


def test_unknown_category_suggests_the_closest_known_one(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", challenge(category="portrait"))
    problem = only_problem(root)
    assert (problem.file, problem.field) == (str(root / "suite.yaml"), "challenges[0].category")
    assert problem.reason == "unknown category 'portrait'; did you mean 'portraiture'?"


def test_unknown_category_with_nothing_close_lists_the_known_ones(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", challenge(category="zzz"))
    problem = only_problem(root)
    assert problem.reason == f"unknown category 'zzz'; known: {', '.join(CATEGORIES)}"


def test_reference_that_is_not_an_image_is_reported(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", challenge(kind="edit", references=["notes.png"]))
    (root / "notes.png").write_text("not an image", encoding="utf-8")
    problem = only_problem(root)
    assert problem.field == "challenges[0].references[0]"
    assert "is not a readable image" in problem.reason


def test_reference_in_an_unsupported_format_is_reported(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", challenge(kind="edit", references=["a.gif"]))
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "a.gif", format="GIF")
    problem = only_problem(root)
    assert problem.reason.endswith("is a GIF image; use PNG, JPEG or WebP")


def test_template_syntax_error_is_reported(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", challenge(prompt="A {{ animal fox", variables={"animal": "fox"}))
    problem = only_problem(root)
    assert problem.field == "challenges[0].prompt"
    assert problem.reason.startswith("template syntax error on line 1:")


def test_variant_named_default_is_reported(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", challenge(variants={"default": "A fox"}))
    problem = only_problem(root)
    assert (problem.field, problem.reason) == ("challenges[0].variants.default",
                                               "'default' is reserved for `prompt`")


def test_missing_required_field_is_reported(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", challenge(title=None))
    problem = only_problem(root)
    assert (problem.field, problem.reason) == ("challenges[0].title", "required field is missing")


# ---- many problems, one run -------------------------------------------------------------------------------


def test_one_run_reports_every_problem_of_a_suite(tmp_path: Path) -> None:
    root = suite(tmp_path / "s",
                 challenge(id="ok-1"),
                 challenge(id="Bad Id", kind="edt", colour="red"),
                 challenge(id="ok-1", category="portrait"),
                 challenge(id="inpaint-1", kind="inpaint", references=["a.png"], mask="nope.png",
                           params={"aspect_ratio": "16-9", "seed": -1}),
                 name="many.yaml")
    write_yaml(root / "more" / "edit.yaml", challenge(id="edit-1", kind="edit", references=["../missing.png"],
                                                      prompt="Make the {{ thing }} blue"))
    (root / "broken.yaml").write_text("id: [\n", encoding="utf-8")
    many, edit, broken = str(root / "many.yaml"), str(root / "more" / "edit.yaml"), str(root / "broken.yaml")

    found, problems = validate(root)

    assert [c.id for c in found] == ["ok-1"]
    assert sorted((p.file, p.field) for p in problems) == sorted([
        (broken, "(file)"),
        (many, "challenges[1].kind"),
        (many, "challenges[1].colour"),
        (many, "challenges[1].id"),
        (many, "challenges[2].id"),
        (many, "challenges[2].category"),
        (many, "challenges[3].params.aspect_ratio"),
        (many, "challenges[3].params.seed"),
        (many, "challenges[3].mask"),
        (edit, "prompt"),
        (edit, "references[0]"),
    ])
    with pytest.raises(ChallengeError) as caught:
        load(root)
    assert caught.value.problems == problems
    assert isinstance(caught.value, HarnessError)
    assert f"{len(problems)} problem(s) in challenges:" in str(caught.value)


def test_cli_validate_exits_1_and_prints_every_problem_on_stderr(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", challenge(kind="edt"), challenge(id="two", category="portrait"))
    result = CliRunner().invoke(cli, ["challenges", "validate", str(root)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"{root / 'suite.yaml'}: challenges[0].kind: unknown kind 'edt'" in result.stderr
    assert f"{root / 'suite.yaml'}: challenges[1].category: unknown category 'portrait'" in result.stderr
    assert "0 valid challenge(s)" in result.stderr and "2 problem(s)" in result.stderr


def test_cli_validate_exits_0_on_a_valid_suite(tiny_suite: Path) -> None:
    result = CliRunner().invoke(cli, ["challenges", "validate", str(tiny_suite)])
    assert result.exit_code == 0, result.output
    assert f"4 valid challenge(s) in {tiny_suite}; ok" in result.stderr


def test_cli_validate_json_lists_problems_on_stdout(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", challenge(category="portrait"))
    result = CliRunner().invoke(cli, ["challenges", "validate", str(root), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"schema_version": 1, "challenges": 0, "problems": [
        {"file": str(root / "suite.yaml"), "field": "challenges[0].category",
         "reason": "unknown category 'portrait'; did you mean 'portraiture'?"}]}


def test_cli_validate_of_a_path_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["challenges", "validate", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_cli_list_shows_kinds_and_variants(tiny_suite: Path) -> None:
    result = CliRunner().invoke(cli, ["challenges", "list", str(tiny_suite), "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [(c["id"], c["kind"], sorted(c["prompts"])) for c in listed] == [
        ("fox", "text-to-image", ["default", "terse"]), ("smile", "edit", ["default"]),
        ("together", "compose", ["default"]), ("fill", "inpaint", ["default"])]


# ---- templates and variants -------------------------------------------------------------------------------


def test_templates_are_rendered_with_variables_and_filters_per_variant(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", challenge(
        prompt="Isometric {{ dish }} from {{ country }}; title '{{ country | upper }}', {{ n }} plates",
        variables={"dish": "sushi", "country": "Japan", "n": 3},
        variants={"terse": "{{ dish }}, {{ country }}", "detailed": "A {{ dish }} diorama.\n\nSquare.\n"}))
    (fox,) = load(root)
    assert fox.prompts == {"default": "Isometric sushi from Japan; title 'JAPAN', 3 plates",
                           "terse": "sushi, Japan", "detailed": "A sushi diorama.\n\nSquare."}
    assert fox.templates["terse"] == "{{ dish }}, {{ country }}"
    assert set(fox.templates) == set(fox.prompts)


def test_json_prompt_with_single_braces_is_sent_verbatim(tmp_path: Path) -> None:
    text = '{\n"action": "image_edit",\n"change": "Warm genuine smile; keep {eyes}"\n}'
    root = suite(tmp_path / "s", challenge(kind="edit", references=["a.png"], prompt=text + "\n"))
    (edit,) = load(root)
    assert edit.prompts["default"] == text
    assert json.loads(edit.prompts["default"])["action"] == "image_edit"


def test_templates_cannot_reach_python_internals(tmp_path: Path) -> None:
    root = suite(tmp_path / "s", challenge(prompt="{{ name.__class__.__mro__ }}", variables={"name": "x"}))
    problem = only_problem(root)
    assert problem.field == "challenges[0].prompt"
    assert problem.reason.startswith("template error:")


def test_render_template_raises_on_an_undefined_variable() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render_template("A {{ colour }} fox", {})


JINJA_FREE = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r")).filter(
    lambda t: not any(d in t for d in ("{{", "{%", "{#")))


@given(JINJA_FREE)
@settings(max_examples=200, deadline=None)
def test_text_without_jinja_delimiters_renders_unchanged(text: str) -> None:
    assert render_template(text, {}) == text.strip()


# ---- content hash -------------------------------------------------------------------------------------------


def load_one(root: Path) -> Challenge:
    (one,) = load(root)
    return one


def edit_suite(root: Path, *, prompt: str = "Make the sky purple", image: bytes | None = None,
               reference: str = "a.png", **fields: Any) -> Path:
    suite(root, challenge(kind="edit", references=[reference], prompt=prompt, **fields))
    (root / reference).write_bytes(image if image is not None else photo_like((96, 64), 1))
    return root


def test_content_hash_is_stable_across_loads(tmp_path: Path) -> None:
    root = edit_suite(tmp_path / "s")
    assert load_one(root).content_hash == load_one(root).content_hash


@given(x=st.integers(0, 95), y=st.integers(0, 63), value=st.integers(0, 255))
@settings(max_examples=25, deadline=None)
def test_content_hash_changes_when_a_reference_images_bytes_change(x: int, y: int, value: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        original = photo_like((96, 64), 1)
        image = Image.open(io.BytesIO(original)).convert("RGB")
        pixel = image.getpixel((x, y))
        assert isinstance(pixel, tuple)
        red, green, blue = pixel[:3]
        image.putpixel((x, y), (value if value != red else (value + 1) % 256, green, blue))
        changed = io.BytesIO()
        image.save(changed, format="PNG")
        a = load_one(edit_suite(Path(tmp) / "a", image=original))
        b = load_one(edit_suite(Path(tmp) / "b", image=changed.getvalue()))
        assert a.content_hash != b.content_hash


@given(prompt=JINJA_FREE.filter(lambda t: t.strip() != "" and t.strip() != "Make the sky purple"))
@settings(max_examples=40, deadline=None)
def test_content_hash_changes_when_the_prompt_changes(prompt: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        a = load_one(edit_suite(Path(tmp) / "a"))
        b = load_one(edit_suite(Path(tmp) / "b", prompt=prompt))
        assert a.content_hash != b.content_hash


def test_content_hash_changes_when_a_variant_or_the_mask_changes(tmp_path: Path) -> None:
    base = load_one(suite(tmp_path / "a", challenge(variants={"terse": "fox"})))
    other_variant = load_one(suite(tmp_path / "b", challenge(variants={"terse": "a fox"})))
    assert base.content_hash != other_variant.content_hash

    fill = load_one(suite(tmp_path / "c", inpaint()))
    moved_mask = suite(tmp_path / "d", inpaint())
    (moved_mask / "mask.png").write_bytes(png_shifted())
    assert fill.content_hash != load_one(moved_mask).content_hash


def png_shifted() -> bytes:
    """A valid 96x64 mask marking a different region than ``mask_png``."""
    mask = Image.new("L", (96, 64), 0)
    mask.paste(255, (0, 0, 30, 20))
    out = io.BytesIO()
    mask.save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("change", ["title", "tags", "category", "reference file name", "yaml layout",
                                    "template rendering the same text"])
def test_content_hash_ignores_what_is_not_sent_or_scored(tmp_path: Path, change: str) -> None:
    original = load_one(edit_suite(tmp_path / "a", prompt="Make the sky purple", tags=["sky"]))
    root = tmp_path / "b"
    if change == "title":
        edit_suite(root, title="Purple sky, take two", tags=["sky"])
    elif change == "tags":
        edit_suite(root, tags=["sky", "colour", "minimal-edit"])
    elif change == "category":
        edit_suite(root, category="nature", tags=["sky"])
    elif change == "reference file name":
        edit_suite(root, reference="renamed-photo.png", tags=["sky"])
    elif change == "yaml layout":
        edit_suite(root, tags=["sky"])
        doc = (root / "suite.yaml").read_text(encoding="utf-8")
        (root / "suite.yaml").write_text("# a comment\n" + json.dumps(yaml.safe_load(doc)), encoding="utf-8")
    else:
        edit_suite(root, prompt="Make the {{ what }} {{ colour }}", variables={"what": "sky", "colour": "purple"},
                   tags=["sky"])
    assert load_one(root).content_hash == original.content_hash


@given(title=st.text(min_size=1).filter(str.strip), tags=st.lists(st.text(min_size=1), max_size=4),
       category=st.sampled_from(CATEGORIES))
@settings(max_examples=30, deadline=None)
def test_content_hash_is_the_same_for_any_title_tags_and_category(title: str, tags: list[str],
                                                                   category: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = load_one(edit_suite(Path(tmp) / "a"))
        relabelled = load_one(edit_suite(Path(tmp) / "b", title=title, tags=tags, category=category))
        assert relabelled.content_hash == base.content_hash


# ---- the snapshot stored with a run -------------------------------------------------------------------------


def test_frozen_snapshot_is_json_and_describes_each_image(tiny_suite: Path) -> None:
    by_id = {c.id: c for c in load(tiny_suite)}
    snapshot = json.loads(json.dumps(by_id["fill"].frozen()))
    assert set(snapshot) == {"id", "version", "title", "category", "kind", "prompts", "templates", "params",
                             "references", "mask", "captions", "tags", "source_file", "content_hash"}
    reference = read_image(tiny_suite / "a.png")
    assert snapshot["references"] == [{"name": "a.png", "sha256": reference.sha256, "mime": "image/png",
                                       "width": 96, "height": 64, "ext": "png"}]
    assert snapshot["mask"]["width"] == 96 and snapshot["kind"] == "inpaint"
