"""Runs the bad-input corpus (``corpus.py``) in child processes and classifies every case.

A child reads case ids on stdin, and for each prints ``start <id>`` before the call and ``done <json>`` after
it, flushing each line. The parent watches: a child that dies (a signal: segfault, abort) or stays silent
longer than the per-case timeout leaves one case started and not done: that case is the crash or the hang,
and a fresh child goes on with the cases after it.

    python tests/corpus_run.py [--quick] [--backend cpp,numba,numpy] [--jobs 2] [--show garbage,unclear]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import re
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))


# --- in the child ----------------------------------------------------------------------------------------------


def _roots(call) -> list:
    """The arrays owning the memory of every input of a call (outputs excluded): their bytes must not change."""
    import numpy as np

    arrays = [call.pred, call.target, *call.extra]
    arrays += [v for k, v in call.kw.items() if k not in ("grad_out", "hess_out")]
    roots = {}
    for a in arrays:
        if not isinstance(a, np.ndarray):
            continue
        while isinstance(a.base, np.ndarray):
            a = a.base
        if a.nbytes <= 1 << 26:
            roots[id(a)] = a
    return list(roots.values())


class NotApplicable(Exception):
    """An argument of the case has no form for this entry point (an object array as a torch tensor)."""


def cleaned(call):
    """The call on clean copies of its inputs, without output buffers: the reference's arguments."""
    from dataclasses import replace

    from corpus import clean

    kw = {k: clean(v) for k, v in call.kw.items() if k not in ("grad_out", "hess_out")}
    return replace(call, pred=clean(call.pred), target=clean(call.target), extra=tuple(map(clean, call.extra)),
                   kw=kw)


def _invoke(case, call, backend):
    import numpy as np
    from corpus import TORCH

    import fusedloss as fl

    loss = getattr(fl, case.loss)
    pred, target, extra, kw = call.pred, call.target, call.extra, dict(call.kw)
    entry = case.entry
    if entry in ("call", "value_and_grad", "grad", "grad_hess", "partial"):
        fn = loss if entry == "call" else getattr(loss, entry)
        return fn(pred, target, *extra, backend=backend, **kw)
    if entry in TORCH:
        import torch

        def tensor(x):
            if isinstance(x, np.generic):
                return x.item()
            if not isinstance(x, np.ndarray):
                return x
            try:
                return torch.from_numpy(x)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise NotApplicable(str(exc)) from None

        x = tensor(pred)
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            x = x.requires_grad_(REGISTRY_DIFF[case.loss])
        t = tensor(target)
        if call.target_grad and isinstance(t, torch.Tensor) and t.is_floating_point():
            t = t.requires_grad_(True)
        kw = {k: tensor(v) for k, v in kw.items()}
        value = _torch_call(case, x, t, tuple(map(tensor, extra)), kw, backend)
        out = [value.detach().numpy().copy()]
        if isinstance(x, torch.Tensor) and x.requires_grad:
            value.sum().backward()
            out.append(x.grad.numpy().copy())
        return tuple(out)
    if entry == "dask":
        return _dask_call(case, call, backend)
    if entry in ("boosting", "objective"):
        import fusedloss.boosting as fb

        weight = kw.pop("sample_weight", None)
        if entry == "boosting":
            return fb.gradient_hessian(case.loss, target, pred, weight, backend=backend, **kw)
        objective = fb.xgboost_objective(case.loss, api="sklearn", backend=backend, **kw)
        g, h = objective(target, pred, weight)
        return g.copy(), h.copy()  # (the objective's buffers are reused by its next call)
    raise AssertionError(entry)


REGISTRY_DIFF: dict = {}


def dask_chunks(shape: tuple, first: int, multiclass: bool = False):
    """Chunks of an array of ``shape`` for the dask entry: the first axis split after ``first`` elements, and
    the logits' class axis after two (a split that fusedloss.dask must undo); one chunk where that is empty."""
    if not shape or shape[0] <= first:
        return shape
    chunks = [(first, shape[0] - first), *shape[1:]]
    if multiclass and len(shape) > 1 and shape[-1] > 2:
        chunks[-1] = (2, shape[-1] - 2)
    return tuple(chunks)


