"""Prompts drawn as the closest known caption: the matcher, its disk cache, the runtime and the demo's status."""
import pytest

from app.handlers import caption_note
from maskmamba.class_search import ClassIndex
from maskmamba.data.paraphrases import Paraphrase
from maskmamba.eval.match_accuracy import match_counts
from maskmamba.prompt_match import CaptionMatcher, PromptMatch, content_words
from maskmamba.serving import Settings
from maskmamba.text_encoder import PromptEncoder

INDEX = ClassIndex({
    "animal-mammal": [("dog face", "dog, face, pet"), ("cat", "cat, pet")],
    "food-prepared": [("pizza", "cheese, slice"), ("hamburger", "burger")],
    "sky & weather": [("rocket", "space"), ("cloud with rain", "cloud, rain")],
})


@pytest.fixture(scope="module")
def encoder():
    return PromptEncoder("cpu").load()


def test_paraphrases_find_the_caption_they_mean_and_captions_stay_as_typed(encoder, tmp_path):
    matcher = CaptionMatcher(INDEX, encoder, cache_dir=tmp_path)
    for prompt, caption in [("puppy", "dog face: dog, face, pet"), ("slice of pizza", "pizza: cheese, slice"),
                            ("rainy weather", "cloud with rain: cloud, rain"), ("space ship", "rocket: space")]:
        found = matcher.match(prompt)
        assert found.caption == caption and found.changed and 0 < found.similarity < 1, found
    same = matcher.match("  Dog Face ")
    assert same == PromptMatch("Dog Face", "dog face", 1.0) and not same.changed


def test_the_embeddings_are_cached_on_disk_and_reused(encoder, tmp_path, monkeypatch):
    first = CaptionMatcher(INDEX, encoder, cache_dir=tmp_path).load()
    assert len(list(tmp_path.glob("captions-*.safetensors"))) == 1
    second = CaptionMatcher(INDEX, encoder, cache_dir=tmp_path)
    embedded = []
    monkeypatch.setattr(second, "_embed", lambda texts: embedded.append(texts) or first._embed(texts))
    assert second.match("kitten").caption == "cat: cat, pet"
    assert embedded == [["kitten"]]  # the captions came from the cache; only the prompt was embedded
    second.match(" kitten ")
    assert embedded == [["kitten"]]  # asked again (the status, then each model): remembered, not embedded again
    other = ClassIndex({"animal-mammal": [("dog face", "dog")]})
    assert CaptionMatcher(other, encoder, cache_dir=tmp_path)._cache_file() != first._cache_file()


def test_a_damaged_cache_is_rebuilt_and_an_unwritable_one_skipped(encoder, tmp_path):
    first = CaptionMatcher(INDEX, encoder, cache_dir=tmp_path).load()
    cache = first._cache_file()
    cache.write_bytes(cache.read_bytes()[:100])  # truncated
    assert CaptionMatcher(INDEX, encoder, cache_dir=tmp_path).match("puppy").caption == "dog face: dog, face, pet"
    assert cache.stat().st_size > 100  # rewritten whole
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    assert CaptionMatcher(INDEX, encoder, cache_dir=blocked).match("kitten").caption == "cat: cat, pet"


def test_the_runtime_draws_a_prompt_as_its_matched_caption(runtime, monkeypatch):
    runtime.warm_up(steps=1)
    pipe = runtime.pipelines["uvit"]
    asked = []
    original = pipe.stream
    monkeypatch.setattr(pipe, "stream", lambda *a, **k: asked.append(k["prompt"]) or original(*a, **k))
    list(runtime.generate_steps("uvit", Settings(prompt="puppy", steps=2)))
    assert asked == [runtime.match_prompt("puppy").caption] and asked[0] != "puppy"
    with pytest.raises(ValueError, match="longer than"):
        runtime.match_prompt("x") and next(runtime.generate_steps("uvit", Settings(prompt="x" * 5000, steps=2)))


def test_the_caption_is_the_first_tag_caption_the_generators_learnt():
    from maskmamba.prompt_match import tag_caption

    assert tag_caption("dog face", "dog, face, pet, puppy") == "dog face: dog, face, pet"
    assert tag_caption("flag: France", "flag") == "flag: France, flag" and tag_caption("rocket", "") == "rocket"


def test_the_status_names_the_matched_caption_escaped_and_only_when_it_differs():
    assert caption_note(None) == "" and caption_note(PromptMatch("Red heart", "red heart", 1.0)) == ""
    note = caption_note(PromptMatch("star key", "keycap: *", 0.79))
    assert "**keycap: \\*** (similarity 0.79)" in note


TREES = ClassIndex({
    "event": [("pine decoration", "bamboo, celebration, decoration, japanese, pine, plant")],
    "plant-other": [("evergreen tree", "christmas, evergreen, forest, pine, tree"),
                    ("palm tree", "beach, palm, plant, tree, tropical")],
})


def test_shared_words_outweigh_a_surface_match_and_the_weight_can_be_turned_off(encoder):
    embedding_only = CaptionMatcher(TREES, encoder, cache_dir=None, lexical_weight=0)
    assert embedding_only.match("a pine tree").caption.startswith("pine decoration")  # MiniLM alone: the surface word
    found = CaptionMatcher(TREES, encoder, cache_dir=None).match("a pine tree")
    assert found.caption == "evergreen tree: christmas, evergreen, forest" and 0 < found.similarity < 1


def test_content_words_drop_stop_words_and_a_plural_s():
    assert content_words("A pair of Trees, with the bus") == {"pair", "tree", "bus"}
    assert content_words("the of a") == set()


def test_match_counts_counts_class_and_emoji_hits_and_lists_class_misses(encoder):
    matcher = CaptionMatcher(TREES, encoder, cache_dir=None)
    items = [Paraphrase("a pine tree", "1F332", "evergreen tree", "plant-other"),
             Paraphrase("a tropical tree on the beach", "1F332", "evergreen tree", "plant-other"),
             Paraphrase("japanese new year bamboo", "1F334", "palm tree", "plant-other")]
    counts = match_counts(matcher, items, TREES)
    assert (counts["n"], counts["class_hits"], counts["emoji_hits"]) == (3, 2, 1)
    assert counts["class_misses"] == [["japanese new year bamboo", "pine decoration: bamboo, celebration, decoration",
                                       "palm tree"]]
