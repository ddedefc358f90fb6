"""The CFG grid: single-scale evaluations merged per weights file, beside the shipped figures of that file."""
from __future__ import annotations

import json

import pytest

from maskmamba.checksums import SUMS_FILE
from maskmamba.eval import cfg_grid

FILE = "model.int8.safetensors"


def part(variant: str, cfg: float, fid: float, digest: str, n: int = 10000) -> dict:
    entry = {"best_cfg": cfg, "fid": fid, "fid_std": 0.2, "class_acc": 0.8, "prompt_top5": 0.85, "n_images": n,
             "paraphrase_top5": 0.5, "paraphrase_top5_matched": 0.7, "seconds": 50.0, "weights_sha256": {FILE: digest}}
    return {"variants": {variant: entry}}


@pytest.fixture
def assets(tmp_path):
    (tmp_path / "uvit").mkdir()
    (tmp_path / "uvit" / SUMS_FILE).write_text(f"{'a' * 64}  {FILE}\n")
    return tmp_path


def shipped(fid: float) -> dict:
    return {"shipped": {"uvit": {"fid": fid, "class_acc": 0.9, "prompt_top5": 0.9, "best_cfg": 2.0}}}


def test_rows_join_the_shipped_figures_of_the_same_file_in_scale_order(assets):
    results = cfg_grid.add_parts(shipped(47.4), [part("uvit", 2.5, 48.0, "a" * 64), part("uvit", 1.5, 47.0, "a" * 64)],
                                 assets)
    rows = results["cfg_fine_sweep"]["variants"]["uvit"]
    assert [(r["cfg"], r["fid"]) for r in rows] == [(1.5, 47.0), (2.0, 47.4), (2.5, 48.0)]
    assert "seconds" not in rows[0] and rows[0]["fid_std"] == 0.2 and "fid_std" not in rows[1]
    assert results["cfg_fine_sweep"]["files"]["uvit"] == {FILE: "a" * 64}


def test_a_rescored_scale_replaces_its_row_and_another_file_starts_afresh(assets):
    results = cfg_grid.add_parts(shipped(47.4), [part("uvit", 1.5, 47.0, "a" * 64)], assets)
    results = cfg_grid.add_parts(results, [part("uvit", 1.5, 46.0, "a" * 64)], assets)
    assert [r["fid"] for r in results["cfg_fine_sweep"]["variants"]["uvit"]] == [46.0, 47.4]
    results = cfg_grid.add_parts(results, [part("uvit", 2.5, 45.0, "b" * 64)], assets)
    # not the shipped file: its rows alone, without the shipped figures
    assert [(r["cfg"], r["fid"]) for r in results["cfg_fine_sweep"]["variants"]["uvit"]] == [(2.5, 45.0)]


def test_parts_without_their_files_or_of_another_image_count_are_refused(assets):
    unnamed = part("uvit", 1.5, 47.0, "a" * 64)
    del unnamed["variants"]["uvit"]["weights_sha256"]
    with pytest.raises(ValueError, match="weights_sha256"):
        cfg_grid.add_parts(shipped(47.4), [unnamed], assets)
    with pytest.raises(ValueError, match="2000 images"):
        cfg_grid.add_parts(shipped(47.4), [part("uvit", 1.5, 47.0, "a" * 64), part("uvit", 2.5, 48.0, "a" * 64, 2000)],
                           assets)


def test_cli_grows_the_results_file_and_keeps_its_notes(assets, tmp_path):
    out = tmp_path / "generators.json"
    out.write_text(json.dumps({"variants": {}, **shipped(47.4), "cfg_fine_sweep": {"what": "notes", "variants": {}}}))
    path = tmp_path / "part.json"
    path.write_text(json.dumps(part("uvit", 1.5, 47.0, "a" * 64)))
    cfg_grid.main([str(path), "--out", str(out), "--assets", str(assets)])
    grid = json.loads(out.read_text())["cfg_fine_sweep"]
    assert grid["what"] == "notes" and [r["cfg"] for r in grid["variants"]["uvit"]] == [1.5, 2.0]
