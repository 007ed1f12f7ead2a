"""``dymos prepare``: the torch side of a run — conditioning computed once, saved for the torch-free runtime.

This step runs the pipeline's own encoding code (prompt embeddings, image embeddings where the model takes them, the
VAE-encoded first-frame condition) and writes a ``.npz``. The random draws some pipelines make while conditioning
(CogVideoX's posterior sample, SVD's noise augmentation) are drawn with torch from the seed, exactly as the
pipeline's ``generator`` would draw them. The condition functions here (:data:`CONDITION_FUNCTIONS`) are also what the
exported condition encoder graphs trace, with the draws as graph inputs, so ``dymos run --image`` needs no torch
for the image (see ``dymos.runtime.conditioning``); this step remains the way to encode prompts for exports without
a text encoder graph.
Image resize policy: the pipeline's video processor resizes the image to the export's height × width
(aspect ratio not preserved), exactly as ``pipe(image=..., height=..., width=...)`` would.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dymos.images import load_image
from dymos.inputs import first_frame_zero_timesteps
from dymos.manifest import GUIDED_INPUTS, NOISE_INPUT, NOISE_SCALE_INPUT, atomic_write_bytes, load_manifest
from dymos.models import exported_source, load_pipeline, pipeline_compression

CONDITIONING_FORMAT = "dymos-conditioning-v1"


def _tiny_prompt_embedding(prompt: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Pipelines without a text encoder (the tiny Wan 2.2 ones, the shipped model): a prompt maps to a seeded random
    embedding (stable per prompt)."""
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "little")
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


TEXT_MASK_ENTRIES = ("prompt_attention_mask", "negative_prompt_attention_mask")


def text_embeddings(pipe: Any, prompt: str, negative_prompt: str, text_shape: tuple[int, int]) -> dict:
    """Prompt and negative-prompt embeddings, ``[1, tokens, width]`` each, as the pipeline computes them; for
    pipelines whose denoiser takes the text's attention mask (LTX), the masks too (``[1, tokens]`` int64; all ones
    for the seeded embeddings of pipelines without a text encoder)."""
    masked = _takes_text_mask(pipe)
    pooled_dim = _pooled_dim(pipe)
    if pipe.text_encoder is not None and pooled_dim:
        raise ValueError(
            f"{type(pipe).__name__} encodes prompts together with the image (LLaVA): use llava_text_embeddings"
        )
    if pipe.text_encoder is not None:
        encoded = pipe.encode_prompt(
            prompt, negative_prompt, do_classifier_free_guidance=True, max_sequence_length=text_shape[0]
        )
        if masked:  # (embeds, mask, negative embeds, negative mask)
            keys = (
                "prompt_embeds",
                "prompt_attention_mask",
                "negative_prompt_embeds",
                "negative_prompt_attention_mask",
            )
            return dict(zip(keys, encoded))
        return {"prompt_embeds": encoded[0], "negative_prompt_embeds": encoded[1]}
    out = {
        "prompt_embeds": _tiny_prompt_embedding(prompt, (1, *text_shape)),
        "negative_prompt_embeds": _tiny_prompt_embedding(negative_prompt, (1, *text_shape)),
    }
    if masked:
        out.update({key: torch.ones(1, text_shape[0], dtype=torch.long) for key in TEXT_MASK_ENTRIES})
    if pooled_dim:  # HunyuanVideo's CLIP pooled embeddings
        out["pooled_prompt_embeds"] = _tiny_prompt_embedding(f"pooled:{prompt}", (1, pooled_dim))
        out["negative_pooled_prompt_embeds"] = _tiny_prompt_embedding(f"pooled:{negative_prompt}", (1, pooled_dim))
    return out


