"""Challenge suites: YAML files describing prompts, references and parameters, validated before any request.

A suite is a folder of ``*.yaml`` files; a file holds one challenge (a mapping with ``id``) or several (a
mapping with a ``challenges:`` list). Fields (``challenges/README.md`` is the user's reference)::

    id: caffe-florian-logo          # unique slug within the suite
    version: 1                      # bump when the challenge changes meaningfully
    title: Vintage cafe logo
    category: typography            # see CATEGORIES
    kind: text-to-image             # text-to-image | edit | compose | inpaint | multi-turn
    prompt: 'Logo for "{{ name }}" ...'   # Jinja2 template, the "default" variant
    variables: {name: Caffè Florian}
    variants: {terse: 'Logo, "{{ name }}"'}   # alternative templates (prompt-template regression tests)
    references: [../assets/coffee.png]        # paths relative to the YAML file (edit, compose, inpaint)
    mask: ../assets/masks/coffee-crema.png    # inpaint only; single-channel PNG, white = region to repaint
    params: {aspect_ratio: "1:1", size: 1K, seed: 42, n: 1}
    captions: {source: a cup of coffee, target: a cup of tea}   # optional, for directional CLIP
    tags: [logo, text-rendering]

A ``multi-turn`` challenge has no ``prompt``: an optional starting image set (``references``) and an ordered
list of ``turns``, each a template with its own ``variants``, optional extra ``references`` sent with that
turn, and ``preserve`` (what the turn must keep: metadata for judges and scores, not sent)::

    kind: multi-turn
    references: [../assets/camera.png]
    turns:
      - prompt: Give the man a warm, genuine smile.
        variants: {terse: Make him smile.}
        preserve: [face identity, camera, background]
      - prompt: Now put a red knitted scarf on him.
        references: [../assets/scarf.png]

Validation never stops at the first problem: :func:`validate` reports every problem of every file, each
with the file, the field (``challenges[3].params.aspect_ratio``) and the reason, so one run of
``harness challenges validate`` is enough to fix a suite. A hostile or broken file is a listed problem,
never a traceback that hides the others: files that are not UTF-8, binary or over :data:`MAX_FILE_BYTES`,
YAML alias bombs, symlink loops, unreadable files, reference images over :data:`MAX_REFERENCE_PIXELS`
(decompression bombs) or :data:`MAX_REFERENCE_BYTES`, and templates that exceed their work budget.

Templates run in Jinja2's immutable sandbox with a **work budget counted in operations and output size,
not wall time** (so the verdict is the same on a fast and a slow machine): at most
:data:`MAX_TEMPLATE_STEPS` executed template lines (each loop iteration costs at least one) and a prompt of
at most :data:`MAX_PROMPT_CHARS` characters, checked *before* an operation that would build a larger value
(``'A' * 3000000000``, ``x ** 99999999``, ``'%9999999999s'``, ``s.center(10**9)``, ``|indent(10**9)``, a
``join``/``replace`` whose result would be too long), and while the output streams.

Reference images (and masks) must lie inside the suite folder, or in the ``assets`` folder beside it
(``challenges/assets`` for ``challenges/starter``), after resolving ``..`` and symlinks; otherwise a
challenge file could send any image on disk to every provider and into the published report. Pass
``allow_outside_refs`` (``--allow-outside-refs``) to lift this for a suite you trust.

Every resolved challenge carries a ``content_hash`` over what is sent to a provider or used to score the
answer (id, version, kind, rendered prompts, params, captions, the bytes of its references and mask), and
nothing else: renaming a file, rewording a title, retagging, recategorising or rewriting a template so it
renders the same text keep the hash, so a changed challenge is never compared as if it were the same and
an unchanged one always is.
"""

from __future__ import annotations

import difflib
import enum
import hashlib
import io
import itertools
import json
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import jinja2
import jinja2.compiler
import jinja2.exceptions
import jinja2.meta
import jinja2.nodes
import jinja2.sandbox
import yaml
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.errors import ConfigError

# ---- domain types: what a challenge asks and the images it sends --------------------------------------------
# They live with the challenges (adapters, runner and sandbox import them from here, or through
# harness.providers.base, which re-exports them for adapters).


class ChallengeKind(enum.StrEnum):
    """What a challenge asks of a model."""

    TEXT_TO_IMAGE = "text-to-image"
    EDIT = "edit"
    COMPOSE = "compose"
    INPAINT = "inpaint"
    MULTI_TURN = "multi-turn"
    """An ordered list of turns in one conversation: each turn's request carries the earlier turns (their
    instructions and the model's own replies), see :class:`Exchange`."""


