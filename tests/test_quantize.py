"""int4 storage: finer groups with a searched clip, the group recorded per file, old g64 files, the convert CLI."""
from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from maskmamba import build_model, load_generator
from maskmamba.checksums import ChecksumError, read_sums, sha256
from maskmamba.models import FILES, save_weights
from maskmamba.models.quantize import (
    CLIPS, GROUP, GROUP_KEY, INT8_SCALE, Int4, dequantize_state, main, quantize_state, read_state, shard_name,
    stored_files, stored_formats, weights_files, write_state,
)

from .conftest import NUM_CLASSES

OLD = Int4(64, (1.0,), ())  # the layout every int4 file had before the group was recorded


def _heavy_tailed(rows: int, columns: int) -> torch.Tensor:
    """Trained weights are heavier-tailed than a normal; columns of different scales; columns % 64 != 0."""
    return torch.distributions.StudentT(4.0).sample((rows, columns)) * torch.linspace(0.2, 2, columns)


def _round_trip(weight: torch.Tensor, plan: Int4) -> torch.Tensor:
    return dequantize_state(quantize_state({"w": weight}, "int4", plan), plan.group)["w"]


def test_new_int4_error_is_smaller_than_the_old_one():
    weight = _heavy_tailed(96, 200)
    old, new = ((_round_trip(weight, plan) - weight).square().mean() for plan in (OLD, Int4()))
    assert new < 0.7 * old


def test_clip_search_never_loses_to_absmax_in_any_group():
    weight = _heavy_tailed(64, 96)
    absmax, searched = Int4(GROUP, (1.0,), ()), Int4(GROUP, CLIPS, ())
    errors = [(_round_trip(weight, p) - weight).square().view(64, -1, GROUP).sum(-1) for p in (absmax, searched)]
    assert (errors[1] <= errors[0] * (1 + 1e-5) + 1e-9).all() and (errors[1] < errors[0]).any()


def test_absmax_int4_error_is_bounded_per_group():
    weight = torch.randn(48, 100) * torch.linspace(0.01, 3, 100)  # 100 % GROUP != 0: padded columns
    plan = Int4(GROUP, (1.0,), ())
    stored = quantize_state({"w": weight, "bias": torch.randn(48)}, "int4", plan)
    assert stored["w"].dtype == torch.uint8 and stored["w"].shape == (48, 4 * GROUP // 2)
    back = dequantize_state(stored, GROUP)
    assert torch.equal(back["bias"], stored["bias"])  # vectors stay float32
    pad = -weight.shape[1] % GROUP
    step = torch.nn.functional.pad(weight, (0, pad)).view(48, -1, GROUP).abs().amax(-1, keepdim=True) / 7
    error = torch.nn.functional.pad(back["w"] - weight, (0, pad)).view(48, -1, GROUP).abs()
    assert (error <= step / 2 * 1.01 + 1e-6).all() and error.mean() > 0


def test_all_zero_rows_round_trip_to_zero():
    weight = torch.randn(64, 128)
    weight[3] = 0
    for storage in ("int8", "int4"):
        back = dequantize_state(quantize_state({"w": weight}, storage), GROUP)["w"]
        assert torch.isfinite(back).all() and torch.equal(back[3], torch.zeros(128))


def test_int4_keeps_the_embedding_and_head_int8_and_records_its_group(tmp_path):
    model = build_model("maskmamba-parallel-4", "tiny", num_classes=NUM_CLASSES).eval()
    [path] = save_weights(model, tmp_path, "int4", Int4(group=16))
    with safe_open(str(path), framework="pt") as file:
        assert file.metadata()[GROUP_KEY] == "16"
        names = set(file.keys())
        assert file.get_tensor("blocks.0.mlp.0.weight").dtype == torch.uint8
    assert {"tok_emb.weight" + INT8_SCALE, "head.weight" + INT8_SCALE} <= names
    loaded = load_generator(tmp_path)
    error = (loaded.head.weight - model.head.weight).abs().max()
    assert 0 < error < model.head.weight.abs().max() / 100  # int8 accuracy, not int4's


def test_a_file_whose_group_does_not_fit_its_tensors_is_named(tmp_path):
    model = build_model("transformer", "tiny", num_classes=NUM_CLASSES).eval()
    [path] = save_weights(model, tmp_path, "int4")
    tensors = {}
    with safe_open(str(path), framework="pt") as file:
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    save_file(tensors, str(path), metadata={"format": "int4", GROUP_KEY: str(2 * GROUP)})
    (tmp_path / "SHA256SUMS").unlink()
    with pytest.raises(ValueError, match=r"model\.int4\.safetensors: damaged int4 layout"):
        load_generator(tmp_path)


def test_old_g64_int4_files_still_load(tmp_path):
    """An int4 file as the older code wrote it (group 64, absmax / 7, no group in its metadata) loads unchanged."""
    model = build_model("uvit", "tiny", num_classes=NUM_CLASSES).eval()
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "SHA256SUMS").unlink()
    old = {}
    for name, t in model.state_dict().items():
        if t.ndim >= 2 and t.numel() >= 4096:
            rows = t.reshape(t.shape[0], -1)
            groups = torch.nn.functional.pad(rows, (0, -rows.shape[1] % 64)).view(rows.shape[0], -1, 64)
            scale = (groups.abs().amax(2) / 7).clamp(min=1e-12).half()
            q = ((groups / scale.float()[..., None]).round().clamp(-8, 7).to(torch.int16) + 8).view(rows.shape[0], -1)
            old[name] = (q[:, 0::2] | (q[:, 1::2] << 4)).to(torch.uint8)
            old[name + ".int4_scale"], old[name + ".int4_shape"] = scale, torch.tensor(t.shape)
        else:
            old[name] = t.contiguous()
    save_file(old, str(tmp_path / "model.int4.safetensors"), metadata={"format": "int4"})
    loaded = load_generator(tmp_path)
    step = model.head.weight.abs().max() / 7
    assert 0 < (loaded.head.weight - model.head.weight).abs().max() <= step / 2 * 1.01


