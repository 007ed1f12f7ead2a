"""Family layouts are data that agree with the real checkpoints' configs."""

from __future__ import annotations

import pytest

from dymos.layouts import FAMILIES, layout_for, token_grid
from dymos.models import layout_for_class_name
from dymos.tiny import TINY_CASES

# config file -> (tiny case, the real config keys whose values the tiny model must keep)
STRUCTURE = {
    "wan2.1-i2v-14b-480p": ("wan21", ["patch_size", "qk_norm", "cross_attn_norm"]),
    "wan2.2-i2v-a14b": ("wan22", ["patch_size", "qk_norm", "image_dim", "added_kv_proj_dim"]),
    "cogvideox-5b-i2v": (
        "cogvideox",
        [
            "patch_size",
            "patch_size_t",
            "use_rotary_positional_embeddings",
            "use_learned_positional_embeddings",
            "ofs_embed_dim",
            "patch_bias",
        ],
    ),
    "cogvideox1.5-5b-i2v": (
        "cogvideox15",
        [
            "patch_size",
            "patch_size_t",
            "use_rotary_positional_embeddings",
            "use_learned_positional_embeddings",
            "patch_bias",
        ],
    ),
    "hunyuanvideo-i2v": (
        "hunyuanvideo",
        ["patch_size", "patch_size_t", "qk_norm", "guidance_embeds", "image_condition_type"],
    ),
    "ltx-video": ("ltx", ["patch_size", "patch_size_t", "qk_norm", "norm_elementwise_affine"]),
    "svd-xt": ("svd", ["down_block_types", "up_block_types", "transformer_layers_per_block"]),
}


@pytest.mark.parametrize("config_name", sorted(STRUCTURE))
def test_tiny_models_keep_the_real_structure(shared_configs: dict, config_name: str) -> None:
    real = shared_configs[config_name]["denoiser"]
    case_name, keys = STRUCTURE[config_name]
    case = TINY_CASES[case_name]
    assert case.class_name == real["class"]
    for key in keys:
        if key in ("down_block_types", "up_block_types"):  # SVD: same block kinds, fewer levels
            assert set(case.config[key]) == set(real["config"][key])
        else:
            assert case.config.get(key) == real["config"].get(key), key
    if real["config"].get("image_dim") is not None:
        assert case.config["image_dim"] is not None and case.config["added_kv_proj_dim"] is not None


class _Shape:
    """Stands in for a latent tensor: token_grid only reads ``.shape``."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape


@pytest.mark.parametrize("config_name", sorted(STRUCTURE))
def test_token_grid_reproduces_the_real_sequence_lengths(shared_configs: dict, config_name: str) -> None:
    """At each checkpoint's default size the layout gives the documented token-frames and tokens per frame,
    and the reference span covers the documented video part of the self-attention sequence."""
    meta = shared_configs[config_name]
    cfg, seq, vae, defaults = meta["denoiser"]["config"], meta["sequence"], meta["vae"], meta["defaults"]
    layout = layout_for_class_name(meta["denoiser"]["class"])
    latent_frames = seq["latent_frames_at_defaults"]
    lh, lw = defaults["height"] // vae["spatial_compression"], defaults["width"] // vae["spatial_compression"]
    if layout.latent_dims == "tokens":
        bound = {"num_frames": latent_frames, "height": lh, "width": lw}
    else:
        sizes = {"B": 1, "C": cfg["in_channels"], "F": latent_frames, "H": lh, "W": lw}
        bound = {layout.latent_arg: _Shape(tuple(sizes[d] for d in layout.latent_dims))}
    grid = token_grid(layout, cfg, bound)
    assert grid.frames == seq.get("token_frames_at_defaults", latent_frames)
    assert grid.tokens_per_frame == seq["tokens_per_latent_frame_at_defaults"]
    length = seq["self_attention_seq_len_at_defaults"]
    span = layout.span(grid, length)
    video = seq.get("video_tokens_at_defaults", length)
    assert span.video_tokens == video
    assert span.biased_end - span.video_start == video
    assert 0 <= span.video_start and span.biased_end <= length


def test_every_family_has_a_tiny_model_and_a_pipeline() -> None:
    assert {c.family for c in TINY_CASES.values()} == set(FAMILIES)
    for layout in FAMILIES.values():
        assert layout.pipelines and layout.attention_patterns


def test_layout_found_along_the_mro() -> None:
    import diffusers

    class MyWan(diffusers.WanTransformer3DModel):
        pass

    assert layout_for(MyWan.from_config(TINY_CASES["wan22"].config)).family == "wan"
