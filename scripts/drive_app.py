"""Drive a running demo through gradio_client: every endpoint once, plus two bad inputs; prints what came back.

    python scripts/drive_app.py http://127.0.0.1:7860/

Used to check the demo on a machine where only the server side is set up (the GPU machine); the test suite
(tests/test_app_api.py) covers the same endpoints in depth on the CPU.
"""
from __future__ import annotations

import sys
import time

import numpy as np
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image


def timed_stream(client: Client, *args, api_name: str) -> tuple[list, float]:
    start = time.perf_counter()
    updates = list(client.submit(*args, api_name=api_name))
    return updates, (time.perf_counter() - start) * 1000


def main(url: str) -> None:
    client = Client(url, verbose=False)
    updates, ms = timed_stream(client, "maskmamba-serial-half", "Class", "face-smiling", None, 3.0, 12, 0, 1.0, api_name="/generate")
    print(f"/generate class: {len(updates)} updates in {ms:.0f} ms; last status: {updates[-1][2]!r}")
    final_png = updates[-1][3]
    updates, ms = timed_stream(client, "uvit", "maskmamba-serial-half", "Class", "food-fruit", None, 3.0, 12, 7, 1.0, api_name="/compare")
    print(f"/compare: {len(updates)} updates in {ms:.0f} ms; last status: {updates[-1][3]!r}")
    mask = np.zeros((128, 128, 4), dtype=np.uint8)
    mask[40:90, 40:90] = 255
    Image.fromarray(mask).save("/tmp/drive_mask.png")
    editor = {"background": handle_file(final_png), "layers": [handle_file("/tmp/drive_mask.png")], "composite": None}
    updates, ms = timed_stream(client, editor, "maskmamba-serial-half", "Class", "food-fruit", None, 3.0, 12, 1, 1.0, api_name="/inpaint")
    print(f"/inpaint: {len(updates)} updates in {ms:.0f} ms; last status: {updates[-1][3]!r}")
    for label, args in [("prompt mode", ("uvit", "Prompt", None, "a red apple", 3.0, 12, 0, 1.0)),
                        ("unknown class", ("uvit", "Class", "no-such-class", None, 3.0, 12, 0, 1.0))]:
        try:
            client.predict(*args, api_name="/generate")
            print(f"{label}: ok")
        except AppError as err:
            print(f"{label}: readable error: {err}")
    updates, ms = timed_stream(client, "uvit", "Class", "animal-mammal", None, 3.0, 12, 3, 1.0, api_name="/generate")
    print(f"/generate after errors: {len(updates)} updates in {ms:.0f} ms (still serving)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:7860/")
