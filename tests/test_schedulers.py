"""The torch-free numpy schedulers (dymos.runtime.schedulers) step for step against diffusers, on the real configs.

Each case builds the diffusers scheduler with ``from_config`` and the numpy one with ``scheduler_from_config`` from the
same dict, calls ``set_timesteps`` the way the pipeline does, then runs both through a full denoising loop with the
same pseudo denoiser and compares every intermediate sample.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import pytest
import torch
from diffusers.schedulers import scheduling_dpm_cogvideox

from dymos.runtime.schedulers import (
    SUPPORTED_SCHEDULERS,
    NumpyScheduler,
    calculate_shift,
    scheduler_from_config,
)

SHARED_CONFIGS = Path(__file__).resolve().parents[2] / "shared" / "configs"
REPO = Path(__file__).resolve().parents[1]

STEP_COUNTS = (1, 4, 10, 25)
# Timesteps and sigmas must be identical, except EulerDiscreteScheduler's: its schedule comes from torch float32
# sqrt/log (training sigmas sqrt((1 - a) / a), continuous timesteps 0.25 * log(sigma)), which torch 2.13's CPU kernels
# do not round correctly, so those may differ by an ulp (relative tolerances below; also for init_noise_sigma).
TIMESTEP_RTOL = 1e-6
SIGMA_RTOL = 1e-6
# Every intermediate sample of the loop (float32 latents), compared with assert_allclose(atol, rtol).
SAMPLE_ATOL = 1e-5
SAMPLE_RTOL = 1e-5
SHAPE = (1, 4, 3, 6, 6)  # (batch, channels, frames, height, width), as video latents


def _config_stems() -> list[Any]:
    if not SHARED_CONFIGS.is_dir():
        return [
            pytest.param(None, marks=pytest.mark.skip(reason=f"real checkpoint configs not found at {SHARED_CONFIGS}"))
        ]
    return sorted(p.stem for p in SHARED_CONFIGS.glob("*.json"))


def _entry(stem: str) -> dict:
    return json.loads((SHARED_CONFIGS / f"{stem}.json").read_text())


def _pipeline_set_timesteps(entry: dict, steps: int) -> dict[str, Any]:
    """The set_timesteps arguments the checkpoint's pipeline passes (diffusers 0.42.1)."""
    pipeline = entry["pipeline_class"]
    if pipeline == "LTXImageToVideoPipeline":
        cfg = entry["scheduler"]["config"]
        mu = calculate_shift(
            entry["sequence"]["self_attention_seq_len_at_defaults"],  # = latent frames * H' * W' (patch size 1)
            cfg.get("base_image_seq_len", 256),
            cfg.get("max_image_seq_len", 4096),
            cfg.get("base_shift", 0.5),
            cfg.get("max_shift", 1.15),
        )
        return {"sigmas": np.linspace(1.0, 1 / steps, steps), "mu": mu}
    if pipeline == "HunyuanVideoImageToVideoPipeline":
        return {"sigmas": np.linspace(1.0, 0.0, steps + 1)[:-1]}
    return {"num_inference_steps": steps}  # Wan, CogVideoX, SVD: set_timesteps(num_inference_steps, device=...)


def _denoiser(x: np.ndarray, step: int, pattern: np.ndarray) -> np.ndarray:
    """A deterministic stand-in for the model: depends on the input and on the step."""
    return np.float32(0.1) * x + np.float32(np.sin(step + 1.0)) * pattern


def _check_schedule(ref: Any, ours: NumpyScheduler) -> None:
    ref_t = ref.timesteps.numpy()
    assert ours.timesteps.shape == ref_t.shape
    assert ours.timesteps.dtype == ref_t.dtype
    ref_sigmas = getattr(ref, "sigmas", None)
    if isinstance(ref, diffusers.EulerDiscreteScheduler):
        np.testing.assert_allclose(ours.timesteps, ref_t, rtol=TIMESTEP_RTOL, atol=0)
        np.testing.assert_allclose(ours.sigmas, ref_sigmas.numpy(), rtol=SIGMA_RTOL, atol=0)
    else:
        np.testing.assert_array_equal(ours.timesteps, ref_t)
        if ref_sigmas is None:
            assert ours.sigmas is None
        else:
            np.testing.assert_array_equal(ours.sigmas, ref_sigmas.numpy())
    # FlowMatchEulerDiscreteScheduler has no init_noise_sigma: its pipelines start from unit noise.
    np.testing.assert_allclose(ours.init_noise_sigma, float(getattr(ref, "init_noise_sigma", 1.0)), rtol=SIGMA_RTOL)


