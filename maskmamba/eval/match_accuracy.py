"""How often the prompt matcher (maskmamba.prompt_match) draws a paraphrase as an emoji of its intended class.

python -m maskmamba.eval match-accuracy [--sets assets/eval/paraphrases_dev.json,assets/eval/paraphrases.json]
    [--weights 0,0.1,0.2,0.3] [--out assets/results/prompt_match.json]

For each lexical weight and each paraphrase set: the prompts whose matched caption belongs to an emoji of the
intended class (`class_hits`) and those matched to the intended emoji itself (`emoji_hits`); and, at the matcher's
weight (LEXICAL_WEIGHT), the class misses. The weight is chosen on the development set (the first); the evaluation
set is only scored. No generator runs: a prompt matched to another class rarely scores in `paraphrase_top5_matched`,
so this bounds what the demo's prompt path can reach. Written as the `matcher` section of --out.
"""
from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from maskmamba.class_search import ClassIndex
from maskmamba.cli import parse_floats
from maskmamba.data.paraphrases import PARAPHRASES_DEV_JSON, PARAPHRASES_JSON, Paraphrase, load_paraphrases
from maskmamba.prompt_match import LEXICAL_WEIGHT, CaptionMatcher
from maskmamba.text_encoder import PromptEncoder

SETS = f"{PARAPHRASES_DEV_JSON},{PARAPHRASES_JSON}"
OUT = Path("assets/results/prompt_match.json")


def match_counts(matcher: CaptionMatcher, paraphrases: list[Paraphrase], index: ClassIndex) -> dict:
    """Class and emoji hits of the matcher on a paraphrase set, with each class miss as (prompt, caption, intended)."""
    by_caption = dict(zip(matcher.captions, matcher.annotations))
    class_of = {annotation: name for name, items in index.emoji.items() for annotation, _ in items}
    class_hits = emoji_hits = 0
    misses = []
    for p in paraphrases:
        caption = matcher.match(p.prompt).caption
        annotation = by_caption.get(caption, caption)  # an annotation typed as it is stays itself
        class_hits += class_of[annotation] == p.class_name
        emoji_hits += annotation == p.annotation
        if class_of[annotation] != p.class_name:
            misses.append([p.prompt, caption, p.annotation])
    return {"n": len(paraphrases), "class_hits": class_hits, "emoji_hits": emoji_hits, "class_misses": misses}


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="python -m maskmamba.eval match-accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default=SETS, help="comma-separated paraphrase sets, the development set first")
    p.add_argument("--weights", type=parse_floats, default=[0, 0.05, 0.1, 0.15, 0.2, 0.3], help="lexical weights")
    p.add_argument("--assets", default="assets", help="the class index whose captions the prompts are matched to")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    index, encoder = ClassIndex.for_assets(args.assets), PromptEncoder("cpu")
    sets = {path: load_paraphrases(path) for path in args.sets.split(",") if path}
    rows, misses = {}, {}
    for weight in args.weights:
        matcher = CaptionMatcher(index, encoder, lexical_weight=weight)
        counts = {path: match_counts(matcher, items, index) for path, items in sets.items()}
        rows[f"{weight:g}"] = {path: {k: v for k, v in c.items() if k != "class_misses"} for path, c in counts.items()}
        if weight == LEXICAL_WEIGHT:
            misses = {path: c["class_misses"] for path, c in counts.items()}
        print(weight, {path: (c["class_hits"], c["emoji_hits"], c["n"]) for path, c in counts.items()})
    return write_section(Path(args.out), "matcher", {
        "lexical_weight": LEXICAL_WEIGHT, "by_weight": rows, "class_misses": misses,
        "command": shlex.join(["python", "-m", "maskmamba.eval", "match-accuracy", *argv])})


def write_section(out: Path, key: str, section: dict) -> dict:
    """Set one section of the results file (`prompt_match.json`), keeping the others; returns the whole file."""
    results = json.loads(out.read_text()) if out.is_file() else {}
    results[key] = section
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}")
    return results
