"""The paraphrase prompt set, `assets/eval/paraphrases.json`: plain descriptions that no caption contains.

Each prompt names the emoji (hexcode) and the class (CLDR subgroup) it should produce. The generator
evaluation scores prompt top-5 on it, beside the tag captions the models were trained on. A second set in the same
form, `assets/eval/paraphrases_dev.json`, shares no prompt with it: the prompt matcher is tuned on that one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

PARAPHRASES_JSON = Path("assets/eval/paraphrases.json")
PARAPHRASES_DEV_JSON = Path("assets/eval/paraphrases_dev.json")  # the prompt matcher's development set, disjoint
ARTICLES = ("a ", "an ", "the ")


@dataclass(frozen=True)
class Paraphrase:
    """A prompt and the emoji it describes."""

    prompt: str
    hexcode: str
    annotation: str
    class_name: str


def load_paraphrases(path: str | Path = PARAPHRASES_JSON) -> list[Paraphrase]:
    """Read the prompt set."""
    entries = json.loads(Path(path).read_text(encoding="utf-8"))["prompts"]
    return [Paraphrase(e["prompt"], e["hexcode"], e["annotation"], e["class"]) for e in entries]


def bare(prompt: str) -> str:
    """The prompt in lower case without a leading article ("a puppy" -> "puppy")."""
    text = prompt.strip().lower()
    for article in ARTICLES:
        if text.startswith(article):
            return text[len(article) :]
    return text


def verbatim_hits(prompts: list[str], captions: list[str]) -> dict[str, list[str]]:
    """Prompts that some caption contains (case-blind, leading article dropped), with those captions."""
    lowered = [caption.lower() for caption in captions]
    hits = {}
    for prompt in prompts:
        found = [caption for caption, low in zip(captions, lowered) if bare(prompt) in low]
        if found:
            hits[prompt] = found
    return hits


def class_ids(paraphrases: list[Paraphrase], classes: list[str]) -> list[int]:
    """Each prompt's class id in a data set's class list; a class the data set lacks is an error."""
    index = {name: i for i, name in enumerate(classes)}
    missing = sorted({p.class_name for p in paraphrases} - set(index))
    if missing:
        raise ValueError(f"paraphrase classes {missing} are not classes of this data set")
    return [index[p.class_name] for p in paraphrases]
