"""The boosting objectives script (``benchmarks/boosting_objectives.py``) runs as the README gives it (``--quick``):
it checks fusedloss's objectives against the NumPy ones of the libraries' docs before it times anything, and
reports the per-call, per-round and inside-training figures for LightGBM and XGBoost."""

import importlib.util
import re
from pathlib import Path

import pytest


def test_boosting_script_runs(capsys):
    pytest.importorskip("lightgbm")
    pytest.importorskip("xgboost")
    import fusedloss as fl

    path = Path(__file__).with_name("boosting_objectives.py")
    spec = importlib.util.spec_from_file_location("boosting_objectives_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fl.set_num_threads(2)
    try:
        assert module.main(["--quick"]) == 0
        assert fl._config._num_threads == 2  # the 1-thread trainings leave the setting as they found it
    finally:
        fl.set_num_threads(None)
    out = capsys.readouterr().out
    inside = out[out.index("objective call inside training (median of 10 calls):"):]
    for lib in ("lightgbm", "xgboost"):
        times = re.search(rf"{lib} +numpy objective +([0-9.]+) ms +fusedloss +([0-9.]+) ms .* on 1 thread +([0-9.]+) ms",
                          inside)
        assert times and all(float(t) > 0 for t in times.groups()), inside
        assert re.search(rf"{lib} +built-in +[0-9.]+ ms +numpy objective +[0-9.]+ ms +fusedloss", out), out
