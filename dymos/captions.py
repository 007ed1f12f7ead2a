"""Captions of sprite clips: what each sprite of frame 0 is and how it moves, as words and as the text embedding
a tiny model without a text encoder can be trained on.

Frame 0 does not say whether or where a sprite goes, so a model conditioned on it alone has to pick a motion from
noise; Wan's own image-to-video models get it from the prompt. A caption names, for each sprite, its colour, its
shape, its pace (still, slow, fast) and its heading at frame 0 in eight directions ("red square slow left"). Its
embedding is compositional so that a small model can learn it: one token a sprite, the mean of its words' seeded
vectors scaled to unit variance, the other tokens zero. numpy only.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

from dymos.sprites import DEFAULT_PRIOR, SPRITE_COLORS, Sprite

COLOR_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "white")  # SPRITE_COLORS' order
# Headings in image coordinates (y grows downwards), counter-clockwise on screen from "right".
DIRECTIONS = ("right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right")
SLOW_BELOW = DEFAULT_PRIOR.fast_speed[0]  # px/frame: the data prior's boundary between slow and fast speeds

assert len(COLOR_NAMES) == len(SPRITE_COLORS)


def sprite_words(sprite: Sprite) -> tuple[str, ...]:
    """Colour, shape, pace and (for a moving sprite) heading at frame 0: ``("red", "square", "slow", "left")``."""
    speed = math.hypot(sprite.vx, sprite.vy)
    words = (COLOR_NAMES[sprite.color], sprite.shape)
    if speed == 0.0:
        return (*words, "still")
    heading = math.atan2(-sprite.vy, sprite.vx)  # on screen: up is -y
    direction = DIRECTIONS[round(heading / (math.pi / 4)) % len(DIRECTIONS)]
    return (*words, "slow" if speed < SLOW_BELOW else "fast", direction)


def caption(sprites: Sequence[Sprite]) -> str:
    """The clip's caption: its sprites' words, sprites separated by "; "."""
    return "; ".join(" ".join(sprite_words(sprite)) for sprite in sprites)


def word_vector(word: str, width: int) -> np.ndarray:
    """A word's fixed random vector (seeded by the word, so the same anywhere)."""
    seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(width).astype(np.float32)


def caption_embedding(sprites: Sequence[Sprite], tokens: int, width: int) -> np.ndarray:
    """``[tokens, width]`` float32: one token a sprite (the mean of its words' vectors times the square root of
    their count: unit variance), the remaining tokens zero."""
    if len(sprites) > tokens:
        raise ValueError(f"{len(sprites)} sprites do not fit {tokens} caption tokens")
    out = np.zeros((tokens, width), dtype=np.float32)
    for index, sprite in enumerate(sprites):
        words = sprite_words(sprite)
        out[index] = np.sum([word_vector(word, width) for word in words], axis=0) / math.sqrt(len(words))
    return out
