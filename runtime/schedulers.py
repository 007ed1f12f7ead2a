"""Torch-free numpy schedulers that step exactly like the diffusers schedulers the supported pipelines ship.

The runtime denoises without torch, so it cannot use diffusers' schedulers. These classes re-derive their math from
diffusers 0.42.1 and are built from the same config dicts (a checkpoint's ``scheduler_config.json``):

* ``UniPCMultistepScheduler`` on flow sigmas (Wan 2.1 / 2.2),
* ``FlowMatchEulerDiscreteScheduler`` (HunyuanVideo, LTX-Video, optionally Wan),
* ``CogVideoXDDIMScheduler`` and ``CogVideoXDPMScheduler`` (CogVideoX / CogVideoX 1.5),
* ``EulerDiscreteScheduler`` as Stable Video Diffusion configures it.

Precision follows diffusers: schedules are built in the dtype diffusers builds them in (float32, or float64 where
diffusers uses float64), and a schedule scalar that multiplies an array is first cast to that array's dtype, as torch
does with a 0-d tensor. torch.linspace and torch.cumprod are reproduced bit for bit. float32 sqrt/log/expm1 are
correctly rounded here, while torch 2.13's CPU kernels are not always, so those values (and what depends on them:
UniPC's coefficients, the Euler schedule) may differ by an ulp; everything else matches diffusers bit for bit.
Config options this module does not implement raise ``ValueError`` instead of being approximated; keys a diffusers
class does not know are ignored, as ``from_config`` ignores them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

__all__ = ["SUPPORTED_SCHEDULERS", "NumpyScheduler", "calculate_shift", "scheduler_from_config"]


@runtime_checkable
class NumpyScheduler(Protocol):
    """What a denoising loop needs from a scheduler: the diffusers calls, minus torch."""

    timesteps: np.ndarray  # what the pipeline passes to the denoiser each step
    sigmas: np.ndarray | None
    init_noise_sigma: float

    def set_timesteps(self, num_inference_steps: int | None = None, **kwargs: Any) -> None: ...

    def scale_model_input(self, sample: np.ndarray, timestep: Any) -> np.ndarray: ...

    def step(
        self,
        model_output: np.ndarray,
        timestep: Any,
        sample: np.ndarray,
        generator: np.random.Generator | None = None,
    ) -> np.ndarray: ...


def calculate_shift(
    image_seq_len: int,
    base_seq_len: int = 256,
    max_seq_len: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    """The ``mu`` LTX's pipelines pass to ``set_timesteps``: a line through (base_seq_len, base_shift), (max, max)."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    b = base_shift - m * base_seq_len
    return image_seq_len * m + b


# ----------------------------------------------------------------------------------------------------------------
# helpers that reproduce torch's CPU arithmetic where diffusers builds a schedule with torch


def _round_to(value: Fraction, dtype: np.dtype) -> np.floating:
    """Round an exact rational once, to nearest, into ``dtype`` (float32 must not go through a float64 rounding)."""
    nearest = float(value)  # correctly rounded to float64
    if dtype == np.float64 or Fraction(nearest) == value:
        return dtype.type(nearest)
    # Not a double, so not a float32 tie either: take the float32 neighbour closer to the exact value.
    first = dtype.type(nearest)
    toward = math.inf if value > Fraction(float(first)) else -math.inf
    second = np.nextafter(first, dtype.type(toward))
    return min((first, second), key=lambda c: abs(Fraction(float(c)) - value))


def _torch_linspace(start: float, end: float, steps: int, dtype: type[np.floating]) -> np.ndarray:
    """``torch.linspace`` as its CPU kernel computes it (diffusers builds beta schedules with it).

    The kernel returns ``start + step * i`` for the first half and ``end - step * (steps - 1 - i)`` for the second,
    each compiled to a fused multiply-add (checked bit for bit against torch 2.13's x86-64 AVX-512 kernel, float32
    and float64); ``np.linspace`` rounds about a third of the entries differently. Exact rationals emulate the fused
    operations. A build without FMA would differ from this by at most an ulp per beta.
    """
    dt = np.dtype(dtype)
    if steps == 1:
        return np.array([start], dtype=dt)
    lo, hi = dt.type(start), dt.type(end)
    step = (hi - lo) / dt.type(steps - 1)
    lo_q, hi_q, step_q = Fraction(float(lo)), Fraction(float(hi)), Fraction(float(step))
    half = steps // 2
    exact = [lo_q + step_q * i if i < half else hi_q - step_q * (steps - 1 - i) for i in range(steps)]
    return np.array([_round_to(v, dt) for v in exact], dtype=dt)


def _torch_cumprod(x: np.ndarray) -> np.ndarray:
    """``torch.cumprod`` on CPU: float32 input accumulates in float64, each partial product rounded to float32."""
    if x.dtype == np.float32:
        return np.cumprod(x.astype(np.float64)).astype(np.float32)
    return np.cumprod(x)


