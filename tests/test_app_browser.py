"""The page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright): generate, paint, inpaint.

Screenshots go to $MASKMAMBA_ARTIFACTS (default /tmp/maskmamba-artifacts), outside the repository.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from maskmamba.dev_assets import make_dev_assets

CHROMIUM = Path("/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="needs PyPI playwright")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium"),
]

REPO = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
START_TIMEOUT_S = 180
RUN_TIMEOUT_MS = 120_000
RECORD_SOURCES = """root => {
    window.__sources = new Set();
    const note = () => root.querySelectorAll('img').forEach(img => window.__sources.add(img.src));
    new MutationObserver(note).observe(root, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
}"""


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("MASKMAMBA_ARTIFACTS", "/tmp/maskmamba-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """`python app.py` on a free loopback port, over tiny dev assets; stopped after the module."""
    assets = make_dev_assets(tmp_path_factory.mktemp("dev-assets"))
    (assets / "results").mkdir()
    shutil.copy(REPO / "assets" / "results" / "speed.json", assets / "results")  # the Speed tab's charts
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("log") / "app.log"
    with log.open("w") as out:
        command = [sys.executable, "app.py", "--assets", str(assets), "--device", "cpu", "--port", str(port)]
        server = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(address, timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(1)
    else:
        server.terminate()
        pytest.fail(f"the app did not start: {log.read_text()[-2000:]}")
    yield address
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def page(url):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.get_by_role("button", name="Generate", exact=True).wait_for()
        yield page
        browser.close()


def _done(page, status: str, steps: int = 12) -> None:
    sync_api.expect(page.locator(status)).to_contain_text(f"step {steps} / {steps}", timeout=RUN_TIMEOUT_MS)


def _legend_shows(page, plot: str, names: list[str]) -> None:
    """Each name is a text of the chart's (SVG) drawing, inside the plot's box."""
    for name in names:
        label = page.locator(f"{plot} svg text").filter(has_text=re.compile(f"^{re.escape(name)}$")).first
        sync_api.expect(label).to_be_visible(timeout=30_000)
        box, area = label.bounding_box(), page.locator(plot).bounding_box()
        assert area["x"] <= box["x"] and box["x"] + box["width"] <= area["x"] + area["width"], name
        assert area["y"] <= box["y"] and box["y"] + box["height"] <= area["y"] + area["height"], name


def test_use_last_image_before_any_says_so(page):
    page.get_by_role("tab", name="Inpaint").click()
    page.get_by_role("button", name="Use the last generated image").click()
    message = "no generated image yet: generate one in the Generate tab first"
    sync_api.expect(page.locator("#coverage")).to_contain_text(message)
    sync_api.expect(page.get_by_text("no generated image yet").first).to_be_visible()
    assert page.locator("#inpaint-editor").get_by_text("Error", exact=True).count() == 0
    page.get_by_role("tab", name="Generate").click()


def test_class_search_finds_dog(page):
    page.get_by_label("Find a class by word").first.fill("dog")
    choice = page.get_by_label("animal-mammal (dog face, dog, guide dog)").first
    sync_api.expect(choice).to_be_visible(timeout=30_000)
    choice.check()
    sync_api.expect(page.get_by_role("combobox", name="Class").first).to_have_value("animal-mammal")
    page.get_by_label("Find a class by word").first.fill("")


def test_variant_pickers_show_the_size(page):
    label = re.compile(r"^maskmamba-serial-half · tiny, \d+\.\dM params$")
    sync_api.expect(page.get_by_role("combobox", name="Model variant").first).to_have_value(label)
    sync_api.expect(page.locator("#kernels")).to_contain_text("uvit · tiny, ")


def test_generate_shows_the_preview_and_the_decoding_order_live(page, artifacts):
    sync_api.expect(page.get_by_text("selective scan: torch reference")).to_be_visible()
    png, gif = page.locator("#gen-png"), page.locator("#gen-gif")
    sync_api.expect(png).to_be_disabled()
    sync_api.expect(gif).to_be_disabled()
    page.locator("#gen-image").evaluate(RECORD_SOURCES)
    page.get_by_role("button", name="Generate", exact=True).click()
    _done(page, "#gen-status")
    sources = page.evaluate("[...window.__sources]")
    assert len(sources) >= 3, f"the preview changed {len(sources) - 1} times"
    sync_api.expect(page.locator("#gen-order img")).to_be_visible()
    assert page.locator("#gen-order img").evaluate("img => img.naturalWidth") > 300
    sync_api.expect(png).to_be_enabled()
    sync_api.expect(gif).to_be_enabled()
    _legend_shows(page, "#gen-plot", ["maskmamba-serial-half"])
    ticks = page.locator("#gen-plot svg g[aria-label^='X-axis'] .role-axis-label text").all_text_contents()
    assert ticks == [str(step) for step in range(1, 13)], ticks  # every step, whole numbers only
    page.screenshot(path=artifacts / "generate.png", full_page=True)


def test_bad_input_shows_a_readable_error_and_keeps_the_image(page, artifacts):
    image = page.locator("#gen-image img").get_attribute("src")
    page.locator("label").filter(has_text=re.compile(r"^\s*Prompt\s*$")).first.click()
    page.get_by_role("button", name="Generate", exact=True).click()
    sync_api.expect(page.get_by_text("the prompt is empty")).to_be_visible(timeout=30_000)
    page.screenshot(path=artifacts / "error.png")
    assert page.locator("#gen-image img").get_attribute("src") == image
    assert "Traceback" not in page.content()
    page.get_by_text("“grinning face”", exact=True).first.click()  # an example fills the prompt
    sync_api.expect(page.get_by_role("textbox", name="Prompt").first).to_have_value("grinning face")
    page.get_by_text("face-smiling", exact=True).first.click()  # a class example switches back to Class
    sync_api.expect(page.get_by_role("combobox", name="Class").first).to_be_visible()


def test_compare_shows_both_models_with_legends_and_orders(page, artifacts):
    page.get_by_role("tab", name="Compare").click()
    page.get_by_role("button", name="Compare", exact=True).click()
    sync_api.expect(page.locator("#compare-status")).to_contain_text(re.compile(r"(step 12 / 12[\s\S]*){2}"),
                                                                     timeout=RUN_TIMEOUT_MS)
    _legend_shows(page, "#compare-plot", ["uvit", "maskmamba-serial-half"])
    for side in ("left", "right"):
        sync_api.expect(page.locator(f"#compare-{side}-order img")).to_be_visible()
    page.screenshot(path=artifacts / "compare.png", full_page=True)


def test_inpaint_an_example_image_with_a_painted_stroke(page, artifacts):
    page.get_by_role("tab", name="Inpaint").click()
    png = page.locator("#inpaint-png")
    sync_api.expect(png).to_be_disabled()
    page.locator("img[src*='sun']").first.click()  # an example image
    coverage = page.locator("#coverage")
    sync_api.expect(coverage).to_contain_text("covers 0 of 256", timeout=30_000)  # the image has loaded
    editor = page.locator("#inpaint-editor")
    editor.get_by_role("button", name="Brush", exact=True).click()
    box = editor.locator("canvas").first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(box["x"] + box["width"] * (0.3 + 0.04 * i), y + 3 * i, steps=2)
    page.mouse.up()
    sync_api.expect(coverage).not_to_contain_text("covers 0 of 256", timeout=30_000)
    covered = int(re.search(r"covers (\d+) of 256", coverage.inner_text()).group(1))
    assert 0 < covered < 256
    page.locator("#inpaint-result").evaluate(RECORD_SOURCES)
    page.get_by_role("button", name="Inpaint", exact=True).click()
    _done(page, "#inpaint-status")
    assert len(page.evaluate("[...window.__sources]")) >= 2
    sync_api.expect(page.locator("#inpaint-order img")).to_be_visible()
    sync_api.expect(png).to_be_enabled()
    page.screenshot(path=artifacts / "inpaint.png", full_page=True)


def test_speed_tab_legends_and_bar_labels_are_whole(page):
    page.get_by_role("tab", name="Speed").click()
    _legend_shows(page, "#speed-chart", ["transformer", "maskmamba-serial-half", "bimamba-v2"])
    _legend_shows(page, "#ratio-chart", ["maskmamba-serial-half", "bimamba-v2"])
    page.get_by_role("button", name=re.compile("Run a small CPU timing")).click()
    _legend_shows(page, "#live-bars", ["maskmamba-serial-half", "maskmamba-parallel-2", "uvit"])


def _step(page) -> tuple[int, str]:
    status = page.locator("#gen-status").inner_text()
    return int(re.search(r"step (\d+) / 256", status).group(1)), status


def test_stop_cancels_a_long_run_and_says_so(page):
    page.get_by_role("tab", name="Generate").click()
    iterations = page.get_by_label("number input for Iterations").first  # the Generate tab comes first
    iterations.fill("256")
    iterations.press("Enter")
    page.get_by_role("button", name="Generate", exact=True).click()
    running = re.compile(r"step ([3-9]|\d\d+) / 256")
    sync_api.expect(page.locator("#gen-status")).to_contain_text(running, timeout=RUN_TIMEOUT_MS)
    stop = page.get_by_role("button", name="Stop", exact=True).first
    stop.dispatch_event("click")  # no scrolling into view: the page is busy drawing the steps
    stopped_at = re.compile(r"stopped at step \d+ / 256")  # the page may lag behind the stream: allow it time
    sync_api.expect(page.locator("#gen-status")).to_contain_text(stopped_at, timeout=RUN_TIMEOUT_MS)
    stopped, status = _step(page)
    page.wait_for_timeout(2000)
    assert _step(page) == (stopped, status) and stopped < 256
    sync_api.expect(page.locator("#gen-png")).to_be_disabled()
