"""The wheel installs one top-level package, `dymos`, with export/, runtime/ and the shipped weights inside it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_maps_export_and_runtime_into_dymos(tmp_path: Path) -> None:
    # Build from a copy: setuptools writes build/ into the source tree, which is where exports go.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", "build", ".git", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("dymos-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.startswith("dymos-")}
    assert top_level == {"dymos"}, top_level  # nothing generic like `export` or `runtime` in site-packages
    for module in ("dymos/export/build.py", "dymos/runtime/loop.py", "dymos/runtime/schedulers.py", "dymos/cli.py"):
        assert module in names
    shipped = "dymos/weights/sprites-wan/"  # the trained default model travels with the package
    for part in ("model_index.json", "dymos_defaults.json", "transformer/diffusion_pytorch_model.safetensors"):
        assert shipped + part in names, part
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "dymos = dymos.cli:main" in entry_points


def test_importing_dymos_and_its_runtime_does_not_import_torch() -> None:
    code = "import sys, dymos, dymos.runtime.loop, dymos.runtime.backends; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def _setup_recipe(*variables: str) -> str:
    """What `make setup` would run from scratch with these variables (dry run: nothing is installed)."""
    result = subprocess.run(
        ["make", "-n", "-B", "setup", *variables], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return result.stdout


def test_make_setup_gpu_installs_the_gpu_and_dev_extras_and_swaps_onnxruntime() -> None:
    gpu = _setup_recipe("GPU=1")
    assert 'pip install -q -e ".[dev,gpu]"' in gpu  # both extras: TensorRT and pytest for `make test-gpu`
    assert "--force-reinstall --no-deps onnxruntime-gpu==1.32.0" in gpu  # over the CPU wheel `-e .` puts back
    assert "touch .venv/.installed-gpu1" in gpu
    cpu = _setup_recipe("GPU=0")
    assert 'pip install -q -e ".[dev]"' in cpu
    assert "--force-reinstall --no-deps onnxruntime==1.32.0" in cpu  # back from a GPU setup
    assert "touch .venv/.installed-gpu0" in cpu  # another stamp: switching GPU= reruns the setup
    refused = subprocess.run(["make", "-n", "setup", "GPU=yes"], cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode != 0 and "GPU must be 0 or 1" in refused.stderr


def test_importing_dymos_silences_only_transformers_pil_fallback_notice() -> None:
    """Without torchvision, importing diffusers' Wan pipeline prints transformers' CLIP-processor fallback notice;
    after ``import dymos`` it does not, and other messages of that logger still pass."""
    import importlib.util
    import logging

    import dymos

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: transformers prints no fallback notice to silence")
    load = "from diffusers import WanImageToVideoPipeline"
    plain = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, check=True, cwd=ROOT)
    assert "requires torchvision (not installed)" in plain.stderr  # the notice exists, so the next check can fail
    quiet = subprocess.run(
        [sys.executable, "-c", f"import dymos; {load}"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert "requires torchvision" not in quiet.stderr, quiet.stderr
    (quiet_filter,) = logging.getLogger("transformers.utils.import_utils").filters
    assert isinstance(quiet_filter, dymos._QuietPilFallback)
    other = logging.LogRecord("transformers.utils.import_utils", logging.WARNING, "", 0, "something else", None, None)
    assert quiet_filter.filter(other)
