"""``dymos sweep``: what the motion slider does, measured on an exported sprite model.

For every held-out clip (``dymos.sprites`` with a data seed the model was not trained on) and every noise seed,
the clip's first frame is encoded once (the pipeline's own encoders, as ``dymos prepare`` does) and the runtime
generates one batch with every strength, all from the same initial noise, so each strength is paired with
strength 0 on the same clip and noise. Per strength and schedule it reports the object-level motion, shape
preservation and frame-0 fidelity of ``dymos.metrics`` (means), and paired win rates and mean differences
(± standard error over clips) against strength 0; the real clips' own metrics, and those of the real clips
passed through the VAE, are the reference rows.

Results: ``sweep.json`` (every video's metrics, the summary, and the first-step attention-mass probe on the
same inputs), ``sweep.md`` (the tables, one of them the shape score frame by frame) and ``strip.png`` (per clip:
the real clip, then the videos of two strengths side by side).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dymos.manifest import atomic_write, atomic_write_bytes
from dymos.metrics import video_metrics
from dymos.schedule import StrengthSchedule, validate_strength
from dymos.sprites import DEFAULT_PRIOR, ClipPrior, from_model_range, make_clip, to_model_range

HEADLINE = ("motion", "shape", "lost", "off_palette", "psnr0", "ssim0", "frame_diff", "flow")
# Reference rows: the real clips, and the real clips through the VAE (what the decoder alone costs).
REFERENCE_ROWS = {"data": "real clips", "vae": "real clips, VAE round trip"}
WIN_METRICS = {"motion": +1, "shape": +1, "psnr0": +1}  # +1: higher is better / more
DIFFERENCE_METRICS = ("motion", "shape", "lost", "psnr0")  # paired differences against strength 0


@dataclass
class SweepConfig:
    strengths: Sequence[float] = (0.0, 1.0, 2.0, 4.0, 8.0)
    fractions: Sequence[float] = (0.2,)
    clips: int = 64
    seeds: Sequence[int] = (0, 1, 2)
    data_seed: int = 1  # the training set is data seed 0
    sprites: tuple[int, int] = DEFAULT_PRIOR.sprites  # sprites per clip; the rest of the data prior stays
    steps: int | None = None
    guidance_scale: float | None = None
    strip_strengths: tuple[float, float] | None = None
    strip_clips: int = 6
    probe_clips: int = 16

    @property
    def prior(self) -> ClipPrior:
        """The data prior of the sweep's clips: the default one with ``sprites`` per clip."""
        return replace(DEFAULT_PRIOR, sprites=tuple(self.sprites))

    def check(self) -> None:
        validate_strength(list(self.strengths))
        if 0.0 not in self.strengths:
            raise ValueError("the sweep compares against strength 0: include 0 in the strengths")
        if self.clips < 1 or not self.seeds:
            raise ValueError("need at least one clip and one seed")
        for fraction in self.fractions:
            StrengthSchedule(fraction=fraction)
        _ = self.prior  # ClipPrior refuses a sprite count the palette cannot give
        if self.strip_strengths and not set(self.strip_strengths) <= set(self.strengths):
            raise ValueError(f"strip strengths {self.strip_strengths} must be among the strengths {self.strengths}")


def _win_rate(pairs: list[tuple[float, float]], sign: int) -> float:
    """Share of pairs where the strength's value beats strength 0's (ties count half); NaN pairs are skipped."""
    valid = [(a, b) for a, b in pairs if not (math.isnan(a) or math.isnan(b))]
    if not valid:
        return math.nan
    wins = sum(1.0 if sign * (a - b) > 1e-9 else 0.5 if abs(a - b) <= 1e-9 else 0.0 for a, b in valid)
    return wins / len(valid)


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def mean_shape_by_frame(group: list[dict[str, Any]]) -> list[float]:
    """Frame-by-frame mean of the videos' ``shape_by_frame`` (videos without sprites, or rows written before the
    field existed, are left out)."""
    profiles = [r["shape_by_frame"] for r in group if r.get("shape_by_frame")]
    return [float(v) for v in np.mean(profiles, axis=0)] if profiles else []


