"""Class search by the words of each class's emoji (annotations and tags), and the shipped index."""
from __future__ import annotations

import json

import pytest

from maskmamba.class_search import SHIPPED_INDEX, ClassIndex, build, main, unknown_class_message

INDEX = ClassIndex({
    "animal-mammal": [("dog face", "animal, dog, face, pet"), ("cat", "animal, pet"), ("guide dog", "accessibility")],
    "food-prepared": [("hot dog", "frankfurter, sausage"), ("pizza", "cheese, slice")],
    "heart": [("red heart", "heart, love"), ("sparkling heart", "excited")],
    "face-affection": [("smiling face with hearts", "adore, crush")],
})


def test_a_word_finds_the_classes_of_its_emoji_best_first():
    found = INDEX.search("dog")
    assert [s.class_name for s in found] == ["animal-mammal", "food-prepared"]
    assert found[0].examples == ("dog face", "guide dog") and found[0].label() == "animal-mammal (dog face, guide dog)"
    assert [s.class_name for s in INDEX.search("Pizza!")] == ["food-prepared"]


def test_prefixes_tags_class_names_and_every_word():
    assert [s.class_name for s in INDEX.search("heart")] == ["heart", "face-affection"]  # "hearts" by prefix
    assert [s.class_name for s in INDEX.search("frankfurter")] == ["food-prepared"]  # a tag
    assert [s.class_name for s in INDEX.search("affection")] == ["face-affection"]  # the class name
    assert [s.class_name for s in INDEX.search("red heart")] == ["heart"]  # every word must match
    assert INDEX.search("do") == [] and INDEX.search("  ") == []  # short words match whole words only
    assert [s.class_name for s in INDEX.search("dog", classes=["food-prepared"])] == ["food-prepared"]


def test_unknown_class_message_suggests_by_word_then_by_spelling():
    classes = list(INDEX.emoji)
    assert unknown_class_message("dog", classes, INDEX) == (
        "unknown class 'dog'; classes with 'dog': animal-mammal (dog face, guide dog); food-prepared (hot dog)")
    assert unknown_class_message("hart", classes, INDEX) == "unknown class 'hart'; did you mean heart?"
    assert unknown_class_message("qqq", classes, INDEX) == "unknown class 'qqq'"


def test_the_shipped_index_covers_every_shipped_class_and_answers_the_issue_words():
    shipped = ClassIndex.load(SHIPPED_INDEX)
    classes = json.loads((SHIPPED_INDEX.parent / "classes.json").read_text())
    assert sorted(shipped.emoji) == sorted(classes) and all(shipped.emoji.values())
    assert shipped.search("dog")[0].class_name == "animal-mammal"
    assert shipped.search("pizza")[0].class_name == "food-prepared"
    assert shipped.search("heart")[0].class_name == "heart"


def test_build_from_an_openmoji_catalogue(tmp_path, capsys):
    entries = [
        {"hexcode": "1F436", "annotation": "dog face", "group": "animals-nature", "subgroups": "animal-mammal",
         "tags": "dog, pet"},
        {"hexcode": "1F415-1F3FB", "annotation": "dog: light skin tone", "group": "animals-nature",
         "subgroups": "animal-mammal", "tags": "", "skintone_base_hexcode": "1F415"},
        {"hexcode": "1F355", "annotation": "pizza", "group": "food-drink", "subgroups": "food-prepared", "tags": "slice"},
        {"hexcode": "E000", "annotation": "extra", "group": "extras-openmoji", "subgroups": "extra", "tags": ""},
    ]
    catalogue = tmp_path / "openmoji.json"
    catalogue.write_text(json.dumps(entries))
    assert build(catalogue, ["animal-mammal", "food-prepared"]) == {
        "animal-mammal": [("dog face", "dog, pet")], "food-prepared": [("pizza", "slice")]}
    with pytest.raises(ValueError, match="no emoji in .* for these classes: heart"):
        build(catalogue, ["animal-mammal", "heart"])
    out = tmp_path / "index.json"
    out.write_text(json.dumps(build(catalogue, ["food-prepared"])))
    assert main(["search", "pizza", "--index", str(out)]) == 0
    assert capsys.readouterr().out == "food-prepared (pizza)\n"
