"""Parity of an exported artifact with PyTorch, through polygraphy's saved-inputs/saved-outputs comparison.

PyTorch's outputs are computed here and saved as polygraphy ``RunResults`` next to the inputs, exactly what
``polygraphy run model.onnx --onnxrt --load-inputs ... --load-outputs ...`` consumes; onnxruntime then runs the
saved inputs and polygraphy compares. A failed comparison fails the export — there is no warning mode.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
from polygraphy.comparator import Comparator, RunResults, SimpleCompareFunc
from polygraphy.comparator.struct import IterationResult
from polygraphy.exception import PolygraphyException
from polygraphy.json import load_json, save_json
from polygraphy.logger import G_LOGGER

from .specs import OUTPUT_NAME, STRENGTH_INPUT

# Stated tolerances per export precision: |onnx - torch| <= atol + rtol * |torch|, elementwise.
TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"atol": 1e-4, "rtol": 1e-4},
    "fp16": {"atol": 2e-2, "rtol": 1e-2},
    "bf16": {"atol": 6e-2, "rtol": 2e-2},
}


class ParityError(AssertionError):
    """The exported artifact does not match PyTorch within the stated tolerance."""


@dataclass
class ParityCase:
    """One set of inputs the artifact is checked on."""

    name: str
    inputs: dict[str, torch.Tensor]  # graph inputs in spec order, motion_strength included


@dataclass
class CaseResult:
    name: str
    shapes: dict[str, list[int]]
    strength: list[float]  # empty for graphs without a strength input
    max_abs_err: float
    max_rel_err: float
    passed: bool


def compare(reference: np.ndarray, got: np.ndarray, tol: dict[str, float]) -> dict[str, Any]:
    """Max errors and the elementwise verdict ``|got - ref| <= atol + rtol * |ref|`` (every artifact's test)."""
    ref, got = np.asarray(reference, np.float64), np.asarray(got, np.float64)
    abs_err = np.abs(ref - got)
    return {
        "max_abs_err": float(abs_err.max()),
        "max_rel_err": float((abs_err / (np.abs(ref) + 1e-12)).max()),
        "passed": bool(np.all(abs_err <= tol["atol"] + tol["rtol"] * np.abs(ref))),
    }


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().numpy() if t.dtype == torch.bfloat16 else t.detach().numpy()


def _feed(case: ParityCase) -> OrderedDict:
    return OrderedDict((name, _numpy(value)) for name, value in case.inputs.items())


def validate_onnx(
    onnx_path: Path,
    reference: Callable[..., torch.Tensor],
    cases: Sequence[ParityCase],
    out_dir: Path,
    *,
    precision: str = "fp32",
    providers: Sequence[str] = ("CPUExecutionProvider",),
    output_name: str = OUTPUT_NAME,
    strength_input: bool = True,
) -> dict[str, Any]:
    """Run ``reference`` (the torch module) and onnxruntime on every case; save inputs/outputs; compare.

    Returns the parity report; raises :class:`ParityError` if any case fails or, for graphs with a strength input
    (``strength_input``), the strength has no effect.
    """
    with G_LOGGER.verbosity(G_LOGGER.ERROR):
        return _compare(onnx_path, reference, cases, out_dir, precision, providers, output_name, strength_input)


def _compare(
    onnx_path: Path,
    reference: Callable[..., torch.Tensor],
    cases: Sequence[ParityCase],
    out_dir: Path,
    precision: str,
    providers: Sequence[str],
    output_name: str,
    strength_input: bool,
) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs_path, outputs_path = out_dir / "inputs.json", out_dir / "torch_outputs.json"
    feeds = [_feed(case) for case in cases]
    torch_results = RunResults()
    iterations = []
    with torch.no_grad():
        for case in cases:
            out = reference(*case.inputs.values())
            iterations.append(IterationResult(outputs=OrderedDict([(output_name, _numpy(out))]), runner_name="torch"))
    torch_results.append(("torch", iterations))
    save_json(feeds, str(inputs_path), description="parity inputs")
    torch_results.save(str(outputs_path))
    # What `polygraphy run --onnxrt --load-inputs --load-outputs` does, through its Python API.
    runner = OnnxrtRunner(SessionFromOnnx(str(onnx_path), providers=list(providers)))
    return _against_saved(
        runner,
        onnx_path,
        f"onnxruntime ({', '.join(providers)})",
        "--onnxrt",
        cases,
        out_dir,
        precision,
        output_name,
        strength_input,
    )


def validate_engine(
    engine_path: Path,
    cases: Sequence[ParityCase],
    parity_dir: Path,
    *,
    precision: str,
    output_name: str = OUTPUT_NAME,
) -> dict[str, Any]:
    """A TensorRT engine against the PyTorch outputs its ONNX check saved in ``parity_dir``, within ``precision``'s
    tolerance (the engine's build precision): ``polygraphy run ENGINE --trt --load-inputs ... --load-outputs ...``.
    Needs TensorRT and a GPU; raises :class:`ParityError` like :func:`validate_onnx`."""
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    runner = TrtRunner(EngineFromBytes(BytesFromPath(str(engine_path))))
    with G_LOGGER.verbosity(G_LOGGER.ERROR):
        return _against_saved(
            runner, engine_path, "tensorrt", "--trt", cases, parity_dir, precision, output_name, strength_input=True
        )


def _against_saved(
    runner: Any,
    artifact: Path,
    backend: str,
    polygraphy_flag: str,
    cases: Sequence[ParityCase],
    out_dir: Path,
    precision: str,
    output_name: str,
    strength_input: bool,
) -> dict[str, Any]:
    """Run ``runner`` (a polygraphy runner of ``artifact``) on the inputs saved in ``out_dir`` and compare with the
    PyTorch outputs saved beside them: the report, or :class:`ParityError`."""
    tol = TOLERANCES[precision]
    inputs_path, outputs_path = out_dir / "inputs.json", out_dir / "torch_outputs.json"
    try:
        artifact_results = Comparator.run([runner], data_loader=load_json(str(inputs_path)))
    except PolygraphyException as err:  # e.g. the saved inputs do not fit the artifact's inputs
        raise ParityError(f"{backend} could not run {artifact.name} on the saved parity inputs: {err}") from err
    saved = RunResults.load(str(outputs_path))
    combined = RunResults()
    combined.extend(saved)
    combined.extend(artifact_results)
    accuracy = Comparator.compare_accuracy(
        combined, compare_func=SimpleCompareFunc(atol=tol["atol"], rtol=tol["rtol"], check_shapes=True)
    )

    results = []
    artifact_iterations = artifact_results[0][1]
    for case, ref_it, got_it in zip(cases, saved[0][1], artifact_iterations):
        results.append(
            CaseResult(
                name=case.name,
                shapes={k: list(v.shape) for k, v in case.inputs.items()},
                strength=case.inputs[STRENGTH_INPUT].float().tolist() if strength_input else [],
                **compare(ref_it[output_name], got_it[output_name], tol),
            )
        )
    effect = _strength_effect(cases, artifact_iterations) if strength_input else {"changes_output": True, "note": "n/a"}
    report = {
        "artifact": artifact.name,
        "backend": backend,
        "precision": precision,
        "tolerance": tol,
        "passed": bool(accuracy) and all(r.passed for r in results) and effect["changes_output"],
        "strength_changes_output": effect,
        "cases": [asdict(r) for r in results],
        # the saved inputs and PyTorch outputs, relative to the artifact dir (out_dir sits directly in it)
        "files": [f"{out_dir.name}/{inputs_path.name}", f"{out_dir.name}/{outputs_path.name}"],
        "reproduce": (
            f"polygraphy run {artifact.name} {polygraphy_flag} --load-inputs {out_dir.name}/{inputs_path.name} "
            f"--load-outputs {out_dir.name}/{outputs_path.name} --atol {tol['atol']} --rtol {tol['rtol']}"
        ),
    }
    if not report["passed"]:
        failed = [r.name for r in results if not r.passed]
        raise ParityError(
            f"{artifact.name} does not match PyTorch within atol={tol['atol']}, rtol={tol['rtol']}: "
            f"failed cases {failed or '(polygraphy comparison)'}; strength effect {effect}"
        )
    return report


def validated_entry(report: dict[str, Any]) -> dict[str, Any]:
    """What a manifest's artifact entry says of a passed parity check (the full report stays beside it)."""
    return {"backend": report["backend"], "tolerance": report["tolerance"], "passed": report["passed"]}


def _strength_effect(cases: Sequence[ParityCase], iterations: Sequence[Any]) -> dict[str, Any]:
    """Whether the strength input changes the artifact's output (cases 'strength_0' vs 'strength_nonzero')."""
    by_name = {case.name: it[OUTPUT_NAME] for case, it in zip(cases, iterations)}
    zero, nonzero = by_name.get("strength_0"), by_name.get("strength_nonzero")
    if zero is None or nonzero is None:
        return {"changes_output": False, "max_abs_diff": 0.0, "note": "cases strength_0/strength_nonzero missing"}
    diff = float(np.abs(zero.astype(np.float64) - nonzero.astype(np.float64)).max())
    return {"changes_output": diff > 0.0, "max_abs_diff": diff}
