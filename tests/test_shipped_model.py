"""The shipped trained model (dymos/weights/sprites-wan): plain ``from_pretrained`` loads it, it is the default
of ``make export`` / ``dymos run``, and a regression test pins its measured behaviour.

The regression runs the diffusers pipeline with DyMoS (PyTorch) on held-out clips at a fixed seed; the pinned
numbers were measured with ``measure()`` below (``python -m tests.test_shipped_model``) and agree with the
README's sweep table, which covers 64 clips x 3 seeds through the exported runtime. Margins are stated per
assertion.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dymos
from dymos.captions import SLOW_BELOW, caption_embedding
from dymos.catalog import DEFAULT_EXPORT_MODEL
from dymos.metrics import video_metrics
from dymos.models import DEFAULTS_FILE, load_denoiser, load_pipeline, pipeline_defaults, shipped_path
from dymos.prepare import prepare_conditioning
from dymos.sprites import DEFAULT_PRIOR, ClipPrior, add_sprites_argument, clip_sprites, make_clip

CLIPS = 12  # held-out clips
HELD_OUT_SEED = 1  # the data seed of every measurement; tools/train_tiny.py trains on data seed 0
HIGH = 8.0  # the strength compared with 0
STEPS = 20
FRACTION = 0.5


def measure(
    pipe,
    clips: int = CLIPS,
    strengths: tuple[float, ...] = (0.0, HIGH),
    seed: int = 0,
    steps: int = STEPS,
    data_seed: int = HELD_OUT_SEED,
    prior: ClipPrior = DEFAULT_PRIOR,
    captions: bool = False,
) -> dict:
    """Per strength: the metrics of each clip's video, the pipeline run at the model's defaults (no CFG);
    ``captions``: each clip's caption embedding as its prompt (a model trained with ``train_tiny.py --captions``)."""
    out: dict[float, list] = {s: [] for s in strengths}
    # the empty prompt's embedding, as `dymos prepare` makes it (the model was trained to ignore text); it does
    # not depend on the image, so it is computed once
    first = Image.fromarray(make_clip(data_seed, 0, prior=prior)[0])
    text_shape = (16, 16)  # the shipped model's text tokens and width
    text = prepare_conditioning(pipe, first, height=32, width=32, num_frames=9, text_shape=text_shape)
    embeds = torch.from_numpy(text["prompt_embeds"])
    for index in range(clips):
        clip = make_clip(data_seed, index, prior=prior)
        image = Image.fromarray(clip[0])
        if captions:
            sprites = clip_sprites(data_seed, index, prior=prior)[1]
            embeds = torch.from_numpy(caption_embedding(sprites, *text_shape))[None]
        for strength in strengths:
            # a stochastic sampler (``--sampler euler-sde``) draws from torch's global generator, which the pipeline
            # does not pass its own: seeded per clip, so every strength and model sees the same noise
            torch.manual_seed(seed + index)
            with dymos.enable(pipe, strength=strength, fraction=FRACTION):
                frames = pipe(
                    image=image,
                    prompt_embeds=embeds,
                    height=32,
                    width=32,
                    num_frames=9,
                    num_inference_steps=steps,
                    guidance_scale=1.0,
                    generator=torch.Generator().manual_seed(seed + index),
                    output_type="np",
                ).frames[0]
            video = (np.asarray(frames) * 255).round().astype(np.uint8)
            out[strength].append(video_metrics(video, clip[0]))
    return out


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("sprites")


@pytest.fixture(scope="module")
def measured(pipe) -> dict:
    return measure(pipe)


def test_shipped_weights_load_with_plain_from_pretrained() -> None:
    import diffusers

    folder = shipped_path("sprites")
    pipe = diffusers.WanImageToVideoPipeline.from_pretrained(
        folder, text_encoder=None, tokenizer=None, image_encoder=None, image_processor=None
    )
    assert type(pipe.transformer).__name__ == "WanTransformer3DModel"
    assert type(pipe.vae).__name__ == "AutoencoderKLWan" and type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    weights = sum(f.stat().st_size for f in folder.rglob("*.safetensors"))
    assert weights < 10 * 2**20  # "a few MB"
    assert json.loads((folder / "train_log.json").read_text())["minutes"] <= 60


