"""The bad-input corpus (``corpus.py``): every public entry point x host backend x hostile input class, run in
child processes (``corpus_run.py``) so that a crash or a hang fails a case instead of killing pytest.

Every case must end ``clear`` (a ValueError, TypeError or IndexError that names the argument, or a loss call's
MemoryError that names the array and its size; from a form named after torch's, a ValueError must be a
``fusedloss.torch.ArgumentError``, which torch's type catches too) or ``correct`` (the reference backend's result on clean copies of
the inputs), with no input modified.

What runs here is the ``quick`` selection: every loss x input class x backend, with one of the entry points that
take the class (chosen by a hash, so that over the losses each entry point meets each class): about 3,400 cases
per backend. The whole corpus (about 29,000 cases per backend) runs with
``FUSEDLOSS_CORPUS=full`` or as ``python tests/corpus_run.py``, which prints the count of each outcome.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

import corpus
import corpus_run
from conftest import backend_skip_reason
from fusedloss._spec import REGISTRY


def _report(results: list, limit: int = 40) -> str:
    bad = [r for r in results if r["outcome"] in corpus.FAIL]
    lines = [f"{r['outcome']:9s} {r['id']}: {' '.join(r['detail'].split())[:300]}" for r in bad[:limit]]
    more = f"\n... and {len(bad) - limit} more" if len(bad) > limit else ""
    return f"{len(bad)} of {len(results)} cases fail ({corpus_run.summary(results)}):\n" + "\n".join(lines) + more


@pytest.mark.parametrize("backend", corpus.BACKENDS)
def test_bad_input_corpus(backend):
    reason = backend_skip_reason(backend)
    if reason:
        pytest.skip(reason)
    ids = [c.id for c in corpus.cases(os.environ.get("FUSEDLOSS_CORPUS", "quick")) if c.backend == backend]
    # 300 s per case: a case may be the first to compile a Numba kernel (parallel copies took up to a minute
    # on a 2-core machine running other test workers); a hang still fails, later
    results = corpus_run.run(ids, jobs=2, timeout=300.0)
    assert not any(r["outcome"] in corpus.FAIL for r in results), _report(results)
    mended = [r["id"] for r in results if r["id"] in corpus.KNOWN and r["outcome"] in corpus.PASS]
    assert not mended, f"known defects that pass now (remove them from corpus.KNOWN): {mended}"
    ran = {(r["id"].split("/")[1], r["id"].split("/")[3]): r["outcome"] for r in results if r["outcome"] == "known"}
    pairs = {(c.entry, c.cls) for c in corpus.cases(os.environ.get("FUSEDLOSS_CORPUS", "quick"))
             if c.backend == backend}
    # (in the full corpus only: the quick run may meet a pair only in a loss that the defect spares)
    full = os.environ.get("FUSEDLOSS_CORPUS") == "full"
    mended = [k for k in corpus.KNOWN_CLASSES if full and k in pairs and k not in ran]
    assert not mended, f"known defects that pass now (remove them from corpus.KNOWN_CLASSES): {mended}"
    counts = Counter(r["outcome"] for r in results)
    assert counts["clear"] and counts["correct"], corpus_run.summary(results)


def test_the_corpus_reaches_every_loss_entry_point_and_class():
    """Every loss of the registry, every entry point it has and every input class meet in some case (a class
    that applies nowhere, or a loss the generator skips, is a hole in the corpus)."""
    cases = corpus.cases()
    assert {c.loss for c in cases} == {n for n, s in REGISTRY.items() if s.builtin}
    for name in corpus.losses():
        assert {c.entry for c in cases if c.loss == name} == set(corpus.entries_of(REGISTRY[name])), name
    applies = {c.cls for c in cases}
    assert applies == set(corpus.CLASSES), f"classes that apply to no case: {set(corpus.CLASSES) - applies}"
    quick = corpus.cases("quick")
    assert {(c.loss, c.cls, c.backend) for c in quick} == {(c.loss, c.cls, c.backend) for c in cases}
    assert {(c.entry, c.cls) for c in quick} == {(c.entry, c.cls) for c in cases}, "entry points the quick run misses"


def test_a_crash_and_a_hang_are_caught_and_the_rest_still_runs(monkeypatch):
    """The parent's watchdog: a child killed by a signal, or silent past the timeout, marks the case it had
    started and goes on with the next ones in a fresh child."""
    monkeypatch.setattr(corpus_run, "_child_command", lambda: [
        corpus_run.sys.executable, "-c",
        "import os, sys, time\n"
        "for line in sys.stdin:\n"
        "    cid = line.strip(); print('start', cid, flush=True)\n"
        "    if cid == 'crash': os.abort()\n"
        "    if cid == 'hang': time.sleep(60)\n"
        "    print('done', '{\"id\": \"%s\", \"outcome\": \"correct\", \"detail\": \"\"}' % cid, flush=True)\n"])
    results = corpus_run.run_batch(["a", "crash", "b", "hang", "c"], timeout=3.0)
    assert [r["outcome"] for r in results] == ["correct", "crash", "correct", "hang", "correct"]


def test_a_relative_pythonpath_reaches_the_children_made_absolute(monkeypatch, tmp_path):
    """The children run in tests/: ``PYTHONPATH=src`` given from the repository root must name the same directory
    there, or the children import an installed fusedloss instead of the one under test."""
    monkeypatch.setattr(corpus_run, "_child_command", lambda: [
        corpus_run.sys.executable, "-c",
        "import json, os, sys\n"
        "for line in sys.stdin:\n"
        "    cid = line.strip(); print('start', cid, flush=True)\n"
        "    out = {'id': cid, 'outcome': 'correct', 'detail': os.environ['PYTHONPATH']}\n"
        "    print('done', json.dumps(out), flush=True)\n"])
    monkeypatch.chdir(tmp_path)
    results = corpus_run.run_batch(["a"], timeout=30.0, env={**os.environ, "PYTHONPATH": "src" + os.pathsep})
    assert results[0]["detail"] == str(tmp_path / "src") + os.pathsep


# cases that failed before their fix (the quick run may not meet these losses with these classes)
FIXED = ("multilabel_soft_margin/torch_named/numpy/vector_2d",  # torch's bare size error for a weight
         "binary_cross_entropy_with_logits/torch_module/numpy/vector_2d",  # ... and for a pos_weight
         "kl_div_with_logits/torch_named/numpy/huge_pred",  # torch's allocator error for the mean's weights
         "binary_cross_entropy_with_logits/dask/numpy/vector_ok",  # pos_weight per column of a chunked 1-d pred
         )


@pytest.mark.parametrize("cid", FIXED)
def test_defects_the_corpus_found_stay_fixed(cid):
    pytest.importorskip("torch" if "/torch" in cid else "dask")
    corpus_run.REGISTRY_DIFF.update({n: s.differentiable for n, s in REGISTRY.items()})
    result = corpus_run.run_one(corpus.Case(*cid.split("/")))
    assert result["outcome"] in corpus.PASS, result


def test_the_torch_forms_are_checked_against_torch():
    """The named torch forms' oracle is torch's own function (the registry's ``torch_name``) on plain inputs,
    with the arguments mapped from the forms' signatures: every loss that has a twin is compared with it."""
    pytest.importorskip("torch")
    corpus_run.REGISTRY_DIFF.update({n: s.differentiable for n, s in REGISTRY.items()})
    twins = [n for n in corpus.losses() if REGISTRY[n].torch_name and REGISTRY[n].kind != "sequence"]
    assert twins
    for name in twins:
        for entry in ("torch_named", "torch_module"):
            case = corpus.Case(name, entry, "numpy", "reduction_sum")
            (call,) = corpus.calls(case)
            _, by_torch = corpus_run._oracle(case, corpus_run.cleaned(call))
            assert by_torch, f"{case.id}: not compared with torch.nn.functional.{REGISTRY[name].torch_name}"


def test_the_routed_entries_reach_torch():
    """The routed entries' plain calls run on torch's own function (else they would meet the fused path twice),
    for every loss whose form routing wraps."""
    torch = pytest.importorskip("torch")
    from fusedloss.torch import FUNCTIONAL, MODULES

    names = [n for n in corpus.losses() if "torch_routed" in corpus.entries_of(REGISTRY[n])]
    assert names
    for name in names:
        (call,) = corpus.calls(corpus.Case(name, "torch_routed", "numpy", "ok"))
        x = torch.from_numpy(call.pred).requires_grad_()
        t = torch.from_numpy(call.target)
        for out in (FUNCTIONAL[name](x, t), MODULES[name]()(x, t)):
            assert "FusedLoss" not in type(out.grad_fn).__name__, name


def test_a_routed_call_is_judged_by_torch_bit_for_bit(monkeypatch):
    """A call that routing hands to torch is judged against torch's function on the same inputs, with torch's
    rules for NaN (mae's gradient at a NaN is 0 there, NaN in the reference), and a result one ulp off is
    garbage; the same call pinned to a backend is judged by the reference."""
    import numpy as np

    pytest.importorskip("torch")
    corpus_run.REGISTRY_DIFF.update({n: s.differentiable for n, s in REGISTRY.items()})
    routed, pinned = (corpus.Case("mae", entry, "numpy", "pred_nan") for entry in ("torch_routed", "torch_named"))
    assert corpus_run.run_one(routed)["outcome"] == "correct"
    assert corpus_run.run_one(pinned)["outcome"] == "correct"
    torch_result = corpus_run._routed_oracle
    monkeypatch.setattr(corpus_run, "_routed_oracle",
                        lambda case, call: tuple(np.nextafter(a, np.inf) for a in torch_result(case, call)))
    assert corpus_run.run_one(routed)["outcome"] == "garbage"


def test_dask_value_errors_name_the_chunk():
    """A bad label inside one chunk of a dask array (the logits' second chunk, the target chunked otherwise) is
    refused at compute time, naming the argument and the chunk."""
    pytest.importorskip("dask")
    name = next(n for n in corpus.losses() if REGISTRY[n].kind == "multiclass" and REGISTRY[n].hard_labels)
    for cls in ("labels_at_C", "labels_negative", "labels_huge"):
        case = corpus.Case(name, "dask", "numpy", cls)
        (call,) = corpus.calls(case)
        with pytest.raises(ValueError, match=r"(?s)(label|target).*chunk \(1, 0\)"):
            corpus_run._invoke(case, call, "numpy")

