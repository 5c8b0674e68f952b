"""The weighted-calls script (``benchmarks/weighted_calls.py``) runs as its docstring gives it (``--quick``): it
checks each weighted mean against the loss's definition before it times anything, and prints one row per loss,
size, dtype and thread count with both times and their ratio."""

import importlib.util
import re
from pathlib import Path


def test_weighted_calls_script_runs(capsys):
    import fusedloss as fl

    path = Path(__file__).with_name("weighted_calls.py")
    spec = importlib.util.spec_from_file_location("weighted_calls_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    before = fl._config._num_threads
    assert module.main(["--quick"]) == 0
    assert fl._config._num_threads == before  # the script leaves the thread setting as it found it
    out = capsys.readouterr().out
    rows = re.findall(r"^(\w+) +10000 (float32|float64) +([12]) +([0-9.]+) ms +([0-9.]+) ms +([0-9.]+)x$", out, re.M)
    assert len(rows) == 2 * 2 * 2, out  # two losses, two dtypes, two thread counts
    assert {r[0] for r in rows} == {"mse", "binary_cross_entropy_with_logits"}
    assert all(float(r[3]) > 0 and float(r[4]) > 0 for r in rows), out
