"""Emoji data set: shards, split, padding, caption cache, CLI errors and the catalogue (no network)."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from maskmamba.data import CaptionBank, EmojiImages, load_manifest
from maskmamba.data import build as build_module
from maskmamba.data import sources
from maskmamba.data.__main__ import main
from maskmamba.data.captions import caption_texts
from maskmamba.data.catalog import EmojiRecord, load_records, select_classes, val_families
from maskmamba.data.imaging import decode_webp, encode_webp, to_square_rgb
from maskmamba.data.paraphrases import PARAPHRASES_DEV_JSON, PARAPHRASES_JSON, bare, class_ids, load_paraphrases, verbatim_hits
from maskmamba.data.record import dataset_record
from maskmamba.data.shards import dequantise_rows, quantise_rows, write_caption_cache, write_shards


def _entry(hexcode, annotation, group, subgroup, tags="", base=""):
    return {
        "hexcode": hexcode,
        "annotation": annotation,
        "group": group,
        "subgroups": subgroup,
        "tags": tags,
        "skintone_base_hexcode": base,
    }


FAKE_OPENMOJI = [
    _entry("1F600", "grinning face", "smileys-emotion", "face-smiling", "face, grin, happy, smile"),
    _entry("1F603", "grinning face with big eyes", "smileys-emotion", "face-smiling", "mouth, open"),
    _entry("1F44B", "waving hand", "people-body", "hand-fingers-open", "hand, wave"),
    _entry("1F44B-1F3FB", "waving hand: light skin tone", "people-body", "hand-fingers-open", "", "1F44B"),
    _entry("1F34E", "red apple", "food-drink", "food-fruit", "apple, fruit, red"),
    _entry("1F3FB", "light skin tone", "component", "skin-tone", "skin tone"),
    _entry("E000", "openmoji", "extras-openmoji", "brand", "logo"),
]


def _disc(size: tuple[int, int], colour: tuple[int, int, int]) -> Image.Image:
    """A filled circle centred on a transparent canvas."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    cx, cy, radius = size[0] / 2, size[1] / 2, min(size) * 0.4
    ImageDraw.Draw(image).ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour + (255,))
    return image


