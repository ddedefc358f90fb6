"""MaskMamba demo: python app.py [--device cuda|cpu] [--port N] [--host H] [--share] [--assets DIR]"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from maskmamba.serving import ASSETS, Runtime


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="MaskMamba web demo")
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: the GPU when present")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to bind (default 127.0.0.1, or $GRADIO_SERVER_NAME, which a hosted Space sets "
                             "to 0.0.0.0); --host 0.0.0.0 serves every network interface")
    parser.add_argument("--share", action="store_true", help="also open a public share link (off by default)")
    parser.add_argument("--assets", type=Path, default=ASSETS, help="folder of checkpoints (default: the repo's assets/)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        runtime = Runtime(args.assets, args.device)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"maskmamba demo: {err}")
    print(f"loaded {', '.join(runtime.variants)}; warming up ...", flush=True)
    warm = runtime.warm_up()
    print("warm-up (ms): " + ", ".join(f"{v} {ms:.0f}" for v, ms in warm.items()), flush=True)
    from app.ui import build_demo, launch  # gradio is imported only once the models are ready

    launch(build_demo(runtime), host=args.host, port=args.port, share=args.share)


if __name__ == "__main__":
    main()
