"""HunyuanVideo-I2V's prompt conditioning without torch: diffusers' ``HunyuanVideoImageToVideoPipeline.encode_prompt``
step for step in numpy around the exported graphs. The prompt goes into the pipeline's template, is tokenized
(``tokenizer.json``) and its image placeholder expanded to the image's tokens; LLaVA (the ``text_encoder`` graph)
reads those ids with the image's CLIP pixels; the pipeline's crop keeps every ``interleave``-th image token and the
prompt's own tokens; CLIP (``text_encoder_2``) gives the pooled embedding. The negative prompt is encoded with a black
image at the video's size and ``encode_prompt``'s default interleave, as ``__call__`` encodes it. The manifest's
``pipeline.llava_prompts`` carries the template, token ids, tokenizer settings and image processor settings."""

from __future__ import annotations

from typing import Any

import numpy as np

from dymos.images import clip_pixels
from dymos.manifest import GUIDED_INPUTS, LLAVA_PROMPTS

from .artifacts import ExportDir
from .backends import Backend, open_backend
from .text import fixed_length_tokenizer

LLAVA_ENCODER = "text_encoder"
POOLED_ENCODER = "text_encoder_2"


def expand_image_tokens(ids: np.ndarray, settings: dict) -> np.ndarray:
    """``[1, L]`` template ids -> ``[1, L + image_emb_len - 1]``: the image placeholder made ``image_emb_len`` image
    tokens at the template's fixed span, as ``_expand_input_ids_with_image_tokens`` does (its attention mask and
    position ids are made in the graph). A prompt that holds the placeholder itself is refused: the graph's
    length, and LLaVA's count of image tokens, would not hold."""
    template, image_token = settings["template"], settings["image_token_id"]
    placeholders = ids[0] == image_token
    if placeholders.sum() != 1:
        raise ValueError(f"the prompt template must hold one image placeholder, this prompt makes {placeholders.sum()}")
    length = template["image_emb_len"]
    positions = np.cumsum(placeholders * (length - 1) + 1) - 1
    expanded = np.full((1, ids.shape[1] + length - 1), settings["expanded_pad_id"], dtype=np.int64)
    expanded[0, positions[~placeholders]] = ids[0, ~placeholders]
    expanded[0, template["image_emb_start"] : template["image_emb_end"]] = image_token
    if (expanded == image_token).sum() != length:
        raise ValueError(f"the template's image span does not hold the image's {length} tokens")
    return expanded


def crop(hidden: np.ndarray, ids: np.ndarray, mask: np.ndarray, settings: dict, interleave: int) -> tuple:
    """LLaVA's hidden states ``[1, L', width]`` -> the prompt embeddings and attention mask the denoiser takes: the
    image's tokens (every ``interleave``-th) then the prompt's own (the template's system part and the assistant
    header cut), as ``_get_llama_prompt_embeds`` crops them; ``ids``/``mask`` are the tokenizer's."""
    template = settings["template"]
    start, image_len = template["crop_start"], template["image_emb_len"]
    headers = np.flatnonzero(ids[0] == settings["end_header_id"])
    if len(headers) == 2:  # the prompt was truncated before the assistant header: the pipeline's fallback
        headers = np.append(headers, ids.shape[-1] - 1)
    assistant = int(headers[-1]) + 1
    text = np.concatenate(
        [hidden[0, start - 1 + image_len : assistant - 1 + image_len - 4], hidden[0, assistant - 1 + image_len :]]
    )
    text_mask = np.concatenate([mask[0, start : assistant - 4], mask[0, assistant:]])
    image = hidden[0, template["image_emb_start"] : template["image_emb_end"]]
    image_mask = np.ones(len(image), dtype=mask.dtype)
    if 0 < interleave < 6:
        image, image_mask = image[::interleave], image_mask[::interleave]
    return np.concatenate([image, text])[None], np.concatenate([image_mask, text_mask])[None]


def _tokenize(tokenizer: Any, text: str) -> tuple[np.ndarray, np.ndarray]:
    encoding = tokenizer.encode(text)
    return np.asarray([encoding.ids], dtype=np.int64), np.asarray([encoding.attention_mask], dtype=np.int64)


def llava_embeddings(
    export: ExportDir, image: object, prompt: str, interleave: int, encoder: Backend, tokenizer: Any
) -> tuple[np.ndarray, np.ndarray]:
    """One prompt with one PIL image -> (``[1, tokens, width]`` float32 embeddings, ``[1, tokens]`` int64 mask);
    ``tokenizer``: the export's LLaVA tokenizer (:func:`fixed_length_tokenizer`)."""
    settings = export.manifest["pipeline"][LLAVA_PROMPTS]
    ids, mask = _tokenize(tokenizer, settings["template"]["template"].format(prompt))
    spec = export.submodel(LLAVA_ENCODER)
    pixel_dtype = np.dtype(spec.inputs[1]["dtype"])
    feed = {
        spec.inputs[0]["name"]: expand_image_tokens(ids, settings),
        spec.inputs[1]["name"]: clip_pixels(image, settings["image_processor"]).astype(pixel_dtype),
    }
    hidden = encoder.run(feed)[spec.outputs[0]["name"]].astype(np.float32)
    return crop(hidden, ids, mask, settings, interleave)


def pooled_embedding(export: ExportDir, prompt: str, encoder: Backend, tokenizer: Any) -> np.ndarray:
    """CLIP's pooled embedding of ``prompt``, ``[1, width]`` float32; ``tokenizer``: the export's CLIP one."""
    ids, _ = _tokenize(tokenizer, prompt)
    spec = export.submodel(POOLED_ENCODER)
    return encoder.run({spec.inputs[0]["name"]: ids})[spec.outputs[0]["name"]].astype(np.float32)


def llava_prompt_conditioning(
    export: ExportDir,
    image: object,
    prompt: str,
    negative_prompt: str,
    *,
    encoder: Backend | None = None,
    pooled_encoder: Backend | None = None,
) -> dict[str, np.ndarray]:
    """The prompt entries of a conditioning file for a PIL ``image`` (:data:`GUIDED_INPUTS`' names): the embeddings,
    attention mask and pooled embedding of ``prompt`` with the image, and of ``negative_prompt`` with a black image
    (what the true-CFG pass sees)."""
    import PIL.Image

    pipeline = export.manifest["pipeline"]
    settings, video = pipeline[LLAVA_PROMPTS], pipeline["video"]
    encoder = encoder or open_backend(export, LLAVA_ENCODER)
    pooled_encoder = pooled_encoder or open_backend(export, POOLED_ENCODER)
    # each tokenizer read once for both prompts (a real Llama tokenizer.json is megabytes)
    tokenizer, tokenizer_2 = (
        fixed_length_tokenizer(export.path(settings[key]["file"]), settings[key])
        for key in ("tokenizer", "tokenizer_2")
    )
    black = PIL.Image.new("RGB", (video["width"], video["height"]), 0)
    out: dict[str, np.ndarray] = {}
    for half, picture, text, interleave in (
        (0, image, prompt, settings["image_embed_interleave"]),
        (1, black, negative_prompt, settings["negative_image_embed_interleave"]),
    ):
        embeds, mask = llava_embeddings(export, picture, text, interleave, encoder, tokenizer)
        out[GUIDED_INPUTS["encoder_hidden_states"][half]] = embeds
        out[GUIDED_INPUTS["encoder_attention_mask"][half]] = mask
        out[GUIDED_INPUTS["pooled_projections"][half]] = pooled_embedding(export, text, pooled_encoder, tokenizer_2)
    return out
