"""The strength schedule and strength validation — pure Python, shared by the torch side and the runtime.

DyMoS only acts during the first denoising steps. A :class:`StrengthSchedule` turns a step index into a
multiplier on the user's strength: 1 for the first steps (a count or a fraction of the run), 0 afterwards, or
an explicit per-step curve. A multiplier of 0 means the stock model runs, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DEFAULT_FRACTION = 0.2


@dataclass(frozen=True)
class StrengthSchedule:
    """When DyMoS is on. Give exactly one of ``first_steps``, ``fraction`` or ``curve`` (or none: the default
    fraction). ``always=True`` keeps it on at every call (direct denoiser use, exports)."""

    first_steps: int | None = None
    fraction: float | None = None
    curve: tuple[float, ...] | None = None
    always: bool = False

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.first_steps, self.fraction, self.curve)] + [self.always]
        if sum(given) > 1:
            raise ValueError("give at most one of first_steps, fraction, curve or always")
        if sum(given) == 0:
            object.__setattr__(self, "fraction", DEFAULT_FRACTION)
        if self.first_steps is not None and (not isinstance(self.first_steps, int) or self.first_steps < 0):
            raise ValueError(f"first_steps must be an int >= 0, got {self.first_steps!r}")
        if self.fraction is not None and not (0.0 <= float(self.fraction) <= 1.0):
            raise ValueError(f"fraction must lie in [0, 1], got {self.fraction!r}")
        if self.curve is not None:
            curve = tuple(float(x) for x in self.curve)
            if not all(math.isfinite(x) for x in curve):
                raise ValueError("the strength curve must be finite")
            object.__setattr__(self, "curve", curve)

    def multiplier(self, step: int, num_steps: int) -> float:
        """The factor applied to the strength at ``step`` (0-based) of a ``num_steps`` run."""
        if self.always:
            return 1.0
        if self.curve is not None:
            return self.curve[step] if step < len(self.curve) else 0.0
        active = self.first_steps if self.first_steps is not None else math.ceil(self.fraction * num_steps - 1e-9)
        return 1.0 if step < active else 0.0

    def active_steps(self, num_steps: int) -> list[int]:
        """The step indices at which the multiplier is non-zero."""
        return [i for i in range(num_steps) if self.multiplier(i, num_steps) != 0.0]

    def describe(self) -> str:
        if self.always:
            return "always"
        if self.curve is not None:
            return f"curve {list(self.curve)}"
        if self.first_steps is not None:
            return f"first {self.first_steps} steps"
        return f"first {self.fraction:.0%} of steps"


def validate_strength(strength: float | Iterable[float]) -> tuple[float, ...]:
    """A scalar or per-item strength as a tuple of finite floats; NaN/inf or an empty vector is an error."""
    if hasattr(strength, "tolist"):  # numpy arrays and torch tensors, without importing either
        strength = strength.tolist()
    values = (strength,) if isinstance(strength, (int, float)) else tuple(strength)
    try:
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError) as err:
        raise TypeError(f"motion strength must be a number or a sequence of numbers, got {strength!r}") from err
    if not values:
        raise ValueError("motion strength is empty: give a scalar or one value per batch item")
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise ValueError(f"motion strength must be finite, got {bad}")
    return values


def per_item(values: Sequence[float], batch: int) -> list[float]:
    """Spread ``values`` over a batch of ``batch`` items.

    A scalar broadcasts; a vector of length ``batch`` is used as is; a vector whose length divides ``batch`` is
    tiled, which is how pipelines batch classifier-free guidance (``cat([uncond, cond])``). Anything else is
    an error.
    """
    if len(values) == 1:
        return list(values) * batch
    if batch % len(values) == 0:
        return list(values) * (batch // len(values))
    raise ValueError(f"motion strength has {len(values)} values but the denoiser batch is {batch}")
