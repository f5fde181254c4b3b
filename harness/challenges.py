"""Challenge suites: YAML files describing prompts, references and parameters, validated before any request.

A suite is a folder of ``*.yaml`` files; a file holds one challenge (a mapping with ``id``) or several (a
mapping with a ``challenges:`` list). Fields (``challenges/README.md`` is the user's reference)::

    id: caffe-florian-logo          # unique slug within the suite
    version: 1                      # bump when the challenge changes meaningfully
    title: Vintage cafe logo
    category: typography            # see CATEGORIES
    kind: text-to-image             # text-to-image | edit | compose | inpaint
    prompt: 'Logo for "{{ name }}" ...'   # Jinja2 template, the "default" variant
    variables: {name: Caffè Florian}
    variants: {terse: 'Logo, "{{ name }}"'}   # alternative templates (prompt-template regression tests)
    references: [../assets/coffee.png]        # paths relative to the YAML file (edit, compose, inpaint)
    mask: ../assets/masks/coffee-crema.png    # inpaint only; single-channel PNG, white = region to repaint
    params: {aspect_ratio: "1:1", size: 1K, seed: 42, n: 1}
    captions: {source: a cup of coffee, target: a cup of tea}   # optional, for directional CLIP
    tags: [logo, text-rendering]

Validation never stops at the first problem: :func:`validate` reports every problem of every file, each
with the file, the field (``challenges[3].params.aspect_ratio``) and the reason, so one run of
``harness challenges validate`` is enough to fix a suite.

Every resolved challenge carries a ``content_hash`` over what is sent to a provider or used to score the
answer (id, version, kind, rendered prompts, params, captions, the bytes of its references and mask), and
nothing else: renaming a file, rewording a title, retagging, recategorising or rewriting a template so it
renders the same text keep the hash, so a changed challenge is never compared as if it were the same and
an unchanged one always is.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import jinja2.sandbox
import yaml
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.errors import ConfigError
from harness.providers.base import ChallengeKind, InputImage

CATEGORIES = (
    "portraiture", "photorealism", "typography", "infographic", "illustration", "anime", "product",
    "style-transfer", "spatial", "nature", "food", "architecture", "design", "character", "other",
)
"""Known categories; an unknown one is reported (with the closest match) so typos never split a leaderboard."""

DEFAULT_VARIANT = "default"
SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
ASPECT = re.compile(r"^[1-9][0-9]?:[1-9][0-9]?$")
SIZE = re.compile(r"^(?:[1-9][0-9]{1,4}x[1-9][0-9]{1,4}|512|0\.5K|1K|2K|4K|auto)$")
IMAGE_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
IMAGE_EXT = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
MASK_MODES = ("L", "1")
"""Pillow modes a mask may have: single channel, 255 (white) = repaint, 0 (black) = keep."""
MASK_THRESHOLD = 128
"""Mask pixels at or above this grey level count as "repaint" when checking that a mask marks something."""
REFERENCE_COUNTS: dict[ChallengeKind, tuple[int, int]] = {
    ChallengeKind.TEXT_TO_IMAGE: (0, 0),
    ChallengeKind.EDIT: (1, 16),
    ChallengeKind.COMPOSE: (2, 16),
    ChallengeKind.INPAINT: (1, 1),
}
"""Fewest and most reference images each kind takes (16 is the most any supported API accepts)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation finding: which file, which field, and why."""

    file: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.reason}"


class ChallengeError(ConfigError):
    """A suite has problems; ``problems`` lists every one of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in challenges:\n{lines}")


class Params(BaseModel):
    """Generation parameters; adapters map them onto each provider's own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    aspect_ratio: str | None = None
    size: str | None = None
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    n: int = Field(default=1, ge=1, le=10)

    @field_validator("aspect_ratio")
    @classmethod
    def _aspect(cls, v: str | None) -> str | None:
        if v is not None and not ASPECT.match(v):
            raise ValueError(f"aspect_ratio must be WIDTH:HEIGHT such as '16:9' (quoted in YAML), not {v!r}")
        return v

    @field_validator("size")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        if v is not None and not SIZE.match(v):
            raise ValueError(f"size must be WIDTHxHEIGHT (e.g. 1024x1024) or a tier 512/1K/2K/4K, not {v!r}")
        return v


class Captions(BaseModel):
    """Source and target captions, for directional CLIP similarity of edits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    target: str


