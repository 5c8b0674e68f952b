"""What ``fusedloss`` prints and draws: a narrow ``info``, the progress estimate, ratios marked when the
measurements do not support them, and the plot. No benchmark runs here (rows are made up)."""

import pytest

from fusedloss import cli
from fusedloss.bench import info, plot, progress, report, runner
from fusedloss.bench.peers import PEERS
from fusedloss._spec import REGISTRY


def test_info_fits_100_columns(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    wide = [line for line in out.splitlines() if len(line) > info.INFO_WIDTH]
    assert not wide, wide
    assert "backend" in out and "numpy" in out


def test_eta_scales_the_time_spent_by_the_cost_left():
    p = progress.Progress(3, enabled=False, weights=[1.0, 1.0, 2.0])
    assert p.eta(0) is None  # nothing measured yet
    p.update(0, "mse float32 1e3 t=1")  # the first case starts
    start = p.cases_started
    assert p.eta(1, now=start + 10.0) == pytest.approx(30.0)  # 1 unit took 10 s, 3 units left
    assert p.eta(2, now=start + 20.0) == pytest.approx(20.0)
    assert p.eta(3, now=start + 40.0) == pytest.approx(0.0)
    assert progress.fmt_duration(75) == "1m15s" and progress.fmt_duration(7) == "7s"
    assert progress.fmt_duration(3700) == "1h01m"


def _case_rows(backend_spread=(1.0, 1.1), peer_spread=(10.0, 11.0), load=0.0, threads=2):
    base = {"loss": "mse", "params": "", "dtype": "float32", "size": "1e6", "n": 10**6, "threads": threads,
            "clock": "wall", "load_avg": load, "check": "ok", "gbps": 1.0, "frac_triad": None}
    ours = {**base, "backend": "cpp", "role": "backend", "median_s": backend_spread[0],
            "p20_s": backend_spread[0], "p80_s": backend_spread[1]}
    peer = {**base, "backend": "peer:numpy", "role": "peer", "median_s": peer_spread[0], "p20_s": peer_spread[0],
            "p80_s": peer_spread[1]}
    ours["speedup_vs_numpy"] = peer["median_s"] / ours["median_s"]
    return [ours, peer]


def test_steady_ratios_are_not_marked():
    rows = _case_rows()
    assert runner.mark_unreliable_ratios(rows, cores=2) == ""
    assert "unreliable_vs_numpy" not in rows[0]
    assert "10.0x" in report.format_rows(rows) and "10.0x?" not in report.format_rows(rows)


def test_ratios_under_load_or_spread_are_marked():
    rows = _case_rows(load=6.0)  # 2 threads of ours on 2 cores: 4 more runnable processes
    why = runner.mark_unreliable_ratios(rows, cores=2)
    assert "load" in why and "load average 6.0" in rows[0]["unreliable_vs_numpy"]
    assert "10.0x?" in report.format_rows(rows)

    rows = _case_rows(peer_spread=(10.0, 40.0))  # a stalled peer: p80 = 4 p20
    why = runner.mark_unreliable_ratios(rows, cores=2)
    assert "spread" in why and "peer:numpy" in rows[0]["unreliable_vs_numpy"]

    rows = _case_rows(load=3.0)  # our own 2 threads and 1 --busy process: the machine is as asked
    assert runner.mark_unreliable_ratios(rows, cores=2, busy=1) == ""


def test_large_ratios_print_three_digits():
    assert report.fmt_ratio(1659.574) == "1660x"
    assert report.fmt_ratio(16.594) == "16.6x"
    assert report.fmt_ratio(1.5, unreliable=True) == "1.50x?"


def test_every_registered_loss_has_a_plot_family():
    families = {name: plot.loss_family(name) for name in REGISTRY}
    assert "other" not in families.values()
    assert families["mse"] == "regression" and families["cross_entropy"] == "multiclass classification"


def test_plot_draws_one_panel_per_family(tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib, which the test extra does not install")
    rows = []
    for loss, shapes in (("mse", ((1000,), (10**6,))), ("binary_cross_entropy_with_logits", ((1000,), (10**6,))),
                         ("cross_entropy", ((64, 1000), (1024, 1000)))):
        for backend in ("cpp", "peer:numpy"):
            for shape in shapes:
                n = 1
                for s in shape:
                    n *= s
                rows.append({"loss": loss, "backend": backend, "dtype": "float32", "threads": 2, "n": n,
                             "gbps": 1.0 + n / 1e5, "triad_gbps": 30.0})
    path = tmp_path / "plot.png"
    plot.plot(rows, str(path), PEERS)
    assert path.stat().st_size > 10_000
