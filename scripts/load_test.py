"""Load figures of the demo on this machine: concurrent sessions, each running generations one after another,
through gradio's queue as the page drives it (POST queue/join, then the SSE stream of queue/data).

    python -m scripts.load_test [--sessions 32] [--runs 5] [--steps 2] [--assets DIR] [--device cpu] [--largest 4]

Starts the demo in this process on 127.0.0.1 (untrained stand-in checkpoints unless --assets), with its cache
in a fresh temporary folder, and prints: requests completed / refused as queue full / failed, latency p50 and
p95 per request (join to the last update), resident memory before and after the run (after the server goes
idle), and the files in the cache folder. Then `--largest` inpaint requests at once, each with an image and a
mask of the largest size accepted (limits.MAX_SIDE squared), and the resident memory they take.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from maskmamba.limits import MAX_SIDE
from maskmamba.serving import IDLE_RELEASE_S

LOOPBACK = "127.0.0.1"
REQUEST_TIMEOUT_S = 120


def rss_mb() -> float:
    """This process's resident memory in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise OSError("no VmRSS in /proc/self/status")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@dataclass
class Outcome:
    """One request: 'done', 'queue full' or 'error', its message, and seconds from join to its last update."""

    kind: str
    message: str
    seconds: float


class Demo:
    """The demo served in this process on 127.0.0.1, its cache in `cache` (set before gradio makes any path)."""

    def __init__(self, assets: Path, device: str, cache: Path):
        os.environ["GRADIO_TEMP_DIR"] = str(cache)
        from app.ui import build_demo, launch
        from maskmamba.serving import Runtime

        self.cache = cache
        self.runtime = Runtime(assets, device)
        self.runtime.warm_up(steps=1)
        self.blocks = build_demo(self.runtime)
        self.port = free_port()
        self.janitor = launch(self.blocks, port=self.port, prevent_thread_lock=True)
        self.url = f"http://{LOOPBACK}:{self.port}"
        config = httpx.get(f"{self.url}/config").json()
        self.fn_index = {d["api_name"]: i for i, d in enumerate(config["dependencies"]) if d.get("api_name")}

    def close(self) -> None:
        self.janitor.stop()
        self.blocks.close()


def queue_request(url: str, fn_index: int, data: list, session: str, client: httpx.Client) -> Outcome:
    """One job through the queue as the page sends it; its outcome once the stream completes."""
    start = time.perf_counter()
    joined = client.post(f"{url}/gradio_api/queue/join", json={
        "data": data, "fn_index": fn_index, "session_hash": session, "trigger_id": None, "event_data": None})
    if joined.status_code == 503:
        return Outcome("queue full", joined.json().get("detail", ""), time.perf_counter() - start)
    if joined.status_code != 200:
        return Outcome("error", f"HTTP {joined.status_code}: {joined.text[:200]}", time.perf_counter() - start)
    event = joined.json()["event_id"]
    with client.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("event_id") not in (None, event):
                continue
            if message["msg"] == "process_completed":
                output = message.get("output") or {}
                kind = "done" if message.get("success") else "error"
                return Outcome(kind, str(output.get("error") or ""), time.perf_counter() - start)
            if message["msg"] == "unexpected_error":
                return Outcome("error", str(message.get("message")), time.perf_counter() - start)
    return Outcome("error", "the stream ended without a result", time.perf_counter() - start)


def generate_args(steps: int, seed: int, class_name: str, variant: str) -> list:
    return [variant, "Class", class_name, "", 3.0, steps, seed, 1.0]


@dataclass
class LoadReport:
    sessions: int
    runs: int
    steps: int
    outcomes: list[Outcome] = field(default_factory=list)
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    rss_peak_mb: float = 0.0
    cache_files: int = 0
    cache_deleted: int = 0
    wall_s: float = 0.0

    def count(self, kind: str) -> int:
        return sum(o.kind == kind for o in self.outcomes)

    def percentile(self, q: float) -> float:
        done = sorted(o.seconds for o in self.outcomes if o.kind == "done")
        return statistics.quantiles(done, n=100, method="inclusive")[round(q) - 1] if len(done) > 1 else float("nan")

    def lines(self) -> list[str]:
        return [
            f"{self.sessions} sessions x {self.runs} generations ({self.steps} steps each) in {self.wall_s:.1f} s",
            f"completed {self.count('done')}, refused as queue full {self.count('queue full')}, "
            f"failed {self.count('error')}",
            f"latency per request: p50 {self.percentile(50):.2f} s, p95 {self.percentile(95):.2f} s",
            f"resident memory: before {self.rss_before_mb:.0f} MiB, peak {self.rss_peak_mb:.0f} MiB, "
            f"after {self.rss_after_mb:.0f} MiB",
            f"cache: {self.cache_files} files the demo wrote at the end, {self.cache_deleted} deleted by the janitor",
        ]


