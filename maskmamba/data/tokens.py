"""Token cache: every image of a built data set encoded once by the VQ tokenizer (512 bytes an image).

Generator training reads only this file and captions.safetensors, so the pixels never travel to the GPU.
With `augment` K > 0 the train split also holds K augmented copies of every image (maskmamba.data.augment)
as `train_aug_ids` (N, K, grid*grid); `train_ids` stays the originals, so readers that ignore copies still work.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from maskmamba.data.augment import augmented, mirror_safe
from maskmamba.data.dataset import EmojiImages, load_manifest
from maskmamba.models.tokenizer import VQTokenizer, uint8_to_input

TOKENS = "tokens.safetensors"
SPLITS = ("train", "val")
CODEBOOK_KEY = "codebook_size"


@torch.no_grad()
def encode_pixels(tokenizer: VQTokenizer, pixels: np.ndarray, desc: str, batch: int = 64) -> np.ndarray:
    """uint8 images (N, H, W, 3) -> token ids (N, grid*grid) int16."""
    device = next(tokenizer.parameters()).device
    ids = []
    for i in tqdm(range(0, len(pixels), batch), desc=desc, unit="batch"):
        x = uint8_to_input(torch.from_numpy(pixels[i : i + batch]).to(device))
        ids.append(tokenizer.encode(x).flatten(1).to(torch.int16).cpu())
    return torch.cat(ids).numpy()


def mirror_flags(root: str | Path, emoji_ids: np.ndarray) -> np.ndarray:
    """Per image, whether its emoji may be mirrored (maskmamba.data.augment.mirror_safe on the manifest)."""
    table = load_manifest(root)["emoji"]
    safe = np.array([mirror_safe(e["group"], e["subgroup"], e["annotation"]) for e in table], dtype=bool)
    return safe[emoji_ids]


def encode_split(tokenizer: VQTokenizer, root: str | Path, split: str, augment: int = 0, seed: int = 0) -> dict[str, np.ndarray]:
    """ids (N, grid*grid) int16, class_id (N,), emoji (N,) for one split, plus aug_ids (N, augment, grid*grid)
    when `augment` > 0."""
    images = EmojiImages(root, split)
    pixels = images.load_all_uint8()
    arrays = {
        f"{split}_ids": encode_pixels(tokenizer, pixels, f"tokenize {split}"),
        f"{split}_class": np.asarray(images.class_ids, dtype=np.int64),
        f"{split}_emoji": np.asarray(images.emoji_ids, dtype=np.int64),
    }
    if augment:
        flags = mirror_flags(root, images.emoji_ids)
        copies = [encode_pixels(tokenizer, augmented(pixels, flags, k, seed), f"tokenize {split} copy {k}/{augment}")
                  for k in range(1, augment + 1)]
        arrays[f"{split}_aug_ids"] = np.stack(copies, axis=1)
    return arrays


def build_token_cache(root: str | Path, tokenizer_dir: str | Path, device: str = "cpu", augment: int = 0, seed: int = 0) -> Path:
    """Encode both splits of the data set at `root` (and `augment` copies of each train image) and write
    root/tokens.safetensors."""
    if augment < 0:
        raise ValueError(f"augment must be 0 or more copies, got {augment}")
    tokenizer = VQTokenizer.from_pretrained(tokenizer_dir).to(device).eval()
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        arrays |= encode_split(tokenizer, root, split, augment if split == "train" else 0, seed)
    path = Path(root) / TOKENS
    metadata = {"tokenizer": str(tokenizer_dir), "augment": f"{augment} copies, seed {seed}",
                CODEBOOK_KEY: str(tokenizer.codebook_size)}
    save_file(arrays, str(path), metadata=metadata)
    return path


def token_codebook_size(root: str | Path) -> int:
    """The codebook size of the tokenizer that wrote root's token cache: the vocabulary a generator trained on it
    needs (and the tokenizer it must ship with)."""
    path = Path(root) / TOKENS
    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata() or {}
    if CODEBOOK_KEY not in metadata:
        raise ValueError(f"{path} does not record its tokenizer's codebook size: rebuild it with "
                         "`python -m maskmamba.data tokenize`")
    return int(metadata[CODEBOOK_KEY])


def load_tokens(root: str | Path, split: str, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids (N, grid*grid) int64, class ids (N,), emoji rows (N,)) of one split, on `device`."""
    arrays = load_file(str(Path(root) / TOKENS))
    return tuple(torch.from_numpy(arrays[f"{split}_{k}"].astype(np.int64)).to(device) for k in ("ids", "class", "emoji"))


def load_token_copies(root: str | Path, split: str, device: str | torch.device = "cpu") -> torch.Tensor:
    """Every tokenization of each image of a split, (N, 1 + K, grid*grid) int64: the original first, then the
    K augmented copies (K = 0 when the cache holds none)."""
    arrays = load_file(str(Path(root) / TOKENS))
    ids = arrays[f"{split}_ids"][:, None]
    if f"{split}_aug_ids" in arrays:
        ids = np.concatenate([ids, arrays[f"{split}_aug_ids"]], axis=1)
    return torch.from_numpy(ids.astype(np.int64)).to(device)
