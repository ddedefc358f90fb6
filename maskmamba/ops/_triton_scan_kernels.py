"""Triton kernels of the fused multi-direction selective scan (see `triton_scan` for the maths and layout).

Imported only when a fused scan runs, so that `TRITON_INTERPRET=1` set by a test takes effect. Every kernel
works on one tile of CHUNK scan positions x BLOCK_E channels of one direction, and loops over the N states.
A position `tp` in scan order maps to memory index `tp` (forward) or `L-1-tp` (reversed direction).
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _combine(a1, x1, a2, x2):
    """Compose h -> a1 h + x1, then h -> a2 h + x2."""
    return a1 * a2, a2 * x1 + x2


@triton.jit
def _memory_index(tp, L, rev):
    return tp + rev * (L - 1 - 2 * tp)


@triton.jit
def _input(x_ptr, w_ptr, cb_ptr, bi, d, tp, e, ch, L, rev, emask,
           sx_b, sx_t, sx_d, sx_e, K: tl.constexpr, PAD: tl.constexpr):
    """Pre-activation of the depthwise conv at scan positions tp (zero padding in scan order), fp32."""
    pre = tl.load(cb_ptr + ch, mask=emask, other=0.0).to(tl.float32)[None, :]
    for k in tl.static_range(K):
        tk = tp + (k - PAD)
        ok = (tk >= 0) & (tk < L)
        ik = _memory_index(tk, L, rev)
        xv = tl.load(x_ptr + bi * sx_b + ik[:, None] * sx_t + d * sx_d + e[None, :] * sx_e,
                     mask=ok[:, None] & emask[None, :], other=0.0).to(tl.float32)
        wk = tl.load(w_ptr + ch * K + k, mask=emask, other=0.0).to(tl.float32)
        pre += wk[None, :] * xv
    return pre


@triton.jit
def _delta(dt_ptr, bias_ptr, bi, d, tp, e, ch, L, rev, emask, sd_b, sd_t, sd_d, sd_e):
    """(raw, softplus(raw + bias)) at scan positions tp; delta is 0 outside [0, L)."""
    ok = (tp < L)[:, None] & emask[None, :]
    it = _memory_index(tp, L, rev)
    raw = tl.load(dt_ptr + bi * sd_b + it[:, None] * sd_t + d * sd_d + e[None, :] * sd_e, mask=ok, other=0.0)
    raw = raw.to(tl.float32) + tl.load(bias_ptr + ch, mask=emask, other=0.0).to(tl.float32)[None, :]
    delta = tl.where(raw > 20.0, raw, tl.log(1.0 + tl.exp(tl.minimum(raw, 20.0))))
    return raw, tl.where(ok, delta, 0.0)


@triton.jit
def _state_vec(bc_ptr, bi, d, n, tp, L, rev, s_b, s_t, s_d, s_n):
    """B or C of state n at scan positions tp, fp32, 0 outside [0, L)."""
    it = _memory_index(tp, L, rev)
    return tl.load(bc_ptr + bi * s_b + it * s_t + d * s_d + n * s_n, mask=tp < L, other=0.0).to(tl.float32)


@triton.jit
def _fwd_chunk_summary(
    x_ptr, w_ptr, cb_ptr, dt_ptr, bias_ptr, A_ptr, B_ptr, dsum_ptr, S_ptr,
    L, E, NCHUNK, NEB,
    sx_b, sx_t, sx_d, sx_e, sd_b, sd_t, sd_d, sd_e, sB_b, sB_t, sB_d, sB_n,
    N: tl.constexpr, K: tl.constexpr, PAD: tl.constexpr, REV_ODD: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_E: tl.constexpr,
):
    """Per chunk: the sum of delta and, per state, the chunk's end state from a zero start."""
    c, de, bi = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    d, eb = de // NEB, de % NEB
    rev = (d % 2) * REV_ODD
    tp = c * CHUNK + tl.arange(0, CHUNK)
    e = eb * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    ch = d * E + e
    pre = _input(x_ptr, w_ptr, cb_ptr, bi, d, tp, e, ch, L, rev, emask, sx_b, sx_t, sx_d, sx_e, K, PAD)
    u = pre * tl.sigmoid(pre)
    _, delta = _delta(dt_ptr, bias_ptr, bi, d, tp, e, ch, L, rev, emask, sd_b, sd_t, sd_d, sd_e)
    du = delta * u
    total = tl.sum(delta, axis=0)
    after = total[None, :] - tl.cumsum(delta, axis=0)  # sum of delta over the later positions of the chunk
    row = (bi * (tl.num_programs(1) // NEB) + d) * NCHUNK + c  # (b, direction, chunk)
    tl.store(dsum_ptr + row * E + e, total, mask=emask)
    for n in range(N):
        a_n = tl.load(A_ptr + ch * N + n, mask=emask, other=0.0)
        b_n = _state_vec(B_ptr, bi, d, n, tp, L, rev, sB_b, sB_t, sB_d, sB_n)
        s = tl.sum(tl.exp(after * a_n[None, :]) * du * b_n[:, None], axis=0)
        tl.store(S_ptr + (row * N + n) * E + e, s, mask=emask)


@triton.jit
def _carry(dsum_ptr, S_ptr, A_ptr, E, NCHUNK, NEB,
           N: tl.constexpr, REVERSE: tl.constexpr, BLOCK_E: tl.constexpr):
    """Chain the chunk summaries: S[c] <- state entering chunk c (from the left, or from the right if REVERSE).

    h <- exp(A dsum[c]) h + S[c], in place, chunk after chunk; one program per (b, direction, channel block).
    """
    de, bi = tl.program_id(0), tl.program_id(1)
    d, eb = de // NEB, de % NEB
    e = eb * BLOCK_E + tl.arange(0, BLOCK_E)
    ns = tl.arange(0, N)
    emask = (e < E)[None, :] & (ns < N)[:, None]
    A = tl.load(A_ptr + (d * E + e)[None, :] * N + ns[:, None], mask=emask, other=0.0)
    base = (bi * (tl.num_programs(0) // NEB) + d) * NCHUNK
    h = tl.zeros([N, BLOCK_E], dtype=tl.float32)
    for i in range(NCHUNK):
        c = i + REVERSE * (NCHUNK - 1 - 2 * i)
        ds = tl.load(dsum_ptr + (base + c) * E + e, mask=e < E, other=0.0)
        ptrs = S_ptr + ((base + c) * N + ns[:, None]) * E + e[None, :]
        s = tl.load(ptrs, mask=emask, other=0.0)
        tl.store(ptrs, h, mask=emask)
        h = tl.exp(A * ds[None, :]) * h + s


@triton.jit
def _fwd_output(
    x_ptr, w_ptr, cb_ptr, dt_ptr, bias_ptr, A_ptr, B_ptr, C_ptr, D_ptr, H_ptr, y_ptr,
    L, E, NCHUNK, NEB,
    sx_b, sx_t, sx_d, sx_e, sd_b, sd_t, sd_d, sd_e, sB_b, sB_t, sB_d, sB_n, sC_b, sC_t, sC_d, sC_n,
    sy_b, sy_t, sy_d, sy_e,
    N: tl.constexpr, K: tl.constexpr, PAD: tl.constexpr, REV_ODD: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_E: tl.constexpr,
):
    """Per chunk: scan from the carried-in state H, y = C.h + D u, stored at the direction's memory order."""
    c, de, bi = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    d, eb = de // NEB, de % NEB
    rev = (d % 2) * REV_ODD
    tp = c * CHUNK + tl.arange(0, CHUNK)
    e = eb * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    ch = d * E + e
    pre = _input(x_ptr, w_ptr, cb_ptr, bi, d, tp, e, ch, L, rev, emask, sx_b, sx_t, sx_d, sx_e, K, PAD)
    u = pre * tl.sigmoid(pre)
    _, delta = _delta(dt_ptr, bias_ptr, bi, d, tp, e, ch, L, rev, emask, sd_b, sd_t, sd_d, sd_e)
    du = delta * u
    first = (tl.arange(0, CHUNK) == 0)[:, None]
    row = (bi * (tl.num_programs(1) // NEB) + d) * NCHUNK + c
    y = tl.load(D_ptr + ch, mask=emask, other=0.0).to(tl.float32)[None, :] * u
    for n in range(N):
        a_n = tl.load(A_ptr + ch * N + n, mask=emask, other=0.0)
        b_n = _state_vec(B_ptr, bi, d, n, tp, L, rev, sB_b, sB_t, sB_d, sB_n)
        c_n = _state_vec(C_ptr, bi, d, n, tp, L, rev, sC_b, sC_t, sC_d, sC_n)
        h_in = tl.load(H_ptr + (row * N + n) * E + e, mask=emask, other=0.0)
        a = tl.exp(delta * a_n[None, :])
        x = du * b_n[:, None] + tl.where(first, a * h_in[None, :], 0.0)
        _, h = tl.associative_scan((a, x), 0, _combine)
        y += h * c_n[:, None]
    it = _memory_index(tp, L, rev)
    tl.store(y_ptr + bi * sy_b + it[:, None] * sy_t + d * sy_d + e[None, :] * sy_e,
             y.to(y_ptr.dtype.element_ty), mask=(tp < L)[:, None] & emask[None, :])


@triton.jit
def _bwd_chunk_summary(
    dt_ptr, bias_ptr, A_ptr, C_ptr, g_ptr, dsum_ptr, S_ptr,
    L, E, NCHUNK, NEB,
    sd_b, sd_t, sd_d, sd_e, sC_b, sC_t, sC_d, sC_n, sg_b, sg_t, sg_d, sg_e,
    N: tl.constexpr, REV_ODD: tl.constexpr, CHUNK: tl.constexpr, BLOCK_E: tl.constexpr,
):
    """Per chunk, for the adjoint scan g_t = C_t dy_t + a_{t+1} g_{t+1}: the sum of delta over positions
    s+1..e (s the chunk's first position, e the next chunk's) and g_s from a zero carry."""
    c, de, bi = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    d, eb = de // NEB, de % NEB
    rev = (d % 2) * REV_ODD
    tp = c * CHUNK + tl.arange(0, CHUNK)
    e = eb * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    ch = d * E + e
    _, nxt = _delta(dt_ptr, bias_ptr, bi, d, tp + 1, e, ch, L, rev, emask, sd_b, sd_t, sd_d, sd_e)
    it = _memory_index(tp, L, rev)
    dy = tl.load(g_ptr + bi * sg_b + it[:, None] * sg_t + d * sg_d + e[None, :] * sg_e,
                 mask=(tp < L)[:, None] & emask[None, :], other=0.0).to(tl.float32)
    before = tl.cumsum(nxt, axis=0) - nxt  # sum of delta over positions s+1..t
    row = (bi * (tl.num_programs(1) // NEB) + d) * NCHUNK + c
    tl.store(dsum_ptr + row * E + e, tl.sum(nxt, axis=0), mask=emask)
    for n in range(N):
        a_n = tl.load(A_ptr + ch * N + n, mask=emask, other=0.0)
        c_n = _state_vec(C_ptr, bi, d, n, tp, L, rev, sC_b, sC_t, sC_d, sC_n)
        s = tl.sum(tl.exp(before * a_n[None, :]) * dy * c_n[:, None], axis=0)
        tl.store(S_ptr + (row * N + n) * E + e, s, mask=emask)


@triton.jit
def _bwd_main(
    x_ptr, w_ptr, cb_ptr, dt_ptr, bias_ptr, A_ptr, B_ptr, C_ptr, D_ptr, H_ptr, G_ptr, g_ptr,
    ddt_ptr, dpre_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr, dw_ptr, dcb_ptr,
    L, E, NCHUNK, NEB,
    sx_b, sx_t, sx_d, sx_e, sd_b, sd_t, sd_d, sd_e, sB_b, sB_t, sB_d, sB_n, sC_b, sC_t, sC_d, sC_n,
    sg_b, sg_t, sg_d, sg_e,
    N: tl.constexpr, K: tl.constexpr, PAD: tl.constexpr, REV_ODD: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_E: tl.constexpr,
):
    """Per chunk: recompute h (from the forward checkpoint H) and g (from the carried G), then every gradient.

    Writes d(delta raw) in delta's layout and d(conv pre-activation) as (b, L, dirs, E) contiguous in memory
    order; accumulates dB, dC (fp32, (b, L, dirs, N)), dA, dD, d(dt bias), conv weight and bias atomically.
    """
    c, de, bi = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    d, eb = de // NEB, de % NEB
    ndir = tl.num_programs(1) // NEB
    rev = (d % 2) * REV_ODD
    lt = tl.arange(0, CHUNK)
    tp = c * CHUNK + lt
    e = eb * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    ch = d * E + e
    valid = tp < L
    tile = valid[:, None] & emask[None, :]
    it = _memory_index(tp, L, rev)
    pre = _input(x_ptr, w_ptr, cb_ptr, bi, d, tp, e, ch, L, rev, emask, sx_b, sx_t, sx_d, sx_e, K, PAD)
    sp = tl.sigmoid(pre)
    u = pre * sp
    raw, delta = _delta(dt_ptr, bias_ptr, bi, d, tp, e, ch, L, rev, emask, sd_b, sd_t, sd_d, sd_e)
    _, nxt = _delta(dt_ptr, bias_ptr, bi, d, tp + 1, e, ch, L, rev, emask, sd_b, sd_t, sd_d, sd_e)
    dy = tl.load(g_ptr + bi * sg_b + it[:, None] * sg_t + d * sg_d + e[None, :] * sg_e,
                 mask=tile, other=0.0).to(tl.float32)
    Dv = tl.load(D_ptr + ch, mask=emask, other=0.0).to(tl.float32)
    du_total = Dv[None, :] * dy
    ddelta = tl.zeros([CHUNK, BLOCK_E], dtype=tl.float32)
    first = (lt == 0)[:, None]
    last = (lt == CHUNK - 1)[:, None]
    row = (bi * ndir + d) * NCHUNK + c
    bc_off = ((bi * L + it) * ndir + d) * N  # into the contiguous fp32 (b, L, dirs, N) gradients of B and C
    du = delta * u
    for n in range(N):
        a_n = tl.load(A_ptr + ch * N + n, mask=emask, other=0.0)
        b_n = _state_vec(B_ptr, bi, d, n, tp, L, rev, sB_b, sB_t, sB_d, sB_n)
        c_n = _state_vec(C_ptr, bi, d, n, tp, L, rev, sC_b, sC_t, sC_d, sC_n)
        h_in = tl.load(H_ptr + (row * N + n) * E + e, mask=emask, other=0.0)
        g_in = tl.load(G_ptr + (row * N + n) * E + e, mask=emask, other=0.0)
        a = tl.exp(delta * a_n[None, :])
        x = du * b_n[:, None]
        _, h = tl.associative_scan((a, x + tl.where(first, a * h_in[None, :], 0.0)), 0, _combine)
        a_next = tl.exp(nxt * a_n[None, :])
        q = dy * c_n[:, None] + tl.where(last, a_next * g_in[None, :], 0.0)
        _, g = tl.associative_scan((a_next, q), 0, _combine, reverse=True)
        gh = g * (h - x)  # g_t a_t h_{t-1}
        ddelta += g * u * b_n[:, None] + gh * a_n[None, :]
        du_total += g * delta * b_n[:, None]
        tl.atomic_add(dB_ptr + bc_off + n, tl.sum(g * du, axis=1), mask=valid)
        tl.atomic_add(dC_ptr + bc_off + n, tl.sum(dy * h, axis=1), mask=valid)
        tl.atomic_add(dA_ptr + ch * N + n, tl.sum(gh * delta, axis=0), mask=emask)
    tl.atomic_add(dD_ptr + ch, tl.sum(dy * u, axis=0), mask=emask)
    ddraw = tl.where(tile, ddelta * tl.sigmoid(raw), 0.0)
    tl.store(ddt_ptr + bi * sd_b + it[:, None] * sd_t + d * sd_d + e[None, :] * sd_e,
             ddraw.to(ddt_ptr.dtype.element_ty), mask=tile)
    tl.atomic_add(dbias_ptr + ch, tl.sum(ddraw, axis=0), mask=emask)
    dpre = tl.where(tile, du_total * sp * (1.0 + pre * (1.0 - sp)), 0.0)
    tl.store(dpre_ptr + ((bi * L + it[:, None]) * ndir + d) * E + e[None, :], dpre, mask=tile)
    _conv_param_grads(x_ptr, dw_ptr, dcb_ptr, dpre, bi, d, tp, e, ch, L, rev, emask,
                      sx_b, sx_t, sx_d, sx_e, K, PAD)


@triton.jit
def _conv_param_grads(x_ptr, dw_ptr, dcb_ptr, dpre, bi, d, tp, e, ch, L, rev, emask,
                      sx_b, sx_t, sx_d, sx_e, K: tl.constexpr, PAD: tl.constexpr):
    """Accumulate the conv weight and bias gradients of one tile from d(pre-activation), atomically."""
    tl.atomic_add(dcb_ptr + ch, tl.sum(dpre, axis=0), mask=emask)
    for k in tl.static_range(K):
        tk = tp + (k - PAD)
        ok = (tk >= 0) & (tk < L)
        ik = _memory_index(tk, L, rev)
        xv = tl.load(x_ptr + bi * sx_b + ik[:, None] * sx_t + d * sx_d + e[None, :] * sx_e,
                     mask=ok[:, None] & emask[None, :], other=0.0).to(tl.float32)
        tl.atomic_add(dw_ptr + ch * K + k, tl.sum(dpre * xv, axis=0), mask=emask)


@triton.jit
def _conv_silu(
    x_ptr, w_ptr, cb_ptr, u_ptr, du_ptr, dpre_ptr, dw_ptr, dcb_ptr, L, E, NEB,
    sx_b, sx_t, sx_d, sx_e, su_b, su_t, su_d, su_e,
    K: tl.constexpr, PAD: tl.constexpr, REV_ODD: tl.constexpr, BACKWARD: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_E: tl.constexpr,
):
    """u = silu(conv(x)) of every direction, stored in memory order; or, BACKWARD, from du the
    d(pre-activation) (b, L, dirs, E) fp32 and the conv weight and bias gradients."""
    c, de, bi = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    d, eb = de // NEB, de % NEB
    ndir = tl.num_programs(1) // NEB
    rev = (d % 2) * REV_ODD
    tp = c * CHUNK + tl.arange(0, CHUNK)
    e = eb * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    ch = d * E + e
    tile = (tp < L)[:, None] & emask[None, :]
    it = _memory_index(tp, L, rev)
    pre = _input(x_ptr, w_ptr, cb_ptr, bi, d, tp, e, ch, L, rev, emask, sx_b, sx_t, sx_d, sx_e, K, PAD)
    sp = tl.sigmoid(pre)
    uptrs = bi * su_b + it[:, None] * su_t + d * su_d + e[None, :] * su_e
    if BACKWARD:
        du = tl.load(du_ptr + uptrs, mask=tile, other=0.0).to(tl.float32)
        dpre = tl.where(tile, du * sp * (1.0 + pre * (1.0 - sp)), 0.0)
        tl.store(dpre_ptr + ((bi * L + it[:, None]) * ndir + d) * E + e[None, :], dpre, mask=tile)
        _conv_param_grads(x_ptr, dw_ptr, dcb_ptr, dpre, bi, d, tp, e, ch, L, rev, emask,
                          sx_b, sx_t, sx_d, sx_e, K, PAD)
    else:
        tl.store(u_ptr + uptrs, (pre * sp).to(u_ptr.dtype.element_ty), mask=tile)


@triton.jit
def _bwd_conv_input(
    dpre_ptr, w_ptr, dx_ptr, L, E, NDIR, NEB,
    sdx_b, sdx_t, sdx_d, sdx_e,
    K: tl.constexpr, PAD: tl.constexpr, REV_ODD: tl.constexpr, SHARED: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_E: tl.constexpr,
):
    """dx from d(pre-activation): the transposed depthwise conv of every direction, in its scan order.

    SHARED: all directions read one input, so their contributions are summed into one dx (b, L, E).
    """
    c, eb, bi = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    t = c * CHUNK + tl.arange(0, CHUNK)  # memory positions
    e = eb * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    tile = (t < L)[:, None] & emask[None, :]
    acc = tl.zeros([CHUNK, BLOCK_E], dtype=tl.float32)
    for d in range(NDIR):
        rev = (d % 2) * REV_ODD
        tp = _memory_index(t, L, rev)  # scan position of memory position t
        ch = d * E + e
        for k in tl.static_range(K):
            src = tp - (k - PAD)  # the scan position whose tap k read tp
            ok = (src >= 0) & (src < L)
            isrc = _memory_index(src, L, rev)
            dp = tl.load(dpre_ptr + ((bi * L + isrc[:, None]) * NDIR + d) * E + e[None, :],
                         mask=ok[:, None] & emask[None, :], other=0.0)
            wk = tl.load(w_ptr + ch * K + k, mask=emask, other=0.0).to(tl.float32)
            acc += wk[None, :] * dp
        if not SHARED:
            tl.store(dx_ptr + bi * sdx_b + t[:, None] * sdx_t + d * sdx_d + e[None, :] * sdx_e,
                     acc.to(dx_ptr.dtype.element_ty), mask=tile)
            acc = tl.zeros([CHUNK, BLOCK_E], dtype=tl.float32)
    if SHARED:
        tl.store(dx_ptr + bi * sdx_b + t[:, None] * sdx_t + e[None, :] * sdx_e,
                 acc.to(dx_ptr.dtype.element_ty), mask=tile)
