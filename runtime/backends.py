"""Engine backends behind one small protocol: ``run(feed) -> {output name: array}``.

- :class:`OnnxRuntimeBackend`: onnxruntime, CPU or the CUDA provider where present.
- :class:`TensorRTBackend`: a serialized engine, I/O buffers allocated once for the profile's max shapes,
  asynchronous execution on one stream, optional CUDA-graph replay for repeated fixed shapes.
- :class:`AOTInductorBackend`: the AOTInductor package; the one backend that imports torch (optional).

:func:`open_backend` picks one from the manifest's artifacts and what is installed. Every backend validates the
feed against the manifest before running (see :mod:`dymos.runtime.artifacts`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from .artifacts import ExportDir, FeedError, SubmodelSpec

BACKENDS = ("tensorrt", "onnxruntime", "aoti")
THREADING = ("per-session", "shared", "no-spin")  # onnxruntime CPU thread setups, see OnnxRuntimeBackend
_shared_pool_threads: int | None = None  # the process-wide onnxruntime pool's size once this module created it


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (missing package, GPU or artifact)."""


class EngineError(RuntimeError):
    """An engine failed on a feed that fits its spec (out of memory, a provider failure): the engine's own error,
    named, instead of a library exception the caller cannot know."""


class Backend(Protocol):
    name: str
    spec: SubmodelSpec

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class OnnxRuntimeBackend:
    """onnxruntime session; the CUDA provider is used when onnxruntime-gpu offers it and ``device`` allows.

    ``threading`` (one of :data:`THREADING`) picks how sessions get CPU threads. The runtime alternates sessions
    (DyMoS graph, stock graph, VAE) on the same cores, and with onnxruntime's per-session pools (its default, and
    ours) the worker threads of the session that just ran keep busy-waiting while the next one runs
    (``tools/bench_sessions.py`` measures it). ``shared`` runs every session on one process-wide pool of
    ``threads`` threads (``set_global_thread_pool_sizes`` + ``use_per_session_threads = False``); ``dymos run``
    uses it. onnxruntime allows that pool once per process and refuses per-session pools after it (polygraphy's
    sessions included), so it is for processes that only run engines. ``no-spin`` keeps per-session pools with
    spinning off.
    """

    def __init__(
        self,
        path: Path,
        spec: SubmodelSpec,
        *,
        device: str = "auto",
        threads: int | None = None,
        threading: str = "per-session",
    ) -> None:
        import onnxruntime as ort

        if threading not in THREADING:
            raise ValueError(f"unknown threading {threading!r}; choose from {', '.join(THREADING)}")

        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        elif device == "cuda":
            raise BackendUnavailable(
                "onnxruntime has no CUDA provider here: install onnxruntime-gpu (make setup GPU=1)"
            )
        options = ort.SessionOptions()
        if threading == "shared":
            _create_shared_pool(ort, threads or 0)
            options.use_per_session_threads = False
        elif _shared_pool_threads is not None:
            raise ValueError(
                f"threading={threading!r}: this process already runs onnxruntime on its shared thread pool, after "
                "which onnxruntime refuses per-session pools; use threading='shared' here"
            )
        elif threads:
            options.intra_op_num_threads = threads
        if threading == "no-spin":
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as err:  # onnxruntime's errors (Fail, InvalidProtobuf, EPFail...) derive from Exception only
            raise BackendUnavailable(f"onnxruntime cannot load {path.name}: {err}") from err
        self.spec = spec
        self.name = f"onnxruntime ({providers[0]})"
        self._outputs = [o.name for o in self.session.get_outputs()]

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.spec.check_feed(feed)
        try:
            outputs = self.session.run(self._outputs, feed)
        except Exception as err:  # see __init__: onnxruntime's errors are not RuntimeErrors
            raise EngineError(f"{self.name} failed running {self.spec.name}: {err}") from err
        return dict(zip(self._outputs, outputs))


