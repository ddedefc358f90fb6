"""Reliability without a server: header checks, echo limits, out-of-memory recovery, start-up faults, checksums."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from maskmamba import checksums, limits
from maskmamba.checksums import SUMS_FILE
from maskmamba.dev_assets import DEV_CLASSES, DEV_VARIANTS
from maskmamba.serving import OUT_OF_MEMORY, CheckpointError, OutOfMemory, Runtime, Settings

VARIANT = "maskmamba-serial-half"


def png_bytes(width: int, height: int, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


# ---- issue 12, failure 1: a small upload that decodes to gigabytes ----

def test_a_huge_image_is_refused_from_its_header_without_decoding(monkeypatch):
    data = png_bytes(13_000, 13_000)  # the bomb: well under a megabyte on disk, 169 M pixels
    assert len(data) < 1024**2
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded the pixels"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)  # Pillow's default
    with pytest.raises(ValueError, match=r"13000x13000 pixels; the limit is 16,777,216 pixels \(4096x4096\)"):
        limits.check_image(data, "the background")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limits.MAX_PIXELS)  # as the app sets it: Pillow refuses first
    with pytest.raises(ValueError, match=r"has too many pixels; the limit is 16,777,216 pixels"):
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


# ---- issue 12, failure 4: start-up faults name the file; one broken variant leaves the others serving ----

def _copy(assets, tmp_path):
    import shutil

    return Path(shutil.copytree(assets, tmp_path / "assets"))


def _disabled(folder) -> dict[str, str]:
    runtime = Runtime(folder, "cpu")
    assert runtime.variants  # the others still serve
    return runtime.disabled


def test_truncated_weights_disable_that_variant_and_name_the_file(assets, tmp_path):
    folder = _copy(assets, tmp_path)
    weights = folder / "uvit" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    why = _disabled(folder)["uvit"]
    assert str(weights) in why and "damaged or was replaced" in why
    (folder / "uvit" / SUMS_FILE).unlink()  # without a recorded sum, safetensors itself names the damage
    why = _disabled(folder)["uvit"]
    assert str(weights) in why and "cannot be read as safetensors" in why and "truncated or damaged" in why


def test_weights_corrupted_in_place_fail_their_checksum(assets, tmp_path):
    folder = _copy(assets, tmp_path)
    weights = folder / "maskmamba-parallel-2" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF  # same size, one byte of a tensor changed: it would load and serve other images
    weights.write_bytes(bytes(data))
    why = _disabled(folder)["maskmamba-parallel-2"]
    assert str(weights) in why and "SHA-256" in why
    assert checksums.main(["check", str(weights.parent)]) == 1


def test_malformed_or_missing_config_is_named(assets, tmp_path):
    folder = _copy(assets, tmp_path)
    (folder / "uvit" / "config.json").write_text('{"variant": "uvit", ')
    (folder / "maskmamba-parallel-2" / "config.json").unlink()
    runtime = Runtime(folder, "cpu")
    assert runtime.variants == ["maskmamba-serial-half"]
    assert "uvit/config.json is not valid JSON (line 1" in runtime.disabled["uvit"]
    assert "maskmamba-parallel-2/config.json is missing" in runtime.disabled["maskmamba-parallel-2"]


def test_a_config_that_describes_no_generator_is_named(assets, tmp_path):
    folder = _copy(assets, tmp_path)
    (folder / "uvit" / "config.json").write_text('{"variant": "uvit", "width": "wide"}')
    assert "uvit/config.json" in _disabled(folder)["uvit"]


@pytest.mark.parametrize("fault", ["missing folder", "missing config", "malformed config", "missing weights"])
def test_a_broken_tokenizer_fails_start_up_naming_the_file(assets, tmp_path, fault):
    import shutil

    folder = _copy(assets, tmp_path)
    tokenizer = folder / "tokenizer"
    if fault == "missing folder":
        shutil.rmtree(tokenizer)
    elif fault == "missing config":
        (tokenizer / "config.json").unlink()
    elif fault == "malformed config":
        (tokenizer / "config.json").write_text("{")
    else:
        (tokenizer / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="tokenizer"):
        Runtime(folder, "cpu")


def test_every_checkpoint_broken_fails_start_up_listing_them(assets, tmp_path):
    folder = _copy(assets, tmp_path)
    for variant in DEV_VARIANTS:
        (folder / variant / "config.json").write_text("[")
    with pytest.raises(CheckpointError, match="no checkpoint could be loaded.*not valid JSON"):
        Runtime(folder, "cpu")


def test_export_records_sums_and_the_command_rewrites_them(tmp_path, capsys):
    from maskmamba import build_model
    from maskmamba.models import load_weights, save_weights

    model = build_model("uvit", "tiny", num_classes=3)
    save_weights(model, tmp_path, "int8")
    save_weights(model, tmp_path, "fp32")
    sums = checksums.read_sums(tmp_path)
    assert set(sums) == {"model.safetensors", "model.int8.safetensors"}
    assert sums["model.safetensors"] == checksums.sha256(tmp_path / "model.safetensors")
    load_weights(build_model("uvit", "tiny", num_classes=3), tmp_path, "int8")
    (tmp_path / SUMS_FILE).unlink()
    assert checksums.main(["check", str(tmp_path)]) == 1 and "no SHA256SUMS" in capsys.readouterr().err
    assert checksums.main(["write", str(tmp_path)]) == 0
    assert checksums.read_sums(tmp_path) == sums


def test_shipped_checkpoints_carry_matching_sums():
    from maskmamba.pipeline import ASSETS

    folders = [p.parent for p in ASSETS.glob("*/*.safetensors")]
    assert folders
    for folder in set(folders):
        assert checksums.main(["check", str(folder)]) == 0, folder


# ---- safe defaults ----

def _entry_point():
    import importlib.util

    spec = importlib.util.spec_from_file_location("app_entry", Path(__file__).resolve().parent.parent / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_binds_to_loopback_without_a_share_link_by_default(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    args = _entry_point().parse_args([])
    assert args.host == "127.0.0.1" and args.share is False
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")  # what a hosted Space sets
    assert _entry_point().parse_args([]).host == "0.0.0.0"
    assert _entry_point().parse_args(["--host", "10.0.0.2"]).host == "10.0.0.2"
