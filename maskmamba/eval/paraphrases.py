"""The paraphrase prompt set (assets/eval/paraphrases.json): its classes, its MiniLM states, and its picture.

The set is read by maskmamba.data.paraphrases (prompts that no caption contains verbatim, each with the class
(CLDR subgroup) and emoji it should produce). The generator evaluation conditions on the prompts'
MiniLM states; they are cached beside the set (`<name>.states.safetensors`, keyed on the set's SHA-256), so the
GPU machine needs no text encoder once `python -m maskmamba.eval paraphrase-states` has written the cache here.
`<name>.matched.json` lists the known caption each prompt is drawn as in the demo (maskmamba.prompt_match); those
are captions of the data set, so the evaluation takes their states from its caption cache and scores both the
generator alone and the demo's prompt path.

python -m maskmamba.eval paraphrase-states [--paraphrases assets/eval/paraphrases.json]
(the picture of a variant's paraphrases: maskmamba.eval.paraphrase_grid)
"""
from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from maskmamba.class_search import ClassIndex
from maskmamba.data.paraphrases import PARAPHRASES_JSON, load_paraphrases
from maskmamba.data.shards import dequantise_rows, quantise_rows
from maskmamba.pipeline import ASSETS
from maskmamba.prompt_match import CaptionMatcher
from maskmamba.text_encoder import PromptEncoder

PARAPHRASES = PARAPHRASES_JSON


@dataclass
class Paraphrases:
    """The prompts, the class name each should produce, and the file's SHA-256."""

    prompts: list[str]
    classes: list[str]
    sha256: str

    @classmethod
    def load(cls, path: str | Path) -> Paraphrases:
        try:
            entries = load_paraphrases(path)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: not a paraphrase set ({err!r})") from err
        if not entries:
            raise ValueError(f"{path}: the paraphrase set is empty")
        sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        return cls([e.prompt for e in entries], [e.class_name for e in entries], sha)

    def labels(self, class_names: list[str]) -> torch.Tensor:
        """Class ids of the prompts in a model's class list; a ValueError names classes the list lacks."""
        index = {name: i for i, name in enumerate(class_names)}
        unknown = sorted(set(self.classes) - set(index))
        if unknown:
            raise ValueError(f"paraphrase classes not among the model's classes: {', '.join(unknown)}")
        return torch.tensor([index[c] for c in self.classes], dtype=torch.long)


def states_path(path: str | Path) -> Path:
    return Path(path).with_name(Path(path).stem + ".states.safetensors")


def matched_path(path: str | Path) -> Path:
    return Path(path).with_name(Path(path).stem + ".matched.json")


def write_states(path: str | Path, encoder: PromptEncoder | None = None) -> Path:
    """Encode the set's prompts with MiniLM and write the int8 states cache beside it."""
    para = Paraphrases.load(path)
    states, mask = (encoder or PromptEncoder()).encode(para.prompts)
    tokens, scales = quantise_rows(states.reshape(-1, states.shape[-1]).cpu().numpy())
    out = states_path(path)
    save_file({"tokens": tokens.reshape(states.shape), "scales": scales.reshape(mask.shape), "mask": mask.cpu().numpy()},
              str(out), metadata={"sha256": para.sha256})
    return out


def write_matched(path: str | Path, matcher: CaptionMatcher) -> Path:
    """Write the caption each prompt of the set is drawn as (`<name>.matched.json`, keyed on the set's SHA-256)."""
    para = Paraphrases.load(path)
    out = matched_path(path)
    captions = [matcher.match(prompt).caption for prompt in para.prompts]
    out.write_text(json.dumps({"sha256": para.sha256, "captions": captions}, indent=1) + "\n")
    return out


def load_matched(path: str | Path) -> list[str] | None:
    """The matched caption of each prompt, or None when none were written; refuses those of another version."""
    para, file = Paraphrases.load(path), matched_path(path)
    if not file.is_file():
        return None
    written = json.loads(file.read_text())
    if written.get("sha256") != para.sha256 or len(written.get("captions", [])) != len(para.prompts):
        raise ValueError(f"{file} was written for another version of {path}: run paraphrase-states again")
    return written["captions"]


def load_states(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The cached prompt states (P, K, D) float32 and mask (P, K); refuses a cache of another version of the set."""
    para, cache = Paraphrases.load(path), states_path(path)
    if not cache.is_file():
        raise FileNotFoundError(f"no prompt states for {path}: run python -m maskmamba.eval paraphrase-states --paraphrases {path}")
    with safe_open(str(cache), framework="numpy") as handle:
        if handle.metadata().get("sha256") != para.sha256:
            raise ValueError(f"{cache} was written for another version of {path}: run paraphrase-states again")
    arrays = load_file(str(cache))
    p, k, d = arrays["tokens"].shape
    states = dequantise_rows(arrays["tokens"].reshape(-1, d), arrays["scales"].reshape(-1)).reshape(p, k, d)
    return torch.from_numpy(states), torch.from_numpy(arrays["mask"])


def main(argv: list[str]) -> Path:
    p = argparse.ArgumentParser(prog="python -m maskmamba.eval paraphrase-states", description=write_states.__doc__)
    p.add_argument("--paraphrases", default=str(PARAPHRASES))
    p.add_argument("--device", default="cpu")
    p.add_argument("--assets", default=str(ASSETS), help="the class index whose captions the prompts are matched to")
    args = p.parse_args(argv)
    encoder = PromptEncoder(args.device)
    out = write_states(args.paraphrases, encoder)
    matched = write_matched(args.paraphrases, CaptionMatcher(ClassIndex.for_assets(args.assets), encoder))
    print(f"wrote {out} and {matched}")
    return out
