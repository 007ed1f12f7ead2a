"""DyMoS on a CUDA GPU with PyTorch's own CUDA attention kernels (flash, memory-efficient, cuDNN, math).

The CPU suite proves the strategies exact with CPU kernels; a GPU user runs other kernels, so this module repeats
the exactness claims there: strength 0 is the stock model bit for bit (fp32 and bf16), every strategy matches the
naive reference in fp32 within the same 1e-5 as on CPU, in bf16 it adds no more error than bf16 itself gives the
stock model, the fold strategy runs where only flash attention is allowed (the reason it exists), and an
AOTInductor package compiled for CUDA keeps the strength a live input. Marked ``gpu`` (``make test-gpu``); skipped
with a reason where no CUDA device is present.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

import dymos
from dymos.attention import EAGER_STRATEGIES, STRATEGIES, resolve_strategy
from dymos.tiny import TINY_CASES, TinyCase
from tests.conftest import FP32_ATOL

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU (torch.cuda.is_available() is False)"),
]

CUDA = "cuda"
ROOT = Path(__file__).resolve().parents[1]
STRENGTHS: tuple[Any, ...] = (0.5, 2.0, -1.0, [0.0, 0.5, 2.0, -1.0])  # each alone, then one mixed batch
BATCH = 4
ALL_STRATEGIES = (*STRATEGIES, *EAGER_STRATEGIES)
# bf16 bound: the DyMoS output in bf16 may differ from the fp32 naive reference by at most this multiple of the
# stock model's own bf16-vs-fp32 difference on the same inputs (bf16 rounding, not the method, sets the scale).
BF16_ERROR_FACTOR = 2.0


@pytest.fixture(autouse=True)
def _ieee_fp32() -> Iterator[None]:
    """fp32 means fp32 here: no TF32 in matmuls or convolutions (the defaults may differ per build)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _on_gpu(case: TinyCase, dtype: torch.dtype, config: dict | None = None) -> tuple[torch.nn.Module, dict]:
    """The tiny model and its seeded inputs on the GPU; floating inputs in ``dtype`` except the timestep."""
    if config is not None:
        case = TinyCase(case.name, case.class_name, case.family, config)
    model = case.build().to(CUDA, dtype)
    inputs = {
        name: (
            value.to(CUDA, dtype)
            if isinstance(value, torch.Tensor) and value.is_floating_point() and name != "timestep"
            else value.to(CUDA)
            if isinstance(value, torch.Tensor)
            else value
        )
        for name, value in case.inputs(batch=BATCH).items()
    }
    return model, inputs


def _run(model: torch.nn.Module, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs)[0]


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def test_cuda_auto_is_merge_in_eager() -> None:
    q = torch.zeros(1, 1, 4, 8, device=CUDA)
    assert resolve_strategy("auto", q) == "merge"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_cuda_strength_zero_is_the_stock_model_bit_for_bit(case_name: str, strategy: str, dtype: torch.dtype) -> None:
    model, inputs = _on_gpu(TINY_CASES[case_name], dtype)
    stock = _run(model, inputs)
    with dymos.patch(model, 0.0, strategy=strategy) as handle:
        assert torch.equal(_run(model, inputs), stock)
        handle.strength = [0.0] * BATCH
        assert torch.equal(_run(model, inputs), stock)
        handle.strength = 1.0
        assert not torch.equal(_run(model, inputs), stock)
    assert torch.equal(_run(model, inputs), stock)


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_cuda_strategies_match_the_naive_reference_in_fp32(case_name: str, strategy: str) -> None:
    model, inputs = _on_gpu(TINY_CASES[case_name], torch.float32)
    for s in STRENGTHS:
        with dymos.patch(model, s, strategy="naive"):
            reference = _run(model, inputs)
        with dymos.patch(model, s, strategy=strategy):
            out = _run(model, inputs)
        torch.testing.assert_close(out, reference, atol=FP32_ATOL, rtol=0)


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_cuda_bf16_adds_no_error_beyond_bf16s_own(case_name: str, strategy: str) -> None:
    case = TINY_CASES[case_name]
    model32, inputs32 = _on_gpu(case, torch.float32)
    model16, inputs16 = _on_gpu(case, torch.bfloat16)
    stock_err = _max_err(_run(model16, inputs16), _run(model32, inputs32))
    assert stock_err > 0  # bf16 really ran
    for s in STRENGTHS:
        with dymos.patch(model32, s, strategy="naive"):
            reference = _run(model32, inputs32)
        with dymos.patch(model16, s, strategy=strategy):
            err = _max_err(_run(model16, inputs16), reference)
        assert err <= BF16_ERROR_FACTOR * stock_err, (
            f"{case_name}/{strategy} at strength {s}: bf16 error {err:.3e} > {BF16_ERROR_FACTOR} x stock's "
            f"{stock_err:.3e}"
        )


