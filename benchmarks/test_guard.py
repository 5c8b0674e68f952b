"""The benchmark machinery itself: size parsing, the bytes model, timing, the triad cache, the regression
guard and the CLI end to end (tiny cases, so that this runs in seconds under --benchmark-disable)."""

import json

import numpy as np
import pytest

from fusedloss import bench, cli
from fusedloss._spec import REGISTRY


def test_sizes_and_shapes():
    assert bench.parse_size("1e7") == (10_000_000,)
    assert bench.parse_size("65536x1000") == (65536, 1000)
    assert bench.format_shape((10_000_000,)) == "1e7"
    assert bench.format_shape((1234,)) == "1234"
    assert bench.format_shape((8192, 32000)) == "8192x32000"
    for bad in ("abc", "0", "1.5", "2x3x4", "-5"):
        with pytest.raises(ValueError):
            bench.parse_size(bad)


def test_minimal_bytes():
    mse = bench.get_case("mse", "float32", (1000,), threads=1)
    assert bench.minimal_bytes(mse) == 3 * 1000 * 4  # pred, target read; grad written
    assert bench.minimal_bytes(bench.get_case("mse", "float64", (1000,), threads=1)) == 3 * 1000 * 8
    if "cross_entropy" in REGISTRY:
        ce = bench.get_case("cross_entropy", "float32", (64, 1000), threads=1)
        assert bench.minimal_bytes(ce) == 2 * 64 * 1000 * 4 + 64 * 8  # logits, grad, int64 labels


def test_unregistered_table_entries_are_skipped():
    registered = {d.loss for d in bench.registered_case_defs()}
    assert registered <= set(REGISTRY)
    assert {"mse", "huber", "log_cosh"} <= {d.loss for d in bench.registered_case_defs(quick=True)}


def test_check_catches_a_wrong_convention():
    case = bench.get_case("mse", "float64", (1000,), threads=1)
    pred, target = bench.make_data(case)
    ref = bench.reference(case, pred, target)
    value, grad = bench.NUMPY_PEER["mse"][0](pred, target)
    assert bench.check_result(case, value, grad, ref)[0]
    ok, text, _, _ = bench.check_result(case, value / 2, grad / 2, ref)  # the half-squared-error mistake
    assert not ok and "value" in text and "grad" in text


def test_round_robin_timing():
    calls = {"a": 0, "b": 0}

    def a():
        calls["a"] += 1

    def b():
        calls["b"] += 1
        sum(range(200))

    t = bench.time_round_robin({"a": a, "b": b}, repeat=3, warmup=1, min_sample_s=1e-4, pause_s=0)
    assert set(t) == {"a", "b"}
    for tm in t.values():
        assert len(tm.samples) == 3 and tm.number >= 1
        med, p20, p80 = tm.stats()
        assert 0 < p20 <= med <= p80


def test_triad_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    measured = []

    def fake(threads, n=0, repeat=0):
        measured.append(threads)
        return {"gbps": 40.0 + threads, "median_gbps": 39.0, "method": "fake", "threads": threads}

    monkeypatch.setattr(bench.machine, "measure_triad", fake)
    monkeypatch.setattr(bench.machine, "machine_busy", lambda: False)
    first, second = bench.triad(2), bench.triad(2)
    assert first["gbps"] == second["gbps"] == 42.0
    assert (first["cached"], second["cached"], measured) == (False, True, [2])
    assert bench.triad(1)["gbps"] == 41.0 and measured == [2, 1]  # keyed by thread count
    assert bench.triad(2, refresh=True)["cached"] is False and measured == [2, 1, 2]
    data = json.loads((tmp_path / "fusedloss" / "triad.json").read_text())
    assert len(data) == 2 and all(v["ttl_s"] == bench.TRIAD_TTL_S for v in data.values())


def test_the_real_triad_kernel_is_right():
    r = bench.measure_triad(1, n=100_000, repeat=2)  # raises if a != b + 3 c
    assert r["gbps"] > 0 and r["threads"] == 1


def _rows(ratio_by_backend, numpy_median=1.0, size="1e6"):
    rows = [{"loss": "mse", "params": "", "backend": "peer:numpy", "role": "peer", "dtype": "float32",
             "size": size, "threads": 2, "median_s": numpy_median, "min_s": numpy_median}]
    for backend, ratio in ratio_by_backend.items():
        rows.append({**rows[0], "backend": backend, "role": "backend", "median_s": ratio * numpy_median,
                     "min_s": ratio * numpy_median})
    return rows


