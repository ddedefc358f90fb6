"""On CUDA: whole models through mamba-ssm match the PyTorch scan; CUDA-graph replays match eager steps and previews."""
from __future__ import annotations

import pytest
import torch

from maskmamba import Condition, build_model, maskgit
from maskmamba.sampler import guidance
from maskmamba.settings import SamplingSettings
from maskmamba.ops import MAMBA_SSM_AVAILABLE, use_scan_backend

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

MAMBA_VARIANTS = ["maskmamba-serial-half", "maskmamba-parallel-4", "bimamba-vim", "mmamba"]


def _inputs(model, device):
    tokens = torch.randint(0, model.codebook_size, (2, model.grid**2), device=device)
    tokens[:, ::2] = model.mask_id
    return tokens, Condition.classes(torch.tensor([1, 4], device=device))


@pytest.mark.skipif(not MAMBA_SSM_AVAILABLE, reason="mamba-ssm not importable")
@pytest.mark.parametrize("variant", MAMBA_VARIANTS)
def test_model_through_mamba_ssm_matches_torch_scan(variant):
    torch.backends.cuda.matmul.allow_tf32 = False
    model = build_model(variant, "tiny", num_classes=10).cuda().eval()
    tokens, cond = _inputs(model, "cuda")
    with torch.no_grad():
        with use_scan_backend("mamba-ssm"):
            fast = model(tokens, cond)
        with use_scan_backend("torch"):
            slow = model(tokens, cond)
    rel = ((fast - slow).norm() / slow.norm()).item()
    print(f"{variant}: mamba-ssm vs torch scan, whole model fp32: max abs {(fast - slow).abs().max().item():.2e}, rel {rel:.2e}")
    assert rel < 1e-4


@pytest.mark.parametrize("variant", ["maskmamba-serial-half", "transformer", "uvit", "mmamba"])
def test_cuda_graph_steps_match_eager(variant):
    from maskmamba.graphs import GraphedGuidance

    torch.backends.cuda.matmul.allow_tf32 = False
    model = build_model(variant, "tiny", num_classes=10).cuda().eval()
    cond = Condition.classes(torch.tensor([2], device="cuda"))
    settings = SamplingSettings(steps=6, cfg_scale=2.0, seed=3)
    eager = [s.tokens.clone() for s in maskgit(guidance(model), cond, model.grid, model.mask_id, settings)]
    graphed = GraphedGuidance(model, batch=1)
    replay = [s.tokens.clone() for s in maskgit(graphed, cond, model.grid, model.mask_id, settings)]
    agree = sum(torch.equal(a, b) for a, b in zip(eager, replay))
    print(f"{variant}: {agree}/6 steps identical between eager and CUDA-graph replay")
    assert agree >= 5  # identical kernels; allow one step of argmax tie-breaking from reordered reductions


def test_graphed_preview_matches_eager():
    from maskmamba.graphs import GraphedPreview
    from maskmamba.models.tokenizer import VQTokenizer
    from maskmamba.pipeline import preview_pixels

    tokenizer = VQTokenizer().cuda().eval()
    graphed = GraphedPreview(tokenizer)
    n = tokenizer.grid**2
    for masked in (0.9, 0.4, 0.0):  # different tokens and masks through the same static buffers
        tokens = torch.randint(0, tokenizer.codebook_size, (1, n), device="cuda")
        mask = torch.rand(1, n, device="cuda") < masked
        replay = graphed(tokens, mask).clone()
        eager = preview_pixels(tokenizer, tokens, mask)[0]
        diff = (replay.int() - eager.int()).abs()
        print(f"{masked=}: {(diff > 0).sum().item()} of {diff.numel()} values differ, max {diff.max().item()}")
        # Same code and kernels, but cuDNN may choose another (TF32) convolution algorithm under capture: a tiny
        # float difference can move a value across a rounding or truncation boundary, by one level at most.
        assert replay.shape == (128, 128, 3) and replay.dtype == torch.uint8
        assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01


def test_bf16_pipeline_dtype_runs():
    model = build_model("maskmamba-serial-half", "tiny", num_classes=10).cuda().to(torch.bfloat16).eval()
    tokens, cond = _inputs(model, "cuda")
    with torch.no_grad():
        logits = model(tokens, cond)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
