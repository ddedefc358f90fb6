"""On CUDA: a training step replayed from a CUDA graph trains the same weights as the eager step, with a teacher too."""
from __future__ import annotations

import copy

import pytest
import torch

from maskmamba import build_model
from maskmamba.text_encoder import PROMPT_TOKENS, TEXT_DIM
from maskmamba.train.generator import make_train_step
from maskmamba.graphs import GraphedStep

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _batch(model, generator, batch=16):
    n, dev = model.grid**2, "cuda"
    ids = torch.randint(0, model.codebook_size, (batch, n), generator=generator, device=dev)
    mask = torch.rand(batch, n, generator=generator, device=dev) < 0.5
    classes = torch.randint(-1, 5, (batch,), generator=generator, device=dev)
    text = torch.randn(batch, PROMPT_TOKENS, TEXT_DIM, generator=generator, device=dev)
    text_mask = (classes < 0)[:, None] & (torch.arange(PROMPT_TOKENS, device=dev) < 4)
    return ids, torch.where(mask, model.mask_id, ids), mask, classes, text, text_mask


@pytest.mark.parametrize("variant,teacher_variant", [
    *((v, None) for v in ("transformer", "uvit", "maskmamba-serial-half", "maskmamba-parallel-2", "bimamba-v2", "mmamba")),
    ("maskmamba-parallel-2", "maskmamba-serial-half"), ("mmamba", "uvit"),  # a teacher's forward inside the graph
])
def test_graphed_step_trains_like_eager(variant, teacher_variant):
    device = torch.device("cuda")
    model = build_model(variant, "tiny", num_classes=5).to(device)
    teacher = build_model(teacher_variant, "tiny", num_classes=5).to(device).eval() if teacher_variant else None
    twin, start = copy.deepcopy(model), copy.deepcopy(model)
    graphed_opt = torch.optim.AdamW(model.parameters(), lr=torch.tensor(1e-3, device=device), capturable=True)
    eager_opt = torch.optim.AdamW(twin.parameters(), lr=1e-3)
    graphed = GraphedStep(make_train_step(model, graphed_opt, 0.1, device, teacher, 0.5), warmup=2)
    eager = make_train_step(twin, eager_opt, 0.1, device, teacher, 0.5)
    generator = torch.Generator(device).manual_seed(0)
    for _ in range(6):  # 2 warm-up, 1 capture, 3 replays
        batch = _batch(model, generator)
        loss_graph, loss_eager = graphed(*batch).item(), eager(*batch).item()
        assert abs(loss_graph - loss_eager) < 2e-2 * abs(loss_eager)
    moved = sum((p - q).float().norm() ** 2 for p, q in zip(twin.parameters(), start.parameters())) ** 0.5
    apart = sum((p - q).float().norm() ** 2 for p, q in zip(model.parameters(), twin.parameters())) ** 0.5
    print(f"{variant}: weights moved {moved:.3e}, graph vs eager apart {apart:.3e} ({apart / moved:.2e})")
    assert moved > 0 and apart < 0.05 * moved
