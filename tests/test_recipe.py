"""The training recipe: parameter groups, the lr schedule, augmentation, caption variety, best-checkpoint export."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from maskmamba import build_model
from maskmamba.models import stored_formats
from maskmamba.data.augment import Augment, augmented, mirror_safe, warp
from maskmamba.data.captions import caption_texts, is_tag_caption, with_article
from maskmamba.data.catalog import EmojiRecord
from maskmamba.data.dataset import CAPTIONS
from maskmamba.data.tokens import CODEBOOK_KEY, TOKENS, load_token_copies
from maskmamba.train import generator as train_generator
from maskmamba.train.curves import read_curves
from maskmamba.train.optim import configure_optimizers, cosine_lr, set_lr, split_decay


@pytest.mark.parametrize("variant", ["maskmamba-serial-half", "uvit", "mmamba"])
def test_weight_decay_only_on_matrices(variant):
    model = build_model(variant, "tiny", num_classes=5)
    decay, keep = split_decay(model)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed, kept = {names[id(p)] for p in decay}, {names[id(p)] for p in keep}
    assert len(decayed) + len(kept) == len(names) and not decayed & kept
    for name in kept:  # nothing a matrix product multiplies is left undecayed
        assert name.endswith(("bias", "A_log", "D", "dt_bias", "_pos", "null", "pad")) or "norm" in name \
            or "emb" in name, name
    for name in decayed:
        assert name.endswith(("weight", "x_proj", "dt_proj")) and "norm" not in name and "emb" not in name, name
    assert {"tok_emb.weight", "cond.class_emb.weight", "row_pos", "col_pos", "cond.slot_pos"} <= kept
    if variant != "uvit":
        assert any(n.endswith("A_log") for n in kept) and any(n.endswith("scan.D") for n in kept)
    optimizer = configure_optimizers(model, 1e-3, 0.05)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]


def test_undecayed_parameters_do_not_shrink_under_zero_gradient():
    model = build_model("maskmamba-serial-half", "tiny", num_classes=5)
    optimizer = configure_optimizers(model, 0.1, 0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    after = dict(model.named_parameters())
    assert torch.equal(after["row_pos"], before["row_pos"])
    a_log = next(n for n in before if n.endswith("A_log"))
    assert torch.equal(after[a_log], before[a_log])
    assert after["head.weight"].norm() < before["head.weight"].norm()  # decayed: 0.1 * 0.5 shrink


def test_cosine_lr_warms_up_then_decays_to_its_floor():
    lrs = [cosine_lr(s, 1.0, 10, 110, 0.1) for s in range(120)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # non-increasing after warm-up
    assert lrs[60] == pytest.approx(0.55) and lrs[110] == pytest.approx(0.1) and lrs[119] == pytest.approx(0.1)


def test_a_clock_ahead_of_the_steps_drives_the_decay_and_one_behind_does_not():
    assert cosine_lr(60, 1.0, 10, 110, 0.1, clock=1.0) == pytest.approx(0.1)  # the budget is spent: the floor
    assert cosine_lr(60, 1.0, 10, 110, 0.1, clock=0.5) == pytest.approx(0.55)  # level with the steps
    assert cosine_lr(60, 1.0, 10, 110, 0.1, clock=0.2) == pytest.approx(0.55)  # behind: the steps lead
    assert cosine_lr(3, 1.0, 10, 110, 0.1, clock=0.9) == pytest.approx(0.4)  # warm-up is by steps alone


def test_set_lr_fills_device_tensors_in_place():
    model = torch.nn.Linear(4, 4)
    optimizer = configure_optimizers(model, 1e-3, 0.1, graphed=True)
    tensors = [g["lr"] for g in optimizer.param_groups]
    set_lr(optimizer, 0.5)
    assert all(g["lr"] is t and float(t) == 0.5 for g, t in zip(optimizer.param_groups, tensors))


@pytest.mark.parametrize("group, subgroup, annotation, safe", [
    ("food-drink", "food-fruit", "red apple", True),
    ("smileys-emotion", "face-smiling", "grinning face", True),
    ("animals-nature", "animal-mammal", "dog", True),
    ("flags", "country-flag", "flag: France", False),
    ("symbols", "arrow", "up arrow", False),
    ("symbols", "keycap", "keycap: 1", False),
    ("people-body", "hand-single-finger", "index pointing up", False),
    ("people-body", "hands", "clapping hands", False),
    ("travel-places", "time", "three o'clock", False),
    ("people-body", "person-activity", "person walking facing right", False),
    ("people-body", "hand-fingers-closed", "left-facing fist", False),
])
def test_mirror_rule(group, subgroup, annotation, safe):
    assert mirror_safe(group, subgroup, annotation) is safe


def _asymmetric_images(n: int = 4) -> np.ndarray:
    images = np.full((n, 32, 32, 3), 255, np.uint8)
    images[:, 10:22, 4:12] = (200, 30, 30)  # a red block left of centre
    return images


def test_warp_identity_mirror_and_shift():
    images = _asymmetric_images(1)
    same = warp(torch.from_numpy(images), torch.tensor([[1.0, 0.0, 0.0, 0.0]])).numpy()
    assert np.abs(same.astype(int) - images).max() <= 1
    mirrored = warp(torch.from_numpy(images), torch.tensor([[1.0, 0.0, 0.0, 1.0]])).numpy()
    assert np.abs(mirrored.astype(int) - images[:, :, ::-1]).max() <= 1
    shifted = warp(torch.from_numpy(images), torch.tensor([[1.0, 3.0, 2.0, 0.0]])).numpy()
    assert np.abs(shifted[:, 12:24, 7:15].astype(int) - images[:, 10:22, 4:12]).max() <= 1
    assert (shifted[:, :2] == 255).all()  # uncovered border is white


def test_augmented_copies_are_deterministic_and_mirror_only_where_safe():
    images = _asymmetric_images(64)
    flags = np.arange(64) % 2 == 0
    spec = Augment(max_shift=0, min_scale=1, max_scale=1, mirror_p=1.0)  # mirror whatever may be mirrored
    copy = augmented(images, flags, 1, seed=3, spec=spec, batch=7)
    assert np.abs(copy[~flags].astype(int) - images[~flags]).max() <= 1
    assert np.abs(copy[flags].astype(int) - images[flags][:, :, ::-1]).max() <= 1
    default = augmented(images, flags, 1, seed=3)
    assert np.array_equal(default, augmented(images, flags, 1, seed=3, batch=5))
    assert not np.array_equal(default, augmented(images, flags, 2, seed=3))
    with pytest.raises(ValueError, match="copy 0 is the original"):
        augmented(images, flags, 0)


def test_caption_variety_keeps_tag_captions_recognisable():
    record = EmojiRecord("1F34E", "red apple", "food-drink", "food-fruit", ("apple", "fruit", "red", "sweet"), "1F34E")
    captions = caption_texts(record)
    assert captions[0] == "red apple" and "a red apple" in captions and "red apple emoji" in captions
    assert "fruit" in captions and "apple" not in captions  # single tags the annotation does not already say
    assert [c for c in captions if is_tag_caption("red apple", c)] == ["red apple: apple, fruit, red", "red apple: sweet"]
    assert with_article("owl") == "an owl" and with_article("flag: Chad") == "flag: Chad"
    assert len(set(captions)) == len(captions)


@pytest.fixture()
def augmented_data(tmp_path):
    """Token cache with 2 augmented copies whose ids differ from the original's, plus captions and classes."""
    classes = np.array([0, 1] * 8)
    emoji = np.array([0, 1] * 8)
    ids = np.where(classes[:, None] == 0, 7, 300).astype(np.int16).repeat(256, axis=1)
    aug = np.stack([ids + 1, ids + 2], axis=1)
    save_file({"train_ids": ids, "train_class": classes, "train_emoji": emoji, "train_aug_ids": aug,
               "val_ids": ids[:4], "val_class": classes[:4], "val_emoji": emoji[:4]}, str(tmp_path / TOKENS),
              metadata={CODEBOOK_KEY: "1000"})
    save_file({"tokens": np.ones((4, 384), np.int8), "scales": np.full(4, 0.01, np.float16),
               "offsets": np.array([0, 2, 4], np.int64), "caption_emoji": np.arange(2, dtype=np.int64)},
              str(tmp_path / CAPTIONS), metadata={"max_tokens": "16"})
    (tmp_path / "manifest.json").write_text(json.dumps({"classes": ["a", "b"]}))
    return tmp_path


