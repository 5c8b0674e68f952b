"""The Numba-CUDA backend's multiclass kernels (the interface is ``numba_cuda.py``'s ``multiclass``, the build
``numba_cuda._build``): ``_row_kernel``, one thread per row, for every multiclass loss but cross_entropy, and
``_ce_block_kernel`` with its launch rules (``_row_width``, ``_row_launch``) for cross_entropy (``BLOCK_ROWS``).

``_row_kernel`` calls the global ``row`` (the loss's ``<loss>_row`` of ``_pointwise``, compiled as a device
function), bound per copy as the elementwise kernel binds ``point``; the row functions take their optional arrays
with runtime flags (their convention).

cross_entropy has a kernel designed for the GPU instead (``_ce_block_kernel``), a team of threads per row:

- Launch (``_row_launch``): W threads per row, the power of two >= C / ``ROW_ELEMS`` from a warp (32) up to
  ``MAX_ROW_THREADS`` (``TPB``); blocks of ``MAX_ROW_THREADS`` threads hold 1 to 8 rows side by side; at most
  ``MAX_ROW_BLOCKS`` blocks, groups of rows beyond that grid-strided over them.
- Pass 1, one read of the row: lane k reads logits k, k + W, ... (consecutive threads read consecutive
  addresses: coalesced loads) and keeps an online logsumexp state (running max m and the sum of exp(z - m),
  rescaled when m grows: ``lse_push``) and the row sums of the loss (class weights, smoothing and soft-target
  terms: ``ce_elem_sums``). The exponentials of float32 logits are float32 arithmetic (``exp_diff_as``), the
  sums float64.
- Reduction: the per-thread states and sums go to shared memory and are combined by a tree over the row's
  lanes, halving the active lanes each step (``lse_merge`` for the states): a fixed order, so the result is
  the same bits run to run and does not depend on timing.
- Pass 2: every thread writes its strided part of the gradient (and Hessian) from the row's logsumexp
  (``ce_elem_grad``); a second read of the row, which at these sizes mostly hits L2.
- The math is ``_pointwise``'s: the per-element pieces that ``cross_entropy_row`` (the one-thread-per-row
  form, used by the CPU backend) also runs, so there is one definition of the loss. Every option (class and
  sample weights, ignore_index, label smoothing, z_loss, softcap, confidence_penalty, soft targets) goes through
  it; the confidence penalty adds a pass for the entropy's sum between the reduction and pass 2. Each set of
  options has its own copy of the kernel (the options are constants there).
- Metrics (``numba_cuda.multiclass_metrics``, hard labels): pass 1 also counts the label's rank, summed over the
  row's lanes by the same kind of tree; max_j p_j and -log p_t come from the row's state, the entropy from the
  confidence penalty's pass. One value per row and metric goes out; the host folds them (``_logit_metrics``).
- Reduced values: the rows' values are summed over each block by a tree; the per-block partials are added as
  every kernel's are (``_cuda_reduce``: fsum on the host, or on the device). The grid depends only on R and C,
  so the sum is reproducible too.
- Not yet done: vectorised (128-bit) loads, warp shuffles instead of the shared-memory tree (the simulator
  that CI runs has no shuffles), and keeping the row in registers / shared memory between the passes for C
  up to a few thousand. The other multiclass losses still run one thread per row.

The launch rules read ``ROW_ELEMS``, ``MAX_ROW_THREADS`` and ``MAX_ROW_BLOCKS`` from this module at each call (the
tests and ``benchmarks/gpu_bench.py`` set them here); the kernels see only their arguments and ``blockDim``.
"""

from __future__ import annotations

import math

import numba
from numba import cuda

from ._cuda_reduce import TPB, _segment_sum, _store_block_sum  # noqa: F401  (the kernels' globals)