def _create_shared_pool(ort, threads: int) -> None:
    """Create onnxruntime's process-wide intra-op pool once (``threads`` 0: one per physical core). It can be
    created once per process; a second size is an error rather than a silent mismatch."""
    global _shared_pool_threads
    if _shared_pool_threads is None:
        try:
            ort.set_global_thread_pool_sizes(threads, 1)
        except Exception as err:  # onnxruntime's Fail: someone else in this process created it first
            if "already been created" not in str(err):
                raise
        _shared_pool_threads = threads
    elif threads != _shared_pool_threads:
        raise ValueError(
            f"onnxruntime's shared thread pool already has {_shared_pool_threads or 'default'} threads in this "
            f"process; {threads} cannot be set now (use threading='per-session' for a session of its own)"
        )


def engine_mismatch(engine_inputs: dict[str, np.dtype], spec: SubmodelSpec) -> str | None:
    """Why an engine's inputs (name -> dtype) do not fit the manifest's spec of them, or None: the sha256 ties the
    engine file to the manifest, but a hand-placed engine or a stale manifest must not feed wrong-sized buffers."""
    want = {t["name"]: np.dtype(t["dtype"]) for t in spec.inputs}
    if set(engine_inputs) != set(want):
        return f"engine inputs {sorted(engine_inputs)} differ from the manifest's {sorted(want)}"
    wrong = [f"{n}: engine {engine_inputs[n]}, manifest {want[n]}" for n in sorted(want) if engine_inputs[n] != want[n]]
    return "input dtypes differ (" + "; ".join(wrong) + ")" if wrong else None


