"""DyMoS export cost against the stock export: onnxruntime CPU latency and peak memory, as ratios from one run.

Why this shape: the machine is shared and noisy, so absolute milliseconds mean little; what matters is how much
an active DyMoS graph (``motion_strength`` non-zero) costs over the stock graph of the same model at the same
size. So stock and DyMoS are measured side by side in the same run, interleaved at the finest grain: for
latency, one process per (size, opset) holds the stock session and every strategy's, and runs them round-robin
(the order rotates per round); each round gives one DyMoS/stock ratio from runs seconds apart, and the reported
ratio is the median over rounds. Peak memory is a process-wide high-water mark, so it comes from a fresh process
per (artifact, size) instead, reading its own ``VmHWM``. Measuring processes import only numpy and onnxruntime
(``--measure``, internal).

The model is a ``WanTransformer3DModel`` with the real Wan structure (the tiny ``wan22`` layout, widened to
8 heads x 64, FFN 1536, 2 layers, random weights). Each ONNX file is exported once, with dynamic
frames/height/width, and run at every size. Exports are cached under ``--out`` by a key over the config, the
export settings, the library versions and the source files the graph is made of (:data:`GRAPH_SOURCES`).

Target (the project's prototype measurements, the numbers to beat): the default strategy (``split`` at opset 20,
``fold`` at 23, see ``export/build.py:default_strategy``) within 1.05x of stock in latency and peak memory at every
size.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "BENCH_RESULT "
TARGET_RATIO = 1.05
MEMORY_RUNS = 2  # runs per memory process: the peak is steady from run 2 on (see measure_memory)
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
    """The exporter's own default (imported lazily so ``--help`` and the measuring subprocesses stay torch-free)."""
    from dymos.export.build import default_strategy as exporter_default

    return exporter_default(opset)


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


EXPORT_SIZE = Size(*PRESET_SIZES[3328])  # the export's sample / TensorRT-opt size; the graphs are dynamic


def csv_list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


# ---------------------------------------------------------------------------------------------------------------
# --measure: the subprocesses. Torch-free (numpy + onnxruntime only), so a process's peak is the runtime's own.
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


def _load(inputs_path: str) -> dict[str, Any]:
    import numpy as np

    with np.load(inputs_path) as data:
        return {k: data[k] for k in data.files}