def _ink_box(image: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero((image < 200).any(axis=2))
    return xs.min(), ys.min(), xs.max(), ys.max()


def test_pad_to_square_keeps_circles_round_and_centred():
    out = to_square_rgb(_disc((136, 128), (200, 30, 30)))
    assert out.size == (128, 128) and out.mode == "RGB"
    x0, y0, x1, y1 = _ink_box(np.asarray(out))
    assert abs((x1 - x0) - (y1 - y0)) <= 1  # a stretched 136x128 input would be ~6% wider than tall
    assert abs((x0 + x1) / 2 - 63.5) <= 1 and abs((y0 + y1) / 2 - 63.5) <= 1
    assert np.asarray(out)[0, 0].tolist() == [255, 255, 255]


def test_shards_round_trip(tmp_path):
    colours = [(255, 0, 0), (0, 160, 0), (0, 0, 255), (250, 200, 0), (120, 0, 120)]
    images = [to_square_rgb(_disc((128, 128), c)) for c in colours]
    class_ids, emoji_ids, styles = np.array([3, 1, 4, 1, 5]), np.array([0, 0, 2, 2, 7]), np.array([0, 1, 0, 1, 0])
    paths = write_shards(tmp_path, "train", [encode_webp(im) for im in images], class_ids, emoji_ids, styles, 2)
    assert [p.name for p in paths] == ["train-000.safetensors", "train-001.safetensors", "train-002.safetensors"]
    data = EmojiImages(tmp_path, "train")
    assert len(data) == 5
    np.testing.assert_array_equal(data.class_ids, class_ids)
    np.testing.assert_array_equal(data.emoji_ids, emoji_ids)
    np.testing.assert_array_equal(data.styles, styles)
    image, class_id, emoji = data[2]
    assert image.shape == (3, 128, 128) and image.dtype == torch.float32
    assert -1.0 <= image.min() and image.max() <= 1.0 and (class_id, emoji) == (4, 2)
    pixels = data.load_all_uint8()
    assert pixels.shape == (5, 128, 128, 3) and pixels.dtype == np.uint8
    for decoded, original in zip(pixels, images):
        assert np.abs(decoded.astype(int) - np.asarray(original).astype(int)).mean() < 3
    assert decode_webp(data.webp_bytes(0)).shape == (128, 128, 3)


def test_split_is_deterministic_and_holds_out_five_percent_of_the_emoji():
    families = [f"1F{i:03X}" for i in range(1000)]
    held_out = val_families(families)
    assert len(held_out) == 50 and held_out <= set(families)
    assert val_families(list(reversed(families))) == held_out
    assert val_families(families, seed=1) != held_out
    with_variants = families + ["1F000"] * 5  # five skin-tone variants of one family
    assert sum(f in val_families(with_variants) for f in with_variants) in range(50, 56)


def test_catalogue_classes_and_captions(tmp_path):
    path = tmp_path / "openmoji.json"
    path.write_text(json.dumps(FAKE_OPENMOJI))
    records = load_records(path)
    assert [r.hexcode for r in records] == ["1F600", "1F603", "1F44B", "1F44B-1F3FB", "1F34E"]
    variant = records[3]
    assert variant.family == "1F44B" and variant.tags == ("hand", "wave") and variant.text == "\U0001F44B\U0001F3FB"
    assert select_classes([r.subgroup for r in records], min_images=2) == ["face-smiling", "hand-fingers-open"]
    assert caption_texts(records[0]) == ["grinning face", "grinning face: face, grin, happy", "grinning face: smile",
                                      "a grinning face", "grinning face emoji", "grin", "happy"]
    assert caption_texts(variant) == ["waving hand: light skin tone"]


def _fake_renderer(source, npm_prefix):
    """Discs coloured by code point; Noto 'cannot render' the apple."""

    def render(record):
        if source.style == "noto" and record.hexcode == "1F34E":
            return None
        value = int(record.hexcode.split("-")[-1], 16)
        return to_square_rgb(_disc((136, 128) if source.style == "noto" else (256, 256), (value % 256, 90, 160)))

    return render


def test_build_maps_classes_and_splits_by_emoji(tmp_path, monkeypatch):
    catalogue = tmp_path / "openmoji.json"
    catalogue.write_text(json.dumps(FAKE_OPENMOJI))
    monkeypatch.setattr(build_module, "require", lambda source, prefix, install: source.version or "1.0")
    monkeypatch.setattr(build_module, "openmoji_json", lambda prefix: catalogue)
    monkeypatch.setattr(build_module, "renderer", _fake_renderer)
    monkeypatch.setattr(build_module, "val_families", lambda families: {"1F44B"})
    out = tmp_path / "emoji"
    manifest = build_module.build(out, ["noto", "openmoji"], tmp_path, "test", with_captions=False, min_class_images=3)
    assert manifest == load_manifest(out)
    assert manifest["classes"] == ["face-smiling", "hand-fingers-open"]  # food-fruit has 1 image, dropped
    assert [e["hexcode"] for e in manifest["emoji"]] == ["1F600", "1F603", "1F44B", "1F44B-1F3FB"]
    assert [e["split"] for e in manifest["emoji"]] == ["train", "train", "val", "val"]
    assert manifest["counts"] == {"train": {"noto": 2, "openmoji": 2, "total": 4}, "val": {"noto": 2, "openmoji": 2, "total": 4}}
    val = EmojiImages(out, "val")
    assert val.emoji_ids.tolist() == [2, 2, 3, 3] and val.styles.tolist() == [0, 1, 0, 1]
    assert val.class_ids.tolist() == [1, 1, 1, 1]
    assert EmojiImages(out, "train").class_ids.tolist() == [0, 0, 0, 0]
    record = dataset_record(manifest)
    assert record["n_images"] == 8 and record["styles"] == {"noto": 4, "openmoji": 4}
    assert record["splits"] == {"train": 4, "val": 4} and record["emoji_per_split"] == {"train": 2, "val": 2}
    assert record["images_per_class"] == {"face-smiling": 4, "hand-fingers-open": 4}
    assert record["captions"] == sum(len(e["captions"]) for e in manifest["emoji"]) > 4
    assert [s["package"] for s in record["sources"]] == ["fonts-noto-color-emoji", "openmoji"]
    again = tmp_path / "again"
    build_module.build(again, ["noto", "openmoji"], tmp_path, "test", with_captions=False, min_class_images=3)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in again.iterdir())
    assert all((out / p.name).read_bytes() == p.read_bytes() for p in again.iterdir())  # byte-identical rebuild


