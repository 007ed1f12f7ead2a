"""DyMoS export cost against the stock export: onnxruntime CPU latency and peak memory, as ratios from one run.

Why this shape: the machine is shared and noisy, so absolute milliseconds mean little; what matters is how much
an active DyMoS graph (``motion_strength`` non-zero) costs over the stock graph of the same model at the same
size. Stock and DyMoS are therefore measured side by side in the same run, interleaved (the order rotates per
repeat), and every ratio pairs a DyMoS measurement with the stock one of the same repeat. Peak memory is a
process-wide high-water mark, so each (artifact, size) measurement runs in a fresh Python process that imports
only numpy and onnxruntime (``--measure`` mode, used internally) and reports its peak RSS (``VmHWM``).

The model is a ``WanTransformer3DModel`` with the real Wan structure (the tiny ``wan22`` layout, widened to
8 heads x 64, FFN 1536, 2 layers, random weights). Each ONNX file is exported once, with dynamic
frames/height/width, and run at every size. Exports are cached under ``--out`` by a key over the config, the
export settings, the library versions and the source of ``dymos/`` and ``export/``.

Target (DESIGN.md §4 numbers to beat): the default strategy (``split`` at opset 20, ``fold`` at 23, see
``export/build.py:default_strategy``) within 1.05x of stock in latency and peak memory at every size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "BENCH_RESULT "
TARGET_RATIO = 1.05
STRENGTH = 2.0
BATCH = 2
STRATEGY_NAMES = ("mask", "split", "fold")
# Latent (frames, height, width) per preset token count; patch (1, 2, 2) -> frames * (h/2) * (w/2) tokens.
PRESET_SIZES: dict[int, tuple[int, int, int]] = {1280: (16, 16, 20), 3328: (16, 26, 32)}
PATCH = (1, 2, 2)


def bench_config() -> dict[str, Any]:
    """The tiny wan22 config (real Wan structure and channel layout) widened to a size where attention costs."""
    from dymos.tiny import TINY_CASES

    return {
        **TINY_CASES["wan22"].config,
        "num_attention_heads": 8,
        "attention_head_dim": 64,
        "ffn_dim": 1536,
        "num_layers": 2,
        "text_dim": 64,
        "freq_dim": 64,
        "rope_max_seq_len": 1024,
    }


def default_strategy(opset: int) -> str:
    """Mirrors ``dymos.export.build.default_strategy`` (imported lazily there; kept here so ``--help`` and the
    measuring subprocesses stay torch-free). Checked against the real one in :func:`main`."""
    return "fold" if opset >= 23 else "split"


def valid(strategy: str, opset: int) -> bool:
    """split passes a query-broadcast key mask, which ORT's opset-23 ``Attention`` rejects (the exporter refuses)."""
    return not (strategy == "split" and opset >= 23)


