"""Free-text prompts drawn as the known caption closest in meaning: "puppy" -> "dog: animal, animals, dogs".

The generators learnt from emoji captions (CLDR annotations and tags); a prompt worded otherwise conditions them
on text they never saw. The matcher embeds every emoji of the class index (`assets/class_index.json`) twice, as
its annotation and as "annotation: tags", with MiniLM's sentence embedding (the prompt encoder's model). An emoji
scores the mean of the two forms' cosine similarities to the prompt, plus LEXICAL_WEIGHT times the share of the
prompt's content words found among its annotation's and tags' words (MiniLM alone leans on surface words: "a pine
tree" went to "pine decoration", "a red cherry" to "cherry blossom"); the best conditions the generator as its
first tag caption, the form the evaluation's prompt top-5 scores. The scoring was chosen on the development set
`assets/eval/paraphrases_dev.json` and only then scored on the evaluation set (`python -m maskmamba.eval
match-accuracy`; figures in assets/results/prompt_match.json).

The embeddings take about 20 s on a 2-core CPU, so they are cached on disk (keyed on the index's contents) in
~/.cache/maskmamba or $MASKMAMBA_CACHE; an unreadable cache is recomputed, an unwritable one skipped.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from maskmamba.class_search import ClassIndex, words
from maskmamba.data.captions import TAGS_PER_CAPTION, tag_separator
from maskmamba.text_encoder import PromptEncoder

CACHE_DIR = Path(os.environ.get("MASKMAMBA_CACHE", Path.home() / ".cache" / "maskmamba"))
CACHE_VERSION = "captions-v1"  # bump when the embedded forms change
REMEMBERED_PROMPTS = 256
LEXICAL_WEIGHT = 0.2  # chosen on paraphrases_dev.json among 0 to 0.3: 0.15 to 0.3 tie there (113-114 of 120 classes)
STOP_WORDS = frozenset({"a", "an", "and", "at", "for", "in", "is", "it", "its", "my", "of", "on", "some", "that", "the",
                        "to", "with"})


@dataclass(frozen=True)
class PromptMatch:
    """A prompt as typed, the caption that conditions the generator, and their cosine similarity (1 when equal)."""

    prompt: str
    caption: str
    similarity: float

    @property
    def changed(self) -> bool:
        return self.caption.lower() != self.prompt.lower()


class CaptionMatcher:
    """Maps prompts to the closest emoji annotation of a class index; embeds the index once, on first use."""

    def __init__(self, index: ClassIndex, encoder: PromptEncoder, cache_dir: Path | None = CACHE_DIR,
                 lexical_weight: float = LEXICAL_WEIGHT):
        self.annotations = sorted({annotation for items in index.emoji.values() for annotation, _ in items})
        tags = {annotation: tag for items in index.emoji.values() for annotation, tag in items}
        self._forms = self.annotations + [f"{a}: {tags[a]}" if tags[a] else a for a in self.annotations]
        self.captions = [tag_caption(a, tags[a]) for a in self.annotations]
        self._known = {a.lower(): a for a in self.annotations}
        self._words = [content_words(f"{a} {tags[a]}") for a in self.annotations]
        self.encoder = encoder
        self.cache_dir = cache_dir
        self.lexical_weight = lexical_weight
        self._embeddings: torch.Tensor | None = None
        self._lock = threading.Lock()
        self._remembered = functools.lru_cache(maxsize=REMEMBERED_PROMPTS)(self._match)

    def _embed(self, texts: list[str]) -> torch.Tensor:
        model = self.encoder.load().model
        return model.encode(texts, batch_size=256, convert_to_tensor=True, normalize_embeddings=True).float().cpu()

    def _cache_file(self) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(json.dumps([CACHE_VERSION, self._forms]).encode()).hexdigest()[:16]
        return self.cache_dir / f"{CACHE_VERSION}-{digest}.safetensors"

    def load(self) -> CaptionMatcher:
        """Embed both forms of every caption now (or read them from the cache)."""
        with self._lock:
            if self._embeddings is not None:
                return self
            cache = self._cache_file()
            embeddings = _read_cache(cache, len(self._forms))
            if embeddings is None:
                embeddings = self._embed(self._forms)
                if cache is not None:
                    _save_atomically(cache, embeddings)
            self._embeddings = embeddings.view(2, len(self.annotations), -1)
        return self

    def match(self, prompt: str) -> PromptMatch:
        """The caption `prompt` is drawn as: itself when it is an emoji's annotation (any case), else the first tag
        caption of the emoji closest in meaning. Recent prompts are remembered: the demo asks once for the status
        and once per model it runs."""
        return self._remembered(prompt.strip())

    def _match(self, text: str) -> PromptMatch:
        if text.lower() in self._known:
            return PromptMatch(text, self._known[text.lower()], 1.0)
        self.load()
        similarity = (self._embeddings @ self._embed([text])[0]).mean(dim=0)  # the two forms' mean, per caption
        best = int((similarity + self.lexical_weight * self._word_overlap(text)).argmax())
        return PromptMatch(text, self.captions[best], round(float(similarity[best]), 3))

    def _word_overlap(self, text: str) -> torch.Tensor:
        """Per caption, the share of the prompt's content words among its annotation's and tags' words."""
        query = content_words(text)
        if not query:
            return torch.zeros(len(self.annotations))
        return torch.tensor([len(query & known) / len(query) for known in self._words])


def content_words(text: str) -> set[str]:
    """Lower-case words without stop words, a plural's final "s" dropped ("trees" -> "tree")."""
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words(text)} - STOP_WORDS


def tag_caption(annotation: str, tags: str) -> str:
    """The first tag caption the generators learnt for an emoji ('dog face: dog, face, pet'; see
    maskmamba.data.captions), or its annotation when it has no tags."""
    first = [t for t in tags.split(", ") if t][:TAGS_PER_CAPTION]
    return annotation + tag_separator(annotation) + ", ".join(first) if first else annotation


def _read_cache(path: Path | None, rows: int) -> torch.Tensor | None:
    """The cached embeddings, or None when there is no cache or it cannot be used (truncated, corrupt, wrong shape)."""
    if path is None or not path.is_file():
        return None
    try:
        embeddings = load_file(str(path))["embeddings"]
    except Exception:  # safetensors and the OS raise their own kinds for a damaged file; it is rebuilt
        return None
    return embeddings if embeddings.ndim == 2 and embeddings.shape[0] == rows else None


def _save_atomically(path: Path, embeddings: torch.Tensor) -> None:
    """Write the cache through a temporary file, so a concurrent reader never sees half of it; a read-only disk is
    no error (the embeddings are then recomputed next time)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        save_file({"embeddings": embeddings.contiguous()}, str(partial))
        partial.replace(path)
    except OSError:
        pass
