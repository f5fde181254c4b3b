"""Cost of an attempt in USD, from the target's price and what the provider reported.

Order of preference (the first that applies): the provider's own reported cost (OpenRouter ``usage.cost``,
when the target says to use it), billable units (fal ``X-Fal-Billable-Units`` x unit price), tokens
(usage x per-million-token prices; image input tokens use ``options.image_input_per_mtok_usd`` when set),
megapixels (output pixels x price per megapixel), compute seconds (Replicate ``predict_time`` x price per
second), per image. Failures cost nothing unless the provider bills them (``ProviderError.billed``), and then
only what can be computed from what it reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError
from harness.targets import Target


@dataclass(frozen=True, slots=True)
class Cost:
    usd: float
    source: str
    billed: bool


NO_COST = Cost(0.0, "none", False)


def _tokens(target: Target, usage: Mapping[str, Any]) -> float | None:
    if target.price_input_per_mtok_usd is None and target.price_output_per_mtok_usd is None:
        return None
    if "output_tokens" not in usage and "input_tokens" not in usage:
        return None
    in_price = target.price_input_per_mtok_usd or 0.0
    image_in_price = float(target.options.get("image_input_per_mtok_usd", in_price))
    out_price = target.price_output_per_mtok_usd or 0.0
    image_in = float(usage.get("input_image_tokens") or 0)
    text_in = float(usage.get("input_text_tokens", float(usage.get("input_tokens") or 0) - image_in) or 0)
    out = float(usage.get("output_tokens") or 0)
    return (text_in * in_price + image_in * image_in_price + out * out_price) / 1e6


def batch_discount(target: Target) -> float:
    """Share of the list price a ``mode: batch`` target's requests are spared: its ``batch_discount``, else its
    protocol's published one (OpenAI and Google both charge batch requests half the interactive price; the
    page is the protocol's ``discount_url``); 0 for an interactive target."""
    if target.mode != "batch":
        return 0.0
    if target.batch_discount is not None:
        return target.batch_discount
    from harness.batch.protocol import batch_mode

    mode = batch_mode(target.protocol)
    return mode.discount if mode is not None else 0.0


def batch_discount_url(target: Target) -> str | None:
    """The public page that states a batch target's discount (None for an interactive target)."""
    if target.mode != "batch":
        return None
    if target.batch_discount_url:
        return target.batch_discount_url
    from harness.batch.protocol import batch_mode

    mode = batch_mode(target.protocol)
    return mode.discount_url if mode is not None else None


def _discounted(target: Target, cost: Cost) -> Cost:
    """``cost`` with a batch target's discount taken off (a provider-reported cost is already what it billed)."""
    factor = 1.0 - batch_discount(target)
    if factor == 1.0 or cost.source == "provider_reported":
        return cost
    return Cost(cost.usd * factor, cost.source, cost.billed)


def success_cost(target: Target, *, usage: Mapping[str, Any], provider_cost_usd: float | None,
                 billable_units: float | None, provider_timings: Mapping[str, Any],
                 image_sizes: Sequence[tuple[int, int]]) -> Cost:
    """Cost of a successful attempt (a batch target's at its batch price: :func:`batch_discount`)."""
    return _discounted(target, _list_cost(target, usage=usage, provider_cost_usd=provider_cost_usd,
                                          billable_units=billable_units, provider_timings=provider_timings,
                                          image_sizes=image_sizes))


def _list_cost(target: Target, *, usage: Mapping[str, Any], provider_cost_usd: float | None,
               billable_units: float | None, provider_timings: Mapping[str, Any],
               image_sizes: Sequence[tuple[int, int]]) -> Cost:
    if target.use_provider_cost and provider_cost_usd is not None:
        return Cost(float(provider_cost_usd), "provider_reported", True)
    if target.price_per_unit_usd is not None and billable_units is not None:
        return Cost(billable_units * target.price_per_unit_usd, "billable_units", True)
    tokens = _tokens(target, usage)
    if tokens is not None:
        return Cost(tokens, "tokens", True)
    if target.price_per_megapixel_usd is not None and image_sizes:
        megapixels = sum(billed_megapixels(target, w, h) for w, h in image_sizes)
        return Cost(megapixels * target.price_per_megapixel_usd, "megapixels", True)
    predict = provider_timings.get("predict_time")
    if target.price_per_second_usd is not None and isinstance(predict, (int, float)):
        return Cost(float(predict) * target.price_per_second_usd, "predict_time", True)
    if target.price_per_image_tiers_usd and image_sizes:
        return Cost(sum(image_price(target, tier_of_size(f"{w}x{h}")) for w, h in image_sizes), "per_image", True)
    if target.price_per_image_usd is not None:
        return Cost(len(image_sizes) * target.price_per_image_usd, "per_image", True)
    return NO_COST


