"""torch agrees with the row rule of test_row_rule.py where torch has the loss and follows it.

cross_entropy (labels, probabilities, label smoothing, class weights) and kl_div_with_logits (torch's kl_div of
log_softmax): rows of all -inf, a NaN logit, a +inf logit and a masked label class, under each reduction, value and
gradient, on every host backend in float64. Where fusedloss departs from torch on purpose (README, "Guarantees"):
an ignored row's gradient is 0 here (torch: NaN when its logits are), and multi_margin's NaN rows are NaN here
(torch skips a NaN, and so does fusedloss.torch.multi_margin_loss: test_torch_conformance.py); those are not
compared.
"""

from __future__ import annotations

import numpy as np
import pytest

import fusedloss as fl

torch = pytest.importorskip("torch")
F = torch.nn.functional

NINF, NAN, INF = -np.inf, np.nan, np.inf
ROWS = {  # C = 4; row 0 the special one, row 1 an ordinary row beside it
    "all -inf": [NINF, NINF, NINF, NINF],
    "nan": [0.5, NAN, -1.0, 2.0],
    "+inf": [0.5, INF, -1.0, 2.0],
    "masked label": [NINF, 0.5, -1.0, 2.0],
}
ORDINARY = [1.0, -0.5, 0.25, 3.0]
CE_OPTIONS = {"plain": {}, "label_smoothing": {"label_smoothing": 0.1},
              "class_weight": {"weight": [0.5, 2.0, 1.0, 1.5]}}


def _torch_ce(x, t, reduction, opts):
    xt = torch.tensor(x, requires_grad=True)
    kw = dict(opts)
    if "weight" in kw:
        kw["weight"] = torch.tensor(kw["weight"], dtype=torch.float64)
    v = F.cross_entropy(xt, torch.tensor(t), reduction=reduction, **kw)
    v.sum().backward()
    return v.detach().numpy(), xt.grad.numpy()


def _ours_ce(x, t, reduction, opts, backend):
    kw = {("class_weight" if k == "weight" else k): (np.array(v) if k == "weight" else v) for k, v in opts.items()}
    v, g = fl.cross_entropy.value_and_grad(x, t, reduction=reduction, backend=backend, **kw)
    return np.asarray(v), g


def _same(ours, theirs, what):
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14, equal_nan=True, err_msg=what)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("option", sorted(CE_OPTIONS))
@pytest.mark.parametrize("form", ["labels", "probabilities"])
@pytest.mark.parametrize("row", sorted(ROWS))
def test_cross_entropy_rows_as_torch(backend, row, form, option, reduction):
    x = np.array([ROWS[row], ORDINARY])
    if form == "labels":
        t = np.array([0, 2])
    else:
        if row == "masked label":
            pytest.skip("a masked class with target mass: inf; without mass torch gives nan (0 * -inf), we 0")
        t = np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.4, 0.1]])
    opts = CE_OPTIONS[option]
    v, g = _ours_ce(x, t, reduction, opts, backend)
    tv, tg = _torch_ce(x, t, reduction, opts)
    _same(v, tv, f"value ({row})")
    _same(g, tg, f"gradient ({row})")


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("row", sorted(r for r in ROWS if r != "masked label"))
def test_kl_div_with_logits_rows_as_torch(backend, row, reduction):
    x = np.array([ROWS[row], ORDINARY])
    q = np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.4, 0.1]])
    v, g = fl.kl_div_with_logits.value_and_grad(x, q, reduction=reduction, backend=backend)
    xt = torch.tensor(x, requires_grad=True)
    per_row = F.kl_div(F.log_softmax(xt, -1), torch.tensor(q), reduction="none").sum(-1)
    tv = {"none": per_row, "sum": per_row.sum(), "mean": per_row.mean()}[reduction]
    tv.sum().backward()
    _same(np.asarray(v), tv.detach().numpy(), f"value ({row})")
    _same(g, xt.grad.numpy(), f"gradient ({row})")
