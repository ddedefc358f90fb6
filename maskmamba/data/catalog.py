"""The emoji catalogue from OpenMoji's `data/openmoji.json`: records, classes (CLDR subgroups) and the split."""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# OpenMoji's own additions and the bare skin-tone/hair swatches are not RGI emoji with a CLDR subgroup.
EXCLUDED_GROUPS = ("extras-openmoji", "extras-unicode", "component")
SPLIT_SEED = 2409
VAL_FRACTION = 0.05


@dataclass(frozen=True)
class EmojiRecord:
    """One emoji: its code point sequence and its CLDR annotation, tags, group and subgroup."""

    hexcode: str
    annotation: str
    group: str
    subgroup: str
    tags: tuple[str, ...]
    family: str  # hexcode of the skin-tone base emoji; the record's own hexcode when it has none

    @property
    def text(self) -> str:
        """The emoji as a string of its code points."""
        return "".join(chr(int(point, 16)) for point in self.hexcode.split("-"))


def _split_tags(text: str) -> list[str]:
    return [tag.strip() for tag in text.split(",") if tag.strip()]


def load_records(path: str | Path) -> list[EmojiRecord]:
    """Read openmoji.json; keep RGI emoji with a subgroup; skin-tone variants inherit their base's tags."""
    entries = json.loads(Path(path).read_text(encoding="utf-8"))
    by_hexcode = {entry["hexcode"]: entry for entry in entries}
    records = []
    for entry in entries:
        if entry["group"] in EXCLUDED_GROUPS or not entry["subgroups"]:
            continue
        family = entry.get("skintone_base_hexcode") or entry["hexcode"]
        tags = _split_tags(entry["tags"])
        if family != entry["hexcode"] and family in by_hexcode:
            tags += _split_tags(by_hexcode[family]["tags"])
        records.append(
            EmojiRecord(
                hexcode=entry["hexcode"],
                annotation=entry["annotation"],
                group=entry["group"],
                subgroup=entry["subgroups"],
                tags=tuple(dict.fromkeys(tags)),
                family=family,
            )
        )
    return records


def select_classes(subgroups: list[str], min_images: int) -> list[str]:
    """Sorted subgroup names that occur at least min_images times in `subgroups` (one entry per image)."""
    counts = Counter(subgroups)
    return sorted(name for name, count in counts.items() if count >= min_images)


def _split_key(family: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{family}".encode()).hexdigest()


def val_families(families: list[str], fraction: float = VAL_FRACTION, seed: int = SPLIT_SEED) -> set[str]:
    """Held-out families, taken in seeded-hash order until they cover round(fraction * n) of the n emoji.

    `families` has one entry per emoji, so skin-tone variants stay in the split of their base emoji.
    """
    sizes = Counter(families)
    target = round(fraction * len(families))
    held_out, covered = set(), 0
    for family in sorted(sizes, key=lambda name: _split_key(name, seed)):
        if covered >= target:
            break
        held_out.add(family)
        covered += sizes[family]
    return held_out
