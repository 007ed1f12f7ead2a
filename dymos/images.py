"""Input images, torch-free (PIL + numpy): reading, and the pipelines' resize policy for the conditioning frame.

``dymos prepare`` (torch side) and the runtime's image conditioning (no torch) read images with the same
:func:`load_image`; prepare then resizes with the pipeline's own video processor, and :func:`preprocess_image`
repeats that without torch — ``VaeImageProcessor.preprocess`` for a PIL image: RGB, a Lanczos resize to exactly
height x width (aspect ratio not preserved), ``/ 255``, then ``2x - 1`` (bit-equal, asserted in the tests).
:func:`clip_pixels` does the same for the CLIP image encoder's input: for Wan 2.1 the steps of transformers' PIL
image processor (resize the shortest edge, centre crop, rescale, normalise), for SVD its pipeline's own antialiased
bicubic resize (:func:`antialias_resize`) and normalisation, driven by the settings the export records
(:func:`image_processor_settings`, :func:`svd_image_settings`).
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
    if settings.get("antialias") is not None:
        return int(settings["antialias"][0]), int(settings["antialias"][1])
    if settings["crop"] is not None:
        return int(settings["crop"][0]), int(settings["crop"][1])
    resize = settings["resize"] or {}
    if "height" in resize:
        return int(resize["height"]), int(resize["width"])
    raise ValueError("the image processor neither crops nor resizes to a fixed size: its output shape varies")


def clip_pixels(image: Any, settings: Mapping[str, Any]) -> np.ndarray:
    """A PIL image -> float32 ``[1, 3, h, w]`` pixel values as the pipeline prepares them for its CLIP image encoder
    (``settings`` from :func:`image_processor_settings` or :func:`svd_image_settings`; equality with the
    transformers PIL processor and with SVD's ``_encode_image`` asserted in the tests)."""
    if settings["convert_rgb"]:
        image = image.convert("RGB")
    if settings.get("antialias") is not None:  # SVD: [0, 1] as pil_to_numpy makes it, resized in [-1, 1]
        unit = (np.asarray(image).astype(np.float32) / 255.0).transpose(2, 0, 1)
        pixels = (antialias_resize(unit * 2.0 - 1.0, settings["antialias"]) + 1.0) / 2.0
    else:
        pixels = _processor_pixels(image, settings)
    if settings["mean"] is not None:
        mean = np.asarray(settings["mean"], dtype=np.float32)[:, None, None]
        std = np.asarray(settings["std"], dtype=np.float32)[:, None, None]
        pixels = (pixels - mean) / std
    return np.ascontiguousarray(pixels[None], dtype=np.float32)


def _processor_pixels(image: Any, settings: Mapping[str, Any]) -> np.ndarray:
    """transformers' PIL image processor before normalising: resize, centre crop, rescale -> float32 ``[3, h, w]``."""
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
        return (pixels.astype(np.float64) * settings["rescale_factor"]).astype(np.float32)
    return pixels.astype(np.float32)


def svd_image_settings(feature_extractor: Any, size: tuple[int, int] = (224, 224)) -> dict[str, Any]:
    """The CLIP input of ``StableVideoDiffusionPipeline._encode_image`` for a PIL image, as :func:`clip_pixels`
    settings: the image at its own size in [0, 1], Gaussian-blurred and bicubic-resized to ``size``
    (:func:`antialias_resize`, in [-1, 1] as the pipeline does), then normalised with the feature extractor's
    mean and std (the pipeline forces ``do_normalize`` and turns the processor's resize, crop and rescale off)."""
    return {
        "convert_rgb": True,
        "resize": None,
        "resample": None,
        "crop": None,
        "rescale_factor": None,
        "antialias": [int(size[0]), int(size[1])],
        "mean": [float(m) for m in feature_extractor.image_mean],
        "std": [float(s) for s in feature_extractor.image_std],
    }


def _gaussian_blur(pixels: np.ndarray, axis: int, sigma: float, size: int) -> np.ndarray:
    """One pass of the separable Gaussian blur SVD applies before downsizing: a normalised float32 kernel of odd
    ``size``, reflect padding (edge excluded), correlation along ``axis``."""
    taps = np.arange(size, dtype=np.float32) - size // 2
    sigma32 = np.float32(sigma)
    kernel = np.exp(-(taps**2) / (2 * sigma32**2))
    kernel = kernel / kernel.sum()
    pad = [(0, 0)] * pixels.ndim
    pad[axis] = (size // 2, size // 2)
    padded = np.pad(pixels, pad, mode="reflect")
    length = pixels.shape[axis]
    out = np.zeros_like(pixels)
    for k in range(size):
        out += kernel[k] * np.take(padded, np.arange(k, k + length), axis=axis)
    return out


def _bicubic_align_corners(pixels: np.ndarray, axis: int, size: int) -> np.ndarray:
    """``torch.nn.functional.interpolate(mode="bicubic", align_corners=True)`` along one axis: Keys' cubic with
    a = -0.75 at source ``i * (n - 1) / (size - 1)``, taps clamped to the edge."""
    axis %= pixels.ndim
    length = pixels.shape[axis]
    a = np.float32(-0.75)
    scale = np.float32((length - 1) / (size - 1)) if size > 1 else np.float32(0.0)
    source = scale * np.arange(size, dtype=np.float32)
    base = np.floor(source)
    t = source - base

    def near(x: np.ndarray) -> np.ndarray:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: np.ndarray) -> np.ndarray:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    weights = (far(t + 1), near(t), near(1 - t), far(2 - t))
    shape = [1] * pixels.ndim
    shape[axis] = size
    out = np.zeros((*pixels.shape[:axis], size, *pixels.shape[axis + 1 :]), dtype=np.float32)
    for offset, weight in zip((-1, 0, 1, 2), weights):
        index = np.clip(base.astype(np.int64) + offset, 0, length - 1)
        out += weight.reshape(shape) * np.take(pixels, index, axis=axis)
    return out


def antialias_resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``diffusers``' ``_resize_with_antialiasing`` (SVD's CLIP input) in numpy: a Gaussian blur whose sigma and
    kernel follow the downsizing factor (skimage's rule, 2 sigma each side), then bicubic with aligned corners.
    ``pixels`` is float32 ``[..., H, W]``; equal to the torch function within float rounding (tested)."""
    height, width = pixels.shape[-2:]
    sigmas = [max((n / s - 1.0) / 2.0, 0.001) for n, s in zip((height, width), size)]
    kernels = [int(max(2.0 * 2 * sigma, 3)) for sigma in sigmas]
    kernels = [k + 1 if k % 2 == 0 else k for k in kernels]
    blurred = _gaussian_blur(pixels.astype(np.float32), -1, sigmas[1], kernels[1])
    blurred = _gaussian_blur(blurred, -2, sigmas[0], kernels[0])
    resized = _bicubic_align_corners(blurred, -1, int(size[1]))
    return _bicubic_align_corners(resized, -2, int(size[0]))
