"""Take the README screenshot of a running demo in headless Chromium (Debian's /usr/bin/chromium, via Playwright).

    python app.py --device cpu --port 7861 &
    python scripts/screenshot.py http://127.0.0.1:7861/ docs/screenshot.png

Generates the default class in the Generate tab, waits for the last step, and saves the page as a palette PNG.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

from PIL import Image
from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--colours", type=int, default=256, help="palette size of the saved PNG")
    args = parser.parse_args(argv)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(args.url)
        page.get_by_role("button", name="Generate", exact=True).click()
        expect(page.locator("#gen-status")).to_contain_text("step 12 / 12", timeout=300_000)
        page.wait_for_timeout(1500)  # the last chart and order picture
        page.evaluate("window.scrollTo(0, 0)")
        shot = page.screenshot(full_page=False)
        browser.close()
    Image.open(io.BytesIO(shot)).convert("RGB").quantize(args.colours).save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
