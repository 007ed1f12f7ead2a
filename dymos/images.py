"""Input images, torch-free (PIL + numpy): reading, and the pipelines' resize policy for the conditioning frame.

``dymos prepare`` (torch side) and the runtime's image conditioning (no torch) read images with the same
:func:`load_image`; prepare then resizes with the pipeline's own video processor, and :func:`preprocess_image`
repeats that without torch — ``VaeImageProcessor.preprocess`` for a PIL image: RGB, a Lanczos resize to exactly
height x width (aspect ratio not preserved), ``/ 255``, then ``2x - 1`` (bit-equal, asserted in the tests).
:func:`clip_pixels` does the same for the CLIP image encoder's input (Wan 2.1): the steps of transformers' PIL
image processor (resize the shortest edge, centre crop, rescale, normalise), driven by the settings the export
records (:func:`image_processor_settings`).
"""

from __future__ import annotations

from collections.abc import Mapping
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


def image_processor_settings(processor: Any) -> dict[str, Any]:
    """The settings of a transformers CLIP-style image processor that :func:`clip_pixels` follows, as plain JSON
    (the export writes them into the manifest). Anything else it does is refused rather than ignored."""
    size = dict(processor.size) if processor.do_resize else None
    if size is not None and not ({"shortest_edge"} == set(size) or {"height", "width"} == set(size)):
        raise ValueError(f"image processor resize {size} is not supported (shortest_edge, or height and width)")
    if getattr(processor, "do_pad", False):
        raise ValueError("image processors that pad are not supported")
    return {
        "convert_rgb": bool(processor.do_convert_rgb),
        "resize": size,
        "resample": int(processor.resample),
        "crop": [processor.crop_size["height"], processor.crop_size["width"]] if processor.do_center_crop else None,
        "rescale_factor": float(processor.rescale_factor) if processor.do_rescale else None,
        "mean": [float(m) for m in processor.image_mean] if processor.do_normalize else None,
        "std": [float(s) for s in processor.image_std] if processor.do_normalize else None,
    }


def clip_pixel_shape(settings: Mapping[str, Any]) -> tuple[int, int]:
    """(height, width) of every image :func:`clip_pixels` makes; processors without a fixed output are refused
    (the image encoder graph is exported at one shape)."""
    if settings["crop"] is not None:
        return int(settings["crop"][0]), int(settings["crop"][1])
    resize = settings["resize"] or {}
    if "height" in resize:
        return int(resize["height"]), int(resize["width"])
    raise ValueError("the image processor neither crops nor resizes to a fixed size: its output shape varies")


def clip_pixels(image: Any, settings: Mapping[str, Any]) -> np.ndarray:
    """A PIL image -> float32 ``[1, 3, h, w]`` pixel values as the pipeline's image processor makes them
    (``settings`` from :func:`image_processor_settings`; equality with the PIL processor asserted in the tests)."""
    if settings["convert_rgb"]:
        image = image.convert("RGB")
    resize = settings["resize"]
    if resize is not None:
        width, height = image.size
        if "shortest_edge" in resize:  # transformers' rule: the long edge truncates, the short one is exact
            short, long = (width, height) if width <= height else (height, width)
            edge = int(resize["shortest_edge"])
            new_short, new_long = edge, int(edge * long / short)
            height, width = (new_long, new_short) if width <= height else (new_short, new_long)
        else:
            height, width = int(resize["height"]), int(resize["width"])
        image = image.resize((width, height), resample=settings["resample"])
    pixels = np.asarray(image).transpose(2, 0, 1)  # HWC uint8 -> CHW
    if settings["crop"] is not None:
        crop_height, crop_width = settings["crop"]
        top, left = (pixels.shape[1] - crop_height) // 2, (pixels.shape[2] - crop_width) // 2
        if top < 0 or left < 0:
            raise ValueError(f"image of {pixels.shape[1:]} is smaller than the crop {settings['crop']}")
        pixels = pixels[:, top : top + crop_height, left : left + crop_width]
    if settings["rescale_factor"] is not None:  # as transformers rescales: in float64, then float32
        pixels = (pixels.astype(np.float64) * settings["rescale_factor"]).astype(np.float32)
    else:
        pixels = pixels.astype(np.float32)
    if settings["mean"] is not None:
        mean = np.asarray(settings["mean"], dtype=np.float32)[:, None, None]
        std = np.asarray(settings["std"], dtype=np.float32)[:, None, None]
        pixels = (pixels - mean) / std
    return np.ascontiguousarray(pixels[None], dtype=np.float32)
