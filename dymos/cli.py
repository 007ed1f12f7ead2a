"""The ``dymos`` command: subcommands over the library (probe, export, inspect, prepare, run, sweep).

Heavy imports (torch, diffusers) happen inside the subcommands so ``dymos --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from dymos import __version__
from dymos.sprites import add_sprites_argument

LIST_OPTIONS = ("--strength", "--strengths")  # take comma-separated numbers that may start with a minus
NEGATIVE_LIST = re.compile(r"-[0-9.][0-9.eE+-]*(,[-+0-9.eE]+)+")


def _attach_negative_lists(argv: Sequence[str]) -> list[str]:
    """``--strength -1,0`` as ``--strength=-1,0``: argparse takes a value that starts with a minus for an option
    unless it reads as one number, so a list of strengths that starts below zero would be refused."""
    out: list[str] = []
    for token in argv:
        if out and out[-1] in LIST_OPTIONS and NEGATIVE_LIST.fullmatch(token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def _floats(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _int_at_least(text: str, minimum: int) -> int:
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}" if minimum else "a non-negative integer"
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from err
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return value


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def _non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from err
    if not value >= 0 or value == float("inf"):  # NaN fails the comparison
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def _seeds(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integer seeds, got {text!r}")
    return values


def _layers(text: str) -> list[int | str]:
    return [int(x) if x.strip().lstrip("-").isdigit() else x.strip() for x in text.split(",") if x.strip()]


def _add_probe(sub: argparse._SubParsersAction) -> None:
    from dymos.catalog import DEFAULT_MODEL

    p = sub.add_parser(
        "probe",
        help="attention mass that non-reference queries give to reference keys, per layer and strength",
        description=(
            "Run the denoiser once per strength with DyMoS on every selected layer and report the mean attention "
            "probability that non-reference-frame queries put on reference-frame keys. Inputs are seeded random "
            "latents and conditioning of the model's shapes."
        ),
    )
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"sprites (the shipped model), tiny:<case> or a local diffusers checkpoint dir (default {DEFAULT_MODEL})",
    )
    p.add_argument(
        "--strengths", type=_floats, default=[0.0, 1.0, 2.0, 4.0], help="comma-separated strengths (default 0,1,2,4)"
    )
    p.add_argument(
        "--frames",
        type=_positive_int,
        default=None,
        help="latent frames of the probe input (after the VAE's compression, unlike export's video --frames)",
    )
    p.add_argument(
        "--height",
        type=_positive_int,
        default=None,
        help="latent height, not pixels (default: the family's small default)",
    )
    p.add_argument("--width", type=_positive_int, default=None, help="latent width, not pixels")
    p.add_argument("--batch", type=_positive_int, default=1, help="batch size (default 1)")
    p.add_argument(
        "--layers", type=_layers, default=None, help="comma-separated layer indices or module names (default all)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (and tiny weights)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=_run_probe)


def _run_probe(args: argparse.Namespace) -> int:
    from dymos.inputs import default_frames, example_inputs
    from dymos.layouts import layout_for
    from dymos.models import load_denoiser
    from dymos.probe import attention_mass
    from dymos.schedule import validate_strength

    validate_strength(args.strengths)
    model = load_denoiser(args.model, seed=args.seed)
    family = layout_for(model).family
    frames = args.frames or default_frames(model.config)
    inputs = example_inputs(
        family,
        dict(model.config),
        batch=args.batch,
        frames=frames,
        height=args.height,
        width=args.width,
        seed=args.seed,
    )
    report = attention_mass(model, inputs, args.strengths, layers=args.layers)
    if args.json:
        print(json.dumps({"model": args.model, "class": type(model).__name__, **report.as_dict()}, indent=2))
    else:
        print(f"{args.model} ({type(model).__name__}), {frames} frames, batch {args.batch}")
        print(report.table())
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    from dymos.catalog import DEFAULT_EXPORT_MODEL, TINY_PIPELINES

    p = sub.add_parser(
        "export",
        help="export a DyMoS denoiser to ONNX / TensorRT / PyTorch 2 with motion_strength as a runtime input",
        description=(
            "Export the DyMoS-patched denoiser with `motion_strength` (float32 [batch]) as a graph input, validate "
            "every artifact against PyTorch (onnxruntime via polygraphy, at strength 0, 1.5, a mixed per-item batch "
            "and another batch/frame count) and write OUT/NAME/ with manifest.json. A failed validation fails the "
            "export and leaves any previous export in place."
        ),
    )
    p.add_argument(
        "--model",
        default=DEFAULT_EXPORT_MODEL,
        help=f"sprites (the shipped trained model), tiny-pipeline:{'|'.join(TINY_PIPELINES)}, tiny:<case>, a family "
        f"name, or a local diffusers model/pipeline dir (default {DEFAULT_EXPORT_MODEL})",
    )
    p.add_argument("--out", default="build", help="output root (default build/)")
    p.add_argument("--name", default=None, help="artifact dir name under --out (default: from the model)")
    p.add_argument(
        "--formats",
        default="onnx",
        type=lambda t: [x.strip() for x in t.split(",") if x.strip()],
        help="comma-separated: onnx, trt, pt2, aoti, torchscript (default onnx)",
    )
    p.add_argument(
        "--precision", default="fp32", choices=["fp32", "fp16", "bf16"], help="weights/activations (default fp32)"
    )
    p.add_argument(
        "--trt-precision",
        default=None,
        choices=["fp32", "fp16", "bf16"],
        help="TensorRT engines: the build precision (default: fp16 for an fp32 export, TensorRT choosing fp16 or "
        "fp32 per layer; else the export's). Engines are cached in $DYMOS_CACHE/tensorrt (default "
        "~/.cache/dymos/tensorrt) with TensorRT's timing cache",
    )
    p.add_argument(
        "--strategy",
        default=None,
        choices=["mask", "split", "fold"],
        help="bias strategy (default: split for opset <= 22, fold for 23)",
    )
    p.add_argument(
        "--fold-pad-to",
        type=_positive_int,
        default=None,
        help="fold only: pad the head dim to a multiple of this (default: 8 with --formats ...trt, else 1)",
    )
    p.add_argument(
        "--opset",
        type=int,
        default=20,
        help="ONNX opset, 17-23: attention as MatMul/Softmax up to 22, as one Attention op at 23 (default 20)",
    )
    p.add_argument("--batch", type=_positive_int, default=1, help="batch size to optimise for (default 1)")
    p.add_argument("--max-batch", type=_positive_int, default=4, help="largest batch the artifacts accept (default 4)")
    p.add_argument(
        "--frames",
        type=_positive_int,
        default=None,
        help="video frames (e.g. Wan: 4n+1; default: a shipped model's trained size, else a small one)",
    )
    p.add_argument("--height", type=_positive_int, default=None, help="video height in pixels")
    p.add_argument("--width", type=_positive_int, default=None, help="video width in pixels")
    p.add_argument("--seed", type=int, default=0, help="seed of the tiny weights and parity inputs")
    p.set_defaults(handler=_run_export)


def _quiet_torch_export_noise() -> None:
    """The exporters log warnings that are not the user's business (torchvision ops absent, tracer notes)."""
    import logging
    import warnings

    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    logging.getLogger("torch.export.pt2_archive._package").setLevel(logging.ERROR)
    logging.getLogger("onnxscript.optimizer._constant_folding").setLevel(logging.ERROR)
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    import torch.jit

    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)


