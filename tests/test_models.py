"""Every variant builds, trains a step and matches the Transformer's parameter count; save/load is exact."""
from __future__ import annotations

import json

import pytest
import torch

from maskmamba import SIZES, VARIANTS, Condition, build_model, load_generator
from maskmamba.models.conditioning import pooled_first
from maskmamba.modules import count_params

from .conftest import NUM_CLASSES


def _batch(model) -> tuple[torch.Tensor, Condition]:
    """Three samples: class-conditioned, prompt-conditioned, null."""
    tokens = torch.randint(0, model.codebook_size, (3, model.grid**2))
    tokens[:, ::3] = model.mask_id
    mask = torch.arange(16)[None] < torch.tensor([[5], [9], [0]])
    cond = Condition.prompts(torch.randn(3, 16, 384) * mask[..., None], mask)
    cond.class_ids[0] = 3
    return tokens, cond


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_backward(variant):
    model = build_model(variant, "tiny", num_classes=NUM_CLASSES)
    tokens, cond = _batch(model)
    logits = model(tokens, cond)
    assert logits.shape == (3, model.grid**2, model.codebook_size)
    logits.logsumexp(-1).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize("size", list(SIZES))
def test_parameters_match_transformer(size):
    with torch.device("meta"):
        counts = {v: count_params(build_model(v, size, num_classes=100)) for v in VARIANTS}
    reference = counts["transformer"]
    for variant, n in counts.items():
        assert abs(n / reference - 1) <= 0.02, f"{variant} at {size}: {n:,} vs transformer {reference:,}"


def test_sizes_between_small_and_base_are_ordered():
    with torch.device("meta"):
        counts = {s: count_params(build_model("transformer", s, num_classes=100)) for s in ("small", "mid", "medium", "base")}
    assert counts["small"] < counts["mid"] < counts["medium"] < counts["base"]
    assert 11e6 <= counts["medium"] <= 14e6 and 7e6 <= counts["mid"] <= 10e6


@pytest.mark.parametrize("position", ["head", "middle", "tail"])
def test_condition_changes_output_at_every_position(position):
    model = build_model("maskmamba-serial-half", "tiny", num_classes=NUM_CLASSES, cond_position=position).eval()
    tokens = torch.full((1, model.grid**2), model.mask_id)
    a = model(tokens, Condition.classes(torch.tensor([1])))
    b = model(tokens, Condition.classes(torch.tensor([2])))
    assert (a - b).abs().amax(-1).min() > 0  # every image position sees the condition


def test_null_condition_differs_from_class():
    model = build_model("transformer", "tiny", num_classes=NUM_CLASSES).eval()
    tokens = torch.full((1, model.grid**2), model.mask_id)
    assert not torch.allclose(model(tokens, Condition.null(1)), model(tokens, Condition.classes(torch.tensor([0]))))


@pytest.mark.parametrize("variant", ["maskmamba-parallel-2", "uvit", "mmamba"])
def test_save_load_round_trip_is_bit_exact(tmp_path, variant):
    model = build_model(variant, "tiny", num_classes=NUM_CLASSES).eval()
    model.save_pretrained(tmp_path)
    loaded = load_generator(tmp_path).eval()
    assert type(loaded) is type(model) and loaded.variant == variant
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    tokens, cond = _batch(model)
    assert torch.equal(model(tokens, cond), loaded(tokens, cond))


def test_unknown_names_are_clear():
    with pytest.raises(ValueError, match="choose one of"):
        build_model("gpt", "tiny")
    with pytest.raises(ValueError, match="choose one of"):
        build_model("transformer", "huge")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_generator("/nonexistent")


def test_sizes_named_in_issue():
    assert {"tiny", "small", "xl"} <= set(SIZES) and SIZES["xl"].width == 1024 and SIZES["xl"].depth == 24


@pytest.mark.parametrize("storage, max_size, max_error", [("fp16", 0.52, 1e-3), ("int8", 0.35, 0.02), ("int4", 0.25, 0.3)])
def test_storage_formats_shrink_and_stay_close(tmp_path, storage, max_size, max_error):
    from maskmamba.models import FILES, save_weights, stored_formats

    model = build_model("maskmamba-serial-half", "tiny", num_classes=NUM_CLASSES).eval()
    model.save_pretrained(tmp_path / "fp32")
    [path] = save_weights(model, tmp_path / storage, storage)
    assert path.name == FILES[storage] and stored_formats(tmp_path / storage) == [storage]
    assert path.stat().st_size < max_size * (tmp_path / "fp32" / "model.safetensors").stat().st_size
    loaded = load_generator(tmp_path / storage).eval()
    tokens, cond = _batch(model)
    with torch.no_grad():
        a, b = model(tokens, cond), loaded(tokens, cond)
    assert 0 < (a - b).norm() / a.norm() < max_error


