"""Loading models by name: a shipped trained pipeline (``sprites``), a tiny denoiser (``tiny:<case>`` or a family
name), a tiny pipeline (``tiny-pipeline:<name>``), or a local diffusers checkpoint directory.

No hub access is assumed: a checkpoint is a local directory in diffusers format, either a model folder (with
``config.json``) or a whole pipeline folder (with ``model_index.json``), from which the denoiser is taken.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from dymos.catalog import DEFAULT_MODEL, SHIPPED_MODELS, TINY_PIPELINES
from dymos.layouts import FAMILIES, FamilyLayout, UnsupportedModelError, supported_classes
from dymos.tiny import TINY_CASES

# Generation defaults a pipeline folder may carry (video size it was trained at, guidance, steps).
DEFAULTS_FILE = "dymos_defaults.json"
# A bare family name picks that family's tiny model (`make export MODEL=svd`).
FAMILY_TINY = {"wan": "wan21", "cogvideox": "cogvideox", "hunyuanvideo": "hunyuanvideo", "ltx": "ltx", "svd": "svd"}
_DENOISER_SUBFOLDERS = ("transformer", "unet")


TINY_PIPELINE_PREFIX = "tiny-pipeline:"


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


def shipped_path(spec: str) -> Path | None:
    """The folder of a shipped model name (``sprites``), or None for any other spec. The name always means the
    shipped model; a local folder of the same name is ``./sprites``."""
    if spec in SHIPPED_MODELS:
        return Path(__file__).resolve().parent / "weights" / SHIPPED_MODELS[spec]
    return None


def _folder(spec: str) -> Path:
    return shipped_path(spec) or Path(spec).expanduser()


def source_folder(spec: str) -> Path | None:
    """The local folder a model spec loads from (a shipped model's too); None for tiny models built in memory."""
    spec = canonical_model(spec)
    if spec.startswith(("tiny:", TINY_PIPELINE_PREFIX)):
        return None
    return _folder(spec)


FINGERPRINT_EDGE = 1 << 20  # bytes read from each end of a large file for the folder fingerprint


def folder_fingerprint(folder: Path) -> str:
    """A cheap identity of a model folder: every file's relative path and size, the whole of files up to 2 MiB
    (configs, small weights) and the first and last MiB of larger ones (a retrained checkpoint's tensors differ
    there), hashed together. Not a full hash: it reads megabytes, not the tens of GB of a large checkpoint."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder).as_posix()}\0{size}\0".encode())
        with path.open("rb") as handle:
            if size <= 2 * FINGERPRINT_EDGE:
                digest.update(handle.read())
            else:
                digest.update(handle.read(FINGERPRINT_EDGE))
                handle.seek(size - FINGERPRINT_EDGE)
                digest.update(handle.read(FINGERPRINT_EDGE))
    return digest.hexdigest()


def source_record(spec: str) -> dict[str, str]:
    """What an export records of a folder it loaded, so the torch side (prepare, sweep) finds the same weights
    later from any working directory and notices when they changed: the absolute folder and its fingerprint."""
    folder = source_folder(spec)
    if folder is None:
        return {}
    return {"folder": str(folder.resolve()), "fingerprint": folder_fingerprint(folder)}


def exported_source(model: dict[str, Any], override: str | None = None) -> str:
    """The model spec to reload an export's pipeline from: ``override`` (a moved or copied checkpoint), else the
    recorded absolute folder where it still exists, else the source as given (a shipped model's name). A folder
    whose fingerprint differs from the export's is refused: conditioning from other weights than the exported
    graph's would be silently wrong."""
    spec = override or (model["folder"] if Path(model.get("folder", "\0")).is_dir() else model["source"])
    recorded = model.get("fingerprint")
    folder = source_folder(spec)
    if recorded and folder is not None:
        if not folder.is_dir():
            raise ModelNotFoundError(f"the export's model folder {spec} is gone: give its new place (--model)")
        if folder_fingerprint(folder) != recorded:
            raise ModelNotFoundError(
                f"{folder} is not the checkpoint this export was made from (its files changed since): re-export, "
                "or point --model at the exported one"
            )
    return spec


def pipeline_defaults(spec: str) -> dict[str, Any]:
    """Generation defaults stored beside a pipeline folder's model_index.json (empty when there are none)."""
    if spec.startswith(TINY_PIPELINE_PREFIX):
        return {}
    path = _folder(spec) / DEFAULTS_FILE
    return _read_json(path) if path.is_file() else {}


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a model folder; anything else names the file (not a bare decoder message)."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelNotFoundError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ModelNotFoundError(f"{path} holds a JSON {type(data).__name__}, not an object")
    return data


def canonical_model(spec: str) -> str:
    """``wan`` -> ``tiny:wan21``, ``svd`` -> ``tiny:svd``; paths and ``tiny:`` specs are returned unchanged."""
    if spec in FAMILY_TINY and not Path(spec).exists():
        return f"tiny:{FAMILY_TINY[spec]}"
    if spec in TINY_CASES and not Path(spec).exists():
        return f"tiny:{spec}"
    return spec


def resolve_model(spec: str) -> tuple[str, str, dict]:
    """``(kind, class_name, config)`` for a model spec without building it; ``kind`` is 'tiny' or 'local'."""
    spec = canonical_model(spec)
    if spec.startswith("tiny:"):
        name = spec.split(":", 1)[1]
        if name not in TINY_CASES:
            raise ModelNotFoundError(f"unknown tiny model {name!r}; choose one of {', '.join(TINY_CASES)}")
        case = TINY_CASES[name]
        return "tiny", case.class_name, dict(case.config)
    path = _folder(spec)
    if not path.exists():
        raise ModelNotFoundError(
            f"model {spec!r} is neither a local checkpoint directory, a shipped model ({', '.join(SHIPPED_MODELS)}), "
            f"a family ({', '.join(FAMILY_TINY)}), a tiny model (tiny:{'|'.join(TINY_CASES)}) nor a tiny pipeline "
            f"({TINY_PIPELINE_PREFIX}{'|'.join(TINY_PIPELINES)})"
        )
    config_path = _model_folder(path) / "config.json"
    config = _read_json(config_path)
    class_name = config.get("_class_name")
    if not class_name:
        raise ModelNotFoundError(f"{config_path} has no _class_name: not a diffusers model config")
    layout_for_class_name(class_name)
    return "local", class_name, config


def load_denoiser(spec: str = DEFAULT_MODEL, *, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.nn.Module:
    """Build a tiny model (seeded random weights) or ``from_pretrained`` a local checkpoint, in eval mode."""
    import diffusers

    spec = canonical_model(spec)
    kind, class_name, _ = resolve_model(spec)
    if kind == "tiny":
        model = TINY_CASES[spec.split(":", 1)[1]].build(seed=seed)
        return model if dtype == torch.float32 else model.to(dtype)
    folder = _model_folder(_folder(spec))
    model = getattr(diffusers, class_name).from_pretrained(folder, dtype=dtype)
    return model.eval()


def is_pipeline_spec(spec: str) -> bool:
    """A whole pipeline (denoiser + VAE + scheduler): ``tiny-pipeline:<name>``, a shipped model or a folder with
    model_index.json."""
    return spec.startswith(TINY_PIPELINE_PREFIX) or (_folder(spec) / "model_index.json").is_file()


def load_pipeline(spec: str, *, dtype: torch.dtype = torch.float32, seed: int = 0, **components: Any) -> Any:
    """A diffusers pipeline from ``tiny-pipeline:<name>``, a shipped model or a local pipeline folder, without
    text/image encoders where the folder lacks them (their outputs come from ``dymos prepare``); ``components``
    override ``from_pretrained``'s (folders only)."""
    import diffusers

    from dymos.tiny import build_tiny_pipeline

    if spec.startswith(TINY_PIPELINE_PREFIX):
        name = spec.removeprefix(TINY_PIPELINE_PREFIX)
        if name not in TINY_PIPELINES:
            raise ModelNotFoundError(f"unknown tiny pipeline {name!r}; choose one of {', '.join(TINY_PIPELINES)}")
        pipe = build_tiny_pipeline(name, seed=seed)
        return pipe if dtype == torch.float32 else pipe.to(dtype)
    folder = _folder(spec)
    if not (folder / "model_index.json").is_file():
        raise ModelNotFoundError(f"{folder} is not a diffusers pipeline folder (no model_index.json)")
    index = _read_json(folder / "model_index.json")
    absent = {name: None for name, entry in index.items() if isinstance(entry, list) and not (folder / name).is_dir()}
    # the folder's own class, not the generic DiffusionPipeline: diffusers 0.42's generic loader ignores component
    # objects passed to it (it loads them from disk instead), which would silently drop ``components``
    pipeline_class = getattr(diffusers, index.get("_class_name", ""), None) or diffusers.DiffusionPipeline
    pipe = pipeline_class.from_pretrained(folder, dtype=dtype, **{**absent, **components})
    pipe.set_progress_bar_config(disable=True)
    return pipe


# VAEs whose encoder reads the frames after the first in fixed causal chunks (diffusers' AutoencoderKLWan: 4, even
# where its temporal compression is 2, as the shipped model's is): the video's later frames must fill whole chunks
VAE_FRAME_CHUNKS = {"AutoencoderKLWan": 4}


def pipeline_frame_step(pipe: Any) -> int:
    """A pipeline's videos have ``step * n + 1`` frames: its VAE's temporal compression, or the encoder's causal
    chunk where that is longer."""
    temporal, _ = pipeline_compression(pipe)
    return math.lcm(temporal, VAE_FRAME_CHUNKS.get(type(getattr(pipe, "vae", None)).__name__, 1))


def pipeline_compression(pipe: Any) -> tuple[int, int]:
    """(temporal, spatial) compression of a pipeline's VAE, as the pipeline itself computes latent sizes."""
    names = (  # Wan, CogVideoX; LTX; SVD's image VAE (no temporal compression)
        ("vae_scale_factor_temporal", "vae_scale_factor_spatial"),
        ("vae_temporal_compression_ratio", "vae_spatial_compression_ratio"),
        (None, "vae_scale_factor"),
    )
    for temporal, spatial in names:
        if hasattr(pipe, spatial):
            return int(getattr(pipe, temporal, 1) if temporal else 1), int(getattr(pipe, spatial))
    return 1, 8
