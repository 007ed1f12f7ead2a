"""An export directory as the runtime sees it: a verified manifest and strict checks of every engine feed.

Everything here is numpy and the standard library. Feeds are checked against the manifest's spec before any
engine runs: names, dtypes, ranks, static sizes, dynamic dims (consistent across inputs, inside the exported
range, multiples of the patch size) and a finite strength — so a bad request fails fast with a clear message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dymos.manifest import ManifestError, load_manifest

STRENGTH_INPUT = "motion_strength"


class FeedError(ValueError):
    """An engine input that does not fit the exported graph."""


@dataclass(frozen=True)
class SubmodelSpec:
    """One exported graph's contract, read from the manifest."""

    name: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    dims: dict[str, dict[str, int]]
    # feed signatures (names, array types, shapes, dtypes) already validated -> the dim sizes they imply: the
    # sampling loop feeds one signature every step, so the structural check runs once per signature
    _checked: dict[tuple, dict[str, int]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_manifest(cls, name: str, entry: dict[str, Any]) -> SubmodelSpec:
        return cls(name, entry["inputs"], entry["outputs"], entry.get("dims", {}))

    @property
    def input_names(self) -> list[str]:
        return [t["name"] for t in self.inputs]

    def check_feed(self, feed: dict[str, np.ndarray]) -> dict[str, int]:
        """Validate ``feed``; return the dynamic dim sizes it implies. Raises :class:`FeedError`."""
        signature = tuple(
            (name, type(value), getattr(value, "shape", None), getattr(value, "dtype", None))
            for name, value in feed.items()
        )
        sizes = self._checked.get(signature)
        if sizes is None:
            sizes = self._check_structure(feed)
            if len(self._checked) < 64:
                self._checked[signature] = sizes
        if STRENGTH_INPUT in feed and not np.isfinite(feed[STRENGTH_INPUT]).all():
            raise FeedError(f"{STRENGTH_INPUT} must be finite, got {feed[STRENGTH_INPUT].tolist()}")
        return dict(sizes)

    def _check_structure(self, feed: dict[str, np.ndarray]) -> dict[str, int]:
        """Names, array types, dtypes, ranks, static sizes and dynamic dims: everything but the values."""
        missing = [n for n in self.input_names if n not in feed]
        extra = [n for n in feed if n not in self.input_names]
        if missing or extra:
            raise FeedError(f"{self.name}: missing inputs {missing}, unexpected inputs {extra}")
        sizes: dict[str, int] = {}
        for tensor in self.inputs:
            name, value = tensor["name"], feed[tensor["name"]]
            if not isinstance(value, np.ndarray):
                raise FeedError(f"{self.name}.{name}: expected a numpy array, got {type(value).__name__}")
            if value.dtype != np.dtype(tensor["dtype"]):
                raise FeedError(f"{self.name}.{name}: dtype {value.dtype}, the graph takes {tensor['dtype']}")
            if value.ndim != len(tensor["shape"]):
                raise FeedError(f"{self.name}.{name}: shape {value.shape}, the graph takes {tensor['shape']}")
            for axis, (want, got) in enumerate(zip(tensor["shape"], value.shape)):
                if isinstance(want, int):
                    if want != got:
                        raise FeedError(f"{self.name}.{name}: axis {axis} is {got}, the graph takes {want}")
                    continue
                if sizes.setdefault(want, got) != got:
                    raise FeedError(f"{self.name}.{name}: dim '{want}' is {got} here but {sizes[want]} elsewhere")
        for dim, size in sizes.items():
            bounds = self.dims.get(dim)
            if bounds is None:
                continue
            if not bounds["min"] <= size <= bounds["max"]:
                raise FeedError(
                    f"{self.name}: {dim} = {size} is outside the exported range [{bounds['min']}, {bounds['max']}]; "
                    "re-export with a larger range"
                )
            multiple = bounds.get("multiple_of", 1)
            if size % multiple:
                raise FeedError(f"{self.name}: {dim} = {size} must be a multiple of {multiple}")
        return sizes


@dataclass
class ExportDir:
    """A verified export directory."""

    root: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, root: str | Path, *, verify_hashes: bool = True, tensorrt_version: str | None = None) -> ExportDir:
        root = Path(root)
        if not root.is_dir():
            raise ManifestError(f"{root} is not a directory: give the folder `dymos export` wrote")
        return cls(root, load_manifest(root, verify_hashes=verify_hashes, tensorrt_version=tensorrt_version))

    def submodel(self, name: str) -> SubmodelSpec:
        entries = self.manifest.get("submodels", {})
        if name not in entries:
            raise ManifestError(f"{self.root} has no {name!r} graph (it has {', '.join(entries) or 'none'})")
        return SubmodelSpec.from_manifest(name, entries[name])

    def artifacts(self, submodel: str = "denoiser") -> dict[str, Any]:
        """The artifacts of one graph by format (``onnx``, ``onnx_stock``, ``tensorrt``, ``aoti``, ...): the
        denoiser's are the manifest's top-level ``artifacts``, every other graph's (VAE decoder, Wan 2.2 A14B's
        ``denoiser_2``) sit under ``submodel_artifacts``."""
        if submodel == "denoiser":
            return self.manifest.get("artifacts", {})
        return self.manifest.get("submodel_artifacts", {}).get(submodel, {})

    @property
    def family(self) -> str:
        return self.manifest["model"]["family"]

    def path(self, name: str) -> Path:
        return self.root / name
