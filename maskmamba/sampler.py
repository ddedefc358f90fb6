"""MaskGIT decoding as a generator that yields every step, so the demo, the tests and the benchmarks share it.

The sampler sees the model only as a logits function (MaskGIT's `tokens_to_logits`): `guidance(model)` gives one
that batches the conditional and null passes in one forward (classifier-free guidance); a CUDA-graph replay can
stand in for it. Each step samples a token at every masked position and re-masks the least confident of those
following the cosine schedule (`maskmamba.schedule`). Randomness comes only from a seeded torch.Generator.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from maskmamba.models.conditioning import Condition
from maskmamba.schedule import decoding_steps, masked_after
from maskmamba.settings import SamplingSettings

LogitsFn = Callable[[torch.Tensor, Condition, float], torch.Tensor]  # (tokens, condition, CFG scale) -> logits


class StepTimer:
    """The latency of one decoding step: CUDA events on a GPU, read only when asked, so that timing a step never
    holds back the launch of the next; the wall clock elsewhere."""

    def __init__(self, device: torch.device):
        self._events = None
        if device.type == "cuda":
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            self._events[0].record()
        self._start = time.perf_counter()
        self._ms: float | None = None

    def stop(self) -> StepTimer:
        if self._events is None:
            self._ms = (time.perf_counter() - self._start) * 1000
        else:
            self._events[1].record()
        return self

    @property
    def ms(self) -> float:
        """Milliseconds from start to stop (on a GPU, waits for the step to finish)."""
        if self._ms is None:
            self._events[1].synchronize()
            self._ms = self._events[0].elapsed_time(self._events[1])
        return self._ms


@dataclass
class SampleStep:
    """The state after step `index` (1-based) of `total`. On a GPU its tensors may still be being computed."""

    index: int
    total: int
    tokens: torch.Tensor  # (B, N) decoded ids; still-masked positions hold the model's mask id
    prediction: torch.Tensor  # (B, N) this step's sampled id at every position (for previews)
    mask: torch.Tensor  # (B, N) bool, True where still masked after this step
    confidence: torch.Tensor  # (B, N) log-probability of each decoded token (+inf for given tokens)
    timer: StepTimer

    @property
    def latency_ms(self) -> float:
        """The step's forward and sampling, in milliseconds (GPU time on a GPU)."""
        return self.timer.ms


def guided_logits(model: nn.Module, tokens: torch.Tensor, cond: Condition, cfg_scale: float | torch.Tensor) -> torch.Tensor:
    """null + scale * (conditional - null), with both passes batched in one forward. Scale 0 is the null pass."""
    both = model(torch.cat([tokens, tokens]), cond.cat(Condition.null(len(cond), tokens.device, cond.text.shape[1])))
    conditional, null = both.float().chunk(2)
    return null + cfg_scale * (conditional - null)


def guidance(model: nn.Module) -> LogitsFn:
    """The eager logits function of a generator: `guided_logits` with the model bound."""
    return functools.partial(guided_logits, model)


def _gumbel(shape: torch.Size, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=device).clamp_(1e-20, 1.0)
    return -torch.log(-torch.log(u).clamp_(max=-1e-20))


@torch.no_grad()
def maskgit(
    logits_fn: LogitsFn,
    cond: Condition,
    grid: int,
    mask_id: int,
    settings: SamplingSettings = SamplingSettings(),
    tokens: torch.Tensor | None = None,
    choice_temperature: float = 4.5,
) -> Iterator[SampleStep]:
    """Decode every position of `tokens` (B, grid*grid) that holds `mask_id` (default: all masked).

    Given tokens (inpainting) are never changed. Runs `settings.steps` steps, or fewer when fewer tokens are
    masked (no step decodes nothing). Tokens are sampled at `settings.temperature`; the confidence used to choose
    what stays decoded gets Gumbel noise scaled by `choice_temperature`, annealed linearly to 0.
    """
    settings.check()
    device = cond.class_ids.device
    if tokens is None:
        tokens = torch.full((len(cond), grid * grid), mask_id, dtype=torch.long, device=device)
    if tokens.shape != (len(cond), grid * grid):
        raise ValueError(f"tokens must have shape ({len(cond)}, {grid * grid}), got {tuple(tokens.shape)}")
    tokens = tokens.clone()
    generator = torch.Generator(device).manual_seed(settings.seed)
    n_unknown = (tokens == mask_id).sum(dim=1)
    total = decoding_steps(settings.steps, n_unknown)
    for step in range(1, total + 1):
        timer = StepTimer(device)
        mask = tokens == mask_id
        logits = logits_fn(tokens, cond, settings.cfg_scale)
        logp = torch.log_softmax(logits / settings.temperature, dim=-1)
        sampled = (logp + _gumbel(logp.shape, generator, device)).argmax(dim=-1)
        picked = logp.gather(-1, sampled[..., None]).squeeze(-1)
        prediction = torch.where(mask, sampled, tokens)
        noise = choice_temperature * (1 - step / total) * _gumbel(picked.shape, generator, device)
        confidence = torch.where(mask, picked + noise, torch.full_like(picked, math.inf))
        rank = confidence.argsort(dim=1).argsort(dim=1)
        still_masked = rank < masked_after(step, total, n_unknown, mask.sum(dim=1))[:, None]
        tokens = torch.where(still_masked, mask_id, prediction)
        confidence = torch.where(mask, picked, math.inf)
        yield SampleStep(step, total, tokens, prediction, still_masked, confidence, timer.stop())
