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
import re
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import gradio as gr
import numpy as np
from gradio.components.plot import PlotData
from PIL import Image

from app import media
from maskmamba.configs import VARIANTS
from maskmamba.serving import (
    MAX_SEED, ClassIndex, OutOfMemory, PromptMatch, Runtime, Settings, StepResult, model_image, model_mask,
    unknown_class_message,
)
from maskmamba.settings import SamplingSettings

log = logging.getLogger(__name__)
MODES = ("Class", "Prompt")
EDITOR_SIDE = 512  # backgrounds are enlarged to this so brush strokes can follow token cells
# Speed-against-resolution results, newest kind first, each with the prefix of its rows/device/command keys
SPEED_FILES = ((Path("results") / "bench.json", "e2e_"), (Path("results") / "speed.json", ""))
SPEED_REFERENCE = "transformer"
NO_IMAGE_YET = "no generated image yet: generate one in the Generate tab first"
LIVE_REDRAWS = 24  # charts and order pictures redraw at most about this often per run: long runs stay smooth
MAX_MESSAGE = 400  # an error message's length at most: the values it repeats are cut shorter still
STEP = re.compile(r"step \*\*(\d+) / (\d+)\*\*")
MARKDOWN_SPECIAL = re.compile(r"[\\`*_{}\[\]()<>#+|~!]")


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


def caption_note(match: PromptMatch | None) -> str:
    """Markdown: the known caption a prompt is drawn as, when it is not the prompt itself; else nothing."""
    if match is None or not match.changed:
        return ""
    caption = MARKDOWN_SPECIAL.sub(r"\\\g<0>", match.caption)
    return f"\n\ndrawn as the known caption closest to the prompt: **{caption}** (similarity {match.similarity:.2f})"


def redraw(result: StepResult) -> bool:
    """Whether this step redraws the charts and order pictures: the first, the last and every total/LIVE_REDRAWS-th."""
    every = math.ceil(result.total / LIVE_REDRAWS)
    return result.step in (1, result.total) or result.step % every == 0


def stopped_status(status: str | None) -> str:
    """The status after Stop: every "step k / n" becomes "stopped at step k / n"."""
    if not status or not STEP.search(status):
        return "**Stopped** before the first step."
    return STEP.sub(r"**stopped** at step **\1 / \2**", status)


def downloads_ready(*paths: str | None) -> dict | tuple[dict, ...]:
    """Download buttons enabled where they hold a file and disabled where they don't (one update per path)."""
    updates = tuple(gr.update(interactive=path is not None) for path in paths)
    return updates[0] if len(updates) == 1 else updates


@contextlib.contextmanager
def _guarded() -> Iterator[None]:
    """Re-raise what a person can fix as gr.Error; log anything else and report it without a trace."""
    try:
        yield
    except gr.Error:
        raise
    except (ValueError, FileNotFoundError, ImportError, OutOfMemory) as err:
        message = str(err)
        cut = message if len(message) <= MAX_MESSAGE else f"{message[:MAX_MESSAGE]}…"
        raise gr.Error(cut, print_exception=False) from None
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


def editor_value(image: Image.Image) -> dict:
    """An image -> an ImageEditor value with it, enlarged, as the background and no paint."""
    big = image.convert("RGB").resize((EDITOR_SIDE, EDITOR_SIDE), Image.NEAREST)
    return {"background": big, "layers": [], "composite": big}


class StopRequests:
    """Stop clicks per (session, tab). A run watches the count it started with and ends, saying so in its status,
    at its next step after the count changes: gradio's own cancelling would end it with no last word."""

    def __init__(self):
        self._counts: dict[tuple[str | None, str], int] = {}
        self._lock = threading.Lock()

    def request(self, session: str | None, tab: str) -> None:
        with self._lock:
            self._counts[session, tab] = self._counts.get((session, tab), 0) + 1

    def watch(self, session: str | None, tab: str) -> Callable[[], bool]:
        """A test of whether Stop was clicked in this session's tab since now."""
        start = self._counts.get((session, tab), 0)
        return lambda: self._counts.get((session, tab), 0) != start


def _session(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None)


