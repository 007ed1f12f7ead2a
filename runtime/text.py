"""Tokenizers as the pipelines call them: the exported ``tokenizer.json`` truncated and padded to a fixed length."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def fixed_length_tokenizer(path: Path, settings: dict[str, Any]) -> Any:
    """The ``tokenizers`` tokenizer at ``path`` that truncates and pads to ``settings["max_length"]`` with its pad id
    and token, on the sides the manifest records (right where it records none), as a transformers fast tokenizer
    called with ``padding="max_length", truncation=True`` does."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    length = int(settings["max_length"])
    tokenizer.enable_truncation(length, direction=settings.get("truncation_side", "right"))
    tokenizer.enable_padding(
        length=length,
        pad_id=int(settings["pad_id"]),
        pad_token=settings["pad_token"],
        direction=settings.get("padding_side", "right"),
    )
    return tokenizer