MAX_ROW_THREADS = TPB  # the block kernel's block (a power of two, at most TPB; the tests lower it)
# Logits per thread and pass that the block kernel's row width aims at (_row_width). On an H200, the kernel
# alone at 65536 x 1000 float32: 1.04 ms with 1 (256 threads a row), 0.80 with 8, 0.61 with 32 (a warp a row);
# the same at 8192 x 32000 and 4096 x 128256 for every value (their rows take the whole block anyway).
ROW_ELEMS = 32
# The block kernel's largest grid; groups of rows beyond it are grid-strided over the blocks. One partial sum per
# block is added, by the host when the value is wanted there (math.fsum, about 40 ns each), else on the device
# (_final_sum_kernel): on an H200 the kernel took the same time (within 1%) with 1024, 2048 and 8192 blocks at
# 8192 x 32000, 4096 x 128256, 65536 x 1000 and 1024 x 32000, and 8192 partials cost the call about 0.3 ms.
MAX_ROW_BLOCKS = 1024
# Losses with a block-per-row kernel, and the per-element pieces of _pointwise that kernel calls.
BLOCK_ROWS = frozenset({"cross_entropy"})
BLOCK_MATH = ("capped", "row_shift", "lse_push", "lse_merge", "lse_state", "ce_elem_sums", "ce_sums_shift",
              "ce_row_finish", "ce_entropy", "ce_elem_grad", "row_log_p")


