"""What a request costs, as the harness counts it, and the most it may cost before it is sent."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.pricing import (
    RequestShape,
    UnboundedPrice,
    billed_megapixels,
    request_bound,
    success_cost,
    tier_of_size,
)
from harness.targets import Target, load_targets

CATALOG = load_targets()


def target(**kw: Any) -> Target:
    return Target(name=kw.pop("name", "t"), model="m", provider="p", protocol="gemini",
                  base_url="http://127.0.0.1:1", **kw)


def cost(t: Target, sizes: list[tuple[int, int]], **kw: Any) -> float:
    args: dict[str, Any] = {"usage": {}, "provider_cost_usd": None, "billable_units": None,
                            "provider_timings": {}, "image_sizes": sizes, **kw}
    return success_cost(t, **args).usd


def test_gemini_3_pro_charges_4k_images_at_the_4k_tier() -> None:
    pro = CATALOG["gemini-3-pro-image-preview@google"]
    assert cost(pro, [(1024, 1024)]) == pytest.approx(0.134)
    assert cost(pro, [(2048, 2048)]) == pytest.approx(0.134)
    assert cost(pro, [(4096, 4096)]) == pytest.approx(0.24)
    assert request_bound(pro, RequestShape(size="4K")) == pytest.approx(0.24)
    assert request_bound(pro, RequestShape(size="1K")) == pytest.approx(0.134)


def test_an_unlisted_tier_counts_at_the_next_listed_tier_up() -> None:
    flash = CATALOG["gemini-3.1-flash-image-preview@google"]
    assert request_bound(flash, RequestShape(size="2K")) == pytest.approx(0.151)  # 2K not in the stored copy
    pro = CATALOG["gemini-3-pro-image-preview@google"]
    assert cost(pro, [(512, 512)]) == pytest.approx(0.134)  # no 0.5K tier: the 1K price


def test_a_request_naming_no_size_is_bounded_at_the_providers_default_tier() -> None:
    flash = CATALOG["gemini-3.1-flash-image-preview@google"]  # Google makes 1K unless asked otherwise
    assert request_bound(flash, RequestShape(size=None)) == pytest.approx(0.067)
    asked = flash.model_copy(update={"options": {"image_size": "4K"}})
    assert request_bound(asked, RequestShape(size=None)) == pytest.approx(0.151)
    nameless = flash.model_copy(update={"default_tier": None})
    assert request_bound(nameless, RequestShape(size=None)) == pytest.approx(0.151)  # unknown: the dearest


def test_fal_flux_bills_whole_megapixels_rounded_up() -> None:
    flux = CATALOG["flux-dev@fal"]
    assert billed_megapixels(flux, 1024, 768) == 1
    assert billed_megapixels(flux, 1024, 1024) == 1
    assert billed_megapixels(flux, 1536, 1024) == 2
    assert cost(flux, [(1536, 1024)]) == pytest.approx(0.05)
    assert request_bound(flux, RequestShape(size=None)) == pytest.approx(0.025)  # at most 1024x1024 by ratio


def test_openai_bound_follows_quality_and_size_token_counts() -> None:
    gpt = CATALOG["gpt-image-1@openai"]  # quality medium
    square = request_bound(gpt, RequestShape(size="1024x1024"))
    tall = request_bound(gpt, RequestShape(size="1024x1536"))
    assert square == pytest.approx(1056 * 40 / 1e6)
    assert tall == pytest.approx(1584 * 40 / 1e6)
    assert request_bound(gpt, RequestShape(size=None)) == pytest.approx(1584 * 40 / 1e6)
    with_prompt = request_bound(gpt, RequestShape(size="1024x1024", prompt_bytes=1000, references=1))
    assert with_prompt == pytest.approx((1056 * 40 + (1000 + 8000) * 10) / 1e6)


def test_a_token_priced_target_without_a_cap_cannot_be_bounded() -> None:
    bare = target(name="gateway-x", price_input_per_mtok_usd=1.0, price_output_per_mtok_usd=10.0)
    with pytest.raises(UnboundedPrice, match=r"gateway-x.*max_output_tokens.*max_request_usd"):
        request_bound(bare, RequestShape())
    capped = target(price_output_per_mtok_usd=10.0, max_output_tokens=2000)
    assert request_bound(capped, RequestShape()) == pytest.approx(0.02)
    ceiling = target(price_output_per_mtok_usd=10.0, max_request_usd=0.5)
    assert request_bound(ceiling, RequestShape()) == 0.5


def test_references_need_an_input_allowance_on_token_targets() -> None:
    capped = target(name="ref-less", price_output_per_mtok_usd=10.0, max_output_tokens=2000)
    with pytest.raises(UnboundedPrice, match=r"ref-less.*input_tokens_per_reference"):
        request_bound(capped, RequestShape(references=2))


def test_a_per_megapixel_target_without_any_size_cannot_be_bounded() -> None:
    mp = target(name="mp-gw", price_per_megapixel_usd=0.02)
    with pytest.raises(UnboundedPrice, match=r"mp-gw.*default_size"):
        request_bound(mp, RequestShape())
    assert request_bound(mp, RequestShape(size="1000x1000")) == pytest.approx(0.02)


def test_provider_reported_costs_are_bounded_by_their_ceiling() -> None:
    router = CATALOG["gemini-3-pro-image-preview@openrouter"]
    assert request_bound(router, RequestShape()) == router.max_request_usd


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_every_catalog_target_can_be_bounded_for_a_text_prompt(name: str) -> None:
    t = CATALOG[name]
    assert request_bound(t, RequestShape(size="1024x1024", prompt_bytes=500)) > 0


@settings(deadline=None)
@given(w=st.integers(1, 8192), h=st.integers(1, 8192))
def test_the_bound_never_undercounts_what_a_tiered_image_costs(w: int, h: int) -> None:
    for name in ("gemini-3-pro-image-preview@google", "gemini-3.1-flash-image-preview@fal",
                 "gemini-3.1-flash-image-preview@google"):
        t = CATALOG[name]
        size = f"{w}x{h}"
        assert cost(t, [(w, h)]) <= request_bound(t, RequestShape(size=size)) + 1e-12
        nameless = t.model_copy(update={"default_tier": None})
        assert cost(t, [(w, h)]) <= request_bound(nameless, RequestShape(size=None)) + 1e-12


@settings(deadline=None)
@given(w=st.integers(1, 8192), h=st.integers(1, 8192))
def test_the_megapixel_bound_equals_the_cost_of_the_size_asked(w: int, h: int) -> None:
    flux = CATALOG["flux-dev@fal"]
    assert cost(flux, [(w, h)]) == pytest.approx(request_bound(flux, RequestShape(size=f"{w}x{h}")))


def test_tiers_from_pixel_sizes() -> None:
    assert tier_of_size("512x512") == "0.5K"
    assert tier_of_size("1376x768") == "1K"
    assert tier_of_size("2752x1536") == "2K"
    assert tier_of_size("1024x1024") == "1K"
    assert tier_of_size("4096x4096") == "4K"
    assert tier_of_size("4k") == "4K"
    assert tier_of_size(None) is None
