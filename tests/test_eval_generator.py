"""Generator evaluation: the CLI end to end on a tiny synthetic data set, the classifier and the top-5 metric."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import save_file

from maskmamba import build_model, load_generator
from maskmamba.checksums import sha256
from maskmamba.data.dataset import CAPTIONS
from maskmamba.data.imaging import encode_webp
from maskmamba.data.shards import write_manifest, write_shards
from maskmamba.eval import generator as evaluation, matched_change, merge
from maskmamba.eval.classifier import topk_accuracy, train_classifier
from maskmamba.eval.paraphrases import Paraphrases, load_matched, load_states, matched_path, write_matched, write_states
from maskmamba.prompt_match import PromptMatch
from maskmamba.models import FILES, save_weights
from maskmamba.models.tokenizer import VQTokenizer
from maskmamba.settings import SamplingSettings

COLOURS = np.array([[220, 40, 40], [40, 60, 220]])  # class 0 red, class 1 blue
VARIANTS = ("maskmamba-serial-half", "uvit")


def coloured_images(classes: np.ndarray, size: int, seed: int) -> np.ndarray:
    """uint8 (N,size,size,3): a disc of the class colour (jittered) on white, with pixel noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
    colour = COLOURS[classes] + rng.integers(-25, 26, (len(classes), 3))
    images = np.where(disc[None, ..., None], colour[:, None, None], 255) + rng.integers(-20, 21, (len(classes), size, size, 3))
    return images.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """6 emoji (rows 0-3 train, 4-5 val) of 2 classes, 2 images each, each with an annotation and a tag caption."""
    root = tmp_path_factory.mktemp("data")
    classes, splits = np.array([0, 0, 1, 1, 0, 1]), ["train"] * 4 + ["val"] * 2
    for split in ("train", "val"):
        rows = np.repeat([r for r, s in enumerate(splits) if s == split], 2)
        webps = [encode_webp(Image.fromarray(x)) for x in coloured_images(classes[rows], 128, len(rows))]
        write_shards(root, split, webps, classes[rows], rows, np.tile([0, 1], len(rows) // 2), shard_size=5)
    table = [{"class_id": int(c), "split": s, "annotation": f"emoji {r}",
              "captions": [f"emoji {r}", f"emoji {r}: tag, tag, tag", f"an emoji {r}"]}
             for r, (c, s) in enumerate(zip(classes, splits))]
    lengths = np.array([3, 6, 4] * len(table))
    rng = np.random.default_rng(0)
    save_file({
        "tokens": rng.integers(-127, 128, (lengths.sum(), 384), dtype=np.int8),
        "scales": np.full(lengths.sum(), 0.01, dtype=np.float16),
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "caption_emoji": np.repeat(np.arange(len(table)), 3).astype(np.int64),
    }, str(root / CAPTIONS), metadata={"max_tokens": "16"})
    write_manifest(root, {"classes": ["red", "blue"], "emoji": table})
    return root


class FakeEncoder:
    """Random prompt states of the MiniLM shape, a prompt's length in words + 2 tokens valid."""

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.arange(16)[None] < torch.tensor([[len(p.split()) + 2] for p in prompts])
        return torch.randn(len(prompts), 16, 384) * mask[..., None], mask


@pytest.fixture(scope="module")
def paraphrases(tmp_path_factory):
    """A 3-prompt paraphrase set (the data v2 format) with its cached states."""
    path = tmp_path_factory.mktemp("eval") / "paraphrases.json"
    path.write_text(json.dumps({"prompts": [
        {"prompt": "a crimson ball", "class": "red", "hexcode": "1F534", "annotation": "red circle"},
        {"prompt": "navy circle", "class": "blue", "hexcode": "1F535", "annotation": "blue circle"},
        {"prompt": "something red", "class": "red", "hexcode": "1F534", "annotation": "red circle"}]}))
    write_states(path, FakeEncoder())
    write_matched(path, FakeMatcher())
    return path


class FakeMatcher:
    """Every prompt drawn as the tag caption of emoji 0 (a red one)."""

    def match(self, prompt: str) -> PromptMatch:
        return PromptMatch(prompt, "emoji 0: tag, tag, tag", 0.5)


def test_paraphrase_states_round_trip_and_refuse_a_changed_set(paraphrases, tmp_path):
    states, mask = load_states(paraphrases)
    assert states.shape == (3, 16, 384) and mask.sum(1).tolist() == [5, 4, 4]
    assert (states[~mask] == 0).all() and (states[mask] != 0).any()
    assert Paraphrases.load(paraphrases).labels(["blue", "red"]).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="not among the model's classes: red"):
        Paraphrases.load(paraphrases).labels(["blue"])
    changed = tmp_path / "paraphrases.json"
    changed.write_text(paraphrases.read_text().replace("navy", "dark blue"))
    (tmp_path / "paraphrases.states.safetensors").write_bytes(
        (paraphrases.parent / "paraphrases.states.safetensors").read_bytes())
    with pytest.raises(ValueError, match="another version"):
        load_states(changed)


def test_matched_captions_refuse_a_changed_set_and_must_be_captions_of_the_data(paraphrases, data_dir, tmp_path):
    changed = tmp_path / "paraphrases.json"
    changed.write_text(paraphrases.read_text().replace("navy", "dark blue"))
    assert load_matched(changed) is None  # none written for it
    matched_path(changed).write_bytes(matched_path(paraphrases).read_bytes())
    with pytest.raises(ValueError, match="another version"):
        load_matched(changed)
    manifest = json.loads((data_dir / "manifest.json").read_text())
    prompts = evaluation.matched_paraphrase_prompts(str(paraphrases), str(data_dir), manifest, 2, torch.device("cpu"))
    assert prompts.labels.tolist() == [0, 0, 1, 1, 0, 0] and prompts.cond.text.shape[:2] == (6, 16)  # intended classes
    unknown = tmp_path / "unknown" / "paraphrases.json"
    unknown.parent.mkdir()
    unknown.write_text(paraphrases.read_text())
    matched_path(unknown).write_text(matched_path(paraphrases).read_text().replace("emoji 0:", "emoji 9:"))
    with pytest.raises(ValueError, match="not in .*captions: emoji 9"):
        evaluation.matched_paraphrase_prompts(str(unknown), str(data_dir), manifest, 1, torch.device("cpu"))


def test_paraphrase_grid_draws_every_prompt_labelled(paraphrases, tiny_checkpoint, tmp_path):
    from maskmamba.eval.paraphrase_grid import COLUMNS, LABEL_HEIGHT, TILE, paraphrase_grid
    assets = tmp_path / "assets"
    shutil.copytree(tiny_checkpoint, assets / "maskmamba-serial-half")
    config = json.loads((assets / "maskmamba-serial-half" / "config.json").read_text())
    (assets / "maskmamba-serial-half" / "config.json").write_text(json.dumps(config | {"default_cfg": 1.5}))
    assert SamplingSettings.for_checkpoint(config | {"default_cfg": 1.5}).cfg_scale == 1.5
    sheet = paraphrase_grid("maskmamba-serial-half", assets, paraphrases, steps=2, prompt_encoder=FakeEncoder())
    assert sheet.size == (COLUMNS * TILE, TILE + LABEL_HEIGHT)
    pixels = np.asarray(sheet)
    assert (pixels[:TILE, : 3 * TILE] != 255).any() and (pixels[:TILE, 3 * TILE :] == 255).all()  # 3 tiles drawn
    assert (pixels[TILE + 4 :, :TILE] < 128).any()  # a label under the first


def test_paraphrase_grid_against_a_second_model_pairs_each_prompts_drawings(paraphrases, tiny_checkpoint, tmp_path):
    from maskmamba.eval.paraphrase_grid import COLUMNS, LABEL_HEIGHT, TILE, paraphrase_grid

    assets, other = tmp_path / "assets", tmp_path / "other" / "maskmamba-serial-half"
    shutil.copytree(tiny_checkpoint, assets / "maskmamba-serial-half")
    shutil.copytree(tiny_checkpoint, other)
    sheet = paraphrase_grid("maskmamba-serial-half", assets, paraphrases, steps=2, prompt_encoder=FakeEncoder(),
                            against=other)
    assert sheet.size == (COLUMNS * TILE, LABEL_HEIGHT + TILE + LABEL_HEIGHT)  # a title line, one row of 5 pairs
    pixels = np.asarray(sheet)[LABEL_HEIGHT : LABEL_HEIGHT + TILE].astype(int)
    assert (np.asarray(sheet)[:LABEL_HEIGHT] < 128).any()  # the title
    for i in range(3):  # 3 prompts, each drawn by both (same weights and seed: nearly the same picture; a near-tie
        # among a random model's token scores can round the other way)
        left, right = pixels[:, 2 * i * TILE : (2 * i + 1) * TILE], pixels[:, (2 * i + 1) * TILE : (2 * i + 2) * TILE]
        assert (left != 255).any() and np.abs(left - right).mean() < 4
    assert (pixels[:, 6 * TILE :] == 255).all()


def test_paraphrase_grid_against_a_folder_without_a_tokenizer_uses_the_first_ones(paraphrases, tiny_checkpoint,
                                                                                  tmp_path):
    from maskmamba.eval.paraphrase_grid import TILE, paraphrase_grid

    assets, other = tmp_path / "assets", tmp_path / "run" / "pack" / "maskmamba-serial-half"
    shutil.copytree(tiny_checkpoint, assets / "maskmamba-serial-half")
    shutil.copytree(tiny_checkpoint, other, ignore=shutil.ignore_patterns("tokenizer"))
    assert not (other / "tokenizer").exists() and not (other.parent / "tokenizer").exists()
    sheet = paraphrase_grid("maskmamba-serial-half", assets, paraphrases, steps=1, prompt_encoder=FakeEncoder(),
                            against=other)
    assert sheet.size[1] > TILE
    encoder = RecordingEncoder()
    with pytest.raises(FileNotFoundError, match="no checkpoint folder"):
        paraphrase_grid("maskmamba-serial-half", assets, paraphrases, steps=1, prompt_encoder=encoder,
                        against=tmp_path / "nowhere" / "maskmamba-serial-half")
    assert encoder.texts == []  # it failed before the first model drew anything


class RecordingEncoder(FakeEncoder):
    """FakeEncoder that keeps every text it was asked to encode."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        self.texts += prompts
        return super().encode(prompts)


def test_paraphrase_grid_matched_draws_the_demos_caption(paraphrases, tiny_checkpoint, tmp_path):
    from maskmamba.eval.paraphrase_grid import paraphrase_grid

    assets = tmp_path / "assets"
    shutil.copytree(tiny_checkpoint, assets / "maskmamba-serial-half")
    encoder = RecordingEncoder()
    paraphrase_grid("maskmamba-serial-half", assets, paraphrases, steps=2, prompt_encoder=encoder, matched=True)
    assert set(encoder.texts) == {"emoji 0: tag, tag, tag"}  # FakeMatcher's caption, never the prompts
    bare = tmp_path / "bare.json"
    bare.write_text(paraphrases.read_text())
    with pytest.raises(SystemExit, match="paraphrase-states"):
        paraphrase_grid("maskmamba-serial-half", assets, bare, steps=2, prompt_encoder=encoder, matched=True)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Untrained tiny generators (2 classes) per variant (serial-half also stored in int8), serial-half also at
    head and tail, and a tokenizer."""
    root = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    for variant in VARIANTS:
        build_model(variant, "tiny", num_classes=2).save_pretrained(root / variant)
    save_weights(load_generator(root / VARIANTS[0]), root / VARIANTS[0], "int8")
    for position in ("head", "tail"):
        build_model(VARIANTS[0], "tiny", num_classes=2, cond_position=position).save_pretrained(root / f"{VARIANTS[0]}@{position}")
    VQTokenizer(enc_channels=(8, 8, 8, 8), dec_channels=(8, 8, 8, 8), dec_blocks=1).save_pretrained(root / "tokenizer")
    return root


class StandIn:
    """Mean colour of each image quadrant (12 features), counting the images it sees."""

    def __init__(self):
        self.seen = 0

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        self.seen += len(images)
        x = images.float().cpu()
        h = x.shape[1] // 2
        quads = [x[:, i * h : (i + 1) * h, j * h : (j + 1) * h].mean(dim=(1, 2)) for i in range(2) for j in range(2)]
        return torch.cat(quads, dim=1).double().numpy()


def test_cli_end_to_end_writes_finite_results_and_plots(data_dir, checkpoints, paraphrases, tmp_path):
    torch.set_num_threads(2)
    out, plots = tmp_path / "results" / "generators.json", tmp_path / "plots"
    serial = checkpoints / VARIANTS[0]
    argv = [
        "--data", str(data_dir), "--checkpoints", str(checkpoints), "--variants", ",".join(VARIANTS),
        "--tokenizer", str(checkpoints / "tokenizer"), "--n", "10", "--sweep", "1,3", "--sweep-n", "6",
        "--steps", "2", "--steps-curve", "1,2", "--curve-n", "4", "--batch", "4", "--device", "cpu",
        "--classifier-epochs", "1", "--work", str(tmp_path / "work"), "--out", str(out), "--plots", str(plots),
        "--paraphrases", str(paraphrases), "--paraphrase-samples", "2",
        "--position-runs", f"head={serial}@head,middle={serial},tail={serial}@tail",
    ]
    features = StandIn()
    results = evaluation.main(argv, features=features)
    assert json.loads(out.read_text()) == results
    assert list(json.loads(out.read_text()))[:2] == ["classifier_real_acc", "classifier_real_top5"]
    assert 0 <= results["classifier_real_acc"] <= 1
    assert set(results["variants"]) == set(VARIANTS)
    for name, entry in results["variants"].items():
        assert entry["weights_sha256"] == {FILES["fp32"]: sha256(checkpoints / name / FILES["fp32"])}
        assert entry["best_cfg"] in (1, 3) and [r["cfg"] for r in entry["cfg_sweep"]] == [1, 3]
        assert entry["best_cfg"] == min(entry["cfg_sweep"], key=lambda r: r["fid"])["cfg"]
        assert (entry["n_images"], entry["steps"], entry["n_prompts"]) == (10, 2, 6)
        values = [entry["fid"], entry["class_acc"], entry["prompt_top5"], *(r["fid"] for r in entry["cfg_sweep"])]
        assert all(math.isfinite(v) for v in values) and entry["fid"] >= 0
        assert 0 < entry["fid_std"] < math.inf and all("fid_std" not in r for r in entry["cfg_sweep"])  # final only
        assert entry["prompt_top5"] == 1.0  # two classes: the true one is always in the top 5
        assert set(entry["prompt_top5_by_split"]) == {"train", "val"}
        assert entry["paraphrase_top5"] == 1.0 and entry["n_paraphrase_images"] == 6
        assert entry["paraphrase_top5_se"] == 0.0  # every prompt hit on every seed: no spread
        assert entry["storage"] == "fp32"
    assert [p["steps"] for p in results["fid_vs_steps"]["points"]] == [1, 2]
    assert [p["position"] for p in results["fid_vs_position"]["points"]] == ["head", "middle", "tail"]
    curve_fids = [p["fid"] for p in results["fid_vs_steps"]["points"] + results["fid_vs_position"]["points"]]
    assert all(math.isfinite(f) for f in curve_fids)
    assert "maskmamba.eval generator" in results["command"]
    names = {p.name for p in plots.glob("*.png")}
    assert names == {"generators_fid_vs_cfg.png", "generators_fid_vs_steps.png", "generators_fid_vs_position.png"}
    assert all(0 < p.stat().st_size < 60_000 for p in plots.glob("*.png"))
    # images seen: 8 real train images, then per variant 2 x 6 (sweep) + 10, then 2 x 4 and 3 x 4 (curves)
    assert features.seen == 8 + 2 * 22 + 8 + 12
    assert "shipped" not in results and "default_cfg" not in json.loads((serial / "config.json").read_text())

    # a second run evaluating nothing reuses the cached classifier and real features and keeps the variants
    again = StandIn()
    rerun = evaluation.main([*argv[:4], "--variants", "", *argv[6:-2]], features=again)
    assert again.seen == 0
    assert rerun["variants"] == results["variants"]
    assert rerun["classifier_real_acc"] == results["classifier_real_acc"]


def test_shipped_section_default_cfg_and_storage_side_by_side(data_dir, checkpoints, paraphrases, tmp_path):
    torch.set_num_threads(2)
    serial = checkpoints / VARIANTS[0]
    out = tmp_path / "generators.json"
    argv = [
        "--data", str(data_dir), "--checkpoints", str(checkpoints), "--variants", VARIANTS[0],
        "--tokenizer", str(checkpoints / "tokenizer"), "--n", "6", "--sweep", "1,3", "--sweep-n", "4",
        "--steps", "2", "--steps-curve", "", "--batch", "3", "--device", "cpu", "--classifier-epochs", "1",
        "--work", str(tmp_path / "work"), "--out", str(out), "--plots", str(tmp_path / "plots"),
        "--paraphrases", str(paraphrases), "--paraphrase-samples", "1", "--shipped", VARIANTS[0], "--write-default-cfg",
        "--compare-storage", "int8",
    ]
    results = evaluation.main(argv, features=StandIn())
    assert list(json.loads(out.read_text()))[:3] == ["classifier_real_acc", "classifier_real_top5", "shipped"]
    shipped, entry = results["shipped"][VARIANTS[0]], results["variants"][VARIANTS[0]]
    assert set(evaluation.SHIPPED_KEYS) <= set(shipped) and shipped["fid"] == entry["fid"]
    assert json.loads((serial / "config.json").read_text())["default_cfg"] == entry["best_cfg"]
    compared = entry["storage_compare"]["int8"]
    assert compared["fid_change"] == pytest.approx(compared["fid"] - entry["fid"], abs=1e-3)
    assert math.isfinite(compared["fid"]) and 0 <= compared["class_acc"] <= 1
    assert load_generator(serial).config == load_generator(checkpoints / VARIANTS[0], "int8").config


def test_paraphrases_only_scores_the_written_and_the_matched_prompts_without_fid(data_dir, checkpoints, paraphrases,
                                                                                tmp_path):
    assert load_matched(paraphrases) == ["emoji 0: tag, tag, tag"] * 3
    out = tmp_path / "check.json"
    argv = [
        "--data", str(data_dir), "--checkpoints", str(checkpoints), "--variants", VARIANTS[0],
        "--tokenizer", str(checkpoints / "tokenizer"), "--steps", "2", "--batch", "3", "--device", "cpu",
        "--classifier-epochs", "1", "--work", str(tmp_path / "work"), "--out", str(out),
        "--paraphrases", str(paraphrases), "--paraphrase-samples", "2", "--paraphrases-only",
    ]
    features = StandIn()
    entry = evaluation.main(argv, features=features)["variants"][VARIANTS[0]]
    assert features.seen == 0 and "fid" not in entry  # no Inception features, real or generated
    assert 0 <= entry["paraphrase_top5"] <= 1 and 0 <= entry["paraphrase_top5_matched"] <= 1
    assert 0 <= entry["paraphrase_top5_se"] <= 0.5 and 0 <= entry["paraphrase_top5_matched_se"] <= 0.5
    config = json.loads((checkpoints / VARIANTS[0] / "config.json").read_text())
    assert entry["n_paraphrase_images"] == 6 and entry["cfg"] == config.get("default_cfg", 1.0)  # else the first --sweep


def test_the_sampler_settings_reach_every_image_and_are_recorded(data_dir, checkpoints, paraphrases, tmp_path, monkeypatch):
    seen = []
    real = evaluation.maskgit

    def spy(logits_fn, cond, grid, mask_id, settings, *rest, **kw):
        seen.append(settings)
        return real(logits_fn, cond, grid, mask_id, settings, *rest, **kw)

    monkeypatch.setattr(evaluation, "maskgit", spy)
    argv = [
        "--data", str(data_dir), "--checkpoints", str(checkpoints), "--variants", VARIANTS[0],
        "--tokenizer", str(checkpoints / "tokenizer"), "--steps", "2", "--batch", "3", "--device", "cpu",
        "--classifier-epochs", "1", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "t.json"),
        "--paraphrases", str(paraphrases), "--paraphrase-samples", "1", "--paraphrases-only",
        "--cfg-schedule", "linear", "--temperature", "0.8", "--choice-temperature", "0",
    ]
    entry = evaluation.main(argv, features=StandIn())["variants"][VARIANTS[0]]
    assert (entry["temperature"], entry["choice_temperature"], entry["cfg_schedule"]) == (0.8, 0.0, "linear")
    assert seen and all((s.temperature, s.choice_temperature, s.steps, s.cfg_schedule) == (0.8, 0.0, 2, "linear")
                        for s in seen)
    with pytest.raises(SystemExit, match="choice temperature must be"):
        evaluation.main([*argv[:-1], "-1"], features=StandIn())


