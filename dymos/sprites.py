"""Procedural sprite videos: the seeded synthetic data the embedded default model is trained and measured on.

Flat-colour sprites (squares, discs, triangles, bars) move in straight lines, bounce off the borders and
rotate, over a flat or two-tone background. Every clip is a pure function of ``(seed, index)``, so the training
set, the sweep's input images and the regression test's clips are the same anywhere. Colours come from a
fixed palette in which sprite colours and background colours never coincide, which is what lets
``dymos.metrics`` track each sprite from frame 0 by colour.

The prior is data (``ClipPrior``). By default a clip holds 1-2 sprites of half-extent 4.2-6.7 px (13-21 % of
the frame side); 30 % of clips are fully static, 50 % slow (a clip speed of 0.25-0.75 px/frame) and 20 % fast
(0.75-1.5 px/frame); each sprite moves at its clip's speed times 0.7-1.3, and non-disc sprites of moving clips
turn at up to 10°/frame. The lean to static and slow clips is a copy prior: with it the tiny model learns to keep
sprites whole within the training budget (a 500-step pilot on the previous sprites: shape score 0.20 against 0.09
with the earlier 20 % static / 30 % slow / 50 % fast prior), and it under-moves, which is what DyMoS is for.
Fewer, larger sprites than the earlier 1-3 of 2.9-5.1 px for the same reason: a 1,292-step pilot kept shapes at
0.50 against 0.37 (README).
numpy only.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np

# Sprite colours (RGB, 0-255): saturated, far apart from each other and from every background colour.
SPRITE_COLORS = np.array(
    [
        [230, 40, 40],  # red
        [40, 200, 60],  # green
        [50, 90, 235],  # blue
        [245, 210, 30],  # yellow
        [235, 70, 220],  # magenta
        [30, 220, 225],  # cyan
        [255, 140, 20],  # orange
        [245, 245, 245],  # white
    ],
    dtype=np.uint8,
)
# Backgrounds: dark or muted tones.
BACKGROUND_COLORS = np.array(
    [[20, 20, 28], [60, 60, 70], [30, 50, 90], [70, 40, 40], [35, 75, 45], [100, 95, 80]], dtype=np.uint8
)
SHAPES = ("square", "disc", "triangle", "bar")


@dataclass(frozen=True)
class ClipPrior:
    """What a clip holds: how many sprites and how large (half-extent as a share of the frame side), the share of
    static and slow clips, speed ranges (px/frame) and rotation speed (degrees/frame)."""

    sprites: tuple[int, int] = (1, 2)
    half_size: tuple[float, float] = (0.13, 0.21)
    static: float = 0.3
    slow: float = 0.5
    slow_speed: tuple[float, float] = (0.25, 0.75)
    fast_speed: tuple[float, float] = (0.75, 1.5)
    max_spin: float = 10.0

    def __post_init__(self) -> None:
        low, high = self.sprites
        if not 1 <= low <= high <= len(SPRITE_COLORS):  # each sprite of a clip has a colour of its own
            raise ValueError(f"sprites per clip {self.sprites}: need 1 <= low <= high <= {len(SPRITE_COLORS)}")
        if not 0 < self.half_size[0] <= self.half_size[1] < 0.5:
            raise ValueError(f"half_size {self.half_size}: need 0 < low <= high < 0.5 of the frame side")

    def describe(self, size: int = 32) -> str:
        fast = 1.0 - self.static - self.slow
        low, high = (share * size for share in self.half_size)
        return (
            f"{self.sprites[0]}-{self.sprites[1]} sprites of half-extent {low:.1f}-{high:.1f} px on {size}x{size}; "
            f"{self.static:.0%} static clips, {self.slow:.0%} slow "
            f"({self.slow_speed[0]}-{self.slow_speed[1]} px/frame), "
            f"{fast:.0%} fast ({self.fast_speed[0]}-{self.fast_speed[1]} px/frame); rotation up to "
            f"{self.max_spin:g} deg/frame; each sprite at its clip's speed x 0.7-1.3"
        )


DEFAULT_PRIOR = ClipPrior()


def parse_sprite_counts(text: str) -> tuple[int, int]:
    """``"N"`` or ``"LOW-HIGH"`` sprites per clip, as ``ClipPrior.sprites`` (checked against the palette); the
    ``type`` of the CLIs' ``--sprites``."""
    low, _, high = text.strip().partition("-")
    try:
        counts = (int(low), int(high or low))
        ClipPrior(sprites=counts)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"sprites per clip {text!r}: expected N or LOW-HIGH; {error}") from None
    return counts


def add_sprites_argument(parser: argparse.ArgumentParser, what: str = "clip") -> None:
    """The CLIs' ``--sprites N|LOW-HIGH`` (sprites per ``what``), defaulting to the data prior's count."""
    parser.add_argument(
        "--sprites",
        type=parse_sprite_counts,
        default=DEFAULT_PRIOR.sprites,
        metavar="N or LOW-HIGH",
        help="sprites per {} (default {}-{}, the data prior's)".format(what, *DEFAULT_PRIOR.sprites),
    )


@dataclass(frozen=True)
class Sprite:
    shape: str
    color: int  # index into SPRITE_COLORS
    size: float  # half-extent in pixels
    x: float
    y: float
    vx: float
    vy: float
    angle: float  # degrees
    spin: float  # degrees per frame


