"""Triton kernels of the fused multi-direction selective scan (see `triton_scan` for the maths and layouts).

Imported only when a fused scan runs, so that `TRITON_INTERPRET=1` set by a test takes effect.

Every scan kernel works on one tile of CHUNK consecutive positions *in its direction's scan order* x BLOCK_E
channels of one direction, and loops over the N states. The scan kernels take STATE_BLOCK states per turn of
that loop as one [CHUNK, STATE_BLOCK, BLOCK_E] tile: each lane then runs STATE_BLOCK independent recurrences
side by side (instruction-level parallelism for a kernel whose serial in-thread scans leave it latency-bound),
and B and C load as [CHUNK, STATE_BLOCK] tiles; at STATE_BLOCK 1 the `_state_*`, `_spread`, `_channel_sum` and
`_time_rows` helpers reduce to the 2-D [CHUNK, BLOCK_E] tiles of one state. Scan position t of a reversed direction
(odd d with REV_ODD) lives at memory index L-1-t (`_memory_index`): every load and store goes through that map, so
nothing is ever flipped in memory and every recurrence inside a tile runs from its first row (the adjoint one from
its last).

The row strides (`*_t`) are not specialised: with channels contiguous but rows of unknown alignment, Triton
(3.6 and 3.9 alike) lays tiles out one channel per lane, unvectorised, keeping each lane's CHUNK positions in its
own registers, so the scans along the chunk run inside each thread instead of across lanes and warps (with
BLOCK_E = 32 x warps; a narrower BLOCK_E spreads the chunk over lanes too, and its scans cross them). The batch
index is widened to 64 bits before it scales a stride: batch offsets pass 2^31 elements at 65,536 tokens.
"""
from __future__ import annotations

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)
_ROW_STRIDES = ["sx_t", "sd_t", "sy_t", "sz_t", "sg_t", "su_t", "sp_t", "sdx_t"]


def _jit(fn):
    """triton.jit with the row strides left unspecialised (see the module docstring)."""
    names = fn.__code__.co_varnames[: fn.__code__.co_argcount]
    return triton.jit(fn, do_not_specialize=[n for n in _ROW_STRIDES if n in names])


@triton.jit
def _combine(a1, x1, a2, x2):
    """Compose h -> a1 h + x1, then h -> a2 h + x2."""
    return a1 * a2, a2 * x1 + x2


@triton.jit
def _scan(a, x, h0, BACKWARDS: tl.constexpr):
    """h_t = a_t h_{t-1} + x_t along axis 0 from h_{-1} = h0 (a's shape without axis 0), starting at the first
    row or, if BACKWARDS, at the last; 2-D or 3-D tiles.

    BACKWARDS flips, scans and flips back: with the axis inside each thread the flips are register renaming,
    whereas `reverse=True` reverses through lane shuffles. The carry enters at the scan's first row, known at
    compile time, so only that row pays for it.
    """
    first = tl.expand_dims(tl.arange(0, a.shape[0]) == 0, list(range(1, len(a.shape))))
    if BACKWARDS:
        a, x = tl.flip(a, 0), tl.flip(x, 0)
    x += tl.where(first, a * tl.expand_dims(h0, 0), 0.0)
    _, h = tl.associative_scan((a, x), 0, _combine)
    if BACKWARDS:
        h = tl.flip(h, 0)
    return h


@triton.jit
def _row(tile, r: tl.constexpr):
    """Row r (along axis 0) of a 2-D or 3-D tile; with the axis inside each thread, a pick among registers."""
    pick = tl.expand_dims(tl.arange(0, tile.shape[0]) == r, list(range(1, len(tile.shape))))
    return tl.sum(tl.where(pick, tile, 0.0), axis=0)


@triton.jit
def _neighbours(emask, e, c, NCHUNK):
    """The channels of chunk c that have a chunk before it, and those that have one after it (vectors over e:
    Triton's interpreter takes no scalar condition in a mask)."""
    return emask & (0 * e + c > 0), emask & (0 * e + c + 1 < NCHUNK)


@triton.jit
def _memory_index(t, L, rev):
    """Memory index of scan position t: t, or L-1-t in a reversed direction."""
    return t + rev * (L - 1 - 2 * t)


@triton.jit
def _tile_rows(c, L, rev, CHUNK: tl.constexpr):
    """Scan positions t of chunk c, their memory indices, and which are inside the sequence."""
    t = c * CHUNK + tl.arange(0, CHUNK)
    return t, _memory_index(t, L, rev), t < L


