"""The benchmark tools run end to end and report what the README quotes (numbers are not asserted: this machine
is noisy, and performance is measured by `make bench`, not by tests)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_runtime_reports_every_thread_setup(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        str(ROOT / "tools" / "bench_runtime.py"),
        "--model",
        "tiny-pipeline:wan22",
        "--steps",
        "3",
        "--fraction",
        "0.34",
        "--repeats",
        "1",
        "--json",
        str(out),
    ]
    run = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "onnxruntime threads: shared" in run.stdout and "onnxruntime threads: per-session" in run.stdout
    rows = json.loads(out.read_text())
    assert rows["threading"] == "shared" and set(rows["thread_setups"]) == {"shared", "per-session"}
    for setup in rows["thread_setups"].values():
        for key in ("dymos_vs_strength0", "runtime_vs_diffusers", "runtime_overhead_share_of_step"):
            assert math.isfinite(setup[key]) and setup[key] > 0
