"""n independent Mamba-1 SSM branches (depthwise conv -> SiLU -> selective scan) run as one grouped scan.

Each scan direction of a bidirectional or four-direction block is one branch with its own conv, x/dt
projections, A and D. Stacking the branches along channels, with one B/C group per branch, lets a single
`selective_scan` call (one CUDA kernel launch) cover every direction.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from maskmamba.ops import selective_scan


class MultiScan(nn.Module):
    """Maps (B, n, L, E) -> (B, n, L, E): branch i scans sequence i over its positions 0..L-1."""

    def __init__(self, inner: int, n: int, d_state: int = 16, d_conv: int = 3, causal: bool = False):
        super().__init__()
        self.inner, self.n, self.d_state, self.d_conv, self.causal = inner, n, d_state, d_conv, causal
        self.dt_rank = math.ceil(inner / 16)
        channels = n * inner
        self.conv = nn.Conv1d(channels, channels, d_conv, groups=channels)
        bound = inner**-0.5
        self.x_proj = nn.Parameter(torch.empty(n, inner, self.dt_rank + 2 * d_state).uniform_(-bound, bound))
        self.dt_proj = nn.Parameter(torch.empty(n, self.dt_rank, inner).uniform_(-(self.dt_rank**-0.5), self.dt_rank**-0.5))
        dt = torch.exp(torch.empty(channels).uniform_(math.log(1e-3), math.log(1e-1))).clamp(min=1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus(dt_bias) = dt at init
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(channels, 1))
        self.D = nn.Parameter(torch.ones(channels))
        for param in (self.dt_bias, self.A_log, self.D):  # as state-spaces/mamba: AdamW leaves these undecayed
            param._no_weight_decay = True

    def _conv(self, u: torch.Tensor) -> torch.Tensor:
        k = self.d_conv
        pad = (k - 1, 0) if self.causal else ((k - 1) // 2, k // 2)  # causal: past only; standard: centred
        return F.silu(self.conv(F.pad(u, pad)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, length, e = x.shape
        u = self._conv(x.permute(0, 1, 3, 2).reshape(b, n * e, length))
        proj = torch.einsum("bnel,ner->bnrl", u.view(b, n, e, length), self.x_proj.to(u.dtype))
        dt, B, C = proj.split([self.dt_rank, self.d_state, self.d_state], dim=2)
        delta = torch.einsum("bnrl,nre->bnel", dt, self.dt_proj.to(dt.dtype)).reshape(b, n * e, length)
        y = selective_scan(
            u.contiguous(), delta.contiguous(), -torch.exp(self.A_log.float()), B.contiguous(), C.contiguous(),
            self.D.float(), z=None, delta_bias=self.dt_bias.float(), delta_softplus=True,
        )
        return y.view(b, n, e, length).permute(0, 1, 3, 2)