def run_load(demo: Demo, sessions: int = 32, runs: int = 5, steps: int = 2) -> LoadReport:
    """`sessions` clients at once, each running `runs` generations one after another (seeds differ)."""
    from maskmamba.serving import release_memory

    variant = demo.runtime.variants[0]
    class_name = demo.runtime.class_names(variant)[0]
    report = LoadReport(sessions, runs, steps)
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:  # one warm request first: lazy imports, caches
        queue_request(demo.url, demo.fn_index["generate"], generate_args(steps, 0, class_name, variant), "warm", client)
    release_memory()
    report.rss_before_mb = report.rss_peak_mb = rss_mb()
    done = threading.Event()

    def watch_memory() -> None:
        while not done.wait(0.2):
            report.rss_peak_mb = max(report.rss_peak_mb, rss_mb())

    def session(number: int) -> list[Outcome]:
        name = f"load-{number}-{uuid.uuid4().hex[:8]}"
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            return [queue_request(demo.url, demo.fn_index["generate"],
                                  generate_args(steps, number * runs + k + 1, class_name, variant), name, client)
                    for k in range(runs)]

    watcher = threading.Thread(target=watch_memory, daemon=True)
    watcher.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(sessions) as pool:
        for outcomes in pool.map(session, range(sessions)):
            report.outcomes.extend(outcomes)
    report.wall_s = time.perf_counter() - start
    done.set()
    watcher.join()
    time.sleep(IDLE_RELEASE_S + 0.5)  # host memory is released once the runtime has been idle IDLE_RELEASE_S
    report.rss_after_mb = rss_mb()
    demo.janitor.sweep()
    report.cache_files, report.cache_deleted = len(demo.janitor.tracked()), demo.janitor.deleted
    return report


def largest_png(mode: str) -> bytes:
    """A MAX_SIDE x MAX_SIDE PNG that compresses well (a filled square on a flat ground)."""
    from PIL import Image, ImageDraw

    image = Image.new(mode, (MAX_SIDE, MAX_SIDE), (200, 100, 50) if mode == "RGB" else 0)
    ImageDraw.Draw(image).rectangle((MAX_SIDE // 4, MAX_SIDE // 4, MAX_SIDE // 2, MAX_SIDE // 2),
                                    fill=(9, 9, 9) if mode == "RGB" else 255)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def run_largest_inpaints(demo: Demo, requests: int = 4, steps: int = 2) -> tuple[list[Outcome], float, float, float]:
    """`requests` inpaint requests at once with the largest image and mask accepted: (outcomes, resident MiB
    before, at the peak, after)."""
    from maskmamba.serving import release_memory

    background, mask = largest_png("RGB"), largest_png("L")
    variant = demo.runtime.variants[0]
    class_name = demo.runtime.class_names(variant)[0]

    def one(number: int) -> Outcome:
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            files = [client.post(f"{demo.url}/gradio_api/upload", files={"files": (f"{name}.png", data, "image/png")})
                     .json()[0] for name, data in (("image", background), ("mask", mask))]
            editor = {"background": {"path": files[0], "meta": {"_type": "gradio.FileData"}},
                      "layers": [{"path": files[1], "meta": {"_type": "gradio.FileData"}}], "composite": None}
            return queue_request(demo.url, demo.fn_index["inpaint"],
                                 [editor, *generate_args(steps, number, class_name, variant)], f"big-{number}", client)

    release_memory()
    before = peak = rss_mb()
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, rss_mb())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with ThreadPoolExecutor(requests) as pool:
        outcomes = list(pool.map(one, range(requests)))
    done.set()
    watcher.join()
    time.sleep(IDLE_RELEASE_S + 0.5)
    return outcomes, before, peak, rss_mb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5, help="generations per session, one after another")
    parser.add_argument("--steps", type=int, default=2, help="decoding iterations per generation")
    parser.add_argument("--assets", type=Path, default=None, help="checkpoints (default: untrained stand-ins)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--largest", type=int, default=4, help="inpaint requests at once with the largest images")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        assets = args.assets
        if assets is None:
            from maskmamba.dev_assets import make_dev_assets

            assets = make_dev_assets(Path(scratch) / "dev-assets")
        demo = Demo(assets, args.device, Path(scratch) / "gradio-cache")
        try:
            report = run_load(demo, args.sessions, args.runs, args.steps)
            largest = run_largest_inpaints(demo, args.largest, args.steps) if args.largest else None
        finally:
            demo.close()
    print("\n".join(report.lines()))
    for outcome in report.outcomes:
        if outcome.kind != "done":
            print(f"  {outcome.kind}: {outcome.message}")
    if largest is not None:
        outcomes, before, peak, after = largest
        kinds = ", ".join(f"{sum(o.kind == k for o in outcomes)} {k}" for k in dict.fromkeys(o.kind for o in outcomes))
        print(f"{len(outcomes)} inpaint requests at once with {MAX_SIDE}x{MAX_SIDE} images and masks: {kinds}; "
              f"resident memory before {before:.0f} MiB, peak {peak:.0f} MiB, after {after:.0f} MiB")


if __name__ == "__main__":
    main()
