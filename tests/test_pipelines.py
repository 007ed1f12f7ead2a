"""The diffusers-pipeline drop-in on every supported pipeline class, with tiny offline components."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dymos
from dymos.layouts import UnsupportedModelError
from tests.tiny_pipelines import PIPELINE_CASES, build_pipeline, call_kwargs, denoiser_attr_names


def _output(pipe, case: str, **extra) -> np.ndarray:
    result = pipe(**call_kwargs(case), **extra)
    frames = result.frames if hasattr(result, "frames") else result[0]
    return np.asarray(frames if not isinstance(frames, torch.Tensor) else frames.numpy())


def _processors(pipe, case: str) -> dict[str, object]:
    return {
        f"{attr}.{name}": module.processor
        for attr in denoiser_attr_names(case)
        for name, module in getattr(pipe, attr).named_modules()
        if hasattr(module, "processor")
    }


@pytest.mark.parametrize("case", PIPELINE_CASES)
def test_pipeline_drop_in(case: str) -> None:
    pipe = build_pipeline(case)
    originals = _processors(pipe, case)
    stock = _output(pipe, case)

    with dymos.enable(pipe, strength=0.0, first_steps=2):
        zero = _output(pipe, case)
    np.testing.assert_array_equal(zero, stock)  # strength 0: the stock pipeline, bit for bit

    handle = dymos.enable(pipe, strength=3.0, first_steps=2)
    seen_steps = []
    for denoiser in handle.denoisers:
        denoiser.observers.append(lambda *a, h=handle: seen_steps.append(h.last_step))
    moved = _output(pipe, case)
    handle.disable()
    assert not np.array_equal(moved, stock)
    assert np.isfinite(moved).all()
    assert seen_steps and set(seen_steps) <= {0, 1}, "DyMoS must act in the first two steps only"

    after = _processors(pipe, case)
    assert after.keys() == originals.keys() and all(after[k] is originals[k] for k in originals)
    np.testing.assert_array_equal(_output(pipe, case), stock)


def test_schedule_fraction_and_curve_choose_the_steps() -> None:
    case = "wan22"
    pipe = build_pipeline(case)
    for kwargs, expected in (({"fraction": 0.5}, {0, 1}), ({"curve": [0.0, 0.0, 1.0]}, {2})):
        handle = dymos.enable(pipe, strength=2.0, **kwargs)
        steps = set()
        for denoiser in handle.denoisers:
            denoiser.observers.append(lambda *a, h=handle, seen=steps: seen.add(h.last_step))
        _output(pipe, case)
        handle.disable()
        assert steps == expected, kwargs


def test_enable_rejects_a_pipeline_without_a_supported_denoiser() -> None:
    class NotAPipeline:
        transformer = torch.nn.Linear(2, 2)

    with pytest.raises(UnsupportedModelError, match="supported denoiser classes"):
        dymos.enable(NotAPipeline(), strength=1.0)
    with pytest.raises(UnsupportedModelError, match="no denoiser attribute"):
        dymos.enable(object(), strength=1.0)
