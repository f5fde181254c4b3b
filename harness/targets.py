"""Targets: a model served by a provider (``model@provider``), with protocol, endpoint, key, price and limits.

The built-in catalog (``harness/catalog.yaml``) lists known targets; a user file adds targets or overrides
fields of catalog ones (matched by ``name``)::

    targets:
      - name: my-gateway            # unique
        model: gpt-image-1          # id sent to the provider
        model_name: gpt-image-1     # canonical model the leaderboard groups by (default: model)
        provider: mygateway
        protocol: openai-images     # gemini | openai-images | openrouter | fal | replicate
        base_url: http://127.0.0.1:8080/v1
        api_key_env: MY_GATEWAY_KEY # or a list, first one set wins
        price_per_image_usd: 0.04
        allow_private_network: true # image URLs on this network may be fetched (automatic for a
                                    # base_url on 127.0.0.1 or a private address)
        credential_origins: [https://files.mygateway.example]  # more origins that may get the key
        mode: batch                 # send the requests as provider batch jobs (docs/batch.md); protocols
                                    # gemini and openai-images have a batch mode

Everything a run needs is checked before the first request: unknown names (with suggestions), unknown
protocols, and missing API keys (naming the target and the variables tried).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.envfile import key_value
from harness.errors import ConfigError
from harness.globs import matching, suggestions
from harness.origins import OriginPolicy
from harness.providers.base import ChallengeKind
from harness.textfiles import read_text_file

PriceUnit = Literal["image", "megapixel", "token", "second", "billable_unit", "provider_reported"]
"""What a target's list price is counted in (``price_unit``)."""

PRICE_FIELD_OF_UNIT: dict[str, str] = {
    "image": "price_per_image_usd", "megapixel": "price_per_megapixel_usd", "token": "price_output_per_mtok_usd",
    "second": "price_per_second_usd", "billable_unit": "price_per_unit_usd",
}
"""The named price field that carries each unit's price (``provider_reported`` has none of its own)."""

_DATE = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")

SANDBOX_KEY = "sandbox-key"
"""The key sent to the embedded sandbox servers (they accept any non-empty key but ``invalid``)."""