TIERS = (("0.5K", 512), ("1K", 1024), ("2K", 2048), ("4K", 4096))
"""Resolution tiers by the long edge they reach (Google's and fal's 0.5K/1K/2K/4K)."""


def pixel_size(size: str | None) -> tuple[int, int] | None:
    """``(width, height)`` of a ``"WxH"`` size; None for a tier name or nothing."""
    if not size or "x" not in size.lower():
        return None
    w, _, h = size.lower().partition("x")
    try:
        return int(w), int(h)
    except ValueError:
        return None


def tier_of_size(size: str | None) -> str | None:
    """The resolution tier a size falls in: a tier name as given, else the smallest tier whose nominal area
    (its edge squared, with 10% room) holds the pixel size's area. Tiers go by area because Google's grids keep
    about the same pixels at every ratio: 1376x768 (16:9) and 1024x1024 are both 1K, 2752x1536 is 2K."""
    if not size:
        return None
    for name, _ in TIERS:
        if size.upper() == name.upper():
            return name
    px = pixel_size(size)
    if px is None:
        return None
    area = px[0] * px[1]
    return next((name for name, edge in TIERS if area <= edge * edge * 1.1), TIERS[-1][0])


def request_tier(target: Target, shape: RequestShape) -> str | None:
    """The tier a request will be made at: from its size, else the target's ``image_size``/``resolution``
    option, else the provider's default tier (``default_tier``); None when none of these says."""
    tier = tier_of_size(shape.size)
    if tier is None:
        option = target.options.get("image_size") or target.options.get("resolution")
        tier = tier_of_size(str(option)) if option else None
    return tier or target.default_tier


def image_price(target: Target, tier: str | None) -> float:
    """USD for one image at ``tier``: the tier's listed price; a tier the provider does not list counts at the
    next listed tier up (the dearest when none is above it); an unknown tier at the dearest (never
    under-counted); no tiers: the flat per-image price."""
    tiers = target.price_per_image_tiers_usd
    if not tiers:
        return target.price_per_image_usd or 0.0
    if tier is not None and tier in tiers:
        return tiers[tier]
    order = [name for name, _ in TIERS]
    if tier in order:
        above = [tiers[name] for name in order[order.index(tier):] if name in tiers]
        if above:
            return above[0]
    return max(tiers.values())


def billed_megapixels(target: Target, width: int, height: int) -> float:
    """Megapixels an image is billed as. ``exact``: pixels / 10^6. ``ceil``: whole megapixels of 1024x1024
    pixels, rounded up, as fal bills FLUX (1024x1024 and 1024x768 are one megapixel, 1536x1024 two)."""
    if target.megapixel_rounding == "ceil":
        return float(math.ceil(width * height / (1024 * 1024) - 1e-9))
    return width * height / 1e6


def price_unit_of(target: Target) -> str | None:
    """The unit of the target's list price: its ``price_unit``, else the one its named price field implies."""
    if target.price_unit is not None:
        return target.price_unit
    if target.use_provider_cost:
        return "provider_reported"
    for unit, value in (("token", target.price_output_per_mtok_usd), ("megapixel", target.price_per_megapixel_usd),
                        ("second", target.price_per_second_usd), ("billable_unit", target.price_per_unit_usd),
                        ("image", target.price_per_image_usd or (1.0 if target.price_per_image_tiers_usd else None))):
        if value is not None:
            return unit
    return None


@dataclass(frozen=True, slots=True)
class ListPrice:
    """A target's price as a buyer reads it: ``text`` such as ``"$0.134 / image (1K–2K), $0.24 (4K)"``."""

    unit: str | None
    text: str
    as_of: str | None
    as_of_kind: str | None
    source: str | None


def list_price(target: Target) -> ListPrice:
    """The target's list price, its unit and the page and date it was read from."""
    unit = price_unit_of(target)
    text = "—"
    if unit == "image" and target.price_per_image_tiers_usd:
        text = "$/image " + ", ".join(f"{k} {v:g}" for k, v in target.price_per_image_tiers_usd.items())
    elif unit == "image":
        text = f"$/image {target.price_per_image_usd:g}"
    elif unit == "megapixel":
        text = f"$/MP {target.price_per_megapixel_usd:g}" + (" (whole MP, rounded up)"
                                                              if target.megapixel_rounding == "ceil" else "")
    elif unit == "token":
        text = (f"$/Mtok in {target.price_input_per_mtok_usd or 0:g}, out {target.price_output_per_mtok_usd:g}")
        tokens = target.output_tokens_per_image
        if len(tokens) == 1:
            text += " · {} tok/image".format(*tokens.values())
        elif tokens:
            text += f" · {min(tokens.values())}–{max(tokens.values())} tok/image by quality and size"
    elif unit == "second":
        text = f"$/s {target.price_per_second_usd:g}"
    elif unit == "billable_unit":
        text = f"$/unit {target.price_per_unit_usd:g}"
    elif unit == "provider_reported":
        text = "as reported by the provider"
        if target.max_request_usd is not None:
            text += f" (≤ ${target.max_request_usd:g}/request)"
    discount = batch_discount(target)
    if discount:
        text += f" · batch: {discount:.0%} off"
    return ListPrice(unit, text, target.price_as_of, target.price_as_of_kind, target.price_url)


