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

import gradio as gr
import httpx
import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app import media  # noqa: E402
from maskmamba.dev_assets import DEV_CLASSES, make_dev_assets  # noqa: E402
from app.handlers import Handlers, settings, stopped_status  # noqa: E402
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


RECT = (slice(40, 88), slice(32, 96))  # a 48x64 rectangle on whole 8-pixel token cells: 6x8 tokens


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Dev assets, an example image, painted layers (RGBA strokes; white-on-black L and RGB files), a wrong-size
    one, a text file."""
    assets = make_dev_assets(tmp_path_factory.mktemp("dev-assets"))
    folder = tmp_path_factory.mktemp("inputs")
    layer = np.zeros((128, 128, 4), dtype=np.uint8)
    layer[48:80, 32:96] = (255, 45, 85, 255)
    Image.fromarray(layer).save(folder / "mask.png")
    Image.fromarray(layer[:64, :64]).save(folder / "small-mask.png")
    white = np.zeros((128, 128), dtype=np.uint8)
    white[RECT] = 255
    Image.fromarray(white, "L").save(folder / "mask-l.png")
    Image.fromarray(white, "L").convert("RGB").save(folder / "mask-rgb.png")
    (folder / "notes.txt").write_text("not an image")
    return {"assets": assets, "image": assets / "examples" / "sun.png", "mask": folder / "mask.png",
            "mask_l": folder / "mask-l.png", "mask_rgb": folder / "mask-rgb.png",
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


def chart_rows(plot: dict) -> list[dict]:
    """The data rows of a chart output (a Vega-Lite spec)."""
    assert plot["type"] == "altair"
    return json.loads(plot["plot"])["data"]["values"]


def order_steps(path: str, total: int) -> set[int]:
    """Which steps a decoding-order picture shows: the viridis colours of its 16x16 cells, matched to steps."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    cell = media.ORDER_CELL
    palette = {step: np.array(media.order_image(np.full((16, 16), step), total).getpixel((1, media.ORDER_TOP + 1)))
               for step in range(1, total + 1)}
    seen = set()
    for row in range(16):
        for col in range(16):
            colour = pixels[media.ORDER_TOP + row * cell + 1, col * cell + 1]
            seen |= {step for step, ref in palette.items() if np.abs(colour - ref).max() <= 2}
    return seen


