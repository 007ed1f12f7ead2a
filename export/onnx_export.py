"""ONNX export of a :class:`StrengthInputDenoiser`: dynamo exporter, compatibility passes, sanitising, checks.

The exporter keeps ``motion_strength`` a live graph input; after polygraphy's constant folding we verify that it
still is (some node consumes it and the output depends on it) and that no ``L x L``-sized constant crept in — the
reference pattern must be computed in the graph from token positions. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import helper

from .specs import OUTPUT_NAME, STRENGTH_INPUT, ExportSpec

EXTERNAL_DATA_THRESHOLD = 2 * 1024**3 - 64 * 1024**2  # protobuf's 2 GB limit, with headroom for the graph itself
OPSETS = (17, 18, 19, 20, 21, 22, 23)


class OnnxExportError(RuntimeError):
    """The exported graph failed a structural check (the strength folded away, an L x L constant, ...)."""


def _dim(name: str, low: int, high: int, multiple: int) -> Any:
    """A torch.export dim; patch-size multiples become ``multiple * Dim`` so the model's reshapes are provable."""
    if multiple == 1:
        return torch.export.Dim(name, min=low, max=high)
    return multiple * torch.export.Dim(f"{name}_patches", min=-(-low // multiple), max=high // multiple)


def _dynamic_shapes(spec: ExportSpec) -> dict[str, tuple]:
    dims = {
        name: _dim(name, r.min, r.max, spec.multiples.get(name, 1)) for name, r in spec.dims.items() if r.min != r.max
    }
    per_input = tuple(
        {axis: dims[dim] for axis, dim in t.dynamic_axes().items() if dim in dims} or None for t in spec.inputs
    )
    return {"inputs": per_input}


def rewrite_bool_where(model: onnx.ModelProto) -> int:
    """Replace ``Where`` on bool operands (no CPU kernel in onnxruntime) by ``Or(And(c, x), And(Not(c), y))``.

    diffusers' HunyuanVideo builds its key mask with ``masked_fill`` on a bool tensor. Returns the number of
    rewritten nodes. Only nodes whose output is known (by shape inference) to be bool are touched.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    bool_values = {
        vi.name
        for vi in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input)
        if vi.type.tensor_type.elem_type == onnx.TensorProto.BOOL
    }
    nodes = []
    rewritten = 0
    for node in model.graph.node:
        if node.op_type == "Where" and node.output[0] in bool_values:
            cond, x, y = node.input
            base = node.name or node.output[0]
            nodes += [
                helper.make_node("And", [cond, x], [f"{base}/and_x"], name=f"{base}/and_x"),
                helper.make_node("Not", [cond], [f"{base}/not_c"], name=f"{base}/not_c"),
                helper.make_node("And", [f"{base}/not_c", y], [f"{base}/and_y"], name=f"{base}/and_y"),
                helper.make_node("Or", [f"{base}/and_x", f"{base}/and_y"], list(node.output), name=base),
            ]
            rewritten += 1
        else:
            nodes.append(node)
    if rewritten:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return rewritten


def _ancestors(model: onnx.ModelProto, output: str) -> set[str]:
    """Every value name the graph output ``output`` depends on (subgraph inputs of If/Loop count)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    seen: set[str] = set()
    stack = [output]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        node = producers.get(name)
        if node is None:
            continue
        stack.extend(i for i in node.input if i)
        for attr in node.attribute:  # values captured by subgraphs (If branches) from the outer scope
            for graph in [attr.g, *attr.graphs]:
                stack.extend(i for sub in graph.node for i in sub.input if i)
    return seen


def _uses(graph: onnx.GraphProto) -> dict[str, set[tuple[str, int]]]:
    """(op type, input position) of every read of each value name, subgraphs (If branches) included."""
    uses: dict[str, set[tuple[str, int]]] = {}
    stack = [graph]
    while stack:
        current = stack.pop()
        for node in current.node:
            for position, name in enumerate(node.input):
                uses.setdefault(name, set()).add((node.op_type, position))
            for attr in node.attribute:
                stack.extend([attr.g] if attr.HasField("g") else [])
                stack.extend(attr.graphs)
    return uses


def _is_weight(uses: set[tuple[str, int]]) -> bool:
    """Read only as the right-hand matrix of MatMul/Gemm: a projection weight (a square one can match L by chance,
    e.g. 128 tokens and width 128), not a pattern added to attention logits."""
    return bool(uses) and all(op in ("MatMul", "Gemm") and position == 1 for op, position in uses)


def check_graph(
    model: onnx.ModelProto, spec: ExportSpec, *, sequence_lengths: Sequence[int] = (), require_strength: bool = True
) -> None:
    """Fail if ``motion_strength`` is not a live input or the graph carries an ``L x L`` constant.

    ``require_strength=False`` is for the stock graph, which keeps the input (same signature) but ignores it.
    """
    names = [i.name for i in model.graph.input]
    if STRENGTH_INPUT not in names:
        raise OnnxExportError(f"{STRENGTH_INPUT} is not an input of the exported graph (inputs: {names})")
    if require_strength and STRENGTH_INPUT not in _ancestors(model, OUTPUT_NAME):
        raise OnnxExportError(f"{OUTPUT_NAME} does not depend on {STRENGTH_INPUT}: the strength was folded away")
    expected = set(spec.input_names)
    if set(names) != expected:
        raise OnnxExportError(f"graph inputs {names} differ from the spec's {sorted(expected)}")
    uses = _uses(model.graph) if sequence_lengths else {}
    for length in sequence_lengths:
        for init in model.graph.initializer:
            if [d for d in init.dims if d != 1] == [length, length] and not _is_weight(uses.get(init.name, set())):
                raise OnnxExportError(f"constant {init.name} of shape {list(init.dims)} looks like an L x L pattern")


def sanitize(model: onnx.ModelProto) -> onnx.ModelProto:
    """polygraphy constant folding (with shape folding), the equivalent of ``polygraphy surgeon sanitize
    --fold-constants``; the strength input cannot be folded because it is a graph input."""
    from polygraphy.backend.onnx import fold_constants
    from polygraphy.logger import G_LOGGER

    with G_LOGGER.verbosity(G_LOGGER.ERROR):
        folded = fold_constants(
            model, num_passes=2, error_ok=False, size_threshold=16 * 1024**2, allow_onnxruntime_shape_inference=False
        )
    # Shape inference during folding records intermediate shapes at the sample size; drop them so runtimes
    # re-infer with the graph's symbolic dims instead of planning buffers for the sample's sizes.
    del folded.graph.value_info[:]
    return folded


def save_onnx(model: onnx.ModelProto, path: Path) -> list[str]:
    """Save atomically; weights go to ``<name>.data`` when the graph would pass protobuf's 2 GB limit.

    Returns the file names written (graph first). The data file is renamed into place before the graph, so the
    graph never exists without its weights.
    """
    path = Path(path)
    external = model.ByteSize() > EXTERNAL_DATA_THRESHOLD
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", dir=path.parent))
    try:
        data_name = f"{path.name}.data"
        if external:
            onnx.save_model(
                model,
                tmp_dir / path.name,
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=data_name,
                size_threshold=1024,
            )
            os.replace(tmp_dir / data_name, path.parent / data_name)
        else:
            onnx.save_model(model, tmp_dir / path.name)
        os.replace(tmp_dir / path.name, path)
    finally:
        for leftover in tmp_dir.iterdir():
            leftover.unlink()
        tmp_dir.rmdir()
    return [path.name, data_name] if external else [path.name]


def save_onnx_shared(models: dict[str, onnx.ModelProto], directory: Path, data_name: str) -> list[str]:
    """Save several graphs whose weights live once in one external-data file (identical tensors deduplicated).

    This is how the stock graph rides along with the DyMoS graph at no weight cost. The data file is renamed into
    place before the graphs. Returns the file names written.
    """
    from onnx.external_data_helper import set_external_data

    directory = Path(directory)
    tmp_dir = Path(tempfile.mkdtemp(prefix=".shared.", dir=directory))
    try:
        placed: dict[bytes, tuple[int, int]] = {}
        with open(tmp_dir / data_name, "wb") as data:
            for model in models.values():
                for tensor in model.graph.initializer:
                    raw = tensor.raw_data
                    if len(raw) < 1024:
                        continue
                    key = hashlib.sha256(raw).digest()
                    if key not in placed:
                        data.write(b"\0" * (-data.tell() % 4096))  # page-aligned, so runtimes can mmap tensors
                        placed[key] = (data.tell(), len(raw))
                        data.write(raw)
                    offset, length = placed[key]
                    set_external_data(tensor, location=data_name, offset=offset, length=length)
                    tensor.data_location = onnx.TensorProto.EXTERNAL
                    tensor.ClearField("raw_data")
        for name, model in models.items():
            onnx.save_model(model, tmp_dir / name)
        os.replace(tmp_dir / data_name, directory / data_name)
        for name in models:
            os.replace(tmp_dir / name, directory / name)
    finally:
        for leftover in tmp_dir.iterdir():
            leftover.unlink()
        tmp_dir.rmdir()
    return [*models, data_name]


def export_program(
    wrapper: torch.nn.Module, spec: ExportSpec, sample: Sequence[torch.Tensor]
) -> torch.export.ExportedProgram:
    """``torch.export`` (non-strict) with the spec's dynamic dims: the one program every artifact derives from.

    ``sample`` must not have size-1 dynamic dims (torch.export specialises 0/1 sizes).
    """
    with torch.no_grad():
        return torch.export.export(wrapper, tuple(sample), dynamic_shapes=_dynamic_shapes(spec), strict=False)


def name_dynamic_dims(model: onnx.ModelProto, spec: ExportSpec) -> None:
    """Give the graph's symbolic dims the spec's names (``batch``, ``frames``, ...) instead of torch's ``s21``."""
    renames: dict[str, str] = {}
    for value, tensor in zip(model.graph.input, spec.inputs):
        for axis, dim in tensor.dynamic_axes().items():
            param = value.type.tensor_type.shape.dim[axis].dim_param
            if param:
                renames[param] = dim
    for value in (*model.graph.input, *model.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]


def onnx_model(
    program: torch.export.ExportedProgram,
    spec: ExportSpec,
    *,
    opset: int = 20,
    sequence_lengths: Sequence[int] = (),
    require_strength: bool = True,
) -> onnx.ModelProto:
    """ONNX from an exported program: translate, name dims, compatibility passes, sanitize, check."""
    if opset not in OPSETS:
        raise ValueError(f"opset {opset} is not supported; choose one of {OPSETS}")
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
    check_graph(model, spec, sequence_lengths=sequence_lengths, require_strength=require_strength)
    if model.ByteSize() < EXTERNAL_DATA_THRESHOLD:
        onnx.checker.check_model(model, full_check=False)
    return model
