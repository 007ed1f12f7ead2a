"""Shared fixtures: tiny random-weight models of every family, built from configs of the real diffusers classes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dymos.tiny import TINY_CASES

SHARED_CONFIGS = Path(__file__).resolve().parents[2] / "shared" / "configs"

# fp32 tolerance of every exact strategy against the naive explicit-softmax reference (DESIGN.md §3).
FP32_ATOL = 1e-5


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def shared_configs() -> dict[str, dict]:
    if not SHARED_CONFIGS.is_dir():
        pytest.skip(f"real checkpoint configs not found at {SHARED_CONFIGS} (shared/ beside the repo)")
    return {p.stem: json.loads(p.read_text()) for p in SHARED_CONFIGS.glob("*.json")}


@pytest.fixture(params=sorted(TINY_CASES))
def case_name(request: pytest.FixtureRequest) -> str:
    return request.param