@triton.jit
def _input(x_ptr, w_ptr, cb_ptr, bi, dd, t, e, ch, L, rev, emask,
           sx_b, sx_t, sx_d, sx_e, K: tl.constexpr, PAD: tl.constexpr):
    xb = x_ptr + (bi * sx_b + dd * sx_d)  # a 64-bit scalar base keeps the per-element offsets 32-bit
    """Pre-activation of the depthwise conv at scan positions t, fp32; tap k reads scan position t + k - PAD."""
    pre = tl.load(cb_ptr + ch, mask=emask, other=0.0).to(tl.float32)[None, :]
    for k in tl.static_range(K):
        tk = t + (k - PAD)
        ok = (tk >= 0) & (tk < L)
        mk = _memory_index(tk, L, rev)
        xv = tl.load(xb + mk[:, None] * sx_t + e[None, :] * sx_e,
                     mask=ok[:, None] & emask[None, :], other=0.0).to(tl.float32)
        wk = tl.load(w_ptr + ch * K + k, mask=emask, other=0.0).to(tl.float32)
        pre += wk[None, :] * xv
    return pre


@triton.jit
def _delta(dt_ptr, bias_ptr, bi, dd, t, e, ch, L, rev, emask, sd_b, sd_t, sd_d, sd_e):
    """(raw + bias, softplus(raw + bias)) at scan positions t; delta is 0 outside [0, L)."""
    ok = ((t >= 0) & (t < L))[:, None] & emask[None, :]
    m = _memory_index(t, L, rev)
    raw = tl.load(dt_ptr + (bi * sd_b + dd * sd_d) + m[:, None] * sd_t + e[None, :] * sd_e, mask=ok, other=0.0)
    raw = raw.to(tl.float32) + tl.load(bias_ptr + ch, mask=emask, other=0.0).to(tl.float32)[None, :]
    delta = tl.where(raw > 20.0, raw, tl.log(1.0 + tl.exp(tl.minimum(raw, 20.0))))
    return raw, tl.where(ok, delta, 0.0)


@triton.jit
def _state_vec(bc_ptr, bi, dd, n, m, inside, s_b, s_t, s_d, s_n):
    """B or C of state n at memory indices m, fp32, 0 where not inside the sequence."""
    return tl.load(bc_ptr + (bi * s_b + dd * s_d + n * s_n) + m * s_t, mask=inside, other=0.0).to(tl.float32)


@triton.jit
def _state_index(n0, STATE_BLOCK: tl.constexpr):
    """States n0 .. n0+STATE_BLOCK-1 against a channel vector: n0 itself, or a [STATE_BLOCK, 1] column."""
    if STATE_BLOCK == 1:
        return n0
    else:
        return (n0 + tl.arange(0, STATE_BLOCK))[:, None]


@triton.jit
def _state_cols(bc_ptr, bi, dd, n0, m, inside, s_b, s_t, s_d, s_n, STATE_BLOCK: tl.constexpr):
    """B or C of states n0 .. n0+STATE_BLOCK-1 at memory indices m, fp32, 0 where not inside the sequence:
    [CHUNK], or [CHUNK, STATE_BLOCK]."""
    if STATE_BLOCK == 1:
        return _state_vec(bc_ptr, bi, dd, n0, m, inside, s_b, s_t, s_d, s_n)
    else:
        n = n0 + tl.arange(0, STATE_BLOCK)
        ptr = bc_ptr + (bi * s_b + dd * s_d) + m[:, None] * s_t + n[None, :] * s_n
        return tl.load(ptr, mask=inside[:, None], other=0.0).to(tl.float32)


@triton.jit
def _spread(tile, STATE_BLOCK: tl.constexpr):
    """A [CHUNK, BLOCK_E] tile against the state tiles: itself, or [CHUNK, 1, BLOCK_E]."""
    if STATE_BLOCK == 1:
        return tile
    else:
        return tl.expand_dims(tile, 1)


@triton.jit
def _state_sum(tile, STATE_BLOCK: tl.constexpr):
    """The sum over the states of a block: the tile itself, or its sum over axis 1."""
    if STATE_BLOCK == 1:
        return tile
    else:
        return tl.sum(tile, axis=1)


@triton.jit
def _channel_sum(tile, STATE_BLOCK: tl.constexpr):
    """The sum over the channels (the last axis) of a state tile: [CHUNK], or [CHUNK, STATE_BLOCK]."""
    if STATE_BLOCK == 1:
        return tl.sum(tile, axis=1)
    else:
        return tl.sum(tile, axis=2)


@triton.jit
def _state_rows_mask(emask, STATE_BLOCK: tl.constexpr):
    """The channel mask against (state, channel) rows: itself, or broadcast to [STATE_BLOCK, BLOCK_E] (Triton 3.6
    does not broadcast an atomic's mask to its pointers' rank)."""
    if STATE_BLOCK == 1:
        return emask
    else:
        return tl.broadcast_to(emask[None, :], (STATE_BLOCK, emask.shape[0]))


@triton.jit
def _time_rows(first, n0, m, L, inside, STATE_BLOCK: tl.constexpr):
    """Offsets of (state, memory index) in a (.., N, L) row block starting at row `first`, and their mask:
    [CHUNK], or [CHUNK, STATE_BLOCK]."""
    if STATE_BLOCK == 1:
        return (first + n0) * L + m, inside
    else:
        rows = first + n0 + tl.arange(0, STATE_BLOCK)
        return rows[None, :] * L + m[:, None], tl.broadcast_to(inside[:, None], (inside.shape[0], STATE_BLOCK))


