"""Motion, shape and fidelity metrics of any video file (``dymos.metrics``), as JSON.

    python tools/video_metrics.py video_s0.gif video_s4.gif --image first_frame.png

Reads .gif, .mp4 (H.264's 4:2:0 chroma subsampling blurs colours, so colour tracking on tiny mp4s is rough;
prefer gif or png) and png frame series (``name_000.png`` ...: pass the first one). ``--image`` is the
conditioning frame (default: the video's frame 0); ``--palette`` lists the object colours to track as
``R,G,B;R,G,B`` (default: the sprite palette of ``dymos.sprites``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dymos.metrics import video_metrics
from dymos.sprites import SPRITE_COLORS


def read_video(path: Path) -> np.ndarray:
    """``[F, H, W, 3]`` uint8 frames of a .gif, .mp4 or png frame series."""
    from PIL import Image, ImageSequence

    suffix = path.suffix.lower()
    if suffix == ".gif":
        with Image.open(path) as image:
            return np.stack([np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)])
    if suffix == ".png":
        match = re.fullmatch(r"(.*)_(\d+)", path.stem)
        if not match:
            raise ValueError(f"{path}: expected a frame series name_000.png, name_001.png, ...")
        frames = sorted(path.parent.glob(f"{match.group(1)}_*.png"))
        return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in frames])
    if suffix == ".mp4":
        import imageio_ffmpeg

        reader = imageio_ffmpeg.read_frames(str(path))
        meta = reader.__next__()
        width, height = meta["size"]
        return np.stack([np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader])
    raise ValueError(f"unsupported video {path.name}: .gif, .mp4 or a png frame series")


def _palette(text: str) -> np.ndarray:
    return np.array([[int(v) for v in color.split(",")] for color in text.split(";") if color.strip()], np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", nargs="+", type=Path)
    parser.add_argument("--image", type=Path, default=None, help="the conditioning frame (default: frame 0)")
    parser.add_argument("--palette", type=_palette, default=SPRITE_COLORS, help="object colours R,G,B;R,G,B")
    args = parser.parse_args(argv)
    from PIL import Image

    results = {}
    for path in args.videos:
        video = read_video(path)
        image = None
        if args.image is not None:
            image = np.asarray(Image.open(args.image).convert("RGB").resize(video.shape[2:0:-1]))
        results[str(path)] = video_metrics(video, image, palette=args.palette).as_dict()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
