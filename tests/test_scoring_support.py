"""Shared pieces of the CLIP scoring tests (no tests here): a tiny random-weight open_clip model saved as a
``local-dir:`` folder, a fake Hugging Face cache, a network guard, and a sandbox run covering every kind.

The tiny model is an open_clip config with a 32-wide, 2-layer vision and text tower (1.6 M parameters, 32-px
images, the standard 77-token BPE tokenizer) with OpenAI's QuickGELU, built by open_clip and loaded back through
``create_model_and_transforms('local-dir:...')``: the real loading path, with no network. Test modules
wrap these helpers in their own fixtures.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from harness.challenges import load
from harness.run import RunOptions, start_run
from harness.targets import load_targets, resolve_keys, select
from tests.conftest import mask_png, photo_like

TINY_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
OPENAI_PREPROCESS = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
                     "interpolation": "bicubic", "resize_mode": "shortest"}

LONG_SENTENCES = (
    "A sprawling harbour town at dusk seen from a hillside terrace, with terracotta roofs stepping down toward "
    "the water, narrow alleys lit by paper lanterns and laundry lines strung between balconies.",
    "In the foreground an old fisherman in a yellow raincoat mends a green net beside a sleeping grey cat.",
    "Far out on the calm sea a red lighthouse blinks while three small sailboats drift home under a violet sky.",
)
LONG_PROMPT = " ".join(LONG_SENTENCES)
"""Three sentences, well over CLIP's 75 text tokens; each sentence alone fits."""

SUITE_YAML = f"""challenges:
  - id: fox
    title: Fox
    category: illustration
    kind: text-to-image
    prompt: "A watercolor fox reading a newspaper"
    variants: {{terse: "fox, newspaper"}}
    params: {{seed: 7}}
  - id: harbour
    title: Long prompt
    category: nature
    kind: text-to-image
    prompt: "{LONG_PROMPT}"
    params: {{seed: 11}}
  - id: smile
    title: Smile edit
    category: portraiture
    kind: edit
    prompt: Make the sky orange
    references: [a.png]
    captions: {{source: a photo of a blue sky, target: a photo of an orange sky}}
    params: {{seed: 3}}
  - id: plain-edit
    title: Edit without captions
    category: other
    kind: edit
    prompt: Add a hat
    references: [b.png]
    params: {{seed: 4}}
  - id: together
    title: Compose
    category: product
    kind: compose
    prompt: Put the object of image 1 next to image 2
    references: [a.png, b.png]
    params: {{seed: 5}}
  - id: fill
    title: Inpaint
    category: photorealism
    kind: inpaint
    prompt: Fill the hole with flowers
    references: [a.png]
    mask: mask.png
    params: {{seed: 6}}
"""

KIND_METRICS = {
    "text-to-image": {"clip_t_cos", "clip_t_100", "clipscore"},
    "edit": {"clip_t_cos", "clip_t_100", "clipscore", "clip_i_source"},
    "compose": {"clip_t_cos", "clip_t_100", "clipscore", "clip_i_ref_mean", "clip_i_ref_min"},
    "inpaint": {"clip_t_cos", "clip_t_100", "clipscore", "clip_t_mask_crop", "l1_outside_mask",
                "psnr_outside_mask"},
}
CAPTION_METRICS = {"clip_t_caption", "clip_direction"}
CHUNK_METRICS = {"clip_t_chunk_mean", "clip_t_chunk_min"}


def save_local_dir(folder: Path, model_cfg: dict[str, Any], seed: int = 0) -> Path:
    """Build an open_clip CLIP with random weights (seeded) and save it as a ``local-dir:`` folder."""
    import torch
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CLIP(**model_cfg)
    save_file(model.state_dict(), str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": OPENAI_PREPROCESS}), encoding="utf-8")
    return folder


def fake_hub_cache(cache: Path, repo: str, files: dict[str, Path], revision: str = "0" * 40) -> Path:
    """A Hugging Face cache holding ``files`` (name -> source file) of ``repo`` at ``revision``."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(revision, encoding="utf-8")
    for name, source in files.items():
        try:
            os.link(source, snapshot / name)
        except OSError:
            shutil.copyfile(source, snapshot / name)
    return snapshot


def make_tiny_clip(factory: pytest.TempPathFactory) -> Path:
    """The tiny random CLIP (seed 0) as a ``local-dir:`` folder in a fresh temporary directory."""
    return save_local_dir(factory.mktemp("tiny-clip") / "tiny-clip", TINY_CFG, seed=0)


def refuse_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Make any attempt to open a network connection fail the test; returns the attempted addresses."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise AssertionError(f"network connection attempted to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def write_suite(folder: Path) -> Path:
    """The all-kinds suite (with a long prompt and edit captions) and its images, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.png").write_bytes(photo_like((96, 64), 1))
    (folder / "b.png").write_bytes(photo_like((80, 80), 2))
    (folder / "mask.png").write_bytes(mask_png((96, 64)))
    (folder / "suite.yaml").write_text(SUITE_YAML, encoding="utf-8")
    return folder


def sandbox_run(db: Path, suite: Path, targets: list[str], samples: int = 1) -> str:
    """Run ``suite`` against ``targets`` in the sandbox (no injected faults); returns the run id."""
    chosen = select(load_targets(), targets)
    options = RunOptions(sandbox=True, time_scale=0.005, sandbox_faults=False, samples=samples, retries=2)
    result = start_run(db, load(suite), chosen, resolve_keys(chosen, sandbox=True), options)
    return result.run_id
