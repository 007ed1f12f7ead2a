"""Tiny random-weight denoisers of every supported family, and tiny whole pipelines for the runtime.

They keep each real checkpoint's structural features (Wan 2.1's image context, CogVideoX 1.5's temporal
patching, HunyuanVideo I2V's token-replace conditioning, SVD's temporal blocks) at toy widths, so tests, the
probe and benchmarks can run the real diffusers classes on two CPU cores in seconds. The tiny pipelines
(``build_tiny_pipeline``) pair a tiny denoiser with a tiny VAE and the real checkpoint's scheduler config; the
default of ``make export`` / ``dymos run`` is the Wan one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from dymos.catalog import TINY_PIPELINES
from dymos.inputs import example_inputs


@dataclass(frozen=True)
class TinyCase:
    """A tiny model: the real class name, its family and a config."""

    name: str
    class_name: str
    family: str
    config: dict[str, Any]

    def build(self, seed: int = 0) -> torch.nn.Module:
        import diffusers

        torch.manual_seed(seed)
        model = getattr(diffusers, self.class_name).from_config(self.config)
        return model.eval()

    def inputs(self, batch: int = 1, frames: int | None = None, seed: int = 0) -> dict[str, Any]:
        """Forward kwargs for ``batch`` items and ``frames`` latent frames, seeded."""
        return example_inputs(self.family, self.config, batch=batch, frames=frames, seed=seed)


_WAN = {
    "patch_size": [1, 2, 2],
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "in_channels": 12,
    "out_channels": 4,
    "text_dim": 16,
    "freq_dim": 16,
    "ffn_dim": 32,
    "num_layers": 2,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 32,
    "pos_embed_seq_len": None,
}
_COG = {
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "in_channels": 8,
    "out_channels": 4,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "time_embed_dim": 16,
    "text_embed_dim": 16,
    "num_layers": 2,
    "dropout": 0.0,
    "attention_bias": True,
    "sample_width": 8,
    "sample_height": 8,
    "patch_size": 2,
    "temporal_compression_ratio": 4,
    "max_text_seq_length": 6,
    "activation_fn": "gelu-approximate",
    "timestep_activation_fn": "silu",
    "norm_elementwise_affine": True,
    "norm_eps": 1e-5,
    "spatial_interpolation_scale": 1.875,
    "temporal_interpolation_scale": 1.0,
    "use_rotary_positional_embeddings": True,
}

TINY_CASES: dict[str, TinyCase] = {
    case.name: case
    for case in (
        TinyCase("wan21", "WanTransformer3DModel", "wan", {**_WAN, "image_dim": 16, "added_kv_proj_dim": 24}),
        TinyCase("wan22", "WanTransformer3DModel", "wan", {**_WAN, "image_dim": None, "added_kv_proj_dim": None}),
        TinyCase(
            "cogvideox",
            "CogVideoXTransformer3DModel",
            "cogvideox",
            {
                **_COG,
                "ofs_embed_dim": None,
                "sample_frames": 9,
                "patch_size_t": None,
                "use_learned_positional_embeddings": True,
                "patch_bias": True,
            },
        ),
        TinyCase(
            "cogvideox15",
            "CogVideoXTransformer3DModel",
            "cogvideox",
            {
                **_COG,
                "ofs_embed_dim": 16,
                "sample_frames": 13,
                "patch_size_t": 2,
                "use_learned_positional_embeddings": False,
                "patch_bias": False,
            },
        ),
        TinyCase(
            "hunyuanvideo",
            "HunyuanVideoTransformer3DModel",
            "hunyuanvideo",
            {
                "in_channels": 4,
                "out_channels": 4,
                "num_attention_heads": 2,
                "attention_head_dim": 16,
                "num_layers": 1,
                "num_single_layers": 1,
                "num_refiner_layers": 1,
                "mlp_ratio": 2.0,
                "patch_size": 2,
                "patch_size_t": 1,
                "qk_norm": "rms_norm",
                "guidance_embeds": True,
                "text_embed_dim": 16,
                "pooled_projection_dim": 8,
                "rope_theta": 256.0,
                "rope_axes_dim": [4, 6, 6],
                "image_condition_type": "token_replace",
            },
        ),
        TinyCase(
            "ltx",
            "LTXVideoTransformer3DModel",
            "ltx",
            {
                "in_channels": 8,
                "out_channels": 8,
                "patch_size": 1,
                "patch_size_t": 1,
                "num_attention_heads": 2,
                "attention_head_dim": 16,
                "cross_attention_dim": 32,
                "num_layers": 2,
                "activation_fn": "gelu-approximate",
                "qk_norm": "rms_norm_across_heads",
                "norm_elementwise_affine": False,
                "norm_eps": 1e-6,
                "caption_channels": 16,
                "attention_bias": True,
                "attention_out_bias": True,
            },
        ),
        TinyCase(
            "svd",
            "UNetSpatioTemporalConditionModel",
            "svd",
            {
                "sample_size": 8,
                "in_channels": 8,
                "out_channels": 4,
                "down_block_types": ["CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"],
                "up_block_types": ["UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"],
                "block_out_channels": [32, 64],
                "addition_time_embed_dim": 8,
                "projection_class_embeddings_input_dim": 24,
                "layers_per_block": 1,
                "cross_attention_dim": 16,
                "transformer_layers_per_block": 1,
                "num_attention_heads": [2, 4],
                "num_frames": 4,
            },
        ),
    )
}


# -- tiny pipelines: the default model of `make export` / `dymos run` ------------------------------------------------

# The real Wan 2.1/2.2 I2V scheduler (shared/configs/wan2.1-i2v-14b-480p.json); unlisted keys take class defaults.
WAN_SCHEDULER = {
    "class": "UniPCMultistepScheduler",
    "config": {
        "prediction_type": "flow_prediction",
        "use_flow_sigmas": True,
        "num_train_timesteps": 1000,
        "flow_shift": 3.0,
    },
}
# The real Wan 2.2 TI2V 5B scheduler (shared/configs/wan2.2-ti2v-5b.json): flow shift 5.
WAN_TI2V_SCHEDULER = {"class": WAN_SCHEDULER["class"], "config": {**WAN_SCHEDULER["config"], "flow_shift": 5.0}}
_TINY_WAN_VAE = {
    "base_dim": 8,
    "z_dim": 4,
    "dim_mult": [1, 1, 1, 1],
    "num_res_blocks": 1,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "dropout": 0.0,
    "latents_mean": [0.0] * 4,
    "latents_std": [1.0] * 4,
}
# Wan 2.2 TI2V's VAE form: residual blocks, 2x2 pixel patchify (12 channels in and out), 16x spatial compression;
# non-trivial latent statistics so the mean/std normalisation is exercised.
_TINY_WAN22_VAE = {
    **_TINY_WAN_VAE,
    "z_dim": 8,
    "decoder_base_dim": 8,
    "is_residual": True,
    "in_channels": 12,
    "out_channels": 12,
    "patch_size": 2,
    "scale_factor_spatial": 16,
    "scale_factor_temporal": 4,
    "latents_mean": [0.1 * i - 0.35 for i in range(8)],
    "latents_std": [0.5 + 0.1 * i for i in range(8)],
}
# Wan 2.2 TI2V 5B's transformer form: no mask or condition channels (the image latent replaces the first latent
# frame), no image context.
_TINY_WAN_TI2V = TinyCase(
    "wan22-ti2v",
    "WanTransformer3DModel",
    "wan",
    {**_WAN, "in_channels": 8, "out_channels": 8, "image_dim": None, "added_kv_proj_dim": None},
)
# The real CogVideoX I2V scheduler (shared/configs/cogvideox-5b-i2v.json).
COGVIDEOX_SCHEDULER = {
    "class": "CogVideoXDDIMScheduler",
    "config": {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "set_alpha_to_one": True,
        "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": True,
        "timestep_spacing": "trailing",
        "snr_shift_scale": 1.0,
    },
}
_TINY_COGVIDEOX_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["CogVideoXDownBlock3D"] * 4,
    "up_block_types": ["CogVideoXUpBlock3D"] * 4,
    "block_out_channels": [8, 8, 8, 8],
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 2,
    "temporal_compression_ratio": 4,
    "sample_height": 64,
    "sample_width": 64,
    "scaling_factor": 0.7,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}
# The real LTX-Video scheduler (shared/configs/ltx-video.json): the pipeline passes its own sigmas and a mu from the
# video's token count (dynamic shifting).
LTX_SCHEDULER = {
    "class": "FlowMatchEulerDiscreteScheduler",
    "config": {
        "num_train_timesteps": 1000,
        "shift": 1.0,
        "use_dynamic_shifting": True,
        "base_shift": 0.95,
        "max_shift": 2.05,
        "base_image_seq_len": 1024,
        "max_image_seq_len": 4096,
        "shift_terminal": 0.1,
    },
}
# LTX-Video 0.9.0's VAE form (4x4 pixel patches, three spatio-temporal downsamplings: 32x spatial, 8x temporal) at
# toy widths, with the 8 latent channels of the tiny LTX transformer.
_TINY_LTX_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 8,
    "block_out_channels": [8, 8, 8, 8],
    "decoder_block_out_channels": [8, 8, 8, 8],
    "layers_per_block": [1, 1, 1, 1, 1],
    "decoder_layers_per_block": [1, 1, 1, 1, 1],
    "spatio_temporal_scaling": [True, True, True, False],
    "decoder_spatio_temporal_scaling": [True, True, True, False],
    "decoder_inject_noise": [False] * 5,
    "upsample_residual": [False] * 4,
    "upsample_factor": [1] * 4,
    "timestep_conditioning": False,
    "patch_size": 4,
    "patch_size_t": 1,
    "encoder_causal": True,
    "decoder_causal": False,
}
# The real HunyuanVideo-I2V scheduler (shared/configs/hunyuanvideo-i2v.json); the pipeline passes its own sigmas.
HUNYUAN_SCHEDULER = {"class": "FlowMatchEulerDiscreteScheduler", "config": {"shift": 7.0}}
# HunyuanVideo's VAE form (8x spatial, 4x temporal, the real scaling factor) at toy widths, with the 4 latent
# channels of the tiny token-replace transformer.
_TINY_HUNYUAN_VAE = {
    "latent_channels": 4,
    "block_out_channels": [8, 8, 8, 8],
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "scaling_factor": 0.476986,
}
# HunyuanVideo-I2V-33ch's form: the image latent and a mask concatenated on channels, no guidance embedding.
_TINY_HUNYUAN_33CH = TinyCase(
    "hunyuanvideo-33ch",
    "HunyuanVideoTransformer3DModel",
    "hunyuanvideo",
    {
        **TINY_CASES["hunyuanvideo"].config,
        "in_channels": 2 * _TINY_HUNYUAN_VAE["latent_channels"] + 1,  # latents, image latents, mask
        "guidance_embeds": False,
        "image_condition_type": "latent_concat",
    },
)
# tiny pipelines whose transformer is another form of a family's tiny case
_TINY_VARIANTS = {"wan22-ti2v": _TINY_WAN_TI2V, "hunyuanvideo-33ch": _TINY_HUNYUAN_33CH}
# The real SVD-XT scheduler (shared/configs/svd-xt.json).
SVD_SCHEDULER = {
    "class": "EulerDiscreteScheduler",
    "config": {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": "v_prediction",
        "interpolation_type": "linear",
        "use_karras_sigmas": True,
        "sigma_min": 0.002,
        "sigma_max": 700.0,
        "timestep_spacing": "leading",
        "timestep_type": "continuous",
        "steps_offset": 1,
    },
}
_TINY_SVD_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "block_out_channels": [32, 32, 32, 32],
    "layers_per_block": 1,
    "latent_channels": 4,
    "sample_size": 64,
    "scaling_factor": 0.18215,
    "force_upcast": True,
}
# Wan 2.2 A14B's two experts (high-noise ``transformer``, low-noise ``transformer_2``) and its boundary ratio: the
# tiny pipeline takes a second seeded transformer of the same config.
A14B_BOUNDARY_RATIO = 0.9


def wan_i2v_pipeline(
    transformer: torch.nn.Module,
    vae: torch.nn.Module,
    *,
    transformer_2: torch.nn.Module | None = None,
    boundary_ratio: float | None = None,
    image_encoder: torch.nn.Module | None = None,
    image_processor: Any = None,
    text_encoder: torch.nn.Module | None = None,
    tokenizer: Any = None,
    expand_timesteps: bool = False,
    scheduler: dict[str, Any] = WAN_SCHEDULER,
) -> Any:
    """A ``WanImageToVideoPipeline`` with the real scheduler config: Wan 2.2 I2V form without text encoder
    (prompts come as embeddings; the tiny random ones, one or two experts, and the shipped trained one), or Wan 2.1
    form with a CLIP ``image_encoder`` and its ``image_processor`` (and a ``text_encoder`` with its ``tokenizer``),
    or Wan 2.2 TI2V form (``expand_timesteps``: per-token timesteps, the image latent as the first latent frame)."""
    import diffusers

    return diffusers.WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=getattr(diffusers, scheduler["class"]).from_config(scheduler["config"]),
        transformer=transformer,
        transformer_2=transformer_2,
        boundary_ratio=boundary_ratio,
        image_encoder=image_encoder,
        image_processor=image_processor,
        expand_timesteps=expand_timesteps,
    )


def tiny_clip_vision(
    hidden: int, *, image_size: int, patch_size: int = 32, projection_dim: int | None = None
) -> torch.nn.Module:
    """A 2-layer random CLIP vision tower (``hidden_states[-2]`` is a real layer's output): with a projection for
    SVD (``image_embeds``), without for Wan 2.1 (its hidden states)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=projection_dim or hidden,
    )
    model = CLIPVisionModelWithProjection if projection_dim is not None else CLIPVisionModel
    return model(config).eval()


