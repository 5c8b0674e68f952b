"""The bad-input corpus (``corpus.py``): every public entry point x host backend x hostile input class, run in
child processes (``corpus_run.py``) so that a crash or a hang fails a case instead of killing pytest.

Every case must end ``clear`` (a ValueError, TypeError or IndexError that names the argument, or a loss call's
MemoryError that names the array and its size) or ``correct`` (the reference backend's result on clean copies of
the inputs), with no input modified.

What runs here is the ``quick`` selection: every loss x input class x backend, with one of the entry points that
take the class (chosen by a hash, so that over the losses each entry point meets each class): about 2,300 cases
per backend, a few seconds each. The whole corpus (about 15,000 cases per backend) runs with
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
