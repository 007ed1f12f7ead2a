"""Runtime benchmarks (`make bench`, second part): per-step runtime overhead, the whole-run cost of DyMoS, and
the torch-free runtime against the diffusers pipeline — ratios measured side by side in one run.

On a runtime-driven pipeline (``--model``: the shipped sprite model by default, or ``tiny-pipeline:wan22``; CPU,
onnxruntime). Every figure is a median over interleaved repeats, so machine noise hits both sides of a ratio alike;
the whole-run ratio is the median of per-repeat ratios (both runs of a pair come from the same round of the
interleaving, back to back with one strategy, so a slow stretch of the machine falls on both), with its quartiles to
show the spread and a distribution-free 95 % confidence interval of that median (order statistics, no resampling):
the target counts as met only when the whole interval is under it, missed when the whole interval is over it, and
undecided otherwise; more ``--repeats`` narrow it. Run: ``python tools/bench_runtime.py [--model ...]``.
``--strategies split,mask,fold`` exports the model once per DyMoS strategy and measures each one's whole-run cost
against the same strength-0 run (the stock graph is the same for all of them), so the cheapest strategy at this size
can be read off one run. ``--threading`` picks the onnxruntime thread setups (see ``OnnxRuntimeBackend``):
``shared`` by default, the one ``dymos run`` uses; ``shared,per-session`` opens every engine set once per setup in
one process and measures each against its own strength-0 run, but the setups then disturb each other (with
per-session pools open beside it, the shared setup's overhead read 1.9 % against 1.1 % alone), so compare setups for
their whole-run ratios, not their overhead.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _export(model: str, out: Path, strategy: str | None = None, size: dict | None = None) -> Path:
    from dymos.export.build import ExportOptions, run_export

    options = ExportOptions(model=model, out=out, strategy=strategy, name=strategy, **(size or {}))
    return run_export(options, log=lambda line: None).directory


WHOLE_RUN_TARGET = 1.01  # issue 4: DyMoS on the first steps may cost at most 1 % over the strength-0 run


def median_confidence_interval(values: list[float] | np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free confidence interval of the median: order statistics ``x_(j)`` and ``x_(n+1-j)`` with ``j``
    the largest rank whose binomial tail ``P(B(n, 1/2) < j)`` stays within ``(1 - level) / 2``, so the interval covers
    the true median with probability at least ``level`` whatever the timings' distribution (machine noise is skewed:
    no normal approximation). ``None`` when there are too few values for that level (fewer than 6 at 95 %)."""
    ordered = np.sort(np.asarray(values, dtype=float))
    n = len(ordered)
    tail, rank = 0.0, 0  # tail = P(B < rank + 1) as rank grows
    while rank < n // 2:
        tail += math.comb(n, rank) / 2**n
        if tail > (1 - level) / 2:
            break
        rank += 1
    if rank == 0:
        return None
    return float(ordered[rank - 1]), float(ordered[n - rank])


