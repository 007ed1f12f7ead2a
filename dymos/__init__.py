"""DyMoS — Dynamic Motion Slider for diffusers image-to-video models.

Importing ``dymos`` is cheap and torch-free: the torch-side API is loaded on first use, so the torch-free
runtime (``dymos.runtime``) can live in the same package.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

__version__ = "0.1.0"


class _QuietPilFallback(logging.Filter):
    """Drops transformers' notice that its CLIP image processor falls back to PIL without torchvision, printed at
    every import of diffusers' Wan and SVD pipeline modules. The fallback is the processor dymos is tested against
    (``dymos.images`` follows its steps), and PyPI's torchvision for torch 2.13 is built against the CUDA torch (its
    operators do not load beside the pinned CPU build), so the line only alarms. Every other transformers message
    passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed); falling back to" not in record.getMessage()


logging.getLogger("transformers.utils.import_utils").addFilter(_QuietPilFallback())

# Source checkout (the torch.hub way): export/ and runtime/ sit beside dymos/ and are served as dymos.export and
# dymos.runtime. An installed wheel maps them to those names itself (see pyproject.toml).
_root = Path(__file__).resolve().parent.parent
if (_root / "pyproject.toml").is_file() and (_root / "runtime" / "__init__.py").is_file():
    __path__.append(str(_root))

_LAZY = {
    "patch": ("dymos.denoiser", "patch"),
    "enable": ("dymos.pipeline", "enable"),
    "DyMoSDenoiser": ("dymos.denoiser", "DyMoSDenoiser"),
    "DyMoSPipeline": ("dymos.pipeline", "DyMoSPipeline"),
    "StrengthSchedule": ("dymos.schedule", "StrengthSchedule"),
    "attention_mass": ("dymos.probe", "attention_mass"),
    "STRATEGIES": ("dymos.attention", "STRATEGIES"),
    "supported_classes": ("dymos.layouts", "supported_classes"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'dymos' has no attribute {name!r}")