def paired_difference(pairs: list[tuple[int, float, float]]) -> tuple[float, float]:
    """Mean of ``value - baseline`` over ``(clip, value, baseline)`` pairs and its standard error, with the pairs of
    one clip (its noise seeds) averaged first: seeds of one clip share its image, so the clips are the independent
    units. NaN pairs are skipped; the error is NaN with fewer than two clips."""
    by_clip: dict[int, list[float]] = {}
    for clip, value, baseline in pairs:
        if not (math.isnan(value) or math.isnan(baseline)):
            by_clip.setdefault(clip, []).append(value - baseline)
    means = np.array([np.mean(d) for d in by_clip.values()])
    if len(means) == 0:
        return math.nan, math.nan
    error = float(means.std(ddof=1) / math.sqrt(len(means))) if len(means) > 1 else math.nan
    return float(means.mean()), error


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (schedule, strength): metric means, the mean shape score frame by frame, and paired win rates and mean
    differences (± standard error over clips) against strength 0 of the same clip and seed (strength 0 does not
    depend on the schedule: one row, fraction None)."""
    by_key: dict[tuple, dict] = {}
    for row in rows:
        if row["kind"] == "generated":
            by_key[(row["fraction"], row["strength"], row["clip"], row["seed"])] = row
    baseline = {(k[2], k[3]): r for k, r in by_key.items() if k[1] == 0.0}  # s=0 is the same for every schedule
    summary = []
    for kind, label in REFERENCE_ROWS.items():
        group = [r for r in rows if r["kind"] == kind]
        if group:
            means = {m: _nanmean([r[m] for r in group]) for m in HEADLINE}
            profile = mean_shape_by_frame(group)
            summary.append({"label": label, "videos": len(group), **means, "shape_by_frame": profile})
    runs = sorted({k[:2] for k in by_key}, key=lambda k: (k[1] != 0.0, k[0] or 0.0, k[1]))
    for fraction, strength in runs:
        group = [r for k, r in by_key.items() if k[:2] == (fraction, strength)]
        entry: dict[str, Any] = {
            "label": f"s={strength:g}" + ("" if strength == 0 else f", first {fraction:.0%}"),
            "strength": strength,
            "fraction": fraction,
            "videos": len(group),
            **{m: _nanmean([r[m] for r in group]) for m in HEADLINE},
            "shape_by_frame": mean_shape_by_frame(group),
        }
        if strength != 0:
            # each video with its strength-0 twin (same clip and seed), joined once for win rates and differences
            twins = [(r, baseline[(r["clip"], r["seed"])]) for r in group if (r["clip"], r["seed"]) in baseline]
            for metric, sign in WIN_METRICS.items():
                entry[f"win_{metric}"] = _win_rate([(r[metric], b[metric]) for r, b in twins], sign)
            for metric in DIFFERENCE_METRICS:
                triples = [(r["clip"], r[metric], b[metric]) for r, b in twins]
                entry[f"diff_{metric}"], entry[f"diff_{metric}_se"] = paired_difference(triples)
        summary.append(entry)
    return summary


def table(summary: list[dict[str, Any]]) -> str:
    """The summary as a Markdown table."""
    header = (
        "| run | motion px/frame | shape IoU | lost | off-palette | frame-0 PSNR dB | frame-0 SSIM | frame diff "
        "| flow | motion win vs 0 | shape win vs 0 | PSNR win vs 0 |"
    )
    lines = [header, "|" + "---|" * 12]
    for e in summary:
        wins = [e.get(f"win_{m}") for m in WIN_METRICS]
        cells = [
            e["label"],
            f"{e['motion']:.3f}",
            f"{e['shape']:.3f}",
            f"{e['lost']:.3f}",
            f"{e['off_palette']:.4f}",
            f"{e['psnr0']:.1f}",
            f"{e['ssim0']:.3f}",
            f"{e['frame_diff']:.4f}",
            f"{e['flow']:.3f}",
            *("" if w is None else f"{w:.0%}" for w in wins),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def difference_table(summary: list[dict[str, Any]]) -> str:
    """Paired differences against strength 0 (mean ± standard error over clips) as a Markdown table: whether a
    strength's change in motion, shape, lost share and frame-0 PSNR is larger than the clip-to-clip noise."""
    labels = {"motion": "motion px/frame", "shape": "shape IoU", "lost": "lost", "psnr0": "frame-0 PSNR dB"}
    lines = ["| run | " + " | ".join(f"{labels[m]} vs 0" for m in DIFFERENCE_METRICS) + " |"]
    lines.append("|---" * (len(DIFFERENCE_METRICS) + 1) + "|")
    for e in summary:
        if f"diff_{DIFFERENCE_METRICS[0]}" in e:
            cells = [f"{e[f'diff_{m}']:+.3f} ± {e[f'diff_{m}_se']:.3f}" for m in DIFFERENCE_METRICS]
            lines.append(f"| {e['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def shape_profile_table(summary: list[dict[str, Any]]) -> str:
    """The mean shape score of each frame after the first, per run, as a Markdown table: where sprites fade."""
    frames = max((len(e.get("shape_by_frame", [])) for e in summary), default=0)
    lines = ["| run | " + " | ".join(f"frame {t}" for t in range(1, frames + 1)) + " |", "|---" * (frames + 1) + "|"]
    for e in summary:
        profile = e.get("shape_by_frame") or [math.nan] * frames
        lines.append(f"| {e['label']} | " + " | ".join(f"{v:.3f}" for v in profile) + " |")
    return "\n".join(lines)


def probe_table(probe: dict[str, Any]) -> str:
    """The probe's mean reference-key mass per strength as a Markdown table."""
    rows = [f"| s={e['strength']:g} | {e['mean_mass']:.3f} |" for e in probe["strengths"]]
    uniform = f"(uniform attention over the video: {probe['uniform_mass']:.3f})"
    return "\n".join(["| strength | reference-key mass (mean over layers) |", "|---|---|", *rows, uniform])


def frame_strip(videos: list[np.ndarray], labels: list[str], scale: int = 4, gap: int = 6) -> Any:
    """A PIL image: one row per entry of ``videos`` (lists of ``[F, H, W, 3]`` placed side by side)."""
    from PIL import Image, ImageDraw

    rows = []
    for group in videos:
        pieces = []
        for video in group:
            pieces.append(np.concatenate(list(video), axis=1))
            pieces.append(np.full((video.shape[1], gap, 3), 255, np.uint8))
        rows.append(np.concatenate(pieces[:-1], axis=1))
        rows.append(np.full((gap, rows[-1].shape[1], 3), 255, np.uint8))
    image = np.concatenate(rows[:-1], axis=0)
    header = 14
    canvas = Image.new("RGB", (image.shape[1] * scale, image.shape[0] * scale + header), "white")
    resized = Image.fromarray(image).resize((image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST)
    canvas.paste(resized, (0, header))
    draw = ImageDraw.Draw(canvas)
    width = videos[0][0].shape[2] * videos[0][0].shape[0] * scale + gap * scale
    for i, label in enumerate(labels):
        draw.text((i * width + 2, 1), label, fill="black")
    return canvas


def vae_round_trip(vae: Any, clip: np.ndarray) -> np.ndarray:
    """A real clip encoded (latent mode) and decoded by the pipeline's VAE: the fidelity ceiling of any video the
    model generates, and the motion the decoder alone adds to a static clip."""
    import torch

    with torch.no_grad():
        x = torch.from_numpy(to_model_range(clip[None]))
        y = vae.decode(vae.encode(x).latent_dist.mode()).sample
    return from_model_range(y[0].numpy())


def probe_first_step(
    pipe: Any,
    conditions: list[dict[str, np.ndarray]],
    strengths: Sequence[float],
    steps: int,
    frames: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Reference-key attention mass at the first denoising step on the sweep's real conditioning (a batch of
    clips, seeded noise, videos of ``frames`` frames), per strength and layer: the mechanism DyMoS acts on,
    measured on the same inputs."""
    import torch

    from dymos.models import pipeline_compression
    from dymos.prepare import pipeline_denoiser_input
    from dymos.probe import attention_mass

    pipe.scheduler.set_timesteps(steps)
    condition = torch.from_numpy(np.concatenate([c["condition"] for c in conditions]))
    latent_frames = (frames - 1) // pipeline_compression(pipe)[0] + 1
    shape = (int(pipe.vae.config.z_dim), latent_frames, *condition.shape[3:])
    noise = torch.from_numpy(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))  # as the runtime
    latents = noise.expand(len(conditions), *shape) * pipe.scheduler.init_noise_sigma
    timestep = pipe.scheduler.timesteps[:1].repeat(len(conditions)).float()
    hidden_states, timestep = pipeline_denoiser_input(pipe, latents, condition, timestep)
    inputs = {
        "hidden_states": hidden_states,
        "timestep": timestep,
        "encoder_hidden_states": torch.from_numpy(np.concatenate([c["prompt_embeds"] for c in conditions])),
        "return_dict": False,
    }
    if "encoder_hidden_states_image" in conditions[0]:  # Wan 2.1's image context
        images = np.concatenate([c["encoder_hidden_states_image"] for c in conditions])
        inputs["encoder_hidden_states_image"] = torch.from_numpy(images)
    report = attention_mass(pipe.transformer, inputs, strengths)
    return {"clips": len(conditions), "timestep": float(pipe.scheduler.timesteps[0]), **report.as_dict()}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def run_sweep(
    export_dir: str | Path,
    out: str | Path,
    config: SweepConfig,
    log: Callable[[str], None] = print,
    model: str | None = None,
) -> dict[str, Any]:
    """Generate, measure and write the sweep; returns the JSON document. ``model``: the exported checkpoint's folder
    where it moved (default: the folder the export recorded)."""
    from PIL import Image

    from dymos.models import exported_source, load_pipeline
    from dymos.prepare import prepare_conditioning, text_shape
    from dymos.runtime.artifacts import ExportDir
    from dymos.runtime.backends import open_backend, open_low_noise, open_stock_backend
    from dymos.runtime.loop import RunRequest, sample

    config.check()
    export = ExportDir.open(export_dir)
    pipeline = export.manifest.get("pipeline") or {}
    if not pipeline.get("runtime_supported"):
        raise ValueError(f"{export_dir} was not exported from a pipeline the runtime drives")
    video = pipeline["video"]
    if video["height"] != video["width"]:
        raise ValueError(f"sprite clips are square; this export makes {video['height']}x{video['width']} videos")
    defaults = pipeline.get("defaults", {})
    steps = config.steps or int(defaults.get("steps", 20))
    guidance = config.guidance_scale if config.guidance_scale is not None else float(defaults.get("guidance_scale", 1))
    denoiser, decoder = open_backend(export, "denoiser"), open_backend(export, "vae_decoder")
    stock, low_noise = open_stock_backend(export, beside=denoiser), open_low_noise(export)
    # The loop batches CFG's two halves into one call when they fit, else runs them one after the other.
    max_batch = max(1, export.submodel("denoiser").dims.get("batch", {}).get("max", 1) // (2 if guidance > 1 else 1))
    pipe = load_pipeline(exported_source(export.manifest["model"], model), seed=export.manifest["export"]["seed"])
    prior = config.prior
    strengths = [float(s) for s in config.strengths]
    strip_pair = config.strip_strengths or (0.0, max(strengths))
    rows: list[dict[str, Any]] = []
    strip: list[list[np.ndarray]] = []
    probe_conditions: list[dict[str, np.ndarray]] = []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for clip_index in range(config.clips):
        clip = make_clip(config.data_seed, clip_index, size=video["height"], frames=video["frames"], prior=prior)
        image = clip[0]
        rows.append({"kind": "data", "clip": clip_index, **video_metrics(clip, image).as_dict()})
        rows.append(
            {"kind": "vae", "clip": clip_index, **video_metrics(vae_round_trip(pipe.vae, clip), image).as_dict()}
        )
        cond = prepare_conditioning(
            pipe,
            Image.fromarray(image),
            height=video["height"],
            width=video["width"],
            num_frames=video["frames"],
            text_shape=text_shape(export.manifest),
        )
        if len(probe_conditions) < config.probe_clips:
            probe_conditions.append(cond)
        for seed in config.seeds:
            frames: dict[tuple[float | None, float], np.ndarray] = {}
            for index, fraction in enumerate(config.fractions):
                schedule = StrengthSchedule(fraction=fraction)
                todo = [s for s in strengths if s != 0.0 or index == 0]  # s=0 once: it ignores the schedule
                for chunk in range(0, len(todo), max_batch):
                    batch = todo[chunk : chunk + max_batch]
                    request = RunRequest(
                        strength=batch, steps=steps, guidance_scale=guidance, seed=seed, schedule=schedule
                    )
                    result = sample(
                        export, cond, request, denoiser=denoiser, decoder=decoder, stock=stock, low_noise=low_noise
                    )
                    for strength, generated in zip(batch, result.frames, strict=True):
                        frames[(None if strength == 0.0 else fraction, strength)] = generated
            for (fraction, strength), generated in frames.items():
                metrics = video_metrics(generated, image).as_dict()
                rows.append(
                    {
                        "kind": "generated",
                        "clip": clip_index,
                        "seed": seed,
                        "fraction": fraction,
                        "strength": strength,
                        **metrics,
                    }
                )
            if len(strip) < config.strip_clips and seed == config.seeds[0]:
                first = config.fractions[0]
                pick = [frames[(None if s == 0.0 else first, s)] for s in strip_pair]
                strip.append([clip, *pick])
        elapsed = time.perf_counter() - start
        eta = elapsed / (clip_index + 1) * (config.clips - clip_index - 1)
        log(f"clip {clip_index + 1}/{config.clips} ({elapsed:.0f}s, eta {eta:.0f}s)")
    summary = summarize(rows)
    probe = probe_first_step(pipe, probe_conditions, strengths, steps, video["frames"], seed=config.seeds[0])
    document = {
        "export": str(export_dir),
        "model": export.manifest["model"]["source"],
        "config": {
            "strengths": strengths,
            "fractions": list(config.fractions),
            "clips": config.clips,
            "seeds": list(config.seeds),
            "data_seed": config.data_seed,
            "prior": prior.describe(video["height"]),
            "steps": steps,
            "guidance_scale": guidance,
        },
        "summary": summary,
        "probe": probe,
        "videos": rows,
    }
    text = json.dumps(_json_safe(document), indent=1, allow_nan=False)  # NaN (no sprite found) -> null
    atomic_write_bytes(out / "sweep.json", (text + "\n").encode())
    tables = [
        table(summary),
        "Paired differences against s=0 (mean ± standard error over clips):",
        difference_table(summary),
        "Shape score by frame:",
        shape_profile_table(summary),
        probe_table(probe),
    ]
    atomic_write_bytes(out / "sweep.md", ("\n\n".join(tables) + "\n").encode())
    labels = ["real clip", f"s={strip_pair[0]:g}", f"s={strip_pair[1]:g}"]
    image = frame_strip(strip, labels)
    atomic_write(out / "strip.png", lambda tmp: image.save(tmp, format="PNG"))
    return document