@dataclass(frozen=True)
class Size:
    """One latent size; ``tokens`` is the self-attention sequence length."""

    frames: int
    height: int
    width: int

    @property
    def tokens(self) -> int:
        return (self.frames // PATCH[0]) * (self.height // PATCH[1]) * (self.width // PATCH[2])

    @property
    def label(self) -> str:
        return f"{self.frames}x{self.height}x{self.width}"


def parse_size(text: str) -> Size:
    """``1280`` / ``3328`` (presets) or a latent ``FxHxW`` (H, W multiples of 2)."""
    text = text.strip()
    if text.isdigit():
        if int(text) not in PRESET_SIZES:
            raise argparse.ArgumentTypeError(f"no preset for {text} tokens; presets: {sorted(PRESET_SIZES)} or FxHxW")
        return Size(*PRESET_SIZES[int(text)])
    try:
        frames, height, width = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: want a preset token count or FxHxW") from None
    if min(frames, height, width) < 2 or height % PATCH[1] or width % PATCH[2]:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: need F >= 2 and even H, W >= 2")
    return Size(frames, height, width)


def csv_list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


# ---------------------------------------------------------------------------------------------------------------
# --measure: one (artifact, size) in a fresh process; torch-free so the peak is the runtime's own
# ---------------------------------------------------------------------------------------------------------------


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (``VmRSS``: now, ``VmHWM``: peak), MB.

    Not ``ru_maxrss``: Linux carries that across fork+exec, so a child of the torch-laden parent would report
    the parent's RSS as its own peak. ``VmHWM`` belongs to the process's own address space, fresh at exec.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(onnx_path: str, inputs_path: str, *, warmup: int, iters: int, threads: int) -> dict[str, Any]:
    """Create a CPU session, warm up, time ``iters`` runs; report median/min ms and peak RSS (VmHWM)."""
    import numpy as np
    import onnxruntime as ort

    with np.load(inputs_path) as data:
        arrays = {k: data[k] for k in data.files}
    rss_imports = _status_mb("VmRSS")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    t0 = time.perf_counter()
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - t0
    names = [i.name for i in session.get_inputs()]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise SystemExit(f"inputs file lacks graph inputs {missing}")
    feed = {n: arrays[n] for n in names}  # the stock graph may have dropped the unused strength input
    rss_session = _status_mb("VmRSS")
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        out = session.run(None, feed)
        times.append((time.perf_counter() - t) * 1e3)
    if not np.isfinite(out[0]).all():
        raise SystemExit("non-finite output")
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "times_ms": times,
        "peak_mb": _status_mb("VmHWM"),
        "rss_after_imports_mb": rss_imports,
        "rss_after_session_mb": rss_session,
        "session_load_s": load_s,
        "graph_inputs": names,
    }


# ---------------------------------------------------------------------------------------------------------------
# export (torch side)
# ---------------------------------------------------------------------------------------------------------------


