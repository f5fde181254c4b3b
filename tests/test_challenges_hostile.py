"""Crafted challenge files: each is a listed problem naming its file and field, never a traceback nor a
hang, and the other files' problems are still listed. Templates get a work budget in operations and
output size; reference images stay inside the suite unless the user allows otherwise."""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from harness.challenges import (
    MAX_PROMPT_CHARS,
    MAX_TEMPLATE_STEPS,
    TemplateBudgetError,
    load,
    render_template,
    validate,
)
from harness.cli import cli
from tests.conftest import photo_like
from tests.test_challenges import challenge, write_yaml


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb's signature)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def edit(ref: str, **fields: object) -> dict[str, object]:
    return challenge(kind="edit", references=[ref], prompt="Make it blue", **fields)


def reasons(problems: Sequence[object]) -> str:
    return "\n".join(str(p) for p in problems)


def test_a_decompression_bomb_reference_is_a_listed_problem_and_other_files_still_are(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "bomb.png").write_bytes(png_declaring(20_000, 20_000))  # 400 megapixels: Pillow's own error
    (suite / "big.png").write_bytes(png_declaring(9_000, 9_000))  # 81 megapixels: under Pillow's, over ours
    write_yaml(suite / "a-bomb.yaml", edit("bomb.png", id="bomb"))
    write_yaml(suite / "b-big.yaml", edit("big.png", id="big"))
    write_yaml(suite / "c-typo.yaml", challenge(id="typo", category="ilustration"))
    found, problems = validate(suite)
    text = reasons(problems)
    assert found == []
    assert "a-bomb.yaml: references[0]:" in text and "decompression bomb" in text
    assert "b-big.yaml: references[0]:" in text and "over the limit" in text
    assert "c-typo.yaml: category:" in text and "illustration" in text
    result = CliRunner().invoke(cli, ["challenges", "validate", str(suite)])
    assert result.exit_code == 1 and "Traceback" not in result.output and result.exception is not None


def test_binary_badly_encoded_and_bomb_yaml_files_are_listed_problems(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "binary.yaml").write_bytes(bytes(range(256)) * 8)
    (suite / "nul.yaml").write_bytes(b"id: x\x00\ntitle: y\n")
    (suite / "utf16.yaml").write_bytes("id: fox\ntitle: Fox\n".encode("utf-16"))
    (suite / "huge.yaml").write_bytes(b"# " + b"x" * (2 * 1024 * 1024) + b"\n")
    laughs = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    laughs += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(12)]
    (suite / "laughs.yaml").write_text("\n".join(laughs) + "\n", encoding="utf-8")
    (suite / "deep.yaml").write_text("x: " + "[" * 50_000 + "]" * 50_000 + "\n", encoding="utf-8")
    write_yaml(suite / "valid.yaml", challenge(id="valid"))
    found, problems = validate(suite)
    files = {Path(p.file).name: p.reason for p in problems}
    assert [c.id for c in found] == ["valid"]
    assert set(files) == {"binary.yaml", "nul.yaml", "utf16.yaml", "huge.yaml", "laughs.yaml", "deep.yaml"}
    assert "not UTF-8" in files["binary.yaml"] and "not UTF-8" in files["utf16.yaml"]
    assert "over the limit" in files["huge.yaml"] and "aliases" in files["laughs.yaml"]


def test_symlink_loops_are_listed_problems(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "loop-a.png").symlink_to("loop-b.png")
    (suite / "loop-b.png").symlink_to("loop-a.png")
    (suite / "self.yaml").symlink_to("self.yaml")
    (suite / "again").symlink_to(suite, target_is_directory=True)  # a folder loop
    write_yaml(suite / "loops.yaml", edit("loop-a.png", id="loops"))
    write_yaml(suite / "typo.yaml", challenge(id="typo", kind="txt2img"))
    found, problems = validate(suite)
    text = reasons(problems)
    assert found == []
    assert "loops.yaml: references[0]:" in text and "symlink loop" in text
    assert "self.yaml: (file):" in text
    assert "typo.yaml: kind:" in text
    assert text.count("typo.yaml") == 1  # the folder loop is not walked


