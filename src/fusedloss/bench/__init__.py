"""The benchmark setup shared by ``fusedloss bench`` (``fusedloss.cli``) and the pytest-benchmark suites
(``benchmarks/``).

What is timed is one ``value_and_grad`` step as a training loop runs it: for our backends
``loss.value_and_grad(pred, target, grad_out=g, backend=name)`` with ``g`` allocated once outside the timed
region; for a peer, its natural value + gradient step (see ``peers``). Warm-up calls (JIT compilation, thread
pool start, first touch of the output pages) run before timing. Every contestant's first result is checked
against the float64 reference before it is timed; one that fails is reported in its row and not timed.
Contestants of one case are timed round-robin (one sample of each in turn), so that a change in machine load
hits them all alike and ratios measured in one run stay stable on a shared machine.

One concern per module:

``cases``        the case table (derived from the loss registry), shapes, data, the minimal-bytes model
``oracle``       the float64 reference of a case and the check of a result against it
``contestants``  what is timed: the ``Contestant`` interface and our backends as contestants
``peers``        NumPy, PyTorch, JAX and scikit-learn formulations of each loss
``timing``       the round-robin timing loop
``machine``      allocator, memory bandwidth (triad) and its cache, load, SIMD level, machine description
``runner``       a case run into flat result rows
``report``       the table, CSV and the JSON document
``guard``        the regression guard (``--compare``)
``plot``         the ``--plot`` figure
``plan``         the options of ``fusedloss bench``, checked before any work
``command``      ``fusedloss bench`` itself; ``info``: ``fusedloss info``; ``progress``: the progress bar
``ctc``, ``pairwise``, ``overlap``  the own cases and timing of the losses of other signatures (ctc; the pairwise
                 losses; dice and tversky), on ``own_cases``'s shared parts
``custom``       custom losses defined for the benchmark
"""

from .cases import (CASE_DEFS, DTYPES, Case, CaseDef, case_def, case_key, format_shape, get_case, make_cases,
                    make_data, minimal_bytes, parse_size, registered_case_defs)
from .contestants import Contestant, Unavailable, backend_contestant, host_backends
from .guard import Comparison, compare, numpy_ratios
from .machine import (TRIAD_TTL_S, load_average, machine_busy, machine_info, measure_triad, simd_level,
                      steady_allocator, triad)
from .oracle import CHECK_TOLERANCE, Reference, case_data, check_result, reference
from .peers import JAX_PEER, NUMPY_PEER, PEER_LOSSES, PEERS, SKLEARN_PEER, TORCH_PEER, peer_has, peer_status
from .report import FORMAT, format_rows, load_results, results_document, write_csv
from .runner import RunOptions, contestant_names, make_contestant, mark_unreliable_ratios, run_case
from .timing import CLOCKS, Timing, time_round_robin

__all__ = [
    "CASE_DEFS", "CHECK_TOLERANCE", "CLOCKS", "DTYPES", "FORMAT", "JAX_PEER", "NUMPY_PEER", "PEERS", "PEER_LOSSES",
    "SKLEARN_PEER", "TORCH_PEER", "TRIAD_TTL_S", "Case", "CaseDef", "Comparison", "Contestant", "Reference",
    "RunOptions", "Timing", "Unavailable", "backend_contestant", "case_data", "case_def", "case_key", "check_result",
    "compare", "contestant_names", "format_rows", "format_shape", "get_case", "host_backends", "load_average",
    "load_results", "machine_busy", "machine_info", "make_cases", "make_contestant", "make_data",
    "mark_unreliable_ratios", "measure_triad", "minimal_bytes", "numpy_ratios", "parse_size", "peer_has",
    "peer_status", "reference", "registered_case_defs", "results_document", "run_case", "simd_level",
    "steady_allocator", "time_round_robin", "triad", "write_csv",
]