def _source_hash() -> str:
    """Exports depend on the method and exporter code: a change there invalidates the cache."""
    digest = hashlib.sha256()
    for folder in ("dymos", "export"):
        for path in sorted((ROOT / folder).glob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def build_model(config: dict[str, Any], seed: int = 0) -> Any:
    """A fresh model per wrapper (DyMoS patches processors in place); the same seed gives the same weights."""
    import diffusers
    import torch

    torch.manual_seed(seed)
    return diffusers.WanTransformer3DModel.from_config(config).eval()


def build_bench_spec(config: dict[str, Any], sizes: list[Size]) -> Any:
    """The export spec at the largest size, its dynamic ranges widened if a size falls outside them."""
    from dataclasses import replace

    from dymos.export.specs import DimRange, build_spec

    top = max(sizes, key=lambda s: s.tokens)
    spec = build_spec("wan", config, batch=BATCH, frames=top.frames, height=top.height, width=top.width)
    dims = dict(spec.dims)
    for name in ("frames", "height", "width"):
        values = [getattr(s, name) for s in sizes]
        r = dims[name]
        if min(values) < r.min or max(values) > r.max:
            m = spec.multiples.get(name, 1)
            low = max(m, min(r.min, min(values)) // m * m)
            dims[name] = DimRange(low, r.opt, max(r.max, max(values)))
    spec = replace(spec, dims=dims)
    for s in sizes:
        for name in ("frames", "height", "width"):
            r, v = spec.dims[name], getattr(s, name)
            assert r.min <= v <= r.max, f"{name}={v} outside the export range {r}"
    return spec


def _export_stock_onnx(program: Any, spec: Any, path: Path, opset: int) -> None:
    """``export_onnx`` minus ``check_graph``: the stock graph ignores the strength by design, which that check
    rightly rejects for a DyMoS artifact. Same translation, passes, sanitizing and atomic save otherwise."""
    import onnx
    import torch

    from dymos.export.onnx_export import (
        EXTERNAL_DATA_THRESHOLD,
        name_dynamic_dims,
        rewrite_bool_where,
        sanitize,
        save_onnx,
    )
    from dymos.export.specs import OUTPUT_NAME

    onnx_program = torch.onnx.export(
        program,
        (),
        input_names=spec.input_names,
        output_names=[OUTPUT_NAME],
        dynamo=True,
        opset_version=opset,
        verbose=False,
    )
    model = onnx_program.model_proto
    name_dynamic_dims(model, spec)
    rewrite_bool_where(model)
    model = sanitize(model)
    if model.ByteSize() < EXTERNAL_DATA_THRESHOLD:
        onnx.checker.check_model(model, full_check=False)
    save_onnx(model, path)


@dataclass
class Artifact:
    """One ONNX file: ``strategy`` is ``stock`` or a DyMoS strategy."""

    strategy: str
    opset: int
    path: Path
    error: str | None = None
    export_s: float = 0.0
    cached: bool = False


def export_all(
    config: dict[str, Any], sizes: list[Size], wanted: list[tuple[str, int]], out: Path, log: Any
) -> list[Artifact]:
    """Export every (strategy, opset) once (dynamic frames/height/width), reusing cached files by key.

    One ``torch.export`` program per strategy serves all its opsets. A failing export is recorded, not raised.
    """
    import onnx
    import torch

    from dymos.export.onnx_export import export_onnx, export_program
    from dymos.export.specs import sample_inputs
    from dymos.export.wrapper import StrengthInputDenoiser

    spec = build_bench_spec(config, sizes)
    key_base = {
        "config": config,
        "spec": spec.as_dict(),
        "batch": BATCH,
        "versions": _versions(),
        "source": _source_hash(),
    }
    out.mkdir(parents=True, exist_ok=True)
    artifacts: list[Artifact] = []
    for strategy, opset in wanted:
        key = hashlib.sha256(json.dumps({**key_base, "strategy": strategy, "opset": opset}, sort_keys=True).encode())
        path = out / f"{strategy}-opset{opset}-{key.hexdigest()[:12]}.onnx"
        artifacts.append(Artifact(strategy, opset, path, cached=path.exists()))
    top = max(sizes, key=lambda s: s.tokens)
    tensors, _ = sample_inputs("wan", config, batch=BATCH, frames=top.frames, height=top.height, width=top.width)
    sample = [*tensors.values(), torch.full((BATCH,), STRENGTH)]
    sequence_lengths = sorted({s.tokens for s in sizes})
    programs: dict[str, Any] = {}
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # torchvision-op registration chatter, per export
    warnings.filterwarnings("ignore", category=FutureWarning)
    for art in artifacts:
        if art.cached:
            log(f"[export] {art.strategy:<5} opset {art.opset}: cached {art.path.name}")
            continue
        t0 = time.perf_counter()
        try:
            if art.strategy not in programs:
                model = build_model(config)
                dymos = art.strategy != "stock"
                kwargs = {"strategy": art.strategy} if dymos else {}
                wrapper = StrengthInputDenoiser(model, spec, dymos=dymos, **kwargs).eval()
                log(f"[export] {art.strategy:<5} torch.export (dynamic frames/height/width/batch)")
                programs[art.strategy] = export_program(wrapper, spec, sample)
            log(f"[export] {art.strategy:<5} opset {art.opset}: ONNX")
            if art.strategy == "stock":
                _export_stock_onnx(programs[art.strategy], spec, art.path, art.opset)
            else:
                export_onnx(programs[art.strategy], spec, art.path, opset=art.opset, sequence_lengths=sequence_lengths)
            onnx.checker.check_model(str(art.path))
        except Exception as err:  # recorded and reported per row: one broken strategy must not hide the others
            art.error = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            log(f"[export] {art.strategy:<5} opset {art.opset}: FAILED {art.error}")
        art.export_s = time.perf_counter() - t0
    return artifacts


def write_inputs(config: dict[str, Any], sizes: list[Size], out: Path) -> dict[Size, Path]:
    """One .npz of graph inputs per size (seeded, the project's own input builder; strength 2.0 for every item).

    The stock graph gets the same feed; it ignores (or dropped) the strength.
    """
    import numpy as np

    from dymos.export.specs import STRENGTH_INPUT, sample_inputs

    paths = {}
    for s in sizes:
        tensors, _ = sample_inputs("wan", config, batch=BATCH, frames=s.frames, height=s.height, width=s.width, seed=1)
        arrays = {k: v.numpy() for k, v in tensors.items()}
        arrays[STRENGTH_INPUT] = np.full((BATCH,), STRENGTH, np.float32)
        path = out / f"inputs-{s.label}-b{BATCH}.npz"
        np.savez(path, **arrays)
        paths[s] = path
    return paths


def _versions() -> dict[str, str]:
    import diffusers
    import onnx
    import onnxruntime
    import torch

    return {
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
    }


# ---------------------------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Measurement:
    repeat: int
    tokens: int
    opset: int
    strategy: str
    result: dict[str, Any] | None = None
    error: str | None = None
    wall_s: float = 0.0


def run_measure(art: Artifact, inputs: Path, args: argparse.Namespace) -> tuple[dict[str, Any] | None, str | None]:
    """Run ``--measure`` in a fresh interpreter; returns (result, error)."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--measure",
        str(art.path),
        "--inputs",
        str(inputs),
        "--warmup",
        str(args.warmup),
        "--iters",
        str(args.iters),
        "--threads",
        str(args.threads),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {args.timeout}s"
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :]), None
    tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
    return None, f"exit {proc.returncode}: {' | '.join(tail)}"


@dataclass
class Row:
    tokens: int
    opset: int
    strategy: str
    stock_ms: float | None = None
    dymos_ms: float | None = None
    latency_ratio: float | None = None
    stock_peak_mb: float | None = None
    dymos_peak_mb: float | None = None
    memory_ratio: float | None = None
    target: str = "-"
    repeats: int = 0
    latency_ratios: list[float] = field(default_factory=list)
    memory_ratios: list[float] = field(default_factory=list)
    error: str | None = None


def summarize(measurements: list[Measurement], artifacts: list[Artifact], sizes: list[Size]) -> list[Row]:
    """Per (size, opset, strategy): medians over repeats, and ratios as the median of per-repeat paired ratios
    (DyMoS over the stock measured in the same repeat, a few seconds apart), which cancels slow load drift."""
    by_key = {(m.repeat, m.tokens, m.opset, m.strategy): m for m in measurements}
    arts = {(a.strategy, a.opset): a for a in artifacts}
    rows = []
    for s in sizes:
        for opset in sorted({a.opset for a in artifacts}):
            for strategy in [a.strategy for a in artifacts if a.opset == opset and a.strategy != "stock"]:
                row = Row(s.tokens, opset, strategy)
                errors = [arts[(strategy, opset)].error, arts[("stock", opset)].error]
                stock_ms, dymos_ms, stock_mb, dymos_mb = [], [], [], []
                for (r, tokens, o, name), m in sorted(by_key.items()):
                    if (tokens, o, name) != (s.tokens, opset, strategy):
                        continue
                    stock = by_key.get((r, tokens, o, "stock"))
                    errors += [m.error, stock.error if stock else "no stock measurement"]
                    if m.result is None or stock is None or stock.result is None:
                        continue
                    stock_ms.append(stock.result["median_ms"])
                    dymos_ms.append(m.result["median_ms"])
                    stock_mb.append(stock.result["peak_mb"])
                    dymos_mb.append(m.result["peak_mb"])
                    row.latency_ratios.append(dymos_ms[-1] / stock_ms[-1])
                    row.memory_ratios.append(dymos_mb[-1] / stock_mb[-1])
                row.repeats = len(dymos_ms)
                if dymos_ms:
                    row.stock_ms, row.dymos_ms = statistics.median(stock_ms), statistics.median(dymos_ms)
                    row.stock_peak_mb, row.dymos_peak_mb = statistics.median(stock_mb), statistics.median(dymos_mb)
                    row.latency_ratio = statistics.median(row.latency_ratios)
                    row.memory_ratio = statistics.median(row.memory_ratios)
                found = [e for e in errors if e]
                row.error = found[0] if found else None
                if strategy == default_strategy(opset):
                    if row.latency_ratio is None or row.memory_ratio is None:
                        row.target = "MISS(error)"
                    else:
                        over = [
                            n for n, v in (("lat", row.latency_ratio), ("mem", row.memory_ratio)) if v > TARGET_RATIO
                        ]
                        row.target = "PASS" if not over else f"MISS({','.join(over)})"
                rows.append(row)
    return rows


def format_table(rows: list[Row]) -> str:
    headers = [
        "tokens",
        "opset",
        "strategy",
        "stock ms",
        "dymos ms",
        "lat ratio",
        "stock peak MB",
        "dymos peak MB",
        "mem ratio",
        "target",
    ]

    def num(v: float | None, fmt: str) -> str:
        return "err" if v is None else format(v, fmt)

    body = []
    for r in rows:
        strategy = f"{r.strategy}*" if r.strategy == default_strategy(r.opset) else r.strategy
        body.append(
            [
                str(r.tokens),
                str(r.opset),
                strategy,
                num(r.stock_ms, ".1f"),
                num(r.dymos_ms, ".1f"),
                num(r.latency_ratio, ".3f"),
                num(r.stock_peak_mb, ".0f"),
                num(r.dymos_peak_mb, ".0f"),
                num(r.memory_ratio, ".3f"),
                r.target,
            ]
        )
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(headers)]
    left = {2, 9}
    lines = [
        "  ".join(h.ljust(w) if i in left else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))),
        "  ".join("-" * w for w in widths),
    ]
    for b in body:
        lines.append("  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(b, widths))))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/bench.py",
        description=(
            "Benchmark the DyMoS-active ONNX export (motion_strength = 2.0 for every item) against the stock export "
            "of the same Wan model, on onnxruntime CPU: median latency and peak RSS, as DyMoS/stock ratios measured "
            "side by side (interleaved, each measurement in a fresh process) in one run. Target: the default "
            f"strategy (split at opset 20, fold at 23) within {TARGET_RATIO}x of stock in both."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        default="1280,3328",
        help=f"comma list of self-attention token counts (presets {sorted(PRESET_SIZES)}) or latent FxHxW",
    )
    parser.add_argument("--strategies", default=",".join(STRATEGY_NAMES), help="comma list of mask, split, fold")
    parser.add_argument("--opsets", default="20,23", help="comma list of ONNX opsets (split is skipped at >= 23)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (stock + each strategy per round)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per measurement")
    parser.add_argument("--iters", type=int, default=5, help="timed runs per measurement (median taken)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per measurement subprocess")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke: the 1280-token size only, 1 repeat, 1 warmup, 3 iters (explicit options still win)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "dymos-bench",
        help="export cache directory (ONNX files keyed by config, versions and source; reruns reuse them)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results (and raw runs) as JSON")
    parser.add_argument("--measure", metavar="ONNX", help=argparse.SUPPRESS)  # internal: one measurement
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        given = set(argv if argv is not None else sys.argv[1:])
        flags = {a.split("=")[0] for a in given}
        if "--sizes" not in flags:
            args.sizes = "1280"
        if "--repeats" not in flags:
            args.repeats = 1
        if "--warmup" not in flags:
            args.warmup = 1
        if "--iters" not in flags:
            args.iters = 3
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.measure:
        result = measure(args.measure, args.inputs, warmup=args.warmup, iters=args.iters, threads=args.threads)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    started = time.perf_counter()
    sizes = sorted({parse_size(t) for t in csv_list(args.sizes)}, key=lambda s: s.tokens)
    strategies = csv_list(args.strategies)
    unknown = [s for s in strategies if s not in STRATEGY_NAMES]
    if unknown:
        raise SystemExit(f"unknown strategies {unknown}; choose from {', '.join(STRATEGY_NAMES)}")
    opsets = [int(o) for o in csv_list(args.opsets)]

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    from dymos.export.build import default_strategy as real_default

    for opset in opsets:
        assert default_strategy(opset) == real_default(opset), "tools/bench.py's default_strategy is out of date"
    skipped = [(s, o) for o in opsets for s in strategies if not valid(s, o)]
    wanted = [(s, o) for o in opsets for s in ["stock", *strategies] if valid(s, o)]
    config = bench_config()
    args.out.mkdir(parents=True, exist_ok=True)
    artifacts = export_all(config, sizes, wanted, args.out, log)
    inputs = write_inputs(config, sizes, args.out)
    exported_s = time.perf_counter() - started

    measurements: list[Measurement] = []
    total = args.repeats * len(sizes) * len(artifacts)
    done = 0
    for repeat in range(args.repeats):
        for s in sizes:
            for opset in opsets:
                group = [a for a in artifacts if a.opset == opset]
                shift = repeat % len(group)
                group = group[shift:] + group[:shift]  # stock's place in the order rotates per repeat
                for art in group:
                    done += 1
                    m = Measurement(repeat, s.tokens, opset, art.strategy)
                    if art.error:
                        m.error = f"export failed: {art.error}"
                    else:
                        t0 = time.perf_counter()
                        m.result, m.error = run_measure(art, inputs[s], args)
                        m.wall_s = time.perf_counter() - t0
                    measurements.append(m)
                    what = f"[{done}/{total}] r{repeat + 1} {s.tokens} tok opset {opset} {art.strategy:<5}"
                    if m.result:
                        res = m.result
                        log(f"{what} {res['median_ms']:8.1f} ms  peak {res['peak_mb']:6.0f} MB  ({m.wall_s:.1f}s)")
                    else:
                        log(f"{what} FAILED: {m.error}")

    rows = summarize(measurements, artifacts, sizes)
    total_s = time.perf_counter() - started
    versions = _versions()
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print()
    print(
        f"DyMoS vs stock, onnxruntime CPU ({args.threads} intra-op threads), Wan (8x64 heads, FFN 1536, 2 layers), "
        f"batch {BATCH}, strength {STRENGTH}"
    )
    print(f"command: {command}")
    print(
        f"machine: {platform.machine()} {platform.system()}, cpu_count {os.cpu_count()}, usable {affinity}, "
        f"load avg {os.getloadavg()[0]:.2f}; torch {versions['torch']}, onnxruntime {versions['onnxruntime']}, "
        f"onnx {versions['onnx']}, diffusers {versions['diffusers']}, python {versions['python']}"
    )
    print(
        f"sizes: {', '.join(f'{s.tokens} tokens (latent {s.label})' for s in sizes)}; repeats {args.repeats}, "
        f"warmup {args.warmup}, iters {args.iters}"
    )
    print()
    print(format_table(rows))
    print()
    print(
        "ms / MB: medians over repeats of each process's median latency / peak RSS (VmHWM, whole process). "
        "Ratios: median over repeats of DyMoS / stock measured in the same repeat. * = default strategy for the "
        f"opset; target: both ratios <= {TARGET_RATIO}."
    )
    for s, o in skipped:
        print(f"skipped: {s} at opset {o} (ORT's opset-23 Attention rejects its query-broadcast key mask)")
    problems = [r for r in rows if r.error]
    for r in problems:
        print(f"error: {r.tokens} tok opset {r.opset} {r.strategy}: {r.error}")
    print(f"total {total_s:.0f}s (exports + inputs {exported_s:.0f}s)")

    if args.json:
        payload = {
            "command": command,
            "machine": {"cpu_count": os.cpu_count(), "usable_cpus": affinity, "platform": platform.platform()},
            "versions": versions,
            "settings": {
                "sizes": [{"tokens": s.tokens, "latent": s.label} for s in sizes],
                "batch": BATCH,
                "strength": STRENGTH,
                "repeats": args.repeats,
                "warmup": args.warmup,
                "iters": args.iters,
                "threads": args.threads,
                "target_ratio": TARGET_RATIO,
                "model_config": config,
            },
            "rows": [asdict(r) for r in rows],
            "artifacts": [{**asdict(a), "path": str(a.path)} for a in artifacts],
            "measurements": [asdict(m) for m in measurements],
            "skipped": [{"strategy": s, "opset": o} for s, o in skipped],
            "total_s": total_s,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"JSON: {args.json}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
