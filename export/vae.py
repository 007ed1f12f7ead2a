"""The fixed-shape graphs around the denoiser that the runtime needs so it runs without torch: the VAE decoder
(latents -> frames), the condition encoder (the preprocessed input image, and the random draws the pipeline makes
there, -> the condition it concatenates to the latents), the CLIP image encoder where the pipeline has one (Wan 2.1's
image context, SVD's image embedding), the T5 text encoder (Wan, CogVideoX, LTX) and HunyuanVideo-I2V's prompt
encoders (LLaVA over the prompt template and the image; CLIP's pooled text embedding).

Video VAEs encode and decode with per-frame causal caches (Python loops in diffusers), so both graphs are
exported at the export's fixed video size; the manifest records the shapes and the runtime generates at them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from dymos.manifest import NOISE_INPUT, NOISE_SCALE_INPUT

from .onnx_export import sanitize, save_onnx
from .specs import DimRange, ExportSpec, TensorSpec
from .validate import ParityCase, validate_onnx, validated_entry

LATENT_INPUT = "latents"
VIDEO_OUTPUT = "video"
PIXELS_INPUT = "pixels"
CONDITION_OUTPUT = "condition"
TOKENS_INPUT = "input_ids"
PROMPT_OUTPUT = "prompt_embeds"
IMAGE_PIXELS_INPUT = "pixel_values"
IMAGE_CONTEXT_OUTPUT = "encoder_hidden_states_image"  # the denoiser input it feeds (Wan 2.1)
IMAGE_EMBEDS_OUTPUT = "image_embeds"  # SVD's projected CLIP embedding, its denoiser's encoder_hidden_states
HIDDEN_STATES_OUTPUT = "hidden_states"  # LLaVA's, before the pipeline crops them to the prompt embeddings
POOLED_OUTPUT = "pooled_prompt_embeds"


class VaeDecoder(torch.nn.Module):
    """``latents [1, z, F, H, W] -> video [1, 3, frames, height, width]`` in [-1, 1], as the pipeline decodes.

    ``frames_in_batch``: the VAE decodes frames folded into the batch and takes ``num_frames`` (SVD's temporal
    decoder); the graph keeps the same ``[1, z, F, H, W]`` contract either way. ``decode_timestep``: a VAE with
    timestep conditioning (LTX 0.9.1+) decodes at this timestep, as the pipeline passes it; at the pipeline's default
    0 its decode-noise mix ``(1 - s) * latents + s * noise`` (s defaults to the timestep) leaves the latents as they
    are, so no noise enters the graph.
    """

    def __init__(
        self, vae: torch.nn.Module, frames_in_batch: bool = False, decode_timestep: float | None = None
    ) -> None:
        super().__init__()
        self.vae = vae
        self.frames_in_batch = frames_in_batch
        if decode_timestep not in (None, 0.0):
            raise ValueError("only the pipelines' default decode_timestep 0 is exported (no decode noise mixed in)")
        self.decode_timestep = decode_timestep

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        if self.decode_timestep is not None:
            timestep = torch.full((latents.shape[0],), self.decode_timestep, dtype=latents.dtype)
            return self.vae.decode(latents, timestep, return_dict=False)[0]
        if not self.frames_in_batch:
            return self.vae.decode(latents, return_dict=False)[0]
        frames = latents[0].permute(1, 0, 2, 3)  # [F, z, H, W]
        video = self.vae.decode(frames, num_frames=frames.shape[0], return_dict=False)[0]
        return video.permute(1, 0, 2, 3)[None]


class ConditionEncoder(torch.nn.Module):
    """``pixels [1, 3, H, W]`` (the image as ``pipe.video_processor.preprocess`` gives it, in [-1, 1]), plus the
    random draws the pipeline would make there as inputs (``noise``; SVD's ``noise_aug_strength`` too) ->
    ``condition``: what the pipeline concatenates to its latents, computed by the pipeline's own code through
    ``dymos.prepare.CONDITION_FUNCTIONS`` (the code ``dymos prepare`` runs). Wan: mask channels + the VAE mode of
    ``[image, zeros...]``; CogVideoX: the sampled, scaled, zero-padded image latents; SVD: the noise-augmented
    image's VAE mode repeated over the frames."""

    def __init__(self, pipe: Any, num_frames: int) -> None:
        super().__init__()
        from dymos.prepare import CONDITION_FUNCTIONS, condition_view

        pipe = condition_view(pipe)  # SVD in fp16: encodes with an fp32 VAE (then fp32 inputs), as its __call__ does
        self.vae = pipe.vae  # registered, so torch.export lifts its weights
        self.pipe = pipe
        self.num_frames = num_frames
        self.condition = CONDITION_FUNCTIONS[type(pipe).__name__]

    def forward(self, pixels: torch.Tensor, *draws: torch.Tensor) -> torch.Tensor:
        return self.condition(self.pipe, pixels, self.num_frames, *draws)


class ClipImageEncoder(torch.nn.Module):
    """``pixel_values [1, 3, h, w]`` -> what the pipeline passes to its denoiser: the CLIP vision tower's
    penultimate hidden states ``[1, tokens, hidden]`` (``WanImageToVideoPipeline.encode_image``), or with
    ``projected`` the projected ``image_embeds`` as one token ``[1, 1, dim]``
    (``StableVideoDiffusionPipeline._encode_image``)."""

    def __init__(self, image_encoder: torch.nn.Module, projected: bool = False) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.projected = projected

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.projected:
            return self.image_encoder(pixel_values).image_embeds.unsqueeze(1)
        return self.image_encoder(pixel_values, output_hidden_states=True).hidden_states[-2]


class T5TextEncoder(torch.nn.Module):
    """``input_ids [1, L]`` (the tokenizer's, padded to L) -> ``prompt_embeds [1, L, width]`` as the pipeline's
    ``_get_t5_prompt_embeds`` makes them. ``masked`` (Wan): the encoder's last hidden state under the attention
    mask, the padded positions zeroed; the mask is ``input_ids != pad``, what the tokenizer's mask is unless a
    prompt spells the pad token itself (the runtime refuses those). Unmasked (CogVideoX): the encoder runs over the
    padding as the pipeline runs it, without a mask."""

    def __init__(self, text_encoder: torch.nn.Module, pad_id: int, masked: bool) -> None:
        super().__init__()
        self.text_encoder = text_encoder
        self.pad_id = pad_id
        self.masked = masked

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if not self.masked:
            return self.text_encoder(input_ids)[0]
        mask = (input_ids != self.pad_id).long()
        hidden = self.text_encoder(input_ids, mask).last_hidden_state
        return hidden * mask[..., None].to(hidden.dtype)


class LlavaPromptEncoder(torch.nn.Module):
    """``input_ids [1, L]`` (the prompt template's tokens with the image placeholder expanded to the image's tokens,
    as diffusers' ``_expand_input_ids_with_image_tokens`` gives them) and ``pixel_values [1, 3, h, w]`` -> LLaVA's
    hidden states ``[1, L, width]`` at the layer the pipeline takes (``hidden_states[-(skip + 1)]``), before the
    pipeline's crop (done by the runtime). The attention mask (``input_ids != pad``) and position ids (the mask's
    cumulative sum, 1 on padding) are made in-graph exactly as that function makes them."""

    def __init__(self, text_encoder: torch.nn.Module, pad_id: int, skip: int) -> None:
        super().__init__()
        self.text_encoder = text_encoder
        self.pad_id = pad_id
        self.skip = skip

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
        mask = (input_ids != self.pad_id).long()
        position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        output = self.text_encoder(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=position_ids,
            pixel_values=pixel_values,
            output_hidden_states=True,
        )
        return output.hidden_states[-(self.skip + 1)]


class ClipPooledTextEncoder(torch.nn.Module):
    """``input_ids [1, 77]`` -> CLIP's ``pooler_output [1, width]``, as HunyuanVideo's ``_get_clip_prompt_embeds``."""

    def __init__(self, text_encoder: torch.nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(input_ids, output_hidden_states=False).pooler_output


@contextmanager
def _without_llava_placeholder_check() -> Iterator[None]:
    """transformers' LLaVA asserts, data-dependently, that the image placeholders number the image's features; the
    ONNX exporter cannot translate that assert (``aten._is_all_true``). The export traces without it; the runtime
    makes the ids itself, placeholders at the template's fixed positions, and checks their count before a run."""
    import transformers.models.llava.modeling_llava as llava

    original = llava.torch_compilable_check
    llava.torch_compilable_check = lambda *args, **kwargs: None
    try:
        yield
    finally:
        llava.torch_compilable_check = original


def _cast(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Floating inputs take the module's dtype; token ids stay integers."""
    return tensor.to(dtype) if tensor.is_floating_point() else tensor


Sampler = Callable[[torch.Generator], torch.Tensor]


def _export_fixed(
    module: torch.nn.Module,
    submodel: str,
    inputs: dict[str, Sampler],
    output_name: str,
    directory: Path,
    *,
    precision: str,
    providers: list[str],
    seed: int,
) -> tuple[ExportSpec, dict[str, Any], list[str]]:
    """Export one single-output graph at fixed shapes (``inputs``: name -> a seeded sampler of its value, in the
    module's argument order), sanitize, save and validate it on two seeded samples; returns (spec, artifact entry,
    files). The spec's family is "vae": these graphs are the VAE's and the encoders' around the denoiser."""
    module = module.eval()
    dtype = next(module.parameters()).dtype
    generator = torch.Generator().manual_seed(seed)

    def draw() -> dict[str, torch.Tensor]:
        return {name: _cast(sample(generator), dtype) for name, sample in inputs.items()}

    example = draw()
    with torch.no_grad():
        output = module(*example.values())
        program = torch.export.export(module, tuple(example.values()), strict=False)

    def name(dtype: torch.dtype) -> str:
        return str(dtype).removeprefix("torch.")

    first = next(iter(example.values()))
    spec = ExportSpec(
        family="vae",
        submodel=submodel,
        inputs=tuple(TensorSpec(k, name(v.dtype), tuple(v.shape)) for k, v in example.items()),
        outputs=(TensorSpec(output_name, name(output.dtype), tuple(output.shape)),),
        dims={"batch": DimRange(first.shape[0], first.shape[0], first.shape[0])},
    )
    onnx_program = torch.onnx.export(
        program, (), input_names=list(example), output_names=[output_name], dynamo=True, verbose=False
    )
    graph = f"{submodel}.onnx"
    files = save_onnx(sanitize(onnx_program.model_proto), directory / graph)
    cases = [ParityCase(f"{next(iter(inputs))}_{i}", draw()) for i in range(2)]
    parity_dir = f"parity_{submodel.removeprefix('vae_')}"  # parity_decoder/, parity_condition_encoder/
    report = validate_onnx(
        directory / graph,
        module,
        cases,
        directory / parity_dir,
        precision=precision,
        output_name=output_name,
        strength_input=False,
        providers=providers,
    )
    entry = {
        "onnx": {
            "file": graph,
            "files": files,
            "validated": {
                **validated_entry(report),
                "max_abs_err": max(c["max_abs_err"] for c in report["cases"]),
            },
        }
    }
    return spec, entry, [*files, *report["files"]]


def export_vae_decoder(
    vae: torch.nn.Module,
    latent_shape: tuple[int, ...],
    directory: Path,
    *,
    precision: str,
    providers: list[str],
    frames_in_batch: bool = False,
    decode_timestep: float | None = None,
    seed: int = 0,
) -> tuple[ExportSpec, dict[str, Any], list[str]]:
    """The decoder at ``latent_shape`` (:class:`VaeDecoder`), validated on random latents; returns (spec, artifact
    entry, files)."""
    return _export_fixed(
        VaeDecoder(vae, frames_in_batch, decode_timestep),
        "vae_decoder",
        {LATENT_INPUT: lambda generator: torch.randn(*latent_shape, generator=generator)},
        VIDEO_OUTPUT,
        directory,
        precision=precision,
        providers=providers,
        seed=seed,
    )


def export_condition_encoder(
    pipe: Any,
    video: tuple[int, int, int],
    directory: Path,
    *,
    precision: str,
    providers: list[str],
    seed: int = 0,
) -> tuple[ExportSpec, dict[str, Any], list[str]]:
    """The pipeline's condition encoder for ``video`` = (frames, height, width) (:class:`ConditionEncoder`),
    validated on random images in [-1, 1] with random draws (standard normal noise, a noise scale in [0, 0.1])."""
    from dymos.prepare import condition_noise_shapes

    frames, height, width = video
    inputs: dict[str, Sampler] = {PIXELS_INPUT: lambda g: torch.rand(1, 3, height, width, generator=g) * 2 - 1}
    for name, shape in condition_noise_shapes(pipe, height, width).items():
        scale = 0.1 if name == NOISE_SCALE_INPUT else 1.0
        sampler = torch.randn if name == NOISE_INPUT else torch.rand
        inputs[name] = lambda g, shape=shape, scale=scale, sampler=sampler: sampler(*shape, generator=g) * scale
    return _export_fixed(
        ConditionEncoder(pipe, frames),
        "condition_encoder",
        inputs,
        CONDITION_OUTPUT,
        directory,
        precision=precision,
        providers=providers,
        seed=seed,
    )


def export_image_encoder(
    image_encoder: torch.nn.Module,
    pixel_shape: tuple[int, int],
    directory: Path,
    *,
    projected: bool,
    precision: str,
    providers: list[str],
    seed: int = 0,
) -> tuple[ExportSpec, dict[str, Any], list[str]]:
    """A pipeline's CLIP image encoder (:class:`ClipImageEncoder`) at its processor's ``pixel_shape`` =
    (height, width), validated on random normalised pixels."""
    height, width = pixel_shape
    return _export_fixed(
        ClipImageEncoder(image_encoder, projected),
        "image_encoder",
        {IMAGE_PIXELS_INPUT: lambda generator: torch.randn(1, 3, height, width, generator=generator)},
        IMAGE_EMBEDS_OUTPUT if projected else IMAGE_CONTEXT_OUTPUT,
        directory,
        precision=precision,
        providers=providers,
        seed=seed,
    )


def export_text_encoder(
    text_encoder: torch.nn.Module,
    *,
    length: int,
    pad_id: int,
    eos_id: int,
    masked: bool,
    directory: Path,
    precision: str,
    providers: list[str],
    seed: int = 0,
) -> tuple[ExportSpec, dict[str, Any], list[str]]:
    """A pipeline's T5 text encoder (:class:`T5TextEncoder`; ``masked``: Wan's UMT5) at ``length`` tokens (the
    pipeline's ``max_sequence_length``), validated on random prompts of random length (token ids, ``</s>``, then
    padding)."""
    # UMT5's SDPA path leaves a view over transposed strides that the ONNX decompositions reject (transformers 5);
    # eager attention is the same math in plain ops (the graph is validated against it, and the runtime's prompt
    # embeddings against the pipeline's within 1e-5 in the tests)
    if hasattr(text_encoder, "set_attn_implementation"):
        text_encoder.set_attn_implementation("eager")
    words = torch.tensor([i for i in range(int(text_encoder.config.vocab_size)) if i not in (pad_id, eos_id)])

    return _export_fixed(
        T5TextEncoder(text_encoder, pad_id, masked),
        "text_encoder",
        {TOKENS_INPUT: lambda generator: _random_ids(generator, words, length, pad_id=pad_id, tail=(eos_id,))},
        PROMPT_OUTPUT,
        directory,
        precision=precision,
        providers=providers,
        seed=seed,
    )


def _random_ids(
    generator: torch.Generator,
    words: torch.Tensor,
    length: int,
    *,
    pad_id: int,
    start: tuple[int, ...] = (),
    tail: tuple[int, ...] = (),
    min_used: int = 0,
) -> torch.Tensor:
    """``[1, length]`` token ids as a tokenizer padding to ``length`` gives them: ``start``, a random number (at least
    one, and ``min_used`` tokens in all) of random ``words``, ``tail`` (an end token), then ``pad_id``."""
    fewest = max(len(start) + len(tail) + 1, min_used)
    used = int(torch.randint(fewest, length, (1,), generator=generator))
    ids = torch.full((1, length), pad_id, dtype=torch.long)
    body = words[torch.randint(0, len(words), (used - len(start) - len(tail),), generator=generator)]
    ids[0, :used] = torch.cat([torch.tensor(start, dtype=torch.long), body, torch.tensor(tail, dtype=torch.long)])
    return ids


def export_llava_prompt_encoder(
    text_encoder: torch.nn.Module,
    *,
    length: int,
    image_tokens: tuple[int, int],
    pixel_shape: tuple[int, int],
    pad_id: int,
    skip: int,
    directory: Path,
    precision: str,
    providers: list[str],
    seed: int = 0,
) -> tuple[ExportSpec, dict[str, Any], list[str]]:
    """HunyuanVideo-I2V's LLaVA text encoder (:class:`LlavaPromptEncoder`) at ``length`` expanded tokens and the
    image processor's ``pixel_shape``, validated on random template-like ids (the image placeholder over
    ``image_tokens`` = [start, end), random words, padding) and random normalised pixels."""
    image_token = int(text_encoder.config.image_token_index)
    vocab = int(text_encoder.config.get_text_config().vocab_size)
    words = torch.tensor([i for i in range(vocab) if i not in (pad_id, image_token)])
    start, end = image_tokens
    height, width = pixel_shape

    def expanded_ids(generator: torch.Generator) -> torch.Tensor:
        ids = _random_ids(generator, words, length, pad_id=pad_id, min_used=end + 1)
        ids[0, start:end] = image_token
        return ids

    with _without_llava_placeholder_check():
        return _export_fixed(
            LlavaPromptEncoder(text_encoder, pad_id, skip),
            "text_encoder",
            {
                TOKENS_INPUT: expanded_ids,
                IMAGE_PIXELS_INPUT: lambda generator: torch.randn(1, 3, height, width, generator=generator),
            },
            HIDDEN_STATES_OUTPUT,
            directory,
            precision=precision,
            providers=providers,
            seed=seed,
        )


def export_clip_pooled_text_encoder(
    text_encoder: torch.nn.Module,
    *,
    length: int,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    directory: Path,
    precision: str,
    providers: list[str],
    seed: int = 0,
) -> tuple[ExportSpec, dict[str, Any], list[str]]:
    """HunyuanVideo's CLIP text encoder (:class:`ClipPooledTextEncoder`) at ``length`` tokens, validated on random
    prompts (start token, words, end token, padding)."""
    vocab = int(text_encoder.config.vocab_size)
    words = torch.tensor([i for i in range(vocab) if i not in (bos_id, eos_id, pad_id)])
    return _export_fixed(
        ClipPooledTextEncoder(text_encoder),
        "text_encoder_2",
        {
            TOKENS_INPUT: lambda generator: _random_ids(
                generator, words, length, pad_id=pad_id, start=(bos_id,), tail=(eos_id,)
            )
        },
        POOLED_OUTPUT,
        directory,
        precision=precision,
        providers=providers,
        seed=seed,
    )