def _cosine_betas(num_train_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    """diffusers' ``betas_for_alpha_bar`` with the cosine transform (``squaredcos_cap_v2``), float32."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / num_train_timesteps) / alpha_bar(i / num_train_timesteps), max_beta)
        for i in range(num_train_timesteps)
    ]
    return np.array(betas, dtype=np.float32)


def _betas(config: Mapping[str, Any], scaled_linear_dtype: type[np.floating]) -> np.ndarray:
    """The training betas, in the dtype the diffusers class builds them in."""
    n = config["num_train_timesteps"]
    if config["trained_betas"] is not None:
        return np.asarray(config["trained_betas"], dtype=np.float32)
    schedule = config["beta_schedule"]
    if schedule == "linear":
        return _torch_linspace(config["beta_start"], config["beta_end"], n, np.float32)
    if schedule == "scaled_linear":
        roots = _torch_linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, n, scaled_linear_dtype)
        return roots * roots
    if schedule == "squaredcos_cap_v2":
        return _cosine_betas(n)
    raise ValueError(f"beta_schedule={schedule!r} is not supported (linear, scaled_linear, squaredcos_cap_v2)")


def _log32(x: np.floating | np.ndarray) -> np.float32 | np.ndarray:
    """float32 log of schedule values, correctly rounded (torch's float32 log may be an ulp off)."""
    with np.errstate(divide="ignore"):
        logs = np.log(np.asarray(x, dtype=np.float64)).astype(np.float32)
    return logs[()] if logs.ndim == 0 else logs


def _expm1_32(x: np.floating | np.ndarray) -> np.float32 | np.ndarray:
    """float32 expm1 of schedule values, correctly rounded (torch's may be an ulp off)."""
    values = np.expm1(np.asarray(x, dtype=np.float64)).astype(np.float32)
    return values[()] if values.ndim == 0 else values


def _like(value: Any, array: np.ndarray) -> np.generic:
    """A schedule scalar cast to ``array``'s dtype, as torch casts a 0-d tensor that multiplies a tensor."""
    return array.dtype.type(value)


def _as_array(x: Any, name: str) -> np.ndarray:
    array = np.asarray(x)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {array.dtype}")
    return array


def _timestep_scalar(timestep: Any) -> np.generic:
    array = np.asarray(timestep)
    if array.size != 1:
        raise ValueError(f"timestep must be a single value, got shape {array.shape}")
    return array.reshape(())[()]


def _index_of(timesteps: np.ndarray, timestep: Any, *, missing: int | None) -> int:
    """diffusers' ``index_for_timestep``: the second match if the value repeats (so a restart in img2img lands right),
    ``missing`` (or an error) if it is absent."""
    matches = np.flatnonzero(timesteps == _timestep_scalar(timestep))
    if len(matches) == 0:
        if missing is None:
            raise ValueError(f"timestep {timestep!r} is not one of this scheduler's timesteps")
        return missing
    return int(matches[1] if len(matches) > 1 else matches[0])


def _finite(sigmas: np.ndarray, name: str) -> np.ndarray:
    """Fail where diffusers would silently produce NaN sigmas (and NaN latents)."""
    if not np.all(np.isfinite(sigmas)):
        raise ValueError(
            f"{name}: the sigma schedule is not finite ({sigmas.tolist()}); e.g. shift_terminal stretches by "
            "1 - sigma[-1], which is 0 for a single step starting at sigma 1 (diffusers returns NaN there)"
        )
    return sigmas


def _reject_integer_timestep(timestep: Any, name: str) -> None:
    if np.issubdtype(np.asarray(timestep).dtype, np.integer):
        raise ValueError(
            f"{name}.step() takes one of scheduler.timesteps, not an integer index (e.g. from enumerate(timesteps))"
        )


# ----------------------------------------------------------------------------------------------------------------
# config handling


def _resolve_config(name: str, defaults: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[dict, tuple]:
    """Defaults overlaid with the keys the diffusers class knows; the rest is returned as ignored (as from_config)."""
    if not isinstance(config, Mapping):
        raise TypeError(f"{name} config must be a mapping, got {type(config).__name__}")
    resolved = dict(defaults)
    ignored = []
    for key, value in config.items():
        if key in defaults:
            resolved[key] = value
        elif not key.startswith("_"):
            ignored.append(key)
    return resolved, tuple(sorted(ignored))


def _allowed(value: Any, allowed: Any) -> bool:
    """Config equality as diffusers reads it: flags by truthiness, None by identity, the rest by ==."""
    if isinstance(allowed, bool):
        return isinstance(value, (bool, int, np.bool_)) and bool(value) is allowed
    if allowed is None:
        return value is None
    return not isinstance(value, bool) and value == allowed


def _require(name: str, config: Mapping[str, Any], key: str, allowed: Sequence[Any], why: str = "") -> None:
    """Raise instead of approximating when a config value selects a code path this module does not implement."""
    value = config[key]
    if not any(_allowed(value, a) for a in allowed):
        raise ValueError(
            f"{name}: {key}={value!r} is not supported by the numpy scheduler (supported: "
            f"{', '.join(repr(a) for a in allowed)}){'; ' + why if why else ''}"
        )


class _Scheduler:
    """Config resolution shared by every scheduler; subclasses list diffusers' ``__init__`` defaults."""

    name: ClassVar[str]
    _DEFAULTS: ClassVar[dict[str, Any]]
    order: ClassVar[int] = 1  # pipelines use scheduler.order for their warm-up step count; 1 for all of these
    init_noise_sigma: float = 1.0  # the initial latents are unit Gaussian noise times this

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config, self.ignored_config_keys = _resolve_config(self.name, self._DEFAULTS, config)
        self.num_inference_steps: int | None = None
        self.timesteps = np.zeros(0, dtype=np.float32)
        self.sigmas: np.ndarray | None = None

    def scale_model_input(self, sample: np.ndarray, timestep: Any = None) -> np.ndarray:
        """Identity: only the Euler (EDM-style) scheduler preconditions the denoiser input."""
        return sample

    def _check_ready(self) -> None:
        if self.num_inference_steps is None:
            raise ValueError(f"{self.name}: call set_timesteps() before step()")

    def _index(self, timestep: Any, missing: int | None = None) -> int:
        """The current step index, found from ``timestep`` on first use (as diffusers' ``_init_step_index``)."""
        if self._step_index is None:
            self._step_index = _index_of(self.timesteps, timestep, missing=missing)
        return self._step_index

    def _step_arrays(
        self, model_output: Any, sample: Any, timestep: Any, *, float_timestep: bool = False, float32: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The preamble every ``step`` shares: ready check, numpy arrays, and (sigma-indexed schedulers) a
        float timestep; ``float32`` computes the sample in float32 as diffusers does there."""
        self._check_ready()
        if float_timestep:
            _reject_integer_timestep(timestep, self.name)
        model_output = _as_array(model_output, "model_output")
        sample = _as_array(sample, "sample")
        return model_output, sample.astype(np.float32) if float32 else sample


# ----------------------------------------------------------------------------------------------------------------
# UniPC on flow sigmas (Wan)


@dataclass(frozen=True)
class _UpdateTerms:
    """The scalars of UniPC updates at one order, indexed by the step ``s0`` they start from: the rk ratios, the
    weights of ``x`` (sigma_t / sigma_s0), of the newest output (alpha_t * h * phi_1) and of the correction
    (alpha_t * B(h)), and the predictor's and corrector's rho coefficients (a row per s0, or the solve's error)."""

    rks: list[list[np.float32]]
    sample_weight: np.ndarray
    output_weight: np.ndarray
    correction_weight: np.ndarray
    predictor_rhos: np.ndarray | list[np.ndarray | Exception] | None  # None at order 1: no history term
    corrector_rhos: np.ndarray | list[np.ndarray | Exception]


def _solve_rows(matrices: np.ndarray, vectors: np.ndarray) -> list[np.ndarray | Exception]:
    """``np.linalg.solve`` row by row, as diffusers solves each step's system; a singular one keeps its error."""
    solved: list[np.ndarray | Exception] = []
    for matrix, vector in zip(matrices, vectors, strict=True):
        try:
            solved.append(np.linalg.solve(matrix, vector))
        except np.linalg.LinAlgError as err:
            solved.append(err)
    return solved


class UniPCMultistepScheduler(_Scheduler):
    """UniPC predictor-corrector (bh1/bh2, data prediction) on flow-matching sigmas, as Wan 2.1/2.2 configure it.

    Only ``use_flow_sigmas=True`` with ``prediction_type="flow_prediction"`` is implemented: that is every shipped
    Wan config, and the other branches (noise/v prediction on DDPM sigmas, Karras sigmas) are not needed here.
    """

    name = "UniPCMultistepScheduler"
    _DEFAULTS: ClassVar[dict[str, Any]] = {
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "trained_betas": None,
        "solver_order": 2,
        "prediction_type": "epsilon",
        "thresholding": False,
        "dynamic_thresholding_ratio": 0.995,
        "sample_max_value": 1.0,
        "predict_x0": True,
        "solver_type": "bh2",
        "lower_order_final": True,
        "disable_corrector": [],
        "solver_p": None,
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "use_beta_sigmas": False,
        "use_flow_sigmas": False,
        "flow_shift": 1.0,
        "timestep_spacing": "linspace",
        "steps_offset": 0,
        "final_sigmas_type": "zero",
        "rescale_betas_zero_snr": False,
        "use_dynamic_shifting": False,
        "time_shift_type": "exponential",
        "sigma_min": None,
        "sigma_max": None,
        "shift_terminal": None,
    }

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        c, n = self.config, self.name
        _require(n, c, "use_flow_sigmas", (True,), "only the flow-matching (Wan) configuration is implemented")
        _require(n, c, "prediction_type", ("flow_prediction",), "flow sigmas are used with flow_prediction")
        _require(n, c, "predict_x0", (True,), "diffusers' flow_prediction needs the data-prediction form")
        _require(n, c, "thresholding", (False,))
        _require(n, c, "solver_p", (None,), "an external predictor scheduler is not implemented")
        for key in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"):
            _require(n, c, key, (False,), "these sigma schedules replace the flow sigmas")
        # diffusers maps the DPM-Solver solver types onto bh2 and rejects anything else.
        if c["solver_type"] in ("midpoint", "heun", "logrho"):
            c["solver_type"] = "bh2"
        _require(n, c, "solver_type", ("bh1", "bh2"))
        _require(n, c, "final_sigmas_type", ("zero", "sigma_min"))
        _require(n, c, "time_shift_type", ("exponential", "linear"))
        _require(n, c, "timestep_spacing", ("linspace", "leading", "trailing"))
        if not isinstance(c["solver_order"], int) or c["solver_order"] < 1:
            raise ValueError(f"{n}: solver_order must be a positive integer, got {c['solver_order']!r}")
        if c["solver_order"] > 1 and not c["lower_order_final"] and c["final_sigmas_type"] == "zero":
            # The last multistep update into sigma 0 divides by r_k = 0: diffusers returns NaN latents there.
            raise ValueError(f"{n}: lower_order_final=False with final_sigmas_type='zero' gives NaN (as in diffusers)")
        self.timesteps = np.zeros(0, dtype=np.int64)
        self._reset()

    def _reset(self) -> None:
        self._step_index: int | None = None
        self._model_outputs: list[np.ndarray | None] = [None] * self.config["solver_order"]
        self._lower_order_nums = 0
        self._last_sample: np.ndarray | None = None
        self._this_order = 1

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        *,
        sigmas: Sequence[float] | np.ndarray | None = None,
        mu: float | None = None,
    ) -> None:
        """Shifted flow sigmas ``linspace(1, 1/T, N+1)[:-1]`` (or the given ones); timesteps are ``int(sigma * T)``."""
        c = self.config
        if c["use_dynamic_shifting"] and mu is None:
            raise ValueError("`mu` must be passed when `use_dynamic_shifting` is set to be `True`")
        n_train = c["num_train_timesteps"]
        if sigmas is not None:
            s = np.array(sigmas)
            num_inference_steps = len(s)
        elif num_inference_steps is None:
            raise ValueError("pass num_inference_steps or sigmas")
        else:
            s = np.linspace(1, 1 / n_train, num_inference_steps + 1)[:-1]
        if c["use_dynamic_shifting"]:
            em = math.exp(mu) if c["time_shift_type"] == "exponential" else mu
            s = em / (em + (1 / s - 1) ** 1.0)
        else:
            shift = c["flow_shift"]
            s = shift * s / (1 + (shift - 1) * s)
        if c["shift_terminal"]:
            one_minus = 1 - s
            with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0 for one step from sigma 1: see _finite
                s = 1 - one_minus / (one_minus[-1] / (1 - c["shift_terminal"]))
        s = _finite(s, self.name)
        if np.fabs(s[0] - 1) < 1e-6:
            s[0] -= 1e-6  # keep sigma < 1 so that log(1 - sigma) stays finite
        self.timesteps = (s * n_train).astype(np.int64)
        last = s[-1] if c["final_sigmas_type"] == "sigma_min" else 0
        self.sigmas = np.concatenate([s, [last]]).astype(np.float32)
        # log-SNR per sigma, log(alpha) - log(sigma) with alpha = 1 - sigma, each log correctly rounded to float32
        # (see _log32), once per schedule instead of twice per sigma per update
        with np.errstate(divide="ignore", invalid="ignore"):
            self._lambdas = _log32(np.float32(1) - self.sigmas) - _log32(self.sigmas)
        self._tables = self._update_tables()
        self.num_inference_steps = len(self.timesteps)
        self._reset()

    def _update_tables(self) -> dict[int, _UpdateTerms]:
        """Per order, every scalar of the UniPC update from ``s0`` to ``s0 + 1``, for every ``s0`` at once.

        Every update of a step is one of these (the predictor from step i, the corrector from i - 1), so the schedule
        is worked out once per run instead of scalar by scalar, with a linear solve, twice a step: a step is then
        array arithmetic only. The float32 operations are diffusers' own, elementwise, and the solves are the same
        LAPACK calls, so the values are the ones the scalar form gives. Infinite or zero h at the ends of the
        schedule (sigma 0, a repeated final sigma_min) give non-finite terms that are then unused or multiplied away,
        exactly as in diffusers; history before step 0 is NaN and never read.
        """
        lam, sigmas = self._lambdas, self.sigmas
        n = len(lam) - 1
        s0 = np.arange(n)
        tables = {}
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            h = lam[1:] - lam[:-1]
            hh = -h  # data prediction
            h_phi_1 = _expm1_32(hh)
            b_h = hh if self.config["solver_type"] == "bh1" else _expm1_32(hh)
            alpha_t = np.float32(1) - sigmas[1:]
            sample_weight = sigmas[1:] / sigmas[:-1]  # sigma_t / sigma_s0
            output_weight = alpha_t * h_phi_1
            correction_weight = alpha_t * b_h
            for order in range(1, self.config["solver_order"] + 1):
                columns = [
                    np.where(s0 >= k, (lam[np.maximum(s0 - k, 0)] - lam[:-1]) / h, np.nan) for k in range(1, order)
                ]
                rks = np.stack(columns, axis=1) if columns else np.zeros((n, 0), dtype=np.float32)
                r_vec = np.concatenate([rks, np.ones((n, 1), dtype=np.float32)], axis=1)
                r_mat = np.stack([r_vec ** (k - 1) for k in range(1, order + 1)], axis=1)
                h_phi_k = h_phi_1 / hh - np.float32(1)
                b, factorial = [], 1
                for k in range(1, order + 1):
                    b.append(h_phi_k * factorial / b_h)
                    factorial *= k + 1
                    h_phi_k = h_phi_k / hh - 1 / factorial
                b = np.stack(b, axis=1)
                half = np.full((n, 1), 0.5, dtype=np.float32)
                predictor_rhos = half if order == 2 else None  # order 1: no history term
                if order > 2:
                    predictor_rhos = _solve_rows(r_mat[:, :-1, :-1], b[:, :-1])
                tables[order] = _UpdateTerms(
                    rks=[list(row) for row in rks.astype(np.float32)],
                    sample_weight=sample_weight,
                    output_weight=output_weight,
                    correction_weight=correction_weight,
                    predictor_rhos=predictor_rhos,
                    corrector_rhos=half if order == 1 else _solve_rows(r_mat, b),
                )
        return tables

    def _update(self, x: np.ndarray, s0: int, order: int, x0_now: np.ndarray | None = None) -> np.ndarray:
        """One UniPC update of ``x`` from ``s0`` to ``s0 + 1``: the predictor (UniP) of step ``s0``, or, given the
        step's new converted output ``x0_now``, the corrector (UniC) of the previous sample at step ``s0 + 1``."""
        terms = self._tables[order]
        m0 = self._model_outputs[-1]
        x_t = _like(terms.sample_weight[s0], x) * x - _like(terms.output_weight[s0], m0) * m0
        rhos = terms.corrector_rhos[s0] if x0_now is not None else None if order == 1 else terms.predictor_rhos[s0]
        if isinstance(rhos, Exception):  # the solve failed where diffusers' would: fail here too
            raise rhos
        if rhos is not None and rhos.dtype != x.dtype:
            rhos = rhos.astype(x.dtype)
        if x0_now is not None:
            correction = rhos[-1] * (x0_now - m0)
            if order > 1:
                correction = self._weighted(rhos[:-1], self._differences(m0, terms.rks[s0])) + correction
        elif order > 1:
            correction = self._weighted(rhos, self._differences(m0, terms.rks[s0]))
        else:
            return x_t.astype(x.dtype, copy=False)
        return (x_t - _like(terms.correction_weight[s0], correction) * correction).astype(x.dtype, copy=False)

    def _differences(self, m0: np.ndarray, rks: list[np.float32]) -> list[np.ndarray]:
        """(m_i - m0) / r_i for the older converted outputs, newest first."""
        with np.errstate(divide="ignore"):
            return [(self._model_outputs[-(k + 1)] - m0) / _like(rk, m0) for k, rk in enumerate(rks, start=1)]

    @staticmethod
    def _weighted(rhos: np.ndarray, terms: list[np.ndarray]) -> np.ndarray:
        total = rhos[0] * terms[0]
        for rho, term in zip(rhos[1:], terms[1:]):
            total = total + rho * term
        return total

    def step(
        self,
        model_output: np.ndarray,
        timestep: Any,
        sample: np.ndarray,
        generator: np.random.Generator | None = None,
    ) -> np.ndarray:
        """One UniPC step: correct the current sample with the new output (UniC), then predict the next (UniP)."""
        model_output, sample = self._step_arrays(model_output, sample, timestep)
        i = self._index(timestep, missing=len(self.timesteps) - 1)
        x0 = sample - _like(self.sigmas[i], model_output) * model_output
        if i > 0 and (i - 1) not in self.config["disable_corrector"] and self._last_sample is not None:
            sample = self._update(self._last_sample, i - 1, self._this_order, x0_now=x0)
        self._model_outputs = [*self._model_outputs[1:], x0]
        order = self.config["solver_order"]
        this_order = min(order, len(self.timesteps) - i) if self.config["lower_order_final"] else order
        self._this_order = min(this_order, self._lower_order_nums + 1)  # warm-up of the multistep history
        self._last_sample = sample
        prev_sample = self._update(sample, i, self._this_order)
        self._lower_order_nums = min(self._lower_order_nums + 1, order)
        self._step_index += 1
        return prev_sample


# ----------------------------------------------------------------------------------------------------------------
# flow-matching Euler (HunyuanVideo, LTX-Video, Wan)


class FlowMatchEulerDiscreteScheduler(_Scheduler):
    """Euler on the rectified-flow ODE: ``x <- x + (sigma_next - sigma) * v``; deterministic."""

    name = "FlowMatchEulerDiscreteScheduler"
    _DEFAULTS: ClassVar[dict[str, Any]] = {
        "num_train_timesteps": 1000,
        "shift": 1.0,
        "use_dynamic_shifting": False,
        "base_shift": 0.5,
        "max_shift": 1.15,
        "base_image_seq_len": 256,
        "max_image_seq_len": 4096,
        "invert_sigmas": False,
        "shift_terminal": None,
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "use_beta_sigmas": False,
        "time_shift_type": "exponential",
        "stochastic_sampling": False,
    }

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        c, n = self.config, self.name
        for key in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"):
            _require(n, c, key, (False,), "no supported pipeline re-spaces flow sigmas")
        _require(n, c, "stochastic_sampling", (False,), "the stochastic (re-noising) sampler is not implemented")
        _require(n, c, "time_shift_type", ("exponential", "linear"))
        n_train = c["num_train_timesteps"]
        train_t = np.linspace(1, n_train, n_train, dtype=np.float32)[::-1].copy()
        sigmas = train_t / n_train
        if not c["use_dynamic_shifting"]:
            sigmas = c["shift"] * sigmas / (1 + (c["shift"] - 1) * sigmas)
        self.timesteps = sigmas * n_train
        self.sigmas = sigmas
        self.shift = c["shift"]
        # python floats of float32 values, as diffusers' .item()
        self.sigma_min = float(sigmas[-1])
        self.sigma_max = float(sigmas[0])
        self._step_index: int | None = None

    def _time_shift(self, mu: float, t: np.ndarray) -> np.ndarray:
        if self.config["time_shift_type"] == "exponential":
            return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** 1.0)
        return mu / (mu + (1 / t - 1) ** 1.0)

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        *,
        sigmas: Sequence[float] | np.ndarray | None = None,
        mu: float | None = None,
        timesteps: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        """Either N evenly spaced shifted sigmas, or custom ``sigmas`` (HunyuanVideo, LTX with dynamic-shift ``mu``)."""
        c = self.config
        if c["use_dynamic_shifting"] and mu is None:
            raise ValueError("`mu` must be passed when `use_dynamic_shifting` is set to be `True`")
        if sigmas is not None and timesteps is not None and len(sigmas) != len(timesteps):
            raise ValueError("`sigmas` and `timesteps` should have the same length")
        if num_inference_steps is not None:
            if (sigmas is not None and len(sigmas) != num_inference_steps) or (
                timesteps is not None and len(timesteps) != num_inference_steps
            ):
                raise ValueError("`sigmas` and `timesteps` should have the same length as num_inference_steps")
        elif sigmas is not None:
            num_inference_steps = len(sigmas)
        elif timesteps is not None:
            num_inference_steps = len(timesteps)
        else:
            raise ValueError("pass num_inference_steps, sigmas or timesteps")
        n_train = c["num_train_timesteps"]
        given_t = None if timesteps is None else np.array(timesteps).astype(np.float32)
        if sigmas is None:
            t = given_t
            if t is None:
                t = np.linspace(self.sigma_max * n_train, self.sigma_min * n_train, num_inference_steps)
            s = t / n_train
        else:
            s = np.array(sigmas).astype(np.float32)
        if c["use_dynamic_shifting"]:
            s = self._time_shift(mu, s)
        else:
            s = self.shift * s / (1 + (self.shift - 1) * s)
        if c["shift_terminal"]:
            one_minus = 1 - s
            with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0 for one step from sigma 1: see _finite
                s = 1 - one_minus / (one_minus[-1] / (1 - c["shift_terminal"]))
        s = _finite(np.asarray(s).astype(np.float32), self.name)
        new_t = given_t if given_t is not None else s * n_train
        if c["invert_sigmas"]:
            s = 1.0 - s
            new_t = s * n_train
            s = np.concatenate([s, np.ones(1, dtype=np.float32)])
        else:
            s = np.concatenate([s, np.zeros(1, dtype=np.float32)])
        self.num_inference_steps = num_inference_steps
        self.timesteps = new_t
        self.sigmas = s
        self._step_index = None

    def step(
        self,
        model_output: np.ndarray,
        timestep: Any,
        sample: np.ndarray,
        generator: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Euler step in float32; the result takes the model output's dtype, as in diffusers."""
        model_output, sample = self._step_arrays(model_output, sample, timestep, float_timestep=True, float32=True)
        i = self._index(timestep)
        dt = self.sigmas[i + 1] - self.sigmas[i]
        prev_sample = sample + _like(dt, model_output) * model_output
        self._step_index += 1
        return prev_sample.astype(model_output.dtype)


# ----------------------------------------------------------------------------------------------------------------
# Euler on Karras sigmas with EDM preconditioning (Stable Video Diffusion)


class EulerDiscreteScheduler(_Scheduler):
    """The Euler (Karras et al.) ODE sampler on VE sigmas, deterministic (``s_churn=0``, as SVD's pipeline runs it).

    With SVD's config (v_prediction, ``timestep_type="continuous"``) the timesteps passed to the UNet are
    ``0.25 * log(sigma)`` and ``scale_model_input`` divides by ``sqrt(sigma^2 + 1)``.
    """

    name = "EulerDiscreteScheduler"
    _DEFAULTS: ClassVar[dict[str, Any]] = {
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "trained_betas": None,
        "prediction_type": "epsilon",
        "interpolation_type": "linear",
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "use_beta_sigmas": False,
        "sigma_min": None,
        "sigma_max": None,
        "timestep_spacing": "linspace",
        "timestep_type": "discrete",
        "steps_offset": 0,
        "rescale_betas_zero_snr": False,
        "final_sigmas_type": "zero",
    }

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        c, n = self.config, self.name
        _require(n, c, "prediction_type", ("epsilon", "v_prediction", "sample", "original_sample"))
        _require(n, c, "interpolation_type", ("linear",), "log_linear is not implemented")
        _require(n, c, "use_beta_sigmas", (False,), "beta sigmas need scipy's beta.ppf")
        _require(n, c, "rescale_betas_zero_snr", (False,), "zero-terminal-SNR rescaling is not implemented")
        _require(n, c, "timestep_spacing", ("linspace", "leading", "trailing"))
        _require(n, c, "timestep_type", ("discrete", "continuous"))
        _require(n, c, "final_sigmas_type", ("zero", "sigma_min"))
        if c["use_karras_sigmas"] and c["use_exponential_sigmas"]:
            raise ValueError(f"{n}: only one of use_karras_sigmas / use_exponential_sigmas can be set")
        betas = _betas(c, np.float32)
        self.alphas_cumprod = _torch_cumprod(np.float32(1.0) - betas)
        ac = self.alphas_cumprod
        self._train_sigmas = np.sqrt((np.float32(1) - ac) / ac)  # float32, ascending in t
        self._continuous = c["timestep_type"] == "continuous" and c["prediction_type"] == "v_prediction"
        train_t = np.linspace(0, c["num_train_timesteps"] - 1, c["num_train_timesteps"], dtype=float)[::-1]
        flipped = self._train_sigmas[::-1].copy()
        self.timesteps = self._continuous_timesteps(flipped) if self._continuous else train_t.astype(np.float32)
        self.sigmas = np.concatenate([flipped, np.zeros(1, dtype=np.float32)])
        self._step_index: int | None = None

    @staticmethod
    def _continuous_timesteps(sigmas: np.ndarray) -> np.ndarray:
        """EDM's c_noise = log(sigma) / 4, in float32 (0.25 * x is exact)."""
        return np.array([np.float32(0.25) * _log32(s) for s in sigmas], dtype=np.float32)

    @property
    def init_noise_sigma(self) -> float:  # type: ignore[override]
        """Scale of the initial noise: sigma_max, or sqrt(sigma_max^2 + 1) for the 'leading' spacing (SVD)."""
        max_sigma = self.sigmas.max()
        if self.config["timestep_spacing"] in ("linspace", "trailing"):
            return float(max_sigma)
        return float(np.sqrt(max_sigma * max_sigma + np.float32(1)))

    @staticmethod
    def _sigma_to_t(sigma: np.ndarray, log_sigmas: np.ndarray) -> np.ndarray:
        """Fractional training timestep of each sigma, by linear interpolation in log sigma."""
        log_sigma = np.log(np.maximum(sigma, 1e-10))
        dists = log_sigma - log_sigmas[:, np.newaxis]
        low_idx = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
        high_idx = low_idx + 1
        low, high = log_sigmas[low_idx], log_sigmas[high_idx]
        w = np.clip((low - log_sigma) / (low - high), 0, 1)
        return ((1 - w) * low_idx + w * high_idx).reshape(sigma.shape)

    def _range(self, in_sigmas: np.ndarray) -> tuple[float, float]:
        c = self.config
        sigma_min = c["sigma_min"] if c["sigma_min"] is not None else float(in_sigmas[-1])
        sigma_max = c["sigma_max"] if c["sigma_max"] is not None else float(in_sigmas[0])
        return sigma_min, sigma_max

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        *,
        timesteps: Sequence[float] | np.ndarray | None = None,
        sigmas: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        """N steps spaced per ``timestep_spacing`` (Karras/exponential re-spacing if configured), or custom ones."""
        c = self.config
        if timesteps is not None and sigmas is not None:
            raise ValueError("Only one of `timesteps` or `sigmas` should be set.")
        if num_inference_steps is None and timesteps is None and sigmas is None:
            raise ValueError("Must pass exactly one of `num_inference_steps` or `timesteps` or `sigmas.")
        if num_inference_steps is not None and (timesteps is not None or sigmas is not None):
            raise ValueError("Can only pass one of `num_inference_steps` or `timesteps` or `sigmas`.")
        if timesteps is not None and (c["use_karras_sigmas"] or c["use_exponential_sigmas"] or self._continuous):
            raise ValueError(
                "custom `timesteps` cannot be combined with Karras/exponential sigmas or continuous timesteps"
            )
        if num_inference_steps is None:
            num_inference_steps = len(timesteps) if timesteps is not None else len(sigmas) - 1
        n_train = c["num_train_timesteps"]
        train_sigmas = self._train_sigmas
        log_sigmas = np.log(train_sigmas)
        if sigmas is not None:
            s = np.array(sigmas).astype(np.float32)
            t = self._sigma_to_t(s[:-1], log_sigmas)
        else:
            if timesteps is not None:
                t = np.array(timesteps).astype(np.float32)
            elif c["timestep_spacing"] == "linspace":
                t = np.linspace(0, n_train - 1, num_inference_steps, dtype=np.float32)[::-1].copy()
            elif c["timestep_spacing"] == "leading":
                ratio = n_train // num_inference_steps
                t = (np.arange(0, num_inference_steps) * ratio).round()[::-1].copy().astype(np.float32)
                t += c["steps_offset"]
            else:  # trailing
                ratio = n_train / num_inference_steps
                t = np.arange(n_train, 0, -ratio).round().copy().astype(np.float32)
                t -= 1
            s = np.interp(t, np.arange(0, len(train_sigmas)), train_sigmas)
            if c["use_karras_sigmas"]:
                sigma_min, sigma_max = self._range(s)
                ramp = np.linspace(0, 1, num_inference_steps)
                lo, hi = sigma_min ** (1 / 7.0), sigma_max ** (1 / 7.0)
                s = (hi + ramp * (lo - hi)) ** 7.0  # rho = 7 (EDM)
                t = self._sigma_to_t(s, log_sigmas)
            elif c["use_exponential_sigmas"]:
                sigma_min, sigma_max = self._range(s)
                s = np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), num_inference_steps))
                t = self._sigma_to_t(s, log_sigmas)
            if c["final_sigmas_type"] == "sigma_min":
                last = np.sqrt((np.float32(1) - self.alphas_cumprod[0]) / self.alphas_cumprod[0])
            else:
                last = 0
            s = np.concatenate([s, [last]]).astype(np.float32)
        self.num_inference_steps = num_inference_steps
        self.sigmas = s
        self.timesteps = self._continuous_timesteps(s[:-1]) if self._continuous else t.astype(np.float32)
        self._step_index = None

    def scale_model_input(self, sample: np.ndarray, timestep: Any = None) -> np.ndarray:
        """EDM input preconditioning c_in = 1 / sqrt(sigma^2 + 1)."""
        sample = _as_array(sample, "sample")
        sigma = self.sigmas[self._index(timestep)]
        return sample / _like(np.sqrt(sigma * sigma + np.float32(1)), sample)

    def step(
        self,
        model_output: np.ndarray,
        timestep: Any,
        sample: np.ndarray,
        generator: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Euler step x + (x - x0) / sigma * (sigma_next - sigma) in float32; the result takes the output's dtype."""
        model_output, sample = self._step_arrays(model_output, sample, timestep, float_timestep=True, float32=True)
        sigma = self.sigmas[self._index(timestep)]
        prediction = self.config["prediction_type"]
        if prediction in ("sample", "original_sample"):
            x0 = model_output
        elif prediction == "epsilon":
            x0 = sample - _like(sigma, model_output) * model_output
        else:  # v_prediction
            c_out = -sigma / np.sqrt(sigma * sigma + np.float32(1))
            x0 = model_output * _like(c_out, model_output) + sample / _like(sigma * sigma + np.float32(1), sample)
        derivative = (sample - x0) / _like(sigma, sample)
        dt = self.sigmas[self._step_index + 1] - sigma
        prev_sample = sample + derivative * _like(dt, derivative)
        self._step_index += 1
        return prev_sample.astype(model_output.dtype)


# ----------------------------------------------------------------------------------------------------------------
# CogVideoX DDIM / DPM-Solver++ (SDE)


class CogVideoXDDIMScheduler(_Scheduler):
    """CogVideoX's DDIM: its own SNR-shifted, optionally zero-terminal-SNR alphas_cumprod.

    As in diffusers, the update is always the deterministic (eta = 0) one, and ``clip_sample``,
    ``clip_sample_range`` and ``sample_max_value`` are accepted but unused.
    """

    name = "CogVideoXDDIMScheduler"
    _DEFAULTS: ClassVar[dict[str, Any]] = {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "trained_betas": None,
        "clip_sample": True,
        "set_alpha_to_one": True,
        "steps_offset": 0,
        "prediction_type": "epsilon",
        "clip_sample_range": 1.0,
        "sample_max_value": 1.0,
        "timestep_spacing": "leading",
        "rescale_betas_zero_snr": False,
        "snr_shift_scale": 3.0,
    }

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        c, n = self.config, self.name
        _require(n, c, "prediction_type", ("epsilon", "sample", "v_prediction"))
        _require(n, c, "timestep_spacing", ("linspace", "leading", "trailing"))
        # CogVideoX builds scaled_linear betas in float64 (the other schedules in float32).
        betas = _betas(c, np.float64)
        ac = _torch_cumprod(1.0 - betas)
        snr = c["snr_shift_scale"]
        ac = ac / (snr + (1 - snr) * ac)
        if c["rescale_betas_zero_snr"]:
            root = np.sqrt(ac)
            root_0, root_t = root[0], root[-1]
            root = root - root_t
            root = root * (root_0 / (root_0 - root_t))
            ac = root * root
        self.alphas_cumprod = ac
        self.final_alpha_cumprod = np.float32(1.0) if c["set_alpha_to_one"] else ac[0]
        self.timesteps = np.zeros(0, dtype=np.int64)
        self.sigmas = None
        self._reset()

    def set_timesteps(self, num_inference_steps: int | None = None) -> None:
        """Integer timesteps per ``timestep_spacing`` ('trailing' for CogVideoX: ends at T-1)."""
        c = self.config
        n_train = c["num_train_timesteps"]
        if num_inference_steps is None:
            raise ValueError(f"{self.name}.set_timesteps needs num_inference_steps")
        if num_inference_steps > n_train:
            raise ValueError(f"num_inference_steps={num_inference_steps} exceeds num_train_timesteps={n_train}")
        if c["timestep_spacing"] == "linspace":
            t = np.linspace(0, n_train - 1, num_inference_steps).round()[::-1].copy().astype(np.int64)
        elif c["timestep_spacing"] == "leading":
            ratio = n_train // num_inference_steps
            t = (np.arange(0, num_inference_steps) * ratio).round()[::-1].copy().astype(np.int64)
            t += c["steps_offset"]
        else:  # trailing
            ratio = n_train / num_inference_steps
            t = np.round(np.arange(n_train, 0, -ratio)).astype(np.int64)
            t -= 1
        self.num_inference_steps = num_inference_steps
        self.timesteps = t
        self._reset()

    def _reset(self) -> None:
        """Per-run state (none for DDIM)."""

    def _alphas(self, timestep: Any) -> tuple[int, np.floating, np.floating]:
        """Previous timestep (diffusers' ``t - T // N``, even off-grid) and the alphas_cumprod at t and there."""
        t = int(_timestep_scalar(timestep))
        prev_t = t - self.config["num_train_timesteps"] // self.num_inference_steps
        a_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        return prev_t, self.alphas_cumprod[t], a_prev

    def _x0(self, model_output: np.ndarray, sample: np.ndarray, a_t: np.floating) -> np.ndarray:
        beta_t = 1 - a_t
        prediction = self.config["prediction_type"]
        if prediction == "epsilon":
            return (sample - _like(np.sqrt(beta_t), model_output) * model_output) / _like(np.sqrt(a_t), sample)
        if prediction == "sample":
            return model_output
        return _like(np.sqrt(a_t), sample) * sample - _like(np.sqrt(beta_t), model_output) * model_output

    def step(
        self,
        model_output: np.ndarray,
        timestep: Any,
        sample: np.ndarray,
        generator: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Deterministic DDIM: x_prev = a * x + b * x0 with a = sqrt((1-a_prev)/(1-a_t))."""
        model_output, sample = self._step_arrays(model_output, sample, timestep)
        _, a_t, a_prev = self._alphas(timestep)
        x0 = self._x0(model_output, sample, a_t)
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.sqrt((1 - a_prev) / (1 - a_t))
            b = np.sqrt(a_prev) - np.sqrt(a_t) * a
        return _like(a, sample) * sample + _like(b, x0) * x0


class CogVideoXDPMScheduler(CogVideoXDDIMScheduler):
    """CogVideoX's DPM-Solver++ (2M, SDE variant): same schedule as the DDIM one, but it injects fresh noise.

    diffusers' ``step`` takes the previous x0 and timestep from the pipeline; here the scheduler keeps them, so the
    call is the common ``step(model_output, timestep, sample, generator)``. Noise comes from ``generator`` (a fresh
    ``np.random.default_rng()`` when None): it draws one standard normal array per step, and a second one on the
    steps that use the 2nd-order update, as diffusers does.
    """

    name = "CogVideoXDPMScheduler"

    def _reset(self) -> None:
        self._old_x0: np.ndarray | None = None
        self._previous_timestep: Any = None

    def step(
        self,
        model_output: np.ndarray,
        timestep: Any,
        sample: np.ndarray,
        generator: np.random.Generator | None = None,
    ) -> np.ndarray:
        """One DPM-Solver++ SDE step; second order once a previous x0 exists and t is not the last step."""
        model_output, sample = self._step_arrays(model_output, sample, timestep)
        rng = generator if generator is not None else np.random.default_rng()
        prev_t, a_t, a_prev = self._alphas(timestep)
        back = self._previous_timestep
        a_back = None if back is None else self.alphas_cumprod[int(_timestep_scalar(back))]
        x0 = self._x0(model_output, sample, a_t)
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = np.log(np.sqrt(a_t / (1 - a_t)))
            h = np.log(np.sqrt(a_prev / (1 - a_prev))) - lam
            mult1 = np.sqrt((1 - a_prev) / (1 - a_t)) * np.exp(-h)
            mult2 = np.expm1(-2 * h) * np.sqrt(a_prev)
            mult_noise = np.sqrt(1 - a_prev) * np.sqrt(1 - np.exp(-2 * h))
            noise = self._noise(rng, sample)
            prev_sample = _like(mult1, sample) * sample - _like(mult2, x0) * x0 + _like(mult_noise, noise) * noise
            if self._old_x0 is not None and prev_t >= 0 and a_back is not None:
                r = (lam - np.log(np.sqrt(a_back / (1 - a_back)))) / h
                mult3 = 1 + 1 / (2 * r)
                mult4 = 1 / (2 * r)
                denoised = _like(mult3, x0) * x0 - _like(mult4, self._old_x0) * self._old_x0
                noise = self._noise(rng, sample)
                prev_sample = (
                    _like(mult1, sample) * sample - _like(mult2, denoised) * denoised + _like(mult_noise, noise) * noise
                )
        self._old_x0 = x0
        self._previous_timestep = timestep
        return prev_sample

    @staticmethod
    def _noise(rng: np.random.Generator, like: np.ndarray) -> np.ndarray:
        dtype = like.dtype if like.dtype in (np.float32, np.float64) else np.float32
        return rng.standard_normal(like.shape, dtype=dtype).astype(like.dtype, copy=False)


# ----------------------------------------------------------------------------------------------------------------
# factory

_CLASSES: dict[str, type[_Scheduler]] = {
    cls.name: cls
    for cls in (
        UniPCMultistepScheduler,
        FlowMatchEulerDiscreteScheduler,
        CogVideoXDDIMScheduler,
        CogVideoXDPMScheduler,
        EulerDiscreteScheduler,
    )
}

SUPPORTED_SCHEDULERS: tuple[str, ...] = tuple(_CLASSES)


def scheduler_from_config(class_name: str, config: Mapping[str, Any]) -> NumpyScheduler:
    """Build the numpy twin of ``getattr(diffusers, class_name).from_config(config)``.

    Raises ``ValueError`` for a class not in ``SUPPORTED_SCHEDULERS`` and for config values this module does not
    implement (rather than approximating them).
    """
    try:
        cls = _CLASSES[class_name]
    except KeyError:
        raise ValueError(
            f"unsupported scheduler class {class_name!r}; supported: {', '.join(SUPPORTED_SCHEDULERS)}"
        ) from None
    return cls(config)
