"""Captions of sprite clips (``dymos.captions``): the words say what frame 0 does not (pace and heading), headings
in screen directions, and the embedding is deterministic, one token a sprite."""

from __future__ import annotations

import numpy as np
import pytest

from dymos.captions import caption, caption_embedding, sprite_words, word_vector
from dymos.sprites import Sprite, clip_sprites, make_clip, render_clip


def _sprite(vx: float, vy: float, color: int = 0, shape: str = "square") -> Sprite:
    return Sprite(shape, color, 4.0, 16.0, 16.0, vx, vy, 0.0, 0.0)


@pytest.mark.parametrize(
    ("vx", "vy", "words"),
    [
        (0.0, 0.0, ("still",)),
        (-0.5, 0.0, ("slow", "left")),
        (0.0, -1.2, ("fast", "up")),  # image rows grow downwards: negative vy moves up on screen
        (0.4, 0.4, ("slow", "down-right")),
        (-0.9, -0.9, ("fast", "up-left")),
    ],
)
def test_words_name_pace_and_screen_heading(vx: float, vy: float, words: tuple[str, ...]) -> None:
    assert sprite_words(_sprite(vx, vy)) == ("red", "square", *words)


def test_caption_and_embedding_one_token_a_sprite() -> None:
    sprites = [_sprite(-0.5, 0.0), _sprite(0.0, 0.0, color=2, shape="disc")]
    assert caption(sprites) == "red square slow left; blue disc still"
    embedding = caption_embedding(sprites, tokens=16, width=16)
    assert embedding.shape == (16, 16) and embedding.dtype == np.float32
    assert np.array_equal(embedding, caption_embedding(sprites, tokens=16, width=16))  # deterministic
    assert not embedding[2:].any() and embedding[:2].all()
    expected = sum(word_vector(w, 16) for w in ("red", "square", "slow", "left")) / 2.0  # four words: sqrt(4)
    np.testing.assert_allclose(embedding[0], expected, rtol=1e-6)
    moved = caption_embedding([_sprite(0.5, 0.0), sprites[1]], tokens=16, width=16)
    assert not np.array_equal(moved[0], embedding[0]) and np.array_equal(moved[1], embedding[1])
    with pytest.raises(ValueError, match="do not fit"):
        caption_embedding(sprites, tokens=1, width=16)


def test_clip_sprites_are_what_make_clip_renders() -> None:
    background, sprites = clip_sprites(1, 5)
    assert np.array_equal(render_clip(sprites, background, 9), make_clip(1, 5))