def test_training_draws_among_every_copy(augmented_data):
    copies = load_token_copies(augmented_data, "train")
    assert copies.shape == (16, 3, 256) and torch.equal(copies[:, 0, 0], torch.tensor([7, 300] * 8))
    data = train_generator.Data.load(augmented_data, "train", torch.device("cpu"))
    drawn = data.sample(torch.zeros(300, dtype=torch.long), torch.Generator().manual_seed(0))[:, 0]
    assert set(drawn.tolist()) == {7, 8, 9}
    assert load_token_copies(augmented_data, "val").shape == (4, 1, 256)


def test_run_keeps_and_exports_the_best_held_out_ema_in_every_format(augmented_data, tmp_path):
    torch.set_num_threads(1)
    out, export = tmp_path / "run", tmp_path / "export"
    result = train_generator.main([
        "--variant", "transformer", "--size", "tiny", "--data", str(augmented_data), "--out", str(out),
        "--steps", "12", "--batch", "4", "--warmup", "2", "--device", "cpu", "--eval-every", "4", "--log-every", "2",
        "--dropout", "0.1", "--export", str(export), "--storage", "int8,int4", "--snapshot-every", "6",
    ])
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    vals = [r for r in records if r["event"] == "val"]
    assert [v["step"] for v in vals] == [4, 8, 12]
    best = min(vals, key=lambda v: v["val_loss"])
    assert result["best_step"] == best["step"]
    training = json.loads((export / "training.json").read_text())
    assert training["exported_step"] == best["step"] and training["storage"] == ["int8", "int4"]
    assert stored_formats(export) == ["int8", "int4"]
    assert json.loads((export / "config.json").read_text())["dropout"] == 0.1
    curves = read_curves(out / "log.jsonl")
    assert curves["best"]["step"] == best["step"] and curves["val"][0]["images_seen"] == 4 * 4
    assert (out / "curves.png").stat().st_size > 1000 and json.loads((out / "curves.json").read_text())["batch"] == 4
    assert all(r["lr"] > 0 for r in records if r["event"] == "train")
    snapshots = sorted(p.relative_to(out / "snapshots").as_posix() for p in (out / "snapshots").glob("*/*"))
    assert snapshots == ["000006/transformer", "000012/transformer"]
    assert (out / "snapshots" / "000012" / "transformer" / "classes.json").is_file()

    resumed = train_generator.main([
        "--variant", "transformer", "--size", "tiny", "--data", str(augmented_data), "--out", str(out),
        "--steps", "16", "--batch", "4", "--warmup", "2", "--device", "cpu", "--eval-every", "4", "--dropout", "0.1",
    ])
    vals = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"val"' in line]
    assert [v["step"] for v in vals] == [4, 8, 12, 16]
    assert resumed["best_val_loss"] == pytest.approx(min(v["val_loss"] for v in vals), abs=1e-4)  # best.pt carried over