@triton.jit
def _halve(x, lane, HALF: tl.constexpr):
    """One round of `_lane_sums`: rows [0, HALF) and [HALF, 2 HALF) of x [2 HALF, 32]; the lanes with bit HALF set
    keep the upper half, the others the lower, and each adds what its partner across that bit holds of it."""
    a, b = tl.split(tl.permute(tl.reshape(x, [2, HALF, 32]), (1, 2, 0)))
    upper = ((lane & HALF) != 0)[None, :]
    partner = tl.broadcast_to((lane ^ HALF)[None, :], (HALF, 32))
    return tl.where(upper, b, a) + tl.gather(tl.where(upper, a, b), partner, axis=1)


@triton.jit
def _lane_sums(tile, ROWS: tl.constexpr):
    """Row sums of a state tile of ROWS (32 or 16) rows (positions x states, row-major) x 32 channels, one channel to
    a lane: a [32] vector whose element j, held by lane j, sums row j % ROWS over the channels of the lanes that
    share j's bits from ROWS up (all 32 lanes at 32 rows; at 16, lanes j and j ^ 16 each hold half of row j % 16's
    sum, and both add it). log2(ROWS) butterfly rounds each halve the rows a lane holds (a reduce-scatter: 31
    shuffles at 32 rows) where `tl.sum` would shuffle every row five times (160)."""
    lane = tl.arange(0, 32)
    x = tl.reshape(tile, [ROWS, 32])
    if ROWS == 32:
        x = _halve(x, lane, 16)
    x = _halve(x, lane, 8)
    x = _halve(x, lane, 4)
    x = _halve(x, lane, 2)
    x = _halve(x, lane, 1)
    return tl.reshape(x, [32])


