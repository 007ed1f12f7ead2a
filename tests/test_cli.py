"""The `dymos` command: probe output (table and JSON), help, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dymos.cli import main


def test_probe_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--model", "tiny:cogvideox", "--strengths", "0,2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["class"] == "CogVideoXTransformer3DModel"
    means = [row["mean_mass"] for row in report["strengths"]]
    assert means[0] > means[1]
    assert set(report["strengths"][0]["per_layer"]) == {"transformer_blocks.0.attn1", "transformer_blocks.1.attn1"}


def test_probe_table_and_layer_selection(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--strengths", "0,1", "--layers", "1"]) == 0
    out = capsys.readouterr().out
    assert "blocks.1.attn1" in out and "blocks.0.attn1" not in out and "mean" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["probe", "--model", "/no/such/dir"], "neither a local checkpoint"),
        (["probe", "--model", "tiny:nope"], "unknown tiny model"),
        (["probe", "--strengths", "1,inf"], "finite"),
        (["probe", "--layers", "9"], "does not exist"),
    ],
)
def test_probe_errors_are_clear(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_probe_rejects_a_checkpoint_without_config(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--model", str(tmp_path)]) == 1
    assert "no config.json" in capsys.readouterr().err


def test_probe_rejects_an_unsupported_checkpoint(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    assert main(["probe", "--model", str(tmp_path)]) == 1
    assert "supported denoiser classes" in capsys.readouterr().err


def test_probe_loads_a_local_checkpoint(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """A diffusers pipeline folder on disk (no hub): the denoiser comes from its transformer/ subfolder."""
    from dymos.tiny import TINY_CASES

    TINY_CASES["ltx"].build().save_pretrained(tmp_path / "transformer")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "LTXImageToVideoPipeline"}))
    assert main(["probe", "--model", str(tmp_path), "--strengths", "0,3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["class"] == "LTXVideoTransformer3DModel"
    assert report["strengths"][0]["mean_mass"] > report["strengths"][1]["mean_mass"]


def test_module_entry_point_and_help() -> None:
    out = subprocess.run([sys.executable, "-m", "dymos", "probe", "--help"], capture_output=True, text=True, check=True)
    assert "--strengths" in out.stdout and "--json" in out.stdout
    bare = subprocess.run([sys.executable, "-m", "dymos"], capture_output=True, text=True)
    assert bare.returncode == 2 and "probe" in bare.stdout


def test_prepare_passes_the_svd_micro_conditioning_through(monkeypatch, tmp_path) -> None:
    """`dymos prepare --cond-fps/--motion-bucket-id/--noise-aug-strength` reach prepare() (they were once dropped)."""
    import dymos.prepare

    seen = {}

    def fake_prepare(export, image, prompt, out, **kwargs):
        seen.update(kwargs)
        return out

    monkeypatch.setattr(dymos.prepare, "prepare", fake_prepare)
    argv = ["prepare", "--export", str(tmp_path), "--image", "x.png", "--cond-fps", "9", "--motion-bucket-id", "42"]
    assert main([*argv, "--noise-aug-strength", "0.1", "--seed", "3"]) == 0
    expected = {"negative_prompt": "", "seed": 3, "fps": 9, "motion_bucket_id": 42, "noise_aug_strength": 0.1}
    assert seen == {**expected, "model": None}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "--strength", "-1,0"], [-1.0, 0.0]),
        (["run", "--strength", "-1"], [-1.0]),  # one number: argparse's own reading
        (["run", "--strength", "-0.5,-2,3e-1"], [-0.5, -2.0, 0.3]),
        (["probe", "--strengths", "-2,0,2"], [-2.0, 0.0, 2.0]),
        (["sweep", "--strengths", "-1,0,1"], [-1.0, 0.0, 1.0]),
    ],
)
def test_strength_lists_may_start_below_zero(argv: list[str], expected: list[float]) -> None:
    """``--strength -1,0`` (less motion) reads as a list, not as an unknown option."""
    from dymos.cli import _attach_negative_lists, build_parser

    args = build_parser().parse_args(_attach_negative_lists(argv))
    assert (args.strength if argv[0] == "run" else args.strengths) == expected
    assert _attach_negative_lists(["run", "--seed", "-1,0"]) == ["run", "--seed", "-1,0"]  # other options as typed


@pytest.mark.parametrize(
    "extra",
    [["--prompt", "a cat"], ["--image", "x.png"], ["--negative-prompt", "static"], ["--motion-bucket-id", "3"]],
)
def test_run_refuses_encoding_flags_that_cond_would_override(extra: list[str], tmp_path, capsys) -> None:
    """--cond is already encoded: a prompt, image or micro-conditioning given beside it would be silently dropped."""
    assert main(["run", "--export", str(tmp_path), "--cond", "c.npz", *extra]) == 1
    err = capsys.readouterr().err
    assert f"{extra[0]} would be ignored: --cond c.npz is encoded already" in err
