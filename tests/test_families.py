"""DyMoS on tiny random-weight models of every supported family (the real diffusers classes)."""

from __future__ import annotations

import itertools

import pytest
import torch

import dymos
from dymos.attention import EAGER_STRATEGIES, STRATEGIES
from dymos.layouts import UnsupportedModelError
from dymos.probe import attention_mass
from dymos.tiny import TINY_CASES
from tests.conftest import FP32_ATOL

STRENGTHS = (0.0, 0.5, 2.0, -1.0)


def _run(model: torch.nn.Module, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs)[0]


@pytest.fixture
def model_and_inputs(case_name: str) -> tuple[torch.nn.Module, dict]:
    case = TINY_CASES[case_name]
    return case.build(), case.inputs(batch=len(STRENGTHS))


@pytest.mark.parametrize("strategy", (*STRATEGIES, *EAGER_STRATEGIES))
def test_strength_zero_is_the_stock_model_bit_for_bit(model_and_inputs, strategy: str) -> None:
    model, inputs = model_and_inputs
    stock = _run(model, inputs)
    originals = {name: m.processor for name, m in model.named_modules() if hasattr(m, "processor")}
    with dymos.patch(model, 0.0, strategy=strategy) as handle:
        assert torch.equal(_run(model, inputs), stock)
        handle.strength = [0.0] * len(STRENGTHS)
        assert torch.equal(_run(model, inputs), stock)
        handle.strength = 1.0
        assert not torch.equal(_run(model, inputs), stock)
    # removed: the very same processor objects are back and the output is stock again
    assert all(m.processor is originals[name] for name, m in model.named_modules() if hasattr(m, "processor"))
    assert torch.equal(_run(model, inputs), stock)


@pytest.mark.parametrize("strategy", (*STRATEGIES, *EAGER_STRATEGIES))
def test_strategies_match_the_naive_reference(model_and_inputs, strategy: str) -> None:
    model, inputs = model_and_inputs
    for s in (*STRENGTHS, STRENGTHS):  # each strength alone, then one mixed batch
        with dymos.patch(model, s, strategy="naive"):
            reference = _run(model, inputs)
        with dymos.patch(model, s, strategy=strategy):
            out = _run(model, inputs)
        torch.testing.assert_close(out, reference, atol=FP32_ATOL, rtol=0)


def test_mixed_batch_items_equal_their_single_item_runs(case_name: str) -> None:
    case = TINY_CASES[case_name]
    model = case.build()
    inputs = case.inputs(batch=len(STRENGTHS))
    with dymos.patch(model, STRENGTHS) as handle:
        batched = _run(model, inputs)
        for i, s in enumerate(STRENGTHS):
            handle.strength = s
            single_inputs = {
                k: v[i : i + 1] if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == len(STRENGTHS) else v
                for k, v in inputs.items()
            }
            torch.testing.assert_close(batched[i : i + 1], _run(model, single_inputs), atol=FP32_ATOL, rtol=0)


def test_attention_mass_to_reference_keys_decreases_with_strength(case_name: str) -> None:
    case = TINY_CASES[case_name]
    strengths = [-1.0, 0.0, 0.5, 1.0, 2.0, 4.0]
    report = attention_mass(case.build(), case.inputs(batch=2), strengths)
    for layer in report.layers:
        masses = [report.per_layer[s][layer] for s in strengths]
        assert all(a > b for a, b in itertools.pairwise(masses)), (layer, masses)


def test_layer_selection(case_name: str) -> None:
    case = TINY_CASES[case_name]
    model, inputs = case.build(), case.inputs(batch=1)
    stock = _run(model, inputs)
    with dymos.patch(model, 2.0) as all_layers:
        out_all = _run(model, inputs)
        names = all_layers.layers
    with dymos.patch(model, 2.0, layers=[0]) as first:
        assert first.layers == names[:1]
        out_first = _run(model, inputs)
    with dymos.patch(model, 2.0, layers=[names[-1]]) as by_name:
        assert by_name.layers == names[-1:]
    assert not torch.equal(out_first, stock)
    assert not torch.equal(out_first, out_all) or len(names) == 1


def test_patching_touches_no_weights() -> None:
    model = TINY_CASES["wan21"].build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with dymos.patch(model, 3.0):
        _run(model, TINY_CASES["wan21"].inputs())
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


# -- bad input ---------------------------------------------------------------------------------------------------


def test_unsupported_model_lists_supported_classes() -> None:
    with pytest.raises(UnsupportedModelError, match="WanTransformer3DModel") as err:
        dymos.patch(torch.nn.Linear(2, 2), 1.0)
    assert "Linear" in str(err.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), [1.0, float("-inf")]])
def test_non_finite_strength_is_rejected(bad) -> None:
    model = TINY_CASES["wan22"].build()
    with pytest.raises(ValueError, match="finite"):
        dymos.patch(model, bad)
    handle = dymos.patch(model, 1.0)
    with pytest.raises(ValueError, match="finite"):
        handle.strength = bad
    assert handle.strength == (1.0,)  # the knob keeps its last good value
    handle.remove()


def test_strength_vector_must_match_the_batch() -> None:
    case = TINY_CASES["wan22"]
    model = case.build()
    with dymos.patch(model, [1.0, 2.0, 3.0]), pytest.raises(ValueError, match="3 values but the denoiser batch is 2"):
        _run(model, case.inputs(batch=2))


@pytest.mark.parametrize("layers", [[7], [-9], ["blocks.9.attn1"], ["blocks.0.attn2"]])
def test_missing_layer_is_an_error(layers) -> None:
    model = TINY_CASES["wan22"].build()
    with pytest.raises(ValueError, match="does not exist"):
        dymos.patch(model, 1.0, layers=layers)
    assert all(type(m.processor).__name__ != "DyMoSAttnProcessor" for m in model.modules() if hasattr(m, "processor"))


def test_unknown_strategy_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown DyMoS strategy"):
        dymos.patch(TINY_CASES["wan22"].build(), 1.0, strategy="flash")
