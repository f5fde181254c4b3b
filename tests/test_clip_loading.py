"""Loading CLIP weights: the real open_clip path, and every way it can fail offline, fast and clearly.

Each error path runs with a socket guard: it must fail without trying the network (a missing file is
known locally; the slow path this prevents is huggingface_hub's ~45 s of retries). How long each takes,
next to a successful load, is measured in ``tests/bench/test_bench_clip.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from harness.cli import cli
from harness.errors import ConfigError
from harness.scoring import BackboneSpec, load_backbone
from harness.scoring.weights import ClipUnavailable, WeightsNotFound, WeightsUnreadable, resolve_weights
from tests.conftest import photo_like
from tests.test_scoring_support import fake_hub_cache, make_tiny_clip, refuse_network

ROOT = Path(__file__).resolve().parents[1]
THREE_WAYS = ("hf download", "local-dir:", "--pretrained /path/to/weights.safetensors")


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_clip(tmp_path_factory)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    return refuse_network(monkeypatch)


def assert_names_three_ways(message: str) -> None:
    for way in THREE_WAYS:
        assert way in message, f"{way!r} missing from: {message}"


def test_tiny_model_loads_through_local_dir_and_embeds_like_open_clip(tiny_clip_dir: Path, tmp_path: Path) -> None:
    import open_clip
    import torch

    backbone = load_backbone(BackboneSpec(model=f"local-dir:{tiny_clip_dir}"))
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tiny_clip_dir}")
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{tiny_clip_dir}")
    (tmp_path / "x.png").write_bytes(photo_like((120, 90), 3))
    image = Image.open(tmp_path / "x.png").convert("RGB")
    with torch.inference_mode():
        want_i = model.encode_image(preprocess(image).unsqueeze(0))
        want_t = model.encode_text(tokenizer(["a red bicycle"]))
    want_i = (want_i / want_i.norm(dim=-1, keepdim=True)).numpy()[0]
    want_t = (want_t / want_t.norm(dim=-1, keepdim=True)).numpy()[0]
    got_i = backbone.encode_images([backbone.image_tensor(image)])[0]
    got_t = backbone.encode_texts(["a red bicycle"])[0]
    np.testing.assert_allclose(got_i, want_i, atol=1e-6)
    np.testing.assert_allclose(got_t, want_t, atol=1e-6)
    info = backbone.info
    assert info.name == f"open_clip:local-dir:{tiny_clip_dir.name}:{info.pretrained}"
    assert info.pretrained.startswith("sha256-") and info.weights_sha256 and info.weights_sha256.startswith(
        info.pretrained.removeprefix("sha256-"))
    assert info.open_clip_version == open_clip.__version__
    assert info.preprocess.startswith("resize shortest side to 32 (bicubic), centre crop 32x32")
    assert (info.device, info.precision, info.context_length) == ("cpu", "fp32", 77)


def test_long_prompt_is_truncated_keeping_the_end_of_text_token(tiny_clip_dir: Path) -> None:
    import torch

    backbone = load_backbone(BackboneSpec(model=f"local-dir:{tiny_clip_dir}"))
    tok = backbone.tokenizer
    prompt = " ".join(f"word{i}" for i in range(120))
    ids = tok.encode(prompt)
    assert len(ids) > 75
    row = backbone.tokens([prompt])[0]
    assert row.shape == (77,)
    assert row[-1].item() == tok.eot_token_id
    assert row[:76].tolist() == [tok.sot_token_id, *ids[:75]]
    with torch.inference_mode():
        kept = backbone.model.encode_text(row.unsqueeze(0))
        kept = (kept / kept.norm(dim=-1, keepdim=True)).numpy()[0]
        sliced = torch.tensor([[tok.sot_token_id, *ids[:76]]])  # the torchmetrics bug: EOT cut off
        broken = backbone.model.encode_text(sliced)
        broken = (broken / broken.norm(dim=-1, keepdim=True)).numpy()[0]
    np.testing.assert_allclose(backbone.encode_texts([prompt])[0], kept, atol=1e-6)
    assert not np.allclose(kept, broken, atol=1e-3)
    assert backbone.count_tokens(prompt) == len(ids)


def test_hf_hub_repo_loads_from_the_cache_offline(tiny_clip_dir: Path, tmp_path: Path, no_network: list[object],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hub"
    fake_hub_cache(cache, "test-org/tiny-clip", {
        "open_clip_config.json": tiny_clip_dir / "open_clip_config.json",
        "open_clip_model.safetensors": tiny_clip_dir / "open_clip_model.safetensors",
    })
    hub = load_backbone(BackboneSpec(model="hf-hub:test-org/tiny-clip", cache_dir=cache))
    local = load_backbone(BackboneSpec(model=f"local-dir:{tiny_clip_dir}"))
    assert hub.info.name == f"open_clip:hf-hub:test-org/tiny-clip:{local.info.pretrained}"
    np.testing.assert_allclose(hub.encode_texts(["a lighthouse"]), local.encode_texts(["a lighthouse"]), atol=1e-6)
    assert no_network == []


def test_missing_local_dir_fails_at_once_and_says_how_to_supply_weights(tmp_path: Path,
                                                                       no_network: list[object]) -> None:
    with pytest.raises(WeightsNotFound) as err:
        load_backbone(BackboneSpec(model=f"local-dir:{tmp_path / 'nowhere'}"))
    assert "no such folder" in str(err.value)
    assert_names_three_ways(str(err.value))


def test_local_dir_without_weights_is_refused_rather_than_random(tiny_clip_dir: Path, tmp_path: Path,
                                                                 no_network: list[object]) -> None:
    folder = tmp_path / "config-only"
    folder.mkdir()
    (folder / "open_clip_config.json").write_bytes((tiny_clip_dir / "open_clip_config.json").read_bytes())
    with pytest.raises(WeightsNotFound) as err:
        load_backbone(BackboneSpec(model=f"local-dir:{folder}"))
    assert "random weights" in str(err.value)
    assert_names_three_ways(str(err.value))


def test_missing_weights_file_fails_at_once(tmp_path: Path, no_network: list[object]) -> None:
    missing = tmp_path / "ViT-B-32.safetensors"
    with pytest.raises(WeightsNotFound) as err:
        load_backbone(BackboneSpec(model="ViT-B-32-quickgelu", pretrained=str(missing)))
    assert str(missing.name) in str(err.value) and "no such file" in str(err.value)
    assert_names_three_ways(str(err.value))


@pytest.mark.parametrize("allow_download", [False, True])
def test_tag_not_in_the_cache_fails_at_once_under_hf_hub_offline(tmp_path: Path, no_network: list[object],
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  allow_download: bool) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFound) as err:
        resolve_weights("ViT-B-32-quickgelu", "openai", allow_download=allow_download, cache_dir=tmp_path / "empty")
    message = str(err.value)
    assert "timm/vit_base_patch32_clip_224.openai" in message and str(tmp_path / "empty") in message
    assert ("HF_HUB_OFFLINE=1" if allow_download else "--allow-download") in message
    assert_names_three_ways(message)


def test_default_scorer_is_openai_vit_b32_with_quickgelu(tmp_path: Path, no_network: list[object]) -> None:
    with pytest.raises(WeightsNotFound) as err:
        load_backbone(BackboneSpec(cache_dir=tmp_path))
    assert "--model ViT-B-32-quickgelu --pretrained openai" in str(err.value)


def test_cached_tag_with_corrupt_weights_is_a_clear_error(tmp_path: Path, no_network: list[object]) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}" + bytes(64))
    cache = tmp_path / "hub"
    fake_hub_cache(cache, "timm/vit_base_patch32_clip_224.openai", {"open_clip_model.safetensors": junk})
    with pytest.raises(WeightsUnreadable) as err:
        load_backbone(BackboneSpec(model="ViT-B-32-quickgelu", pretrained="openai", cache_dir=cache))
    assert "open_clip_model.safetensors" in str(err.value) and "corrupt" in str(err.value)
    assert_names_three_ways(str(err.value))


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_local_weights_are_a_clear_error(tiny_clip_dir: Path, tmp_path: Path, no_network: list[object],
                                                 damage: str) -> None:
    folder = tmp_path / "damaged"
    folder.mkdir()
    (folder / "open_clip_config.json").write_bytes((tiny_clip_dir / "open_clip_config.json").read_bytes())
    weights = (tiny_clip_dir / "open_clip_model.safetensors").read_bytes()
    (folder / "open_clip_model.safetensors").write_bytes(
        weights[: len(weights) // 2] if damage == "truncated" else os.urandom(4096))
    with pytest.raises(WeightsUnreadable) as err:
        load_backbone(BackboneSpec(model=f"local-dir:{folder}"))
    assert "truncated or corrupt" in str(err.value)


def test_weights_for_another_architecture_are_a_clear_error(tiny_clip_dir: Path, no_network: list[object]) -> None:
    with pytest.raises(WeightsUnreadable) as err:
        load_backbone(BackboneSpec(model="RN50-quickgelu",
                                   pretrained=str(tiny_clip_dir / "open_clip_model.safetensors")))
    assert "another architecture" in str(err.value)


def test_openai_weights_on_a_gelu_architecture_are_refused() -> None:
    with pytest.raises(ConfigError, match="Use --model ViT-B-32-quickgelu"):
        resolve_weights("ViT-B-32", "openai")


def test_a_builtin_architecture_without_weights_is_refused() -> None:
    with pytest.raises(ConfigError, match="never uses a model with random weights"):
        resolve_weights("ViT-B-16", None)


def test_unknown_tag_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="openai"):
        resolve_weights("ViT-B-32-quickgelu", "laion9000")


def test_explicit_cuda_without_a_gpu_is_a_clear_error(tiny_clip_dir: Path) -> None:
    import torch

    spec = BackboneSpec(model=f"local-dir:{tiny_clip_dir}", device="cuda")
    if torch.cuda.is_available():
        assert load_backbone(spec).info.device == "cuda"
    else:
        with pytest.raises(ConfigError, match="no CUDA device"):
            load_backbone(spec)


def test_without_the_clip_extra_score_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(ClipUnavailable, match=r"pip install -e '\.\[clip\]'"):
        load_backbone(BackboneSpec())
    db = tmp_path / "results" / "harness.db"
    from harness.store import Store
    from harness.store import runs as run_store

    with Store.open(db) as store:
        run_store.create_run(store, run_id="r1", created_at="2026-01-01T00:00:00Z", harness_version="t",
                             sandbox=True, time_scale=None, label=None, planned=0, config={}, challenges=[],
                             targets=[])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    result = CliRunner().invoke(cli, ["score", "r1", "--db", str(db)])
    assert result.exit_code == 2
    assert "pip install -e '.[clip]'" in result.output


def test_harness_imports_and_other_commands_work_without_torch() -> None:
    code = (
        "import sys\n"
        "for name in ('torch', 'torchvision', 'open_clip'): sys.modules[name] = None\n"
        "import harness, harness.scoring, harness.store.scores, harness.cli.score\n"
        "from harness.cli import main\n"
        "try:\n"
        "    main(['score', '--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--allow-download" in result.stdout and "local-dir:" in result.stdout
