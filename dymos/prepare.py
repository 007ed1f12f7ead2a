"""``dymos prepare``: the torch side of a run — conditioning computed once, saved for the torch-free runtime.

The runtime does not export the text/image encoders; this step runs the pipeline's own encoding code (prompt
embeddings, image embeddings where the model takes them, the VAE-encoded first-frame condition) and writes a
``.npz``. Image resize policy: the pipeline's video processor resizes the image to the export's height × width
(aspect ratio not preserved), exactly as ``pipe(image=..., height=..., width=...)`` would.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dymos.manifest import atomic_write_bytes, load_manifest
from dymos.models import load_pipeline

CONDITIONING_FORMAT = "dymos-conditioning-v1"


def load_image(path: str | Path) -> Any:
    """An RGB PIL image; unreadable files are a clear error."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (FileNotFoundError, UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err


def _tiny_prompt_embedding(prompt: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Tiny pipelines have no text encoder; a prompt maps to a seeded random embedding (stable per prompt)."""
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "little")
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _wan_condition(pipe: Any, pixels: torch.Tensor, height: int, width: int, num_frames: int, seed: int) -> Any:
    """Wan: mask channels + VAE latents of [image, zeros...] (deterministic: the latent distribution's mode)."""
    z_dim = int(pipe.vae.config.z_dim)
    latent_frames = (num_frames - 1) // pipe.vae_scale_factor_temporal + 1
    shape = (1, z_dim, latent_frames, height // pipe.vae_scale_factor_spatial, width // pipe.vae_scale_factor_spatial)
    _, condition = pipe.prepare_latents(
        pixels,
        1,
        z_dim,
        height,
        width,
        num_frames,
        torch.float32,
        torch.device("cpu"),
        None,
        latents=torch.zeros(shape),
    )
    return condition


def _cogvideox_condition(pipe: Any, pixels: torch.Tensor, height: int, width: int, num_frames: int, seed: int) -> Any:
    """CogVideoX: scaled VAE latents of the image, padded with zeros to the video's latent frames. The pipeline
    samples them from the latent distribution, so ``seed`` (a torch generator) makes them reproducible."""
    channels = int(pipe.transformer.config.in_channels) // 2
    latent_frames = (num_frames - 1) // pipe.vae_scale_factor_temporal + 1
    shape = (
        1,
        latent_frames,
        channels,
        height // pipe.vae_scale_factor_spatial,
        width // pipe.vae_scale_factor_spatial,
    )
    generator = torch.Generator().manual_seed(seed)
    _, image_latents = pipe.prepare_latents(
        pixels,
        1,
        channels,
        num_frames,
        height,
        width,
        torch.float32,
        torch.device("cpu"),
        generator,
        latents=torch.zeros(shape),
    )
    return image_latents


_CONDITIONERS = {"WanImageToVideoPipeline": _wan_condition, "CogVideoXImageToVideoPipeline": _cogvideox_condition}


def prepare_conditioning(
    pipe: Any,
    image: Any,
    *,
    prompt: str,
    negative_prompt: str = "",
    height: int,
    width: int,
    num_frames: int,
    text_shape: tuple[int, int],
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Conditioning for one image and prompt: ``condition`` (what the pipeline concatenates to the latents), the
    prompt embeddings and, for image-context models, ``image_embeds``. ``text_shape`` = (tokens, width) of the graph.
    """
    conditioner = _CONDITIONERS.get(type(pipe).__name__)
    if conditioner is None:
        raise ValueError(f"dymos prepare supports {', '.join(_CONDITIONERS)}, not {type(pipe).__name__}")
    with torch.no_grad():
        if pipe.text_encoder is not None:
            prompt_embeds, negative_embeds = pipe.encode_prompt(
                prompt, negative_prompt, do_classifier_free_guidance=True, max_sequence_length=text_shape[0]
            )
        else:
            prompt_embeds = _tiny_prompt_embedding(prompt, (1, *text_shape))
            negative_embeds = _tiny_prompt_embedding(negative_prompt, (1, *text_shape))
        pixels = pipe.video_processor.preprocess(image, height=height, width=width).to(torch.float32)
        condition = conditioner(pipe, pixels, height, width, num_frames, seed)
        out = {
            "condition": condition.float().numpy(),
            "prompt_embeds": prompt_embeds.float().numpy(),
            "negative_prompt_embeds": negative_embeds.float().numpy(),
        }
        if getattr(pipe, "image_encoder", None) is not None and pipe.transformer.config.get("image_dim"):
            out["image_embeds"] = pipe.encode_image(image, torch.device("cpu")).float().numpy()
    return out


def prepare(
    export_dir: str | Path,
    image_path: str | Path,
    prompt: str,
    out: str | Path,
    *,
    negative_prompt: str = "",
    seed: int = 0,
) -> Path:
    """Conditioning for ``export_dir``'s pipeline at its exported size, written atomically to ``out`` (.npz).

    ``seed`` drives the one random draw some pipelines make here (CogVideoX samples its image latents).
    """
    import io

    manifest = load_manifest(export_dir, verify_hashes=False)
    pipeline = manifest.get("pipeline")
    if not pipeline or not pipeline.get("runtime_supported"):
        raise ValueError(f"{export_dir} was not exported from a pipeline the runtime drives (see `dymos export`)")
    image = load_image(image_path)
    video = pipeline["video"]
    pipe = load_pipeline(manifest["model"]["source"], seed=manifest["export"]["seed"])
    text = next(t for t in manifest["submodels"]["denoiser"]["inputs"] if t["name"] == "encoder_hidden_states")
    arrays = prepare_conditioning(
        pipe,
        image,
        prompt=prompt,
        negative_prompt=negative_prompt,
        height=video["height"],
        width=video["width"],
        num_frames=video["frames"],
        text_shape=(int(text["shape"][1]), int(text["shape"][2])),
        seed=seed,
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
