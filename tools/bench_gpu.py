"""DyMoS cost on a CUDA GPU at production size, in PyTorch: one real-width transformer block, stock vs each strategy.

Why this shape: the CPU benchmarks (``tools/bench.py``) measure the exported graphs on onnxruntime; a GPU user of
``dymos.patch`` runs PyTorch's CUDA attention kernels instead, where the strategies differ most: the mask strategy
takes the memory-efficient kernel and an ``[B, 1, L, L]`` mask, the split strategy a key-only mask, and the fold
strategy no mask at all, so the flash / cuDNN kernels stay usable (head dim padded to a multiple of 8). The model
is the real ``WanTransformer3DModel`` at the width of a real checkpoint config (default Wan 2.1 I2V 14B: 40 heads x
128, FFN 13824) with one layer, random weights, bf16, batch 2 (classifier-free guidance), at the token counts of
81-frame 480p and 720p videos. Per-layer cost ratios carry over to the full 40-layer model, whose other work
(embeddings, VAE) DyMoS does not touch.

Stock and every strategy are timed side by side in one process, round-robin with the order rotated per round
(CUDA events, after warm-up); each round gives one ratio per strategy and the reported ratio is the median over
rounds. Peak memory is CUDA's high-water mark of one forward above what the weights and inputs already hold.

    python tools/bench_gpu.py [--config PATH] [--sizes 480p,720p] [--rounds 7] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Wan 2.1 I2V 14B's public architecture config (no weights), in the repo so the benchmark runs from any checkout.
DEFAULT_CONFIG = ROOT / "tools" / "configs" / "wan2.1-i2v-14b-480p.json"
STRENGTH = 2.0
BATCH = 2
# Latent (frames, height, width) of an 81-frame video (Wan VAE: 4x temporal, 8x spatial); patch (1, 2, 2).
SIZES: dict[str, tuple[int, int, int]] = {"480p": (21, 60, 104), "720p": (21, 90, 160)}
VARIANTS: dict[str, dict[str, Any] | None] = {
    "stock": None,
    "mask": {"strategy": "mask"},
    "split": {"strategy": "split"},
    "fold": {"strategy": "fold"},
    "fold_pad8": {"strategy": "fold", "fold_pad_to": 8},
    "merge": {"strategy": "merge"},
}


def _model(config_path: Path, layers: int) -> Any:
    import diffusers
    import torch

    entry = json.loads(config_path.read_text())["denoiser"]
    config = {**entry["config"], "num_layers": layers}
    with torch.device("cuda"):
        torch.manual_seed(0)
        model = getattr(diffusers, entry["class"]).from_config(config)
    return model.to(torch.bfloat16).eval(), config


def _inputs(config: dict[str, Any], size: tuple[int, int, int]) -> dict[str, Any]:
    import torch

    from dymos.inputs import example_inputs

    frames, height, width = size
    inputs = example_inputs("wan", config, batch=BATCH, frames=frames, height=height, width=width)
    return {
        k: (v.to("cuda", torch.bfloat16) if v.is_floating_point() and k != "timestep" else v.to("cuda"))
        if isinstance(v, torch.Tensor)
        else v
        for k, v in inputs.items()
    }


def _forward(model: Any, inputs: dict[str, Any], variant: dict[str, Any] | None) -> float:
    """One forward under ``variant`` (None: stock); milliseconds by CUDA events."""
    import contextlib

    import torch

    import dymos

    ctx = contextlib.nullcontext() if variant is None else dymos.patch(model, [STRENGTH] * BATCH, **variant)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with ctx, torch.no_grad():
        torch.cuda.synchronize()
        start.record()
        model(**inputs)
        end.record()
        torch.cuda.synchronize()
    return start.elapsed_time(end)


def _peak_bytes(model: Any, inputs: dict[str, Any], variant: dict[str, Any] | None) -> int:
    import torch

    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    held = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    _forward(model, inputs, variant)
    return torch.cuda.max_memory_allocated() - held


def measure(model: Any, inputs: dict[str, Any], rounds: int, warmup: int = 2) -> dict[str, Any]:
    names = list(VARIANTS)
    for _ in range(warmup):
        for name in names:
            _forward(model, inputs, VARIANTS[name])
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            times[name].append(_forward(model, inputs, VARIANTS[name]))
    peaks = {name: _peak_bytes(model, inputs, VARIANTS[name]) for name in names}
    rows = {}
    for name in names:
        ratios = [t / s for t, s in zip(times[name], times["stock"])]
        rows[name] = {
            "median_ms": statistics.median(times[name]),
            "ratio_vs_stock": statistics.median(ratios),
            "peak_extra_gib": peaks[name] / 2**30,
            "peak_ratio_vs_stock": peaks[name] / peaks["stock"],
        }
    return rows


def kernel_times(heads: int, head_dim: int, size: tuple[int, int, int], rounds: int) -> dict[str, Any]:
    """One attention call at the size's shape (bf16, batch 2): SDPA under each backend, and each strategy.

    Why: the block ratios above depend on which kernel each path reaches; this says which kernels there are and
    what they cost on this GPU. A backend that refuses the shape is reported with its error, not timed.
    """
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from dymos import attention

    frames, height, width = size
    per_frame = (height // 2) * (width // 2)
    length = frames * per_frame
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(BATCH, heads, length, head_dim, generator=g, device="cuda", dtype=torch.bfloat16) for _ in range(3)
    )
    s = torch.full((BATCH,), STRENGTH, device="cuda")
    span = attention.ReferenceSpan(0, per_frame, length)

    def sdpa(backend: Any) -> Any:
        def run() -> Any:
            with sdpa_kernel([backend]):
                return F.scaled_dot_product_attention(q, k, v)

        return run

    calls = {
        "sdpa_default": lambda: F.scaled_dot_product_attention(q, k, v),
        "sdpa_cudnn": sdpa(SDPBackend.CUDNN_ATTENTION),
        "sdpa_flash": sdpa(SDPBackend.FLASH_ATTENTION),
        "sdpa_efficient": sdpa(SDPBackend.EFFICIENT_ATTENTION),
        **{
            f"dymos_{name}": (
                lambda variant=variant: attention.biased_attention(
                    q, k, v, s, span, variant["strategy"], fold_pad_to=variant.get("fold_pad_to", 1)
                )
            )
            for name, variant in VARIANTS.items()
            if variant is not None
        },
    }
    rows: dict[str, Any] = {}
    for name, call in calls.items():
        try:
            for _ in range(2):
                call()
            times = []
            for _ in range(rounds):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                call()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
            rows[name] = {"median_ms": statistics.median(times)}
        except RuntimeError as err:
            rows[name] = {"refused": str(err).splitlines()[0][:160]}
        torch.cuda.empty_cache()
    base = rows["sdpa_default"].get("median_ms")
    for row in rows.values():
        if base and "median_ms" in row:
            row["ratio_vs_sdpa_default"] = row["median_ms"] / base
    rows["merge_cudnn_refused"] = sorted(f"{dtype}/{dim}" for dtype, dim in attention._CUDNN_REFUSED)
    return {"tokens": length, "kernels": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="a checkpoint config JSON with a `denoiser` entry (Wan family; default: Wan 2.1 I2V 14B)",
    )
    parser.add_argument("--sizes", default="480p,720p", help=f"comma-separated, of {', '.join(SIZES)}")
    parser.add_argument("--layers", type=int, default=1, help="transformer blocks (default 1)")
    parser.add_argument("--rounds", type=int, default=7, help="timed round-robin rounds (default 7)")
    parser.add_argument("--kernels", action="store_true", help="also time single attention calls per kernel")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA GPU (torch.cuda.is_available() is False); nothing measured", file=sys.stderr)
        return 2
    if not args.config.is_file():
        print(f"bench_gpu: config not found: {args.config} (pass --config)", file=sys.stderr)
        return 2
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose from {', '.join(SIZES)}")
    model, config = _model(args.config, args.layers)
    heads, head_dim = config["num_attention_heads"], config["attention_head_dim"]
    result: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "config": args.config.name,
        "layers": args.layers,
        "heads_x_dim": f"{heads}x{head_dim}",
        "batch": BATCH,
        "strength": STRENGTH,
        "dtype": "bf16",
        "rounds": args.rounds,
        "sizes": {},
    }
    print(f"{result['gpu']}  torch {result['torch']}  {args.config.name}: {args.layers} layer(s), {heads}x{head_dim}")
    for size in sizes:
        frames, height, width = SIZES[size]
        tokens = frames * (height // 2) * (width // 2)
        rows = measure(model, _inputs(config, SIZES[size]), args.rounds)
        result["sizes"][size] = {"tokens": tokens, "variants": rows}
        print(f"\n{size}: L = {tokens} tokens, batch {BATCH}")
        print(f"{'variant':<10} {'median ms':>10} {'x stock':>8} {'peak GiB':>9} {'x stock':>8}")
        for name, row in rows.items():
            print(
                f"{name:<10} {row['median_ms']:>10.1f} {row['ratio_vs_stock']:>8.3f} "
                f"{row['peak_extra_gib']:>9.2f} {row['peak_ratio_vs_stock']:>8.2f}"
            )
        torch.cuda.empty_cache()
        if args.kernels:
            kernels = kernel_times(heads, head_dim, SIZES[size], args.rounds)
            result["sizes"][size]["attention_call"] = kernels
            print(f"\n{size}: one attention call [{BATCH}, {heads}, {tokens}, {head_dim}] bf16")
            for name, row in kernels["kernels"].items():
                if name == "merge_cudnn_refused":
                    print(f"merge: cuDNN refused for {row or 'nothing'}")
                elif "median_ms" in row:
                    print(f"{name:<16} {row['median_ms']:>9.2f} ms {row['ratio_vs_sdpa_default']:>7.3f}x")
                else:
                    print(f"{name:<16} refused: {row['refused']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
