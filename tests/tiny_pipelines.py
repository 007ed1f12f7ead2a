"""Tiny, random-weight, fully offline image-to-video diffusers pipelines for tests.

Why: DyMoS patches the self-attention processors of real diffusers denoisers, so its tests need the *real*
pipeline classes (their CFG batching, timestep plumbing, latent packing and scheduler stepping), not mocks.
Real checkpoints are far too big and cannot be downloaded here, so every case below builds the real denoiser,
VAE and scheduler classes from scratch with tiny widths and a fixed seed. Structural settings (patch sizes,
image-conditioning style, qk-norm, guidance embedding, scheduler class and config, ...) are taken from the real
checkpoint configs in ``shared/configs/*.json``; only sizes are shrunk. Text/image encoders are replaced by
precomputed random embeddings wherever the pipeline accepts them; where a pipeline always runs an encoder
(Wan 2.1's and SVD's CLIP vision tower) a tiny randomly initialised transformers model is built from a config.

Public API: :data:`PIPELINE_CASES`, :func:`build_pipeline`, :func:`call_kwargs`, :func:`denoiser_attr_names`.
Run this file directly for a self-check (every case twice, outputs must be bitwise identical).

How each pipeline drives its denoiser (diffusers 0.42.1, as called with :func:`call_kwargs`; B = 1):

- wan21 / wan22 / wan22_ti2v: CFG as two forwards per step (cond, then uncond; ``cache_context`` "cond" /
  "uncond"), batch B each. ``timestep`` is ``t.expand(B)`` (int64) except TI2V (``expand_timesteps``): a
  per-token float32 ``[B, seq_len]`` that is 0 on first-latent-frame tokens. wan22 switches from ``transformer``
  to ``transformer_2`` once ``t < 0.9 * 1000`` (here steps 0-1 vs 2-3).
- cogvideox / cogvideox15: one batched forward ``[uncond, cond]``; ``hidden_states`` is ``[2B, F, C, H, W]``;
  ``timestep`` ``[2B]`` int64; joint self-attention over ``[text | video]`` tokens. 1.5 pads 3 latent frames to 4.
- hunyuan (token_replace): true CFG as two forwards per step; ``timestep`` ``[B]`` float32 (the transformer
  itself gives first-frame tokens a t=0 modulation); joint attention over ``[video | text]`` with a key mask.
- ltx: one batched forward on packed ``[2B, seq, C]`` tokens (grid in ``num_frames/height/width`` kwargs);
  ``timestep`` per token ``[2B, seq]`` float32, 0 on the conditioning (first) frame.
- svd: one batched forward ``[uncond, cond]`` on ``[2B, F, C, H, W]``; ``timestep`` is a 0-dim float32 tensor
  holding the Euler scheduler's continuous ``0.25 * log(sigma)`` (it goes negative).

In every case the non-zero timestep values the denoiser sees are exactly the elements of
``pipe.scheduler.timesteps``, one denoising step per element.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import PIL.Image
import pytest
import torch

from dymos.tiny import tiny_clip_vision

try:  # transformers >= 5 names the torchvision-free processor explicitly; using it avoids a fallback warning
    from transformers import CLIPImageProcessorPil as _CLIPImageProcessor
except ImportError:  # pragma: no cover - older transformers
    from transformers import CLIPImageProcessor as _CLIPImageProcessor

_HERE = Path(__file__).resolve()
#: Where the real checkpoint configs live: ``shared/`` sits beside the repository root (first entry); some
#: checkouts carry it inside the repository root instead (second entry).
CONFIG_DIRS: tuple[Path, ...] = (_HERE.parents[2] / "shared" / "configs", _HERE.parents[1] / "shared" / "configs")

_BUILD_SEED = 0  # every model is built under this torch seed, so builds are bitwise reproducible
_STEPS = 4  # denoising steps per call: enough for multi-step schedulers (UniPC) and Wan 2.2's expert switch


def _load_config(name: str) -> dict[str, Any]:
    """Read one real-checkpoint JSON (denoiser/scheduler/vae class + config) from ``shared/configs``."""
    for folder in CONFIG_DIRS:
        path = folder / name
        if path.is_file():
            return json.loads(path.read_text())
    tried = ", ".join(str(folder / name) for folder in CONFIG_DIRS)
    # As conftest's shared_configs fixture: a clone without shared/ beside it skips these tests with the reason
    # (CI clones beside shared/ and runs them).
    pytest.skip(
        f"checkpoint config {name!r} not found (tried {tried}); tests/tiny_pipelines.py needs the shared/configs "
        "folder with the real checkpoints' diffusers configs next to the repository"
    )


def _shrink(real: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """Real config with only the given (size) keys replaced; unknown keys are an error so typos cannot hide."""
    unknown = sorted(set(overrides) - set(real))
    if unknown:
        raise KeyError(f"override keys not in the real config: {unknown}")
    return {**real, **overrides}


def _scheduler(spec: dict[str, Any]) -> Any:
    """The real checkpoint's scheduler class, built from its config."""
    return getattr(diffusers, spec["scheduler"]["class"]).from_config(spec["scheduler"]["config"])