# The tiny text encoder's vocabulary: T5's special tokens, whole words of the sprite domain, then single characters
# (so any lowercase ASCII prompt tokenizes without <unk>).
_TINY_WORDS = (
    "a the of and on over in with red green blue yellow white orange ball square disc bar triangle sprite sprites "
    "moves move bounces bounce rotates rotate turns slowly quickly fast slow left right up down background video"
).split()


def _tiny_text_encoder(text_dim: int, *, umt5: bool) -> dict[str, Any]:
    """A 2-layer T5 encoder of width ``text_dim`` (UMT5 as Wan's ``text_encoder``, else T5 as CogVideoX's) and a
    T5-style fast tokenizer (unigram over a small fixed vocabulary, ``</s>`` appended, ``<pad>`` = 0)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5Config, T5EncoderModel, T5TokenizerFast, UMT5Config, UMT5EncoderModel

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -3.0)]
    pieces += [("\u2581" + word, -1.0 - 0.01 * i) for i, word in enumerate(_TINY_WORDS)]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'-"]
    backend = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    tokenizer = T5TokenizerFast(
        tokenizer_object=backend, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0
    )
    config_class, model_class = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    config = config_class(
        vocab_size=len(pieces),
        d_model=text_dim,
        d_kv=8,
        d_ff=2 * text_dim,
        num_layers=2,
        num_heads=2,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
    )
    return {"text_encoder": model_class(config).eval(), "tokenizer": tokenizer}


def _unigram_tokenizer(
    special: list[str], words: list[str], *, lowercase: bool, post: tuple[str, list[tuple[str, int]]]
) -> Any:
    """A ``tokenizers`` unigram tokenizer over ``special`` tokens (ids 0.., matched whole), ``words`` (with and
    without a leading ``\u2581``, so a word costs one token after a space or not), newlines and single characters
    (any ASCII text tokenizes without <unk>); ``post`` = (single template, special tokens) adds BOS/EOS."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    pieces = [(token, 0.0) for token in special] + [("\n\n", -1.0), ("\n", -2.0), ("\u2581", -3.0)]
    seen = {piece for piece, _ in pieces}
    for word in words:
        for piece in (word, "\u2581" + word):
            if piece not in seen:
                seen.add(piece)
                pieces.append((piece, -1.0))
    pieces += [
        (c, -5.0) for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'-&" if c not in seen
    ]
    backend = Tokenizer(models.Unigram(pieces, unk_id=special.index("<unk>"), byte_fallback=False))
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in special])
    if lowercase:
        backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never")
    backend.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="never")
    backend.post_processor = processors.TemplateProcessing(single=post[0], special_tokens=post[1])
    return backend