def test_scaling_study_collects_points_and_plots(tmp_path):
    from maskmamba.eval import scaling

    runs = tmp_path / "runs"
    for variant, size, params, fids in [("transformer", "small", 4e6, [90, 60]), ("transformer", "mid", 8e6, [80, 50]),
                                        ("uvit", "small", 4.1e6, [85, 55])]:
        name = f"{variant}@{size}"
        (runs / name).mkdir(parents=True)
        log = [{"event": "start", "step": 0, "variant": variant, "params": params, "batch": 512},
               {"event": "val", "step": 100, "val_loss": 4.2}, {"event": "val", "step": 200, "val_loss": 4.0}]
        (runs / name / "log.jsonl").write_text("\n".join(map(json.dumps, log)) + "\n")
        (runs / "eval" / name).mkdir(parents=True)
        for step, fid in zip((100, 200), fids):
            result = {"variants": {variant: {"fid": fid, "class_acc": 0.5, "prompt_top5": 0.6, "best_cfg": 2.0}}}
            (runs / "eval" / name / f"{step:06d}.json").write_text(json.dumps(result))
    study = scaling.main(["--runs", str(runs), "--out", str(tmp_path / "scaling.json"), "--plots", str(tmp_path)])
    mid = study["runs"]["transformer@mid"]
    assert (mid["size"], mid["params"]) == ("mid", 8e6)
    assert [(p["step"], p["images_seen"], p["fid"], p["val_loss"]) for p in mid["points"]] == [
        (100, 51_200, 80, 4.2), (200, 102_400, 50, 4.0)]
    assert json.loads((tmp_path / "scaling.json").read_text()) == study
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("scaling_fid_vs_images.png", "scaling_fid_vs_params.png"))


