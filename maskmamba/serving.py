"""Serving layer: resident pipelines, device choice, checkpoint discovery, warm-up, CUDA graphs, one shared
tokenizer and prompt encoder, the kernel report, and timing and benchmarks of the step loops.

No gradio here: the demo (`app/`), the benchmarks (`bench/`) and a hosted Space all drive this module, and the
GPU machine runs and tests it on its own.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import logging
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from maskmamba import limits
from maskmamba.checksums import SUMS_FILE, ChecksumError, verify
from maskmamba.class_search import ClassIndex, unknown_class_message
from maskmamba.configs import VARIANTS
from maskmamba.models import Generator, stored_formats
from maskmamba.models.tokenizer import VQTokenizer
from maskmamba.modules import count_params
from maskmamba.ops import attention_backend, scan_backend
from maskmamba.pipeline import (
    ASSETS, MAX_PROMPT_CHARS, Pipeline, StepResult, check_prompt_length, model_image, model_mask,
)
from maskmamba.prompt_match import CaptionMatcher, PromptMatch
from maskmamba.settings import MAX_SEED, SamplingSettings
from maskmamba.text_encoder import PromptEncoder

WARM_UP_PROMPT = "a red apple"
OUT_OF_MEMORY = ("the GPU ran out of memory on this request, so it was stopped and its memory freed; "
                 "the server keeps serving: try again, perhaps with fewer iterations")
log = logging.getLogger(__name__)

__all__ = [
    "ASSETS", "MAX_PROMPT_CHARS", "MAX_SEED", "CheckpointError", "ClassIndex", "unknown_class_message", "OutOfMemory", "PromptMatch", "Runtime", "Settings", "StepResult",
    "Timing", "find_variants", "load_tokenizer", "model_image", "model_label", "model_mask", "resolve_device", "scan_checkpoints",
    "summarise",
]


IDLE_RELEASE_S = 1.0  # seconds without any stream before host memory is released


class OutOfMemory(RuntimeError):
    """A request ran the device out of memory; it was stopped and the memory it held was released."""

    def __init__(self, message: str = OUT_OF_MEMORY):
        super().__init__(message)


def release_memory(device: torch.device | None = None) -> None:
    """Return what finished requests left behind: unreachable objects and (glibc) freed heap pages, so resident
    memory falls back once the server is idle; with a CUDA `device`, also the allocator's cached blocks."""
    gc.collect()
    if device is not None and device.type == "cuda":
        torch.cuda.empty_cache()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


_LIBC = _libc()


@dataclass(frozen=True)
class Settings(SamplingSettings):
    """What a person chose for one run: exactly one of class_name and prompt, plus the sampling settings."""

    class_name: str | None = None
    prompt: str | None = None

    def check(self) -> None:
        """Raise ValueError with a readable message for anything the sampler cannot run."""
        if (self.class_name is None) == (self.prompt is None):
            raise ValueError("give exactly one of a class or a prompt")
        if self.prompt is not None and not self.prompt.strip():
            raise ValueError("the prompt is empty: type a few words, or switch to class mode")
        if self.prompt is not None:
            check_prompt_length(self.prompt)
        if self.class_name is not None and not self.class_name.strip():
            raise ValueError("no class chosen: pick one from the list")
        super().check()


@dataclass(frozen=True)
class Timing:
    """One timed run of a variant: per-step model latencies and the wall time including previews."""

    variant: str
    step_ms: list[float]
    wall_ms: float

    @property
    def model_ms(self) -> float:
        return sum(self.step_ms)


def summarise(timings: list[Timing]) -> list[dict]:
    """Per variant (first-seen order): median ms per step, model ms and wall ms of a whole run, and the runs."""
    rows = []
    for variant in dict.fromkeys(t.variant for t in timings):
        mine = [t for t in timings if t.variant == variant]
        rows.append({
            "model": variant,
            "ms_per_step": statistics.median(t.model_ms / len(t.step_ms) for t in mine),
            "model_ms": statistics.median(t.model_ms for t in mine),
            "wall_ms": statistics.median(t.wall_ms for t in mine),
            "runs": len(mine),
        })
    return rows


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