def test_loading_a_folder_warns_nothing() -> None:
    """Folders load with diffusers' current arguments (0.42 deprecates ``torch_dtype``: a FutureWarning at every
    ``dymos run`` would teach users to ignore warnings)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert load_pipeline("sprites", dtype=torch.float16).transformer.dtype == torch.float16  # dtype applied
        assert load_denoiser(str(shipped_path("sprites") / "transformer"), dtype=torch.float16).dtype == torch.float16


def test_shipped_model_is_the_default() -> None:
    from dymos.cli import build_parser
    from dymos.export.build import ExportOptions

    assert DEFAULT_EXPORT_MODEL == "sprites" and ExportOptions().model == "sprites"
    assert ExportOptions().target_dir() == Path("build/sprites")
    assert build_parser().parse_args(["run"]).export == "build/sprites"
    assert pipeline_defaults("sprites")["video"] == {"frames": 9, "height": 32, "width": 32}
    assert (shipped_path("sprites") / DEFAULTS_FILE).is_file()


def _mean(values) -> float:
    return float(np.nanmean(list(values)))


def test_strength_zero_animates_the_image_coherently(measured: dict) -> None:
    base = measured[0.0]
    assert _mean(m.psnr0 for m in base) > PINNED["psnr0_min"]  # frame 0 reproduces the input image
    assert _mean(m.shape for m in base) > PINNED["shape0_min"]  # sprites keep their shape
    assert _mean(m.lost for m in base) < PINNED["lost0_max"]
    assert PINNED["motion0_range"][0] < _mean(m.motion for m in base) < PINNED["motion0_range"][1]


def test_motion_strength_behaves_as_measured(measured: dict) -> None:
    base, high = measured[0.0], measured[HIGH]
    gain = _mean(m.motion for m in high) - _mean(m.motion for m in base)
    assert PINNED["motion_gain_range"][0] < gain < PINNED["motion_gain_range"][1]
    wins = np.mean([h.motion > b.motion for h, b in zip(high, base, strict=True)])
    assert wins >= PINNED["motion_win_min"]
    assert PINNED["shape_high_range"][0] < _mean(m.shape for m in high) < PINNED["shape_high_range"][1]
    assert _mean(m.psnr0 for m in high) > PINNED["psnr0_high_min"]


# Measured on this subsample with ``python -m tests.test_shipped_model`` (torch 2.13.0 CPU): s=0 motion 0.407 ± 0.050
# (standard error over the 12 clips), shape 0.638 ± 0.054, lost 0.102 ± 0.046, frame-0 PSNR 31.87 ± 0.72 dB; s=8 on
# the first 50 % of steps: motion gain +0.57 ± 0.07 px/frame, 12 of 12 clips move more, shape 0.469 ± 0.049 (shapes
# do not hold), PSNR 31.9 dB. The README's sweep (64 clips x 3 seeds, runtime) agrees: s=0 motion 0.42, shape 0.69,
# lost 0.06, PSNR 32.0; s=8 (first 50 %) motion 0.98, win 95 %, shape 0.48.
# Margins: about 3 standard errors; the win rate keeps the previous model's floor (9 of 12: 12 of 12 has no spread).
PINNED: dict = {
    "psnr0_min": 29.7,
    "shape0_min": 0.47,
    "lost0_max": 0.24,
    "motion0_range": (0.25, 0.56),
    "motion_gain_range": (0.35, 0.80),
    "motion_win_min": 0.75,
    "shape_high_range": (0.32, 0.62),
    "psnr0_high_min": 29.6,
}


def vae_round_trip(pipe, clips: int = CLIPS, data_seed: int = HELD_OUT_SEED, prior: ClipPrior = DEFAULT_PRIOR) -> list:
    """The metrics of the clips passed through the pipeline's VAE alone (its latent mode): the ceiling the model's
    videos can reach."""
    from dymos.sweep import vae_round_trip as round_trip

    videos = (make_clip(data_seed, i, prior=prior) for i in range(clips))
    return [video_metrics(round_trip(pipe.vae, clip), clip[0]) for clip in videos]


def _mean_and_error(values) -> str:
    """Mean ± standard error over the clips (NaN, a clip without a tracked sprite, left out)."""
    array = np.asarray([v for v in values if not np.isnan(v)], dtype=float)
    return f"{array.mean():.3f} ± {array.std(ddof=1) / np.sqrt(len(array)):.3f}"


def with_sampler(pipe, sampler: str = "unipc", flow_shift: float | None = None):
    """``pipe`` with its scheduler swapped for a sampler variant (the model's own UniPC and shift: unchanged), to tell
    the model's limits from the sampler's."""
    if sampler == "unipc" and flow_shift is None:
        return pipe
    import diffusers

    shift = flow_shift if flow_shift is not None else pipe.scheduler.config.flow_shift
    if sampler == "unipc":
        pipe.scheduler = diffusers.UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=shift)
    else:
        pipe.scheduler = diffusers.FlowMatchEulerDiscreteScheduler(
            shift=shift, stochastic_sampling=sampler == "euler-sde"
        )
    return pipe


def paired_report(metrics: list, baseline: list, key: str) -> str:
    """``key`` of each clip's video minus the same clip's in ``baseline`` (same clip, noise and sampler): mean ±
    standard error over the clips, and how many clips are higher / lower (clips without a tracked sprite skipped)."""
    from dymos.sweep import paired_difference

    pairs = [(i, getattr(m, key), getattr(b, key)) for i, (m, b) in enumerate(zip(metrics, baseline, strict=True))]
    mean, error = paired_difference(pairs)
    higher = sum(v > b for _, v, b in pairs)
    lower = sum(v < b for _, v, b in pairs)
    return f"{mean:+.3f} ± {error:.3f} ({higher} clips higher, {lower} lower)"


STATIC_MOTION = 0.05  # px/frame: a real clip whose tracked sprites move less than this is static (exactly 0 here)


def clip_groups(real: list) -> dict[str, list[int]]:
    """The clips' indices grouped by what the real clip does (its tracked motion: static, slow, fast) and by its
    sprite count: to see whether the model fails in some clips more than in others."""
    groups: dict[str, list[int]] = {"static": [], "slow": [], "fast": []}
    for index, metrics in enumerate(real):
        kind = "static" if metrics.motion < STATIC_MOTION else "slow" if metrics.motion < SLOW_BELOW else "fast"
        groups[kind].append(index)
        groups.setdefault(f"{metrics.sprites} sprite(s)", []).append(index)
    return {name: indices for name, indices in groups.items() if indices}


def group_report(real: list, generated: list, round_trip: list) -> list[str]:
    """Per group of :func:`clip_groups`: the generated videos' shape and motion against the VAE round trip's and
    the real clips' (means over the group's clips)."""

    def mean(metrics: list, key: str, indices: list[int]) -> float:
        return _mean(getattr(metrics[i], key) for i in indices)

    lines = []
    for name, indices in clip_groups(real).items():
        shape, ceiling = mean(generated, "shape", indices), mean(round_trip, "shape", indices)
        lines.append(
            f"  {name} ({len(indices)} clips): shape {shape:.3f} of the VAE's {ceiling:.3f} ({shape / ceiling:.0%}), "
            f"lost {mean(generated, 'lost', indices):.3f}; motion {mean(generated, 'motion', indices):.3f} px/frame, "
            f"real clips {mean(real, 'motion', indices):.3f}"
        )
    return lines


if __name__ == "__main__":  # print the measurement the pins come from (or a candidate's: a pipeline folder)
    import argparse
    import dataclasses

    from dymos.sweep import mean_shape_by_frame

    parser = argparse.ArgumentParser(description="the regression's measurement, on the shipped model or a candidate")
    parser.add_argument("model", nargs="?", default="sprites", help="'sprites' or a sprite pipeline folder")
    parser.add_argument("--clips", type=int, default=CLIPS, help="clips measured (the pins use the default)")
    # sampler variants, to tell the model's limits from the sampler's (the pins use the model's own scheduler)
    parser.add_argument("--steps", type=int, default=STEPS, help=f"denoising steps (default {STEPS})")
    parser.add_argument(
        "--sampler",
        choices=("unipc", "euler", "euler-sde"),
        default="unipc",
        help="the pipeline's scheduler: UniPC (the model's), flow-match Euler, or flow-match Euler with diffusers' "
        "stochastic_sampling (each step re-noises its x0 estimate; the pipeline draws that noise from torch's "
        "global generator, seeded here per clip)",
    )
    parser.add_argument("--flow-shift", type=float, default=None, help="the scheduler's flow shift (default: its own)")
    parser.add_argument(
        "--data-seed",
        type=int,
        default=HELD_OUT_SEED,
        help=f"the clips' data seed (default {HELD_OUT_SEED}, held out; 0 is the training data, clips 0-11,999 of "
        "it with train_tiny's default --clips: an over-fitting check)",
    )
    add_sprites_argument(parser)
    parser.add_argument(
        "--captions",
        action="store_true",
        help="prompt each clip with its caption's embedding (a model trained with train_tiny.py --captions; --against "
        "runs the other model the same way)",
    )
    parser.add_argument(
        "--by-class",
        action="store_true",
        help="also break s=0 down by what the real clip does (static, slow, fast) and by its sprite count",
    )
    parser.add_argument(
        "--against",
        default=None,
        help="a second model ('sprites' or a folder), run at s=0 on the same clips, noise and sampler: prints the "
        "paired differences (model - against, mean ± standard error over clips) and how many clips read higher / lower",
    )
    options = parser.parse_args()
    prior = dataclasses.replace(DEFAULT_PRIOR, sprites=options.sprites)
    candidate = with_sampler(load_pipeline(options.model), options.sampler, options.flow_shift)
    results = measure(
        candidate,
        options.clips,
        steps=options.steps,
        data_seed=options.data_seed,
        prior=prior,
        captions=options.captions,
    )
    results["VAE round trip"] = vae_round_trip(candidate, options.clips, options.data_seed, prior)
    for strength, metrics in results.items():
        means = {k: _mean_and_error(getattr(m, k) for m in metrics) for k in ("motion", "shape", "lost", "psnr0")}
        by_frame = mean_shape_by_frame([m.as_dict() for m in metrics])
        print(strength, means, "shape by frame 1..:", " ".join(f"{v:.3f}" for v in by_frame))
    gains = [h.motion - b.motion for h, b in zip(results[HIGH], results[0.0], strict=True)]
    wins = sum(h.motion > b.motion for h, b in zip(results[HIGH], results[0.0], strict=True))
    print(f"motion gain at s={HIGH:g}: {_mean_and_error(gains)}; {wins} of {len(gains)} clips move more")
    if options.by_class:
        clips = [make_clip(options.data_seed, i, prior=prior) for i in range(options.clips)]
        real = [video_metrics(clip, clip[0]) for clip in clips]
        print("s=0 by the real clip's motion and sprite count:")
        print("\n".join(group_report(real, results[0.0], results["VAE round trip"])))
    if options.against is not None:
        other = with_sampler(load_pipeline(options.against), options.sampler, options.flow_shift)
        baseline = measure(
            other,
            options.clips,
            (0.0,),
            steps=options.steps,
            data_seed=options.data_seed,
            prior=prior,
            captions=options.captions,
        )
        baseline = baseline[0.0]
        print(f"s=0, {options.model} - {options.against} on the same {options.clips} clips and noise:")
        for key in ("shape", "lost", "motion", "psnr0"):
            print(f"  {key}: {paired_report(results[0.0], baseline, key)}")


@pytest.mark.parametrize("form", ["i2v", "ti2v"])
def test_training_input_is_what_the_pipeline_builds(pipe, form: str) -> None:
    """``train_tiny.py --form FORM`` trains on the input and timesteps WanImageToVideoPipeline gives its transformer
    (the shipped VAE in a pipeline of that form, whichever form the shipped model has). I2V: the latents, then the
    condition ``prepare_latents`` makes, one timestep an item, every frame in the loss; TI2V (``expand_timesteps``):
    the image's latent as latent frame 0 at timestep 0, that frame out of the loss."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from train_tiny import encode_pool, first_frame_mask, model_inputs, normalize

    from dymos.sprites import to_model_range
    from dymos.tiny import wan_i2v_pipeline

    ti2v = form == "ti2v"
    built_by = wan_i2v_pipeline(pipe.transformer, pipe.vae, expand_timesteps=ti2v)
    clips = np.stack([make_clip(1, i) for i in range(2)])
    _, raw = encode_pool(pipe.vae, clips)
    mean, std = (torch.tensor(pipe.vae.config[k]) for k in ("latents_mean", "latents_std"))
    x_t = torch.randn(2, 16, 5, 16, 16, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.3, 0.8])
    mask = first_frame_mask(2, 5, 2, 16, 16)  # I2V's mask channels (unused in TI2V form)
    trained_on, timesteps, first_loss_frame = model_inputs(form, x_t, normalize(raw, mean, std), sigma, mask)
    assert first_loss_frame == int(ti2v)  # in TI2V form latent frame 0 is the image's, not the model's
    for i in range(2):
        image = torch.from_numpy(to_model_range(clips[i, :1]))[:, 0][None]
        with torch.no_grad():
            prepared = built_by.prepare_latents(
                image, 1, 16, 32, 32, 9, torch.float32, torch.device("cpu"), None, latents=x_t[i : i + 1]
            )
        # the denoising loop's lines for each form (pipeline_wan_i2v.py)
        if ti2v:
            latents, condition, frame_mask = prepared
            pipeline_input = (1 - frame_mask) * condition + frame_mask * latents
            pipeline_timestep = (frame_mask[0][0][:, ::2, ::2] * sigma[i] * 1000.0).flatten()
        else:
            latents, condition = prepared
            pipeline_input = torch.cat([latents, condition], dim=1)
            pipeline_timestep = sigma[i] * 1000.0
        # (x - mean) / std here, (x - mean) * (1 / std) in the pipeline: float rounding only
        torch.testing.assert_close(trained_on[i : i + 1], pipeline_input, atol=1e-5, rtol=0)
        torch.testing.assert_close(timesteps[i], pipeline_timestep, atol=0, rtol=0)


