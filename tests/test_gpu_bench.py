"""``benchmarks/gpu_bench.py --tiny`` runs on the CUDA simulator, so that the device benchmark cannot rot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conftest import backend_skip_reason

pytestmark = pytest.mark.cuda

pytest.importorskip("numba.cuda")
pytest.importorskip("torch")
_reason = backend_skip_reason("cuda")
if _reason:
    pytest.skip(_reason, allow_module_level=True)


def test_gpu_bench_tiny_runs(tmp_path, capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_bench.py"
    spec = importlib.util.spec_from_file_location("gpu_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--tiny", "--repeat", "1", "--json", str(tmp_path / "rows.json"),
                       "--profile", str(tmp_path / "profile.txt"), "--row-elems", "16,64:2"])
    out = capsys.readouterr().out
    assert "copy bandwidth" in out
    assert "by ROW_ELEMS: ['16', '64:2']" in out and out.count("e=64:2:") == len(bench.TINY_CE_SHAPES)
    names = [r["loss"] for r in rows]
    assert names.count("cross_entropy") == 2 * len(bench.TINY_CE_SHAPES)
    assert "mse" in names and "binary_cross_entropy_with_logits" in names
    for row in rows:
        assert row["times"]["torch"] > 0
    assert sum("kernel" in r["times"] for r in rows) == len(bench.TINY_CE_SHAPES) + 2  # float32 cases
    # cross_entropy's float32 cases and binary_cross_entropy_with_logits
    assert sum(r["times"].get("metrics", 0) > 0 for r in rows) == len(bench.TINY_CE_SHAPES) + 1
    assert (tmp_path / "rows.json").exists()
    profile = (tmp_path / "profile.txt").read_text()
    assert profile.count("=== ") == len(rows) + sum("kernel" in r["times"] for r in rows)  # torch and kernel paths
    assert "aten::" in profile  # torch's own ops were recorded
    assert profile.count("--- host functions") == profile.count("=== ")
