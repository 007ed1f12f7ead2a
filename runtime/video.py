"""Decoded video in [-1, 1] to uint8 frames, and frames to mp4 / gif / png files (no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dymos.manifest import atomic_write

VIDEO_FORMATS = (".mp4", ".gif", ".png")


def to_frames(video: np.ndarray) -> np.ndarray:
    """``[3, F, H, W]`` in [-1, 1] (the VAE's output) -> ``[F, H, W, 3]`` uint8, as the pipelines postprocess."""
    frames = np.clip(video.transpose(1, 2, 3, 0) / 2.0 + 0.5, 0.0, 1.0)
    return (frames * 255.0).round().astype(np.uint8)


def write_video(frames: np.ndarray, path: str | Path, fps: int = 16) -> list[Path]:
    """Write ``[F, H, W, 3]`` uint8 frames: .mp4 (H.264 through imageio-ffmpeg's bundled ffmpeg), .gif, or .png
    (one file per frame, ``name_000.png``...). Files appear atomically. Returns the paths written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_FORMATS:
        raise ValueError(f"unsupported output {path.name}: use one of {', '.join(VIDEO_FORMATS)}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [F, H, W, 3], got {frames.dtype} {frames.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        from PIL import Image

        written = []
        for i, frame in enumerate(frames):
            target = path.with_name(f"{path.stem}_{i:03d}.png")
            atomic_write(target, lambda tmp, frame=frame: Image.fromarray(frame).save(tmp, format="PNG"))
            written.append(target)
        return written
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        atomic_write(
            path,
            lambda tmp: images[0].save(
                tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0
            ),
        )
        return [path]
    atomic_write(path, lambda tmp: _write_mp4(frames, tmp, fps), suffix=".mp4")
    return [path]


def _write_mp4(frames: np.ndarray, path: str, fps: int) -> None:
    import imageio_ffmpeg

    height, width = frames.shape[1:3]
    # yuv420p needs even sizes; tiny videos get padded by one pixel row/column where needed
    pad_h, pad_w = height % 2, width % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    writer = imageio_ffmpeg.write_frames(
        path,
        (frames.shape[2], frames.shape[1]),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        output_params=["-crf", "18"],
        macro_block_size=1,
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