@dataclass(frozen=True)
class InputImage:
    """A reference image or mask sent with a request. ``mime`` is the real type of ``data``."""

    name: str
    data: bytes
    mime: str
    width: int
    height: int
    sha256: str

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
    ChallengeKind.MULTI_TURN: (0, 14),
}
"""Fewest and most reference images each kind takes (16 is the most any supported API accepts)."""
MAX_TURNS = 16
"""Most turns a multi-turn challenge may have; the starter suite's conversations use 2 or 3."""
MAX_CONVERSATION_IMAGES = 14
"""Most images one turn of a conversation may hold, its history's images (starting set, every earlier turn's
extra references and the model's earlier answers) included: Gemini 3 image models take up to 14 reference
images (https://ai.google.dev/gemini-api/docs/image-generation), the most of the multi-turn protocols."""
MAX_INLINE_REQUEST_BYTES = 20 * 1000 * 1000
"""Gemini's limit on a request with inline images: "the total request size ... is limited to 20MB"
(https://ai.google.dev/gemini-api/docs/image-understanding). Every turn resends the whole history, so a
conversation grows toward it turn by turn."""
OUTPUT_BYTES_PER_PIXEL = 3.0
"""Estimated bytes of one answer image per pixel when a conversation's request size is checked: 24-bit RGB
uncompressed, an upper bound for a PNG photograph (PNG of camera-like content compresses to about half)."""
DEFAULT_OUTPUT_TIER_SIDE = 1024
"""Long side of the answer assumed when a multi-turn challenge names no ``size``: the 1K tier, the default
of every Gemini image model (https://ai.google.dev/gemini-api/docs/image-generation)."""
TIER_SIDES = {"512": 512, "0.5K": 512, "1K": 1024, "2K": 2048, "4K": 4096}
"""Long side of each resolution tier, for estimating the answer images of a conversation."""
MAX_FILE_BYTES = 1024 * 1024
"""Largest challenge (YAML) file read: a suite of hundreds of challenges fits in a few hundred KB."""
MAX_YAML_ALIASES = 100
"""YAML aliases (``*name``) allowed per file; a "billion laughs" file nests thousands to expand exponentially."""
MAX_REFERENCE_BYTES = 50 * 1024 * 1024
"""Largest reference image file: 50 MB is OpenAI's per-image limit for edits
(https://platform.openai.com/docs/api-reference/images/createEdit), the largest of the supported APIs."""
MAX_REFERENCE_PIXELS = 8192 * 8192
"""Largest reference image, in pixels, checked from the header before decoding (a decompression bomb is a
small file declaring billions of pixels); 8192x8192 is twice the side of the largest (4K) output any
supported API returns."""
MAX_TEMPLATE_STEPS = 100_000
"""Template lines one prompt may execute (every loop iteration costs at least one); real prompts use < 100."""
MAX_PROMPT_CHARS = 100_000
"""Longest rendered prompt, and the largest string or list a template may build; three times the longest
prompt any supported API takes (gpt-image-1: 32,000 characters,
https://platform.openai.com/docs/api-reference/images/create)."""


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


class TurnSpec(BaseModel):
    """One turn of a multi-turn challenge as written in YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str
    variants: dict[str, str] = Field(default_factory=dict)
    references: list[str] = Field(default_factory=list)
    preserve: list[str] = Field(default_factory=list)


class ChallengeSpec(BaseModel):
    """A challenge as written in YAML, before its templates are rendered and its files read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    version: int = Field(default=1, ge=1)
    title: str
    category: str
    kind: ChallengeKind
    prompt: str | None = None
    turns: list[TurnSpec] | None = None
    variables: dict[str, str | int | float | bool] = Field(default_factory=dict)
    variants: dict[str, str] = Field(default_factory=dict)
    references: list[str] = Field(default_factory=list)
    mask: str | None = None
    params: Params = Field(default_factory=Params)
    captions: Captions | None = None
    tags: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Turn:
    """One validated turn of a multi-turn challenge: its rendered prompt per variant (a variant the turn does
    not define uses its ``default``), the images sent with it (the first turn's include the starting set), and
    what it must preserve."""

    prompts: dict[str, str]
    references: tuple[InputImage, ...]
    preserve: tuple[str, ...] = ()
    templates: dict[str, str] = field(default_factory=dict)

    def frozen(self) -> dict[str, Any]:
        return {"prompts": self.prompts, "templates": self.templates, "preserve": list(self.preserve),
                "references": [r.sha256 for r in self.references]}


@dataclass(frozen=True)
class Challenge:
    """A validated challenge with rendered prompts (one per variant) and loaded images.

    A multi-turn challenge has its ``turns``; its ``references`` are every image the conversation sends from
    the suite (starting set first, then each turn's new ones), and ``prompts[v]`` is its turns' prompts, one
    numbered line each, for showing and scoring the final image."""

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
    turns: tuple[Turn, ...] = ()

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
            **({"turns": [t.frozen() for t in self.turns]} if self.turns else {}),
        }


def thaw_turns(frozen: Mapping[str, Any], references: Sequence[InputImage]) -> tuple[Turn, ...]:
    """The turns of a stored multi-turn challenge (:meth:`Challenge.frozen`), their images taken from the
    challenge's own ``references`` by hash; ``()`` for any other challenge."""
    by_hash = {r.sha256: r for r in references}
    turns = []
    for i, t in enumerate(frozen.get("turns") or ()):
        missing = [sha for sha in t["references"] if sha not in by_hash]
        if missing:
            raise ConfigError(f"stored challenge {frozen.get('id')!r}: turn {i + 1} names image(s) "
                              f"{', '.join(missing)} that are not among its references")
        turns.append(Turn(prompts=dict(t["prompts"]), references=tuple(by_hash[sha] for sha in t["references"]),
                          preserve=tuple(t.get("preserve") or ()), templates=dict(t.get("templates") or {})))
    return tuple(turns)


def _image_meta(img: InputImage) -> dict[str, Any]:
    return {"name": img.name, "sha256": img.sha256, "mime": img.mime, "width": img.width, "height": img.height,
            "ext": img.mime.split("/")[1].replace("jpeg", "jpg")}


class TemplateBudgetError(jinja2.exceptions.SecurityError):
    """A template that would do more work, or build a larger value, than its budget allows."""


_PERCENT_SPEC = re.compile(r"%[#0\- +]*(\d*)(?:\.(\d+))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*:[^{}]*\}")


def _too_big(size: int, what: str) -> None:
    if size > MAX_PROMPT_CHARS:
        raise TemplateBudgetError(f"{what} would build {size:,} items; the template budget is "
                                  f"{MAX_PROMPT_CHARS:,} (see MAX_PROMPT_CHARS)")


def _check_format(fmt: str) -> None:
    """Refuse a format string whose widths or precisions exceed the budget (``%9999999999s``, ``{:>9999999999}``)."""
    numbers = [int(n) for m in _PERCENT_SPEC.finditer(fmt) for n in m.groups() if n]
    numbers += [int(n) for m in _BRACE_SPEC.finditer(fmt) for n in re.findall(r"\d+", m.group().split(":", 1)[1])]
    if numbers:
        _too_big(max(numbers), "a format width")