def _model(class_name: str, config: dict[str, Any]) -> torch.nn.Module:
    """A diffusers model with fresh random weights, fp32, eval mode, on CPU."""
    return getattr(diffusers, class_name).from_config(config).eval()


def _image(seed: int, height: int, width: int) -> PIL.Image.Image:
    """A deterministic RGB test image (smooth gradient plus seeded noise) at the generation size."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / max(width - 1, 1), yy / max(height - 1, 1), np.full_like(xx, 0.5)], axis=-1)
    pixels = np.clip(0.7 * base + 0.3 * rng.random((height, width, 3), dtype=np.float32), 0.0, 1.0)
    return PIL.Image.fromarray((pixels * 255).round().astype(np.uint8), mode="RGB")


def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    """Stand-in for encoder outputs: fp32 normal noise from the call's own data generator."""
    return torch.randn(*shape, generator=gen, dtype=torch.float32)


def _text_mask(length: int, valid: int) -> torch.Tensor:
    """[1, length] attention mask: ``valid`` real tokens then padding, as a tokenizer padding to max length gives."""
    mask = torch.zeros(1, length, dtype=torch.long)
    mask[:, :valid] = 1
    return mask


# ---------------------------------------------------------------------------------------------------------------
# Wan (2.1 I2V with CLIP image context, 2.2 A14B two experts, 2.2 TI2V 5B with per-token timesteps)
# ---------------------------------------------------------------------------------------------------------------
_WAN_TEXT_LEN = 512  # WanAttnProcessor hard-codes 512 text tokens when added_kv_proj_dim (image context) is set
_WAN_TEXT_DIM = 16
_WAN_CLIP_HIDDEN = 16


def _wan_transformer(real: dict[str, Any], *, image_context: bool) -> torch.nn.Module:
    heads, head_dim = 2, 16  # head_dim 16 -> RoPE split t/h/w = 8/4/4
    cfg = _shrink(
        real,
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        text_dim=_WAN_TEXT_DIM,
        freq_dim=16,
        ffn_dim=32,
        num_layers=2,
        image_dim=_WAN_CLIP_HIDDEN if image_context else None,
        added_kv_proj_dim=heads * head_dim if image_context else None,
    )
    return _model("WanTransformer3DModel", cfg)


def _wan_vae(real: dict[str, Any]) -> torch.nn.Module:
    extra = {"decoder_base_dim": 8} if "decoder_base_dim" in real else {}
    cfg = _shrink(real, base_dim=8, **extra)
    cfg.update(dim_mult=[1, 1, 1, 1], num_res_blocks=1)  # absent from the TI2V config (class defaults there)
    return _model("AutoencoderKLWan", cfg)


