"""TensorRT compatibility check and engine build: everything but the build itself runs on CPU.

The CPU tests construct small ONNX graphs with onnx.helper (and a tiny SDPA module through the dynamo exporter at
opsets 20 and 23) and check what :func:`check_tensorrt_compat` accepts and refuses, the engine cache key, profile
validation and the build's cache plumbing (with the TensorRT calls stubbed). The ``gpu`` test builds a real engine.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from dymos.export import tensorrt as trt_build
from dymos.export.specs import DimRange, ExportSpec, TensorSpec
from dymos.export.trt_compat import (
    TENSORRT_ONNX_OPS,
    TensorRTCompatError,
    check_tensorrt_compat,
    parse_version,
    supported_ops,
)

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


# ---- graphs --------------------------------------------------------------------------------------------------------


def _attention_model(
    mask_shape: list | None, *, mask_type: int = TensorProto.FLOAT, q_type: int = TensorProto.FLOAT, **attrs
) -> onnx.ModelProto:
    """One opset-23 Attention node on [B, 2, L, 4] Q/K/V with symbolic B and L."""
    qkv = [helper.make_tensor_value_info(n, q_type, ["B", 2, "L", 4]) for n in ("q", "k", "v")]
    inputs = ["q", "k", "v"]
    if mask_shape is not None:
        qkv.append(helper.make_tensor_value_info("mask", mask_type, mask_shape))
        inputs.append("mask")
    node = helper.make_node("Attention", inputs, ["y"], name="attn", **attrs)
    graph = helper.make_graph([node], "attention", qkv, [helper.make_tensor_value_info("y", q_type, ["B", 2, "L", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _linear_model() -> onnx.ModelProto:
    """``y = x @ W + motion_strength[:, None]`` with a dynamic batch: the smallest graph shaped like an export."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])
    s = helper.make_tensor_value_info("motion_strength", TensorProto.FLOAT, ["batch"])
    y = helper.make_tensor_value_info("noise_pred", TensorProto.FLOAT, ["batch", 8])
    weight = numpy_helper.from_array(np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8), "W")
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Unsqueeze", ["motion_strength", "axes"], ["s1"]),
        helper.make_node("Add", ["xw", "s1"], ["noise_pred"]),
    ]
    graph = helper.make_graph(nodes, "linear", [x, s], [y], initializer=[weight, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _linear_spec(batch: DimRange | None = None) -> ExportSpec:
    return ExportSpec(
        family="wan",
        submodel="denoiser",
        inputs=(TensorSpec("x", "float32", ("batch", 8)), TensorSpec("motion_strength", "float32", ("batch",))),
        outputs=(TensorSpec("noise_pred", "float32", ("batch", 8)),),
        dims={"batch": batch or DimRange(1, 2, 4)},
    )


class _SDPA(torch.nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@pytest.fixture(scope="module")
def exported_sdpa() -> dict[tuple[int, str], onnx.ModelProto]:
    """The dynamo exporter's graphs of SDPA with a full [B,1,L,L] and a key-only [B,1,1,L] mask at opsets 20, 23."""
    q, k, v = (torch.randn(2, 2, 8, 4) for _ in range(3))
    masks = {"full": torch.zeros(2, 1, 8, 8), "key_only": torch.zeros(2, 1, 1, 8)}
    graphs = {}
    for opset in (20, 23):
        for kind, mask in masks.items():
            batch = torch.export.Dim("batch", min=1, max=4)
            program = torch.onnx.export(
                _SDPA().eval(), (q, k, v, mask), dynamo=True, opset_version=opset, verbose=False,
                dynamic_shapes=({0: batch}, {0: batch}, {0: batch}, {0: batch}),
            )  # fmt: skip
            graphs[(opset, kind)] = program.model_proto
    return graphs


# ---- op table and version gate -------------------------------------------------------------------------------------


def test_op_table_has_core_transformer_ops() -> None:
    core = {"MatMul", "Softmax", "Add", "Mul", "Reshape", "Transpose", "Concat", "Slice", "Gather", "Where", "Cast"}
    assert core | {"LayerNormalization", "RMSNormalization", "Attention", "If"} <= TENSORRT_ONNX_OPS
    assert not {"SequenceAt", "StringNormalizer", "Unique"} & TENSORRT_ONNX_OPS  # marked N in the table


def test_attention_needs_tensorrt_10_14() -> None:
    assert "Attention" in supported_ops("10.14.1.48")
    assert "Attention" in supported_ops("11.0")
    assert "Attention" not in supported_ops("10.13.3")
    report = check_tensorrt_compat(_attention_model(["B", 1, "L", "L"]), tensorrt_version="10.13")
    assert not report.ok and any("Attention" in p and "10.14" in p for p in report.problems)


def test_parse_version() -> None:
    assert parse_version("10.14.1.48") == (10, 14, 1, 48)
    assert parse_version("10.15.0b1") == (10, 15, 0)
    with pytest.raises(ValueError):
        parse_version("latest")


# ---- check_tensorrt_compat -----------------------------------------------------------------------------------------


def test_small_graph_passes() -> None:
    report = check_tensorrt_compat(_linear_model())
    assert report.ok, report.problems
    assert report.op_counts == {"MatMul": 1, "Unsqueeze": 1, "Add": 1}
    report.raise_if_incompatible()


def test_reads_a_path(tmp_path: Path) -> None:
    path = tmp_path / "linear.onnx"
    onnx.save(_linear_model(), path)
    assert check_tensorrt_compat(path).ok and check_tensorrt_compat(str(path)).ok


@pytest.mark.parametrize("opset", [20, 23])
def test_exported_sdpa_with_full_mask_passes(exported_sdpa: dict, opset: int) -> None:
    report = check_tensorrt_compat(exported_sdpa[(opset, "full")])
    assert report.ok, report.problems
    assert ("Attention" in report.op_counts) == (opset == 23)
    assert ("Softmax" in report.op_counts) == (opset == 20)


def test_exported_key_only_mask_fails_only_as_attention(exported_sdpa: dict) -> None:
    """At opset 20 the mask is a broadcast Add (fine); at 23 it feeds IAttention, which refuses it."""
    assert check_tensorrt_compat(exported_sdpa[(20, "key_only")]).ok
    report = check_tensorrt_compat(exported_sdpa[(23, "key_only")])
    assert not report.ok and "query axis" in report.problems[0]


def test_unsupported_ops_are_listed_with_subgraphs() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    then_out = helper.make_tensor_value_info("t", TensorProto.FLOAT, None)
    else_out = helper.make_tensor_value_info("e", TensorProto.FLOAT, None)
    then_branch = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [], [then_out])
    # Unique is marked N in the table; it hides in the else branch of an If
    else_branch = helper.make_graph([helper.make_node("Unique", ["x"], ["e"])], "else", [], [else_out])
    nodes = [
        helper.make_node("If", ["cond"], ["y0"], then_branch=then_branch, else_branch=else_branch),
        helper.make_node("NotAnOp", ["y0"], ["y"], domain="dymos.test"),
    ]
    graph = helper.make_graph(nodes, "g", [x, cond], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("dymos.test", 1)])
    report = check_tensorrt_compat(model)
    assert not report.ok
    assert any("op Unique" in p for p in report.problems)
    assert any("dymos.test::NotAnOp" in p and "plugin" in p for p in report.problems)
    assert report.op_counts["Relu"] == 1 and report.op_counts["If"] == 1
    with pytest.raises(TensorRTCompatError) as err:
        report.raise_if_incompatible()
    assert "Unique" in str(err.value) and "NotAnOp" in str(err.value)


def test_attention_full_float_mask_of_q_dtype_passes() -> None:
    assert check_tensorrt_compat(_attention_model(["B", 1, "L", "L"])).ok
    assert check_tensorrt_compat(_attention_model(["B", 2, "L", "L"], mask_type=TensorProto.FLOAT16,
                                                  q_type=TensorProto.FLOAT16)).ok  # fmt: skip
    assert check_tensorrt_compat(_attention_model(None)).ok


def test_attention_key_only_mask_is_refused() -> None:
    report = check_tensorrt_compat(_attention_model(["B", 1, 1, "L"]))
    assert not report.ok
    assert "query axis" in report.problems[0] and "[B, 1, 1, L]" in report.problems[0]


def test_attention_query_only_mask_is_refused() -> None:
    report = check_tensorrt_compat(_attention_model(["B", 1, "L", 1]))
    assert not report.ok and "key axis" in report.problems[0]


@pytest.mark.parametrize(
    ("mask_type", "words"), [(TensorProto.BOOL, "BOOL"), (TensorProto.FLOAT16, "Q is FLOAT")]
)  # fmt: skip
def test_attention_mask_dtype_must_be_q_dtype(mask_type: int, words: str) -> None:
    report = check_tensorrt_compat(_attention_model(["B", 1, "L", "L"], mask_type=mask_type))
    assert not report.ok and words in report.problems[0]


def test_bool_mask_allowed_on_request() -> None:
    model = _attention_model(["B", 1, "L", "L"], mask_type=TensorProto.BOOL)
    assert check_tensorrt_compat(model, allow_bool_mask=True).ok


def test_attention_mask_rank_and_attributes() -> None:
    assert "rank 2" in check_tensorrt_compat(_attention_model(["L", "L"])).problems[0]
    report = check_tensorrt_compat(_attention_model(["B", 1, "L", "L"], is_causal=1, softcap=30.0))
    assert len(report.problems) == 2
    assert any("softcap" in p for p in report.problems) and any("is_causal" in p for p in report.problems)


def test_graph_io_dtypes() -> None:
    model = _linear_model()
    assert check_tensorrt_compat(model).ok
    model.graph.input[1].type.tensor_type.elem_type = TensorProto.INT64  # int64 is native in TensorRT 10
    ok64 = check_tensorrt_compat(model)
    assert not any("graph input" in p for p in ok64.problems)
    for bad in (TensorProto.DOUBLE, TensorProto.COMPLEX64, TensorProto.STRING):
        model.graph.input[1].type.tensor_type.elem_type = bad
        report = check_tensorrt_compat(model)
        assert any("motion_strength" in p and TensorProto.DataType.Name(bad) in p for p in report.problems)


def test_integer_matmul_is_refused() -> None:
    model = _linear_model()
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.INT32
    model.graph.initializer[0].CopyFrom(helper.make_tensor("W", TensorProto.INT32, [8, 8], list(range(64))))
    report = check_tensorrt_compat(model)
    assert any("MatMul" in p and "INT32" in p for p in report.problems)


def test_opset_out_of_range() -> None:
    model = _linear_model()
    model.opset_import[0].version = 8
    assert any("opset 8" in p for p in check_tensorrt_compat(model).problems)


# ---- cache key and profile -----------------------------------------------------------------------------------------


KEY_ARGS = {
    "onnx_sha256": "a" * 64,
    "precision": "fp16",
    "profile": {"x": ((1, 8), (2, 8), (4, 8))},
    "tensorrt_version": "10.14.1.48",
}


def test_cache_key_is_stable() -> None:
    key = trt_build.engine_cache_key(**KEY_ARGS)
    assert key == trt_build.engine_cache_key(**KEY_ARGS) and len(key) == 64 and int(key, 16) >= 0
    as_lists = {**KEY_ARGS, "profile": {"x": [[1, 8], [2, 8], [4, 8]]}}
    assert trt_build.engine_cache_key(**as_lists) == key
    assert trt_build.engine_cache_key(**KEY_ARGS, extra={}) == key
    two = {"x": ((1, 8), (2, 8), (4, 8)), "s": ((1,), (2,), (4,))}
    reordered = dict(reversed(list(two.items())))
    assert trt_build.engine_cache_key(**{**KEY_ARGS, "profile": two}) == trt_build.engine_cache_key(
        **{**KEY_ARGS, "profile": reordered}
    )
    assert trt_build.engine_cache_key(**KEY_ARGS, extra={"a": 1, "b": 2}) == trt_build.engine_cache_key(
        **KEY_ARGS, extra={"b": 2, "a": 1}
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("onnx_sha256", "b" * 64),
        ("precision", "bf16"),
        ("profile", {"x": ((1, 8), (2, 8), (8, 8))}),
        ("profile", {"y": ((1, 8), (2, 8), (4, 8))}),
        ("tensorrt_version", "10.15.1.29"),
    ],
)
def test_cache_key_changes_with_each_field(field: str, value: object) -> None:
    assert trt_build.engine_cache_key(**{**KEY_ARGS, field: value}) != trt_build.engine_cache_key(**KEY_ARGS)


