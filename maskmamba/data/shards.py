"""On-disk format: WebP image shards, the caption-state cache (ragged int8) and the manifest."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

FORMAT_VERSION = 1
# one metadata key per file: safetensors writes several in no fixed order, and rebuilds must be byte-identical
MANIFEST = "manifest.json"
CAPTIONS = "captions.safetensors"
SHARD_SIZE = 1500


def shard_name(split: str, index: int) -> str:
    """File name of one shard, e.g. train-000.safetensors."""
    return f"{split}-{index:03d}.safetensors"


def shard_paths(root: str | Path, split: str) -> list[Path]:
    """The shards of a split, in order."""
    return sorted(Path(root).glob(f"{split}-[0-9][0-9][0-9].safetensors"))


def pack_bytes(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate byte strings into one uint8 array plus int64 offsets (n + 1)."""
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(blob) for blob in blobs])
    data = np.frombuffer(b"".join(blobs), dtype=np.uint8).copy()
    return data, offsets


def write_shards(
    root: str | Path,
    split: str,
    webps: list[bytes],
    class_ids: np.ndarray,
    emoji_ids: np.ndarray,
    styles: np.ndarray,
    shard_size: int = SHARD_SIZE,
) -> list[Path]:
    """Write images in order to ceil(n / shard_size) shards of near-equal size; returns their paths."""
    count = len(webps)
    num_shards = max(1, math.ceil(count / shard_size))
    bounds = np.linspace(0, count, num_shards + 1).round().astype(int)
    paths = []
    for index, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        data, offsets = pack_bytes(webps[start:stop])
        tensors = {
            "webp": data,
            "offsets": offsets,
            "class_id": np.asarray(class_ids[start:stop], dtype=np.int64),
            "emoji": np.asarray(emoji_ids[start:stop], dtype=np.int64),
            "style": np.asarray(styles[start:stop], dtype=np.int64),
        }
        path = Path(root) / shard_name(split, index)
        save_file(tensors, str(path), metadata={"format_version": str(FORMAT_VERSION)})
        paths.append(path)
    return paths


def read_shard(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of one shard."""
    return load_file(str(path))


def quantise_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 quantisation with one float16 absmax scale per row: (int8 (T, D), float16 (T,))."""
    rows = np.asarray(rows, dtype=np.float32)
    scales = (np.abs(rows).max(axis=1) / 127.0).astype(np.float16)
    divisor = np.where(scales > 0, scales, 1).astype(np.float32)[:, None]
    quantised = np.clip(np.rint(rows / divisor), -127, 127).astype(np.int8)
    return quantised, scales


def dequantise_rows(quantised: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Inverse of quantise_rows, as float32."""
    return quantised.astype(np.float32) * scales.astype(np.float32)[:, None]


def write_caption_cache(
    path: str | Path, states: np.ndarray, mask: np.ndarray, caption_emoji: np.ndarray
) -> None:
    """Store padded states (C, K, D) ragged (valid tokens only) and int8-quantised."""
    lengths = mask.sum(axis=1)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths)
    tokens, scales = quantise_rows(states[mask])
    tensors = {
        "tokens": tokens,
        "scales": scales,
        "offsets": offsets,
        "caption_emoji": np.asarray(caption_emoji, dtype=np.int64),
    }
    save_file(tensors, str(path), metadata={"max_tokens": str(mask.shape[1])})


def write_manifest(root: str | Path, manifest: dict) -> Path:
    """Write manifest.json (UTF-8, indented)."""
    path = Path(root) / MANIFEST
    path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_manifest(root: str | Path) -> dict:
    """Read manifest.json of a built data set."""
    return json.loads((Path(root) / MANIFEST).read_text(encoding="utf-8"))
