"""MaskGIT decoding as a generator that yields every step, so the demo, the tests and the benchmarks share it.

Each step: one forward pass over [conditional; null] batched together (classifier-free guidance), a token
sampled at every masked position, and the least confident of those re-masked following a cosine schedule.
Randomness comes only from a seeded torch.Generator, so a seed fixes the result.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from maskmamba.models.conditioning import Condition

MAX_STEPS = 256


@dataclass
class SampleStep:
    """The state after step `index` (1-based) of `total`."""

    index: int
    total: int
    tokens: torch.Tensor  # (B, N) decoded ids; still-masked positions hold the model's mask id
    prediction: torch.Tensor  # (B, N) this step's sampled id at every position (for previews)
    mask: torch.Tensor  # (B, N) bool, True where still masked after this step
    confidence: torch.Tensor  # (B, N) log-probability of each decoded token (+inf for given tokens)
    latency_ms: float


def masked_after(step: int, total: int, n_unknown: torch.Tensor) -> torch.Tensor:
    """How many of the initially unknown tokens remain masked after `step` of `total` (cosine schedule)."""
    remaining = torch.floor(n_unknown * math.cos(math.pi / 2 * step / total)).long()
    return remaining if step < total else torch.zeros_like(remaining)


def guided_logits(model: nn.Module, tokens: torch.Tensor, cond: Condition, cfg_scale: float | torch.Tensor) -> torch.Tensor:
    """null + scale * (conditional - null), with both passes batched in one forward. Scale 0 is the null pass."""
    both = model(torch.cat([tokens, tokens]), cond.cat(Condition.null(len(cond), tokens.device, cond.text.shape[1])))
    conditional, null = both.float().chunk(2)
    return null + cfg_scale * (conditional - null)


def _gumbel(shape: torch.Size, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=device).clamp_(1e-20, 1.0)
    return -torch.log(-torch.log(u).clamp_(max=-1e-20))


def check_settings(steps: int, cfg_scale: float, temperature: float) -> None:
    """Raise ValueError with a readable message for settings the sampler cannot honour."""
    if not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be an integer from 1 to {MAX_STEPS}, got {steps!r}")
    if not math.isfinite(cfg_scale) or cfg_scale < 0:
        raise ValueError(f"CFG scale must be a finite number >= 0, got {cfg_scale!r}")
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")


@torch.no_grad()
def maskgit(
    model: nn.Module,
    cond: Condition,
    steps: int = 12,
    cfg_scale: float = 3.0,
    temperature: float = 1.0,
    choice_temperature: float = 4.5,
    seed: int = 0,
    tokens: torch.Tensor | None = None,
    logits_fn: Callable[[torch.Tensor, Condition, float], torch.Tensor] | None = None,
) -> Iterator[SampleStep]:
    """Decode every masked position of `tokens` (default: all masked) in `steps` steps.

    Given tokens (inpainting) are never changed. Tokens are sampled at `temperature`; the confidence used to
    choose what stays decoded gets Gumbel noise scaled by `choice_temperature`, annealed linearly to 0.
    `logits_fn` replaces the model call (the serving runtime passes a CUDA-graph replay).
    """
    check_settings(steps, cfg_scale, temperature)
    device = cond.class_ids.device
    n = model.grid * model.grid
    if tokens is None:
        tokens = torch.full((len(cond), n), model.mask_id, dtype=torch.long, device=device)
    tokens = tokens.clone()
    generator = torch.Generator(device).manual_seed(seed)
    logits_fn = logits_fn or (lambda t, c, s: guided_logits(model, t, c, s))
    n_unknown = (tokens == model.mask_id).sum(dim=1)
    for step in range(1, steps + 1):
        start = time.perf_counter()
        mask = tokens == model.mask_id
        logits = logits_fn(tokens, cond, cfg_scale)
        logp = torch.log_softmax(logits / temperature, dim=-1)
        sampled = (logp + _gumbel(logp.shape, generator, device)).argmax(dim=-1)
        picked = logp.gather(-1, sampled[..., None]).squeeze(-1)
        prediction = torch.where(mask, sampled, tokens)
        noise = choice_temperature * (1 - step / steps) * _gumbel(picked.shape, generator, device)
        confidence = torch.where(mask, picked + noise, torch.full_like(picked, math.inf))
        rank = confidence.argsort(dim=1).argsort(dim=1)
        still_masked = rank < masked_after(step, steps, n_unknown)[:, None]
        tokens = torch.where(still_masked, model.mask_id, prediction)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        latency = (time.perf_counter() - start) * 1000
        yield SampleStep(step, steps, tokens, prediction, still_masked, torch.where(mask, picked, math.inf), latency)
