"""Every variant builds, trains a step and matches the Transformer's parameter count; save/load is exact."""
from __future__ import annotations

import json

import pytest
import torch

from maskmamba import SIZES, VARIANTS, Condition, build_model, load_generator
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


@pytest.mark.parametrize("size", ["tiny", "small", "xl"])
def test_parameters_match_transformer(size):
    with torch.device("meta"):
        counts = {v: count_params(build_model(v, size, num_classes=100)) for v in VARIANTS}
    reference = counts["transformer"]
    for variant, n in counts.items():
        assert abs(n / reference - 1) <= 0.10, f"{variant} at {size}: {n:,} vs transformer {reference:,}"


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


def test_int8_export_is_a_quarter_and_close(tmp_path):
    from maskmamba.models import save_int8

    model = build_model("maskmamba-serial-half", "tiny", num_classes=NUM_CLASSES).eval()
    model.save_pretrained(tmp_path / "fp32")
    path = save_int8(model, tmp_path / "int8")
    assert path.stat().st_size < 0.35 * (tmp_path / "fp32" / "model.safetensors").stat().st_size
    loaded = load_generator(tmp_path / "int8").eval()
    tokens, cond = _batch(model)
    with torch.no_grad():
        a, b = model(tokens, cond), loaded(tokens, cond)
    assert (a - b).norm() / a.norm() < 0.02
    assert torch.equal(a.argmax(-1), b.argmax(-1)) or (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.97


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
