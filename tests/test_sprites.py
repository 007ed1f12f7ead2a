"""The synthetic sprite data and the motion/fidelity metrics: deterministic data, metrics that measure what they
claim on videos whose answer is known (a sprite moved by a known speed, a frozen video, a sprite that breaks
apart, noise), and the sweep's paired win rates."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest

from dymos.metrics import horn_schunck, rotation_aligned_iou, track_sprites, video_metrics
from dymos.sprites import (
    BACKGROUND_COLORS,
    SPRITE_COLORS,
    ClipPrior,
    Sprite,
    from_model_range,
    make_batch,
    make_clip,
    parse_sprite_counts,
    render_clip,
    sample_sprites,
    to_model_range,
)
from dymos.sweep import difference_table, paired_difference, shape_profile_table, summarize


def _background(size: int = 32) -> np.ndarray:
    image = np.empty((size, size, 3), np.uint8)
    image[:] = BACKGROUND_COLORS[0]
    return image


def _moving_square(speed: float, frames: int = 9, spin: float = 0.0) -> np.ndarray:
    sprite = Sprite("square", 0, 4.0, 6.0, 16.0, speed, 0.0, 0.0, spin)
    return render_clip([sprite], _background(), frames)


def test_clips_are_deterministic_and_in_palette():
    a, b = make_clip(3, 7), make_clip(3, 7)
    assert a.dtype == np.uint8 and a.shape == (9, 32, 32, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(make_clip(3, 7), make_clip(4, 7))
    palette = {tuple(c) for c in np.concatenate([SPRITE_COLORS, BACKGROUND_COLORS])}
    assert {tuple(c) for c in a.reshape(-1, 3)} <= palette
    assert np.array_equal(make_batch(3, 6, 2)[1], a)


def test_motion_prior_shares():
    prior = ClipPrior()
    clips = make_batch(0, 0, 200, prior=prior)
    static = np.mean([np.array_equal(c[0], c[-1]) for c in clips])
    assert abs(static - prior.static) < 0.08  # 200 draws at 30 %: about 2.5 standard errors (seeded: 0.32)
    still = make_batch(0, 0, 20, prior=ClipPrior(static=1.0, slow=0.0))
    assert all(np.array_equal(c[0], c[-1]) for c in still)


def test_clip_prior_sets_sprite_count_and_size():
    rng = np.random.default_rng(0)
    for prior in (ClipPrior(), ClipPrior(sprites=(2, 2), half_size=(0.2, 0.25))):
        drawn = [sample_sprites(rng, 32, prior) for _ in range(300)]
        counts = {len(sprites) for sprites in drawn}
        assert counts == set(range(prior.sprites[0], prior.sprites[1] + 1))
        sizes = np.array([sprite.size for sprites in drawn for sprite in sprites]) / 32
        assert prior.half_size[0] <= sizes.min() and sizes.max() <= prior.half_size[1]
    assert "2-2 sprites of half-extent 6.4-8.0 px" in ClipPrior(sprites=(2, 2), half_size=(0.2, 0.25)).describe()
    for bad in ({"sprites": (0, 2)}, {"sprites": (3, 2)}, {"sprites": (1, 9)}, {"half_size": (0.2, 0.1)}):
        with pytest.raises(ValueError):
            ClipPrior(**bad)


def test_sprite_counts_parse_as_the_clis_take_them():
    """``--sprites`` of train_tiny, the shipped-model measurement and ``dymos sweep``: N or LOW-HIGH, refused with
    the reason otherwise."""
    assert parse_sprite_counts("1") == (1, 1) and parse_sprite_counts("1-3") == (1, 3)
    for bad, reason in (("0", "need 1 <= low"), ("3-1", "need 1 <= low"), ("1-9", "<= 8"), ("two", "N or LOW-HIGH")):
        with pytest.raises(argparse.ArgumentTypeError, match=reason):
            parse_sprite_counts(bad)


def test_model_range_round_trip():
    clip = make_clip(0, 1)
    x = to_model_range(clip)
    assert x.shape == (3, 9, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(from_model_range(x), clip)


@pytest.mark.parametrize("speed", [0.0, 1.0, 2.0])
def test_sprite_motion_is_measured_in_pixels_per_frame(speed):
    video = _moving_square(speed)
    (track,) = track_sprites(video)
    assert abs(track["motion"] - speed) < 0.15
    assert track["shape"] > 0.9 and track["lost"] == 0.0


def test_rotation_does_not_count_as_a_shape_change():
    # Only pixelation separates a rotated 7-pixel square from its frame-0 mask (a broken one scores < 0.5).
    video = _moving_square(1.0, spin=15.0)
    (track,) = track_sprites(video)
    assert track["shape"] > 0.75


def test_broken_shapes_and_lost_sprites_score_low():
    video = _moving_square(1.0)
    smeared = video.copy()
    color = SPRITE_COLORS[0]
    for t in range(1, len(video)):
        smeared[t, 10 + t : 12 + t, :] = color  # the sprite's colour spread into a horizontal band
    assert track_sprites(smeared)[0]["shape"] < 0.5
    vanished = video.copy()
    vanished[4:] = _background()
    (track,) = track_sprites(vanished)
    assert math.isclose(track["lost"], 5 / 9)
    # frame by frame: whole in frames 1-3, gone from frame 4 on (what the per-frame table of the sweep shows)
    profile = video_metrics(vanished).shape_by_frame
    assert len(profile) == 8 and min(profile[:3]) > 0.9 and profile[3:] == (0.0,) * 5


def test_rotation_aligned_iou_bounds():
    mask = np.zeros((16, 16), bool)
    mask[4:9, 5:12] = True
    assert rotation_aligned_iou(mask, mask) == 1.0
    assert rotation_aligned_iou(mask, np.roll(mask, 3, axis=1)) == 1.0  # translation is free
    assert rotation_aligned_iou(mask, mask.T) > 0.95  # a 90-degree turn is free
    assert rotation_aligned_iou(mask, np.zeros_like(mask)) == 0.0


def test_a_sprite_the_video_drops_counts_as_lost():
    video = _moving_square(1.0)
    image = video[0]
    dropped = np.repeat(_background()[None], 9, axis=0)  # the generated video never shows the sprite
    m = video_metrics(dropped, image=image)
    assert m.sprites == 1 and m.lost == 1.0 and m.shape == 0.0 and math.isnan(m.motion)


def test_generic_metrics_on_known_videos():
    still = np.repeat(make_clip(0, 2)[:1], 9, axis=0)
    m = video_metrics(still)
    assert m.sprites > 0 and m.frame_diff == 0.0 and m.flow == 0.0 and m.motion == 0.0
    assert m.psnr0 == 100.0 and m.ssim0 == pytest.approx(1.0)
    moving = video_metrics(_moving_square(2.0))
    slower = video_metrics(_moving_square(0.5))
    assert moving.frame_diff > slower.frame_diff > 0 and moving.flow > slower.flow > 0
    noisy = _moving_square(1.0).astype(np.int16) + np.random.default_rng(0).integers(-90, 90, (9, 32, 32, 3))
    noisy = np.clip(noisy, 0, 255).astype(np.uint8)
    assert video_metrics(noisy, image=_moving_square(1.0)[0]).off_palette > 0.3
    assert video_metrics(_moving_square(1.0)).off_palette == 0.0


def test_horn_schunck_recovers_a_shift():
    rng = np.random.default_rng(0)
    base = rng.random((40, 40))
    smooth = sum(np.roll(np.roll(base, dy, 0), dx, 1) for dy in range(-2, 3) for dx in range(-2, 3)) / 25
    flow = horn_schunck(smooth, np.roll(smooth, 1, axis=1))
    u, v = flow[8:-8, 8:-8, 0].mean(), flow[8:-8, 8:-8, 1].mean()
    # one pixel to the right; Horn-Schunck linearises brightness, so the magnitude is an estimate (~1.4 here)
    assert 0.6 < u < 1.5 and abs(v) < 0.2


def test_metrics_reject_bad_videos():
    with pytest.raises(ValueError, match="uint8 video"):
        video_metrics(np.zeros((9, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="does not match"):
        video_metrics(make_clip(0, 0), image=np.zeros((16, 16, 3), np.uint8))


def test_summary_pairs_each_strength_with_strength_zero():
    rows = []
    for clip in range(4):
        base = {"kind": "generated", "clip": clip, "seed": 0, "fraction": 0.2}
        metrics = dict(shape=0.9, lost=0.0, off_palette=0.0, psnr0=30.0, ssim0=0.9, frame_diff=0.01, flow=0.1)
        rows.append({**base, "strength": 0.0, "motion": 1.0, **metrics})
        # strength 2 moves more on clips 0-2, less on clip 3
        rows.append({**base, "strength": 2.0, "motion": 2.0 if clip < 3 else 0.5, **metrics})
    for row in rows:  # per-frame shape scores: strength 2 fades in its last frame on clip 0
        fades = row["strength"] == 2.0 and row["clip"] == 0
        row["shape_by_frame"] = [0.9, 0.1] if fades else [0.9, 0.9]
    rows.append({"kind": "data", "clip": 0, "motion": 1.0, **metrics})  # written before the profile existed
    summary = {e["label"]: e for e in summarize(rows)}
    entry = summary["s=2, first 20%"]
    assert entry["win_motion"] == 0.75 and entry["win_shape"] == 0.5  # equal shapes are ties: half a win
    assert entry["motion"] == pytest.approx(1.625) and entry["videos"] == 4
    assert "win_motion" not in summary["s=0"] and "diff_motion" not in summary["s=0"]
    # motion +1, +1, +1, -0.5 over four clips: mean 0.625, standard error 0.375 (std 0.75 / 2)
    assert (entry["diff_motion"], entry["diff_motion_se"]) == pytest.approx((0.625, 0.375))
    assert (entry["diff_shape"], entry["diff_shape_se"]) == (0.0, 0.0)
    differences = difference_table(list(summary.values())).splitlines()
    assert differences[2] == "| s=2, first 20% | +0.625 ± 0.375 | +0.000 ± 0.000 | +0.000 ± 0.000 | +0.000 ± 0.000 |"
    assert len(differences) == 3  # reference rows and s=0 have no differences
    # seeds of one clip are averaged before the error: two seeds of one clip are one unit, NaN pairs skipped
    assert paired_difference([(0, 2.0, 1.0), (0, 4.0, 1.0), (1, 1.0, 1.0), (1, math.nan, 1.0)]) == (1.0, 1.0)
    assert math.isnan(paired_difference([(0, 2.0, 1.0)])[1])
    assert entry["shape_by_frame"] == pytest.approx([0.9, 0.7]) and summary["s=0"]["shape_by_frame"] == [0.9, 0.9]
    assert summary["real clips"]["shape_by_frame"] == []
    lines = shape_profile_table(list(summary.values())).splitlines()
    assert lines[0] == "| run | frame 1 | frame 2 |"
    assert "| s=2, first 20% | 0.900 | 0.700 |" in lines and "| real clips | nan | nan |" in lines


def test_video_metrics_tool_reads_gif_and_png_series(tmp_path, capsys):
    import json
    import sys
    from pathlib import Path

    from dymos.runtime.video import write_video

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import video_metrics as tool

    clip = make_clip(0, 0)
    write_video(clip, tmp_path / "clip.gif")
    write_video(clip, tmp_path / "clip.png")
    assert np.array_equal(tool.read_video(tmp_path / "clip.gif"), clip)
    assert np.array_equal(tool.read_video(tmp_path / "clip_000.png"), clip)
    assert tool.main([str(tmp_path / "clip.gif")]) == 0
    reported = json.loads(capsys.readouterr().out)[str(tmp_path / "clip.gif")]
    expected = video_metrics(clip).as_dict()
    assert reported.pop("shape_by_frame") == pytest.approx(list(expected.pop("shape_by_frame")))
    assert reported == pytest.approx(expected)
