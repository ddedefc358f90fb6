"""MaskGIT decoding as a generator that yields every step, so the demo, the tests and the benchmarks share it.

The sampler sees the model only as a logits function (MaskGIT's `tokens_to_logits`): `guidance(model)` gives one
that batches the conditional and null passes in one forward (classifier-free guidance). Each step samples a token
at every masked position and re-masks the least confident of those following the cosine schedule
(`maskmamba.schedule`); `choose` holds that part in tensor operations only, so a CUDA graph of the whole step
(`graphs.GraphedDecoding`, passed as `step_fn`) replays exactly what `eager_step` runs. Randomness comes only from
a seeded torch.Generator, drawn in the same order either way.
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
from maskmamba.schedule import clamped_count, decoding_steps, mask_ratio
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


@dataclass(frozen=True)
class StepPlan:
    """The numbers decoding step `step` of `total` reads besides tokens, condition and noise."""

    cfg_scale: float
    temperature: float
    noise_scale: float  # settings.choice_temperature * (1 - step / total): the re-masking choice's Gumbel scale
    ratio: float  # mask_ratio(step / total): the cosine share of a row's unknown tokens still masked after it
    later: int  # steps after this one

    @classmethod
    def at(cls, step: int, total: int, settings: SamplingSettings) -> StepPlan:
        return cls(guidance_at(step, total, settings), settings.temperature,
                   settings.choice_temperature * (1 - step / total), mask_ratio(step / total), total - step)


def guidance_at(step: int, total: int, settings: SamplingSettings) -> float:
    """The CFG scale of decoding step `step` of `total` under `settings.cfg_schedule` (see SamplingSettings)."""
    if settings.cfg_schedule == "constant":
        return settings.cfg_scale
    decoded = 1 - mask_ratio((step - 1) / total)  # the share of the image known when the step starts
    return 1 + (settings.cfg_scale - 1) * decoded


Decoded = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # tokens, prediction, still masked, confidence
# (tokens, condition, plan, generator, n_unknown) -> Decoded: one whole step (eager_step, or graphs.GraphedDecoding)
StepFn = Callable[[torch.Tensor, Condition, StepPlan, torch.Generator, torch.Tensor], Decoded]


def gumbel(uniform: torch.Tensor) -> torch.Tensor:
    """Gumbel noise from uniform noise in [0, 1)."""
    return -torch.log(-torch.log(uniform.clamp(1e-20, 1.0)).clamp(max=-1e-20))


def choose(
    logits: torch.Tensor, tokens: torch.Tensor, mask_id: int, n_unknown: torch.Tensor, u_sample: torch.Tensor,
    u_choice: torch.Tensor, temperature: float | torch.Tensor, noise_scale: float | torch.Tensor,
    ratio: float | torch.Tensor, later: int | torch.Tensor,
) -> Decoded:
    """A step from its logits, in tensor operations only (a CUDA graph holds it as it is): sample every masked
    position at `temperature` with the Gumbel noise of `u_sample`, then keep masked the least confident of them
    (confidence noised by `noise_scale` times the Gumbel noise of `u_choice`), as many as the schedule says."""
    mask = tokens == mask_id
    logp = torch.log_softmax(logits / temperature, dim=-1)
    sampled = (logp + gumbel(u_sample)).argmax(dim=-1)
    picked = logp.gather(-1, sampled[..., None]).squeeze(-1)
    prediction = torch.where(mask, sampled, tokens)
    confidence = torch.where(mask, picked + noise_scale * gumbel(u_choice), math.inf)
    rank = confidence.argsort(dim=1).argsort(dim=1)
    still_masked = rank < clamped_count(n_unknown, mask.sum(dim=1), ratio, later)[:, None]
    return torch.where(still_masked, mask_id, prediction), prediction, still_masked, torch.where(mask, picked, math.inf)


def eager_step(
    logits_fn: LogitsFn, mask_id: int, tokens: torch.Tensor, cond: Condition, plan: StepPlan,
    generator: torch.Generator, n_unknown: torch.Tensor,
) -> Decoded:
    """One decoding step, op by op: the logits, then the sampling noise (token noise first), then `choose`."""
    logits = logits_fn(tokens, cond, plan.cfg_scale)
    u_sample = torch.rand(logits.shape, generator=generator, device=logits.device)
    u_choice = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    return choose(logits, tokens, mask_id, n_unknown, u_sample, u_choice, plan.temperature, plan.noise_scale,
                  plan.ratio, plan.later)


@torch.no_grad()
def maskgit(
    logits_fn: LogitsFn | None,
    cond: Condition,
    grid: int,
    mask_id: int,
    settings: SamplingSettings = SamplingSettings(),
    tokens: torch.Tensor | None = None,
    step_fn: StepFn | None = None,
) -> Iterator[SampleStep]:
    """Decode every position of `tokens` (B, grid*grid) that holds `mask_id` (default: all masked).

    Given tokens (inpainting) are never changed. Runs `settings.steps` steps, or fewer when fewer tokens are
    masked (no step decodes nothing). Tokens are sampled at `settings.temperature`; the confidence used to choose
    what stays decoded gets Gumbel noise scaled by `settings.choice_temperature`, annealed linearly to 0. `step_fn` runs a
    whole step in place of `eager_step` with `logits_fn` (a CUDA-graph replay of the same operations).
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
    step_fn = step_fn or functools.partial(eager_step, logits_fn, mask_id)
    for step in range(1, total + 1):
        timer = StepTimer(device)
        plan = StepPlan.at(step, total, settings)
        tokens, prediction, still_masked, confidence = step_fn(tokens, cond, plan, generator, n_unknown)
        yield SampleStep(step, total, tokens, prediction, still_masked, confidence, timer.stop())