def _run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dymos.export.build import ExportError, ExportOptions, run_export
    from dymos.export.validate import ParityError

    _quiet_torch_export_noise()
    options = ExportOptions(
        model=args.model,
        out=Path(args.out),
        name=args.name,
        formats=args.formats,
        precision=args.precision,
        trt_precision=args.trt_precision,
        strategy=args.strategy,
        fold_pad_to=args.fold_pad_to,
        opset=args.opset,
        batch=args.batch,
        max_batch=args.max_batch,
        frames=args.frames,
        height=args.height,
        width=args.width,
        seed=args.seed,
    )
    try:
        result = run_export(options, log=lambda line: print(line, flush=True))
    except (ExportError, ParityError) as err:
        print(f"dymos export: error: {err}", file=sys.stderr)
        return 1
    print(f"manifest: {result.directory / 'manifest.json'}")
    return 0


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="encode an image and a prompt for `dymos run` (the torch side: pipeline encoders)",
        description=(
            "Run the exported pipeline's own encoders once (prompt embeddings, with the image for HunyuanVideo-I2V's "
            "LLaVA; image embeddings where the model takes them; the VAE-encoded first frame) and save them to a "
            ".npz that `dymos run --cond` reads without torch. "
            "The image is resized to the export's height x width (aspect ratio not preserved), as the pipeline does."
        ),
    )
    p.add_argument("--export", required=True, help="the folder `dymos export` wrote for a pipeline")
    p.add_argument("--image", required=True, help="the conditioning (first) frame")
    p.add_argument(
        "--prompt",
        default="",
        help="text prompt (pipelines without a text encoder, e.g. the shipped model, map it to a seeded embedding; "
        "SVD takes none)",
    )
    p.add_argument("--negative-prompt", default="", help="negative prompt for classifier-free guidance")
    p.add_argument(
        "--seed",
        type=_non_negative_int,
        default=0,
        help="seed of the random draws here (CogVideoX image latents, SVD noise aug)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="the exported checkpoint's folder where it moved (default: the folder the export recorded; weights that "
        "changed since the export are refused)",
    )
    _add_micro_conditioning(p)
    p.add_argument("--out", default="conditioning.npz", help="output .npz (default conditioning.npz)")
    p.set_defaults(handler=_run_prepare)


