"""DyMoS on one diffusers denoiser: install the wrapped processors, read each call's token grid, hold the knob.

:class:`DyMoSDenoiser` is the handle returned by :func:`patch`. It is reversible (:meth:`remove` puts
the original processor objects back) and it never touches weights. Per forward call a pre-hook reads the token
grid from the model's inputs and resolves the strength for that call's batch; wrapped processors consult the
handle to decide whether to bias (``active_for``) and to compute the biased attention (``attention``).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from dymos.attention import (
    AUTO_STRATEGY,
    DEFAULT_STRATEGY,
    EAGER_STRATEGIES,
    REFERENCE_STRATEGY,
    STRATEGIES,
    biased_attention,
)
from dymos.layouts import FamilyLayout, TokenGrid, layout_for, token_grid
from dymos.processor import DyMoSAttnProcessor
from dymos.schedule import per_item, validate_strength

StepMultiplier = Callable[[Any], float]  # the call's timestep -> multiplier on the strength


@dataclass
class _CallState:
    """What the pre-hook learned about the forward call in flight."""

    grid: TokenGrid
    strength: torch.Tensor  # [batch] in fp32, on the latent's device
    traced: bool  # True while exporting/compiling: no data-dependent Python branches allowed


def _tracing() -> bool:
    """While exporting, compiling or jit-tracing, no Python branch may depend on the strength's value."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()