def test_judge_and_real_features_are_rebuilt_for_another_data_set(data_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(data_dir, other)
    assert evaluation.data_key(str(data_dir)) != evaluation.data_key(str(other))
    assert evaluation.data_key(str(data_dir), inception="a") != evaluation.data_key(str(data_dir), inception="b")
    work = tmp_path / "work"
    first = StandIn()
    evaluation.real_stats(work, str(data_dir), first, 4, "inception-a")
    again = StandIn()
    evaluation.real_stats(work, str(data_dir), again, 4, "inception-a")
    evaluation.real_stats(work, str(data_dir), again, 4, "inception-b")
    assert (first.seen, again.seen) == (8, 8)  # reused once, recomputed for other Inception weights


def test_missing_checkpoint_stops_before_any_work(data_dir, tmp_path):
    with pytest.raises(SystemExit, match="no generator checkpoint"):
        evaluation.main(["--data", str(data_dir), "--checkpoints", str(tmp_path), "--variants", "transformer"])


def test_classifier_learns_two_colours():
    torch.set_num_threads(2)
    labels = np.tile([0, 1], 48)
    images, val_images = coloured_images(labels[:64], 64, 1), coloured_images(labels[64:], 64, 2)
    _, acc = train_classifier(images, labels[:64], val_images, labels[64:], "cpu", epochs=4, batch_size=16, lr=3e-3)
    assert acc > 0.9


def test_topk_accuracy_on_hand_made_logits():
    logits = torch.tensor([
        [9.0, 8, 7, 6, 5, 4, 3],  # label 4: 5th largest -> top-5 hit, top-1 miss
        [9.0, 8, 7, 6, 5, 4, 3],  # label 5: 6th largest -> miss
        [0.0, 0, 0, 0, 0, 0, 1],  # label 6: largest -> hit for both
        [1.0, 2, 3, 4, 5, 6, 7],  # label 1: 6th largest -> miss
    ])
    labels = torch.tensor([4, 5, 6, 1])
    assert topk_accuracy(logits, labels, 5) == pytest.approx(0.5)
    assert topk_accuracy(logits, labels, 1) == pytest.approx(0.25)
    assert topk_accuracy(logits[:2, :3], torch.tensor([2, 1]), 5) == 1.0  # k is capped at the class count


def test_parts_scored_in_separate_runs_merge_under_one_judge(tmp_path):
    judge = {"classifier_real_acc": 0.9, "classifier_real_top5": 0.99, "data": "d", "tokenizer": "t"}
    entry = {"fid": 20.0, "best_cfg": 2.0, "sweep_n": 4, "cfg_sweep": [{"cfg": 2.0, "fid": 20.0}]}
    first = judge | {"variants": {"uvit": entry}, "shipped": {"uvit": {"fid": 20.0}}}
    second = judge | {"variants": {"transformer": entry | {"fid": 30.0}},
                      "fid_vs_steps": {"variant": "transformer", "cfg": 2.0, "n_images": 4, "points": [{"steps": 4, "fid": 40.0}]}}
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path, part in zip(paths, (first, second)):
        path.write_text(json.dumps(part))
    out = tmp_path / "merged.json"
    merged = merge.main([*map(str, paths), "--out", str(out), "--plots", str(tmp_path)])
    assert set(merged["variants"]) == {"uvit", "transformer"} and set(merged["shipped"]) == {"uvit"}
    assert list(json.loads(out.read_text()))[:3] == ["classifier_real_acc", "classifier_real_top5", "shipped"]
    assert (tmp_path / "generators_fid_vs_cfg.png").is_file() and (tmp_path / "generators_fid_vs_steps.png").is_file()
    record = merge.main([*map(str, paths), "--out", str(tmp_path / "record.json"), "--drop-shipped"])
    assert "shipped" not in record and set(record["variants"]) == {"uvit", "transformer"}
    paths[1].write_text(json.dumps(second | {"classifier_real_acc": 0.5}))
    with pytest.raises(ValueError, match="different judges"):
        merge.main([*map(str, paths), "--out", str(out), "--replace"])


def test_matched_change_draws_only_the_rematched_prompts_both_ways(data_dir, checkpoints, paraphrases, tmp_path):
    work = tmp_path / "work"
    evaluation.get_classifier(work, str(data_dir), 2, torch.device("cpu"), 1)
    old = json.loads(matched_path(paraphrases).read_text())
    old["captions"][1] = "emoji 2: tag, tag, tag"  # the second prompt was matched to a blue emoji before
    (tmp_path / "old.json").write_text(json.dumps(old))
    argv = ["--old", str(tmp_path / "old.json"), "--data", str(data_dir), "--paraphrases", str(paraphrases),
            "--checkpoints", str(checkpoints), "--variants", VARIANTS[0], "--tokenizer", str(checkpoints / "tokenizer"),
            "--judge", str(work / "classifier"), "--samples", "2", "--batch", "3", "--device", "cpu",
            "--out", str(tmp_path / "out.json")]
    change = matched_change.main(argv)["matched_change"]
    assert (change["prompts"], change["old"], change["new"]) == (
        ["navy circle"], ["emoji 2: tag, tag, tag"], ["emoji 0: tag, tag, tag"])
    entry = change["variants"][VARIANTS[0]]
    assert entry["hits_old"] == entry["hits_new"] == [2] and entry["top5_matched_change"] == 0  # 2 classes: all in top 5
    old["sha256"] = "another"
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(SystemExit, match="another version"):
        matched_change.main(argv)


def test_matched_change_counts_the_images_whose_top5_holds_the_intended_class(data_dir, monkeypatch):
    logits = torch.zeros(4, 7)
    logits[:, 6] = torch.tensor([9.0, 9.0, -9.0, 9.0])  # class 6 in the top 5 of images 0, 1 and 3 only
    logits[2, :5] = 1.0
    monkeypatch.setattr(matched_change, "judge", lambda *args, **kwargs: (None, logits))
    bench = evaluation.Bench(torch.device("cpu"), None, None, None, None, None, None, None, None, 2, 0,
                             SamplingSettings())
    manifest = json.loads((data_dir / "manifest.json").read_text())
    hits = matched_change.hits_per_prompt(None, bench, ["emoji 0", "emoji 1"], torch.tensor([6, 6]), str(data_dir),
                                          manifest, 2, 2.0, "test")
    assert hits == [2, 1]


@pytest.mark.parametrize("count", ["1", "-2"])
def test_a_spread_of_fewer_than_two_resamples_is_refused_up_front(count, capsys):
    required = ["--data", "DATA", "--checkpoints", "PACKS"]
    with pytest.raises(SystemExit):
        evaluation.build_parser().parse_args([*required, "--fid-bootstrap", count])
    assert "at least 2 resamples" in capsys.readouterr().err
    assert evaluation.build_parser().parse_args([*required, "--fid-bootstrap", "0"]).fid_bootstrap == 0


def test_best_scale_breaks_an_fid_tie_by_class_accuracy():
    """Within CFG_FID_TIE of the lowest FID the scale that draws the asked-for class more often wins; beyond it, FID."""
    tie = evaluation.CFG_FID_TIE
    sweep = [{"cfg": 1.0, "fid": 56.1, "class_acc": 0.62}, {"cfg": 2.0, "fid": 56.1 + tie / 2, "class_acc": 0.79},
             {"cfg": 3.0, "fid": 56.1 + 1.5 * tie, "class_acc": 0.84}]
    assert evaluation.best_scale(sweep) == 2.0
    sweep[1]["fid"] = 56.1 + 1.1 * tie
    assert evaluation.best_scale(sweep) == 1.0
    assert evaluation.best_scale([{"cfg": 4.0, "fid": 80.0, "class_acc": 0.5}]) == 4.0


def test_the_paraphrase_error_counts_prompts_not_only_images():
    """Two prompts of four seeds: all hit against none gives a wide error (the prompts differ); half hit within
    each prompt gives none between prompts, whatever the seeds did."""
    apart = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0], dtype=torch.bool)
    mixed = torch.tensor([1, 0, 1, 0, 0, 1, 0, 1], dtype=torch.bool)
    assert evaluation.prompt_level_se(apart, 4) == pytest.approx(0.5)  # rates 1 and 0: std 0.707 / sqrt 2
    assert evaluation.prompt_level_se(mixed, 4) == 0.0
    assert evaluation.prompt_level_se(apart, 8) is None  # one prompt: no spread to speak of
