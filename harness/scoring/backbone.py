"""A loaded open_clip model: preprocessing, tokenizer and L2-normalised embeddings as float32 numpy arrays.

torch and open_clip are imported inside functions, so ``import harness`` and every other command work
without the ``clip`` extra. Inference runs under ``torch.inference_mode``; on CPU in fp32 (bf16 autocast
measured slower on CPU: 12.4 against 15.3 images/s for ViT-B-32 at batch 32 on a 2-vCPU AMD EPYC with
avx512_bf16), on CUDA in open_clip's ``fp16`` mixed precision by default.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from harness.errors import ConfigError
from harness.scoring.weights import (
    DEFAULT_MODEL,
    ResolvedWeights,
    WeightsUnreadable,
    import_open_clip,
    resolve_weights,
    three_ways,
)

Tensor = Any
"""A ``torch.Tensor`` (torch is imported lazily, so it is not named in annotations)."""

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


@dataclass(frozen=True)
class BackboneSpec:
    """Which CLIP to load and where. ``pretrained=None`` means the default tag for the default model and is
    an error for any other built-in name (a model is never scored with random weights). ``cache_dir`` is the
    Hugging Face hub cache (default: huggingface_hub's, from ``HF_HUB_CACHE``/``HF_HOME``)."""

    model: str = DEFAULT_MODEL
    pretrained: str | None = None
    device: str = "auto"
    precision: str = "auto"
    allow_download: bool = False
    cache_dir: Path | None = None


@dataclass(frozen=True)
class ScorerInfo:
    """What a score was computed with; every stored score row points at one of these.

    ``name`` is the stable string ``open_clip:BACKBONE:WEIGHTS`` (``WEIGHTS`` is a tag or
    ``sha256-<16 hex>`` of the file); ``id`` hashes every field that changes the numbers (name, model
    config, open_clip version, preprocessing, precision, context length), so set-ups never mix.
    """

    name: str
    backbone: str
    pretrained: str
    weights_sha256: str | None
    open_clip_version: str
    preprocess: str
    precision: str
    context_length: int
    model_cfg_sha256: str
    device: str

    @property
    def id(self) -> str:
        identity = {k: v for k, v in asdict(self).items() if k != "device"}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def pick_device(requested: str) -> str:
    """``auto``: CUDA when available, else Apple MPS, else CPU. An unavailable explicit device is an error."""
    import torch

    if requested not in DEVICES:
        raise ConfigError(f"--device {requested!r}: use one of {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if requested == "auto":
        return "cuda" if cuda else ("mps" if mps else "cpu")
    if requested == "cuda" and not cuda:
        raise ConfigError("--device cuda: torch sees no CUDA device here (use --device cpu or auto)")
    if requested == "mps" and not mps:
        raise ConfigError("--device mps: Apple MPS is not available here (use --device cpu or auto)")
    return requested


def pick_precision(requested: str, device: str) -> str:
    """``auto``: ``fp16`` (open_clip's mixed precision, LayerNorm kept in fp32) on CUDA, ``fp32`` elsewhere."""
    if requested not in PRECISIONS:
        raise ConfigError(f"--precision {requested!r}: use one of {', '.join(PRECISIONS)}")
    if requested == "auto":
        return "fp16" if device == "cuda" else "fp32"
    return requested


def describe_preprocess(cfg: dict[str, Any]) -> str:
    """A one-line description of open_clip's image preprocessing configuration."""
    size = cfg.get("size", 224)
    w, h = (size, size) if isinstance(size, int) else (int(size[1]), int(size[0]))
    interp = cfg.get("interpolation", "bicubic")
    mode = cfg.get("resize_mode", "shortest")
    if mode == "squash":
        resize = f"resize to {w}x{h} ({interp}, aspect not kept)"
    elif mode == "longest":
        resize = f"resize longest side to {max(w, h)} ({interp}), pad to {w}x{h} (fill {cfg.get('fill_color', 0)})"
    else:
        resize = f"resize shortest side to {min(w, h)} ({interp}), centre crop {w}x{h}"
    mean = ",".join(f"{float(m):.8g}" for m in cfg.get("mean", ()))
    std = ",".join(f"{float(s):.8g}" for s in cfg.get("std", ()))
    return f"{resize}; {cfg.get('mode', 'RGB')}; normalise mean=({mean}) std=({std})"


def _cfg_sha(model_cfg: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(model_cfg, sort_keys=True, default=str).encode()).hexdigest()


class Backbone:
    """A CLIP model ready to embed images and texts (both L2-normalised, float32, one row per input).

    ``image_tensor`` may be called from worker threads; the ``encode_*`` methods from one thread at a time.
    """

    def __init__(self, model: Any, preprocess: Any, tokenizer: Any, device: str, input_dtype: Any,
                 info: ScorerInfo) -> None:
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.input_dtype = input_dtype
        self.info = info

    @property
    def context_length(self) -> int:
        return self.info.context_length

    def image_tensor(self, image: Image.Image) -> Tensor:
        """The model's preprocessing of one RGB image (a ``3×H×W`` float tensor on the CPU)."""
        return self.preprocess(image)

    def encode_images(self, tensors: Sequence[Tensor]) -> np.ndarray[Any, Any]:
        """Embeddings of preprocessed images, as one batch."""
        import torch

        batch = torch.stack(list(tensors)).to(self.device, dtype=self.input_dtype, non_blocking=True)
        with torch.inference_mode():
            features = self.model.encode_image(batch)
            features = features / features.norm(dim=-1, keepdim=True)
        return np.asarray(features.float().cpu().numpy(), dtype=np.float32)

    def tokens(self, texts: Sequence[str]) -> Tensor:
        """Token ids (``n×context_length``); longer texts are truncated with the end-of-text token kept."""
        return self.tokenizer(list(texts))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray[Any, Any]:
        """Embeddings of texts, as one batch."""
        import torch

        tokens = self.tokens(texts).to(self.device)
        with torch.inference_mode():
            features = self.model.encode_text(tokens)
            features = features / features.norm(dim=-1, keepdim=True)
        return np.asarray(features.float().cpu().numpy(), dtype=np.float32)

    def count_tokens(self, text: str) -> int | None:
        """Text tokens of ``text`` without start/end-of-text (``None`` for a tokenizer that cannot tell)."""
        encode = getattr(self.tokenizer, "encode", None)
        if callable(encode) and hasattr(self.tokenizer, "eot_token_id"):
            return len(encode(text))
        inner = getattr(self.tokenizer, "tokenizer", None)
        if inner is not None and callable(inner):
            return len(inner(text, add_special_tokens=False)["input_ids"])
        return None


def _create(open_clip: Any, resolved: ResolvedWeights, device: str, precision: str) -> tuple[Any, Any]:
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            resolved.model_name, pretrained=resolved.pretrained, device=device, precision=precision,
            weights_only=True, **resolved.preprocess_overrides,
        )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise WeightsUnreadable(
            f"could not load weights {resolved.weights_path} into {resolved.backbone}: {type(exc).__name__}: "
            f"{first[:300]}. The file may be truncated or corrupt, or made for another architecture.\n"
            f"{three_ways(resolved.backbone, None, ())}"
        ) from None
    model.eval()
    return model, preprocess


def load_backbone(spec: BackboneSpec) -> Backbone:
    """Resolve the weights (no network unless ``allow_download``), build the model and its tokenizer.

    Weights are located before torch is imported where that is possible (``local-dir:``, ``hf-hub:``, a file
    path), so those errors come at once even from a cold process; built-in tags need open_clip's registry.
    """
    resolved = resolve_weights(spec.model, spec.pretrained, allow_download=spec.allow_download,
                               cache_dir=spec.cache_dir)
    open_clip = import_open_clip()
    device = pick_device(spec.device)
    precision = pick_precision(spec.precision, device)
    model, preprocess = _create(open_clip, resolved, device, precision)
    try:
        tokenizer = open_clip.get_tokenizer(resolved.model_name)
    except Exception as exc:
        raise WeightsUnreadable(f"no tokenizer for {resolved.backbone}: {type(exc).__name__}: {exc}") from None
    context = int(getattr(model, "context_length", 0) or getattr(tokenizer, "context_length", 0) or 77)
    info = ScorerInfo(
        name=f"open_clip:{resolved.backbone}:{resolved.weights_label}", backbone=resolved.backbone,
        pretrained=resolved.weights_label, weights_sha256=resolved.weights_sha256,
        open_clip_version=str(open_clip.__version__),
        preprocess=describe_preprocess(dict(open_clip.get_model_preprocess_cfg(model))), precision=precision,
        context_length=context, model_cfg_sha256=_cfg_sha(resolved.model_cfg), device=device,
    )
    return Backbone(model, preprocess, tokenizer, device, open_clip.get_input_dtype(precision), info)
