"""The cosine mask schedule, shared by training (how much of an image to mask) and sampling (how much stays
masked after each step), with MaskGIT's clamp so no decoding step is empty."""
from __future__ import annotations

import math

import torch


def mask_ratio(progress: torch.Tensor | float) -> torch.Tensor | float:
    """Fraction of tokens masked at `progress` in [0, 1]: cos(pi/2 * progress), 1 at the start, 0 at the end."""
    if isinstance(progress, torch.Tensor):
        return torch.cos(math.pi / 2 * progress)
    return math.cos(math.pi / 2 * progress)


def decoding_steps(steps: int, n_unknown: torch.Tensor) -> int:
    """Steps actually run: no more than the most tokens any row has to decode (so none is empty), at least 1."""
    return max(1, min(steps, int(n_unknown.max()) if n_unknown.numel() else 0))


def clamped_count(
    n_unknown: torch.Tensor, still_masked: torch.Tensor, ratio: float | torch.Tensor, later: int | torch.Tensor
) -> torch.Tensor:
    """How many of a row's `n_unknown` tokens stay masked after a step whose cosine ratio is `ratio`
    (mask_ratio(step / total)) with `later` steps after it; `still_masked` before it. Either may be a 0-d tensor
    (the inputs of a CUDA graph); `sampler.StepPlan.at` derives both from the step.

    The cosine count, clamped as MaskGIT does: every step decodes at least one token while any remain, and leaves
    at least one for each later step, so with `total` from `decoding_steps` no step decodes nothing. After the last
    step (ratio cos(pi/2), later 0) it is 0.
    """
    cosine = torch.floor(n_unknown * ratio).long()
    return torch.minimum(cosine.clamp(min=later), (still_masked - 1).clamp(min=0))
