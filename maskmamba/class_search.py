"""Find classes (CLDR subgroups such as `animal-mammal`) by the words of their emoji: "dog" -> animal-mammal.

The index maps each class to its emoji as (annotation, tags), from OpenMoji's `data/openmoji.json`
(CLDR annotations and tags). Build it with:

    python -m maskmamba.class_search build assets/class_index.json [--classes assets/classes.json]
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path

INDEX_FILE = "class_index.json"
SHIPPED_INDEX = Path(__file__).resolve().parent.parent / "assets" / INDEX_FILE
WORD = re.compile(r"[a-z0-9]+")
MIN_PREFIX = 3  # a query word this long also matches longer words it starts ("heart" -> "hearts")


def words(text: str) -> list[str]:
    """Lower-case alphanumeric words of a text."""
    return WORD.findall(text.lower())


@dataclass(frozen=True)
class Suggestion:
    """A class that matches a query, with the emoji names that made it match (best first)."""

    class_name: str
    examples: tuple[str, ...]
    score: float

    def label(self, shown: int = 3) -> str:
        """`animal-mammal (dog face, dog, guide dog)`."""
        return f"{self.class_name} ({', '.join(self.examples[:shown])})" if self.examples else self.class_name


def _matches(query: str, vocabulary: list[str]) -> bool:
    return any(w == query or (len(query) >= MIN_PREFIX and w.startswith(query)) for w in vocabulary)


class ClassIndex:
    """Per class, its emoji as (annotation, tags); searched by whole words and word prefixes."""

    def __init__(self, emoji: dict[str, list[tuple[str, str]]]):
        self.emoji = {name: [(a, t) for a, t in items] for name, items in emoji.items()}

    @classmethod
    def load(cls, path: str | Path) -> ClassIndex:
        """Read an index written by `build`."""
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def for_assets(cls, assets: str | Path) -> ClassIndex:
        """The index in an assets folder, else the one shipped in the repository's assets/."""
        own = Path(assets) / INDEX_FILE
        return cls.load(own if own.is_file() else SHIPPED_INDEX)

    def search(self, query: str, classes: list[str] | None = None, limit: int = 5) -> list[Suggestion]:
        """Classes whose name, emoji annotations or tags contain every word of `query`, best first.

        An emoji counts 2 when its annotation matches and 1 when only its tags do; the class name matching
        counts 3. Only `classes` (default: all indexed) are searched; classes missing from the index match
        by name alone."""
        query_words = words(query)
        if not query_words:
            return []
        found = []
        for name in classes if classes is not None else list(self.emoji):
            score, examples = 3.0 * all(_matches(q, words(name)) for q in query_words), []
            for annotation, tags in self.emoji.get(name, []):
                in_annotation = all(_matches(q, words(annotation)) for q in query_words)
                if in_annotation or all(_matches(q, words(f"{annotation} {tags}")) for q in query_words):
                    score += 2.0 if in_annotation else 1.0
                    examples.append((not in_annotation, annotation))
            if score:
                shown = tuple(a for _, a in sorted(examples, key=lambda e: e[0]))  # annotation hits first
                found.append(Suggestion(name, shown, score))
        return sorted(found, key=lambda s: (-s.score, s.class_name))[:limit]


def unknown_class_message(name: str, classes: list[str], index: ClassIndex) -> str:
    """`unknown class 'dog'; classes with 'dog': animal-mammal (dog face, dog, guide dog), ...`, else near names."""
    found = index.search(name, classes, limit=3)
    if found:
        return f"unknown class {name!r}; classes with {name.strip()!r}: {'; '.join(s.label() for s in found)}"
    near = difflib.get_close_matches(name.strip().lower(), classes, n=3)
    return f"unknown class {name!r}" + (f"; did you mean {', '.join(near)}?" if near else "")


def build(openmoji_json: str | Path, classes: list[str]) -> dict[str, list[tuple[str, str]]]:
    """{class: [(annotation, "tag, tag"), ...]} for the base emoji (no skin-tone variants) of each class."""
    from maskmamba.data.catalog import load_records

    index: dict[str, list[tuple[str, str]]] = {name: [] for name in classes}
    for record in load_records(openmoji_json):
        if record.family == record.hexcode and record.subgroup in index:
            index[record.subgroup].append((record.annotation, ", ".join(record.tags)))
    empty = [name for name, items in index.items() if not items]
    if empty:
        raise ValueError(f"no emoji in {openmoji_json} for these classes: {', '.join(empty)}")
    return index


def main(argv: list[str] | None = None) -> int:
    from maskmamba.data.sources import OPENMOJI, default_npm_prefix, openmoji_json, require
    from maskmamba.pipeline import ASSETS

    parser = argparse.ArgumentParser(prog="python -m maskmamba.class_search", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="write the class index from OpenMoji's catalogue")
    make.add_argument("out", type=Path)
    make.add_argument("--classes", type=Path, default=ASSETS / "classes.json")
    make.add_argument("--npm-prefix", type=Path, default=default_npm_prefix())
    make.add_argument("--install", action="store_true", help=f"npm-install {OPENMOJI.spec()} when missing")
    find = commands.add_parser("search", help="print the classes a query suggests")
    find.add_argument("query")
    find.add_argument("--index", type=Path, default=ASSETS / INDEX_FILE)
    args = parser.parse_args(argv)
    if args.command == "search":
        for suggestion in ClassIndex.load(args.index).search(args.query):
            print(suggestion.label())
        return 0
    require(OPENMOJI, args.npm_prefix, install=args.install)
    index = build(openmoji_json(args.npm_prefix), json.loads(args.classes.read_text()))
    args.out.write_text(json.dumps(index, separators=(",", ":"), ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {sum(map(len, index.values()))} emoji in {len(index)} classes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
