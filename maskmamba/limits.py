"""The serving limits (one home): image size checked from the header, request and upload bytes, per-client
queueing, and how much of a person's input may be echoed or logged."""
from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

MAX_SIDE = 4096
MAX_PIXELS = MAX_SIDE * MAX_SIDE  # ~67 MB as RGBA; four requests at once stay far below the server's memory
MAX_UPLOAD_BYTES = 10 * 1024**2  # one uploaded file
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 1024**2  # one multipart request: an upload plus its form fields
MAX_JSON_BYTES = 256 * 1024  # any other request body: settings, file references, a prompt
MAX_LAYERS = 4  # image-editor layers a blob upload may name (the page uses one)
MAX_EDITOR_BLOBS = 64  # image-editor uploads kept server-side awaiting their request (oldest dropped) ...
MAX_EDITOR_BLOB_BYTES = 64 * 1024**2  # ... and their bytes in all
PER_SESSION_JOBS = 4  # queued or running jobs of one browser session: a run in each tab plus a mask preview
PER_ADDRESS_JOBS = 32  # queued or running jobs of one client address (sessions are free to invent); the
# rest of the queue stays open to others. Behind a proxy that hides addresses this counts everyone together.
QUEUE_SIZE = 48  # waiting jobs in all
ECHO_CHARS = 80  # how much of a value an error message or a log line repeats
NOT_AN_IMAGE = "{what} is not an image this demo can read: use a PNG, JPEG or WebP file"


def short(value: object, limit: int = ECHO_CHARS) -> str:
    """repr(value) cut to `limit` characters (a marker says how much was cut); safe for any value."""
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ is not the caller's problem
        text = f"<{type(value).__name__}>"
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def check_image(source: str | Path | bytes | BinaryIO, what: str = "the image") -> tuple[int, int]:
    """(width, height) of an image file read from its header only; ValueError with a readable message when it is
    not an image or has more than MAX_PIXELS pixels. Nothing is decoded."""
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    limit = f"the limit is {MAX_PIXELS:,} pixels ({MAX_SIDE}x{MAX_SIDE}): send a smaller image"
    try:
        with Image.open(source) as image:  # lazy: reads the header, not the pixels
            width, height = image.size
    except Image.DecompressionBombError:  # Pillow's own limit (the app sets it to MAX_PIXELS) stopped it first
        raise ValueError(f"{what} has too many pixels; {limit}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ValueError(NOT_AN_IMAGE.format(what=what)) from None
    if width * height > MAX_PIXELS:
        raise ValueError(f"{what} is {width}x{height} pixels; {limit}")
    return width, height
