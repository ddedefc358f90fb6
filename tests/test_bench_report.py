"""The end-to-end speed table's report (bench.speed_vs_resolution): its JSON and the bars it merges, on the CPU."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from bench.speed_vs_resolution import forward_fn, report


def test_the_report_writes_rows_sdpa_timings_and_speedup_bars(tmp_path) -> None:
    rows = [{"model": "transformer", "scan": None, "side": 2048, "tokens": 16384, "ms": 30.0},
            {"model": "maskmamba-serial-half", "scan": "triton", "side": 2048, "tokens": 16384, "ms": 20.0}]
    sdpa = {"cudnn": {4096: 0.2}, "flash": {4096: 0.3}}
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"bars": {"demo_ms": 16.5}}))
    args = argparse.Namespace(size="xl", out=str(tmp_path / "speed.json"), bench_json=str(bench), cuda_graph=False)
    report(rows, args, "a GPU", sdpa)
    speed = json.loads((tmp_path / "speed.json").read_text())
    assert speed["rows"] == rows and speed["sdpa_backends"]["cudnn"] == {"4096": 0.2}
    merged = json.loads(bench.read_text())
    assert merged["bars"]["e2e_speedup_2048"] == 1.5 and merged["bars"]["demo_ms"] == 16.5
    assert merged["e2e_sdpa_backends"]["flash"] == {"4096": 0.3} and merged["e2e_device"] == "a GPU"
    graphed = [r | {"ms": r["ms"] / 2 if r["model"] == "transformer" else r["ms"]} for r in rows]
    report(graphed, argparse.Namespace(size="xl", out="", bench_json=str(bench), cuda_graph=True), "a GPU", sdpa)
    merged = json.loads(bench.read_text())  # the graphed figures sit beside the eager ones
    assert merged["bars"]["e2e_graph_speedup_2048"] == 0.75 and merged["bars"]["e2e_speedup_2048"] == 1.5
    assert merged["e2e_graph_rows"] == graphed and merged["e2e_rows"] == rows


def test_the_training_ratio_is_serial_half_over_the_transformer_as_training_runs_them() -> None:
    from bench.train_throughput import train_bars

    rows = [{"variant": "transformer", "eager_img_s": 9641.0, "graph_img_s": 9708.0},
            {"variant": "maskmamba-serial-half", "eager_img_s": 5101.0, "graph_img_s": 5156.0}]
    assert train_bars(rows, "small") == {"train_ratio_small": 0.5311}
    assert train_bars(rows, "mid") == {} and train_bars(rows[:1], "small") == {}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("variant", ["transformer", "maskmamba-serial-half"])
def test_a_forward_replayed_from_a_cuda_graph_gives_the_eager_output(variant) -> None:
    from maskmamba import build_model

    with torch.device("cuda"):
        model = build_model(variant, "tiny", num_classes=10, grid=8).to(torch.bfloat16).eval()
    eager = forward_fn(model, 8, cuda_graph=False)()
    replayed = forward_fn(model, 8, cuda_graph=True)()
    assert torch.isfinite(eager.float()).all()
    torch.testing.assert_close(replayed, eager)


def test_the_cpu_scan_blocks_bench_times_both_modes_and_leaves_the_threshold_as_it_was(capsys) -> None:
    import importlib

    from bench.cpu_scan_blocks import MODES, VARIANTS, main

    scan = importlib.import_module("maskmamba.ops.selective_scan")
    before = scan._CPU_WHOLE_BYTES
    assert main(["--rounds", "1"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert {(r[0], r[1]) for r in rows} == {(v, m) for v in VARIANTS for m in MODES}  # every shipped Mamba model
    assert all(float(r[2]) > 0 for r in rows) and scan._CPU_WHOLE_BYTES == before
