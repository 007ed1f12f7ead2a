"""The torch-free sampling loop: seeded latents, conditioning, guidance, the DyMoS strength schedule fed every
step as the runtime tensor (per item, so one batch can mix strengths), scheduler steps, VAE decode.

One loop for the ``__call__`` of every pipeline the export records as runtime-driven (Wan 2.1/2.2 I2V and TI2V,
CogVideoX 1.0/1.5, LTX-Video, HunyuanVideo-I2V, SVD): classifier-free guidance is ``uncond + g * (cond - uncond)``
(SVD: a per-frame ramp), and latents are un-normalised (``latents * std / scaling_factor + mean``, or
``1 / scaling_factor``) before decoding. What differs is data from the manifest's ``pipeline.recipe`` and
``pipeline.video``, not a code path per model:

- how the condition enters (``condition``): concatenated on the channel axis (Wan I2V's mask + image latents,
  CogVideoX's padded image latents, SVD's), or in place of the first latent frame by the pipeline's mask blend
  (``first_frame``: Wan 2.2 TI2V, LTX, HunyuanVideo), and a trace of it in the initial noise (``initial_latents``:
  HunyuanVideo);
- how ``set_timesteps`` is called (``sigmas``, ``mu``: LTX's and HunyuanVideo's own sigmas, LTX's token-count shift);
- which denoiser inputs differ per guidance half (:data:`dymos.manifest.GUIDED_INPUTS`: text, its mask, pooled text),
  which are constants (CogVideoX 1.5's ``ofs``) and which carry a guidance embedding (HunyuanVideo's ``guidance``);
- the latent axis order, the normalisation and the decoded latent frames (CogVideoX 1.5 drops its padding).

Cond and uncond passes are batched into one engine call when the export's batch range allows and their inputs have
one shape. Two-expert exports (Wan 2.2 A14B) switch to the low-noise expert's graph below the manifest's
``pipeline.experts.boundary_timestep``, with ``guidance_scale_2`` there, as the pipeline does.
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dymos.manifest import GUIDED_INPUTS
from dymos.schedule import StrengthSchedule, validate_strength

from .artifacts import ExportDir, FeedError
from .backends import Backend, open_backend, open_low_noise, open_stock_backend
from .schedulers import calculate_shift, scheduler_from_config
from .video import to_frames


class RunError(ValueError):
    """A run request that cannot be served; raised before any engine work."""


@dataclass
class RunRequest:
    """One generation: ``strength`` is a scalar or one value per video (the batch).

    Videos of different strengths start from the same noise, drawn from ``seed``, so they differ only by the
    strength; a batch of one strength (``batch=N``) draws from ``seed, seed+1, ...``; ``seeds`` gives one seed per
    video explicitly. ``latents`` overrides the seeded initial noise
    (``[B, z, F, H, W]``), e.g. to reproduce a diffusers run exactly. ``guidance_scale_2``: the low-noise expert's
    guidance of a two-expert export (Wan 2.2 A14B); None means ``guidance_scale``. ``embedded_guidance``: the value of a
    guidance-embedding input (HunyuanVideo's ``guidance_scale``; ``guidance_scale`` here is always the CFG scale,
    HunyuanVideo's ``true_cfg_scale``); None means the recipe's default."""

    strength: float | Sequence[float] = 0.0
    steps: int = 20
    guidance_scale: float = 5.0
    guidance_scale_2: float | None = None
    embedded_guidance: float | None = None
    seed: int = 0
    schedule: StrengthSchedule = field(default_factory=StrengthSchedule)
    batch: int | None = None
    seeds: Sequence[int] | None = None
    latents: np.ndarray | None = None


@dataclass
class RunResult:
    latents: np.ndarray  # final latents, before VAE decode
    frames: np.ndarray  # [B, F, H, W, 3] uint8
    step_seconds: list[float]  # wall time per step
    engine_seconds: list[float]  # time inside engine calls per step
    strengths: list[list[float]]  # the strength vector fed at each step


def check_request(export: ExportDir, request: RunRequest) -> tuple[list[float], int]:
    """Everything about ``request`` that does not need its conditioning (export kind, steps, guidance, strengths,
    batch), so a caller can refuse bad settings before spending time on conditioning. Returns the per-item
    strengths and the batch size. :func:`sample` checks again, with the conditioning."""
    pipeline = export.manifest.get("pipeline") or {}
    if not pipeline.get("runtime_supported"):
        raise RunError(f"{export.root} was not exported from a pipeline the runtime drives")
    if export.manifest.get("export", {}).get("precision") == "bf16":
        raise RunError("bf16 exports take bf16 inputs, which numpy cannot make: export fp32 or fp16 for the runtime")
    if not isinstance(request.steps, int) or request.steps <= 0:
        raise RunError(f"steps must be a positive integer, got {request.steps!r}")
    for seed in [request.seed, *(request.seeds or [])]:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise RunError(f"seeds must be non-negative integers, got {seed!r}")
    _scheduler(pipeline, request.steps)  # an unsupported scheduler or step count fails here, not after conditioning
    if not np.isfinite(request.guidance_scale):
        raise RunError("guidance_scale must be finite")
    if request.guidance_scale_2 is not None:
        if not pipeline.get("experts"):
            raise RunError("guidance_scale_2 is the low-noise expert's guidance; this export has one denoiser")
        if not np.isfinite(request.guidance_scale_2):
            raise RunError("guidance_scale_2 must be finite")
    if request.embedded_guidance is not None:
        if "embedded_guidance" not in pipeline.get("recipe", {}):
            raise RunError(
                "embedded_guidance is for models with a guidance embedding (HunyuanVideo); this one has none"
            )
        if not np.isfinite(request.embedded_guidance):
            raise RunError("embedded_guidance must be finite")
    try:
        strengths = list(validate_strength(request.strength))
    except (TypeError, ValueError) as err:
        raise RunError(str(err)) from err
    batch = request.batch or len(strengths)
    if len(strengths) == 1:
        strengths = strengths * batch
    if len(strengths) != batch:
        raise RunError(f"{len(strengths)} strengths for a batch of {batch}")
    bounds = export.submodel("denoiser").dims.get("batch")
    if bounds and not bounds["min"] <= batch <= bounds["max"]:
        raise RunError(
            f"a batch of {batch} is outside the exported range [{bounds['min']}, {bounds['max']}]; re-export with "
            "a larger --max-batch"
        )
    return strengths, batch


def check_conditioning(export: ExportDir, cond: dict[str, np.ndarray], request: RunRequest) -> tuple[list[float], int]:
    """:func:`check_request` plus the conditioning's entries and shapes (one item each), so a caller can refuse a
    mismatched conditioning before loading any engine; :func:`sample` runs it first."""
    strengths, batch = check_request(export, request)
    graph_inputs = {t["name"] for t in export.submodel("denoiser").inputs}
    needed = [
        "condition",
        *(entry for name, entries in GUIDED_INPUTS.items() if name in graph_inputs for entry in entries),
    ]
    missing = [k for k in needed if k not in cond]
    if missing:
        raise RunError(f"conditioning lacks {missing}; create it with `dymos prepare`")
    want = (1, *_condition_shape(export))
    for name in ("condition", "negative_condition"):  # SVD's unconditional pass has a condition of its own
        if name in cond and tuple(cond[name].shape) != want:
            raise RunError(f"{name} has shape {list(cond[name].shape)}, this export needs {list(want)}")
    inputs = {t["name"]: t for t in export.submodel("denoiser").inputs}
    for graph_input, entries in GUIDED_INPUTS.items():
        if graph_input not in inputs:
            continue
        taken = inputs[graph_input]["shape"]
        for entry in entries:
            if entry not in cond:
                continue
            shape = cond[entry].shape
            fixed = all(want_dim == got for want_dim, got in zip(taken[1:], shape[1:]) if isinstance(want_dim, int))
            if len(shape) != len(taken) or shape[0] != 1 or not fixed:
                raise RunError(f"{entry} has shape {list(shape)}, this export's {graph_input} takes {taken} (one item)")
    return strengths, batch


def _latent_sizes(pipeline: dict, channels: int, frames: int | None = None) -> tuple[int, ...]:
    """One item's latent shape in the recipe's axis order, for ``channels`` channels (and ``frames`` latent frames;
    default: the video's)."""
    video = pipeline["video"]
    frames = video["latent_frames"] if frames is None else frames
    sizes = {"C": channels, "F": frames, "H": video["latent_height"], "W": video["latent_width"]}
    return tuple(sizes[axis] for axis in pipeline["recipe"]["latent_layout"][1:])


def _condition_shape(export: ExportDir) -> tuple[int, ...]:
    """The condition's per-item shape: the denoiser's latent input minus the VAE latent channels; for a first-frame
    condition (Wan 2.2 TI2V) one latent frame."""
    pipeline = export.manifest["pipeline"]
    if pipeline["recipe"].get("condition") == "first_frame":
        return _latent_sizes(pipeline, _latent_channels(pipeline), frames=1)
    layout = pipeline["recipe"]["latent_layout"]
    spec = export.submodel("denoiser")
    latent_input = next(t for t in spec.inputs if t["name"] == pipeline["recipe"]["latent_input"])
    in_channels = latent_input["shape"][layout.index("C")]
    return _latent_sizes(pipeline, in_channels - _latent_channels(pipeline))


def _latent_channels(pipeline: dict) -> int:
    return pipeline["vae"]["latent_channels"]


class _LatentCondition:
    """How the condition enters the denoiser input: concatenated on the channel axis (Wan I2V's mask + image
    latents, CogVideoX's and SVD's image latents), or, for a ``first_frame`` recipe (Wan 2.2 TI2V, LTX, HunyuanVideo),
    in place of the
    first latent frame by the pipeline's own blend ``(1 - mask) * condition + mask * latents`` (mask 0 on the first
    frame), which it also applies to the final latents."""

    def __init__(self, recipe: dict, latent_shape: tuple[int, ...]) -> None:
        layout = recipe["latent_layout"]
        self.channel_axis = layout.index("C")
        self.blend = recipe.get("condition") == "first_frame"
        frame_axis = layout.index("F")
        mask = np.ones([latent_shape[frame_axis] if axis == "F" else 1 for axis in layout], dtype=np.float32)
        mask[(slice(None),) * frame_axis + (0,)] = 0.0
        self.mask = mask
        self.latent_shape = latent_shape
        self.latent_channels = (slice(None),) * self.channel_axis + (slice(0, latent_shape[self.channel_axis]),)

    def input_buffer(self, conditions: Sequence[np.ndarray], dtype: np.dtype) -> np.ndarray:
        """The denoiser's latent input for one engine call (the given condition halves batched in order), allocated
        once per run: the condition part is written here once, and :meth:`write` puts each step's latents in."""
        parts = [self.model_input(np.zeros(self.latent_shape, np.float32), condition) for condition in conditions]
        return np.ascontiguousarray(np.concatenate(parts), dtype=dtype)

    def write(self, buffer: np.ndarray, latents: np.ndarray, conditions: Sequence[np.ndarray]) -> np.ndarray:
        """``buffer`` holding :meth:`model_input` of ``latents`` with each condition, as one batch; only the latent
        channels change (concat), or the blend ``mask * latents + (1 - mask) * condition`` (first_frame)."""
        batch = self.latent_shape[0]
        for i, condition in enumerate(conditions):
            part = buffer[i * batch : (i + 1) * batch]
            if self.blend:
                part[...] = self.model_input(latents, condition)
            else:
                part[self.latent_channels] = latents
        return buffer

    def model_input(self, latents: np.ndarray, condition: np.ndarray) -> np.ndarray:
        if self.blend:
            return (1 - self.mask) * condition + self.mask * latents
        return np.concatenate([latents, condition], axis=self.channel_axis)

    def final(self, latents: np.ndarray, condition: np.ndarray) -> np.ndarray:
        return (1 - self.mask) * condition + self.mask * latents if self.blend else latents


def sample(
    export: ExportDir,
    cond: dict[str, np.ndarray],
    request: RunRequest,
    *,
    denoiser: Backend | None = None,
    decoder: Backend | None = None,
    stock: Backend | bool | None = True,
    low_noise: tuple[Backend, Backend | None] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> RunResult:
    """Run the sampling loop and decode; every check happens before the first engine call.

    ``stock``: the backend for steps where every strength is 0 (True: the export's stock graph when it has one;
    None/False: always the DyMoS graph). ``low_noise``: a two-expert export's (DyMoS, stock) engines of the
    low-noise expert (:func:`~dymos.runtime.backends.open_low_noise`; opened here with defaults when None).
    """
    strengths, batch = check_conditioning(export, cond, request)
    pipeline = export.manifest["pipeline"]
    recipe = pipeline["recipe"]
    spec = export.submodel("denoiser")
    dtypes = {t["name"]: np.dtype(t["dtype"]) for t in spec.inputs}
    layout = recipe["latent_layout"]
    latent_shape = (batch, *_latent_sizes(pipeline, _latent_channels(pipeline)))
    conditioned = _LatentCondition(recipe, latent_shape)
    if request.latents is not None:
        if request.latents.shape != latent_shape:
            raise RunError(f"latents have shape {request.latents.shape}, expected {latent_shape}")
        latents = request.latents.astype(np.float32)
    else:
        if request.seeds is not None:
            seeds = list(request.seeds)
        elif len(set(strengths)) == 1:  # replicas of one request: distinct videos
            seeds = [request.seed + i for i in range(batch)]
        else:  # a comparison of strengths: like for like
            seeds = [request.seed] * batch
        if len(seeds) != batch:
            raise RunError(f"{len(seeds)} seeds for a batch of {batch}")
        latents = np.stack(
            [np.random.default_rng(seed).standard_normal(latent_shape[1:], dtype=np.float32) for seed in seeds]
        )
    scheduler = _scheduler(pipeline, request.steps)
    timesteps = scheduler.timesteps
    latents = latents * np.float32(scheduler.init_noise_sigma)  # as the pipelines scale their initial noise

    def per_item(array: np.ndarray) -> np.ndarray:
        return np.repeat(array.astype(np.float32), batch, axis=0)

    # Per half of the CFG batch: what is concatenated to the latents and what the text/image input sees.
    condition = {
        "cond": per_item(cond["condition"]),
        "uncond": per_item(cond.get("negative_condition", cond["condition"])),
    }
    initial = recipe.get("initial_latents")
    if initial is not None:  # HunyuanVideo-I2V: a trace of the image latent in every frame of the noise
        weight = np.float32(initial["noise_weight"])
        latents = latents * weight + _image_latent(condition["cond"], layout, latent_shape) * (np.float32(1) - weight)
    # Per half: the text (and, for LTX, its attention mask).
    guided = {name: entries for name, entries in GUIDED_INPUTS.items() if name in dtypes}
    context = {
        half: {name: per_item(cond[entries[i]]) for name, entries in guided.items()}
        for i, half in enumerate(("cond", "uncond"))
    }
    standard = {recipe["latent_input"], "timestep", "motion_strength", *GUIDED_INPUTS}
    extras = {k: per_item(v) for k, v in cond.items() if k in dtypes and k not in standard}  # e.g. added_time_ids
    for name, value in recipe.get("constant_inputs", {}).items():  # e.g. CogVideoX 1.5's ofs
        extras[name] = np.full((batch,), value, dtype=np.float32)
    embedded = recipe.get("embedded_guidance")
    if embedded is not None:  # HunyuanVideo: guidance * 1000 in float32, as the pipeline forms it
        value = embedded["default"] if request.embedded_guidance is None else request.embedded_guidance
        extras[embedded["input"]] = np.full((batch,), np.float32(value) * np.float32(embedded["scale"]), np.float32)
    timestep_rank = len(next(t for t in spec.inputs if t["name"] == "timestep")["shape"])

    def guidance_array(scale: float) -> np.ndarray | np.float32:
        if recipe.get("guidance") != "frame_ramp":
            return np.float32(scale)
        frames = latent_shape[layout.index("F")]  # SVD: linear from 1 at the first frame to the scale at the last
        ramp = np.linspace(1.0, scale, frames, dtype=np.float32)
        return ramp.reshape([frames if axis == "F" else 1 for axis in layout])

    guidance = request.guidance_scale > 1.0  # as the pipelines decide CFG: on the first scale only
    max_batch = spec.dims.get("batch", {}).get("max", batch)
    # one engine call for both halves where the batch range allows and their inputs have one shape (HunyuanVideo's
    # negative prompt may have another length than its prompt)
    same_shapes = all(context["cond"][name].shape == context["uncond"][name].shape for name in guided)
    batched_cfg = guidance and 2 * batch <= max_batch and same_shapes
    denoiser = denoiser or open_backend(export, "denoiser")
    decoder = decoder or open_backend(export, "vae_decoder")
    if stock is True:
        stock = open_stock_backend(export, beside=denoiser)
    # (threshold, DyMoS engine, stock engine or None, guidance) per expert, high-noise first.
    experts = [(-np.inf, denoiser, stock or None, guidance_array(request.guidance_scale))]
    if pipeline.get("experts"):
        scale_2 = request.guidance_scale if request.guidance_scale_2 is None else request.guidance_scale_2
        low_engine, low_stock = low_noise or open_low_noise(export, stock=bool(stock))
        experts[0] = (pipeline["experts"]["boundary_timestep"], *experts[0][1:])
        experts.append((-np.inf, low_engine, low_stock, guidance_array(scale_2)))

    def expert_for(t: float) -> tuple:
        """The pipelines' rule: the high-noise expert while ``t >= boundary``, the low-noise one below."""
        return next(e for e in experts if t >= e[0])

    # Engine calls per step: both CFG halves in one batch, or one call per half, or the conditional one alone.
    calls = [("cond", "uncond")] if batched_cfg else [("cond",), ("uncond",)] if guidance else [("cond",)]
    # What every step feeds the same (text, extras such as SVD's added_time_ids), concatenated once per call kind.
    static_feeds = {
        halves: {
            name: np.ascontiguousarray(np.concatenate([v] * len(halves) if half_free else v), dtype=dtypes[name])
            for name, v, half_free in (
                *((name, [context[h][name] for h in halves], False) for name in guided),
                *((name, v, True) for name, v in extras.items()),
            )
            if name in dtypes
        }
        for halves in calls
    }

    latent_input = recipe["latent_input"]
    halves_conditions = {halves: [condition[h] for h in halves] for halves in calls}
    latent_buffers = {
        halves: conditioned.input_buffer(halves_conditions[halves], dtypes[latent_input]) for halves in calls
    }

    def step_inputs(t: float, s: np.ndarray, halves: tuple[str, ...]) -> dict[str, np.ndarray]:
        """One engine call's inputs besides the latents (timestep, strengths, static inputs), for the conditional
        and/or unconditional halves batched in that order."""
        n = batch * len(halves)
        values = {
            "timestep": np.full((n,), t) if timestep_rank else np.asarray(t),
            "motion_strength": np.concatenate([s] * len(halves)),
        }
        arrays = {k: np.asarray(v, dtype=dtypes[k], order="C") for k, v in values.items() if k in dtypes}
        return {**arrays, **static_feeds[halves]}

    # Every step is worked out before the first engine call (its strengths, engine, guidance scale and inputs), so
    # a feed an engine cannot take fails before any heavy work and a step does only its array work.
    plan = []
    for i, t in enumerate(timesteps):
        multiplier = request.schedule.multiplier(i, len(timesteps))
        s = np.asarray([v * multiplier for v in strengths], dtype=np.float32)
        _, dymos_engine, stock_engine, scale = expert_for(float(t))
        engine = stock_engine if stock_engine and not s.any() else dymos_engine
        inputs = {halves: step_inputs(float(t), s, halves) for halves in calls}
        for halves in calls:
            engine.spec.check_feed({latent_input: latent_buffers[halves], **inputs[halves]})
        plan.append((t, s, engine, scale, inputs))

    step_seconds, engine_seconds = [], []
    for i, (t, _, engine, scale, inputs) in enumerate(plan):
        start = time.perf_counter()
        scaled = scheduler.scale_model_input(latents, t)  # identity except for EDM Euler (SVD)
        outputs, in_engine = [], 0.0
        for halves in calls:  # the latents are written outside the timed engine call: that is the runtime's overhead
            feed = {latent_input: conditioned.write(latent_buffers[halves], scaled, halves_conditions[halves])}
            feed.update(inputs[halves])
            t0 = time.perf_counter()
            outputs.append(engine.run(feed)["noise_pred"])
            in_engine += time.perf_counter() - t0
        engine_seconds.append(in_engine)
        noise = outputs[0]
        if guidance:
            noise = _guide(*((noise[:batch], noise[batch:]) if batched_cfg else outputs), scale)
        latents = scheduler.step(np.asarray(noise, dtype=np.float32), t, latents)
        step_seconds.append(time.perf_counter() - start)
        if progress:
            progress(i + 1, len(timesteps), step_seconds[-1])

    latents = conditioned.final(latents, condition["cond"])
    decoded = []
    latent_dtype = np.dtype(decoder.spec.inputs[0]["dtype"])  # an fp16 export decodes fp16 latents
    for item in _unnormalise(latents, pipeline):
        out = decoder.run({"latents": np.ascontiguousarray(item[None], dtype=latent_dtype)})["video"]
        decoded.append(to_frames(out[0].astype(np.float32)))
    # what the pipeline returns (HunyuanVideo-I2V latent concat: without its first latent frame and 4 decoded frames)
    trim = recipe.get("trim", {})
    frame_axis = layout.index("F")
    latents = latents[(slice(None),) * frame_axis + (slice(trim.get("latent_frames", 0), None),)]
    frames = np.stack(decoded)[:, trim.get("video_frames", 0) :]
    return RunResult(latents, frames, step_seconds, engine_seconds, [step[1].tolist() for step in plan])


def _guide(noise_cond: np.ndarray, noise_uncond: np.ndarray, scale: np.ndarray | np.float32) -> np.ndarray:
    """``uncond + scale * (cond - uncond)`` as the pipelines round it. A float32 engine output is fresh and ours, so
    the conditional half takes the result in place (the same operations, no temporaries)."""
    if noise_cond.dtype == np.float32 and noise_cond.flags.writeable:
        np.subtract(noise_cond, noise_uncond, out=noise_cond)
        noise_cond *= scale
        noise_cond += noise_uncond
        return noise_cond
    noise = (noise_cond - noise_uncond) * scale
    noise += noise_uncond
    return noise


def _image_latent(condition: np.ndarray, layout: str, latent_shape: tuple[int, ...]) -> np.ndarray:
    """The image's latent inside a condition, broadcastable over the latents: the condition's first latent frame and
    first latent-channel count of channels (HunyuanVideo-I2V: all of a token-replace condition, the image part of
    a latent-concat one, whose other frames are zeros and whose last channel is the mask)."""
    index = [slice(None)] * len(layout)
    index[layout.index("C")] = slice(0, latent_shape[layout.index("C")])
    index[layout.index("F")] = slice(0, 1)
    return condition[tuple(index)]


# The sigma schedules pipelines hand their scheduler (recipe ``sigmas``), for N steps.
SIGMA_SCHEDULES = {
    "linspace(1, 1/N, N)": lambda n: np.linspace(1.0, 1 / n, n),  # LTX
    "linspace(1, 0, N+1)[:-1]": lambda n: np.linspace(1.0, 0.0, n + 1)[:-1],  # HunyuanVideo
}


def _scheduler(pipeline: dict, steps: int) -> object:
    """The export's scheduler with its timesteps set for ``steps``; what it refuses is a :class:`RunError`."""
    name = pipeline["scheduler"]["class"]
    try:
        scheduler = scheduler_from_config(name, pipeline["scheduler"]["config"])
        _set_timesteps(scheduler, steps, pipeline)
    except RunError:
        raise
    except (ValueError, TypeError, KeyError) as err:
        raise RunError(f"this export's scheduler ({name}) cannot run {steps} steps: {err}") from err
    return scheduler


def _set_timesteps(scheduler: object, steps: int, pipeline: dict) -> None:
    """``set_timesteps`` as the pipeline calls it: N steps, or the pipeline's own sigmas (recipe ``sigmas``, see
    :data:`SIGMA_SCHEDULES`) with (``mu: video_tokens``; LTX) the dynamic shift from the video's latent token count."""
    recipe, config = pipeline["recipe"], pipeline["scheduler"]["config"]
    kwargs: dict = {}
    if recipe.get("sigmas") is not None:
        if recipe["sigmas"] not in SIGMA_SCHEDULES:
            raise RunError(
                f"unknown sigma schedule {recipe['sigmas']!r} in the manifest; known: {list(SIGMA_SCHEDULES)}"
            )
        kwargs["sigmas"] = SIGMA_SCHEDULES[recipe["sigmas"]](steps)
    if recipe.get("mu") == "video_tokens":
        video = pipeline["video"]
        kwargs["mu"] = calculate_shift(
            video["latent_frames"] * video["latent_height"] * video["latent_width"],
            config.get("base_image_seq_len", 256),
            config.get("max_image_seq_len", 4096),
            config.get("base_shift", 0.5),
            config.get("max_shift", 1.15),
        )
    scheduler.set_timesteps(None if "sigmas" in kwargs else steps, **kwargs)


def _unnormalise(latents: np.ndarray, pipeline: dict) -> np.ndarray:
    """Latents in the recipe's layout -> the VAE decoder's ``[B, C, F, H, W]`` input scale, without the leading
    latent frames the pipeline drops before decoding (CogVideoX 1.5's padding)."""
    if pipeline["recipe"]["latent_layout"] == "BFCHW":
        latents = latents.transpose(0, 2, 1, 3, 4)
    video = pipeline["video"]
    latents = latents[:, :, video["latent_frames"] - video.get("decoded_latent_frames", video["latent_frames"]) :]
    vae = pipeline["vae"]
    if pipeline["recipe"]["normalization"] == "mean_std":
        mean = np.asarray(vae["latents_mean"], np.float32).reshape(1, -1, 1, 1, 1)
        std = np.asarray(vae["latents_std"], np.float32).reshape(1, -1, 1, 1, 1)
        return latents * std / np.float32(vae.get("scaling_factor", 1.0)) + mean  # Wan: 1 (exports before: absent)
    return latents / np.float32(vae["scaling_factor"])


def load_conditioning(path: str, export: ExportDir | None = None) -> dict[str, np.ndarray]:
    """Arrays written by ``dymos prepare``; a missing, corrupt or foreign file is a :class:`RunError`, and so (given
    ``export``) is one prepared for another model or video size: its shapes may still fit, its latents would not."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive (`dymos prepare` writes one)")
        with data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise RunError(f"cannot read conditioning {path}: {err}") from err
    meta_bytes = arrays.pop("meta", None)
    if export is not None and meta_bytes is not None:
        try:
            meta = json.loads(meta_bytes.tobytes())
        except (ValueError, UnicodeDecodeError) as err:
            raise RunError(f"conditioning {path} has unreadable metadata: {err}") from err
        pipeline = export.manifest.get("pipeline") or {}
        source = export.manifest.get("model", {}).get("source")
        if meta.get("model") != source or meta.get("video") != pipeline.get("video"):
            raise RunError(
                f"conditioning {path} was prepared for model {meta.get('model')!r} at {_video_size(meta.get('video'))}"
                f"; this export is of {source!r} at {_video_size(pipeline.get('video'))}: prepare it again for this "
                "export"
            )
    return arrays


def _video_size(video: dict | None) -> str:
    if not isinstance(video, dict):
        return "an unknown size"
    return f"{video.get('frames')} frames of {video.get('height')}x{video.get('width')}"


__all__ = [
    "FeedError",
    "RunError",
    "RunRequest",
    "RunResult",
    "check_conditioning",
    "check_request",
    "load_conditioning",
    "sample",
]
