"""``dymos export``: from a model spec to a validated artifact directory with its manifest.

Everything is built in a staging directory beside the target and moved into place only after every artifact
passed validation and the manifest is written; an interrupted or failed export leaves the previous export (or
nothing) in place, never a loadable half-directory.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dymos import __version__
from dymos.attention import EAGER_STRATEGIES, STRATEGIES
from dymos.catalog import DEFAULT_EXPORT_MODEL
from dymos.layouts import FAMILIES, layout_for, patch_sizes
from dymos.manifest import (
    LLAVA_PROMPTS,
    STRENGTH_SEMANTICS,
    atomic_write_bytes,
    denoiser_input_of,
    file_entries,
    write_manifest,
)
from dymos.models import (
    canonical_model,
    is_pipeline_spec,
    load_denoiser,
    load_pipeline,
    pipeline_compression,
    pipeline_defaults,
    pipeline_frame_step,
    resolve_model,
    source_folder,
    source_record,
)
from dymos.schedule import DEFAULT_FRACTION

from .onnx_export import OPSETS, export_program, onnx_model, save_onnx, save_onnx_shared
from .specs import FAMILY_EXPORTS, STRENGTH_INPUT, ExportSpec, build_spec, sample_inputs
from .tensorrt import tensorrt_version
from .trt_compat import check_tensorrt_compat
from .validate import ParityCase, validate_onnx, validated_entry
from .wrapper import StrengthInputDenoiser

FORMATS = ("onnx", "trt", "pt2", "aoti", "torchscript")
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class ExportError(RuntimeError):
    """An export that cannot proceed; the message says why and what to do."""


@dataclass
class ExportOptions:
    """What to export; video sizes are in frames and pixels (converted with the family's VAE factors)."""

    model: str = DEFAULT_EXPORT_MODEL
    out: Path = Path("build")
    name: str | None = None
    formats: Sequence[str] = ("onnx",)
    precision: str = "fp32"
    strategy: str | None = None
    # fold only: pad q/k to a multiple of this head dim (None: 8 when building TensorRT engines, else 1). On CUDA an
    # odd head dim (129) misses every fast attention kernel (tools/bench_gpu.py: 1.98x per block vs 1.23x at 136).
    fold_pad_to: int | None = None
    # TensorRT engines only: the build precision (None: fp16 for an fp32 export, else the export's; see
    # engine_precision)
    trt_precision: str | None = None
    opset: int = 20
    batch: int = 1
    max_batch: int = 4
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    seed: int = 0

    def target_dir(self) -> Path:
        """``out/name``; ``name`` must be one plain folder name (the export replaces that folder as a whole)."""
        if self.name is not None:
            name, where = self.name, "--name"
        else:
            name, where = canonical_model(self.model).replace(":", "-").rstrip("/").split("/")[-1], "--model"
        if name in ("", ".", "..") or Path(name).name != name or "/" in name or "\\" in name:
            raise ExportError(
                f"{where} {self.name if self.name is not None else self.model!r} does not give a plain folder name "
                "for the export (it replaces `OUT/NAME` as a whole): pass --name NAME"
            )
        return Path(self.out) / name


@dataclass
class ExportResult:
    directory: Path
    manifest: dict[str, Any]
    parity: dict[str, Any] = field(default_factory=dict)


def _validation_providers(precision: str) -> list[str]:
    """onnxruntime providers for parity checks; bf16 graphs need the CUDA provider (no CPU bf16 kernels)."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if precision == "bf16":
        if "CUDAExecutionProvider" not in available:
            raise ExportError(
                "bf16 ONNX graphs can only be validated with onnxruntime's CUDA provider (onnxruntime's CPU kernels "
                "lack bf16 Conv/MatMul): export fp32 or fp16 here, or bf16 on a GPU machine (make setup GPU=1)"
            )
        return ["CUDAExecutionProvider"]
    return ["CPUExecutionProvider"]


def default_strategy(opset: int) -> str:
    """split is cheapest in MatMul/Softmax form (opset <= 22); from opset 23 SDPA becomes ONNX ``Attention``,
    which (in onnxruntime and TensorRT) rejects split's query-broadcast key mask, so fold (no mask) is used."""
    return "fold" if opset >= 23 else "split"


def latent_sizes(
    family: str,
    config: dict[str, Any],
    frames: int | None,
    height: int | None,
    width: int | None,
    compression: tuple[int, int] | None = None,
    frame_step: int | None = None,
) -> tuple[int | None, int | None, int | None]:
    """Video frames / pixel sizes -> latent frames / sizes, checking what the model can take.

    ``compression`` = (temporal, spatial) factors of the pipeline's own VAE; default: the family's real VAE.
    ``frame_step``: videos have ``frame_step * n + 1`` frames (default: the temporal factor; a pipeline's VAE may
    need more, :func:`~dymos.models.pipeline_frame_step`).
    """
    fx = FAMILY_EXPORTS[family]
    t, spatial = compression or (fx.temporal_compression, fx.spatial_compression)
    step_t = frame_step or t
    p_t, _, p_s = patch_sizes(FAMILIES[family], config)
    latent_frames = None
    if frames is not None:
        if frames < 1 or (frames - 1) % step_t:
            rule = f"{step_t}n+1" if step_t > 1 else "at least 1"
            why = f"VAE temporal factor {t}" + (f", encoder chunks of {step_t} frames" if step_t != t else "")
            raise ExportError(f"this {family} model takes {rule} video frames ({why}); got {frames}")
        latent_frames = (frames - 1) // t + 1
        latent_frames += (-latent_frames) % p_t  # the pipeline pads to whole token-frames (CogVideoX 1.5)
        if latent_frames < 2 * p_t:
            fewest = -(-(2 * p_t - 1) * t // step_t) * step_t + 1
            raise ExportError(
                f"{frames} video frames give one token-frame: DyMoS needs the reference frame and at least one "
                f"frame to bias; this {family} model takes at least {fewest} frames"
            )
    sizes = []
    for label, value in (("height", height), ("width", width)):
        if value is None:
            sizes.append(None)
            continue
        step = spatial * p_s
        if value <= 0 or value % step:
            raise ExportError(f"{family} {label} must be a positive multiple of {step} pixels; got {value}")
        if value // step < 2:  # one token a side would be a size-1 dim, which torch.export cannot keep dynamic
            raise ExportError(f"{family} {label} must be at least {2 * step} pixels (two tokens); got {value}")
        sizes.append(value // spatial)
    return latent_frames, sizes[0], sizes[1]


def resolve_fold_pad_to(requested: int | None, formats: Sequence[str]) -> int:
    """The fold strategy's head-dim multiple: as requested, else 8 for TensorRT builds (GPU kernels) and 1 for the
    rest (on CPU the padding is pure extra work)."""
    if requested is None:
        return 8 if "trt" in formats else 1
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
        raise ExportError(f"fold_pad_to must be a positive integer, got {requested!r}")
    return requested


def _check_not_inside(target: Path, source: Path) -> None:
    """Refuse a target that is the source checkpoint or a folder above it: the export replaces the target whole."""
    target, source = target.resolve(), source.resolve()
    if target == source or target in source.parents:
        raise ExportError(
            f"the export would replace {target}, which holds the model being exported ({source}): choose another "
            "--out or --name"
        )


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ExportError(f"output directory {directory} is not writable: {err}") from err


def _versions() -> dict[str, str | None]:
    import diffusers
    import onnx
    import onnxruntime
    import polygraphy

    return {
        "dymos": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "polygraphy": polygraphy.__version__,
        "tensorrt": tensorrt_version(),
    }


def parity_cases(
    spec: ExportSpec,
    config: dict[str, Any],
    *,
    height: int | None,
    width: int | None,
    dtype: torch.dtype,
    seed: int,
    text_tokens: int | None = None,
) -> list[ParityCase]:
    """Strength 0, one non-zero strength, a mixed per-item batch, and a batch/frame count (and, where the text length
    is dynamic, a text length) other than the export's.

    ``height``/``width`` are the latent sizes and ``text_tokens`` the text length the spec was built with (None: the
    family default).
    """
    family = spec.family
    batch, frames = spec.dims["batch"].opt, spec.dims["frames"].opt
    sizes = {"height": height, "width": width}

    def make(
        name: str, b: int, f: int, strengths: list[float], case_seed: int, text: int | None = text_tokens
    ) -> ParityCase:
        tensors, _ = sample_inputs(
            family,
            config,
            batch=b,
            frames=f,
            seed=case_seed,
            dtype=dtype,
            zero_timestep_first_frame=spec.zero_timestep_first_frame,
            text_tokens=text,
            **sizes,
        )
        return ParityCase(name, {**tensors, STRENGTH_INPUT: torch.tensor(strengths, dtype=torch.float32)})

    mixed_batch = max(2, batch)
    mixed = ([0.0, 1.5, -1.0, 3.0] * mixed_batch)[:mixed_batch]
    cases = [
        make("strength_0", batch, frames, [0.0] * batch, seed),
        make("strength_nonzero", batch, frames, [1.5] * batch, seed),
        make("mixed_batch", mixed_batch, frames, mixed, seed + 1),
    ]
    other_batch = min(spec.dims["batch"].max, mixed_batch + 1)
    p_t = spec.multiples.get("frames", 1)
    other_frames = frames + p_t if spec.dims["frames"].max >= frames + p_t else frames
    other = ([2.0, 0.0, -0.5, 1.0] * other_batch)[:other_batch]
    text = spec.dims.get("text")
    other_text = text.opt + 2 if text is not None and text.max >= text.opt + 2 else text_tokens
    cases.append(make("other_batch_and_frames", other_batch, other_frames, other, seed + 2, other_text))
    return cases


def run_export(options: ExportOptions, log: Callable[[str], None] = print) -> ExportResult:
    """Export ``options.model`` to ``options.target_dir()``; see the module docstring for the guarantees."""
    formats = list(dict.fromkeys(options.formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        what = f"unknown format(s) {unknown}" if unknown else "no format given"
        raise ExportError(f"{what}; choose from {', '.join(FORMATS)}")
    if options.opset not in OPSETS:
        raise ExportError(f"opset {options.opset} is not supported; choose one of {', '.join(map(str, OPSETS))}")
    if options.batch < 1 or options.max_batch < max(2, options.batch):
        raise ExportError(
            f"--max-batch must be at least 2 (the parity check runs a batch mixing two strengths) and at least "
            f"--batch {options.batch}; got {options.max_batch}"
        )
    if options.trt_precision is not None and "trt" not in formats:
        raise ExportError("--trt-precision sets the TensorRT engine's precision: it needs trt in --formats")
    if "trt" in formats and "onnx" not in formats:
        formats.insert(0, "onnx")  # the engine is built from the validated ONNX
    if "trt" in formats and tensorrt_version() is None:  # before minutes of export work, not after
        raise ExportError(
            "--formats trt needs TensorRT, which is not installed here: `make setup GPU=1` installs it on a machine "
            "with an NVIDIA GPU. `--formats onnx` exports the ONNX here (its TensorRT ONNX-parser check is recorded "
            "in the manifest as `tensorrt_parser_check`); build the engine from it on a GPU machine"
        )
    if options.precision not in PRECISIONS:
        raise ExportError(f"unknown precision {options.precision!r}; choose from {', '.join(PRECISIONS)}")
    engine_precision(options.precision, options.trt_precision)
    strategy = options.strategy or default_strategy(options.opset)
    if strategy in EAGER_STRATEGIES:
        raise ExportError(
            f"strategy {strategy!r} runs in PyTorch eager only (its kernels return a log-sum-exp that no exporter "
            f"takes); choose from {', '.join(STRATEGIES)}"
        )
    if strategy not in STRATEGIES:
        raise ExportError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if strategy == "split" and options.opset >= 23:
        raise ExportError(
            "strategy 'split' passes a query-broadcast key mask, which the opset-23 ONNX Attention op rejects in "
            "onnxruntime and TensorRT; use --strategy fold or mask, or --opset 20"
        )
    if options.fold_pad_to is not None and strategy != "fold":
        raise ExportError(f"--fold-pad-to pads the fold strategy's head dim; this export uses {strategy!r}")
    fold_pad_to = resolve_fold_pad_to(options.fold_pad_to, formats)
    _validation_providers(options.precision)  # fail before loading anything
    target = options.target_dir()
    source = canonical_model(options.model)
    pipe = None
    if is_pipeline_spec(source):
        kind = "pipeline"
    else:
        kind, class_name, _ = resolve_model(source)
    _check_writable(target.parent)
    folder = source_folder(source)
    if folder is not None:
        _check_not_inside(target, folder)

    dtype = PRECISIONS[options.precision]
    if kind == "pipeline":
        pipe = load_pipeline(source, dtype=dtype, seed=options.seed)
        model = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
        if model is None:
            raise ExportError(f"{source}: the pipeline has no transformer or unet")
        class_name = type(model).__name__
    else:
        model = load_denoiser(source, dtype=dtype, seed=options.seed)
    family = layout_for(model).family
    config = dict(model.config)
    defaults = pipeline_defaults(source) if pipe is not None else {}
    video = {k: getattr(options, k) or defaults.get("video", {}).get(k) for k in ("frames", "height", "width")}
    compression = pipeline_compression(pipe) if pipe is not None and getattr(pipe, "vae", None) else None
    frame_step = pipeline_frame_step(pipe) if pipe is not None and getattr(pipe, "vae", None) else None
    frames, height, width = latent_sizes(family, config, **video, compression=compression, frame_step=frame_step)
    text_tokens = pipeline_text_tokens(pipe, family)
    recipe = pipeline_recipe(pipe) if pipe is not None else None
    spec = build_spec(
        family,
        config,
        batch=options.batch,
        frames=frames,
        height=height,
        width=width,
        max_batch=options.max_batch,
        dtype=dtype,
        text_tokens=text_tokens,
        zero_timestep_first_frame=recipe is not None and recipe.get("timestep") == "zero_on_first_frame",
    )
    if recipe is not None:
        spec = dataclasses.replace(spec, fixed_kwargs={**spec.fixed_kwargs, **pipeline_fixed_kwargs(pipe, recipe)})
    cases = parity_cases(
        spec, config, height=height, width=width, dtype=dtype, seed=options.seed, text_tokens=text_tokens
    )
    experts = _experts(pipe)
    _sweep_leftovers(target, log)
    staging = Path(tempfile.mkdtemp(prefix=_sibling_prefix(target, "partial"), dir=target.parent))
    staging.chmod(0o755)  # mkdtemp creates 0700
    try:
        submodels: dict[str, ExportSpec] = {}
        submodel_artifacts: dict[str, Any] = {}
        files: list[str] = []
        with_stock = recipe is not None  # the runtime uses it
        job = DenoiserJob(spec, strategy, cases, formats, options, with_stock, fold_pad_to)
        artifacts, parity, denoiser_files = _export_denoiser("denoiser", model, job, staging, log)
        files += denoiser_files
        for name, expert in experts.items():
            log(f"[{name}] {class_name}: the pipeline's second expert (used below its boundary timestep)")
            expert_spec = dataclasses.replace(spec, submodel=name)
            expert_job = dataclasses.replace(job, spec=expert_spec)
            expert_artifacts, expert_parity, expert_files = _export_denoiser(name, expert, expert_job, staging, log)
            submodels[name] = expert_spec
            submodel_artifacts[name] = expert_artifacts
            parity[name] = expert_parity
            files += expert_files
        pipeline_entry = None
        if pipe is not None:
            # the effective video size (dymos_defaults.json fills what the options leave unset)
            sink = GraphSink(staging, dataclasses.replace(options, **video), log, submodels, submodel_artifacts)
            pipeline_entry = _export_pipeline_parts(pipe, family, cases, sink)
            files += pipeline_entry.pop("files")
            # the pipeline's own (its __call__'s defaults, its docs' frame rate), then a shipped model's (e.g. the
            # guidance it was trained for)
            generation = {**call_defaults(pipe, recipe or {}), **defaults.get("generation", {})}
            pipeline_entry["defaults"] = generation
        manifest = {
            "model": {
                "source": canonical_model(options.model),
                **source_record(source),  # the absolute folder and its fingerprint, for prepare and sweep
                "kind": kind,
                "class": class_name,
                "family": family,
                "config": config,
            },
            "submodels": {"denoiser": spec.as_dict(), **{k: v.as_dict() for k, v in submodels.items()}},
            "strength": {
                "input": STRENGTH_INPUT,
                "dtype": "float32",
                "shape": ["batch"],
                "semantics": STRENGTH_SEMANTICS,
                "strategy": strategy,
                **({"fold_pad_to": fold_pad_to} if strategy == "fold" else {}),
                "zero_is_stock": True,
                "default_schedule_fraction": DEFAULT_FRACTION,
            },
            "layout": _layout_dict(family),
            "export": {
                "precision": options.precision,
                "opset": options.opset,
                "formats": formats,
                "batch": options.batch,
                "max_batch": options.max_batch,
                "latent_frames": spec.dims["frames"].opt,
                "dynamic_frames": spec.dims["frames"].min != spec.dims["frames"].max,
                "video_frames": video["frames"],  # as asked, or the pipeline's defaults; None: the family's
                "height": video["height"],
                "width": video["width"],
                "seed": options.seed,
            },
            "artifacts": artifacts,
            "submodel_artifacts": {k: v for k, v in submodel_artifacts.items()},
            "pipeline": pipeline_entry,
            "files": file_entries(staging, files),
            "versions": _versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_manifest(staging, manifest)
        _replace_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"artifacts in {target}/ (manifest.json lists them with sha256)")
    return ExportResult(target, manifest, parity)


@dataclass(frozen=True)
class DenoiserJob:
    """What every denoiser graph of one export shares (Wan 2.2 A14B has two experts of one architecture)."""

    spec: ExportSpec
    strategy: str
    cases: list[ParityCase]
    formats: Sequence[str]
    options: ExportOptions
    with_stock: bool  # also a stock graph sharing the weights, for the runtime's strength-0 steps
    fold_pad_to: int = 1


def _export_denoiser(
    submodel: str, model: torch.nn.Module, job: DenoiserJob, staging: Path, log: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Every requested artifact of one denoiser, each validated against PyTorch; returns (artifacts, parity, files).

    Files are named after ``submodel`` (``denoiser.onnx``, ``denoiser_2.onnx``, ...); the ``denoiser``'s parity
    dirs keep their plain names (``parity/``, ``parity_stock/``), an expert's carry its name.
    """
    spec, options = job.spec, job.options
    suffix = "" if submodel == "denoiser" else f"_{submodel}"
    providers = _validation_providers(options.precision)
    class_name = type(model).__name__
    wrapper = StrengthInputDenoiser(model, spec, strategy=job.strategy, fold_pad_to=job.fold_pad_to).eval()
    artifacts: dict[str, Any] = {}
    parity: dict[str, Any] = {}
    files: list[str] = []
    sequence = [_sequence_length(wrapper, job.cases[0])]
    sample = next(c for c in job.cases if c.name == "mixed_batch")  # batch >= 2: size-1 dims would specialise
    dynamic = sorted(d for d, r in spec.dims.items() if r.min < r.max)
    log(f"[torch.export] tracing {class_name} ({submodel}) with dynamic dims {dynamic}")
    program = export_program(wrapper, spec, list(sample.inputs.values()))
    if "onnx" in job.formats:
        graph, stock_graph = f"{submodel}.onnx", f"{submodel}_stock.onnx"
        log(f"[onnx] exporting {class_name} (opset {options.opset}, strategy {job.strategy}, {options.precision})")
        t0 = time.perf_counter()
        main = onnx_model(program, spec, opset=options.opset, sequence_lengths=sequence)
        stock_wrapper = None
        if job.with_stock:
            # The runtime runs steps where every strength is 0 on a stock graph sharing the weights file, so
            # those steps cost what the stock model costs.
            stock_wrapper = StrengthInputDenoiser(model, spec, dymos=False).eval()
            stock = onnx_model(
                export_program(stock_wrapper, spec, list(sample.inputs.values())),
                spec,
                opset=options.opset,
                require_strength=False,
            )
            onnx_files = save_onnx_shared({graph: main, stock_graph: stock}, staging, f"{graph}.data")
        else:
            onnx_files = save_onnx(main, staging / graph)
        log(f"[onnx] exported in {time.perf_counter() - t0:.1f}s; validating against PyTorch with onnxruntime")
        report = validate_onnx(
            staging / graph,
            wrapper,
            job.cases,
            staging / f"parity{suffix}",
            precision=options.precision,
            providers=providers,
        )
        report_name = f"parity_onnx{suffix}.json"
        atomic_write_bytes(staging / report_name, (json.dumps(report, indent=2) + "\n").encode())
        files += [*onnx_files, report_name, *report["files"]]
        parity["onnx"] = report
        artifacts["onnx"] = {
            "file": graph,
            "files": onnx_files,
            "opset": options.opset,
            "validated": {**validated_entry(report), "report": report_name},
        }
        if stock_wrapper is not None:
            stock_report = validate_onnx(
                staging / stock_graph,
                stock_wrapper,
                job.cases,
                staging / f"parity{suffix}_stock",
                precision=options.precision,
                providers=providers,
                strength_input=False,
            )
            artifacts["onnx_stock"] = {
                "file": stock_graph,
                "shares_weights_with": graph,
                "use": "steps where every item's strength is 0",
                "validated": validated_entry(stock_report),
            }
            files += stock_report["files"]
            log("[onnx] stock graph (shared weights) validated")
        compat = check_tensorrt_compat(staging / graph)
        artifacts["onnx"]["tensorrt_parser_check"] = {
            "tensorrt_version": compat.tensorrt_version,
            "ok": compat.ok,
            "problems": compat.problems,
        }
        for case in report["cases"]:
            log(f"[onnx]   {case['name']:<24} max|err| {case['max_abs_err']:.2e}  strength {case['strength']}")
    if "trt" in job.formats:
        artifacts["tensorrt"] = _build_tensorrt(
            staging / f"{submodel}.onnx", spec, options, job.cases, staging / f"parity{suffix}", log
        )
        report_name = f"parity_tensorrt{suffix}.json"
        report = artifacts["tensorrt"].pop("report")
        atomic_write_bytes(staging / report_name, (json.dumps(report, indent=2) + "\n").encode())
        artifacts["tensorrt"]["validated"] = {**validated_entry(report), "report": report_name}
        files += [artifacts["tensorrt"]["file"], report_name]
    for fmt in ("pt2", "aoti", "torchscript"):
        if fmt in job.formats:
            entry = _pytorch_artifact(fmt, submodel, program, wrapper, sample, job, staging, log)
            artifacts[fmt] = entry
            files += [entry["file"]] if entry.get("validated") else []
    return artifacts, parity, files


def _experts(pipe: Any) -> dict[str, torch.nn.Module]:
    """Denoisers besides ``transformer``/``unet`` that the pipeline switches to: Wan 2.2 A14B's low-noise
    ``transformer_2`` (exported as ``denoiser_2``), used while ``t < boundary_ratio * num_train_timesteps``."""
    expert = getattr(pipe, "transformer_2", None) if pipe is not None else None
    if expert is None:
        return {}
    if pipe.config.get("boundary_ratio") is None:
        raise ExportError(f"{type(pipe).__name__} has a transformer_2 but no boundary_ratio: cannot tell when it runs")
    ours, theirs = (
        {k: v for k, v in dict(model.config).items() if not k.startswith("_")}  # not _name_or_path & co
        for model in (pipe.transformer, expert)
    )
    if ours != theirs:
        differing = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        raise ExportError(
            f"transformer_2's config differs from transformer's ({differing}): one graph contract is "
            "exported for both experts, so they must share an architecture"
        )
    return {"denoiser_2": expert}


# Pipeline classes whose whole sampling loop the torch-free runtime can drive (see dymos.runtime.loop).
# What differs between them is data the manifest carries: the latent axis order, which VAE config entry holds
# the latent channel count, how latents are un-normalised before decoding, and how the runtime conditions on an
# image without torch (dymos.runtime.conditioning): which conditioning entry the CLIP image encoder fills and how
# its pixels are prepared, what the unconditional pass sees, how the T5 text encoder masks and prompts are cleaned.
RUNTIME_PIPELINES: dict[str, dict[str, Any]] = {
    "WanImageToVideoPipeline": {
        "fps": 16,  # the frame rate of its docs' videos (dymos run's default for --fps)
        "latent_layout": "BCFHW",
        "channels_key": "z_dim",
        "normalization": "mean_std",
        # Wan 2.1 only: CLIP's penultimate hidden states, pixels by the transformers image processor
        "image_encoder": {"fills": "encoder_hidden_states_image", "pixels": "processor", "projected": False},
        "unconditional": "empty_prompt",
        # UMT5 under the padding mask, padded positions zeroed; prompts cleaned (ftfy, HTML unescape, whitespace)
        "text_encoder": {"masked": True, "clean": "wan"},
        # Wan 2.2 TI2V: the image's latent frame stands in for the first latent frame (the pipeline's mask blend, of
        # the denoiser input each step and of the final latents) and the model sees per-token timesteps, 0 there.
        "when_config": {"expand_timesteps": {"condition": "first_frame", "timestep": "zero_on_first_frame"}},
    },
    # The image latents are sampled from the VAE posterior: the condition encoder takes that noise as an input.
    "CogVideoXImageToVideoPipeline": {
        "fps": 8,
        "latent_layout": "BFCHW",
        "channels_key": "latent_channels",
        "normalization": "scaling_factor",
        "unconditional": "empty_prompt",
        "text_encoder": {"masked": False, "clean": None},  # T5 over the padding, no mask, prompts as given
        # denoiser inputs the pipeline feeds a constant, where the model has them (CogVideoX 1.5's ofs embedding)
        "constant_inputs": {"ofs": 2.0},
    },
    # LTX-Video 0.9.0 I2V: the graph takes the 5-D latent and packs it; the image latent (sampled from the VAE
    # posterior: the condition encoder takes that noise) stands in for the first latent frame, whose tokens see
    # timestep 0; the pipeline's own sigmas (linspace(1, 1/N, N)) are shifted by a mu from the video's token count;
    # RoPE is scaled by the VAE's compression over the frame rate (the __call__ default, 25); latents are
    # un-normalised with the VAE's statistics (weights, not config) and its scaling factor; T5 prompts come with
    # attention masks, one per CFG half.
    "LTXImageToVideoPipeline": {
        "fps": 24,
        "latent_layout": "BCFHW",
        "channels_key": "latent_channels",
        "normalization": "mean_std",
        "unconditional": "empty_prompt",
        "condition": "first_frame",
        "timestep": "zero_on_first_frame",
        "sigmas": "linspace(1, 1/N, N)",
        "mu": "video_tokens",
        "rope_interpolation_scale": {"frame_rate": 25},
        # a VAE with timestep conditioning (0.9.1+) decodes at __call__'s default decode_timestep (no decode noise)
        "decode_timestep": 0.0,
        # T5 over the padding without a mask, prompts as given; the tokenizer's attention mask goes to the denoiser
        "text_encoder": {"masked": False, "clean": None, "attention_mask": True},
    },
    # HunyuanVideo-I2V: the image's VAE latent (its mode, times the scaling factor) is, by the transformer's image
    # condition type, the first latent frame, which the model itself modulates at t = 0 (token replace), or
    # concatenated on channels on the first frame, zeros on the others, with a mask channel (latent concat, the
    # 33-channel checkpoints, whose output drops its first latent frame and first 4 decoded frames: ``trim``); the
    # initial latents are noise * 0.999 + the image latent * (1 - 0.999) on every frame; guidance is true CFG (two
    # forwards) plus, where the model has one, the guidance embedding (an input fed guidance * 1000); prompts are
    # LLaVA embeddings with attention masks and CLIP pooled embeddings, one per half.
    "HunyuanVideoImageToVideoPipeline": {
        "latent_layout": "BCFHW",
        "channels_key": "latent_channels",
        "normalization": "scaling_factor",
        "unconditional": "empty_prompt",
        "initial_latents": {"noise_weight": 0.999},
        "sigmas": "linspace(1, 0, N+1)[:-1]",
        "embedded_guidance": {"input": "guidance", "scale": 1000.0, "default": 1.0},
        "transformer_variants": {
            "image_condition_type": {
                "token_replace": {"condition": "first_frame"},
                "latent_concat": {"trim": {"latent_frames": 1, "video_frames": 4}},
            }
        },
        # its real prompts are encoded together with the image (LLaVA): no image-independent empty prompt to store
        "prompts_with_image": True,
        # true CFG is __call__'s true_cfg_scale (off by default: a guidance-distilled checkpoint); its
        # guidance_scale is the guidance embedding's value
        "call_names": {"guidance_scale": "true_cfg_scale"},
        "fps": 15,
    },
    # SVD also guides per frame (a linear ramp from 1 to the guidance scale) and decodes frames folded into the
    # batch; its unconditional pass sees zero image embeddings and zero image latents; its condition encoder takes
    # the noise augmentation (noise and scale) as inputs, and its added time ids are micro-conditioning.
    "StableVideoDiffusionPipeline": {
        "fps": 7,
        "call_names": {"guidance_scale": "max_guidance_scale"},  # the top of its per-frame ramp
        "latent_layout": "BFCHW",
        "channels_key": "latent_channels",
        "normalization": "scaling_factor",
        "guidance": "frame_ramp",
        "decoder": "frames_in_batch",
        # CLIP's projected embedding, pixels by the pipeline's own antialiased resize
        "image_encoder": {"fills": "prompt_embeds", "pixels": "antialias", "projected": True},
        "unconditional": "zeros",
        "added_time_ids": True,
    },
}


CALL_DEFAULTS = {"steps": "num_inference_steps", "guidance_scale": "guidance_scale"}  # ours: the __call__ name


def call_defaults(pipe: Any, recipe: dict[str, Any]) -> dict[str, Any]:
    """The generation defaults of the pipeline class, under the runtime's names: steps and guidance from its
    ``__call__`` signature (the recipe's ``call_names`` say where the class names them otherwise: SVD's
    ``max_guidance_scale``, HunyuanVideo's ``true_cfg_scale``), and the frame rate its documentation writes
    videos at (``fps``), so ``dymos run`` generates as the pipeline would without flags."""
    parameters = inspect.signature(type(pipe).__call__).parameters
    found = {}
    for ours, theirs in {**CALL_DEFAULTS, **recipe.get("call_names", {})}.items():
        default = parameters[theirs].default if theirs in parameters else None
        if isinstance(default, int | float) and not isinstance(default, bool):
            found[ours] = default
    return {**found, **({"fps": recipe["fps"]} if "fps" in recipe else {})}


def pipeline_recipe(pipe: Any) -> dict[str, Any] | None:
    """The runtime recipe of ``pipe``'s class with the overrides of the config flags it sets (``when_config``) and
    of its transformer's variant (``transformer_variants``: config key -> value -> overrides), or None for a class,
    or a variant not listed, that the runtime does not drive. Unset keys mean the common case: ``condition``
    "concat" (the condition is concatenated to the latents on the channel axis) and ``timestep`` "per_item"."""
    base = RUNTIME_PIPELINES.get(type(pipe).__name__)
    if base is None:
        return None
    recipe = {k: v for k, v in base.items() if k not in ("when_config", "transformer_variants")}
    transformer = getattr(pipe, "transformer", None)
    for key, variants in base.get("transformer_variants", {}).items():
        value = transformer.config.get(key) if transformer is not None else None
        if value not in variants:
            return None
        recipe.update(variants[value])
    for flag, overrides in base.get("when_config", {}).items():
        if pipe.config.get(flag):
            recipe.update(overrides)
    return recipe


def pipeline_fixed_kwargs(pipe: Any, recipe: dict[str, Any]) -> dict[str, Any]:
    """Non-tensor denoiser kwargs the pipeline passes every step and the graph therefore fixes: LTX's
    ``rope_interpolation_scale`` = (temporal compression / frame rate, spatial, spatial)."""
    rope = recipe.get("rope_interpolation_scale")
    if rope is None:
        return {}
    t, s = pipeline_compression(pipe)
    return {"rope_interpolation_scale": (t / rope["frame_rate"], s, s)}


def pipeline_text_tokens(pipe: Any, family: str) -> int | None:
    """The text length a pipeline with a text encoder feeds its denoiser, where the family leaves it to the pipeline
    (Wan, LTX): the default ``max_sequence_length`` of its ``__call__`` (512; 128), so exported prompts are not
    truncated to the family sample's length. None: the family sample's (bare denoisers, pipelines without a text
    encoder such as the shipped model, families whose model fixes the length)."""
    import inspect

    if pipe is None or getattr(pipe, "text_encoder", None) is None:
        return None
    if not FAMILY_EXPORTS[family].text_tokens_from_pipeline:
        return None
    parameter = inspect.signature(type(pipe).__call__).parameters.get("max_sequence_length")
    return None if parameter is None or parameter.default is inspect.Parameter.empty else int(parameter.default)


def decoded_latent_frames(pipe: Any, latent_frames: int, requested_frames: int | None) -> int:
    """How many of the denoiser's ``latent_frames`` the pipeline decodes. CogVideoX 1.5 (temporal patch ``p_t``)
    pads a video's latent frames to a multiple of ``p_t`` and drops the padding before decoding; its real
    checkpoints run at such counts (81 frames: 21 latent frames, 22 denoised). So the decoded count is the
    requested video's, or without a request the smallest one that pads to ``latent_frames``; other pipelines
    decode all of them."""
    transformer = getattr(pipe, "transformer", None)
    patch_t = int((transformer.config.get("patch_size_t") if transformer is not None else None) or 1)
    if patch_t == 1:
        return latent_frames
    if requested_frames is not None:
        return (requested_frames - 1) // pipeline_compression(pipe)[0] + 1
    return latent_frames - patch_t + 1


@dataclass(frozen=True)
class GraphSink:
    """Where the fixed-shape graphs around the denoiser go (the VAE decoder, the encoders): the staging directory, the
    options they are exported with, the log, and the manifest's per-submodel specs and artifact entries they are
    recorded in."""

    staging: Path
    options: ExportOptions
    log: Callable[[str], None]
    submodels: dict[str, ExportSpec]
    artifacts: dict[str, Any]

    def graph_options(self) -> dict[str, Any]:
        """The keyword arguments every ``export/vae.py`` export takes."""
        precision = self.options.precision
        return {"precision": precision, "providers": _validation_providers(precision), "seed": self.options.seed}

    def record(self, submodel: str, exported: tuple[ExportSpec, dict[str, Any], list[str]]) -> list[str]:
        """Record one exported graph (spec, artifact entry, files) under ``submodel``; returns its files."""
        spec, artifact, files = exported
        self.submodels[submodel], self.artifacts[submodel] = spec, artifact
        self.log(f"[{submodel}] validated, max|err| {artifact['onnx']['validated']['max_abs_err']:.2e}")
        return files


def _export_pipeline_parts(pipe: Any, family: str, cases: list[ParityCase], sink: GraphSink) -> dict[str, Any]:
    """The parts of a pipeline the runtime needs besides the denoiser(s): the VAE decoder graph, the scheduler, the
    VAE scaling, the expert switch of two-expert pipelines, and the graphs for conditioning without torch
    (:func:`_export_image_conditioning`); or, for pipelines the runtime does not drive, why not
    (``runtime_supported``)."""
    from .vae import export_vae_decoder

    pipeline_class = type(pipe).__name__
    entry: dict[str, Any] = {
        "class": pipeline_class,
        "scheduler": {"class": type(pipe.scheduler).__name__, "config": _jsonable(dict(pipe.scheduler.config))},
        "runtime_supported": False,
        "files": [],
    }
    recipe = pipeline_recipe(pipe)
    if recipe is None:
        sink.log(
            f"[pipeline] {pipeline_class}: the torch-free runtime does not drive it (or this variant) yet; "
            "denoiser only"
        )
        return entry
    entry["runtime_supported"] = True
    if "denoiser_2" in sink.submodels:  # run_export exported the low-noise expert (see _experts)
        entry["experts"] = {
            "high_noise": "denoiser",
            "low_noise": "denoiser_2",
            # as the pipeline computes it; steps with t >= this run the high-noise expert at `guidance_scale`, the
            # others the low-noise one at `guidance_scale_2` (default: `guidance_scale`)
            "boundary_timestep": float(pipe.config.boundary_ratio) * int(pipe.scheduler.config.num_train_timesteps),
        }
    latent = cases[0].inputs[FAMILIES[family].latent_arg]
    axes = dict(zip(recipe["latent_layout"], latent.shape))
    frames, height, width = axes["F"], axes["H"], axes["W"]
    t, s = pipeline_compression(pipe)
    decoded = decoded_latent_frames(pipe, frames, sink.options.frames)
    vae = pipe.vae
    channels = int(vae.config[recipe["channels_key"]])
    sink.log(f"[vae_decoder] exporting the VAE decoder at latent {channels}x{decoded}x{height}x{width}")
    exported = export_vae_decoder(
        vae,
        (1, channels, decoded, height, width),
        sink.staging,
        frames_in_batch=recipe.get("decoder") == "frames_in_batch",
        decode_timestep=recipe.get("decode_timestep") if vae.config.get("timestep_conditioning") else None,
        **sink.graph_options(),
    )
    files = sink.record("vae_decoder", exported)
    video = {
        "latent_frames": frames,  # what the denoiser runs on
        "decoded_latent_frames": decoded,  # the last ones of them, what the VAE decodes (CogVideoX 1.5: one fewer)
        "latent_height": height,
        "latent_width": width,
        "frames": (decoded - 1) * t + 1,  # the pipeline's num_frames: the video's length, less any recipe trim
        "height": height * s,
        "width": width * s,
    }
    # the graphs (and stored embeddings) for conditioning on an image without torch, where the pipeline has every
    # encoder they need (a CLIP image encoder for Wan 2.1 and SVD)
    image_encoder = recipe.get("image_encoder")
    if image_encoder is not None:
        fed = denoiser_input_of(image_encoder["fills"])
        image_encoder = image_encoder if fed in cases[0].inputs else None  # Wan 2.2 takes no image context
    if image_encoder is None or getattr(pipe, "image_encoder", None) is not None:
        files += _export_image_conditioning(pipe, recipe, video, cases, sink, entry, image_encoder)
    else:
        sink.log(
            f"[condition_encoder] {pipeline_class} has no image encoder: conditioning through `dymos prepare` only"
        )
    if recipe["normalization"] == "mean_std":
        scaling = _latent_statistics(vae)
    else:
        scaling = {"scaling_factor": float(vae.config.scaling_factor)}
    constants = {k: v for k, v in recipe.get("constant_inputs", {}).items() if k in cases[0].inputs}
    # what applies to this model: a guidance embedding only where the graph has its input (HunyuanVideo without
    # guidance_embeds has none), a decode timestep only where the VAE takes one
    inapplicable = {"channels_key", "constant_inputs", "call_names", "fps"}
    if recipe.get("embedded_guidance", {}).get("input") not in cases[0].inputs:
        inapplicable.add("embedded_guidance")
    if not vae.config.get("timestep_conditioning"):
        inapplicable.add("decode_timestep")
    entry.update(
        recipe={
            "latent_input": FAMILIES[family].latent_arg,
            **{k: v for k, v in recipe.items() if k not in inapplicable},
            "constant_inputs": constants,
        },
        vae={"latent_channels": channels, **scaling, "scale_factor_temporal": t, "scale_factor_spatial": s},
        video=video,
        files=files,
    )
    return entry


def _latent_statistics(vae: Any) -> dict[str, Any]:
    """A VAE's per-channel latent mean and std, from its config (Wan) or its weights (LTX's buffers), and the
    scaling factor the pipeline divides by, ``latents * std / scaling_factor + mean`` (1 where the VAE has none:
    Wan's)."""
    buffers = dict(vae.named_buffers())
    stats = {
        key: [float(v) for v in (buffers[key] if key in buffers else vae.config[key])]
        for key in ("latents_mean", "latents_std")
    }
    return {**stats, "scaling_factor": float(vae.config.get("scaling_factor", 1.0))}


EMPTY_PROMPT_FILE = "empty_prompt.npz"


def _export_image_conditioning(
    pipe: Any,
    recipe: dict[str, Any],
    video: dict[str, int],
    cases: list[ParityCase],
    sink: GraphSink,
    entry: dict[str, Any],
    image_encoder: dict[str, Any] | None,
) -> list[str]:
    """The graphs and files for conditioning on an image (and a prompt) without torch: the condition encoder
    (image and the pipeline's random draws there -> condition); with ``image_encoder`` (the recipe's entry) the CLIP
    image encoder and its pixel settings; the T5 text encoder and tokenizer where the pipeline has them; the empty
    prompt's embeddings where the unconditional pass uses them. Records them in the pipeline ``entry`` and returns
    the files written."""
    import io

    import numpy as np

    from dymos.images import clip_pixel_shape, image_processor_settings, svd_image_settings
    from dymos.prepare import text_embeddings

    from .vae import export_condition_encoder, export_image_encoder, export_text_encoder

    graph_options, log, record, staging = sink.graph_options(), sink.log, sink.record, sink.staging
    log(f"[condition_encoder] exporting at {video['frames']}x{video['height']}x{video['width']}")
    shape = (video["frames"], video["height"], video["width"])
    files = record("condition_encoder", export_condition_encoder(pipe, shape, staging, **graph_options))
    if image_encoder is not None:
        if image_encoder["pixels"] == "antialias":
            settings = svd_image_settings(pipe.feature_extractor)
        else:
            settings = image_processor_settings(pipe.image_processor)
        log(f"[image_encoder] exporting the CLIP image encoder at {clip_pixel_shape(settings)}")
        exported = export_image_encoder(
            pipe.image_encoder,
            clip_pixel_shape(settings),
            staging,
            projected=image_encoder["projected"],
            **graph_options,
        )
        files += record("image_encoder", exported)
        entry["image_processor"] = settings
    if recipe["unconditional"] != "empty_prompt":  # SVD: no prompt; its unconditional pass sees zeros
        return files
    text = cases[0].inputs["encoder_hidden_states"]
    tokenizer = getattr(pipe, "tokenizer", None)
    has_text_encoder = getattr(pipe, "text_encoder", None) is not None and tokenizer is not None
    if has_text_encoder and recipe.get("text_encoder") is not None:
        text_recipe = recipe["text_encoder"]
        if getattr(tokenizer, "backend_tokenizer", None) is None:
            raise ExportError(f"{type(tokenizer).__name__} is not a fast tokenizer: no tokenizer.json for the runtime")
        length, pad_id = int(text.shape[1]), int(tokenizer.pad_token_id)
        log(f"[text_encoder] exporting {type(pipe.text_encoder).__name__} at {length} tokens")
        exported = export_text_encoder(
            pipe.text_encoder,
            length=length,
            pad_id=pad_id,
            eos_id=int(tokenizer.eos_token_id),
            masked=text_recipe["masked"],
            directory=staging,
            **graph_options,
        )
        files += record("text_encoder", exported)
        atomic_write_bytes(staging / TOKENIZER_FILE, tokenizer.backend_tokenizer.to_str().encode())
        files.append(TOKENIZER_FILE)
        entry["text_encoder"] = {
            "tokenizer": TOKENIZER_FILE,
            "max_length": length,
            "pad_id": pad_id,
            "pad_token": str(tokenizer.pad_token),
            **text_recipe,
        }
    if not stores_empty_prompt(pipe, recipe):  # HunyuanVideo-I2V: LLaVA encodes every prompt with the image
        return files + _export_llava_prompt_encoders(pipe, sink, entry)
    with torch.no_grad():
        embeddings = text_embeddings(pipe, "", "", (int(text.shape[1]), int(text.shape[2])))
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v.float().numpy() for k, v in embeddings.items()})
    atomic_write_bytes(staging / EMPTY_PROMPT_FILE, buffer.getvalue())
    entry["empty_prompt"] = {"file": EMPTY_PROMPT_FILE, "prompt": "", "negative_prompt": ""}
    return [*files, EMPTY_PROMPT_FILE]


TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_2_FILE = "tokenizer_2.json"


def _export_llava_prompt_encoders(pipe: Any, sink: GraphSink, entry: dict[str, Any]) -> list[str]:
    """HunyuanVideo-I2V's prompt encoders for conditioning without torch: LLaVA over the prompt template's tokens and
    the image (``text_encoder``), CLIP's pooled text embedding (``text_encoder_2``), both tokenizers and, in the
    pipeline ``entry``'s ``llava_prompts``, what the runtime needs to redo ``encode_prompt`` around the graphs: the
    template and crop (:func:`dymos.prepare.llava_prompt_settings`), the token ids it uses, the LLaVA image
    processor's settings. Returns the files written."""
    from dymos.images import clip_pixel_shape, image_processor_settings
    from dymos.prepare import llava_prompt_settings

    from .vae import export_clip_pooled_text_encoder, export_llava_prompt_encoder

    settings = llava_prompt_settings(pipe)
    tokenizer, tokenizer_2 = pipe.tokenizer, pipe.tokenizer_2
    for name, each in (("tokenizer", tokenizer), ("tokenizer_2", tokenizer_2)):
        if getattr(each, "backend_tokenizer", None) is None:
            raise ExportError(
                f"{name} ({type(each).__name__}) is not a fast tokenizer: no tokenizer.json for the runtime"
            )
    template = settings["template"]
    # the template's tokens with the one image placeholder expanded to the image's tokens
    length = settings["max_sequence_length"] + template["crop_start"] + template["image_emb_len"] - 1
    pixels = image_processor_settings(pipe.image_processor)
    pad_id = int(pipe.text_encoder.config.pad_token_id)
    sink.log(f"[text_encoder] exporting {type(pipe.text_encoder).__name__} at {length} tokens and the image")
    exported = export_llava_prompt_encoder(
        pipe.text_encoder,
        length=length,
        image_tokens=(template["image_emb_start"], template["image_emb_end"]),
        pixel_shape=clip_pixel_shape(pixels),
        pad_id=pad_id,
        skip=settings["skip_layers"],
        directory=sink.staging,
        **sink.graph_options(),
    )
    files = sink.record("text_encoder", exported)
    clip_length = settings["pooled_max_length"]
    sink.log(f"[text_encoder_2] exporting {type(pipe.text_encoder_2).__name__} (pooled) at {clip_length} tokens")
    exported = export_clip_pooled_text_encoder(
        pipe.text_encoder_2,
        length=clip_length,
        bos_id=int(tokenizer_2.bos_token_id),
        eos_id=int(tokenizer_2.eos_token_id),
        pad_id=int(tokenizer_2.pad_token_id),
        directory=sink.staging,
        **sink.graph_options(),
    )
    files += sink.record("text_encoder_2", exported)
    for file, each in ((TOKENIZER_FILE, tokenizer), (TOKENIZER_2_FILE, tokenizer_2)):
        atomic_write_bytes(sink.staging / file, each.backend_tokenizer.to_str().encode())
        files.append(file)

    def tokenizer_entry(file: str, each: Any, max_length: int) -> dict[str, Any]:
        return {
            "file": file,
            "max_length": max_length,
            "pad_id": int(each.pad_token_id),
            "pad_token": str(each.pad_token),
            "padding_side": each.padding_side,
            "truncation_side": each.truncation_side,
        }

    entry[LLAVA_PROMPTS] = {
        **settings,
        "tokenizer": tokenizer_entry(
            TOKENIZER_FILE, tokenizer, settings["max_sequence_length"] + template["crop_start"]
        ),
        "tokenizer_2": tokenizer_entry(TOKENIZER_2_FILE, tokenizer_2, clip_length),
        "image_token_id": int(pipe.text_encoder.config.image_token_index),
        "expanded_pad_id": pad_id,  # the pad of the expanded ids (the LLaVA config's, which may differ)
        "end_header_id": int(tokenizer.convert_tokens_to_ids("<|end_header_id|>")),
        "image_processor": pixels,
    }
    return files


def stores_empty_prompt(pipe: Any, recipe: dict[str, Any]) -> bool:
    """Whether the export can store the empty prompt's embeddings for conditioning without torch: not where a real
    text encoder encodes prompts together with the image (HunyuanVideo-I2V's LLaVA); pipelines without a text
    encoder store their seeded stand-ins."""
    return not (recipe.get("prompts_with_image") and getattr(pipe, "text_encoder", None) is not None)


def _jsonable(config: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(config, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def engine_precision(export_precision: str, requested: str | None = None) -> str:
    """The TensorRT build precision: as requested, else fp16 for an fp32 export (TensorRT then runs each layer in
    fp16 or fp32, whichever is faster: the usual engine of an fp32 graph) and the export's own otherwise."""
    if requested is None:
        return "fp16" if export_precision == "fp32" else export_precision
    if requested not in PRECISIONS:
        raise ExportError(f"unknown TensorRT precision {requested!r}; choose from {', '.join(PRECISIONS)}")
    return requested


def tensorrt_cache_dir() -> Path:
    """Where built engines and timing caches are kept between exports: ``$DYMOS_CACHE/tensorrt``, else
    ``$XDG_CACHE_HOME/dymos/tensorrt`` (``~/.cache/dymos/tensorrt``)."""
    root = os.environ.get("DYMOS_CACHE")
    if root:
        return Path(root).expanduser() / "tensorrt"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "dymos" / "tensorrt"


def _build_tensorrt(
    onnx_path: Path,
    spec: ExportSpec,
    options: ExportOptions,
    cases: Sequence[ParityCase],
    parity_dir: Path,
    log: Callable[[str], None],
) -> dict:
    """Check the ONNX graph against TensorRT's parser (CPU), build the engine (GPU, TensorRT installed; reused from
    the cache when one was built from the same graph, settings and GPU), and check it against the PyTorch outputs
    the ONNX parity saved, within the engine precision's tolerance (a failed check fails the export)."""
    from .tensorrt import TensorRTNotInstalledError, build_engine
    from .validate import validate_engine

    report = check_tensorrt_compat(onnx_path, tensorrt_version=tensorrt_version() or "10.14")
    report.raise_if_incompatible()
    log(f"[trt] graph passes the TensorRT ONNX-parser check ({sum(report.op_counts.values())} nodes)")
    trt_precision = engine_precision(options.precision, options.trt_precision)
    cache = tensorrt_cache_dir()
    try:
        engine = build_engine(
            onnx_path,
            spec,
            onnx_path.parent,
            precision=trt_precision,
            cache_dir=cache / "engines",
            timing_cache=cache / f"timing-{tensorrt_version()}.cache",
        )
    except TensorRTNotInstalledError as err:
        raise ExportError(
            f"{err}. The ONNX artifact is exportable here; build the engine on a GPU machine "
            "(`make setup GPU=1 && dymos export --formats onnx,trt ...`)"
        ) from err
    parity = validate_engine(engine, cases, parity_dir, precision=trt_precision)
    worst = max(case["max_abs_err"] for case in parity["cases"])
    log(f"[trt] {engine.name} ({trt_precision}) validated against PyTorch, max|err| {worst:.2e}")
    return {
        "file": engine.name,
        "precision": trt_precision,
        "tensorrt_version": tensorrt_version(),
        "profile": {
            name: {"min": list(lo), "opt": list(opt), "max": list(hi)} for name, (lo, opt, hi) in spec.profile().items()
        },
        "report": parity,
    }


def _pytorch_artifact(
    fmt: str,
    submodel: str,
    program: torch.export.ExportedProgram,
    wrapper: StrengthInputDenoiser,
    sample: ParityCase,
    job: DenoiserJob,
    staging: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Write one PyTorch 2 artifact, load it back and validate it; TorchScript may be unavailable (recorded)."""
    from . import pt2

    t0 = time.perf_counter()
    cases, precision = job.cases, job.options.precision
    path = staging / pt2.artifact_name(fmt, submodel)
    if fmt == "pt2":
        pt2.save_program(program, path)
        loaded, checked = pt2.load_program(path), cases
    elif fmt == "aoti":
        log("[aoti] compiling with AOTInductor (this takes a while)")
        pt2.compile_aoti(program, path)
        loaded, checked = pt2.load_aoti(path), cases
    else:
        try:
            pt2.trace_torchscript(wrapper, list(sample.inputs.values()), path)
        except Exception as err:  # the model does not trace: recorded, never declared built
            log(f"[torchscript] not available for this model: {type(err).__name__}: {str(err).splitlines()[0]}")
            return {"file": None, "validated": False, "reason": f"{type(err).__name__}: {str(err).splitlines()[0]}"}
        loaded = pt2.load_torchscript(path)
        checked = [  # traced: fixed shapes only, so vary the strength at the traced shapes
            sample,
            *(
                ParityCase(
                    f"{sample.name}_strength_{s:g}",
                    {**sample.inputs, STRENGTH_INPUT: torch.full_like(sample.inputs[STRENGTH_INPUT], s)},
                )
                for s in (0.0, 1.5)
            ),
        ]
    report = pt2.check_parity(fmt, loaded, wrapper, checked, precision)
    log(f"[{fmt}] {path.name} validated on {len(checked)} case(s) in {time.perf_counter() - t0:.1f}s")
    entry: dict[str, Any] = {"file": path.name, "validated": True, "parity": report}
    if fmt == "torchscript":
        entry["fixed_shapes"] = {k: list(v.shape) for k, v in sample.inputs.items()}
    return entry


def _sequence_length(wrapper: StrengthInputDenoiser, case: ParityCase) -> int:
    """The self-attention length at the sample size, to reject any L x L constant in the graph."""
    from dymos.layouts import token_grid

    kwargs, _ = wrapper.model_kwargs(dict(zip(wrapper.tensor_names, case.inputs.values())))
    grid = token_grid(wrapper.handle.layout, wrapper.model.config, kwargs)
    return grid.frames if wrapper.handle.layout.temporal_sequences else grid.video_tokens


def _layout_dict(family: str) -> dict[str, Any]:
    layout = FAMILIES[family]
    return {
        "video_position": layout.video_position,
        "attention_patterns": list(layout.attention_patterns),
        "temporal_sequences": layout.temporal_sequences,
        "reference": "first token-frame of the video",
        "biased_queries": "video tokens after the first token-frame",
    }


def _sibling_prefix(target: Path, kind: str) -> str:
    """The name prefix of the hidden dirs an export makes beside ``target``: ``partial`` (staging) or ``old`` (the
    previous export, set aside during the swap). One spelling for making them and for sweeping them up."""
    return f".{target.name}.{kind}-"


LEFTOVER_AGE_S = 24 * 3600  # a killed export's staging or set-aside dir this old is no live export's


def _sweep_leftovers(target: Path, log: Callable[[str], None], max_age_s: float = LEFTOVER_AGE_S) -> None:
    """Remove what killed exports to ``target`` left beside it, once older than ``max_age_s`` (a younger one may
    be a concurrent export's): ``.NAME.partial-*`` staging dirs (never loadable) and ``.NAME.old-*`` set-aside
    exports where ``target`` exists. An ``.old-*`` with no ``target`` is the last good export of a run killed
    mid-swap: it is kept and named, never deleted."""
    now = time.time()
    partial, old = _sibling_prefix(target, "partial"), _sibling_prefix(target, "old")
    for leftover in sorted(target.parent.glob(f".{target.name}.*-*")):
        if not leftover.name.startswith((partial, old)) or not leftover.is_dir():
            continue
        if leftover.name.startswith(old) and not target.exists():
            log(f"warning: {leftover} holds the export an interrupted run set aside; move it to {target} to keep it")
            continue
        try:
            age = now - leftover.stat().st_mtime
        except OSError:
            continue
        if age > max_age_s:
            shutil.rmtree(leftover, ignore_errors=True)
            log(f"removed {leftover}: left by an export killed {age / 3600:.0f} h ago")


def _replace_dir(staging: Path, target: Path) -> None:
    """Move the finished staging dir to ``target``; an older export there is set aside first and removed only after
    the swap, or put back if the swap fails (so ``target`` is always the old export or the new one)."""
    old = None
    if target.exists():
        # a fresh empty name (rename replaces an empty dir): a leftover of a crashed run cannot collide
        old = Path(tempfile.mkdtemp(prefix=_sibling_prefix(target, "old"), dir=target.parent))
        try:
            os.replace(target, old)
        except BaseException:
            old.rmdir()
            raise
    try:
        os.replace(staging, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
