"""The demo's named endpoints through gradio_client, on 127.0.0.1, with tiny untrained dev assets.

Every endpoint runs with a class and with a prompt; every bad input comes back as a readable error and the
next good request still works.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app import media  # noqa: E402
from maskmamba.dev_assets import DEV_CLASSES, make_dev_assets  # noqa: E402
from app.handlers import Handlers, settings  # noqa: E402
from maskmamba.serving import Runtime  # noqa: E402
from app.ui import build_demo, launch  # noqa: E402

STEPS = 3
REPO = Path(__file__).resolve().parent.parent
CLASS = ("Class", DEV_CLASSES[1], "")
PROMPT = ("Prompt", DEV_CLASSES[0], "a red apple")
DEFAULTS = (3.0, STEPS, 5, 1.0)  # cfg_scale, steps, seed, temperature


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Dev assets, an example image, a 128x128 painted layer (RGBA) and a wrong-size one, a text file."""
    assets = make_dev_assets(tmp_path_factory.mktemp("dev-assets"))
    folder = tmp_path_factory.mktemp("inputs")
    layer = np.zeros((128, 128, 4), dtype=np.uint8)
    layer[48:80, 32:96] = (255, 45, 85, 255)
    Image.fromarray(layer).save(folder / "mask.png")
    Image.fromarray(layer[:64, :64]).save(folder / "small-mask.png")
    (folder / "notes.txt").write_text("not an image")
    return {"assets": assets, "image": assets / "examples" / "sun.png", "mask": folder / "mask.png",
            "small_mask": folder / "small-mask.png", "text": folder / "notes.txt"}


@pytest.fixture(scope="module")
def runtime(files):
    runtime = Runtime(files["assets"], "cpu")
    runtime.warm_up(steps=1)
    return runtime


