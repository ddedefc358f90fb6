"""The optimiser recipe shared by training and the throughput bench: AdamW parameter groups and the lr schedule.

Weight decay pulls weights toward zero, which is right for the matrices of linear and conv layers and wrong
for everything that sets a scale or an offset: biases, norm gains, embeddings and position tables (nanoGPT's
`configure_optimizers`), and the SSM's `A_log`, `D` and `dt_bias` (state-spaces/mamba marks them
`_no_weight_decay` on the parameter; maskmamba.modules.ssm does the same, and so do the generators' position
tables).
"""
from __future__ import annotations

import math

import torch
from torch import nn

NO_DECAY_MODULES = (nn.Embedding, nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d)


def split_decay(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decayed, not decayed) trainable parameters: decay only >= 2-D weights of layers that are not
    embeddings or norms and whose parameter is not marked `_no_weight_decay`."""
    decay, keep = [], []
    seen: set[int] = set()
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            exempt = param.ndim < 2 or isinstance(module, NO_DECAY_MODULES) or getattr(param, "_no_weight_decay", False)
            (keep if exempt else decay).append(param)
    return decay, keep


def configure_optimizers(model: nn.Module, lr: float, weight_decay: float, graphed: bool = False) -> torch.optim.AdamW:
    """AdamW over two groups (decayed matrices; everything else at zero decay). For a CUDA-graphed step it is
    capturable and each group reads its lr from a device tensor, which `set_lr` fills in place."""
    device = next(model.parameters()).device
    decay, keep = split_decay(model)

    def rate() -> torch.Tensor | float:
        return torch.tensor(lr, device=device) if graphed else lr

    groups = [{"params": decay, "weight_decay": weight_decay, "lr": rate()},
              {"params": keep, "weight_decay": 0.0, "lr": rate()}]
    return torch.optim.AdamW(groups, lr=rate(), betas=(0.9, 0.95), capturable=graphed)


def set_lr(optimizer: torch.optim.Optimizer, value: float) -> None:
    """Set every group's lr, in place where it is a device tensor (a CUDA graph reads it from there)."""
    for group in optimizer.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(value)
        else:
            group["lr"] = value


def cosine_progress(step: int, warmup: int, total: int) -> float:
    """How far the cosine decay is at `step`, 0 to 1 (0 during warm-up)."""
    return min(1.0, max(0, step - warmup) / max(1, total - warmup))


def cosine_lr(step: int, lr: float, warmup: int, total: int, min_ratio: float = 0.0, clock: float = 0.0) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay from `lr` to `min_ratio * lr` at step `total`, or sooner
    where `clock` (a progress of 0 to 1 kept elsewhere, such as a wall-clock budget's) runs ahead of the steps."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = max(clock, cosine_progress(step, warmup, total))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
