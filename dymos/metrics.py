"""Motion and fidelity metrics for generated videos (numpy only).

Pixel-level motion (frame differences, optical flow) rises with artefacts as readily as with motion, so the
headline metrics are object-level: each sprite present in the input image is tracked by its colour (the palette of
``dymos.sprites`` by default, or any list of RGB colours) and reports

- ``motion``: centroid displacement per frame (pixels/frame), averaged over frames where it is found;
- ``shape``: how well its shape holds, the best IoU between its mask in the input image and in frame t (t ≥ 1) after
  aligning centroids and trying every rotation in 7.5° steps and half-pixel offsets (1 = same shape; rotation
  and translation are free, pixelation of small sprites is not: real moving clips score about 0.85-0.95);
- ``lost``: the share of frames where it is gone (under a quarter of its area in the input image); a lost
  frame also scores 0 in ``shape``;
- ``shape_by_frame``: the shape score of frames 1..F-1 one by one (mean over sprites), which shows where a model
  (or a VAE) loses its sprites: a causal video VAE's later chunks, for instance.

Sprites are the palette colours present in the input image (not in the generated video), so a sprite the model
drops counts as lost instead of leaving the average.

Generic measures for any video: ``frame_diff`` (mean absolute difference of consecutive frames, 0-1 scale),
``flow`` (mean Horn-Schunck optical-flow magnitude, px/frame), ``off_palette`` (share of pixels farther than the
tolerance from every colour of the first frame: artefacts) and frame-0 fidelity against the input image
(``psnr0`` in dB, capped at 100 for identical frames; ``ssim0``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dymos.sprites import SPRITE_COLORS

COLOR_TOLERANCE = 35.0  # RGB distance; half the closest pair of sprite colours (71)
MIN_AREA = 4  # pixels for a sprite to count as present in the input image
LOST_AREA = 0.25  # fraction of the frame-0 area below which a sprite is lost
_ANGLES = np.deg2rad(np.arange(0.0, 360.0, 7.5))
_SUBPIXEL = [(dx, dy) for dx in (-0.5, 0.0, 0.5) for dy in (-0.5, 0.0, 0.5)]
PSNR_CAP = 100.0  # dB, for identical frames (keeps tables and JSON finite)


@dataclass(frozen=True)
class VideoMetrics:
    """Per-video metrics; sprite-level fields are NaN when the input image has no sprite."""

    sprites: int
    motion: float
    shape: float
    lost: float
    frame_diff: float
    flow: float
    off_palette: float
    psnr0: float
    ssim0: float
    shape_by_frame: tuple[float, ...] = ()  # frames 1..F-1; empty when the input image has no sprite

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def color_masks(video: np.ndarray, color: np.ndarray, tolerance: float = COLOR_TOLERANCE) -> np.ndarray:
    """``[F, H, W]`` bool: pixels within ``tolerance`` (RGB distance) of ``color``."""
    diff = video.astype(np.float32) - np.asarray(color, dtype=np.float32)
    return np.sqrt((diff**2).sum(-1)) <= tolerance


def _points(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.stack([xs, ys], axis=1).astype(np.float64)


def rotation_aligned_iou(reference: np.ndarray, other: np.ndarray) -> float:
    """Best IoU between two masks after aligning centroids and rotating ``reference`` (7.5° steps)."""
    a, b = _points(reference), _points(other)
    if len(a) == 0 or len(b) == 0:
        return 0.0
    a -= a.mean(0)
    offset = b.mean(0)
    b_set = {(int(x), int(y)) for x, y in np.round(b + 1000).astype(int)}
    best = 0.0
    cos, sin = np.cos(_ANGLES), np.sin(_ANGLES)
    rotated_x = np.outer(cos, a[:, 0]) - np.outer(sin, a[:, 1]) + offset[0] + 1000
    rotated_y = np.outer(sin, a[:, 0]) + np.outer(cos, a[:, 1]) + offset[1] + 1000
    for dx, dy in _SUBPIXEL:  # pixelation at different sub-pixel positions is not a change of shape
        for rx, ry in zip(np.round(rotated_x + dx).astype(int), np.round(rotated_y + dy).astype(int), strict=True):
            a_set = set(zip(rx.tolist(), ry.tolist(), strict=True))
            inter = len(a_set & b_set)
            best = max(best, inter / (len(a_set) + len(b_set) - inter))
    return best


def track_sprites(
    video: np.ndarray,
    palette: np.ndarray = SPRITE_COLORS,
    tolerance: float = COLOR_TOLERANCE,
    image: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Per sprite colour present in ``image`` (the conditioning frame; default the video's frame 0): mean
    displacement/frame between consecutive frames where it is found, shape score against its mask in ``image``
    over frames 1.. (0 where lost; ``shapes`` frame by frame) and the share of all frames where it is lost.
    Sprites are chosen from the image, not the generated video, so a sprite the model drops counts as lost rather
    than vanishing from the average."""
    reference = video[0] if image is None else image
    tracks = []
    for color in palette:
        reference_mask = color_masks(reference[None], color, tolerance)[0]
        area = reference_mask.sum()
        if area < MIN_AREA:
            continue
        masks = color_masks(video, color, tolerance)
        found = [bool(mask.sum() >= LOST_AREA * area) for mask in masks]
        centroids = [_points(mask).mean(0) if ok else None for mask, ok in zip(masks, found, strict=True)]
        steps = [
            float(np.linalg.norm(b - a)) for a, b in itertools.pairwise(centroids) if a is not None and b is not None
        ]
        shapes = [rotation_aligned_iou(reference_mask, masks[t]) if found[t] else 0.0 for t in range(1, len(video))]
        tracks.append(
            {
                "motion": float(np.mean(steps)) if steps else math.nan,
                "shape": float(np.mean(shapes)) if shapes else 1.0,
                "lost": 1.0 - float(np.mean(found)),
                "shapes": shapes,
            }
        )
    return tracks