def _dask_call(case, call, backend: str, in_memory: bool = False):
    """``fusedloss.dask``: pred chunked after its first row, target after its second (so that their chunks
    differ and the labels at index 1 sit in pred's second chunk), weights whole; ``in_memory``: the same call of
    the in-memory API (the oracle)."""
    import dask
    import dask.array as da
    import numpy as np

    import fusedloss as fl
    import fusedloss.dask as fld
    from fusedloss._spec import REGISTRY

    spec = REGISTRY[case.loss]
    mode = "value_and_grad" if spec.differentiable else "__call__"
    if in_memory:
        return getattr(getattr(fl, case.loss), mode)(call.pred, call.target, *call.extra, backend=backend,
                                                     **call.kw)

    def lift(x, first, multiclass=False):
        if not isinstance(x, np.ndarray):
            return x
        return da.from_array(x, chunks=dask_chunks(x.shape, first, multiclass), asarray=False)

    multiclass = spec.kind == "multiclass"
    kw = dict(call.kw)
    if isinstance(kw.get("sample_weight"), np.ndarray):
        kw["sample_weight"] = lift(kw["sample_weight"], 1 << 62)
    if spec.kind == "sequence":  # the scores (T, N, C) split after the first sequence and the second class
        x = call.pred
        if isinstance(x, np.ndarray) and x.ndim == 3:
            x = da.from_array(x, chunks=(x.shape[0], *dask_chunks(x.shape[1:], 1, True)), asarray=False)
        out = getattr(getattr(fld, case.loss), mode)(x, lift(call.target, 1), *call.extra, backend=backend, **kw)
    else:
        out = getattr(getattr(fld, case.loss), mode)(lift(call.pred, 1, multiclass), lift(call.target, 2),
                                                     backend=backend, **kw)
    return dask.compute(*out, scheduler="sync") if isinstance(out, tuple) else out.compute(scheduler="sync")


def torch_arguments(name: str, entry: str) -> dict:
    """Where each argument of the corpus's calls (fusedloss's names: ``reduction``, ``sample_weight``, the
    registry's parameters) goes in the torch form of loss ``name``: its functional form (``torch_named``) or the
    ``__init__`` of its module (``torch_module``), read from their signatures. A name the form has is passed as
    it is; the per-class vector of a multiclass loss is torch's ``weight``, and so is ``sample_weight`` for an
    elementwise loss whose form takes torch's elementwise ``weight``. Names without a place are left out (the
    call has no form there)."""
    import inspect

    from corpus import ROUTED
    from fusedloss._spec import REGISTRY
    from fusedloss.torch import FUNCTIONAL, MODULES

    spec = REGISTRY[name]
    entry = ROUTED.get(entry, entry)
    form = FUNCTIONAL[name] if entry == "torch_named" else MODULES[name].__init__
    takes = set(inspect.signature(form).parameters) - {"self", "input", "target", "backend"}
    out = {}
    for k in ("reduction", "sample_weight", *spec.param_names):
        if k in takes:
            out[k] = k
        elif k == spec.vector_param and spec.kind == "multiclass" and "weight" in takes:
            out[k] = "weight"
        elif k == "sample_weight" and spec.kind == "elementwise" and "weight" in takes:
            out[k] = "weight"
    return out


# whether the last call of a torch form ran torch's own function (fusedloss.torch's routing, asked before the call)
ROUTE = [False]


