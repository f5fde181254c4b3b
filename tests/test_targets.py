"""Targets: catalog, user files that add or override, selection, and keys resolved before any request."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.pricing import failure_cost, success_cost
from harness.targets import SANDBOX_KEY, Target, load_catalog, load_targets, resolve_keys, select

USER_FILE = """targets:
  - name: my-gateway            # unique
    model: gpt-image-1          # id sent to the provider
    provider: mygateway
    protocol: openai-images     # gemini | openai-images | openrouter | fal | replicate
    base_url: http://127.0.0.1:8080/v1
    api_key_env: MY_GATEWAY_KEY
    price_per_image_usd: 0.04
  - name: gpt-image-1@openai
    base_url: https://proxy.example/v1
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "targets.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_catalog_lists_every_model_and_provider_named_in_the_brief() -> None:
    catalog = load_targets()
    models = {t.model_name for t in catalog.values()}
    providers = {t.provider for t in catalog.values()}
    assert {"gemini-2.5-flash-image", "gemini-3.1-flash-image-preview", "gemini-3-pro-image-preview",
            "gpt-image-1", "gpt-image-1.5", "flux-dev", "sd-3.5-large"} <= models
    assert {"google", "openai", "openrouter", "fal", "replicate"} <= providers
    for t in catalog.values():
        assert t.name == f"{t.model_name}@{t.provider}"
        assert t.api_key_env and t.price_source
        assert any(p is not None for p in (t.price_per_image_usd, t.price_output_per_mtok_usd,
                                           t.price_per_megapixel_usd, t.price_per_second_usd))


