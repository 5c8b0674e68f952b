"""NumPy reference for Connectionist Temporal Classification (CTC): the oracle of every CTC backend.

Written for clarity, in float64, sequence by sequence, with the textbook log-space forward-backward
recursions (Graves et al. 2006). Nothing here is tuned.

Notation: a sequence has ``T`` frames of ``C`` scores; its target ``l`` has ``S`` labels (none of them
the blank ``b``); the extended target ``l'`` of length ``L = 2 S + 1`` puts a blank before, between and
after the labels (``l'_s = b`` for even ``s``, ``l'_s = l_{(s-1)/2}`` for odd ``s``). ``lp[t, k]`` is the
log-probability of class ``k`` at frame ``t``: ``log_softmax(x[t])[k]`` for ``inputs="logits"``, the input
itself for ``inputs="log_probs"``.

- ``alpha[t, s]``: log-probability of the frames ``0..t`` ending in state ``s`` at ``t`` (emission at ``t``
  included); ``alpha[t, s] = lp[t, l'_s] + logsumexp(alpha[t-1, s], alpha[t-1, s-1], alpha[t-1, s-2])``,
  the last term only when ``l'_s`` is not blank and differs from ``l'_{s-2}``.
- ``beta[t, s]``: log-probability of the frames ``t+1..T-1`` given state ``s`` at ``t`` (emission at ``t``
  excluded); the mirror image of ``alpha``.
- loss ``= -logsumexp(alpha[T-1, L-1], alpha[T-1, L-2])`` (``-alpha[T-1, 0]`` when ``S = 0``); it is ``inf``
  when ``T`` is shorter than ``S`` plus the number of repeated neighbours in ``l`` (no alignment exists).
- occupancy ``gamma[t, k] = sum_{s: l'_s = k} exp(alpha[t, s] + beta[t, s] + loss)``: the posterior
  probability that frame ``t`` emits ``k``; ``sum_k gamma[t, k] = 1``.
- gradient (both input kinds): ``exp(lp[t, k]) - gamma[t, k]`` for ``t < T``, 0 on padding frames. For
  logits it is the exact derivative of the loss with respect to the scores (softmax - occupancy). For
  log-probabilities it is what PyTorch's ctc_loss returns; the exact derivative with respect to
  independent log-probabilities is ``-gamma``, and the two agree once they pass back through a
  log_softmax (whose Jacobian removes the ``exp(lp)`` term because each row of gamma sums to 1).
"""

from __future__ import annotations

import numpy as np


def _lse(*terms):
    """logsumexp of arrays of one shape, -inf where every term is -inf."""
    stacked = np.stack(terms)
    m = np.max(stacked, axis=0)
    safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.sum(np.exp(stacked - safe), axis=0))


def _shift(a, k):
    """``a`` moved ``k`` places to the right (k > 0) or left (k < 0), filled with -inf."""
    out = np.full_like(a, -np.inf)
    if k > 0:
        out[k:] = a[:-k] if k < a.size else a[:0]
    else:
        out[:k] = a[-k:] if -k < a.size else a[:0]
    return out


def log_softmax(x):
    """Row-wise log-softmax over the last axis, float64."""
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=-1, keepdims=True)
    return x - (m + np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True)))


def min_frames(labels) -> int:
    """The fewest frames that can emit ``labels``: one per label, plus a blank between equal neighbours."""
    labels = np.asarray(labels)
    return int(labels.size + np.count_nonzero(labels[1:] == labels[:-1]))