def _tiny_llava_prompt_encoders(text_dim: int, pooled_dim: int) -> dict[str, Any]:
    """HunyuanVideo-I2V's prompt encoders, tiny and random but of the real classes and shapes that matter: a
    ``LlavaForConditionalGeneration`` (a 3-layer Llama of width ``text_dim``; a CLIP vision tower at the real
    336 px in 14 px patches, so an image is the real 576 tokens the prompt template expects) with a Llama-3-style
    tokenizer whose vocabulary holds the template's words (the template's system part is the real 103 tokens, the
    image placeholder the real 6th), a ``CLIPImageProcessor`` at 336 px, and a CLIP text encoder of width
    ``pooled_dim`` with a CLIP-style tokenizer (77 tokens, padded with the end token) for the pooled embedding."""
    import re

    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import DEFAULT_PROMPT_TEMPLATE
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        PreTrainedTokenizerFast,
    )

    special = ["<|begin_of_text|>", "<|end_of_text|>", "<pad>", "<unk>"]
    special += ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<image>"]
    words = sorted(set(re.findall(r"[A-Za-z]+", DEFAULT_PROMPT_TEMPLATE["template"]))) + list(_TINY_WORDS)
    backend = _unigram_tokenizer(
        special, words, lowercase=False, post=("<|begin_of_text|> $A", [("<|begin_of_text|>", 0)])
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>", pad_token="<pad>",
        unk_token="<unk>", padding_side="right",
    )  # fmt: skip
    vision = CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=336, patch_size=14
    )
    language = LlamaConfig(
        hidden_size=text_dim,
        intermediate_size=2 * text_dim,
        num_hidden_layers=3,  # hidden_states[-3] (the pipeline skips 2 layers) is then a real layer's output
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=backend.get_vocab_size(),
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=language,
        image_token_index=backend.token_to_id("<image>"),
        pad_token_id=tokenizer.pad_token_id,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    clip_special = ["<|startoftext|>", "<|endoftext|>", "<unk>"]
    clip_backend = _unigram_tokenizer(
        clip_special,
        list(_TINY_WORDS),
        lowercase=True,
        post=("<|startoftext|> $A <|endoftext|>", [("<|startoftext|>", 0), ("<|endoftext|>", 1)]),
    )
    tokenizer_2 = PreTrainedTokenizerFast(
        tokenizer_object=clip_backend, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
        pad_token="<|endoftext|>", unk_token="<unk>", model_max_length=77,
    )  # fmt: skip
    clip_text = CLIPTextConfig(
        vocab_size=clip_backend.get_vocab_size(),
        hidden_size=pooled_dim,
        intermediate_size=2 * pooled_dim,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,  # the pooled token: the first end token, as the real CLIP's
        pad_token_id=1,
    )
    return {
        "text_encoder": LlavaForConditionalGeneration(config).eval(),
        "tokenizer": tokenizer,
        "text_encoder_2": CLIPTextModel(clip_text).eval(),
        "tokenizer_2": tokenizer_2,
        "image_processor": CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}),
    }