def test_compare_uses_ratios_not_times():
    base = _rows({"cpp": 0.2, "numba": 0.3})
    # a machine twice as slow overall is not a regression
    cmp = bench.compare(_rows({"cpp": 0.2, "numba": 0.3}, numpy_median=2.0), base, 1.25)
    assert len(cmp.lines) == 2 and not cmp.failures
    # a kernel that lost its fast path is, even on a faster machine
    cmp = bench.compare(_rows({"cpp": 0.5, "numba": 0.3}, numpy_median=0.5), base, 1.25)
    assert [f["backend"] for f in cmp.failures] == ["cpp"] and cmp.failures[0]["slowdown"] == pytest.approx(2.5)
    # cases measured in only one of the two runs are not compared
    cmp = bench.compare(_rows({"cpp": 0.2}, size="1e3"), base, 1.25)
    assert not cmp.lines and len(cmp.missing) == 2


def _file(i, same_kind, ratios, numpy_median):
    return [{**r, "baseline": i, "same_kind": same_kind} for r in _rows(ratios, numpy_median=numpy_median)]


def test_several_baselines_each_divide_by_their_own_peer():
    """--compare A,B,C: each file's ratios use that file's own NumPy peer; among the files of this machine's kind
    the highest ratio counts; a file of another kind counts only for a case no file of this kind has."""
    fast = _file(0, True, {"cpp": 0.2}, numpy_median=1.0)
    slow = _file(1, True, {"cpp": 0.3}, numpy_median=10.0)  # ratio 0.3: over its own peer, not fast's
    other = _file(2, False, {"cpp": 0.9, "numba": 0.5}, numpy_median=4.0)
    cmp = bench.compare(_rows({"cpp": 0.42, "numba": 0.7}), fast + slow + other, 1.25)
    by = {c["backend"]: c for c in cmp.lines}
    assert by["cpp"]["ratio_baseline"] == pytest.approx(0.3)  # the slower of this kind's runs, not other's 0.9
    assert by["cpp"]["slowdown"] == pytest.approx(1.4)
    assert by["numba"]["ratio_baseline"] == pytest.approx(0.5)  # only the other kind has it
    assert [f["backend"] for f in cmp.failures] == ["cpp", "numba"]
    # no file of this machine's kind: the highest ratio of all files counts
    cmp = bench.compare(_rows({"cpp": 0.9}), [{**r, "same_kind": False} for r in fast + slow + other], 1.25)
    assert cmp.lines[0]["ratio_baseline"] == pytest.approx(0.9) and not cmp.failures


def test_machine_kind_is_the_cpu_model_and_its_simd_flags():
    from fusedloss.bench.machine import machine_info, machine_kind

    here = machine_kind()
    assert here == machine_kind(machine_info())  # what a --json file records is what the guard compares
    assert machine_kind({"cpu": "X", "simd": ["avx2", "avx512f"]}) == machine_kind({"cpu": "X", "simd": ["avx512f", "avx2"]})
    assert machine_kind({"cpu": "X", "simd": ["avx2"]}) != machine_kind({"cpu": "X", "simd": ["avx2", "avx512f"]})
    assert machine_kind({"cpu": "Y", "simd": ["avx2"]}) != machine_kind({"cpu": "X", "simd": ["avx2"]})


def test_a_case_over_the_limit_is_measured_again(capsys):
    from fusedloss.bench import guard

    base = _rows({"cpp": 0.2, "numba": 0.3})
    asked = []

    def remeasure_with(ratios):
        def remeasure(keys):
            asked.append(keys)
            return _rows(ratios.pop(0))
        return remeasure

    # over the limit once, within it when measured again: a pass, and the first figure is shown
    assert guard.check_against(_rows({"cpp": 0.2, "numba": 0.9}), base, "b.json", 1.6,
                               remeasure_with([{"cpp": 0.2, "numba": 0.31}])) == 0
    assert asked == [[("mse", "", "float32", "1e6", 2, "wall")]]  # only the failing case, once
    out = capsys.readouterr().out
    assert "measured again (1 of 2)" in out and "numba" in out and "3.00x, 1.03x" in out
    # over the limit in every measurement: a regression naming every figure
    asked.clear()
    assert guard.check_against(_rows({"cpp": 0.2, "numba": 0.9}), base, "b.json", 1.6,
                               remeasure_with([{"cpp": 0.2, "numba": 0.6}, {"cpp": 0.2, "numba": 0.75}])) == 1
    assert len(asked) == guard.REMEASURE
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "3.00x, 2.00x, 2.50x" in out
    # within the limit: nothing measured again; without a remeasure the first verdict stands
    asked.clear()
    assert guard.check_against(_rows({"cpp": 0.2, "numba": 0.3}), base, "b.json", 1.6,
                               remeasure_with([])) == 0 and asked == []
    assert guard.check_against(_rows({"cpp": 0.2, "numba": 0.9}), base, "b.json", 1.6) == 1


