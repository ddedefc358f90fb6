"""Model cards written from the results: figures, credits, refusals and byte-identical reruns."""
from __future__ import annotations

import json
import shutil

import pytest

from maskmamba.dev_assets import DEV_CLASSES, make_dev_assets
from maskmamba.eval.cards import main
from maskmamba.models import build_model
from maskmamba.modules import count_params

SHIPPED = ("maskmamba-serial-half", "uvit")
CREDIT = "All emojis designed by OpenMoji - the open-source emoji and icon project. License: CC BY-SA 4.0"


def _scores(fid: float, cfg: float) -> dict:
    return {"fid": fid, "class_acc": 0.8123, "prompt_top5": 0.9012, "paraphrase_top5": 0.7345, "best_cfg": cfg,
            "storage": "fp32"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """An assets-like folder: two stand-in checkpoints with training.json, results, data summary and tokenizer."""
    root = make_dev_assets(tmp_path_factory.mktemp("cards") / "assets", variants=(*SHIPPED, "maskmamba-parallel-2"))
    for i, variant in enumerate(SHIPPED):
        (root / variant / "training.json").write_text(json.dumps({
            "event": "stop", "step": 4000, "done": True, "minutes": 12.5, "val_loss_ema": 3.5 + i,
            "best_val_loss": 3.4321 + i, "best_step": 3500, "batch": 512, "steps_planned": 4000,
            "exported_step": 3500, "storage": ["fp32"]}))
    config = json.loads((root / "uvit" / "config.json").read_text())
    (root / "uvit" / "config.json").write_text(json.dumps(config | {"default_cfg": 2.5}))
    command = "python -m maskmamba.eval generator --variants maskmamba-serial-half,uvit --shipped maskmamba-serial-half,uvit"
    results = {
        "classifier_real_acc": 0.8771,
        "shipped": {"maskmamba-serial-half": _scores(21.234, 2.0), "uvit": _scores(23.456, 2.5)},
        "variants": {v: {**_scores(fid, cfg), "n_images": 10000, "n_prompts": 3080, "n_paraphrase_images": 480,
                         "steps": 12, "command": command, "cfg_sweep": []}
                     for v, fid, cfg in (("maskmamba-serial-half", 21.234, 2.0), ("uvit", 23.456, 2.5),
                                         ("maskmamba-parallel-2", 30.0, 1.0))},
    }
    results["variants"]["uvit"]["temperature"] = 0.9
    results["variants"]["uvit"]["paraphrase_top5_se"] = 0.0234
    results["variants"]["uvit"]["storage_compare"] = {
        "int4": {"fid": 24.1, "class_acc": 0.80, "fid_change": 0.644, "class_acc_change": -0.0123}}
    (root / "results").mkdir()
    (root / "results" / "generators.json").write_text(json.dumps(results))
    (root / "results" / "uvit_curves.png").write_bytes(b"png")
    (root / "results" / "uvit_paraphrases_matched.png").write_bytes(b"png")
    (root / "results" / "dataset.json").write_text(json.dumps({
        "n_images": 17640, "styles": {"noto": 9000, "openmoji": 8640}, "splits": {"train": 16694, "val": 946},
        "n_classes": len(DEV_CLASSES), "build_command": "python -m maskmamba.data build /data/emoji-v2",
        "sources": [
            {"style": "noto", "package": "fonts-noto-color-emoji", "version": "2.042", "licence": "OFL-1.1",
             "credit": "Noto Color Emoji, Copyright 2013-2017 Google Inc., SIL Open Font License 1.1"},
            {"style": "openmoji", "package": "openmoji", "version": "17.0.0", "licence": "CC-BY-SA-4.0",
             "credit": CREDIT}],
        "catalogue": {"credit": "Emoji annotations from Unicode CLDR (Unicode License v3)"}}))
    return root


def _args(root, *extra) -> list[str]:
    return ["--assets", str(root), "--results", str(root / "results" / "generators.json"),
            "--dataset", str(root / "results" / "dataset.json"), "--tokenizer", str(root / "tokenizer"), *extra]


def test_cards_hold_the_figures_and_credits(tree):
    untouched = (tree / "maskmamba-parallel-2" / "README.md").read_bytes()
    paths = main(_args(tree))
    assert paths == [tree / v / "README.md" for v in SHIPPED]
    half = (tree / "maskmamba-serial-half" / "README.md").read_text()
    params = count_params(build_model("maskmamba-serial-half", "tiny", num_classes=len(DEV_CLASSES))) / 1e6
    assert half.startswith("---\nlicense: cc-by-sa-4.0\n")
    for figure in ("# maskmamba-serial-half (tiny)", f"{params:.2f}M parameters", "width 64, depth 4",
                   "FID 21.2 at the best CFG scale 2 (10,000", "class accuracy 81.2%", "scores 87.7% on real",
                   "prompt top-5 90.1% on 3,080", "paraphrase top-5 73.5% on 480 images",
                   "4,000 steps of batch 512 (1,792,000 images seen by these weights, 107.3 passes over the 16,694",
                   "EMA at step 3,500", "loss was 3.4321 at step 3,500", "12.5 min",
                   "python -m maskmamba.train generator --variant maskmamba-serial-half --size tiny --steps 4000 "
                   "--batch 512", "--shipped maskmamba-serial-half,uvit", "17,640 emoji images",
                   "1,000 codes", "`model.safetensors`", "Credits", CREDIT, "Google Inc.", "Unicode CLDR",
                   "all-MiniLM-L6-v2, the prompt encoder (Apache-2.0)", "CC BY-SA 4.0, because the training images include openmoji"):
        assert figure in half, figure
    assert "curves" not in half  # no curves picture for this variant
    # the library default CFG (3) is not the sweep's best (2); uvit's config.json records its best
    assert "default CFG scale is 3, while the sweep's best is 2" in half
    uvit = (tree / "uvit" / "README.md").read_text()
    assert "default CFG scale is 2.5, the best of its sweep" in uvit
    assert f"`{tree / 'results' / 'uvit_curves.png'}`" in uvit
    assert f"as the demo draws them, from their matched captions: `{tree / 'results' / 'uvit_paraphrases_matched.png'}`" in uvit
    assert "matched captions" not in half  # no such picture for this variant
    assert "int4: FID 24.1 (+0.6), class accuracy 80.0% (-1.2 points)" in uvit
    assert "12 iterations, token temperature 0.9, this" in uvit  # recorded by the evaluation
    assert "12 iterations, this" in half  # an evaluation that did not record it: nothing claimed
    assert "(standard error 2.3 points over prompts) on 480 images" in uvit and "standard error" not in half
    assert (tree / "maskmamba-parallel-2" / "README.md").read_bytes() == untouched  # not shipped: no card


def test_a_sweep_of_one_scale_is_not_called_the_best(tree, tmp_path):
    root = tmp_path / "assets"
    shutil.copytree(tree, root)
    path = root / "results" / "generators.json"
    results = json.loads(path.read_text())
    results["variants"]["uvit"]["cfg_sweep"] = [{"cfg": 2.5, "fid": 30.0, "class_acc": 0.8}]
    path.write_text(json.dumps(results))
    main(_args(root, "--variants", "uvit"))
    uvit = (root / "uvit" / "README.md").read_text()
    assert "FID 23.5 at CFG scale 2.5, the one scale its sweep scored (10,000" in uvit
    assert "default CFG scale is 2.5, the scale scored." in uvit and "best" not in uvit.split("Metrics")[1].split("\n")[0]


def test_a_pooled_prompt_model_says_so_in_its_training_line(tree, tmp_path):
    root = tmp_path / "assets"
    shutil.copytree(tree, root)
    config = json.loads((root / "uvit" / "config.json").read_text())
    (root / "uvit" / "config.json").write_text(json.dumps(config | {"prompt_pool": True}))
    main(_args(root))
    assert "`--prompt-pool`" in (root / "uvit" / "README.md").read_text()
    assert "prompt-pool" not in (root / "maskmamba-serial-half" / "README.md").read_text()


def test_runs_started_from_saved_weights_are_all_counted(tree, tmp_path):
    """training.json of runs made with --init, each from the last: the card counts the images behind each run's
    export (what the next run started from), names an export earlier than its run's last step, and gives every
    command, each from the export of the one before."""
    root = tmp_path / "assets"
    shutil.copytree(tree, root)
    path = root / "uvit" / "training.json"
    last = json.loads(path.read_text())
    first = last | {"step": 1000, "steps_planned": 1000, "exported_step": 1000, "minutes": 3.25}
    second = last | {"step": 2000, "steps_planned": 2000, "exported_step": 1500, "minutes": 5.5,
                     "init": {"from": "A", "training": first}}
    path.write_text(json.dumps(last | {"init": {"from": "B", "training": second}}))
    main(_args(root, "--variants", "uvit"))
    card = (root / "uvit" / "README.md").read_text()
    for figure in ("Trained in 3 runs of batch 512, each from the last one's weights (`--init`): 1,000 steps from "
                   "scratch, then 2,000 (exported at 1,500), then 4,000 (3,072,000 images seen by these weights", "each run is 3.25, 5.5 and 12.5 min",
                   "EMA at step 3,500 of the last run, whose best held-out masked-token loss was 4.4321",
                   "`python -m maskmamba.train generator --variant uvit --size tiny --steps 1000 --batch 512 --data "
                   "DATA --out RUN1 --export EXPORT1`, then `python -m maskmamba.train generator --variant uvit --size "
                   "tiny --steps 2000 --batch 512 --data DATA --out RUN2 --export EXPORT2 --init EXPORT1`, then "
                   "`python -m maskmamba.train generator --variant uvit --size tiny --steps 4000 --batch 512 --data "
                   "DATA --out RUN3 --init EXPORT2` (DATA"):
        assert figure in card, figure


def test_rerun_is_byte_identical_and_notes_add_a_sentence(tree, tmp_path):
    main(_args(tree))
    first = {v: (tree / v / "README.md").read_bytes() for v in SHIPPED}
    main(_args(tree))
    assert {v: (tree / v / "README.md").read_bytes() for v in SHIPPED} == first
    notes = tmp_path / "notes.json"
    notes.write_text(json.dumps({"uvit": "rockets come out as grey smudges"}))
    main(_args(tree, "--notes", str(notes)))
    assert "What still looks wrong: rockets come out as grey smudges." in (tree / "uvit" / "README.md").read_text()
    assert (tree / "maskmamba-serial-half" / "README.md").read_bytes() == first["maskmamba-serial-half"]


def test_a_variant_missing_from_shipped_is_refused(tree):
    before = (tree / "uvit" / "README.md").read_bytes()
    with pytest.raises(SystemExit, match="maskmamba-parallel-2 not in the `shipped` section .* evaluate with --shipped"):
        main(_args(tree, "--variants", "uvit,maskmamba-parallel-2"))
    assert (tree / "uvit" / "README.md").read_bytes() == before  # nothing written when any card is refused


@pytest.mark.parametrize("breakage, message", [
    ("notes", "notes for mmamba, which get no card"),
    ("tokenizer", "predicts 1000 token ids but .* has 2560 codes"),
    ("weights", "holds int8 and the demo loads the first, but the results score fp32"),
    ("training", "training.json lacks best_val_loss"),
    ("licence", "no CC-BY-SA-4.0 source in the data set"),
])
def test_inconsistent_inputs_are_refused(tree, tmp_path, breakage, message):
    root = tmp_path / "assets"
    shutil.copytree(tree, root)
    extra = []
    if breakage == "notes":
        (tmp_path / "notes.json").write_text(json.dumps({"mmamba": "blobs"}))
        extra = ["--notes", str(tmp_path / "notes.json")]
    elif breakage == "tokenizer":
        config = json.loads((root / "tokenizer" / "config.json").read_text())
        (root / "tokenizer" / "config.json").write_text(json.dumps(config | {"levels": [8, 8, 8, 5]}))
    elif breakage == "weights":
        weights = root / "maskmamba-serial-half" / "model.safetensors"
        weights.rename(weights.with_name("model.int8.safetensors"))
    elif breakage == "licence":
        dataset = json.loads((root / "results" / "dataset.json").read_text())
        dataset["sources"] = [src for src in dataset["sources"] if src["style"] != "openmoji"]
        (root / "results" / "dataset.json").write_text(json.dumps(dataset))
    else:
        training = root / "uvit" / "training.json"
        training.write_text(json.dumps({k: v for k, v in json.loads(training.read_text()).items() if k != "best_val_loss"}))
    with pytest.raises(SystemExit, match=message):
        main(_args(root, *extra))
