"""``fusedloss bench --loss ctc``: it runs on tiny cases, prints every contestant's row with a passing value
check, leaves the thread settings as it found them, and rejects bad arguments with a usage error (exit 2)."""

from __future__ import annotations

import pytest

from fusedloss import _config, cli
from fusedloss.bench import ctc as bench_ctc
from conftest import backend_skip_reason


def _available(name):
    return backend_skip_reason(name) is None


def test_bench_ctc_runs_tiny_cases(capsys):
    before = _config._num_threads
    rc = cli.main(["bench", "--loss", "ctc", "--quick", "--size", "8x2x5x2", "--size", "6x3x4x2", "--threads", "1",
                   "--repeat", "1", "--warmup", "1", "--backend", "numpy"] + (["--backend", "numba"]
                                                                            if _available("numba") else []))
    out = capsys.readouterr().out
    assert rc == 0, out
    assert _config._num_threads == before
    rows = [line.split() for line in out.splitlines() if line.startswith(("8x2x5x2 ", "6x3x4x2 "))]
    contestants = {r[5] for r in rows}
    assert {"numpy"} <= contestants and ("numba" in contestants) == _available("numba")
    try:
        import torch  # noqa: F401

        assert "torch" in contestants and "vs torch" in out
    except ImportError:
        assert "PyTorch is not installed" in out
    assert "FAILED" not in out  # every value within 1e-4 of the float64 loss (else the exit status is 1)
    assert len(rows) == 2 * len(contestants)


@pytest.mark.parametrize("argv, words", [
    (["--loss", "ctc,mse"], "alone"),
    (["--loss", "ctc", "--size", "3x1x4x5"], "cannot emit"),
    (["--loss", "ctc", "--size", "1e7"], "TxNxCxS"),
    (["--loss", "ctc", "--backend", "nope"], "unknown host backend"),
    (["--loss", "ctc", "--peer", "jax"], "PyTorch only"),
    (["--loss", "ctc", "--threads", "0"], "positive"),
])
def test_bench_ctc_usage_errors(argv, words, capsys):
    assert cli.main(["bench", *argv, "--repeat", "1"]) == 2
    assert words in capsys.readouterr().err


def test_named_cases_are_the_issue_cases():
    assert bench_ctc.CASES == {"warp": (150, 128, 28, 40), "subword": (400, 32, 5000, 80)}
    assert bench_ctc.parse_case("warp") == ("warp", (150, 128, 28, 40))
