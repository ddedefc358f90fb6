"""The README's at-a-glance table of the shipped generators says what assets/results/generators.json says."""
from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _glance_rows() -> dict[str, list[str]]:
    text = (REPO / "README.md").read_text()
    table = text[text.index("**At a glance: the shipped generators**"):].split("\n\n")[1]
    rows = [line.split("|")[1:-1] for line in table.splitlines()[2:]]
    return {cells[0].strip().strip("`"): [c.strip() for c in cells[1:]] for cells in rows}


def test_the_glance_table_matches_the_shipped_figures_for_every_shipped_variant():
    shipped = json.loads((REPO / "assets/results/generators.json").read_text())["shipped"]
    rows = _glance_rows()
    assert set(rows) == set(shipped) == {p.parent.name for p in (REPO / "assets").glob("*/training.json")}
    for variant, figures in shipped.items():  # the JSON keeps 4 digits of a share, so allow its rounding
        _, _, fid, class_acc, prompt, paraphrases = rows[variant]
        shown = [float(fid), *(float(x) for x in re.findall(r"([\d.]+)%", f"{class_acc} {prompt} {paraphrases}"))]
        stored = [figures["fid"], *(100 * figures[k] for k in ("class_acc", "prompt_top5", "paraphrase_top5",
                                                               "paraphrase_top5_matched"))]
        assert len(shown) == 5 and all(abs(a - b) <= 0.051 for a, b in zip(shown, stored)), (variant, shown, stored)