def _torch_call(case, x, t, extra: tuple, kw: dict, backend: str):
    """The torch entry point of a case (``extra``: a sequence loss's lengths); ``backend="torch"`` calls torch's own
    function instead (the oracle of a form named after torch's; NotApplicable where torch has no such loss or takes
    none of these arguments). The routed entries leave out ``backend=``: the case's backend is the context's."""
    from corpus import ROUTED

    if case.entry == "torch":
        from fusedloss.torch import functional as F

        return F.loss(case.loss, x, t, backend=backend, **kw)
    if case.entry in ROUTED and backend not in ("torch", None):
        import fusedloss as fl

        with fl.use_backend(backend):
            return _torch_call(case, x, t, extra, kw, None)
    names = torch_arguments(case.loss, case.entry)
    missing = sorted(set(kw) - set(names))
    if missing:
        raise NotApplicable(f"{case.entry} of {case.loss} takes no {missing}")
    kw = {names[k]: v for k, v in kw.items()}
    if backend == "torch":
        import inspect

        import torch
        from fusedloss._spec import REGISTRY

        twin = REGISTRY[case.loss].torch_name
        fn = getattr(torch.nn.functional, twin, None) if twin else None
        if fn is None or set(kw) - set(inspect.signature(fn).parameters):
            raise NotApplicable(f"torch has no {case.loss} that takes {sorted(kw)}")
        return fn(x, t, *extra, **kw)
    from fusedloss.torch._routing import routes_to_torch

    pinned = {} if backend is None else {"backend": backend}
    if ROUTED.get(case.entry, case.entry) == "torch_named":
        from fusedloss.torch import FUNCTIONAL

        form = FUNCTIONAL[case.loss]
        ROUTE[0] = routes_to_torch(form, x, t, *extra, **pinned, **kw)
        return form(x, t, *extra, **pinned, **kw)
    from fusedloss.torch import MODULES

    form = MODULES[case.loss](**pinned, **kw)
    ROUTE[0] = routes_to_torch(form, x, t, *extra)
    return form(x, t, *extra)


def _plain(call, data_as_torch: bool = False) -> bool:
    """Whether torch's own loss is an oracle for these inputs: non-empty, finite and far from overflow (torch's
    losses let NaN through a max, overflow in sums of large weights and leave an empty multi_margin_loss
    uninitialised, where the registry's reference has the rule). ``data_as_torch``: the form follows torch on
    non-finite data (``nonfinite_as_torch``), so only the other arguments need be plain."""
    import numpy as np

    arrays = [*call.extra, *call.kw.values()] + ([] if data_as_torch else [call.pred, call.target])
    arrays = [np.asarray(a) for a in arrays if isinstance(a, np.ndarray) and a.dtype.kind in "fc"]
    return np.size(call.pred) > 0 and all(np.isfinite(a).all() and (np.abs(a) < 1e30).all() for a in arrays)


def _data_as_torch(loss: str) -> bool:
    """Whether the forms named after torch's of ``loss`` give torch's results on NaN and inf data."""
    from fusedloss.torch import FUNCTIONAL

    return getattr(FUNCTIONAL[loss], "nonfinite_as_torch", False)


def _oracle(case, ref):
    """(what a passing call returns, whether torch computed it): torch's own function where the entry is a form
    named after it and torch takes the clean, plain inputs, else the NumPy backend through the same entry."""
    from dataclasses import replace

    import numpy as np
    from corpus import ROUTED

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            if case.entry == "dask":
                return _dask_call(case, ref, "numpy", in_memory=True), False
            if case.entry in ("torch_named", "torch_module", *ROUTED) and _plain(ref, _data_as_torch(case.loss)):
                try:
                    return _invoke(case, ref, "torch"), True
                except Exception:  # noqa: BLE001 - torch refuses these inputs: the reference decides
                    pass
            # a routed entry's reference: its form on the NumPy backend (not routed to torch)
            case = replace(case, entry=ROUTED.get(case.entry, case.entry))
            return _invoke(case, ref, "numpy"), False


