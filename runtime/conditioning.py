"""Conditioning without torch: the input image through the exported condition encoder (with the random draws the
pipeline makes there — CogVideoX's posterior sample, SVD's noise augmentation — drawn here in numpy from the seed
and fed as graph inputs) and the exported CLIP image encoder where the pipeline has one (Wan 2.1's image context,
SVD's image embedding); the prompt through the exported tokenizer and text encoder where the pipeline has one
(Wan, CogVideoX, LTX; HunyuanVideo-I2V's LLaVA and CLIP with the image: ``llava_prompts``), else the empty prompt's
embeddings the export stored. What differs per pipeline is the
manifest's recipe: which entry the image encoder fills, what the unconditional pass sees (the empty prompt, or
SVD's zeros) and whether SVD's added time ids are made.

``dymos prepare`` remains the way to encode prompts for exports without a text encoder graph; it draws its random
numbers with torch, so its conditioning of CogVideoX and SVD is another (equally valid) sample than this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dymos.images import clip_pixels, load_image, preprocess_image
from dymos.manifest import GUIDED_INPUTS, LLAVA_PROMPTS, NOISE_INPUT, NOISE_SCALE_INPUT, denoiser_input_of

from .artifacts import ExportDir
from .backends import Backend, open_backend
from .llava_prompts import LLAVA_ENCODER, POOLED_ENCODER, llava_prompt_conditioning
from .text import fixed_length_tokenizer

CONDITION_ENCODER = "condition_encoder"
IMAGE_ENCODER = "image_encoder"
IMAGE_CONTEXT = "encoder_hidden_states_image"  # the denoiser input Wan 2.1's image encoder feeds
# The conditioning draws come from their own stream of the run's seed, independent of the initial latents'
# ``default_rng(seed)``.
CONDITIONING_STREAM = 1
# A prompt embedding's conditioning entry -> its attention mask's (the same guidance half).
MASK_ENTRY_OF = dict(zip(GUIDED_INPUTS["encoder_hidden_states"], GUIDED_INPUTS["encoder_attention_mask"]))


class ConditioningUnavailable(ValueError):
    """The export cannot condition on an image by itself; the message says what to use instead."""


@dataclass(frozen=True)
class MicroConditioning:
    """SVD's micro-conditioning, as ``StableVideoDiffusionPipeline.__call__`` takes it (its defaults)."""

    fps: int = 7
    motion_bucket_id: int = 127
    noise_aug_strength: float = 0.02

    def __post_init__(self) -> None:
        if not (isinstance(self.fps, int) and self.fps >= 1):
            raise ValueError(f"fps must be a positive integer, got {self.fps!r}")
        if not (isinstance(self.motion_bucket_id, int) and self.motion_bucket_id >= 0):
            raise ValueError(f"motion_bucket_id must be a non-negative integer, got {self.motion_bucket_id!r}")
        if not (np.isfinite(self.noise_aug_strength) and self.noise_aug_strength >= 0):
            raise ValueError(f"noise_aug_strength must be finite and >= 0, got {self.noise_aug_strength!r}")

    def time_ids(self) -> np.ndarray:
        """``added_time_ids [1, 3]`` as ``__call__`` passes them: ``fps - 1``, the motion bucket, the noise scale."""
        return np.asarray([[self.fps - 1, self.motion_bucket_id, self.noise_aug_strength]], dtype=np.float32)


def _image_encoder_fills(export: ExportDir) -> str | None:
    """The conditioning entry the export's CLIP image encoder must fill (Wan 2.1's image context, SVD's image
    embedding), or None where the denoiser takes no image embedding."""
    fills = (export.manifest.get("pipeline") or {}).get("recipe", {}).get("image_encoder", {}).get("fills")
    fills = fills or IMAGE_CONTEXT  # exports from before the recipe named it: Wan 2.1's
    denoiser_inputs = {t["name"] for t in export.submodel("denoiser").inputs}
    return fills if denoiser_input_of(fills) in denoiser_inputs else None


def supports_image_conditioning(export: ExportDir) -> bool:
    pipeline = export.manifest.get("pipeline") or {}
    submodels = export.manifest.get("submodels", {})
    needs_image_encoder = _image_encoder_fills(export) is not None
    return (
        CONDITION_ENCODER in submodels
        and (not takes_prompts(export) or bool(pipeline.get("empty_prompt")) or _has_llava(export))
        and (not needs_image_encoder or (IMAGE_ENCODER in submodels and "image_processor" in pipeline))
    )