def llava_prompt_settings(pipe: Any) -> dict[str, Any]:
    """How ``HunyuanVideoImageToVideoPipeline.__call__`` encodes prompts with LLaVA, read from its code's defaults:
    the prompt template (``crop_start`` and the image placeholder's span included), ``max_sequence_length``, the
    hidden layers skipped, CLIP's token count, and the image-token interleave: by image condition type for the
    prompt (2 latent concat, 4 token replace, else 1, as ``__call__`` picks it) and ``encode_prompt``'s default for
    the negative prompt, which ``__call__`` encodes without passing one. The export writes these into the manifest;
    :func:`llava_text_embeddings` calls the pipeline with them."""
    import inspect

    def default(function: Any, name: str) -> Any:
        return inspect.signature(function).parameters[name].default

    call = type(pipe).__call__
    template = dict(default(call, "prompt_template"))
    if not template.get("crop_start"):
        raise ValueError("the prompt template has no crop_start: its crop is not supported")
    condition_type = pipe.transformer.config.get("image_condition_type")
    return {
        "template": template,
        "max_sequence_length": int(default(call, "max_sequence_length")),
        "skip_layers": int(default(type(pipe)._get_llama_prompt_embeds, "num_hidden_layers_to_skip")),
        "pooled_max_length": int(default(type(pipe)._get_clip_prompt_embeds, "max_sequence_length")),
        "image_embed_interleave": {"latent_concat": 2, "token_replace": 4}.get(condition_type, 1),
        "negative_image_embed_interleave": int(default(type(pipe).encode_prompt, "image_embed_interleave")),
    }


def llava_text_embeddings(
    pipe: Any, image: Any, prompt: str, negative_prompt: str, height: int, width: int
) -> dict[str, torch.Tensor]:
    """HunyuanVideo-I2V's prompt conditioning for ``image``, by the pipeline's ``encode_prompt`` as ``__call__``
    runs it: the prompt with the image, the negative prompt with a black ``width`` x ``height`` image (each LLaVA
    embeddings, their attention mask and CLIP's pooled embedding)."""
    import PIL.Image

    settings = llava_prompt_settings(pipe)
    common = {"prompt_template": settings["template"], "max_sequence_length": settings["max_sequence_length"]}
    black = PIL.Image.new("RGB", (width, height), 0)
    out = {}
    for half, picture, text, interleave in (
        (0, image, prompt, settings["image_embed_interleave"]),
        (1, black, negative_prompt, settings["negative_image_embed_interleave"]),
    ):
        embeds, pooled, mask = pipe.encode_prompt(
            image=picture, prompt=text, image_embed_interleave=interleave, device=torch.device("cpu"), **common
        )
        out[GUIDED_INPUTS["encoder_hidden_states"][half]] = embeds
        out[GUIDED_INPUTS["encoder_attention_mask"][half]] = mask
        out[GUIDED_INPUTS["pooled_projections"][half]] = pooled
    return out


def _pooled_dim(pipe: Any) -> int | None:
    """The width of the pooled prompt embedding the denoiser takes (HunyuanVideo), or None."""
    return (getattr(pipe, "transformer", None) and pipe.transformer.config.get("pooled_projection_dim")) or None


def _takes_text_mask(pipe: Any) -> bool:
    """Whether the pipeline feeds its denoiser the prompt's attention mask (LTX, HunyuanVideo): then ``__call__``
    takes ``prompt_attention_mask`` beside ``prompt_embeds``."""
    import inspect

    return "prompt_attention_mask" in inspect.signature(type(pipe).__call__).parameters


