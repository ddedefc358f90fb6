"""Input components that check what a client sends before gradio or the handlers touch it.

Each refuses a wrong type, an odd number, over-long or invalid text and an oversized image with a gr.Error that
names the field and repeats at most a short prefix of the value (never gradio's `{"error": null}`, never a
megabyte echoed back). They draw with the front end of the gradio component they extend (`is_template`).
"""
from __future__ import annotations

import math
from typing import Any

import gradio as gr
from fastapi import HTTPException
from gradio.components.base import server
from PIL import Image

from maskmamba import limits

MAX_CHOICE_CHARS = 100  # a variant, mode or class name


def refuse(message: str) -> gr.Error:
    """A readable error for the person who sent the request; not logged with a traceback."""
    return gr.Error(message, print_exception=False)


def check_number(label: str, payload: Any, whole: bool) -> float | int | None:
    """A JSON number that is finite (and whole where `whole`); None passes (the field was left empty)."""
    if payload is None:
        return None
    if isinstance(payload, bool) or not isinstance(payload, (int, float)):
        raise refuse(f"{label} must be a number, got {limits.short(payload)}")
    if not math.isfinite(payload):
        raise refuse(f"{label} must be a finite number, got {payload!r}")
    if whole and payload != int(payload):
        raise refuse(f"{label} must be a whole number, got {payload!r}")
    return int(payload) if whole else payload


def check_text(label: str, payload: Any, max_chars: int) -> str | None:
    """A string of at most `max_chars` characters that is valid Unicode text (no lone surrogates), or None."""
    if payload is None:
        return None
    if not isinstance(payload, str):
        raise refuse(f"{label} must be text, got {limits.short(payload)}")
    if len(payload) > max_chars:
        raise refuse(f"{label} is {len(payload):,} characters long; the limit is {max_chars}")
    try:
        payload.encode("utf-8")
    except UnicodeEncodeError:
        raise refuse(f"{label} holds a character that is not valid text (a lone surrogate): "
                     f"{limits.short(payload)}") from None
    return payload


class NumberInput(gr.Number):
    """gr.Number that refuses non-numbers, NaN and infinities, and non-whole values where precision is 0."""

    is_template = True

    def preprocess(self, payload: Any) -> float | int | None:
        value = check_number(self.label or "the number", payload, whole=self.precision == 0)
        return value if value is None else super().preprocess(value)


class SliderInput(gr.Slider):
    """gr.Slider with NumberInput's checks."""

    is_template = True

    def preprocess(self, payload: Any) -> float | int:
        value = check_number(self.label or "the slider", payload, whole=self.precision == 0)
        if value is None:
            raise refuse(f"{self.label} needs a value")
        return super().preprocess(value)


class TextInput(gr.Textbox):
    """gr.Textbox that enforces `max_length` on the server and refuses non-text and lone surrogates."""

    is_template = True

    def preprocess(self, payload: Any) -> str | None:
        return super().preprocess(check_text(self.label or "the text", payload, self.max_length or MAX_CHOICE_CHARS))


def _check_choice(component: gr.Dropdown | gr.Radio, payload: Any, custom: bool) -> Any:
    label = component.label or "the choice"
    value = check_text(label, payload, MAX_CHOICE_CHARS)
    names = [value for _, value in component.choices]
    if not custom and value not in names:
        raise refuse(f"{label} must be one of: {', '.join(map(str, names))}; got {limits.short(payload)}")
    return value


class DropdownInput(gr.Dropdown):
    """gr.Dropdown (single choice) that refuses non-text and unknown choices with a short message."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return super().preprocess(_check_choice(self, payload, self.allow_custom_value))


class RadioInput(gr.Radio):
    """gr.Radio that refuses non-text and unknown choices with a short message."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return super().preprocess(_check_choice(self, payload, custom=False))


class ImageEditorInput(gr.ImageEditor):
    """gr.ImageEditor that reads every image's size from its header before decoding it, refuses more than
    MAX_LAYERS layers, and bounds what its blob route keeps (see `accept_blobs`)."""

    is_template = True

    def preprocess(self, payload):
        if payload is not None and len(payload.layers) > limits.MAX_LAYERS:
            raise refuse(f"at most {limits.MAX_LAYERS} mask layers, got {len(payload.layers)}")
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            raise refuse(limits.NOT_AN_IMAGE.format(what="the upload")) from None

    def convert_and_format_image(self, file, flatten_on_white: bool = False):
        if file is not None:
            try:
                limits.check_image(file if isinstance(file, (bytes, bytearray)) else file.path, "the upload")
            except ValueError as err:
                raise refuse(str(err)) from None
        return super().convert_and_format_image(file, flatten_on_white)

    @server
    def accept_blobs(self, data):
        """The page's editor uploads its images here before the request that uses them. Upstream keeps every
        upload until that request comes, and pads its layer list up to any `index` a client names (a 300-byte
        request could allocate hundreds of MB): here the index, the image's header and the number of uploads
        kept are checked first, and the oldest kept uploads are dropped beyond MAX_EDITOR_BLOBS values or
        MAX_EDITOR_BLOB_BYTES in all (besides the value being uploaded to, which holds at most MAX_LAYERS + 2)."""
        fields, files = getattr(data, "data", None), getattr(data, "files", None)
        if not isinstance(fields, dict) or not files or fields.get("type") not in ("background", "layer", "composite"):
            raise HTTPException(400, "expected an image upload of type background, layer or composite")
        index = fields.get("index")
        if fields["type"] == "layer" and index not in (None, "", "null"):
            if not str(index).isdigit() or int(index) >= limits.MAX_LAYERS:
                raise HTTPException(400, f"layer index must be 0 to {limits.MAX_LAYERS - 1}, got {limits.short(index)}")
        try:
            limits.check_image(files[0][1], "the upload")
        except ValueError as err:
            raise HTTPException(413 if "limit" in str(err) else 400, str(err)) from None
        key = fields.get("id")
        if not isinstance(key, str) or not 0 < len(key) <= MAX_CHOICE_CHARS:
            raise HTTPException(400, "expected the editor's upload id")
        others = [k for k in self.blob_storage if k != key]
        while others and (len(others) >= limits.MAX_EDITOR_BLOBS or
                          sum(map(self._blob_bytes, others)) + len(files[0][1]) > limits.MAX_EDITOR_BLOB_BYTES):
            self.blob_storage.pop(others.pop(0), None)  # the oldest upload of another editor value
        return super().accept_blobs(data)

    def _blob_bytes(self, key: str) -> int:
        kept = self.blob_storage.get(key)  # another request may have taken it meanwhile
        return 0 if kept is None else sum(len(b or b"") for b in (kept.background, kept.composite, *kept.layers))


class ImageInput(gr.Image):
    """gr.Image that reads an input image's size from its header before decoding it."""

    is_template = True

    def preprocess(self, payload):
        path = getattr(payload, "path", None)
        if path is not None:
            try:
                limits.check_image(path, "the image")
            except ValueError as err:
                raise refuse(str(err)) from None
        return super().preprocess(payload)
