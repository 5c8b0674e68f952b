"""``fusedloss bench`` checks every option before any work: each bad command line exits with status 2 and a
message that names the option, what was given and what is expected. Nothing here runs a benchmark: the timing
entry points are replaced by ones that fail the test if reached."""

import os
import stat
import sys

import pytest

from fusedloss import __version__, cli
from fusedloss.bench import machine, runner
from fusedloss.bench.plan import plan_bench


@pytest.fixture(autouse=True)
def no_benchmarks(monkeypatch):
    def reached(*args, **kwargs):
        raise AssertionError("a benchmark started although the command line was bad")

    monkeypatch.setattr(runner, "run_case", reached)
    monkeypatch.setattr(machine, "triad", reached)
    monkeypatch.setattr(machine, "measure_triad", reached)


def _usage_error(argv, capsys, *expected):
    assert cli.main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err, f"{text!r} not in {err!r}"
    return err


BAD = [
    # sizes per loss kind
    (["--loss", "mse", "--size", "10x10"], ["--size 10x10", "ROWSxCLASSES", "mse", "N (e.g. 1e6)"]),
    (["--loss", "cross_entropy", "--size", "1000"], ["--size 1e3", "cross_entropy", "ROWSxCLASSES (e.g. 4096x1000)"]),
    (["--loss", "mse,cross_entropy", "--size", "1e3"], ["--size", "cross_entropy is a multiclass loss",
                                                        "ROWSxCLASSES", "1e3"]),
    (["--size", "ten"], ["--size", "'ten'", "N (e.g. 1e6)"]),
    (["--size", "2x3x4"], ["--size", "'2x3x4'"]),
    (["--size", "1.5"], ["--size", "'1.5'"]),
    (["--loss", "mse", "--size", "1e13"], ["--size 1e13", "GiB", "smaller size"]),
    # counts
    (["--repeat", "0"], ["--repeat", ">= 1", "got 0"]),
    (["--repeat", "-3"], ["--repeat", ">= 1", "got -3"]),
    (["--repeat", "x"], ["--repeat", "invalid int value: 'x'"]),
    (["--warmup", "-1"], ["--warmup", ">= 0", "got -1"]),
    (["--sample-time", "0"], ["--sample-time", "> 0"]),
    (["--max-time", "-1"], ["--max-time", "> 0"]),
    (["--busy", "-2"], ["--busy", ">= 0", "got -2"]),
    (["--triad", "0"], ["--triad", "> 0"]),
    (["--threads", "two"], ["--threads", "'two'", "whole numbers >= 1"]),
    (["--threads", "1,0"], ["--threads", "'0'"]),
    (["--threads", "1.5"], ["--threads", "'1.5'"]),
    # names
    (["--loss", "no_such_loss"], ["--loss", "'no_such_loss'", "mse"]),
    (["--dtype", "float16"], ["--dtype", "float32 or float64", "'float16'"]),
    (["--backend", "nope"], ["--backend", "'nope'", "numpy"]),
    (["--peer", "nope"], ["--peer", "'nope'", "sklearn"]),
    # contradictions
    (["--no-peers", "--peer", "numpy"], ["--no-peers", "--peer"]),
    (["--max-slowdown", "2"], ["--max-slowdown", "--compare"]),
    (["--triad", "30", "--refresh-triad"], ["--triad", "--refresh-triad"]),
    (["--compare", "no_such_baseline.json"], ["--compare no_such_baseline.json", "cannot read"]),
]


@pytest.mark.parametrize("argv, expected", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_option_exits_2_with_a_message(argv, expected, capsys):
    _usage_error(argv, capsys, *expected)


def test_compare_threshold_must_exceed_one(tmp_path, capsys):
    base = tmp_path / "base.json"
    base.write_text('{"rows": []}')
    _usage_error(["--compare", str(base), "--max-slowdown", "1"], capsys, "--max-slowdown", "> 1", "got 1")


# --- output paths: checked before the run ------------------------------------------------------------


@pytest.mark.parametrize("option", ["--json", "--csv", "--plot"])
def test_output_in_a_missing_directory(option, tmp_path, capsys):
    path = tmp_path / "missing" / ("out.png" if option == "--plot" else "out")
    _usage_error(["--loss", "mse", option, str(path)], capsys, option, "does not exist")


@pytest.mark.parametrize("option", ["--json", "--csv", "--plot"])
def test_output_that_is_a_directory(option, tmp_path, capsys):
    _usage_error(["--loss", "mse", option, str(tmp_path)], capsys, option, "is a directory")


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="permissions do not bind root")
def test_output_in_a_read_only_directory(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        _usage_error(["--loss", "mse", "--csv", str(ro / "out.csv")], capsys, "--csv", "no write permission")
    finally:
        ro.chmod(stat.S_IRWXU)


def test_two_outputs_to_one_file(tmp_path, capsys):
    path = str(tmp_path / "out")
    _usage_error(["--loss", "mse", "--json", path, "--csv", path], capsys, "--csv", "same file as --json")


def test_plot_needs_an_image_file_name(tmp_path, capsys):
    _usage_error(["--loss", "mse", "--plot", str(tmp_path / "plot.txt")], capsys, "--plot", ".png", "got .txt")


# --- --torch-module ----------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, option", [
    (["--plot", "x.png"], "--plot"), (["--loss", "mse"], "--loss"), (["--peer", "numpy"], "--peer"),
    (["--no-peers"], "--no-peers"), (["--compare", "b.json"], "--compare"), (["--busy", "1"], "--busy"),
    (["--clock", "cpu"], "--clock cpu"), (["--backend", "cpp,numba"], "one fusedloss backend"),
    (["--repeat", "0"], "--repeat"), (["--threads", "two"], "--threads"), (["--size", "2x3x4"], "--size"),
])
def test_torch_module_refuses_what_it_would_ignore(argv, option, capsys, monkeypatch):
    import fusedloss.torch as flt  # torch is in the test extra
    monkeypatch.setattr(flt, "bench_torch_module", lambda *a, **k: pytest.fail("a benchmark started"))
    err = _usage_error(["--torch-module", *argv], capsys, option)
    assert "--torch-module" in err or option in ("--repeat", "--threads", "--size")