def _build_wan(spec: dict[str, Any]) -> diffusers.DiffusionPipeline:
    image_context = spec["denoiser"]["config"]["image_dim"] is not None
    pipe_cfg = spec.get("pipeline_config") or {}
    transformer = _wan_transformer(spec["denoiser"]["config"], image_context=image_context)
    transformer_2 = (
        _wan_transformer(spec["denoiser_2"]["config"], image_context=image_context) if "denoiser_2" in spec else None
    )
    image_encoder = image_processor = None
    if image_context:
        # The pipeline refuses `image` together with `image_embeds`, yet always needs `image` for the VAE
        # condition, so Wan 2.1 must run its CLIP encoder: a tiny one at 32 px (17 image tokens, real: 257).
        image_encoder = tiny_clip_vision(_WAN_CLIP_HIDDEN, image_size=32, patch_size=8)
        image_processor = _CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return diffusers.WanImageToVideoPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=_wan_vae(spec["vae"]["config"]),
        scheduler=_scheduler(spec),
        image_processor=image_processor,
        image_encoder=image_encoder,
        transformer=transformer,
        transformer_2=transformer_2,
        boundary_ratio=pipe_cfg.get("boundary_ratio"),
        expand_timesteps=bool(pipe_cfg.get("expand_timesteps", False)),
    )


def _wan_kwargs(seed: int, height: int, width: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed + 1)
    return {
        "image": _image(seed, height, width),
        "prompt_embeds": _randn(gen, 1, _WAN_TEXT_LEN, _WAN_TEXT_DIM),
        "negative_prompt_embeds": _randn(gen, 1, _WAN_TEXT_LEN, _WAN_TEXT_DIM),
        "height": height,
        "width": width,
        "num_frames": 9,  # 4n+1 -> 3 latent frames
        "guidance_scale": 5.0,
    }


# ---------------------------------------------------------------------------------------------------------------
# CogVideoX 1.0 I2V (learned + rotary positions) and 1.5 I2V (patch_size_t=2, ofs embedding, frame padding)
# ---------------------------------------------------------------------------------------------------------------
_COG_TEXT_LEN = 16
_COG_TEXT_DIM = 16
_COG_H, _COG_W, _COG_F = 32, 48, 9  # latent 4x6, 3 latent frames


def _build_cogvideox(spec: dict[str, Any]) -> diffusers.DiffusionPipeline:
    real = spec["denoiser"]["config"]
    overrides: dict[str, Any] = {
        "num_attention_heads": 2,
        "attention_head_dim": 16,  # 3D RoPE split t/h/w = 4/6/6
        "time_embed_dim": 16,
        "text_embed_dim": _COG_TEXT_DIM,
        "num_layers": 2,
        "max_text_seq_length": _COG_TEXT_LEN,
    }
    if real["ofs_embed_dim"] is not None:
        overrides["ofs_embed_dim"] = 16  # added to the time embedding, so it must equal time_embed_dim
    if real["use_learned_positional_embeddings"]:
        # CogVideoX 1.0 I2V only runs at its sample size: make the tiny size the sample size.
        overrides.update(sample_height=_COG_H // 8, sample_width=_COG_W // 8, sample_frames=_COG_F)
    transformer = _model("CogVideoXTransformer3DModel", _shrink(real, **overrides))
    vae_cfg = _shrink(
        spec["vae"]["config"],
        block_out_channels=[8, 8, 8, 8],  # 4 levels: 8x spatial, the first two also halve time (4x temporal)
        layers_per_block=1,
        norm_num_groups=2,
        sample_height=_COG_H,
        sample_width=_COG_W,
    )
    return diffusers.CogVideoXImageToVideoPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=_model("AutoencoderKLCogVideoX", vae_cfg),
        transformer=transformer,
        scheduler=_scheduler(spec),
    )


def _cogvideox_kwargs(seed: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed + 1)
    return {
        "image": _image(seed, _COG_H, _COG_W),
        "prompt_embeds": _randn(gen, 1, _COG_TEXT_LEN, _COG_TEXT_DIM),
        "negative_prompt_embeds": _randn(gen, 1, _COG_TEXT_LEN, _COG_TEXT_DIM),
        "height": _COG_H,
        "width": _COG_W,
        "num_frames": _COG_F,  # 1.5: 3 latent frames are padded to 4 (2 token-frames) by the pipeline
        "guidance_scale": 6.0,
        "use_dynamic_cfg": True,
    }


