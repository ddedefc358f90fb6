"""Serving runtime: resident pipelines, warm-up, CUDA graphs and the step loops the demo streams.

No gradio here: the GPU machine runs and benchmarks this module on its own.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from maskmamba.configs import VARIANTS
from maskmamba.models.tokenizer import VQTokenizer
from maskmamba.ops import attention_backend, scan_backend
from maskmamba.pipeline import ASSETS, Pipeline, StepResult
from maskmamba.sampler import check_settings
from maskmamba.text_encoder import PromptEncoder

MAX_SEED = 2**32 - 1
WARM_UP_PROMPT = "a red apple"


@dataclass(frozen=True)
class Settings:
    """What a person chose for one run: exactly one of class_name and prompt, plus sampler settings."""

    class_name: str | None = None
    prompt: str | None = None
    cfg_scale: float = 3.0
    steps: int = 12
    seed: int = 0
    temperature: float = 1.0

    def check(self) -> None:
        """Raise ValueError with a readable message for anything the sampler cannot run."""
        if (self.class_name is None) == (self.prompt is None):
            raise ValueError("give exactly one of a class or a prompt")
        if self.prompt is not None and not self.prompt.strip():
            raise ValueError("the prompt is empty: type a few words, or switch to class mode")
        if self.class_name is not None and not self.class_name.strip():
            raise ValueError("no class chosen: pick one from the list")
        check_settings(self.steps, float(self.cfg_scale), float(self.temperature))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer from 0 to {MAX_SEED}, got {self.seed!r}")

    def sampler_kwargs(self) -> dict:
        return dict(
            class_name=self.class_name, prompt=self.prompt, cfg_scale=float(self.cfg_scale),
            steps=self.steps, seed=self.seed, temperature=float(self.temperature),
        )


@dataclass(frozen=True)
class Timing:
    """One timed run of a variant: per-step model latencies and the wall time including previews."""

    variant: str
    step_ms: list[float]
    wall_ms: float

    @property
    def model_ms(self) -> float:
        return sum(self.step_ms)


def resolve_device(name: str | None) -> torch.device:
    """'cuda', 'cpu' or None (GPU when present); asking for CUDA without one is a readable error."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but PyTorch sees no CUDA GPU here; use --device cpu")
    if device.type not in ("cuda", "cpu"):
        raise ValueError(f"device must be cuda or cpu, got {name!r}")
    return device


def find_variants(assets: Path) -> list[str]:
    """Generator checkpoints under `assets` (subfolders whose config.json names a variant), registry order first."""
    found = []
    for config in sorted(Path(assets).glob("*/config.json")):
        variant = json.loads(config.read_text()).get("variant")
        if variant is not None:
            if variant != config.parent.name:
                raise ValueError(f"{config.parent} holds {variant!r}: name the folder after its variant")
            found.append(variant)
    order = list(VARIANTS)
    return sorted(found, key=lambda v: (order.index(v) if v in order else len(order), v))


