"""Token cache: every image of a built data set encoded once by the VQ tokenizer (512 bytes an image).

Generator training reads only this file and captions.safetensors, so the pixels never travel to the GPU.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from maskmamba.data.dataset import EmojiImages
from maskmamba.models.tokenizer import VQTokenizer, uint8_to_input

TOKENS = "tokens.safetensors"
SPLITS = ("train", "val")


@torch.no_grad()
def encode_split(tokenizer: VQTokenizer, root: str | Path, split: str, batch: int = 64) -> dict[str, np.ndarray]:
    """ids (N, grid*grid) int16, class_id (N,), emoji (N,) for one split."""
    images = EmojiImages(root, split)
    pixels = images.load_all_uint8()
    device = next(tokenizer.parameters()).device
    ids = []
    for i in tqdm(range(0, len(pixels), batch), desc=f"tokenize {split}", unit="batch"):
        x = uint8_to_input(torch.from_numpy(pixels[i : i + batch]).to(device))
        ids.append(tokenizer.encode(x).flatten(1).to(torch.int16).cpu())
    return {
        f"{split}_ids": torch.cat(ids).numpy(),
        f"{split}_class": np.asarray(images.class_ids, dtype=np.int64),
        f"{split}_emoji": np.asarray(images.emoji_ids, dtype=np.int64),
    }


def build_token_cache(root: str | Path, tokenizer_dir: str | Path, device: str = "cpu") -> Path:
    """Encode both splits of the data set at `root` and write root/tokens.safetensors."""
    tokenizer = VQTokenizer.from_pretrained(tokenizer_dir).to(device).eval()
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        arrays |= encode_split(tokenizer, root, split)
    path = Path(root) / TOKENS
    save_file(arrays, str(path), metadata={"tokenizer": str(tokenizer_dir)})
    return path


def load_tokens(root: str | Path, split: str, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids (N, grid*grid) int64, class ids (N,), emoji rows (N,)) of one split, on `device`."""
    arrays = load_file(str(Path(root) / TOKENS))
    return tuple(torch.from_numpy(arrays[f"{split}_{k}"].astype(np.int64)).to(device) for k in ("ids", "class", "emoji"))