@dataclass(frozen=True, slots=True)
class RequestShape:
    """What the harness knows about one request before it is sent: the requested ``size`` (``"WxH"`` or a
    tier), images asked for, the prompt's UTF-8 length and how many reference images go with it."""

    size: str | None = None
    images: int = 1
    prompt_bytes: int = 0
    references: int = 0


class UnboundedPrice(ConfigError):
    """A target whose request cost cannot be bounded before it is sent (a spend cap cannot hold)."""


def _output_tokens_cap(target: Target, shape: RequestShape) -> int | None:
    if target.max_output_tokens is not None:
        return target.max_output_tokens
    table = target.output_tokens_per_image
    if not table:
        return None
    quality = str(target.options.get("quality", "")).lower()
    keys = [k for k in table if not quality or "/" not in k or k.split("/", 1)[0] == quality] or list(table)
    tier = request_tier(target, shape)
    exact = [k for k in keys if k.split("/")[-1] in {shape.size or "", tier or ""}]
    per_image = max(table[k] for k in (exact or keys))
    return per_image * shape.images


def request_bound(target: Target, shape: RequestShape) -> float:
    """:func:`list_request_bound` at the target's price (a batch target's with its discount taken off)."""
    return list_request_bound(target, shape) * (1.0 - batch_discount(target))


def list_request_bound(target: Target, shape: RequestShape) -> float:
    """Most the harness will count one request of ``shape`` as costing, in USD, computed before it is sent.

    Per image: the price of the request's tier (:func:`request_tier`; unknown: the dearest) x images. Per
    megapixel: the requested pixel size (else the target's ``default_size``, the largest the provider makes when
    a request names only a ratio) in billed megapixels x price x images. Tokens or a provider-reported cost: the
    target's ``max_request_usd`` when set, else its output-token cap (``max_output_tokens``, or the documented
    tokens per image for the tier and quality) at the output price plus the prompt's bytes (a token is at least
    one byte) and each reference's ``input_tokens_per_reference`` at the dearest input price. Raises
    :class:`UnboundedPrice` naming the target when no bound can be computed.
    """
    unit = price_unit_of(target)
    if target.max_request_usd is not None and unit in ("token", "provider_reported", "second", "billable_unit"):
        return target.max_request_usd
    if unit == "image":
        return image_price(target, request_tier(target, shape)) * shape.images
    if unit == "megapixel":
        px = pixel_size(shape.size) or pixel_size(target.default_size)
        if px is None:
            raise UnboundedPrice(f"target {target.name!r} is priced per megapixel but the request names no pixel "
                                 "size and the target has no default_size; set default_size in a targets file")
        return billed_megapixels(target, *px) * (target.price_per_megapixel_usd or 0.0) * shape.images
    if unit == "token":
        cap = _output_tokens_cap(target, shape)
        if cap is None:
            raise UnboundedPrice(
                f"target {target.name!r} is token-priced and has no output-token cap (max_output_tokens) or "
                "per-request ceiling (max_request_usd): a spend cap cannot bound its requests; set one in a "
                "targets file or leave the target out")
        in_price = max(target.price_input_per_mtok_usd or 0.0,
                       float(target.options.get("image_input_per_mtok_usd", 0.0)))
        ref_tokens = 0
        if shape.references:
            if target.input_tokens_per_reference is None:
                raise UnboundedPrice(
                    f"target {target.name!r} is token-priced and has no input_tokens_per_reference: a request "
                    "with reference images cannot be bounded; set it or max_request_usd in a targets file")
            ref_tokens = shape.references * target.input_tokens_per_reference
        return (cap * (target.price_output_per_mtok_usd or 0.0) + (shape.prompt_bytes + ref_tokens) * in_price) / 1e6
    raise UnboundedPrice(f"target {target.name!r} has no price the harness can bound before sending "
                         f"({unit or 'no price'}); set max_request_usd in a targets file")


def failure_cost(target: Target, *, billed: bool, usage: Mapping[str, Any]) -> Cost:
    """Cost of a failed attempt: zero unless the provider bills it."""
    if not billed:
        return NO_COST
    tokens = _tokens(target, usage)
    if tokens is not None:
        return _discounted(target, Cost(tokens, "tokens", True))
    cost = usage.get("cost")
    if isinstance(cost, (int, float)):
        return Cost(float(cost), "provider_reported", True)
    return Cost(0.0, "none", True)
