"""What a change of the prompt matcher does to the images: paraphrase top-5 on just the prompts it re-matched.

python -m maskmamba.eval matched-change --old OLD.matched.json --data DIR [--variants a,b] [--device cpu]
    [--judge judge/classifier] [--out assets/results/prompt_match.json]

OLD is an earlier `assets/eval/paraphrases.matched.json` (for example `git show REV:assets/eval/paraphrases.matched.json`),
the current one is the matcher's of today. Every prompt whose matched caption differs is drawn both ways, on the same
seeds and settings as the generator evaluation (each checkpoint's default CFG, --samples seeds), and the judge's top 5
checked for the intended class. Prompts matched alike draw the same images either way, so the change in hits over
the whole set's images is the change of `paraphrase_top5_matched`; a few hundred images, so it runs on a CPU.
Written as the `matched_change` section of --out.
"""
from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import torch

from maskmamba.data.dataset import load_manifest
from maskmamba.eval.classifier import load_classifier
from maskmamba.eval.generator import Bench, caption_prompts, judge, load_model
from maskmamba.eval.match_accuracy import OUT, write_section
from maskmamba.eval.paraphrases import PARAPHRASES, Paraphrases, load_matched
from maskmamba.models import check_tokenizer
from maskmamba.models.tokenizer import VQTokenizer
from maskmamba.settings import SamplingSettings

def read_old(path: str | Path, para: Paraphrases) -> list[str]:
    """The captions of an earlier matched list of the same paraphrase set."""
    written = json.loads(Path(path).read_text())
    if written.get("sha256") != para.sha256 or len(written.get("captions", [])) != len(para.prompts):
        raise SystemExit(f"{path} was written for another version of the paraphrase set")
    return written["captions"]


def hits_per_prompt(model: torch.nn.Module, bench: Bench, captions: list[str], labels: torch.Tensor, data: str,
                    manifest: dict, samples: int, cfg: float, desc: str) -> list[int]:
    """Per caption, how many of its `samples` images have the label in the judge's top 5."""
    prompts = caption_prompts(captions, labels, data, manifest, samples, bench.device)
    _, logits = judge(model, bench, prompts.cond, bench.sampling.steps, cfg, desc, with_features=False)
    top5 = (logits.topk(min(5, logits.shape[1]), dim=1).indices == prompts.labels.to(logits.device)[:, None]).any(dim=1)
    return top5.view(len(captions), samples).sum(dim=1).tolist()


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="python -m maskmamba.eval matched-change", description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, help="an earlier paraphrases.matched.json of the same set")
    p.add_argument("--data", required=True, help="data set folder (its caption cache and manifest)")
    p.add_argument("--paraphrases", default=str(PARAPHRASES))
    p.add_argument("--checkpoints", default="assets")
    p.add_argument("--variants", default="maskmamba-serial-half,uvit")
    p.add_argument("--tokenizer", default="assets/tokenizer")
    p.add_argument("--judge", default="judge/classifier", help="the classifier folder that scores the images")
    p.add_argument("--samples", type=int, default=8, help="seeds per prompt (the evaluation's --paraphrase-samples)")
    p.add_argument("--batch", type=int, default=80)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    device, manifest, para = torch.device(args.device), load_manifest(args.data), Paraphrases.load(args.paraphrases)
    old, new = read_old(args.old, para), load_matched(args.paraphrases)
    if new is None:
        raise SystemExit(f"no matched captions beside {args.paraphrases}: run python -m maskmamba.eval paraphrase-states")
    rows = [i for i, (a, b) in enumerate(zip(old, new)) if a != b]
    labels = para.labels(manifest["classes"])[rows]
    classifier, meta = load_classifier(Path(args.judge), device)
    bench = Bench(device=device, tokenizer=VQTokenizer.from_pretrained(args.tokenizer).to(device).eval(), features=None,
                  classifier=classifier, real_stats=None, class_probs=None, prompts=None, paraphrases=None,
                  matched_paraphrases=None, batch=args.batch, seed=0, sampling=SamplingSettings())
    variants = {}
    for name in filter(None, args.variants.split(",")):
        folder = Path(args.checkpoints) / name
        model = load_model(folder, name, device)
        check_tokenizer(model, bench.tokenizer)
        cfg = float(json.loads((folder / "config.json").read_text()).get("default_cfg", 2.0))
        before, after = (hits_per_prompt(model, bench, [c[i] for i in rows], labels, args.data, manifest, args.samples,
                                         cfg, f"{name} {which}") for which, c in (("old", old), ("new", new)))
        images = len(para.prompts) * args.samples
        variants[name] = {"cfg": cfg, "hits_old": before, "hits_new": after,
                          "top5_matched_change": round((sum(after) - sum(before)) / images, 4)}
        print(name, f"{sum(before)} -> {sum(after)} of {len(rows) * args.samples} images;",
              f"paraphrase_top5_matched {variants[name]['top5_matched_change']:+.4f} over the set's {images}")
    return write_section(Path(args.out), "matched_change", {
        "prompts": [para.prompts[i] for i in rows], "old": [old[i] for i in rows], "new": [new[i] for i in rows],
        "samples": args.samples, "judge_real_acc": round(meta["val_acc"], 4), "device": str(device), "variants": variants,
        "command": shlex.join(["python", "-m", "maskmamba.eval", "matched-change", *argv])})
