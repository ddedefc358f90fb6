"""Pictures and charts the UI shows: progression GIF, PNG downloads, charts, token overlays, decoding order."""
from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

import numpy as np
from gradio.components.plot import PlotData
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

DOWNLOADS = Path(tempfile.gettempdir()) / "maskmamba-downloads"
KEEP_FILES = 200
OVERLAY_SCALE = 2
MASK_TINT = np.array([230, 40, 80], dtype=np.float32)


def _mtime(path: Path) -> float:
    """Modification time, or 0 for a file that another request removed meanwhile."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _new_path(suffix: str) -> Path:
    """A fresh file name in the downloads folder, dropping the oldest files beyond KEEP_FILES."""
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    old = sorted(DOWNLOADS.iterdir(), key=_mtime)
    for path in old[: max(0, len(old) - KEEP_FILES + 1)]:
        path.unlink(missing_ok=True)
    return DOWNLOADS / f"maskmamba-{uuid.uuid4().hex[:12]}{suffix}"


def save_png(image: Image.Image) -> Path:
    """Write the image as a PNG download; returns its path."""
    path = _new_path(".png")
    image.save(path)
    return path


def progression_gif(frames: list[Image.Image], frame_ms: int = 150, hold_ms: int = 1500, scale: int = 2) -> Path:
    """Animated GIF of the decoding, one frame per step, enlarged `scale` times, holding on the last frame."""
    if not frames:
        raise ValueError("no frames to animate")
    big = [f.convert("RGB").resize((f.width * scale, f.height * scale), Image.NEAREST) for f in frames]
    path = _new_path(".gif")
    durations = [frame_ms] * (len(big) - 1) + [hold_ms]
    big[0].save(path, save_all=True, append_images=big[1:], duration=durations, loop=0, optimize=True)
    return path


def pixel_mask(layers: list[Image.Image], size: tuple[int, int]) -> np.ndarray:
    """Union of painted layers -> (H, W) bool.

    A layer with some transparency (the editor's brush strokes) is painted where alpha > 0; an opaque one (a
    mask file in mode L or RGB, which the editor hands over as RGBA with alpha 255 everywhere) is painted at
    every non-black pixel."""
    mask = np.zeros((size[1], size[0]), dtype=bool)
    for layer in layers:
        if layer.size != size:
            raise ValueError(f"the mask is {layer.width}x{layer.height} but the image is {size[0]}x{size[1]}")
        alpha = np.asarray(layer.getchannel("A")) if "A" in layer.getbands() else None
        if alpha is not None and (alpha < 255).any():
            mask |= alpha > 0
        else:
            mask |= np.asarray(layer.convert("RGB")).max(axis=-1) > 0
    return mask


def token_overlay(image: Image.Image, token_mask: np.ndarray, scale: int = OVERLAY_SCALE) -> Image.Image:
    """The image with covered token cells tinted and the token grid drawn, enlarged `scale` times."""
    side = image.width * scale
    pixels = np.asarray(image.convert("RGB").resize((side, side), Image.NEAREST)).astype(np.float32)
    cell = side // token_mask.shape[0]
    covered = np.kron(token_mask, np.ones((cell, cell), dtype=bool))[..., None]
    pixels = np.where(covered, 0.45 * pixels + 0.55 * MASK_TINT, pixels)
    grid = np.zeros((side, side), dtype=bool)
    grid[::cell, :] = grid[:, ::cell] = True
    pixels[grid] = 0.7 * pixels[grid] + 0.3 * 255
    return Image.fromarray(pixels.round().astype(np.uint8))


# ---- charts: Vega-Lite specs that gr.Plot draws in the page (legends below the plot, never clipped) ----

VEGA_LITE = "https://vega.github.io/schema/vega-lite/v5.json"
CHART_HEIGHT = 200
FEW_STEPS = 16  # up to this many steps, every step gets its own tick


def _chart(spec: dict) -> PlotData:
    """A Vega-Lite spec as a gr.Plot value: as wide as its box, legend and labels inside the drawing."""
    spec = {"$schema": VEGA_LITE, "width": "container", "height": CHART_HEIGHT,
            "autosize": {"type": "fit-x", "contains": "padding"},
            "padding": {"left": 4, "right": 16, "top": 36, "bottom": 4},  # top: room for the block's label
            "usermeta": {"embedOptions": {"renderer": "svg"}},  # sharp text, and legends a test can read
            "config": {"legend": {"orient": "bottom", "labelLimit": 0, "title": None, "symbolType": "stroke"},
                       "axis": {"labelFontSize": 11, "titleFontSize": 12}}} | spec
    return PlotData(type="altair", plot=json.dumps(spec, allow_nan=False))


def _color(models: list[str]) -> dict:
    return {"field": "model", "type": "nominal", "scale": {"domain": models}, "title": None}


def latency_chart(series: dict[str, list[float]], total: int) -> PlotData:
    """Per-step model latency of one or more models, the step axis fixed to 1..total with whole-number ticks.

    Every model is in the legend from the first update, before it has steps."""
    rows = [{"step": i + 1, "ms": round(ms, 3), "model": model}
            for model, values in series.items() for i, ms in enumerate(values)]
    ticks = {"values": list(range(1, total + 1))} if total <= FEW_STEPS else {"tickMinStep": 1}
    return _chart({
        "data": {"values": rows},
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {"field": "step", "type": "quantitative", "title": "step", "axis": {"format": "d", **ticks},
                  "scale": {"domain": [1, max(total, 2)]}},
            "y": {"field": "ms", "type": "quantitative", "title": "ms per step"},
            "color": _color(list(series)),
            "tooltip": [{"field": "model"}, {"field": "step"}, {"field": "ms", "format": ".1f"}],
        },
    })


def speed_chart(rows: list[dict]) -> PlotData:
    """ms per step against image side (rows of model, side, ms), log-log, one line per model."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    sides = sorted({r["side"] for r in rows})
    return _chart({
        "data": {"values": rows},
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {"field": "side", "type": "quantitative", "title": "image side (pixels)",
                  "scale": {"type": "log", "base": 2}, "axis": {"values": sides, "format": "d"}},
            "y": {"field": "ms", "type": "quantitative", "title": "ms per step (log)", "scale": {"type": "log"}},
            "color": _color(models),
            "tooltip": [{"field": "model"}, {"field": "side"}, {"field": "ms", "format": ".2f"}],
        },
    })