def test_paired_report_pairs_each_clip_with_its_twin() -> None:
    """The candidate-vs-model comparison of ``--against``: differences per clip, clips without a sprite skipped."""
    from types import SimpleNamespace

    model = [SimpleNamespace(shape=v) for v in (0.5, 0.7, float("nan"), 0.25)]
    against = [SimpleNamespace(shape=v) for v in (0.4, 0.7, 0.3, 0.3)]
    # differences 0.1, 0.0, -0.05 (the NaN clip skipped): mean 0.0167, standard deviation 0.0764, error 0.0764 / sqrt(3)
    assert paired_report(model, against, "shape") == "+0.017 ± 0.044 (1 clips higher, 1 lower)"


def test_group_report_splits_clips_by_what_the_real_clip_does() -> None:
    """``--by-class``: static / slow / fast by the real clip's tracked motion, and by sprite count."""
    from types import SimpleNamespace

    real = [SimpleNamespace(motion=m, sprites=n, shape=1.0, lost=0.0) for m, n in ((0.0, 1), (0.5, 2), (1.2, 1))]
    generated = [SimpleNamespace(motion=0.4, sprites=1, shape=v, lost=0.0) for v in (0.6, 0.7, 0.8)]
    round_trip = [SimpleNamespace(motion=0.0, sprites=1, shape=0.8, lost=0.0) for _ in range(3)]
    assert clip_groups(real) == {"static": [0], "slow": [1], "fast": [2], "1 sprite(s)": [0, 2], "2 sprite(s)": [1]}
    lines = group_report(real, generated, round_trip)
    assert lines[0].startswith("  static (1 clips): shape 0.600 of the VAE's 0.800 (75%)")
    assert "1 sprite(s) (2 clips): shape 0.700" in lines[3] and "real clips 0.600" in lines[3]


def test_measure_prompts_each_clip_with_its_caption(pipe, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--captions``: each clip is generated with its own caption's embedding as the prompt (a model trained with
    ``train_tiny.py --captions``); without it, with the empty prompt's."""
    import dymos.captions

    seen = []

    def spy(sprites, tokens, width):
        seen.append([s.color for s in sprites])
        return dymos.captions.caption_embedding(sprites, tokens, width)

    monkeypatch.setattr(sys.modules[__name__], "caption_embedding", spy)
    metrics = measure(pipe, clips=2, strengths=(0.0,), steps=2, captions=True)[0.0]
    assert len(metrics) == 2 and seen == [[s.color for s in clip_sprites(HELD_OUT_SEED, i)[1]] for i in range(2)]
    seen.clear()
    measure(pipe, clips=1, strengths=(0.0,), steps=2)
    assert seen == []
