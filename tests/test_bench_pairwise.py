"""``fusedloss bench --loss <pairwise loss>``: it runs on tiny cases, prints every contestant's row with a passing
value check, leaves the thread settings as it found them, and rejects bad arguments with a usage error (exit 2)."""

from __future__ import annotations

import json

from fusedloss import _config, cli
from fusedloss.bench import pairwise as bench_pairwise

from conftest import backend_skip_reason


def test_bench_pairwise_runs_tiny_cases(capsys, tmp_path):
    before = _config._num_threads
    out_json = tmp_path / "rows.json"
    rc = cli.main(["bench", "--loss", "triplet_margin,margin_ranking", "--size", "8x3", "--threads", "1",
                   "--repeat", "1", "--warmup", "1", "--backend", "numpy", "--no-peers", "--json", str(out_json)]
                  + (["--backend", "cpp"] if backend_skip_reason("cpp") is None else []))
    out = capsys.readouterr().out
    assert rc == 0, out
    assert _config._num_threads == before
    rows = json.loads(out_json.read_text())["rows"]
    contestants = {"numpy"} | ({"cpp"} if backend_skip_reason("cpp") is None else set())
    assert {(r["loss"], r["contestant"]) for r in rows} == {(n, c) for n in ("triplet_margin", "margin_ranking")
                                                           for c in contestants}
    assert all(r["check"] == "ok" and r["N"] == 8 and r["D"] == 3 and r["median_s"] > 0 for r in rows)
    table = [line.split() for line in out.splitlines() if line.startswith(("triplet_margin ", "margin_ranking "))]
    assert len(table) == len(rows)


def test_bench_pairwise_usage_errors(capsys):
    """Each bad command line exits 2 with a message naming what is wrong."""
    for argv, words in ((["--loss", "triplet_margin,mse"], "without other losses"),
                        (["--loss", "triplet_margin", "--size", "8"], "NxD"),
                        (["--loss", "triplet_margin", "--backend", "nope"], "unknown host backend"),
                        (["--loss", "triplet_margin", "--threads", "0"], "positive")):
        assert cli.main(["bench", *argv, "--repeat", "1"]) == 2, argv
        assert words in capsys.readouterr().err, argv


def test_parse_case():
    assert bench_pairwise.parse_case("small") == ("small", bench_pairwise.CASES["small"])
    assert bench_pairwise.parse_case("1024x128") == ("1024x128", (1024, 128))