class Runtime:
    """Every checkpoint under `assets`, loaded once and kept resident, with one lock around each model step.

    The step loops are generators of plain results, so several streams (people) interleave step by step
    while the GPU, the shared CUDA graphs and the prompt encoder serve one step at a time.
    """

    def __init__(self, assets: str | Path = ASSETS, device: str | torch.device | None = None):
        self.assets = Path(assets)
        self.device = resolve_device(None if device is None else str(device))
        self.variants = find_variants(self.assets)
        if not self.variants:
            raise FileNotFoundError(
                f"no checkpoints in {self.assets.resolve()}: expected subfolders like "
                f"{self.assets / 'maskmamba-serial-half'} holding config.json and the weights"
            )
        self.tokenizer = VQTokenizer.from_pretrained(self.assets / "tokenizer")
        self.pipelines = {  # one tokenizer shared by all
            v: Pipeline.from_pretrained(v, device=self.device, assets=self.assets, tokenizer=self.tokenizer)
            for v in self.variants
        }
        self.graphs: dict[str, Callable] = {}
        self.prompt_error: str | None = None
        self._lock = threading.Lock()

    @property
    def kernels(self) -> dict[str, str]:
        """Which device, precision and kernels serve the models."""
        if self.device.type == "cuda":
            device = f"cuda ({torch.cuda.get_device_name(self.device)})"
        else:
            device = f"cpu ({torch.get_num_threads()} threads)"
        return {
            "device": device,
            "dtype": str(next(iter(self.pipelines.values())).dtype).removeprefix("torch."),
            "scan": {"triton": "fused Triton kernel", "mamba-ssm": "mamba-ssm CUDA kernel"}.get(
                scan_backend(self.device), "torch reference"),
            "attention": "flash-attn" if attention_backend(self.device) == "flash-attn" else "PyTorch SDPA",
            "cuda_graphs": "on" if self.graphs else "off",
        }

    def class_names(self, variant: str) -> list[str]:
        return self.pipelines[self._check_variant(variant)].class_names

    def warm_up(self, steps: int = 2) -> dict[str, float]:
        """Load the prompt encoder, capture step and preview CUDA graphs (on GPU), run each variant once; wall ms each."""
        self._load_prompt_encoder()
        if self.device.type == "cuda":
            from maskmamba.graphs import GraphedGuidance, GraphedPreview  # CUDA only

            self.graphs = {v: GraphedGuidance(p.generator) for v, p in self.pipelines.items()}
            preview = GraphedPreview(self.tokenizer)  # one tokenizer serves every pipeline, so one graph does
            for pipe in self.pipelines.values():
                pipe.preview_fn = preview
        name = self.class_names(self.variants[0])[0]
        return {v: self.time_run(v, Settings(class_name=name, steps=steps)).wall_ms for v in self.variants}

    def generate_steps(self, variant: str, settings: Settings) -> Iterator[StepResult]:
        """Decode from scratch, yielding after every step."""
        pipe = self._pipeline(variant, settings)
        return self._stepwise(pipe.stream(**settings.sampler_kwargs() | self._graph_kwargs(variant)))

    def compare_steps(self, variants: tuple[str, str], settings: Settings) -> Iterator[tuple[str, StepResult]]:
        """Two variants on the same settings, alternating one step of each: yields (variant, step)."""
        if len(variants) != 2 or variants[0] == variants[1]:
            raise ValueError("choose two different variants to compare")
        streams = [(v, self.generate_steps(v, settings)) for v in variants]
        for _ in range(settings.steps):  # same settings, so both streams have `steps` steps
            for variant, stream in streams:
                yield variant, next(stream)

    def inpaint_steps(
        self, variant: str, image: Image.Image, mask: np.ndarray | Image.Image, settings: Settings
    ) -> Iterator[StepResult]:
        """Regenerate the tokens under `mask` (True = repaint); pixels outside stay as they were."""
        pipe = self._pipeline(variant, settings)
        kwargs = settings.sampler_kwargs() | self._graph_kwargs(variant)
        return self._stepwise(pipe.inpaint_stream(image, mask, **kwargs))

    def token_mask(self, variant: str, pixel_mask: np.ndarray) -> np.ndarray:
        """(128, 128) pixel mask -> (grid, grid) bool: the tokens a mask covers."""
        return self.pipelines[self._check_variant(variant)].token_mask(pixel_mask)

    def time_run(self, variant: str, settings: Settings) -> Timing:
        """Run one generation end to end; per-step model latencies and the wall time including previews."""
        start = time.perf_counter()
        step_ms = [r.latency_ms for r in self.generate_steps(variant, settings)]
        return Timing(variant, step_ms, (time.perf_counter() - start) * 1000)

    def benchmark(self, steps: int = 12, cfg_scale: float = 3.0, repeats: int = 3) -> list[Timing]:
        """Each loaded variant, class-conditioned with CFG, `repeats` times after the warm-up; every timing."""
        name = self.class_names(self.variants[0])[0]
        settings = Settings(class_name=name, steps=steps, cfg_scale=cfg_scale)
        return [self.time_run(v, settings) for v in self.variants for _ in range(repeats)]

    def _check_variant(self, variant: str) -> str:
        if variant not in self.pipelines:
            raise ValueError(f"variant {variant!r} is not loaded; choose one of: {', '.join(self.variants)}")
        return variant

    def _pipeline(self, variant: str, settings: Settings) -> Pipeline:
        pipe = self.pipelines[self._check_variant(variant)]
        settings.check()
        if settings.class_name is not None:
            pipe.class_id(settings.class_name)  # unknown names fail here, before any step
        elif self.prompt_error is not None:
            raise ValueError(self.prompt_error)
        return pipe

    def _graph_kwargs(self, variant: str) -> dict:
        return {"logits_fn": self.graphs[variant]} if variant in self.graphs else {}

    def _load_prompt_encoder(self) -> None:
        """One MiniLM shared by every pipeline; if it cannot load, prompt mode reports why."""
        try:
            encoder = PromptEncoder(self.device)
            encoder.encode([WARM_UP_PROMPT])
        except (ImportError, OSError) as err:  # package missing, or its weight files unreadable
            self.prompt_error = f"prompt mode is unavailable on this server: {err}"
            return
        for pipe in self.pipelines.values():
            pipe.prompt_encoder = encoder

    def _stepwise(self, results: Iterator[StepResult]) -> Iterator[StepResult]:
        """Advance `results` one step at a time under the runtime's lock."""
        while True:
            with self._lock:
                result = next(results, None)
            if result is None:
                return
            yield result