@_jit
def _fwd_chunk_summary(
    x_ptr, w_ptr, cb_ptr, dt_ptr, bias_ptr, A_ptr, B_ptr, dsum_ptr, S_ptr,
    L, E, NCHUNK, NEB,
    sx_b, sx_t, sx_d, sx_e, sd_b, sd_t, sd_d, sd_e, sB_b, sB_t, sB_d, sB_n,
    N: tl.constexpr, K: tl.constexpr, PAD: tl.constexpr, REV_ODD: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_E: tl.constexpr, STATE_BLOCK: tl.constexpr,
):
    """Per chunk: the sum of delta and, per state, the state the chunk leaves behind from a zero start."""
    c, de, bi = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    d, eb = de // NEB, de % NEB
    dd = d.to(tl.int64)  # scales the direction strides, which reach 2^31 too
    rev = (d % 2) * REV_ODD
    t, m, inside = _tile_rows(c, L, rev, CHUNK)
    e = eb * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    ch = d * E + e
    pre = _input(x_ptr, w_ptr, cb_ptr, bi, dd, t, e, ch, L, rev, emask, sx_b, sx_t, sx_d, sx_e, K, PAD)
    _, delta = _delta(dt_ptr, bias_ptr, bi, dd, t, e, ch, L, rev, emask, sd_b, sd_t, sd_d, sd_e)
    du = delta * pre * tl.sigmoid(pre)
    total = tl.sum(delta, axis=0)
    after = total[None, :] - tl.cumsum(delta, axis=0)  # delta summed over the chunk's later positions
    row = (bi * (tl.num_programs(1) // NEB) + d) * NCHUNK + c  # (b, direction, chunk)
    tl.store(dsum_ptr + row * E + e, total, mask=emask)
    for n0 in range(0, N, STATE_BLOCK):
        n = _state_index(n0, STATE_BLOCK)
        a_n = tl.load(A_ptr + ch * N + n, mask=emask, other=0.0) * LOG2E
        b_n = _state_cols(B_ptr, bi, dd, n0, m, inside, sB_b, sB_t, sB_d, sB_n, STATE_BLOCK)
        s = tl.sum(tl.exp2(_spread(after, STATE_BLOCK) * a_n[None]) * _spread(du, STATE_BLOCK)
                   * tl.expand_dims(b_n, -1), axis=0)
        tl.store(S_ptr + (row * N + n) * E + e, s, mask=emask)


@triton.jit
def _carry(dsum_ptr, S_ptr, A_ptr, E, NCHUNK, N: tl.constexpr, ADJOINT: tl.constexpr,
           NC: tl.constexpr, LANES: tl.constexpr):
    """Chain the chunk summaries in place: S[c] <- the state entering chunk c.

    h_in[c] = exp(A dsum[p]) h_in[p] + S[p], p = c-1 (or c+1 for the ADJOINT, which runs against the scan
    order), as one scan over the chunk axis (NC >= NCHUNK rows) per lane j of the (state, channel) pairs of one
    direction: n = j // E, e = j % E.
    """
    jb, d, bi = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    j = jb * LANES + tl.arange(0, LANES)
    jmask = j < N * E
    ch = d * E + j % E
    A = tl.load(A_ptr + ch * N + j // E, mask=jmask, other=0.0)
    c = tl.arange(0, NC)
    p = c - 1 + 2 * ADJOINT
    ok = ((p >= 0) & (p < NCHUNK))[:, None] & jmask[None, :]
    base = (bi * tl.num_programs(1) + d) * NCHUNK
    ds = tl.load(dsum_ptr + (base + p)[:, None] * E + (j % E)[None, :], mask=ok, other=0.0)
    s = tl.load(S_ptr + (base + p)[:, None] * (N * E) + j[None, :], mask=ok, other=0.0)
    a = tl.where(ok, tl.exp(A[None, :] * ds), 1.0)
    # the chunk axis spans lanes and warps here, so reverse=True (not a flip) is the cheap way round
    _, h = tl.associative_scan((a, s), 0, _combine, reverse=ADJOINT == 1)
    tl.store(S_ptr + (base + c)[:, None] * (N * E) + j[None, :], h, mask=(c < NCHUNK)[:, None] & jmask[None, :])


@_jit
def _fwd_output(
    x_ptr, w_ptr, cb_ptr, dt_ptr, bias_ptr, A_ptr, B_ptr, C_ptr, D_ptr, H_ptr, y_ptr, z_ptr,
    L, E, NCHUNK, NEB,
    sx_b, sx_t, sx_d, sx_e, sd_b, sd_t, sd_d, sd_e, sB_b, sB_t, sB_d, sB_n, sC_b, sC_t, sC_d, sC_n,
    sy_b, sy_t, sy_d, sy_e, sz_b, sz_t, sz_e,
    N: tl.constexpr, K: tl.constexpr, PAD: tl.constexpr, REV_ODD: tl.constexpr, GATE: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_E: tl.constexpr, STATE_BLOCK: tl.constexpr, WALK: tl.constexpr,
):
    """Per chunk: scan from the carried-in state H, y = C.h + D u, stored in place of direction d's output.

    With GATE, the programs of direction 0 also write silu(z) as output slot n (the last E columns). With WALK, one
    program takes every chunk of its sequence in scan order and writes each chunk's end state as the next chunk's H.
    """
    for i in range(NCHUNK if WALK else 1):  # one turn unless walking (a loop of one turn compiles away)
        _fwd_output_chunk(
            i if WALK else tl.program_id(0), x_ptr, w_ptr, cb_ptr, dt_ptr, bias_ptr, A_ptr, B_ptr, C_ptr, D_ptr,
            H_ptr, y_ptr, z_ptr, L, E, NCHUNK, NEB, sx_b, sx_t, sx_d, sx_e, sd_b, sd_t, sd_d, sd_e,
            sB_b, sB_t, sB_d, sB_n, sC_b, sC_t, sC_d, sC_n, sy_b, sy_t, sy_d, sy_e, sz_b, sz_t, sz_e,
            N, K, PAD, REV_ODD, GATE, CHUNK, BLOCK_E, STATE_BLOCK, WALK)
        if WALK:
            tl.debug_barrier()  # the next chunk reads the states this one wrote, maybe on other lanes


@triton.jit
def _fwd_output_chunk(
    c, x_ptr, w_ptr, cb_ptr, dt_ptr, bias_ptr, A_ptr, B_ptr, C_ptr, D_ptr, H_ptr, y_ptr, z_ptr,
    L, E, NCHUNK, NEB,
    sx_b, sx_t, sx_d, sx_e, sd_b, sd_t, sd_d, sd_e, sB_b, sB_t, sB_d, sB_n, sC_b, sC_t, sC_d, sC_n,
    sy_b, sy_t, sy_d, sy_e, sz_b, sz_t, sz_e,
    N: tl.constexpr, K: tl.constexpr, PAD: tl.constexpr, REV_ODD: tl.constexpr, GATE: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_E: tl.constexpr, STATE_BLOCK: tl.constexpr, WALK: tl.constexpr,
):
    """`_fwd_output` for chunk c; the state entering chunk 0 is 0 (H's row for it is not read)."""
    de, bi = tl.program_id(1), tl.program_id(2).to(tl.int64)
    d, eb = de // NEB, de % NEB
    dd = d.to(tl.int64)  # scales the direction strides, which reach 2^31 too
    ndir = tl.num_programs(1) // NEB
    rev = (d % 2) * REV_ODD
    t, m, inside = _tile_rows(c, L, rev, CHUNK)
    e = eb * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    tile = inside[:, None] & emask[None, :]
    ch = d * E + e
    pre = _input(x_ptr, w_ptr, cb_ptr, bi, dd, t, e, ch, L, rev, emask, sx_b, sx_t, sx_d, sx_e, K, PAD)
    u = pre * tl.sigmoid(pre)
    _, delta = _delta(dt_ptr, bias_ptr, bi, dd, t, e, ch, L, rev, emask, sd_b, sd_t, sd_d, sd_e)
    du = delta * u
    row = (bi * ndir + d) * NCHUNK + c
    from_before, to_next = _neighbours(emask, e, c, NCHUNK)
    y = tl.load(D_ptr + ch, mask=emask, other=0.0).to(tl.float32)[None, :] * u
    for n0 in range(0, N, STATE_BLOCK):
        n = _state_index(n0, STATE_BLOCK)
        a_n = tl.load(A_ptr + ch * N + n, mask=emask, other=0.0) * LOG2E
        b_n = _state_cols(B_ptr, bi, dd, n0, m, inside, sB_b, sB_t, sB_d, sB_n, STATE_BLOCK)
        h_in = tl.load(H_ptr + (row * N + n) * E + e, mask=from_before, other=0.0)
        h = _scan(tl.exp2(_spread(delta, STATE_BLOCK) * a_n[None]),
                  _spread(du, STATE_BLOCK) * tl.expand_dims(b_n, -1), h_in, False)
        if WALK:  # the state after the chunk's last row enters the next chunk
            tl.store(H_ptr + ((row + 1) * N + n) * E + e, _row(h, CHUNK - 1), mask=to_next)
        c_n = _state_cols(C_ptr, bi, dd, n0, m, inside, sC_b, sC_t, sC_d, sC_n, STATE_BLOCK)
        y += _state_sum(h * tl.expand_dims(c_n, -1), STATE_BLOCK)
    out = y_ptr + bi * sy_b + (m[:, None] * sy_t + e[None, :] * sy_e)
    tl.store(out + dd * sy_d, y.to(y_ptr.dtype.element_ty), mask=tile)
    if GATE:
        if d == 0:
            z = tl.load(z_ptr + bi * sz_b + (m[:, None] * sz_t + e[None, :] * sz_e), mask=tile, other=0.0)
            z = z.to(tl.float32)
            tl.store(out + ndir * sy_d, (z * tl.sigmoid(z)).to(y_ptr.dtype.element_ty), mask=tile)


@_jit
def _bwd_chunk_summary(
    dt_ptr, bias_ptr, A_ptr, C_ptr, g_ptr, dsum_ptr, S_ptr,
    L, E, NCHUNK, NEB,
    sd_b, sd_t, sd_d, sd_e, sC_b, sC_t, sC_d, sC_n, sg_b, sg_t, sg_d, sg_e,
    N: tl.constexpr, REV_ODD: tl.constexpr, CHUNK: tl.constexpr, BLOCK_E: tl.constexpr,
    STATE_BLOCK: tl.constexpr,
):
    """Per chunk, for the adjoint g_t = C_t dy_t + exp(delta_{t+1} A) g_{t+1} (t in scan order): the sum of
    delta_{t+1} over the chunk, and g at the chunk's first row from a zero carry."""
    c, de, bi = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    d, eb = de // NEB, de % NEB
    dd = d.to(tl.int64)  # scales the direction strides, which reach 2^31 too
    rev = (d % 2) * REV_ODD
    t, m, inside = _tile_rows(c, L, rev, CHUNK)
    e = eb * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    ch = d * E + e
    _, nxt = _delta(dt_ptr, bias_ptr, bi, dd, t + 1, e, ch, L, rev, emask, sd_b, sd_t, sd_d, sd_e)
    dy = tl.load(g_ptr + (bi * sg_b + dd * sg_d) + m[:, None] * sg_t + e[None, :] * sg_e,
                 mask=inside[:, None] & emask[None, :], other=0.0).to(tl.float32)
    before = tl.cumsum(nxt, axis=0) - nxt  # delta_{s+1..t}, s the chunk's first position
    row = (bi * (tl.num_programs(1) // NEB) + d) * NCHUNK + c
    tl.store(dsum_ptr + row * E + e, tl.sum(nxt, axis=0), mask=emask)
    for n0 in range(0, N, STATE_BLOCK):
        n = _state_index(n0, STATE_BLOCK)
        a_n = tl.load(A_ptr + ch * N + n, mask=emask, other=0.0) * LOG2E
        c_n = _state_cols(C_ptr, bi, dd, n0, m, inside, sC_b, sC_t, sC_d, sC_n, STATE_BLOCK)
        s = tl.sum(tl.exp2(_spread(before, STATE_BLOCK) * a_n[None]) * _spread(dy, STATE_BLOCK)
                   * tl.expand_dims(c_n, -1), axis=0)
        tl.store(S_ptr + (row * N + n) * E + e, s, mask=emask)


@_jit
def _bwd_main(
    x_ptr, w_ptr, cb_ptr, dt_ptr, bias_ptr, A_ptr, B_ptr, C_ptr, D_ptr, H_ptr, G_ptr, g_ptr,
    ddt_ptr, dpre_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr, dw_ptr, dcb_ptr,
    L, E, NCHUNK, NEB,
    sx_b, sx_t, sx_d, sx_e, sd_b, sd_t, sd_d, sd_e, sB_b, sB_t, sB_d, sB_n, sC_b, sC_t, sC_d, sC_n,
    sg_b, sg_t, sg_d, sg_e, sp_b, sp_t, sp_d, sp_e,
    N: tl.constexpr, K: tl.constexpr, PAD: tl.constexpr, REV_ODD: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_E: tl.constexpr, STATE_BLOCK: tl.constexpr, LANE_SUMS: tl.constexpr,
    WALK: tl.constexpr,
):
    """Per chunk: recompute h (from the chunk states H) and g (from the carried G), then every gradient, for
    STATE_BLOCK states per turn of the state loop. LANE_SUMS (CHUNK x STATE_BLOCK 32 or 16, BLOCK_E 32, one warp):
    dB and dC's channel sums as `_lane_sums`, each lane then adding one (position, state) sum. With WALK, one
    program takes every chunk of its sequence against the scan order and writes g at each chunk's first row as the
    previous chunk's G.

    Writes d(delta raw) in delta's layout and d(conv pre-activation) (b, L, dirs, E) fp32; accumulates
    dB, dC (fp32, (b, dirs, N, L)), dA, dD, d(dt bias), the conv weight and bias atomically.
    """
    for i in range(NCHUNK if WALK else 1):  # as in `_fwd_output`, against the scan order
        _bwd_main_chunk(
            NCHUNK - 1 - i if WALK else tl.program_id(0), x_ptr, w_ptr, cb_ptr, dt_ptr, bias_ptr, A_ptr, B_ptr,
            C_ptr, D_ptr, H_ptr, G_ptr, g_ptr, ddt_ptr, dpre_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr, dw_ptr,
            dcb_ptr, L, E, NCHUNK, NEB, sx_b, sx_t, sx_d, sx_e, sd_b, sd_t, sd_d, sd_e, sB_b, sB_t, sB_d, sB_n,
            sC_b, sC_t, sC_d, sC_n, sg_b, sg_t, sg_d, sg_e, sp_b, sp_t, sp_d, sp_e, N, K, PAD, REV_ODD, CHUNK,
            BLOCK_E, STATE_BLOCK, LANE_SUMS, WALK)
        if WALK:
            tl.debug_barrier()  # the next chunk reads the adjoint states this one wrote, maybe on other lanes


@triton.jit
def _bwd_main_chunk(
    c,
    x_ptr, w_ptr, cb_ptr, dt_ptr, bias_ptr, A_ptr, B_ptr, C_ptr, D_ptr, H_ptr, G_ptr, g_ptr,
    ddt_ptr, dpre_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr, dw_ptr, dcb_ptr,
    L, E, NCHUNK, NEB,
    sx_b, sx_t, sx_d, sx_e, sd_b, sd_t, sd_d, sd_e, sB_b, sB_t, sB_d, sB_n, sC_b, sC_t, sC_d, sC_n,
    sg_b, sg_t, sg_d, sg_e, sp_b, sp_t, sp_d, sp_e,
    N: tl.constexpr, K: tl.constexpr, PAD: tl.constexpr, REV_ODD: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_E: tl.constexpr, STATE_BLOCK: tl.constexpr, LANE_SUMS: tl.constexpr,
    WALK: tl.constexpr,
):
    """`_bwd_main` for chunk c; the adjoint entering the last chunk is 0 (G's row for it is not read)."""
    de, bi = tl.program_id(1), tl.program_id(2).to(tl.int64)
    d, eb = de // NEB, de % NEB
    dd = d.to(tl.int64)  # scales the direction strides, which reach 2^31 too
    ndir = tl.num_programs(1) // NEB
    rev = (d % 2) * REV_ODD
    t, m, inside = _tile_rows(c, L, rev, CHUNK)
    e = eb * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    ch = d * E + e
    tile = inside[:, None] & emask[None, :]
    pre = _input(x_ptr, w_ptr, cb_ptr, bi, dd, t, e, ch, L, rev, emask, sx_b, sx_t, sx_d, sx_e, K, PAD)
    u = pre * tl.sigmoid(pre)
    _, delta = _delta(dt_ptr, bias_ptr, bi, dd, t, e, ch, L, rev, emask, sd_b, sd_t, sd_d, sd_e)
    _, nxt = _delta(dt_ptr, bias_ptr, bi, dd, t + 1, e, ch, L, rev, emask, sd_b, sd_t, sd_d, sd_e)
    dy = tl.load(g_ptr + (bi * sg_b + dd * sg_d) + m[:, None] * sg_t + e[None, :] * sg_e,
                 mask=tile, other=0.0).to(tl.float32)
    du_total = tl.load(D_ptr + ch, mask=emask, other=0.0).to(tl.float32)[None, :] * dy
    ddelta = tl.zeros([CHUNK, BLOCK_E], dtype=tl.float32)
    row = (bi * ndir + d) * NCHUNK + c
    from_before, from_after = _neighbours(emask, e, c, NCHUNK)
    du = delta * u
    # the channel tiles against the state tiles (views: nothing is copied)
    u_s, du_s, dy_s = _spread(u, STATE_BLOCK), _spread(du, STATE_BLOCK), _spread(dy, STATE_BLOCK)
    delta_s, nxt_s = _spread(delta, STATE_BLOCK), _spread(nxt, STATE_BLOCK)
    for n0 in range(0, N, STATE_BLOCK):
        n = _state_index(n0, STATE_BLOCK)
        a_n = tl.load(A_ptr + ch * N + n, mask=emask, other=0.0)
        b_n = tl.expand_dims(_state_cols(B_ptr, bi, dd, n0, m, inside, sB_b, sB_t, sB_d, sB_n, STATE_BLOCK), -1)
        c_n = tl.expand_dims(_state_cols(C_ptr, bi, dd, n0, m, inside, sC_b, sC_t, sC_d, sC_n, STATE_BLOCK), -1)
        h_in = tl.load(H_ptr + (row * N + n) * E + e, mask=from_before, other=0.0)
        g_in = tl.load(G_ptr + (row * N + n) * E + e, mask=from_after, other=0.0)
        a = tl.exp2(delta_s * (a_n * LOG2E)[None])
        x = du_s * b_n
        h = _scan(a, x, h_in, False)
        g = _scan(tl.exp2(nxt_s * (a_n * LOG2E)[None]), dy_s * c_n, g_in, True)
        if WALK:  # g at the chunk's first row enters the chunk before it
            tl.store(G_ptr + ((row - 1) * N + n) * E + e, _row(g, 0), mask=from_before)
        gh = g * (h - x)  # g_t a_t h_{t-1}
        ddelta += _state_sum(g * u_s * b_n + gh * a_n[None], STATE_BLOCK)
        du_total += _state_sum(g * delta_s * b_n, STATE_BLOCK)
        if LANE_SUMS:
            j = tl.arange(0, 32) % (CHUNK * STATE_BLOCK)  # lane j adds to row j: position j // STATE_BLOCK,
            tj = c * CHUNK + j // STATE_BLOCK  # state n0 + j % STATE_BLOCK
            bc = ((bi * ndir + d) * N + n0 + j % STATE_BLOCK) * L + _memory_index(tj, L, rev)
            tl.atomic_add(dB_ptr + bc, _lane_sums(g * du_s, CHUNK * STATE_BLOCK), mask=tj < L, sem="relaxed")
            tl.atomic_add(dC_ptr + bc, _lane_sums(dy_s * h, CHUNK * STATE_BLOCK), mask=tj < L, sem="relaxed")
        else:
            bc, bc_mask = _time_rows((bi * ndir + d) * N, n0, m, L, inside, STATE_BLOCK)
            tl.atomic_add(dB_ptr + bc, _channel_sum(g * du_s, STATE_BLOCK), mask=bc_mask, sem="relaxed")
            tl.atomic_add(dC_ptr + bc, _channel_sum(dy_s * h, STATE_BLOCK), mask=bc_mask, sem="relaxed")
        tl.atomic_add(dA_ptr + ch * N + n, tl.sum(gh * delta_s, axis=0), mask=_state_rows_mask(emask, STATE_BLOCK),
                      sem="relaxed")
    tl.atomic_add(dD_ptr + ch, tl.sum(dy * u, axis=0), mask=emask, sem="relaxed")
    # the conv pre-activation and raw delta are recomputed rather than kept live through the state loop
    raw, _ = _delta(dt_ptr, bias_ptr, bi, dd, t, e, ch, L, rev, emask, sd_b, sd_t, sd_d, sd_e)
    pre = _input(x_ptr, w_ptr, cb_ptr, bi, dd, t, e, ch, L, rev, emask, sx_b, sx_t, sx_d, sx_e, K, PAD)
    sp = tl.sigmoid(pre)
    ddraw = tl.where(tile, ddelta * tl.sigmoid(raw), 0.0)
    tl.store(ddt_ptr + (bi * sd_b + dd * sd_d) + m[:, None] * sd_t + e[None, :] * sd_e,
             ddraw.to(ddt_ptr.dtype.element_ty), mask=tile)
    tl.atomic_add(dbias_ptr + ch, tl.sum(ddraw, axis=0), mask=emask, sem="relaxed")
    dpre = tl.where(tile, du_total * sp * (1.0 + pre * (1.0 - sp)), 0.0)
    tl.store(dpre_ptr + (bi * sp_b + dd * sp_d) + m[:, None] * sp_t + e[None, :] * sp_e, dpre, mask=tile)
    _conv_param_grads(x_ptr, dw_ptr, dcb_ptr, dpre, bi, dd, t, e, ch, L, rev, emask,
                      sx_b, sx_t, sx_d, sx_e, K, PAD)


@triton.jit
def _conv_param_grads(x_ptr, dw_ptr, dcb_ptr, dpre, bi, dd, t, e, ch, L, rev, emask,
                      sx_b, sx_t, sx_d, sx_e, K: tl.constexpr, PAD: tl.constexpr):
    """Accumulate the conv weight and bias gradients of one tile from d(pre-activation), atomically."""
    tl.atomic_add(dcb_ptr + ch, tl.sum(dpre, axis=0), mask=emask, sem="relaxed")
    for k in tl.static_range(K):
        tk = t + (k - PAD)
        ok = (tk >= 0) & (tk < L)
        mk = _memory_index(tk, L, rev)
        xv = tl.load(x_ptr + (bi * sx_b + dd * sx_d) + mk[:, None] * sx_t + e[None, :] * sx_e,
                     mask=ok[:, None] & emask[None, :], other=0.0).to(tl.float32)
        tl.atomic_add(dw_ptr + ch * K + k, tl.sum(dpre * xv, axis=0), mask=emask, sem="relaxed")


@_jit
def _conv_silu(
    x_ptr, w_ptr, cb_ptr, u_ptr, du_ptr, dpre_ptr, dw_ptr, dcb_ptr, L, E, NEB,
    sx_b, sx_t, sx_d, sx_e, su_b, su_t, su_d, su_e, sp_b, sp_t, sp_d, sp_e,
    K: tl.constexpr, PAD: tl.constexpr, REV_ODD: tl.constexpr, BACKWARD: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_E: tl.constexpr,
):
    """u = silu(conv(x)) of every direction; or, BACKWARD, from du the d(pre-activation) (b, L, dirs, E) fp32
    and the conv weight and bias gradients."""
    c, de, bi = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    d, eb = de // NEB, de % NEB
    dd = d.to(tl.int64)  # scales the direction strides, which reach 2^31 too
    rev = (d % 2) * REV_ODD
    t, m, inside = _tile_rows(c, L, rev, CHUNK)
    e = eb * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    ch = d * E + e
    tile = inside[:, None] & emask[None, :]
    pre = _input(x_ptr, w_ptr, cb_ptr, bi, dd, t, e, ch, L, rev, emask, sx_b, sx_t, sx_d, sx_e, K, PAD)
    sp = tl.sigmoid(pre)
    ubase, urows = bi * su_b + dd * su_d, m[:, None] * su_t + e[None, :] * su_e
    if BACKWARD:
        du = tl.load(du_ptr + ubase + urows, mask=tile, other=0.0).to(tl.float32)
        dpre = tl.where(tile, du * sp * (1.0 + pre * (1.0 - sp)), 0.0)
        tl.store(dpre_ptr + (bi * sp_b + dd * sp_d) + m[:, None] * sp_t + e[None, :] * sp_e, dpre, mask=tile)
        _conv_param_grads(x_ptr, dw_ptr, dcb_ptr, dpre, bi, dd, t, e, ch, L, rev, emask,
                          sx_b, sx_t, sx_d, sx_e, K, PAD)
    else:
        tl.store(u_ptr + ubase + urows, (pre * sp).to(u_ptr.dtype.element_ty), mask=tile)


@_jit
def _bwd_conv_input(
    dpre_ptr, w_ptr, dx_ptr, L, E, NDIR, NEB,
    sp_b, sp_t, sp_d, sp_e, sdx_b, sdx_t, sdx_d, sdx_e,
    K: tl.constexpr, PAD: tl.constexpr, REV_ODD: tl.constexpr, SHARED: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_E: tl.constexpr,
):
    """dx from d(pre-activation), in memory order: the transposed depthwise conv of every direction.

    SHARED: all directions read one input, so their contributions are summed into one dx (b, L, E).
    """
    c, eb, bi = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    m = c * CHUNK + tl.arange(0, CHUNK)  # memory positions
    e = eb * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    tile = (m < L)[:, None] & emask[None, :]
    acc = tl.zeros([CHUNK, BLOCK_E], dtype=tl.float32)
    for d in range(NDIR):
        rev = (d % 2) * REV_ODD
        t = _memory_index(m, L, rev)  # the scan position held at memory position m
        ch = d * E + e
        for k in tl.static_range(K):
            src = t - (k - PAD)  # the scan position whose tap k read t
            ok = (src >= 0) & (src < L)
            msrc = _memory_index(src, L, rev)
            dp = tl.load(dpre_ptr + bi * sp_b + msrc[:, None] * sp_t + d * sp_d + e[None, :] * sp_e,
                         mask=ok[:, None] & emask[None, :], other=0.0)
            wk = tl.load(w_ptr + ch * K + k, mask=emask, other=0.0).to(tl.float32)
            acc += wk[None, :] * dp
        if not SHARED:
            tl.store(dx_ptr + bi * sdx_b + m[:, None] * sdx_t + d * sdx_d + e[None, :] * sdx_e,
                     acc.to(dx_ptr.dtype.element_ty), mask=tile)
            acc = tl.zeros([CHUNK, BLOCK_E], dtype=tl.float32)
    if SHARED:
        tl.store(dx_ptr + bi * sdx_b + m[:, None] * sdx_t + e[None, :] * sdx_e,
                 acc.to(dx_ptr.dtype.element_ty), mask=tile)