def _sprite_mask(sprite: Sprite, x: float, y: float, angle: float, size: int, supersample: int = 4) -> np.ndarray:
    """Coverage of one sprite on a ``size`` x ``size`` grid (supersampled, then thresholded at half a pixel so the
    rendered colours stay exactly the palette's)."""
    n = size * supersample
    coords = (np.arange(n) + 0.5) / supersample
    gx, gy = np.meshgrid(coords - x, coords - y)
    theta = math.radians(angle)
    u = gx * math.cos(theta) + gy * math.sin(theta)
    v = -gx * math.sin(theta) + gy * math.cos(theta)
    r = sprite.size
    if sprite.shape == "square":
        inside = (np.abs(u) <= r * 0.85) & (np.abs(v) <= r * 0.85)
    elif sprite.shape == "disc":
        inside = u**2 + v**2 <= r**2
    elif sprite.shape == "bar":
        inside = (np.abs(u) <= r) & (np.abs(v) <= r * 0.4)
    else:  # triangle pointing up in its own frame
        inside = (v <= r * 0.6) & (v >= -r + 1.6 * np.abs(u))
    coverage = inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    return coverage >= 0.5


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    first, second = rng.choice(len(BACKGROUND_COLORS), size=2, replace=False)
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = BACKGROUND_COLORS[first]
    if rng.random() < 0.5:  # two-tone: a horizontal or vertical split
        cut = int(rng.integers(size // 4, 3 * size // 4))
        if rng.random() < 0.5:
            image[cut:] = BACKGROUND_COLORS[second]
        else:
            image[:, cut:] = BACKGROUND_COLORS[second]
    return image


def _speed(rng: np.random.Generator, prior: ClipPrior) -> float:
    draw = rng.random()
    if draw < prior.static:
        return 0.0
    low, high = prior.slow_speed if draw < prior.static + prior.slow else prior.fast_speed
    return float(rng.uniform(low, high))


def sample_sprites(rng: np.random.Generator, size: int, prior: ClipPrior) -> list[Sprite]:
    """``prior.sprites`` sprites of distinct colours; one speed class for the whole clip (static clips stay static)."""
    count = int(rng.integers(prior.sprites[0], prior.sprites[1] + 1))
    colors = rng.choice(len(SPRITE_COLORS), size=count, replace=False)
    speed = _speed(rng, prior)
    sprites = []
    for color in colors:
        half = float(rng.uniform(size * prior.half_size[0], size * prior.half_size[1]))
        heading = float(rng.uniform(0, 2 * math.pi))
        item_speed = speed * float(rng.uniform(0.7, 1.3))
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        spin = 0.0 if speed == 0.0 or shape == "disc" else float(rng.uniform(-prior.max_spin, prior.max_spin))
        sprites.append(
            Sprite(
                shape=shape,
                color=int(color),
                size=half,
                x=float(rng.uniform(half, size - half)),
                y=float(rng.uniform(half, size - half)),
                vx=item_speed * math.cos(heading),
                vy=item_speed * math.sin(heading),
                angle=float(rng.uniform(0, 90)),
                spin=spin,
            )
        )
    return sprites


def _bounce(position: float, low: float, high: float) -> float:
    """Reflect a straight-line position into [low, high] (elastic bounces off both walls)."""
    span = high - low
    if span <= 0:
        return low
    phase = (position - low) % (2 * span)
    return low + (phase if phase <= span else 2 * span - phase)


def render_clip(sprites: list[Sprite], background: np.ndarray, frames: int) -> np.ndarray:
    """``[frames, H, W, 3]`` uint8: sprites drawn in order over the background."""
    size = background.shape[0]
    video = np.repeat(background[None], frames, axis=0)
    for t in range(frames):
        for sprite in sprites:
            x = _bounce(sprite.x + sprite.vx * t, sprite.size, size - sprite.size)
            y = _bounce(sprite.y + sprite.vy * t, sprite.size, size - sprite.size)
            mask = _sprite_mask(sprite, x, y, sprite.angle + sprite.spin * t, size)
            video[t][mask] = SPRITE_COLORS[sprite.color]
    return video


def clip_sprites(
    seed: int, index: int, *, size: int = 32, prior: ClipPrior = DEFAULT_PRIOR
) -> tuple[np.ndarray, list[Sprite]]:
    """The background and sprites of clip ``index`` of the dataset ``seed`` (what :func:`make_clip` renders)."""
    rng = np.random.default_rng([seed, index])
    background = _background(rng, size)
    return background, sample_sprites(rng, size, prior)


def make_clip(
    seed: int, index: int, *, size: int = 32, frames: int = 9, prior: ClipPrior = DEFAULT_PRIOR
) -> np.ndarray:
    """Clip ``index`` of the dataset ``seed``: ``[frames, size, size, 3]`` uint8, deterministic."""
    background, sprites = clip_sprites(seed, index, size=size, prior=prior)
    return render_clip(sprites, background, frames)


def make_batch(
    seed: int, start: int, count: int, *, size: int = 32, frames: int = 9, prior: ClipPrior = DEFAULT_PRIOR
) -> np.ndarray:
    """Clips ``start .. start+count-1`` as ``[count, frames, size, size, 3]`` uint8."""
    return np.stack([make_clip(seed, start + i, size=size, frames=frames, prior=prior) for i in range(count)])


def to_model_range(video: np.ndarray) -> np.ndarray:
    """uint8 ``[..., F, H, W, 3]`` -> float32 ``[..., 3, F, H, W]`` in [-1, 1] (the VAE's pixel range)."""
    x = video.astype(np.float32) / 127.5 - 1.0
    return np.moveaxis(x, -1, -4)


def from_model_range(video: np.ndarray) -> np.ndarray:
    """float ``[..., 3, F, H, W]`` in [-1, 1] -> uint8 ``[..., F, H, W, 3]``."""
    x = np.clip((np.moveaxis(video, -4, -1) + 1.0) * 127.5, 0, 255)
    return np.round(x).astype(np.uint8)
