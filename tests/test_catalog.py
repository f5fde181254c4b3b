"""Every catalog price a buyer might cite names its unit, the provider's page and the date it was true on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.errors import ConfigError
from harness.pricing import list_price, price_unit_of
from harness.targets import load_catalog, load_targets

FORBIDDEN_SOURCES = ("providers.md", "seeds/", "DESIGN.md", "shared/", "(verify)")


@pytest.mark.parametrize("name", sorted(load_catalog()))
def test_every_catalog_price_names_unit_page_and_date(name: str) -> None:
    target = load_targets()[name]
    assert target.price_unit is not None, f"{name}: no price_unit"
    assert target.price_url is not None and target.price_url.startswith("https://"), f"{name}: no price_url"
    assert target.price_as_of is not None and re.match(r"^\d{4}-\d{2}", target.price_as_of), f"{name}: no date"
    assert target.price_as_of_kind is not None, f"{name}: the date does not say what it is"
    assert target.price_source, f"{name}: no price_source"


@pytest.mark.parametrize("name", sorted(load_catalog()))
def test_no_catalog_entry_cites_a_file_outside_the_repository(name: str) -> None:
    raw = load_catalog()[name]
    for key in ("price_source", "limits_source", "price_url", "notes"):
        text = str(raw.get(key) or "")
        assert not any(bad in text for bad in FORBIDDEN_SOURCES), f"{name}.{key}: {text}"


def test_catalog_file_cites_no_file_outside_the_repository() -> None:
    text = (Path(__file__).parents[1] / "harness" / "catalog.yaml").read_text(encoding="utf-8")
    assert not any(bad in text for bad in FORBIDDEN_SOURCES)


def test_an_entry_without_a_source_and_date_fails_the_catalog_check(tmp_path: Path) -> None:
    """The check above is able to fail: a user entry with a price but no page or date is caught by it."""
    file = tmp_path / "t.yaml"
    file.write_text("targets:\n  - name: bare\n    model: m\n    provider: p\n    protocol: gemini\n"
                    "    base_url: http://127.0.0.1:1\n    price_per_image_usd: 0.04\n")
    bare = load_targets(file, include_catalog=False)["bare"]
    assert bare.price_url is None and bare.price_as_of is None and bare.price_unit is None
    assert price_unit_of(bare) == "image"


def test_a_price_without_a_unit_is_an_error_naming_the_entry(tmp_path: Path) -> None:
    file = tmp_path / "t.yaml"
    file.write_text("targets:\n  - name: my-gateway\n    model: m\n    provider: p\n    protocol: gemini\n"
                    "    base_url: http://127.0.0.1:1\n    price_usd: 0.04\n")
    with pytest.raises(ConfigError, match=r"my-gateway.*price_usd 0.04 has no price_unit"):
        load_targets(file, include_catalog=False)


def test_a_unit_without_its_price_is_an_error_naming_the_entry(tmp_path: Path) -> None:
    file = tmp_path / "t.yaml"
    file.write_text("targets:\n  - name: half-priced\n    model: m\n    provider: p\n    protocol: gemini\n"
                    "    base_url: http://127.0.0.1:1\n    price_unit: megapixel\n")
    with pytest.raises(ConfigError, match=r"half-priced.*price_unit megapixel needs price_per_megapixel_usd"):
        load_targets(file, include_catalog=False)


def test_a_generic_price_with_its_unit_becomes_the_named_price(tmp_path: Path) -> None:
    file = tmp_path / "t.yaml"
    file.write_text("targets:\n  - name: gw\n    model: m\n    provider: p\n    protocol: gemini\n"
                    "    base_url: http://127.0.0.1:1\n    price_usd: 0.03\n    price_unit: megapixel\n"
                    "    price_as_of: 2026-12\n")
    assert load_targets(file, include_catalog=False)["gw"].price_per_megapixel_usd == 0.03


def test_a_malformed_price_date_is_an_error(tmp_path: Path) -> None:
    file = tmp_path / "t.yaml"
    file.write_text("targets:\n  - name: gw\n    model: m\n    provider: p\n    protocol: gemini\n"
                    "    base_url: http://127.0.0.1:1\n    price_per_image_usd: 0.03\n    price_as_of: last week\n")
    with pytest.raises(ConfigError, match=r"gw.*price_as_of 'last week'"):
        load_targets(file, include_catalog=False)


def test_provider_price_structures_are_modelled() -> None:
    targets = load_targets()
    pro = targets["gemini-3-pro-image-preview@google"]
    assert pro.price_per_image_tiers_usd["1K"] == pro.price_per_image_tiers_usd["2K"] < pro.price_per_image_tiers_usd["4K"]
    gpt = targets["gpt-image-1@openai"]
    # OpenAI's own per-image prices are its token counts at the output price (model page: $0.042, $0.167, $0.25).
    assert gpt.output_tokens_per_image["medium/1024x1024"] * 40.0 / 1e6 == pytest.approx(0.042, abs=1e-3)
    assert gpt.output_tokens_per_image["high/1024x1024"] * 40.0 / 1e6 == pytest.approx(0.167, abs=1e-3)
    assert gpt.output_tokens_per_image["high/1024x1536"] * 40.0 / 1e6 == pytest.approx(0.25, abs=1e-3)
    assert targets["flux-dev@fal"].megapixel_rounding == "ceil"
    assert list_price(targets["flux-dev@fal"]).unit == "megapixel"


def test_targets_list_shows_price_unit_and_date() -> None:
    result = CliRunner().invoke(cli, ["targets", "list", "--target", "gemini-3-pro-image-preview@google"],
                                env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "0.134" in result.output and "0.24" in result.output
    assert "image" in result.output and "2026-03-24 (quoted)" in result.output
    assert "https://ai.google.dev/gemini-api/docs/pricing" in result.output