def test_torch_module_writes_csv(tmp_path, capsys, monkeypatch):
    import fusedloss.torch as flt
    row = {"mode": "torch-module", "loss": "mse", "module": "torch.nn.MSELoss", "contestant": "torch",
           "backend": "torch", "dtype": "float32", "size": "10", "n": 10, "threads": 1, "median_s": 1e-3,
           "p20_s": 1e-3, "p80_s": 1e-3, "check": "ok", "speedup_vs_torch": 1.0}
    seen = {}

    def fake(cases, dtype, **kw):
        seen.update(cases=cases, dtype=dtype, **kw)
        return [row]

    monkeypatch.setattr(flt, "bench_torch_module", fake)
    out = tmp_path / "tm.csv"
    assert cli.main(["bench", "--torch-module", "--size", "64x10,1e3", "--repeat", "3", "--csv", str(out)]) == 0
    assert seen["cases"] == (("cross_entropy", (64, 10)), ("mse", (1000,))) and seen["repeat"] == 3
    assert out.read_text().startswith("mode,loss,")


@pytest.mark.parametrize("shown", ["always", "never"])
def test_torch_module_draws_the_progress_bar_it_is_asked_for(shown, capsys, monkeypatch):
    flt = pytest.importorskip("fusedloss.torch")
    row = {"loss": "mse", "module": "MSELoss", "contestant": "fusedloss", "backend": "cpp", "dtype": "float32",
           "size": "1e3", "threads": 1, "median_s": 1e-5, "p20_s": 1e-5, "p80_s": 1e-5, "check": "ok"}

    def fake(cases, dtype, progress=None, **kw):
        for i, (loss, _) in enumerate(cases):
            progress(i, loss, "warm-up fusedloss")
        return [row]

    monkeypatch.setattr(flt, "bench_torch_module", fake)
    argv = ["bench", "--torch-module", "--size", "64x10,1e3", "--dtype", "float32,float64", "--progress", shown]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    if shown == "never":
        assert err == ""
    else:  # four cases in all (two sizes, two dtypes): the bar counts across the dtypes
        assert "3/4" in err and "cross_entropy" in err and "warm-up fusedloss" in err


# --- what a good command line decides ----------------------------------------------------------------


def _plan(argv):
    args = cli.build_parser().parse_args(["bench", "--no-peers", "--backend", "numpy", *argv])
    return plan_bench(args)


def test_sizes_go_to_the_losses_of_their_form():
    plan = _plan(["--loss", "mse,cross_entropy", "--size", "1e3,64x10"])
    assert sorted((c.loss, c.shape) for c in plan.cases) == [("cross_entropy", (64, 10)), ("mse", (1000,))]
    assert plan.notes == []


def test_without_loss_only_the_losses_of_the_given_forms_run():
    plan = _plan(["--size", "1e3"])
    assert plan.cases and all(c.defn.kind == "elementwise" and c.shape == (1000,) for c in plan.cases)
    assert any("multiclass losses are left out" in n for n in plan.notes)
    plan = _plan(["--size", "64x10"])
    assert plan.cases and all(c.defn.kind == "multiclass" and c.shape == (64, 10) for c in plan.cases)


def test_explicit_counts_are_kept():
    plan = _plan(["--loss", "mse", "--size", "1e3", "--repeat", "1", "--warmup", "0", "--threads", "1,2"])
    assert (plan.repeat, plan.warmup) == (1, 0)
    assert sorted({c.threads for c in plan.cases}) == [1, 2]


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fusedloss {__version__}"
