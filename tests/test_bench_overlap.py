"""``fusedloss bench --loss dice`` / ``tversky``: it runs on tiny cases, prints every contestant's row with a passing
value check, leaves the thread settings as it found them, and rejects bad arguments with a usage error (exit 2);
``python -m fusedloss.bench.overlap`` runs the same command."""

from __future__ import annotations

import json

import pytest

from fusedloss import _config, cli
from fusedloss.bench import overlap as bench_overlap

from conftest import backend_skip_reason


def test_bench_overlap_runs_tiny_cases(capsys, tmp_path):
    before = _config._num_threads
    out_json = tmp_path / "rows.json"
    cpp = backend_skip_reason("cpp") is None
    rc = cli.main(["bench", "--loss", "dice,tversky", "--size", "2x3x4x5", "--threads", "1", "--repeat", "1",
                   "--warmup", "1", "--backend", "numpy", "--no-peers", "--json", str(out_json)]
                  + (["--backend", "cpp"] if cpp else []))
    out = capsys.readouterr().out
    assert rc == 0, out
    assert _config._num_threads == before
    rows = json.loads(out_json.read_text())["rows"]
    contestants = {"numpy"} | ({"cpp"} if cpp else set())
    assert {(r["loss"], r["contestant"]) for r in rows} == {(n, c) for n in ("dice", "tversky") for c in contestants}
    assert all(r["check"] == "ok" and r["shape"] == "2x3x4x5" and r["median_s"] > 0 for r in rows)
    table = [line.split() for line in out.splitlines() if line.startswith(("dice ", "tversky "))]
    assert len(table) == len(rows)


def test_module_alias_runs_the_command(capsys):
    assert bench_overlap.main(["--loss", "tversky", "--case", "2x2x3", "--no-torch", "--backend", "numpy",
                               "--threads", "1", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "PyTorch is not" in out
    assert [line.split()[:5] for line in out.splitlines() if line.startswith("tversky ")] == [
        ["tversky", "2x2x3", "2x2x3", "float32", "numpy"]]


@pytest.mark.parametrize("argv, words", [
    (["--loss", "dice,mse"], "without other losses"),
    (["--loss", "dice", "--size", "8x3"], "NxCxHx"),
    (["--loss", "dice", "--backend", "nope"], "unknown host backend"),
    (["--loss", "tversky", "--peer", "jax"], "PyTorch only"),
    (["--loss", "dice", "--threads", "0"], "positive"),
])
def test_bench_overlap_usage_errors(argv, words, capsys):
    assert cli.main(["bench", *argv, "--repeat", "1"]) == 2
    assert words in capsys.readouterr().err


def test_parse_case():
    assert bench_overlap.parse_case("voc") == ("voc", (16, 21, 128, 128))
    assert bench_overlap.parse_case("4x5x32x32") == ("4x5x32x32", (4, 5, 32, 32))
