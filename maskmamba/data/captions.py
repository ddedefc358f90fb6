"""Captions from CLDR annotations and tags, and their per-token MiniLM states, encoded once.

Each base emoji gets, in this order: its annotation; up to TAG_CAPTIONS tag captions ('annotation: tag, tag,
tag', the ones the evaluation's prompt top-5 scores); then the variety that teaches the generator the many ways a
person asks for the same thing: 'a/an annotation', 'annotation emoji' and up to SINGLE_TAGS single tags that
the annotation does not already say. Skin-tone variants get their annotation only. No lower-case variants: the
prompt encoder (all-MiniLM-L6-v2) is uncased, so they would encode to the same states. Packing for the GPU
keeps each emoji's first captions (maskmamba.data.pack), so the order above is also their priority.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from maskmamba.data.catalog import EmojiRecord
from maskmamba.data.shards import CAPTIONS, load_manifest, write_caption_cache, write_manifest
from maskmamba.text_encoder import PromptEncoder

TAGS_PER_CAPTION = 3
TAG_CAPTIONS = 2  # skin-tone variants get none: their tags are their base's, and the cache must stay small
SINGLE_TAGS = 2


def tag_separator(annotation: str) -> str:
    """What joins an annotation to its tags in a tag caption."""
    return ", " if ":" in annotation else ": "


def is_tag_caption(annotation: str, caption: str) -> bool:
    """Whether `caption` is one of the annotation's tag captions (as opposed to the annotation or the variety)."""
    return caption.startswith(annotation + tag_separator(annotation))


def with_article(annotation: str) -> str:
    """'a red apple', 'an apple'; annotations with a colon ('flag: France') are left as they are."""
    if ":" in annotation:
        return annotation
    return ("an " if annotation[:1].lower() in "aeiou" else "a ") + annotation


def caption_texts(record: EmojiRecord) -> list[str]:
    """The annotation, up to TAG_CAPTIONS tag captions, then the variety (see the module docstring)."""
    captions = [record.annotation]
    if record.family != record.hexcode:
        return captions
    separator = tag_separator(record.annotation)
    tags = list(record.tags)
    for start in range(0, min(len(tags), TAGS_PER_CAPTION * TAG_CAPTIONS), TAGS_PER_CAPTION):
        captions.append(record.annotation + separator + ", ".join(tags[start : start + TAGS_PER_CAPTION]))
    said = set(record.annotation.lower().split())
    singles = [tag for tag in tags if not set(tag.lower().split()) <= said][:SINGLE_TAGS]
    variety = [with_article(record.annotation), f"{record.annotation} emoji", *singles]
    return list(dict.fromkeys(captions + variety))


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


def recaption(root: str | Path, records: list[EmojiRecord], device: str = "cpu") -> int:
    """Recompute the captions of a built data set from its catalogue records (after a change to `caption_texts`):
    rewrites the manifest's captions and the caption cache, leaves the images alone; returns the caption count."""
    manifest = load_manifest(root)
    by_hexcode = {record.hexcode: record for record in records}
    missing = [entry["hexcode"] for entry in manifest["emoji"] if entry["hexcode"] not in by_hexcode]
    if missing:
        raise ValueError(f"the catalogue lacks {len(missing)} emoji of {root}, e.g. {missing[:3]}")
    for entry in manifest["emoji"]:
        entry["captions"] = caption_texts(by_hexcode[entry["hexcode"]])
    texts = [text for entry in manifest["emoji"] for text in entry["captions"]]
    caption_emoji = np.repeat(np.arange(len(manifest["emoji"])), [len(entry["captions"]) for entry in manifest["emoji"]])
    path = Path(root) / CAPTIONS
    build_caption_cache(path, texts, caption_emoji, device)
    manifest["captions"] = len(texts)
    if "bytes" in manifest:
        manifest["bytes"]["captions"] = path.stat().st_size
        manifest["bytes"]["total"] = manifest["bytes"]["shards"] + manifest["bytes"]["captions"]
    write_manifest(root, manifest)
    return len(texts)
