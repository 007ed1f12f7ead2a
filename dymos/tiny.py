"""Tiny random-weight denoisers of every supported family, with matching example inputs.

They keep each real checkpoint's structural features (Wan 2.1's image context, CogVideoX 1.5's temporal
patching, HunyuanVideo I2V's token-replace conditioning, SVD's temporal blocks) at toy widths, so tests, the
probe and benchmarks can run the real diffusers classes on two CPU cores in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class TinyCase:
    """A tiny model: the real class name, a config, and a builder of forward kwargs."""

    name: str
    class_name: str
    config: dict[str, Any]
    make_inputs: Callable[["TinyCase", int, int, torch.Generator], dict[str, Any]] = field(repr=False)
    default_frames: int = 3

    def build(self, seed: int = 0) -> torch.nn.Module:
        import diffusers

        torch.manual_seed(seed)
        model = getattr(diffusers, self.class_name).from_config(self.config)
        return model.eval()

    def inputs(self, batch: int = 1, frames: int | None = None, seed: int = 0) -> dict[str, Any]:
        """Forward kwargs for ``batch`` items and ``frames`` latent frames, seeded."""
        generator = torch.Generator().manual_seed(seed)
        return self.make_inputs(self, batch, frames or self.default_frames, generator)


def _randn(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=generator)


def _wan_inputs(case: TinyCase, batch: int, frames: int, g: torch.Generator) -> dict[str, Any]:
    cfg = case.config
    inputs = {
        "hidden_states": _randn(g, batch, cfg["in_channels"], frames, 8, 8),
        "timestep": torch.full((batch,), 500.0),
        "encoder_hidden_states": _randn(g, batch, 512, cfg["text_dim"]),  # Wan I2V hard-codes 512 text tokens
        "return_dict": False,
    }
    if cfg.get("image_dim"):
        inputs["encoder_hidden_states_image"] = _randn(g, batch, 4, cfg["image_dim"])
    return inputs


def _cogvideox_inputs(case: TinyCase, batch: int, frames: int, g: torch.Generator) -> dict[str, Any]:
    cfg = case.config
    inputs = {
        "hidden_states": _randn(g, batch, frames, cfg["in_channels"], cfg["sample_height"], cfg["sample_width"]),
        "encoder_hidden_states": _randn(g, batch, cfg["max_text_seq_length"], cfg["text_embed_dim"]),
        "timestep": torch.full((batch,), 500, dtype=torch.long),
        "return_dict": False,
    }
    if cfg.get("ofs_embed_dim"):
        inputs["ofs"] = torch.full((batch,), 2.0)
    if cfg.get("use_rotary_positional_embeddings"):
        from diffusers.pipelines.cogvideo.pipeline_cogvideox_image2video import get_3d_rotary_pos_embed

        p, p_t = cfg["patch_size"], cfg.get("patch_size_t") or 1
        inputs["image_rotary_emb"] = get_3d_rotary_pos_embed(
            embed_dim=cfg["attention_head_dim"],
            crops_coords=((0, 0), (cfg["sample_height"] // p, cfg["sample_width"] // p)),
            grid_size=(cfg["sample_height"] // p, cfg["sample_width"] // p),
            temporal_size=frames // p_t,
            device=torch.device("cpu"),
        )
    return inputs


def _hunyuan_inputs(case: TinyCase, batch: int, frames: int, g: torch.Generator) -> dict[str, Any]:
    cfg = case.config
    text = 6
    mask = torch.ones(batch, text, dtype=torch.long)
    mask[:, -2:] = 0  # padded prompt tokens: exercises the model's own key mask
    return {
        "hidden_states": _randn(g, batch, cfg["in_channels"], frames, 8, 8),
        "timestep": torch.full((batch,), 500, dtype=torch.long),
        "encoder_hidden_states": _randn(g, batch, text, cfg["text_embed_dim"]),
        "encoder_attention_mask": mask,
        "pooled_projections": _randn(g, batch, cfg["pooled_projection_dim"]),
        "guidance": torch.full((batch,), 6000.0),
        "return_dict": False,
    }


def _ltx_inputs(case: TinyCase, batch: int, frames: int, g: torch.Generator) -> dict[str, Any]:
    cfg = case.config
    height = width = 4
    return {
        "hidden_states": _randn(g, batch, frames * height * width, cfg["in_channels"]),
        "encoder_hidden_states": _randn(g, batch, 6, cfg["caption_channels"]),
        "timestep": torch.full((batch, 1), 500.0),
        "encoder_attention_mask": torch.ones(batch, 6, dtype=torch.long),
        "num_frames": frames,
        "height": height,
        "width": width,
        "return_dict": False,
    }


def _svd_inputs(case: TinyCase, batch: int, frames: int, g: torch.Generator) -> dict[str, Any]:
    cfg = case.config
    return {
        "sample": _randn(g, batch, frames, cfg["in_channels"], 8, 8),
        "timestep": torch.tensor(0.5),
        "encoder_hidden_states": _randn(g, batch, 1, cfg["cross_attention_dim"]),
        "added_time_ids": torch.tensor([[6.0, 127.0, 0.02]]).repeat(batch, 1),
        "return_dict": False,
    }


_WAN = {
    "patch_size": [1, 2, 2], "num_attention_heads": 2, "attention_head_dim": 12, "in_channels": 12,
    "out_channels": 4, "text_dim": 16, "freq_dim": 16, "ffn_dim": 32, "num_layers": 2, "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "rope_max_seq_len": 32, "pos_embed_seq_len": None,
}
_COG = {
    "num_attention_heads": 2, "attention_head_dim": 16, "in_channels": 8, "out_channels": 4,
    "flip_sin_to_cos": True, "freq_shift": 0, "time_embed_dim": 16, "text_embed_dim": 16, "num_layers": 2,
    "dropout": 0.0, "attention_bias": True, "sample_width": 8, "sample_height": 8, "patch_size": 2,
    "temporal_compression_ratio": 4, "max_text_seq_length": 6, "activation_fn": "gelu-approximate",
    "timestep_activation_fn": "silu", "norm_elementwise_affine": True, "norm_eps": 1e-5,
    "spatial_interpolation_scale": 1.875, "temporal_interpolation_scale": 1.0,
    "use_rotary_positional_embeddings": True,
}

TINY_CASES: dict[str, TinyCase] = {
    case.name: case
    for case in (
        TinyCase("wan21", "WanTransformer3DModel", {**_WAN, "image_dim": 16, "added_kv_proj_dim": 24}, _wan_inputs),
        TinyCase("wan22", "WanTransformer3DModel", {**_WAN, "image_dim": None, "added_kv_proj_dim": None}, _wan_inputs),
        TinyCase(
            "cogvideox",
            "CogVideoXTransformer3DModel",
            {**_COG, "ofs_embed_dim": None, "sample_frames": 9, "patch_size_t": None,
             "use_learned_positional_embeddings": True, "patch_bias": True},
            _cogvideox_inputs,
        ),
        TinyCase(
            "cogvideox15",
            "CogVideoXTransformer3DModel",
            {**_COG, "ofs_embed_dim": 16, "sample_frames": 13, "patch_size_t": 2,
             "use_learned_positional_embeddings": False, "patch_bias": False},
            _cogvideox_inputs,
            default_frames=4,
        ),
        TinyCase(
            "hunyuanvideo",
            "HunyuanVideoTransformer3DModel",
            {"in_channels": 4, "out_channels": 4, "num_attention_heads": 2, "attention_head_dim": 16,
             "num_layers": 1, "num_single_layers": 1, "num_refiner_layers": 1, "mlp_ratio": 2.0, "patch_size": 2,
             "patch_size_t": 1, "qk_norm": "rms_norm", "guidance_embeds": True, "text_embed_dim": 16,
             "pooled_projection_dim": 8, "rope_theta": 256.0, "rope_axes_dim": [4, 6, 6],
             "image_condition_type": "token_replace"},
            _hunyuan_inputs,
        ),
        TinyCase(
            "ltx",
            "LTXVideoTransformer3DModel",
            {"in_channels": 8, "out_channels": 8, "patch_size": 1, "patch_size_t": 1, "num_attention_heads": 2,
             "attention_head_dim": 16, "cross_attention_dim": 32, "num_layers": 2,
             "activation_fn": "gelu-approximate", "qk_norm": "rms_norm_across_heads",
             "norm_elementwise_affine": False, "norm_eps": 1e-6, "caption_channels": 16, "attention_bias": True,
             "attention_out_bias": True},
            _ltx_inputs,
        ),
        TinyCase(
            "svd",
            "UNetSpatioTemporalConditionModel",
            {"sample_size": 8, "in_channels": 8, "out_channels": 4,
             "down_block_types": ["CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"],
             "up_block_types": ["UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"],
             "block_out_channels": [32, 64], "addition_time_embed_dim": 8,
             "projection_class_embeddings_input_dim": 24, "layers_per_block": 1, "cross_attention_dim": 16,
             "transformer_layers_per_block": 1, "num_attention_heads": [2, 4], "num_frames": 4},
            _svd_inputs,
            default_frames=4,
        ),
    )
}