MICRO_DEFAULTS = {"cond_fps": 7, "motion_bucket_id": 127, "noise_aug_strength": 0.02}
# what `dymos run` encodes when it makes the conditioning itself, and their values when not given
ENCODING_DEFAULTS = {"image": None, "model": None, "prompt": "", "negative_prompt": "", **MICRO_DEFAULTS}


def _add_micro_conditioning(p: argparse.ArgumentParser) -> None:
    """SVD's micro-conditioning options, shared by `dymos prepare` and `dymos run --image`."""
    defaults = MICRO_DEFAULTS
    p.add_argument(
        "--cond-fps",
        type=_positive_int,
        default=defaults["cond_fps"],
        help=f"SVD: the fps micro-conditioning (default {defaults['cond_fps']})",
    )
    p.add_argument(
        "--motion-bucket-id",
        type=_non_negative_int,
        default=defaults["motion_bucket_id"],
        help=f"SVD: motion bucket id (default {defaults['motion_bucket_id']})",
    )
    p.add_argument(
        "--noise-aug-strength",
        type=_non_negative_float,
        default=defaults["noise_aug_strength"],
        help=f"SVD: image noise augmentation (default {defaults['noise_aug_strength']})",
    )


def _run_prepare(args: argparse.Namespace) -> int:
    from dymos.prepare import prepare

    _quiet_torch_export_noise()
    out = prepare(
        args.export,
        args.image,
        args.prompt,
        args.out,
        negative_prompt=args.negative_prompt,
        seed=args.seed,
        fps=args.cond_fps,
        motion_bucket_id=args.motion_bucket_id,
        noise_aug_strength=args.noise_aug_strength,
        model=args.model,
    )
    print(f"conditioning: {out}")
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    from dymos.runtime.backends import THREADING

    p = sub.add_parser(
        "run",
        help="generate a video from exported artifacts (numpy + an engine backend; torch only for `dymos prepare`)",
        description=(
            "Drive the sampling loop on the exported engines: seeded latents, classifier-free guidance, the DyMoS "
            "strength fed every step as the runtime tensor (on for the first --fraction of the steps), VAE decode, "
            "and a video file. Without --cond, --image is encoded without torch by the export's condition encoder "
            "graph (CogVideoX's posterior sample and SVD's noise augmentation drawn from --seed) and its CLIP image "
            "encoder graph where the pipeline has one (Wan 2.1, SVD), and --prompt by its text encoder graph (Wan, "
            "CogVideoX, LTX; the empty prompt's embeddings are stored) or HunyuanVideo-I2V's LLaVA and CLIP graphs "
            "(with the image); a prompt the export cannot encode goes through `dymos prepare` (needs torch)."
        ),
    )
    p.add_argument(
        "--export", default="build/sprites", help="export folder (default build/sprites, what `make export` writes)"
    )
    p.add_argument("--cond", default=None, help="conditioning .npz from `dymos prepare`")
    p.add_argument("--image", default=None, help="conditioning image (when --cond is not given)")
    p.add_argument(
        "--model",
        default=None,
        help="where the prepare step (torch) finds the exported checkpoint if it moved (as `dymos prepare --model`)",
    )
    p.add_argument(
        "--prompt",
        default="",
        help="prompt (when --cond is not given): encoded by the export's text encoder graph where the pipeline had "
        "one (no torch), else by `dymos prepare` (needs torch)",
    )
    p.add_argument(
        "--negative-prompt",
        default="",
        help="negative prompt for classifier-free guidance (when --cond is not given; encoded like --prompt)",
    )
    p.add_argument(
        "--strength", type=_floats, default=[2.0], help="motion strength, or one per video: 0,2,4 (default 2)"
    )
    when = p.add_mutually_exclusive_group()
    when.add_argument(
        "--fraction", type=float, default=None, help="DyMoS on for this first fraction of the steps (default 0.2)"
    )
    when.add_argument(
        "--first-steps", type=_non_negative_int, default=None, help="DyMoS on for the first N steps instead"
    )
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="denoising steps (default: the pipeline's own, recorded in the manifest at export; else 20)",
    )
    p.add_argument(
        "--guidance",
        type=_non_negative_float,
        default=None,
        help="CFG scale (SVD: the top of its per-frame ramp from 1); default: the pipeline's own, recorded in the "
        "manifest at export (a shipped model's where it sets one); else 5",
    )
    p.add_argument(
        "--guidance-2",
        type=float,
        default=None,
        help="CFG scale of the low-noise expert of a two-expert export (Wan 2.2 A14B); default: the model's "
        "guidance_scale_2 from the manifest, else --guidance",
    )
    p.add_argument(
        "--embedded-guidance",
        type=float,
        default=None,
        help="the guidance-embedding value of models that have one (HunyuanVideo's guidance_scale; --guidance is "
        "its true CFG scale); default: the pipeline's (1)",
    )
    p.add_argument(
        "--seed",
        type=_non_negative_int,
        default=0,
        help="seed of the initial noise (and, with --image, of CogVideoX's image-latent sample and SVD's noise "
        "augmentation)",
    )
    p.add_argument(
        "--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime", "aoti"], help="engine backend"
    )
    p.add_argument(
        "--threading",
        default="shared",
        choices=THREADING,
        help="onnxruntime CPU threads: one pool shared by every session (default; no busy-waiting pool of the last "
        "session competes with the next), onnxruntime's per-session pools, or per-session pools without spinning",
    )
    p.add_argument(
        "--fps",
        type=_positive_int,
        default=None,
        help="frames per second of the output file (default: the pipeline's, e.g. Wan 16, CogVideoX 8; else 16)",
    )
    p.add_argument(
        "--no-verify-hashes",
        action="store_true",
        help="check the artifacts' sizes but not their sha256 (saves reading multi-GB weights at every start)",
    )
    _add_micro_conditioning(p)
    p.add_argument(
        "--out",
        default="video.mp4",
        help="output .mp4, .gif or .png (frames); several strengths write one file each, NAME_s<strength> (and "
        "_<item> after it when a strength repeats)",
    )
    p.set_defaults(handler=_run_run)