def _routed_oracle(case, call):
    """The result of torch's own function on a routed call's inputs as given (the oracle of a call that
    fusedloss.torch handed to torch, whatever torch's rules for NaN, inf and target domains are: bit for bit, so
    in the same layout, on which the order of torch's sums depends), or None where torch refuses them (the call
    then runs the fused form, judged as any other)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _invoke(case, call, "torch")
        except Exception:  # noqa: BLE001 - _routing.REFUSED
            return None


def _arrays(result) -> list:
    import numpy as np
    from fusedloss import LossState

    if isinstance(result, LossState):
        return [np.array([result.sum, result.denominator, result.count], np.float64)]
    if isinstance(result, tuple):
        return [a for r in result for a in _arrays(r)]
    return [np.asarray(result, dtype=np.float64)]


def _differ(got: list, want: list, single: bool, half: bool = False, exact: bool = False) -> str | None:
    import numpy as np

    if len(got) != len(want):
        return f"{len(got)} results, the reference gives {len(want)}"
    rtol, atol = (0.0, 0.0) if exact else (2e-3, 2e-3) if half else (1e-4, 1e-5) if single else (1e-9, 1e-12)
    for i, (a, e) in enumerate(zip(got, want)):
        if a.shape != e.shape:
            return f"result {i}: shape {a.shape}, the reference's {e.shape}"
        nan_a, nan_e = np.isnan(a), np.isnan(e)
        if not np.array_equal(nan_a, nan_e):
            return f"result {i}: NaN at {np.argwhere(nan_a != nan_e)[:3].tolist()}: {a.ravel()[:6]} vs {e.ravel()[:6]}"
        inf = np.isinf(a) | np.isinf(e)
        if not np.array_equal(a[inf], e[inf]):
            return f"result {i}: infinities differ: {a.ravel()[:6]} vs {e.ravel()[:6]}"
        fin = ~(nan_e | inf)
        scale = 1.0 + (float(np.max(np.abs(e[fin]))) if fin.any() else 0.0)
        bad = np.abs(a[fin] - e[fin]) > rtol * np.abs(e[fin]) + atol * scale
        if bad.any():
            return f"result {i}: {a.ravel()[:6]} vs the reference {e.ravel()[:6]}"
    return None


_FOREIGN = re.compile(r"incompatible function arguments|No implementation of function|Cannot determine Numba type|"
                      r"TypingError|Unable to allocate")


def _clear(exc, names: tuple, case, also: tuple = ()) -> str | None:
    """None when the exception is a clear one, else what is wrong with it."""
    from fusedloss._dispatch import LossMemoryError

    msg = str(exc)
    kind = type(exc)
    if isinstance(exc, MemoryError):
        if not isinstance(exc, LossMemoryError):
            return f"a bare {kind.__name__}"
    elif not isinstance(exc, (ValueError, TypeError, IndexError)) and kind.__name__ not in also:
        return f"{kind.__module__}.{kind.__name__}"
    if kind.__module__.partition(".")[0] in ("numba", "torch") or _FOREIGN.search(msg):
        return f"an error from inside a backend ({kind.__module__}.{kind.__name__})"
    from corpus import SYNONYMS, TORCH_TYPED
    from fusedloss._spec import REGISTRY

    if isinstance(exc, ValueError) and case.entry in TORCH_TYPED and REGISTRY[case.loss].torch_name:
        from fusedloss.torch import ArgumentError

        if not isinstance(exc, ArgumentError):  # torch's type (RuntimeError) would not catch it
            return f"a {kind.__name__} from a form named after torch's, not fusedloss.torch.ArgumentError"

    words = [w for n in names for w in SYNONYMS.get(n, (n,))]
    if words and not any(re.search(rf"(?<![A-Za-z0-9]){re.escape(w)}(?![A-Za-z0-9])", msg, re.I) for w in words):
        return f"the message names none of {names}"
    return None


def run_one(case) -> dict:
    import numpy as np
    from corpus import ROUTED, calls

    out = {"id": case.id, "outcome": "correct", "detail": ""}
    try:
        todo = calls(case)
    except Exception as exc:  # a broken class definition: report it, do not hide it
        return {**out, "outcome": "unclear", "detail": f"building the case failed: {exc!r}"}
    if not todo:
        return {**out, "outcome": "skip", "detail": "does not apply"}
    outcomes = []
    for call in todo:
        single = getattr(call.pred, "dtype", None) in (np.float32, np.float16)
        ref = cleaned(call) if call.expect != "raise" else None
        roots = _roots(call)
        before = [r.tobytes() for r in roots]
        pred_root = roots[0] if roots and isinstance(call.pred, np.ndarray) else None
        ROUTE[0] = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with np.errstate(all="ignore"):
                    result = _invoke(case, call, case.backend)
            raised = None
        except NotApplicable as exc:
            outcomes.append(("skip", f"no {case.entry} form: {exc}"))
            continue
        except Exception as exc:  # noqa: BLE001 - classified below
            raised = exc
        changed = [i for i, (r, b) in enumerate(zip(roots, before))
                   if r.tobytes() != b and not (call.in_place and raised is None and r is pred_root)]
        if changed:
            outcomes.append(("modified", f"input {changed} changed" + (f" (raised {raised!r})" if raised else "")))
            continue
        by_route = _routed_oracle(case, call) if ROUTE[0] else None
        if by_route is not None:  # torch's function ran and returned: its result is the call's, bit for bit
            if raised is not None:
                outcomes.append(("refused", f"{type(raised).__name__}: {str(raised)[:300]} where torch's function "
                                            "returns a value"))
                continue
            problem = _differ(_arrays(result), _arrays(by_route), True, exact=True)
            outcomes.append(("garbage", f"routed to torch: {problem}") if problem else ("correct", ""))
            continue
        if raised is not None:
            from fusedloss import BackendUnavailable

            if isinstance(raised, BackendUnavailable) and "not available" in str(raised):
                outcomes.append(("skip", str(raised)[:200]))
                continue
            text = f"{type(raised).__name__}: {str(raised)[:300]}"
            if call.expect == "value":
                outcomes.append(("refused", text))
                continue
            names = call.names
            if case.entry in ("torch_named", "torch_module", *ROUTED):  # the form's word for each argument too
                mapped = torch_arguments(case.loss, case.entry)
                names = names + tuple(mapped[n] for n in names if n in mapped)
            problem = _clear(raised, names, case, call.also)
            outcomes.append(("unclear", f"{problem}: {text}") if problem else ("clear", text))
            continue
        if call.expect == "raise" and case.entry in ROUTED:
            # a form named after torch's runs torch's function on what the fused form refuses and torch takes
            # (fusedloss.torch._twin): then the result is torch's, bit for bit
            by_torch_instead = _routed_oracle(case, call)
            if by_torch_instead is not None:
                problem = _differ(_arrays(result), _arrays(by_torch_instead), True, exact=True)
                outcomes.append(("garbage", f"torch's function instead: {problem}") if problem else ("correct", ""))
                continue
        if call.expect == "raise":
            outcomes.append(("garbage", f"returned {str(result)[:200]} where an error naming {call.names} is due"))
            continue
        try:
            want, by_torch = _oracle(case, ref)
        except Exception as exc:  # noqa: BLE001
            outcomes.append(("garbage", f"returned a value; the reference raises {type(exc).__name__}: {exc}"[:300]))
            continue
        got_arrays, want_arrays = _arrays(result), _arrays(want)
        g = call.kw.get("grad_out")
        if isinstance(g, np.ndarray) and case.entry in ("value_and_grad", "grad", "grad_hess"):
            got_arrays.append(np.asarray(g, dtype=np.float64))  # the output holds the gradient it returned
            want_arrays.append(_arrays(want)[1 if case.entry == "value_and_grad" else 0])
        half = False
        if by_torch:  # torch computes in the inputs' own dtypes (a float32 target, an integer weight in float32)
            kinds = {a.dtype for a in (call.pred, call.target, *call.kw.values()) if isinstance(a, np.ndarray)}
            single = single or len(kinds) > 1
            half = np.dtype(np.float16) in kinds
        problem = _differ(got_arrays, want_arrays, single, half)
        outcomes.append(("garbage", problem) if problem else ("correct", ""))
    worst = next((o for o in outcomes if o[0] in ("modified", "garbage", "refused", "unclear", "crash")), None)
    worst = worst or next((o for o in outcomes if o[0] != "skip"), outcomes[0])
    from corpus import FAIL, KNOWN, KNOWN_CLASSES

    if worst[0] in FAIL and (case.id in KNOWN or (case.entry, case.cls) in KNOWN_CLASSES):
        worst = ("known", worst[1])
    return {**out, "outcome": worst[0], "detail": worst[1]}


def child() -> None:
    sys.path.insert(0, HERE)
    import corpus
    from fusedloss._spec import REGISTRY

    REGISTRY_DIFF.update({n: s.differentiable for n, s in REGISTRY.items()})
    by_id = {}
    for line in sys.stdin:
        cid = line.strip()
        if not cid:
            continue
        loss, entry, backend, cname = cid.split("/")
        case = corpus.Case(loss, entry, backend, cname)
        print("start", cid, flush=True)
        by_id[cid] = run_one(case)
        print("done", json.dumps(by_id[cid]), flush=True)


# --- in the parent ---------------------------------------------------------------------------------------------


def _child_command():
    return [sys.executable, os.path.abspath(__file__), "--child"]


def child_env(env=None) -> dict:
    """A child's environment: ``env`` (default: this process's) with the entries of PYTHONPATH made absolute. The
    child runs in tests/, where a relative entry (``PYTHONPATH=src``) names another directory, and the child would
    then import the installed fusedloss instead of the one under test."""
    env = dict(os.environ if env is None else env)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) if p else p
                                            for p in env["PYTHONPATH"].split(os.pathsep))
    return env


def run_batch(ids: list, timeout: float = 60.0, env=None) -> list:
    """Run ``ids`` in child processes (a new one after each crash or hang); one result per id, in order."""
    results = {}
    todo = list(ids)
    env = child_env(env)
    while todo:
        proc = subprocess.Popen(_child_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=HERE)
        lines: queue.Queue = queue.Queue()
        errs: list = []
        # each reader bound to its own child's pipe and queue: a killed child's reader that reaches its end late
        # must not put its None into the next child's queue (read as "exited before its first case")
        threading.Thread(target=lambda out=proc.stdout, q=lines: [q.put(x) for x in out] + [q.put(None)],
                         daemon=True).start()
        threading.Thread(target=lambda err=proc.stderr, e=errs: e.extend(err), daemon=True).start()
        proc.stdin.write("".join(i + "\n" for i in todo))
        proc.stdin.close()
        current = None
        while True:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                proc.kill()
                proc.wait()
                if current is None:
                    raise RuntimeError("corpus child stayed silent before its first case:\n" + "".join(errs[-20:]))
                results[current] = {"id": current, "outcome": "hang", "detail": f"no answer in {timeout:.0f} s"}
                break
            if line is None:
                rc = proc.wait()
                if current is not None:
                    tail = "".join(errs[-5:])[-500:]
                    results[current] = {"id": current, "outcome": "crash", "detail": f"exit status {rc}: {tail}"}
                elif len(results) < len(ids) and not any(i in results for i in todo):
                    raise RuntimeError(f"corpus child exited ({rc}) before its first case:\n" + "".join(errs[-20:]))
                break
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "start":
                current = rest
            elif kind == "done":
                r = json.loads(rest)
                results[r["id"]] = r
                current = None
        todo = [i for i in todo if i not in results]
    return [results[i] for i in ids]


def run(ids: list, jobs: int = 2, timeout: float = 60.0) -> list:
    """``run_batch`` over ``jobs`` children at once (the ids dealt out in contiguous slices)."""
    if jobs <= 1 or len(ids) < 2 * jobs:
        return run_batch(ids, timeout)
    size = math.ceil(len(ids) / jobs)
    slices = [ids[k:k + size] for k in range(0, len(ids), size)]
    out: list = [None] * len(slices)
    threads = [threading.Thread(target=lambda k=k: out.__setitem__(k, run_batch(slices[k], timeout)))
               for k in range(len(slices))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return [r for part in out for r in part]


def summary(results: list) -> str:
    counts = Counter(r["outcome"] for r in results)
    return ", ".join(f"{k} {counts[k]}" for k in sorted(counts, key=lambda k: -counts[k]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="the selection tests/test_corpus.py runs")
    ap.add_argument("--backend", default="cpp,numba,numpy")
    ap.add_argument("--loss", default="", help="comma-separated losses (default: all)")
    ap.add_argument("--cls", default="", help="comma-separated classes (default: all)")
    ap.add_argument("--entry", default="", help="comma-separated entry points (default: all)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--show", default=",".join(("unclear", "refused", "garbage", "modified", "crash", "hang")))
    ap.add_argument("--json", help="write every result to this file")
    args = ap.parse_args(argv)
    if args.child:
        child()
        return 0
    sys.path.insert(0, HERE)
    import corpus

    backends = args.backend.split(",")
    sel = [c for c in corpus.cases("quick" if args.quick else "full") if c.backend in backends
           and (not args.loss or c.loss in args.loss.split(",")) and (not args.cls or c.cls in args.cls.split(","))
           and (not args.entry or c.entry in args.entry.split(","))]
    start = time.perf_counter()
    results = run([c.id for c in sel], args.jobs, args.timeout)
    took = time.perf_counter() - start
    show = set(args.show.split(","))
    for r in results:
        if r["outcome"] in show:
            print(f"{r['outcome']:9s} {r['id']}: {' '.join(r['detail'].split())[:240]}")
    print(f"{len(results)} cases in {took:.1f} s: {summary(results)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=0)
    return int(any(r["outcome"] in corpus.FAIL for r in results))


if __name__ == "__main__":
    sys.exit(main())