def test_cli_bench_json_and_guard(tmp_path, capsys):
    out = tmp_path / "run.json"
    argv = ["bench", "--loss", "mse", "--size", "1e3", "--repeat", "3", "--warmup", "1", "--peer", "numpy",
            "--triad", "40", "--backend", "numpy", "--progress", "never"]
    assert cli.main(argv + ["--json", str(out), "--csv", str(tmp_path / "run.csv")]) == 0
    printed = capsys.readouterr().out
    assert "peer:numpy" in printed and "vs numpy" in printed
    doc = json.loads(out.read_text())
    assert doc["format"] == bench.FORMAT and doc["machine"]["cores"] >= 1
    rows = {r["backend"]: r for r in doc["rows"]}
    assert rows["numpy"]["check"] == "ok" and rows["numpy"]["median_s"] > 0
    assert rows["numpy"]["bytes"] == 3 * 1000 * 4 and rows["numpy"]["frac_triad"] > 0
    assert (tmp_path / "run.csv").read_text().startswith("loss,")

    # against itself: passes with a generous threshold
    assert cli.main(argv + ["--compare", str(out), "--max-slowdown", "100"]) == 0
    # against a baseline in which our backend was 1000x faster relative to NumPy: fails
    fast = dict(doc)
    fast["rows"] = [dict(r, min_s=r["min_s"] / 1000) if r["role"] == "backend" else r for r in doc["rows"]]
    (tmp_path / "fast.json").write_text(json.dumps(fast))
    assert cli.main(argv + ["--compare", str(tmp_path / "fast.json")]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    # several baselines of this machine's kind: the highest ratio counts, in either order
    assert cli.main(argv + ["--compare", f"{tmp_path / 'fast.json'},{out}", "--max-slowdown", "100"]) == 0
    assert cli.main(argv + ["--compare", f"{out},{tmp_path / 'fast.json'}", "--max-slowdown", "100"]) == 0
    # a file of another machine kind counts only where no file of this kind has the case
    other = dict(doc, machine=dict(doc["machine"], cpu="another CPU model"))
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert cli.main(argv + ["--compare", f"{tmp_path / 'fast.json'},{tmp_path / 'other.json'}"]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    (tmp_path / "other.json").write_text(json.dumps(dict(fast, machine=other["machine"])))
    assert cli.main(argv + ["--compare", f"{out},{tmp_path / 'other.json'}", "--max-slowdown", "100"]) == 0
    capsys.readouterr()
    # nothing in common with the baseline: an error, not a silent pass
    assert cli.main(argv[:4] + ["1e4"] + argv[5:] + ["--compare", str(out)]) == 2


def test_cli_usage_errors(capsys):
    assert cli.main(["bench", "--loss", "no_such_loss"]) == 2
    assert cli.main(["bench", "--dtype", "float16"]) == 2
    assert cli.main(["bench", "--peer", "nope"]) == 2
    assert cli.main(["bench", "--no-peers", "--compare", "x.json"]) == 2  # no such file
    assert "error" in capsys.readouterr().err


def test_cli_compare_needs_the_numpy_peer(tmp_path, capsys):
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"rows": []}))
    assert cli.main(["bench", "--loss", "mse", "--no-peers", "--compare", str(base)]) == 2
    assert "NumPy peer" in capsys.readouterr().err


def test_cli_info(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "backend" in out and "threads" in out
    assert cli.main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["backends"]


@pytest.mark.parametrize("loss, shape", [("log_cosh", (300_001,)), ("cross_entropy", (3000, 700))])
def test_chunked_reference_matches_the_full_one(loss, shape, monkeypatch):
    if loss not in REGISTRY:
        pytest.skip(f"{loss} is not registered")
    case = bench.get_case(loss, "float64", shape, threads=1)
    pred, target = bench.make_data(case)
    full = bench.reference(case, pred, target)
    monkeypatch.setattr(bench.oracle, "REFERENCE_FULL_MAX", 1000)
    monkeypatch.setattr(bench.oracle, "REFERENCE_CHUNK", 50_000)
    chunked = bench.reference(case, pred, target)
    assert chunked.rows is not None and len(chunked.rows) < shape[0]
    assert chunked.value == pytest.approx(full.value, rel=1e-12)
    np.testing.assert_allclose(chunked.grad, full.grad[chunked.rows], rtol=1e-12, atol=1e-18)
    assert bench.check_result(case, full.value, full.grad, chunked)[0]  # a full result is checked on the rows


def test_torch_module_mode_times_both_modules(capsys, tmp_path):
    pytest.importorskip("torch")
    out_json = tmp_path / "torch_module.json"
    rc = cli.main(["bench", "--torch-module", "--quick", "--threads", "1", "--repeat", "1", "--warmup", "0",
                   "--json", str(out_json)])
    text = capsys.readouterr().out
    assert rc == 0, text
    for module in ("torch.nn.CrossEntropyLoss", "fusedloss.torch.CrossEntropyLoss", "torch.nn.MSELoss",
                   "fusedloss.torch.MSELoss"):
        assert module in text
    rows = json.loads(out_json.read_text())["rows"]
    assert {r["contestant"] for r in rows} == {"torch", "fusedloss"} and all(r["check"] == "ok" for r in rows)
