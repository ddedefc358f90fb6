"""gradio's image cache written once and atomically (app.guards.atomic_cache_writes)."""
from __future__ import annotations

import os

import pytest
from PIL import Image

cache = pytest.importorskip("gradio.processing_utils")

from app.guards import atomic_cache_writes  # noqa: E402


@pytest.fixture
def patched(monkeypatch):
    monkeypatch.setattr(cache, "save_pil_to_cache", cache.save_pil_to_cache)  # restored after the test
    atomic_cache_writes()
    atomic_cache_writes()  # idempotent
    return cache.save_pil_to_cache


def test_an_image_cached_again_is_not_rewritten_only_touched(patched, tmp_path):
    image = Image.new("RGB", (8, 8), "red")
    first = patched(image, str(tmp_path), format="png")
    os.utime(first, (0, 0))  # make it look old to the janitor
    inode = os.stat(first).st_ino
    again = patched(image, str(tmp_path), format="png")
    assert again == first and os.stat(again).st_ino == inode  # the same file, never truncated and rewritten
    assert os.stat(again).st_mtime > 0  # its age restarts, so the janitor keeps what was just served
    assert Image.open(again).getpixel((0, 0)) == (255, 0, 0)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [os.path.basename(first)]  # no part files left


def test_a_cached_image_swept_away_is_written_again(patched, tmp_path):
    image = Image.new("RGB", (8, 8), "blue")
    first = patched(image, str(tmp_path), format="png")
    os.unlink(first)
    os.rmdir(os.path.dirname(first))  # as the janitor leaves it
    assert patched(image, str(tmp_path), format="png") == first and Image.open(first).getpixel((0, 0)) == (0, 0, 255)
    assert cache.save_img_array_to_cache.__module__ == "gradio.processing_utils"  # it calls the patched function
