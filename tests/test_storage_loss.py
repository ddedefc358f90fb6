"""bench.storage_loss's int8 dither: noise like one more int8 rounding, on exactly the matrices int8 quantizes."""
from __future__ import annotations

import torch

from bench.storage_loss import int8_dither
from maskmamba import build_model
from maskmamba.models.quantize import INT8_SCALE, quantize_state


def test_the_dither_stays_within_half_a_step_of_each_row_and_spares_what_int8_keeps():
    state = build_model("maskmamba-parallel-2", "tiny", num_classes=2).state_dict()
    dithered = int8_dither(state, seed=0)
    scales = {k[: -len(INT8_SCALE)]: v.float() for k, v in quantize_state(state, "int8").items() if k.endswith(INT8_SCALE)}
    assert scales and set(dithered) == set(state)
    for name, tensor in state.items():
        moved = (dithered[name] - tensor).reshape(tensor.shape[0], -1) if tensor.dim() else dithered[name] - tensor
        if name in scales:
            half = scales[name][:, None] / 2
            assert moved.abs().max() > 0 and bool((moved.abs() <= half + 1e-6).all())
        else:  # 1-D tensors and small tables stay float32 in int8: no rounding, no dither
            assert torch.equal(dithered[name], tensor)
    assert torch.equal(int8_dither(state, seed=0)[next(iter(scales))], dithered[next(iter(scales))])  # seeded
