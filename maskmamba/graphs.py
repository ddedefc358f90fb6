"""CUDA graphs captured once and replayed: a sampling step's guided forward, a whole sampling step, its preview,
and a training step."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from maskmamba.models.conditioning import Condition
from maskmamba.models.tokenizer import VQTokenizer, preview_pixels
from maskmamba.sampler import Decoded, StepPlan, choose, guided_logits
from maskmamba.text_encoder import PROMPT_TOKENS


def _cuda_device(module: nn.Module) -> torch.device:
    device = next(module.parameters()).device
    if device.type != "cuda":
        raise ValueError("CUDA graphs need the model on a CUDA device")
    return device


def _on_side_stream(fn: Callable[[], torch.Tensor], device: torch.device) -> torch.Tensor:
    """Run `fn` on a fresh side stream ordered after the current one (how warm-up before a capture must run)."""
    main = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(main)
    with torch.cuda.stream(side):
        out = fn()
    main.wait_stream(side)
    return out


def _capture(
    forward: Callable[[], torch.Tensor], device: torch.device, warmup: int
) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """Run `forward` `warmup` times on a side stream (as capture needs), then capture it: graph and static output."""
    with torch.no_grad():
        for _ in range(warmup):
            _on_side_stream(forward, device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        out = forward()
    return graph, out


class GraphedGuidance:
    """A logits function for `maskgit`: guided logits for a fixed batch size, from a CUDA graph replay.

    Inputs are copied into static buffers, so one graph serves every condition, token state and CFG scale.
    """

    def __init__(self, model: nn.Module, batch: int = 1, slots: int = PROMPT_TOKENS, warmup: int = 3):
        device = _cuda_device(model)
        self.model = model
        self.tokens = torch.full((batch, model.grid**2), model.mask_id, dtype=torch.long, device=device)
        self.cond = Condition.null(batch, device, slots)
        self.scale = torch.ones((), device=device)
        self.graph, self.out = _capture(self._forward, device, warmup)

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


class GraphedDecoding:
    """A `step_fn` for `maskgit`: a whole decoding step (guided forward, sampling, re-masking; `sampler.choose`)
    for a fixed batch size, from one CUDA graph replay, so a step costs the host a few copies and one launch.

    The sampling noise is drawn before the replay from the run's generator, in the order `eager_step` draws it,
    into static buffers; the outputs are copied out, so a step's tensors outlive the next replay.
    """

    def __init__(self, model: nn.Module, batch: int = 1, slots: int = PROMPT_TOKENS, warmup: int = 3):
        device = _cuda_device(model)
        self.model, self.mask_id = model, model.mask_id
        n, vocab = model.grid**2, model.head.out_features
        self.tokens = torch.full((batch, n), model.mask_id, dtype=torch.long, device=device)
        self.cond = Condition.null(batch, device, slots)
        self.n_unknown = torch.full((batch,), n, dtype=torch.long, device=device)
        self.u_sample = torch.rand((batch, n, vocab), device=device)
        self.u_choice = torch.rand((batch, n), device=device)
        names = ("cfg_scale", "temperature", "noise_scale", "ratio")  # StepPlan's float fields
        self.scalars = {name: torch.ones((), device=device) for name in names}
        self.later = torch.ones((), dtype=torch.long, device=device)
        self.graph, self.out = _capture(self._forward, device, warmup)

    def _forward(self) -> Decoded:
        logits = guided_logits(self.model, self.tokens, self.cond, self.scalars["cfg_scale"])
        v = self.scalars
        return choose(logits, self.tokens, self.mask_id, self.n_unknown, self.u_sample, self.u_choice,
                      v["temperature"], v["noise_scale"], v["ratio"], self.later)

    def __call__(self, tokens: torch.Tensor, cond: Condition, plan: StepPlan, generator: torch.Generator,
                 n_unknown: torch.Tensor) -> Decoded:
        self.tokens.copy_(tokens)
        self.cond.class_ids.copy_(cond.class_ids)
        self.cond.text.copy_(cond.text)
        self.cond.text_mask.copy_(cond.text_mask)
        self.n_unknown.copy_(n_unknown)
        torch.rand(self.u_sample.shape, generator=generator, device=self.u_sample.device, out=self.u_sample)
        torch.rand(self.u_choice.shape, generator=generator, device=self.u_choice.device, out=self.u_choice)
        for name, value in self.scalars.items():
            value.fill_(getattr(plan, name))
        self.later.fill_(plan.later)
        self.graph.replay()
        return tuple(t.clone() for t in self.out)


class GraphedPreview:
    """The step preview `Pipeline.enable_cuda_graphs` uses: a batch-of-one step preview from a CUDA graph replay of `preview_pixels`.

    Tokens (1, grid*grid) and still-masked flags (1, grid*grid) in -> (H, W, 3) uint8 on the GPU: the graph's
    static output, overwritten by the next call. `stream` is where its callers replay it, so that pipelines sharing
    the graph take turns with its static buffers.
    """

    def __init__(self, tokenizer: VQTokenizer, warmup: int = 3):
        device = _cuda_device(tokenizer)
        self.tokenizer = tokenizer
        self.stream = torch.cuda.Stream(device)
        self.tokens = torch.zeros((1, tokenizer.grid**2), dtype=torch.long, device=device)
        self.mask = torch.ones((1, tokenizer.grid**2), dtype=torch.bool, device=device)
        self.graph, self.out = _capture(self._forward, device, warmup)

    def _forward(self) -> torch.Tensor:
        return preview_pixels(self.tokenizer, self.tokens, self.mask)[0]

    def __call__(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.tokens.copy_(tokens)
        self.mask.copy_(mask)
        self.graph.replay()
        return self.out


class GraphedStep:
    """Call `step(*tensors)` through a CUDA graph: a whole training step (forward, backward, clipping, optimizer).

    Small models at batch 256 were launch-bound in eager mode; a captured step has no Python in its inner loop.

    The first `warmup` calls run eagerly on a side stream (allocator and library warm-up, as capture needs);
    the next is captured and replayed; later calls only copy their tensors into the static inputs and
    replay. `step` must be capture-safe: fixed shapes, no host synchronisation, an optimizer built with
    `capturable=True`, and gradients set to None (not zeroed) at its start. The returned tensor is the
    graph's static output: read it before the next call.
    """

    def __init__(self, step: Callable[..., torch.Tensor], warmup: int = 3):
        self.step, self.warmup, self.calls = step, warmup, 0
        self.inputs: list[torch.Tensor] = []
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: torch.Tensor | None = None

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        if not self.inputs:
            if tensors[0].device.type != "cuda":
                raise ValueError("GraphedStep needs CUDA tensors")
            self.inputs = [t.clone() for t in tensors]
        else:
            for static, t in zip(self.inputs, tensors):
                static.copy_(t)
        if self.calls < self.warmup:
            self.out = _on_side_stream(lambda: self.step(*self.inputs), self.inputs[0].device)
        elif self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.out = self.step(*self.inputs)
            self.graph.replay()  # capture only records: this call's step still has to run
        else:
            self.graph.replay()
        self.calls += 1
        return self.out