TOKENIZER = "tokenizer"  # the assets subfolder holding the VQ tokenizer every pipeline shares


class CheckpointError(ValueError):
    """A checkpoint file that is missing or unreadable; the message names the file and what is wrong."""


def read_json(path: Path) -> object:
    """A JSON file's contents; CheckpointError naming the file when it is missing or malformed."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} cannot be read: {err}") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None


def scan_checkpoints(assets: str | Path) -> tuple[list[str], dict[str, str]]:
    """Generator checkpoints under `assets`: (variants whose folder's config.json names them, in registry order;
    {folder name: what is wrong} for folders that hold weights or a config but cannot be served)."""
    found, problems = [], {}
    for folder in sorted(p for p in Path(assets).iterdir() if p.is_dir() and p.name != TOKENIZER):
        config = folder / "config.json"
        if not config.is_file():
            if stored_formats(folder):
                problems[folder.name] = f"{config} is missing: the weights beside it cannot be loaded without it"
            continue
        try:
            contents = read_json(config)
        except CheckpointError as err:
            problems[folder.name] = str(err)
            continue
        variant = contents.get("variant") if isinstance(contents, dict) else None
        if variant is None:
            continue  # another kind of model (a spare tokenizer, ...)
        if variant != folder.name:
            problems[folder.name] = f"{config} names {limits.short(variant)}: name the folder after its variant"
            continue
        found.append(variant)
    order = list(VARIANTS)
    return sorted(found, key=lambda v: (order.index(v) if v in order else len(order), v)), problems


def find_variants(assets: str | Path) -> list[str]:
    """The servable generator checkpoints under `assets` (see scan_checkpoints), registry order first."""
    return scan_checkpoints(assets)[0]


def load_tokenizer(folder: Path) -> VQTokenizer:
    """The shared VQ tokenizer from `folder` (config.json beside model.safetensors, checked against SHA256SUMS);
    CheckpointError naming the file when any of it is missing or wrong: the demo cannot run without it."""
    config, weights = folder / "config.json", folder / "model.safetensors"
    if not folder.is_dir():
        raise CheckpointError(f"no tokenizer: {folder} is missing (it holds config.json and model.safetensors)")
    if not isinstance(read_json(config), dict):
        raise CheckpointError(f"{config} must hold a JSON object of the tokenizer's settings")
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing (weights load only from safetensors)")
    if not verify(weights):
        log.warning("%s has no recorded SHA-256 (%s); loading it unchecked", weights, SUMS_FILE)
    try:
        return VQTokenizer.from_pretrained(folder)
    except Exception as err:  # safetensors, torch and the hub mixin each raise their own kinds
        raise CheckpointError(f"{weights} could not be loaded: {limits.short(str(err), 200)}") from None


def model_label(variant: str, generator: Generator) -> str:
    """How the demo names a model: its variant, size and parameters, e.g. 'uvit · mid, 9.4M params'."""
    return f"{variant} · {generator.config.size}, {count_params(generator) / 1e6:.1f}M params"


class Runtime:
    """Every checkpoint under `assets`, loaded once and kept resident, with one lock around each model step.

    The pipelines share one tokenizer and one prompt encoder. The step loops are generators of plain results,
    so several streams (people) interleave step by step while the GPU serves one step at a time. A checkpoint
    that cannot load is left out and named in `disabled` (and the log) with what is wrong; the others serve.
    """

    def __init__(self, assets: str | Path = ASSETS, device: str | torch.device | None = None):
        self.assets = Path(assets)
        self.device = resolve_device(None if device is None else str(device))
        if not self.assets.is_dir():
            raise FileNotFoundError(f"no assets folder {self.assets.resolve()}")
        found, self.disabled = scan_checkpoints(self.assets)
        if not found and not self.disabled:
            raise FileNotFoundError(
                f"no checkpoints in {self.assets.resolve()}: expected subfolders like "
                f"{self.assets / 'maskmamba-serial-half'} holding config.json and the weights"
            )
        self.tokenizer = load_tokenizer(self.assets / TOKENIZER)
        self.prompt_encoder = PromptEncoder(self.device)  # loads on warm-up or on the first prompt
        self.prompt_matcher = CaptionMatcher(ClassIndex.for_assets(self.assets), self.prompt_encoder)
        self.pipelines: dict[str, Pipeline] = {}
        for variant in found:
            try:
                self.pipelines[variant] = self._load(variant)
            except (CheckpointError, ChecksumError, ValueError, OSError) as err:
                self.disabled[variant] = str(err)
        for name, why in self.disabled.items():
            log.error("checkpoint %s disabled: %s", name, why)
        if not self.pipelines:
            raise CheckpointError("no checkpoint could be loaded: " + "; ".join(self.disabled.values()))
        self.variants = list(self.pipelines)
        self._labels = {v: model_label(v, p.generator) for v, p in self.pipelines.items()}  # counted once, at load
        self.prompt_error: str | None = None
        self._lock = threading.Lock()
        self._streams = 0  # step streams open now; memory is released once the last one has ended
        self._idle_release: threading.Timer | None = None

    def _load(self, variant: str) -> Pipeline:
        """One variant's pipeline; its class list is read first so that a malformed one is named."""
        folder = self.assets / variant
        read_json(folder / "classes.json" if (folder / "classes.json").is_file() else self.assets / "classes.json")
        try:
            return Pipeline.from_pretrained(variant, device=self.device, assets=self.assets, tokenizer=self.tokenizer,
                                            prompt_encoder=self.prompt_encoder)
        except (TypeError, KeyError) as err:  # config.json parsed but does not describe a generator
            raise CheckpointError(f"{folder / 'config.json'} does not describe a generator: {err}") from None

    @property
    def kernels(self) -> dict[str, str]:
        """Which device, precision and kernels serve the models."""
        if self.device.type == "cuda":
            device = f"cuda ({torch.cuda.get_device_name(self.device)})"
        else:
            device = f"cpu ({torch.get_num_threads()} threads)"
        pipes = list(self.pipelines.values())
        return {
            "device": device,
            "dtype": str(pipes[0].dtype).removeprefix("torch."),
            "scan": {"triton": "fused Triton kernel", "mamba-ssm": "mamba-ssm CUDA kernel"}.get(
                scan_backend(self.device), "torch reference"),
            "attention": attention_backend(self.device).replace("sdpa", "PyTorch SDPA", 1),
            "cuda_graphs": "on" if all(p.cuda_graphs for p in pipes) else "off",
        }

    def class_names(self, variant: str) -> list[str]:
        return self.pipelines[self._check_variant(variant)].class_names

    def describe(self, variant: str) -> str:
        """The loaded variant's label: name, size and parameter count (see `model_label`)."""
        return self._labels[self._check_variant(variant)]

    def defaults(self, variant: str) -> SamplingSettings:
        """The variant's default sampling settings (its checkpoint's `default_cfg`, else the library default)."""
        return self.pipelines[self._check_variant(variant)].defaults

    def warm_up(self, steps: int = 2) -> dict[str, float]:
        """Load the prompt encoder, capture step and preview CUDA graphs (on GPU), run each variant once; wall ms each."""
        self._load_prompt_encoder()
        if self.device.type == "cuda":
            from maskmamba.graphs import GraphedPreview  # CUDA only

            preview = GraphedPreview(self.tokenizer)  # one tokenizer serves every pipeline, so one graph does
            for pipe in self.pipelines.values():
                pipe.enable_cuda_graphs(preview)
        name = self.class_names(self.variants[0])[0]
        return {v: self.time_run(v, Settings(class_name=name, steps=steps)).wall_ms for v in self.variants}

    def match_prompt(self, prompt: str) -> PromptMatch:
        """The known caption a prompt is drawn as (see maskmamba.prompt_match)."""
        if self.prompt_error is not None:
            raise ValueError(self.prompt_error)
        return self.prompt_matcher.match(prompt)

    def generate_steps(self, variant: str, settings: Settings) -> Iterator[StepResult]:
        """Decode from scratch, yielding after every step; a prompt is drawn as its matched caption."""
        pipe = self._pipeline(variant, settings)
        stream = pipe.stream(settings.class_name, prompt=self._caption(settings), settings=settings.sampling())
        return self._stepwise(stream)

    def compare_steps(self, variants: tuple[str, str], settings: Settings) -> Iterator[tuple[str, StepResult]]:
        """Two variants on the same settings, alternating one step of each: yields (variant, step)."""
        if len(variants) != 2 or variants[0] == variants[1]:
            raise ValueError("choose two different variants to compare")
        streams = [(v, self.generate_steps(v, settings)) for v in variants]
        while streams:
            live = []
            for variant, stream in streams:
                result = next(stream, None)
                if result is not None:
                    live.append((variant, stream))
                    yield variant, result
            streams = live

    def inpaint_steps(
        self, variant: str, image: Image.Image, mask: np.ndarray | Image.Image, settings: Settings
    ) -> Iterator[StepResult]:
        """Regenerate the tokens under `mask` (True = repaint); pixels outside stay as they were."""
        pipe = self._pipeline(variant, settings)
        stream = pipe.inpaint_stream(image, mask, class_name=settings.class_name, prompt=self._caption(settings),
                                     settings=settings.sampling())
        return self._stepwise(stream)

    def token_mask(self, variant: str, pixel_mask: np.ndarray) -> np.ndarray:
        """(128, 128) pixel mask -> (grid, grid) bool: the tokens a mask covers."""
        return self.pipelines[self._check_variant(variant)].token_mask(pixel_mask)

    def time_run(self, variant: str, settings: Settings) -> Timing:
        """Run one generation end to end; per-step model latencies and the wall time including previews."""
        start = time.perf_counter()
        step_ms = [r.latency_ms for r in self.generate_steps(variant, settings)]
        return Timing(variant, step_ms, (time.perf_counter() - start) * 1000)

    def benchmark(self, steps: int | None = None, cfg_scale: float | None = None, repeats: int = 3) -> list[Timing]:
        """Each loaded variant, class-conditioned with CFG (default settings unless given), `repeats` times."""
        chosen = {k: v for k, v in (("steps", steps), ("cfg_scale", cfg_scale)) if v is not None}
        settings = Settings(class_name=self.class_names(self.variants[0])[0], **chosen)
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

    def _caption(self, settings: Settings) -> str | None:
        return None if settings.prompt is None else self.match_prompt(settings.prompt).caption

    def _load_prompt_encoder(self) -> None:
        """Load the shared MiniLM and the caption embeddings now; if they cannot load, prompt mode reports why."""
        try:
            self.prompt_encoder.encode([WARM_UP_PROMPT])
            self.prompt_matcher.load()
        except (ImportError, OSError) as err:  # package missing, or its weight files unreadable
            self.prompt_error = f"prompt mode is unavailable on this server: {err}"

    def _stepwise(self, results: Iterator[StepResult]) -> Iterator[StepResult]:
        """Advance `results` one step at a time under the runtime's lock. Running out of device memory ends this
        stream with OutOfMemory after its memory is freed; other streams and later requests go on."""
        steps = self._steps(results)
        del results  # only `steps` may hold the stream, so that a failure can free it
        with self._lock:
            self._streams += 1
            if self._idle_release is not None:
                self._idle_release.cancel()
        try:
            yield from steps
        finally:
            with self._lock:
                self._streams -= 1
                if self._streams == 0:
                    self._release_when_idle()

    def _release_when_idle(self) -> None:
        """Release host memory (not the warm CUDA cache) off the request path, IDLE_RELEASE_S after the last stream
        ended unless another one starts first: a full collection costs a generation about 0.1 s on a GPU."""
        self._idle_release = threading.Timer(IDLE_RELEASE_S, release_memory)
        self._idle_release.daemon = True
        self._idle_release.start()

    def _steps(self, results: Iterator[StepResult]) -> Iterator[StepResult]:
        while True:
            out_of_memory = False
            with self._lock:
                try:
                    result = next(results, None)
                except torch.OutOfMemoryError:
                    out_of_memory = True  # handled below, once the error and its frames are gone
                if out_of_memory:
                    results.close()
                    del results
                    release_memory(self.device)
            if out_of_memory:
                log.warning("a request ran out of device memory; it was stopped and its memory freed")
                raise OutOfMemory()
            if result is None:
                return
            yield result
