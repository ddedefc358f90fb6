"""Pictures and tables the UI shows: progression GIF, PNG downloads, latency chart data, token overlays."""
from __future__ import annotations

import math
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

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


def latency_frame(series: dict[str, list[float]]) -> pd.DataFrame:
    """Per-step latencies of one or more models -> long table (step, ms, model) for gr.LinePlot.

    A model with no steps yet gets one empty (NaN) row: the page fixes a plot's colour legend at its first
    update, so every model must be named from the start.
    """
    rows = [(i + 1, ms, model) for model, values in series.items() for i, ms in enumerate(values or [math.nan])]
    return pd.DataFrame(rows, columns=["step", "ms", "model"])


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
