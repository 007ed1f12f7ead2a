"""TensorRT engine build from an exported ONNX graph, through TensorRT's Python API (no trtexec, no shell strings).

One optimization profile comes from the :class:`~dymos.export.specs.ExportSpec` (its min/opt/max per dynamic dim),
the graph is checked for TensorRT compatibility on the CPU side first (:mod:`.trt_compat`), and engines are cached
under a key of everything that changes the engine — the ONNX graph and weights, precision, profile, TensorRT
version, GPU and builder settings — because engines are not portable across TensorRT versions or GPU architectures
and a rebuild takes minutes. TensorRT is imported only inside the functions that need it: this module loads on
machines without it, and :func:`build_engine` says how to install it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import onnx

from dymos.manifest import atomic_write_bytes, sha256_file

from .specs import ExportSpec
from .trt_compat import check_tensorrt_compat

ENGINE_NAME = "denoiser.plan"  # the engine of denoiser.onnx
PRECISIONS = ("fp32", "fp16", "bf16")
# Bump when the build settings below change in a way that changes engines: old cache entries then stop matching.
BUILDER_REVISION = 1

ProfileShapes = list[tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


class TensorRTNotInstalledError(ImportError):
    """TensorRT's Python package is missing (CPU machines cannot install it)."""


class TensorRTBuildError(RuntimeError):
    """The ONNX parser or the builder refused the graph; the message lists TensorRT's own errors."""


def tensorrt_version() -> str | None:
    """The installed TensorRT version, or None where TensorRT is not installed."""
    try:
        import tensorrt
    except (ImportError, OSError):  # OSError: the package is there but its CUDA libraries are not
        return None
    return str(tensorrt.__version__)


def _import_tensorrt() -> Any:
    try:
        import tensorrt
    except (ImportError, OSError) as err:
        raise TensorRTNotInstalledError(
            "TensorRT is not installed: `make setup GPU=1` installs it (the `gpu` extra: tensorrt>=10.14, "
            f"cuda-python) on a machine with an NVIDIA GPU ({err})"
        ) from err
    return tensorrt


def engine_cache_key(
    onnx_sha256: str, precision: str, profile: dict, tensorrt_version: str, extra: dict | None = None
) -> str:
    """A stable hex digest of everything an engine depends on (sorted JSON; tuples and lists hash the same)."""
    body = {
        "onnx_sha256": onnx_sha256,
        "precision": precision,
        "profile": {name: [list(shape) for shape in shapes] for name, shapes in profile.items()},
        "tensorrt_version": tensorrt_version,
        "extra": extra or {},
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode()).hexdigest()


def profile_shapes(spec: ExportSpec) -> ProfileShapes:
    """``[(input, min, opt, max)]`` from the spec, refusing shapes TensorRT would reject only at build time."""
    shapes: ProfileShapes = []
    for name, (low, opt, high) in spec.profile().items():
        if not len(low) == len(opt) == len(high):
            raise ValueError(f"profile of {name!r} mixes ranks: min {low}, opt {opt}, max {high}")
        for axis, (a, b, c) in enumerate(zip(low, opt, high)):
            if not 0 <= a <= b <= c:
                raise ValueError(f"profile of {name!r} axis {axis} needs 0 <= min <= opt <= max, got {a}, {b}, {c}")
        shapes.append((name, tuple(low), tuple(opt), tuple(high)))
    return shapes


