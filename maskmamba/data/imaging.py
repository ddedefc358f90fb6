"""Image helpers: flatten on white, pad to a centred square, resize, and the WebP codec of the shards."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

IMAGE_SIZE = 128
WEBP_QUALITY = 90
WEBP_METHOD = 6
WHITE = (255, 255, 255)


def flatten_on_white(image: Image.Image) -> Image.Image:
    """Composite an image with any alpha onto plain white; returns RGB."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, WHITE + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def pad_to_square(image: Image.Image, fill: tuple[int, int, int] = WHITE) -> Image.Image:
    """Centre an RGB image on a square canvas of its longer side; never stretches."""
    width, height = image.size
    side = max(width, height)
    if width == height:
        return image
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def to_square_rgb(image: Image.Image, size: int = IMAGE_SIZE) -> Image.Image:
    """Flatten on white, pad to a centred square and resize (LANCZOS) to size x size."""
    square = pad_to_square(flatten_on_white(image))
    if square.size != (size, size):
        square = square.resize((size, size), Image.Resampling.LANCZOS)
    return square


def has_ink(image: Image.Image, min_fraction: float = 0.01) -> bool:
    """True when at least min_fraction of the pixels are not fully transparent."""
    alpha = np.asarray(image.convert("RGBA").getchannel("A"))
    return bool((alpha > 0).mean() >= min_fraction)


def encode_webp(image: Image.Image) -> bytes:
    """Lossy WebP bytes (quality 90, method 6) of an RGB image."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
    return buffer.getvalue()


def decode_webp(data: bytes | np.ndarray) -> np.ndarray:
    """Decode WebP bytes to a (H, W, 3) uint8 array."""
    raw = data.tobytes() if isinstance(data, np.ndarray) else data
    with Image.open(io.BytesIO(raw)) as image:
        return np.asarray(image.convert("RGB"))