def test_scaling_study_adds_a_later_lease_to_the_earlier_runs(tmp_path):
    from maskmamba.eval import scaling

    def lease(folder: Path, size: str, fid: float) -> Path:
        name = f"uvit@{size}"
        (folder / name).mkdir(parents=True)
        (folder / name / "log.jsonl").write_text(json.dumps({"event": "start", "variant": "uvit", "params": 1e6, "batch": 8}))
        (folder / "eval" / name).mkdir(parents=True)
        (folder / "eval" / name / "000100.json").write_text(json.dumps({"variants": {"uvit": {"fid": fid}}}))
        return folder

    out = ["--out", str(tmp_path / "scaling.json"), "--plots", str(tmp_path)]
    scaling.main(["--runs", str(lease(tmp_path / "a", "small", 70.0)), *out])
    later = lease(tmp_path / "b", "mid", 60.0)
    assert set(scaling.main(["--runs", str(later), *out])["runs"]) == {"uvit@small", "uvit@mid"}
    assert set(scaling.main(["--runs", str(later), "--replace", *out])["runs"]) == {"uvit@mid"}


@pytest.fixture()
def built_data(tmp_path):
    """4 emoji (a mirrorable apple, a flag; rows 0-2 train, row 3 val), one image each, with a tiny tokenizer."""
    from PIL import Image

    from maskmamba.data.imaging import encode_webp
    from maskmamba.data.shards import write_manifest, write_shards
    from maskmamba.models.tokenizer import VQTokenizer

    images = np.full((4, 128, 128, 3), 255, np.uint8)
    for i in range(4):
        images[i, 30:90, 20 + 5 * i : 60 + 5 * i] = (40 * i, 200 - 30 * i, 90)
    table = [{"hexcode": h, "annotation": a, "group": g, "subgroup": sg, "class_id": c, "split": s, "captions": [a]}
             for h, a, g, sg, c, s in [("1F34E", "red apple", "food-drink", "food-fruit", 0, "train"),
                                       ("1F1EB-1F1F7", "flag: France", "flags", "country-flag", 1, "train"),
                                       ("1F436", "dog face", "animals-nature", "animal-mammal", 0, "train"),
                                       ("1F1E8-1F1E9", "flag: Chad", "flags", "country-flag", 1, "val")]]
    for split, rows in (("train", [0, 1, 2]), ("val", [3])):
        webps = [encode_webp(Image.fromarray(images[r])) for r in rows]
        rows = np.array(rows)
        write_shards(tmp_path, split, webps, rows % 2, rows, np.zeros(len(rows), np.int64))
    write_manifest(tmp_path, {"classes": ["food", "flags"], "emoji": table})
    torch.manual_seed(0)
    VQTokenizer(enc_channels=(8, 8, 8, 8), dec_channels=(8, 8, 8, 8), dec_blocks=1).save_pretrained(tmp_path / "tok")
    return tmp_path


