"""The project's fused multi-direction selective scan: conv + SiLU + S6 scan + D skip, in one Triton launch.

n branches ("directions") of Mamba-1 each see a sequence of L positions. Direction i has its own depthwise
conv (K taps), dt bias, A and D; odd directions may scan the shared input in reverse (Bi-Mamba) without any
flipped copy: the program id picks the direction, and a reversed direction walks memory from L-1 down to 0.
For direction i in its scan order (channels e, states n):

    u_t = silu(conv_b + sum_k conv_w[k] x_{t+k-PAD})     PAD = K-1 (causal) or (K-1)//2 (centred)
    delta_t = softplus(delta_raw_t + dt_bias);  h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t
    y_t = C_t . h_t + D u_t

The scan is chunked (a batch-1 image fills the GPU): each chunk of CHUNK positions reduces to its delta sum and
end state (`_fwd_chunk_summary`), a scan over the chunks chains those into the state entering each chunk
(`_carry`), and each chunk then scans from its carried-in state (`_fwd_output`); both forward kernels take
`ScanConfig.state_block` states at a time, as independent recurrences per lane. In training the forward
scans at the backward's finer chunk and keeps its chunk states; the backward runs the adjoint scan
g_t = C_t dy_t + exp(delta_t' A) g_t' (t' the position after t in scan order) the same way in the opposite
direction, recomputes h within each chunk from those states, and ends with the transposed conv. Everything
accumulates in fp32; the gradients shared across channels (B, C, A, D, ...) are summed with relaxed atomics.
Walking (`ScanConfig.walk`, `walks`), the output kernel and the backward's main kernel instead take a whole
sequence per program, chunk after chunk, and hand each chunk's end state to the next through the same chunk-state
buffers, so neither the summaries nor `_carry` run: for large batches of short sequences, whose programs fill the
GPU anyway (training; by default only where they put enough programs on each SM).

Layouts are channels-last, as the mixers produce them: x (b, L, E) shared by all directions or (b, L, n, E);
delta (b, L, n, E); B, C (b, L, n, N), any strides. The output is the (b, L, n*E [+E]) buffer that the mixer's
out-projection reads: the n directions in memory order, then silu(gate) when a gate is given.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util

import torch
from torch import Tensor

# Triton itself is imported lazily (see _kernels): its jit decorators read TRITON_INTERPRET at import time.
TRITON_AVAILABLE = importlib.util.find_spec("triton") is not None


AUTO_WALK = 2  # ScanConfig.walk: decided per launch by `walks`


@dataclasses.dataclass
class ScanConfig:
    """Tile sizes (powers of two): `chunk` positions (`bwd_chunk` when a gradient will be asked for: the
    backward's tiles keep more live values) x `block_e` channels per program, and warps per program
    (block_e = 32 x warps puts one channel on each lane and a whole chunk in its registers; a smaller block_e
    spreads the chunk over lanes too). The forward kernels take `state_block` states per turn of their state
    loop, dividing N: that many independent recurrences per lane; the backward's own kernels take
    `bwd_state_block`. A walking scan gives each program every chunk of its sequence in turn, the state carried
    from one chunk to the next through the chunk-state buffer: no chunk summaries and no `_carry`, for batches
    whose programs fill the GPU without splitting a sequence (training's 256 positions). `walk`: 0 never, 1
    always, 2 (AUTO_WALK) on a GPU when one program per sequence still puts WALK_PROGRAMS_PER_SM on each SM."""

    chunk: int = 32
    block_e: int = 32
    warps: int = 1
    bwd_chunk: int = 16
    state_block: int = 2  # H100, xl, 16,384 tokens: 0.766 ms against 0.878 at 1 (bench.layers --sweep-only)
    bwd_state_block: int = 2  # H200, small, batch 256: 7,038 training images/s against 6,884 at 1
    walk: int = AUTO_WALK  # H200, small, batch 256: 7,488 training images/s against 7,254 for serial-half


CONFIG = ScanConfig()  # benchmarks may change it; the CPU interpreter tests pass their own
# H200, small, batch 256, walking against not: serial-half (19 programs per SM) +3.2%, parallel-2 (7.8) +3.9%,
# parallel-4 (3.9) -6.8% (docs/kernels.md)
WALK_PROGRAMS_PER_SM = 6


def config_from_text(text: str, base: ScanConfig | None = None) -> ScanConfig:
    """'bwd_chunk=8,bwd_state_block=2' -> `base` (default CONFIG) with those fields changed (benchmarks' flags)."""
    fields = {f.name for f in dataclasses.fields(ScanConfig)}
    changes = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name not in fields or not value.isdigit():
            raise ValueError(f"expected NAME=INT with NAME one of {sorted(fields)}, got {item!r}")
        changes[name] = int(value)
    return dataclasses.replace(base or CONFIG, **changes)


@functools.cache
def _kernels():
    """Import (and so build) the Triton kernels on first use, after any TRITON_INTERPRET setting."""
    from . import _triton_scan_kernels as kernels

    return kernels


def _next_power_of_2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def walks(cfg: ScanConfig, sequences: int, device: torch.device) -> bool:
    """Whether the scan walks: `sequences` (direction x channel block x batch row) programs would each take one
    whole sequence."""
    if cfg.walk != AUTO_WALK:
        return bool(cfg.walk)
    return device.type == "cuda" and sequences >= WALK_PROGRAMS_PER_SM * _sm_count(device)


@functools.cache
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _scan_grid(nchunk: int, n: int, neb: int, b: int, walk: bool) -> tuple[int, int, int]:
    """The programs of a scan kernel: one per (chunk, direction x channel block, batch row), or with `walk` one
    per sequence (it takes every chunk in turn)."""
    return (1 if walk else nchunk, n * neb, b)


def _pad(K: int, causal: bool) -> int:
    """Taps before the centre: all but one if causal, else (K-1)//2 (centred)."""
    return K - 1 if causal else (K - 1) // 2


def _strides4(t: Tensor) -> tuple[int, int, int, int]:
    """(b, L, direction, last) strides of a (b, L, last) shared tensor (direction stride 0) or (b, L, n, last)."""
    if t.dim() == 3:
        return t.stride(0), t.stride(1), 0, t.stride(2)
    return tuple(t.stride())


def _check(x: Tensor, conv_w: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, gate: Tensor | None) -> None:
    if delta.dim() != 4:
        raise ValueError(f"delta must be (b, L, n, E), got {tuple(delta.shape)}")
    b, L, n, E = delta.shape
    N = A.shape[1]
    if x.shape not in ((b, L, E), (b, L, n, E)):
        raise ValueError(f"x must be (b, L, E) or (b, L, n, E) = {(b, L, n, E)}, got {tuple(x.shape)}")
    if A.shape != (n * E, N) or conv_w.dim() != 2 or conv_w.shape[0] != n * E:
        raise ValueError(f"A must be (n*E, N) and conv_w (n*E, K); got {tuple(A.shape)}, {tuple(conv_w.shape)}")
    if N & (N - 1) or B.shape != (b, L, n, N) or C.shape != (b, L, n, N):
        raise ValueError(f"B and C must be (b, L, n, N) with N a power of two; got {tuple(B.shape)}")
    if gate is not None and gate.shape != (b, L, E):
        raise ValueError(f"gate must be (b, L, E), got {tuple(gate.shape)}")


def _config_for(cfg: ScanConfig, N: int) -> ScanConfig:
    """`cfg` as N states run it: a state block over N takes all states at once; else it must divide N."""
    for name in ("state_block", "bwd_state_block"):
        block = getattr(cfg, name)
        if block > N:
            cfg = dataclasses.replace(cfg, **{name: N})
        elif block < 1 or N % block or block & (block - 1):
            raise ValueError(f"{name} must be a power of two dividing N = {N}, got {block}")
    return cfg


def lane_sums(cfg: ScanConfig) -> bool:
    """Whether the backward's dB and dC channel sums take `_lane_sums`' reduce-scatter: a state tile of one row per
    lane, or per two lanes, and one channel per lane (bwd_chunk x bwd_state_block 32 or 16, block_e 32, one warp)."""
    return cfg.bwd_chunk * cfg.bwd_state_block in (16, 32) and cfg.block_e == 32 and cfg.warps == 1


def _conv_input_grad(dpre: Tensor, conv_w: Tensor, x: Tensor, causal: bool, reverse_odd: bool,
                     cfg: ScanConfig) -> Tensor:
    """dx from d(pre-activation) (b, L, n, E) fp32: every direction's transposed conv."""
    b, L, n, E = dpre.shape
    K = conv_w.shape[1]
    dx = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    _kernels()._bwd_conv_input[(_cdiv(L, cfg.chunk), _cdiv(E, cfg.block_e), b)](
        dpre, conv_w, dx, L, E, n, _cdiv(E, cfg.block_e), *dpre.stride(), *_strides4(dx),
        K=K, PAD=_pad(K, causal), REV_ODD=int(reverse_odd), SHARED=x.dim() == 3,
        CHUNK=cfg.chunk, BLOCK_E=cfg.block_e, num_warps=cfg.warps)
    return dx


def _chain(dsum: Tensor, S: Tensor, A: Tensor, n: int, b: int, adjoint: bool) -> None:
    """Turn the chunk summaries S (b, n, chunks, N, E) into the states entering each chunk, in place."""
    nchunk, N, E = S.shape[2:]
    rows = _next_power_of_2(nchunk)
    lanes = max(1, min(64, 8192 // rows))
    _kernels()._carry[(_cdiv(N * E, lanes), n, b)](
        dsum, S, A, E, nchunk, N=N, ADJOINT=int(adjoint), NC=rows, LANES=lanes, num_warps=8)


class _ConvSilu(torch.autograd.Function):
    """u = silu(depthwise conv(x)) of n directions, (n, b, L, E) in memory order (x's dtype)."""

    @staticmethod
    def forward(ctx, x, conv_w, conv_b, n, causal, reverse_odd, cfg):
        conv_w, conv_b = conv_w.contiguous(), conv_b.contiguous()
        b, L, E = x.shape[0], x.shape[1], x.shape[-1]
        K = conv_w.shape[1]
        u = torch.empty(n, b, L, E, device=x.device, dtype=x.dtype)
        neb = _cdiv(E, cfg.block_e)
        _kernels()._conv_silu[(_cdiv(L, cfg.chunk), n * neb, b)](  # u stands in for the backward-only buffers
            x, conv_w, conv_b, u, u, u, u, u, L, E, neb, *_strides4(x), *u.permute(1, 2, 0, 3).stride(),
            *u.permute(1, 2, 0, 3).stride(),
            K=K, PAD=_pad(K, causal), REV_ODD=int(reverse_odd), BACKWARD=False,
            CHUNK=cfg.chunk, BLOCK_E=cfg.block_e, num_warps=cfg.warps)
        ctx.save_for_backward(x, conv_w, conv_b)
        ctx.meta = (causal, reverse_odd, cfg)
        return u

    @staticmethod
    def backward(ctx, du):
        x, conv_w, conv_b = ctx.saved_tensors
        causal, reverse_odd, cfg = ctx.meta
        n, b, L, E = du.shape
        K = conv_w.shape[1]
        f32 = torch.float32
        dpre = torch.empty(b, L, n, E, device=x.device, dtype=f32)
        dw = torch.zeros(n * E, K, device=x.device, dtype=f32)
        dcb = torch.zeros(n * E, device=x.device, dtype=f32)
        neb = _cdiv(E, cfg.block_e)
        _kernels()._conv_silu[(_cdiv(L, cfg.chunk), n * neb, b)](
            x, conv_w, conv_b, du, du, dpre, dw, dcb, L, E, neb, *_strides4(x), *du.permute(1, 2, 0, 3).stride(),
            *dpre.stride(),
            K=K, PAD=_pad(K, causal), REV_ODD=int(reverse_odd), BACKWARD=True,
            CHUNK=cfg.chunk, BLOCK_E=cfg.block_e, num_warps=cfg.warps)
        dx = _conv_input_grad(dpre, conv_w, x, causal, reverse_odd, cfg)
        return dx, dw.to(conv_w.dtype), dcb.to(conv_b.dtype), None, None, None, None


def _chunk_states(x, conv_w, conv_b, delta, A, B, dt_bias, causal, reverse_odd, chunk, cfg) -> Tensor:
    """The state entering every chunk of `chunk` positions, in each direction's scan order: (b, n, chunks, N, E)."""
    b, L, n, E = delta.shape
    N, K = A.shape[1], conv_w.shape[1]
    nchunk, neb = _cdiv(L, chunk), _cdiv(E, cfg.block_e)
    dsum = torch.empty(b, n, nchunk, E, device=x.device, dtype=torch.float32)
    H = torch.empty(b, n, nchunk, N, E, device=x.device, dtype=torch.float32)
    _kernels()._fwd_chunk_summary[_scan_grid(nchunk, n, neb, b, walk=False)](
        x, conv_w, conv_b, delta, dt_bias, A, B, dsum, H, L, E, nchunk, neb,
        *_strides4(x), *delta.stride(), *B.stride(),
        N=N, K=K, PAD=_pad(K, causal), REV_ODD=int(reverse_odd), CHUNK=chunk, BLOCK_E=cfg.block_e,
        STATE_BLOCK=cfg.state_block, num_warps=cfg.warps)
    _chain(dsum, H, A, n, b, adjoint=False)
    return H


class _FusedScan(torch.autograd.Function):
    """In `training` (a gradient will be asked for) the forward scans at the backward's finer chunk and keeps
    its chunk states for the backward; otherwise it scans at `chunk` and keeps nothing."""

    @staticmethod
    def forward(ctx, x, conv_w, conv_b, delta, A, B, C, D, dt_bias, gate, causal, reverse_odd, cfg, training):
        A = A.float().contiguous()
        conv_w, conv_b, D, dt_bias = (t.contiguous() for t in (conv_w, conv_b, D, dt_bias))
        b, L, n, E = delta.shape
        N, K = A.shape[1], conv_w.shape[1]
        chunk = cfg.bwd_chunk if training else cfg.chunk
        nchunk, neb = _cdiv(L, chunk), _cdiv(E, cfg.block_e)
        out = torch.empty(b, L, n * E + (0 if gate is None else E), device=x.device, dtype=x.dtype)
        y = out[..., : n * E].view(b, L, n, E)
        walk = walks(cfg, n * neb * b, x.device)
        if walk:  # filled chunk by chunk as the output kernel walks
            H = torch.empty(b, n, nchunk, N, E, device=x.device, dtype=torch.float32)
        else:
            H = _chunk_states(x, conv_w, conv_b, delta, A, B, dt_bias, causal, reverse_odd, chunk, cfg)
        z = y if gate is None else gate
        _kernels()._fwd_output[_scan_grid(nchunk, n, neb, b, walk)](
            x, conv_w, conv_b, delta, dt_bias, A, B, C, D, H, y, z, L, E, nchunk, neb,
            *_strides4(x), *delta.stride(), *B.stride(), *C.stride(), *y.stride(),
            z.stride(0), z.stride(1), z.stride(-1), N=N, K=K, PAD=_pad(K, causal), REV_ODD=int(reverse_odd),
            GATE=gate is not None, CHUNK=chunk, BLOCK_E=cfg.block_e, STATE_BLOCK=cfg.state_block,
            WALK=walk, num_warps=cfg.warps)
        if training:
            ctx.save_for_backward(x, conv_w, conv_b, delta, A, B, C, D, dt_bias, gate, H)
        ctx.meta = (causal, reverse_odd, cfg, walk)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, conv_w, conv_b, delta, A, B, C, D, dt_bias, gate, H = ctx.saved_tensors
        causal, reverse_odd, cfg, walk = ctx.meta
        k = _kernels()
        b, L, n, E = delta.shape
        N, K = A.shape[1], conv_w.shape[1]
        pad = _pad(K, causal)
        chunk = cfg.bwd_chunk
        nchunk, neb = _cdiv(L, chunk), _cdiv(E, cfg.block_e)
        dy = (grad_out if grad_out.stride(-1) == 1 else grad_out.contiguous())[..., : n * E].view(b, L, n, E)
        dev, f32 = x.device, torch.float32
        G = torch.empty(b, n, nchunk, N, E, device=dev, dtype=f32)
        common = dict(N=N, REV_ODD=int(reverse_odd), CHUNK=chunk, BLOCK_E=cfg.block_e,
                      STATE_BLOCK=cfg.bwd_state_block, num_warps=cfg.warps)
        if not walk:  # else `_bwd_main` fills G chunk by chunk as it walks
            dsum = torch.empty(b, n, nchunk, E, device=dev, dtype=f32)
            k._bwd_chunk_summary[_scan_grid(nchunk, n, neb, b, walk=False)](
                delta, dt_bias, A, C, dy, dsum, G, L, E, nchunk, neb,
                *delta.stride(), *C.stride(), *dy.stride(), **common)
            _chain(dsum, G, A, n, b, adjoint=True)
        ddelta = torch.empty_strided(delta.shape, delta.stride(), device=dev, dtype=delta.dtype)  # delta's strides
        dpre = torch.empty(b, L, n, E, device=dev, dtype=f32)
        dB = torch.zeros(b, n, N, L, device=dev, dtype=f32)  # time-contiguous rows for the atomic adds
        dC = torch.zeros(b, n, N, L, device=dev, dtype=f32)
        dA = torch.zeros(n * E, N, device=dev, dtype=f32)
        dD, dbias, dcb = (torch.zeros(n * E, device=dev, dtype=f32) for _ in range(3))
        dw = torch.zeros(n * E, K, device=dev, dtype=f32)
        k._bwd_main[_scan_grid(nchunk, n, neb, b, walk)](
            x, conv_w, conv_b, delta, dt_bias, A, B, C, D, H, G, dy,
            ddelta, dpre, dB, dC, dA, dD, dbias, dw, dcb, L, E, nchunk, neb,
            *_strides4(x), *delta.stride(), *B.stride(), *C.stride(), *dy.stride(), *dpre.stride(),
            K=K, PAD=pad, LANE_SUMS=lane_sums(cfg), WALK=walk, **common)
        dx = _conv_input_grad(dpre, conv_w, x, causal, reverse_odd, cfg)
        dgate = None
        if gate is not None:
            s = torch.sigmoid(gate.float())
            dgate = (grad_out[..., n * E:].float() * s * (1 + gate.float() * (1 - s))).to(gate.dtype)
        dB, dC = (t.permute(0, 3, 1, 2).to(B.dtype) for t in (dB, dC))
        return (dx, dw.to(conv_w.dtype), dcb.to(conv_b.dtype), ddelta, dA, dB, dC,
                dD.to(D.dtype), dbias.to(dt_bias.dtype), dgate, None, None, None, None)


def conv_silu(x: Tensor, conv_w: Tensor, conv_b: Tensor, n: int, *, causal: bool, reverse_odd: bool,
              config: ScanConfig | None = None) -> Tensor:
    """silu(conv(x)) of n directions as `fused_scan` computes it inside, (n, b, L, E) in memory order.

    The mixers feed it to their x/dt projections, whose outputs (delta, B, C) the fused scan then reads.
    """
    if not TRITON_AVAILABLE:
        raise RuntimeError("conv_silu needs triton")
    if x.dim() not in (3, 4) or conv_w.dim() != 2 or conv_w.shape[0] != n * x.shape[-1]:
        raise ValueError(f"x must be (b, L, [n,] E) and conv_w (n*E, K); got {tuple(x.shape)}, {tuple(conv_w.shape)}")
    return _ConvSilu.apply(x, conv_w, conv_b, n, causal, reverse_odd, config or CONFIG)


def fused_scan(
    x: Tensor,
    conv_w: Tensor,
    conv_b: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor,
    dt_bias: Tensor,
    gate: Tensor | None = None,
    *,
    causal: bool,
    reverse_odd: bool,
    config: ScanConfig | None = None,
) -> Tensor:
    """The fused scan of n directions (see the module docstring); returns (b, L, n*E [+E]) in x's dtype.

    x: (b, L, E) shared (with reverse_odd, Bi-Mamba's two directions) or (b, L, n, E); conv_w: (n*E, K);
    conv_b, D, dt_bias: (n*E,); delta: (b, L, n, E) before bias and softplus; A: (n*E, N), negative;
    B, C: (b, L, n, N); gate: (b, L, E), whose silu fills the last E columns of the output.
    """
    if not TRITON_AVAILABLE:
        raise RuntimeError("fused_scan needs triton")
    _check(x, conv_w, delta, A, B, C, gate)
    config = _config_for(config or CONFIG, A.shape[1])
    tensors = (x, conv_w, conv_b, delta, A, B, C, D, dt_bias, gate)
    training = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    return _FusedScan.apply(*tensors, causal, reverse_odd, config, training)
