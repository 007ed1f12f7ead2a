"""The strength schedule and strength validation (pure Python, shared with the runtime)."""

from __future__ import annotations

import math

import pytest

from dymos.schedule import StrengthSchedule, per_item, validate_strength


def test_default_is_the_first_fifth_of_the_steps() -> None:
    assert StrengthSchedule().active_steps(10) == [0, 1]
    assert StrengthSchedule().active_steps(4) == [0]


@pytest.mark.parametrize(
    ("schedule", "steps", "active"),
    [
        (StrengthSchedule(first_steps=3), 10, [0, 1, 2]),
        (StrengthSchedule(first_steps=0), 10, []),
        (StrengthSchedule(fraction=0.3), 10, [0, 1, 2]),
        (StrengthSchedule(fraction=0.25), 10, [0, 1, 2]),  # ceil: a started fraction counts
        (StrengthSchedule(fraction=1.0), 4, [0, 1, 2, 3]),
        (StrengthSchedule(curve=(1.0, 0.5, 0.0, 0.25)), 6, [0, 1, 3]),
        (StrengthSchedule(always=True), 3, [0, 1, 2]),
    ],
)
def test_active_steps(schedule: StrengthSchedule, steps: int, active: list[int]) -> None:
    assert schedule.active_steps(steps) == active


def test_curve_gives_per_step_multipliers() -> None:
    schedule = StrengthSchedule(curve=[1.0, 0.5])
    assert [schedule.multiplier(i, 4) for i in range(4)] == [1.0, 0.5, 0.0, 0.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first_steps": 2, "fraction": 0.5},
        {"first_steps": -1},
        {"fraction": 1.5},
        {"curve": [1.0, math.nan]},
    ],
)
def test_bad_schedules_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        StrengthSchedule(**kwargs)


def test_validate_strength() -> None:
    assert validate_strength(2) == (2.0,)
    assert validate_strength([0, -1.5]) == (0.0, -1.5)
    for bad in (math.nan, [1.0, math.inf], []):
        with pytest.raises(ValueError):
            validate_strength(bad)
    with pytest.raises(TypeError):
        validate_strength("strong")


def test_per_item_broadcasts_and_tiles_for_cfg() -> None:
    assert per_item((2.0,), 3) == [2.0, 2.0, 2.0]
    assert per_item((1.0, 2.0), 2) == [1.0, 2.0]
    assert per_item((1.0, 2.0), 4) == [1.0, 2.0, 1.0, 2.0]  # cat([uncond, cond])
    with pytest.raises(ValueError, match="3 values"):
        per_item((1.0, 2.0, 3.0), 4)