def target_verdict(interval: tuple[float, float] | None, target: float) -> str:
    """``met`` / ``missed`` only when the whole confidence interval is on one side of ``target``."""
    if interval is None:
        return "undecided (too few repeats for an interval)"
    if interval[1] <= target:
        return "met"
    if interval[0] > target:
        return "missed"
    return "undecided (the interval straddles the target)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sprites", help="a pipeline the runtime drives (default sprites)")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps per run (default 20)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=61,
        help="interleaved repeats per variant (default 61; more narrow the whole-run ratio's confidence interval)",
    )
    parser.add_argument("--strength", type=float, default=2.0, help="DyMoS strength (default 2)")
    parser.add_argument("--fraction", type=float, default=0.2, help="DyMoS on for this first fraction (default 0.2)")
    parser.add_argument(
        "--strategies", default=None, help="comma-separated DyMoS strategies to compare (default: the export's)"
    )
    parser.add_argument(
        "--threading",
        default="shared",
        help="comma-separated onnxruntime thread setups to compare (shared, per-session, no-spin; the first is "
        "the headline; default shared, as dymos run)",
    )
    parser.add_argument("--frames", type=int, default=None, help="video frames to export at (default: the model's)")
    parser.add_argument("--height", type=int, default=None, help="video height in pixels (default: the model's)")
    parser.add_argument("--width", type=int, default=None, help="video width in pixels (default: the model's)")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.repeats < 1:  # before minutes of export work, not after
        parser.error(f"need --steps >= 1 and --repeats >= 1, got {args.steps} and {args.repeats}")
    from dymos.attention import STRATEGIES
    from dymos.export.build import default_strategy

    strategies = args.strategies.split(",") if args.strategies else [default_strategy(20)]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        parser.error(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
    from dymos.runtime.backends import THREADING

    setups = args.threading.split(",")
    if any(t not in THREADING for t in setups):
        parser.error(f"unknown --threading in {setups}; choose from {', '.join(THREADING)}")

    import torch
    from PIL import Image

    import dymos
    from dymos.models import load_pipeline
    from dymos.prepare import prepare
    from dymos.runtime.artifacts import ExportDir
    from dymos.runtime.backends import open_backend, open_low_noise, open_stock_backend
    from dymos.runtime.loop import RunRequest, load_conditioning, sample
    from dymos.schedule import StrengthSchedule

    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="dymos-bench-runtime-"))
    print(f"exporting {args.model} to {work} ({', '.join(strategies)}) ...", flush=True)
    size = {k: v for k, v in (("frames", args.frames), ("height", args.height), ("width", args.width)) if v}
    exports = {name: ExportDir.open(_export(args.model, work, name, size)) for name in strategies}
    image_path = work / "input.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(image_path)
    main_export = exports[strategies[0]]
    cond_path = prepare(main_export.root, image_path, "a ball bouncing", work / "cond.npz")
    cond = load_conditioning(str(cond_path))
    engines = {
        (name, setup): (
            open_backend(export, threading=setup),
            open_backend(export, "vae_decoder", threading=setup),
            open_stock_backend(export, threading=setup),
            open_low_noise(export, threading=setup),
        )
        # onnxruntime refuses per-session pools once its shared pool exists: open the shared setup last
        for setup in sorted(setups, key=lambda setup: setup == "shared")
        for name, export in exports.items()
    }
    video = main_export.manifest["pipeline"]["video"]
    schedule = StrengthSchedule(fraction=args.fraction)

    def runtime_run(strength: float, strategy: str, setup: str):
        denoiser, decoder, stock, low_noise = engines[strategy, setup]
        request = RunRequest(strength=strength, steps=args.steps, guidance_scale=5.0, schedule=schedule)
        t0 = time.perf_counter()
        result = sample(
            exports[strategy], cond, request, denoiser=denoiser, decoder=decoder, stock=stock, low_noise=low_noise
        )
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

    for name, setup in engines:  # warm-up: sessions, caches
        runtime_run(args.strength, name, setup)
    diffusers_run()
    # a variant is (strategy or "s0", thread setup) or ("diffusers", ""); each is timed once per repeat
    variants = [(name, setup) for setup in setups for name in [*strategies, "s0"]] + [("diffusers", "")]
    seconds: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    engine_ms: dict[tuple[str, str], list[np.ndarray]] = {v: [] for v in variants}  # per step
    overhead: dict[str, list[float]] = {setup: [] for setup in setups}
    for repeat in range(args.repeats):
        for which, setup in variants if repeat % 2 == 0 else variants[::-1]:
            if which == "diffusers":
                seconds[which, setup].append(diffusers_run())
                continue
            strength = 0.0 if which == "s0" else args.strength
            elapsed, result = runtime_run(strength, strategies[0] if which == "s0" else which, setup)
            seconds[which, setup].append(elapsed)
            engine_ms[which, setup].append(np.asarray(result.engine_seconds) * 1000)
            if which == strategies[0]:
                steps = np.asarray(result.step_seconds)
                overhead[setup].append(float(np.median((steps - np.asarray(result.engine_seconds)) / steps)))
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)

    med = statistics.median
    step_ms = {v: np.median(np.stack(engine_ms[v]), axis=0) for v in variants if engine_ms[v]}
    dymos_steps = sum(1 for i in range(args.steps) if schedule.multiplier(i, args.steps) > 0)
    first = strategies[0]
    diffusers_seconds = med(seconds["diffusers", ""])

    def strategy_row(name: str, setup: str) -> dict[str, float | None]:
        on, zero = step_ms[name, setup], step_ms["s0", setup]
        switch = dymos_steps < args.steps
        # paired within each round of the interleaving (back to back with a single strategy)
        paired = np.asarray(seconds[name, setup]) / np.asarray(seconds["s0", setup])
        interval = median_confidence_interval(paired)
        return {
            "dymos_run_seconds": med(seconds[name, setup]),
            "dymos_vs_strength0": float(np.median(paired)),
            "dymos_vs_strength0_quartiles": np.quantile(paired, [0.25, 0.75]).tolist(),
            "dymos_vs_strength0_ci95": list(interval) if interval else None,
            "whole_run_target": WHOLE_RUN_TARGET,
            "whole_run_target_verdict": target_verdict(interval, WHOLE_RUN_TARGET),
            "ratio_of_median_runs": med(seconds[name, setup]) / med(seconds["s0", setup]),
            "engine_ms_dymos_steps": float(on[:dymos_steps].sum()),
            "engine_ms_same_steps_at_s0": float(zero[:dymos_steps].sum()),
            "engine_ms_first_stock_step_after_switch": float(on[dymos_steps]) if switch else None,
            "engine_ms_same_step_at_s0": float(zero[dymos_steps]) if switch else None,
        }

    def setup_rows(setup: str) -> dict:
        per_strategy = {name: strategy_row(name, setup) for name in strategies}
        return {
            "runtime_overhead_share_of_step": med(overhead[setup]),
            **per_strategy[first],
            "strength0_run_seconds": med(seconds["s0", setup]),
            "runtime_vs_diffusers": med(seconds[first, setup]) / diffusers_seconds,
            "strategies": per_strategy,
        }

    per_setup = {setup: setup_rows(setup) for setup in setups}
    rows = {
        **per_setup[setups[0]],
        "threading": setups[0],
        "diffusers_pipeline_seconds": diffusers_seconds,
        "dymos_steps": dymos_steps,
        "thread_setups": per_setup,
    }
    print()
    print(
        f"{args.model} (Wan I2V pipeline), {video['frames']} frames {video['height']}x{video['width']}, "
        f"{args.steps} steps, CFG 5, DyMoS s={args.strength:g} on the first {args.fraction:.0%}; "
        f"median of {args.repeats}; diffusers pipeline {diffusers_seconds * 1000:.0f} ms"
    )
    for setup, row in per_setup.items():
        print(f"  onnxruntime threads: {setup}")
        print(
            f"    per-step runtime overhead (all but the engine call): {row['runtime_overhead_share_of_step']:.1%} "
            "of step time   [target <= 2%]"
        )
        for name, strategy in row["strategies"].items():
            print(
                f"    whole run, DyMoS ({name}) on vs strength 0: {strategy['dymos_run_seconds'] * 1000:.0f} ms vs "
                f"{row['strength0_run_seconds'] * 1000:.0f} ms (medians); paired per repeat "
                f"{strategy['dymos_vs_strength0']:.3f}x (quartiles {strategy['dymos_vs_strength0_quartiles'][0]:.3f}-"
                f"{strategy['dymos_vs_strength0_quartiles'][1]:.3f})   [target <= {WHOLE_RUN_TARGET}x]"
            )
            interval = strategy["dymos_vs_strength0_ci95"]
            print(
                "      95% confidence interval of that median: "
                + (f"{interval[0]:.3f}-{interval[1]:.3f}x" if interval else "none (too few repeats)")
                + f"; target {strategy['whole_run_target_verdict']}"
            )
            print(
                f"      engine time of the {dymos_steps} DyMoS steps: {strategy['engine_ms_dymos_steps']:.1f} ms vs "
                f"{strategy['engine_ms_same_steps_at_s0']:.1f} ms for the same steps at s=0; "
                f"the first stock step after the switch: {strategy['engine_ms_first_stock_step_after_switch']:.1f} "
                f"ms vs {strategy['engine_ms_same_step_at_s0']:.1f} ms"
            )
        print(
            f"    runtime end to end vs diffusers pipeline (both with DyMoS, {first}): "
            f"{row['dymos_run_seconds'] * 1000:.0f} ms vs {diffusers_seconds * 1000:.0f} ms = "
            f"{row['runtime_vs_diffusers']:.2f}x   [target < 1x]"
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