def test_convert_cli_writes_a_loadable_file_and_valid_sums(tmp_path, capsys):
    model = build_model("maskmamba-serial-half", "tiny", num_classes=NUM_CLASSES).eval()
    save_weights(model, tmp_path, "int8")
    assert main(["convert", str(tmp_path), "--to", "int4", "--from", "int8"]) == 0
    assert "model.int4.safetensors" in capsys.readouterr().out
    sums = read_sums(tmp_path)
    assert set(sums) == {FILES["int8"], FILES["int4"]}
    assert all(sums[name] == sha256(tmp_path / name) for name in sums)
    from_int8, coarse = load_generator(tmp_path, "int8"), load_generator(tmp_path, "int4")
    weight = from_int8.blocks[0].mlp[0].weight
    assert 0 < (coarse.blocks[0].mlp[0].weight - weight).norm() / weight.norm() < 0.2


def test_convert_refuses_to_regain_precision_or_a_missing_source(tmp_path, capsys):
    model = build_model("transformer", "tiny", num_classes=NUM_CLASSES).eval()
    save_weights(model, tmp_path, "int4")
    assert main(["convert", str(tmp_path), "--to", "int8"]) == 2
    assert "cannot make int8 from int4" in capsys.readouterr().err
    assert main(["convert", str(tmp_path), "--to", "int4", "--from", "fp16"]) == 2
    assert "has no fp16 weights" in capsys.readouterr().err
    with pytest.raises(ValueError, match="even number"):
        Int4(group=7)


def test_int4_keeps_attention_int8_by_module_name_only():
    names = ["blocks.0.attn.qkv.weight", "blocks.0.attn.proj.weight", "blocks.0.mixer.in_proj.weight", "blocks.0.mlp.0.weight"]
    stored = quantize_state({name: torch.randn(64, 128) for name in names}, "int4")
    assert [stored[name].dtype for name in names] == [torch.int8, torch.int8, torch.uint8, torch.uint8]
    assert Int4().keeps_int8("tok_emb.weight") and not Int4().keeps_int8("blocks.0.mixer.scan.x_proj")


def test_a_large_file_is_written_as_shards_that_load_as_one(tmp_path, capsys):
    model = build_model("maskmamba-serial-half", "tiny", num_classes=NUM_CLASSES).eval()
    (tmp_path / "one").mkdir(), (tmp_path / "sharded").mkdir()
    [single] = write_state(model.state_dict(), tmp_path / "one", "int8")
    limit = single.stat().st_size // 2 + 4096  # about half the file: two or three shards
    paths = write_state(model.state_dict(), tmp_path / "sharded", "int8", max_bytes=limit)
    assert len(paths) >= 2 and all(p.stat().st_size < limit for p in paths)
    assert paths[0].name == shard_name("int8", 1, len(paths)) == f"model.int8-00001-of-{len(paths):05d}.safetensors"
    for path in paths:  # each matrix beside its scales
        names = set(safe_open(str(path), framework="pt").keys())
        assert all(n[: -len(INT8_SCALE)] in names for n in names if n.endswith(INT8_SCALE))
    assert stored_formats(tmp_path / "sharded") == ["int8"]
    whole, merged = read_state(single), read_state(weights_files(tmp_path / "sharded", "int8"))
    assert merged.keys() == whole.keys() and all(torch.equal(whole[n], merged[n]) for n in whole)
    # rewriting replaces the old set, and a missing or extra shard is named
    again = write_state(model.state_dict(), tmp_path / "sharded", "int8")
    assert [p.name for p in again] == [FILES["int8"]] and stored_files(tmp_path / "sharded", "int8") == again
    write_state(model.state_dict(), tmp_path / "sharded", "int8", max_bytes=limit)
    paths[-1].unlink()
    with pytest.raises(FileNotFoundError, match=f"{paths[-1].name} missing"):
        weights_files(tmp_path / "sharded", "int8")
    (tmp_path / "sharded" / FILES["int8"]).write_bytes(single.read_bytes())
    with pytest.raises(ValueError, match="mixes int8 weights files"):
        weights_files(tmp_path / "sharded", "int8")


def test_save_weights_shards_and_sums_each_file(tmp_path, monkeypatch):
    import maskmamba.models.quantize as quantize

    model = build_model("uvit", "tiny", num_classes=NUM_CLASSES).eval()
    monkeypatch.setattr(quantize, "MAX_FILE_BYTES", 200_000)
    paths = save_weights(model, tmp_path, "int8")
    assert len(paths) >= 2 and set(read_sums(tmp_path)) == {p.name for p in paths}
    loaded = load_generator(tmp_path)
    assert (loaded.head.weight - model.head.weight).abs().max() < model.head.weight.abs().max() / 100
    paths[1].write_bytes(paths[1].read_bytes()[:-1] + b"x")
    with pytest.raises(ChecksumError, match=paths[1].name):
        load_generator(tmp_path)