@pytest.fixture(scope="module")
def url(runtime):
    demo = build_demo(runtime)
    port = free_port()
    launch(demo, port=port, prevent_thread_lock=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def client(url):
    return Client(url, verbose=False, analytics_enabled=False)


def editor(image: Path | None, mask: Path | None) -> dict:
    """An ImageEditor value as gradio_client sends it."""
    layers = [handle_file(str(mask))] if mask else []
    return {"background": image and handle_file(str(image)), "layers": layers, "composite": None}


def stream(client: Client, *args, api_name: str) -> list[tuple]:
    return list(client.submit(*args, api_name=api_name))


def test_api_lists_exactly_the_three_named_endpoints(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/generate", "/compare", "/inpaint"}
    names = [p["parameter_name"] for p in endpoints["/generate"]["parameters"]]
    assert names == ["variant", "mode", "class_name", "prompt", "cfg_scale", "steps", "seed", "temperature"]


@pytest.mark.parametrize("condition", [CLASS, PROMPT], ids=["class", "prompt"])
def test_generate_streams_every_step_then_the_downloads(client, condition):
    outputs = stream(client, "maskmamba-serial-half", *condition, *DEFAULTS, api_name="/generate")
    assert len(outputs) == STEPS
    assert all(o[3] is None and o[4] is None for o in outputs[:-1])
    image, plot, status, png, gif = outputs[-1]
    assert Image.open(image).size == Image.open(png).size == (128, 128)
    assert np.array_equal(np.asarray(Image.open(image)), np.asarray(Image.open(png)))
    assert Image.open(gif).n_frames == STEPS
    assert [row[0] for row in plot["data"]] == list(range(1, STEPS + 1))
    assert f"step **{STEPS} / {STEPS}**" in status


@pytest.mark.parametrize("condition", [CLASS, PROMPT], ids=["class", "prompt"])
def test_compare_alternates_both_models_live(client, condition):
    outputs = stream(client, "uvit", "maskmamba-parallel-2", *condition, *DEFAULTS, api_name="/compare")
    assert len(outputs) == 2 * STEPS
    assert outputs[0][0] is not None and outputs[0][1] is None  # left moved first, right not yet
    left, right, plot, status = outputs[-1]
    assert Image.open(left).size == Image.open(right).size == (128, 128)
    models = [row[2] for row in plot["data"]]
    assert models.count("uvit") == models.count("maskmamba-parallel-2") == STEPS
    assert status.count(f"step **{STEPS} / {STEPS}**") == 2


@pytest.mark.parametrize("condition", [CLASS, PROMPT], ids=["class", "prompt"])
def test_inpaint_changes_only_the_painted_tokens(client, files, condition):
    outputs = stream(client, editor(files["image"], files["mask"]), "uvit", *condition, *DEFAULTS, api_name="/inpaint")
    assert len(outputs) == STEPS
    result, overlay, plot, status, png = outputs[-1]
    painted = np.asarray(Image.open(files["mask"]))[..., 3] > 0
    out, original = np.asarray(Image.open(result).convert("RGB")), np.asarray(Image.open(files["image"]).convert("RGB"))
    assert np.array_equal(out[~painted], original[~painted])
    assert Image.open(overlay).size == (256, 256) and png is not None


BAD_INPUTS = [
    ("/generate", ("uvit", "Prompt", DEV_CLASSES[0], "   ", *DEFAULTS), "prompt is empty"),
    ("/generate", ("uvit", "Class", "sky-weathr", "", *DEFAULTS), "did you mean sky-weather"),
    ("/generate", ("uvit", "Class", DEV_CLASSES[0], "", 3.0, 0, 5, 1.0), "less than minimum value 1"),
    ("/generate", ("uvit", "Class", DEV_CLASSES[0], "", 3.0, 10_000, 5, 1.0), "greater than maximum value 256"),
    ("/generate", ("uvit", "Class", DEV_CLASSES[0], "", -1.0, STEPS, 5, 1.0), "less than minimum value 0"),
    ("/compare", ("uvit", "uvit", *CLASS, *DEFAULTS), "two different variants"),
    ("/inpaint", ("image", "small_mask"), "the mask is 64x64 but the image is 128x128"),
    ("/inpaint", ("image", None), "mask is empty"),
    ("/inpaint", (None, None), "no image to inpaint"),
    ("/inpaint", ("text", "mask"), "not an image this demo can read"),
]


@pytest.mark.parametrize(("api_name", "args", "message"), BAD_INPUTS, ids=[m for _, _, m in BAD_INPUTS])
def test_bad_input_is_a_readable_error_and_the_app_keeps_serving(client, files, api_name, args, message):
    if api_name == "/inpaint":
        image, mask = (files.get(k) if k else None for k in args)
        args = (editor(image, mask), "uvit", *CLASS, *DEFAULTS)
    with pytest.raises(AppError, match=message) as caught:
        client.predict(*args, api_name=api_name)
    assert "Traceback" not in str(caught.value)
    image, *_ = client.predict("uvit", *CLASS, 3.0, 1, 0, 1.0, api_name="/generate")
    assert Image.open(image).size == (128, 128)


def test_nan_cfg_sent_as_raw_json_is_a_readable_error(url):
    """gradio_client cannot encode NaN; a hand-written request can, and gets a message back, not a trace."""
    body = json.dumps({"data": ["uvit", *CLASS, float("nan"), STEPS, 0, 1.0]})
    with httpx.Client(base_url=url, timeout=60) as http:
        event = http.post("gradio_api/call/generate", content=body, headers={"content-type": "application/json"})
        reply = http.get(f"gradio_api/call/generate/{event.json()['event_id']}").text
    assert "event: error" in reply and "CFG scale must be a finite number" in reply


def test_settings_name_the_bad_value():
    with pytest.raises(ValueError, match="iterations must be a whole number"):
        settings("Class", "x", "", 3.0, 2.5, 0, 1.0)
    with pytest.raises(ValueError, match="mode must be one of Class, Prompt"):
        settings("Both", "x", "", 3.0, 2, 0, 1.0)
    chosen = settings("Prompt", "ignored", " a cat ", 2.0, 4.0, 9.0, 1.0)
    assert chosen.class_name is None and chosen.prompt == " a cat " and chosen.steps == 4 and chosen.seed == 9


def test_speed_tab_reads_the_results_file_or_says_it_is_missing(runtime):
    handlers = Handlers(runtime)
    frame, note = handlers.speed_results()
    assert frame is None and "speed.json` is missing" in note
    path = runtime.assets / "results" / "speed.json"
    path.parent.mkdir()
    rows = [{"model": m, "side": side, "tokens": (side // 8) ** 2, "ms": side / 64}
            for m in ("uvit", "mmamba") for side in (128, 256)]
    path.write_text(json.dumps({"device": "NVIDIA H100", "command": "python -m bench.speed", "rows": rows}))
    frame, note = handlers.speed_results()
    assert frame["side"].tolist() == [128, 256, 128, 256] and "NVIDIA H100" in note
    path.write_text("{not json")
    frame, note = handlers.speed_results()
    assert frame is None and "could not be read" in note
    path.unlink()


def test_live_benchmark_reports_every_variant(runtime):
    frame, table = Handlers(runtime).live_benchmark(steps=2, repeats=1)
    assert frame["model"].tolist() == runtime.variants and (frame["ms_per_step"] > 0).all()
    assert "Median of 1 run, 2 iterations with CFG, on cpu" in table and table.count("| maskmamba-") == 2


def test_media_helpers():
    frames = [Image.new("RGB", (128, 128), (i * 40, 0, 0)) for i in range(4)]
    gif = Image.open(media.progression_gif(frames))
    assert gif.n_frames == 4 and gif.size == (256, 256)
    tokens = np.zeros((16, 16), dtype=bool)
    tokens[0, 0] = True
    overlay = np.asarray(media.token_overlay(Image.new("RGB", (128, 128), "white"), tokens)).astype(int)
    assert overlay[8, 8, 1] < 200 and tuple(overlay[100, 100]) == (255, 255, 255)  # tinted cell, untouched cell
    frame = media.latency_frame({"a": [1.0, 2.0], "b": [3.0]})
    assert frame.values.tolist() == [[1, 1.0, "a"], [2, 2.0, "a"], [1, 3.0, "b"]]
    assert media.latency_frame({"a": [1.0], "b": []})["ms"].isna().tolist() == [False, True]  # b named, no value
    assert media._mtime(media.DOWNLOADS / "removed-by-another-request.png") == 0.0  # no race in the clean-up


def test_app_without_checkpoints_exits_naming_the_folder(tmp_path):
    done = subprocess.run([sys.executable, "app.py", "--assets", str(tmp_path), "--device", "cpu"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"no checkpoints in {tmp_path}" in done.stderr and "Traceback" not in done.stderr
