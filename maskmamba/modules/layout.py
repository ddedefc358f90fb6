"""Where the condition tokens sit in the token sequence, and the scan orders over the image grid."""
from __future__ import annotations

import torch
from torch import nn

from maskmamba.configs import COND_POSITIONS


class SeqLayout(nn.Module):
    """Sequence = image tokens (grid x grid, row-major) with `slots` condition tokens at head, middle or tail."""

    def __init__(self, grid: int, slots: int, position: str = "middle"):
        super().__init__()
        if position not in COND_POSITIONS:
            raise ValueError(f"condition position must be one of {COND_POSITIONS}, got {position!r}")
        self.grid, self.slots, self.position = grid, slots, position
        n_img = grid * grid
        self.split = {"head": 0, "middle": n_img // 2, "tail": n_img}[position]  # image tokens before the condition
        img = torch.arange(n_img)
        self.register_buffer("img_index", torch.where(img < self.split, img, img + slots), persistent=False)
        self.register_buffer("cond_index", self.split + torch.arange(slots), persistent=False)
        self.register_buffer("scan_index", self._four_scans(), persistent=False)

    @property
    def length(self) -> int:
        return self.grid * self.grid + self.slots

    def assemble(self, img: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """(B, N, D) image and (B, K, D) condition embeddings -> (B, N + K, D) sequence."""
        return torch.cat([img[:, : self.split], cond, img[:, self.split :]], dim=1)

    def image_part(self, seq: torch.Tensor) -> torch.Tensor:
        """The image positions of a (B, N + K, D) sequence, in row-major order."""
        return torch.cat([seq[:, : self.split], seq[:, self.split + self.slots :]], dim=1)

    def _four_scans(self) -> torch.Tensor:
        """(4, K + N) sequence indices: condition first, then rows, rows reversed, columns, columns reversed."""
        g = self.grid
        rows = torch.arange(g * g)
        cols = rows.view(g, g).t().reshape(-1)
        orders = [rows, rows.flip(0), cols, cols.flip(0)]
        img = torch.where(rows < self.split, rows, rows + self.slots)
        cond = self.split + torch.arange(self.slots)
        return torch.stack([torch.cat([cond, img[o]]) for o in orders])