def _run_encoder(export: ExportDir, submodel: str, engine: Backend | None, value: np.ndarray) -> np.ndarray:
    """One fixed-shape encoder graph on ``value`` (cast to its input dtype: fp16 exports take fp16 pixels, token ids
    stay int64), float32 out."""
    spec = export.submodel(submodel)
    engine = engine or open_backend(export, submodel)
    feed = {spec.inputs[0]["name"]: value.astype(np.dtype(spec.inputs[0]["dtype"]))}
    return engine.run(feed)[spec.outputs[0]["name"]].astype(np.float32)


def _clean_wan_prompt(text: str) -> str:
    """``diffusers.pipelines.wan``'s ``prompt_clean``: ftfy's fixes, HTML entities unescaped twice, whitespace runs
    collapsed."""
    import html
    import re

    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip()


def takes_prompts(export: ExportDir) -> bool:
    """False for pipelines that condition on the image alone (SVD: zeros for the unconditional pass)."""
    recipe = (export.manifest.get("pipeline") or {}).get("recipe", {})
    return recipe.get("unconditional", "empty_prompt") != "zeros"


def supports_prompts(export: ExportDir) -> bool:
    """Whether the export encodes prompts by itself: a T5 text encoder graph, or HunyuanVideo-I2V's LLaVA ones."""
    return _has_t5(export) or _has_llava(export)


def _has_t5(export: ExportDir) -> bool:
    return "text_encoder" in export.manifest.get("submodels", {}) and "text_encoder" in (
        export.manifest.get("pipeline") or {}
    )


def _has_llava(export: ExportDir) -> bool:
    pipeline, submodels = export.manifest.get("pipeline") or {}, export.manifest.get("submodels", {})
    return LLAVA_PROMPTS in pipeline and LLAVA_ENCODER in submodels and POOLED_ENCODER in submodels


def tokenize_prompt(export: ExportDir, prompt: str) -> np.ndarray:
    """``[1, max_length]`` int64 token ids of ``prompt``: the pipeline's cleaning, then the exported fast tokenizer
    (``tokenizer.json``) truncated and padded to the export's text length, as the pipeline calls its tokenizer."""
    return _tokenize(export, prompt)[0]