def frame_difference(video: np.ndarray) -> float:
    """Mean absolute difference of consecutive frames on a 0-1 scale."""
    x = video.astype(np.float32) / 255.0
    return float(np.abs(np.diff(x, axis=0)).mean()) if len(x) > 1 else 0.0


def _gray(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32) / 255.0


def _neighbour_mean(x: np.ndarray) -> np.ndarray:
    padded = np.pad(x, 1, mode="edge")
    return (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]) / 4.0


def horn_schunck(first: np.ndarray, second: np.ndarray, alpha: float = 0.1, iterations: int = 100) -> np.ndarray:
    """Dense optical flow ``[H, W, 2]`` (px/frame) between two grayscale frames in [0, 1]."""
    pad1, pad2 = np.pad(first, 1, mode="edge"), np.pad(second, 1, mode="edge")
    avg = (pad1 + pad2) / 2.0
    ix = (avg[1:-1, 2:] - avg[1:-1, :-2]) / 2.0
    iy = (avg[2:, 1:-1] - avg[:-2, 1:-1]) / 2.0
    it = second - first
    u = np.zeros_like(first)
    v = np.zeros_like(first)
    denominator = alpha**2 + ix**2 + iy**2
    for _ in range(iterations):
        u_mean, v_mean = _neighbour_mean(u), _neighbour_mean(v)
        update = (ix * u_mean + iy * v_mean + it) / denominator
        u, v = u_mean - ix * update, v_mean - iy * update
    return np.stack([u, v], axis=-1)


def flow_magnitude(video: np.ndarray) -> float:
    """Mean optical-flow magnitude over consecutive frame pairs (px/frame)."""
    if len(video) < 2:
        return 0.0
    gray = [_gray(frame) for frame in video]
    return float(np.mean([np.linalg.norm(horn_schunck(a, b), axis=-1).mean() for a, b in itertools.pairwise(gray)]))


def off_palette(video: np.ndarray, reference: np.ndarray, tolerance: float = COLOR_TOLERANCE) -> float:
    """Share of pixels (frames 1..) farther than ``tolerance`` from every colour that occurs in ``reference``."""
    colors = np.unique(reference.reshape(-1, 3), axis=0).astype(np.float32)
    pixels = video[1:].reshape(-1, 3).astype(np.float32)
    if len(pixels) == 0:
        return 0.0
    nearest = np.min(np.sqrt(((pixels[:, None, :] - colors[None, :, :]) ** 2).sum(-1)), axis=1)
    return float((nearest > tolerance).mean())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(255.0**2 / mse))


def _gaussian_blur(x: np.ndarray, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(x, ((radius, radius), (radius, radius)), mode="reflect")
    rows = np.apply_along_axis(lambda r: np.convolve(r, k, mode="valid"), 1, padded)
    return np.apply_along_axis(lambda c: np.convolve(c, k, mode="valid"), 0, rows)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over RGB channels (Gaussian window sigma 1.5, the usual constants), on 0-255 images."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    scores = []
    for channel in range(a.shape[-1]):
        x, y = a[..., channel].astype(np.float64), b[..., channel].astype(np.float64)
        mx, my = _gaussian_blur(x), _gaussian_blur(y)
        vx = _gaussian_blur(x * x) - mx**2
        vy = _gaussian_blur(y * y) - my**2
        cov = _gaussian_blur(x * y) - mx * my
        ssim_map = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        scores.append(ssim_map.mean())
    return float(np.mean(scores))


def video_metrics(
    video: np.ndarray, image: np.ndarray | None = None, palette: np.ndarray = SPRITE_COLORS
) -> VideoMetrics:
    """All metrics of one ``[F, H, W, 3]`` uint8 video; ``image`` is the conditioning frame (default: frame 0)."""
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
        raise ValueError(f"expected a uint8 video [frames, height, width, 3], got {video.dtype} {video.shape}")
    image = video[0] if image is None else np.asarray(image)
    if image.shape != video.shape[1:]:
        raise ValueError(f"image {image.shape} does not match the video's frames {video.shape[1:]}")
    tracks = track_sprites(video, palette, image=image)

    def mean(key: str) -> float:
        values = [t[key] for t in tracks if not math.isnan(t[key])]
        return float(np.mean(values)) if values else math.nan

    return VideoMetrics(
        sprites=len(tracks),
        motion=mean("motion"),
        shape=mean("shape"),
        lost=mean("lost"),
        frame_diff=frame_difference(video),
        flow=flow_magnitude(video),
        off_palette=off_palette(video, image),
        psnr0=psnr(video[0], image),
        ssim0=ssim(video[0], image),
        shape_by_frame=tuple(float(v) for v in np.mean([t["shapes"] for t in tracks], axis=0)) if tracks else (),
    )