def ratio_chart(rows: list[dict], reference: str) -> PlotData:
    """Speed relative to `reference` (its ms / the model's ms; above 1 is faster) against image side, log x."""
    sides = sorted({r["side"] for r in rows})
    rule = {"mark": {"type": "rule", "strokeDash": [4, 4], "color": "#888"}, "encoding": {"y": {"datum": 1}}}
    line = {
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {"field": "side", "type": "quantitative", "title": "image side (pixels)",
                  "scale": {"type": "log", "base": 2}, "axis": {"values": sides, "format": "d"}},
            "y": {"field": "speedup", "type": "quantitative", "title": f"speed vs {reference} (x)"},
            "color": _color(list(dict.fromkeys(r["model"] for r in rows))),
            "tooltip": [{"field": "model"}, {"field": "side"}, {"field": "speedup", "format": ".2f"}],
        },
    }
    return _chart({"data": {"values": rows}, "layer": [rule, line]})


def bar_chart(rows: list[dict], field: str, title: str) -> PlotData:
    """One horizontal bar per model (rows of model and `field`), names in full beside the bars."""
    return _chart({
        "data": {"values": rows},
        "height": {"step": 28},
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "y": {"field": "model", "type": "nominal", "sort": None, "title": None, "axis": {"labelLimit": 0}},
            "x": {"field": field, "type": "quantitative", "title": title},
            "color": {"field": "model", "type": "nominal", "legend": None},
        },
    })


# ---- decoding order: the step at which each token was decided ----