def _text_size(value: Any, limit: int = MAX_PROMPT_CHARS) -> int:
    """A lower bound on ``len(str(value))`` that stops counting past ``limit``: nested lists that share one
    big list (``[x] * 99999``) cost 10**10 characters to print but only ``limit`` steps to refuse here."""
    pending = [value]
    size = 0
    while pending and size <= limit:
        item = pending.pop()
        if isinstance(item, str):
            size += len(item)
        elif isinstance(item, list | tuple | set | frozenset):
            size += 2 + max(len(item) - 1, 0) * 2
            pending.extend(itertools.islice(iter(item), limit + 1))
        elif isinstance(item, dict):
            size += 2 + len(item) * 4
            pending.extend(itertools.islice(itertools.chain.from_iterable(item.items()), 2 * limit + 2))
        else:
            size += 1
    return size


def _check_text(value: Any, what: str) -> None:
    if not isinstance(value, str | int | float | bool) and value is not None:
        _too_big(_text_size(value), what)


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | tuple) else None


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            if _sized(seq) is not None and isinstance(count, int):
                _too_big(len(seq) * max(count, 0), f"{type(seq).__name__} * {count}")
        if isinstance(left, int) and isinstance(right, int):
            _too_big((left.bit_length() + right.bit_length()) * 3 // 10, "a product's digits")
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        digits = max(left.bit_length(), 1) * right * 3 // 10
        if digits > 4000:  # Python refuses to print an integer of more than 4,300 digits
            raise TemplateBudgetError(f"a power would have about {digits:,} digits (at most 4,000)")
    elif operator == "+" and _sized(left) is not None and _sized(right) is not None:
        _too_big(len(left) + len(right), "a concatenation")
    elif operator == "%" and isinstance(left, str):
        _check_format(left)
        _check_text(right, "a formatted value")


_UNSIZED_NUMBER_CALLS = frozenset({"round", "int", "float", "abs", "filesizeformat", "range"})
"""Calls whose integer arguments do not set the size of what they build."""
_TEXT_CALLS = frozenset({"string", "pprint", "tojson", "e", "escape", "forceescape", "safe", "urlencode", "center",
                         "indent", "wordwrap", "truncate", "title", "upper", "lower", "capitalize", "trim", "replace",
                         "format"})
"""Calls that print or copy their whole value, so a value too large to print is refused before they run."""


def _check_numbers(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """An integer argument (a width, a count) larger than the budget."""
    numbers = [a for a in (*args, *kwargs.values()) if isinstance(a, int) and not isinstance(a, bool)]
    if numbers and name not in _UNSIZED_NUMBER_CALLS:
        _too_big(max(numbers), f"{name}() with {max(numbers)}")


def _check_format_call(value: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """``str.format``/``format_map``: the format string's widths and every value it formats."""
    _check_format(value)
    for argument in (*args, *kwargs.values()):
        _check_text(argument, "a formatted value")


def _check_sum(value: Any, args: tuple[Any, ...]) -> None:
    if isinstance(value, list | tuple) and any(isinstance(v, list | tuple) for v in value):
        _too_big(sum(len(v) for v in value if isinstance(v, list | tuple)), "a sum of lists")


def _check_replace(value: Any, args: tuple[Any, ...]) -> None:
    if isinstance(value, str) and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        hits = value.count(old) if old else len(value) + 1
        _too_big(len(value) + hits * len(new), "a replace")


def _check_expandtabs(value: Any, args: tuple[Any, ...]) -> None:
    if isinstance(value, str):
        tab = int(args[0]) if args and isinstance(args[0], int) else 8
        _too_big(len(value) + value.count("\t") * tab, "expandtabs()")


def _check_indent(value: Any, args: tuple[Any, ...]) -> None:
    if isinstance(value, str):
        width = args[0] if args and isinstance(args[0], int) else 4
        _too_big(len(value) + (value.count("\n") + 1) * width, "an indent")


_RESULT_SIZE_CHECKS: dict[str, Callable[[Any, tuple[Any, ...]], None]] = {
    "sum": _check_sum, "replace": _check_replace, "expandtabs": _check_expandtabs, "indent": _check_indent,
}
"""Calls whose result can grow far past their value and arguments, each with the check of its result's size."""


def _check_arguments(name: str, value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse a call to a string method or filter that would build an oversized value."""
    _check_numbers(name, args, kwargs)
    if name in ("format", "format_map") and isinstance(value, str):
        _check_format_call(value, args, kwargs)
    if name in _TEXT_CALLS:
        _check_text(value, f"{name}() of a large value")
    check = _RESULT_SIZE_CHECKS.get(name)
    if check is not None:
        check(value, args)


def _bounded_items(items: Any) -> list[Any]:
    """At most :data:`MAX_PROMPT_CHARS` items of an iterable, as a list (refusing longer ones unread)."""
    if isinstance(items, str):
        return list(items)
    taken = list(itertools.islice(iter(items), MAX_PROMPT_CHARS + 1))
    _too_big(len(taken), "a join over an iterable")
    return taken


def _check_join(separator: str, items: list[Any]) -> None:
    total = len(separator) * max(len(items) - 1, 0)
    for item in items:
        if total > MAX_PROMPT_CHARS:
            break
        total += _text_size(item, MAX_PROMPT_CHARS - total)
    _too_big(total, "a join")


def _budgeted_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    context_first = getattr(func, "jinja_pass_arg", None) is not None

    def checked(*args: Any, **kwargs: Any) -> Any:
        head, rest = (args[:1], args[1:]) if context_first else ((), args)
        if rest and name == "join":
            items = _bounded_items(rest[0])
            _check_join(str(rest[1] if len(rest) > 1 else kwargs.get("d", "")), items)
            rest = (items, *rest[1:])
        if rest:
            _check_arguments(name, rest[0], tuple(rest[1:]), kwargs)
        return func(*head, *rest, **kwargs)

    for attribute in ("jinja_pass_arg",):
        if hasattr(func, attribute):
            setattr(checked, attribute, getattr(func, attribute))
    return checked


def _budgeted_concat(parts: Iterable[Any]) -> str:
    """The ``~`` operator, refusing a result over the budget before building it."""
    items = list(parts)
    total = 0
    for item in items:
        total += _text_size(item, MAX_PROMPT_CHARS - total)
        _too_big(total, "a ~ concatenation")
    return "".join(str(p) for p in items)


def _bounded_output(value: Any) -> Any:
    """Jinja's ``finalize``: every ``{{ value }}`` is checked before it is turned into text."""
    _check_text(value, "printing a value")
    return value


class _BudgetedCodeGenerator(jinja2.compiler.CodeGenerator):
    """Compiles ``~`` to :func:`_budgeted_concat` (the sandbox does not intercept it, and chained ``set``s
    of ``x ~ x`` would double a string per line)."""

    def visit_Concat(self, node: jinja2.nodes.Concat, frame: jinja2.compiler.Frame) -> None:
        self.write("environment.budgeted_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _BudgetedEnvironment(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox plus size checks before every operator, call and filter that could build
    a value larger than :data:`MAX_PROMPT_CHARS` (the operation budget is counted in :func:`render_template`)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _BudgetedCodeGenerator
    budgeted_concat = staticmethod(_budgeted_concat)

    def __init__(self) -> None:
        super().__init__(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False,
                         finalize=_bounded_output)
        self.filters = {name: _budgeted_filter(name, f) for name, f in self.filters.items()}

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any,
             **kwargs: Any) -> Any:
        target = getattr(__obj, "__wrapped__", __obj)
        owner = getattr(target, "__self__", None)
        name = getattr(target, "__name__", "")
        if isinstance(owner, str) and name == "join" and args:
            items = _bounded_items(args[0])
            _check_join(owner, items)
            args = (items, *args[1:])
        if isinstance(owner, str | list | tuple):
            _check_arguments(name, owner, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)


_ENV = _BudgetedEnvironment()


class _StepCounter:
    """Counts executed lines of compiled template code (and only those) with a trace function; raises
    :class:`TemplateBudgetError` past ``limit``. Counting steps, not seconds, gives every machine the same
    verdict on the same template."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.steps = 0

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            self.steps += 1
            if self.steps > self.limit:
                raise TemplateBudgetError(f"template ran more than {self.limit:,} steps (loops too long or "
                                          "too deeply nested; see MAX_TEMPLATE_STEPS)")
        return self._local

    def __call__(self, frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename == "<template>":
            return self._local(frame, event, arg)
        return None


def _render_chunks(template: str, variables: Mapping[str, Any], max_steps: int) -> Iterator[str]:
    counter = _StepCounter(max_steps)
    previous = sys.gettrace()
    sys.settrace(counter)
    try:
        compiled = _ENV.from_string(template)
        yield from compiled.generate(**variables)
    finally:
        sys.settrace(previous)


def render_template(template: str, variables: Mapping[str, Any], *, max_steps: int = MAX_TEMPLATE_STEPS,
                    max_chars: int = MAX_PROMPT_CHARS) -> str:
    """Render a prompt template within its work budget; undefined variables raise ``jinja2.UndefinedError``,
    a template over budget :class:`TemplateBudgetError` (both ``jinja2.TemplateError``).

    The result is stripped of surrounding whitespace, so a YAML block scalar's final newline is not part of
    the prompt. Single braces (JSON prompts) pass through unchanged; only ``{{``, ``{%`` and ``{#`` are Jinja2.
    """
    parts: list[str] = []
    size = 0
    try:
        for chunk in _render_chunks(template, variables, max_steps):
            size += len(chunk)
            if size > max_chars:
                raise TemplateBudgetError(f"prompt would be longer than {max_chars:,} characters "
                                          "(see MAX_PROMPT_CHARS)")
            parts.append(chunk)
    except (MemoryError, OverflowError, RecursionError) as exc:
        raise TemplateBudgetError(f"template exceeded its budget ({type(exc).__name__})") from None
    return "".join(parts).strip()


def _undeclared(template: str) -> set[str]:
    return set(jinja2.meta.find_undeclared_variables(_ENV.parse(template)))


def _read_bounded(path: Path, limit: int, what: str) -> bytes:
    """A file's bytes, or ``ValueError`` naming why not (unreadable, a symlink loop, over ``limit`` bytes)."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise ValueError(f"{what} is {size:,} bytes, over the limit of {limit:,}")
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ValueError(f"{what} is over the limit of {limit:,} bytes")
    return data


def read_image(path: Path, name: str | None = None) -> InputImage:
    """Read an image file fully and describe it; raises ``ValueError`` when it is not a PNG/JPEG/WebP, is
    over :data:`MAX_REFERENCE_BYTES`, or declares more than :data:`MAX_REFERENCE_PIXELS` pixels (checked
    from its header, before any decoding: a decompression bomb)."""
    data = _read_bounded(path, MAX_REFERENCE_BYTES, "reference image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format or ""
                width, height = img.size
                if width * height > MAX_REFERENCE_PIXELS:
                    raise ValueError(f"{path} declares {width}x{height} pixels, over the limit of "
                                     f"{MAX_REFERENCE_PIXELS:,} (a decompression bomb, or far larger than any "
                                     "provider accepts)")
                img.verify()
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                width, height = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"{path} is a decompression bomb ({exc})") from None
    except MemoryError:
        raise ValueError(f"{path} is too large to decode") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        if isinstance(exc, ValueError) and "declares" in str(exc):
            raise
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
                  mask: InputImage | None, turns: Sequence[Turn] = ()) -> str:
    payload: dict[str, Any] = {
        "id": spec.id, "version": spec.version, "kind": spec.kind.value, "prompts": prompts,
        "params": spec.params.model_dump(), "references": [i.sha256 for i in images],
        "mask": mask.sha256 if mask else None,
        "captions": spec.captions.model_dump() if spec.captions else None,
    }
    if turns:
        payload["turns"] = [{"prompts": t.prompts, "references": [r.sha256 for r in t.references],
                             "preserve": list(t.preserve)} for t in turns]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _loc(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def _suggest(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def suite_roots(suite: Path) -> tuple[Path, ...]:
    """Where a suite's reference images may lie: the suite folder and the ``assets`` folder beside it
    (resolved)."""
    folder = suite if suite.is_dir() else suite.parent
    folder = folder.resolve()
    return folder, folder.parent / "assets"


def _reference_path(file: Path, ref: str, roots: tuple[Path, ...] | None) -> Path:
    """The resolved path of a reference named in ``file``; ``ValueError`` when it does not exist, loops,
    or (with ``roots``) lies outside every root once ``..`` and symlinks are resolved."""
    try:
        path = (file.parent / ref).resolve(strict=True)
    except FileNotFoundError:
        raise ValueError(f"reference file not found: {ref} (looked at {(file.parent / ref).absolute()})") from None
    except (OSError, RuntimeError) as exc:
        raise ValueError(f"cannot resolve {ref}: {exc} (a symlink loop?)") from None
    if roots is not None and not any(path.is_relative_to(root) for root in roots):
        shown = " or ".join(str(r) for r in roots)
        raise ValueError(f"{ref} resolves to {path}, outside the suite ({shown}); a challenge may only send "
                         "images of its own suite to providers (pass --allow-outside-refs for a suite you trust)")
    if not path.is_file():
        raise ValueError(f"reference file not found: {ref} (looked at {path}; not a file)")
    return path


def _check_variant_names(variants: Mapping[str, str], prefix: str, problem: Callable[[str, str], None]) -> None:
    for name in variants:
        if name == DEFAULT_VARIANT:
            problem(f"{prefix}variants.{name}", f"{DEFAULT_VARIANT!r} is reserved for `prompt`")
        elif not SLUG.match(name):
            problem(f"{prefix}variants.{name}",
                    "variant names must be slugs (lower-case letters, digits, '.', '_', '-')")


def _render_all(templates: Mapping[str, str], variables: Mapping[str, Any], prefix: str,
                problem: Callable[[str, str], None]) -> dict[str, str]:
    """Every template rendered, keyed by variant; each failure is a problem at ``{prefix}prompt`` or
    ``{prefix}variants.NAME`` and leaves that variant out."""
    prompts: dict[str, str] = {}
    for name, template in templates.items():
        fld = prefix + ("prompt" if name == DEFAULT_VARIANT else f"variants.{name}")
        try:
            missing = sorted(_undeclared(template) - set(variables))
            if missing:
                problem(fld, f"template variable(s) undefined: {', '.join(missing)} (add them to `variables`)")
                continue
            text = render_template(template, variables)
        except jinja2.TemplateSyntaxError as exc:
            problem(fld, f"template syntax error on line {exc.lineno}: {exc.message}")
            continue
        except jinja2.TemplateError as exc:
            problem(fld, f"template error: {exc}")
            continue
        except (RecursionError, MemoryError) as exc:
            problem(fld, f"template too deeply nested or too large to parse ({type(exc).__name__})")
            continue
        except Exception as exc:  # a template's own failure (int('x'), 1/0, ...) is the user's problem to fix
            problem(fld, f"template error: {type(exc).__name__}: {exc}")
            continue
        if not text:
            problem(fld, "renders to an empty prompt")
        prompts[name] = text
    return prompts


def _load_images(file: Path, refs: Sequence[str], prefix: str, roots: tuple[Path, ...] | None,
                 problem: Callable[[str, str], None]) -> list[InputImage]:
    images: list[InputImage] = []
    for i, ref in enumerate(refs):
        try:
            images.append(read_image(_reference_path(file, ref, roots)))
        except ValueError as exc:
            problem(f"{prefix}references[{i}]", str(exc))
    return images


def output_side(size: str | None) -> int:
    """Long side (px) of the largest answer a conversation turn can return for ``params.size``."""
    if size and (side := TIER_SIDES.get(size.upper())) is not None:
        return side
    if size and "x" in size:
        width, _, height = size.partition("x")
        return max(int(width), int(height))
    return DEFAULT_OUTPUT_TIER_SIDE


def estimated_answer_bytes(params: Params) -> int:
    """Upper estimate of one answer image's bytes (:data:`OUTPUT_BYTES_PER_PIXEL`) at ``params``' size and
    aspect ratio (the long side is the tier's, the short side follows the ratio)."""
    side = output_side(params.size)
    ratio = 1.0
    if params.aspect_ratio and not (params.size and "x" in params.size):
        w, _, h = params.aspect_ratio.partition(":")
        ratio = min(int(w), int(h)) / max(int(w), int(h))
    elif params.size and "x" in params.size:
        w, _, h = params.size.partition("x")
        ratio = min(int(w), int(h)) / max(int(w), int(h))
    return int(side * side * ratio * OUTPUT_BYTES_PER_PIXEL)


def base64_size(n: int) -> int:
    """Characters of ``n`` bytes in standard base64 (with padding)."""
    return 4 * ((n + 2) // 3)


@dataclass(frozen=True, slots=True)
class TurnLoad:
    """What one turn of a conversation sends, history included: images and estimated request bytes."""

    turn: int
    images: int
    request_bytes: int
    answers_before: int


def conversation_load(turn_images: Sequence[Sequence[InputImage]], prompt_chars: Sequence[int],
                      answer_bytes: int) -> list[TurnLoad]:
    """Per turn (1-based), the images its request holds and its estimated size in bytes: every earlier turn's
    prompt and images again, the model's earlier answers (``answer_bytes`` each), all base64-encoded."""
    loads = []
    images = 0
    sent = 0
    for k, (refs, chars) in enumerate(zip(turn_images, prompt_chars, strict=True)):
        images += len(refs) + (1 if k else 0)
        sent += chars + sum(base64_size(len(r.data)) for r in refs) + (base64_size(answer_bytes) if k else 0)
        loads.append(TurnLoad(k + 1, images, sent, k))
    return loads


def _check_turn_fields(spec: ChallengeSpec, skip: frozenset[str], problem: Callable[[str, str], None]) -> None:
    """The top-level fields a multi-turn challenge must not use (their turns carry them instead)."""
    if spec.prompt is not None and "prompt" not in skip:
        problem("prompt", "a multi-turn challenge has no top-level prompt: write each turn's prompt under `turns`")
    if spec.variants:
        problem("variants", "a multi-turn challenge has no top-level variants: give each turn its own "
                            "`variants` (a turn without one sends its `prompt`)")
    if spec.params.n != 1 and "params" not in skip:
        problem("params.n", "a multi-turn challenge asks for one image per turn (n: 1): each turn continues "
                            "from the previous answer")


def _turn_count_problem(specs: Sequence[TurnSpec]) -> str | None:
    """Why a conversation's list of turns cannot be checked further (empty or too long), or ``None``."""
    if not specs:
        return "a multi-turn challenge needs at least one turn (the list is empty or missing)"
    if len(specs) > MAX_TURNS:
        return f"{len(specs)} turns; at most {MAX_TURNS}"
    return None


def _turn_templates(t: TurnSpec) -> dict[str, str]:
    return {DEFAULT_VARIANT: t.prompt, **t.variants}


def _check_each_turn(spec: ChallengeSpec, specs: Sequence[TurnSpec], file: Path, roots: tuple[Path, ...] | None,
                     skip: frozenset[str], problem: Callable[[str, str], None],
                     ) -> tuple[list[dict[str, str]], list[list[InputImage]]]:
    """Per turn, its rendered prompts by variant and its own extra references (``[]`` when too many)."""
    rendered: list[dict[str, str]] = []
    loaded: list[list[InputImage]] = []
    for i, t in enumerate(specs):
        prefix = f"turns[{i}]."
        _check_variant_names(t.variants, prefix, problem)
        rendered.append(_render_all(_turn_templates(t), spec.variables, prefix, problem)
                        if "variables" not in skip else {})
        if len(t.references) > MAX_CONVERSATION_IMAGES:
            problem(f"{prefix}references", f"{len(t.references)} images in one turn; a conversation holds at most "
                                           f"{MAX_CONVERSATION_IMAGES}")
            loaded.append([])
            continue
        loaded.append(_load_images(file, t.references, prefix, roots, problem))
    return rendered, loaded


def _check_conversation_images(loads: Sequence[TurnLoad], problem: Callable[[str, str], None]) -> None:
    """The first turn whose history holds more images than any multi-turn protocol takes."""
    for load in loads:
        if load.images > MAX_CONVERSATION_IMAGES:
            problem(f"turns[{load.turn - 1}]",
                    f"turn {load.turn} would hold {load.images} images with its history (starting images, every "
                    f"turn's references so far and {load.answers_before} earlier answer(s)); the most any "
                    f"multi-turn protocol takes is {MAX_CONVERSATION_IMAGES}")
            break


def _check_conversation_bytes(loads: Sequence[TurnLoad], params: Params, answer: int,
                              problem: Callable[[str, str], None]) -> None:
    """The first turn whose request, history included, exceeds Gemini's inline request limit."""
    for load in loads:
        if load.request_bytes > MAX_INLINE_REQUEST_BYTES:
            problem(f"turns[{load.turn - 1}]",
                    f"turn {load.turn}'s request would be about {load.request_bytes / 1e6:.1f} MB with its history "
                    f"({load.answers_before} earlier answer(s) of up to {answer / 1e6:.1f} MB each at "
                    f"{output_side(params.size)} px, plus the references, base64-encoded), over Gemini's "
                    f"{MAX_INLINE_REQUEST_BYTES / 1e6:.0f} MB inline request limit; use fewer turns, a smaller "
                    "size or smaller references")
            break


def _build_turns(specs: Sequence[TurnSpec], rendered: Sequence[dict[str, str]],
                 turn_images: Sequence[Sequence[InputImage]], names: Sequence[str]) -> list[Turn]:
    """The validated turns, or ``[]`` when any turn lacks a rendered prompt for one of its variants."""
    if not all(DEFAULT_VARIANT in r and all(v in r for v in t.variants) for r, t in zip(rendered, specs, strict=True)):
        return []
    turns: list[Turn] = []
    for i, (t, r) in enumerate(zip(specs, rendered, strict=True)):
        templates = _turn_templates(t)
        turns.append(Turn(prompts={v: r.get(v, r[DEFAULT_VARIANT]) for v in (DEFAULT_VARIANT, *names)},
                          references=tuple(turn_images[i]), preserve=tuple(t.preserve),
                          templates={v: templates.get(v, t.prompt) for v in (DEFAULT_VARIANT, *names)}))
    return turns


def _numbered(texts: Iterable[str]) -> str:
    return "\n".join(f"{i + 1}. {text}" for i, text in enumerate(texts))


def _check_turns(spec: ChallengeSpec, file: Path, where: str, start_images: list[InputImage],
                 roots: tuple[Path, ...] | None, skip: frozenset[str],
                 problem: Callable[[str, str], None]) -> tuple[list[Turn], dict[str, str], dict[str, str]]:
    """The turns of a multi-turn challenge, every problem of them reported; returns the turns, the joined
    prompts and the joined templates per variant."""
    _check_turn_fields(spec, skip, problem)
    if "turns" in skip:
        return [], {}, {}
    specs = spec.turns or []
    if (reason := _turn_count_problem(specs)) is not None:
        problem("turns", reason)
        return [], {}, {}
    names = list(dict.fromkeys(v for t in specs for v in t.variants))
    rendered, loaded = _check_each_turn(spec, specs, file, roots, skip, problem)
    turn_images = [[*start_images, *loaded[0]], *loaded[1:]]
    prompt_chars = [max((len(p) for p in r.values()), default=0) for r in rendered]
    answer = estimated_answer_bytes(spec.params)
    loads = conversation_load(turn_images, prompt_chars, answer)
    _check_conversation_images(loads, problem)
    _check_conversation_bytes(loads, spec.params, answer, problem)
    turns = _build_turns(specs, rendered, turn_images, names)
    variants = (DEFAULT_VARIANT, *names)
    joined = {v: _numbered(t.prompts[v] for t in turns) for v in variants}
    joined_templates = {v: _numbered(t.templates[v] for t in turns) for v in variants}
    return turns, joined, joined_templates


def _check_identity(spec: ChallengeSpec, skip: frozenset[str], problem: Callable[[str, str], None]) -> None:
    """The id is a slug and the category a known one."""
    if "id" not in skip and not SLUG.match(spec.id):
        problem("id", f"{spec.id!r} is not a slug (lower-case letters, digits, '.', '_' or '-', at most 80)")
    if "category" not in skip and spec.category not in CATEGORIES:
        hint = _suggest(spec.category, CATEGORIES) or f"; known: {', '.join(CATEGORIES)}"
        problem("category", f"unknown category {spec.category!r}{hint}")


def _check_single_prompt(spec: ChallengeSpec, skip: frozenset[str], problem: Callable[[str, str], None],
                         ) -> tuple[dict[str, str], dict[str, str]]:
    """The templates and rendered prompts (by variant) of a challenge that is not multi-turn."""
    _check_variant_names(spec.variants, "", problem)
    if spec.turns is not None and "turns" not in skip and "kind" not in skip:
        problem("turns", f"only 'multi-turn' challenges take turns, this one is {spec.kind.value!r}")
    if spec.prompt is None:
        if "prompt" not in skip and not ("kind" in skip and spec.turns is not None):
            problem("prompt", "required field is missing")
        return {}, {}
    templates = {DEFAULT_VARIANT: spec.prompt, **spec.variants}
    if "variables" in skip:
        return templates, {}
    active = {n: t for n, t in templates.items() if ("prompt" if n == DEFAULT_VARIANT else "variants") not in skip}
    return templates, _render_all(active, spec.variables, "", problem)


def _check_reference_count(spec: ChallengeSpec, skip: frozenset[str], problem: Callable[[str, str], None]) -> None:
    """As many references as the kind takes (:data:`REFERENCE_COUNTS`)."""
    if "kind" in skip or "references" in skip:
        return
    n_refs = len(spec.references)
    low, high = REFERENCE_COUNTS[spec.kind]
    if not low <= n_refs <= high:
        want = "no references" if high == 0 else (
            f"exactly {low} reference" if low == high else f"{low} to {high} references")
        problem("references", f"kind {spec.kind.value!r} takes {want}, found {n_refs}")


def _check_mask_kind(spec: ChallengeSpec, skip: frozenset[str], problem: Callable[[str, str], None]) -> None:
    """A mask exactly when the kind is inpaint."""
    if "kind" in skip or "mask" in skip:
        return
    if spec.kind == ChallengeKind.INPAINT and spec.mask is None:
        problem("mask", "kind 'inpaint' needs a mask image (white = repaint, black = keep)")
    if spec.kind != ChallengeKind.INPAINT and spec.mask is not None:
        problem("mask", f"only 'inpaint' challenges take a mask, this one is {spec.kind.value!r}")


def _check_mask(spec: ChallengeSpec, file: Path, images: Sequence[InputImage], roots: tuple[Path, ...] | None,
                skip: frozenset[str], problem: Callable[[str, str], None]) -> InputImage | None:
    """The mask image, read and checked (single channel, marks something, same size as ``references[0]``)."""
    if spec.mask is None or not (spec.kind == ChallengeKind.INPAINT or "kind" in skip):
        return None
    try:
        mask = read_image(_reference_path(file, spec.mask, roots))
    except ValueError as exc:
        problem("mask", str(exc).replace("reference file", "mask file"))
        return None
    for reason in _mask_problems(mask):
        problem("mask", reason)
    if images and (mask.width, mask.height) != (images[0].width, images[0].height):
        problem("mask", f"mask is {mask.width}x{mask.height} but its image references[0] is "
                        f"{images[0].width}x{images[0].height}; they must be the same size")
    return mask


def _add_turn_images(images: list[InputImage], turns: Iterable[Turn]) -> None:
    """Append each turn's images not already in ``images`` (by hash), in conversation order."""
    seen = {i.sha256 for i in images}
    for turn in turns:
        for ref in turn.references:
            if ref.sha256 not in seen:
                seen.add(ref.sha256)
                images.append(ref)


def _check_spec(spec: ChallengeSpec, file: Path, where: str, problems: list[Problem],
                skip: frozenset[str] = frozenset(), roots: tuple[Path, ...] | None = None) -> Challenge | None:
    """Validate one parsed challenge against its files; append problems; return it when valid.

    ``skip`` names fields that already failed (they hold placeholders here and are not checked again), so
    one run reports every independent problem of a challenge.
    """
    fname = str(file)
    start = len(problems)

    def problem(fld: str, reason: str) -> None:
        problems.append(Problem(fname, f"{where}{fld}", reason))

    _check_identity(spec, skip, problem)
    multi = spec.kind == ChallengeKind.MULTI_TURN and "kind" not in skip
    templates: dict[str, str] = {}
    prompts: dict[str, str] = {}
    if not multi:
        templates, prompts = _check_single_prompt(spec, skip, problem)
    _check_reference_count(spec, skip, problem)
    _check_mask_kind(spec, skip, problem)
    images = _load_images(file, spec.references, "", roots, problem)
    mask = _check_mask(spec, file, images, roots, skip, problem)
    turns: list[Turn] = []
    if multi:
        turns, prompts, templates = _check_turns(spec, file, where, images, roots, skip, problem)
        _add_turn_images(images, turns)
    if len(problems) > start or skip:
        return None
    return Challenge(
        id=spec.id, version=spec.version, title=spec.title, category=spec.category, kind=spec.kind,
        prompts=prompts, params=spec.params, references=tuple(images), mask=mask, captions=spec.captions,
        tags=tuple(spec.tags), source_file=fname, content_hash=_content_hash(spec, prompts, images, mask, turns),
        templates=templates, turns=tuple(turns),
    )


_PLACEHOLDERS: dict[str, Any] = {
    "id": "invalid", "title": "", "category": "other", "kind": ChallengeKind.TEXT_TO_IMAGE,
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


_MODEL_OF_FIELD: dict[str, type[BaseModel]] = {"params": Params, "captions": Captions, "turns": TurnSpec}


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
               problems: list[Problem], roots: tuple[Path, ...] | None = None) -> Challenge | None:
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
        challenge = _check_spec(spec, file, where, problems, roots=roots)
        return None if duplicate else challenge
    partial = _lenient(raw, bad)
    if partial is not None:
        missing = {k for k in _PLACEHOLDERS if k not in raw}
        _check_spec(partial, file, where, problems, skip=frozenset(bad | missing), roots=roots)
    return None


class _SuiteLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key repeated in one mapping is an error, not a silent overwrite,
    and that a file may use at most :data:`MAX_YAML_ALIASES` aliases (a "billion laughs" file expands
    exponentially once anything walks it)."""

    aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.events.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise yaml.composer.ComposerError(None, None, f"more than {MAX_YAML_ALIASES} aliases (*name) in "
                                                  "one file", self.peek_event().start_mark)  # type: ignore[no-untyped-call]
        return super().compose_node(parent, index)

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


def _yaml_files(path: Path, problems: list[Problem]) -> list[Path]:
    """The suite's ``.yaml``/``.yml`` files (not following symlinked folders, so a folder loop cannot
    recurse); a named file that is a symlink loop or not a regular file is a problem, not silently skipped."""
    if path.is_file():
        return [path]
    found = []
    for folder, _, names in os.walk(path, onerror=lambda exc: problems.append(
            Problem(str(exc.filename or path), "(path)", f"cannot list folder: {exc.strerror or exc}"))):
        for name in names:
            candidate = Path(folder) / name
            if candidate.suffix not in (".yaml", ".yml"):
                continue
            if candidate.is_file():
                found.append(candidate)
            elif candidate.is_symlink():
                problems.append(Problem(str(candidate), "(file)", "a symlink that leads nowhere (missing target "
                                                                  "or a symlink loop)"))
    return sorted(found)


def _specs_in(file: Path, problems: list[Problem]) -> list[tuple[str, Any]]:
    try:
        data = _read_bounded(file, MAX_FILE_BYTES, "challenge file")
        text = data.decode("utf-8")
        if "\x00" in text:
            raise UnicodeDecodeError("utf-8", data, text.index("\x00"), text.index("\x00") + 1, "NUL byte")
        doc = yaml.load(text, Loader=_SuiteLoader)
    except yaml.YAMLError as exc:
        problems.append(Problem(str(file), "(file)", _yaml_reason(exc)))
        return []
    except UnicodeDecodeError:
        problems.append(Problem(str(file), "(file)", "not UTF-8 text (a binary file?)"))
        return []
    except ValueError as exc:
        problems.append(Problem(str(file), "(file)", str(exc)))
        return []
    except RecursionError:
        problems.append(Problem(str(file), "(file)", "nested too deeply to read"))
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


def _check_file(file: Path, seen: dict[str, str], problems: list[Problem],
                roots: tuple[Path, ...] | None) -> list[Challenge]:
    found = []
    for where, raw in _specs_in(file, problems):
        if not isinstance(raw, dict):
            problems.append(Problem(str(file), where.rstrip(".") or "(file)", "must be a mapping"))
            continue
        try:
            challenge = _check_raw(raw, file, where, seen, problems, roots)
        except (RecursionError, MemoryError) as exc:
            problems.append(Problem(str(file), where.rstrip(".") or "(file)",
                                    f"too deeply nested or too large to check ({type(exc).__name__})"))
            continue
        if challenge is not None:
            found.append(challenge)
    return found


def validate(path: str | Path, *, allow_outside_refs: bool = False) -> tuple[list[Challenge], list[Problem]]:
    """Load every challenge under ``path`` (a file or a suite folder) and collect every problem. Reference
    images must lie in :func:`suite_roots` unless ``allow_outside_refs``."""
    root = Path(path)
    problems: list[Problem] = []
    if not root.exists():
        return [], [Problem(str(root), "(path)", "no such file or folder")]
    files = _yaml_files(root, problems)
    if not files:
        return [], [*problems, Problem(str(root), "(path)", "contains no .yaml challenge files")]
    roots = None if allow_outside_refs else suite_roots(root)
    challenges: list[Challenge] = []
    seen: dict[str, str] = {}
    for file in files:
        try:
            challenges.extend(_check_file(file, seen, problems, roots))
        except Exception as exc:  # a last resort: one file's unforeseen failure never hides the others
            problems.append(Problem(str(file), "(file)", f"could not be checked: {type(exc).__name__}: {exc}"))
    return challenges, problems


def load(path: str | Path, *, allow_outside_refs: bool = False) -> list[Challenge]:
    """Load a suite, raising :class:`ChallengeError` listing every problem when any exists."""
    challenges, problems = validate(path, allow_outside_refs=allow_outside_refs)
    if problems:
        raise ChallengeError(problems)
    return challenges