def _session(onnx_path: str, arrays: dict[str, Any], threads: int) -> tuple[Any, dict[str, Any]]:
    """A CPU session with default graph optimizations and ``threads`` intra-op threads, and its feed.

    The feed holds only the graph's inputs: the stock graph may have dropped the strength it ignores.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise RuntimeError(f"inputs file lacks graph inputs {missing}")
    return session, {n: arrays[n] for n in names}


def _timed_run(session: Any, feed: dict[str, Any]) -> float:
    """One run, in ms; a non-finite output fails the measurement rather than timing garbage."""
    import numpy as np

    t = time.perf_counter()
    out = session.run(None, feed)
    ms = (time.perf_counter() - t) * 1e3
    if not all(np.isfinite(o).all() for o in out):
        raise RuntimeError("non-finite output")
    return ms


def measure_memory(onnx_path: str, inputs_path: str, *, runs: int, threads: int) -> dict[str, Any]:
    """Peak RSS (VmHWM) of a fresh process that loads one artifact and runs it ``runs`` times.

    Peak memory is a process-wide high-water mark, so each (artifact, size) gets its own process. It is not
    reached on the first run: onnxruntime plans a memory pattern from run 1 and allocates it on run 2 on top of
    the arena, so steady state (what a sampling loop sees) needs >= 2 runs; :data:`MEMORY_RUNS` are done.
    """
    arrays = _load(inputs_path)
    rss_imports = _status_mb("VmRSS")
    t0 = time.perf_counter()
    session, feed = _session(onnx_path, arrays, threads)
    load_s = time.perf_counter() - t0
    rss_session = _status_mb("VmRSS")
    times, peaks = [], []
    for _ in range(runs):
        times.append(_timed_run(session, feed))
        peaks.append(_status_mb("VmHWM"))
    return {
        "peak_mb": peaks[-1],
        "peak_after_each_run_mb": peaks,
        "rss_before_session_mb": rss_imports,
        "rss_after_session_mb": rss_session,
        "session_load_s": load_s,
        "times_ms": times,
        "graph_inputs": list(feed),
    }


def measure_latency(
    labeled: list[tuple[str, str]], inputs_path: str, *, warmup: int, repeats: int, threads: int
) -> dict[str, Any]:
    """Round-robin latency of several artifacts in one process: every round runs each once, in an order that
    rotates per round, so stock and DyMoS runs sit seconds apart and share whatever load the machine has."""
    arrays = _load(inputs_path)
    sessions = {label: _session(path, arrays, threads) for label, path in labeled}
    for session, feed in sessions.values():
        for _ in range(warmup):
            session.run(None, feed)
    labels = list(sessions)
    rounds = []
    for r in range(repeats):
        order = labels[r % len(labels) :] + labels[: r % len(labels)]
        times = {label: _timed_run(*sessions[label]) for label in order}
        rounds.append(times)
        shown = ", ".join(f"{label} {times[label]:.0f}" for label in labels)
        print(f"          round {r + 1}/{repeats}: {shown} ms", file=sys.stderr, flush=True)
    return {"rounds": rounds}


# ---------------------------------------------------------------------------------------------------------------
# export (torch side)
# ---------------------------------------------------------------------------------------------------------------


# The code an exported graph is made of; editing anything else (CLI, runtime, ...) keeps the cache valid.
GRAPH_SOURCES = (
    "dymos/attention.py",
    "dymos/denoiser.py",
    "dymos/processor.py",
    "dymos/layouts.py",
    "dymos/schedule.py",
    "dymos/inputs.py",
    "export/onnx_export.py",
    "export/specs.py",
    "export/wrapper.py",
)


def _source_hash() -> str:
    """Exports depend on the method and exporter code: a change there invalidates the cache."""
    digest = hashlib.sha256()
    for name in GRAPH_SOURCES:
        path = ROOT / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.exists() else b"<missing>")
    return digest.hexdigest()


def build_model(config: dict[str, Any], seed: int = 0) -> Any:
    """A fresh model per wrapper (DyMoS patches processors in place); the same seed gives the same weights."""
    import diffusers
    import torch

    torch.manual_seed(seed)
    return diffusers.WanTransformer3DModel.from_config(config).eval()


def build_bench_spec(config: dict[str, Any], sizes: list[Size]) -> Any:
    """The export spec at :data:`EXPORT_SIZE` (so --quick and full runs share cached exports), its dynamic ranges
    widened if a requested size falls outside them."""
    from dataclasses import replace

    from dymos.export.specs import DimRange, build_spec

    top = EXPORT_SIZE
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

    from dymos.export.onnx_export import export_program, onnx_model, save_onnx
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
    top = EXPORT_SIZE
    tensors, _ = sample_inputs("wan", config, batch=BATCH, frames=top.frames, height=top.height, width=top.width)
    sample = [*tensors.values(), torch.full((BATCH,), STRENGTH)]
    sequence_lengths = sorted({s.tokens for s in sizes} | set(PRESET_SIZES))
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
            # The stock graph keeps the strength input (same signature) but ignores it: the checks allow that.
            proto = onnx_model(
                programs[art.strategy],
                spec,
                opset=art.opset,
                sequence_lengths=sequence_lengths,
                require_strength=art.strategy != "stock",
            )
            save_onnx(proto, art.path)
            onnx.checker.check_model(str(art.path))
            for old in out.glob(f"{art.strategy}-opset{art.opset}-*.onnx*"):  # one cached version per artifact
                if not old.name.startswith(art.path.name):
                    old.unlink()
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


def run_child(mode: str, labeled: list[tuple[str, Path]], inputs: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run a ``--measure`` subprocess (its progress goes straight to stderr); returns its result or ``error``."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", mode, "--inputs", str(inputs)]
    for label, path in labeled:
        cmd += ["--onnx", f"{label}={path}"]
    cmd += ["--warmup", str(args.warmup), "--repeats", str(args.repeats), "--threads", str(args.threads)]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout:.0f}s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    return {"error": f"measurement process exited {proc.returncode} without a result (its stderr is above)"}


def child_main(args: argparse.Namespace) -> int:
    """``--measure memory|latency``: print one ``BENCH_RESULT {json}`` line; errors are reported, not raised."""
    labeled = [tuple(item.split("=", 1)) for item in args.onnx]
    try:
        if args.measure == "memory":
            (_, path), *rest = labeled
            if rest:
                raise ValueError("memory mode measures one artifact per process")
            result = measure_memory(path, args.inputs, runs=MEMORY_RUNS, threads=args.threads)
        else:
            result = measure_latency(
                labeled, args.inputs, warmup=args.warmup, repeats=args.repeats, threads=args.threads
            )
    except Exception as err:
        result = {"error": f"{type(err).__name__}: {err}"}
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


@dataclass
class Row:
    """One DyMoS artifact at one size against the stock artifact of its opset."""

    tokens: int
    opset: int
    strategy: str
    stock_ms: float | None = None
    dymos_ms: float | None = None
    latency_ratio: float | None = None
    latency_ratio_q1: float | None = None
    latency_ratio_q3: float | None = None
    stock_peak_mb: float | None = None
    dymos_peak_mb: float | None = None
    memory_ratio: float | None = None
    target: str = "-"
    rounds: int = 0
    error: str | None = None


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def make_rows(
    memory: dict[tuple[int, int, str], dict[str, Any]],
    latency: dict[tuple[int, int], dict[str, Any]],
    artifacts: list[Artifact],
    sizes: list[Size],
) -> list[Row]:
    """ms: median over rounds; latency ratio: median of per-round DyMoS/stock (the same round, seconds apart);
    memory ratio: DyMoS peak / stock peak, each from its own fresh process."""
    arts = {(a.strategy, a.opset): a for a in artifacts}
    rows = []
    for s in sizes:
        for opset in sorted({a.opset for a in artifacts}):
            for strategy in [a.strategy for a in artifacts if a.opset == opset and a.strategy != "stock"]:
                row = Row(s.tokens, opset, strategy)
                errors = [arts[(name, opset)].error for name in ("stock", strategy)]
                mem = [memory.get((s.tokens, opset, name), {}) for name in ("stock", strategy)]
                lat = latency.get((s.tokens, opset), {})
                errors += [m.get("error") for m in mem] + [lat.get("error")]
                if all("peak_mb" in m for m in mem):
                    row.stock_peak_mb, row.dymos_peak_mb = mem[0]["peak_mb"], mem[1]["peak_mb"]
                    row.memory_ratio = row.dymos_peak_mb / row.stock_peak_mb
                rounds = [r for r in lat.get("rounds", []) if "stock" in r and strategy in r]
                if rounds:
                    row.rounds = len(rounds)
                    row.stock_ms = statistics.median(r["stock"] for r in rounds)
                    row.dymos_ms = statistics.median(r[strategy] for r in rounds)
                    ratios = [r[strategy] / r["stock"] for r in rounds]
                    row.latency_ratio = statistics.median(ratios)
                    row.latency_ratio_q1, row.latency_ratio_q3 = _quartiles(ratios)
                found = [e for e in errors if e]
                row.error = found[0] if found else None
                if strategy == default_strategy(opset):
                    if row.latency_ratio is None or row.memory_ratio is None:
                        row.target = "MISS(error)"
                    else:
                        checks = (("lat", row.latency_ratio), ("mem", row.memory_ratio))
                        over = [name for name, value in checks if value > TARGET_RATIO]
                        row.target = f"MISS({','.join(over)})" if over else "PASS"
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
        "lat ratio q1-q3",
    ]

    def num(v: float | None, fmt: str) -> str:
        return "err" if v is None else format(v, fmt)

    body = []
    for r in rows:
        spread = "-" if r.latency_ratio_q1 is None else f"{r.latency_ratio_q1:.3f}-{r.latency_ratio_q3:.3f}"
        body.append(
            [
                str(r.tokens),
                str(r.opset),
                f"{r.strategy}*" if r.strategy == default_strategy(r.opset) else r.strategy,
                num(r.stock_ms, ".1f"),
                num(r.dymos_ms, ".1f"),
                num(r.latency_ratio, ".3f"),
                num(r.stock_peak_mb, ".0f"),
                num(r.dymos_peak_mb, ".0f"),
                num(r.memory_ratio, ".3f"),
                r.target,
                spread,
            ]
        )
    widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(headers)]
    left = {2, 9, 10}

    def line(cells: list[str]) -> str:
        text = "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return text.rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(b) for b in body)])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/bench.py",
        allow_abbrev=False,  # --quick keeps the flags given, found by their exact spelling
        description=(
            "Benchmark the DyMoS-active ONNX export (motion_strength = 2.0 for every item) against the stock export "
            "of the same Wan model on onnxruntime CPU, as DyMoS/stock ratios from one run. Latency: one process per "
            "(size, opset) runs stock and every strategy round-robin (order rotating per round); ratio = median of "
            "per-round ratios. Peak memory: a fresh process per (artifact, size), VmHWM. Target: the default "
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
    parser.add_argument("--repeats", type=int, default=7, help="latency rounds (each runs stock and every strategy)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per session before the latency rounds")
    parser.add_argument(
        "--mem-repeats", type=int, default=3, help="fresh memory processes per (artifact, size); median peak taken"
    )
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per measurement subprocess")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke: the 1280-token size only, 3 rounds, 1 warmup, 1 memory process each (explicit options win)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "dymos-bench",
        help="export cache directory (ONNX files keyed by config, versions and graph source; reruns reuse them)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results (and raw runs) as JSON")
    parser.add_argument("--measure", choices=("memory", "latency"), help=argparse.SUPPRESS)  # internal
    parser.add_argument("--onnx", action="append", default=[], help=argparse.SUPPRESS)  # internal: LABEL=PATH
    parser.add_argument("--inputs", help=argparse.SUPPRESS)  # internal: .npz of graph inputs
    args = parser.parse_args(argv)
    if args.quick:
        flags = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
        for flag, value in (("--sizes", "1280"), ("--repeats", 3), ("--warmup", 1), ("--mem-repeats", 1)):
            if flag not in flags:
                setattr(args, flag.lstrip("-").replace("-", "_"), value)
    if args.repeats < 1 or args.mem_repeats < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("need --repeats >= 1, --mem-repeats >= 1, --warmup >= 0, --threads >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.measure:
        return child_main(args)

    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    try:
        sizes = sorted({parse_size(t) for t in csv_list(args.sizes)}, key=lambda s: s.tokens)
    except argparse.ArgumentTypeError as err:
        raise SystemExit(f"--sizes: {err}") from None
    strategies = csv_list(args.strategies)
    unknown = [s for s in strategies if s not in STRATEGY_NAMES]
    if unknown:
        raise SystemExit(f"unknown strategies {unknown}; choose from {', '.join(STRATEGY_NAMES)}")
    opsets = [int(o) for o in csv_list(args.opsets)]

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    skipped = [(s, o) for o in opsets for s in strategies if not valid(s, o)]
    wanted = [(s, o) for o in opsets for s in ["stock", *strategies] if valid(s, o)]
    config = bench_config()
    args.out.mkdir(parents=True, exist_ok=True)
    artifacts = export_all(config, sizes, wanted, args.out, log)
    inputs = write_inputs(config, sizes, args.out)
    exported_s = time.perf_counter() - started

    memory: dict[tuple[int, int, str], dict[str, Any]] = {}
    latency: dict[tuple[int, int], dict[str, Any]] = {}
    for s in sizes:
        for opset in opsets:
            group = [a for a in artifacts if a.opset == opset and not a.error]
            processes: dict[str, list[dict[str, Any]]] = {a.strategy: [] for a in group}
            for mem_round in range(args.mem_repeats):
                for art in group:
                    t0 = time.perf_counter()
                    res = run_child("memory", [("x", art.path)], inputs[s], args)
                    processes[art.strategy].append(res)
                    what = (
                        f"[memory ] {s.tokens} tok opset {opset} {art.strategy:<5} ({mem_round + 1}/{args.mem_repeats})"
                    )
                    if "error" in res:
                        log(f"{what} FAILED: {res['error']}")
                    else:
                        log(f"{what} peak {res['peak_mb']:6.0f} MB ({time.perf_counter() - t0:.1f}s)")
            for strategy, results in processes.items():
                peaks = [r["peak_mb"] for r in results if "peak_mb" in r]
                errors = [r["error"] for r in results if "error" in r]
                entry: dict[str, Any] = {"peaks_mb": peaks, "processes": results}
                if errors:
                    entry["error"] = errors[0]
                else:
                    entry["peak_mb"] = statistics.median(peaks)
                memory[(s.tokens, opset, strategy)] = entry
            if not any(a.strategy == "stock" for a in group) or len(group) < 2:
                latency[(s.tokens, opset)] = {"error": "nothing to compare (an export failed)"}
                continue
            log(f"[latency] {s.tokens} tok opset {opset}: {', '.join(a.strategy for a in group)} round-robin")
            t0 = time.perf_counter()
            res = latency[(s.tokens, opset)] = run_child(
                "latency", [(a.strategy, a.path) for a in group], inputs[s], args
            )
            if "error" in res:
                log(f"[latency] {s.tokens} tok opset {opset} FAILED: {res['error']}")
            else:
                medians = ", ".join(
                    f"{a.strategy} {statistics.median(r[a.strategy] for r in res['rounds']):.0f}" for a in group
                )
                log(f"[latency] {s.tokens} tok opset {opset}: median {medians} ms ({time.perf_counter() - t0:.1f}s)")

    rows = make_rows(memory, latency, artifacts, sizes)
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
        f"load avg {load_start:.2f} at start / {os.getloadavg()[0]:.2f} at end; torch {versions['torch']}, "
        f"onnxruntime {versions['onnxruntime']}, onnx {versions['onnx']}, diffusers {versions['diffusers']}, "
        f"python {versions['python']}"
    )
    print(
        f"sizes: {', '.join(f'{s.tokens} tokens (latent {s.label})' for s in sizes)}; {args.repeats} latency rounds, "
        f"warmup {args.warmup}, {args.mem_repeats} memory process(es) per artifact and size"
    )
    print()
    print(format_table(rows) if rows else "(no DyMoS artifact to compare: see skipped/errors below)")
    print()
    print(
        "ms: median over rounds; lat ratio: median of per-round DyMoS/stock (same process, same round), q1-q3 its "
        "spread; peak MB: median VmHWM of fresh processes per artifact and size (whole process, nothing subtracted, "
        f"after {MEMORY_RUNS} runs). "
        f"* = default strategy for the opset; target: lat and mem ratio <= {TARGET_RATIO}."
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
            "machine": {
                "cpu_count": os.cpu_count(),
                "usable_cpus": affinity,
                "platform": platform.platform(),
                "load_avg_start": load_start,
                "load_avg_end": os.getloadavg()[0],
            },
            "versions": versions,
            "settings": {
                "sizes": [{"tokens": s.tokens, "latent": s.label} for s in sizes],
                "batch": BATCH,
                "strength": STRENGTH,
                "repeats": args.repeats,
                "warmup": args.warmup,
                "mem_repeats": args.mem_repeats,
                "memory_runs": MEMORY_RUNS,
                "threads": args.threads,
                "target_ratio": TARGET_RATIO,
                "model_config": config,
            },
            "rows": [asdict(r) for r in rows],
            "artifacts": [{**asdict(a), "path": str(a.path)} for a in artifacts],
            "memory": [{"tokens": k[0], "opset": k[1], "strategy": k[2], **v} for k, v in memory.items()],
            "latency": [{"tokens": k[0], "opset": k[1], **v} for k, v in latency.items()],
            "skipped": [{"strategy": s, "opset": o} for s, o in skipped],
            "total_s": total_s,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"JSON: {args.json}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