def _run_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dymos.runtime.artifacts import ExportDir
    from dymos.runtime.backends import BACKENDS, open_backend, open_low_noise, open_stock_backend
    from dymos.runtime.conditioning import (
        MicroConditioning,
        image_conditioning,
        supports_image_conditioning,
        supports_prompts,
        takes_prompts,
    )
    from dymos.runtime.loop import RunRequest, check_conditioning, check_request, load_conditioning, sample
    from dymos.runtime.video import VIDEO_FORMATS, write_video
    from dymos.schedule import StrengthSchedule

    if Path(args.out).suffix.lower() not in VIDEO_FORMATS:
        raise ValueError(f"unsupported --out {args.out!r}: use one of {', '.join(VIDEO_FORMATS)}")
    ignored = [name for name, default in ENCODING_DEFAULTS.items() if getattr(args, name) != default]
    if args.cond is not None and ignored:
        flags = ", ".join("--" + name.replace("_", "-") for name in ignored)
        raise ValueError(f"{flags} would be ignored: --cond {args.cond} is encoded already; give one or the other")
    export = ExportDir.open(args.export, verify_hashes=not args.no_verify_hashes)
    defaults = (export.manifest.get("pipeline") or {}).get("defaults", {})
    steps = args.steps if args.steps is not None else int(defaults.get("steps", 20))
    guidance = args.guidance if args.guidance is not None else float(defaults.get("guidance_scale", 5.0))
    if args.guidance_2 is None and "guidance_scale_2" in defaults:
        args.guidance_2 = float(defaults["guidance_scale_2"])
    if args.negative_prompt and max(guidance, args.guidance_2 or 0.0) <= 1:
        # no unconditional pass to take it (and on exports without a text encoder it would cost a torch prepare)
        print(f"note: --negative-prompt does nothing at guidance {guidance:g} (no CFG): dropped", file=sys.stderr)
        args.negative_prompt = ""
    schedule = StrengthSchedule(first_steps=args.first_steps, fraction=args.fraction)
    request = RunRequest(
        strength=args.strength,
        steps=steps,
        guidance_scale=guidance,
        guidance_scale_2=args.guidance_2,
        embedded_guidance=args.embedded_guidance,
        seed=args.seed,
        schedule=schedule,
    )
    check_request(export, request)  # before conditioning: that can load encoders or a whole torch pipeline
    if args.cond is not None:
        cond = load_conditioning(args.cond, export)
    elif args.image is None:
        raise ValueError("give --cond (from `dymos prepare`) or --image (and --prompt)")
    elif supports_image_conditioning(export) and (
        not (args.prompt or args.negative_prompt) or supports_prompts(export) or not takes_prompts(export)
    ):  # the exported condition (image, text) encoders: no torch (the last case: a clear refusal there)
        micro = MicroConditioning(args.cond_fps, args.motion_bucket_id, args.noise_aug_strength)
        cond = image_conditioning(
            export, args.image, prompt=args.prompt, negative_prompt=args.negative_prompt, seed=args.seed, micro=micro
        )
        if "negative_condition" in cond:  # SVD: no prompt, zeros for the unconditional pass
            text = "no prompt (the image alone)"
        elif args.prompt:
            text = f"the prompt {args.prompt!r} (exported text encoder)"
        else:
            text = "the empty prompt"
        if args.negative_prompt:
            text += f", negative prompt {args.negative_prompt!r}"
        print(f"conditioned on {args.image} with the exported condition encoder and {text}")
    else:
        try:
            from dymos.prepare import prepare
        except ImportError as err:
            raise ValueError(
                f"this export cannot encode {'the prompt' if args.prompt or args.negative_prompt else 'the image'} "
                f"without torch ({err}): install torch, or run `dymos prepare` where it is and pass --cond"
            ) from err

        _quiet_torch_export_noise()
        out = Path(args.out).with_suffix(".cond.npz")
        args.cond = str(
            prepare(
                args.export,
                args.image,
                args.prompt,
                out,
                negative_prompt=args.negative_prompt,
                seed=args.seed,
                fps=args.cond_fps,
                motion_bucket_id=args.motion_bucket_id,
                noise_aug_strength=args.noise_aug_strength,
                model=args.model,
            )
        )
        cond = load_conditioning(args.cond, export)
    check_conditioning(export, cond, request)  # before any engine is loaded
    prefer = BACKENDS if args.backend == "auto" else (args.backend,)

    def note(reason: str) -> None:  # why an engine the export has was not used (e.g. a stale TensorRT engine)
        print(f"note: {reason}", file=sys.stderr)

    skipped = note if args.backend == "auto" else None  # an explicit --backend fails with the reason instead
    denoiser = open_backend(export, "denoiser", prefer=prefer, threading=args.threading, on_skip=skipped)
    decoder = open_backend(export, "vae_decoder", threading=args.threading, on_skip=skipped)
    stock = open_stock_backend(export, threading=args.threading, beside=denoiser)
    # Wan 2.2 A14B's second expert, on the same backend choice
    low_noise = open_low_noise(export, prefer=prefer, threading=args.threading, on_skip=skipped)

    def progress(step: int, total: int, seconds: float) -> None:
        bar = "#" * (20 * step // total)
        print(
            f"\r[{bar:<20}] step {step}/{total} {seconds * 1000:.0f} ms", end="" if step < total else "\n", flush=True
        )

    print(
        f"{denoiser.name}: {steps} steps, guidance {guidance:g}"
        + ("" if args.guidance_2 is None else f" (low-noise expert {args.guidance_2:g})")
        + ("" if args.embedded_guidance is None else f", embedded guidance {args.embedded_guidance:g}")
        + f", strength {args.strength} ({schedule.describe()}), seed {args.seed}"
    )
    result = sample(
        export, cond, request, denoiser=denoiser, decoder=decoder, stock=stock, low_noise=low_noise, progress=progress
    )
    for frames, target in zip(result.frames, _video_paths(Path(args.out), args.strength), strict=True):
        written = write_video(frames, target, fps=args.fps or int(defaults.get("fps", 16)))
        print(f"wrote {written[0]}" + (f" (+{len(written) - 1} frames)" if len(written) > 1 else ""))
    engine = sum(result.engine_seconds)
    total = sum(result.step_seconds)
    print(f"{total:.2f}s sampling ({total / len(result.step_seconds) * 1000:.0f} ms/step, engine {engine / total:.0%})")
    return 0


def _video_paths(out: Path, strengths: Sequence[float]) -> list[Path]:
    """One output per video: ``out`` itself for one, else ``NAME_s<strength>``, with the item index after it when a
    strength repeats (so no video overwrites another)."""
    if len(strengths) == 1:
        return [out]
    tags = [f"s{s:g}" for s in strengths]
    if len(set(tags)) < len(tags):
        tags = [f"{tag}_{i}" for i, tag in enumerate(tags)]
    return [out.with_name(f"{out.stem}_{tag}{out.suffix}") for tag in tags]


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="verify an export folder and summarise it: graphs, input ranges, artifacts, TensorRT compatibility",
        description=(
            "Check an export folder against its manifest (every file's size and sha256: after copying it to another "
            "machine, for instance) and print what it holds: the model and export options, the motion-strength "
            "input, each graph's inputs with their exported ranges, its artifacts and how they were validated, and "
            "whether a TensorRT engine matches the TensorRT installed here. Runs nothing; no torch needed. Exits 1 "
            "with the reason when a file is missing, modified or the manifest does not match."
        ),
    )
    p.add_argument("export", help="the folder `dymos export` wrote (e.g. build/sprites)")
    p.add_argument("--json", action="store_true", help="print the manifest itself (after the same verification)")
    p.add_argument("--no-verify-hashes", action="store_true", help="check sizes only (fast on multi-GB weights)")
    p.set_defaults(handler=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    from dymos.runtime.artifacts import ExportDir
    from dymos.runtime.summary import describe_export, installed_tensorrt_version

    export = ExportDir.open(args.export, verify_hashes=not args.no_verify_hashes)
    if args.json:
        print(json.dumps(export.manifest, indent=2))
        return 0
    lines = describe_export(export, tensorrt=installed_tensorrt_version(), hashes_verified=not args.no_verify_hashes)
    print("\n".join(lines))
    return 0


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="measure the motion slider: videos per strength on held-out sprite clips, metrics and win rates",
        description=(
            "Generate one video per strength (and schedule) for each held-out sprite clip's first frame and each noise "
            "seed, all strengths from the same noise, then report object-level motion, shape preservation and "
            "frame-0 fidelity per strength, with paired win rates against strength 0 and the real clips as reference. "
            "Writes OUT/sweep.json, OUT/sweep.md and OUT/strip.png. Needs a sprite-model export (`make export`)."
        ),
    )
    p.add_argument("--export", default="build/sprites", help="export folder (default build/sprites)")
    p.add_argument(
        "--strengths", type=_floats, default=[0.0, 1.0, 2.0, 4.0, 8.0], help="strengths, 0 included (default 0,1,2,4,8)"
    )
    p.add_argument(
        "--fractions", type=_floats, default=[0.2], help="schedules: DyMoS on for these first fractions (default 0.2)"
    )
    p.add_argument("--clips", type=_positive_int, default=64, help="held-out clips (default 64)")
    p.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="noise seeds per clip (default 0,1,2)")
    p.add_argument("--data-seed", type=int, default=1, help="dataset seed of the clips (training used 0; default 1)")
    add_sprites_argument(p)
    p.add_argument("--steps", type=_positive_int, default=None, help="denoising steps (default: the model's)")
    p.add_argument("--guidance", type=_non_negative_float, default=None, help="CFG scale (default: the model's)")
    p.add_argument(
        "--model",
        default=None,
        help="the exported checkpoint's folder where it moved (default: the folder the export recorded; weights that "
        "changed since the export are refused)",
    )
    p.add_argument("--out", default="build/sweep", help="output folder (default build/sweep)")
    p.set_defaults(handler=_run_sweep)


