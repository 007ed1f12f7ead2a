"""Example forward inputs for each supported family, from a model config alone.

Used by the probe, tests, export sample inputs and benchmarks: random latents and conditioning of the shapes
each diffusers denoiser expects, for a chosen batch, latent frame count and latent height/width. Shapes follow
the pipelines (e.g. Wan I2V's 512 text tokens, CogVideoX's padded text, SVD's three added time ids).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

WAN21_IMAGE_TOKENS = 257  # what Wan 2.1 I2V's image encoder gives; the exported denoiser takes exactly this many

InputBuilder = Callable[[dict[str, Any], int, int, int, int, torch.Generator], dict[str, Any]]


def _randn(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=generator)


def _wan(cfg: dict[str, Any], batch: int, frames: int, height: int, width: int, g: torch.Generator) -> dict:
    image_context = cfg.get("added_kv_proj_dim") is not None
    inputs = {
        "hidden_states": _randn(g, batch, cfg["in_channels"], frames, height, width),
        "timestep": torch.full((batch,), 500.0),
        # Wan I2V's processor hard-codes 512 text tokens when the image-context path exists.
        "encoder_hidden_states": _randn(g, batch, 512 if image_context else 16, cfg["text_dim"]),
        "return_dict": False,
    }
    if image_context:  # Wan 2.1's CLIP (ViT-H/14 at 224 px): 16 x 16 patches + the class token
        inputs["encoder_hidden_states_image"] = _randn(g, batch, WAN21_IMAGE_TOKENS, cfg["image_dim"])
    return inputs


def first_frame_zero_timesteps(timestep: torch.Tensor, frames: int, tokens_per_frame: int) -> torch.Tensor:
    """``[B]`` timesteps -> ``[B, frames * tokens_per_frame]``: 0 on the first latent frame's tokens, ``t`` on the
    others; the same product (0/1 mask times ``t``, frame-major) as ``WanImageToVideoPipeline`` with
    ``expand_timesteps`` and ``LTXImageToVideoPipeline`` form, so the values are bit-equal."""
    later = torch.arange(frames * tokens_per_frame, device=timestep.device) >= tokens_per_frame
    return later.to(timestep.dtype)[None, :] * timestep[:, None]


def cogvideox_rotary_embedding(cfg: dict[str, Any], frames: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
    """CogVideoX's RoPE tables for a latent of ``frames`` x ``height`` x ``width``, computed by the pipeline's own
    method (1.0 and 1.5 differ), so denoiser inputs match what ``CogVideoXImageToVideoPipeline`` feeds."""
    from types import SimpleNamespace

    from diffusers import CogVideoXImageToVideoPipeline

    shim = SimpleNamespace(vae_scale_factor_spatial=1, transformer=SimpleNamespace(config=SimpleNamespace(**cfg)))
    return CogVideoXImageToVideoPipeline._prepare_rotary_positional_embeddings(
        shim, height, width, frames, torch.device("cpu")
    )


def _cogvideox(cfg: dict[str, Any], batch: int, frames: int, height: int, width: int, g: torch.Generator) -> dict:
    inputs = {
        "hidden_states": _randn(g, batch, frames, cfg["in_channels"], height, width),
        "encoder_hidden_states": _randn(g, batch, cfg["max_text_seq_length"], cfg["text_embed_dim"]),
        "timestep": torch.full((batch,), 500, dtype=torch.long),
        "return_dict": False,
    }
    if cfg.get("ofs_embed_dim"):
        inputs["ofs"] = torch.full((batch,), 2.0)
    if cfg.get("use_rotary_positional_embeddings"):
        inputs["image_rotary_emb"] = cogvideox_rotary_embedding(cfg, frames, height, width)
    return inputs


def _hunyuanvideo(cfg: dict[str, Any], batch: int, frames: int, height: int, width: int, g: torch.Generator) -> dict:
    text = 6
    mask = torch.ones(batch, text, dtype=torch.long)
    mask[:, -2:] = 0  # padded prompt tokens: exercises the model's own key mask
    return {
        "hidden_states": _randn(g, batch, cfg["in_channels"], frames, height, width),
        "timestep": torch.full((batch,), 500.0),  # the pipeline passes float32 flow-matching timesteps
        "encoder_hidden_states": _randn(g, batch, text, cfg["text_embed_dim"]),
        "encoder_attention_mask": mask,
        "pooled_projections": _randn(g, batch, cfg["pooled_projection_dim"]),
        "guidance": torch.full((batch,), 6000.0),
        "return_dict": False,
    }


def _ltx(cfg: dict[str, Any], batch: int, frames: int, height: int, width: int, g: torch.Generator) -> dict:
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


def _svd(cfg: dict[str, Any], batch: int, frames: int, height: int, width: int, g: torch.Generator) -> dict:
    cross = cfg["cross_attention_dim"]
    return {
        "sample": _randn(g, batch, frames, cfg["in_channels"], height, width),
        "timestep": torch.tensor(0.5),
        "encoder_hidden_states": _randn(g, batch, 1, cross if isinstance(cross, int) else cross[0]),
        "added_time_ids": torch.tensor([[6.0, 127.0, 0.02]]).repeat(batch, 1),
        "return_dict": False,
    }


BUILDERS: dict[str, InputBuilder] = {
    "wan": _wan,
    "cogvideox": _cogvideox,
    "hunyuanvideo": _hunyuanvideo,
    "ltx": _ltx,
    "svd": _svd,
}


def default_frames(config: dict[str, Any]) -> int:
    """A small latent frame count the model accepts: three token-frames' worth, even with temporal patching."""
    return 3 * int(config.get("patch_size_t") or 1)


def example_inputs(
    family: str,
    config: dict[str, Any],
    *,
    batch: int = 1,
    frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    seed: int = 0,
    text_tokens: int | None = None,
) -> dict[str, Any]:
    """Seeded forward kwargs for a ``family`` model with ``config``; height/width are latent sizes.

    CogVideoX with learned positional embeddings only runs at its ``sample_height``/``sample_width``, so those
    are the defaults there; elsewhere 8×8 (4×4 packed tokens for LTX). ``text_tokens`` replaces the family's
    sample text length (e.g. a Wan pipeline's ``max_sequence_length``; None: the family's).
    """
    if family not in BUILDERS:
        raise ValueError(f"no example inputs for family {family!r}; known: {', '.join(BUILDERS)}")
    default = (4, 4) if family == "ltx" else (8, 8)
    if family == "cogvideox" and config.get("use_learned_positional_embeddings"):
        default = (config["sample_height"], config["sample_width"])
    generator = torch.Generator().manual_seed(seed)
    frames = frames or default_frames(config)
    inputs = BUILDERS[family](dict(config), batch, frames, height or default[0], width or default[1], generator)
    text = inputs["encoder_hidden_states"]
    if text_tokens is not None and text_tokens != text.shape[1]:
        inputs["encoder_hidden_states"] = _randn(generator, batch, text_tokens, text.shape[2])
        if "encoder_attention_mask" in inputs:  # a padded prompt, as a tokenizer padding to the length gives
            mask = torch.ones(batch, text_tokens, dtype=torch.long)
            mask[:, text_tokens // 2 :] = 0
            inputs["encoder_attention_mask"] = mask
    return inputs
