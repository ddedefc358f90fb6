"""A sampling step's guided forward captured once in a CUDA graph and replayed: small models are launch-bound."""
from __future__ import annotations

import torch
from torch import nn

from maskmamba.models.conditioning import Condition
from maskmamba.sampler import guided_logits
from maskmamba.text_encoder import PROMPT_TOKENS


class GraphedGuidance:
    """Drop-in `logits_fn` for `maskgit`: guided logits for a fixed batch size, from a CUDA graph replay.

    Inputs are copied into static buffers, so one graph serves every condition, token state and CFG scale.
    """

    def __init__(self, model: nn.Module, batch: int = 1, slots: int = PROMPT_TOKENS, warmup: int = 3):
        device = next(model.parameters()).device
        if device.type != "cuda":
            raise ValueError("CUDA graphs need the model on a CUDA device")
        self.model = model
        self.tokens = torch.full((batch, model.grid**2), model.mask_id, dtype=torch.long, device=device)
        self.cond = Condition.null(batch, device, slots)
        self.scale = torch.ones((), device=device)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(warmup):
                self._forward()
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.no_grad():
            self.out = self._forward()

    def _forward(self) -> torch.Tensor:
        return guided_logits(self.model, self.tokens, self.cond, self.scale)

    def __call__(self, tokens: torch.Tensor, cond: Condition, cfg_scale: float) -> torch.Tensor:
        self.tokens.copy_(tokens)
        self.cond.class_ids.copy_(cond.class_ids)
        self.cond.text.copy_(cond.text)
        self.cond.text_mask.copy_(cond.text_mask)
        self.scale.fill_(cfg_scale)
        self.graph.replay()
        return self.out
