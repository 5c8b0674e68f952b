"""CTC on the GPU: a Numba-CUDA block kernel built from the per-state pieces of ``_ctc_rows.py``.

Imported by ``numba_cuda``; importing ``_cuda_stream`` checks that CUDA, or its simulator, is there. The
backend's ``ctc`` follows the CTC contract of ``fusedloss._ctc`` on device arrays, on the backend's stream as every
other kernel (``_cuda_stream``): the launch, the scratch and the read-back of the longest target (when the caller
does not give it) go on the stream that ``numba_cuda.on_stream`` set. The math is ``_ctc_rows``'s, the same
functions the Numba CPU backend compiles (``ext_label``, ``can_skip``, ``degenerate``, ``alpha_cell``,
``beta_cell``, ``final_nll``, ``nonfinite``, ``occupancy``, ``lse3``), here compiled with
``cuda.jit(device=True)``; the softmax shift is ``_pointwise``'s online logsumexp (``lse_push``,
``lse_merge``, ``lse_finish``), as in the block-per-row cross_entropy.

Design:

- Launch: one block per sequence (``min(N, MAX_CTC_BLOCKS)`` blocks; sequences beyond are grid-strided over
  the blocks) of ``ctc_threads(L, C)`` threads: the power of two >= max(L, C), L = 2 S + 1 the longest
  extended label sequence, from a warp (32) to ``MAX_CTC_THREADS``. Threads stride over the extended
  states s (k, k + blockDim, ...) in the recursions and over the classes in the softmax and the gradient
  rows (consecutive threads, consecutive addresses).
- Forward, per frame t < T_n: the block reduces the frame's C scores to its log-sum-exp (per-thread online
  states, then a tree in shared memory in a fixed order: the same bits on every run; 0 for
  ``inputs="log_probs"``), stored as ``shift[n, t]``; then each thread computes alpha[t, s] for its states
  from alpha[t - 1] (``alpha_cell``), and ``cuda.syncthreads()`` ends the frame.
- Memory: alpha is not kept whole. Rows live in a ring of K = ceil(sqrt(T)) rows (``seg``), and every K-th
  row is copied to a checkpoint table (``ckpt``). The backward pass walks the segments from the last one:
  it recomputes the segment's alpha rows from its checkpoint into the ring (the last segment is still
  there), then for t from the segment's end down runs beta (two rows, ``beta_cell``), the occupancies of
  the states (``occupancy``) and the gradient row. Cost: one extra forward recursion (not the softmax, whose
  shift is stored). Scratch beyond the gradient, in float64 unless noted, with Lm = 2 max(S_n) + 1:
  ``N (T + (ceil(T / K) + K + 3) Lm)`` doubles plus ``2 N Lm`` int64 (``ctc_scratch_bytes``): O(N S sqrt T),
  not the O(N T S) of a full alpha table (warp-ctc's case, T=150, N=128, S=40: 2.6 MB against 12.4 MB;
  the subword case, T=400, N=32, S=80: 2.0 MB against 16.5 MB).
  The O(N S) of the issue would need alpha recomputed from the start per frame or a second sweep per
  segment with more checkpoints; sqrt(T) is the usual balance between memory and recomputation.
- Gradient row of frame t (``inputs="logits"``: w.r.t. the scores, gn (softmax - gamma); ``"log_probs"``:
  PyTorch's, gn (exp(log_probs) - gamma)): each thread writes gn p_k for its classes; after a barrier, the
  occupancies are subtracted in a fixed order and without two threads touching one class: thread 0 sums
  the blank's (the even states, in increasing s), and each label's first odd state (its chain head,
  precomputed per sequence) sums the states that carry the same label, in increasing s. These are the CPU
  kernel's sums in the CPU kernel's order; the one difference is the softmax's log-sum-exp, computed
  online in a tree here and as max-then-sum there (results agree to a few ulps of the loss).
- Degenerate sequences (no frames, or too few for the labels), infinite and NaN losses, padding frames
  t >= T_n: as on the CPU (``degenerate``, ``nonfinite``): 0 gradient on padding, NaN or 0 rows otherwise.
- Every branch that contains a barrier depends only on values every thread of the block computed alike
  (lengths, the loss), so no barrier is divergent.

Not done: keeping a frame's scores in shared memory between the softmax and the emissions (they are read
again from global memory, from L2 at these sizes), several short sequences per block, and a float32 path
for the recursions.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda

from . import _cuda_math, _jit
from ._cuda_math import exp_diff_as
from ._cuda_stream import _alloc, _stream, to_host

MAX_CTC_THREADS = 256  # the largest block (a power of two); the tests lower it to keep the simulator fast
MIN_CTC_THREADS = 32  # a warp
MAX_CTC_BLOCKS = 4096  # sequences beyond this are grid-strided over the blocks
SM = 256  # shared-memory slots for the softmax tree (>= MAX_CTC_THREADS)

NEG_INF = -math.inf


def _alpha_row(x, row, t, t_prev_slot, slot, sh, lab, blank, L, k, nt, seg, n):
    """alpha[t] of sequence ``n`` into ``seg[n, slot]`` from ``seg[n, t_prev_slot]`` (this thread's states)."""
    for s in range(k, L, nt):
        e = float(x[row + ext_label(lab, s, blank)]) - sh  # noqa: F821
        a = NEG_INF
        b = NEG_INF
        c = NEG_INF
        if t > 0:
            a = seg[n, t_prev_slot, s]
            if s >= 1:
                b = seg[n, t_prev_slot, s - 1]
            if can_skip(lab, s):  # noqa: F821
                c = seg[n, t_prev_slot, s - 2]
        seg[n, slot, s] = alpha_cell(t, s, a, b, c, e)  # noqa: F821


def _fill_rows(g, base, tstride, t_from, t_to, C, k, nt, value):
    for t in range(t_from, t_to):
        row = base + t * tstride
        for j in range(k, C, nt):
            g[row + j] = value


def _ctc_kernel(x, T, N, C, batch_first, log_probs, labels, offsets, tl, il, blank, zero_infinity, gscale,
                want_grad, loss_out, g, K, shift, ckpt, seg, beta, occ, chain):
    """One block per sequence (module docstring). ``g`` is ``x`` when no gradient is wanted (never written)."""
    sm_m = cuda.shared.array(SM, numba.float64)
    sm_s = cuda.shared.array(SM, numba.float64)
    k = cuda.threadIdx.x
    nt = cuda.blockDim.x
    tstride = C if batch_first else N * C
    for n in range(cuda.blockIdx.x, N, cuda.gridDim.x):
        Tn = il[n]
        S = tl[n]
        L = 2 * S + 1
        lab = labels[offsets[n]:offsets[n] + S]
        base = n * T * C if batch_first else n * C
        gn = gscale[n] if want_grad else 0.0
        if want_grad:
            _fill_rows(g, base, tstride, Tn, T, C, k, nt, 0.0)
        bad, loss, fill = degenerate(Tn, S, repeat_count(lab), zero_infinity)  # noqa: F821
        if bad:
            if want_grad:
                _fill_rows(g, base, tstride, 0, Tn, C, k, nt, fill)
            if k == 0:
                loss_out[n] = loss
            continue
        # each label's chain: chain[n, 0, s] = 1 on the first odd state with that label, chain[n, 1, s] the
        # next odd state with the same label (-1 at the end)
        for s in range(k, L, nt):
            if s % 2 == 1:
                head = 1
                for q in range(1, s, 2):
                    if lab[q // 2] == lab[s // 2]:
                        head = 0
                nxt = -1
                for q in range(L - 2, s, -2):
                    if lab[q // 2] == lab[s // 2]:
                        nxt = q
                chain[n, 0, s] = head
                chain[n, 1, s] = nxt

        # forward: softmax shift per frame, alpha rows in the ring, checkpoints every K rows
        for t in range(Tn):
            row = base + t * tstride
            sh = 0.0
            if not log_probs:
                m = -math.inf
                ss = 0.0
                for j in range(k, C, nt):
                    m, ss = lse_push(m, ss, float(x[row + j]), 0.0)  # noqa: F821  (float64 exponentials)
                sm_m[k] = m
                sm_s[k] = ss
                cuda.syncthreads()
                step = nt // 2
                while step > 0:
                    if k < step:
                        mm, s2 = lse_merge(sm_m[k], sm_s[k], sm_m[k + step], sm_s[k + step])  # noqa: F821
                        sm_m[k] = mm
                        sm_s[k] = s2
                    cuda.syncthreads()
                    step //= 2
                sh = lse_finish(sm_m[0], sm_s[0])  # noqa: F821
            if k == 0:
                shift[n, t] = sh
            slot = t % K
            _alpha_row(x, row, t, (t + K - 1) % K, slot, sh, lab, blank, L, k, nt, seg, n)
            if slot == 0:
                for s in range(k, L, nt):
                    ckpt[n, t // K, s] = seg[n, 0, s]
            cuda.syncthreads()  # alpha[t] complete (and sm_m[0] read by all) before frame t + 1
        last = (Tn - 1) % K
        a2 = seg[n, last, L - 2] if L > 1 else NEG_INF
        nll = final_nll(seg[n, last, L - 1], a2, L)  # noqa: F821
        if not nll < math.inf:
            loss, fill = nonfinite(nll, zero_infinity)  # noqa: F821
            if want_grad:
                _fill_rows(g, base, tstride, 0, Tn, C, k, nt, fill)
            if k == 0:
                loss_out[n] = loss
            continue
        if k == 0:
            loss_out[n] = nll
        if not want_grad:
            continue

        # backward, segment by segment from the last
        cur = 0
        J = (Tn - 1) // K
        for jseg in range(J, -1, -1):
            t0 = jseg * K
            t1 = min(t0 + K, Tn) - 1
            if jseg < J:  # recompute the segment's alpha rows from its checkpoint (the last one is in place)
                for s in range(k, L, nt):
                    seg[n, 0, s] = ckpt[n, jseg, s]
                cuda.syncthreads()
                for t in range(t0 + 1, t1 + 1):
                    _alpha_row(x, base + t * tstride, t, t - 1 - t0, t - t0, shift[n, t], lab, blank, L, k, nt,
                               seg, n)
                    cuda.syncthreads()
            for t in range(t1, t0 - 1, -1):
                row = base + t * tstride
                sh = shift[n, t]
                nb = 1 - cur
                for s in range(k, L, nt):
                    e = float(x[row + ext_label(lab, s, blank)]) - sh  # noqa: F821
                    b0 = NEG_INF
                    b1 = NEG_INF
                    b2 = NEG_INF
                    if t < Tn - 1:
                        b0 = beta[n, nb, s]
                        if s + 1 < L:
                            b1 = beta[n, nb, s + 1]
                        if s + 2 < L and can_skip(lab, s + 2):  # noqa: F821
                            b2 = beta[n, nb, s + 2]
                    bv = beta_cell(t == Tn - 1, s, L, b0, b1, b2, e)  # noqa: F821
                    beta[n, cur, s] = bv
                    occ[n, s] = occupancy(seg[n, t - t0, s], bv, e, nll)  # noqa: F821
                for j in range(k, C, nt):
                    g[row + j] = gn * math.exp(float(x[row + j]) - sh)
                cuda.syncthreads()  # occupancies and the p-part of the row written
                if k == 0:
                    acc = 0.0
                    for s in range(0, L, 2):
                        acc += occ[n, s]
                    g[row + blank] = float(g[row + blank]) - gn * acc
                for s in range(k, L, nt):
                    if s % 2 == 1 and chain[n, 0, s] == 1:
                        acc = 0.0
                        q = s
                        while q >= 0:
                            acc += occ[n, q]
                            q = chain[n, 1, q]
                        c = lab[s // 2]
                        g[row + c] = float(g[row + c]) - gn * acc
                cuda.syncthreads()  # the row done and occ free, beta[cur] complete, before frame t - 1
                cur = nb


def ctc_threads(L: int, C: int) -> int:
    """Threads per block: the power of two >= max(L, C), from ``MIN_CTC_THREADS`` to ``MAX_CTC_THREADS``."""
    n = MIN_CTC_THREADS
    while n < max(L, C) and n < MAX_CTC_THREADS:
        n *= 2
    return min(n, MAX_CTC_THREADS, SM)


def checkpoint_interval(T: int) -> int:
    """K, the rows between alpha checkpoints: ceil(sqrt(T)), at least 2 (the ring needs two rows)."""
    return max(2, math.isqrt(max(T - 1, 0)) + 1)


def ctc_scratch_bytes(T: int, N: int, Lm: int) -> int:
    """The kernel's scratch in bytes (module docstring)."""
    K = checkpoint_interval(T)
    J = (T + K - 1) // K
    return 8 * N * (T + (max(J, 1) + K + 3) * Lm) + 16 * N * Lm


_KERNEL: dict = {}


def kernel_function():
    """The kernel as a Python function over a namespace of compiled device functions (not compiled itself:
    ``_build`` does that; ``cuda.compile_ptx`` can type-check it on a machine without a GPU)."""
    from .. import _ctc_rows, _pointwise

    digest = _jit.source_hash(__file__, _ctc_rows.__file__, _cuda_math.__file__)
    device = cuda.jit(device=True)
    namespace = dict(globals())
    rows = dict(vars(_ctc_rows))
    for name in _ctc_rows.FUNCTIONS:
        if name != "ctc_sequence":  # the CPU's whole-sequence loop (it allocates): not for the device
            rows[name] = device(_jit.specialise(getattr(_ctc_rows, name), rows, f"ctc__{name}__{digest}"))
            namespace[name] = rows[name]
    point = {**vars(_pointwise), "exp_diff_as": exp_diff_as}  # the GPU's (an overload), as the loss kernels'
    for name in ("lse_push", "lse_merge", "lse_finish"):
        namespace[name] = device(_jit.specialise(getattr(_pointwise, name), point, f"ctc__{name}__{digest}"))
    for name in ("_alpha_row", "_fill_rows"):
        namespace[name] = device(_jit.specialise(globals()[name], namespace, f"ctc_{name}__{digest}"))
    return _jit.specialise(_ctc_kernel, namespace, f"sequence__ctc__{digest}")


def _build():
    kernel = cuda.jit(cache=True)(kernel_function())
    _KERNEL["ctc"] = kernel
    return kernel


def ctc(x, T, N, C, batch_first, log_probs, labels, offsets, target_lengths, input_lengths, blank, zero_infinity,
        gscale, loss_out, grad_out, nthreads, max_target_length=None):
    """The CTC contract of ``fusedloss._ctc`` on device arrays: ``x``, ``labels``, ``offsets``, the lengths,
    ``gscale`` (None or float64), ``loss_out`` and ``grad_out`` (None or like ``x``) all on the device.
    ``max_target_length`` (the largest of ``target_lengths``) saves reading it back from the device when the
    caller knows it. ``nthreads`` is ignored. Returns the scratch bytes."""
    if N == 0:
        return 0
    kernel = _KERNEL.get("ctc") or _build()
    if max_target_length is None:
        max_target_length = _host_max(target_lengths)
    Lm = 2 * int(max_target_length) + 1
    K = checkpoint_interval(T)
    J = max((T + K - 1) // K, 1)
    shift = _alloc((N, max(T, 1)), np.float64)
    ckpt = _alloc((N, J, Lm), np.float64)
    seg = _alloc((N, K, Lm), np.float64)
    beta = _alloc((N, 2, Lm), np.float64)
    occ = _alloc((N, Lm), np.float64)
    chain = _alloc((N, 2, Lm), np.int64)
    want_grad = grad_out is not None
    kernel[min(N, MAX_CTC_BLOCKS), ctc_threads(Lm, C), _stream()](
        x, T, N, C, bool(batch_first), bool(log_probs), labels, offsets, target_lengths, input_lengths,
        int(blank), bool(zero_infinity), gscale if want_grad else loss_out, want_grad, loss_out,
        grad_out if want_grad else x, K, shift, ckpt, seg, beta, occ, chain)
    return ctc_scratch_bytes(T, N, Lm)


def _host_max(a) -> int:
    if isinstance(a, np.ndarray):
        return int(a.max()) if a.size else 0
    host = to_host(a)
    return int(host.max()) if host.size else 0
