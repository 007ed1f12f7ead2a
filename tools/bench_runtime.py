"""Runtime benchmarks (`make bench`, second part): per-step runtime overhead, the whole-run cost of DyMoS, and
the torch-free runtime against the diffusers pipeline — ratios measured side by side in one run.

On a runtime-driven pipeline (``--model``: the shipped sprite model by default, or ``tiny-pipeline:wan22``;
CPU, onnxruntime). Every figure is a median over interleaved repeats, so machine noise hits both sides of a
ratio alike. Run: ``python tools/bench_runtime.py [--model ...]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _export(model: str, out: Path) -> Path:
    from dymos.export.build import ExportOptions, run_export

    return run_export(ExportOptions(model=model, out=out), log=lambda line: None).directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sprites", help="a pipeline the runtime drives (default sprites)")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps per run (default 20)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats per variant (default 5)")
    parser.add_argument("--strength", type=float, default=2.0, help="DyMoS strength (default 2)")
    parser.add_argument("--fraction", type=float, default=0.2, help="DyMoS on for this first fraction (default 0.2)")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    import torch
    from PIL import Image

    import dymos
    from dymos.models import load_pipeline
    from dymos.prepare import prepare
    from dymos.runtime.artifacts import ExportDir
    from dymos.runtime.backends import open_backend, open_stock_backend
    from dymos.runtime.loop import RunRequest, load_conditioning, sample
    from dymos.schedule import StrengthSchedule

    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="dymos-bench-runtime-"))
    print(f"exporting {args.model} to {work} ...", flush=True)
    export_dir = _export(args.model, work)
    image_path = work / "input.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(image_path)
    cond_path = prepare(export_dir, image_path, "a ball bouncing", work / "cond.npz")
    export = ExportDir.open(export_dir)
    cond = load_conditioning(str(cond_path))
    denoiser, decoder, stock = open_backend(export), open_backend(export, "vae_decoder"), open_stock_backend(export)
    video = export.manifest["pipeline"]["video"]
    schedule = StrengthSchedule(fraction=args.fraction)

    def runtime_run(strength: float):
        request = RunRequest(strength=strength, steps=args.steps, guidance_scale=5.0, schedule=schedule)
        t0 = time.perf_counter()
        result = sample(export, cond, request, denoiser=denoiser, decoder=decoder, stock=stock)
        return time.perf_counter() - t0, result

    pipe = load_pipeline(args.model)
    image = Image.open(image_path).convert("RGB")
    prompt = torch.from_numpy(cond["prompt_embeds"])
    negative = torch.from_numpy(cond["negative_prompt_embeds"])

    def diffusers_run() -> float:
        t0 = time.perf_counter()
        with dymos.enable(pipe, strength=args.strength, fraction=args.fraction):
            pipe(
                image=image,
                prompt_embeds=prompt,
                negative_prompt_embeds=negative,
                height=video["height"],
                width=video["width"],
                num_frames=video["frames"],
                num_inference_steps=args.steps,
                guidance_scale=5.0,
                output_type="np",
            )
        return time.perf_counter() - t0

    runtime_run(args.strength)  # warm-up: sessions, caches
    diffusers_run()
    on, zero, ref, overhead = [], [], [], []
    engine_on, engine_zero = [], []  # per-step engine ms: where the whole-run difference comes from
    for repeat in range(args.repeats):
        order = [0, 1, 2] if repeat % 2 == 0 else [2, 1, 0]
        for which in order:
            if which == 0:
                seconds, result = runtime_run(args.strength)
                on.append(seconds)
                engine_on.append(np.asarray(result.engine_seconds) * 1000)
                steps = np.asarray(result.step_seconds)
                overhead.append(float(np.median((steps - np.asarray(result.engine_seconds)) / steps)))
            elif which == 1:
                seconds, result = runtime_run(0.0)
                zero.append(seconds)
                engine_zero.append(np.asarray(result.engine_seconds) * 1000)
            else:
                ref.append(diffusers_run())
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)

    med = statistics.median
    step_on, step_zero = np.median(np.stack(engine_on), axis=0), np.median(np.stack(engine_zero), axis=0)
    dymos_steps = sum(1 for i in range(args.steps) if schedule.multiplier(i, args.steps) > 0)
    rows = {
        "runtime_overhead_share_of_step": med(overhead),
        "dymos_run_seconds": med(on),
        "strength0_run_seconds": med(zero),
        "dymos_vs_strength0": med(on) / med(zero),
        "diffusers_pipeline_seconds": med(ref),
        "runtime_vs_diffusers": med(on) / med(ref),
        "dymos_steps": dymos_steps,
        "engine_ms_dymos_steps": float(step_on[:dymos_steps].sum()),
        "engine_ms_same_steps_at_s0": float(step_zero[:dymos_steps].sum()),
        "engine_ms_first_stock_step_after_switch": float(step_on[dymos_steps]) if dymos_steps < args.steps else None,
        "engine_ms_same_step_at_s0": float(step_zero[dymos_steps]) if dymos_steps < args.steps else None,
    }
    print()
    print(
        f"{args.model} (Wan I2V pipeline), {video['frames']} frames {video['height']}x{video['width']}, "
        f"{args.steps} steps, "
        f"CFG 5, DyMoS s={args.strength:g} on the first {args.fraction:.0%}; median of {args.repeats}"
    )
    print(
        f"  per-step runtime overhead (all but the engine call): {rows['runtime_overhead_share_of_step']:.1%} "
        "of step time   [target <= 2%]"
    )
    print(
        f"  whole run, DyMoS on vs strength 0: {rows['dymos_run_seconds'] * 1000:.0f} ms vs "
        f"{rows['strength0_run_seconds'] * 1000:.0f} ms = {rows['dymos_vs_strength0']:.3f}x   [target <= 1.01x]"
    )
    print(
        f"    engine time of the {dymos_steps} DyMoS steps: {rows['engine_ms_dymos_steps']:.1f} ms vs "
        f"{rows['engine_ms_same_steps_at_s0']:.1f} ms for the same steps at s=0; "
        f"the first stock step after the switch: {rows['engine_ms_first_stock_step_after_switch']:.1f} ms "
        f"vs {rows['engine_ms_same_step_at_s0']:.1f} ms"
    )
    print(
        f"  runtime end to end vs diffusers pipeline (both with DyMoS): {rows['dymos_run_seconds'] * 1000:.0f} ms vs "
        f"{rows['diffusers_pipeline_seconds'] * 1000:.0f} ms = {rows['runtime_vs_diffusers']:.2f}x   [target < 1x]"
    )
    print(
        f"  ({platform.processor() or platform.machine()}, python {platform.python_version()}, "
        f"torch {torch.__version__}; command: {' '.join(sys.argv)})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
