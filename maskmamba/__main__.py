"""`python -m maskmamba [SIZE ...]`: a markdown table of every variant's parameter count at each size."""
from __future__ import annotations

import sys

import torch

from maskmamba import SIZES, VARIANTS, build_model
from maskmamba.modules import count_params


def parameter_table(sizes: list[str], num_classes: int = 100) -> str:
    with torch.device("meta"):
        counts = {(v, s): count_params(build_model(v, s, num_classes=num_classes)) for v in VARIANTS for s in sizes}
    header = "| variant | " + " | ".join(f"{s} ({SIZES[s].width}x{SIZES[s].depth})" for s in sizes) + " |"
    lines = [header, "|---|" + "---:|" * len(sizes)]
    for v in VARIANTS:
        cells = []
        for s in sizes:
            n, ref = counts[v, s], counts["transformer", s]
            cells.append(f"{n / 1e6:.2f}M ({n / ref - 1:+.1%})")
        lines.append(f"| `{v}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(parameter_table(sys.argv[1:] or ["tiny", "small", "xl"]))
