"""Input images, torch-free (PIL + numpy): reading, and the pipelines' resize policy for the conditioning frame.

``dymos prepare`` (torch side) and the runtime's image conditioning (no torch) read images with the same
:func:`load_image`; prepare then resizes with the pipeline's own video processor, and :func:`preprocess_image`
repeats that without torch — ``VaeImageProcessor.preprocess`` for a PIL image: RGB, a Lanczos resize to exactly
height x width (aspect ratio not preserved), ``/ 255``, then ``2x - 1`` (bit-equal, asserted in the tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def load_image(path: str | Path) -> Any:
    """An RGB PIL image; unreadable files are a clear error (ValueError)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (FileNotFoundError, UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err


def preprocess_image(image: Any, height: int, width: int) -> np.ndarray:
    """A PIL image -> float32 ``[1, 3, height, width]`` in [-1, 1], bit-equal to the pipelines' preprocessing."""
    from PIL import Image

    resized = image.convert("RGB").resize((width, height), resample=Image.Resampling.LANCZOS)
    pixels = np.asarray(resized).astype(np.float32) / 255.0
    return np.ascontiguousarray((2.0 * pixels - 1.0).transpose(2, 0, 1)[None], dtype=np.float32)
