"""Augmentations that keep an emoji's meaning: small shifts, small scale changes, and mirroring where a mirror
changes nothing that the caption or class says.

Mirroring is decided per emoji from its CLDR group and subgroup (and its annotation):
  - never for the groups `flags` (a mirrored flag is another or no flag) and `symbols` (letters, digits, keycaps,
    arrows, zodiac and warning signs, currency, punctuation: text or a direction);
  - never for subgroups that show text, a reading direction or a pointing hand: every `hand-*` subgroup and
    `hands`, `book-paper`, `office` (calendars, charts), `money` (banknotes), `mail`, `computer` (keyboards),
    `phone`, `music` (scores), `time` (clock faces) and `place-map` (maps);
  - never when the annotation names a side or a heading ("left", "right", "facing", "pointing", "leftwards").
Everything else (faces, people, animals, food, vehicles, plants, weather...) may be mirrored: a mirrored apple is
still an apple. Shifts and scales apply to every emoji; the background is white, as in the data set.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

NO_MIRROR_GROUPS = frozenset({"flags", "symbols"})
NO_MIRROR_SUBGROUPS = frozenset({
    "hands", "book-paper", "office", "money", "mail", "computer", "phone", "music", "time", "place-map",
})
DIRECTION_WORDS = re.compile(r"\b(left|right|leftwards|rightwards|facing|pointing)\b", re.IGNORECASE)


def mirror_safe(group: str, subgroup: str, annotation: str = "") -> bool:
    """Whether a left-right mirror keeps the emoji's meaning (see the module docstring for the rule)."""
    if group in NO_MIRROR_GROUPS or subgroup in NO_MIRROR_SUBGROUPS or subgroup.startswith("hand-"):
        return False
    return DIRECTION_WORDS.search(annotation) is None


@dataclass(frozen=True)
class Augment:
    """Ranges of the random transform: shift in pixels (each axis), scale factor, mirror probability."""

    max_shift: float = 6.0
    min_scale: float = 0.88
    max_scale: float = 1.04
    mirror_p: float = 0.5

    def draw(self, mirrorable: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Per image (N,) bool mirrorable -> (N, 4) parameters: scale, shift x, shift y (pixels), mirror (0/1)."""
        n = len(mirrorable)
        u = torch.rand(n, 4, generator=generator)
        scale = self.min_scale + (self.max_scale - self.min_scale) * u[:, 0]
        shift = (2 * u[:, 1:3] - 1) * self.max_shift
        mirror = (u[:, 3] < self.mirror_p) & mirrorable
        return torch.cat([scale[:, None], shift, mirror[:, None].float()], dim=1)


def warp(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, H, W, 3) transformed by `Augment.draw` parameters (bilinear, white outside) -> uint8."""
    n, h, w, _ = images.shape
    x = images.permute(0, 3, 1, 2).float() / 255 - 1  # white -> 0, so zero padding pads with white
    scale, sx, sy, mirror = params.unbind(1)
    flip = 1 - 2 * mirror
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = flip / scale  # output -> input coordinates: undo the scale, then the mirror
    theta[:, 1, 1] = 1 / scale
    theta[:, 0, 2] = -2 * sx / w * flip / scale
    theta[:, 1, 2] = -2 * sy / h / scale
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return ((y + 1) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def augmented(
    pixels: np.ndarray, mirrorable: np.ndarray, copy: int, seed: int = 0, spec: Augment = Augment(), batch: int = 512
) -> np.ndarray:
    """Copy number `copy` (1, 2, ...) of every image: uint8 (N, H, W, 3) -> uint8 (N, H, W, 3), deterministic in
    (seed, copy) whatever the batch."""
    if copy < 1:
        raise ValueError(f"augmented copies are numbered from 1 (copy 0 is the original), got {copy}")
    if len(mirrorable) != len(pixels):
        raise ValueError(f"{len(pixels)} images but {len(mirrorable)} mirror flags")
    generator = torch.Generator().manual_seed(seed * 1_000_003 + copy)
    params = spec.draw(torch.from_numpy(np.asarray(mirrorable, dtype=bool)), generator)
    out = np.empty_like(pixels)
    for i in range(0, len(pixels), batch):
        out[i : i + batch] = warp(torch.from_numpy(pixels[i : i + batch]), params[i : i + batch]).numpy()
    return out