def test_split_keeps_every_style_and_skin_tone_of_a_family_together(tmp_path, monkeypatch):
    bases = [_entry(f"1F{i:03X}", f"emoji {i}", "people-body", f"sub-{i % 3}", "tag") for i in range(40)]
    tones = [  # every family has two skin tones, so the held-out families hold some
        _entry(f"1F{i:03X}-{tone}", f"emoji {i}: tone", "people-body", f"sub-{i % 3}", "", f"1F{i:03X}")
        for i in range(40)
        for tone in ("1F3FB", "1F3FF")
    ]
    catalogue = tmp_path / "openmoji.json"
    catalogue.write_text(json.dumps(bases + tones))
    monkeypatch.setattr(build_module, "require", lambda source, prefix, install: source.version or "1.0")
    monkeypatch.setattr(build_module, "openmoji_json", lambda prefix: catalogue)
    monkeypatch.setattr(build_module, "renderer", _fake_renderer)
    styles = list(sources.DEFAULT_STYLES)
    manifest = build_module.build(tmp_path / "out", styles, tmp_path, "test", with_captions=False)
    emoji = manifest["emoji"]
    family = {row: e["hexcode"].split("-")[0] for row, e in enumerate(emoji)}
    val_rows = {row for row, e in enumerate(emoji) if e["split"] == "val"}
    assert 0 < len(val_rows) < len(emoji)
    assert {family[row] for row in val_rows}.isdisjoint(family[row] for row in set(family) - val_rows)
    held_out_bases = {emoji[row]["hexcode"] for row in val_rows if "-" not in emoji[row]["hexcode"]}
    assert len(val_rows) == 6 and {family[row] for row in val_rows} == held_out_bases  # each with its two tones
    for split in ("train", "val"):
        images = EmojiImages(tmp_path / "out", split)
        assert all((row in val_rows) == (split == "val") for row in images.emoji_ids.tolist())
        pairs = set(zip(images.emoji_ids.tolist(), images.styles.tolist()))
        rows = {row for row, e in enumerate(emoji) if e["split"] == split}
        assert pairs == {(row, style) for row in rows for style in range(len(styles))}


def test_caption_quantisation_round_trip_is_close():
    rows = np.random.default_rng(0).normal(size=(500, 384)).astype(np.float32) * np.linspace(0.1, 3, 500)[:, None]
    quantised, scales = quantise_rows(rows)
    assert quantised.dtype == np.int8 and scales.dtype == np.float16
    error = np.abs(dequantise_rows(quantised, scales) - rows).max(axis=1)
    assert np.all(error <= np.abs(rows).max(axis=1) * 0.006)  # half a step (1/254) plus float16 scale rounding


def test_caption_bank_pads_and_masks(tmp_path):
    lengths = np.array([3, 16, 5, 1, 7])
    mask = np.arange(16)[None, :] < lengths[:, None]
    states = np.random.default_rng(1).normal(size=(5, 16, 384)).astype(np.float32) * mask[..., None]
    write_caption_cache(tmp_path / "captions.safetensors", states, mask, np.array([0, 0, 1, 2, 2]))
    bank = CaptionBank(tmp_path)
    assert len(bank) == 5 and bank.max_tokens == 16
    got, got_mask = bank.states([2, 0, 1])
    assert got.shape == (3, 16, 384) and got.dtype == torch.float32
    np.testing.assert_array_equal(got_mask.numpy(), mask[[2, 0, 1]])
    np.testing.assert_allclose(got.numpy(), states[[2, 0, 1]], atol=0.03)
    assert torch.all(got[0, 5:] == 0)
    assert bank.captions_of(0) == [0, 1] and bank.captions_of(1) == [2] and bank.captions_of(2) == [3, 4]
    draws = bank.random_caption(torch.tensor([0, 1, 2] * 50), torch.Generator().manual_seed(0))
    assert set(draws[0::3].tolist()) == {0, 1} and set(draws[1::3].tolist()) == {2}
    assert set(draws[2::3].tolist()) == {3, 4}
    again = bank.random_caption(torch.tensor([0, 1, 2] * 50), torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)