@pytest.mark.parametrize("name", ["wan21", "wan22"])
def test_cuda_fold_and_merge_run_on_flash_attention_alone(name: str) -> None:
    """Flash attention takes no mask: only the fold strategy (bias folded into one padded q/k channel) runs there.

    The ``merge`` strategy calls the flash kernel itself. The tiny Wan's head dim (12) is raised to 16 so that the
    stock model itself is flash-eligible (a multiple of 8).
    """
    case = TINY_CASES[name]
    heads = case.config["num_attention_heads"]
    config = {**case.config, "attention_head_dim": 16}
    if config["added_kv_proj_dim"] is not None:  # Wan 2.1's image-context projections take the model width
        config["added_kv_proj_dim"] = heads * 16
    model16, inputs16 = _on_gpu(case, torch.bfloat16, config)
    model32, inputs32 = _on_gpu(case, torch.float32, config)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        stock = _run(model16, inputs16)
    stock_err = _max_err(stock, _run(model32, inputs32))
    for s in STRENGTHS:
        with dymos.patch(model32, s, strategy="naive"):
            reference = _run(model32, inputs32)
        for strategy, options in (("fold", {"fold_pad_to": 8}), ("merge", {})):
            with dymos.patch(model16, s, strategy=strategy, **options), sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                err = _max_err(_run(model16, inputs16), reference)
            assert err <= BF16_ERROR_FACTOR * stock_err, (
                f"{strategy} at strength {s}: {err:.3e} vs stock's bf16 error {stock_err:.3e}"
            )
    with dymos.patch(model16, 2.0, strategy="mask"), sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        with pytest.raises(RuntimeError, match="No available kernel"):
            _run(model16, inputs16)


def aoti_roundtrip(directory: str) -> None:
    """torch.export on the GPU, AOTInductor compiled for CUDA, loaded back and compared with eager on the export's
    parity cases (s = 0, 1.5, a mixed batch, another batch and frame count) within the fp32 export tolerance."""
    from dymos.export import pt2
    from dymos.export.build import default_strategy, parity_cases
    from dymos.export.onnx_export import export_program
    from dymos.export.specs import build_spec
    from dymos.export.wrapper import StrengthInputDenoiser

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    case = TINY_CASES["wan22"]
    spec = build_spec(case.family, case.config, batch=2)
    cases = parity_cases(spec, case.config, height=None, width=None, dtype=torch.float32, seed=0)
    for c in cases:
        c.inputs.update({k: v.to(CUDA) for k, v in c.inputs.items()})
    wrapper = StrengthInputDenoiser(case.build().to(CUDA), spec, strategy=default_strategy(20)).eval()
    sample = next(c for c in cases if c.name == "mixed_batch")
    program = export_program(wrapper, spec, list(sample.inputs.values()))
    tensors = {**program.state_dict, **program.constants}
    off_gpu = sorted(n for n, t in tensors.items() if isinstance(t, torch.Tensor) and t.device.type != "cuda")
    assert not off_gpu, f"the CUDA program holds tensors elsewhere: {off_gpu}"
    path = Path(directory) / pt2.artifact_name("aoti")
    pt2.compile_aoti(program, path)
    print("compiled", path.stat().st_size, "bytes", flush=True)
    report = pt2.check_parity("aoti", pt2.load_aoti(path), wrapper, cases, "fp32")
    assert report["passed"] and {c["name"] for c in report["cases"]} >= {"strength_0", "mixed_batch"}


def test_cuda_aotinductor_package_keeps_the_strength_live(tmp_path: Path) -> None:
    """:func:`aoti_roundtrip` in a child process, so that a crash in the package loader fails this test instead of
    ending the whole GPU run (seen once: torch 2.11+cu130's ``aoti_load_package`` segfaulted on an H200)."""
    script = f"from tests.test_cuda import aoti_roundtrip; aoti_roundtrip({str(tmp_path)!r})"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
    assert done.returncode == 0, f"AOTInductor round trip failed ({how}):\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}"
