"""Attention-processor wrapper that routes a diffusers processor's attention call through DyMoS.

diffusers' processors project q/k/v, apply norms and RoPE, then call ``scaled_dot_product_attention`` (directly
or through ``dispatch_attention_fn``'s native backend). Rather than re-implementing each processor, the wrapper runs
the original processor unchanged and intercepts that one call with a scoped ``TorchFunctionMode``: the bias lands on
the logits after RoPE, exactly where the method puts it (README, *The formulation*), and every family shares the
code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


class _InterceptAttention(TorchFunctionMode):
    """Replaces ``F.scaled_dot_product_attention`` calls made while active with ``attend``."""

    def __init__(self, attend: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.attend = attend

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return self.attend(*args, **kwargs)
        return func(*args, **kwargs)


class BiasController(Protocol):
    """What a wrapped processor asks of the object that owns the DyMoS state for one denoiser."""

    def active_for(self, layer_name: str) -> bool: ...

    def attention(
        self,
        layer_name: str,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: torch.Tensor | None,
        scale: float | None,
    ) -> torch.Tensor: ...


class DyMoSAttnProcessor:
    """Wraps one attention processor; while its controller is active for this layer, biases its attention.

    When inactive (strength 0, a step past the schedule, an unselected layer) the wrapped processor runs with
    no interception at all, so the output is the stock model's bit for bit.
    """

    def __init__(self, inner: Any, layer_name: str, controller: BiasController) -> None:
        self.inner = inner
        self.layer_name = layer_name
        self.controller = controller
        # diffusers filters keyword arguments by inspect.signature(processor.__call__); expose the wrapped
        # processor's signature so arguments such as image_rotary_emb are not dropped.
        self.__call__ = functools.wraps(inner.__call__)(functools.partial(type(self).__call__, self))

    def __call__(self, attn: torch.nn.Module, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if not self.controller.active_for(self.layer_name):
            return self.inner(attn, hidden_states, *args, **kwargs)
        with _InterceptAttention(self._sdpa):
            return self.inner(attn, hidden_states, *args, **kwargs)

    def _sdpa(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):
        if dropout_p or is_causal or kw.get("enable_gqa"):
            raise NotImplementedError("DyMoS supports non-causal attention without dropout or GQA only")
        return self.controller.attention(self.layer_name, query, key, value, attn_mask, scale)

    def __getattr__(self, name: str) -> Any:
        # Attributes diffusers sets or reads on processors (e.g. _attention_backend) belong to the inner one.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"DyMoSAttnProcessor({self.inner.__class__.__name__}, layer={self.layer_name!r})"
