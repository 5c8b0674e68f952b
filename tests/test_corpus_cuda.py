"""The bad-input corpus (``corpus.py``) on device arrays: a representative subset of its input classes through
the ``cuda`` backend, every numeric array of the call (pred, target, sample_weight, grad_out) on the device.

Run in CI's simulator pass (``NUMBA_ENABLE_CUDASIM=1 pytest -m cuda``), where every CUDA thread is a Python
thread: so few losses (the first of each target form in the registry that the backend supports) and few classes
(``DEVICE_CLASSES``: one of each kind of mistake), in-process. As on the host, each call must raise a clear
exception naming the argument, or give the NumPy backend's result on clean host copies, with no input changed.
"""

from __future__ import annotations

import numpy as np
import pytest

import corpus
import corpus_run
from conftest import backend_skip_reason
from fusedloss._spec import REGISTRY

pytestmark = pytest.mark.cuda

cuda = pytest.importorskip("numba.cuda")
_reason = backend_skip_reason("cuda")
if _reason:
    pytest.skip(_reason, allow_module_level=True)

from fusedloss._validate import is_device_array  # noqa: E402

# one class of each kind: a wrong dtype, shape, reduction and parameter; empty, 0-d and NaN data; targets and
# labels out of their domain (NaN, negative, at C, huge), a huge ignore_index; weights; output buffers
DEVICE_CLASSES = ("ok_float32", "reduction_none", "reduction_bad", "pred_int64", "target_short", "pred_0d",
                  "empty", "pred_nan", "target_out_of_domain", "labels_at_C", "labels_negative", "labels_huge",
                  "labels_float_nan", "ignore_2pow63", "weight_short", "weight_negative", "param_nan",
                  "vector_short", "out_dtype", "out_shape", "out_is_pred")


def _supported(name: str) -> bool:
    module = __import__("sys").modules["fusedloss.backends"].REGISTRY["cuda"].load()
    return module.supports(REGISTRY[name], np.dtype(np.float64))


def _losses() -> list:
    """The first loss the backend supports of each target form: elementwise with a restricted target domain and
    a per-column vector, hard labels (with ignore_index), soft targets."""
    forms = {
        "elementwise": lambda s: (s.kind == "elementwise" and s.target_domain not in ("real", None)
                                  and s.vector_param is not None),
        "hard labels": lambda s: s.kind == "multiclass" and s.hard_labels and s.ignore_param is not None,
        "soft targets": lambda s: s.kind == "multiclass" and not s.hard_labels,
    }
    out = []
    for form, pick in forms.items():
        name = next((n for n, s in REGISTRY.items() if s.builtin and pick(s) and _supported(n)), None)
        assert name is not None, f"no loss of form {form!r} that the cuda backend supports"
        out.append(name)
    return list(dict.fromkeys(out))


def _device(x):
    if isinstance(x, (np.ndarray, np.generic)) and x.dtype.kind in "fiub":
        return cuda.to_device(np.array(x, order="C"))  # (np.ascontiguousarray makes a 0-d array 1-d)
    return x


def _host(x):
    if isinstance(x, tuple):
        return tuple(_host(v) for v in x)
    return x.copy_to_host() if is_device_array(x) else x


@pytest.mark.parametrize("cls", DEVICE_CLASSES)
@pytest.mark.parametrize("name", _losses())
def test_bad_input_on_device(name, cls):
    spec = REGISTRY[name]
    kinds = corpus.CLASSES[cls][1]
    entry = "value_and_grad" if spec.differentiable else "call"
    calls = corpus.calls(corpus.Case(name, entry, "cuda", cls)) if spec.kind in kinds else []
    if not calls:
        pytest.skip(f"class {cls} does not apply to {name}")
    case = corpus.Case(name, entry, "cuda", cls)
    for call in calls:
        if call.in_place:  # grad_out=pred: the same device array for both
            pred = _device(call.pred)
            dev = corpus.with_(call, pred=pred, kw={"grad_out": pred})
        else:
            dev = corpus.with_(call, pred=_device(call.pred), target=_device(call.target),
                               kw={k: _device(v) if k in ("sample_weight", "grad_out") else v
                                   for k, v in call.kw.items()})
        inputs = [a for a in (dev.target, dev.kw.get("sample_weight")) if is_device_array(a)]
        if not dev.in_place and is_device_array(dev.pred):
            inputs.append(dev.pred)
        before = [a.copy_to_host().tobytes() for a in inputs]
        try:
            with np.errstate(all="ignore"):
                got = _host(corpus_run._invoke(case, dev, "cuda"))
        except Exception as exc:  # noqa: BLE001 - classified below
            assert [a.copy_to_host().tobytes() for a in inputs] == before, f"{cls}: an input changed ({exc!r})"
            assert call.expect != "value", f"{cls}: {type(exc).__name__}: {exc} where a value is due"
            problem = corpus_run._clear(exc, call.names, case, call.also)
            assert problem is None, f"{cls}: {problem}: {type(exc).__name__}: {exc}"
            continue
        assert [a.copy_to_host().tobytes() for a in inputs] == before, f"{cls}: an input changed"
        assert call.expect != "raise", f"{cls}: returned {got} where an error naming {call.names} is due"
        with np.errstate(all="ignore"):
            want = corpus_run._invoke(case, corpus_run.cleaned(call), "numpy")
        single = getattr(call.pred, "dtype", None) == np.float32
        problem = corpus_run._differ(corpus_run._arrays(got), corpus_run._arrays(want), single)
        assert problem is None, f"{cls}: {problem}"