def test_readers_import_without_build_dependencies():
    code = "import sys, maskmamba.data; print(sorted({'sentence_transformers', 'cairosvg'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("installed", "command"),
    [
        ({"npm": None, "apt": "2.0"}, "npm install --prefix {prefix} openmoji@17.0.0"),
        ({"npm": "16.0.0", "apt": "2.0"}, "npm install --prefix {prefix} openmoji@17.0.0"),
        ({"npm": "17.0.0", "apt": None}, "apt-get install -y fonts-noto-color-emoji"),
    ],
)
def test_cli_names_the_install_command_of_a_missing_source(tmp_path, monkeypatch, capsys, installed, command):
    monkeypatch.setattr(sources, "installed_version", lambda source, prefix: installed[source.manager])
    status = main(["build", str(tmp_path / "out"), "--npm-prefix", str(tmp_path)])
    error = capsys.readouterr().err
    assert status == 1 and error.count("\n") == 1
    assert command.format(prefix=tmp_path) in error and "--install" in error
    assert not (tmp_path / "out").exists()


def test_code_point_index_joins_case_padding_and_variation_selectors():
    assert sources.codepoint_key("0023-FE0F-20E3") == sources.codepoint_key("23-20e3") == (0x23, 0x20E3)
    index = sources.CodePointIndex({"23-20e3": "loose", "2764-fe0f": "heart+fe0f", "2764": "heart", "a9": "c"})
    assert index.get("0023-FE0F-20E3") == "loose"
    assert index.get("2764-FE0F") == "heart+fe0f" and index.get("2764") == "heart"
    assert index.get("00A9") == "c" and index.get("1F600") is None
    with pytest.raises(ValueError, match="not a code point"):
        sources.codepoint_key("grinning-face")


def _record(hexcode: str) -> EmojiRecord:
    return EmojiRecord(hexcode, "test", "test-group", "test-subgroup", (), hexcode)


def _ink_centre(image) -> tuple[float, float]:
    ys, xs = np.nonzero((np.asarray(image) < 200).any(axis=2))
    return xs.mean(), ys.mean()


def test_file_renderer_reads_svg_and_raster_art_and_skips_small_rasters(tmp_path):
    (tmp_path / "1f534.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 36 36"><circle cx="18" cy="18" r="16" fill="#d00"/></svg>'
    )
    _disc((256, 256), (0, 0, 200)).save(tmp_path / "1f535.webp")
    _disc((64, 64), (0, 0, 200)).save(tmp_path / "1f7e2.png")
    (tmp_path / "readme.svg").write_text("<svg/>")
    render = sources.FileRenderer(tmp_path)
    red = np.asarray(render(_record("1F534")))
    assert red.shape == (128, 128, 3) and red[64, 64, 0] > 200 and red[0, 0].tolist() == [255, 255, 255]
    blue = np.asarray(render(_record("1F535")))
    assert blue[64, 64, 2] > 180 and blue[64, 64, 0] < 40
    assert render(_record("1F7E2")) is None  # 64 px art is under the 128 px floor
    assert render(_record("1F600")) is None
    with pytest.raises(sources.SourceMissing):
        sources.FileRenderer(tmp_path / "absent")


def test_iconify_renderer_follows_flipped_aliases_and_centres_tall_icons(tmp_path):
    arrow = '<path fill="#000" d="M2 14h10v4H2z"/>'  # a bar at the left edge of a 32x32 box
    icon_set = {
        "prefix": "test",
        "width": 32,
        "height": 32,
        "icons": {
            "left-bar": {"body": arrow},
            "tall": {"body": '<rect x="0" y="0" width="32" height="48"/>', "height": 48},
        },
        "aliases": {"right-bar": {"parent": "left-bar", "hFlip": True}},
    }
    (tmp_path / "icons.json").write_text(json.dumps(icon_set))
    (tmp_path / "chars.json").write_text(json.dumps({"1f448": "left-bar", "1f449": "right-bar", "1f7e5": "tall"}))
    render = sources.IconifyRenderer(tmp_path / "icons.json", tmp_path / "chars.json")
    left_x, _ = _ink_centre(render(_record("1F448")))
    right_x, _ = _ink_centre(render(_record("1F449")))
    assert left_x < 40 and right_x > 88 and abs(left_x + right_x - 127) < 3
    tall = np.asarray(render(_record("1F7E5")))
    x0, y0, x1, y1 = _ink_box(tall)
    assert (y0, y1) == (0, 127) and abs((x0 + x1) / 2 - 63.5) <= 1 and 80 <= x1 - x0 + 1 <= 90  # 32:48, centred
    assert render(_record("1F600")) is None
    with pytest.raises(KeyError, match="no icon"):
        sources.iconify_svg(icon_set, "missing")


