"""The one biased-attention implementation that serves every model family.

DyMoS adds ``-s * r[q] * c[k]`` to the attention logits, where ``r`` marks queries of non-reference frames and ``c``
marks keys of the reference frame (README, *The formulation*). The bias is rank one, so it can be put into a graph in
several exact ways (README, *Strategies*); all of them live here and agree with :func:`naive_attention` within fp32
rounding.

Tensors follow ``torch.nn.functional.scaled_dot_product_attention``: ``q, k, v`` are ``[B, H, L, D]``. The
strength ``s`` is ``[B]`` (one value per attention batch row). The reference pattern is built from token
positions with ``arange`` comparisons, so an exported graph never carries an ``L x L`` constant and keeps
working for any frame count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

STRATEGIES: tuple[str, ...] = ("mask", "split", "fold")  # exportable: public ops only
# PyTorch-eager only (``dymos.patch`` in a diffusers pipeline): they call attention kernels that also return the
# log-sum-exp, which no exporter takes. ``merge`` costs what stock attention costs on a GPU (tools/bench_gpu.py).
EAGER_STRATEGIES: tuple[str, ...] = ("merge",)
REFERENCE_STRATEGY = "naive"  # explicit logits + softmax: selectable for tests and debugging, never fast
# The default of ``dymos.patch`` / ``dymos.enable``: ``merge`` for CUDA tensors in eager mode (cuDNN/flash kernels,
# 1.04x stock on an H200), ``split`` elsewhere (CPU, and while exporting or compiling). Exports name theirs.
AUTO_STRATEGY = "auto"
DEFAULT_STRATEGY = AUTO_STRATEGY


@dataclass(frozen=True)
class ReferenceSpan:
    """Where the video sits inside one attention sequence.

    Reference keys are ``[video_start, video_start + tokens_per_frame)``; biased queries are
    ``[video_start + tokens_per_frame, video_start + video_tokens)``. Everything else (text or image-context
    tokens sharing the sequence) is neither; ``tokens_after_video`` says whether such tokens also follow the
    video (HunyuanVideo's ``[video | text]``), so the split strategy knows whether a tail exists. Fields may
    be symbolic ints while a graph is exported.
    """

    video_start: int
    tokens_per_frame: int
    video_tokens: int
    tokens_after_video: bool = False

    @property
    def biased_start(self) -> int:
        return self.video_start + self.tokens_per_frame

    @property
    def biased_end(self) -> int:
        return self.video_start + self.video_tokens


def reference_indicators(
    span: ReferenceSpan, length: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(r, c)``, each ``[length]`` of ``dtype``: biased-query rows and reference-key columns."""
    pos = torch.arange(length, device=device)
    r = (pos >= span.biased_start) & (pos < span.biased_end)
    c = (pos >= span.video_start) & (pos < span.biased_start)
    return r.to(dtype), c.to(dtype)


def additive_mask(attn_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Turn an SDPA mask (bool keep-mask or additive float) into an additive float mask of ``dtype``."""
    if attn_mask is None:
        return None
    if attn_mask.dtype == torch.bool:
        zero = torch.zeros((), dtype=dtype, device=attn_mask.device)
        return torch.where(attn_mask, zero, torch.finfo(dtype).min)
    return attn_mask.to(dtype)


def dymos_bias(strength: torch.Tensor, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The literal DyMoS bias ``-s * r ⊗ c`` as an additive mask ``[B, 1, L, L]``."""
    return -strength[:, None, None, None] * (r[:, None] * c[None, :])[None, None]


def naive_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    strength: torch.Tensor,
    span: ReferenceSpan,
    attn_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Explicit logits + bias + softmax: the reference every strategy is tested against."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    r, c = reference_indicators(span, q.shape[-2], q.dtype, q.device)
    logits = (q @ k.transpose(-1, -2)) * scale + dymos_bias(strength.to(q.dtype), r, c)
    extra = additive_mask(attn_mask, q.dtype)
    if extra is not None:
        logits = logits + extra
    return torch.softmax(logits, dim=-1) @ v


def _mask_attention(q, k, v, s, span, attn_mask, scale):
    r, c = reference_indicators(span, q.shape[-2], q.dtype, q.device)
    mask = dymos_bias(s, r, c)
    extra = additive_mask(attn_mask, q.dtype)
    if extra is not None:
        mask = mask + extra
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def _rows(mask: torch.Tensor | None, start: int, end: int | None) -> torch.Tensor | None:
    """Rows ``[start, end)`` of a mask that has a query axis; a query-broadcast mask is returned as is."""
    if mask is None or mask.shape[-2] == 1:
        return mask
    return mask[..., start:end, :]


def _split_attention(q, k, v, s, span, attn_mask, scale):
    """Unbiased rows run as stock; biased rows get a key-only mask ``[B, 1, 1, L]``.

    Without tokens after the video the biased rows run to the end of the sequence; slicing them as ``[b0:]``
    (not ``[b0:b1]``) keeps the output length exactly ``L`` for symbolic shapes during export.
    """
    b0 = span.biased_start
    b1 = span.biased_end if span.tokens_after_video else None
    extra = additive_mask(attn_mask, q.dtype)
    _, c = reference_indicators(span, k.shape[-2], q.dtype, q.device)
    key_bias = -s[:, None, None, None] * c[None, None, None, :]
    biased_mask = key_bias if extra is None else _rows(extra, b0, b1) + key_bias
    head = F.scaled_dot_product_attention(q[:, :, :b0], k, v, attn_mask=_rows(extra, 0, b0), scale=scale)
    out_biased = F.scaled_dot_product_attention(q[:, :, b0:b1], k, v, attn_mask=biased_mask, scale=scale)
    if b1 is None:
        return torch.cat([head, out_biased], dim=2)
    tail = F.scaled_dot_product_attention(q[:, :, b1:], k, v, attn_mask=_rows(extra, b1, None), scale=scale)
    return torch.cat([head, out_biased, tail], dim=2)


def _fold_attention(q, k, v, s, span, attn_mask, scale, pad_to: int = 1):
    """Fold the rank-one bias into one extra q/k channel: no mask, so fused kernels stay usable."""
    head_dim = q.shape[-1]
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    r, c = reference_indicators(span, q.shape[-2], q.dtype, q.device)
    batch, heads, length, _ = q.shape
    q_extra = r[None, None, :, None].expand(batch, heads, length, 1)
    k_extra = ((-s / scale)[:, None, None, None] * c[None, None, :, None]).expand(batch, heads, k.shape[-2], 1)
    pad = (-(head_dim + 1)) % pad_to
    q2 = F.pad(torch.cat([q, q_extra], dim=-1), (0, pad))
    k2 = F.pad(torch.cat([k, k_extra.to(k.dtype)], dim=-1), (0, pad))
    v2 = F.pad(v, (0, 1 + pad))
    out = F.scaled_dot_product_attention(q2, k2, v2, attn_mask=additive_mask(attn_mask, q.dtype), scale=scale)
    return out[..., :head_dim]


# (dtype, head dim) where cuDNN's attention kernel refused the call: flash from then on.
_CUDNN_REFUSED: set[tuple[torch.dtype, int]] = set()


def _attention_with_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unmasked attention and each query's log-sum-exp of its logits (fp32 ``[B, H, Lq]``).

    The kernels are those SDPA itself dispatches to, called directly because only they return the log-sum-exp:
    flash on CPU; on CUDA cuDNN's (what stock SDPA runs for half precision on Hopper) or flash for half precision,
    the memory-efficient kernel for fp32. CUDA's fused kernels want a head dim that is a multiple of 8: zero
    channels are appended to q, k and v (they add nothing to the logits) and cut from the output.
    """
    head_dim = q.shape[-1]
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    if q.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, scale=scale)
        return out, lse.float()
    pad = (-head_dim) % 8
    if pad:
        q, k, v = (F.pad(t, (0, pad)) for t in (q, k, v))
    half = q.dtype in (torch.float16, torch.bfloat16)
    out = lse = None
    if half and (q.dtype, q.shape[-1]) not in _CUDNN_REFUSED:
        try:
            out, lse = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True, scale=scale)[:2]
        except RuntimeError:
            _CUDNN_REFUSED.add((q.dtype, q.shape[-1]))
    if out is None and half and q.shape[-1] <= 256:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, scale=scale)[:2]
    elif out is None:
        out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True, scale=scale)[:2]
    lse = lse.reshape(*lse.shape[:2], -1)[..., : q.shape[-2]]  # cuDNN: [B, H, L, 1]; efficient: padded L
    return out[..., :head_dim], lse.float()


def _merge_attention(q, k, v, s, span, attn_mask, scale):
    """Attention over the key blocks before, at and after the reference frame, merged by their log-sum-exps.

    For a biased query every reference-frame logit moves by the same ``-s``, which is a shift of that block's
    log-sum-exp alone, so the merge is exact with unmasked kernels over the very keys stock attention reads: no
    mask, no extra channel. A model that passes its own mask (HunyuanVideo's padded text) takes ``split`` instead.
    """
    if attn_mask is not None:
        return _split_attention(q, k, v, s, span, attn_mask, scale)
    r, _ = reference_indicators(span, q.shape[-2], torch.float32, q.device)
    length = k.shape[-2]
    blocks = [(0, span.video_start), (span.video_start, span.biased_start), (span.biased_start, length)]
    outs, lses = [], []
    for index, (start, end) in enumerate(blocks):
        if end <= start:
            continue
        out, lse = _attention_with_lse(q, k[:, :, start:end], v[:, :, start:end], scale)
        if index == 1:  # the reference frame's keys: the bias on the rows it applies to
            lse = lse - s.float()[:, None, None] * r[None, None, :]
        outs.append(out)
        lses.append(lse)
    total = torch.logsumexp(torch.stack(lses), dim=0)
    merged = torch.zeros((*q.shape[:-1], v.shape[-1]), dtype=torch.float32, device=q.device)
    for out, lse in zip(outs, lses):
        merged.addcmul_(out, torch.exp(lse - total)[..., None])
    return merged.to(q.dtype)


_IMPLEMENTATIONS = {
    "mask": _mask_attention,
    "split": _split_attention,
    "fold": _fold_attention,
    "merge": _merge_attention,
    "naive": lambda q, k, v, s, span, attn_mask, scale: naive_attention(q, k, v, s, span, attn_mask, scale),
}


def expand_strength(strength: torch.Tensor, attention_batch: int) -> torch.Tensor:
    """Map a per-item strength ``[N]`` onto ``attention_batch`` rows.

    Models that fold extra axes into the batch (SVD's temporal attention runs one sequence per spatial
    position, batch index ``b * S + s``) need each item's strength repeated over its rows.
    """
    items = strength.shape[0]
    if items == attention_batch:
        return strength
    return strength.repeat_interleave(attention_batch // items)


def resolve_strategy(strategy: str, q: torch.Tensor) -> str:
    """``auto`` -> the strategy for these tensors (see :data:`AUTO_STRATEGY`); any other name unchanged."""
    if strategy != AUTO_STRATEGY:
        return strategy
    tracing = torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()
    return "merge" if q.is_cuda and not tracing else "split"


def biased_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    strength: torch.Tensor,
    span: ReferenceSpan,
    strategy: str = DEFAULT_STRATEGY,
    attn_mask: torch.Tensor | None = None,
    scale: float | None = None,
    fold_pad_to: int = 1,
) -> torch.Tensor:
    """Scaled-dot-product attention with the DyMoS bias, by the chosen exact strategy."""
    strategy = resolve_strategy(strategy, q)
    if strategy not in _IMPLEMENTATIONS:
        choices = ", ".join((AUTO_STRATEGY, *STRATEGIES, *EAGER_STRATEGIES))
        raise ValueError(f"unknown DyMoS strategy {strategy!r}; choose one of {choices}")
    s = expand_strength(strength, q.shape[0]).to(q.dtype)
    if strategy == "fold":
        return _fold_attention(q, k, v, s, span, attn_mask, scale, pad_to=fold_pad_to)
    return _IMPLEMENTATIONS[strategy](q, k, v, s, span, attn_mask, scale)
