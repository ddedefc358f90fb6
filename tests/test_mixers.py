"""Mamba-based mixers are bidirectional: a change at a LATER position moves the output at an EARLIER one."""
from __future__ import annotations

import pytest
import torch

from maskmamba.modules import MultiScan, SeqLayout, make_mixer

LAYOUT = SeqLayout(grid=4, slots=3, position="middle")


@pytest.mark.parametrize("kind", ["bimamba_v2", "bimamba_vim", "mmamba", "parallel2", "parallel4", "attn"])
def test_later_token_changes_earlier_output(kind):
    mixer = make_mixer(kind, width=32, heads=4, d_state=8).eval()
    x = torch.randn(1, LAYOUT.length, 32)
    y = x.clone()
    y[:, -1] += 1.0  # change only the last position
    with torch.no_grad():
        delta = (mixer(x, LAYOUT) - mixer(y, LAYOUT)).abs()
    assert delta[0, 0].max() > 1e-6, "the first position did not see the last one"


def test_one_causal_scan_is_not_bidirectional():
    """The control for the test above: a single forward scan must not see the future."""
    scan = MultiScan(inner=16, n=1, d_state=8, d_conv=4, causal=True).eval()
    x = torch.randn(1, 1, 20, 16)
    y = x.clone()
    y[:, :, -1] += 1.0
    with torch.no_grad():
        delta = (scan(x) - scan(y)).abs()
    assert delta[:, :, :-1].max() == 0 and delta[:, :, -1].max() > 0


def test_non_causal_conv_sees_next_position():
    """Bi-Mamba-v2's change (1): the centred conv mixes in the next position even within one direction."""
    causal = MultiScan(16, 1, 8, d_conv=3, causal=True).eval()
    centred = MultiScan(16, 1, 8, d_conv=3, causal=False).eval()
    centred.load_state_dict(causal.state_dict())
    x = torch.randn(1, 1, 10, 16)
    y = x.clone()
    y[:, :, 5] += 1.0
    with torch.no_grad():
        assert (causal(x) - causal(y))[:, :, 4].abs().max() == 0
        assert (centred(x) - centred(y))[:, :, 4].abs().max() > 0


def test_four_scan_orders_are_permutations():
    index = LAYOUT.scan_index
    for row in index:
        assert sorted(row.tolist()) == list(range(LAYOUT.length))
        assert torch.equal(row[: LAYOUT.slots], LAYOUT.cond_index)  # condition in front of every direction