def _run_sweep(args: argparse.Namespace) -> int:
    from dymos.sweep import SweepConfig, probe_table, run_sweep, table

    _quiet_torch_export_noise()
    config = SweepConfig(
        strengths=args.strengths,
        fractions=args.fractions,
        clips=args.clips,
        seeds=args.seeds,
        data_seed=args.data_seed,
        sprites=args.sprites,
        steps=args.steps,
        guidance_scale=args.guidance,
    )
    document = run_sweep(args.export, args.out, config, log=lambda line: print(line, flush=True), model=args.model)
    print(table(document["summary"]))
    print(probe_table(document["probe"]))
    print(f"wrote {args.out}/sweep.json, sweep.md, strip.png")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dymos",
        description=(
            "DyMoS (Dynamic Motion Slider) for diffusers image-to-video models: probe, export, prepare, run, "
            "inspect, sweep."
        ),
    )
    parser.add_argument("--version", action="version", version=f"dymos {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_probe(sub)
    _add_export(sub)
    _add_prepare(sub)
    _add_run(sub)
    _add_inspect(sub)
    _add_sweep(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_attach_negative_lists(sys.argv[1:] if argv is None else argv))
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except (ValueError, TypeError, OSError, RuntimeError) as err:
        print(f"dymos {args.command}: error: {err}", file=sys.stderr)
        return 1
