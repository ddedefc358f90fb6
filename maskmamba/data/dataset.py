"""Readers of a built emoji data set; they need only torch, numpy, Pillow, safetensors and tqdm."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file
from tqdm import tqdm

from maskmamba.data.imaging import decode_webp
from maskmamba.data.shards import CAPTIONS, load_manifest, read_shard, shard_paths

__all__ = ["EmojiImages", "CaptionBank", "load_manifest"]


class EmojiImages(torch.utils.data.Dataset):
    """Images of one split: (image float (3, 128, 128) in [-1, 1], class_id, emoji row); decoded lazily.

    `transform`, when given, maps that image tensor to the tensor returned.
    """

    def __init__(self, root: str | Path, split: str, transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        paths = shard_paths(root, split)
        if not paths:
            raise FileNotFoundError(f"no {split} shards in {root}")
        shards = [read_shard(path) for path in paths]
        sizes = [len(shard["webp"]) for shard in shards]
        bases = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.webp = np.concatenate([shard["webp"] for shard in shards])
        self.offsets = np.concatenate(
            [shard["offsets"][:-1] + base for shard, base in zip(shards, bases)] + [[sum(sizes)]]
        ).astype(np.int64)
        self.class_ids = np.concatenate([shard["class_id"] for shard in shards])
        self.emoji_ids = np.concatenate([shard["emoji"] for shard in shards])
        self.styles = np.concatenate([shard["style"] for shard in shards])
        self.transform = transform

    def __len__(self) -> int:
        return len(self.class_ids)

    def webp_bytes(self, index: int) -> bytes:
        """The stored WebP bytes of one image."""
        return self.webp[self.offsets[index] : self.offsets[index + 1]].tobytes()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        pixels = torch.from_numpy(decode_webp(self.webp_bytes(index)).copy())
        image = pixels.permute(2, 0, 1).float() / 127.5 - 1.0
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.class_ids[index]), int(self.emoji_ids[index])

    def load_all_uint8(self) -> np.ndarray:
        """Decode every image at once: (N, 128, 128, 3) uint8."""
        return np.stack([decode_webp(self.webp_bytes(i)) for i in tqdm(range(len(self)), desc="decode", unit="img")])


class CaptionBank:
    """Per-token caption states from captions.safetensors, dequantised and padded on demand."""

    def __init__(self, root: str | Path, device: str | torch.device = "cpu"):
        path = Path(root) / CAPTIONS
        with safe_open(str(path), framework="numpy") as handle:
            self.max_tokens = int(handle.metadata()["max_tokens"])
        arrays = load_file(str(path))
        self.device = torch.device(device)
        self.tokens = torch.from_numpy(arrays["tokens"]).to(self.device)
        self.scales = torch.from_numpy(arrays["scales"]).to(self.device).float()
        self.offsets = torch.from_numpy(arrays["offsets"]).to(self.device)
        self.caption_emoji = torch.from_numpy(arrays["caption_emoji"]).to(self.device)
        num_emoji = int(self.caption_emoji.max()) + 1
        self.first = torch.searchsorted(self.caption_emoji, torch.arange(num_emoji, device=self.device))
        self.count = torch.bincount(self.caption_emoji, minlength=num_emoji)

    def __len__(self) -> int:
        return len(self.caption_emoji)

    def states(self, caption_ids: torch.Tensor | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 states (B, K, D), zero past each caption's end, and the bool mask (B, K)."""
        ids = torch.as_tensor(caption_ids, dtype=torch.long, device=self.device)
        start, stop = self.offsets[ids], self.offsets[ids + 1]
        positions = start[:, None] + torch.arange(self.max_tokens, device=self.device)
        mask = positions < stop[:, None]
        rows = torch.where(mask, positions, torch.zeros_like(positions))
        states = self.tokens[rows].float() * self.scales[rows][..., None]
        return states * mask[..., None], mask

    def captions_of(self, emoji: int) -> list[int]:
        """Caption ids of one emoji row."""
        first = int(self.first[emoji])
        return list(range(first, first + int(self.count[emoji])))

    def random_caption(self, emoji_ids: torch.Tensor | list[int], generator: torch.Generator | None = None) -> torch.Tensor:
        """One uniformly drawn caption id per emoji row (the generator may live on any device)."""
        ids = torch.as_tensor(emoji_ids, dtype=torch.long, device=self.device)
        draw_device = generator.device if generator is not None else self.device
        draw = torch.rand(ids.shape, generator=generator, device=draw_device).to(self.device)
        return self.first[ids] + (draw * self.count[ids]).long().clamp_max(self.count[ids] - 1)


def contact_sheet(images: EmojiImages, count: int = 64, seed: int = 0, style: int | None = None) -> np.ndarray:
    """A square grid of `count` random images (of one style id, if given) as one (H, W, 3) uint8 array."""
    rng = np.random.default_rng(seed)
    pool = np.arange(len(images)) if style is None else np.flatnonzero(images.styles == style)
    if len(pool) == 0:
        raise ValueError(f"no images of style id {style}")
    picks = rng.choice(pool, size=min(count, len(pool)), replace=False)
    side = int(np.ceil(np.sqrt(len(picks))))
    tiles = [decode_webp(images.webp_bytes(i)) for i in picks]
    tiles += [np.zeros_like(tiles[0])] * (side * side - len(tiles))
    rows = [np.concatenate(tiles[r * side : (r + 1) * side], axis=1) for r in range(side)]
    return np.concatenate(rows, axis=0)
