"""Conditioning without torch: the input image through the exported condition encoder (and, for Wan 2.1, the
exported CLIP image encoder), with the prompt embeddings the export stored, for pipelines whose condition is
deterministic (Wan 2.1 and 2.2 I2V).

``dymos prepare`` remains the way to encode other prompts (the text encoders are not exported) and the
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


def _run_encoder(export: ExportDir, submodel: str, engine: Backend | None, pixels: np.ndarray) -> np.ndarray:
    """One fixed-shape encoder graph on ``pixels`` (cast to its input dtype: fp16 exports take fp16), float32 out."""
    spec = export.submodel(submodel)
    engine = engine or open_backend(export, submodel)
    feed = {spec.inputs[0]["name"]: pixels.astype(np.dtype(spec.inputs[0]["dtype"]))}
    return engine.run(feed)[spec.outputs[0]["name"]].astype(np.float32)


def image_conditioning(
    export: ExportDir,
    image_path: str | Path,
    *,
    encoder: Backend | None = None,
    image_encoder: Backend | None = None,
) -> dict[str, np.ndarray]:
    """``condition``, ``prompt_embeds`` and ``negative_prompt_embeds`` (and Wan 2.1's ``encoder_hidden_states_image``)
    for ``image_path`` and the empty prompt. The condition encoder sees the image resized to the export's video size
    (aspect ratio not preserved); the CLIP image encoder sees it as the pipeline's image processor prepares it (the
    shortest edge resized, then centre-cropped), both as the pipeline does."""
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
    return out
