"""Reliability without a server: header checks, echo limits, out-of-memory recovery, start-up faults, checksums."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from maskmamba import limits
from maskmamba.dev_assets import DEV_CLASSES, make_dev_assets
from maskmamba.serving import OUT_OF_MEMORY, OutOfMemory, Runtime, Settings

VARIANT = "maskmamba-serial-half"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_dev_assets(tmp_path_factory.mktemp("dev-assets"))


@pytest.fixture(scope="module")
def runtime(assets):
    return Runtime(assets, "cpu")


def png_bytes(width: int, height: int, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


# ---- issue 12, failure 1: a small upload that decodes to gigabytes ----

def test_a_huge_image_is_refused_from_its_header_without_decoding(monkeypatch):
    data = png_bytes(13_000, 13_000)  # the bomb: well under a megabyte on disk, 169 M pixels
    assert len(data) < 1024**2
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded the pixels"))
    with pytest.raises(ValueError, match=r"13000x13000 pixels; the limit is 16,777,216 pixels \(4096x4096\)"):
        limits.check_image(data, "the background")


def test_an_image_at_the_limit_passes_and_non_images_are_refused(tmp_path):
    assert limits.check_image(png_bytes(limits.MAX_SIDE, limits.MAX_SIDE)) == (limits.MAX_SIDE, limits.MAX_SIDE)
    (tmp_path / "notes.txt").write_text("not an image")
    for bad in (tmp_path / "notes.txt", b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 40):
        with pytest.raises(ValueError, match="is not an image this demo can read"):
            limits.check_image(bad, "the upload")


# ---- issue 12, failure 6: amplification through echoed values ----

def test_short_cuts_long_values_and_survives_odd_ones():
    assert limits.short("abc") == "'abc'"
    cut = limits.short("x" * 1_000_000)
    assert len(cut) < 2 * limits.ECHO_CHARS and cut.endswith("(999922 more characters)")
    assert limits.short("\ud800") == "'\\ud800'"

    class Hostile:
        def __repr__(self):
            raise RuntimeError("no")

    assert limits.short(Hostile()) == "<Hostile>"


# ---- out of memory (the GPU test forces a real one; here the error is raised by a stand-in step) ----

def test_out_of_memory_ends_only_that_request(runtime, monkeypatch):
    settings = Settings(class_name=DEV_CLASSES[1], steps=3)
    pipe, real_stream = runtime.pipelines[VARIANT], runtime.pipelines[VARIANT].stream
    closed = []

    def failing_stream(*args, **kwargs):
        try:
            yield next(real_stream(*args, **kwargs))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        finally:
            closed.append(True)

    monkeypatch.setattr(pipe, "stream", failing_stream)
    stream = runtime.generate_steps(VARIANT, settings)
    next(stream)
    with pytest.raises(OutOfMemory) as err:
        next(stream)
    assert str(err.value) == OUT_OF_MEMORY and closed == [True]
    assert not runtime._lock.locked()
    monkeypatch.undo()
    assert [r.step for r in runtime.generate_steps(VARIANT, settings)] == [1, 2, 3]