# ---------------------------------------------------------------------------------------------------------------
# HunyuanVideo I2V (token_replace: first latent frame is the clean image and gets t=0 modulation)
# ---------------------------------------------------------------------------------------------------------------
_HY_TEXT_LEN, _HY_TEXT_VALID, _HY_TEXT_DIM, _HY_POOLED_DIM = 16, 12, 16, 8


def _build_hunyuan(spec: dict[str, Any]) -> diffusers.DiffusionPipeline:
    real = spec["denoiser"]["config"]
    latent_channels = spec["vae"]["config"]["latent_channels"]
    transformer = _model(
        "HunyuanVideoTransformer3DModel",
        _shrink(
            real,
            in_channels=latent_channels if real["image_condition_type"] == "token_replace" else 2 * latent_channels + 1,
            out_channels=latent_channels,
            num_attention_heads=2,
            attention_head_dim=16,
            num_layers=1,
            num_single_layers=1,
            num_refiner_layers=1,
            text_embed_dim=_HY_TEXT_DIM,
            pooled_projection_dim=_HY_POOLED_DIM,
            rope_axes_dim=[4, 6, 6],  # must sum to attention_head_dim
        ),
    )
    vae_cfg = _shrink(spec["vae"]["config"], block_out_channels=[8, 8, 8, 8], layers_per_block=1, norm_num_groups=4)
    return diffusers.HunyuanVideoImageToVideoPipeline(
        text_encoder=None,
        tokenizer=None,
        transformer=transformer,
        vae=_model("AutoencoderKLHunyuanVideo", vae_cfg),
        scheduler=_scheduler(spec),
        text_encoder_2=None,
        tokenizer_2=None,
        image_processor=None,
    )


