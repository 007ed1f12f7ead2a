"""Export specs as data: per family and submodel, the graph's inputs, outputs, dynamic axes and profiles.

Shapes and dtypes come from one source — the example inputs of :mod:`dymos.inputs` — and a spec only adds what
an export needs on top: which axes are dynamic (named dims shared across inputs), how the runtime tensor
``motion_strength`` enters, and the min/opt/max range of every dynamic dim (TensorRT optimisation profiles and
torch.export ``Dim`` bounds both derive from it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from dymos.inputs import default_frames, example_inputs
from dymos.layouts import FAMILIES, patch_sizes

STRENGTH_INPUT = "motion_strength"
OUTPUT_NAME = "noise_pred"


@dataclass(frozen=True)
class DimRange:
    """Bounds of one dynamic dim: ``opt`` is the shape TensorRT tunes for."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ValueError(f"need 1 <= min <= opt <= max, got {self}")


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: ``shape`` holds ints (static) and dim names (dynamic)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def dynamic_axes(self) -> dict[int, str]:
        return {axis: dim for axis, dim in enumerate(self.shape) if isinstance(dim, str)}

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class FamilyExport:
    """How one family's denoiser is exported: dynamic axes per input (by name) and graph-specific adapters.

    ``packed_latents`` marks models that take packed tokens ``[B, L, C]`` (LTX): the exported graph takes the
    5-D latent ``[B, C, F, H, W]`` and packs inside, so frames and resolution stay dynamic; its
    ``per_token_inputs`` (LTX I2V's per-token timestep, 0 on the conditioning frame) enter as ``[B, F, H, W]``
    and are flattened the same way. ``rotary_inputs
    marks models whose RoPE tables the pipeline computes outside the model (CogVideoX): the graph computes them
    from the latent's shape with the pipeline's own function. The compression factors are the family's VAE's,
    used to turn video sizes (frames, pixels) into latent sizes.
    """

    family: str
    dynamic: dict[str, dict[int, str]]
    temporal_compression: int
    spatial_compression: int
    packed_latents: bool = False
    per_token_inputs: tuple[str, ...] = ()
    rotary_inputs: bool = False
    # The text length is the pipeline's (its __call__'s max_sequence_length) when it has a text encoder; else the
    # family sample's. False where the model fixes it (CogVideoX's max_text_seq_length).
    text_tokens_from_pipeline: bool = False
    # The longest text a dynamic ``text`` dim takes (its profile's max), where the pipeline's prompts vary in length.
    max_text_tokens: int | None = None
    # When the frame count must be fixed at export: always (flag None) or when a config flag is set, and why.
    static_frames_when: str | None = None
    static_frames_reason: str | None = None

    def static_frames(self, config: dict[str, Any]) -> bool:
        if self.static_frames_reason is None:
            return False
        return self.static_frames_when is None or bool(config.get(self.static_frames_when))