class TensorRTBackend:
    """A TensorRT engine (TensorRT 10 API) with buffers allocated once for the profile's max shapes.

    Needs ``tensorrt`` and ``cuda-python`` (``make setup GPU=1``). ``cuda_graphs=True`` captures one graph per
    input-shape signature and replays it, which removes launch overhead in the fixed-shape sampling loop.
    """

    def __init__(
        self, path: Path, spec: SubmodelSpec, *, cuda_graphs: bool = False, built_with: str | None = None
    ) -> None:
        """``built_with``: the TensorRT version the manifest records for the engine; another installed version is
        refused before deserializing (engines are not portable across TensorRT versions)."""
        try:
            import tensorrt as trt
        except (ImportError, OSError) as err:  # OSError: the package without its CUDA libraries
            raise BackendUnavailable(f"TensorRT backend needs tensorrt ({err}); make setup GPU=1") from err
        if built_with is not None and built_with != trt.__version__:
            raise BackendUnavailable(
                f"{path} was built with TensorRT {built_with}, but TensorRT {trt.__version__} is installed: engines "
                "are not portable across versions; rebuild it (dymos export --formats onnx,trt)"
            )
        try:
            from cuda.bindings import runtime as cudart
        except ImportError as err:
            raise BackendUnavailable(f"TensorRT backend needs cuda-python ({err}); make setup GPU=1") from err
        self._trt, self._cudart = trt, cudart
        self.spec = spec
        self.name = f"tensorrt {trt.__version__}"
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise BackendUnavailable(f"{path} is not a TensorRT engine for this TensorRT/GPU")
        self._io = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self._inputs = [n for n in self._io if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        mismatch = engine_mismatch(
            {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in self._inputs}, spec
        )
        if mismatch:
            raise BackendUnavailable(f"{path} does not match its manifest: {mismatch}; re-export it")
        self.context = self.engine.create_execution_context()
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        self._graphs: dict[tuple, object] = {}
        self.stream = self._check(cudart.cudaStreamCreate())
        for name in self._io:
            shape = self._max_shape(name)
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            self._buffers[name] = (self._check(cudart.cudaMalloc(nbytes)), nbytes)
            self.context.set_tensor_address(name, self._buffers[name][0])
        self._cuda_graphs = cuda_graphs

    def close(self) -> None:
        """Free the device buffers, CUDA graphs and stream (also on garbage collection)."""
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        for graph in getattr(self, "_graphs", {}).values():
            cudart.cudaGraphExecDestroy(graph)
        for pointer, _ in getattr(self, "_buffers", {}).values():
            cudart.cudaFree(pointer)
        if getattr(self, "stream", None) is not None:
            cudart.cudaStreamDestroy(self.stream)
        self._graphs, self._buffers, self.stream, self._cudart = {}, {}, None, None

    def __del__(self) -> None:
        self.close()

    def _check(self, result):
        err, *value = result
        if int(err) != 0:
            raise EngineError(f"CUDA error {err}")
        return value[0] if len(value) == 1 else value

    def _max_shape(self, name: str) -> tuple[int, ...]:
        if self.engine.get_tensor_mode(name) == self._trt.TensorIOMode.INPUT:
            return tuple(self.engine.get_tensor_profile_shape(name, 0)[2])
        # outputs: resolve with every input at its max shape
        for inp in (n for n in self._io if self.engine.get_tensor_mode(n) == self._trt.TensorIOMode.INPUT):
            self.context.set_input_shape(inp, self.engine.get_tensor_profile_shape(inp, 0)[2])
        return tuple(self.context.get_tensor_shape(name))

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = self._cudart
        self.spec.check_feed(feed)
        for name in self._inputs:
            array = np.asarray(feed[name], order="C")  # keeps 0-d inputs 0-d (SVD timestep)
            if array.nbytes > self._buffers[name][1] or not self.context.set_input_shape(name, array.shape):
                raise FeedError(f"{name}: shape {array.shape} is outside the engine's optimization profile")
            self._check(
                cudart.cudaMemcpyAsync(
                    self._buffers[name][0],
                    array.ctypes.data,
                    array.nbytes,
                    cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                    self.stream,
                )
            )
        signature = tuple((n, feed[n].shape) for n in self._inputs)
        if self._cuda_graphs and signature in self._graphs:
            self._check(cudart.cudaGraphLaunch(self._graphs[signature], self.stream))
        elif self._cuda_graphs:
            self.context.execute_async_v3(self.stream)  # warm-up run before capture, as TensorRT requires
            self._check(
                cudart.cudaStreamBeginCapture(self.stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal)
            )
            self.context.execute_async_v3(self.stream)
            graph = self._check(cudart.cudaStreamEndCapture(self.stream))
            self._graphs[signature] = self._check(cudart.cudaGraphInstantiate(graph, 0))
            self._check(cudart.cudaGraphDestroy(graph))  # the instantiated graph keeps what it needs
            self._check(cudart.cudaGraphLaunch(self._graphs[signature], self.stream))
        elif not self.context.execute_async_v3(self.stream):
            raise EngineError(f"TensorRT failed running {self.spec.name}")
        outputs = {}
        for name in (n for n in self._io if n not in self._inputs):
            shape = tuple(self.context.get_tensor_shape(name))
            out = np.empty(shape, dtype=np.dtype(self._trt.nptype(self.engine.get_tensor_dtype(name))))
            self._check(
                cudart.cudaMemcpyAsync(
                    out.ctypes.data,
                    self._buffers[name][0],
                    out.nbytes,
                    cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                    self.stream,
                )
            )
            outputs[name] = out
        self._check(cudart.cudaStreamSynchronize(self.stream))
        return outputs


class AOTInductorBackend:
    """The AOTInductor package (imports torch: the optional backend)."""

    def __init__(self, path: Path, spec: SubmodelSpec, output_name: str) -> None:
        try:
            import torch
            from torch._inductor import aoti_load_package
        except ImportError as err:
            raise BackendUnavailable(f"the AOTInductor backend needs torch ({err})") from err
        self._torch = torch
        self.model = aoti_load_package(str(path))
        self.spec = spec
        self.name = "aotinductor"
        self._output = output_name

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.spec.check_feed(feed)
        args = [self._torch.from_numpy(np.ascontiguousarray(feed[n])) for n in self.spec.input_names]
        with self._torch.no_grad():
            out = self.model(*args)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return {self._output: out.numpy()}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def open_backend(
    export: ExportDir,
    submodel: str = "denoiser",
    *,
    prefer: Sequence[str] = BACKENDS,
    device: str = "auto",
    threading: str = "per-session",
    on_skip: Callable[[str], None] | None = None,
) -> Backend:
    """The first backend in ``prefer`` whose artifact exists and whose packages are installed (``threading``: see
    :class:`OnnxRuntimeBackend`). ``on_skip`` hears why a backend whose artifact the export has was passed over
    (TensorRT not installed, an engine of another TensorRT version, ...), so a caller can say why it fell back."""
    spec = export.submodel(submodel)
    artifacts = export.artifacts(submodel)
    reasons = []
    for name in prefer:
        if name not in BACKENDS:
            raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
        key = {"tensorrt": "tensorrt", "onnxruntime": "onnx", "aoti": "aoti"}[name]
        entry = artifacts.get(key)
        if not entry or not entry.get("file"):
            reasons.append(f"{name}: no {key} artifact")
            continue
        path = export.path(entry["file"])
        try:
            if name == "tensorrt":
                if not (_installed("tensorrt") and _installed("cuda")):
                    raise BackendUnavailable("tensorrt / cuda-python not installed")
                return TensorRTBackend(path, spec, built_with=entry.get("tensorrt_version"))
            if name == "onnxruntime":
                return OnnxRuntimeBackend(path, spec, device=device, threading=threading)
            return AOTInductorBackend(path, spec, spec.outputs[0]["name"])
        except BackendUnavailable as err:
            reasons.append(f"{name}: {err}")
            if on_skip is not None:
                on_skip(f"{submodel}: {name} skipped: {err}")
    raise BackendUnavailable(f"no backend can run {submodel} from {export.root}: " + "; ".join(reasons))


def open_stock_backend(
    export: ExportDir,
    submodel: str = "denoiser",
    *,
    device: str = "auto",
    threading: str = "per-session",
    beside: Backend | None = None,
) -> Backend | None:
    """The stock graph of a denoiser (same inputs, strength ignored, weights shared) for steps where every
    strength is 0, or None when the export has none. The stock graph is ONNX: ``beside`` a DyMoS engine of another
    backend (TensorRT, AOTInductor) it is None too, so the strength-0 steps stay on that engine (where the zero bias
    costs less than moving them to onnxruntime, possibly on the CPU)."""
    entry = export.artifacts(submodel).get("onnx_stock")
    if not entry or not _installed("onnxruntime"):
        return None
    if beside is not None and not isinstance(beside, OnnxRuntimeBackend):
        return None
    return OnnxRuntimeBackend(export.path(entry["file"]), export.submodel(submodel), device=device, threading=threading)


def open_low_noise(
    export: ExportDir,
    *,
    prefer: Sequence[str] = BACKENDS,
    device: str = "auto",
    threading: str = "per-session",
    stock: bool = True,
    on_skip: Callable[[str], None] | None = None,
) -> tuple[Backend, Backend | None] | None:
    """A two-expert export's low-noise expert (Wan 2.2 A14B's ``denoiser_2``) as (DyMoS engine, stock engine or
    None), opened with the same choices as the high-noise one; None for single-expert exports. Open it once and
    pass it to every ``sample`` call: a 14B expert is not something to reload per video."""
    experts = (export.manifest.get("pipeline") or {}).get("experts")
    if not experts:
        return None
    low = experts["low_noise"]
    engine = open_backend(export, low, prefer=prefer, device=device, threading=threading, on_skip=on_skip)
    stock_engine = open_stock_backend(export, low, device=device, threading=threading, beside=engine) if stock else None
    return engine, stock_engine