class Target(BaseModel):
    """One benchmark target. Prices are USD; ``*_per_mtok_usd`` are USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    model: str = Field(description="id sent to the provider")
    model_name: str = Field(default="", description="canonical model name for leaderboards")
    provider: str
    protocol: str
    base_url: str
    api_key_env: tuple[str, ...] = ()
    price_per_image_usd: float | None = Field(default=None, ge=0)
    price_input_per_mtok_usd: float | None = Field(default=None, ge=0)
    price_output_per_mtok_usd: float | None = Field(default=None, ge=0)
    price_per_megapixel_usd: float | None = Field(default=None, ge=0)
    price_per_second_usd: float | None = Field(default=None, ge=0)
    price_per_unit_usd: float | None = Field(default=None, ge=0)
    use_provider_cost: bool = False
    price_usd: float | None = Field(
        default=None, ge=0, description="a price in `price_unit` (a user file's generic way to give one)")
    price_unit: PriceUnit | None = Field(default=None, description="what the list price counts")
    price_per_image_tiers_usd: dict[str, float] = Field(
        default_factory=dict, description="per-image price by resolution tier (0.5K, 1K, 2K, 4K), where the "
        "provider charges by tier; a tier it does not list is counted at the dearest listed one")
    output_tokens_per_image: dict[str, int] = Field(
        default_factory=dict, description="image output tokens the provider documents per image, keyed by "
        "tier (\"1K\") or quality/size (\"medium/1024x1024\")")
    megapixel_rounding: Literal["exact", "ceil"] = Field(
        default="exact", description="ceil: each image is billed as whole megapixels of 1024x1024 pixels, rounded up (fal FLUX)")
    default_size: str | None = Field(
        default=None, description="largest WxH the provider makes when a request names only a ratio (for bounds)")
    default_tier: str | None = Field(
        default=None, description="resolution tier (1K …) the provider makes when a request names none")
    max_output_tokens: int | None = Field(
        default=None, ge=1, description="most output tokens one request may be billed for (spend bound)")
    input_tokens_per_reference: int | None = Field(
        default=None, ge=0, description="most input tokens one reference image may be billed as (spend bound)")
    max_request_usd: float | None = Field(
        default=None, gt=0, description="ceiling on what one request may cost (spend bound), USD")
    price_source: str | None = None
    price_url: str | None = Field(default=None, description="the provider's public page the price was read from")
    price_as_of: str | None = Field(default=None, description="YYYY-MM-DD (or YYYY-MM) the price was true on")
    price_as_of_kind: Literal["page_date", "quoted", "copy_read", "unverified"] | None = Field(
        default=None, description="page_date: the page's own date; quoted: the date a dated copy quoting the "
        "page checked it; copy_read: the page carries no date, the day a stored copy of it was read; "
        "unverified: the page could not be read on that day, the price is the one known before")
    rpm: float | None = Field(default=None, gt=0, description="published requests-per-minute limit")
    concurrency: int | None = Field(default=None, ge=1, description="published concurrent-request limit")
    limits_source: str | None = None
    stream: bool = False
    kinds: tuple[ChallengeKind, ...] | None = Field(
        default=None, description="challenge kinds this target can do (None: all); others are skipped, not failed")
    options: dict[str, Any] = Field(default_factory=dict)
    notes: str | None = None
    allow_private_network: bool | None = Field(
        default=None, description="let provider-named URLs reach loopback/private addresses; None: only when "
        "base_url is itself local (the sandbox, a gateway on 127.0.0.1)")
    credential_origins: tuple[str, ...] = Field(
        default=(), description="extra origins (scheme://host[:port]) that may receive the key, beyond base_url's")
    mode: Literal["interactive", "batch"] = Field(
        default="interactive", description="batch: requests go out as provider batch jobs (docs/batch.md)")
    batch_discount: float | None = Field(
        default=None, ge=0, lt=1, description="share of the list price the provider takes off batch requests "
        "(0.5: half price); default: the protocol's published discount")
    batch_discount_url: str | None = Field(default=None, description="the public page stating the batch discount")
    batch_max_requests: int | None = Field(
        default=None, ge=1, description="most requests per batch job (default: the provider's limit); a run with "
        "more sends several jobs")
    batch_poll_s: float = Field(
        default=30.0, gt=0, description="seconds between polls of a batch job's state (time-scaled in the sandbox)")
    batch_of: str | None = Field(
        default=None, description="the interactive target this batch target mirrors (tables show them side by side)")

    @field_validator("api_key_env", mode="before")
    @classmethod
    def _keys(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _defaults(self) -> Target:
        if not self.model_name:
            object.__setattr__(self, "model_name", self.model)
        if self.price_usd is not None:
            if self.price_unit is None:
                raise ValueError(f"price_usd {self.price_usd:g} has no price_unit; say what it counts "
                                 f"({', '.join(PRICE_FIELD_OF_UNIT)})")
            named = PRICE_FIELD_OF_UNIT.get(self.price_unit)
            if named is None:
                raise ValueError(f"price_usd cannot be given per {self.price_unit}")
            if getattr(self, named) not in (None, self.price_usd):
                raise ValueError(f"price_usd {self.price_usd:g} disagrees with {named} {getattr(self, named):g}")
            object.__setattr__(self, named, self.price_usd)
        if self.price_unit is not None:
            named = PRICE_FIELD_OF_UNIT.get(self.price_unit)
            if named is not None and getattr(self, named) is None and not (
                    self.price_unit == "image" and self.price_per_image_tiers_usd):
                raise ValueError(f"price_unit {self.price_unit} needs {named} (or price_usd)")
            if self.price_unit == "provider_reported" and not self.use_provider_cost:
                raise ValueError("price_unit provider_reported needs use_provider_cost: true")
        if self.price_as_of is not None and not _DATE.match(self.price_as_of):
            raise ValueError(f"price_as_of {self.price_as_of!r} is not a date such as 2026-12-05")
        return self

    @field_validator("credential_origins", mode="before")
    @classmethod
    def _origins(cls, v: Any) -> Any:
        values = (v,) if isinstance(v, str) else v
        if isinstance(values, (list, tuple)):
            from harness.origins import origin_of

            for value in values:
                if not isinstance(value, str) or origin_of(value) is None:
                    raise ValueError(f"{value!r} is not an http(s) origin such as https://api.example.com")
        return values

    def origin_policy(self, base_url: str | None = None) -> OriginPolicy:
        """Where this target's key may go and what provider-named URLs may reach, for a run against
        ``base_url`` (default: the configured one; the sandbox passes its own)."""
        from harness.providers.registry import get_protocol

        return get_protocol(self.protocol).origin_policy(base_url or self.base_url,
                                                         extra_origins=self.credential_origins,
                                                         allow_private_network=self.allow_private_network)

    def supports(self, kind: ChallengeKind) -> bool:
        """Whether challenges of ``kind`` are sent to this target (a text-only model takes no edits)."""
        return self.kinds is None or kind in self.kinds

    def frozen(self) -> dict[str, Any]:
        """JSON-able snapshot stored with a run (keys are never part of a target). It stores the canonical
        model name as ``model`` and the id sent to the provider as ``model_id``; :meth:`from_frozen` reads it."""
        data = self.model_dump(mode="json")
        data["model"] = self.model_name
        data["model_id"] = self.model
        return data

    @classmethod
    def from_frozen(cls, frozen: Mapping[str, Any]) -> Target:
        """The target of a stored snapshot (:meth:`frozen`'s inverse). Snapshots stored by an older harness
        (without ``model_id``, or without fields added since) read with today's defaults."""
        data = {k: v for k, v in frozen.items() if k != "model_id"}
        data["model"], data["model_name"] = frozen.get("model_id", frozen["model"]), frozen["model"]
        return cls.model_validate(data)


MAX_TARGETS_FILE_BYTES = 16 << 20


def read_targets_text(path: Path) -> str:
    """A targets file's text; a :class:`ConfigError` naming the file when it is not readable UTF-8 text."""
    return read_text_file(path, label=f"targets file {path}", max_bytes=MAX_TARGETS_FILE_BYTES, expected="YAML")


def _read_yaml(path: Path | None, text: str, where: str) -> list[dict[str, Any]]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to be a targets file") from None
    if doc is None:
        return []
    if not isinstance(doc, dict) or not isinstance(doc.get("targets"), list):
        raise ConfigError(f"{where}: must be a mapping with a `targets:` list")
    items = doc["targets"]
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ConfigError(f"{where}: targets[{i}]: each target needs a string `name`")
    return list(items)


def _validate(raw: Mapping[str, Any], where: str) -> Target:
    try:
        return Target.model_validate(raw)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(target)'}: "
            f"{'unknown field' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"{where}: target {raw.get('name')!r}: {details}") from exc


def load_catalog() -> dict[str, dict[str, Any]]:
    """The built-in catalog as raw mappings keyed by name."""
    text = resources.files("harness").joinpath("catalog.yaml").read_text(encoding="utf-8")
    return {t["name"]: t for t in _read_yaml(None, text, "harness/catalog.yaml")}


def load_targets(user_file: Path | None = None, *, include_catalog: bool = True) -> dict[str, Target]:
    """Catalog targets merged with a user file's (user fields override catalog fields of the same name)."""
    merged: dict[str, dict[str, Any]] = load_catalog() if include_catalog else {}
    user_names: set[str] = set()
    if user_file is not None:
        if not user_file.is_file():
            raise ConfigError(f"targets file {user_file} not found")
        seen: set[str] = set()
        for i, item in enumerate(_read_yaml(user_file, read_targets_text(user_file), str(user_file))):
            name = item["name"]
            if name in seen:
                raise ConfigError(f"{user_file}: targets[{i}]: duplicate target name {name!r}")
            seen.add(name)
            user_names.add(name)
            base = merged.get(name, {})
            merged[name] = {**base, **item}
    from harness.providers.registry import available_protocols

    protocols = available_protocols()
    out: dict[str, Target] = {}
    for name, raw in merged.items():
        where = str(user_file) if name in user_names else "harness/catalog.yaml"
        target = _validate(raw, where)
        if target.protocol not in protocols:
            close = difflib.get_close_matches(target.protocol, protocols, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(protocols))}"
            raise ConfigError(f"{where}: target {name!r}: unknown protocol {target.protocol!r}{hint}")
        if target.mode == "batch":
            from harness.batch.protocol import BATCH_MODES, batch_mode

            if batch_mode(target.protocol) is None:
                raise ConfigError(f"{where}: target {name!r}: mode batch, but protocol {target.protocol!r} has no "
                                  f"batch mode (protocols with one: {', '.join(sorted(BATCH_MODES))})")
        out[name] = target
    return out


