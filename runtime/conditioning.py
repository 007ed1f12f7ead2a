"""Conditioning without torch: the input image through the exported condition encoder, with the prompt
embeddings the export stored, for pipelines whose condition is deterministic and needs no CLIP embeddings (Wan 2.2 I2V).

``dymos prepare`` remains the way to encode other prompts (the text encoders are not exported) and the
conditioning of pipelines that draw random numbers there (CogVideoX's sampled image latents, SVD's noise
augmentation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dymos.images import load_image, preprocess_image

from .artifacts import ExportDir
from .backends import Backend, open_backend

CONDITION_ENCODER = "condition_encoder"


class ConditioningUnavailable(ValueError):
    """The export cannot condition on an image by itself; the message says what to use instead."""


def supports_image_conditioning(export: ExportDir) -> bool:
    pipeline = export.manifest.get("pipeline") or {}
    return CONDITION_ENCODER in export.manifest.get("submodels", {}) and bool(pipeline.get("empty_prompt"))


def image_conditioning(
    export: ExportDir, image_path: str | Path, *, encoder: Backend | None = None
) -> dict[str, np.ndarray]:
    """``condition``, ``prompt_embeds`` and ``negative_prompt_embeds`` for ``image_path`` and the empty prompt: the
    image resized to the export's video size (aspect ratio not preserved), encoded by the exported graph."""
    if not supports_image_conditioning(export):
        raise ConditioningUnavailable(
            f"{export.root} has no condition encoder graph and stored prompt embeddings (only Wan 2.2 I2V exports do): "
            "encode the image with `dymos prepare` (needs torch)"
        )
    video = export.manifest["pipeline"]["video"]
    pixels = preprocess_image(load_image(image_path), video["height"], video["width"])
    encoder = encoder or open_backend(export, CONDITION_ENCODER)
    dtype = np.dtype(export.submodel(CONDITION_ENCODER).inputs[0]["dtype"])  # fp16 exports take fp16 pixels
    condition = encoder.run({"pixels": pixels.astype(dtype)})["condition"].astype(np.float32)
    with np.load(export.path(export.manifest["pipeline"]["empty_prompt"]["file"]), allow_pickle=False) as stored:
        prompts = {k: stored[k] for k in ("prompt_embeds", "negative_prompt_embeds")}
    return {"condition": condition, **prompts}
