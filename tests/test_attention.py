"""Every strategy equals the naive explicit-softmax reference, for every kind of sequence layout."""

from __future__ import annotations

import pytest
import torch

from dymos.attention import (
    EAGER_STRATEGIES,
    STRATEGIES,
    ReferenceSpan,
    biased_attention,
    naive_attention,
    reference_indicators,
    resolve_strategy,
)
from tests.conftest import FP32_ATOL

# (name, sequence length, span): video only (Wan, LTX), text first (CogVideoX), text after (HunyuanVideo), and
# SVD's temporal sequences (one token per frame).
SPANS = {
    "video_only": (24, ReferenceSpan(video_start=0, tokens_per_frame=8, video_tokens=24)),
    "text_first": (29, ReferenceSpan(video_start=5, tokens_per_frame=8, video_tokens=24)),
    "text_after": (30, ReferenceSpan(video_start=0, tokens_per_frame=8, video_tokens=24, tokens_after_video=True)),
    "temporal": (5, ReferenceSpan(video_start=0, tokens_per_frame=1, video_tokens=5)),
}
STRENGTHS = (0.0, 0.5, 2.0, -1.0)
ALL_STRATEGIES = (*STRATEGIES, *EAGER_STRATEGIES)


def _qkv(batch: int, length: int, heads: int = 2, dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, heads, length, dim, generator=g) for _ in range(3))


def _key_mask(batch: int, length: int, kind: str) -> torch.Tensor | None:
    if kind == "none":
        return None
    keep = torch.ones(batch, 1, 1, length, dtype=torch.bool)
    keep[:, :, :, -2:] = False  # e.g. padded text tokens
    return keep if kind == "bool" else torch.where(keep, 0.0, -1e4)


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
@pytest.mark.parametrize("layout", sorted(SPANS))
@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_strategy_matches_naive(strategy: str, layout: str, mask_kind: str) -> None:
    length, span = SPANS[layout]
    q, k, v = _qkv(4, length)
    mask = _key_mask(4, length, mask_kind)
    s = torch.tensor(STRENGTHS)  # one strength per item: a mixed batch
    out = biased_attention(q, k, v, s, span, strategy, attn_mask=mask)
    ref = naive_attention(q, k, v, s, span, attn_mask=mask)
    torch.testing.assert_close(out, ref, atol=FP32_ATOL, rtol=0)


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_mixed_batch_items_equal_single_runs(strategy: str) -> None:
    length, span = SPANS["text_after"]
    q, k, v = _qkv(4, length, seed=1)
    s = torch.tensor(STRENGTHS)
    batched = biased_attention(q, k, v, s, span, strategy)
    for i in range(4):
        single = biased_attention(q[i : i + 1], k[i : i + 1], v[i : i + 1], s[i : i + 1], span, strategy)
        torch.testing.assert_close(batched[i : i + 1], single, atol=FP32_ATOL, rtol=0)


def test_fold_padding_is_exact() -> None:
    length, span = SPANS["video_only"]
    q, k, v = _qkv(2, length, dim=12)
    s = torch.tensor([1.5, -0.5])
    padded = biased_attention(q, k, v, s, span, "fold", fold_pad_to=8)
    torch.testing.assert_close(padded, naive_attention(q, k, v, s, span), atol=FP32_ATOL, rtol=0)


def test_explicit_scale_is_honoured() -> None:
    length, span = SPANS["text_first"]
    q, k, v = _qkv(2, length)
    s = torch.tensor([2.0, 2.0])
    for strategy in ALL_STRATEGIES:
        out = biased_attention(q, k, v, s, span, strategy, scale=0.3)
        torch.testing.assert_close(out, naive_attention(q, k, v, s, span, scale=0.3), atol=FP32_ATOL, rtol=0)


def test_strength_repeats_over_folded_batch() -> None:
    """SVD folds spatial positions into the batch (index b*S + s): item strengths repeat over S rows."""
    length, span = SPANS["temporal"]
    q, k, v = _qkv(6, length)  # 2 items x 3 spatial positions
    out = biased_attention(q, k, v, torch.tensor([0.0, 3.0]), span, "split")
    ref = naive_attention(q, k, v, torch.tensor([0.0, 0.0, 0.0, 3.0, 3.0, 3.0]), span)
    torch.testing.assert_close(out, ref, atol=FP32_ATOL, rtol=0)


def test_reference_indicators_follow_the_span() -> None:
    r, c = reference_indicators(SPANS["text_first"][1], 29, torch.float32, torch.device("cpu"))
    assert c.nonzero().flatten().tolist() == list(range(5, 13))
    assert r.nonzero().flatten().tolist() == list(range(13, 29))
    r, c = reference_indicators(SPANS["text_after"][1], 30, torch.float32, torch.device("cpu"))
    assert c.nonzero().flatten().tolist() == list(range(0, 8))
    assert r.nonzero().flatten().tolist() == list(range(8, 24))


def test_unknown_strategy_is_an_error() -> None:
    q, k, v = _qkv(1, 24)
    with pytest.raises(ValueError, match="mask, split, fold"):
        biased_attention(q, k, v, torch.tensor([1.0]), SPANS["video_only"][1], "flash")


def test_auto_is_split_on_cpu() -> None:
    """``auto`` (the patch default) picks ``merge`` for CUDA tensors only (tests/test_cuda.py); on CPU it is split."""
    length, span = SPANS["text_first"]
    q, k, v = _qkv(2, length)
    s = torch.tensor([2.0, 0.5])
    assert resolve_strategy("auto", q) == "split" and resolve_strategy("fold", q) == "fold"
    assert torch.equal(biased_attention(q, k, v, s, span, "auto"), biased_attention(q, k, v, s, span, "split"))
    with pytest.raises(ValueError, match="unknown DyMoS strategy 'bogus'; choose one of auto, mask"):
        biased_attention(q, k, v, s, span, "bogus")


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_bf16_on_cpu_stays_within_bf16_rounding(strategy: str) -> None:
    """Half-precision inputs (the CPU flash kernel's bf16 path for ``merge``): within 2e-2 of the fp32 reference
    on the same (bf16-rounded) inputs; outputs are O(1) and bf16 keeps 8 bits of mantissa (~4e-3 relative)."""
    length, span = SPANS["text_after"]
    q, k, v = (t.to(torch.bfloat16) for t in _qkv(4, length, seed=3))
    s = torch.tensor(STRENGTHS)
    out = biased_attention(q, k, v, s, span, strategy)
    assert out.dtype == torch.bfloat16
    reference = naive_attention(q.float(), k.float(), v.float(), s, span)
    torch.testing.assert_close(out.float(), reference, atol=2e-2, rtol=0)
