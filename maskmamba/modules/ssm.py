"""n independent Mamba-1 SSM branches (depthwise conv -> SiLU -> selective scan) run as one grouped scan.

Each scan direction of a bidirectional or four-direction block is one branch with its own conv, x/dt
projections, A and D. On the "triton" scan backend all branches run in the project's fused kernel
(`maskmamba.ops.triton_scan`), reversed branches reading the shared input backwards in place; otherwise the
branches are stacked along channels, with one B/C group per branch, into one `selective_scan` call.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from maskmamba.ops import causal_conv_silu, conv_silu, fused_scan, scan_backend, selective_scan, selective_scan_torch


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
        if self.causal:  # past only (Vision Mamba), through causal-conv1d where it imports
            return causal_conv_silu(u, self.conv.weight, self.conv.bias)
        k = self.d_conv
        return F.silu(self.conv(F.pad(u, ((k - 1) // 2, k // 2))))  # standard: centred

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, length, e = x.shape
        y = self.scan(x.transpose(1, 2), reverse_odd=False)
        return y.view(b, length, n, e).transpose(1, 2)

    def scan(self, x: torch.Tensor, reverse_odd: bool, gate: torch.Tensor | None = None) -> torch.Tensor:
        """All branches over x: (b, L, E) shared by every branch, or (b, L, n, E) one sequence per branch.

        With reverse_odd, odd branches scan their sequence from the end (outputs stay in memory order).
        Returns (b, L, n*E), the branch outputs side by side, followed by silu(gate) (b, L, E) if given:
        the buffer a mixer's out-projection reads.
        """
        backend = scan_backend(x.device)
        if backend == "triton":
            return self._fused(x, reverse_odd, gate)
        b, length, e, n = x.shape[0], x.shape[1], self.inner, self.n
        seqs = x.unsqueeze(1).expand(b, n, length, e) if x.dim() == 3 else x.transpose(1, 2)
        flip = reverse_odd and n > 1
        if flip:
            seqs = torch.stack([s.flip(1) if i % 2 else s for i, s in enumerate(seqs.unbind(1))], dim=1)
        y = self._stacked(seqs, selective_scan_torch if backend == "torch" else selective_scan)
        outs = [s.flip(1) if flip and i % 2 else s for i, s in enumerate(y.unbind(1))]
        if gate is not None:
            outs.append(F.silu(gate))
        return torch.cat(outs, dim=-1)

    def _stacked(self, x: torch.Tensor, scan_fn) -> torch.Tensor:
        """(b, n, L, E) -> (b, n, L, E): one grouped `scan_fn` call over the branches stacked along channels."""
        b, n, length, e = x.shape
        u = self._conv(x.permute(0, 1, 3, 2).reshape(b, n * e, length))
        proj = torch.einsum("bnel,ner->bnrl", u.view(b, n, e, length), self.x_proj.to(u.dtype))
        dt, B, C = proj.split([self.dt_rank, self.d_state, self.d_state], dim=2)
        delta = torch.einsum("bnrl,nre->bnel", dt, self.dt_proj.to(dt.dtype)).reshape(b, n * e, length)
        y = scan_fn(
            u.contiguous(), delta.contiguous(), -torch.exp(self.A_log.float()), B.contiguous(), C.contiguous(),
            self.D.float(), z=None, delta_bias=self.dt_bias.float(), delta_softplus=True,
        )
        return y.view(b, n, e, length).permute(0, 1, 3, 2)

    def _fused(self, x: torch.Tensor, reverse_odd: bool, gate: torch.Tensor | None) -> torch.Tensor:
        """The "triton" backend: conv+SiLU for the projections, then the fused scan writing the output buffer."""
        b, length, n, e = x.shape[0], x.shape[1], self.n, self.inner
        weight = self.conv.weight.view(n * e, self.d_conv)
        u = conv_silu(x, weight, self.conv.bias, n, causal=self.causal, reverse_odd=reverse_odd)  # (n, b, L, E)
        # projections transposed, (n, channels, b*L): B and C come out time-contiguous, as the kernel reads them
        proj = torch.bmm(self.x_proj.to(u.dtype).transpose(1, 2), u.view(n, b * length, e).transpose(1, 2))
        dt = proj[:, : self.dt_rank]
        B, C = proj[:, self.dt_rank :].float().split(self.d_state, dim=1)  # fp32: the kernel reads each 16x
        delta = torch.bmm(dt.transpose(1, 2), self.dt_proj.to(dt.dtype))  # (n, b*L, E)

        def per_branch(t: torch.Tensor, channels_last: bool) -> torch.Tensor:  # -> (b, L, n, c) view
            if channels_last:  # (n, b*L, c)
                return t.view(n, b, length, t.shape[-1]).permute(1, 2, 0, 3)
            return t.view(n, t.shape[1], b, length).permute(2, 3, 0, 1)  # (n, c, b*L)

        return fused_scan(
            x, weight, self.conv.bias, per_branch(delta, True), -torch.exp(self.A_log.float()),
            per_branch(B, False), per_branch(C, False), self.D, self.dt_bias, gate,
            causal=self.causal, reverse_odd=reverse_odd,
        )
