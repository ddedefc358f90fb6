"""Captions from CLDR annotations and tags, and their per-token MiniLM states, encoded once."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from maskmamba.data.catalog import EmojiRecord
from maskmamba.data.shards import write_caption_cache
from maskmamba.text_encoder import PromptEncoder

TAGS_PER_CAPTION = 3
TAG_CAPTIONS = 2  # skin-tone variants get none: their tags are their base's, and the cache must stay small


def caption_texts(record: EmojiRecord) -> list[str]:
    """The annotation, then up to TAG_CAPTIONS captions of the form 'annotation: tag, tag, tag'."""
    captions = [record.annotation]
    if record.family != record.hexcode:
        return captions
    separator = ", " if ":" in record.annotation else ": "
    tags = list(record.tags)
    for start in range(0, min(len(tags), TAGS_PER_CAPTION * TAG_CAPTIONS), TAGS_PER_CAPTION):
        captions.append(record.annotation + separator + ", ".join(tags[start : start + TAGS_PER_CAPTION]))
    return captions


def encode_all(captions: list[str], encoder: PromptEncoder, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Encode captions in batches with a PromptEncoder; returns states (C, K, D) float32 and mask (C, K)."""
    states, masks = [], []
    for start in tqdm(range(0, len(captions), batch_size), desc="encode captions", unit="batch"):
        batch_states, batch_mask = encoder.encode(captions[start : start + batch_size])
        states.append(batch_states.cpu().numpy())
        masks.append(batch_mask.cpu().numpy())
    return np.concatenate(states), np.concatenate(masks)


def build_caption_cache(
    path: str | Path, captions: list[str], caption_emoji: np.ndarray, device: str = "cpu"
) -> None:
    """Encode every caption once with the project's PromptEncoder and write the compact cache."""
    states, mask = encode_all(captions, PromptEncoder(device))
    write_caption_cache(path, states, mask, caption_emoji)
