"""The metrics cost script (``benchmarks/logit_metrics.py``) runs, checks the fused metrics against its NumPy
ones before it times anything, and reports, for cross_entropy and (``--binary``) binary_cross_entropy_with_logits:
here once each on small data, so that the README's command keeps working."""

import importlib.util
import json
from pathlib import Path

import pytest


def _script():
    path = Path(__file__).with_name("logit_metrics.py")
    spec = importlib.util.spec_from_file_location("logit_metrics_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv", [["--size", "64x100"], ["--binary", "--size", "50000", "--metrics",
                                                          "accuracy,brier,roc256,ap256"],
                                  ["--torch", "--size", "64x100"], ["--torch", "--binary", "--size", "5000"]],
                         ids=["cross_entropy", "binary", "torch", "torch-binary"])
def test_metrics_script_runs(argv, tmp_path):
    if "--torch" in argv:
        pytest.importorskip("torch")
    out = tmp_path / "r.json"
    assert _script().main([*argv, "--repeat", "1", "--backend", "numpy", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["median_s"]) == {"plain", "fused", "numpy"}
    assert result["through"] == ("fusedloss.torch" if "--torch" in argv else "fusedloss")
