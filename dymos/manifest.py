"""``manifest.json``: the contract between export and runtime — pure Python, no torch.

A manifest names every artifact file with its sha256, the graph's inputs/outputs (names, dtypes, shapes with
named dynamic dims and their ranges), the token layout, what the strength input means, the family, scheduler
config, export options and tool versions. It is written last and atomically, so a directory without a valid
manifest is never a loadable export; :func:`load_manifest` verifies format, hashes and (for TensorRT engines)
the TensorRT version before anything heavy happens.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
# Inputs of a condition encoder graph besides the image: the standard normal draw the pipeline makes while
# conditioning (CogVideoX's posterior sample, SVD's augmentation noise) and SVD's noise augmentation scale.
NOISE_INPUT = "noise"
NOISE_SCALE_INPUT = "noise_aug_strength"
# Conditioning entries (``dymos prepare``'s .npz keys) -> the denoiser input they feed, where the names differ.
CONDITIONING_INPUTS = {"prompt_embeds": "encoder_hidden_states"}
# The manifest's pipeline entry of HunyuanVideo-I2V's prompt encoding (LLaVA + CLIP; dymos.runtime.llava_prompts).
LLAVA_PROMPTS = "llava_prompts"
# Denoiser inputs that differ between the guidance halves: input -> (conditional entry, unconditional entry).
GUIDED_INPUTS = {
    "encoder_hidden_states": ("prompt_embeds", "negative_prompt_embeds"),
    "encoder_attention_mask": ("prompt_attention_mask", "negative_prompt_attention_mask"),
    "pooled_projections": ("pooled_prompt_embeds", "negative_pooled_prompt_embeds"),
}


def denoiser_input_of(entry: str) -> str:
    """The denoiser input a conditioning entry feeds (``prompt_embeds`` -> ``encoder_hidden_states``; others keep
    their name)."""
    return CONDITIONING_INPUTS.get(entry, entry)


FORMAT = "dymos-manifest"
FORMAT_VERSION = 1

STRENGTH_SEMANTICS = (
    "logits[q, k] += -s * r[q] * c[k]; r[q] = 1 for queries of non-reference frames, c[k] = 1 for keys of the "
    "reference (first) frame; s = 0 is the stock model; s > 0 more motion, s < 0 less. One value per batch item."
)


class ManifestError(ValueError):
    """A missing, corrupt or mismatching manifest or artifact."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: Path, write: Callable[[str], Any], suffix: str = ".tmp") -> None:
    """``write(tmp_path)`` into a temp file beside ``path``, then rename it into place (0644).

    An interrupted write leaves no file at ``path``, never a half-written one. ``suffix`` is for writers that
    insist on an extension (``.pt2``, ``.mp4``).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`), fsynced."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def file_entries(root: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{name: {sha256, bytes}}`` for files under ``root``."""
    return {name: {"sha256": sha256_file(root / name), "bytes": (root / name).stat().st_size} for name in names}


def write_manifest(root: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` (format fields added) atomically; call it after every artifact is in place."""
    body = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest}
    path = Path(root) / MANIFEST_NAME
    atomic_write_bytes(path, (json.dumps(body, indent=2, sort_keys=False) + "\n").encode())
    return path


def load_manifest(root: Path, *, verify_hashes: bool = True, tensorrt_version: str | None = None) -> dict[str, Any]:
    """Read and verify ``root/manifest.json``; raise :class:`ManifestError` with the reason on any mismatch.

    ``tensorrt_version``: the installed TensorRT version; engines built by another version are refused.
    """
    root = Path(root)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{root} has no {MANIFEST_NAME}: not a dymos export (or an interrupted one)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path} is corrupt: {err}") from err
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path} holds a JSON {type(manifest).__name__}, not a dymos manifest")
    if manifest.get("format") != FORMAT:
        raise ManifestError(f"{path} is not a dymos manifest (format={manifest.get('format')!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ManifestError(
            f"{path} has format version {manifest.get('format_version')}; this dymos reads version {FORMAT_VERSION}"
        )
    model, submodels = manifest.get("model"), manifest.get("submodels")
    if not (isinstance(model, dict) and isinstance(model.get("family"), str) and isinstance(submodels, dict)):
        raise ManifestError(f"{path} lacks its model family or its graphs ('model.family', 'submodels'): damaged")
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        raise ManifestError(f"{path}: 'files' must map file names to their bytes and sha256")
    for name, entry in files.items():
        well_formed = (
            isinstance(entry, dict)
            and isinstance(entry.get("bytes"), int)
            and isinstance(entry.get("sha256"), str)
            and not Path(name).is_absolute()
            and ".." not in Path(name).parts
        )
        if not well_formed:
            raise ManifestError(
                f"{path}: the entry of file {name!r} is malformed (it needs bytes and sha256, and a path inside)"
            )
        file = root / name
        if not file.is_file():
            raise ManifestError(f"{file} is listed in the manifest but missing")
        if file.stat().st_size != entry["bytes"]:
            raise ManifestError(f"{file} has {file.stat().st_size} bytes, the manifest says {entry['bytes']}")
        if verify_hashes and sha256_file(file) != entry["sha256"]:
            raise ManifestError(f"{file} does not match its sha256 in the manifest: modified or corrupt")
    graphs = [manifest.get("artifacts", {}), *manifest.get("submodel_artifacts", {}).values()]
    for engine in (g.get("tensorrt") for g in graphs):  # every engine: Wan 2.2 A14B has one per expert
        if engine and tensorrt_version is not None and engine.get("tensorrt_version") != tensorrt_version:
            raise ManifestError(
                f"the TensorRT engine {engine.get('file')} was built with TensorRT {engine.get('tensorrt_version')}, "
                f"but {tensorrt_version} is installed: engines are not portable across versions; rebuild it"
            )
    return manifest
