"""What alternating onnxruntime sessions cost: the runtime runs a DyMoS graph for the first steps and a stock graph
after, on the same cores. This times 4 DyMoS + 16 stock calls against 20 stock calls, in one process per thread
setup (a global thread pool must exist before the first session), so each ratio is measured side by side:

- ``spin``: per-session thread pools with onnxruntime's default busy-waiting (the library's default,
  ``OnnxRuntimeBackend(threading="per-session")``);
- ``global``: one global thread pool shared by both sessions (``use_per_session_threads = False``; what `dymos run`
  uses, ``--threading shared``);
- ``nospin``: per-session pools with ``session.intra_op.allow_spinning = 0``.

    python tools/bench_sessions.py --export build/sprites          # after `make export`

Ratios compare within a mode; absolute times across modes come from different processes (noisy here).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODES = ("spin", "global", "nospin")
# each mode is one of the runtime's onnxruntime thread setups (dymos.runtime.backends.THREADING)
THREADING_OF_MODE = {"spin": "per-session", "global": "shared", "nospin": "no-spin"}


def _measure(export_path: Path, mode: str, repeats: int, threads: int) -> dict[str, float]:
    from dymos.runtime.artifacts import ExportDir
    from dymos.runtime.backends import OnnxRuntimeBackend

    export = ExportDir.open(export_path)
    spec = export.submodel("denoiser")
    threading = THREADING_OF_MODE[mode]
    pool = threads if threading == "shared" else None  # the global pool's size (per-session: onnxruntime's default)

    def session(name: str):
        return OnnxRuntimeBackend(export.path(name), spec, device="cpu", threads=pool, threading=threading).session

    dymos, stock = session("denoiser.onnx"), session("denoiser_stock.onnx")
    denoiser = export.manifest["submodels"]["denoiser"]
    rng = np.random.default_rng(0)
    feed = {}
    dims = {name: bounds["opt"] for name, bounds in denoiser["dims"].items()} | {"batch": 2}  # a CFG pair
    for tensor in denoiser["inputs"]:  # the export's opt shapes
        shape = [d if isinstance(d, int) else dims[d] for d in tensor["shape"]]
        feed[tensor["name"]] = rng.standard_normal(shape).astype(tensor["dtype"])
    feed["motion_strength"] = np.full_like(feed["motion_strength"], 2.0)

    def call(session) -> float:
        start = time.perf_counter()
        session.run(None, feed)
        return time.perf_counter() - start

    for _ in range(5):  # warm-up
        call(dymos), call(stock)
    alternating, stock_only = [], []
    for _ in range(repeats):
        alternating.append(sum(call(dymos) for _ in range(4)) + sum(call(stock) for _ in range(16)))
        stock_only.append(sum(call(stock) for _ in range(20)))
    a, b = statistics.median(alternating), statistics.median(stock_only)
    return {"alternating_ms": a * 1000, "stock_only_ms": b * 1000, "ratio": a / b}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", default="build/sprites", help="an export with denoiser_stock.onnx")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {', '.join(MODES)}")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2, help="global pool size (mode global)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    export = Path(args.export)
    if args.child:
        print(json.dumps(_measure(export, args.child, args.repeats, args.threads)))
        return 0
    if not (export / "denoiser_stock.onnx").is_file():
        parser.error(f"{export} has no denoiser_stock.onnx: export a pipeline first (make export)")
    for mode in args.modes.split(","):
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}")
        child = [sys.executable, __file__, "--export", str(export), "--repeats", str(args.repeats), "--child", mode]
        out = subprocess.run([*child, "--threads", str(args.threads)], capture_output=True, text=True)
        if out.returncode:
            print(out.stderr, file=sys.stderr, end="")
            print(f"mode {mode}: the measuring process failed (exit {out.returncode}); its stderr is above")
            return 1
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{mode:<7} 4 DyMoS + 16 stock calls {row['alternating_ms']:7.1f} ms   20 stock calls "
            f"{row['stock_only_ms']:7.1f} ms   ratio {row['ratio']:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
