"""Where the reference frame sits in each supported diffusers model family — as data.

Each :class:`FamilyLayout` says which attention modules DyMoS patches, how to read the token grid (frames and
tokens per frame) from the denoiser's forward arguments, and where the video sits inside the attention
sequence. One code path (:func:`token_grid`, :meth:`FamilyLayout.span`) serves every family; adding a family
means adding a row, not a branch.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from dymos.attention import ReferenceSpan


@dataclass(frozen=True)
class TokenGrid:
    """The video part of one forward call: token-frames × tokens per token-frame."""

    frames: int
    tokens_per_frame: int

    @property
    def video_tokens(self) -> int:
        return self.frames * self.tokens_per_frame


@dataclass(frozen=True)
class FamilyLayout:
    """Data describing one diffusers denoiser class for DyMoS.

    ``latent_arg``/``latent_dims`` name the forward argument carrying the latent video and its axis order
    (``"BCFHW"``, ``"BFCHW"``, or ``"tokens"`` when the model receives packed tokens and the grid comes from the
    ``grid_args`` keyword arguments). ``patch_keys`` name the config entries holding the temporal and spatial
    patch sizes. ``video_position`` is ``"start"`` (video first, other tokens may follow), ``"end"`` (text first),
    or ``"only"``. ``temporal_sequences`` marks models whose patched attention runs over frames at each spatial
    position (one token per frame, spatial positions folded into the batch).
    """

    family: str
    class_name: str
    attention_patterns: tuple[str, ...]
    latent_arg: str
    latent_dims: str
    video_position: str
    patch_keys: tuple[str | None, str | None] = (None, None)
    grid_args: tuple[str, str, str] | None = None
    temporal_sequences: bool = False
    timestep_arg: str = "timestep"
    pipelines: tuple[str, ...] = ()

    def matches(self, module_name: str) -> bool:
        """Whether the attention module at ``module_name`` is a self-attention DyMoS should bias."""
        return any(fnmatch.fnmatchcase(module_name, p) for p in self.attention_patterns)

    def span(self, grid: TokenGrid, sequence_length: int) -> ReferenceSpan:
        """The reference span inside an attention sequence of ``sequence_length`` tokens."""
        tokens_per_frame = 1 if self.temporal_sequences else grid.tokens_per_frame
        video_tokens = grid.frames if self.temporal_sequences else grid.video_tokens
        start = sequence_length - video_tokens if self.video_position == "end" else 0
        return ReferenceSpan(
            video_start=start,
            tokens_per_frame=tokens_per_frame,
            video_tokens=video_tokens,
            tokens_after_video=self.video_position == "start",
        )


FAMILIES: dict[str, FamilyLayout] = {
    layout.family: layout
    for layout in (
        FamilyLayout(
            family="wan",
            class_name="WanTransformer3DModel",
            attention_patterns=("blocks.*.attn1",),
            latent_arg="hidden_states",
            latent_dims="BCFHW",
            video_position="only",
            patch_keys=("patch_size", "patch_size"),
            pipelines=("WanImageToVideoPipeline",),
        ),
        FamilyLayout(
            family="cogvideox",
            class_name="CogVideoXTransformer3DModel",
            attention_patterns=("transformer_blocks.*.attn1",),
            latent_arg="hidden_states",
            latent_dims="BFCHW",
            video_position="end",
            patch_keys=("patch_size_t", "patch_size"),
            pipelines=("CogVideoXImageToVideoPipeline",),
        ),
        FamilyLayout(
            family="hunyuanvideo",
            class_name="HunyuanVideoTransformer3DModel",
            attention_patterns=("transformer_blocks.*.attn", "single_transformer_blocks.*.attn"),
            latent_arg="hidden_states",
            latent_dims="BCFHW",
            video_position="start",
            patch_keys=("patch_size_t", "patch_size"),
            pipelines=("HunyuanVideoImageToVideoPipeline",),
        ),
        FamilyLayout(
            family="ltx",
            class_name="LTXVideoTransformer3DModel",
            attention_patterns=("transformer_blocks.*.attn1",),
            latent_arg="hidden_states",
            latent_dims="tokens",
            video_position="only",
            grid_args=("num_frames", "height", "width"),
            pipelines=("LTXImageToVideoPipeline",),
        ),
        FamilyLayout(
            family="svd",
            class_name="UNetSpatioTemporalConditionModel",
            attention_patterns=("*.temporal_transformer_blocks.*.attn1",),
            latent_arg="sample",
            latent_dims="BFCHW",
            video_position="only",
            temporal_sequences=True,
            pipelines=("StableVideoDiffusionPipeline",),
        ),
    )
}


class UnsupportedModelError(TypeError):
    """Raised for a denoiser class DyMoS has no layout for."""


def supported_classes() -> list[str]:
    return sorted(layout.class_name for layout in FAMILIES.values())


def layout_for(model: Any) -> FamilyLayout:
    """The layout of ``model``'s class (matched by class name along its MRO, so subclasses work)."""
    names = {cls.__name__ for cls in type(model).__mro__}
    for layout in FAMILIES.values():
        if layout.class_name in names:
            return layout
    raise UnsupportedModelError(
        f"DyMoS does not support {type(model).__name__}; supported denoiser classes: {', '.join(supported_classes())}"
    )


def _patch_size(config: Any, key: str | None, axis: int) -> int:
    """A config's patch size along ``axis`` (0: time, 1: height, 2: width): a ``(t, h, w)`` tuple, an int, or
    absent (1)."""
    value = None if key is None else config.get(key)
    if value is None:
        return 1
    return int(value[axis]) if isinstance(value, (tuple, list)) else int(value)


def patch_sizes(layout: FamilyLayout, config: Any) -> tuple[int, int, int]:
    """The (time, height, width) patch sizes of a model with ``config``, read through the layout's patch keys."""
    temporal_key, spatial_key = layout.patch_keys
    return (
        _patch_size(config, temporal_key, 0),
        _patch_size(config, spatial_key, 1),
        _patch_size(config, spatial_key, 2),
    )


def token_grid(layout: FamilyLayout, config: Any, bound: dict[str, Any]) -> TokenGrid:
    """Read the token grid of one forward call from its bound arguments and the model config."""
    if layout.latent_dims == "tokens":
        frames, height, width = (bound.get(name) for name in layout.grid_args)
        if frames is None or height is None or width is None:
            raise ValueError(f"{layout.class_name} needs {', '.join(layout.grid_args)} to locate the reference frame")
        return TokenGrid(frames=frames, tokens_per_frame=height * width)
    latent = bound.get(layout.latent_arg)
    if latent is None:
        raise ValueError(f"{layout.class_name}.forward was called without `{layout.latent_arg}`")
    shape = dict(zip(layout.latent_dims, latent.shape))
    p_t, p_h, p_w = patch_sizes(layout, config)
    return TokenGrid(frames=shape["F"] // p_t, tokens_per_frame=(shape["H"] // p_h) * (shape["W"] // p_w))
