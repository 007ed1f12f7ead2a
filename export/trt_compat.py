"""Will TensorRT's ONNX parser take this graph? A CPU-side check, so a bad export fails here and not on a GPU box.

TensorRT cannot be installed on the CPU machines, yet an export that TensorRT rejects (an op the parser lacks, an
``Attention`` mask that IAttention refuses) should be caught where the ONNX is written. :func:`check_tensorrt_compat`
reads the graph without weights, runs ONNX shape inference and reports every problem at once.

Sources (read 2025-11, TensorRT 10.14/10.15):

- op table: ``docs/operators.md`` of github.com/onnx/onnx-tensorrt at the TensorRT 10.15 release ("TensorRT 10.15
  supports operators in the inclusive range of opset 9 to opset 24"); ``Attention`` entered the parser with the
  "TensorRT 10.14 GA Parser Update" ("Added support for the Attention operator").
- ``Attention`` limits: the same table (Q, K, V and ``attn_mask`` 4-D; no ``past_key``/``past_value``/
  ``nonpad_kv_seqlen``; only the first output; no ``qk_matmul_output_mode``/``softcap``), the parser's Attention
  importer (one output; mask rank <= 4; ``is_causal`` and a mask are not combined) and the IAttention operator page
  (mask shape ``[a0, a1, s_q, s_kv]`` where only a0/a1 broadcast; a float mask must have Q's dtype). The project's
  design notes (measured before this repo) record a float mask of Q's dtype as the one form that works, so bool masks
  are refused by default even though the IAttention page lists bool as a mask type (``allow_bool_mask=True`` follows
  the page instead).
- data types: the table's header lists FLOAT32, FLOAT16, BFLOAT16, INT32, INT64, UINT8 (network I/O only) and BOOL;
  INT64 is native in TensorRT 10 (no cast-down to INT32 any more); DOUBLE is only cast down inside the graph, and
  INT8/INT4/FP8/FP4 exist only as quantized types behind Q/DQ, never as graph I/O.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import TensorProto

# Ops marked supported ("Y") in onnx-tensorrt docs/operators.md, TensorRT 10.15. The table itself was written for
# 10.15; the only op gated by version here is Attention (parser support since 10.14, see ATTENTION_SINCE).
TENSORRT_ONNX_OPS: frozenset[str] = frozenset(
    {
        "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh", "Attention",
        "AveragePool", "BatchNormalization", "BlackmanWindow", "Cast", "CastLike", "Ceil", "Celu", "Clip", "Concat",
        "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum", "DeformConv",
        "DepthToSpace", "DequantizeLinear", "Div", "Dropout", "Einsum", "Elu", "Equal", "Erf", "Exp", "Expand",
        "EyeLike", "Flatten", "Floor", "Gather", "GatherElements", "GatherND", "Gelu", "Gemm", "GlobalAveragePool",
        "GlobalLpPool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "GridSample", "GroupNormalization", "GRU",
        "HammingWindow", "HannWindow", "HardSigmoid", "HardSwish", "Hardmax", "Identity", "If", "ImageScaler",
        "InstanceNormalization", "IsInf", "IsNaN", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log",
        "LogSoftmax", "Loop", "LRN", "LSTM", "LpNormalization", "LpPool", "MatMul", "Max", "MaxPool", "Mean",
        "MeanVarianceNormalization", "Min", "Mish", "Mod", "Mul", "Neg", "NonMaxSuppression", "NonZero", "Not",
        "OneHot", "Or", "Pad", "ParametricSoftplus", "Pow", "PRelu", "QuantizeLinear", "RandomNormal",
        "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Range", "Reciprocal", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum",
        "ReduceSumSquare", "Relu", "Reshape", "Resize", "ReverseSequence", "RMSNormalization", "RNN", "RoiAlign",
        "RotaryEmbedding", "Round", "STFT", "ScaledTanh", "Scan", "Scatter", "ScatterElements", "ScatterND", "Selu",
        "Shape", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Slice", "Softmax", "Softplus", "Softsign",
        "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tan", "Tanh", "TensorScatter", "ThresholdedRelu",
        "Tile", "TopK", "Transpose", "Trilu", "Unsqueeze", "Upsample", "Where", "Xor",
    }
)  # fmt: skip

ATTENTION_SINCE = (10, 14)
OPSET_RANGE = (9, 24)  # default-domain opsets the 10.15 parser documents

# Ops whose supported types in the table are floating point only (FP32/FP16/BF16): an integer or bool input fails.
FLOAT_ONLY_OPS: frozenset[str] = frozenset(
    {
        "MatMul", "Gemm", "Softmax", "LogSoftmax", "LayerNormalization", "RMSNormalization", "GroupNormalization",
        "InstanceNormalization", "Conv", "ConvTranspose", "Erf", "Exp", "Log", "Sqrt", "Sin", "Cos", "Tanh",
        "Sigmoid", "Reciprocal", "Floor", "Ceil", "Round", "Resize", "Attention", "RotaryEmbedding",
    }
)  # fmt: skip

# Graph input/output types TensorRT binds; INT64 is native in TensorRT 10.
IO_DTYPES: frozenset[int] = frozenset(
    {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.INT32, TensorProto.INT64,
     TensorProto.BOOL, TensorProto.UINT8}
)  # fmt: skip
FLOAT_DTYPES: frozenset[int] = frozenset({TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16})

_SUBGRAPH_TYPES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
_ATTN_Q, _ATTN_K, _ATTN_MASK = 0, 1, 3
_ATTN_UNSUPPORTED_INPUTS = {4: "past_key", 5: "past_value", 6: "nonpad_kv_seqlen"}

Dim = int | str | None  # static size, symbolic name, or unknown
Shape = tuple[Dim, ...] | None  # None: rank unknown


class TensorRTCompatError(ValueError):
    """The graph uses something TensorRT's ONNX parser or builder rejects."""