def _installed_sources(prefix: Path) -> list:
    found = []
    for source in sources.SOURCES.values():
        try:
            sources.require(source, prefix)
        except sources.SourceMissing:
            continue
        found.append(source)
    return found


@pytest.mark.slow
def test_real_emoji_render_in_every_installed_style():
    prefix = sources.default_npm_prefix()
    installed = _installed_sources(prefix)
    if sources.OPENMOJI not in installed:
        pytest.skip(f"openmoji@17.0.0 (the catalogue) is not installed (npm prefix {prefix})")
    records = {r.hexcode: r for r in load_records(sources.openmoji_json(prefix))}
    picks = ["1F600", "1F436", "1F44B-1F3FD", "2764", "0023-FE0F-20E3"]
    for source in installed:
        render = sources.renderer(source, prefix)
        for hexcode in picks:
            pixels = np.asarray(render(records[hexcode]))
            assert pixels.shape == (128, 128, 3)
            assert (pixels < 230).any(axis=2).mean() > 0.05, (source.style, hexcode)
            assert pixels[0, 0].tolist() == [255, 255, 255]
            cx, cy = _ink_centre(pixels)
            assert abs(cx - 63.5) < 16 and abs(cy - 63.5) < 16, (source.style, hexcode)
    if sources.FLUENT_3D in installed:  # its country flags are Noto's, so they are skipped
        assert sources.renderer(sources.FLUENT_3D, prefix)(records["1F1FA-1F1F8"]) is None
    if sources.NOTO in installed:
        noto = sources.renderer(sources.NOTO, prefix)
        assert noto(replace(records["1F600"], hexcode="1F600-1F436")) is None


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", [PARAPHRASES_JSON, PARAPHRASES_DEV_JSON])
def test_paraphrases_are_many_distinct_and_name_classes_of_the_data_set(path):
    paraphrases = load_paraphrases(REPO / path)
    assert len(paraphrases) >= 60
    assert len({p.prompt.lower() for p in paraphrases}) == len(paraphrases)
    classes = list(json.loads((REPO / "assets/results/dataset.json").read_text())["images_per_class"])
    ids = class_ids(paraphrases, classes)
    assert [classes[i] for i in ids] == [p.class_name for p in paraphrases]
    with pytest.raises(ValueError, match="not classes"):
        class_ids(paraphrases, [name for name in classes if name != paraphrases[0].class_name])


def test_verbatim_hits_is_case_blind_and_drops_a_leading_article():
    captions = ["dog face: dog, puppy, pet", "hot beverage: coffee, drink, hot"]
    assert verbatim_hits(["A Puppy", "hot drink", "the coffee", "kitten"], captions) == {
        "A Puppy": [captions[0]],
        "the coffee": [captions[1]],
    }


def test_the_development_set_shares_no_prompt_with_the_evaluation_set():
    evaluation = {bare(p.prompt) for p in load_paraphrases(REPO / PARAPHRASES_JSON)}
    assert not evaluation & {bare(p.prompt) for p in load_paraphrases(REPO / PARAPHRASES_DEV_JSON)}


@pytest.mark.parametrize("path", [PARAPHRASES_JSON, PARAPHRASES_DEV_JSON])
def test_no_caption_contains_a_paraphrase_and_each_names_its_catalogue_emoji(path):
    prefix = sources.default_npm_prefix()
    if sources.OPENMOJI not in _installed_sources(prefix):
        pytest.skip(f"openmoji@17.0.0 (the catalogue) is not installed (npm prefix {prefix})")
    records = {r.hexcode: r for r in load_records(sources.openmoji_json(prefix))}
    captions = [caption for record in records.values() for caption in caption_texts(record)]
    paraphrases = load_paraphrases(REPO / path)
    assert verbatim_hits([p.prompt for p in paraphrases], captions) == {}
    for p in paraphrases:
        assert (records[p.hexcode].annotation, records[p.hexcode].subgroup) == (p.annotation, p.class_name)