def _run_and_compare(
    class_name: str,
    config: dict,
    set_kwargs: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> int:
    """Run both schedulers through the whole loop; returns how many steps were compared."""
    ref = getattr(diffusers, class_name).from_config(config)
    ours = scheduler_from_config(class_name, config)
    assert isinstance(ours, NumpyScheduler)
    steps = set_kwargs.pop("num_inference_steps", None)
    ref.set_timesteps(steps, **set_kwargs)
    ours.set_timesteps(steps, **set_kwargs)
    _check_schedule(ref, ours)

    dpm = class_name == "CogVideoXDPMScheduler"
    if dpm:  # diffusers draws the SDE noise with randn_tensor: feed it the numpy generator's stream instead
        torch_side = np.random.default_rng(1234)

        def fake_randn(shape: Any, generator: Any = None, device: Any = None, dtype: Any = None) -> torch.Tensor:
            return torch.from_numpy(torch_side.standard_normal(tuple(shape), dtype=np.float32))

        monkeypatch.setattr(scheduling_dpm_cogvideox, "randn_tensor", fake_randn)
    generator = np.random.default_rng(1234)

    rng = np.random.default_rng(0)
    x_ref = (rng.standard_normal(SHAPE) * ours.init_noise_sigma).astype(np.float32)
    x_ours = x_ref.copy()
    pattern = rng.standard_normal(SHAPE).astype(np.float32)
    old_x0 = None
    has_scale = hasattr(ref, "scale_model_input")
    for i, (t_ref, t_ours) in enumerate(zip(ref.timesteps, ours.timesteps)):
        in_ref = ref.scale_model_input(torch.from_numpy(x_ref), t_ref).numpy() if has_scale else x_ref
        in_ours = ours.scale_model_input(x_ours, t_ours)
        np.testing.assert_allclose(in_ours, in_ref, atol=SAMPLE_ATOL, rtol=SAMPLE_RTOL, err_msg=f"input, step {i}")
        out_ref = torch.from_numpy(_denoiser(in_ref, i, pattern))
        out_ours = _denoiser(in_ours, i, pattern)
        if dpm:
            t_back = ref.timesteps[i - 1] if i > 0 else None
            prev, old_x0 = ref.step(out_ref, old_x0, t_ref, t_back, torch.from_numpy(x_ref), return_dict=False)
        else:
            prev = ref.step(out_ref, t_ref, torch.from_numpy(x_ref), return_dict=False)[0]
        x_ref = prev.numpy()
        x_ours = ours.step(out_ours, t_ours, x_ours, generator=generator)
        assert x_ours.dtype == x_ref.dtype
        assert np.isfinite(x_ref).all(), f"diffusers itself is not finite at step {i}: not a meaningful comparison"
        np.testing.assert_allclose(x_ours, x_ref, atol=SAMPLE_ATOL, rtol=SAMPLE_RTOL, err_msg=f"sample, step {i}")
    return len(ref.timesteps)


@pytest.mark.parametrize("steps", STEP_COUNTS)
@pytest.mark.parametrize("stem", _config_stems())
def test_matches_diffusers_on_real_configs(stem: str, steps: int, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = _entry(stem)
    class_name, config = entry["scheduler"]["class"], entry["scheduler"]["config"]
    assert class_name in SUPPORTED_SCHEDULERS
    if config.get("shift_terminal") and steps == 1:
        # LTX with one step: sigmas [1.0] stretched by 1 - sigma[-1] = 0. diffusers gets NaN; the numpy one refuses.
        ref = getattr(diffusers, class_name).from_config(config)
        with np.errstate(divide="ignore", invalid="ignore"):
            ref.set_timesteps(**_pipeline_set_timesteps(entry, steps))
        assert torch.isnan(ref.sigmas[0])
        with pytest.raises(ValueError, match="not finite"):
            scheduler_from_config(class_name, config).set_timesteps(**_pipeline_set_timesteps(entry, steps))
        return
    assert _run_and_compare(class_name, config, _pipeline_set_timesteps(entry, steps), monkeypatch) == steps


def _alternative_params() -> list[Any]:
    """Other schedulers the same pipelines accept: CogVideoX's DPM twin, and Wan run on flow-matching Euler."""
    if not SHARED_CONFIGS.is_dir():
        return [pytest.param(None, None, None, marks=pytest.mark.skip(reason=f"no configs at {SHARED_CONFIGS}"))]
    params = []
    for stem in _config_stems():
        scheduler = _entry(stem)["scheduler"]
        class_name, config = scheduler["class"], scheduler["config"]
        if class_name == "CogVideoXDDIMScheduler":
            params.append(pytest.param(stem, "CogVideoXDPMScheduler", config, id=f"{stem}-dpm"))
        elif class_name == "UniPCMultistepScheduler":
            flow = {"shift": config["flow_shift"]}
            params.append(pytest.param(stem, "FlowMatchEulerDiscreteScheduler", flow, id=f"{stem}-flow-euler"))
    return params


@pytest.mark.parametrize("steps", STEP_COUNTS)
@pytest.mark.parametrize(("stem", "class_name", "config"), _alternative_params())
def test_matches_diffusers_on_alternative_schedulers(
    stem: str, class_name: str, config: dict, steps: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _run_and_compare(class_name, config, {"num_inference_steps": steps}, monkeypatch) == steps


def _steps(n: int) -> dict[str, Any]:
    return {"num_inference_steps": n}


# Options the shipped configs do not use but the numpy schedulers implement: each is checked the same way.
_UNIPC_WAN = {"prediction_type": "flow_prediction", "use_flow_sigmas": True, "flow_shift": 5.0}
_SVD_LIKE = {
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "prediction_type": "v_prediction",
    "timestep_type": "continuous",
    "use_karras_sigmas": True,
    "sigma_min": 0.002,
    "sigma_max": 700.0,
    "timestep_spacing": "leading",
    "steps_offset": 1,
}
EXTRA_CASES: dict[str, tuple[str, dict, Callable[[int], dict[str, Any]]]] = {
    "unipc-order3": ("UniPCMultistepScheduler", {**_UNIPC_WAN, "solver_order": 3}, _steps),
    "unipc-bh1-no-lower-final": (
        "UniPCMultistepScheduler",
        {**_UNIPC_WAN, "solver_type": "bh1", "lower_order_final": False, "final_sigmas_type": "sigma_min"},
        _steps,
    ),
    "unipc-sigma-min-no-corrector-1": (
        "UniPCMultistepScheduler",
        {**_UNIPC_WAN, "final_sigmas_type": "sigma_min", "disable_corrector": [1]},
        _steps,
    ),
    "unipc-dynamic-shift": (
        "UniPCMultistepScheduler",
        {**_UNIPC_WAN, "use_dynamic_shifting": True, "shift_terminal": 0.05},
        lambda n: {"num_inference_steps": n, "mu": 1.3},
    ),
    "unipc-order1-custom-sigmas": (
        "UniPCMultistepScheduler",
        {**_UNIPC_WAN, "solver_order": 1},
        lambda n: {"sigmas": np.linspace(1.0, 0.1, n)},
    ),
    "flow-invert": ("FlowMatchEulerDiscreteScheduler", {"shift": 3.0, "invert_sigmas": True}, _steps),
    "flow-linear-shift-terminal": (
        "FlowMatchEulerDiscreteScheduler",
        {"use_dynamic_shifting": True, "time_shift_type": "linear", "shift_terminal": 0.1},
        lambda n: {"num_inference_steps": n, "mu": 1.5},
    ),
    "flow-custom-timesteps": (
        "FlowMatchEulerDiscreteScheduler",
        {"shift": 5.0},
        lambda n: {"timesteps": np.linspace(1000.0, 100.0, n)},
    ),
    "flow-custom-sigmas-and-timesteps": (
        "FlowMatchEulerDiscreteScheduler",
        {"shift": 5.0},
        lambda n: {"sigmas": list(np.linspace(1.0, 0.2, n)), "timesteps": list(np.linspace(999.0, 9.0, n))},
    ),
    "euler-defaults": ("EulerDiscreteScheduler", {}, _steps),
    "euler-trailing-exponential": (
        "EulerDiscreteScheduler",
        {
            "beta_schedule": "scaled_linear",
            "timestep_spacing": "trailing",
            "use_exponential_sigmas": True,
            "prediction_type": "v_prediction",
        },
        _steps,
    ),
    "euler-cosine-sigma-min": (
        "EulerDiscreteScheduler",
        {"beta_schedule": "squaredcos_cap_v2", "final_sigmas_type": "sigma_min", "prediction_type": "sample"},
        _steps,
    ),
    "euler-svd-custom-sigmas": (
        "EulerDiscreteScheduler",
        _SVD_LIKE,
        lambda n: {"sigmas": [*np.geomspace(700.0, 0.002, n), 0.0]},
    ),
    "ddim-defaults": ("CogVideoXDDIMScheduler", {}, _steps),
    "ddim-linear-sample": (
        "CogVideoXDDIMScheduler",
        {
            "beta_schedule": "linear",
            "beta_start": 0.0001,
            "beta_end": 0.02,
            "timestep_spacing": "linspace",
            "prediction_type": "sample",
            "set_alpha_to_one": False,
        },
        _steps,
    ),
    # Not 'trailing' with this float32 schedule: at 7 steps its last step lands on t=0, where diffusers' float32
    # 1 - alphas_cumprod[0] (~1e-4) turns torch's not-correctly-rounded float32 sqrt (1 ulp) into a 2% difference.
    "dpm-cosine-zero-snr": (
        "CogVideoXDPMScheduler",
        {
            "beta_schedule": "squaredcos_cap_v2",
            "prediction_type": "v_prediction",
            "rescale_betas_zero_snr": True,
            "timestep_spacing": "linspace",
        },
        _steps,
    ),
    "dpm-trailing-epsilon": ("CogVideoXDPMScheduler", {"timestep_spacing": "trailing", "steps_offset": 1}, _steps),
}


@pytest.mark.parametrize("steps", (3, 7))
@pytest.mark.parametrize("case", sorted(EXTRA_CASES))
def test_matches_diffusers_on_other_options(case: str, steps: int, monkeypatch: pytest.MonkeyPatch) -> None:
    class_name, config, set_kwargs = EXTRA_CASES[case]
    _run_and_compare(class_name, config, set_kwargs(steps), monkeypatch)


def test_unknown_class_lists_the_supported_ones() -> None:
    with pytest.raises(ValueError, match="supported") as info:
        scheduler_from_config("DDPMScheduler", {})
    for name in SUPPORTED_SCHEDULERS:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("class_name", "config"),
    [
        ("UniPCMultistepScheduler", {}),  # epsilon on DDPM sigmas: not the flow configuration
        ("UniPCMultistepScheduler", {**_UNIPC_WAN, "use_karras_sigmas": True}),
        ("UniPCMultistepScheduler", {**_UNIPC_WAN, "thresholding": True}),
        ("UniPCMultistepScheduler", {**_UNIPC_WAN, "predict_x0": False}),
        ("UniPCMultistepScheduler", {**_UNIPC_WAN, "solver_type": "bh3"}),
        ("UniPCMultistepScheduler", {**_UNIPC_WAN, "lower_order_final": False}),  # NaN at the last step in diffusers
        ("FlowMatchEulerDiscreteScheduler", {"stochastic_sampling": True}),
        ("FlowMatchEulerDiscreteScheduler", {"use_beta_sigmas": True}),
        ("EulerDiscreteScheduler", {"interpolation_type": "log_linear"}),
        ("EulerDiscreteScheduler", {"rescale_betas_zero_snr": True}),
        ("EulerDiscreteScheduler", {"beta_schedule": "cosine"}),
        ("CogVideoXDDIMScheduler", {"prediction_type": "flow_prediction"}),
        ("CogVideoXDPMScheduler", {"timestep_spacing": "karras"}),
    ],
)
def test_unsupported_options_are_rejected(class_name: str, config: dict) -> None:
    with pytest.raises(ValueError):
        scheduler_from_config(class_name, config)


def test_unknown_keys_are_ignored_like_from_config() -> None:
    scheduler = scheduler_from_config("EulerDiscreteScheduler", {"_class_name": "X", "clip_sample": False})
    assert scheduler.ignored_config_keys == ("clip_sample",)


def test_flow_euler_rejects_an_integer_index_as_timestep() -> None:
    scheduler = scheduler_from_config("FlowMatchEulerDiscreteScheduler", {"shift": 7.0})
    scheduler.set_timesteps(4)
    x = np.zeros(SHAPE, dtype=np.float32)
    with pytest.raises(ValueError, match="integer"):
        scheduler.step(x, 0, x)


def test_step_before_set_timesteps_is_an_error() -> None:
    scheduler = scheduler_from_config("CogVideoXDDIMScheduler", {})
    x = np.zeros(SHAPE, dtype=np.float32)
    with pytest.raises(ValueError, match="set_timesteps"):
        scheduler.step(x, 999, x)


def test_import_is_torch_free() -> None:
    code = (
        "import sys; import dymos.runtime.schedulers; "
        "assert 'torch' not in sys.modules, 'torch'; assert 'diffusers' not in sys.modules, 'diffusers'"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
