"""MaskGIT sampling: deterministic per seed, CFG 0 is the null pass, inpainting keeps given tokens."""
from __future__ import annotations

import math

import pytest
import torch

from maskmamba import Condition, build_model, maskgit
from maskmamba.sampler import guided_logits, masked_after

from .conftest import NUM_CLASSES


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("maskmamba-serial-half", "tiny", num_classes=NUM_CLASSES).eval()


def _run(model, **kwargs):
    return list(maskgit(model, Condition.classes(torch.tensor([2, 4])), **kwargs))


def test_every_step_yields_and_all_tokens_are_decoded(model):
    steps = _run(model, steps=6, seed=1)
    assert [s.index for s in steps] == list(range(1, 7))
    masked = [int(s.mask.sum()) for s in steps]
    assert masked == sorted(masked, reverse=True) and masked[-1] == 0
    assert (steps[-1].tokens < model.codebook_size).all()
    assert all(s.latency_ms > 0 for s in steps)


def test_same_seed_same_tokens_other_seed_differs(model):
    a, b, c = (_run(model, steps=5, seed=s)[-1].tokens for s in (7, 7, 8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_cfg_zero_is_the_null_pass(model):
    tokens = torch.full((2, model.grid**2), model.mask_id)
    cond = Condition.classes(torch.tensor([1, 5]))
    with torch.no_grad():
        guided = guided_logits(model, tokens, cond, 0.0)
        null = model(tokens, Condition.null(2))
    torch.testing.assert_close(guided, null, rtol=1e-5, atol=1e-5)


def test_cfg_one_is_the_conditional_pass(model):
    tokens = torch.full((2, model.grid**2), model.mask_id)
    cond = Condition.classes(torch.tensor([1, 5]))
    with torch.no_grad():
        torch.testing.assert_close(guided_logits(model, tokens, cond, 1.0), model(tokens, cond), rtol=1e-4, atol=1e-4)


def test_inpainting_never_changes_given_tokens(model):
    given = torch.randint(0, model.codebook_size, (2, model.grid**2))
    hole = torch.zeros_like(given, dtype=torch.bool)
    hole[:, 40:90] = True
    start = torch.where(hole, model.mask_id, given)
    for step in _run(model, steps=4, seed=3, tokens=start):
        assert torch.equal(step.tokens[~hole], given[~hole])
        assert torch.equal(step.prediction[~hole], given[~hole])
    assert (step.tokens[hole] < model.codebook_size).all()


def test_schedule_is_cosine_and_ends_at_zero():
    n = torch.tensor([256])
    counts = [int(masked_after(s, 8, n)) for s in range(1, 9)]
    assert counts[0] == math.floor(256 * math.cos(math.pi / 16)) and counts[-1] == 0
    assert counts == sorted(counts, reverse=True)


@pytest.mark.parametrize("kwargs", [dict(steps=0), dict(steps=10_000), dict(cfg_scale=-1.0), dict(cfg_scale=float("nan")), dict(temperature=0.0)])
def test_bad_settings_raise_readable_errors(model, kwargs):
    with pytest.raises(ValueError):
        _run(model, **kwargs)