class ChallengeSpec(BaseModel):
    """A challenge as written in YAML, before its templates are rendered and its files read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    version: int = Field(default=1, ge=1)
    title: str
    category: str
    kind: ChallengeKind
    prompt: str
    variables: dict[str, str | int | float | bool] = Field(default_factory=dict)
    variants: dict[str, str] = Field(default_factory=dict)
    references: list[str] = Field(default_factory=list)
    mask: str | None = None
    params: Params = Field(default_factory=Params)
    captions: Captions | None = None
    tags: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Challenge:
    """A validated challenge with rendered prompts (one per variant) and loaded images."""

    id: str
    version: int
    title: str
    category: str
    kind: ChallengeKind
    prompts: dict[str, str]
    params: Params
    references: tuple[InputImage, ...]
    mask: InputImage | None
    captions: Captions | None
    tags: tuple[str, ...]
    source_file: str
    content_hash: str
    templates: dict[str, str] = field(default_factory=dict)

    def frozen(self) -> dict[str, Any]:
        """The JSON-able snapshot stored with a run (image bytes live in the image store, by hash)."""
        return {
            "id": self.id,
            "version": self.version,
            "title": self.title,
            "category": self.category,
            "kind": self.kind.value,
            "prompts": self.prompts,
            "templates": self.templates,
            "params": self.params.model_dump(),
            "references": [_image_meta(r) for r in self.references],
            "mask": _image_meta(self.mask) if self.mask else None,
            "captions": self.captions.model_dump() if self.captions else None,
            "tags": list(self.tags),
            "source_file": self.source_file,
            "content_hash": self.content_hash,
        }


def _image_meta(img: InputImage) -> dict[str, Any]:
    return {"name": img.name, "sha256": img.sha256, "mime": img.mime, "width": img.width, "height": img.height,
            "ext": img.mime.split("/")[1].replace("jpeg", "jpg")}


_ENV = jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                                                      keep_trailing_newline=False)


def render_template(template: str, variables: Mapping[str, Any]) -> str:
    """Render a prompt template; undefined variables raise ``jinja2.UndefinedError``.

    The result is stripped of surrounding whitespace, so a YAML block scalar's final newline is not part of
    the prompt. Single braces (JSON prompts) pass through unchanged; only ``{{``, ``{%`` and ``{#`` are Jinja2.
    """
    return _ENV.from_string(template).render(**variables).strip()


def _undeclared(template: str) -> set[str]:
    return set(jinja2.meta.find_undeclared_variables(_ENV.parse(template)))


def read_image(path: Path, name: str | None = None) -> InputImage:
    """Read an image file fully and describe it; raises ``ValueError`` when it is not a PNG/JPEG/WebP."""
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or ""
            img.verify()
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            width, height = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable image ({exc})") from exc
    if fmt not in IMAGE_MIME:
        raise ValueError(f"{path} is a {fmt or 'unknown'} image; use PNG, JPEG or WebP")
    return InputImage(name=name or path.name, data=data, mime=IMAGE_MIME[fmt], width=width, height=height,
                      sha256=hashlib.sha256(data).hexdigest())


def _mask_problems(mask: InputImage) -> list[str]:
    """Why ``mask`` does not follow the convention (single-channel PNG, white = repaint), if it does not."""
    if mask.mime != "image/png":
        return [f"mask must be a PNG (lossless, so the region's edge stays exact), not {mask.mime}"]
    with Image.open(io.BytesIO(mask.data)) as img:
        mode = img.mode
        if mode not in MASK_MODES:
            return [f"mask must be a single-channel PNG (mode 'L': white 255 = repaint, black 0 = keep), "
                    f"not mode {mode!r}; convert it with Pillow's Image.convert('L')"]
        grey = img.convert("L")
    histogram = grey.histogram()
    marked = sum(histogram[MASK_THRESHOLD:])
    if marked == 0:
        return ["mask is all black: it marks no region to repaint (white = repaint)"]
    if marked == mask.width * mask.height:
        return ["mask is all white: it repaints the whole image; use kind 'edit' instead"]
    return []


def _content_hash(spec: ChallengeSpec, prompts: dict[str, str], images: list[InputImage],
                  mask: InputImage | None) -> str:
    payload = {
        "id": spec.id, "version": spec.version, "kind": spec.kind.value, "prompts": prompts,
        "params": spec.params.model_dump(), "references": [i.sha256 for i in images],
        "mask": mask.sha256 if mask else None,
        "captions": spec.captions.model_dump() if spec.captions else None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _loc(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def _suggest(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_spec(spec: ChallengeSpec, file: Path, where: str, problems: list[Problem],
                skip: frozenset[str] = frozenset()) -> Challenge | None:
    """Validate one parsed challenge against its files; append problems; return it when valid.

    ``skip`` names fields that already failed (they hold placeholders here and are not checked again), so
    one run reports every independent problem of a challenge.
    """
    fname = str(file)
    start = len(problems)

    def problem(fld: str, reason: str) -> None:
        problems.append(Problem(fname, f"{where}{fld}", reason))

    if "id" not in skip and not SLUG.match(spec.id):
        problem("id", f"{spec.id!r} is not a slug (lower-case letters, digits, '.', '_' or '-', at most 80)")
    if "category" not in skip and spec.category not in CATEGORIES:
        hint = _suggest(spec.category, CATEGORIES) or f"; known: {', '.join(CATEGORIES)}"
        problem("category", f"unknown category {spec.category!r}{hint}")
    for name in spec.variants:
        if name == DEFAULT_VARIANT:
            problem(f"variants.{name}", f"{DEFAULT_VARIANT!r} is reserved for `prompt`")
        elif not SLUG.match(name):
            problem(f"variants.{name}", "variant names must be slugs (lower-case letters, digits, '.', '_', '-')")

    templates = {DEFAULT_VARIANT: spec.prompt, **spec.variants}
    prompts: dict[str, str] = {}
    for name, template in templates.items():
        fld = "prompt" if name == DEFAULT_VARIANT else f"variants.{name}"
        if fld.split(".")[0] in skip or "variables" in skip:
            continue
        try:
            missing = sorted(_undeclared(template) - set(spec.variables))
            if missing:
                problem(fld, f"template variable(s) undefined: {', '.join(missing)} (add them to `variables`)")
                continue
            text = render_template(template, spec.variables)
        except jinja2.TemplateSyntaxError as exc:
            problem(fld, f"template syntax error on line {exc.lineno}: {exc.message}")
            continue
        except jinja2.TemplateError as exc:
            problem(fld, f"template error: {exc}")
            continue
        if not text:
            problem(fld, "renders to an empty prompt")
        prompts[name] = text

    n_refs = len(spec.references)
    if "kind" not in skip and "references" not in skip:
        low, high = REFERENCE_COUNTS[spec.kind]
        if not low <= n_refs <= high:
            want = "no references" if high == 0 else (
                f"exactly {low} reference" if low == high else f"{low} to {high} references")
            problem("references", f"kind {spec.kind.value!r} takes {want}, found {n_refs}")
    if "kind" not in skip and "mask" not in skip:
        if spec.kind == ChallengeKind.INPAINT and spec.mask is None:
            problem("mask", "kind 'inpaint' needs a mask image (white = repaint, black = keep)")
        if spec.kind != ChallengeKind.INPAINT and spec.mask is not None:
            problem("mask", f"only 'inpaint' challenges take a mask, this one is {spec.kind.value!r}")

    images: list[InputImage] = []
    for i, ref in enumerate(spec.references):
        path = (file.parent / ref).resolve()
        if not path.is_file():
            problem(f"references[{i}]", f"reference file not found: {ref} (looked at {path})")
            continue
        try:
            images.append(read_image(path))
        except ValueError as exc:
            problem(f"references[{i}]", str(exc))
    mask: InputImage | None = None
    if spec.mask is not None and (spec.kind == ChallengeKind.INPAINT or "kind" in skip):
        path = (file.parent / spec.mask).resolve()
        if not path.is_file():
            problem("mask", f"mask file not found: {spec.mask} (looked at {path})")
        else:
            try:
                mask = read_image(path)
            except ValueError as exc:
                problem("mask", str(exc))
            else:
                for reason in _mask_problems(mask):
                    problem("mask", reason)
                if images and (mask.width, mask.height) != (images[0].width, images[0].height):
                    problem("mask", f"mask is {mask.width}x{mask.height} but its image references[0] is "
                                    f"{images[0].width}x{images[0].height}; they must be the same size")
    if len(problems) > start or skip:
        return None
    return Challenge(
        id=spec.id, version=spec.version, title=spec.title, category=spec.category, kind=spec.kind,
        prompts=prompts, params=spec.params, references=tuple(images), mask=mask, captions=spec.captions,
        tags=tuple(spec.tags), source_file=fname, content_hash=_content_hash(spec, prompts, images, mask),
        templates=templates,
    )


_PLACEHOLDERS: dict[str, Any] = {
    "id": "invalid", "title": "", "category": "other", "kind": ChallengeKind.TEXT_TO_IMAGE, "prompt": "",
}


def _lenient(raw: Mapping[str, Any], bad: set[str]) -> ChallengeSpec | None:
    """The challenge with its failed (or missing) fields replaced by placeholders, for the remaining checks."""
    cleaned = {k: v for k, v in raw.items() if k not in bad and k in ChallengeSpec.model_fields}
    for name, value in _PLACEHOLDERS.items():
        cleaned.setdefault(name, value)
    try:
        return ChallengeSpec.model_validate(cleaned)
    except ValidationError:
        return None


_MODEL_OF_FIELD: dict[str, type[BaseModel]] = {"params": Params, "captions": Captions}


def _pydantic_reason(err: Mapping[str, Any]) -> str:
    loc = err["loc"]
    given = err.get("input")
    if err["type"] == "enum" and loc and loc[-1] == "kind":
        kinds = [k.value for k in ChallengeKind]
        return f"unknown kind {given!r}{_suggest(str(given), kinds)} (kinds: {', '.join(kinds)})"
    if err["type"] == "extra_forbidden":
        model = _MODEL_OF_FIELD.get(str(loc[0]), ChallengeSpec) if len(loc) > 1 else ChallengeSpec
        return f"unknown field{_suggest(str(loc[-1]), model.model_fields)}"
    if err["type"] == "missing":
        return "required field is missing"
    if err["type"] == "string_type" and isinstance(given, int | float | bool):
        hint = " (YAML 1.1 reads an unquoted 16:9 as the number 969)" if loc and loc[-1] == "aspect_ratio" else ""
        return f"must be a string, but YAML read the unquoted value as {given!r}; quote it{hint}"
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "value_error":
        return message
    shown = repr(given)
    return f"{message} (found {shown if len(shown) <= 60 else shown[:57] + '...'})"


def _check_raw(raw: Mapping[str, Any], file: Path, where: str, seen: dict[str, str],
               problems: list[Problem]) -> Challenge | None:
    """Every problem of one challenge mapping, appended to ``problems``; the challenge when it has none."""
    fname = str(file)
    bad: set[str] = set()
    duplicate = False
    raw_id = raw.get("id")
    if raw_id is not None and not isinstance(raw_id, str):
        problems.append(Problem(fname, f"{where}id", f"must be a string (quote it in YAML), not {raw_id!r}"))
        bad.add("id")
    elif isinstance(raw_id, str):
        if raw_id in seen:
            problems.append(Problem(fname, f"{where}id", f"duplicate id {raw_id!r} (first defined in {seen[raw_id]})"))
            duplicate = True
        else:
            seen[raw_id] = f"{fname} {where.rstrip('.')}".rstrip()
    try:
        spec = ChallengeSpec.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            top = str(err["loc"][0]) if err["loc"] else ""
            if top == "id" and "id" in bad:
                continue
            problems.append(Problem(fname, f"{where}{_loc(err['loc'])}", _pydantic_reason(err)))
            if top:
                bad.add(top)
    else:
        challenge = _check_spec(spec, file, where, problems)
        return None if duplicate else challenge
    partial = _lenient(raw, bad)
    if partial is not None:
        missing = {k for k in _PLACEHOLDERS if k not in raw}
        _check_spec(partial, file, where, problems, skip=frozenset(bad | missing))
    return None


class _SuiteLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key repeated in one mapping is an error, not a silent overwrite."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float) and key in keys:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark)
            keys.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_reason(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return f"not valid YAML: {exc}"


def _yaml_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def _specs_in(file: Path, problems: list[Problem]) -> list[tuple[str, Any]]:
    try:
        doc = yaml.load(file.read_text(encoding="utf-8"), Loader=_SuiteLoader)
    except yaml.YAMLError as exc:
        problems.append(Problem(str(file), "(file)", _yaml_reason(exc)))
        return []
    except UnicodeDecodeError:
        problems.append(Problem(str(file), "(file)", "not UTF-8 text"))
        return []
    if isinstance(doc, dict) and "challenges" in doc and "id" not in doc:
        for key in doc:
            if key != "challenges":
                problems.append(Problem(str(file), str(key), "unknown field; a suite file holds only `challenges:`"))
        items = doc["challenges"]
        if not isinstance(items, list):
            problems.append(Problem(str(file), "challenges", "must be a list of challenges"))
            return []
        return [(f"challenges[{i}].", item) for i, item in enumerate(items)]
    if isinstance(doc, dict):
        return [("", doc)]
    problems.append(Problem(str(file), "(file)", "must be a mapping with `id` or a `challenges:` list"))
    return []


def validate(path: str | Path) -> tuple[list[Challenge], list[Problem]]:
    """Load every challenge under ``path`` (a file or a suite folder) and collect every problem."""
    root = Path(path)
    problems: list[Problem] = []
    if not root.exists():
        return [], [Problem(str(root), "(path)", "no such file or folder")]
    files = _yaml_files(root)
    if not files:
        return [], [Problem(str(root), "(path)", "contains no .yaml challenge files")]
    challenges: list[Challenge] = []
    seen: dict[str, str] = {}
    for file in files:
        for where, raw in _specs_in(file, problems):
            if not isinstance(raw, dict):
                problems.append(Problem(str(file), where.rstrip(".") or "(file)", "must be a mapping"))
                continue
            challenge = _check_raw(raw, file, where, seen, problems)
            if challenge is not None:
                challenges.append(challenge)
    return challenges, problems


def load(path: str | Path) -> list[Challenge]:
    """Load a suite, raising :class:`ChallengeError` listing every problem when any exists."""
    challenges, problems = validate(path)
    if problems:
        raise ChallengeError(problems)
    return challenges