class Handlers:
    """The demo's endpoints over one Runtime."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.class_index = ClassIndex.for_assets(runtime.assets)
        self.stops = StopRequests()

    def stop(self, tab: str, request: gr.Request | None = None) -> None:
        """Ask the run in this session's `tab` to stop after its current step."""
        self.stops.request(_session(request), tab)

    def _until_stopped(
        self, updates: Iterator[tuple], tab: str, request: gr.Request | None, status_at: int
    ) -> Iterator[tuple]:
        """Pass `updates` on until Stop is clicked; then one last update whose status says where it stopped."""
        stopped = self.stops.watch(_session(request), tab)
        for update in updates:
            if stopped():
                yield tuple(stopped_status(v) if i == status_at else v for i, v in enumerate(update))
                updates.close()
                return
            yield update

    def generate(
        self, variant: str, mode: str, class_name: str, prompt: str, cfg_scale: float, steps: int, seed: int,
        temperature: float, request: gr.Request | None = None,
    ) -> Iterator[tuple]:
        """Stream (image, latency chart, status, PNG path, GIF path, decoding order); files come with the last step."""
        with _guarded():
            updates = self._generate(variant, (mode, class_name, prompt, cfg_scale, steps, seed, temperature))
            yield from self._until_stopped(updates, "generate", request, status_at=2)

    def compare(
        self, left: str, right: str, mode: str, class_name: str, prompt: str, cfg_scale: float, steps: int, seed: int,
        temperature: float, request: gr.Request | None = None,
    ) -> Iterator[tuple]:
        """Stream (left image, right image, latency chart of both, status, left order, right order), one model step
        per update."""
        with _guarded():
            updates = self._compare(left, right, (mode, class_name, prompt, cfg_scale, steps, seed, temperature))
            yield from self._until_stopped(updates, "compare", request, status_at=3)

    def inpaint(
        self, editor: dict, variant: str, mode: str, class_name: str, prompt: str, cfg_scale: float, steps: int,
        seed: int, temperature: float, request: gr.Request | None = None,
    ) -> Iterator[tuple]:
        """Stream (image, token overlay, latency chart, status, PNG path, decoding order) while the painted tokens
        are regenerated."""
        with _guarded():
            updates = self._inpaint(editor, variant, (mode, class_name, prompt, cfg_scale, steps, seed, temperature))
            yield from self._until_stopped(updates, "inpaint", request, status_at=3)

    def _settings(self, variants: tuple[str, ...], choice: tuple) -> Settings:
        """The UI's values checked; an unknown class names the classes whose emoji match the word."""
        chosen = settings(*choice)
        name = (chosen.class_name or "").strip().lower()
        for variant in variants if name else ():  # an empty class is the runtime's check
            classes = self.runtime.class_names(variant)
            if name not in {c.lower() for c in classes}:
                raise ValueError(unknown_class_message(chosen.class_name, classes, self.class_index))
        return chosen

    def _caption_note(self, chosen: Settings) -> str:
        return caption_note(None if chosen.prompt is None else self.runtime.match_prompt(chosen.prompt))

    def _generate(self, variant: str, choice: tuple) -> Iterator[tuple]:
        chosen = self._settings((variant,), choice)
        note = self._caption_note(chosen)
        started, latencies, frames = time.perf_counter(), [], []
        order = None
        for result in self.runtime.generate_steps(variant, chosen):
            order = order or media.DecodeOrder(result.mask.shape[0])
            order.record(result.mask, result.step)
            latencies.append(result.latency_ms)
            frames.append(result.image)
            status = status_line(result, latencies, started, variant) + note
            last = result.step == result.total
            png, gif = (media.save_png(result.image), media.progression_gif(frames)) if last else (None, None)
            if not redraw(result):
                yield result.image, gr.skip(), status, png, gif, gr.skip()
                continue
            chart = media.latency_chart({variant: latencies}, result.total)
            yield result.image, chart, status, png, gif, order.image(result.total, f"{variant} · decoding order")

    def _compare(self, left: str, right: str, choice: tuple) -> Iterator[tuple]:
        chosen = self._settings((left, right), choice)
        note = self._caption_note(chosen)
        started = time.perf_counter()
        latencies: dict[str, list[float]] = {left: [], right: []}
        images: dict[str, Image.Image | None] = {left: None, right: None}
        orders: dict[str, Image.Image | None] = {left: None, right: None}
        tracked: dict[str, media.DecodeOrder] = {}
        lines: dict[str, str] = {left: "", right: ""}
        for variant, result in self.runtime.compare_steps((left, right), chosen):
            tracked.setdefault(variant, media.DecodeOrder(result.mask.shape[0])).record(result.mask, result.step)
            latencies[variant].append(result.latency_ms)
            images[variant] = result.image
            lines[variant] = status_line(result, latencies[variant], started, variant)
            status = "\n\n".join(lines.values()) + note
            if not redraw(result):
                yield images[left], images[right], gr.skip(), status, gr.skip(), gr.skip()
                continue
            orders[variant] = tracked[variant].image(result.total, f"{variant} · decoding order")
            chart = media.latency_chart(latencies, result.total)
            yield images[left], images[right], chart, status, orders[left], orders[right]

    def _inpaint(self, editor: dict, variant: str, choice: tuple) -> Iterator[tuple]:
        chosen = self._settings((variant,), choice)
        note = self._caption_note(chosen)
        image, mask = editor_parts(editor)
        overlay, tokens = self._overlay(image, mask, variant)
        order = media.DecodeOrder(tokens.shape[0], given=~tokens)
        started, latencies = time.perf_counter(), []
        for result in self.runtime.inpaint_steps(variant, image, mask, chosen):
            order.record(result.mask, result.step)
            latencies.append(result.latency_ms)
            png = media.save_png(result.image) if result.step == result.total else None
            status = status_line(result, latencies, started, variant) + note
            if not redraw(result):
                yield result.image, overlay, gr.skip(), status, png, gr.skip()
                continue
            chart = media.latency_chart({variant: latencies}, result.total)
            picture = order.image(result.total, "Decoding order of the repainted tokens")
            yield result.image, overlay, chart, status, png, picture

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

    def use_image(self, image: Image.Image | None, variant: str) -> tuple:
        """Load an image into the editor: (editor value, token overlay, caption). Without one (nothing generated
        yet), a warning that says so and the editor unchanged."""
        if image is None:
            gr.Warning(NO_IMAGE_YET)
            return gr.skip(), gr.skip(), f"⚠️ {NO_IMAGE_YET}."
        value = editor_value(image)
        return value, *self.mask_preview(value, variant)

    @staticmethod
    def pick_seed(seed: float, randomise: bool) -> int:
        """A fresh random seed when `randomise` is on, else the given one unchanged."""
        return random.randint(0, MAX_SEED) if randomise else seed

    def variant_chosen(self, variant: str) -> tuple[dict, dict, dict]:
        """Updates for (the variant dropdown: its description, the class dropdown: this variant's classes, the CFG
        slider: this variant's default scale)."""
        return (gr.update(info=VARIANTS[variant].description), gr.update(choices=self.runtime.class_names(variant)),
                self.default_cfg(variant))

    def default_cfg(self, variant: str) -> dict:
        """The CFG slider set to the variant's default scale (its checkpoint's best, `default_cfg`)."""
        return gr.update(value=self.runtime.defaults(variant).cfg_scale)

    def find_classes(self, query: str, variant: str) -> dict:
        """The suggestion list for a search box: classes whose emoji names or tags hold the words."""
        if not query or not query.strip():
            return gr.update(choices=[], value=None, visible=False)
        found = self.class_index.search(query, self.runtime.class_names(variant), limit=6)
        info = (f"{len(found)} matching class{'es' if len(found) > 1 else ''}: pick one" if found
                else f"no class has an emoji named or tagged {query.strip()!r}")
        return gr.update(choices=[(s.label(), s.class_name) for s in found], value=None, visible=True, info=info)

    def speed_results(self) -> tuple[list[dict] | None, str]:
        """The shipped speed-against-resolution rows (model, side, ms), from the first results file that has them,
        and a Markdown note: where they were measured, or why there are none."""
        problems = []
        for name, key in SPEED_FILES:
            path = self.runtime.assets / name
            if not path.is_file():
                continue
            try:
                data = json.loads(path.read_text())
                rows = [{"model": str(r["model"]), "side": int(r["side"]), "ms": float(r["ms"])}
                        for r in data[f"{key}rows"]]
            except (ValueError, KeyError, TypeError) as err:
                problems.append(f"`{path}` could not be read ({err}).")
                continue
            if rows:
                device, command = data.get(f"{key}device", "unknown device"), data.get(f"{key}command", "?")
                note = f"Measured on **{device}** with `{command}`."
                return rows, " ".join([note, *problems])
        missing = " or ".join(f"`{self.runtime.assets / n}`" for n, _ in SPEED_FILES)
        missing = f"No benchmark results shipped: {missing} is missing. The speed benchmark writes it."
        return None, " ".join(problems) or missing

    @staticmethod
    def speed_ratios(rows: list[dict], reference: str = SPEED_REFERENCE) -> tuple[list[dict], str]:
        """Each model's speed relative to `reference` at every side it shares ((reference ms) / (model ms)), and a
        Markdown table of them; empty when the reference was not measured."""
        base = {r["side"]: r["ms"] for r in rows if r["model"] == reference}
        ratios = [r | {"speedup": round(base[r["side"]] / r["ms"], 3)} for r in rows
                  if r["model"] != reference and r["side"] in base and r["ms"] > 0]
        if not ratios:
            return [], ""
        sides = sorted({r["side"] for r in ratios})
        models = list(dict.fromkeys(r["model"] for r in ratios))
        cell = {(r["model"], r["side"]): r["speedup"] for r in ratios}
        table = f"| speed vs {reference} | " + " | ".join(f"{s}²" for s in sides) + " |\n|---|" + "---:|" * len(sides)
        for model in models:
            table += f"\n| {model} | " + " | ".join(
                f"{cell[(model, s)]:.2f}x" if (model, s) in cell else "–" for s in sides) + " |"
        return ratios, table

    def live_benchmark(self, steps: int = SamplingSettings().steps, repeats: int = 3) -> tuple[PlotData, str]:
        """Time every loaded variant, `steps` iterations with CFG; (bar chart of median ms per step, Markdown table)."""
        with _guarded():
            return self._live_benchmark(steps, repeats)

    def _live_benchmark(self, steps: int, repeats: int) -> tuple[PlotData, str]:
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
            f"| {self.runtime.describe(r['model'])} | {r['ms_per_step']:.2f} | {r['model_ms']:.1f} | {r['wall_ms']:.1f} |" for r in rows
        )
        kernels = self.runtime.kernels
        runs = f"{repeats} runs" if repeats > 1 else "1 run"
        note = f"Median of {runs}, {steps} iterations with CFG, on {kernels['device']} ({kernels['dtype']})."
        return media.bar_chart(rows, "ms_per_step", "ms per step (median)"), f"{note}\n\n{table}"