def test_user_file_adds_a_target_and_overrides_catalog_fields(tmp_path: Path) -> None:
    targets = load_targets(write(tmp_path, USER_FILE))
    mine = targets["my-gateway"]
    assert (mine.model, mine.model_name, mine.protocol, mine.api_key_env) == (
        "gpt-image-1", "gpt-image-1", "openai-images", ("MY_GATEWAY_KEY",))
    overridden = targets["gpt-image-1@openai"]
    assert overridden.base_url == "https://proxy.example/v1"
    assert overridden.price_output_per_mtok_usd == load_catalog()["gpt-image-1@openai"]["price_output_per_mtok_usd"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("targets:\n  - name: x\n    model: m\n    provider: p\n    protocol: openai-image\n    base_url: u\n",
         "unknown protocol 'openai-image'; did you mean 'openai-images'?"),
        ("targets:\n  - name: x\n    model: m\n    provider: p\n    protocol: fal\n    base_url: u\n    colour: red\n",
         "colour: unknown field"),
        ("targets:\n  - name: x\n    provider: p\n    protocol: fal\n    base_url: u\n", "model: Field required"),
        ("targets:\n  - model: m\n", "targets[0]: each target needs a string `name`"),
        ("targets: {a: 1}\n", "must be a mapping with a `targets:` list"),
        ("targets:\n  - name: x\n    model: m\n    provider: p\n    protocol: fal\n    base_url: u\n"
         "  - name: x\n    model: m\n    provider: p\n    protocol: fal\n    base_url: u\n", "duplicate target name 'x'"),
        ("targets: [\n", "not valid YAML"),
        ("targets:\n  - name: x\n    model: m\n    provider: p\n    protocol: fal\n    base_url: u\n"
         "    price_per_image_usd: -1\n", "price_per_image_usd"),
    ],
)
def test_bad_target_files_name_the_file_target_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_targets(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_selection_by_name_and_glob_keeps_catalog_order() -> None:
    targets = load_targets()
    chosen = select(targets, ["*@fal", "gpt-image-1@openai"])
    assert [t.name for t in chosen] == [n for n in targets if n.endswith("@fal") or n == "gpt-image-1@openai"]
    with pytest.raises(ConfigError, match=r"Did you mean gemini-2\.5-flash-image@google"):
        select(targets, ["gemini-2.5-flash-image@gogle"])


def test_missing_keys_are_reported_together_and_first_set_variable_wins() -> None:
    targets = load_targets()
    chosen = select(targets, ["gemini-2.5-flash-image@google", "flux-dev@fal", "gpt-image-1@openai"])
    with pytest.raises(ConfigError) as info:
        resolve_keys(chosen, env={"GEMINI_API_KEY": "g"})
    text = str(info.value)
    assert "flux-dev@fal (set FAL_KEY)" in text and "gpt-image-1@openai (set OPENAI_API_KEY)" in text
    assert "gemini" not in text.split("missing API key for")[1].split(".")[0]
    keys = resolve_keys(chosen, env={"GEMINI_API_KEY": "g", "GOOGLE_API_KEY": "G", "FAL_KEY": "f",
                                     "OPENAI_API_KEY": "o"})
    assert keys["gemini-2.5-flash-image@google"].env_var == "GOOGLE_API_KEY"
    assert keys["gemini-2.5-flash-image@google"].key == "G"


def test_sandbox_needs_no_keys() -> None:
    chosen = select(load_targets(), ["*@openrouter"])
    keys = resolve_keys(chosen, env={}, sandbox=True)
    assert {c.key for c in keys.values()} == {SANDBOX_KEY}


def target(**fields: object) -> Target:
    base: dict[str, object] = {"name": "t", "model": "m", "provider": "p", "protocol": "openai-images",
                               "base_url": "u"}
    return Target.model_validate(base | fields)


def test_cost_prefers_provider_reported_then_units_tokens_megapixels_seconds_images() -> None:
    kw = {"usage": {}, "provider_cost_usd": None, "billable_units": None, "provider_timings": {},
          "image_sizes": [(1024, 1024)]}
    assert success_cost(target(use_provider_cost=True, price_per_image_usd=0.1),
                        **{**kw, "provider_cost_usd": 0.0388}).usd == pytest.approx(0.0388)
    assert success_cost(target(price_per_unit_usd=0.02), **{**kw, "billable_units": 2.0}).usd == pytest.approx(0.04)
    tokens = target(price_input_per_mtok_usd=5.0, price_output_per_mtok_usd=40.0,
                    options={"image_input_per_mtok_usd": 10.0})
    usage = {"input_tokens": 1050, "input_image_tokens": 1000, "output_tokens": 4160}
    assert success_cost(tokens, **{**kw, "usage": usage}).usd == pytest.approx((50 * 5 + 1000 * 10 + 4160 * 40) / 1e6)
    assert success_cost(target(price_per_megapixel_usd=0.025), **kw).usd == pytest.approx(0.025 * 1.048576)
    assert success_cost(target(price_per_second_usd=0.001), **{**kw, "provider_timings": {"predict_time": 2.5}}
                        ).usd == pytest.approx(0.0025)
    assert success_cost(target(price_per_image_usd=0.039), **{**kw, "image_sizes": [(1, 1)] * 2}).usd == 0.078
    assert success_cost(target(), **kw).source == "none"


def test_failures_cost_nothing_unless_billed() -> None:
    t = target(price_input_per_mtok_usd=0.3, price_output_per_mtok_usd=30.0)
    assert failure_cost(t, billed=False, usage={"output_tokens": 1290}).usd == 0
    billed = failure_cost(t, billed=True, usage={"input_tokens": 10, "output_tokens": 1290})
    assert billed.billed and billed.usd == pytest.approx((10 * 0.3 + 1290 * 30) / 1e6)


@pytest.mark.parametrize(("data", "message"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a binary file, not YAML"),
    ("targets:\n  - name: caf\xe9\n".encode("latin-1"), "is not UTF-8 text"),
    (b"targets: [" * 20000, "targets"),
    (b"targets:\n  - name: a\n    model: [unclosed\n", "not valid YAML"),
])
def test_a_broken_targets_file_is_a_clear_error_naming_it(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "targets.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=message) as raised:
        load_targets(path)
    assert str(path) in str(raised.value)


def test_the_cli_names_a_binary_targets_file_without_a_traceback(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from harness.cli import cli

    path = tmp_path / "targets.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    result = CliRunner().invoke(cli, ["targets", "list", "--targets", str(path)])
    assert result.exit_code == 2 and str(path) in result.output and "binary" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
