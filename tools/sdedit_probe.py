"""At which noise level does a sprite model lose its sprites? Sample from a held-out clip's own latents noised to
``sigma0`` (SDEdit; the schedule's nearest noise level) instead of from pure noise, and measure the videos.

    python tools/sdedit_probe.py                       # the shipped model, 12 held-out clips
    python tools/sdedit_probe.py build/sprites-wan-v5 --sigmas 1,0.75,0.5

At ``sigma0 = 1`` this is plain generation; as ``sigma0`` falls, more of the real clip's layout and motion is
given, and only the later (lower-noise) steps are the model's. Where the shape score climbs to the VAE round
trip's, the steps below that noise level are not the problem: the model fails above it. The loop is the
pipeline's (its scheduler started part-way with ``set_begin_index``, the condition from ``prepare_latents``, the
empty prompt as ``dymos prepare`` makes it); only the starting latents differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dymos.metrics import video_metrics
from dymos.models import load_pipeline
from dymos.prepare import pipeline_denoiser_input
from dymos.sprites import from_model_range, make_clip, to_model_range
from dymos.sweep import vae_round_trip

SIZE, FRAMES = 32, 9
FIELDS = ("shape", "lost", "motion", "psnr0")


def start_step(scheduler, steps: int, sigma0: float) -> tuple[int, float]:
    """The step of a ``steps``-step schedule whose noise level is nearest ``sigma0``, and that level (this sets the
    scheduler's timesteps)."""
    scheduler.set_timesteps(steps)
    start = int((scheduler.sigmas[:-1] - sigma0).abs().argmin())
    return start, float(scheduler.sigmas[start])


@torch.no_grad()
def sample_from(
    pipe, clip: np.ndarray, sigma0: float, steps: int, seed: int, prompt_embeds: torch.Tensor
) -> np.ndarray:
    """The clip's video generated from its own latents noised to the schedule's noise level nearest ``sigma0``."""
    vae = pipe.vae
    shape = (1, -1, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean).view(shape)
    std = torch.tensor(vae.config.latents_std).view(shape)
    video = torch.from_numpy(to_model_range(clip[None]))
    clean = (vae.encode(video).latent_dist.mode() - mean) / std
    condition = pipe.prepare_latents(
        video[:, :, 0], 1, clean.shape[1], SIZE, SIZE, FRAMES, torch.float32, torch.device("cpu"), None, latents=clean
    )[1]  # (latents, condition) or, in TI2V form, (latents, condition, first-frame mask)
    scheduler = pipe.scheduler
    start, sigma = start_step(scheduler, steps, sigma0)
    scheduler.set_begin_index(start)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))
    latents = (1 - sigma) * clean + sigma * noise
    for t in scheduler.timesteps[start:]:
        hidden_states, timestep = pipeline_denoiser_input(pipe, latents, condition, t.expand(1))
        velocity = pipe.transformer(
            hidden_states=hidden_states,
            timestep=timestep,
            encoder_hidden_states=prompt_embeds,
            return_dict=False,
        )[0]
        latents = scheduler.step(velocity, t, latents, return_dict=False)[0]
    if pipe.config.get("expand_timesteps"):  # the pipeline puts the image's latent back before decoding
        latents = torch.cat([condition, latents[:, :, 1:]], dim=2)
    decoded = vae.decode(latents * std + mean).sample[0]
    return from_model_range(decoded.numpy())


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    from dymos.prepare import prepare_conditioning

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="sprites", help="a sprite pipeline folder or 'sprites'")
    parser.add_argument("--clips", type=int, default=12, help="held-out clips (data seed 1)")
    parser.add_argument("--sigmas", default="1,0.9,0.75,0.5,0.3", help="starting noise levels")
    parser.add_argument("--steps", type=int, default=20, help="scheduler steps of the full schedule")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.model)
    first = Image.fromarray(make_clip(1, 0)[0])
    text = prepare_conditioning(pipe, first, height=SIZE, width=SIZE, num_frames=FRAMES, text_shape=(16, 16))
    embeds = torch.from_numpy(text["prompt_embeds"])
    clips = [make_clip(1, index) for index in range(args.clips)]
    rows = {"VAE round trip": [video_metrics(vae_round_trip(pipe.vae, clip), clip[0]) for clip in clips]}
    for sigma0 in (float(s) for s in args.sigmas.split(",")):
        actual = start_step(pipe.scheduler, args.steps, sigma0)[1]
        rows[f"from sigma {actual:.3f} (step nearest {sigma0:g})"] = [
            video_metrics(sample_from(pipe, clip, sigma0, args.steps, index, embeds), clip[0])
            for index, clip in enumerate(clips)
        ]
        print(f"sigma0 {sigma0:g} done", file=sys.stderr, flush=True)
    print(f"| {args.model}, {args.clips} held-out clips | " + " | ".join(FIELDS) + " |")
    print("|---" * (len(FIELDS) + 1) + "|")
    for name, metrics in rows.items():
        values = [float(np.nanmean([getattr(m, field) for m in metrics])) for field in FIELDS]
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