GIVEN = -1  # a token held fixed (inpainting), never decoded
ORDER_CELL = 18
ORDER_TOP = 24  # the title band above the grid
ORDER_TITLE = "Decoding order: the step of each token"
ORDER_COLORMAP = "viridis"
UNDECIDED = (215, 215, 215)
GIVEN_FILL = (255, 255, 255)


class DecodeOrder:
    """Tracks, per token, the step at which it was decided: 0 while masked, GIVEN for tokens held fixed."""

    def __init__(self, grid: int, given: np.ndarray | None = None):
        self.step = np.zeros((grid, grid), dtype=np.int32)
        if given is not None:
            self.step[given] = GIVEN

    def record(self, still_masked: np.ndarray, step: int) -> None:
        """Mark the tokens that are no longer masked after `step` (and were not decided before)."""
        self.step[(self.step == 0) & ~still_masked] = step

    def image(self, total: int, title: str = ORDER_TITLE) -> Image.Image:
        """The order as a picture (see `order_image`)."""
        return order_image(self.step, total, title)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def order_image(order: np.ndarray, total: int, title: str = ORDER_TITLE, cell: int = ORDER_CELL) -> Image.Image:
    """A (grid, grid) decoding order as a heatmap under `title`: each cell coloured by the step that decided it
    (1 = first) with a colour bar; still-masked cells grey, tokens held fixed white; with few steps every cell
    shows its number. Cell (r, c) starts at (c * cell, ORDER_TOP + r * cell)."""
    if total < 1:
        raise ValueError(f"total steps must be at least 1, got {total}")
    grid = order.shape[0]
    side, bar_x, legend_h = grid * cell, grid * cell + 14, 22
    canvas = Image.new("RGB", (bar_x + 70, ORDER_TOP + side + legend_h), "white")
    draw = ImageDraw.Draw(canvas)
    palette = colormaps[ORDER_COLORMAP]
    small, label = _font(10), _font(12)
    draw.text((0, ORDER_TOP / 2), title, fill="black", font=_font(13), anchor="lm")

    def color(step: int) -> tuple[int, int, int]:
        return tuple(int(255 * c) for c in palette((step - 1) / max(total - 1, 1))[:3])

    for (row, col), step in np.ndenumerate(order):
        box = (col * cell, ORDER_TOP + row * cell, (col + 1) * cell - 1, ORDER_TOP + (row + 1) * cell - 1)
        fill = UNDECIDED if step == 0 else GIVEN_FILL if step == GIVEN else color(int(step))
        draw.rectangle(box, fill=fill, outline=(235, 235, 235) if step == GIVEN else None)
        if step > 0 and total <= FEW_STEPS:
            ink = "black" if sum(fill[:2]) > 300 else "white"
            centre = ((box[0] + box[2]) / 2 + 0.5, (box[1] + box[3]) / 2 + 0.5)
            draw.text(centre, str(step), fill=ink, font=small, anchor="mm")
    for y in range(side):  # colour bar: step 1 at the top, the last step at the bottom
        shade = 1 + round((total - 1) * y / max(side - 1, 1))
        draw.line((bar_x, ORDER_TOP + y, bar_x + 12, ORDER_TOP + y), fill=color(shade))
    draw.text((bar_x + 16, ORDER_TOP), "step 1", fill="black", font=label, anchor="lt")
    draw.text((bar_x + 16, ORDER_TOP + side), f"step {total}", fill="black", font=label, anchor="lb")
    y = ORDER_TOP + side + legend_h / 2
    draw.rectangle((0, y - 6, 11, y + 5), fill=UNDECIDED)
    draw.text((16, y), "still masked", fill="black", font=label, anchor="lm")
    if (order == GIVEN).any():
        draw.rectangle((110, y - 6, 121, y + 5), fill=GIVEN_FILL, outline=(160, 160, 160))
        draw.text((126, y), "kept (not repainted)", fill="black", font=label, anchor="lm")
    return canvas
