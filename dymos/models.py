"""Loading a denoiser by name: a built-in tiny model (``tiny:<case>``) or a local diffusers checkpoint dir.

No hub access is assumed: a checkpoint is a local directory in diffusers format, either a model folder (with
``config.json``) or a whole pipeline folder (with ``model_index.json``), from which the denoiser is taken.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dymos.layouts import FAMILIES, FamilyLayout, UnsupportedModelError, supported_classes
from dymos.tiny import TINY_CASES

DEFAULT_MODEL = "tiny:wan21"
_DENOISER_SUBFOLDERS = ("transformer", "unet")


class ModelNotFoundError(FileNotFoundError):
    """A model spec that names neither a tiny model nor a usable local checkpoint."""


def layout_for_class_name(class_name: str) -> FamilyLayout:
    for layout in FAMILIES.values():
        if layout.class_name == class_name:
            return layout
    raise UnsupportedModelError(
        f"DyMoS does not support {class_name}; supported denoiser classes: {', '.join(supported_classes())}"
    )


def _model_folder(path: Path) -> Path:
    """The folder holding the denoiser's config.json: ``path`` itself or a pipeline's denoiser subfolder."""
    if (path / "config.json").is_file():
        return path
    if (path / "model_index.json").is_file():
        for sub in _DENOISER_SUBFOLDERS:
            if (path / sub / "config.json").is_file():
                return path / sub
        raise ModelNotFoundError(
            f"{path} is a pipeline folder without a transformer/ or unet/ subfolder with config.json"
        )
    raise ModelNotFoundError(f"{path} has no config.json (model folder) or model_index.json (pipeline folder)")


def resolve_model(spec: str) -> tuple[str, str, dict]:
    """``(kind, class_name, config)`` for a model spec without building it; ``kind`` is 'tiny' or 'local'."""
    if spec.startswith("tiny:"):
        name = spec.split(":", 1)[1]
        if name not in TINY_CASES:
            raise ModelNotFoundError(f"unknown tiny model {name!r}; choose one of {', '.join(TINY_CASES)}")
        case = TINY_CASES[name]
        return "tiny", case.class_name, dict(case.config)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelNotFoundError(
            f"model {spec!r} is neither a local checkpoint directory nor a tiny model (tiny:{'|'.join(TINY_CASES)})"
        )
    config_path = _model_folder(path) / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ModelNotFoundError(f"{config_path} is not valid JSON: {err}") from err
    class_name = config.get("_class_name")
    if not class_name:
        raise ModelNotFoundError(f"{config_path} has no _class_name: not a diffusers model config")
    layout_for_class_name(class_name)
    return "local", class_name, config


def load_denoiser(spec: str = DEFAULT_MODEL, *, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.nn.Module:
    """Build a tiny model (seeded random weights) or ``from_pretrained`` a local checkpoint, in eval mode."""
    import diffusers

    kind, class_name, _ = resolve_model(spec)
    if kind == "tiny":
        model = TINY_CASES[spec.split(":", 1)[1]].build(seed=seed)
        return model if dtype == torch.float32 else model.to(dtype)
    folder = _model_folder(Path(spec).expanduser())
    model = getattr(diffusers, class_name).from_pretrained(folder, torch_dtype=dtype)
    return model.eval()