def test_references_must_lie_inside_the_suite_unless_allowed(tmp_path: Path) -> None:
    """An absolute path, a climb out with '..' and a symlink to a private image are refused; the same suite
    passes with --allow-outside-refs, and the assets folder beside the suite (the starter layout) is fine."""
    private = tmp_path / "home" / "secret.png"
    private.parent.mkdir()
    private.write_bytes(photo_like((64, 48), 9))
    suite = tmp_path / "suites" / "mine"
    assets = tmp_path / "suites" / "assets"
    assets.mkdir(parents=True)
    (assets / "shared.png").write_bytes(photo_like((64, 48), 4))
    suite.mkdir()
    (suite / "link.png").symlink_to(private)
    write_yaml(suite / "absolute.yaml", edit(str(private), id="absolute"))
    write_yaml(suite / "climb.yaml", edit("../../home/secret.png", id="climb"))
    write_yaml(suite / "link.yaml", edit("link.png", id="link"))
    write_yaml(suite / "shared.yaml", edit("../assets/shared.png", id="shared"))
    found, problems = validate(suite)
    assert [c.id for c in found] == ["shared"]
    assert sorted(Path(p.file).name for p in problems) == ["absolute.yaml", "climb.yaml", "link.yaml"]
    assert all("outside the suite" in p.reason and "--allow-outside-refs" in p.reason for p in problems)
    with pytest.raises(Exception, match="outside the suite"):
        load(suite)
    assert len(load(suite, allow_outside_refs=True)) == 4
    runner = CliRunner()
    refused = runner.invoke(cli, ["challenges", "validate", str(suite)])
    allowed = runner.invoke(cli, ["challenges", "validate", "--allow-outside-refs", str(suite)])
    assert refused.exit_code == 1 and "outside the suite" in refused.output
    assert allowed.exit_code == 0, allowed.output


def test_starter_suite_is_valid_under_the_containment_rule() -> None:
    root = Path(__file__).resolve().parents[1] / "challenges" / "starter"
    found, problems = validate(root)
    assert problems == [] and len(found) >= 30


@pytest.mark.parametrize("template", [
    "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    "{{ 'A' * 3000000000 }}",
    "{{ 9 ** 999999999 }}",
    "{{ '%9999999999s' % 'a' }}",
    "{{ '{:>9999999999}'.format('a') }}",
    "{{ 'a'.center(3000000000) }}",
    "{{ 'a' | center(3000000000) }}",
    "{{ ('ab' * 50000) | replace('a', 'a' * 50000) }}",
    "{{ range(100000) | map('string') | join('x' * 100000) }}",
    "{% set x = 'A' * 99999 %}{% set y = x ~ x %}{% set z = y ~ y %}{{ z }}",
    "{{ [1] | batch(1000000000, 'x') | list }}",
    "{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}",
    "{% set x = range(99999) | list %}{% set y = [x] * 99999 %}{{ y }}",
    "{% set x = range(99999) | list %}{% set y = [x] * 99999 %}{{ y | join(',') }}",
    "{% set x = range(99999) | list %}{% set y = [x] * 99999 %}{{ y | sum(start=[]) | length }}",
    "{% set x = range(99999) | list %}{% set y = [x] * 99999 %}{{ '{}'.format(y) }}",
    "{{ 1 / 0 }}",
])
def test_templates_over_budget_are_listed_problems_quickly(tmp_path: Path, template: str) -> None:
    """Today nested ranges run for minutes and 'A'*3000000000 raises MemoryError; each is now a problem on
    its field, and a second, valid challenge in the suite still loads."""
    write_yaml(tmp_path / "suite.yaml", {"challenges": [challenge(id="hostile", prompt=template),
                                                        challenge(id="fine")]})
    found, problems = validate(tmp_path)
    assert [c.id for c in found] == ["fine"]
    assert len(problems) == 1 and problems[0].field == "challenges[0].prompt"
    assert "template" in problems[0].reason


