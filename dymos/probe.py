"""The attention-mass probe: how much attention non-reference queries give to reference-frame keys.

This is the diagnostic that shows DyMoS's mechanism (README, *The formulation*): with near-uniform attention over F
frames the mass is about 1/F at s = 0 and follows m·e^(-s) / (m·e^(-s) + 1 - m). The probe runs the patched model at
each strength and, at every selected layer, recomputes that layer's biased attention probabilities explicitly for the
biased query rows only (memory O(B·H·L_biased·L)).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from dymos.attention import ReferenceSpan, additive_mask, expand_strength, reference_indicators
from dymos.denoiser import DyMoSDenoiser


@dataclass
class MassReport:
    """Mean reference-key attention mass per strength and layer."""

    strengths: list[float]
    layers: list[str]
    per_layer: dict[float, dict[str, float]] = field(default_factory=dict)
    uniform: float = 0.0  # the mass of uniform attention over the video: tokens_per_frame / video_tokens

    def mean(self, strength: float) -> float:
        values = self.per_layer[strength].values()
        return sum(values) / len(values)

    def as_dict(self) -> dict[str, Any]:
        return {
            "uniform_mass": self.uniform,
            "strengths": [
                {"strength": s, "mean_mass": self.mean(s), "per_layer": self.per_layer[s]} for s in self.strengths
            ],
        }

    def table(self) -> str:
        """A plain-text table: one row per layer, one column per strength, the mean last."""
        head = ["layer", *(f"s={s:g}" for s in self.strengths)]
        rows = [[name, *(f"{self.per_layer[s][name]:.4f}" for s in self.strengths)] for name in self.layers]
        rows.append(["mean", *(f"{self.mean(s):.4f}" for s in self.strengths)])
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines = [
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
            for r in [head, *rows]
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(f"(uniform attention over the video would give {self.uniform:.4f})")
        return "\n".join(lines)


def _reference_mass(
    query: torch.Tensor,
    key: torch.Tensor,
    strength: torch.Tensor,
    span: ReferenceSpan,
    attn_mask: torch.Tensor | None,
    scale: float | None,
) -> float:
    """Mean over batch, heads and biased queries of the probability mass on reference keys."""
    b0, b1 = span.biased_start, span.biased_end
    if b1 <= b0:
        raise ValueError("the inputs hold one token-frame: no query to bias, no mass to measure; give more frames")
    q = query[:, :, b0:b1].float()
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    _, c = reference_indicators(span, key.shape[-2], torch.float32, q.device)
    s = expand_strength(strength, q.shape[0]).float()
    logits = (q @ key.float().transpose(-1, -2)) * scale - s[:, None, None, None] * c
    extra = additive_mask(attn_mask, torch.float32)
    if extra is not None:
        logits = logits + (extra if extra.shape[-2] == 1 else extra[..., b0:b1, :])
    probs = torch.softmax(logits, dim=-1)
    return float((probs * c).sum(-1).mean())


def attention_mass(
    model: torch.nn.Module,
    inputs: dict[str, Any],
    strengths: Sequence[float],
    *,
    layers: Iterable[int | str] | None = None,
) -> MassReport:
    """Run ``model(**inputs)`` at each strength with DyMoS on and report reference-key attention mass."""
    handle = DyMoSDenoiser(model, 0.0, layers=layers)
    report = MassReport(strengths=[float(s) for s in strengths], layers=list(handle.layers))
    current: dict[str, float] = {}

    def observe(layer, query, key, strength, span, attn_mask, scale):
        current[layer] = _reference_mass(query, key, strength, span, attn_mask, scale)
        report.uniform = span.tokens_per_frame / span.video_tokens

    handle.observers.append(observe)
    batch = next(v for v in inputs.values() if isinstance(v, torch.Tensor) and v.ndim >= 3).shape[0]
    try:
        with torch.no_grad():
            for s in report.strengths:
                current = {}
                with handle.strength_input(torch.full((batch,), s)):
                    model(**inputs)
                report.per_layer[s] = {name: current[name] for name in handle.layers}
    finally:
        handle.remove()
    return report