@dataclass
class CompatReport:
    """What :func:`check_tensorrt_compat` found: ``problems`` fail a TensorRT build, ``warnings`` may."""

    tensorrt_version: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    op_counts: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_incompatible(self) -> None:
        if self.problems:
            listed = "\n".join(f"  - {p}" for p in self.problems)
            raise TensorRTCompatError(
                f"the ONNX graph will not build with TensorRT {self.tensorrt_version} "
                f"({len(self.problems)} problem(s)):\n{listed}"
            )


def parse_version(version: str) -> tuple[int, ...]:
    """``"10.14.1.48"`` -> ``(10, 14, 1, 48)``; ``"10.15.0b1"`` -> ``(10, 15, 0)``."""
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    if match is None:
        raise ValueError(f"not a TensorRT version: {version!r}")
    return tuple(int(part) for part in match.group(0).split("."))


def supported_ops(tensorrt_version: str) -> frozenset[str]:
    """The op table for one TensorRT version (drops Attention before 10.14)."""
    if parse_version(tensorrt_version)[:2] < ATTENTION_SINCE:
        return TENSORRT_ONNX_OPS - {"Attention"}
    return TENSORRT_ONNX_OPS


def check_tensorrt_compat(
    model: onnx.ModelProto | str | Path, *, tensorrt_version: str = "10.14", allow_bool_mask: bool = False
) -> CompatReport:
    """Every reason TensorRT's ONNX parser would reject ``model`` (a proto or a path; weights are never loaded)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    report = CompatReport(tensorrt_version)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as err:  # inference is a help, not a requirement: fall back to what the file records
        report.warnings.append(f"ONNX shape inference failed ({err}); Attention checks use recorded shapes only")
        inferred = model
    _check_opsets(inferred, report)
    _check_io(inferred.graph, report)
    ops = supported_ops(tensorrt_version)
    functions = {(f.domain, f.name): f for f in inferred.functions}
    types = _value_types(inferred.graph)
    unsupported: Counter[str] = Counter()
    for node, scope in _walk(inferred.graph, functions, types):
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        report.op_counts[key] += 1
        if node.domain not in ("", "ai.onnx") or node.op_type not in ops:
            unsupported[key] += 1
            continue
        if node.op_type == "Attention":
            _check_attention(node, scope, report, allow_bool_mask=allow_bool_mask)
        if node.op_type in FLOAT_ONLY_OPS and node.input and node.input[0]:
            elem = scope.get(node.input[0], (None, None))[0]
            if elem is not None and elem not in FLOAT_DTYPES:
                report.problems.append(
                    f"{_where(node)}: {node.op_type} supports FP32/FP16/BF16 only in TensorRT, input "
                    f"{node.input[0]!r} is {_dtype(elem)}"
                )
    for key, count in sorted(unsupported.items()):
        hint = " (a custom domain: needs a TensorRT plugin)" if "::" in key else ""
        if key == "Attention":
            hint = f" (the ONNX parser takes Attention from TensorRT {'.'.join(map(str, ATTENTION_SINCE))})"
        report.problems.append(
            f"op {key} is not supported by the TensorRT {tensorrt_version} ONNX parser{hint}: {count} node(s)"
        )
    return report


def _check_opsets(model: onnx.ModelProto, report: CompatReport) -> None:
    low, high = OPSET_RANGE
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and not low <= opset.version <= high:
            report.problems.append(f"default-domain opset {opset.version} is outside TensorRT's range {low}..{high}")


def _check_io(graph: onnx.GraphProto, report: CompatReport) -> None:
    initializers = {t.name for t in graph.initializer}
    for kind, values in (("input", graph.input), ("output", graph.output)):
        for value in values:
            if value.name in initializers:
                continue
            elem = value.type.tensor_type.elem_type if value.type.HasField("tensor_type") else None
            if elem is None:
                report.problems.append(f"graph {kind} {value.name!r} is not a tensor (sequence/map/optional)")
            elif elem not in IO_DTYPES:
                report.problems.append(
                    f"graph {kind} {value.name!r} is {_dtype(elem)}: TensorRT binds "
                    f"{', '.join(sorted(_dtype(t) for t in IO_DTYPES))}"
                )


def _check_attention(node: onnx.NodeProto, scope: dict, report: CompatReport, *, allow_bool_mask: bool) -> None:
    where = _where(node)
    inputs = list(node.input)
    for index, name in _ATTN_UNSUPPORTED_INPUTS.items():
        if index < len(inputs) and inputs[index]:
            report.problems.append(f"{where}: Attention input {name} is not supported by TensorRT")
    if len(node.output) > 1:
        report.problems.append(f"{where}: TensorRT supports Attention with one output only (Y); got {len(node.output)}")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("qk_matmul_output_mode", 0):
        report.problems.append(f"{where}: Attention qk_matmul_output_mode is not supported by TensorRT")
    if attrs.get("softcap", 0.0):
        report.problems.append(f"{where}: Attention softcap is not supported by TensorRT")
    q_elem, q_shape = scope.get(inputs[_ATTN_Q], (None, None))
    k_shape = scope.get(inputs[_ATTN_K], (None, None))[1] if len(inputs) > _ATTN_K else None
    for role, shape in (("Q", q_shape), ("K", k_shape)):
        if shape is not None and len(shape) != 4:
            report.problems.append(f"{where}: TensorRT's Attention takes 4-D Q, K, V; {role} has rank {len(shape)}")
    mask = inputs[_ATTN_MASK] if len(inputs) > _ATTN_MASK else ""
    if not mask:
        return
    if attrs.get("is_causal", 0):
        report.problems.append(f"{where}: TensorRT's IAttention cannot combine is_causal=1 with an attn_mask")
    m_elem, m_shape = scope.get(mask, (None, None))
    if m_elem is None or q_elem is None:
        report.warnings.append(f"{where}: dtype of attn_mask {mask!r} or of Q unknown; not checked")
    elif m_elem == TensorProto.BOOL:
        if not allow_bool_mask:
            report.problems.append(
                f"{where}: attn_mask {mask!r} is BOOL; use an additive float mask of Q's dtype ({_dtype(q_elem)})"
            )
    elif m_elem != q_elem:
        report.problems.append(
            f"{where}: attn_mask {mask!r} is {_dtype(m_elem)} but Q is {_dtype(q_elem)}; TensorRT's IAttention takes a "
            "float mask only of Q's dtype"
        )
    if m_shape is None:
        report.warnings.append(f"{where}: shape of attn_mask {mask!r} unknown; its broadcast was not checked")
        return
    if len(m_shape) != 4:
        report.problems.append(
            f"{where}: attn_mask {mask!r} has rank {len(m_shape)}; TensorRT wants 4-D [a0, a1, s_q, s_kv]"
        )
        return
    # mask [a0, a1, s_q, s_kv] against Q/K [b, heads, seq, head_dim]: the mask's last two axes may not broadcast
    for mask_axis, role, ref in ((2, "query", q_shape), (3, "key", k_shape)):
        target = ref[2] if ref is not None and len(ref) == 4 else None
        dim = m_shape[mask_axis]
        if _broadcasts(dim, target):
            report.problems.append(
                f"{where}: attn_mask {mask!r} {_fmt(m_shape)} broadcasts over the {role} axis (size 1 against "
                f"{target}); TensorRT's IAttention takes [a0, a1, s_q, s_kv] with only a0/a1 broadcast"
            )
        elif dim is None or target is None:
            report.warnings.append(f"{where}: {role} axis of attn_mask {mask!r} {_fmt(m_shape)} not checkable")


def _broadcasts(dim: Dim, target: Dim) -> bool:
    """A mask axis of 1 against a sequence that is not (or not provably) 1."""
    return dim == 1 and target is not None and target != 1


def _walk(
    graph: onnx.GraphProto, functions: dict, scope: dict[str, tuple[int | None, Shape]]
) -> Iterator[tuple[onnx.NodeProto, dict]]:
    """Every node with the value types visible to it, descending into If/Loop/Scan bodies and local functions."""
    for node in graph.node:
        if (node.domain, node.op_type) in functions:
            body = functions[(node.domain, node.op_type)]
            yield from _walk_function(body, functions)
            continue
        yield node, scope
        for attr in node.attribute:
            if attr.type in _SUBGRAPH_TYPES:
                for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                    yield from _walk(sub, functions, {**scope, **_value_types(sub)})


def _walk_function(function: onnx.FunctionProto, functions: dict) -> Iterator[tuple[onnx.NodeProto, dict]]:
    inner = onnx.GraphProto(node=function.node, value_info=function.value_info)
    yield from _walk(inner, {k: v for k, v in functions.items() if v is not function}, _value_types(inner))


def _value_types(graph: onnx.GraphProto) -> dict[str, tuple[int | None, Shape]]:
    types: dict[str, tuple[int | None, Shape]] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.type.HasField("tensor_type"):
            tensor = value.type.tensor_type
            shape = tuple(_dim(d) for d in tensor.shape.dim) if tensor.HasField("shape") else None
            types[value.name] = (tensor.elem_type or None, shape)
    for init in graph.initializer:
        types[init.name] = (init.data_type, tuple(init.dims))
    return types


def _dim(dim: onnx.TensorShapeProto.Dimension) -> Dim:
    if dim.HasField("dim_value"):
        return dim.dim_value
    return dim.dim_param or None


def _dtype(elem: int) -> str:
    return TensorProto.DataType.Name(elem)


def _fmt(shape: Shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]" if shape is not None else "[?]"


def _where(node: onnx.NodeProto) -> str:
    return f"node {node.name!r}" if node.name else f"{node.op_type} node -> {list(node.output)}"