def _hunyuan_kwargs(seed: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed + 1)
    height, width = 32, 48
    return {
        "image": _image(seed, height, width),
        "prompt_embeds": _randn(gen, 1, _HY_TEXT_LEN, _HY_TEXT_DIM),
        "pooled_prompt_embeds": _randn(gen, 1, _HY_POOLED_DIM),
        "prompt_attention_mask": _text_mask(_HY_TEXT_LEN, _HY_TEXT_VALID),
        "negative_prompt_embeds": _randn(gen, 1, _HY_TEXT_LEN, _HY_TEXT_DIM),
        "negative_pooled_prompt_embeds": _randn(gen, 1, _HY_POOLED_DIM),
        "negative_prompt_attention_mask": _text_mask(_HY_TEXT_LEN, _HY_TEXT_VALID // 2),
        "height": height,
        "width": width,
        "num_frames": 9,  # 3 latent frames
        # The checkpoint is CFG-distilled (guidance embedding); true CFG (a second, negative forward per step)
        # is what a wrapper must survive, so turn it on. guidance_scale 1.0 avoids the "both > 1" warning.
        "true_cfg_scale": 2.0,
        "guidance_scale": 1.0,
    }


# ---------------------------------------------------------------------------------------------------------------
# LTX-Video 0.9.0 I2V (32x spatial / 8x temporal VAE, packed tokens, per-token timesteps)
# ---------------------------------------------------------------------------------------------------------------
_LTX_TEXT_LEN, _LTX_TEXT_VALID, _LTX_TEXT_DIM = 16, 10, 16


def _build_ltx(spec: dict[str, Any]) -> diffusers.DiffusionPipeline:
    real = spec["denoiser"]["config"]
    heads, head_dim = 2, 16
    transformer = _model(
        "LTXVideoTransformer3DModel",
        _shrink(
            real,
            num_attention_heads=heads,
            attention_head_dim=head_dim,
            cross_attention_dim=heads * head_dim,  # text is projected to the inner dim first
            num_layers=2,
            caption_channels=_LTX_TEXT_DIM,
        ),
    )
    vae_real = spec["vae"]["config"]
    n_levels = len(vae_real["block_out_channels"])
    vae_cfg = _shrink(
        vae_real,
        block_out_channels=[8] * n_levels,
        decoder_block_out_channels=[8] * n_levels,
        layers_per_block=[1] * (n_levels + 1),
        decoder_layers_per_block=[1] * (n_levels + 1),
    )
    return diffusers.LTXImageToVideoPipeline(
        scheduler=_scheduler(spec),
        vae=_model("AutoencoderKLLTXVideo", vae_cfg),
        text_encoder=None,
        tokenizer=None,
        transformer=transformer,
    )


def _ltx_kwargs(seed: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed + 1)
    height, width = 64, 96  # latent 2x3 (32x spatial compression)
    return {
        "image": _image(seed, height, width),
        "prompt_embeds": _randn(gen, 1, _LTX_TEXT_LEN, _LTX_TEXT_DIM),
        "prompt_attention_mask": _text_mask(_LTX_TEXT_LEN, _LTX_TEXT_VALID),
        "negative_prompt_embeds": _randn(gen, 1, _LTX_TEXT_LEN, _LTX_TEXT_DIM),
        "negative_prompt_attention_mask": _text_mask(_LTX_TEXT_LEN, _LTX_TEXT_VALID // 2),
        "height": height,
        "width": width,
        "num_frames": 9,  # 8n+1 -> 2 latent frames
        "guidance_scale": 3.0,
    }


# ---------------------------------------------------------------------------------------------------------------
# Stable Video Diffusion (img2vid-xt): spatio-temporal UNet, CLIP image embedding, 8x image VAE
# ---------------------------------------------------------------------------------------------------------------
_SVD_CLIP_PROJ = 32


def _build_svd(spec: dict[str, Any]) -> diffusers.DiffusionPipeline:
    add_dim = 8
    unet_cfg = _shrink(
        spec["denoiser"]["config"],
        sample_size=4,
        down_block_types=["CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"],
        up_block_types=["UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"],
        block_out_channels=[32, 64],  # resnet / transformer GroupNorms use 32 groups
        addition_time_embed_dim=add_dim,
        projection_class_embeddings_input_dim=3 * add_dim,  # (fps-1, motion_bucket_id, noise_aug_strength)
        layers_per_block=1,
        cross_attention_dim=_SVD_CLIP_PROJ,
        num_attention_heads=[2, 4],  # head dim 16
        num_frames=4,
    )
    vae_cfg = _shrink(spec["vae"]["config"], block_out_channels=[32, 32, 32, 32], layers_per_block=1, sample_size=32)
    # SVD always resizes PIL images to 224 px and runs CLIP: a tiny 224 px tower with 32 px patches (49 tokens).
    image_encoder = tiny_clip_vision(16, image_size=224, projection_dim=_SVD_CLIP_PROJ)
    return diffusers.StableVideoDiffusionPipeline(
        vae=_model("AutoencoderKLTemporalDecoder", vae_cfg),
        image_encoder=image_encoder,
        unet=_model("UNetSpatioTemporalConditionModel", unet_cfg),
        scheduler=_scheduler(spec),
        feature_extractor=_CLIPImageProcessor(),
    )


def _svd_kwargs(seed: int) -> dict[str, Any]:
    height, width = 32, 48  # latent 4x6
    return {
        "image": _image(seed, height, width),
        "height": height,
        "width": width,
        "num_frames": 4,  # no temporal compression
        "min_guidance_scale": 1.0,
        "max_guidance_scale": 3.0,  # per-frame CFG scale ramps 1 -> 3
        "decode_chunk_size": 4,
    }


# ---------------------------------------------------------------------------------------------------------------
# Case table and public API
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Case:
    config_file: str
    build: Callable[[dict[str, Any]], diffusers.DiffusionPipeline]
    kwargs: Callable[[int], dict[str, Any]]
    denoisers: tuple[str, ...]


_CASES: dict[str, _Case] = {
    "wan21": _Case("wan2.1-i2v-14b-480p.json", _build_wan, lambda s: _wan_kwargs(s, 32, 48), ("transformer",)),
    "wan22": _Case(
        "wan2.2-i2v-a14b.json", _build_wan, lambda s: _wan_kwargs(s, 32, 48), ("transformer", "transformer_2")
    ),
    "wan22_ti2v": _Case("wan2.2-ti2v-5b.json", _build_wan, lambda s: _wan_kwargs(s, 64, 96), ("transformer",)),
    "cogvideox": _Case("cogvideox-5b-i2v.json", _build_cogvideox, _cogvideox_kwargs, ("transformer",)),
    "cogvideox15": _Case("cogvideox1.5-5b-i2v.json", _build_cogvideox, _cogvideox_kwargs, ("transformer",)),
    "hunyuan": _Case("hunyuanvideo-i2v.json", _build_hunyuan, _hunyuan_kwargs, ("transformer",)),
    "ltx": _Case("ltx-video.json", _build_ltx, _ltx_kwargs, ("transformer",)),
    "svd": _Case("svd-xt.json", _build_svd, _svd_kwargs, ("unet",)),
}

#: Every case that builds and runs end to end (see the self-check at the bottom).
PIPELINE_CASES: list[str] = list(_CASES)


def _case(case: str) -> _Case:
    try:
        return _CASES[case]
    except KeyError:
        raise ValueError(f"unknown tiny pipeline case {case!r}; choose one of {', '.join(_CASES)}") from None


def build_pipeline(case: str) -> diffusers.DiffusionPipeline:
    """Tiny random-weight pipeline for ``case``: real diffusers classes, CPU, fp32, progress bar off.

    Weights come from a fixed seed inside a forked RNG, so two builds are bitwise identical and the caller's
    global torch RNG is left untouched.
    """
    spec = _case(case)
    config = _load_config(spec.config_file)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_BUILD_SEED)
        pipe = spec.build(config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call_kwargs(case: str, seed: int = 0) -> dict[str, Any]:
    """Keyword arguments for ``pipe(**kwargs)``: tiny sizes, CFG on, decoded ``np`` output, fresh generator.

    Image, embeddings and the latent noise all derive from ``seed``; the same seed gives the same output.
    """
    kwargs = _case(case).kwargs(seed)
    kwargs.update(num_inference_steps=_STEPS, output_type="np", generator=torch.Generator().manual_seed(seed))
    return kwargs


def denoiser_attr_names(case: str) -> list[str]:
    """Attributes of the pipeline holding denoisers (Wan 2.2 A14B has a high- and a low-noise expert)."""
    return list(_case(case).denoisers)


def _self_check(cases: list[str]) -> None:
    """Per case: run twice on one build, once on a fresh build (all bitwise identical), once with another seed."""
    for name in cases:
        t0 = time.perf_counter()
        pipe = build_pipeline(name)
        t_build = time.perf_counter() - t0
        outputs, times = [], []
        for runner in (pipe, pipe, build_pipeline(name)):
            t0 = time.perf_counter()
            outputs.append(np.asarray(runner(**call_kwargs(name, seed=0)).frames))
            times.append(time.perf_counter() - t0)
        first = outputs[0]
        for other in outputs[1:]:
            assert other.shape == first.shape and np.array_equal(other, first), f"{name}: outputs differ between runs"
        assert np.isfinite(first).all(), f"{name}: non-finite output"
        other_seed = np.asarray(pipe(**call_kwargs(name, seed=1)).frames)
        assert not np.array_equal(other_seed, first), f"{name}: the seed has no effect"
        print(
            f"{name:12s} build {t_build:5.2f}s  run {times[0]:5.2f}s / {times[1]:5.2f}s  "
            f"output {first.shape} {first.dtype}"
        )
    print(f"all {len(cases)} tiny pipelines are deterministic")


if __name__ == "__main__":
    import sys

    _self_check(sys.argv[1:] or PIPELINE_CASES)
