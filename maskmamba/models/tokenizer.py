"""VQ image tokenizer: a conv encoder/decoder around a finite scalar quantiser (FSQ).

128x128 RGB in [-1, 1] -> 16x16 grid of ids in [0, 1000) -> 128x128 RGB. FSQ (Mentzer et al., 2023)
rounds each of 4 latent channels to a few levels (8, 5, 5, 5); the id is the mixed-radix number of
the rounded digits. There is no learned codebook, so no commitment loss and near-full code usage.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin

from maskmamba.checksums import RecordsChecksums


class FSQ(nn.Module):
    """Finite scalar quantisation with straight-through rounding; `levels` per latent channel."""

    def __init__(self, levels: tuple[int, ...]):
        super().__init__()
        levels_t = torch.tensor(levels, dtype=torch.long)
        self.register_buffer("levels", levels_t, persistent=False)
        basis = torch.cumprod(torch.cat([levels_t.new_ones(1), levels_t[:-1]]), 0)
        self.register_buffer("basis", basis, persistent=False)
        self.codebook_size = math.prod(levels)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash z (..., D) into the range whose rounding gives exactly `levels` integer values."""
        levels = self.levels.to(z.dtype)
        half = (levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Rounded, normalised latents (..., D) in [-1, 1]; gradients pass straight through the rounding."""
        zb = self.bound(z)
        zq = zb + (torch.round(zb) - zb).detach()
        return zq / (self.levels // 2).to(z.dtype)

    def codes_to_ids(self, zq: torch.Tensor) -> torch.Tensor:
        """Normalised latents (..., D) -> int64 ids (...)."""
        half = self.levels // 2
        digits = torch.round(zq.float() * half).long() + half
        return (digits * self.basis).sum(-1)

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """int64 ids (...) -> normalised latents (..., D) as float32."""
        half = self.levels // 2
        digits = (ids.unsqueeze(-1) // self.basis) % self.levels
        return (digits - half).float() / half.float()


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with a 1x1 skip when the width changes."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(
            _norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1),
            _norm(c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv that also changes the width."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _encoder(channels: tuple[int, ...], blocks: int, latent_dim: int) -> nn.Sequential:
    """`blocks` ResBlocks per resolution, full resolution first; stride-2 convs step to the next width."""
    layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 3, padding=1)]
    for i, c in enumerate(channels):
        if i:
            layers.append(nn.Conv2d(channels[i - 1], c, 3, stride=2, padding=1))
        layers += [ResBlock(c, c) for _ in range(blocks)]
    layers += [_norm(channels[-1]), nn.SiLU(), nn.Conv2d(channels[-1], latent_dim, 1)]
    return nn.Sequential(*layers)


def _decoder(channels: tuple[int, ...], blocks: int, latent_dim: int) -> nn.Sequential:
    """Mirror of `_encoder`: `latent_dim` maps at the grid up to RGB; upsampling convs step the width down."""
    rev = channels[::-1]
    layers: list[nn.Module] = [nn.Conv2d(latent_dim, rev[0], 3, padding=1)]
    for i, c in enumerate(rev):
        if i:
            layers.append(Upsample(rev[i - 1], c))
        layers += [ResBlock(c, c) for _ in range(blocks)]
    layers += [_norm(rev[-1]), nn.SiLU(), nn.Conv2d(rev[-1], 3, 3, padding=1)]
    return nn.Sequential(*layers)


class VQTokenizer(nn.Module, RecordsChecksums, PyTorchModelHubMixin):
    """Images (B,3,128,128) in [-1,1] <-> ids (B,16,16) in [0, codebook_size).

    `enc_channels`/`dec_channels` list the width per resolution, full resolution first; each entry after
    the first halves the size. The decoder is the wider half: it runs every preview step of the demo.
    Defaults: 1.86M parameters; decode about 20 ms an image on 2 CPU threads.
    """

    def __init__(
        self,
        image_size: int = 128,
        enc_channels: tuple[int, ...] = (16, 32, 64, 128),
        dec_channels: tuple[int, ...] = (24, 48, 96, 144),
        enc_blocks: int = 1,
        dec_blocks: int = 2,
        levels: tuple[int, ...] = (8, 5, 5, 5),
    ):
        super().__init__()
        if len(enc_channels) != len(dec_channels):
            raise ValueError("encoder and decoder need the same number of resolutions")
        self.image_size = image_size
        self.grid = image_size // 2 ** (len(enc_channels) - 1)
        self.fsq = FSQ(tuple(levels))
        self.codebook_size = self.fsq.codebook_size
        self.encoder = _encoder(tuple(enc_channels), enc_blocks, len(levels))
        self.decoder = _decoder(tuple(dec_channels), dec_blocks, len(levels))

    def quantize(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> quantised latents (B, grid, grid, D), differentiable by straight-through."""
        z = self.encoder(images).permute(0, 2, 3, 1)
        return self.fsq.quantize(z.float())  # float32: bf16 cannot hold the rounded digits exactly

    def decode_latents(self, zq: torch.Tensor) -> torch.Tensor:
        """Quantised latents (B, grid, grid, D) -> images (B, 3, H, W)."""
        return self.decoder(zq.permute(0, 3, 1, 2).to(self.decoder[0].weight.dtype))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B,3,H,W) in [-1,1] -> ids (B, grid, grid) int64."""
        return self.fsq.codes_to_ids(self.quantize(images))

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, grid, grid) -> images (B,3,H,W) clamped to [-1,1]."""
        return self.decode_latents(self.fsq.ids_to_codes(ids)).clamp(-1, 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: (reconstruction, ids)."""
        zq = self.quantize(images)
        return self.decode_latents(zq), self.fsq.codes_to_ids(zq.detach())


def uint8_to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B,H,W,3) -> float (B,3,H,W) in [-1, 1]."""
    return images.permute(0, 3, 1, 2).float().div(127.5).sub(1)


def output_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float (B,3,H,W) in [-1, 1] -> rounded uint8 (B,H,W,3)."""
    return images.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


@torch.no_grad()
def decode_pixels(tokenizer: VQTokenizer, tokens: torch.Tensor) -> torch.Tensor:
    """(B, grid*grid) ids -> (B, H, W, 3) uint8 on the tokenizer's device."""
    return output_to_uint8(tokenizer.decode(tokens.view(-1, tokenizer.grid, tokenizer.grid)))


@torch.no_grad()
def preview_pixels(tokenizer: VQTokenizer, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, grid*grid) ids and still-masked flags -> (B, H, W, 3) uint8 preview, still-masked cells blended towards grey.

    Plain torch with fixed shapes and no host sync, so the eager preview and `GraphedPreview` run the same code.
    The blend matches float32 numpy arithmetic and truncates to uint8 as numpy's astype does."""
    pixels = decode_pixels(tokenizer, tokens).float()
    b, size, g = len(pixels), pixels.shape[1], tokenizer.grid
    cell = size // g
    big = mask.view(b, g, 1, g, 1, 1).expand(b, g, cell, g, cell, 1).reshape(b, size, size, 1)
    return torch.where(big, 0.35 * pixels + 0.65 * 128, pixels).to(torch.uint8)
