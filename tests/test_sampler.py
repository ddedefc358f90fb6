"""MaskGIT sampling: deterministic per seed, CFG 0 is the null pass, inpainting keeps given tokens, no empty step."""
from __future__ import annotations

import math

import pytest
import torch

from maskmamba import Condition, build_model, maskgit
from maskmamba.sampler import StepPlan, guidance, guided_logits
from maskmamba.schedule import clamped_count, decoding_steps, mask_ratio
from maskmamba.settings import SamplingSettings

from .conftest import NUM_CLASSES


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("maskmamba-serial-half", "tiny", num_classes=NUM_CLASSES).eval()


def _run(model, tokens=None, **settings):
    cond = Condition.classes(torch.tensor([2, 4]))
    return list(maskgit(guidance(model), cond, model.grid, model.mask_id, SamplingSettings(**settings), tokens=tokens))


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


def _counts(n_unknown: int, steps: int) -> list[int]:
    """Masked counts after each step, as the sampler runs the schedule."""
    n = torch.tensor([n_unknown])
    total, left, counts = decoding_steps(steps, n), n, []
    for s in range(1, total + 1):
        plan = StepPlan.at(s, total, SamplingSettings())
        left = clamped_count(n, left, plan.ratio, plan.later)
        counts.append(int(left))
    return counts


def test_schedule_is_cosine_and_ends_at_zero():
    counts = _counts(256, 8)
    assert counts[0] == math.floor(256 * math.cos(math.pi / 16)) and counts[-1] == 0
    assert counts == sorted(counts, reverse=True)
    assert counts[3] == math.floor(256 * mask_ratio(4 / 8))  # the same function training masks with


@pytest.mark.parametrize("n_unknown, steps", [(3, 12), (12, 12), (13, 12), (40, 12), (256, 12), (256, 256), (1, 5)])
def test_no_step_decodes_nothing(n_unknown, steps):
    counts = _counts(n_unknown, steps)
    assert len(counts) == min(steps, n_unknown) and counts[-1] == 0
    decoded = [a - b for a, b in zip([n_unknown, *counts], counts)]
    assert min(decoded) >= 1, decoded


def test_few_masked_tokens_take_one_step_each(model):
    given = torch.randint(0, model.codebook_size, (2, model.grid**2))
    start = given.clone()
    start[:, [5, 77, 200]] = model.mask_id  # 3 tokens over 12 steps: 3 steps, one token each (not 9 empty ones)
    steps = _run(model, steps=12, seed=0, tokens=start)
    assert [s.total for s in steps] == [3, 3, 3]
    assert [int(s.mask[0].sum()) for s in steps] == [2, 1, 0]


@pytest.mark.parametrize("kwargs", [dict(steps=0), dict(steps=10_000), dict(cfg_scale=-1.0), dict(cfg_scale=float("nan")),
                                    dict(temperature=0.0), dict(choice_temperature=-1.0), dict(choice_temperature=float("inf")),
                                    dict(cfg_schedule="cosine")])
def test_bad_settings_raise_readable_errors(model, kwargs):
    with pytest.raises(ValueError):
        _run(model, **kwargs)


def test_the_choice_temperature_scales_the_choice_noise_and_changes_what_stays_decoded(model):
    plans = [StepPlan.at(s, 4, SamplingSettings(choice_temperature=2.0)) for s in range(1, 5)]
    assert [p.noise_scale for p in plans] == [1.5, 1.0, 0.5, 0.0]
    greedy, noisy = _run(model, steps=4, seed=5, choice_temperature=0.0), _run(model, steps=4, seed=5)
    assert not torch.equal(greedy[0].mask, noisy[0].mask)  # the same samples, another choice of what stays masked
    assert torch.equal(greedy[0].prediction, noisy[0].prediction)


def test_the_linear_cfg_schedule_rises_from_unguided_to_the_scale_with_the_share_decoded(model):
    constant = [StepPlan.at(s, 6, SamplingSettings(cfg_scale=3.0)).cfg_scale for s in range(1, 7)]
    linear = [StepPlan.at(s, 6, SamplingSettings(cfg_scale=3.0, cfg_schedule="linear")).cfg_scale for s in range(1, 7)]
    assert constant == [3.0] * 6
    assert linear[0] == 1.0 and linear == sorted(linear) and len(set(linear)) == 6 and 2.4 < linear[-1] < 3.0
    assert linear[3] == pytest.approx(1 + 2 * (1 - mask_ratio(3 / 6)))  # the share known before step 4
    ramped, flat = _run(model, steps=6, seed=4, cfg_scale=3.0, cfg_schedule="linear"), _run(model, steps=6, seed=4, cfg_scale=3.0)
    assert torch.equal(ramped[0].prediction, _run(model, steps=6, seed=4, cfg_scale=1.0)[0].prediction)  # step 1 unguided
    assert not torch.equal(ramped[-1].tokens, flat[-1].tokens)


def test_a_step_fn_replaces_the_eager_step_and_sees_each_steps_plan(model):
    from maskmamba.sampler import eager_step

    plans = []

    def recording(tokens, cond, plan, generator, n_unknown):
        plans.append(plan)
        return eager_step(guidance(model), model.mask_id, tokens, cond, plan, generator, n_unknown)

    cond = Condition.classes(torch.tensor([2, 4]))
    settings = SamplingSettings(steps=4, seed=1, cfg_scale=2.5)
    stepped = list(maskgit(None, cond, model.grid, model.mask_id, settings, step_fn=recording))
    eager = _run(model, steps=4, seed=1, cfg_scale=2.5)
    assert all(torch.equal(a.tokens, b.tokens) for a, b in zip(stepped, eager))
    assert [p.later for p in plans] == [3, 2, 1, 0] and plans[-1].noise_scale == 0 and plans[0].cfg_scale == 2.5
    assert plans[0].ratio == pytest.approx(mask_ratio(1 / 4))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_graphed_step_is_the_eager_step_and_its_outputs_outlive_the_next_replay(model):
    from maskmamba.graphs import GraphedDecoding
    from maskmamba.sampler import StepPlan, eager_step

    gpu = build_model("maskmamba-serial-half", "tiny", num_classes=NUM_CLASSES).eval().cuda().to(torch.bfloat16)
    graphed = GraphedDecoding(gpu)
    cond = Condition.classes(torch.tensor([3], device="cuda"))
    tokens = torch.full((1, gpu.grid**2), gpu.mask_id, device="cuda")
    n_unknown = (tokens == gpu.mask_id).sum(dim=1)
    plan = StepPlan(cfg_scale=2.0, temperature=1.0, noise_scale=2.0, ratio=0.7, later=3)
    eager = eager_step(guidance(gpu), gpu.mask_id, tokens, cond, plan, torch.Generator("cuda").manual_seed(0), n_unknown)
    replay = graphed(tokens, cond, plan, torch.Generator("cuda").manual_seed(0), n_unknown)
    assert (eager[0] == replay[0]).float().mean() > 0.95  # the same kernels; argmax ties aside
    assert eager[2].sum() == replay[2].sum() == math.floor(gpu.grid**2 * 0.7)
    kept = [t.clone() for t in replay]
    graphed(replay[0], cond, StepPlan(2.0, 1.0, 0.0, 0.0, 0), torch.Generator("cuda").manual_seed(1), n_unknown)
    assert all(torch.equal(a, b) for a, b in zip(kept, replay))
