"""Endpoint functions: check what the person sent, drive the runtime, turn its results into UI values.

Every failure a person can cause comes back as a gr.Error with a readable message; anything else is logged
and reported without a stack trace.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Iterator

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from app import media
from maskmamba.configs import VARIANTS
from maskmamba.serving import MAX_SEED, Runtime, Settings, StepResult, model_image, model_mask
from maskmamba.settings import SamplingSettings

log = logging.getLogger(__name__)
MODES = ("Class", "Prompt")
EDITOR_SIDE = 512  # backgrounds are enlarged to this so brush strokes can follow token cells
SPEED_FILE = Path("results") / "speed.json"


def settings(
    mode: str, class_name: str | None, prompt: str | None, cfg_scale: float, steps: float, seed: float, temperature: float
) -> Settings:
    """The UI's values -> runtime Settings; ValueError with a readable message when they cannot run."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    for name, value in (("CFG scale", cfg_scale), ("iterations", steps), ("seed", seed), ("temperature", temperature)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    for name, value in (("iterations", steps), ("seed", seed)):
        if value != int(value):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
    chosen = dict(class_name=class_name or "") if mode == "Class" else dict(prompt=prompt or "")
    return Settings(**chosen, cfg_scale=float(cfg_scale), steps=int(steps), seed=int(seed), temperature=float(temperature))


def status_line(result: StepResult, latencies: list[float], started: float, label: str) -> str:
    """Markdown: step k of n, this step's latency, model total and wall time so far."""
    wall = time.perf_counter() - started
    return (
        f"**{label}** · step **{result.step} / {result.total}** · {result.mask.sum()} tokens still masked (grey) · "
        f"this step {result.latency_ms:.1f} ms · model total **{sum(latencies):.0f} ms** · wall {wall:.2f} s"
    )


@contextlib.contextmanager
def _guarded() -> Iterator[None]:
    """Re-raise what a person can fix as gr.Error; log anything else and report it without a trace."""
    try:
        yield
    except gr.Error:
        raise
    except (ValueError, FileNotFoundError, ImportError) as err:
        raise gr.Error(str(err), print_exception=False) from None
    except Exception:
        log.exception("a request failed")
        raise gr.Error("the server failed on this request (logged); your inputs are unchanged, try again") from None


def editor_parts(editor: dict | None) -> tuple[Image.Image, np.ndarray]:
    """gr.ImageEditor value -> (background image, (H, W) bool mask painted on its layers)."""
    if not editor or editor.get("background") is None:
        raise ValueError("no image to inpaint: upload one, use the last generated image, or pick an example")
    background = editor["background"]
    layers = [layer for layer in editor.get("layers") or [] if layer is not None]
    return background, media.pixel_mask(layers, background.size)


