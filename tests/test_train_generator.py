"""Generator training: the loss falls, runs resume, and two CPU processes train under DDP (gloo)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from maskmamba.data.dataset import CAPTIONS
from maskmamba.data.tokens import CODEBOOK_KEY, TOKENS
from maskmamba.models import build_model
from maskmamba.train import generator as train_generator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def token_data(tmp_path_factory):
    """A token cache of 4 'emoji' (2 classes) whose token grids are constant per class, with captions."""
    root = tmp_path_factory.mktemp("tokens")
    rng = np.random.default_rng(0)
    classes = np.array([0, 0, 1, 1] * 8)
    emoji = np.array([0, 1, 2, 3] * 8)
    ids = np.where(classes[:, None] == 0, 7, 300).astype(np.int16).repeat(256, axis=1)
    save_file({"train_ids": ids, "train_class": classes, "train_emoji": emoji,
               "val_ids": ids[:8], "val_class": classes[:8], "val_emoji": emoji[:8]}, str(root / TOKENS),
              metadata={CODEBOOK_KEY: "1000"})
    lengths = [3, 5, 4, 2]
    save_file({
        "tokens": rng.integers(-127, 128, (sum(lengths), 384), dtype=np.int8),
        "scales": np.full(sum(lengths), 0.01, dtype=np.float16),
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "caption_emoji": np.arange(4, dtype=np.int64),
    }, str(root / CAPTIONS), metadata={"max_tokens": "16"})
    (root / "manifest.json").write_text(json.dumps({"classes": ["cats", "dogs"]}))
    return root


def _args(data, out, steps, **extra):
    args = ["--variant", "maskmamba-serial-half", "--size", "tiny", "--data", str(data), "--out", str(out),
            "--steps", str(steps), "--batch", "8", "--warmup", "2", "--device", "cpu", "--lr", "3e-3",
            "--log-every", "10"]
    return args + [f"--{k.replace('_', '-')}={v}" for k, v in extra.items()]


def _losses(out):
    return [r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r["event"] == "train"]


def test_loss_falls_and_run_resumes_and_exports(token_data, tmp_path):
    torch.set_num_threads(1)
    first = train_generator.main(_args(token_data, tmp_path, 30))
    assert first["done"] and first["step"] == 30
    again = train_generator.main(_args(token_data, tmp_path, 60, export=tmp_path / "export"))
    assert again["step"] == 60 and again["done"]
    starts = [json.loads(l) for l in (tmp_path / "log.jsonl").read_text().splitlines() if '"start"' in l]
    assert [s["step"] for s in starts] == [0, 30]  # the second run resumed
    losses = _losses(tmp_path)
    assert losses[-1] < 0.7 * losses[0]
    assert (tmp_path / "export" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "export" / "classes.json").read_text()) == ["cats", "dogs"]


def test_each_checkpoint_exports_the_best_ema_so_far(token_data, tmp_path, monkeypatch):
    """With --export, a checkpoint (here every step: --save-every 0) also exports the best EMA in one format
    (int8 of int8 and fp32), its training.json saying the run is not done; the end exports every format."""
    torch.set_num_threads(1)
    calls = []
    real = train_generator.export

    def spy(model, classes, folder, storages, info):
        calls.append((list(storages), info))
        return real(model, classes, folder, storages, info)

    monkeypatch.setattr(train_generator, "export", spy)
    export = tmp_path / "export"
    train_generator.main(_args(token_data, tmp_path / "run", 3, export=export, storage="fp32,int8", save_every=0,
                               eval_every=2))
    assert [storages for storages, _ in calls] == [["int8"]] * 3 + [["fp32", "int8"]]
    progress = [info for _, info in calls[:3]]
    assert [i["step"] for i in progress] == [1, 2, 3] and not any(i["done"] for i in progress)
    assert [i["exported_step"] for i in progress] == [None, 2, 2]  # no held-out loss before step 2: the current EMA
    assert progress[0]["best_val_loss"] is None and progress[1]["best_val_loss"] > 0
    assert progress[2]["steps_planned"] == 3 and calls[-1][1]["done"]
    events = [json.loads(line)["event"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert events.count("progress_export") == 3
    assert json.loads((export / "training.json").read_text())["done"]


def test_an_export_removes_the_formats_an_earlier_export_left(tmp_path):
    """A progress export (int8) over a finished one (fp32 and int8) leaves one model: no stale fp32 to load first."""
    from maskmamba.checksums import read_sums
    from maskmamba.models import stored_formats

    model = build_model("transformer", "tiny", num_classes=2)
    train_generator.export(model, ["a", "b"], tmp_path, ["fp32", "int8"], {"done": True})
    assert stored_formats(tmp_path) == ["fp32", "int8"]
    train_generator.export(model, ["a", "b"], tmp_path, ["int8"], {"done": False})
    assert stored_formats(tmp_path) == ["int8"]
    assert set(read_sums(tmp_path)) == {p.name for p in tmp_path.glob("*.safetensors")}


def test_a_run_starts_from_saved_weights_and_records_them(token_data, tmp_path):
    """--init loads an exported (here int8) generator into a new run, whose first held-out loss is then the
    source's, and training.json names the source; a source of another shape is refused, naming the difference."""
    torch.set_num_threads(1)
    source = tmp_path / "source"
    trained = train_generator.main(_args(token_data, tmp_path / "a", 40, export=source, storage="int8"))
    from maskmamba.models import load_generator

    model = load_generator(source)
    data = train_generator.Data.load(token_data, "val", torch.device("cpu"))
    expected = train_generator.validation_loss(model, data, model.mask_id, torch.device("cpu"))
    reset = load_generator(source).apply(_reset)
    fresh = train_generator.validation_loss(reset, data, model.mask_id, torch.device("cpu"))
    assert expected < fresh - 0.5  # the source has learnt something a reset model has not
    run = tmp_path / "b"
    train_generator.main(_args(token_data, run, 1, init=source, export=tmp_path / "out", eval_every=1, lr=1e-9))
    vals = [r["val_loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["event"] == "val"]
    assert abs(vals[0] - expected) < 0.05  # one step at lr 1e-9: still the source's weights
    record = json.loads((tmp_path / "out" / "training.json").read_text())["init"]
    assert record["from"] == str(source) and record["training"]["step"] == trained["step"]
    with pytest.raises(SystemExit, match="width"):
        train_generator.main(_args(token_data, tmp_path / "c", 1, init=source) + ["--size", "small"])
    train_generator.main(_args(token_data, tmp_path / "d", 1, init=source, export=tmp_path / "pooled") + ["--prompt-pool"])
    assert json.loads((tmp_path / "pooled" / "config.json").read_text())["prompt_pool"]  # switched on at a warm start


def _reset(module: torch.nn.Module) -> None:
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()


def test_the_vocabulary_follows_the_tokenizer_that_wrote_the_cache(token_data, tmp_path):
    """A cache written by a 2,560-code tokenizer trains a 2,560-code generator; one that does not say is refused."""
    data = tmp_path / "data"
    data.mkdir()
    for name in (CAPTIONS, "manifest.json"):
        (data / name).write_bytes((token_data / name).read_bytes())
    arrays = load_file(str(token_data / TOKENS))
    save_file(arrays, str(data / TOKENS), metadata={CODEBOOK_KEY: "2560"})
    train_generator.main(_args(data, tmp_path / "run", 2, export=tmp_path / "export"))
    assert json.loads((tmp_path / "export" / "config.json").read_text())["codebook_size"] == 2560
    save_file(arrays, str(data / TOKENS))
    with pytest.raises(ValueError, match="codebook size"):
        train_generator.main(_args(data, tmp_path / "again", 2))


def test_two_processes_train_with_ddp_on_cpu(token_data, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
           "-m", "maskmamba.train", "generator", *_args(token_data, tmp_path, 6)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    start = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert start["world"] == 2
    assert "TRAINING COMPLETE" in run.stdout


def test_masked_loss_equals_mean_over_masked_positions():
    from maskmamba import Condition, build_model

    model = build_model("transformer", "tiny", num_classes=2).eval()
    ids = torch.randint(0, model.codebook_size, (3, 256))
    inputs, mask = train_generator.mask_batch(ids, model.mask_id, torch.Generator().manual_seed(0))
    cond = Condition.classes(torch.tensor([0, 1, 0]))
    with torch.no_grad():
        logits = model(inputs, cond)
        expected = torch.nn.functional.cross_entropy(logits[mask], ids[mask], label_smoothing=0.1)
        got = train_generator.masked_loss(model, ids, inputs, mask, cond, 0.1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_graphed_step_refuses_cpu_tensors():
    from maskmamba.graphs import GraphedStep

    with pytest.raises(ValueError, match="CUDA"):
        GraphedStep(lambda x: x * 2)(torch.ones(3))


def test_ema_starts_close_to_the_model_and_moves_slowly_later():
    model, ema = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    before = ema.weight.detach().clone()
    train_generator.update_ema(ema, model, step=0, decay=0.999)  # decay 0.1: mostly the model
    assert torch.allclose(ema.weight, 0.1 * before + 0.9 * model.weight)
    snapshot = ema.weight.detach().clone()
    train_generator.update_ema(ema, model, step=10_000, decay=0.999)
    assert torch.allclose(ema.weight, 0.999 * snapshot + 0.001 * model.weight)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_checkpoints_resume_across_eager_and_graphed_steps(token_data, tmp_path):
    def run(steps: int, *flags: str) -> dict:
        return train_generator.main(_args(token_data, tmp_path, steps) + ["--device", "cuda", *flags])

    assert run(4, "--eager")["step"] == 4
    assert run(10)["step"] == 10  # graphed: 3 warm-up steps, capture, replays
    assert run(12, "--eager")["step"] == 12
    assert all(np.isfinite(_losses(tmp_path)))


def test_a_teachers_share_of_the_loss_is_cross_entropy_against_its_predictions():
    from maskmamba import Condition, build_model

    student = build_model("maskmamba-serial-half", "tiny", num_classes=2).eval()
    teacher = build_model("transformer", "tiny", num_classes=2).eval()
    ids = torch.randint(0, student.codebook_size, (3, 256))
    inputs, mask = train_generator.mask_batch(ids, student.mask_id, torch.Generator().manual_seed(0))
    cond = Condition.classes(torch.tensor([0, 1, 0]))
    with torch.no_grad():
        log_p = student(inputs, cond)[mask].log_softmax(-1)
        soft = teacher(inputs, cond)[mask].softmax(-1)
        hard = torch.nn.functional.nll_loss(log_p, ids[mask])
        expected = 0.7 * hard + 0.3 * -(soft * log_p).sum(-1).mean()
        got = train_generator.masked_loss(student, ids, inputs, mask, cond, 0.0, teacher, 0.3)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_run_learns_from_a_teacher_of_another_variant_and_records_it(token_data, tmp_path):
    """A Transformer teaches a serial-half run: its loss is then mostly the teacher's targets, training.json and
    the model card's command name the teacher; a teacher predicting other tokens or a share above 1 is refused."""
    torch.set_num_threads(1)
    teacher = tmp_path / "teacher"
    train_generator.main(_args(token_data, tmp_path / "t", 30, export=teacher) + ["--variant", "transformer"])
    run, export = tmp_path / "s", tmp_path / "student"
    train_generator.main(_args(token_data, run, 30, teacher=teacher, distill=0.8, export=export))
    losses = _losses(run)
    assert losses[-1] < losses[0] - 1.0
    events = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    taught = next(e for e in events if e["event"] == "teacher")
    assert (taught["variant"], taught["size"], taught["distill"]) == ("transformer", "tiny", 0.8)
    record = json.loads((export / "training.json").read_text())["teacher"]
    assert record["from"] == str(teacher) and record["distill"] == 0.8
    from maskmamba.eval.cards import training_commands

    trained = json.loads((export / "training.json").read_text())
    command = training_commands("maskmamba-serial-half", "tiny", trained)
    assert "--teacher TEACHER --distill 0.8" in command and "TEACHER: the `tiny` `transformer` generator" in command
    other_teacher = {**trained, "teacher": {**record, "variant": "uvit"}}  # a run taught by another before it
    both = training_commands("maskmamba-serial-half", "tiny", {**trained, "init": {"training": other_teacher}})
    assert "TEACHER1: the `tiny` `uvit` generator; TEACHER2: the `tiny` `transformer` generator" in both
    from maskmamba.models import save_weights

    other = tmp_path / "other"  # three classes, another vocabulary: its predictions are for other inputs
    save_weights(build_model("transformer", "tiny", num_classes=3, codebook_size=2560), other)
    with pytest.raises(SystemExit, match=r"codebook_size \(2560, not 1000\), num_classes \(3, not 2\)"):
        train_generator.main(_args(token_data, tmp_path / "u", 1, teacher=other))
    with pytest.raises(SystemExit):
        train_generator.main(_args(token_data, tmp_path / "v", 1, teacher=teacher, distill=1.5))


def test_caption_noise_moves_only_prompt_states_by_its_scale_and_is_recorded(token_data, tmp_path):
    """--text-noise adds noise of the asked scale (relative to each state's RMS) to the caption states of prompted
    samples only, the same for the same seed; the run log, training.json and the model card's command record it."""
    data = train_generator.Data.load(token_data, "train", torch.device("cpu"))
    rows = torch.arange(32)

    def cond(noise):
        return train_generator.condition_batch(data, rows, 0.5, 0.0, torch.Generator().manual_seed(3), noise)

    clean, noisy = cond(0.0), cond(0.5)
    torch.testing.assert_close(noisy.text, cond(0.5).text, rtol=0, atol=0)
    assert torch.equal(noisy.class_ids, clean.class_ids) and torch.equal(noisy.text_mask, clean.text_mask)
    assert noisy.text_mask.any() and (noisy.class_ids >= 0).any()  # both kinds of sample drawn
    diff = noisy.text - clean.text
    assert diff[~noisy.text_mask].abs().max() == 0  # pads and class-conditioned samples untouched
    scale = diff[noisy.text_mask].std(-1) / clean.text[noisy.text_mask].pow(2).mean(-1).sqrt()
    assert 0.45 < scale.mean().item() < 0.55
    with pytest.raises(SystemExit):
        train_generator.main(_args(token_data, tmp_path / "neg", 1, text_noise=-0.1))

    torch.set_num_threads(1)
    run, export = tmp_path / "run", tmp_path / "export"
    train_generator.main(_args(token_data, run, 4, text_noise=0.3, export=export))
    start = next(json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"start"' in line)
    assert start["text_noise"] == 0.3
    trained = json.loads((export / "training.json").read_text())
    assert trained["text_noise"] == 0.3
    from maskmamba.eval.cards import training_commands

    assert "--data DATA --out RUN --text-noise 0.3`" in training_commands("maskmamba-serial-half", "tiny", trained)


class _CountingDeadline:
    """A budget spent one tenth per look (the loop looks once a step on one device), so a test needs no clock."""

    def __init__(self, minutes, save_every):
        self.looks = 0

    def share(self):
        self.looks += 1
        return min(1.0, self.looks / 10)

    def expired(self):
        return self.looks >= 10

    def save_due(self):
        return False

    def elapsed(self):
        return float(self.looks)


def test_a_timed_schedule_reaches_its_floor_at_the_deadline_and_is_recorded(token_data, tmp_path, monkeypatch):
    """--time-schedule: a run that its budget stops long before --steps still decays to the floor by then; without
    it the lr stays high; the run log, training.json and the card's command (the steps run) record it."""
    torch.set_num_threads(1)
    monkeypatch.setattr(train_generator, "Deadline", _CountingDeadline)

    def lrs(run, *flags):
        train_generator.main(_args(token_data, run, 1000, log_every=1, lr=1e-3, min_lr_ratio=0.1) + list(flags))
        return [r["lr"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["event"] == "train"]

    timed = lrs(tmp_path / "timed", "--time-schedule", "--export", str(tmp_path / "export"))
    plain = lrs(tmp_path / "plain")
    assert len(timed) == len(plain) == 9  # the tenth look finds the budget spent
    assert timed[-1] < 1.25e-4 and plain[-1] > 9e-4  # the last step at nine tenths of the budget: near the floor
    assert all(a >= b for a, b in zip(timed[2:], timed[3:]))  # after the two warm-up steps: down to the floor
    start = next(json.loads(line) for line in (tmp_path / "timed" / "log.jsonl").read_text().splitlines()
                 if '"start"' in line)
    assert start["time_schedule"] is True
    trained = json.loads((tmp_path / "export" / "training.json").read_text())
    assert trained["time_schedule"] is True and trained["steps_planned"] == 1000 and trained["step"] == 9
    from maskmamba.eval.cards import training_commands

    assert "--steps 9 --batch 8" in training_commands("maskmamba-serial-half", "tiny", trained)
