"""Build the emoji data set: render every style, pick classes, split by emoji, write shards and manifest."""
from __future__ import annotations

from pathlib import Path
from statistics import median

import numpy as np
from tqdm import tqdm

from maskmamba.data import captions as caption_cache
from maskmamba.data.catalog import EmojiRecord, load_records, select_classes, val_families
from maskmamba.data.imaging import IMAGE_SIZE, encode_webp
from maskmamba.data.shards import CAPTIONS, FORMAT_VERSION, SHARD_SIZE, shard_paths, write_manifest, write_shards
from maskmamba.data.sources import OPENMOJI, SOURCES, Renderer, Source, openmoji_json, renderer, require

SPLITS = ("train", "val")
MIN_CLASS_IMAGES = 10
CATALOGUE_CREDIT = (
    "Emoji annotations, tags, groups and subgroups from Unicode CLDR (Unicode License v3), "
    "as collected in OpenMoji's data/openmoji.json"
)


def render_style(records: list[EmojiRecord], render: Renderer, style: str) -> dict[int, bytes]:
    """WebP bytes of every record the style can render, keyed by record index."""
    images = {}
    for index, record in enumerate(tqdm(records, desc=f"render {style}", unit="emoji")):
        image = render(record)
        if image is not None:
            images[index] = encode_webp(image)
    return images


def _remove_previous(out: Path) -> None:
    for split in SPLITS:
        for path in shard_paths(out, split):
            path.unlink()
    (out / CAPTIONS).unlink(missing_ok=True)


def _source_entry(source: Source, version: str) -> dict:
    return {
        "style": source.style,
        "manager": source.manager,
        "package": source.package,
        "version": version,
        "licence": source.licence,
        "credit": source.credit,
    }


def _emoji_entry(record: EmojiRecord, class_id: int, split: str) -> dict:
    return {
        "hexcode": record.hexcode,
        "annotation": record.annotation,
        "group": record.group,
        "subgroup": record.subgroup,
        "class_id": class_id,
        "captions": caption_cache.caption_texts(record),
        "split": split,
    }


def _write_split(
    out: Path, split: str, table: list[dict], images: list[list[bytes | None]], shard_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Write the split's images (emoji row order, styles in order); returns their class and style ids."""
    items = [
        (row, style)
        for row, entry in enumerate(table)
        if entry["split"] == split
        for style, per_style in enumerate(images)
        if per_style[row] is not None
    ]
    emoji_ids = np.array([row for row, _ in items], dtype=np.int64)
    class_ids = np.array([table[row]["class_id"] for row in emoji_ids], dtype=np.int64)
    style_ids = np.array([style for _, style in items], dtype=np.int64)
    webps = [images[style][row] for row, style in items]
    write_shards(out, split, webps, class_ids, emoji_ids, style_ids, shard_size)
    return class_ids, style_ids


def build(
    out: str | Path,
    styles: list[str],
    npm_prefix: Path,
    command: str,
    limit: int | None = None,
    with_captions: bool = True,
    install: bool = False,
    min_class_images: int = MIN_CLASS_IMAGES,
    shard_size: int = SHARD_SIZE,
) -> dict:
    """Build the data set into `out` and return its manifest."""
    sources = [SOURCES[style] for style in styles]
    catalogue_version = require(OPENMOJI, npm_prefix, install)
    versions = {source.style: require(source, npm_prefix, install) for source in sources}
    records = load_records(openmoji_json(npm_prefix))[:limit]
    rendered = [render_style(records, renderer(source, npm_prefix), source.style) for source in sources]

    classes = select_classes([records[i].subgroup for images in rendered for i in images], min_class_images)
    if not classes:
        raise ValueError(f"no subgroup has {min_class_images} images; lower --min-class-images")
    class_of = {name: index for index, name in enumerate(classes)}
    kept = [i for i, record in enumerate(records) if record.subgroup in class_of and any(i in r for r in rendered)]
    held_out = val_families([records[i].family for i in kept])
    table = [
        _emoji_entry(records[i], class_of[records[i].subgroup], "val" if records[i].family in held_out else "train")
        for i in kept
    ]
    images = [[per_style.get(i) for i in kept] for per_style in rendered]

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _remove_previous(out)
    counts, images_per_class = {}, np.zeros(len(classes), dtype=np.int64)
    for split in SPLITS:
        class_ids, style_ids = _write_split(out, split, table, images, shard_size)
        counts[split] = {source.style: int((style_ids == s).sum()) for s, source in enumerate(sources)}
        counts[split]["total"] = len(style_ids)
        images_per_class += np.bincount(class_ids, minlength=len(classes))
    shard_bytes = sum(path.stat().st_size for split in SPLITS for path in shard_paths(out, split))

    caption_texts = [text for entry in table for text in entry["captions"]]
    caption_bytes = 0
    if with_captions:
        caption_emoji = np.repeat(np.arange(len(table)), [len(entry["captions"]) for entry in table])
        caption_cache.build_caption_cache(out / CAPTIONS, caption_texts, caption_emoji)
        caption_bytes = (out / CAPTIONS).stat().st_size

    manifest = {
        "format_version": FORMAT_VERSION,
        "build_command": command,
        "image_size": IMAGE_SIZE,
        "sources": [_source_entry(source, versions[source.style]) for source in sources],
        "catalogue": {**_source_entry(OPENMOJI, catalogue_version), "credit": CATALOGUE_CREDIT},
        "styles": [source.style for source in sources],
        "classes": classes,
        "images_per_class": images_per_class.tolist(),
        "emoji": table,
        "counts": counts,
        "captions": len(caption_texts),
        "bytes": {"shards": shard_bytes, "captions": caption_bytes, "total": shard_bytes + caption_bytes},
    }
    write_manifest(out, manifest)
    return manifest


def summary(manifest: dict) -> str:
    """A short human-readable account of a built data set."""
    per_class = manifest["images_per_class"]
    lines = [f"{split}: {counts}" for split, counts in manifest["counts"].items()]
    lines.append(
        f"classes: {len(per_class)} (images per class: min {min(per_class)}, median {median(per_class):g}); "
        f"emoji: {len(manifest['emoji'])}; captions: {manifest['captions']}"
    )
    lines.append(f"bytes: {manifest['bytes']}")
    return "\n".join(lines)