def wan_condition(pipe: Any, pixels: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Wan's condition for preprocessed ``pixels [1, 3, H, W]``: the mask channels + the VAE latents (the mode,
    deterministic) of ``[image, zeros...]``; with ``expand_timesteps`` (Wan 2.2 TI2V) the image's normalised VAE
    latent alone, ``[1, z, 1, h, w]``, which the pipeline puts in place of the first latent frame. Computed by the
    pipeline's own ``prepare_latents``; ``dymos prepare`` calls it, and the exported condition encoder graph is this
    function traced."""
    height, width = pixels.shape[-2:]
    z_dim = int(pipe.vae.config.z_dim)
    latent_frames = (num_frames - 1) // pipe.vae_scale_factor_temporal + 1
    spatial = pipe.vae_scale_factor_spatial
    prepared = pipe.prepare_latents(
        pixels,
        1,
        z_dim,
        height,
        width,
        num_frames,
        torch.float32,
        pixels.device,
        None,
        latents=torch.zeros((1, z_dim, latent_frames, height // spatial, width // spatial), dtype=pixels.dtype),
    )
    return prepared[1]  # (latents, condition) or, with expand_timesteps, (latents, condition, first_frame_mask)


def wan_denoiser_input(
    latents: torch.Tensor, condition: torch.Tensor, timestep: torch.Tensor, *, expand_timesteps: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``WanImageToVideoPipeline``'s loop hands its transformer for ``latents`` at ``timestep [B]``, with the
    ``condition`` of :func:`wan_condition`: latents and condition on channels and one timestep an item, or with
    ``expand_timesteps`` (Wan 2.2 TI2V) the condition in place of the first latent frame and per-token timesteps,
    0 on that frame's tokens (tokens of 2x2 latents: the pipeline assumes the real model's spatial patch). For code
    that runs the transformer outside the pipeline (the sweep's attention probe, ``tools/sdedit_probe.py``,
    ``tools/train_tiny.py``), so it sees the pipeline's inputs in either form."""
    if not expand_timesteps:
        return torch.cat([latents, condition], dim=1), timestep
    _, _, frames, height, width = latents.shape
    image = torch.cat([condition, latents[:, :, 1:]], dim=2)  # the pipeline's 0/1 mask blend, exactly
    return image, first_frame_zero_timesteps(timestep, frames, (height // 2) * (width // 2))


def pipeline_denoiser_input(
    pipe: Any, latents: torch.Tensor, condition: torch.Tensor, timestep: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`wan_denoiser_input` in ``pipe``'s form (its ``expand_timesteps``)."""
    expand = bool(pipe.config.get("expand_timesteps"))
    if expand and tuple(pipe.transformer.config.patch_size)[1:] != (2, 2):
        raise ValueError("the TI2V pipeline forms its per-token timesteps for a 2x2 spatial patch")
    return wan_denoiser_input(latents, condition, timestep, expand_timesteps=expand)


def _deterministic_conditioning(pipe: Any, image: Any, request: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Wan and HunyuanVideo: the condition, which draws nothing (:data:`CONDITION_FUNCTIONS`), the prompt embeddings
    (HunyuanVideo's real encoders: LLaVA's, made with the image) and, for Wan 2.1, the CLIP image context."""
    height, width = request["height"], request["width"]
    pixels = pipe.video_processor.preprocess(image, height=height, width=width).to(torch.float32)
    out = {"condition": CONDITION_FUNCTIONS[type(pipe).__name__](pipe, pixels, request["num_frames"])}
    if getattr(pipe, "text_encoder", None) is not None and _pooled_dim(pipe):  # HunyuanVideo's LLaVA, with the image
        out.update(llava_text_embeddings(pipe, image, request["prompt"], request["negative_prompt"], height, width))
    else:
        out.update(text_embeddings(pipe, request["prompt"], request["negative_prompt"], request["text_shape"]))
    if getattr(pipe, "image_encoder", None) is not None and pipe.transformer.config.get("image_dim"):
        out["encoder_hidden_states_image"] = pipe.encode_image(image, torch.device("cpu"))
    return out


@contextmanager
def posterior_noise(noise: torch.Tensor) -> Iterator[None]:
    """Make diffusers' ``DiagonalGaussianDistribution.sample`` take ``noise`` as its one Gaussian draw, so the
    pipeline's own sampling code runs with noise given from outside (an exported graph's input, or the draw of a
    seeded generator) instead of a generator."""
    import diffusers.models.autoencoders.vae as vae_module

    original = vae_module.randn_tensor

    def draw(shape: Any, generator: Any = None, device: Any = None, dtype: Any = None, **_: Any) -> torch.Tensor:
        if tuple(shape) != tuple(noise.shape):
            raise ValueError(f"the posterior draws {tuple(shape)}, the given noise is {tuple(noise.shape)}")
        return noise.to(dtype=dtype or noise.dtype)

    vae_module.randn_tensor = draw
    try:
        yield
    finally:
        vae_module.randn_tensor = original


def cogvideox_condition(pipe: Any, pixels: torch.Tensor, num_frames: int, noise: torch.Tensor) -> torch.Tensor:
    """CogVideoX's condition for preprocessed ``pixels [1, 3, H, W]`` and a ``num_frames`` video: the VAE posterior
    of the image sampled with ``noise`` (its shape: :func:`condition_noise_shapes`), scaled and padded with zeros to
    the video's latent frames ``[1, F, C, h, w]``, by the pipeline's own ``prepare_latents``. As ``__call__`` does,
    CogVideoX 1.5 first pads ``num_frames`` to whole temporal patches of latent frames."""
    height, width = pixels.shape[-2:]
    channels = int(pipe.transformer.config.in_channels) // 2
    latent_frames = (num_frames - 1) // pipe.vae_scale_factor_temporal + 1
    patch_t = pipe.transformer.config.patch_size_t
    if patch_t is not None and latent_frames % patch_t:  # __call__'s additional_frames
        num_frames += (patch_t - latent_frames % patch_t) * pipe.vae_scale_factor_temporal
        latent_frames = (num_frames - 1) // pipe.vae_scale_factor_temporal + 1
    spatial = pipe.vae_scale_factor_spatial
    shape = (1, latent_frames, channels, height // spatial, width // spatial)
    with posterior_noise(noise):
        _, image_latents = pipe.prepare_latents(
            pixels, 1, channels, num_frames, height, width, torch.float32, pixels.device, None,
            latents=torch.zeros(shape, dtype=pixels.dtype),
        )  # fmt: skip
    return image_latents


def condition_view(pipe: Any) -> Any:
    """The pipeline as its condition function must see it. ``StableVideoDiffusionPipeline.__call__`` encodes the
    image with its VAE moved to fp32 when the VAE is fp16 and its config says ``force_upcast`` (its
    ``needs_upcasting``); code that must not move the pipeline's own VAE (a graph being exported) gets a shallow copy
    of the pipeline holding an fp32 copy of the VAE (made once per VAE and weights: :func:`fp32_copy`). Every other
    case: the pipeline itself."""
    vae = getattr(pipe, "vae", None)
    upcast = (
        type(pipe).__name__ == "StableVideoDiffusionPipeline"
        and vae is not None
        and vae.dtype == torch.float16
        and bool(getattr(vae.config, "force_upcast", False))
    )
    if not upcast:
        return pipe
    view = copy.copy(pipe)
    object.__setattr__(view, "vae", fp32_copy(vae))
    return view


_FP32_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> (weights stamp, fp32 copy)


def fp32_copy(module: torch.nn.Module) -> torch.nn.Module:
    """An fp32 copy of ``module``, kept while it lives and reused while its weights are unchanged: preparing each
    request of an fp16 SVD pipeline would otherwise copy and cast its whole VAE every time. The stamp is each
    parameter's and buffer's storage and in-place version counter, so loading other weights, moving the module or
    writing into a tensor makes a fresh copy."""
    tensors = itertools.chain(module.parameters(), module.buffers())
    stamp = tuple((tensor.data_ptr(), tensor._version) for tensor in tensors)
    cached = _FP32_COPIES.get(module)
    if cached is None or cached[0] != stamp:
        cached = (stamp, copy.deepcopy(module).to(torch.float32))
        _FP32_COPIES[module] = cached
    return cached[1]


def svd_condition(
    pipe: Any, pixels: torch.Tensor, num_frames: int, noise: torch.Tensor, noise_aug_strength: torch.Tensor
) -> torch.Tensor:
    """SVD's condition for preprocessed ``pixels [1, 3, H, W]``: the noise-augmented image (``pixels +
    noise_aug_strength * noise``, as ``__call__`` does) through the pipeline's ``_encode_vae_image`` (the VAE mode),
    cast to the image embeddings' dtype and repeated over the frames: ``[1, F, C, h, w]``. ``noise_aug_strength`` is
    a ``[1]`` tensor so a graph takes it as an input. ``pipe`` as :func:`condition_view` gives it (an fp16 pipeline
    encodes in fp32 there, as its ``__call__`` does)."""
    augmented = pixels + noise_aug_strength * noise
    latents = pipe._encode_vae_image(augmented, pixels.device, 1, False)
    latents = latents.to(pipe.image_encoder.dtype)  # __call__: image_latents.to(image_embeddings.dtype)
    return latents.unsqueeze(1).repeat(1, num_frames, 1, 1, 1)


def ltx_condition(pipe: Any, pixels: torch.Tensor, num_frames: int, noise: torch.Tensor) -> torch.Tensor:
    """LTX's condition for preprocessed ``pixels [1, 3, H, W]``: the VAE posterior of the image sampled with
    ``noise`` and normalised with the VAE's statistics, ``[1, C, 1, h, w]``, which the pipeline puts in place of the
    first latent frame. The same calls as ``LTXImageToVideoPipeline.prepare_latents`` (which also draws the initial
    noise, so it is not called whole)."""
    from diffusers.pipelines.ltx.pipeline_ltx_image2video import retrieve_latents

    with posterior_noise(noise):
        latents = retrieve_latents(pipe.vae.encode(pixels.unsqueeze(2)), None)
    return pipe._normalize_latents(latents.to(pixels.dtype), pipe.vae.latents_mean, pipe.vae.latents_std)


def hunyuan_condition(pipe: Any, pixels: torch.Tensor, num_frames: int) -> torch.Tensor:
    """HunyuanVideo-I2V's condition for preprocessed ``pixels [1, 3, H, W]``, by the pipeline's own ``prepare_latents``
    (handed zero latents, so it draws nothing): the VAE mode of the image times the scaling factor. Token replace:
    that latent, ``[1, C, 1, h, w]``, the first latent frame of every step. Latent concat: as ``__call__`` completes
    it, the latent on the first frame and zeros on the others, then a mask channel (1 on the first frame),
    ``[1, C + 1, F, h, w]``, concatenated to the latents."""
    height, width = pixels.shape[-2:]
    temporal, spatial = pipeline_compression(pipe)
    channels = int(pipe.vae.config.latent_channels)
    shape = (1, channels, (num_frames - 1) // temporal + 1, height // spatial, width // spatial)
    condition_type = pipe.transformer.config.image_condition_type
    _, image_latents = pipe.prepare_latents(
        pixels, 1, channels, height, width, num_frames, torch.float32, pixels.device, None,
        latents=torch.zeros(shape, dtype=pixels.dtype), image_condition_type=condition_type,
    )  # fmt: skip
    if condition_type != "latent_concat":
        return image_latents
    first = torch.zeros_like(image_latents[:, :1])
    first[:, :, 0] = 1.0
    image_latents = torch.cat([image_latents[:, :, :1], torch.zeros_like(image_latents[:, :, 1:])], dim=2)
    return torch.cat([image_latents, first], dim=1)


def condition_noise_shapes(pipe: Any, height: int, width: int) -> dict[str, tuple[int, ...]]:
    """The inputs a pipeline's condition function takes after ``(pipe, pixels, num_frames)``, with their shapes:
    the random draws it would make (``noise``: standard normal) and SVD's ``noise_aug_strength``."""
    name = type(pipe).__name__
    if name in ("CogVideoXImageToVideoPipeline", "LTXImageToVideoPipeline"):  # one posterior sample of the image
        spatial = pipeline_compression(pipe)[1]
        return {NOISE_INPUT: (1, int(pipe.vae.config.latent_channels), 1, height // spatial, width // spatial)}
    if name == "StableVideoDiffusionPipeline":
        return {NOISE_INPUT: (1, 3, height, width), NOISE_SCALE_INPUT: (1,)}
    return {}


# pipeline class -> its condition function (pipe, pixels, num_frames, *the inputs of condition_noise_shapes)
CONDITION_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "WanImageToVideoPipeline": wan_condition,
    "CogVideoXImageToVideoPipeline": cogvideox_condition,
    "StableVideoDiffusionPipeline": svd_condition,
    "LTXImageToVideoPipeline": ltx_condition,
    "HunyuanVideoImageToVideoPipeline": hunyuan_condition,
}


def _posterior_conditioning(pipe: Any, image: Any, request: dict[str, Any]) -> dict[str, torch.Tensor]:
    """CogVideoX and LTX: the image's VAE latents (:data:`CONDITION_FUNCTIONS`), sampled with the seed's noise as
    the pipeline's ``generator`` would draw it (its first draw), and the prompt embeddings."""
    height, width, num_frames = request["height"], request["width"], request["num_frames"]
    pixels = pipe.video_processor.preprocess(image, height=height, width=width).to(torch.float32)
    shape = condition_noise_shapes(pipe, height, width)[NOISE_INPUT]
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(request["seed"]))
    return {
        "condition": CONDITION_FUNCTIONS[type(pipe).__name__](pipe, pixels, num_frames, noise),
        **text_embeddings(pipe, request["prompt"], request["negative_prompt"], request["text_shape"]),
    }


def _svd_conditioning(pipe: Any, image: Any, request: dict[str, Any]) -> dict[str, torch.Tensor]:
    """SVD: CLIP image embeddings, the noise-augmented image's VAE latents repeated over frames
    (:func:`svd_condition`), and the added time ids (fps - 1, motion bucket, noise augmentation); the unconditional
    pass sees zeros for the first two, exactly as ``StableVideoDiffusionPipeline.__call__`` builds its CFG batch.
    The noise draw uses the seed."""
    if request["prompt"] or request["negative_prompt"]:
        raise ValueError("StableVideoDiffusionPipeline takes no prompt: it conditions on the image alone")
    height, width, num_frames = request["height"], request["width"], request["num_frames"]
    cpu = torch.device("cpu")
    embeddings = pipe._encode_image(image, cpu, 1, False)
    pixels = pipe.video_processor.preprocess(image, height=height, width=width).to(cpu)
    noise = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(request["seed"]))
    aug = torch.tensor([request["noise_aug_strength"]], dtype=torch.float32)
    latents = svd_condition(condition_view(pipe), pixels, num_frames, noise, aug)
    time_ids = pipe._get_add_time_ids(
        request["fps"] - 1, request["motion_bucket_id"], request["noise_aug_strength"], embeddings.dtype, 1, 1, False
    )
    return {
        "condition": latents,
        "negative_condition": torch.zeros_like(latents),
        "prompt_embeds": embeddings,
        "negative_prompt_embeds": torch.zeros_like(embeddings),
        "added_time_ids": time_ids,
    }


_CONDITIONERS = {
    "WanImageToVideoPipeline": _deterministic_conditioning,
    "CogVideoXImageToVideoPipeline": _posterior_conditioning,
    "StableVideoDiffusionPipeline": _svd_conditioning,
    "LTXImageToVideoPipeline": _posterior_conditioning,
    "HunyuanVideoImageToVideoPipeline": _deterministic_conditioning,
}


def prepare_conditioning(
    pipe: Any,
    image: Any,
    *,
    prompt: str = "",
    negative_prompt: str = "",
    height: int,
    width: int,
    num_frames: int,
    text_shape: tuple[int, int] = (0, 0),
    seed: int = 0,
    fps: int = 7,
    motion_bucket_id: int = 127,
    noise_aug_strength: float = 0.02,
) -> dict[str, np.ndarray]:
    """Conditioning for one image (and prompt): ``condition`` (what the pipeline concatenates to the latents, with
    ``negative_condition`` where the unconditional pass differs), the prompt (or image) embeddings and any other
    per-item denoiser input (``added_time_ids``, ``encoder_hidden_states_image``), keyed by graph input name.
    ``text_shape`` = (tokens, width) of the graph's text input; fps/motion_bucket_id/noise_aug_strength are SVD's.
    """
    conditioner = _CONDITIONERS.get(type(pipe).__name__)
    if conditioner is None:
        raise ValueError(f"dymos prepare supports {', '.join(_CONDITIONERS)}, not {type(pipe).__name__}")
    if not (np.isfinite(noise_aug_strength) and noise_aug_strength >= 0):  # a NaN here turns every frame black
        raise ValueError(f"noise_aug_strength must be finite and >= 0, got {noise_aug_strength!r}")
    request = {
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "height": height,
        "width": width,
        "num_frames": num_frames,
        "text_shape": text_shape,
        "seed": seed,
        "fps": fps,
        "motion_bucket_id": motion_bucket_id,
        "noise_aug_strength": noise_aug_strength,
    }
    with torch.no_grad():
        return {k: v.float().numpy() for k, v in conditioner(pipe, image, request).items()}


def text_shape(manifest: dict[str, Any]) -> tuple[int, int]:
    """(tokens, width) of the exported denoiser's text input (SVD's holds image embeddings; only the text
    pipelines use the shape); a dynamic text length (HunyuanVideo) gives the export's own (its ``opt``)."""
    denoiser = manifest["submodels"]["denoiser"]
    text = next(t for t in denoiser["inputs"] if t["name"] == "encoder_hidden_states")
    tokens = text["shape"][1]
    return int(denoiser["dims"][tokens]["opt"] if isinstance(tokens, str) else tokens), int(text["shape"][2])


def prepare(
    export_dir: str | Path,
    image_path: str | Path,
    prompt: str,
    out: str | Path,
    *,
    negative_prompt: str = "",
    seed: int = 0,
    fps: int = 7,
    motion_bucket_id: int = 127,
    noise_aug_strength: float = 0.02,
    model: str | None = None,
) -> Path:
    """Conditioning for ``export_dir``'s pipeline at its exported size, written atomically to ``out`` (.npz).

    The pipeline loads from the folder the export recorded (``model``: another place of the same checkpoint);
    weights that changed since the export are refused.

    ``seed`` drives the one random draw some pipelines make here (CogVideoX's image latents, SVD's noise
    augmentation); ``fps``, ``motion_bucket_id`` and ``noise_aug_strength`` are SVD's micro-conditioning.
    """
    import io

    manifest = load_manifest(export_dir, verify_hashes=False)
    pipeline = manifest.get("pipeline")
    if not pipeline or not pipeline.get("runtime_supported"):
        raise ValueError(f"{export_dir} was not exported from a pipeline the runtime drives (see `dymos export`)")
    image = load_image(image_path)
    video = pipeline["video"]
    pipe = load_pipeline(exported_source(manifest["model"], model), seed=manifest["export"]["seed"])
    arrays = prepare_conditioning(
        pipe,
        image,
        prompt=prompt,
        negative_prompt=negative_prompt,
        height=video["height"],
        width=video["width"],
        num_frames=video["frames"],
        text_shape=text_shape(manifest),
        seed=seed,
        fps=fps,
        motion_bucket_id=motion_bucket_id,
        noise_aug_strength=noise_aug_strength,
    )
    meta = {
        "format": CONDITIONING_FORMAT,
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "image": str(image_path),
        "video": video,
        "model": manifest["model"]["source"],
    }
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    out = Path(out)
    atomic_write_bytes(out, buffer.getvalue())
    return out