def test_cache_key_changes_with_extra() -> None:
    base = trt_build.engine_cache_key(**KEY_ARGS, extra={"device": "H100 sm_90"})
    assert base != trt_build.engine_cache_key(**KEY_ARGS, extra={"device": "L40S sm_89"})
    assert base != trt_build.engine_cache_key(**KEY_ARGS)


def test_profile_shapes_from_spec() -> None:
    assert trt_build.profile_shapes(_linear_spec()) == [
        ("x", (1, 8), (2, 8), (4, 8)),
        ("motion_strength", (1,), (2,), (4,)),
    ]


def test_profile_shapes_refuse_bad_ranges() -> None:
    spec = _linear_spec()
    broken = ExportSpec(spec.family, spec.submodel, spec.inputs, spec.outputs, {})
    with pytest.raises(KeyError):
        trt_build.profile_shapes(broken)  # a dynamic dim without a range

    class Unordered(ExportSpec):
        def profile(self) -> dict:
            return {"x": ((1, 8), (4, 8), (2, 8))}

    with pytest.raises(ValueError, match="axis 0"):
        trt_build.profile_shapes(Unordered(spec.family, spec.submodel, spec.inputs, spec.outputs, spec.dims))

    class MixedRanks(ExportSpec):
        def profile(self) -> dict:
            return {"x": ((1, 8), (2,), (4, 8))}

    with pytest.raises(ValueError, match="ranks"):
        trt_build.profile_shapes(MixedRanks(spec.family, spec.submodel, spec.inputs, spec.outputs, spec.dims))