def select(targets: Mapping[str, Target], patterns: Sequence[str]) -> list[Target]:
    """Targets named by ``patterns`` (exact names or shell globs such as ``*@fal``), in catalog order.

    No patterns selects every target. A pattern that matches nothing is an error with suggestions.
    """
    if not patterns:
        return list(targets.values())
    chosen: dict[str, Target] = {}
    for pattern in patterns:
        hits = matching(targets, pattern)
        if not hits:
            close = suggestions(pattern, targets)
            hint = f" Did you mean {', '.join(close)}?" if close else " List them with `harness targets list`."
            raise ConfigError(f"unknown target {pattern!r}.{hint}")
        for n in hits:
            chosen[n] = targets[n]
    return [t for n, t in targets.items() if n in chosen]


@dataclass(frozen=True)
class Credential:
    """The key for a target and the variable it came from (for messages; the key itself is never shown)."""

    target: str
    env_var: str
    key: str = field(repr=False)


def resolve_keys(chosen: Iterable[Target], env: Mapping[str, str] | None = None, *,
                 sandbox: bool = False) -> dict[str, Credential]:
    """Find each target's key (in ``env``; by default the environment, then ``./.env``: see
    :func:`harness.envfile.key_value`); raise one error naming every target whose key is missing."""
    found: dict[str, Credential] = {}
    missing: list[str] = []
    for t in chosen:
        if sandbox:
            found[t.name] = Credential(t.name, "(sandbox)", SANDBOX_KEY)
            continue
        if not t.api_key_env:
            missing.append(f"{t.name} (no api_key_env configured)")
            continue
        values = ((v, key_value(v, env)) for v in t.api_key_env)
        var, key = next(((v, k) for v, k in values if k), (None, None))
        if var is None or key is None:
            missing.append(f"{t.name} (set {' or '.join(t.api_key_env)})")
        else:
            found[t.name] = Credential(t.name, var, key)
    if missing:
        raise ConfigError(
            "missing API key for " + "; ".join(missing) + ". Nothing was sent. Export the variable, add it to "
            "a .env file, or use --sandbox to run against the embedded sandbox."
        )
    return found