def ctc_sequence(lp, labels, blank):
    """(loss, gamma) of one sequence: ``lp`` (T, C) log-probabilities, ``labels`` its S labels.

    ``gamma`` is the (T, C) occupancy (zeros when the loss is infinite).
    """
    lp = np.asarray(lp, dtype=np.float64)
    T, C = lp.shape
    labels = np.asarray(labels, dtype=np.int64)
    S = labels.size
    L = 2 * S + 1
    ext = np.full(L, blank, dtype=np.int64)
    ext[1::2] = labels
    # skip[s]: the transition s-2 -> s is allowed (l'_s a label that differs from the label before it)
    skip = np.zeros(L, dtype=bool)
    skip[3::2] = labels[1:] != labels[:-1]
    gamma = np.zeros((T, C))
    if T == 0:
        return (0.0 if S == 0 else np.inf), gamma
    if T < min_frames(labels):
        return np.inf, gamma
    ninf = -np.inf

    alpha = np.full((T, L), ninf)
    alpha[0, 0] = lp[0, ext[0]]
    if L > 1:
        alpha[0, 1] = lp[0, ext[1]]
    for t in range(1, T):
        prev = alpha[t - 1]
        stay = prev
        step = _shift(prev, 1)
        jump = np.where(skip, _shift(prev, 2), ninf)
        alpha[t] = _lse(stay, step, jump) + lp[t, ext]

    beta = np.full((T, L), ninf)
    beta[T - 1, L - 1] = 0.0
    if L > 1:
        beta[T - 1, L - 2] = 0.0
    for t in range(T - 2, -1, -1):
        nxt = beta[t + 1] + lp[t + 1, ext]  # state s at t+1, its emission included
        stay = nxt
        step = _shift(nxt, -1)
        # s -> s+2 is allowed when skip[s+2]
        jump = np.where(_shift(skip.astype(np.float64), -2) == 1.0, _shift(nxt, -2), ninf)
        beta[t] = _lse(stay, step, jump)

    log_like = _lse(alpha[T - 1, L - 1], alpha[T - 1, L - 2]) if L > 1 else alpha[T - 1, 0]
    loss = -float(log_like)
    if loss == np.inf:
        return np.inf, gamma
    if not np.isfinite(loss):  # a NaN score, or a log-probability of +inf (loss -inf): NaN loss and gradient, as torch
        return np.nan, np.full((T, C), np.nan)
    post = np.exp(alpha + beta + loss)  # (T, L): posterior of each state at each frame
    for s in range(L):
        gamma[:, ext[s]] += post[:, s]
    return loss, gamma


def ctc(x, targets, input_lengths, target_lengths, *, blank=0, inputs="logits", zero_infinity=False,
        batch_first=False):
    """Per-sequence losses (N,) and per-sequence gradients (x's shape, unscaled), all float64.

    ``targets``: padded (N, S_max) or concatenated 1-D. The gradient of sequence ``n`` is that of its own
    loss (no reduction); zero on frames ``t >= input_lengths[n]``. An infinite loss gives loss 0 and a zero
    gradient with ``zero_infinity``, else ``inf`` and NaN on the sequence's frames (as PyTorch).
    """
    x = np.asarray(x, dtype=np.float64)
    xt = np.swapaxes(x, 0, 1) if batch_first else x  # (T, N, C) view
    T, N, C = xt.shape
    targets = np.asarray(targets)
    input_lengths = np.asarray(input_lengths, dtype=np.int64).reshape(-1)
    target_lengths = np.asarray(target_lengths, dtype=np.int64).reshape(-1)
    offsets = np.concatenate(([0], np.cumsum(target_lengths)[:-1])).astype(np.int64)
    losses = np.zeros(N)
    grad = np.zeros((T, N, C))
    for n in range(N):
        Tn, Sn = int(input_lengths[n]), int(target_lengths[n])
        labels = targets[n, :Sn] if targets.ndim == 2 else targets[offsets[n]:offsets[n] + Sn]
        lp = xt[:Tn, n] if inputs == "log_probs" else log_softmax(xt[:Tn, n])
        loss, gamma = ctc_sequence(lp, labels, blank)
        if np.isinf(loss):
            losses[n] = 0.0 if zero_infinity else np.inf
            grad[:Tn, n] = 0.0 if zero_infinity else np.nan
            continue
        losses[n] = loss
        grad[:Tn, n] = np.exp(lp) - gamma
    return losses, (np.swapaxes(grad, 0, 1) if batch_first else grad)


def reduce_ctc(x, targets, input_lengths, target_lengths, *, reduction="mean", sample_weight=None, **params):
    """(value, gradient) of the reduced loss, as the public API documents.

    "none": ``w_n loss_n`` per sequence; "sum": ``sum_n w_n loss_n``; "mean":
    ``sum_n w_n loss_n / max(S_n, 1) / sum_n w_n`` (PyTorch's when unweighted: each loss over its target
    length, then the mean over the batch).
    """
    losses, grad = ctc(x, targets, input_lengths, target_lengths, **params)
    N = losses.size
    w = np.ones(N) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    coef = w.copy()
    if reduction == "mean":
        coef = coef / np.maximum(np.asarray(target_lengths).reshape(-1), 1) / np.sum(w)
    seq_axis = 0 if params.get("batch_first") else 1
    shape = [1, 1, 1]
    shape[seq_axis] = N
    with np.errstate(invalid="ignore"):
        g = grad * coef.reshape(shape)
        if reduction == "none":
            return w * losses, g
        return float(np.sum(coef * losses)), g
