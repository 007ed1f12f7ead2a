"""The VAE decoder as an ONNX graph, so the runtime decodes latents to frames without torch.

Video VAEs decode with per-frame causal caches (Python loops in diffusers), so the decoder is exported at the
export's fixed latent size; the manifest records that shape and the runtime generates at it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .onnx_export import sanitize, save_onnx
from .specs import DimRange, ExportSpec, TensorSpec
from .validate import ParityCase, validate_onnx

LATENT_INPUT = "latents"
VIDEO_OUTPUT = "video"


class VaeDecoder(torch.nn.Module):
    """``latents [1, z, F, H, W] -> video [1, 3, frames, height, width]`` in [-1, 1], as the pipeline decodes.

    ``frames_in_batch``: the VAE decodes frames folded into the batch and takes ``num_frames`` (SVD's temporal
    decoder); the graph keeps the same ``[1, z, F, H, W]`` contract either way.
    """

    def __init__(self, vae: torch.nn.Module, frames_in_batch: bool = False) -> None:
        super().__init__()
        self.vae = vae
        self.frames_in_batch = frames_in_batch

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        if not self.frames_in_batch:
            return self.vae.decode(latents, return_dict=False)[0]
        frames = latents[0].permute(1, 0, 2, 3)  # [F, z, H, W]
        video = self.vae.decode(frames, num_frames=frames.shape[0], return_dict=False)[0]
        return video.permute(1, 0, 2, 3)[None]


def decoder_spec(latent_shape: tuple[int, ...], video_shape: tuple[int, ...], dtype: str) -> ExportSpec:
    return ExportSpec(
        family="vae",
        submodel="vae_decoder",
        inputs=(TensorSpec(LATENT_INPUT, dtype, tuple(latent_shape)),),
        outputs=(TensorSpec(VIDEO_OUTPUT, dtype, tuple(video_shape)),),
        dims={"batch": DimRange(latent_shape[0], latent_shape[0], latent_shape[0])},
    )


def export_vae_decoder(
    vae: torch.nn.Module,
    latent_shape: tuple[int, ...],
    directory: Path,
    *,
    precision: str,
    providers: list[str],
    frames_in_batch: bool = False,
    seed: int = 0,
) -> tuple[ExportSpec, dict[str, Any], list[str]]:
    """Export, sanitize, save and validate the decoder at ``latent_shape``; returns (spec, artifact entry, files)."""
    decoder = VaeDecoder(vae, frames_in_batch).eval()
    dtype = next(vae.parameters()).dtype
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(*latent_shape, generator=generator).to(dtype)
    with torch.no_grad():
        video_shape = tuple(decoder(sample).shape)
        program = torch.export.export(decoder, (sample,), strict=False)
    spec = decoder_spec(latent_shape, video_shape, str(dtype).removeprefix("torch."))
    onnx_program = torch.onnx.export(
        program, (), input_names=[LATENT_INPUT], output_names=[VIDEO_OUTPUT], dynamo=True, verbose=False
    )
    files = save_onnx(sanitize(onnx_program.model_proto), directory / "vae_decoder.onnx")
    cases = [
        ParityCase(f"latents_{i}", {LATENT_INPUT: torch.randn(*latent_shape, generator=generator).to(dtype)})
        for i in range(2)
    ]
    report = validate_onnx(
        directory / "vae_decoder.onnx",
        decoder,
        cases,
        directory / "parity_vae",
        precision=precision,
        output_name=VIDEO_OUTPUT,
        strength_input=False,
        providers=providers,
    )
    entry = {
        "onnx": {
            "file": "vae_decoder.onnx",
            "files": files,
            "validated": {
                "backend": report["backend"],
                "tolerance": report["tolerance"],
                "passed": True,
                "max_abs_err": max(c["max_abs_err"] for c in report["cases"]),
            },
        }
    }
    return spec, entry, [*files, "parity_vae/inputs.json", "parity_vae/torch_outputs.json"]
