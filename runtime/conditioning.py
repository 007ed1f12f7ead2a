"""Conditioning without torch: the input image through the exported condition encoder (and, for Wan 2.1, the
exported CLIP image encoder), and the prompt through the exported tokenizer and text encoder where the pipeline
has one (else the empty prompt's embeddings the export stored), for pipelines whose condition is deterministic
(Wan 2.1 and 2.2 I2V).

``dymos prepare`` remains the way to encode prompts for exports without a text encoder graph and the
conditioning of pipelines that draw random numbers there (CogVideoX's sampled image latents, SVD's noise
augmentation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dymos.images import clip_pixels, load_image, preprocess_image

from .artifacts import ExportDir
from .backends import Backend, open_backend

CONDITION_ENCODER = "condition_encoder"
IMAGE_ENCODER = "image_encoder"
IMAGE_CONTEXT = "encoder_hidden_states_image"  # the denoiser input the image encoder feeds (Wan 2.1)


class ConditioningUnavailable(ValueError):
    """The export cannot condition on an image by itself; the message says what to use instead."""


def supports_image_conditioning(export: ExportDir) -> bool:
    pipeline = export.manifest.get("pipeline") or {}
    submodels = export.manifest.get("submodels", {})
    needs_image_encoder = any(t["name"] == IMAGE_CONTEXT for t in export.submodel("denoiser").inputs)
    return (
        CONDITION_ENCODER in submodels
        and bool(pipeline.get("empty_prompt"))
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


def supports_prompts(export: ExportDir) -> bool:
    return "text_encoder" in export.manifest.get("submodels", {}) and "text_encoder" in (
        export.manifest.get("pipeline") or {}
    )


def tokenize_prompt(export: ExportDir, prompt: str) -> np.ndarray:
    """``[1, max_length]`` int64 token ids of ``prompt``: the pipeline's cleaning, then the exported fast tokenizer
    (``tokenizer.json``) truncated and padded to the export's text length, as the pipeline calls its tokenizer."""
    from tokenizers import Tokenizer

    if not supports_prompts(export):
        raise ConditioningUnavailable(
            f"{export.root} has no text encoder graph (the pipeline had none): encode prompts with `dymos prepare`"
        )
    settings = export.manifest["pipeline"]["text_encoder"]
    tokenizer = Tokenizer.from_file(str(export.path(settings["tokenizer"])))
    tokenizer.enable_truncation(settings["max_length"])
    tokenizer.enable_padding(length=settings["max_length"], pad_id=settings["pad_id"], pad_token=settings["pad_token"])
    encoding = tokenizer.encode(_clean_wan_prompt(prompt) if settings["clean"] == "wan" else prompt)
    ids = np.asarray(encoding.ids, dtype=np.int64)[None]
    if not np.array_equal(np.asarray(encoding.attention_mask) == 1, ids[0] != settings["pad_id"]):
        raise ValueError(f"the prompt contains the pad token {settings['pad_token']!r} itself: remove it")
    return ids


def prompt_embeddings(export: ExportDir, prompt: str, *, encoder: Backend | None = None) -> np.ndarray:
    """``[1, max_length, width]`` float32 embeddings of ``prompt`` (:func:`tokenize_prompt`, then the exported text
    encoder graph), as the pipeline's ``encode_prompt`` gives them."""
    return _run_encoder(export, "text_encoder", encoder, tokenize_prompt(export, prompt))


def image_conditioning(
    export: ExportDir,
    image_path: str | Path,
    *,
    prompt: str = "",
    negative_prompt: str = "",
    encoder: Backend | None = None,
    image_encoder: Backend | None = None,
) -> dict[str, np.ndarray]:
    """``condition``, ``prompt_embeds`` and ``negative_prompt_embeds`` (and Wan 2.1's ``encoder_hidden_states_image``)
    for ``image_path`` and the prompts (empty: the stored embeddings; else the exported text encoder). The condition
    encoder sees the image resized to the export's video size (aspect ratio not preserved); the CLIP image encoder
    sees it as the pipeline's image processor prepares it (the shortest edge resized, then centre-cropped), both as
    the pipeline does."""
    if not supports_image_conditioning(export):
        raise ConditioningUnavailable(
            f"{export.root} has no condition encoder graph (with the CLIP image encoder where the model needs one) "
            "and stored prompt embeddings (Wan I2V exports have them): encode the image with `dymos prepare` "
            "(needs torch)"
        )
    pipeline = export.manifest["pipeline"]
    image = load_image(image_path)
    pixels = preprocess_image(image, pipeline["video"]["height"], pipeline["video"]["width"])
    out = {"condition": _run_encoder(export, CONDITION_ENCODER, encoder, pixels)}
    if IMAGE_ENCODER in export.manifest["submodels"]:
        out[IMAGE_CONTEXT] = _run_encoder(
            export, IMAGE_ENCODER, image_encoder, clip_pixels(image, pipeline["image_processor"])
        )
    with np.load(export.path(pipeline["empty_prompt"]["file"]), allow_pickle=False) as stored:
        out.update({k: stored[k] for k in ("prompt_embeds", "negative_prompt_embeds")})
    prompts = {"prompt_embeds": prompt, "negative_prompt_embeds": negative_prompt}
    if any(prompts.values()):
        text_encoder = open_backend(export, "text_encoder") if supports_prompts(export) else None  # once for both
        for key, text in prompts.items():
            if text:
                out[key] = prompt_embeddings(export, text, encoder=text_encoder)
    return out