class Handlers:
    """The demo's endpoints over one Runtime."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    def generate(
        self, variant: str, mode: str, class_name: str, prompt: str, cfg_scale: float, steps: int, seed: int,
        temperature: float,
    ) -> Iterator[tuple]:
        """Stream (image, per-step latency table, status, PNG path, GIF path); files arrive with the last step."""
        with _guarded():
            yield from self._generate(variant, (mode, class_name, prompt, cfg_scale, steps, seed, temperature))

    def compare(
        self, left: str, right: str, mode: str, class_name: str, prompt: str, cfg_scale: float, steps: int, seed: int,
        temperature: float,
    ) -> Iterator[tuple]:
        """Stream (left image, right image, latency table of both, status), one model step per update."""
        with _guarded():
            yield from self._compare(left, right, (mode, class_name, prompt, cfg_scale, steps, seed, temperature))

    def inpaint(
        self, editor: dict, variant: str, mode: str, class_name: str, prompt: str, cfg_scale: float, steps: int,
        seed: int, temperature: float,
    ) -> Iterator[tuple]:
        """Stream (image, token overlay, latency table, status, PNG path) while the painted tokens are regenerated."""
        with _guarded():
            yield from self._inpaint(editor, variant, (mode, class_name, prompt, cfg_scale, steps, seed, temperature))

    def _generate(self, variant: str, choice: tuple) -> Iterator[tuple]:
        chosen = settings(*choice)
        started, latencies, frames = time.perf_counter(), [], []
        for result in self.runtime.generate_steps(variant, chosen):
            latencies.append(result.latency_ms)
            frames.append(result.image)
            status = status_line(result, latencies, started, variant)
            last = result.step == result.total
            files = (media.save_png(result.image), media.progression_gif(frames)) if last else (None, None)
            yield (result.image, media.latency_frame({variant: latencies}), status, *files)

    def _compare(self, left: str, right: str, choice: tuple) -> Iterator[tuple]:
        chosen = settings(*choice)
        started = time.perf_counter()
        latencies: dict[str, list[float]] = {left: [], right: []}
        images: dict[str, Image.Image | None] = {left: None, right: None}
        lines: dict[str, str] = {left: "", right: ""}
        for variant, result in self.runtime.compare_steps((left, right), chosen):
            latencies[variant].append(result.latency_ms)
            images[variant] = result.image
            lines[variant] = status_line(result, latencies[variant], started, variant)
            yield images[left], images[right], media.latency_frame(latencies), "\n\n".join(lines.values())

    def _inpaint(self, editor: dict, variant: str, choice: tuple) -> Iterator[tuple]:
        chosen = settings(*choice)
        image, mask = editor_parts(editor)
        overlay, _ = self._overlay(image, mask, variant)
        started, latencies = time.perf_counter(), []
        for result in self.runtime.inpaint_steps(variant, image, mask, chosen):
            latencies.append(result.latency_ms)
            png = media.save_png(result.image) if result.step == result.total else None
            status = status_line(result, latencies, started, variant)
            yield result.image, overlay, media.latency_frame({variant: latencies}), status, png

    def mask_preview(self, editor: dict | None, variant: str) -> tuple[Image.Image | None, str]:
        """(token overlay, caption) for what the brush covers; empty while there is no image."""
        if not editor or editor.get("background") is None:
            return None, "Load an image, then paint over the part to regenerate."
        try:
            overlay, tokens = self._overlay(*editor_parts(editor), variant)
        except ValueError as err:
            return None, f"⚠️ {err}"
        return overlay, f"The mask covers **{tokens.sum()} of {tokens.size}** tokens."

    def _overlay(self, image: Image.Image, mask: np.ndarray, variant: str) -> tuple[Image.Image, np.ndarray]:
        """(the image as the model sees it with its covered tokens tinted, the (grid, grid) token mask)."""
        tokens = self.runtime.token_mask(variant, model_mask(mask))
        return media.token_overlay(model_image(image), tokens), tokens

    @staticmethod
    def editor_value(image: Image.Image | None) -> dict:
        """An image -> an ImageEditor value with it, enlarged, as the background and no paint."""
        if image is None:
            raise gr.Error("no generated image yet: generate one in the Generate tab first", print_exception=False)
        big = image.convert("RGB").resize((EDITOR_SIDE, EDITOR_SIDE), Image.NEAREST)
        return {"background": big, "layers": [], "composite": big}

    @staticmethod
    def pick_seed(seed: float, randomise: bool) -> int:
        """A fresh random seed when `randomise` is on, else the given one unchanged."""
        return random.randint(0, MAX_SEED) if randomise else seed

    def variant_chosen(self, variant: str) -> tuple[dict, dict]:
        """Updates for (the variant dropdown: its description, the class dropdown: this variant's classes)."""
        return gr.update(info=VARIANTS[variant].description), gr.update(choices=self.runtime.class_names(variant))

    def speed_results(self) -> tuple[pd.DataFrame | None, str]:
        """The shipped speed-against-resolution results, or a note saying they are missing."""
        path = self.runtime.assets / SPEED_FILE
        if not path.is_file():
            return None, f"No benchmark results shipped: `{path}` is missing. The speed benchmark writes it."
        try:
            data = json.loads(path.read_text())
            frame = pd.DataFrame(data["rows"], columns=["model", "side", "tokens", "ms"])
        except (ValueError, KeyError, TypeError) as err:
            return None, f"`{path}` could not be read ({err})."
        return frame, f"Measured on **{data.get('device', 'unknown device')}** with `{data.get('command', '?')}`."

    def live_benchmark(self, steps: int = SamplingSettings().steps, repeats: int = 3) -> tuple[pd.DataFrame, str]:
        """Time every loaded variant, `steps` iterations with CFG; (median ms per step per model, Markdown table)."""
        with _guarded():
            return self._live_benchmark(steps, repeats)

    def _live_benchmark(self, steps: int, repeats: int) -> tuple[pd.DataFrame, str]:
        timings = self.runtime.benchmark(steps=steps, repeats=repeats)
        rows = []
        for variant in self.runtime.variants:
            mine = [t for t in timings if t.variant == variant]
            rows.append({
                "model": variant,
                "ms_per_step": float(np.median([t.model_ms / steps for t in mine])),
                "model_ms": float(np.median([t.model_ms for t in mine])),
                "wall_ms": float(np.median([t.wall_ms for t in mine])),
            })
        table = f"| model | ms / step | model ms ({steps} steps) | wall ms incl. previews |\n|---|---:|---:|---:|\n"
        table += "\n".join(
            f"| {r['model']} | {r['ms_per_step']:.2f} | {r['model_ms']:.1f} | {r['wall_ms']:.1f} |" for r in rows
        )
        kernels = self.runtime.kernels
        runs = f"{repeats} runs" if repeats > 1 else "1 run"
        note = f"Median of {runs}, {steps} iterations with CFG, on {kernels['device']} ({kernels['dtype']})."
        return pd.DataFrame(rows), f"{note}\n\n{table}"