# ---- properties of the template budget -------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(outer=st.integers(0, 2000), inner=st.integers(0, 2000), text=st.text("ab", max_size=5))
def test_nested_loops_render_exactly_or_hit_the_step_budget(outer: int, inner: int, text: str) -> None:
    """Whatever the loop sizes, the template either renders exactly what Python would, or fails with the
    budget error: never a hang, never another exception. Small work is never refused."""
    template = f"{{% for a in range({outer}) %}}{{% for b in range({inner}) %}}{text}{{% endfor %}}{{% endfor %}}"
    expected = text * outer * inner
    try:
        rendered = render_template(template + "!", {})
    except TemplateBudgetError:
        assert outer * inner + outer >= MAX_TEMPLATE_STEPS // 4 or len(expected) > MAX_PROMPT_CHARS // 2
        return
    assert rendered == (expected + "!").strip()
    assert len(rendered) <= MAX_PROMPT_CHARS


@settings(max_examples=80, deadline=None)
@given(op=st.sampled_from(["*", "**", "%", "+", "~", "center", "indent", "replace", "join"]),
       size=st.one_of(st.integers(0, 300), st.integers(10**4, 10**12)), word=st.text("xy%", min_size=1, max_size=4))
def test_any_size_argument_renders_within_budget_or_is_refused(op: str, size: int, word: str) -> None:
    """Operators and calls that build values: the result is at most MAX_PROMPT_CHARS, or the budget error."""
    word = word.replace("%", "%%") if op == "%" else word
    template = {
        "*": f"{{{{ '{word}' * {size} }}}}", "**": f"{{{{ 7 ** {size} }}}}",
        "%": f"{{{{ '%{size}s{word}' % 'a' }}}}", "+": f"{{{{ ('{word}' * {min(size, 99_999)}) + '{word}' }}}}",
        "~": f"{{{{ ('{word}' * {min(size, 99_999)}) ~ ('{word}' * {min(size, 99_999)}) }}}}",
        "center": f"{{{{ '{word}'.center({size}) }}}}", "indent": f"{{{{ '{word}\\n{word}' | indent({size}) }}}}",
        "replace": f"{{{{ ('{word}' * {min(size, 5000)}) | replace('{word[0]}', '{word}' * {min(size, 5000)}) }}}}",
        "join": f"{{{{ range({min(size, 100_000)}) | join('{word}' * {min(size, 50_000)}) }}}}",
    }[op]
    try:
        rendered = render_template(template, {})
    except TemplateBudgetError:
        return
    assert len(rendered) <= MAX_PROMPT_CHARS


def test_budget_is_counted_in_steps_not_time() -> None:
    """The same template gets the same verdict however slow the machine: a limit of 1,000 steps admits a
    loop of 200 iterations (a few steps each) and refuses one of 1,200, deterministically."""
    loop = "{% for i in range(N) %}.{% endfor %}"
    assert render_template(loop.replace("N", "200"), {}, max_steps=1000) == "." * 200
    for _ in range(3):
        with pytest.raises(TemplateBudgetError, match="1,000 steps"):
            render_template(loop.replace("N", "1200"), {}, max_steps=1000)


def test_an_unreadable_or_vanishing_reference_is_a_problem(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "folder.png").mkdir()
    (suite / "dangling.png").symlink_to(suite / "gone.png")
    write_yaml(suite / "a.yaml", edit("folder.png", id="folder"))
    write_yaml(suite / "b.yaml", edit("dangling.png", id="dangling"))
    found, problems = validate(suite)
    assert found == [] and sorted(p.field for p in problems) == ["references[0]", "references[0]"]
    assert all("not found" in p.reason for p in problems)
    if os.geteuid() != 0:
        (suite / "secret.png").write_bytes(photo_like((32, 32), 2))
        (suite / "secret.png").chmod(0)
        write_yaml(suite / "c.yaml", edit("secret.png", id="secret"))
        assert any("cannot read" in p.reason for p in validate(suite)[1])


def test_a_real_reference_still_loads_with_its_bytes(tmp_path: Path) -> None:
    data = photo_like((96, 64), 1)
    (tmp_path / "a.png").write_bytes(data)
    write_yaml(tmp_path / "s.yaml", edit("a.png", id="ok"))
    (only,) = load(tmp_path)
    assert only.references[0].data == data
    with Image.open(io.BytesIO(only.references[0].data)) as img:
        assert img.size == (96, 64)
