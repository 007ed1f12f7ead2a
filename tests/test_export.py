"""`dymos export` on every family: ONNX parity with PyTorch at several strengths, dynamic shapes, manifests,
PyTorch 2 artifacts, and clear errors that lose nothing."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from dymos.export.build import ExportError, ExportOptions, resolve_fold_pad_to, run_export
from dymos.export.specs import STRENGTH_INPUT, build_spec, sample_inputs
from dymos.export.trt_compat import check_tensorrt_compat
from dymos.export.validate import TOLERANCES
from dymos.export.wrapper import StrengthInputDenoiser
from dymos.layouts import UnsupportedModelError
from dymos.manifest import ManifestError, load_manifest
from dymos.models import ModelNotFoundError, load_pipeline
from dymos.tiny import TINY_CASES

FP32 = TOLERANCES["fp32"]


def _quiet(line: str) -> None:
    pass


@pytest.fixture(scope="module")
def exports(shared_exports) -> dict[str, Path]:
    """One ONNX export per tiny family (the expensive part, shared by the tests below and across test workers)."""
    return {name: shared_exports.get(f"tiny:{name}") for name in TINY_CASES}


def test_a_day_old_leftover_of_a_killed_export_is_swept_and_a_set_aside_export_is_kept(tmp_path: Path) -> None:
    """What killed exports left beside the target goes once a day old (a younger one may be a live export's); a
    set-aside ``.old-*`` with no target is the last good export: named, never deleted."""
    from dymos.export import build

    target = tmp_path / "export"
    stale, fresh = tmp_path / ".export.partial-a1", tmp_path / ".export.partial-b2"
    set_aside, other = tmp_path / ".export.old-c3", tmp_path / ".other.partial-d4"
    for folder in (stale, fresh, set_aside, other):
        folder.mkdir()
        (folder / "denoiser.onnx").write_bytes(b"x")
    day_old = time.time() - build.LEFTOVER_AGE_S - 60
    for folder in (stale, set_aside, other):
        os.utime(folder, (day_old, day_old))
    said: list[str] = []
    build._sweep_leftovers(target, said.append)  # no target: the set-aside export is all that is left of it
    assert not stale.exists() and fresh.exists() and set_aside.exists() and other.exists()
    assert any(str(set_aside) in line and "move it to" in line for line in said)
    target.mkdir()
    build._sweep_leftovers(target, said.append)  # now the target exists, the day-old set-aside copy goes
    assert not set_aside.exists() and fresh.exists() and other.exists()
    assert sum("removed" in line for line in said) == 2


@pytest.mark.parametrize("name", sorted(TINY_CASES))
def test_onnx_matches_pytorch_at_several_strengths_and_shapes(exports: dict[str, Path], name: str) -> None:
    manifest = load_manifest(exports[name])
    report = json.loads((exports[name] / "parity_onnx.json").read_text())
    assert report["passed"] and report["tolerance"] == FP32
    cases = {c["name"]: c for c in report["cases"]}
    assert set(cases) == {"strength_0", "strength_nonzero", "mixed_batch", "other_batch_and_frames"}
    assert all(c["passed"] and c["max_abs_err"] <= FP32["atol"] for c in cases.values())
    assert len(set(cases["mixed_batch"]["strength"])) > 1  # a batch with different strengths per item
    assert report["strength_changes_output"]["changes_output"]
    export_batch = manifest["export"]["batch"]
    other = cases["other_batch_and_frames"]["shapes"][STRENGTH_INPUT][0]
    assert other != export_batch
    spec = manifest["submodels"]["denoiser"]
    latent = next(t for t in spec["inputs"] if t["name"] in ("hidden_states", "sample"))
    frames_axis = latent["shape"].index("frames") if "frames" in latent["shape"] else None
    if manifest["export"]["dynamic_frames"]:
        assert frames_axis is not None
        other_frames = cases["other_batch_and_frames"]["shapes"][latent["name"]][frames_axis]
        assert other_frames != manifest["export"]["latent_frames"]
    else:  # fixed by the model itself (CogVideoX 1.0) or by torch.export's limits (SVD): said so in the spec
        assert name in ("cogvideox", "svd")


@pytest.mark.parametrize("name", sorted(TINY_CASES))
def test_onnx_strength_zero_is_the_stock_model_and_strength_moves_it(exports: dict[str, Path], name: str) -> None:
    """Independent of the export's own report: a fresh session against the unpatched diffusers model."""
    case = TINY_CASES[name]
    manifest = load_manifest(exports[name])
    session = ort.InferenceSession(str(exports[name] / "denoiser.onnx"), providers=["CPUExecutionProvider"])
    tensors, _ = sample_inputs(case.family, case.config, batch=2, frames=manifest["export"]["latent_frames"], seed=7)
    feed = {k: v.numpy() for k, v in tensors.items()}
    out0 = session.run(None, {**feed, STRENGTH_INPUT: np.zeros(2, np.float32)})[0]
    out1 = session.run(None, {**feed, STRENGTH_INPUT: np.full(2, 1.5, np.float32)})[0]
    stock_model = case.build()
    stock = StrengthInputDenoiser(stock_model, build_spec(case.family, case.config), dymos=False)
    with torch.no_grad():
        reference = stock(*tensors.values(), torch.zeros(2)).numpy()
    np.testing.assert_allclose(out0, reference, atol=FP32["atol"], rtol=FP32["rtol"])
    assert np.abs(out1 - out0).max() > 1e-3


@pytest.mark.parametrize("name", sorted(TINY_CASES))
def test_graphs_keep_strength_live_and_pass_the_tensorrt_parser_check(exports: dict[str, Path], name: str) -> None:
    model = onnx.load(str(exports[name] / "denoiser.onnx"))
    inputs = {i.name: i for i in model.graph.input}
    strength = inputs[STRENGTH_INPUT].type.tensor_type
    assert strength.elem_type == onnx.TensorProto.FLOAT and [d.dim_param for d in strength.shape.dim] == ["batch"]
    assert any(STRENGTH_INPUT in node.input for node in model.graph.node)
    assert check_tensorrt_compat(model).ok
    assert load_manifest(exports[name])["artifacts"]["onnx"]["tensorrt_parser_check"]["ok"]


def test_manifest_refuses_tampered_missing_or_corrupt_artifacts(exports: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(exports["wan22"], copy)
    load_manifest(copy)
    data = bytearray((copy / "denoiser.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "denoiser.onnx").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="sha256"):
        load_manifest(copy)
    (copy / "denoiser.onnx").unlink()
    with pytest.raises(ManifestError, match="missing"):
        load_manifest(copy)
    (copy / "manifest.json").write_text("{ not json")
    with pytest.raises(ManifestError, match="corrupt"):
        load_manifest(copy)
    with pytest.raises(ManifestError, match=r"no manifest\.json"):
        load_manifest(tmp_path)
    manifest = json.loads((exports["wan22"] / "manifest.json").read_text())
    del manifest["model"]["family"]  # a damaged manifest names what it lacks, not a KeyError later
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=r"lacks its model family or its graphs"):
        load_manifest(copy)


def test_manifest_refuses_an_engine_from_another_tensorrt(exports: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(exports["wan22"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["artifacts"]["tensorrt"] = {"file": "denoiser.plan", "tensorrt_version": "10.14.1"}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    load_manifest(copy, tensorrt_version="10.14.1")
    with pytest.raises(ManifestError, match="not portable"):
        load_manifest(copy, tensorrt_version="10.15.0")


def test_opset_23_exports_the_attention_op_with_fold(tmp_path: Path) -> None:
    result = run_export(ExportOptions(model="tiny:wan22", out=tmp_path, opset=23), log=_quiet)
    assert result.manifest["strength"]["strategy"] == "fold"
    model = onnx.load(str(result.directory / "denoiser.onnx"))
    assert any(n.op_type == "Attention" for n in model.graph.node)
    assert result.parity["onnx"]["passed"]
    assert check_tensorrt_compat(model).ok


def test_fp16_export_matches_within_the_fp16_tolerance(tmp_path: Path) -> None:
    result = run_export(ExportOptions(model="tiny:wan22", out=tmp_path, precision="fp16"), log=_quiet)
    report = result.parity["onnx"]
    assert report["passed"] and report["tolerance"] == TOLERANCES["fp16"]
    model = onnx.load(str(result.directory / "denoiser.onnx"))
    inputs = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    assert inputs["hidden_states"] == onnx.TensorProto.FLOAT16 and inputs[STRENGTH_INPUT] == onnx.TensorProto.FLOAT


def test_pytorch2_artifacts_load_and_match(tmp_path: Path) -> None:
    result = run_export(
        ExportOptions(model="tiny:wan21", out=tmp_path, formats=("pt2", "aoti", "torchscript")), log=_quiet
    )
    artifacts = result.manifest["artifacts"]
    for fmt in ("pt2", "aoti"):
        assert artifacts[fmt]["validated"] and {c["name"] for c in artifacts[fmt]["parity"]["cases"]} >= {
            "strength_0",
            "mixed_batch",
            "other_batch_and_frames",
        }
        assert artifacts[fmt]["file"] in result.manifest["files"]
    ts = artifacts["torchscript"]
    assert ts["validated"] and ts["fixed_shapes"][STRENGTH_INPUT] == [2]
    program = torch.export.load(str(result.directory / "denoiser.pt2")).module()
    case = TINY_CASES["wan21"]
    tensors, _ = sample_inputs(case.family, case.config, batch=3, frames=4, seed=3)
    with torch.no_grad():
        a = program(*tensors.values(), torch.tensor([0.0, 1.0, 2.0]))
        b = program(*tensors.values(), torch.tensor([0.0, 0.0, 0.0]))
    torch.testing.assert_close(a[0], b[0], atol=FP32["atol"], rtol=FP32["rtol"])  # item 0 has strength 0 in both
    assert (a[1:] - b[1:]).abs().amax() > 1e-3  # per-item strength reaches the other items


def test_torchscript_is_recorded_as_unavailable_where_the_model_does_not_trace(tmp_path: Path) -> None:
    result = run_export(ExportOptions(model="tiny:hunyuanvideo", out=tmp_path, formats=("torchscript",)), log=_quiet)
    entry = result.manifest["artifacts"]["torchscript"]
    assert entry["validated"] is False and entry["file"] is None and "masked_fill" in entry["reason"]
    assert not (result.directory / "denoiser.torchscript.pt").exists()


# -- bad input loses nothing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"frames": 8}, ExportError, "4n\\+1"),
        ({"height": 60}, ExportError, "multiple of 16"),
        ({"formats": ("onnx", "tflite")}, ExportError, "unknown format"),
        ({"opset": 23, "strategy": "split"}, ExportError, "query-broadcast"),
        ({"strategy": "merge"}, ExportError, "PyTorch eager only"),
        ({"strategy": "fold", "fold_pad_to": 0}, ExportError, "fold_pad_to must be a positive integer"),
        ({"precision": "int8"}, ExportError, "unknown precision"),
        pytest.param(
            {"precision": "bf16"},
            ExportError,
            "CUDA provider",
            marks=pytest.mark.skipif(
                "CUDAExecutionProvider" in ort.get_available_providers(), reason="bf16 validates on the CUDA provider"
            ),
        ),
        ({"model": "tiny:nope"}, ModelNotFoundError, "unknown tiny model"),
        ({"formats": ()}, ExportError, "no format given"),
        ({"opset": 16}, ExportError, "opset 16 is not supported"),
        ({"opset": 16, "formats": ("pt2",)}, ExportError, "opset 16 is not supported"),
        ({"max_batch": 1}, ExportError, "max-batch must be at least 2"),
        ({"batch": 8, "max_batch": 4}, ExportError, "at least --batch 8"),
        ({"frames": 1}, ExportError, "one token-frame.*at least 5 frames"),
        ({"height": 16}, ExportError, r"height must be at least 32 pixels \(two tokens\)"),
        ({"name": "."}, ExportError, "plain folder name"),
        ({"name": "../elsewhere"}, ExportError, "plain folder name"),
        ({"name": "a/b"}, ExportError, "plain folder name"),
    ],
)
def test_bad_options_fail_before_any_work(tmp_path: Path, options: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        run_export(ExportOptions(**{"model": "tiny:wan22", "out": tmp_path, **options}), log=_quiet)
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_dirs_without_config_or_of_unsupported_class(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        run_export(ExportOptions(model=str(empty), out=tmp_path / "out"), log=_quiet)
    unet = tmp_path / "unet2d"
    unet.mkdir()
    (unet / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(UnsupportedModelError, match="supported denoiser classes"):
        run_export(ExportOptions(model=str(unet), out=tmp_path / "out"), log=_quiet)


def test_an_export_never_replaces_the_model_it_exports(tmp_path: Path) -> None:
    """The export replaces OUT/NAME whole: that folder must not be (or hold) the checkpoint being read."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    case = TINY_CASES["wan22"]
    (ckpt / "config.json").write_text(json.dumps({"_class_name": case.class_name, **case.config}))
    for options in (
        ExportOptions(model=str(ckpt), out=tmp_path),  # the name comes from the model: OUT/ckpt is the checkpoint
        ExportOptions(model=str(ckpt), out=tmp_path.parent, name=tmp_path.name),  # a folder above it
    ):
        with pytest.raises(ExportError, match="holds the model being exported"):
            run_export(options, log=_quiet)
    with pytest.raises(ExportError, match="plain folder name"):
        run_export(ExportOptions(model=".", out=tmp_path), log=_quiet)  # the name would be "."
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"] and [p.name for p in ckpt.iterdir()] == [
        "config.json"
    ]


def test_frames_follow_the_vae_encoders_chunks(tmp_path: Path) -> None:
    """The shipped model's VAE compresses time 2x, but diffusers' AutoencoderKLWan encodes the frames after the first
    in chunks of 4: 3 frames would pass a 2n+1 rule and fail deep in the condition encoder's export."""
    from dymos.models import pipeline_frame_step

    assert pipeline_frame_step(load_pipeline("sprites")) == 4
    with pytest.raises(ExportError, match=r"4n\+1 video frames \(VAE temporal factor 2, encoder chunks of 4"):
        run_export(ExportOptions(model="sprites", out=tmp_path, frames=3), log=_quiet)
    assert list(tmp_path.iterdir()) == []


def test_the_l_by_l_check_tells_a_square_weight_from_a_pattern() -> None:
    """128 tokens and a 128-wide model (the shipped model at 3 frames): its [128, 128] projection weights are read
    by MatMul, not added to logits, and must not be mistaken for a baked attention pattern."""
    from types import SimpleNamespace

    from onnx import TensorProto, helper, numpy_helper

    from dymos.export.onnx_export import OnnxExportError, check_graph
    from dymos.export.specs import OUTPUT_NAME

    def graph(use: str) -> onnx.ModelProto:
        square = numpy_helper.from_array(np.eye(128, dtype=np.float32), "square")
        scaled = helper.make_node("Mul", ["x", STRENGTH_INPUT], ["scaled"])
        if use == "weight":
            last = helper.make_node("MatMul", ["scaled", "square"], [OUTPUT_NAME])
        else:
            last = helper.make_node("Add", ["scaled", "square"], [OUTPUT_NAME])
        inputs = [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [128, 128]),
            helper.make_tensor_value_info(STRENGTH_INPUT, TensorProto.FLOAT, [1]),
        ]
        output = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [128, 128])
        return helper.make_model(helper.make_graph([scaled, last], "g", inputs, [output], [square]))

    spec = SimpleNamespace(input_names=["x", STRENGTH_INPUT])
    check_graph(graph("weight"), spec, sequence_lengths=[128])
    with pytest.raises(OnnxExportError, match="looks like an L x L pattern"):
        check_graph(graph("pattern"), spec, sequence_lengths=[128])


def test_a_leftover_from_a_crashed_swap_does_not_block_the_next(tmp_path: Path) -> None:
    from dymos.export import build

    target, staging = tmp_path / "export", tmp_path / ".staging"
    target.mkdir()
    (target / "manifest.json").write_text("old")
    leftover = tmp_path / f".export.old-{os.getpid()}"  # what a crash after the swap left under the old naming
    leftover.mkdir()
    (leftover / "manifest.json").write_text("older")
    staging.mkdir()
    (staging / "manifest.json").write_text("new")
    build._replace_dir(staging, target)
    assert (target / "manifest.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [leftover.name, "export"]


@pytest.mark.parametrize(
    ("text", "message"),
    [("[]", "JSON list, not a dymos manifest"), (None, "malformed"), ("{", "corrupt")],
)
def test_malformed_manifests_are_manifest_errors(exports: dict[str, Path], tmp_path: Path, text, message) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(exports["wan22"], copy)
    if text is None:  # valid JSON, a file entry without its size
        manifest = json.loads((copy / "manifest.json").read_text())
        name = next(iter(manifest["files"]))
        del manifest["files"][name]["bytes"]
        text = json.dumps(manifest)
    (copy / "manifest.json").write_text(text)
    with pytest.raises(ManifestError, match=message):
        load_manifest(copy)


def test_corrupt_pipeline_json_names_its_file(tmp_path: Path) -> None:
    from dymos.models import load_pipeline, pipeline_defaults

    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "model_index.json").write_text("{not json")
    with pytest.raises(ModelNotFoundError, match=r"model_index\.json is not valid JSON"):
        load_pipeline(str(folder))
    (folder / "dymos_defaults.json").write_text("[1, 2]")
    with pytest.raises(ModelNotFoundError, match=r"dymos_defaults\.json holds a JSON list"):
        pipeline_defaults(str(folder))


def test_probe_needs_a_frame_to_bias() -> None:
    from dymos.inputs import example_inputs
    from dymos.models import load_denoiser
    from dymos.probe import attention_mass

    model = load_denoiser("tiny:wan22")
    inputs = example_inputs("wan", dict(model.config), batch=1, frames=1, seed=0)
    with pytest.raises(ValueError, match="one token-frame"):
        attention_mass(model, inputs, [0.0, 1.0])


def test_unwritable_output_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ExportError, match="not writable"):
        run_export(ExportOptions(model="tiny:wan22", out=blocker / "sub"), log=_quiet)


def test_interrupted_export_leaves_the_previous_export_and_no_half_directory(
    exports: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "tiny-wan22"
    shutil.copytree(exports["wan22"], target)
    before = (target / "manifest.json").read_text()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("dymos.export.build.validate_onnx", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_export(ExportOptions(model="tiny:wan22", out=tmp_path, seed=1), log=_quiet)
    assert (target / "manifest.json").read_text() == before
    load_manifest(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-wan22"]  # no staging leftovers


def test_trt_format_without_tensorrt_fails_before_loading_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dymos.export.build.tensorrt_version", lambda: None)  # as on this CPU machine

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the TensorRT check")

    monkeypatch.setattr("dymos.export.build.load_denoiser", no_load)
    with pytest.raises(ExportError, match=r"needs TensorRT.*make setup GPU=1.*--formats onnx"):
        run_export(ExportOptions(model="tiny:wan22", out=tmp_path, formats=("onnx", "trt")), log=_quiet)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"trt_precision": "fp16"}, "needs trt in --formats"),
        ({"strategy": "mask", "fold_pad_to": 8}, "pads the fold strategy's head dim; this export uses 'mask'"),
    ],
)
def test_options_that_would_be_ignored_are_refused_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict, message: str
) -> None:
    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr("dymos.export.build.load_denoiser", no_load)
    with pytest.raises(ExportError, match=message):
        run_export(ExportOptions(model="tiny:wan22", out=tmp_path, **options), log=_quiet)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("pipeline", "expected"),
    [
        ("WanImageToVideoPipeline", {"steps": 50, "guidance_scale": 5.0, "fps": 16}),
        ("CogVideoXImageToVideoPipeline", {"steps": 50, "guidance_scale": 6, "fps": 8}),
        ("LTXImageToVideoPipeline", {"steps": 50, "guidance_scale": 3, "fps": 24}),
        # true CFG is true_cfg_scale there (guidance_scale feeds the guidance embedding)
        ("HunyuanVideoImageToVideoPipeline", {"steps": 50, "guidance_scale": 1.0, "fps": 15}),
        ("StableVideoDiffusionPipeline", {"steps": 25, "guidance_scale": 3.0, "fps": 7}),  # the top of its ramp
    ],
)
def test_an_export_records_the_pipelines_own_generation_defaults(pipeline: str, expected: dict) -> None:
    """`dymos run` without --steps/--guidance/--fps generates as the pipeline's own __call__ would: the export
    reads its signature's defaults (no instance needed, so every class is checked here, not only tiny ones)."""
    import diffusers

    from dymos.export.build import RUNTIME_PIPELINES, call_defaults

    instance = object.__new__(getattr(diffusers, pipeline))  # the class's __call__ signature is all it reads
    assert call_defaults(instance, RUNTIME_PIPELINES[pipeline]) == expected


def test_a_failed_swap_puts_the_previous_export_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dymos.export import build

    target, staging = tmp_path / "export", tmp_path / ".staging"
    target.mkdir()
    (target / "manifest.json").write_text("old")
    staging.mkdir()
    (staging / "manifest.json").write_text("new")
    real_replace = os.replace

    def failing_replace(src, dst):
        if Path(src) == staging:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(build.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        build._replace_dir(staging, target)
    assert (target / "manifest.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".staging", "export"]  # nothing left aside
    monkeypatch.setattr(build.os, "replace", real_replace)
    build._replace_dir(staging, target)
    assert (target / "manifest.json").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_wan_pipelines_with_a_text_encoder_export_their_prompt_length() -> None:
    """A Wan pipeline with a text encoder feeds its transformer ``max_sequence_length`` (512) text tokens, so its
    export takes that many (the family sample's 16 would truncate prompts); without a text encoder (the shipped
    model's form) and where the model fixes the length (CogVideoX's ``max_text_seq_length``) the sample's stays."""
    from dymos.export.build import pipeline_text_tokens
    from dymos.tiny import _tiny_text_encoder, build_tiny_pipeline

    pipe = build_tiny_pipeline("wan22")
    assert pipeline_text_tokens(pipe, "wan") is None
    pipe.register_modules(**_tiny_text_encoder(int(pipe.transformer.config.text_dim), umt5=True))
    assert pipeline_text_tokens(pipe, "wan") == 512
    assert pipeline_text_tokens(build_tiny_pipeline("cogvideox"), "cogvideox") is None
    config = dict(pipe.transformer.config)
    spec = build_spec("wan", config, text_tokens=512)
    text = next(t for t in spec.inputs if t.name == "encoder_hidden_states")
    assert text.shape == ("batch", 512, config["text_dim"])
    assert next(t for t in build_spec("wan", config).inputs if t.name == "encoder_hidden_states").shape[1] == 16


@pytest.mark.parametrize("batch,frames,height,width", [(1, 3, 8, 8), (3, 5, 4, 6)])
def test_ti2v_per_token_timesteps_equal_the_pipelines(batch: int, frames: int, height: int, width: int) -> None:
    """The per-token timesteps the graph forms (Wan 2.2 TI2V, LTX; the function the wrapper calls) are bit-equal to
    what ``WanImageToVideoPipeline`` with ``expand_timesteps`` computes: the first-frame mask, patch-strided, times
    the scheduler's int64 timestep. (That the wrapper feeds them at the right token grid is checked end to end by the
    runtime == pipeline tests of tests/test_runtime.py.)"""
    from dymos.inputs import first_frame_zero_timesteps

    t = torch.tensor(937)  # UniPC's timesteps are int64
    first_frame_mask = torch.ones(1, 1, frames, height, width)
    first_frame_mask[:, :, 0] = 0
    expected = (first_frame_mask[0][0][:, ::2, ::2] * t).flatten().unsqueeze(0).expand(batch, -1)
    ours = first_frame_zero_timesteps(torch.full((batch,), float(t)), frames, (height // 2) * (width // 2))
    assert ours.dtype == expected.dtype and torch.equal(ours, expected)


def test_pipelines_that_encode_prompts_with_the_image_store_no_empty_prompt() -> None:
    """HunyuanVideo-I2V's real text encoder (LLaVA) encodes even the empty prompt together with the image, so the
    export stores no image-independent empty prompt for it (its conditioning files carry the embeddings); the tiny
    pipeline without a text encoder stores its seeded stand-ins, and other pipelines store theirs."""
    from types import SimpleNamespace

    from dymos.export.build import RUNTIME_PIPELINES, stores_empty_prompt

    hunyuan = RUNTIME_PIPELINES["HunyuanVideoImageToVideoPipeline"]
    assert not stores_empty_prompt(SimpleNamespace(text_encoder=object()), hunyuan)
    assert stores_empty_prompt(SimpleNamespace(text_encoder=None), hunyuan)
    assert stores_empty_prompt(SimpleNamespace(text_encoder=object()), RUNTIME_PIPELINES["WanImageToVideoPipeline"])


def test_fold_padding_reaches_the_graph_and_the_manifest(tmp_path: Path) -> None:
    """``fold_pad_to``: 8 by default for TensorRT builds (GPU attention kernels want a head dim multiple of 8), 1
    otherwise; a padded fold export still matches PyTorch (padding is exact) and says so in its manifest."""
    assert resolve_fold_pad_to(None, ["onnx", "trt"]) == 8 and resolve_fold_pad_to(None, ["onnx"]) == 1
    assert resolve_fold_pad_to(4, ["onnx"]) == 4
    result = run_export(
        ExportOptions(model="tiny:wan22", out=tmp_path, strategy="fold", opset=23, fold_pad_to=8), log=_quiet
    )
    manifest = load_manifest(result.directory)
    assert manifest["strength"]["strategy"] == "fold" and manifest["strength"]["fold_pad_to"] == 8
    report = json.loads((result.directory / "parity_onnx.json").read_text())
    assert report["passed"] and report["tolerance"] == FP32
    wrapper = StrengthInputDenoiser(
        TINY_CASES["wan22"].build(), build_spec("wan", TINY_CASES["wan22"].config), strategy="fold", fold_pad_to=8
    )
    assert wrapper.handle.fold_pad_to == 8


def test_an_export_finds_its_checkpoint_again_and_refuses_changed_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prepare and sweep reload the exported pipeline with torch: from the absolute folder the export recorded
    (a relative --model still works from elsewhere), refusing a folder whose weights changed since (e.g.
    retrained in place), and from --model where it moved."""
    from dymos.models import exported_source, source_record

    folder = tmp_path / "ckpt"
    (folder / "vae").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    weights = folder / "vae" / "w.safetensors"
    weights.write_bytes(np.random.default_rng(0).bytes(3 << 20))  # over 2 MiB: its two ends are read
    monkeypatch.chdir(tmp_path)
    record = {"source": "ckpt", **source_record("ckpt")}
    assert record["folder"] == str(folder.resolve()) and len(record["fingerprint"]) == 64
    monkeypatch.chdir(folder / "vae")  # where "ckpt" names nothing
    assert exported_source(record) == str(folder.resolve())
    original = weights.read_bytes()
    weights.write_bytes(original[:10] + bytes([original[10] ^ 1]) + original[11:])  # retrained: other tensors
    with pytest.raises(ModelNotFoundError, match="not the checkpoint this export was made from"):
        exported_source(record)
    weights.write_bytes(original)
    monkeypatch.chdir(tmp_path)
    shutil.move(folder, tmp_path / "moved")
    with pytest.raises(ModelNotFoundError, match=r"is gone: give its new place \(--model\)"):
        exported_source(record)
    assert exported_source(record, str(tmp_path / "moved")) == str(tmp_path / "moved")
    assert exported_source({"source": "tiny-pipeline:wan22"}) == "tiny-pipeline:wan22"  # nothing on disk to check