# ---- build_engine without TensorRT ---------------------------------------------------------------------------------


@pytest.fixture()
def linear_onnx(tmp_path: Path) -> Path:
    path = tmp_path / "model" / "denoiser.onnx"
    path.parent.mkdir()
    onnx.save(_linear_model(), path)
    return path


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_build_engine_says_how_to_install(linear_onnx: Path, tmp_path: Path) -> None:
    assert trt_build.tensorrt_version() is None
    with pytest.raises(trt_build.TensorRTNotInstalledError, match=r"make setup GPU=1"):
        trt_build.build_engine(linear_onnx, _linear_spec(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_build_engine_validates_arguments_first(linear_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="precision"):
        trt_build.build_engine(linear_onnx, _linear_spec(), tmp_path, precision="int8")
    with pytest.raises(ValueError, match="workspace_gb"):
        trt_build.build_engine(linear_onnx, _linear_spec(), tmp_path, workspace_gb=0)


@pytest.fixture()
def fake_tensorrt(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stub the TensorRT import and the build itself; returns the precisions built, in order."""
    built: list[str] = []

    def fake_build(trt, onnx_path, shapes, precision, timing_cache, workspace_gb, progress) -> memoryview:
        built.append(precision)
        return memoryview(f"engine {precision} #{len(built)}".encode())

    monkeypatch.setattr(trt_build, "_import_tensorrt", lambda: types.SimpleNamespace(__version__="10.14.1.48"))
    monkeypatch.setattr(trt_build, "_build", fake_build)
    return built


def test_build_engine_caches_by_key(fake_tensorrt: list[str], linear_onnx: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = trt_build.build_engine(linear_onnx, _linear_spec(), tmp_path / "a", cache_dir=cache)
    assert first == tmp_path / "a" / trt_build.ENGINE_NAME and first.read_bytes() == b"engine fp16 #1"
    assert len(list(cache.glob("*.plan"))) == 1
    again = trt_build.build_engine(linear_onnx, _linear_spec(), tmp_path / "b", cache_dir=cache)
    assert again.read_bytes() == b"engine fp16 #1" and fake_tensorrt == ["fp16"]  # reused, not rebuilt
    trt_build.build_engine(linear_onnx, _linear_spec(), tmp_path / "c", cache_dir=cache, precision="bf16")
    trt_build.build_engine(linear_onnx, _linear_spec(DimRange(1, 2, 8)), tmp_path / "d", cache_dir=cache)
    assert fake_tensorrt == ["fp16", "bf16", "fp16"] and len(list(cache.glob("*.plan"))) == 3
    assert not list(tmp_path.rglob("*.tmp"))


def test_build_engine_new_weights_mean_new_engine(fake_tensorrt: list[str], tmp_path: Path) -> None:
    path = tmp_path / "ext" / "denoiser.onnx"
    path.parent.mkdir()
    model = _linear_model()
    onnx.save(model, path, save_as_external_data=True, location="weights.bin", size_threshold=0)
    cache = tmp_path / "cache"
    trt_build.build_engine(path, _linear_spec(), tmp_path / "a", cache_dir=cache)
    (path.parent / "weights.bin").write_bytes(b"\x00" * (path.parent / "weights.bin").stat().st_size)
    trt_build.build_engine(path, _linear_spec(), tmp_path / "b", cache_dir=cache)
    assert len(fake_tensorrt) == 2


def test_build_engine_checks_graph_before_building(fake_tensorrt: list[str], tmp_path: Path) -> None:
    bad = tmp_path / "attn.onnx"
    onnx.save(_attention_model(["B", 1, 1, "L"]), bad)
    with pytest.raises(TensorRTCompatError, match="query axis"):
        trt_build.build_engine(bad, _linear_spec(), tmp_path / "out")
    good = tmp_path / "linear.onnx"
    onnx.save(_linear_model(), good)
    spec = _linear_spec()
    renamed = ExportSpec(spec.family, spec.submodel, (TensorSpec("z", "float32", ("batch", 8)), spec.inputs[1]),
                         spec.outputs, spec.dims)  # fmt: skip
    with pytest.raises(ValueError, match="'x' has no profile"):
        trt_build.build_engine(good, renamed, tmp_path / "out")
    assert fake_tensorrt == []


# ---- the runtime's TensorRT backend refuses an engine of another TensorRT version (no GPU needed) -----------------


def test_runtime_refuses_an_engine_built_with_another_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dymos.runtime import backends

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.99.0"))
    monkeypatch.setattr(backends, "_installed", lambda module: True)
    plan = tmp_path / "denoiser.plan"
    plan.write_bytes(b"not deserialized: the version check comes first")
    export = types.SimpleNamespace(
        root=tmp_path,
        submodel=lambda name: None,
        artifacts=lambda name: {"tensorrt": {"file": plan.name, "tensorrt_version": "10.14.0"}},
        path=lambda name: tmp_path / name,
    )
    heard: list[str] = []
    with pytest.raises(backends.BackendUnavailable, match=r"built with TensorRT 10\.14\.0, but TensorRT 10\.99\.0"):
        backends.open_backend(export, prefer=("tensorrt",), on_skip=heard.append)
    assert len(heard) == 1 and heard[0].startswith("denoiser: tensorrt skipped: ") and "rebuild it" in heard[0]


# ---- the export's engine step: built, cached, validated against PyTorch (TensorRT calls stubbed) -------------------


def test_engine_precision_and_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dymos.export.build import ExportError, engine_precision, tensorrt_cache_dir

    assert engine_precision("fp32") == "fp16" and engine_precision("bf16") == "bf16"
    assert engine_precision("fp32", "fp32") == "fp32"
    with pytest.raises(ExportError, match="unknown TensorRT precision"):
        engine_precision("fp32", "int8")
    monkeypatch.setenv("DYMOS_CACHE", str(tmp_path / "dc"))
    assert tensorrt_cache_dir() == tmp_path / "dc" / "tensorrt"
    monkeypatch.delenv("DYMOS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tensorrt_cache_dir() == tmp_path / "xdg" / "dymos" / "tensorrt"


def test_saved_inputs_that_do_not_fit_the_artifact_are_a_parity_error(linear_onnx: Path, tmp_path: Path) -> None:
    """A polygraphy failure while running the saved parity inputs (here: inputs named for another graph) reaches
    the user as a :class:`ParityError` naming the artifact, not as a polygraphy traceback."""
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.json import save_json

    from dymos.export import validate

    parity = tmp_path / "parity"
    parity.mkdir()
    save_json([{"latents": np.zeros((2, 8), np.float32)}], str(parity / "inputs.json"))
    runner = OnnxrtRunner(SessionFromOnnx(str(linear_onnx), providers=["CPUExecutionProvider"]))
    with pytest.raises(validate.ParityError, match=r"could not run denoiser\.onnx on the saved parity inputs"):
        validate._against_saved(
            runner, linear_onnx, "onnxruntime", "--onnxrt", [], parity, "fp32", "noise_pred", strength_input=True
        )


def _stub_engine_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, calls: list[dict]) -> None:
    """TensorRT 'installed', its build writing a stand-in plan: what the export does around the build is real."""
    monkeypatch.setattr("dymos.export.build.tensorrt_version", lambda: "10.14.1.48")
    monkeypatch.setenv("DYMOS_CACHE", str(tmp_path / "cache"))

    def fake_build_engine(onnx_path, spec, out_dir, **kwargs):
        calls.append({"build": kwargs})
        plan = Path(out_dir) / f"{Path(onnx_path).stem}.plan"
        plan.write_bytes(b"stand-in engine")
        return plan

    monkeypatch.setattr(trt_build, "build_engine", fake_build_engine)


def test_export_validates_the_engine_and_records_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dymos.export import validate
    from dymos.export.build import ExportOptions, run_export
    from dymos.manifest import load_manifest

    calls: list[dict] = []
    _stub_engine_build(monkeypatch, tmp_path, calls)

    def fake_validate_engine(engine_path, cases, parity_dir, *, precision):
        calls.append({"validate": (engine_path.name, parity_dir.name, precision, [c.name for c in cases])})
        assert (parity_dir / "inputs.json").is_file() and (parity_dir / "torch_outputs.json").is_file()
        case = {"name": "strength_0", "max_abs_err": 1e-3}
        return {"backend": "tensorrt", "tolerance": validate.TOLERANCES[precision], "passed": True, "cases": [case]}

    monkeypatch.setattr(validate, "validate_engine", fake_validate_engine)
    result = run_export(ExportOptions(model="tiny:wan22", out=tmp_path / "out", formats=("trt",)), log=lambda _: None)
    build, check = calls[0]["build"], calls[1]["validate"]
    assert build["precision"] == "fp16" and build["cache_dir"] == tmp_path / "cache" / "tensorrt" / "engines"
    assert build["timing_cache"] == tmp_path / "cache" / "tensorrt" / "timing-10.14.1.48.cache"
    assert check[:3] == ("denoiser.plan", "parity", "fp16") and "mixed_batch" in check[3]
    manifest = load_manifest(result.directory)
    entry = manifest["artifacts"]["tensorrt"]
    assert entry["validated"] == {
        "backend": "tensorrt",
        "tolerance": validate.TOLERANCES["fp16"],
        "passed": True,
        "report": "parity_tensorrt.json",
    }
    assert {"denoiser.plan", "parity_tensorrt.json"} <= set(manifest["files"])


def test_an_engine_that_fails_its_check_fails_the_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dymos.export import validate
    from dymos.export.build import ExportOptions, run_export

    _stub_engine_build(monkeypatch, tmp_path, [])

    def failing(*args, **kwargs):
        raise validate.ParityError("denoiser.plan does not match PyTorch within atol=0.02, rtol=0.01")

    monkeypatch.setattr(validate, "validate_engine", failing)
    with pytest.raises(validate.ParityError, match="does not match PyTorch"):
        run_export(ExportOptions(model="tiny:wan22", out=tmp_path / "out", formats=("trt",)), log=lambda _: None)
    assert list((tmp_path / "out").iterdir()) == []  # no export, no staging left


# ---- GPU -----------------------------------------------------------------------------------------------------------


def _gpu_reason() -> str | None:
    if not HAS_TENSORRT:
        return "TensorRT is not installed (`make setup GPU=1` installs it)"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible to torch"
    return None


@pytest.mark.gpu
@pytest.mark.skipif(_gpu_reason() is not None, reason=_gpu_reason() or "")
def test_build_engine_on_gpu_and_reuse(linear_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorrt as trt

    cache, timing = tmp_path / "cache", tmp_path / "timing.cache"
    plan = trt_build.build_engine(
        linear_onnx, _linear_spec(), tmp_path / "a", precision="fp16", cache_dir=cache, timing_cache=timing,
        progress=False,
    )  # fmt: skip
    assert plan.stat().st_size > 0 and timing.stat().st_size > 0 and len(list(cache.glob("*.plan"))) == 1
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan.read_bytes())
    assert engine is not None
    names = {engine.get_tensor_name(i): engine.get_tensor_mode(engine.get_tensor_name(i))
             for i in range(engine.num_io_tensors)}  # fmt: skip
    assert names == {
        "x": trt.TensorIOMode.INPUT,
        "motion_strength": trt.TensorIOMode.INPUT,
        "noise_pred": trt.TensorIOMode.OUTPUT,
    }
    assert tuple(engine.get_tensor_profile_shape("x", 0)[2]) == (4, 8)

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached engine should have been reused")

    monkeypatch.setattr(trt_build, "_build", no_build)
    again = trt_build.build_engine(
        linear_onnx, _linear_spec(), tmp_path / "b", precision="fp16", cache_dir=cache, progress=False
    )
    assert again.read_bytes() == plan.read_bytes()


@pytest.mark.gpu
@pytest.mark.skipif(_gpu_reason() is not None, reason=_gpu_reason() or "")
def test_export_builds_and_validates_an_engine_on_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dymos.export.build import ExportOptions, run_export

    monkeypatch.setenv("DYMOS_CACHE", str(tmp_path / "cache"))
    result = run_export(ExportOptions(model="tiny:wan22", out=tmp_path, formats=("onnx", "trt")), log=lambda _: None)
    entry = result.manifest["artifacts"]["tensorrt"]
    assert entry["validated"]["passed"] and entry["precision"] == "fp16"
    report = json.loads((result.directory / "parity_tensorrt.json").read_text())
    assert report["strength_changes_output"]["changes_output"] and len(report["cases"]) >= 4