def test_api_lists_exactly_the_three_named_endpoints(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/generate", "/compare", "/inpaint"}
    names = [p["parameter_name"] for p in endpoints["/generate"]["parameters"]]
    assert names == ["variant", "mode", "class_name", "prompt", "cfg_scale", "steps", "seed", "temperature"]


def test_variant_pickers_show_each_size_and_the_api_takes_plain_names(client, runtime):
    labels = [[runtime.describe(v), v] for v in runtime.variants]
    assert labels[0][0].startswith("maskmamba-serial-half · tiny, ") and labels[0][0].endswith("M params")
    pickers = {c["props"]["label"]: c["props"]["choices"] for c in client.config["components"]
               if c["props"].get("label") in ("Model variant", "Left model", "Right model")}
    assert set(pickers) == {"Model variant", "Left model", "Right model"}
    assert all(choices == labels for choices in pickers.values())
    variant = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate"]["parameters"][0]
    assert variant["parameter_name"] == "variant"
    assert all(v in json.dumps(variant["type"]) for v in runtime.variants) and "params" not in json.dumps(variant)


@pytest.mark.parametrize("condition", [CLASS, PROMPT], ids=["class", "prompt"])
def test_generate_streams_every_step_then_the_downloads(client, condition):
    outputs = stream(client, "maskmamba-serial-half", *condition, *DEFAULTS, api_name="/generate")
    assert len(outputs) == STEPS
    assert all(o[3] is None and o[4] is None for o in outputs[:-1])
    image, plot, status, png, gif, order = outputs[-1]
    assert Image.open(image).size == Image.open(png).size == (128, 128)
    assert np.array_equal(np.asarray(Image.open(image)), np.asarray(Image.open(png)))
    assert Image.open(gif).n_frames == STEPS
    assert [row["step"] for row in chart_rows(plot)] == list(range(1, STEPS + 1))
    assert f"step **{STEPS} / {STEPS}**" in status
    assert order_steps(order, STEPS) == set(range(1, STEPS + 1))  # every step decided some tokens
    assert order_steps(outputs[0][5], STEPS) == {1}


@pytest.mark.parametrize("condition", [CLASS, PROMPT], ids=["class", "prompt"])
def test_compare_alternates_both_models_live(client, condition):
    outputs = stream(client, "uvit", "maskmamba-parallel-2", *condition, *DEFAULTS, api_name="/compare")
    assert len(outputs) == 2 * STEPS
    assert outputs[0][0] is not None and outputs[0][1] is None  # left moved first, right not yet
    assert outputs[0][4] is not None and outputs[0][5] is None
    left, right, plot, status, left_order, right_order = outputs[-1]
    assert Image.open(left).size == Image.open(right).size == (128, 128)
    models = [row["model"] for row in chart_rows(plot)]
    assert models.count("uvit") == models.count("maskmamba-parallel-2") == STEPS
    assert json.loads(outputs[0][2]["plot"])["encoding"]["color"]["scale"]["domain"] == ["uvit", "maskmamba-parallel-2"]
    assert status.count(f"step **{STEPS} / {STEPS}**") == 2
    assert order_steps(left_order, STEPS) == order_steps(right_order, STEPS) == set(range(1, STEPS + 1))


@pytest.mark.parametrize("condition", [CLASS, PROMPT], ids=["class", "prompt"])
def test_inpaint_changes_only_the_painted_tokens(client, files, condition):
    outputs = stream(client, editor(files["image"], files["mask"]), "uvit", *condition, *DEFAULTS, api_name="/inpaint")
    assert len(outputs) == STEPS
    assert all(o[4] is None for o in outputs[:-1])
    result, overlay, plot, status, png, order = outputs[-1]
    painted = np.asarray(Image.open(files["mask"]))[..., 3] > 0
    out, original = np.asarray(Image.open(result).convert("RGB")), np.asarray(Image.open(files["image"]).convert("RGB"))
    assert np.array_equal(out[~painted], original[~painted])
    assert Image.open(overlay).size == (256, 256) and png is not None
    assert Image.open(order).getpixel((1, media.ORDER_TOP + 1)) == media.GIVEN_FILL  # the top-left token was kept


def tinted_tokens(overlay: str, image: Path) -> np.ndarray:
    """(16, 16) bool: the token cells the overlay tints, found against the image enlarged the same way."""
    shown = np.asarray(Image.open(overlay).convert("RGB")).astype(int)
    plain = np.asarray(media.token_overlay(Image.open(image), np.zeros((16, 16), dtype=bool))).astype(int)
    centres = slice(8, 256, 16)
    return np.abs(shown[centres, centres] - plain[centres, centres]).max(axis=-1) > 10


@pytest.mark.parametrize("mask", ["mask_l", "mask_rgb"])
def test_inpaint_with_a_white_on_black_mask_repaints_only_its_tokens(client, files, mask):
    """A mask file without alpha (mode L or RGB): only the 48 tokens under its white 48x64 rectangle change."""
    outputs = stream(client, editor(files["image"], files[mask]), "uvit", *CLASS, *DEFAULTS, api_name="/inpaint")
    result, overlay, *_ = outputs[-1]
    expected = np.zeros((16, 16), dtype=bool)
    expected[5:11, 4:12] = True
    assert np.array_equal(tinted_tokens(overlay, files["image"]), expected)
    assert "· 0 tokens still masked" in outputs[-1][3]
    inside = np.zeros((128, 128), dtype=bool)
    inside[RECT] = True
    out, original = np.asarray(Image.open(result).convert("RGB")), np.asarray(Image.open(files["image"]).convert("RGB"))
    assert np.array_equal(out[~inside], original[~inside])
    assert not np.array_equal(out[inside], original[inside])  # the random dev model repaints something


BAD_INPUTS = [
    ("/generate", ("uvit", "Prompt", DEV_CLASSES[0], "   ", *DEFAULTS), "prompt is empty"),
    ("/generate", ("uvit", "Class", "sky-weathr", "", *DEFAULTS), "did you mean sky-weather"),
    ("/generate", ("uvit", "Class", "dog", "", *DEFAULTS), r"classes with 'dog': animal-mammal \(dog face, dog"),
    ("/compare", ("uvit", "maskmamba-parallel-2", "Class", "Heart ", "", *DEFAULTS), None),
    ("/generate", ("uvit", "Class", DEV_CLASSES[0], "", 3.0, 0, 5, 1.0), "less than minimum value 1"),
    ("/generate", ("uvit", "Class", DEV_CLASSES[0], "", 3.0, 10_000, 5, 1.0), "greater than maximum value 256"),
    ("/generate", ("uvit", "Class", DEV_CLASSES[0], "", -1.0, STEPS, 5, 1.0), "less than minimum value 0"),
    ("/compare", ("uvit", "uvit", *CLASS, *DEFAULTS), "two different variants"),
    ("/inpaint", ("image", "small_mask"), "the mask is 64x64 but the image is 128x128"),
    ("/inpaint", ("image", None), "mask is empty"),
    ("/inpaint", (None, None), "no image to inpaint"),
    ("/inpaint", ("text", "mask"), "not an image this demo can read"),
]


@pytest.mark.parametrize(("api_name", "args", "message"), BAD_INPUTS, ids=[m or "control" for _, _, m in BAD_INPUTS])
def test_bad_input_is_a_readable_error_and_the_app_keeps_serving(client, files, api_name, args, message):
    if message is None:  # a control: a class name in other case and with spaces is no error
        assert len(stream(client, *args, api_name=api_name)) == 2 * STEPS
        return
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


def test_stopped_status_says_where_it_stopped():
    one = "**uvit** · step **5 / 64** · 12 tokens still masked"
    assert stopped_status(one) == "**uvit** · **stopped** at step **5 / 64** · 12 tokens still masked"
    both = stopped_status(f"{one}\n\n**mmamba** · step **4 / 64** · 20 tokens")
    assert both.count("**stopped** at step") == 2 and "step **4 / 64**" in both
    assert stopped_status("") == stopped_status(None) == "**Stopped** before the first step."


def test_use_last_generated_image_before_any_warns_and_keeps_the_editor(runtime):
    handlers = Handlers(runtime)
    with pytest.warns(UserWarning, match="no generated image yet: generate one in the Generate tab first"):
        editor_update, overlay, caption = handlers.use_image(None, "uvit")
    assert editor_update == overlay == gr.skip() and caption.startswith("⚠️ no generated image yet")
    value, overlay, caption = handlers.use_image(Image.new("RGB", (128, 128), "white"), "uvit")
    assert value["background"].size == (512, 512) and overlay.size == (256, 256) and "covers **0 of 256**" in caption


def test_class_search_suggests_classes_for_a_word(runtime):
    handlers = Handlers(runtime)
    update = handlers.find_classes("dog", "uvit")
    assert update["visible"] and update["choices"][0] == ("animal-mammal (dog face, dog, guide dog)", "animal-mammal")
    assert [c for _, c in handlers.find_classes("heart", "uvit")["choices"]][0] == "heart"
    nothing = handlers.find_classes("zzzq", "uvit")
    assert nothing["choices"] == [] and nothing["info"] == "no class has an emoji named or tagged 'zzzq'"
    assert handlers.find_classes("  ", "uvit")["visible"] is False


def _speed_rows(models, sides=(128, 256)) -> list[dict]:
    return [{"model": m, "side": side, "tokens": (side // 8) ** 2, "ms": side / 64 * (2 if m == "transformer" else 1)}
            for m in models for side in sides]


def test_speed_tab_reads_the_results_file_or_says_it_is_missing(runtime):
    handlers = Handlers(runtime)
    rows, note = handlers.speed_results()
    assert rows is None and "speed.json` is missing" in note and "bench.json" in note
    folder = runtime.assets / "results"
    folder.mkdir()
    speed, bench = folder / "speed.json", folder / "bench.json"
    speed.write_text(json.dumps({"device": "NVIDIA H100", "command": "python -m bench.speed",
                                 "rows": _speed_rows(("transformer", "mmamba"))}))
    rows, note = handlers.speed_results()
    assert [r["side"] for r in rows] == [128, 256, 128, 256] and "NVIDIA H100" in note
    ratios, table = handlers.speed_ratios(rows)
    assert [(r["model"], r["side"], r["speedup"]) for r in ratios] == [("mmamba", 128, 2.0), ("mmamba", 256, 2.0)]
    assert "| mmamba | 2.00x | 2.00x |" in table
    bench.write_text(json.dumps({"device": "NVIDIA H200", "e2e_device": "NVIDIA H200",  # as bench.layers writes it
                                 "e2e_rows": _speed_rows(("uvit",))}))
    rows, note = handlers.speed_results()  # bench.json comes first when it has rows
    assert {r["model"] for r in rows} == {"uvit"} and "NVIDIA H200" in note
    assert handlers.speed_ratios(rows) == ([], "")  # no transformer measured: no ratios
    bench.write_text("{not json")
    rows, note = handlers.speed_results()
    assert "NVIDIA H100" in note and "bench.json` could not be read" in note
    speed.write_text("{not json")
    rows, note = handlers.speed_results()
    assert rows is None and note.count("could not be read") == 2
    speed.unlink()
    bench.unlink()


def test_live_benchmark_reports_every_variant(runtime):
    chart, table = Handlers(runtime).live_benchmark(steps=2, repeats=1)
    rows = json.loads(chart.plot)["data"]["values"]
    assert [r["model"] for r in rows] == runtime.variants and all(r["ms_per_step"] > 0 for r in rows)
    assert "Median of 1 run, 2 iterations with CFG, on cpu" in table and table.count("| maskmamba-") == 2
    assert f"| {runtime.describe('uvit')} |" in table


def test_media_helpers():
    frames = [Image.new("RGB", (128, 128), (i * 40, 0, 0)) for i in range(4)]
    gif = Image.open(media.progression_gif(frames))
    assert gif.n_frames == 4 and gif.size == (256, 256)
    tokens = np.zeros((16, 16), dtype=bool)
    tokens[0, 0] = True
    overlay = np.asarray(media.token_overlay(Image.new("RGB", (128, 128), "white"), tokens)).astype(int)
    assert overlay[8, 8, 1] < 200 and tuple(overlay[100, 100]) == (255, 255, 255)  # tinted cell, untouched cell
    assert media._mtime(media.DOWNLOADS / "removed-by-another-request.png") == 0.0  # no race in the clean-up


def test_latency_chart_names_every_model_and_ticks_whole_steps():
    spec = json.loads(media.latency_chart({"a": [1.0, 2.0], "b": []}, total=3).plot)
    assert [(r["step"], r["model"]) for r in spec["data"]["values"]] == [(1, "a"), (2, "a")]
    assert spec["encoding"]["color"]["scale"]["domain"] == ["a", "b"]  # b is in the legend before its first step
    assert spec["encoding"]["x"]["axis"]["values"] == [1, 2, 3] and spec["encoding"]["x"]["scale"]["domain"] == [1, 3]
    assert json.loads(media.latency_chart({"a": [1.0]}, total=64).plot)["encoding"]["x"]["axis"]["tickMinStep"] == 1
    assert spec["config"]["legend"]["orient"] == "bottom" and spec["config"]["legend"]["labelLimit"] == 0


def test_speed_chart_is_log_log():
    spec = json.loads(media.speed_chart(_speed_rows(("transformer", "mmamba"))).plot)
    assert spec["encoding"]["x"]["scale"]["type"] == spec["encoding"]["y"]["scale"]["type"] == "log"
    assert spec["encoding"]["x"]["axis"]["values"] == [128, 256]


def test_pixel_mask_reads_strokes_and_mask_files():
    stroke = np.zeros((8, 8, 4), dtype=np.uint8)
    stroke[2:4, 2:4] = (255, 45, 85, 255)
    assert media.pixel_mask([Image.fromarray(stroke)], (8, 8)).sum() == 4  # transparent elsewhere: alpha decides
    white = np.zeros((8, 8), dtype=np.uint8)
    white[1:3, 1:6] = 255
    for layer in (Image.fromarray(white, "L"), Image.fromarray(white, "L").convert("RGBA")):  # as the editor hands it
        assert media.pixel_mask([layer], (8, 8)).sum() == 10  # opaque: non-black pixels decide
    with pytest.raises(ValueError, match="the mask is 8x8 but the image is 16x16"):
        media.pixel_mask([Image.fromarray(white)], (16, 16))


def test_decode_order_records_the_first_step_each_token_is_decided():
    given = np.zeros((4, 4), dtype=bool)
    given[0] = True
    order = media.DecodeOrder(4, given=given)
    masked = ~given.copy()
    masked[1] = False
    order.record(masked, 1)
    order.record(np.zeros((4, 4), dtype=bool), 2)
    assert order.step.tolist() == [[-1] * 4, [1] * 4, [2] * 4, [2] * 4]
    picture = order.image(2)
    cell = media.ORDER_CELL
    top = media.ORDER_TOP
    assert picture.getpixel((1, top + 1)) == media.GIVEN_FILL
    assert picture.getpixel((1, top + cell + 1)) != picture.getpixel((1, top + 2 * cell + 1))
    with pytest.raises(ValueError, match="at least 1"):
        media.order_image(order.step, 0)


def test_app_without_checkpoints_exits_naming_the_folder(tmp_path):
    done = subprocess.run([sys.executable, "app.py", "--assets", str(tmp_path), "--device", "cpu"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"no checkpoints in {tmp_path}" in done.stderr and "Traceback" not in done.stderr


def test_stop_ends_a_run_with_a_status_that_says_so(runtime):
    handlers = Handlers(runtime)
    updates = handlers.generate("uvit", *CLASS, 3.0, 6, 0, 1.0)
    assert "step **1 / 6**" in next(updates)[2]
    handlers.stop("compare")  # another tab's Stop leaves this run alone
    assert "step **2 / 6**" in next(updates)[2]
    handlers.stop("generate")
    rest = list(updates)
    assert len(rest) == 1 and "**stopped** at step **3 / 6**" in rest[0][2] and rest[0][3] is None


def test_the_cfg_slider_follows_each_variants_default_scale(tmp_path):
    """A checkpoint's default_cfg (the best scale of its sweep) is what the slider shows for it; without one, the
    library default."""
    from maskmamba.settings import SamplingSettings

    assets = make_dev_assets(tmp_path / "assets", "tiny", variants=["uvit", "maskmamba-serial-half"])
    config = assets / "uvit" / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"default_cfg": 1.5}))
    handlers = Handlers(Runtime(assets, "cpu"))
    assert handlers.default_cfg("uvit")["value"] == 1.5 and handlers.variant_chosen("uvit")[2]["value"] == 1.5
    assert handlers.default_cfg("maskmamba-serial-half")["value"] == SamplingSettings().cfg_scale
