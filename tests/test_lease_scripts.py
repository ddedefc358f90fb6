"""The GPU-lease helpers: the step count chosen from probe rates, and the bundle that brings results back."""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
spec = importlib.util.spec_from_file_location("choose_steps", SCRIPTS / "choose_steps.py")
choose_steps = importlib.util.module_from_spec(spec)
spec.loader.exec_module(choose_steps)


def run_script(args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    """A lease script run from the repository root in its own process group, killed whole if it overruns: its
    background waits must not outlive a failed test (the CFG grid waits while any gpu_generators.sh runs)."""
    proc = subprocess.Popen(["bash", *args], cwd=SCRIPTS.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def probe_log(folder: Path, seconds_to_100: float, steady_img_s: float, batch: int = 256) -> Path:
    """A log.jsonl whose cumulative rates say: `seconds_to_100` to reach step 100 (start-up included), then
    `steady_img_s`."""
    folder.mkdir(parents=True)
    rows = [{"event": "start", "step": 0}]
    for step in (1, 50, 100, 150, 200, 250, 300, 350, 400):
        elapsed = seconds_to_100 * min(step, 100) / 100 + max(step - 100, 0) * batch / steady_img_s
        rows.append({"event": "train", "step": step, "loss": 5.0, "images_per_s": step * batch / elapsed})
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "log.jsonl"


def test_the_steady_rate_leaves_start_up_out(tmp_path):
    log = probe_log(tmp_path / "run", seconds_to_100=30.0, steady_img_s=4000.0)
    assert choose_steps.steady_rate(log, 256) == pytest.approx(4000.0, rel=1e-3)


def test_the_slowest_run_sets_the_steps_and_they_fit_the_window():
    steps = choose_steps.choose_steps(15, 256, [6700.0, 3800.0, 4400.0])
    assert steps % 300 == 0 and steps == 11_100  # 3800 img/s over 90% of 14 minutes: 11,222 steps, rounded down
    assert steps * 256 / 3800 <= 14 * 60


def test_each_run_can_fill_the_window_at_its_own_rate(tmp_path):
    logs = [probe_log(tmp_path / name, 30.0, rate) for name, rate in (("mmamba@small", 1650.0), ("uvit@small", 6700.0))]
    out = subprocess.run(["python3", str(SCRIPTS / "choose_steps.py"), "--each", "15", "256", *map(str, logs)],
                         capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["mmamba@small 4800", "uvit@small 19500"]  # 90% of 14 minutes at each rate, rounded down
    single = subprocess.run(["python3", str(SCRIPTS / "choose_steps.py"), "15", "256", *map(str, logs)],
                            capture_output=True, text=True, check=True).stdout
    assert single == "4800\n"


def timed_log(folder: Path, segments: list[tuple[float, float]], batch: int = 256) -> Path:
    """A log.jsonl with wall-clock times and cumulative rates: (seconds, images/s) segments run one after another
    from time 1000, a line every 50 steps."""
    folder.mkdir(parents=True)
    rows, now, step = [], 1000.0, 0
    for seconds, rate in segments:
        end = now + seconds
        while now + 50 * batch / rate <= end + 1e-9:
            now, step = now + 50 * batch / rate, step + 50
            rows.append({"event": "train", "step": step, "images_per_s": step * batch / (now - 1000.0), "time": now})
        now = end
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "log.jsonl"


def test_runs_sharing_a_gpu_are_timed_while_both_run(tmp_path):
    # a alone for 10 s at 6,400 images/s, then both at 3,200 each for 40 s, then b alone (the lease's
    # serial-interleave was given 21,300 steps for the 11,000 its window held: its probe's rate counted time alone)
    a = timed_log(tmp_path / "a@small", [(10.0, 6400.0), (40.0, 3200.0)])
    b = timed_log(tmp_path / "b@small", [(10.0, 1e-9), (40.0, 3200.0), (20.0, 6400.0)])  # b starts at 10 s
    rates = choose_steps.rates_of([a, b], 256)
    assert rates["a@small"] == pytest.approx(3200.0, rel=0.03) and rates["b@small"] == pytest.approx(3200.0, rel=0.03)
    assert choose_steps.steady_rate(b, 256) > 4000.0  # what each probe's own cumulative rate said


def test_probes_without_times_or_overlap_fall_back_to_their_own_rates(tmp_path, capsys):
    old = probe_log(tmp_path / "old", seconds_to_100=30.0, steady_img_s=4000.0)
    assert choose_steps.rates_of([old], 256)["old"] == pytest.approx(4000.0, rel=1e-3)
    first = timed_log(tmp_path / "first", [(20.0, 3200.0)])
    later = timed_log(tmp_path / "later", [(30.0, 1e-9), (20.0, 3200.0)])
    assert choose_steps.rates_of([first, later], 256)["first"] == pytest.approx(3200.0, rel=0.03)
    assert "overlapped for 0.0 s only" in capsys.readouterr().err


def test_a_probe_too_short_to_measure_is_an_error(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps({"event": "train", "step": 100, "images_per_s": 10.0}) + "\n")
    with pytest.raises(SystemExit, match="fewer than two"):
        choose_steps.steady_rate(log, 16)


def test_the_bundle_keeps_int8_packs_and_results_and_leaves_bulk_behind(tmp_path):
    runs, dest = tmp_path / "runs", tmp_path / "out"
    files = {
        "pack/uvit@mid/uvit/model.int8-00001-of-00002.safetensors": True, "pack/uvit@mid/uvit/config.json": True,
        "pack/uvit@mid/uvit/model.int8-00002-of-00002.safetensors": True, "pack/uvit@mid/uvit/model.safetensors": False,
        "pack/uvit@mid/uvit/model.int4.safetensors": False, "pack/uvit@mid/uvit/model.int4-00001-of-00002.safetensors": False,
        "uvit@mid/ckpt.pt": False, "uvit@mid/log.jsonl": True, "uvit@mid/snapshots/003700/uvit/model.safetensors": False,
        "eval/full/uvit@mid.json": True, "logs/uvit@mid.log": True, "judge/real_train_features.npz": False,
        "judge/classifier/model.safetensors": True, "judge/classifier/config.json": True,
    }
    for name in files:
        (runs / name).parent.mkdir(parents=True, exist_ok=True)
        (runs / name).write_text(name)
    out = subprocess.run(["bash", str(SCRIPTS / "gpu_collect.sh"), str(runs), str(dest)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "not done yet" in out.stdout
    parts = sorted(dest.glob("results.tgz.*"))
    (tmp_path / "all.tgz").write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(tmp_path / "all.tgz") as tar:
        names = {n.removeprefix("./") for n in tar.getnames()}
    assert {n for n, kept in files.items() if kept} <= names
    assert not {n for n, kept in files.items() if not kept} & names


@pytest.mark.parametrize("gpus, visible, launcher, batch", [
    ("5", "1", ["-m", "maskmamba.train"], "256"),  # taken modulo the machine's 4 GPUs
    ("0+1", "0,1", ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"], "128"),
    ("0+1+2+3", "0,1,2,3", ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4"], "64"),
])
def test_a_run_trains_on_one_gpu_or_on_several_under_torchrun(tmp_path, gpus, visible, launcher, batch):
    fake = tmp_path / "python3"  # records how it was called instead of training
    fake.write_text('#!/usr/bin/env bash\necho "CUDA=$CUDA_VISIBLE_DEVICES ARGS=$*"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "NGPU": "4", "BATCH": "256", "DEVICE": "cuda"}
    out = subprocess.run(["bash", str(SCRIPTS / "launch_train.sh"), gpus, "--variant", "mmamba"], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == f"CUDA={visible}" and out[1:1 + len(launcher)] == ["ARGS=" + launcher[0], *launcher[1:]]
    assert out[-2:] == ["--batch", batch] and "--variant" in out


def test_a_batch_that_does_not_split_over_the_gpus_is_refused(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "NGPU": "4", "BATCH": "255", "DEVICE": "cuda"}
    out = subprocess.run(["bash", str(SCRIPTS / "launch_train.sh"), "0+1"], env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "does not split over 2 GPUs" in out.stderr


@pytest.mark.parametrize("before", ["6000\n", "a@mid 100\ntransformer@mid 200\nb@small 300\n"])
def test_fixed_steps_replace_the_chosen_ones(tmp_path, before):
    steps = tmp_path / "steps"
    steps.write_text(before)
    subprocess.run(["python3", str(SCRIPTS / "choose_steps.py"), "--fix", str(steps), "a@mid transformer@mid b@small",
                    "transformer@mid=12300"], check=True)
    kept = "6000" if before == "6000\n" else None
    expected = {"a@mid": kept or "100", "transformer@mid": "12300", "b@small": kept or "300"}
    assert dict(line.split() for line in steps.read_text().splitlines()) == expected


def test_fixed_steps_for_an_unknown_run_are_refused():
    with pytest.raises(SystemExit, match="not in the list"):
        choose_steps.fix_steps("6000\n", ["a@mid"], {"uvit@mid": 100})


def test_collecting_on_a_fresh_machine_stops_at_once(tmp_path):
    out = subprocess.run(["bash", str(SCRIPTS / "gpu_collect.sh"), str(tmp_path / "runs"), str(tmp_path / "out"), "600"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "fresh" in out.stderr
    assert not (tmp_path / "out").exists()


def test_collecting_several_legs_packs_each_under_its_name(tmp_path):
    legs = {"s5": True, "u2": False}
    for leg, done in legs.items():
        (tmp_path / leg / "eval/full").mkdir(parents=True)
        (tmp_path / leg / "eval/full/x.json").write_text(leg)
        (tmp_path / leg / "ckpt.pt").write_text("optimizer state")
        if done:
            (tmp_path / leg / "done").touch()
    folders = ",".join(str(tmp_path / leg) for leg in [*legs, "not-started"])
    out = subprocess.run(["bash", str(SCRIPTS / "gpu_collect.sh"), folders, str(tmp_path / "out")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "not done yet" in out.stdout and "no " in out.stderr and "not-started" in out.stderr
    for leg in legs:
        with tarfile.open(tmp_path / "out" / f"{leg}.tgz.00") as tar:
            names = {n.removeprefix("./") for n in tar.getnames()}
            assert "eval/full/x.json" in names and "ckpt.pt" not in names
            assert tar.extractfile("./eval/full/x.json").read().decode() == leg
    assert not list((tmp_path / "out").glob("results.tgz.*"))


FAKE_PYTHON = """#!{exe}
# Stands in for python3 under scripts/gpu_generators.sh: records each call, trains and scores nothing.
import json, os, subprocess, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["CALLS"], "a") as f:
    f.write(json.dumps(args) + "\\n")
if args and args[0].endswith(("choose_steps.py", "lease_inputs.py")):
    sys.exit(subprocess.call([sys.executable, *args]))
def opt(name):
    return args[args.index(name) + 1] if name in args else None
if args[:3] == ["-m", "maskmamba.train", "generator"]:  # a log whose steady rate is 1,000 images/s
    out = Path(opt("--out")); out.mkdir(parents=True, exist_ok=True)
    rows = [{{"event": "train", "step": s, "images_per_s": 1000.0}} for s in (50, 100, 150, 200)]
    (out / "log.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in rows))
if args[:3] == ["-m", "maskmamba.eval", "generator"]:
    Path(opt("--out")).write_text("{{}}")
"""


def _fake_leg(tmp_path: Path, judge_config: str) -> Path:
    """tmp_path/bin/python3 recording each call, tmp_path/inception.pt and data/train-000.safetensors (what the
    evaluations wait for), and a judge folder (returned)."""
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "python3"
    fake.write_text(FAKE_PYTHON.format(exe=sys.executable))
    fake.chmod(0o755)
    judge = tmp_path / "judge_src"
    judge.mkdir()
    (judge / "classifier.json").write_text(judge_config)
    (tmp_path / "inception.pt").write_text("weights")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-000.safetensors").write_text("shard")
    return judge


def test_a_leg_reuses_a_judge_and_ends_at_its_deadline(tmp_path):
    judge = _fake_leg(tmp_path, '{"trained": true}')
    out, calls = tmp_path / "leg", tmp_path / "calls.jsonl"
    deadline = int(time.time()) + 345
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "CALLS": str(calls), "DEVICE": "cpu", "OUT": str(out),
           "RUNS": "mmamba@small:full", "STEPS": "each", "PROBE_STEPS": "200", "DEADLINE": str(deadline),
           "JUDGE_FROM": str(judge), "SHIPPED": "mmamba", "RESCORE": "--temperature 0.9",
           "COMPARE": "", "TRAIN_FLAGS": "--teacher T --distill 0.5"}
    run = run_script(["scripts/gpu_generators.sh", str(tmp_path / "data"), str(tmp_path / "inception.pt")], env, 120)
    assert run.returncode == 0, run.stderr
    made = [json.loads(line) for line in calls.read_text().splitlines()]
    trains = [a for a in made if a[:3] == ["-m", "maskmamba.train", "generator"]]
    probe, real = trains
    for flags in (probe, real):  # a probe trains as its run will: a teacher's forward is part of a taught step
        assert flags[flags.index("--teacher") + 1] == "T" and flags[flags.index("--distill") + 1] == "0.5"
    assert probe[probe.index("--out") + 1] == str(out / "probes" / "mmamba@small")  # in this leg's OUT, not /tmp
    assert probe[probe.index("--minutes") + 1] == "1"  # PROBE_SECONDS: probes sharing a GPU stop together
    # 5 whole minutes left: 90% of 4 at 1,000 images/s is 843 steps of 256, rounded down to 600; training stops at the
    # deadline, its --minutes the time left to the second
    assert real[real.index("--steps") + 1] == "600" and 5 < float(real[real.index("--minutes") + 1]) <= 5.75
    assert "--time-schedule" in real  # and the cosine keeps pace with the deadline
    evals = [a for a in made if a[:3] == ["-m", "maskmamba.eval", "generator"]]
    full, rescore = evals  # no judge trained
    assert full[full.index("--variants") + 1] == "mmamba" and "--temperature" not in full
    assert full[full.index("--compare-storage") + 1] == ""  # COMPARE= (empty) compares no other format
    # RESCORE: the same pack scored again with the sampler flags, its default CFG left as the full evaluation set it
    assert rescore[rescore.index("--checkpoints") + 1] == full[full.index("--checkpoints") + 1]
    assert rescore[rescore.index("--temperature") + 1] == "0.9" and "--write-default-cfg" not in rescore
    assert (out / "eval/rescore/mmamba@small.json").is_file()
    assert (out / "judge/classifier/classifier.json").read_text() == '{"trained": true}'
    assert (out / "eval/full/mmamba@small.json").is_file() and (out / "done").is_file()


def test_score_runs_are_not_trained_and_score_the_files_as_they_are(tmp_path):
    judge = _fake_leg(tmp_path, "{}")
    shipped = tmp_path / "shipped"
    for variant in ("uvit", "mmamba"):
        (shipped / variant).mkdir(parents=True)
        (shipped / variant / "config.json").write_text(variant)
    out, calls = tmp_path / "leg", tmp_path / "calls.jsonl"
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "CALLS": str(calls), "DEVICE": "cpu", "OUT": str(out),
           "RUNS": "uvit@mid:score mmamba@small:score", "STEPS": "each", "INIT": str(shipped),
           "JUDGE_FROM": str(judge), "SHIPPED": "uvit,mmamba", "COMPARE": ""}
    run = run_script(["scripts/gpu_generators.sh", str(tmp_path / "data"), str(tmp_path / "inception.pt")], env, 120)
    assert run.returncode == 0, run.stderr
    made = [json.loads(line) for line in calls.read_text().splitlines()]
    assert not [a for a in made if a[:3] == ["-m", "maskmamba.train", "generator"]]  # no probe, no training
    evals = {a[a.index("--variants") + 1]: a for a in made if a[:3] == ["-m", "maskmamba.eval", "generator"]}
    assert set(evals) == {"uvit", "mmamba"}
    for variant, name in (("uvit", "uvit@mid"), ("mmamba", "mmamba@small")):
        pack = out / "pack" / name
        assert evals[variant][evals[variant].index("--checkpoints") + 1] == str(pack)
        assert (pack / variant / "config.json").read_text() == variant  # a copy: the shipped folder is left alone
        assert (out / "eval" / "full" / f"{name}.json").is_file()
    assert (out / "done").is_file()


def test_a_leg_unpacks_the_evaluations_inputs_that_land_after_it_starts(tmp_path):
    """A lease carries the shards (c) and the Inception file (d) in calls after the one that starts the leg: the
    leg unpacks them itself before it scores (a lease once lost its evaluations to calls that did not)."""
    judge = _fake_leg(tmp_path, "{}")
    lease = tmp_path / "lease"
    (lease / "L1").mkdir(parents=True)
    (lease / "c").mkdir()
    (lease / "c" / "train-000.safetensors").write_text("shard")
    (lease / "d").mkdir()
    (lease / "d" / "inception.pt").write_text("weights")
    shipped = tmp_path / "shipped" / "uvit"
    shipped.mkdir(parents=True)
    out, calls = tmp_path / "leg", tmp_path / "calls.jsonl"
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "CALLS": str(calls), "DEVICE": "cpu", "OUT": str(out),
           "RUNS": "uvit@mid:score", "STEPS": "each", "INIT": str(shipped.parent), "JUDGE_FROM": str(judge),
           "SHIPPED": "uvit", "COMPARE": ""}
    run = run_script(["scripts/gpu_generators.sh", str(lease / "data"), str(lease / "inception.pt")], env, 120)
    assert run.returncode == 0, run.stderr
    assert (lease / "data" / "train-000.safetensors").is_file() and (lease / "inception.pt").is_file()
    made = [json.loads(line) for line in calls.read_text().splitlines()]
    assert [a for a in made if a[:3] == ["-m", "maskmamba.eval", "generator"]]
    assert (out / "eval" / "full" / "uvit@mid.json").is_file() and (out / "done").is_file()


lease_spec = importlib.util.spec_from_file_location("lease_inputs", SCRIPTS / "lease_inputs.py")
lease_inputs = importlib.util.module_from_spec(lease_spec)
lease_spec.loader.exec_module(lease_inputs)


def test_lease_inputs_pack_into_carry_sized_calls_and_unpack_to_the_same_bytes(tmp_path, capsys):
    data, assets, here, there = tmp_path / "data", tmp_path / "assets", tmp_path / "here", tmp_path / "there"
    data.mkdir()
    files = {name: bytes(range(256)) * 400 for name in ("captions.safetensors", "tokens.safetensors", "manifest.json",
                                                        "train-000.safetensors", "val-000.safetensors")}
    for name, content in files.items():
        (data / name).write_bytes(content)
    (data / "notes.txt").write_text("not a shard")
    (assets / "uvit").mkdir(parents=True)
    (assets / "uvit" / "model.int8.safetensors").write_bytes(b"w" * 300_000)
    (tmp_path / "inception.pt").write_bytes(b"i" * 200_000)
    assert lease_inputs.main(["pack", str(data), str(tmp_path / "inception.pt"), "--variants", "uvit",
                              "--assets", str(assets), "--root", str(here), "--budget-mib", "0.35"]) == 0
    calls = [line for line in capsys.readouterr().out.splitlines() if line.startswith("call ")]
    assert len(calls) == 3 and "L1" in calls[0] and "i/uvit" in calls[0] and "/c'" in calls[1] and "/d'" in calls[2]
    assert (here / "L1" / "tokens.safetensors.xz").stat().st_size < len(files["tokens.safetensors"])
    for folder in ("L1", "c", "d"):  # land one call at a time; each unpack takes what is there
        shutil.copytree(here / folder, there / folder)
        assert lease_inputs.main(["unpack", "--root", str(there)]) == 0
        assert "nothing new" not in capsys.readouterr().out
    assert lease_inputs.main(["unpack", "--root", str(there)]) == 0 and "nothing new" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in (there / "data").iterdir()} == files
    assert (there / "inception.pt").read_bytes() == b"i" * 200_000
    with pytest.raises(SystemExit, match="missing"):
        lease_inputs.main(["pack", str(tmp_path / "nowhere"), str(tmp_path / "inception.pt"), "--root", str(here)])


def test_a_cfg_grid_scores_each_file_at_each_scale_one_after_another_and_resumes(tmp_path):
    judge = _fake_leg(tmp_path, '{"judge": 1}')
    folders = [tmp_path / "copies" / "uvit", tmp_path / "leg" / "pack" / "mmamba@small" / "mmamba"]
    out, calls = tmp_path / "grid", tmp_path / "calls.jsonl"
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "CALLS": str(calls), "DEVICE": "cpu", "OUT": str(out),
           "JUDGE": str(judge), "AFTER": str(tmp_path / "leg")}  # no leg running: the grid starts at once

    def grid() -> list[list[str]]:
        run = run_script(["scripts/gpu_cfg_grid.sh", str(tmp_path / "data"), str(tmp_path / "inception.pt"), "1.5,2.5",
                          *map(str, folders)], env, 60)
        assert run.returncode == 0, run.stderr
        made = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
        calls.unlink(missing_ok=True)
        return made

    made = grid()
    points = [(a[a.index("--variants") + 1], a[a.index("--sweep") + 1]) for a in made]
    assert points == [("uvit", "1.5"), ("uvit", "2.5"), ("mmamba", "1.5"), ("mmamba", "2.5")]
    for args, folder in zip(made, (folders[0], folders[0], folders[1], folders[1])):
        assert args[args.index("--checkpoints") + 1] == str(folder.parent)
        assert args[args.index("--n") + 1] == "10000" and args[args.index("--work") + 1] == str(out / "work")
    assert (out / "work" / "classifier" / "classifier.json").read_text() == '{"judge": 1}'
    assert sorted(p.name for p in (out / "eval").iterdir()) == [
        "mmamba-1.5.json", "mmamba-2.5.json", "uvit-1.5.json", "uvit-2.5.json"]
    assert (out / "done").is_file()
    (out / "eval" / "uvit-2.5.json").unlink()
    assert [a[a.index("--sweep") + 1] for a in grid()] == ["2.5"]  # a rerun scores only what is missing
