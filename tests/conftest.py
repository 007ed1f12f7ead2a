"""Shared fixtures: tiny random-weight models of every family, built from configs of the real diffusers classes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from dymos.tiny import TINY_CASES

SHARED_CONFIGS = Path(__file__).resolve().parents[2] / "shared" / "configs"

# fp32 tolerance of every exact strategy against the naive explicit-softmax reference (README, *Strategies*).
FP32_ATOL = 1e-5


# `make test` runs TEST_WORKERS pytest-xdist workers (default 2, one per core of this project's machines): torch's
# threads are split between them, so workers do not oversubscribe the CPU with torch threads
XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(max(1, torch.get_num_threads() // XDIST_WORKERS))  # torch's default: the physical cores


class SharedExports:
    """``dymos export`` of a model spec, once per test session however many xdist workers ask: the exports are the
    suite's expensive part. The first worker to ask exports under a file lock into a folder all workers share; the
    others wait on the lock and reuse the finished folder (``run_export`` moves it into place only once validated).
    A failed export is not cached: the next asker tries again and fails the same way. Tests copy an export before
    changing it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def get(self, model: str) -> Path:
        from dymos.export.build import ExportOptions, run_export

        options = ExportOptions(model=model, out=self.root)
        target = options.target_dir()  # one folder per spec; concurrent exports of others stage beside it
        with FileLock(f"{target}.lock"):
            if (target / "manifest.json").is_file():
                return target
            return run_export(options, log=lambda line: None).directory


@pytest.fixture(scope="session")
def shared_exports(tmp_path_factory: pytest.TempPathFactory) -> SharedExports:
    base = tmp_path_factory.getbasetemp()
    # under xdist each worker's basetemp is <session basetemp>/popen-gwN: the parent is the session's, shared
    return SharedExports((base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / "shared-exports")


@pytest.fixture(scope="session")
def shared_configs() -> dict[str, dict]:
    if not SHARED_CONFIGS.is_dir():
        pytest.skip(f"real checkpoint configs not found at {SHARED_CONFIGS} (shared/ beside the repo)")
    return {p.stem: json.loads(p.read_text()) for p in SHARED_CONFIGS.glob("*.json")}


@pytest.fixture(params=sorted(TINY_CASES))
def case_name(request: pytest.FixtureRequest) -> str:
    return request.param
