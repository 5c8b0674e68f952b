"""The benchmark covers the registries: every registered loss with a gradient has a benchmark case whose data
fit the loss and a NumPy peer that agrees with the reference (or, for a loss with its own signature, a
benchmark module of its own), no peer table or case override names a loss that does not exist, the JAX and
scikit-learn peers have or leave out each case, the command line offers every backend and peer there is, and
--torch-module takes or refuses each of its options.
These fail, never skip: a loss added to the registry without a benchmark is a failure here."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from fusedloss import bench, cli
from fusedloss._spec import PRED_DOMAINS, REGISTRY, TARGET_DOMAINS
from fusedloss.backends import host_order
from fusedloss.bench import cases, custom, peers, plan

GRID_KINDS = tuple(cases.KIND_NDIM)  # the kinds the size grid of fusedloss.bench.cases covers


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_loss_has_a_bench_case(name):
    spec = REGISTRY[name]
    grid = [d.loss for d in bench.registered_case_defs()]
    if not spec.differentiable:
        assert name not in grid, f"{name} has no gradient to time, yet has a benchmark case"
        return
    if spec.kind not in GRID_KINDS:
        # a module of its own, or one for its whole kind that lists it
        module = next((m for m in (name, spec.kind) if importlib.util.find_spec(f"fusedloss.bench.{m}")), None)
        assert module is not None, (
            f"{name} ({spec.kind}) is not on the size grid and has no benchmark module fusedloss/bench/{name}.py "
            f"or fusedloss/bench/{spec.kind}.py")
        if module == spec.kind:
            assert name in importlib.import_module(f"fusedloss.bench.{module}").LOSSES, (
                f"fusedloss/bench/{module}.py does not time {name}")
        return
    assert name in grid, f"{name} is registered with a gradient but has no benchmark case (fusedloss.bench.cases)"
    d = bench.case_def(name)
    assert d.kind == spec.kind
    shape = (64,) if d.kind == "elementwise" else (8, 5)
    case = bench.get_case(name, "float64", shape, threads=1)
    pred, target = bench.make_data(case)
    ref = bench.reference(case, pred, target)  # the data lie in the loss's domains: a finite value and gradient
    assert np.isfinite(ref.value) and np.all(np.isfinite(ref.grad)), f"{name}: the benchmark data leave its domain"
    # the regression guard measures every backend against the NumPy peer, so each case has one, and it is right
    assert name in bench.NUMPY_PEER, f"{name} has no NumPy peer (fusedloss.bench.peers.NUMPY_PEER)"
    peer = bench.make_contestant("peer:numpy", case, pred, target)
    ok, text, _, _ = bench.check_result(case, *peer.result(peer.run()), ref)
    assert ok, f"{name}: the NumPy peer disagrees with the reference: {text}"


def test_custom_bench_losses_get_a_case_and_the_numpy_peer_of_their_twin():
    """The losses ``fusedloss bench`` defines on request. The test removes the ones it defined: a user's loss left in
    the registry would show in the tests that go through every registered loss later in this worker."""
    from fusedloss._losses import LOSSES

    added = [name for name in custom.DEFINITIONS if name not in REGISTRY]
    try:
        for name, (_, _, builtin) in custom.DEFINITIONS.items():
            custom.ensure(name)
            assert name in REGISTRY and not REGISTRY[name].builtin
            assert bench.case_def(name) is not None
            assert builtin in REGISTRY
            assert bench.NUMPY_PEER[name] == bench.NUMPY_PEER[builtin]
    finally:
        for name in added:
            LOSSES[name].unregister()
    assert not [name for name in added if name in REGISTRY]


@pytest.mark.parametrize("peer", bench.PEERS)
def test_peer_tables_name_only_registered_losses(peer):
    stale = [loss for loss in bench.PEER_LOSSES[peer] if loss not in REGISTRY and loss not in custom.DEFINITIONS]
    assert not stale, f"the {peer} peer table names losses that are not registered: {stale}"


@pytest.mark.parametrize("peer, left_out", [("jax", peers.JAX_LEFT_OUT), ("sklearn", peers.SKLEARN_LEFT_OUT)])
def test_selective_peer_tables_map_or_leave_out_every_case(peer, left_out):
    """The JAX and scikit-learn peers time a selection (the registry records no twins of theirs): each registered
    loss with a benchmark case is in the peer's table or left out by name, and an entry models only parameters
    the loss has (another name would fail only when a benchmark reaches it)."""
    table = bench.PEER_LOSSES[peer]
    grid = {n for n, s in REGISTRY.items() if s.builtin and s.differentiable and s.kind in GRID_KINDS}
    both = sorted(left_out & set(table))
    assert not both, f"the {peer} peer both has and leaves out {both}"
    stale = sorted(left_out - grid)
    assert not stale, f"the {peer} peer leaves out losses without a benchmark case: {stale}"
    missing = sorted(grid - set(table) - left_out)
    assert not missing, (f"{missing}: neither in the {peer} peer table nor left out "
                         f"(fusedloss.bench.peers.{peer.upper()}_PEER / {peer.upper()}_LEFT_OUT)")
    for loss, (modeled, *_) in table.items():
        unknown = sorted(set(modeled) - set(REGISTRY[loss].param_names))
        assert not unknown, f"the {peer} peer of {loss} models parameters {loss} does not have: {unknown}"

def test_case_overrides_name_only_registered_losses():
    stale = [loss for loss in bench.CASE_DEFS if loss not in REGISTRY]
    assert not stale, f"fusedloss.bench.cases.CASE_DEFS names losses that are not registered: {stale}"
    for loss, d in bench.CASE_DEFS.items():
        assert d.kind == REGISTRY[loss].kind, f"{loss}: case kind {d.kind}, registered kind {REGISTRY[loss].kind}"


def test_bench_help_offers_every_host_backend_and_peer(capsys):
    assert cli.main(["bench", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    assert f"our backends: {', '.join(host_order())}" in text
    assert f"peers: {', '.join(bench.PEERS)}" in text


def test_every_domain_has_bench_data():
    """A loss without a case entry gets data drawn from its registered domains: each domain has a draw."""
    assert set(cases.PRED_DATA) == set(PRED_DOMAINS), "fusedloss.bench.cases.PRED_DATA: one entry per pred domain"
    assert set(cases.TARGET_DATA) == set(TARGET_DOMAINS), (
        "fusedloss.bench.cases.TARGET_DATA: one entry per target domain")


def test_every_size_form_is_described():
    assert set(plan.NDIM) == set(GRID_KINDS)
    assert {plan.NDIM[k] for k in GRID_KINDS} <= set(plan.FORM), "fusedloss.bench.plan.FORM: a size form per ndim"


@pytest.mark.parametrize("name", [n for n, s in REGISTRY.items()
                                  if s.torch_name and s.differentiable and s.kind in GRID_KINDS])
def test_every_torch_twin_is_a_torch_peer(name):
    """A loss with a torch.nn.functional twin (``LossSpec.torch_name``) is timed against it."""
    assert name in bench.TORCH_PEER, (
        f"{name} has the torch twin {REGISTRY[name].torch_name} but no torch peer (fusedloss.bench.peers.TORCH_PEER)")


def test_every_bench_option_is_taken_or_refused_by_torch_module():
    """Each option of ``fusedloss bench`` is one that --torch-module uses or one it refuses (never ignores)."""
    options = set(vars(cli.build_parser().parse_args(["bench"]))) - {"command", "func"}
    # the mode itself; --clock, refused there unless wall (checked apart); --progress, which every mode takes
    apart = {"torch_module", "clock", "progress"}
    taken, refused = set(plan.TORCH_MODULE_OPTIONS), set(plan._NOT_FOR_TORCH_MODULE)
    assert not taken & refused, f"--torch-module both takes and refuses {sorted(taken & refused)}"
    missing = options - taken - refused - apart
    assert not missing, (f"fusedloss bench options neither taken nor refused by --torch-module: {sorted(missing)} "
                         "(fusedloss.bench.plan.TORCH_MODULE_OPTIONS / _NOT_FOR_TORCH_MODULE)")
    stale = (taken | refused) - options
    assert not stale, f"fusedloss.bench.plan names options that fusedloss bench does not have: {sorted(stale)}"