def _tokenize(export: ExportDir, prompt: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`tokenize_prompt`'s ids and the tokenizer's attention mask (``[1, max_length]`` int64 each)."""
    if not _has_t5(export):
        raise ConditioningUnavailable(
            f"{export.root} has no T5 text encoder graph (the pipeline had none): encode prompts with `dymos prepare`"
        )
    settings = export.manifest["pipeline"]["text_encoder"]
    tokenizer = fixed_length_tokenizer(export.path(settings["tokenizer"]), settings)
    encoding = tokenizer.encode(_clean_wan_prompt(prompt) if settings["clean"] == "wan" else prompt)
    ids = np.asarray(encoding.ids, dtype=np.int64)[None]
    masked = settings.get("masked", True)  # the graph derives its attention mask from the padding (Wan)
    mask = np.asarray(encoding.attention_mask, dtype=np.int64)[None]
    if masked and not np.array_equal(mask[0] == 1, ids[0] != settings["pad_id"]):
        raise ValueError(f"the prompt contains the pad token {settings['pad_token']!r} itself: remove it")
    return ids, mask


def prompt_embeddings(export: ExportDir, prompt: str, *, encoder: Backend | None = None) -> np.ndarray:
    """``[1, max_length, width]`` float32 embeddings of ``prompt`` (:func:`tokenize_prompt`, then the exported text
    encoder graph), as the pipeline's ``encode_prompt`` gives them."""
    return _run_encoder(export, "text_encoder", encoder, tokenize_prompt(export, prompt))


def _encode_prompts(export: ExportDir, prompts: dict[str, str]) -> dict[str, np.ndarray]:
    """The conditioning entries of the non-empty prompts (``{"prompt_embeds": text, "negative_prompt_embeds":
    text}``) through the exported tokenizer and text encoder, with the tokenizer's attention masks where the
    denoiser takes them (LTX: ``prompt_attention_mask`` / ``negative_prompt_attention_mask``)."""
    out: dict[str, np.ndarray] = {}
    if not any(prompts.values()):
        return out
    encoder = open_backend(export, "text_encoder") if _has_t5(export) else None  # one for both
    with_mask = export.manifest["pipeline"].get("text_encoder", {}).get("attention_mask", False)
    for key, text in prompts.items():
        if text:
            ids, mask = _tokenize(export, text)
            out[key] = _run_encoder(export, "text_encoder", encoder, ids)
            if with_mask:
                out[MASK_ENTRY_OF[key]] = mask
    return out


def condition(
    export: ExportDir,
    image: object,
    *,
    seed: int = 0,
    micro: MicroConditioning = MicroConditioning(),
    encoder: Backend | None = None,
) -> np.ndarray:
    """The condition the pipeline concatenates to its latents, for a PIL ``image``: the image resized to the
    export's video size (aspect ratio not preserved, as the pipeline does) through the condition encoder graph,
    with its ``noise`` input drawn from ``seed`` (:data:`CONDITIONING_STREAM`) and SVD's noise scale from ``micro``."""
    video = export.manifest["pipeline"]["video"]
    spec = export.submodel(CONDITION_ENCODER)
    feed = {spec.inputs[0]["name"]: preprocess_image(image, video["height"], video["width"])}
    rng = np.random.default_rng([seed, CONDITIONING_STREAM])
    for tensor in spec.inputs[1:]:
        if tensor["name"] == NOISE_INPUT:
            feed[NOISE_INPUT] = rng.standard_normal(tuple(tensor["shape"]), dtype=np.float32)
        elif tensor["name"] == NOISE_SCALE_INPUT:
            feed[NOISE_SCALE_INPUT] = np.full(tuple(tensor["shape"]), micro.noise_aug_strength, dtype=np.float32)
        else:
            raise ConditioningUnavailable(f"the condition encoder takes {tensor['name']!r}, which the runtime lacks")
    engine = encoder or open_backend(export, CONDITION_ENCODER)
    feed = {k: v.astype(np.dtype(t["dtype"])) for (k, v), t in zip(feed.items(), spec.inputs)}
    return engine.run(feed)[spec.outputs[0]["name"]].astype(np.float32)


def image_conditioning(
    export: ExportDir,
    image_path: str | Path,
    *,
    prompt: str = "",
    negative_prompt: str = "",
    seed: int = 0,
    micro: MicroConditioning = MicroConditioning(),
    encoder: Backend | None = None,
    image_encoder: Backend | None = None,
) -> dict[str, np.ndarray]:
    """The conditioning ``dymos prepare`` would write for ``image_path`` and the prompts, keyed the same way:
    ``condition`` (:func:`condition`); the CLIP image encoder's output where the export has one, into the entry
    the recipe names (Wan 2.1's ``encoder_hidden_states_image``, SVD's ``prompt_embeds``), its pixels prepared as
    the pipeline prepares them; ``prompt_embeds`` / ``negative_prompt_embeds`` from the stored empty prompt or the
    exported text encoder (HunyuanVideo-I2V: from LLaVA with the image, masks and pooled embeddings beside them,
    :func:`~dymos.runtime.llava_prompts.llava_prompt_conditioning`); for SVD zeros for the unconditional pass and
    ``added_time_ids`` from ``micro``."""
    if not supports_image_conditioning(export):
        raise ConditioningUnavailable(
            f"{export.root} has no condition encoder graph (with the CLIP image encoder where the model needs one) "
            "and stored prompt embeddings: encode the image with `dymos prepare` (needs torch), or re-export the "
            "pipeline with this version (Wan, CogVideoX 1.0 and SVD exports carry them)"
        )
    pipeline = export.manifest["pipeline"]
    recipe = pipeline.get("recipe", {})
    if not takes_prompts(export) and (prompt or negative_prompt):  # before any encoder runs
        raise ValueError(f"{pipeline['class']} takes no prompt: it conditions on the image alone")
    image = load_image(image_path)
    out = {"condition": condition(export, image, seed=seed, micro=micro, encoder=encoder)}
    fills = _image_encoder_fills(export)
    if fills is not None:
        pixels = clip_pixels(image, pipeline["image_processor"])
        out[fills] = _run_encoder(export, IMAGE_ENCODER, image_encoder, pixels)
    if not takes_prompts(export):  # SVD: no prompt; the unconditional pass sees zeros
        out["negative_condition"] = np.zeros_like(out["condition"])
        out["negative_prompt_embeds"] = np.zeros_like(out["prompt_embeds"])
    elif _has_llava(export):  # HunyuanVideo-I2V: every prompt, the empty one too, is encoded with the image
        out.update(llava_prompt_conditioning(export, image, prompt, negative_prompt))
    else:
        with np.load(export.path(pipeline["empty_prompt"]["file"]), allow_pickle=False) as stored:
            out.update({k: stored[k] for k in stored.files})  # the embeddings (and LTX's attention masks)
        out.update(_encode_prompts(export, {"prompt_embeds": prompt, "negative_prompt_embeds": negative_prompt}))
    if recipe.get("added_time_ids"):
        out["added_time_ids"] = micro.time_ids()
    return out
