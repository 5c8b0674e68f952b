"""Every kind of loss in the registry reaches the generic tests, or is left out of them on purpose.

The generic tests enumerate the registry through ``conftest.loss_cases``, which collects the losses of each
kind that ``conftest.KINDS`` gives a data generator. A kind that KINDS does not name fails here (it would
otherwise drop out of every generic test without a trace), as does an entry that gives both or neither of a
generator and the reason for leaving the kind out.
"""

from __future__ import annotations

import numpy as np
import pytest

import fusedloss as fl
from fusedloss._spec import REGISTRY

from conftest import KINDS, grads, loss_cases, make_case


def test_every_kind_has_a_generator_or_a_reason():
    kinds = {spec.kind for spec in REGISTRY.values()}
    missing = sorted(kinds - set(KINDS))
    assert not missing, (f"loss kinds {missing} have no entry in tests/conftest.py KINDS: give them a data "
                         "generator (the generic tests then call them) or say why they are not collected")
    for kind, entry in KINDS.items():
        assert (entry.make is None) != (not entry.elsewhere), \
            f"KINDS[{kind!r}] must give exactly one of a generator and a reason for leaving the kind out"


def test_loss_cases_hold_every_loss_of_every_generated_kind():
    names = {c.values[0] for c in loss_cases(variants=False)}
    assert names == {n for n, s in REGISTRY.items() if KINDS[s.kind].make is not None}
    for kind, entry in KINDS.items():
        for name, rows in entry.variants.items():
            assert REGISTRY[name].kind == kind, f"{name} ({REGISTRY[name].kind}) is in the {kind} variant rows"
            for params in rows:
                assert set(params) <= set(REGISTRY[name].param_names), f"{name}: unknown parameter in {params}"


@pytest.mark.parametrize("name,params", loss_cases())
def test_generated_cases_are_calls_the_loss_takes(name, params):
    """Each generator's arrays have the leading shape of the rows and are valid arguments (finite values and
    gradients of the inputs' shapes); rows of the weights' shape."""
    case = make_case(name, params, (5,), np.float64, seed=1)
    assert all(np.shape(a)[:1] == (5,) for a in case.arrays)
    loss = getattr(fl, name)
    w = np.linspace(0.5, 1.5, 5)
    assert np.isfinite(loss(*case.arrays, sample_weight=w, **params))
    if REGISTRY[name].differentiable:
        gs = grads(loss.grad(*case.arrays, sample_weight=w, **params))
        assert len(gs) >= 1 and all(g.shape == a.shape and np.isfinite(g).all() for g, a in zip(gs, case.arrays))
