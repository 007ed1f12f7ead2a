"""Model names the CLI offers, torch-free: importing this never loads torch, so `dymos run` (numpy + an engine
backend) can build its argument parser where torch is not installed. ``dymos.models`` resolves the names."""

from __future__ import annotations

DEFAULT_MODEL = "tiny:wan21"  # the probe's default: a bare denoiser
# Trained pipelines shipped in the package (dymos/weights/<folder>), by name; tools/train_tiny.py makes them.
SHIPPED_MODELS = {"sprites": "sprites-wan"}
DEFAULT_EXPORT_MODEL = "sprites"  # `make export` / `dymos run`: the shipped pipeline the runtime drives
# Tiny random-weight pipelines (`tiny-pipeline:<name>`, built by dymos.tiny.build_tiny_pipeline).
TINY_PIPELINES = (
    "wan22",
    "wan21",
    "wan22-a14b",
    "wan22-ti2v",
    "cogvideox",
    "cogvideox15",
    "svd",
    "ltx",
    "hunyuanvideo",
    "hunyuanvideo-33ch",
)