def build_tiny_pipeline(name: str = "wan22", seed: int = 0) -> Any:
    """A tiny image-to-video pipeline with seeded random weights and the real checkpoint's scheduler config:
    ``wan22`` (``WanImageToVideoPipeline``, Wan 2.2 I2V layout, no image or text encoder: prompts are embeddings),
    ``wan21`` (the Wan 2.1 layout: a tiny CLIP image encoder whose hidden states feed the transformer's image
    context, and a tiny UMT5 text encoder with its tokenizer), ``wan22-a14b`` (``wan22`` with Wan 2.2 A14B's
    second, low-noise expert and boundary ratio 0.9), ``wan22-ti2v`` (Wan 2.2 TI2V 5B's form: its VAE's residual
    blocks, pixel patchify and 16x compression, ``expand_timesteps``, flow shift 5), ``cogvideox``
    (``CogVideoXImageToVideoPipeline``, CogVideoX 1.0 I2V at its 64x64, 9-frame sample size, with a tiny T5 text
    encoder and tokenizer), ``cogvideox15`` (the same in CogVideoX 1.5 form: temporal patching, the ``ofs``
    embedding, inverted image-latent scaling), ``svd`` (``StableVideoDiffusionPipeline`` with a tiny random CLIP
    image encoder), ``ltx`` (``LTXImageToVideoPipeline`` with LTX-Video 0.9.0's VAE form and scheduler, and a tiny
    T5 text encoder and tokenizer), ``hunyuanvideo`` (``HunyuanVideoImageToVideoPipeline``, token-replace
    I2V with the guidance embedding, and tiny LLaVA + CLIP prompt encoders of the real classes) or
    ``hunyuanvideo-33ch`` (the same in HunyuanVideo-I2V-33ch's latent-concat form, without guidance embedding)."""
    import diffusers

    if name not in TINY_PIPELINES:
        raise ValueError(f"unknown tiny pipeline {name!r}; choose one of {', '.join(TINY_PIPELINES)}")
    tiny_case = _TINY_VARIANTS.get(name) or TINY_CASES[name.removesuffix("-a14b")]
    transformer = tiny_case.build(seed=seed)
    torch.manual_seed(seed + 1)
    if name == "wan22":
        pipe = wan_i2v_pipeline(transformer, diffusers.AutoencoderKLWan(**_TINY_WAN_VAE).eval())
    elif name == "wan21":
        from transformers import CLIPImageProcessor

        pipe = wan_i2v_pipeline(
            transformer,
            diffusers.AutoencoderKLWan(**_TINY_WAN_VAE).eval(),
            # 32 px in 2 px patches: the 257 image tokens of the real 224 px CLIP in 14 px patches
            image_encoder=tiny_clip_vision(int(transformer.config.image_dim), image_size=32, patch_size=2),
            image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
            **_tiny_text_encoder(int(transformer.config.text_dim), umt5=True),
        )
    elif name == "wan22-a14b":
        pipe = wan_i2v_pipeline(
            transformer,
            diffusers.AutoencoderKLWan(**_TINY_WAN_VAE).eval(),
            transformer_2=TINY_CASES["wan22"].build(seed=seed + 100),
            boundary_ratio=A14B_BOUNDARY_RATIO,
        )
    elif name == "wan22-ti2v":
        pipe = wan_i2v_pipeline(
            transformer,
            diffusers.AutoencoderKLWan(**_TINY_WAN22_VAE).eval(),
            expand_timesteps=True,
            scheduler=WAN_TI2V_SCHEDULER,
        )
    elif name == "ltx":
        scheduler = getattr(diffusers, LTX_SCHEDULER["class"]).from_config(LTX_SCHEDULER["config"])
        vae = diffusers.AutoencoderKLLTXVideo(**_TINY_LTX_VAE).eval()
        with torch.no_grad():  # the real statistics are weights (buffers); non-trivial ones exercise the normalisation
            vae.latents_mean.copy_(torch.linspace(-0.3, 0.4, vae.latents_mean.numel()))
            vae.latents_std.copy_(torch.linspace(0.6, 1.3, vae.latents_std.numel()))
        pipe = diffusers.LTXImageToVideoPipeline(
            scheduler=scheduler,
            vae=vae,
            transformer=transformer,
            **_tiny_text_encoder(int(transformer.config.caption_channels), umt5=False),
        )
    elif name.startswith("hunyuanvideo"):
        scheduler = getattr(diffusers, HUNYUAN_SCHEDULER["class"]).from_config(HUNYUAN_SCHEDULER["config"])
        pipe = diffusers.HunyuanVideoImageToVideoPipeline(
            transformer=transformer,
            vae=diffusers.AutoencoderKLHunyuanVideo(**_TINY_HUNYUAN_VAE).eval(),
            scheduler=scheduler,
            **_tiny_llava_prompt_encoders(
                int(transformer.config.text_embed_dim), int(transformer.config.pooled_projection_dim)
            ),
        )
    elif name == "svd":
        from transformers import CLIPImageProcessor

        vae = diffusers.AutoencoderKLTemporalDecoder(**_TINY_SVD_VAE).eval()
        scheduler = getattr(diffusers, SVD_SCHEDULER["class"]).from_config(SVD_SCHEDULER["config"])
        pipe = diffusers.StableVideoDiffusionPipeline(
            vae=vae,
            image_encoder=tiny_clip_vision(
                16, image_size=224, projection_dim=int(transformer.config.cross_attention_dim)
            ),
            unet=transformer,
            scheduler=scheduler,
            feature_extractor=CLIPImageProcessor(),
        )
    else:  # CogVideoX 1.5's VAE inverts its image-latent scaling, as the real one's config says
        vae_config = {**_TINY_COGVIDEOX_VAE, "invert_scale_latents": name == "cogvideox15"}
        vae = diffusers.AutoencoderKLCogVideoX(**vae_config).eval()
        scheduler = getattr(diffusers, COGVIDEOX_SCHEDULER["class"]).from_config(COGVIDEOX_SCHEDULER["config"])
        pipe = diffusers.CogVideoXImageToVideoPipeline(
            vae=vae,
            transformer=transformer,
            scheduler=scheduler,
            **_tiny_text_encoder(int(transformer.config.text_embed_dim), umt5=False),
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe
