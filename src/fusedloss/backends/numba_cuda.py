"""The Numba-CUDA backend: the point and row functions of ``_pointwise.py`` compiled as CUDA device functions.

Importable only where it can run: ``numba-cuda`` installed and either a CUDA GPU present or the simulator
enabled (``NUMBA_ENABLE_CUDASIM=1``, how CI runs these kernels). Otherwise importing raises ImportError
saying which, and the backend registry reports that reason.

Same interface as the host backends, but every array is a device array (Numba's, or the simulator's).
``_kernel`` (elementwise) and ``_row_kernel`` (multiclass, one thread per row) are the generic kernels:
grid-stride loops, each thread summing its ``w * l`` in float64, then a tree sum over the block in shared
memory, one float64 partial per block. The grid depends only on the size (``_blocks``), so the partials, and
the reduced value, are reproducible. The partials are added (``_reduced``) either

- on the host with ``math.fsum`` (correctly rounded, so independent of their order): the public API's Python
  floats; reading them back waits for the kernel; or
- on the device (a ``DeviceTotal`` given as ``total=``: what ``fusedloss.torch`` asks for) by
  ``_final_sum_kernel``: one warp, each thread a strided compensated sum, thread 0 adding theirs in thread order
  (compensated too), then the division by "mean"'s divisor, into a 1-element device array. A fixed order, so the
  same bits run to run; it agrees with fsum to about one rounding (tests/test_cuda_device_value.py). Nothing
  waits for it.

Streams: ``on_stream`` puts every launch, allocation and host copy of this module on one stream (a Numba stream
or a foreign handle such as torch's ``cuda_stream``; default: Numba's default stream), so a caller on a side
stream needs no synchronisation around a call; ``to_host`` waits for that stream only. The simulator has no
foreign streams: a stream of its own stands in for a handle (it runs every launch to the end anyway). The CTC
kernels (``numba_cuda_ctc``) still run on the default stream.

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
- Reduced values: the rows' values are summed over each block by a tree; the per-block partials are added as
  above (fsum on the host, or on the device). The grid depends only on R and C, so the sum is reproducible too.
- Not yet done: vectorised (128-bit) loads, warp shuffles instead of the shared-memory tree (the simulator
  that CI runs has no shuffles), and keeping the row in registers / shared memory between the passes for C
  up to a few thousand. The other multiclass losses still run one thread per row.

Which outputs exist is decided at compile time, as in the CPU backend, but not with ``None`` arguments:
Numba-CUDA cannot pass ``None`` to a kernel. Each combination gets its own copy of the kernel
(``_jit.specialise``) whose globals ``HAS_WEIGHT``, ``WRITE_VALUE``, ``WRITE_GRAD``, ``WRITE_HESS``,
``REDUCE`` and ``HAS_COLS`` are constants, so the branches on them are compiled away; a missing array is
passed as ``p`` (or ``x``), which then is never touched. The row functions take their optional arrays
with runtime flags instead (their convention). Copies are built on first use and cached on disk.

Also here: the device helpers that ``fusedloss._device`` needs (sum, first value outside a range or not a
sign, first bad label, kept-rows weight sum, cast, broadcast of leading-axis weights, the unit Hessian),
each a small grid-stride kernel.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import math
import threading
from typing import NamedTuple

import numpy as np

if importlib.util.find_spec("numba_cuda") is None:
    raise ImportError("numba-cuda is not installed (pip install numba-cuda, or the 'cuda' extra)")

import numba  # noqa: E402
from numba import cuda  # noqa: E402

from . import _jit  # noqa: E402

SIMULATOR = bool(cuda.config.ENABLE_CUDASIM)
if not SIMULATOR and not cuda.is_available():
    raise ImportError("no CUDA GPU found (numba.cuda.is_available() is False); "
                      "set NUMBA_ENABLE_CUDASIM=1 to run the CUDA kernels on the simulator")


def target_error(load=None) -> str | None:
    """Why Numba-CUDA cannot compile for the GPU here, or None. Its CUDA target loads its NumPy support only at
    the first compilation; a NumPy that numba-cuda does not support fails there (numba-cuda 0.30 with NumPy 2.5,
    which removed ``np.row_stack``). Loading it now lets the backend registry report the reason instead of every
    call failing. ``load``: what to run (tests pass a stand-in)."""
    import importlib

    try:
        (load or (lambda: importlib.import_module("numba.cuda.np.arrayobj")))()
    except Exception as exc:  # whatever the target raises, the backend cannot compile
        from importlib.metadata import PackageNotFoundError, version

        try:
            which = f"numba-cuda {version('numba-cuda')}"
        except PackageNotFoundError:
            which = "numba-cuda"
        return (f"{which} cannot compile with NumPy {np.__version__} ({type(exc).__name__}: {exc}); install a "
                f"NumPy that {which} supports (for example 'numpy<{np.__version__.rsplit('.', 1)[0]}') or a "
                f"numba-cuda release that supports this NumPy")
    return None


if not SIMULATOR:
    _why = target_error()
    if _why:
        raise ImportError(_why)

if SIMULATOR:  # the simulator runs kernels as Python, where Numba's intrinsic cannot be called
    def tuple_setitem(t, k, v):
        return t[:k] + (v,) + t[k + 1:]
else:
    from numba.cpython.unsafe.tuple import tuple_setitem  # noqa: E402

from . import _cuda_math  # noqa: E402
from ._cuda_math import exp_diff_as  # noqa: E402



NAME = "cuda"
DEVICE = True

TPB = 256  # threads per block (a power of two: the block sum halves it)
MAX_BLOCKS = 1024  # grid-stride beyond this; also bounds the partial sums the host adds
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
# The device-side final sum's threads (a power of two): one warp adds the <= 1024 partials, 32 each, then a tree of
# 5 steps; a few microseconds of a single block at most.
FINAL_THREADS = 32

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _blocks(n: int) -> int:
    return min((n + TPB - 1) // TPB, MAX_BLOCKS)


# --- the stream: every launch, allocation and copy of this module goes on it --------------------------------

_STREAM: contextvars.ContextVar = contextvars.ContextVar("fusedloss_cuda_stream", default=None)
_EXTERNAL: dict[int, object] = {}  # foreign stream handle -> its Numba stream (a wrapper that owns nothing)


def _stream():
    """The stream of the calls made now: the one ``on_stream`` set, else 0 (Numba's default stream)."""
    s = _STREAM.get()
    return 0 if s is None else s


@contextlib.contextmanager
def on_stream(stream):
    """Inside, this module's kernels, allocations and copies go on ``stream`` (a Numba stream, or the handle of a
    foreign one, such as torch's ``cuda_stream``; None: the default stream), in this context only (a
    ``contextvars`` variable: other threads keep theirs). Work on one stream runs in order, so a caller on a side
    stream needs no synchronisation around the call; a copy to the host waits for that stream only (``to_host``)."""
    token = _STREAM.set(external_stream(stream) if isinstance(stream, int) else stream)
    try:
        yield
    finally:
        _STREAM.reset(token)


def external_stream(handle: int):
    """The Numba stream for a foreign CUDA stream handle (cached: wrapping one costs about as much as a launch).
    The simulator has no foreign streams (its ``cuda.external_stream`` raises) and runs each launch to the end,
    in call order: a stream of its own stands in for any handle there."""
    s = _EXTERNAL.get(handle)
    if s is None:
        if len(_EXTERNAL) >= 64:  # streams come and go: do not keep every handle ever seen
            _EXTERNAL.clear()
        s = _EXTERNAL[handle] = cuda.stream() if SIMULATOR else cuda.external_stream(handle)
    return s


def _alloc(shape, dtype):
    return cuda.device_array(shape, dtype, stream=_stream())


def to_host(x) -> np.ndarray:
    """A host copy of the device array ``x``, once the work queued on the current stream is done: a copy on the
    default stream would not wait for a side stream created non-blocking (torch's are)."""
    s = _stream()
    host = x.copy_to_host(stream=s)
    if s != 0:  # a copy on a stream is asynchronous until the stream is synchronised
        s.synchronize()
    return host


class DeviceTotal(NamedTuple):
    """Where a reduction's value goes when it stays on the device: ``out``, a 1-element device array (float32 or
    float64), receives the sum of the kernel's float64 per-block partials (``_final_sum_kernel``), divided by
    ``denom`` ("mean"; nan when it is 0, as ``_validate.reduced_value``) unless that is None ("sum")."""

    out: object
    denom: float | None = None


def _reduced(partial, total: DeviceTotal | None):
    """The value of a reduction into ``partial``: on the host, the exactly rounded sum (``math.fsum``, which reads
    the partials back: a synchronisation); or, with ``total``, ``total.out`` written on the device."""
    if total is None:
        return math.fsum(to_host(partial))
    denom = total.denom
    _final_sum_kernel[1, FINAL_THREADS, _stream()](partial, 0.0 if denom is None else float(denom),
                                                   denom is not None, total.out)
    return total.out


# --- kernels -------------------------------------------------------------------------------------------


@cuda.jit(device=True)
def _segment_sum(buf, s, width):
    """The sum of ``s`` over each run of ``width`` consecutive threads of the block (a power of two; every thread
    calls this), by a tree in ``buf`` (shared memory) in a fixed order. Every thread gets its run's total, and
    has read it before this returns, so ``buf`` may be written again at once."""
    t = cuda.threadIdx.x
    lane = t & (width - 1)
    buf[t] = s
    cuda.syncthreads()
    step = width // 2
    while step > 0:
        if lane < step:
            buf[t] += buf[t + step]
        cuda.syncthreads()
        step //= 2
    total = buf[t - lane]
    cuda.syncthreads()
    return total


@cuda.jit(device=True)
def _store_block_sum(s, partial):
    """Sum ``s`` over the threads of the block (fixed tree order) into ``partial[blockIdx.x]``."""
    buf = cuda.shared.array(TPB, numba.float64)
    total = _segment_sum(buf, s, TPB)
    if cuda.threadIdx.x == 0:
        partial[cuda.blockIdx.x] = total


@cuda.jit(device=True)
def _two_sum(a, b):
    """(a + b rounded, its rounding error exactly): Knuth's TwoSum, no branch on the magnitudes."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@cuda.jit(cache=True)
def _final_sum_kernel(partial, denom, divide, out):
    """``out[0]`` = the sum of ``partial`` (float64), over ``denom`` when ``divide`` (nan when it is 0). One block
    of ``FINAL_THREADS`` threads: thread k adds partial[k], partial[k + FINAL_THREADS], ..., then thread 0 adds the
    threads' sums in thread order; every addition is compensated (``_two_sum``: the rounding errors are summed
    apart and added at the end). A fixed order: the same bits run to run, depending on nothing but the partials;
    within about one rounding of the exactly rounded sum (``math.fsum``) for the <= 1024 partials of a grid unless
    they cancel. A non-finite sum is returned as it is (the compensation of inf is nan); finite partials whose sum
    overflows give inf (fsum raises)."""
    sm_s = cuda.shared.array(FINAL_THREADS, numba.float64)
    sm_c = cuda.shared.array(FINAL_THREADS, numba.float64)
    k = cuda.threadIdx.x
    s = 0.0
    c = 0.0
    for i in range(k, partial.shape[0], FINAL_THREADS):
        s, e = _two_sum(s, partial[i])
        c += e
    sm_s[k] = s
    sm_c[k] = c
    cuda.syncthreads()
    if k == 0:
        s = 0.0
        c = 0.0
        for j in range(FINAL_THREADS):  # the threads' sums, in thread order
            s, e = _two_sum(s, sm_s[j])
            c += sm_c[j] + e
        if s - s == 0.0:  # finite: every step was, and the errors are exact
            s += c
        if divide:
            s = s / denom if denom != 0.0 else math.nan
        out[0] = s


def _kernel(p, y, w, params, scale, value_out, grad_out, hess_out, partial, cols):
    """The generic elementwise kernel; ``point`` and the flags are bound per copy (module docstring).

    ``params``: the loss's tuple of scalar parameters. With ``HAS_COLS``, ``cols[i % cols.size]`` replaces
    ``params[VEC_SLOT]``.
    """
    s = 0.0
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        prm = params
        if HAS_COLS:  # noqa: F821
            prm = tuple_setitem(params, VEC_SLOT, float(cols[i % cols.shape[0]]))  # noqa: F821
        l, g, h = point(float(p[i]), float(y[i]), prm)  # noqa: F821
        if HAS_WEIGHT:  # noqa: F821
            wi = float(w[i])
            l = l * wi
            g = g * wi
            h = h * wi
        if WRITE_VALUE:  # noqa: F821
            value_out[i] = l
        if WRITE_GRAD:  # noqa: F821
            grad_out[i] = g * scale
        if WRITE_HESS:  # noqa: F821
            hess_out[i] = h * scale
        if REDUCE:  # noqa: F821
            s += l
    if REDUCE:  # noqa: F821
        _store_block_sum(s, partial)


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


def _ce_block_kernel(x, labels, q, w, cw, C, W, ignore, ls, zl, cap, cp, scale, value_out, g, h, partial):
    """cross_entropy, ``W`` threads per row (module docstring): the row's threads stride over it.

    A block holds ``blockDim.x / W`` rows side by side (both powers of two). Pass 1 reads each logit once
    (coalesced: lane k reads k, k + W, ...) into a per-thread online logsumexp state and the row sums; each row's
    states and sums are combined by a tree over its lanes in shared memory (fixed order); pass 2 writes the
    gradient (and Hessian). Groups of rows are grid-strided over blocks. Every thread runs every barrier: a row
    that is ignored, has weight 0 or lies past the last row reads nothing but takes part in the trees. With the
    confidence penalty ``cp``, a pass between them sums the entropy's e_j (sh - z_j) from the row's shift (same
    tree). The rows' values are summed over the block at the end (a tree, fixed order).

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
        m = -math.inf
        s = 0.0
        u = 0.0
        v = 0.0
        xm = -math.inf
        for j in range(lane, n, W):
            xj = float(x[base + j])
            if xj > xm:
                xm = xj
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
        H = 0.0
        if cp != 0.0:  # the same for every thread of the block, as the tree's barriers need
            ent = 0.0
            if not bad:  # a skipped row is bad here (its max is -inf): it adds nothing
                sh = st[0]
                for j in range(lane, n, W):
                    z = capped(float(x[base + j]), cap)  # noqa: F821
                    e = math.exp(z - sh)
                    if e != 0.0:
                        ent += e * (sh - z)
            H = ce_entropy(st, _segment_sum(sm_u, ent, W))  # noqa: F821
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


@cuda.jit(cache=True)
def _sum_kernel(x, partial):
    s = 0.0
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        s += float(x[i])
    _store_block_sum(s, partial)


@cuda.jit(cache=True)
def _first_outside_kernel(x, lo, hi, first):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = x[i]
        if v < lo or v > hi:  # nan is neither: it passes
            cuda.atomic.min(first, 0, i)
            return  # this thread's later indices are larger


@cuda.jit(cache=True)
def _copy_kernel(src, dst):
    for i in range(cuda.grid(1), dst.shape[0], cuda.gridsize(1)):
        dst[i] = src[i]


@cuda.jit(cache=True)
def _expand_kernel(src, dst, inner):
    for i in range(cuda.grid(1), dst.shape[0], cuda.gridsize(1)):
        dst[i] = src[i // inner]


@cuda.jit(cache=True)
def _first_not_sign_kernel(x, first):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = x[i]
        if v != -1 and v != 0 and v != 1 and v == v:  # nan passes
            cuda.atomic.min(first, 0, i)
            return


@cuda.jit(cache=True)
def _first_bad_label_kernel(labels, C, has_ignore, ignore, first):
    for i in range(cuda.grid(1), labels.shape[0], cuda.gridsize(1)):
        t = labels[i]
        if (t < 0 or t >= C) and not (has_ignore and t == ignore):
            cuda.atomic.min(first, 0, i)
            return


@cuda.jit(cache=True)
def _kept_sum_kernel(labels, ignore, rw, has_rw, cw, has_cw, partial):
    s = 0.0
    for r in range(cuda.grid(1), labels.shape[0], cuda.gridsize(1)):
        t = labels[r]
        if t != ignore:
            v = 1.0
            if has_rw:
                v = float(rw[r])
            if has_cw:
                v *= float(cw[t])
            s += v
    _store_block_sum(s, partial)


@cuda.jit(cache=True)
def _unit_hessian_kernel(h, C, labels, has_labels, ignore, rw, has_rw, scale):
    for i in range(cuda.grid(1), h.shape[0], cuda.gridsize(1)):
        r = i // C
        v = scale
        if has_rw:
            v = float(rw[r]) * scale
        if has_labels and labels[r] == ignore:
            v = 0.0
        h[i] = v


_state: dict = {}  # "ns": compiled point functions, "hash": source hash (built on first use)
_STATE_LOCK = threading.Lock()  # guards the one-time build of _state
_KERNELS: dict[tuple, object] = {}  # (loss, *flags) -> kernel
_SUPPORTED = {**{name: "elementwise" for name in _jit.point_names()},
              **{name: "multiclass" for name in _jit.row_names()}}
_FLAGS = {
    "elementwise": ("HAS_WEIGHT", "WRITE_VALUE", "WRITE_GRAD", "WRITE_HESS", "REDUCE", "HAS_COLS"),
    "multiclass": ("HAS_WEIGHT", "WRITE_VALUE", "REDUCE"),
    "block": ("HAS_WEIGHT", "WRITE_VALUE", "REDUCE", "SOFT", "HAS_CW", "WANT_G", "WANT_H", "OPTIONS"),
}
# Losses with a block-per-row kernel, and the per-element pieces of _pointwise that kernel calls.
BLOCK_ROWS = frozenset({"cross_entropy"})
BLOCK_MATH = ("capped", "row_shift", "lse_push", "lse_merge", "lse_state", "ce_elem_sums", "ce_sums_shift",
              "ce_row_finish", "ce_entropy", "ce_elem_grad")


def _build(key: tuple):
    loss, *flags = key
    if "hash" not in _state:  # first use; several threads may get here at once
        with _STATE_LOCK:
            if "hash" not in _state:
                _state["ns"] = _jit.compile_namespace(cuda.jit(device=True), {"exp_diff_as": exp_diff_as})
                # last: its presence means "ns" is there
                _state["hash"] = _jit.source_hash(__file__, _cuda_math.__file__)
    custom = _jit.custom_point(loss, _state["ns"], cuda.jit(device=True))
    kind = "elementwise" if custom is not None else ("block" if loss in BLOCK_ROWS else _SUPPORTED[loss])
    namespace = dict(globals())
    namespace.update(zip(_FLAGS[kind], flags))
    cache_name = _state["hash"]  # names the on-disk cache entry (the source) of this copy
    if custom is not None:  # a custom loss: its formula's key names the cache entry
        template = _kernel
        namespace["point"], formula_key = custom
        namespace["VEC_SLOT"] = 0
        cache_name = f"{cache_name}__{formula_key}"
    elif kind == "elementwise":
        template = _kernel
        namespace["point"] = _state["ns"][f"{loss}_point"]
        namespace["VEC_SLOT"] = _jit.vector_slot(loss)
    elif kind == "block":
        template = _ce_block_kernel
        namespace.update({k: _state["ns"][k] for k in BLOCK_MATH})
    else:
        template = _row_kernel
        namespace["row"] = _state["ns"][f"{loss}_row"]
    bits = "".join("1" if f else "0" for f in flags)
    kernel = cuda.jit(cache=True)(_jit.specialise(template, namespace, f"{kind}__{loss}__{bits}__{cache_name}"))
    _KERNELS[key] = kernel
    return kernel


# --- the backend interface -----------------------------------------------------------------------------


def info() -> dict:
    import numba_cuda

    row = {"version": getattr(numba_cuda, "__version__", "?"), "threads": None, "simulator": SIMULATOR}
    if SIMULATOR:
        row["build"] = "CUDA simulator (NUMBA_ENABLE_CUDASIM=1): Python speed, for tests only"
    else:
        device = cuda.get_current_device()
        name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
        row["device"] = name
        row["compute_capability"] = ".".join(map(str, device.compute_capability))
        row["build"] = f"cuda.jit(cache=True), {TPB} threads per block, at most {MAX_BLOCKS} blocks"
    return row


def supports(spec, dtype) -> bool:
    return (_SUPPORTED.get(spec.name) == spec.kind or spec.name in _jit.CUSTOM) and np.dtype(dtype) in _DTYPES


def forget(loss: str) -> None:
    """Drop the kernels of ``loss`` (a custom loss defined again or removed)."""
    for key in [k for k in _KERNELS if k[0] == loss]:
        del _KERNELS[key]


def elementwise(loss, params, p, y, w, scale, reduce, value_out, grad_out, hess_out, nthreads, cols=None, *,
                total=None):
    """The elementwise kernel contract on device arrays (``cols`` too); ``nthreads`` is ignored. With ``reduce``
    and a ``DeviceTotal`` ``total``, the reduced value stays on the device: ``total.out`` is returned."""
    n = p.shape[0]
    if n == 0:
        return _empty_total(total)
    key = (loss, w is not None, value_out is not None, grad_out is not None, hess_out is not None,
           bool(reduce), cols is not None)
    kernel = _KERNELS.get(key) or _build(key)
    blocks = _blocks(n)
    partial = _alloc(blocks, np.float64) if reduce else p
    kernel[blocks, TPB, _stream()](
        p, y, p if w is None else w, tuple(map(float, params)) or (0.0,), float(scale),  # (0.0,): no empty tuple
        p if value_out is None else value_out,
        p if grad_out is None else grad_out,
        p if hess_out is None else hess_out,
        partial,
        p if cols is None else cols,
    )
    return _reduced(partial, total) if reduce else 0.0


def multiclass(loss, packed, ignore_index, C, x, labels, q, w, cw, scale, reduce, value_out, grad_out, hess_out,
               nthreads, *, total=None):
    """The multiclass kernel contract on device arrays; ``nthreads`` is ignored; ``total`` as ``elementwise``."""
    R = x.shape[0] // C
    if R == 0:
        return _empty_total(total)
    key = (loss, w is not None, value_out is not None, bool(reduce))
    params = tuple(map(float, packed))
    if loss in BLOCK_ROWS:
        key += (labels is None, cw is not None, grad_out is not None, hess_out is not None, any(params))
        kernel = _KERNELS.get(key) or _build(key)
        blocks, threads, width = _row_launch(R, C)
        partial = _alloc(blocks, np.float64) if reduce else x
        kernel[blocks, threads, _stream()](
            x, _alloc(1, np.int64) if labels is None else labels, x if q is None else q,
            x if w is None else w, x if cw is None else cw, C, width, ignore_index,
            *params, float(scale), x if value_out is None else value_out,
            x if grad_out is None else grad_out, x if hess_out is None else hess_out, partial,
        )
        return _reduced(partial, total) if reduce else 0.0
    kernel = _KERNELS.get(key) or _build(key)
    blocks = _blocks(R)
    partial = _alloc(blocks, np.float64) if reduce else x
    kernel[blocks, TPB, _stream()](
        x, _alloc(1, np.int64) if labels is None else labels, x if q is None else q,
        x if w is None else w, x if cw is None else cw, cw is not None, labels is None, C, ignore_index,
        params, float(scale), x if value_out is None else value_out,
        x if grad_out is None else grad_out, x if hess_out is None else hess_out,
        grad_out is not None, hess_out is not None, partial,
    )
    return _reduced(partial, total) if reduce else 0.0


def _empty_total(total: DeviceTotal | None):
    """The reduced value of nothing: 0.0, or ``total`` written on the device (the sum 0, a mean nan)."""
    if total is None:
        return 0.0
    return _reduced(_alloc(0, np.float64), total)


# --- device helpers for fusedloss._device --------------------------------------------------------------


def is_numba_array(x) -> bool:
    if SIMULATOR:
        return type(x).__name__ == "FakeCUDAArray"
    return cuda.cudadrv.devicearray.is_cuda_ndarray(x)


def as_device_array(x):
    """``x`` as a Numba device array: itself, or a zero-copy view of a CUDA-array-interface object."""
    if is_numba_array(x):
        return x
    if SIMULATOR:
        raise TypeError(f"the CUDA simulator only takes its own device arrays, got {type(x).__name__}")
    return cuda.as_cuda_array(x)


def is_c_contiguous(x) -> bool:
    return x.size <= 1 or x.is_c_contiguous()


def span(x) -> tuple[int, int]:
    """The byte range ``[start, end)`` that the device array ``x`` occupies (for overlap checks)."""
    if SIMULATOR:
        start = x._ary.__array_interface__["data"][0]
    else:
        start = x.__cuda_array_interface__["data"][0] or 0
    return start, start + x.size * x.dtype.itemsize


def read_only(x) -> bool:
    if SIMULATOR:
        return not x._ary.flags.writeable
    return bool(x.__cuda_array_interface__["data"][1])


def to_device(host: np.ndarray):
    return cuda.to_device(host, stream=_stream())


def empty(shape, dtype):
    return _alloc(shape, dtype)


def element(x, i: int):
    """``x[i]`` of a 1-D device array, on the host."""
    return to_host(x[i: i + 1])[0].item()


def device_sum(x) -> float:
    """sum(x) in float64 (per-block partials, added with fsum on the host)."""
    n = x.shape[0]
    if n == 0:
        return 0.0
    blocks = _blocks(n)
    partial = _alloc(blocks, np.float64)
    _sum_kernel[blocks, TPB, _stream()](x, partial)
    return _reduced(partial, None)


def cast(x, dtype):
    """A new 1-D device array: ``x`` converted to ``dtype``."""
    out = _alloc(x.shape[0], dtype)
    if x.shape[0]:
        _copy_kernel[_blocks(x.shape[0]), TPB, _stream()](x, out)
    return out


def expand(src, inner: int, dtype):
    """A new 1-D device array of ``src.size * inner`` elements: each of ``src`` repeated ``inner`` times."""
    out = _alloc(src.shape[0] * inner, dtype)
    if out.shape[0]:
        _expand_kernel[_blocks(out.shape[0]), TPB, _stream()](src, out, inner)
    return out


def _first(kernel, n: int, *args) -> int:
    """Run a first-index kernel over ``n`` items; the index it found, or -1."""
    if n == 0:
        return -1
    first = to_device(np.array([n], dtype=np.int64))
    kernel[_blocks(n), TPB, _stream()](*args, first)
    i = int(to_host(first)[0])
    return -1 if i == n else i


def first_outside(x, lo: float, hi: float) -> int:
    """The smallest index ``i`` with ``x[i] < lo`` or ``x[i] > hi``, or -1 (nan is inside)."""
    return _first(_first_outside_kernel, x.shape[0], x, float(lo), float(hi))


def first_not_sign(x) -> int:
    """The smallest index ``i`` with ``x[i]`` not -1, 0, 1 or nan, or -1."""
    return _first(_first_not_sign_kernel, x.shape[0], x)


def first_bad_label(labels, C: int, ignore: int | None) -> int:
    """The smallest index of a label outside ``[0, C)`` that is not ``ignore`` (if given), or -1."""
    return _first(_first_bad_label_kernel, labels.shape[0], labels, int(C), ignore is not None,
                  0 if ignore is None else int(ignore))


def kept_sum(labels, ignore: int, rw, cw) -> float:
    """sum over rows with ``labels != ignore`` of ``rw[r] * cw[labels[r]]`` (a missing factor is 1)."""
    R = labels.shape[0]
    if R == 0:
        return 0.0
    blocks = _blocks(R)
    partial = _alloc(blocks, np.float64)
    _kept_sum_kernel[blocks, TPB, _stream()](labels, int(ignore), labels if rw is None else rw, rw is not None,
                                             labels if cw is None else cw, cw is not None, partial)
    return _reduced(partial, None)


def unit_hessian(h, C: int, labels, ignore: int, rw, scale: float) -> None:
    """hessian="ones": ``h[i] = rw[i // C] * scale`` (1 for a missing ``rw``), 0 on rows labelled ``ignore``."""
    n = h.shape[0]
    if n == 0:
        return
    _unit_hessian_kernel[_blocks(n), TPB, _stream()](
        h, int(C), h if labels is None else labels, labels is not None, int(ignore),
        h if rw is None else rw, rw is not None, float(scale),
    )


# --- CTC (its own contract, see fusedloss._ctc; the kernel and its design: numba_cuda_ctc) ----------------

from .numba_cuda_ctc import ctc  # noqa: E402,F401

_SUPPORTED["ctc"] = "sequence"


# --- pairwise losses (their own contract, see fusedloss._pairwise): one thread per row -----------------------

from .. import _pairwise_rows  # noqa: E402


def _pairwise_kernel(x1, x2, x3, y, has_y, D, prm, gscale, want_grad, loss_out, g1, g2, g3):
    """Rows grid-strided over the threads; ``row`` is bound to the loss's ``_pairwise_rows.<loss>_row`` compiled
    as a device function (the Numba CPU backend compiles the same one)."""
    for i in range(cuda.grid(1), loss_out.shape[0], cuda.gridsize(1)):
        yi = y[i] if has_y else 0.0
        gn = gscale[i] if want_grad else 0.0
        loss_out[i] = row(x1, x2, x3, i * D, D, yi, prm, gn, want_grad, g1, g2, g3)  # noqa: F821


def _build_pairwise(loss: str):
    kernel = _jit.pairwise_kernel(loss, _pairwise_kernel, __file__, globals(), cuda.jit(device=True),
                                  cuda.jit(cache=True))
    _KERNELS[("pairwise", loss)] = kernel
    return kernel


def pairwise(loss, packed, D, x1, x2, x3, y, gscale, loss_out, g1, g2, g3, nthreads):
    """The pairwise contract on device arrays (``y``, ``gscale`` and ``loss_out`` float64 device arrays)."""
    N = loss_out.shape[0]
    if N == 0:
        return None
    kernel = _KERNELS.get(("pairwise", loss)) or _build_pairwise(loss)
    args = _jit.pairwise_args(packed, D, x1, x2, x3, y, gscale, loss_out, g1, g2, g3, x1, loss_out)
    kernel[_blocks(N), TPB, _stream()](*args)
    return None


_SUPPORTED.update({name: "pairwise" for name in _pairwise_rows.row_names()})


# --- overlap losses (their own contract, see fusedloss._overlap): one thread per block of pixels ----------------

from .. import _overlap_rows  # noqa: E402
from .._spec import REGISTRY  # noqa: E402

OVERLAP_SUMS_PIXELS = 64  # pixels per thread of the sums pass (its partials: one row of C x 3 per thread)


def _overlap_sums_kernel(x, labels, y, has_labels, act, has_ignore, ignore, C, S, nbs, block, nblocks, partial):
    """``_overlap_rows.block_sums`` of blocks grid-strided over the threads."""
    for b in range(cuda.grid(1), nblocks, cuda.gridsize(1)):
        block_sums(x, labels, y, has_labels, act, has_ignore, ignore, C, S, nbs, block, b, partial)  # noqa: F821


def _overlap_grad_kernel(x, labels, y, has_labels, act, has_ignore, ignore, C, S, nbs, block, nblocks, coef, g):
    """``_overlap_rows.block_grad``, one pixel per block, grid-strided over the threads."""
    for b in range(cuda.grid(1), nblocks, cuda.gridsize(1)):
        block_grad(x, labels, y, has_labels, act, has_ignore, ignore, C, S, nbs, block, b, coef, g)  # noqa: F821


def _overlap_kernels():
    kernels = _KERNELS.get("overlap")
    if kernels is None:
        digest = _jit.source_hash(__file__, _overlap_rows.__file__)
        namespace = {**globals(), **_jit.compile_functions(_overlap_rows, cuda.jit(device=True), f"overlap__{digest}")}
        kernels = _KERNELS["overlap"] = tuple(
            cuda.jit(cache=True)(_jit.specialise(fn, namespace, f"{fn.__name__}__{digest}"))
            for fn in (_overlap_sums_kernel, _overlap_grad_kernel))
    return kernels


def _overlap_args(act, x, labels, y, C, S, has_ignore, ignore):
    return (x, _alloc(1, np.int64) if labels is None else labels, x if y is None else y,
            labels is not None, int(act), bool(has_ignore), int(ignore), int(C), int(S))


def overlap_sums(act, x, labels, y, N, C, S, has_ignore, ignore, sums, nthreads):
    """The overlap contract's first pass on device arrays; ``sums`` is a host float64 array (N * C * 3)."""
    nbs = -(-S // OVERLAP_SUMS_PIXELS)
    sums[...] = 0.0
    if N * nbs * C == 0:
        return
    partial = _alloc(N * nbs * C * 3, np.float64)
    args = _overlap_args(act, x, labels, y, C, S, has_ignore, ignore)
    _overlap_kernels()[0][_blocks(N * nbs), TPB, _stream()](*args, nbs, OVERLAP_SUMS_PIXELS, N * nbs, partial)
    part = to_host(partial).reshape(N, nbs, C * 3)
    total = sums.reshape(N, C * 3)
    for k in range(nbs):  # in block order: the same sums for any grid
        total += part[:, k]


def overlap_grad(act, x, labels, y, N, C, S, has_ignore, ignore, coef, grad, nthreads):
    """The overlap contract's gradient pass on device arrays (``coef`` float64, ``grad`` like ``x``)."""
    if N * S * C == 0:
        return
    args = _overlap_args(act, x, labels, y, C, S, has_ignore, ignore)
    _overlap_kernels()[1][_blocks(N * S), TPB, _stream()](*args, S, 1, N * S, coef, grad)


_SUPPORTED.update({name: "overlap" for name, spec in REGISTRY.items() if spec.kind == "overlap"})