FAMILY_EXPORTS: dict[str, FamilyExport] = {
    spec.family: spec
    for spec in (
        FamilyExport(
            "wan",
            {
                "hidden_states": {0: "batch", 2: "frames", 3: "height", 4: "width"},
                "timestep": {0: "batch"},
                "encoder_hidden_states": {0: "batch"},
                "encoder_hidden_states_image": {0: "batch"},
            },
            temporal_compression=4,
            spatial_compression=8,
            text_tokens_from_pipeline=True,
        ),
        FamilyExport(
            "cogvideox",
            {
                "hidden_states": {0: "batch", 1: "frames"},
                "encoder_hidden_states": {0: "batch"},
                "timestep": {0: "batch"},
                "ofs": {0: "batch"},
            },
            temporal_compression=4,
            spatial_compression=8,
            rotary_inputs=True,
            static_frames_when="use_learned_positional_embeddings",
            static_frames_reason=(
                "CogVideoX 1.0's learned positional embedding is built for sample_frames; other counts take another "
                "code path in diffusers, so the model itself fixes the frame count"
            ),
        ),
        FamilyExport(
            "hunyuanvideo",
            {
                "hidden_states": {0: "batch", 2: "frames"},
                "timestep": {0: "batch"},
                "encoder_hidden_states": {0: "batch", 1: "text"},
                "encoder_attention_mask": {0: "batch", 1: "text"},
                "pooled_projections": {0: "batch"},
                "guidance": {0: "batch"},
            },
            temporal_compression=4,
            spatial_compression=8,
            # HunyuanVideo-I2V's prompt embeddings: image tokens + text (396 at the pipeline's defaults), and its
            # negative prompt's have another length (image tokens interleaved by 2: 540)
            max_text_tokens=1024,
        ),
        FamilyExport(
            "ltx",
            {
                "hidden_states": {0: "batch", 2: "frames", 3: "height", 4: "width"},
                "encoder_hidden_states": {0: "batch"},
                "timestep": {0: "batch", 1: "frames", 2: "height", 3: "width"},
                "encoder_attention_mask": {0: "batch"},
            },
            temporal_compression=8,
            spatial_compression=32,
            packed_latents=True,
            per_token_inputs=("timestep",),
            text_tokens_from_pipeline=True,
        ),
        FamilyExport(
            "svd",
            {
                "sample": {0: "batch", 1: "frames"},
                "encoder_hidden_states": {0: "batch"},
                "added_time_ids": {0: "batch"},
            },
            temporal_compression=1,
            spatial_compression=8,
            static_frames_reason=(
                "torch.export cannot prove the frame-count guards of diffusers' SVD UNet (repeat_interleave with "
                "output_size), so each frame count is its own export; SVD runs at a fixed frame count (14 or 25)"
            ),
        ),
    )
}
assert set(FAMILY_EXPORTS) == set(FAMILIES), "every family needs an export spec"