def _row_kernel(x, labels, q, w, cw, has_cw, soft, C, ignore, params, scale, value_out, g, h, want_g, want_h,
                partial):
    """The generic multiclass kernel, one thread per row of ``C`` logits; ``row`` and the flags per copy.

    ``q``, ``cw``, ``g`` and ``h`` are always arrays, with runtime flags saying which are in use (the row
    functions' convention); ``labels`` is read only when not ``soft``. Ignored rows (label ``ignore``, weight 0)
    get 0 everywhere.
    """
    s = 0.0
    for r in range(cuda.grid(1), x.shape[0] // C, cuda.gridsize(1)):
        base = r * C
        t = 0
        if not soft:
            t = labels[r]
        rw = 1.0
        if HAS_WEIGHT:  # noqa: F821
            rw = float(w[r])
        if (not soft and t == ignore) or rw == 0.0:  # ignored: exactly 0, whatever the logits
            value = 0.0
            for j in range(C):
                if want_g:
                    g[base + j] = 0.0
                if want_h:
                    h[base + j] = 0.0
        else:
            value = row(x, base, C, t, q, cw, has_cw, soft, params, rw, scale, g, h, want_g,  # noqa: F821
                        want_h)
        if WRITE_VALUE:  # noqa: F821
            value_out[r] = value
        if REDUCE:  # noqa: F821
            s += value
    if REDUCE:  # noqa: F821
        _store_block_sum(s, partial)


def _ce_block_kernel(x, labels, q, w, cw, C, W, ignore, ls, zl, cap, cp, scale, value_out, g, h, partial,
                     rank_out, conf_out, nll_out, ent_out):
    """cross_entropy, ``W`` threads per row (module docstring): the row's threads stride over it.

    A block holds ``blockDim.x / W`` rows side by side (both powers of two). Pass 1 reads each logit once
    (coalesced: lane k reads k, k + W, ...) into a per-thread online logsumexp state and the row sums; each row's
    states and sums are combined by a tree over its lanes in shared memory (fixed order); pass 2 writes the
    gradient (and Hessian). Groups of rows are grid-strided over blocks. Every thread runs every barrier: a row
    that is ignored, has weight 0 or lies past the last row reads nothing but takes part in the trees. With the
    confidence penalty ``cp``, a pass between them sums the entropy's e_j (sh - z_j) from the row's shift (same
    tree). The rows' values are summed over the block at the end (a tree, fixed order).

    With ``METRICS`` (hard labels), the row's metrics of ``_pointwise.cross_entropy_row_metrics`` come from the
    same passes: pass 1 also counts the label's rank (its tie rule, on the raw logits; summed over the lanes
    by a tree), and the row's state gives max_j p_j and -log p_t. With ``ENTROPY`` the entropy's pass runs
    whether or not the confidence penalty is on. Per row: ``rank_out`` (-1 for a skipped row or one with
    nothing to normalise), ``conf_out``, ``nll_out``, ``ent_out`` (0.0 for a skipped row, nan for the other).

    Each copy is built for one set of flags (``_FLAGS["block"]``): soft targets, class weights, which of the
    gradient and Hessian to write, and whether any of smoothing, z_loss, softcap and the confidence penalty is
    on. The plain case's copy thus holds none of their code (fewer registers: more rows in flight per SM).
    """
    soft = SOFT  # noqa: F821
    has_cw = HAS_CW  # noqa: F821
    want_g = WANT_G  # noqa: F821
    want_h = WANT_H  # noqa: F821
    if not OPTIONS:  # noqa: F821
        ls = 0.0
        zl = 0.0
        cap = 0.0
        cp = 0.0
    sm_m = cuda.shared.array(TPB, numba.float64)
    sm_s = cuda.shared.array(TPB, numba.float64)
    sm_u = cuda.shared.array(TPB, numba.float64)
    sm_v = cuda.shared.array(TPB, numba.float64)
    sm_x = cuda.shared.array(TPB, numba.float64)  # the raw logits' max (nan skipped): the rule for rows of -inf
    k = cuda.threadIdx.x
    lane = k & (W - 1)
    head = k - lane  # the row's first thread: its slots hold the row's totals after the tree
    per_block = cuda.blockDim.x // W
    R = x.shape[0] // C
    e_c = ls / C
    acc = 0.0
    for r0 in range(cuda.blockIdx.x * per_block, R, cuda.gridDim.x * per_block):
        r = r0 + k // W
        live = r < R
        base = r * C
        t = 0
        rw = 1.0
        if live:
            if not soft:
                t = labels[r]
            if HAS_WEIGHT:  # noqa: F821
                rw = float(w[r])
        skip = (not live) or (not soft and t == ignore) or rw == 0.0
        n = 0 if skip else C  # a skipped row reads nothing
        x_t = 0.0
        if METRICS and not skip:  # noqa: F821
            x_t = float(x[base + t])
        above = 0.0  # the label's rank: #{j < t: x_j >= x_t} + #{j > t: x_j > x_t} (row_max_rank's rule)
        m = -math.inf
        s = 0.0
        u = 0.0
        v = 0.0
        xm = -math.inf
        for j in range(lane, n, W):
            xj = float(x[base + j])
            if xj > xm:
                xm = xj
            if METRICS and (xj > x_t or (xj == x_t and j < t)):  # noqa: F821
                above += 1.0
            m0 = m
            m, s = lse_push(m, s, capped(xj, cap), x[base + j])  # noqa: F821
            sh = row_shift(m, 0.0)  # noqa: F821  (v's reference: the running max)
            if (soft or ls != 0.0) and m != m0:
                v = ce_sums_shift(u, v, row_shift(m0, 0.0), sh)  # noqa: F821
            cj = float(cw[j]) if has_cw else 1.0
            qj = float(q[base + j]) if soft else 0.0
            du, dv = ce_elem_sums(xj, qj, cj, soft, ls, e_c, cap, sh)  # noqa: F821
            u += du
            v += dv
        sm_m[k] = m
        sm_s[k] = s
        sm_u[k] = u
        sm_v[k] = v
        sm_x[k] = xm
        cuda.syncthreads()
        step = W // 2
        while step > 0:
            if lane < step:
                ma = sm_m[k]
                mb = sm_m[k + step]
                mm, ss = lse_merge(ma, sm_s[k], mb, sm_s[k + step])  # noqa: F821
                sm_m[k] = mm
                sm_s[k] = ss
                if soft or ls != 0.0:  # both lanes' v taken to the merged max
                    sh = row_shift(mm, 0.0)  # noqa: F821
                    sm_v[k] = (ce_sums_shift(sm_u[k], sm_v[k], row_shift(ma, 0.0), sh)  # noqa: F821
                               + ce_sums_shift(sm_u[k + step], sm_v[k + step], row_shift(mb, 0.0), sh))  # noqa: F821
                sm_u[k] += sm_u[k + step]
                if sm_x[k + step] > sm_x[k]:
                    sm_x[k] = sm_x[k + step]
            cuda.syncthreads()
            step //= 2
        # the rule for rows with nothing to normalise (_pointwise.no_softmax); the online state keeps a
        # +inf max with a finite s, where the row loop's exp(inf - inf) makes s nan: tested apart
        bad = sm_x[head] == -math.inf or sm_s[head] != sm_s[head] or sm_m[head] == math.inf
        st = lse_state(sm_m[head], sm_s[head])  # noqa: F821
        u = sm_u[head]
        v = sm_v[head]
        ct = 1.0
        z_t = 0.0
        if not soft and not skip:
            ct = float(cw[t]) if has_cw else 1.0
            z_t = capped(float(x[base + t]), cap)  # noqa: F821
        # every thread has read the totals (before the next rows overwrite them) and x[t] (before pass 2
        # may overwrite it: the gradient may be written over the logits)
        cuda.syncthreads()
        value, coef = ce_row_finish(st, st[0], soft, u, v, ct, z_t, ls, e_c, zl)  # noqa: F821
        rank = 0.0
        if METRICS:  # noqa: F821
            rank = _segment_sum(sm_u, above, W)
        H = 0.0
        if cp != 0.0 or ENTROPY:  # noqa: F821  (the same for every thread of the block, as the barriers need)
            ent = 0.0
            if not bad:  # a skipped row is bad here (its max is -inf): it adds nothing
                sh = st[0]
                for j in range(lane, n, W):
                    z = capped(float(x[base + j]), cap)  # noqa: F821
                    e = math.exp(z - sh)
                    if e != 0.0:
                        ent += e * (sh - z)
            H = ce_entropy(st, _segment_sum(sm_u, ent, W))  # noqa: F821
            if cp != 0.0:
                value -= cp * H
        value *= rw
        if skip:
            value = 0.0
            for j in range(lane, C if live else 0, W):
                if want_g:
                    g[base + j] = 0.0
                if want_h:
                    h[base + j] = 0.0
        elif bad:
            value = math.nan
            for j in range(lane, C, W):
                if want_g:
                    g[base + j] = math.nan
                if want_h:
                    h[base + j] = math.nan
        elif want_g or want_h:
            f = rw * scale
            for j in range(lane, C, W):
                cj = float(cw[j]) if has_cw else 1.0
                qj = float(q[base + j]) if soft else 0.0
                is_t = (not soft) and j == t
                gx, hx = ce_elem_grad(x[base + j], is_t, qj, cj, soft, ls, e_c,  # noqa: F821
                                      cap, zl, st, coef, want_h, cp, H)
                if want_h:
                    h[base + j] = f * hx
                if want_g:
                    g[base + j] = f * gx
        if lane == 0 and live:
            if WRITE_VALUE:  # noqa: F821
                value_out[r] = value
            if METRICS:  # noqa: F821
                if skip or bad:
                    no = 0.0 if skip else math.nan
                    rank_out[r] = -1
                    conf_out[r] = no
                    nll_out[r] = no
                    if ENTROPY:  # noqa: F821
                        ent_out[r] = no
                else:
                    rank_out[r] = int(rank)
                    conf_out[r] = st[3]
                    nll_out[r] = -row_log_p(z_t, st)  # noqa: F821
                    if ENTROPY:  # noqa: F821
                        ent_out[r] = H
            acc += value
    if REDUCE:  # noqa: F821
        total = _segment_sum(sm_s, acc, cuda.blockDim.x)
        if k == 0:
            partial[cuda.blockIdx.x] = total


def _row_width(C: int) -> int:
    """Threads per row of the block kernel: the power of two >= C / ``ROW_ELEMS`` (logits per thread and pass),
    from a warp (32) to ``MAX_ROW_THREADS``."""
    n = 32
    while n * ROW_ELEMS < C and n < MAX_ROW_THREADS:
        n *= 2
    return n


def _row_launch(R: int, C: int) -> tuple[int, int, int]:
    """(blocks, threads per block, threads per row) of the block kernel for R rows of C logits: rows side by side
    up to ``MAX_ROW_THREADS`` threads a block (fewer when R is smaller), at most ``MAX_ROW_BLOCKS`` blocks."""
    width = _row_width(C)
    per_block = 1
    while width * per_block < MAX_ROW_THREADS and per_block < R:
        per_block *= 2
    return min(-(-R // per_block), MAX_ROW_BLOCKS), width * per_block, width
