"""The diffusers-pipeline drop-in: DyMoS on an existing pipeline, with its own ``__call__`` unchanged.

:func:`enable` patches every denoiser the pipeline holds (``transformer``, Wan 2.2's ``transformer_2``,
``unet``) and gates the strength by denoising step. The step is read from the timestep each denoiser call
receives, matched against ``pipe.scheduler.timesteps``: that needs no callback, works when a pipeline calls the
denoiser twice per step (Wan's separate CFG passes) and when it batches CFG (CogVideoX, LTX, SVD).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from dymos.attention import DEFAULT_STRATEGY
from dymos.denoiser import DyMoSDenoiser
from dymos.layouts import UnsupportedModelError, layout_for, supported_classes
from dymos.schedule import StrengthSchedule

DENOISER_ATTRIBUTES = ("transformer", "transformer_2", "unet")


class DyMoSPipeline:
    """DyMoS enabled on one pipeline (see :func:`enable`)."""

    def __init__(
        self,
        pipe: Any,
        strength: float | Sequence[float],
        schedule: StrengthSchedule,
        *,
        strategy: str = DEFAULT_STRATEGY,
        layers: Iterable[int | str] | None = None,
    ) -> None:
        denoisers = [getattr(pipe, name, None) for name in DENOISER_ATTRIBUTES]
        denoisers = [d for d in denoisers if isinstance(d, torch.nn.Module)]
        if not denoisers:
            raise UnsupportedModelError(
                f"{type(pipe).__name__} has no denoiser attribute ({', '.join(DENOISER_ATTRIBUTES)}); DyMoS supports "
                f"pipelines built on {', '.join(supported_classes())}"
            )
        for denoiser in denoisers:
            layout_for(denoiser)  # fail before patching anything
        self.pipe = pipe
        self.schedule = schedule
        layers = None if layers is None else list(layers)
        self.denoisers = [
            DyMoSDenoiser(d, strength, strategy=strategy, layers=layers, step_multiplier=self._multiplier)
            for d in denoisers
        ]
        self.last_step: int | None = None

    @property
    def strength(self) -> tuple[float, ...]:
        return self.denoisers[0].strength

    @strength.setter
    def strength(self, value: float | Sequence[float]) -> None:
        for denoiser in self.denoisers:
            denoiser.strength = value

    def step_index(self, timestep: torch.Tensor | float) -> tuple[int, int]:
        """``(step, num_steps)`` for the timestep a denoiser call received.

        Pipelines pass the step's timestep, sometimes cast (bf16) or expanded per item or per token (the
        conditioning frame at 0), so the largest value is matched to the nearest scheduler timestep.
        """
        timesteps = getattr(self.pipe.scheduler, "timesteps", None)
        if timesteps is None or len(timesteps) == 0:
            raise RuntimeError(
                "the pipeline's scheduler has no timesteps: DyMoS steps are read from them during __call__"
            )
        t = torch.as_tensor(timestep, dtype=torch.float64).max()
        step = int(torch.argmin((torch.as_tensor(timesteps, dtype=torch.float64).cpu() - t.cpu()).abs()))
        return step, len(timesteps)

    def _multiplier(self, timestep: torch.Tensor | float) -> float:
        step, num_steps = self.step_index(timestep)
        self.last_step = step
        return self.schedule.multiplier(step, num_steps)

    def disable(self) -> None:
        """Restore every denoiser's original attention processors."""
        for denoiser in self.denoisers:
            denoiser.remove()

    def __enter__(self) -> DyMoSPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.disable()

    def __repr__(self) -> str:
        return (
            f"DyMoSPipeline({type(self.pipe).__name__}, strength={list(self.strength)}, "
            f"schedule={self.schedule.describe()}, denoisers={len(self.denoisers)})"
        )


def enable(
    pipe: Any,
    strength: float | Sequence[float],
    *,
    first_steps: int | None = None,
    fraction: float | None = None,
    curve: Sequence[float] | None = None,
    strategy: str = DEFAULT_STRATEGY,
    layers: Iterable[int | str] | None = None,
) -> DyMoSPipeline:
    """Enable DyMoS on a diffusers image-to-video pipeline.

    ``strength`` is a scalar or one value per generated video (CFG duplicates are handled). It applies during the
    first ``first_steps`` steps, or the first ``fraction`` of the steps (default 0.2), or follows ``curve`` (a
    multiplier per step), and is 0 afterwards. Returns a handle; ``disable()`` or leaving its ``with`` block
    restores the original processors::

        with dymos.enable(pipe, strength=2.0, fraction=0.2):
            video = pipe(image=image, prompt=prompt).frames[0]
    """
    schedule = StrengthSchedule(
        first_steps=first_steps, fraction=fraction, curve=None if curve is None else tuple(curve)
    )
    return DyMoSPipeline(pipe, strength, schedule, strategy=strategy, layers=layers)