def test_folder_with_several_formats_loads_the_one_asked(tmp_path):
    from maskmamba.models import save_weights, stored_formats

    model = build_model("transformer", "tiny", num_classes=NUM_CLASSES).eval()
    save_weights(model, tmp_path / "int4", "int4")
    model.save_pretrained(tmp_path / "both")
    (tmp_path / "both" / "model.int4.safetensors").write_bytes((tmp_path / "int4" / "model.int4.safetensors").read_bytes())
    assert stored_formats(tmp_path / "both") == ["fp32", "int4"]
    exact, coarse = load_generator(tmp_path / "both"), load_generator(tmp_path / "both", "int4")
    assert torch.equal(exact.head.weight, model.head.weight) and not torch.equal(coarse.head.weight, model.head.weight)
    with pytest.raises(FileNotFoundError, match="no int8 weights"):
        load_generator(tmp_path / "both", "int8")
    with pytest.raises(ValueError, match="unknown storage format"):
        load_generator(tmp_path / "both", "int3")


def test_shipped_style_int8_files_still_load(tmp_path):
    """An int8 file as the older code wrote it (matrix keeps its shape, '.int8_scale' per row) loads unchanged."""
    from safetensors.torch import save_file

    model = build_model("uvit", "tiny", num_classes=NUM_CLASSES).eval()
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    old = {}
    for name, t in model.state_dict().items():
        if t.ndim >= 2 and t.numel() >= 4096:
            rows = t.reshape(t.shape[0], -1)
            scale = (rows.abs().amax(1) / 127).clamp(min=1e-12).half()
            old[name] = (rows / scale.float()[:, None]).round().clamp(-127, 127).to(torch.int8).reshape(t.shape)
            old[name + ".int8_scale"] = scale
        else:
            old[name] = t.contiguous()
    save_file(old, str(tmp_path / "model.int8.safetensors"))
    loaded = load_generator(tmp_path)
    assert (loaded.head.weight - model.head.weight).abs().max() < model.head.weight.abs().max() / 100


@pytest.mark.parametrize("variant", ["maskmamba-serial-half", "uvit"])
def test_dropout_is_a_config_knob_that_only_acts_in_training(tmp_path, variant):
    plain = build_model(variant, "tiny", num_classes=NUM_CLASSES)
    torch.manual_seed(0)
    dropped = build_model(variant, "tiny", num_classes=NUM_CLASSES, dropout=0.3)
    assert plain.state_dict().keys() == dropped.state_dict().keys()  # shipped checkpoints load either way
    tokens, cond = _batch(dropped)
    dropped.train()
    assert not torch.equal(dropped(tokens, cond), dropped(tokens, cond))  # random masks in training
    dropped.eval()
    assert torch.equal(dropped(tokens, cond), dropped(tokens, cond))
    dropped.save_pretrained(tmp_path)
    assert load_generator(tmp_path).config.dropout == 0.3
    with pytest.raises(ValueError, match="dropout"):
        build_model(variant, "tiny", dropout=1.0)


@pytest.mark.parametrize("variant", ["transformer", "uvit"])
def test_a_pooled_prompt_changes_only_prompted_samples_and_is_saved(tmp_path, variant):
    """prompt_pool: slot 0 of a prompt becomes the mean of its valid states; class and null samples, and the
    weights' names, are as without it."""
    text = torch.randn(2, 16, 384)
    mask = torch.arange(16)[None] < torch.tensor([[3], [16]])
    pooled = pooled_first(text, mask)
    assert torch.allclose(pooled[0, 0], text[0, :3].mean(0)) and torch.allclose(pooled[1, 0], text[1].mean(0))
    assert torch.equal(pooled[:, 1:], text[:, 1:])
    plain = build_model(variant, "tiny", num_classes=NUM_CLASSES).eval()
    pool = build_model(variant, "tiny", num_classes=NUM_CLASSES, prompt_pool=True).eval()
    pool.load_state_dict(plain.state_dict())  # same names and shapes: a warm start may switch it on
    tokens, cond = _batch(plain)  # class, prompt, null
    with torch.no_grad():
        a, b = plain(tokens, cond), pool(tokens, cond)
    assert torch.equal(a[[0, 2]], b[[0, 2]]) and not torch.allclose(a[1], b[1])
    pool.save_pretrained(tmp_path)
    assert load_generator(tmp_path).config.prompt_pool


def test_generator_config_holds_the_shape_and_refuses_what_uvit_ignores(tmp_path):
    from maskmamba.models import GeneratorConfig

    config = GeneratorConfig.named("maskmamba-serial-half", "tiny", num_classes=NUM_CLASSES)
    assert (config.cond_position, config.d_state, config.width) == ("middle", SIZES["tiny"].d_state, SIZES["tiny"].width)
    uvit = GeneratorConfig.named("uvit", "tiny", num_classes=NUM_CLASSES)
    assert uvit.cond_position is None and uvit.d_state is None
    with pytest.raises(ValueError, match="U-ViT takes no cond_position"):
        build_model("uvit", "tiny", cond_position="head")
    with pytest.raises(ValueError, match="cond_position must be one of"):
        build_model("transformer", "tiny", cond_position="side")
    model = build_model("uvit", "tiny", num_classes=NUM_CLASSES)
    model.save_pretrained(tmp_path)
    saved = (tmp_path / "config.json").read_text()
    assert GeneratorConfig.from_dict(json.loads(saved) | {"default_cfg": 2.0}) == uvit
    assert load_generator(tmp_path).config == uvit


def test_registry_lists_mixers_only_for_in_context_variants():
    assert VARIANTS["uvit"].layers is None
    assert all(VARIANTS[v].layers(4) for v in VARIANTS if v != "uvit")