def build_engine(
    onnx_path: str | Path,
    spec: ExportSpec,
    out_dir: str | Path,
    *,
    precision: str = "fp16",
    cache_dir: str | Path | None = None,
    timing_cache: str | Path | None = None,
    workspace_gb: float | None = None,
    progress: bool = True,
) -> Path:
    """Build (or reuse from ``cache_dir``) the engine of ``onnx_path`` and write ``out_dir/<onnx stem>.plan``
    (``denoiser.plan`` for ``denoiser.onnx``).

    ``precision``: ``fp32``, or ``fp16``/``bf16`` allowed on top of fp32 (TensorRT picks per layer).
    ``timing_cache``: a file loaded before and saved after the build, so later builds skip tactic timing.
    ``workspace_gb``: cap on the builder's scratch memory (default: TensorRT's, the whole GPU).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if workspace_gb is not None and workspace_gb <= 0:
        raise ValueError(f"workspace_gb must be positive, got {workspace_gb}")
    shapes = profile_shapes(spec)
    trt = _import_tensorrt()
    onnx_path = Path(onnx_path)
    graph = onnx.load(str(onnx_path), load_external_data=False)
    check_tensorrt_compat(graph, tensorrt_version=trt.__version__).raise_if_incompatible()
    _match_graph_inputs(graph, shapes)

    extra = {"builder": BUILDER_REVISION, "device": _device_tag(), "workspace_gb": workspace_gb}
    key = engine_cache_key(_onnx_digest(onnx_path, graph), precision, spec.profile(), trt.__version__, extra)
    out = Path(out_dir) / f"{onnx_path.stem}.plan"
    out.parent.mkdir(parents=True, exist_ok=True)
    cached = Path(cache_dir) / f"{key}.plan" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        _atomic_copy(cached, out)
        return out

    engine = _build(trt, onnx_path, shapes, precision, timing_cache, workspace_gb, progress)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cached, engine)
    atomic_write_bytes(out, engine)
    return out


def _build(
    trt: Any,
    onnx_path: Path,
    shapes: ProfileShapes,
    precision: str,
    timing_cache: str | Path | None,
    workspace_gb: float | None,
    progress: bool,
) -> memoryview:
    """Parse, configure and build; returns the serialized engine."""
    logger = _recording_logger(trt)
    builder = trt.Builder(logger)
    # TensorRT 10: every network is explicit-batch (EXPLICIT_BATCH is deprecated and ignored), so no flags.
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # reads external weights next to the file
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise TensorRTBuildError(
            f"TensorRT's ONNX parser rejected {onnx_path}:\n" + "\n".join(f"  - {e}" for e in errors or logger.errors)
        )

    config = builder.create_builder_config()
    if workspace_gb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    profile = builder.create_optimization_profile()
    for name, low, opt, high in shapes:
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)

    cache_path = Path(timing_cache) if timing_cache is not None else None
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and cache_path.is_file() else b"")
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        logger.log(trt.ILogger.Severity.WARNING, f"timing cache {cache_path} does not match this GPU; starting fresh")
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)

    monitor = _progress_monitor(trt) if progress else None
    if monitor is not None:
        config.progress_monitor = monitor
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if monitor is not None:
            monitor.close()
    if serialized is None:
        listed = "\n".join(f"  - {e}" for e in logger.errors) or "  (no error logged)"
        raise TensorRTBuildError(f"TensorRT could not build an engine from {onnx_path}:\n{listed}")
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache_path, memoryview(config.get_timing_cache().serialize()))
    return memoryview(serialized)


def _match_graph_inputs(graph: onnx.ModelProto, shapes: ProfileShapes) -> None:
    """The spec's profile must cover exactly the graph's inputs, rank for rank, static dims within range."""
    initializers = {t.name for t in graph.graph.initializer}
    inputs = {v.name: v for v in graph.graph.input if v.name not in initializers}
    profiled = {name for name, *_ in shapes}
    problems = [f"graph input {name!r} has no profile in the spec" for name in inputs if name not in profiled]
    problems += [f"spec input {name!r} is not a graph input" for name in profiled if name not in inputs]
    for name, low, _, high in shapes:
        if name not in inputs:
            continue
        dims = inputs[name].type.tensor_type.shape.dim
        if len(dims) != len(low):
            problems.append(f"graph input {name!r} has rank {len(dims)}, the spec's profile rank {len(low)}")
            continue
        for axis, dim in enumerate(dims):
            if dim.HasField("dim_value") and not low[axis] == high[axis] == dim.dim_value:
                problems.append(
                    f"graph input {name!r} axis {axis} is static {dim.dim_value}, the profile spans "
                    f"{low[axis]}..{high[axis]}"
                )
    if problems:
        raise ValueError("the spec does not match the ONNX graph:\n" + "\n".join(f"  - {p}" for p in problems))


def _onnx_digest(onnx_path: Path, graph: onnx.ModelProto) -> str:
    """sha256 over the graph file and every external-data file it names, so new weights mean a new engine."""
    locations = sorted(
        {
            entry.value
            for tensor in graph.graph.initializer
            if tensor.data_location == onnx.TensorProto.EXTERNAL
            for entry in tensor.external_data
            if entry.key == "location"
        }
    )
    if not locations:
        return sha256_file(onnx_path)
    parts = {"graph": sha256_file(onnx_path)}
    parts.update({loc: sha256_file(onnx_path.parent / loc) for loc in locations})
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _device_tag() -> str:
    """GPU name and compute capability: engines only run on the architecture they were built for. Asked of
    cuda-python (installed with TensorRT by the gpu extra), else of torch (a CUDA build)."""
    try:
        from cuda.bindings import runtime as cudart

        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) == 0:
            name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
            return f"{name.rstrip(chr(0)).strip()} sm_{props.major}{props.minor}"
    except Exception:  # not installed, or no usable GPU: try torch
        pass
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability()
            return f"{torch.cuda.get_device_name()} sm_{major}{minor}"
    except Exception:  # a CPU torch build or a broken driver: the key then just lacks the GPU
        pass
    return "unknown"


def _atomic_copy(src: Path, dst: Path) -> None:
    """Copy without reading a multi-GB engine into memory, renaming into place like atomic_write_bytes."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _recording_logger(trt: Any) -> Any:
    """A TensorRT logger that prints warnings and errors and keeps the errors for the exception message."""

    class RecordingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                print(f"[TensorRT] {severity.name}: {msg}", flush=True)

    return RecordingLogger()


def _progress_monitor(trt: Any) -> Any:
    """An IProgressMonitor drawing one tqdm bar per builder phase (nested phases nest their bars)."""
    from tqdm.auto import tqdm

    class TqdmProgressMonitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._bars: dict[str, Any] = {}
            self._lock = threading.Lock()  # TensorRT may call from several builder threads

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with self._lock:
                depth = len(self._bars)
                self._bars[phase_name] = tqdm(
                    total=num_steps, desc=phase_name, position=depth, leave=depth == 0, dynamic_ncols=True
                )

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self._lock:
                bar = self._bars.get(phase_name)
                if bar is not None:
                    bar.update(step + 1 - bar.n)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            with self._lock:
                bar = self._bars.pop(phase_name, None)
                if bar is not None:
                    bar.close()

        def close(self) -> None:
            with self._lock:
                for bar in self._bars.values():
                    bar.close()
                self._bars.clear()

    return TqdmProgressMonitor()