def test_tokenize_with_augmented_copies_and_pack_them(built_data, tmp_path):
    from safetensors.numpy import load_file

    from maskmamba.data.pack import pack
    from maskmamba.data.tokens import build_token_cache, mirror_flags

    assert mirror_flags(built_data, np.array([0, 1, 2, 3])).tolist() == [True, False, True, False]
    path = build_token_cache(built_data, built_data / "tok", augment=2, seed=1)
    arrays = load_file(str(path))
    assert arrays["train_ids"].shape == (3, 256) and arrays["train_aug_ids"].shape == (3, 2, 256)
    assert "val_aug_ids" not in arrays  # held-out images stay as they are
    assert (arrays["train_aug_ids"] != arrays["train_ids"][:, None]).any()
    again = load_file(str(build_token_cache(built_data, built_data / "tok", augment=2, seed=1)))
    assert np.array_equal(again["train_aug_ids"], arrays["train_aug_ids"])  # deterministic
    save_file({"tokens": np.ones((4, 384), np.int8), "scales": np.ones(4, np.float16),
               "offsets": np.arange(5, dtype=np.int64), "caption_emoji": np.arange(4, dtype=np.int64)},
              str(built_data / CAPTIONS), metadata={"max_tokens": "16"})
    bundle = load_file(str(pack(built_data, tmp_path / "bundle", copies=1) / TOKENS))
    assert bundle["train_aug_ids"].shape == (3, 1, 256) and np.array_equal(bundle["train_aug_ids"][:, 0], arrays["train_aug_ids"][:, 0])
    assert "train_aug_ids" not in load_file(str(pack(built_data, tmp_path / "plain", copies=0) / TOKENS))


def test_recaption_rewrites_manifest_and_cache(built_data, monkeypatch):
    from maskmamba.data import captions
    from maskmamba.data.dataset import CaptionBank, load_manifest

    class Encoder:
        def __init__(self, device):
            pass

        def encode(self, texts):
            mask = torch.arange(16)[None] < torch.tensor([[len(t.split()) + 2] for t in texts])
            return torch.ones(len(texts), 16, 384) * mask[..., None], mask

    monkeypatch.setattr(captions, "PromptEncoder", Encoder)
    records = [EmojiRecord(e["hexcode"], e["annotation"], e["group"], e["subgroup"], ("red", "fruit"), e["hexcode"])
               for e in load_manifest(built_data)["emoji"]]
    count = captions.recaption(built_data, records)
    manifest = load_manifest(built_data)
    assert manifest["captions"] == count == sum(len(e["captions"]) for e in manifest["emoji"])
    assert manifest["emoji"][0]["captions"] == caption_texts(records[0]) and "a red apple" in manifest["emoji"][0]["captions"]
    bank = CaptionBank(built_data)
    assert len(bank) == count and len(bank.captions_of(0)) == len(manifest["emoji"][0]["captions"])
    with pytest.raises(ValueError, match="catalogue lacks"):
        captions.recaption(built_data, records[:2])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graphed_step_follows_the_schedule_with_dropout_and_copies(augmented_data, tmp_path):
    """The CUDA-graphed step with two parameter groups, dropout and an lr read from device tensors."""
    result = train_generator.main([
        "--variant", "maskmamba-serial-half", "--size", "tiny", "--data", str(augmented_data), "--out", str(tmp_path),
        "--steps", "30", "--batch", "8", "--warmup", "5", "--device", "cuda", "--eval-every", "10", "--log-every", "1",
        "--dropout", "0.1", "--lr", "3e-3",
    ])
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records[0]["cuda_graph"] and records[0]["copies"] == 3
    losses = [r["loss"] for r in records if r["event"] == "train"]
    assert all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5])
    assert result["done"] and result["best_step"] in (10, 20, 30)