class DyMoSDenoiser:
    """DyMoS installed on one denoiser (see :func:`dymos.patch`)."""

    def __init__(
        self,
        model: torch.nn.Module,
        strength: float | Sequence[float] = 0.0,
        *,
        strategy: str = DEFAULT_STRATEGY,
        layers: Iterable[int | str] | None = None,
        fold_pad_to: int = 1,
        step_multiplier: StepMultiplier | None = None,
    ) -> None:
        if strategy not in (AUTO_STRATEGY, *STRATEGIES, *EAGER_STRATEGIES, REFERENCE_STRATEGY):
            choices = ", ".join((AUTO_STRATEGY, *STRATEGIES, *EAGER_STRATEGIES))
            raise ValueError(f"unknown DyMoS strategy {strategy!r}; choose one of {choices}")
        self.model = model
        self.layout: FamilyLayout = layout_for(model)
        self.strategy = strategy
        self.fold_pad_to = fold_pad_to
        self.strength = strength
        self._step_multiplier = step_multiplier
        self._strength_input: torch.Tensor | None = None
        self._call: _CallState | None = None
        # Callables run on every biased attention call with (layer, q, k, strength, span, attn_mask, scale):
        # how the attention-mass probe looks inside without a second code path.
        self.observers: list[Callable[..., None]] = []
        self.attention_layers = [
            name for name, module in model.named_modules() if self.layout.matches(name) and hasattr(module, "processor")
        ]
        if not self.attention_layers:
            raise ValueError(f"found no self-attention layers matching {self.layout.attention_patterns} in the model")
        self.layers = self._select(layers)
        self._signature = inspect.signature(model.forward)
        self._originals: dict[str, Any] = {}
        modules = dict(model.named_modules())
        for name in self.layers:
            module = modules[name]
            self._originals[name] = module.processor
            module.set_processor(DyMoSAttnProcessor(module.processor, name, self))
        self._hook = model.register_forward_pre_hook(self._on_forward, with_kwargs=True)

    # -- the knob ---------------------------------------------------------------------------------------------
    @property
    def strength(self) -> tuple[float, ...]:
        return self._strength

    @strength.setter
    def strength(self, value: float | Sequence[float]) -> None:
        self._strength = validate_strength(value)

    @contextlib.contextmanager
    def strength_input(self, strength: torch.Tensor) -> Iterator[None]:
        """Use ``strength`` (a ``[batch]`` tensor, e.g. a graph input) for calls inside the block, unscheduled.

        This is how exports keep the strength a runtime tensor: nothing about its value is read in Python.
        """
        previous, self._strength_input = self._strength_input, strength
        try:
            yield
        finally:
            self._strength_input = previous

    # -- layer selection --------------------------------------------------------------------------------------
    def _select(self, layers: Iterable[int | str] | None) -> list[str]:
        if layers is None:
            return list(self.attention_layers)
        chosen: list[str] = []
        for item in layers:
            if isinstance(item, int) and not isinstance(item, bool):
                if not -len(self.attention_layers) <= item < len(self.attention_layers):
                    raise ValueError(
                        f"layer index {item} does not exist: the model has {len(self.attention_layers)} "
                        f"DyMoS self-attention layers (0..{len(self.attention_layers) - 1})"
                    )
                chosen.append(self.attention_layers[item])
            elif isinstance(item, str) and item in self.attention_layers:
                chosen.append(item)
            else:
                raise ValueError(
                    f"layer {item!r} does not exist; give indices 0..{len(self.attention_layers) - 1} or names such "
                    f"as {self.attention_layers[0]!r}"
                )
        return sorted(set(chosen), key=self.attention_layers.index)

    # -- per-call state ---------------------------------------------------------------------------------------
    def _on_forward(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        self._call = None
        bound = self._signature.bind_partial(*args, **kwargs).arguments
        if self._strength_input is not None:
            strength = self._strength_input.to(torch.float32)
        else:
            multiplier = (
                1.0 if self._step_multiplier is None else self._step_multiplier(bound[self.layout.timestep_arg])
            )
            if multiplier == 0.0 or not any(self._strength):
                return  # stock model, bit for bit
            latent = bound[self.layout.latent_arg]
            values = per_item([multiplier * s for s in self._strength], latent.shape[0])
            strength = torch.tensor(values, dtype=torch.float32, device=latent.device)
        grid = token_grid(self.layout, self.model.config, bound)
        self._call = _CallState(grid=grid, strength=strength, traced=_tracing())

    def active_for(self, layer_name: str) -> bool:
        return self._call is not None

    def attention(
        self,
        layer_name: str,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: torch.Tensor | None,
        scale: float | None,
    ) -> torch.Tensor:
        call = self._call
        length = query.shape[-2]
        if key.shape[-2] != length:
            raise RuntimeError(
                f"{layer_name}: DyMoS expects self-attention, got {length} queries and {key.shape[-2]} keys"
            )
        span = self.layout.span(call.grid, length)
        if not call.traced and span.biased_end > length:
            raise RuntimeError(
                f"{layer_name}: attention sequence of {length} tokens is shorter than the {span.video_tokens} video "
                "tokens the input implies"
            )
        if query.shape[0] % call.strength.shape[0] != 0:
            raise RuntimeError(
                f"{layer_name}: attention batch {query.shape[0]} is not a multiple of the strength batch"
            )

        for observer in self.observers:
            observer(layer_name, query, key, call.strength, span, attn_mask, scale)
        if not call.traced and not bool(call.strength.any()):
            return torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, scale=scale)
        return biased_attention(
            query,
            key,
            value,
            call.strength,
            span,
            self.strategy,
            attn_mask=attn_mask,
            scale=scale,
            fold_pad_to=self.fold_pad_to,
        )

    # -- lifecycle --------------------------------------------------------------------------------------------
    def remove(self) -> None:
        """Put the original processor objects back and drop the hook. Safe to call twice."""
        modules = dict(self.model.named_modules())
        for name, processor in self._originals.items():
            modules[name].set_processor(processor)
        self._originals = {}
        self._hook.remove()
        self._call = None

    def __enter__(self) -> DyMoSDenoiser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return (
            f"DyMoSDenoiser({type(self.model).__name__}, strength={list(self._strength)}, strategy={self.strategy!r}, "
            f"layers={len(self.layers)}/{len(self.attention_layers)})"
        )


def patch(
    model: torch.nn.Module,
    strength: float | Sequence[float] = 0.0,
    *,
    strategy: str = DEFAULT_STRATEGY,
    layers: Iterable[int | str] | None = None,
    fold_pad_to: int = 1,
) -> DyMoSDenoiser:
    """Install DyMoS on a diffusers denoiser; strength applies at every call until changed or removed.

    ``strength`` is a scalar or one value per batch item; ``layers`` selects self-attention layers by index or
    module name (all by default). Use the handle as a context manager, or call ``remove()``, to restore the
    original processors.
    """
    return DyMoSDenoiser(model, strength, strategy=strategy, layers=layers, fold_pad_to=fold_pad_to)
