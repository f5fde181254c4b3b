"""Finding CLIP weights on this machine before open_clip is asked to load them.

``--model`` takes what ``open_clip.create_model_and_transforms`` takes; ``--pretrained`` names the weights
of a built-in architecture:

* ``NAME`` + ``--pretrained TAG`` (e.g. ``ViT-B-32-quickgelu`` + ``openai``): the tag's file must be in the
  Hugging Face cache (``HF_HUB_CACHE``, ``HF_HOME``/hub or ``--hf-cache``), where open_clip's own download
  would have put it;
* ``NAME`` + ``--pretrained /path/to/weights.safetensors`` (or ``.bin``/``.pt``/``.pth``): that file;
* ``hf-hub:org/repo``: ``open_clip_config.json`` and the weights of that repository in the cache;
* ``local-dir:/path``: a folder with ``open_clip_config.json`` and a weights file.

Downloads are off unless asked for (``allow_download``): a missing file is an immediate
:class:`WeightsNotFound` that says how to supply it, never a minute of network retries and never a model
with random weights. Resolution only reads the local file system; with downloads off no function that can
reach the network is called.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HarnessError

DEFAULT_MODEL = "ViT-B-32-quickgelu"
"""Default backbone: OpenAI's ViT-B/32 with the QuickGELU it was trained with (Hessel's CLIPScore backbone)."""

DEFAULT_PRETRAINED = "openai"
"""Default weights tag of :data:`DEFAULT_MODEL`."""

LOCAL_DIR = "local-dir:"
HF_HUB = "hf-hub:"
CONFIG_FILE = "open_clip_config.json"
HUB_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
"""Weight files open_clip looks for in a hub repository, in its order of preference."""

DIR_WEIGHT_FILES = (
    "open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth", "model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth",
)
"""Weight files open_clip picks in a ``local-dir:`` folder, in its order of preference."""

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".npz")
INSTALL_HINT = "pip install -e '.[clip]'"


class ClipUnavailable(HarnessError):
    """torch / open_clip are not installed (the optional ``clip`` extra)."""


class WeightsNotFound(HarnessError):
    """The named weights are not on this machine and may not be downloaded."""


class WeightsUnreadable(HarnessError):
    """A weights file exists but cannot be loaded (truncated, corrupt, or for another architecture)."""


def import_open_clip() -> Any:
    """``open_clip``, or :class:`ClipUnavailable` saying how to install the extra."""
    try:
        import open_clip
    except ImportError as exc:
        raise ClipUnavailable(
            f"CLIP scoring needs the optional 'clip' extra (torch, torchvision, open-clip-torch): "
            f"{INSTALL_HINT} ({exc})"
        ) from None
    return open_clip


@dataclass(frozen=True)
class ResolvedWeights:
    """How to build the model, and which file its weights come from.

    ``model_name``/``pretrained`` are the arguments for ``open_clip.create_model_and_transforms``
    (``pretrained`` is a file path or ``None`` for ``local-dir:``). ``backbone`` and ``weights_label`` are
    the stable, machine-independent names recorded with every score (``weights_label`` is the tag, or
    ``sha256-<first 16 hex>`` of the file). ``preprocess_overrides`` carries a tag's preprocessing
    (mean, std, interpolation, resize mode), which open_clip applies only when it resolves the tag itself.
    """

    model_name: str
    pretrained: str | None
    weights_path: Path
    backbone: str
    weights_label: str
    weights_sha256: str | None
    model_cfg: dict[str, Any]
    preprocess_overrides: dict[str, Any] = field(default_factory=dict)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hub_offline() -> bool:
    """Whether the environment forbids Hugging Face downloads (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def default_hub_cache() -> Path:
    """The cache huggingface_hub uses without ``--hf-cache``: ``HF_HUB_CACHE``, else ``HF_HOME``/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def three_ways(model: str, repo: str | None, files: tuple[str, ...]) -> str:
    """The message part that says how to supply weights."""
    fetch = (f"hf download {repo} {' '.join(files)}" if repo else "hf download ORG/REPO open_clip_config.json "
             "open_clip_model.safetensors")
    return (
        "Supply weights in one of three ways:\n"
        f"  1. put them in the Hugging Face cache on a connected machine: `{fetch}` (`huggingface-cli download` "
        "with older huggingface_hub), then copy the cache here (HF_HOME / HF_HUB_CACHE / --hf-cache), or rerun "
        "with --allow-download;\n"
        "  2. --model local-dir:/path/to/folder (a folder with open_clip_config.json and "
        "open_clip_model.safetensors, e.g. a copied hub snapshot);\n"
        f"  3. --model {model if not model.startswith((LOCAL_DIR, HF_HUB)) else 'NAME'} "
        "--pretrained /path/to/weights.safetensors (a weights file for that architecture)."
    )


def _downloads_allowed(allow_download: bool) -> bool:
    return allow_download and not hub_offline()


def _offline_reason(allow_download: bool) -> str:
    if allow_download and hub_offline():
        return "HF_HUB_OFFLINE=1 is set, so nothing may be downloaded"
    return "downloads are off (pass --allow-download to fetch them)"


def _read_dir_config(folder: Path, label: str) -> dict[str, Any]:
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise WeightsNotFound(f"{label}: {config_path} is missing; the folder needs {CONFIG_FILE} and a weights "
                              f"file.\n{three_ways(label, None, ())}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsUnreadable(f"{config_path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_cfg"), dict):
        raise WeightsUnreadable(f"{config_path} has no 'model_cfg' mapping, so it is not an open_clip config")
    return config


def _dir_weights(folder: Path) -> Path | None:
    for name in DIR_WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pth") and p.is_file())
    found.sort(key=lambda p: p.suffix != ".safetensors")
    return found[0] if found else None


def _sha_label(sha: str) -> str:
    return f"sha256-{sha[:16]}"


def _resolve_local_dir(folder_text: str) -> ResolvedWeights:
    folder = Path(folder_text).expanduser()
    label = f"{LOCAL_DIR}{folder_text}"
    if not folder.is_dir():
        raise WeightsNotFound(f"--model {label}: no such folder {folder.resolve()}.\n{three_ways(label, None, ())}")
    config = _read_dir_config(folder, label)
    weights = _dir_weights(folder)
    if weights is None:
        raise WeightsNotFound(f"--model {label}: no weights file (*.safetensors, *.bin, *.pth) in {folder}; "
                              f"open_clip would build a model with random weights.\n{three_ways(label, None, ())}")
    sha = file_sha256(weights)
    return ResolvedWeights(
        model_name=f"{LOCAL_DIR}{folder.resolve()}", pretrained=None, weights_path=weights,
        backbone=f"{LOCAL_DIR}{folder.resolve().name}", weights_label=_sha_label(sha), weights_sha256=sha,
        model_cfg=dict(config["model_cfg"]),
    )


def _cached(repo: str, filename: str, cache_dir: Path | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo, filename, cache_dir=str(cache_dir) if cache_dir else None)
    return Path(hit) if isinstance(hit, str) and Path(hit).is_file() else None


def _resolve_hf_hub(repo: str, allow_download: bool, cache_dir: Path | None) -> ResolvedWeights:
    label = f"{HF_HUB}{repo}"
    config_path = _cached(repo, CONFIG_FILE, cache_dir)
    weights = next((p for p in (_cached(repo, f, cache_dir) for f in HUB_WEIGHT_FILES) if p is not None), None)
    if (config_path is None or weights is None) and _downloads_allowed(allow_download):
        from huggingface_hub import hf_hub_download

        try:
            config_path = Path(hf_hub_download(repo, CONFIG_FILE, cache_dir=cache_dir))
            weights = Path(hf_hub_download(repo, HUB_WEIGHT_FILES[0], cache_dir=cache_dir))
        except Exception as exc:
            raise WeightsNotFound(f"--model {label}: download failed: {type(exc).__name__}: {exc}\n"
                                  f"{three_ways(label, repo, (CONFIG_FILE, HUB_WEIGHT_FILES[0]))}") from None
    if config_path is None or weights is None:
        missing = CONFIG_FILE if config_path is None else " or ".join(HUB_WEIGHT_FILES)
        raise WeightsNotFound(
            f"--model {label}: {missing} not in the Hugging Face cache {cache_dir or default_hub_cache()} and "
            f"{_offline_reason(allow_download)}.\n{three_ways(label, repo, (CONFIG_FILE, HUB_WEIGHT_FILES[0]))}")
    if config_path.parent != weights.parent:
        raise WeightsNotFound(f"--model {label}: config and weights are cached from different revisions "
                              f"({config_path.parent.name} vs {weights.parent.name}); download both again")
    resolved = _resolve_local_dir(str(config_path.parent))
    return ResolvedWeights(
        model_name=resolved.model_name, pretrained=None, weights_path=weights, backbone=label,
        weights_label=resolved.weights_label, weights_sha256=resolved.weights_sha256, model_cfg=resolved.model_cfg,
    )


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.endswith(WEIGHT_SUFFIXES) or text.startswith(("~", "."))


def _tag_file(open_clip: Any, tag_cfg: dict[str, Any], model: str, tag: str, allow_download: bool,
              cache_dir: Path | None) -> Path:
    hub = str(tag_cfg.get("hf_hub") or "")
    url = str(tag_cfg.get("url") or "")
    repo, filename = os.path.split(hub) if hub else ("", "")
    candidates = (f"{filename[:-4]}.safetensors", filename) if filename.endswith((".bin", ".pth")) else (
        (filename,) if filename else HUB_WEIGHT_FILES)
    legacy = (cache_dir or Path("~/.cache/clip").expanduser()) / os.path.basename(url or "weights")
    if tag_cfg.get("file") and Path(str(tag_cfg["file"])).is_file():
        return Path(str(tag_cfg["file"]))
    if repo:
        for name in candidates:
            hit = _cached(repo, name, cache_dir)
            if hit is not None:
                return hit
    elif url and legacy.is_file():
        return legacy
    if _downloads_allowed(allow_download):
        try:
            path = open_clip.download_pretrained(tag_cfg, cache_dir=str(cache_dir) if cache_dir else None)
        except Exception as exc:
            raise WeightsNotFound(f"--model {model} --pretrained {tag}: download failed: {type(exc).__name__}: "
                                  f"{exc}\n{three_ways(model, repo or None, candidates[:1])}") from None
        if path and Path(path).is_file():
            return Path(path)
    where = f"the Hugging Face cache {cache_dir or default_hub_cache()}" if repo else str(legacy.parent)
    raise WeightsNotFound(
        f"weights for --model {model} --pretrained {tag} ({repo or url}) are not in {where} and "
        f"{_offline_reason(allow_download)}.\n{three_ways(model, repo or None, (candidates[0], CONFIG_FILE))}")


def _resolve_builtin(model: str, pretrained: str | None, allow_download: bool,
                     cache_dir: Path | None) -> ResolvedWeights:
    if pretrained is not None and _looks_like_path(pretrained) and not Path(pretrained).expanduser().exists():
        raise WeightsNotFound(f"--pretrained {pretrained}: no such file ({Path(pretrained).expanduser().resolve()})."
                              f"\n{three_ways(model, None, ())}")
    open_clip = import_open_clip()
    model_cfg = open_clip.get_model_config(model)
    if model_cfg is None:
        raise ConfigError(f"--model {model!r} is not an open_clip architecture; use a name from "
                          "open_clip.list_models(), hf-hub:ORG/REPO or local-dir:/path")
    tags = list(open_clip.list_pretrained_tags_by_model(model))
    if pretrained is None and model == DEFAULT_MODEL:
        pretrained = DEFAULT_PRETRAINED
    if pretrained is None:
        raise ConfigError(f"--model {model} needs --pretrained: a tag ({', '.join(tags) or 'none known'}) or a "
                          "weights file; scoring never uses a model with random weights")
    if _looks_like_path(pretrained) and not (tags and pretrained in tags):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise WeightsNotFound(f"--pretrained {pretrained}: no such file ({path.resolve()}).\n"
                                  f"{three_ways(model, None, ())}")
        sha = file_sha256(path)
        return ResolvedWeights(model_name=model, pretrained=str(path), weights_path=path, backbone=model,
                               weights_label=_sha_label(sha), weights_sha256=sha, model_cfg=dict(model_cfg))
    tag_cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if not tag_cfg:
        raise ConfigError(f"--pretrained {pretrained!r} is neither a file nor a tag of {model} "
                          f"(tags: {', '.join(tags) or 'none'})")
    model_quick = bool(model_cfg.get("quick_gelu", False))
    tag_quick = bool(tag_cfg.get("quick_gelu", False))
    if model_quick != tag_quick:
        fix = f"{model}-quickgelu" if tag_quick else model.removesuffix("-quickgelu")
        raise ConfigError(f"--pretrained {pretrained} was trained with {'QuickGELU' if tag_quick else 'GELU'} "
                          f"but {model} uses {'QuickGELU' if model_quick else 'GELU'}; its scores would be "
                          f"slightly wrong. Use --model {fix}")
    path = _tag_file(open_clip, dict(tag_cfg), model, pretrained, allow_download, cache_dir)
    overrides = {k: v for k, v in (("image_mean", tag_cfg.get("mean")), ("image_std", tag_cfg.get("std")),
                                   ("image_interpolation", tag_cfg.get("interpolation")),
                                   ("image_resize_mode", tag_cfg.get("resize_mode"))) if v is not None}
    return ResolvedWeights(model_name=model, pretrained=str(path), weights_path=path, backbone=model,
                           weights_label=pretrained, weights_sha256=None, model_cfg=dict(model_cfg),
                           preprocess_overrides=overrides)


def resolve_weights(model: str, pretrained: str | None, *, allow_download: bool = False,
                    cache_dir: Path | None = None) -> ResolvedWeights:
    """Locate the weights of ``model``/``pretrained`` (see the module docstring) or raise a clear error."""
    if model.startswith(LOCAL_DIR) or model.startswith(HF_HUB):
        if pretrained is not None:
            raise ConfigError(f"--pretrained {pretrained} does not apply to --model {model}: the folder or hub "
                              "repository brings its own weights")
        if model.startswith(LOCAL_DIR):
            folder = model[len(LOCAL_DIR):]
            if not folder:
                raise ConfigError("--model local-dir: needs a folder path after the colon")
            return _resolve_local_dir(folder)
        repo = model[len(HF_HUB):].strip("/")
        if repo.count("/") != 1:
            raise ConfigError(f"--model {model}: expected hf-hub:ORG/REPO")
        return _resolve_hf_hub(repo, allow_download, cache_dir)
    return _resolve_builtin(model, pretrained, allow_download, cache_dir)