@dataclass(frozen=True)
class ExportSpec:
    """The denoiser graph of one model at one export size: what the manifest records and the runtime feeds."""

    family: str
    submodel: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dims: dict[str, DimRange]
    fixed_kwargs: dict[str, Any] = field(default_factory=dict)
    multiples: dict[str, int] = field(default_factory=dict)  # dims that must be multiples of a patch size
    # Wan 2.2 TI2V (its pipeline's expand_timesteps) and LTX I2V: the graph takes one timestep per item and hands the
    # model one per token, 0 on the first latent frame's tokens (where the image latent stands), as the pipeline does.
    zero_timestep_first_frame: bool = False

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    def profile(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """TensorRT-style ``{input: (min_shape, opt_shape, max_shape)}``."""

        def shape(t: TensorSpec, which: str) -> tuple[int, ...]:
            return tuple(getattr(self.dims[d], which) if isinstance(d, str) else d for d in t.shape)

        return {t.name: (shape(t, "min"), shape(t, "opt"), shape(t, "max")) for t in self.inputs}

    def as_dict(self) -> dict[str, Any]:
        entry = {
            "family": self.family,
            "submodel": self.submodel,
            "inputs": [t.as_dict() for t in self.inputs],
            "outputs": [t.as_dict() for t in self.outputs],
            "dims": {
                name: {"min": r.min, "opt": r.opt, "max": r.max, "multiple_of": self.multiples.get(name, 1)}
                for name, r in self.dims.items()
            },
        }
        if self.zero_timestep_first_frame:
            # one per item in; per token inside the graph: 0 on the first latent frame, t elsewhere
            entry["timestep"] = "zero_on_first_frame"
        return entry


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def sample_inputs(
    family: str,
    config: dict[str, Any],
    *,
    batch: int,
    frames: int | None,
    height: int | None = None,
    width: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    text_tokens: int | None = None,
    zero_timestep_first_frame: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Graph inputs (ordered, tensors only, strength excluded) and the fixed non-tensor kwargs, for one size.

    Starts from :func:`dymos.inputs.example_inputs` and applies the family's export adapters;
    ``zero_timestep_first_frame`` (see :class:`ExportSpec`): the timestep stays one per item.
    """
    spec = FAMILY_EXPORTS[family]
    kwargs = example_inputs(
        family, config, batch=batch, frames=frames, height=height, width=width, seed=seed, text_tokens=text_tokens
    )
    if spec.packed_latents:
        frames_, h, w = kwargs.pop("num_frames"), kwargs.pop("height"), kwargs.pop("width")
        tokens = kwargs["hidden_states"]
        kwargs["hidden_states"] = tokens.reshape(batch, frames_, h, w, -1).permute(0, 4, 1, 2, 3).contiguous()
        for name in spec.per_token_inputs:
            if name == "timestep" and zero_timestep_first_frame:
                kwargs[name] = kwargs[name].reshape(batch, -1)[:, 0].contiguous()
                continue
            kwargs[name] = kwargs[name].expand(batch, frames_ * h * w).reshape(batch, frames_, h, w).contiguous()
    if spec.rotary_inputs:
        kwargs.pop("image_rotary_emb", None)
    tensors = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    fixed = {k: v for k, v in kwargs.items() if not isinstance(v, torch.Tensor)}
    tensors = {k: v.to(dtype) if v.is_floating_point() and k not in ("timestep",) else v for k, v in tensors.items()}
    return tensors, fixed


def build_spec(
    family: str,
    config: dict[str, Any],
    *,
    batch: int = 1,
    frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    max_batch: int = 4,
    max_frames: int | None = None,
    dtype: torch.dtype = torch.float32,
    text_tokens: int | None = None,
    zero_timestep_first_frame: bool = False,
) -> ExportSpec:
    """The denoiser's export spec at an export size (the TensorRT ``opt`` point) with ranges around it;
    ``text_tokens``: the text length the pipeline feeds (None: the family sample's); ``zero_timestep_first_frame``:
    see :class:`ExportSpec`."""
    if family not in FAMILY_EXPORTS:
        raise ValueError(f"no export spec for family {family!r}; known: {', '.join(FAMILY_EXPORTS)}")
    frames = frames or default_frames(config)
    tensors, fixed = sample_inputs(
        family,
        config,
        batch=batch,
        frames=frames,
        height=height,
        width=width,
        dtype=dtype,
        text_tokens=text_tokens,
        zero_timestep_first_frame=zero_timestep_first_frame,
    )
    family_export = FAMILY_EXPORTS[family]
    dynamic = family_export.dynamic
    inputs = []
    sizes: dict[str, int] = {}
    for name, tensor in tensors.items():
        axes = {axis: dim for axis, dim in dynamic.get(name, {}).items() if axis < tensor.ndim}
        shape = tuple(axes.get(axis, size) for axis, size in enumerate(tensor.shape))
        for axis, dim in axes.items():
            sizes[dim] = tensor.shape[axis]
        inputs.append(TensorSpec(name, _dtype_name(tensor), shape))
    inputs.append(TensorSpec(STRENGTH_INPUT, "float32", ("batch",)))
    p_t, _, p_s = patch_sizes(FAMILIES[family], config)
    static_frames = family_export.static_frames(config)
    ranges = {
        "batch": DimRange(1, batch, max(batch, max_batch)),
        "frames": DimRange(frames, frames, frames)
        if static_frames
        else DimRange(2 * p_t, frames, max(frames, max_frames or 4 * frames)),
    }
    for dim, size in sizes.items():
        if dim not in ranges:
            longest = family_export.max_text_tokens if dim == "text" else None
            ranges[dim] = DimRange(2, size, max(2 * size, longest or 0))
    multiples = {"frames": p_t, "height": p_s, "width": p_s}
    multiples = {d: m for d, m in multiples.items() if d in ranges and m > 1}
    for dim, m in multiples.items():  # keep every bound a multiple of the patch size
        r = ranges[dim]
        ranges[dim] = DimRange(-(-r.min // m) * m, r.opt, max(r.opt, r.max // m * m))
    fixed_dims = {name: r.min for name, r in ranges.items() if r.min == r.max}
    inputs = [TensorSpec(t.name, t.dtype, tuple(fixed_dims.get(d, d) for d in t.shape)) for t in inputs]
    latent_name = FAMILIES[family].latent_arg
    latent = next(t for t in inputs if t.name == latent_name)
    out_channels = config.get("out_channels") or config["in_channels"]
    graph_dims = "BCFHW" if family_export.packed_latents else FAMILIES[family].latent_dims  # packed: 5-D in-graph
    channel_axis = graph_dims.index("C")
    out_shape = tuple(out_channels if axis == channel_axis else d for axis, d in enumerate(latent.shape))
    outputs = (TensorSpec(OUTPUT_NAME, latent.dtype, out_shape),)
    return ExportSpec(family, "denoiser", tuple(inputs), outputs, ranges, fixed, multiples, zero_timestep_first_frame)
