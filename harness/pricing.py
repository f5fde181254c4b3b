"""Cost of an attempt in USD, from the target's price and what the provider reported.

Order of preference (the first that applies): the provider's own reported cost (OpenRouter ``usage.cost``,
when the target says to use it), billable units (fal ``X-Fal-Billable-Units`` x unit price), tokens
(usage x per-million-token prices; image input tokens use ``options.image_input_per_mtok_usd`` when set),
megapixels (output pixels x price per megapixel), compute seconds (Replicate ``predict_time`` x price per
second), per image. Failures cost nothing unless the provider bills them (``ProviderError.billed``), and then
only what can be computed from what it reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


def success_cost(target: Target, *, usage: Mapping[str, Any], provider_cost_usd: float | None,
                 billable_units: float | None, provider_timings: Mapping[str, Any],
                 image_sizes: Sequence[tuple[int, int]]) -> Cost:
    """Cost of a successful attempt."""
    if target.use_provider_cost and provider_cost_usd is not None:
        return Cost(float(provider_cost_usd), "provider_reported", True)
    if target.price_per_unit_usd is not None and billable_units is not None:
        return Cost(billable_units * target.price_per_unit_usd, "billable_units", True)
    tokens = _tokens(target, usage)
    if tokens is not None:
        return Cost(tokens, "tokens", True)
    if target.price_per_megapixel_usd is not None and image_sizes:
        megapixels = sum(w * h for w, h in image_sizes) / 1e6
        return Cost(megapixels * target.price_per_megapixel_usd, "megapixels", True)
    predict = provider_timings.get("predict_time")
    if target.price_per_second_usd is not None and isinstance(predict, (int, float)):
        return Cost(float(predict) * target.price_per_second_usd, "predict_time", True)
    if target.price_per_image_usd is not None:
        return Cost(len(image_sizes) * target.price_per_image_usd, "per_image", True)
    return NO_COST


def failure_cost(target: Target, *, billed: bool, usage: Mapping[str, Any]) -> Cost:
    """Cost of a failed attempt: zero unless the provider bills it."""
    if not billed:
        return NO_COST
    tokens = _tokens(target, usage)
    if tokens is not None:
        return Cost(tokens, "tokens", True)
    cost = usage.get("cost")
    if isinstance(cost, (int, float)):
        return Cost(float(cost), "provider_reported", True)
    return Cost(0.0, "none", True)
