"""The condition of a batch (class, prompt or null, per sample) and its encoder into condition tokens."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from maskmamba.text_encoder import PROMPT_TOKENS, TEXT_DIM


@dataclass
class Condition:
    """Per sample: a class id (>= 0), or prompt states (text_mask has a True), or neither (null, for CFG)."""

    class_ids: torch.Tensor  # (B,) int64, -1 where the sample is not class-conditioned
    text: torch.Tensor  # (B, K, TEXT_DIM) float prompt states, zero where unused
    text_mask: torch.Tensor  # (B, K) bool

    @classmethod
    def null(cls, batch: int, device: torch.device | str = "cpu", slots: int = PROMPT_TOKENS) -> Condition:
        return cls(
            torch.full((batch,), -1, dtype=torch.long, device=device),
            torch.zeros(batch, slots, TEXT_DIM, device=device),
            torch.zeros(batch, slots, dtype=torch.bool, device=device),
        )

    @classmethod
    def classes(cls, class_ids: torch.Tensor, slots: int = PROMPT_TOKENS) -> Condition:
        cond = cls.null(len(class_ids), class_ids.device, slots)
        cond.class_ids = class_ids.long()
        return cond

    @classmethod
    def prompts(cls, states: torch.Tensor, mask: torch.Tensor) -> Condition:
        cond = cls.null(len(states), states.device, states.shape[1])
        cond.text, cond.text_mask = states.float(), mask.bool()
        return cond

    def __len__(self) -> int:
        return len(self.class_ids)

    def to(self, device: torch.device | str) -> Condition:
        return Condition(self.class_ids.to(device), self.text.to(device), self.text_mask.to(device))

    def cat(self, other: Condition) -> Condition:
        """This batch followed by `other` (CFG runs [conditional; null] in one forward)."""
        return Condition(*(torch.cat([a, b]) for a, b in zip(self._fields(), other._fields())))

    def dropped(self, drop: torch.Tensor) -> Condition:
        """A copy where samples with drop[i] True become null (condition dropout in training)."""
        return Condition(
            torch.where(drop, -1, self.class_ids), self.text, self.text_mask & ~drop[:, None]
        )

    def _fields(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.class_ids, self.text, self.text_mask


def pooled_first(text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Prompt states whose first slot ([CLS]) is replaced by the mean of the prompt's states: MiniLM's sentence
    embedding before its normalisation, the summary that sentence similarity is trained on."""
    weights = mask[..., None].to(text.dtype)
    mean = (text * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp(min=1)
    return torch.cat([mean, text[:, 1:]], dim=1)


class ConditionEncoder(nn.Module):
    """Condition -> (B, K, D) tokens: [class embedding, pad...], MLP(prompt states) with pads, or learned null.

    With `pool`, a prompt's first slot carries the mean of its states (`pooled_first`) instead of [CLS]'s.
    """

    def __init__(self, width: int, num_classes: int, slots: int = PROMPT_TOKENS, text_dim: int = TEXT_DIM,
                 pool: bool = False):
        super().__init__()
        self.slots, self.pool = slots, pool
        self.class_emb = nn.Embedding(num_classes, width)
        self.prompt_mlp = nn.Sequential(nn.Linear(text_dim, width), nn.GELU(approximate="tanh"), nn.Linear(width, width))
        self.null = nn.Parameter(torch.randn(slots, width) * 0.02)
        self.pad = nn.Parameter(torch.randn(width) * 0.02)
        self.slot_pos = nn.Parameter(torch.randn(slots, width) * 0.02)
        for table in (self.null, self.pad, self.slot_pos):  # learned tokens, not matrices: AdamW leaves them undecayed
            table._no_weight_decay = True

    def forward(self, cond: Condition) -> torch.Tensor:
        b = len(cond)
        is_class = (cond.class_ids >= 0)[:, None, None]
        is_prompt = cond.text_mask.any(dim=1)[:, None, None] & ~is_class
        pad = self.pad.expand(b, self.slots - 1, -1)
        class_seq = torch.cat([self.class_emb(cond.class_ids.clamp(min=0))[:, None], pad], dim=1)
        text = pooled_first(cond.text, cond.text_mask) if self.pool else cond.text
        prompt = self.prompt_mlp(text.to(self.pad.dtype))
        prompt_seq = torch.where(cond.text_mask[..., None], prompt, self.pad.to(prompt.dtype))
        null_seq = self.null.expand(b, -1, -1)
        tokens = torch.where(is_class, class_seq.to(prompt.dtype), torch.where(is_prompt, prompt_seq, null_seq.to(prompt.dtype)))
        return tokens + self.slot_pos.to(tokens.dtype)
