"""fusedloss.metrics against scikit-learn: the same signatures, values (1e-12 relative in float64), warnings and
errors, on random data, with weights and multioutput, at the edges, and inside make_scorer / cross_val_score."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

import fusedloss.metrics as fm

skm = pytest.importorskip("sklearn.metrics", reason="scikit-learn is not installed (pip install scikit-learn)")

RTOL = 1e-12
# scikit-learn's metrics (the module's other names are fusedloss's own metrics of logits: test_metrics_fused.py,
# test_metrics_binary.py)
NAMES = [n for n in fm.__all__
         if n not in ("UndefinedMetricWarning", "MetricState", "Metrics", "logit_metrics", "merge_metric_states",
                      "BinaryMetricState", "binary_logit_metrics")]


def _same(ours, theirs, rtol=RTOL):
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=0)


def _both(name, *args, **kwargs):
    with warnings.catch_warnings(record=True) as ours_w:
        warnings.simplefilter("always")
        ours = getattr(fm, name)(*args, **kwargs)
    with warnings.catch_warnings(record=True) as theirs_w:
        warnings.simplefilter("always")
        theirs = getattr(skm, name)(*args, **kwargs)
    return ours, theirs, ours_w, theirs_w


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    d = {
        "y": rng.normal(size=n) * 3, "p": rng.normal(size=n) * 3, "Ypos": rng.gamma(2.0, 1.5, (n, 3)),
        "counts": rng.poisson(1.5, n).astype(np.float64), "positive": rng.gamma(2.0, 1.5, n),
        "mu": rng.uniform(0.2, 4.0, n), "w": rng.uniform(0.0, 2.0, n),
        "Y": rng.normal(size=(n, 3)), "P": rng.normal(size=(n, 3)),
        "binary": rng.integers(0, 2, n), "proba": rng.uniform(size=n),
        "classes": rng.integers(0, 4, n), "proba4": rng.dirichlet(np.ones(4), n),
        "decision": rng.normal(size=n), "decision4": rng.normal(size=(n, 4)), "guess": rng.integers(0, 4, n),
    }
    d["classes"][:4] = np.arange(4)[:n]  # every class present (where there are 4 samples)
    d["binary"][:2] = (0, 1)[:n]
    return d


def _cases(d):
    """(name, args, kwargs) for every metric over its parameter variants."""
    out = [
        ("mean_squared_error", (d["y"], d["p"]), {}),
        ("mean_absolute_error", (d["y"], d["p"]), {}),
        ("root_mean_squared_error", (d["y"], d["p"]), {}),
        ("mean_absolute_percentage_error", (d["y"], d["p"]), {}),
        ("mean_squared_log_error", (d["counts"], d["mu"]), {}),
        ("mean_squared_log_error", (0.9 * np.tanh(d["p"]), 0.9 * np.tanh(d["y"])), {}),  # values in (-1, 0) too
        ("root_mean_squared_log_error", (d["counts"], d["mu"]), {}),
        ("d2_absolute_error_score", (d["y"], d["p"]), {}),
        ("mean_poisson_deviance", (d["counts"], d["mu"]), {}),
        ("mean_gamma_deviance", (d["positive"], d["mu"]), {}),
        ("log_loss", (d["binary"], d["proba"]), {}),
        ("log_loss", (d["classes"], d["proba4"]), {}),
        ("log_loss", (d["binary"], d["proba"]), {"normalize": False}),
        ("d2_log_loss_score", (d["binary"], d["proba"]), {}),
        ("d2_log_loss_score", (d["classes"], d["proba4"]), {}),
        ("hinge_loss", (d["binary"], d["decision"]), {}),
        ("hinge_loss", (d["classes"], d["decision4"]), {}),
        ("zero_one_loss", (d["classes"], d["guess"]), {}),
        ("zero_one_loss", (d["classes"], d["guess"]), {"normalize": False}),
    ]
    for alpha in (0.0, 0.1, 0.5, 0.9, 1.0):
        out.append(("mean_pinball_loss", (d["y"], d["p"]), {"alpha": alpha}))
        out.append(("d2_pinball_score", (d["y"], d["p"]), {"alpha": alpha}))
    for power in (-1.0, 0, 1, 1.2, 1.5, 2, 3):
        y = d["positive"] if power >= 2 else (d["counts"] if power >= 1 else d["y"])
        pred = d["mu"] if power != 0 else d["p"]
        out.append(("mean_tweedie_deviance", (y, pred), {"power": power}))
        out.append(("d2_tweedie_score", (y, pred), {"power": power}))
    for name in ("mean_squared_error", "mean_absolute_error", "mean_pinball_loss", "d2_pinball_score",
                 "d2_absolute_error_score", "root_mean_squared_error", "mean_absolute_percentage_error",
                 "mean_squared_log_error", "root_mean_squared_log_error"):
        y, p = (d["Ypos"], np.abs(d["P"])) if "log" in name else (d["Y"], d["P"])
        for multioutput in ("raw_values", "uniform_average", [0.2, 0.3, 0.5], np.array([1.0, 0.0, 2.0])):
            out.append((name, (y, p), {"multioutput": multioutput}))
    return out


_CASES = _cases(_data(500))


def test_every_metric_is_covered_and_named_as_in_scikit_learn():
    assert {c[0] for c in _CASES} == set(NAMES)
    for name in NAMES:
        assert hasattr(skm, name), name


@pytest.mark.parametrize("name", NAMES)
def test_signatures_are_scikit_learns(name):
    """The parameter names, kinds and defaults of the installed scikit-learn."""
    ours = inspect.signature(getattr(fm, name)).parameters
    theirs = inspect.signature(getattr(skm, name)).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == \
        [(p.name, p.kind, p.default) for p in theirs.values()]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", range(len(_CASES)), ids=lambda i: f"{_CASES[i][0]}-{_CASES[i][2]}")
def test_equal_to_scikit_learn(case, weighted):
    name, args, kwargs = _CASES[case]
    if weighted:
        kwargs = dict(kwargs, sample_weight=np.random.default_rng(7).uniform(0.0, 2.0, len(args[0])))
    ours, theirs, _, _ = _both(name, *args, **kwargs)
    assert type(ours) is type(theirs) or (isinstance(ours, float) and isinstance(theirs, float))
    _same(ours, theirs)


@pytest.mark.parametrize("n", [1, 2, 3, 17, 1031])
def test_sizes_including_a_single_sample(n):
    d = _data(n, seed=n)
    for name, args, kwargs in _cases(d):
        if name in ("log_loss", "d2_log_loss_score", "hinge_loss") and n < 4 and np.ndim(args[1]) == 2:
            continue  # a multiclass target needs every class present
        try:
            ours, theirs, ours_w, theirs_w = _both(name, *args, **kwargs)
        except (ValueError, ZeroDivisionError) as e:  # what scikit-learn refuses, we must refuse too
            with pytest.raises(type(e)):
                getattr(fm, name)(*args, **kwargs)
            continue
        if np.isnan(np.asarray(theirs, dtype=float)).all():
            assert np.isnan(np.asarray(ours, dtype=float)).all()
        else:
            _same(ours, theirs)
        assert [w.category.__name__ for w in ours_w] == [w.category.__name__ for w in theirs_w], name


def test_d2_scores_of_one_sample_warn_and_give_nan():
    for name, args in [("d2_tweedie_score", ([1.0], [2.0])), ("d2_pinball_score", ([1.0], [2.0])),
                       ("d2_absolute_error_score", ([1.0], [2.0])), ("d2_log_loss_score", ([1], [0.3]))]:
        with pytest.warns(fm.UndefinedMetricWarning, match="less than two samples"):
            assert np.isnan(getattr(fm, name)(*args))


def test_undefined_metric_warning_is_caught_as_scikit_learns():
    """With scikit-learn imported, the warning is an instance of both classes: a filter or pytest.warns written
    for scikit-learn's metrics catches fusedloss's, and ours still catches it; without it, only ours exists."""
    exceptions = pytest.importorskip("sklearn.exceptions")
    with pytest.warns(exceptions.UndefinedMetricWarning, match="less than two samples"):
        fm.d2_tweedie_score([1.0], [2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", exceptions.UndefinedMetricWarning)
        with pytest.raises(fm.UndefinedMetricWarning):
            fm.d2_pinball_score([1.0], [2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # anything the next filter does not ignore would raise
        warnings.simplefilter("ignore", exceptions.UndefinedMetricWarning)
        assert np.isnan(fm.d2_absolute_error_score([1.0], [2.0]))


def test_undefined_metric_warning_without_scikit_learn_imported():
    from conftest import run_python

    r = run_python("import sys, warnings\n"
                   "import fusedloss.metrics as fm\n"
                   "with warnings.catch_warnings(record=True) as w:\n"
                   "    warnings.simplefilter('always')\n"
                   "    fm.d2_tweedie_score([1.0], [2.0])\n"
                   "print(w[0].category is fm.UndefinedMetricWarning, 'sklearn' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "False"]


def test_edges_that_scikit_learn_defines():
    """Zero counts in the Poisson deviance, perfect predictions, constant targets (D^2's 0/0 conventions),
    weights with zeros and negative weights, probabilities of 0 and 1 (clipped), string and bool labels, labels=,
    the former name y_pred=, a label indicator y_true, float32 inputs."""
    zeros = np.array([0.0, 0.0, 3.0, 0.0])
    mu = np.array([0.5, 1.0, 2.0, 3.0])
    y = np.array([1.0, 2.0, 3.0, 4.0])
    cases = [
        ("mean_poisson_deviance", (zeros, mu), {}),
        ("mean_tweedie_deviance", (zeros, mu), {"power": 1.5}),
        ("d2_tweedie_score", (zeros, mu), {"power": 1}),
        ("mean_squared_error", (y, y), {}),
        ("d2_absolute_error_score", (y, y), {}),
        ("d2_absolute_error_score", (np.ones(4), y), {}),
        ("d2_pinball_score", (np.ones(4), np.ones(4)), {"alpha": 0.3}),
        ("mean_squared_error", (y, mu), {"sample_weight": np.array([0.0, 1.0, 0.0, 2.0])}),
        ("mean_absolute_error", (y, mu), {"sample_weight": np.array([-1.0, 1.0, 0.5, 2.0])}),
        ("d2_pinball_score", (y, mu), {"sample_weight": np.array([0.0, 1.0, 0.0, 2.0]), "alpha": 0.25}),
        ("d2_pinball_score", (np.array([3.0, 1, 2, 2, 5]), np.arange(5.0)),
         {"sample_weight": np.array([1.0, 0, 1, 1, 0])}),
        ("hinge_loss", ([1, 1, 1], [0.5, -2.0, 3.0]), {}),
        ("hinge_loss", ([-1, 1, 1], [0.5, -2.0, 3.0]), {"sample_weight": [-1.0, 2.0, 1.0]}),
        ("log_loss", ([0, 1, 1, 0], [0.0, 1.0, 0.0, 1.0]), {}),
        ("log_loss", (["spam", "ham", "ham", "spam"], [[0.1, 0.9], [0.9, 0.1], [0.8, 0.2], [0.35, 0.65]]), {}),
        ("log_loss", ([True, False, True], [0.8, 0.3, 0.4]), {}),
        ("log_loss", ([1, 0, 1], [[0.5, 0.5, 0.0], [0.2, 0.8, 0.0], [0.3, 0.6, 0.1]]), {"labels": [0, 1, 2]}),
        ("log_loss", ([1, 0, 1], [[0.5, 0.5, 0.0], [0.2, 0.8, 0.0], [0.3, 0.6, 0.1]]), {"labels": [2, 1, 0]}),
        ("log_loss", ([0, 1, 1], [[0.4, 0.5], [0.2, 0.7], [0.5, 0.5]]), {}),  # rows not summing to 1: a warning
        ("log_loss", (np.array([[0, 1], [1, 0], [1, 1]]), np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])), {}),
        ("d2_log_loss_score", (["a", "b", "c", "a"], np.full((4, 3), 1 / 3)), {}),
        ("zero_one_loss", (["a", "b", "c"], ["a", "c", "c"]), {"sample_weight": [1.0, 2.0, 0.5]}),
        ("zero_one_loss", (np.array([[0, 1], [1, 1]]), np.ones((2, 2))), {}),
        ("zero_one_loss", ([1.0, 2.0, 3.0], [1, 2, 2]), {"normalize": False}),
        ("mean_squared_error", (y.astype(np.float32), mu.astype(np.float32)), {}),
        ("mean_pinball_loss", (y.reshape(-1, 1), mu.reshape(-1, 1)), {"multioutput": "raw_values"}),
        ("mean_squared_error", (list(y), list(mu)), {}),
        ("mean_absolute_error", ([1, 2, 3], [2, 2, 2]), {}),
        ("mean_absolute_percentage_error", (np.array([0.0, 1.0, -2.0, 0.0]), mu), {}),  # 0 targets: a huge value
        ("mean_absolute_percentage_error", (y.astype(np.float32), mu.astype(np.float32)), {}),
        ("mean_squared_log_error", (np.array([-0.5, 0.0, 3.0, 1e6]), mu), {}),
        ("root_mean_squared_log_error", (y, y), {}),
        ("root_mean_squared_error", (y, mu), {"sample_weight": np.array([0.0, 1.0, 0.0, 2.0])}),
    ]
    for name, args, kwargs in cases:
        ours, theirs, ours_w, theirs_w = _both(name, *args, **kwargs)
        rtol = 1e-6 if np.asarray(args[0]).dtype == np.float32 else RTOL
        _same(ours, theirs, rtol)
        assert [w.category.__name__ for w in ours_w] == [w.category.__name__ for w in theirs_w], (name, args)
    with pytest.warns(UserWarning, match="ordered lexicographically"):
        fm.log_loss([1, 0], [[0.3, 0.7], [0.6, 0.4]], labels=[1, 0])
    with pytest.warns(FutureWarning, match="`y_pred` was renamed to `y_proba`"):
        assert fm.log_loss([1, 0, 1], y_pred=[0.6, 0.3, 0.4]) == skm.log_loss([1, 0, 1], [0.6, 0.3, 0.4])


@pytest.mark.parametrize("name", ["log_loss", "d2_log_loss_score"])
def test_the_former_name_y_pred_warns_as_in_scikit_learn(name):
    """scikit-learn renamed y_pred to y_proba and warns (FutureWarning) when the old name is used."""
    args = ([1, 0, 1, 0],)
    kwargs = {"y_pred": [0.6, 0.3, 0.4, 0.2]}
    ours, theirs, ours_w, theirs_w = _both(name, *args, **kwargs)
    _same(ours, theirs)
    assert [w.category for w in theirs_w] == [FutureWarning]
    assert [w.category for w in ours_w] == [FutureWarning]
    assert "`y_pred` was renamed to `y_proba`" in str(ours_w[0].message)
    _, _, ours_w, theirs_w = _both(name, *args, y_proba=kwargs["y_pred"])  # the new name: no warning
    assert ours_w == [] and theirs_w == []


@pytest.mark.parametrize("name", ["log_loss", "d2_log_loss_score"])
def test_missing_probabilities_raise_what_scikit_learn_raises(name):
    """No y_proba (nor y_pred): scikit-learn raises a ValueError from log_loss and a TypeError from
    d2_log_loss_score; fusedloss's error is both, and says what is missing."""
    with pytest.raises((ValueError, TypeError)) as theirs:
        getattr(skm, name)([0, 1, 1])
    with pytest.raises(type(theirs.value), match="y_proba is None"):
        getattr(fm, name)([0, 1, 1])


_MULTIOUTPUT = ["mean_squared_error", "mean_absolute_error", "root_mean_squared_error",
                "mean_absolute_percentage_error", "mean_squared_log_error", "root_mean_squared_log_error",
                "mean_pinball_loss", "d2_pinball_score", "d2_absolute_error_score"]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("name", [n for n in _MULTIOUTPUT if not n.startswith("d2_")])
def test_raw_values_keep_the_dtype_of_the_data(name, weighted):
    """multioutput='raw_values' gives scikit-learn's dtype: float32 for float32 data (float64 where the weights
    are float64), float64 otherwise."""
    d = _data(50, seed=5)
    for dtype in (np.float32, np.float64):
        y, p = d["Ypos"].astype(dtype), (d["Ypos"][::-1] + 0.1).astype(dtype)
        kwargs = {"multioutput": "raw_values"}
        if weighted:
            kwargs["sample_weight"] = d["w"].astype(dtype)
        ours, theirs, _, _ = _both(name, y, p, **kwargs)
        assert ours.dtype == theirs.dtype == dtype
        _same(ours, theirs, rtol=1e-5 if dtype == np.float32 else RTOL)
        if dtype == np.float32:  # float64 weights make the computation float64, in both
            ours, theirs, _, _ = _both(name, y, p, multioutput="raw_values", sample_weight=d["w"])
            assert ours.dtype == theirs.dtype == np.float64


def test_root_mean_squared_error_takes_output_weights_for_a_single_output():
    """scikit-learn's root_mean_squared_error averages the per-output roots with np.average, so weights of a
    single output are taken (its squared and logarithmic errors refuse them)."""
    y, p = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.0, 5.0])
    for multioutput in ([1.0], np.array([2.5]), (3,)):
        for args in ((y, p), (y.reshape(-1, 1), p.reshape(-1, 1))):
            ours, theirs, _, _ = _both("root_mean_squared_error", *args, multioutput=multioutput)
            assert isinstance(ours, float)
            _same(ours, theirs)
    for name in ("mean_squared_error", "root_mean_squared_log_error"):
        with pytest.raises(ValueError, match="useful only"):
            getattr(skm, name)(y, p, multioutput=[1.0])
        with pytest.raises(ValueError, match="useful only"):
            getattr(fm, name)(y, p, multioutput=[1.0])
    Y, P = np.ones((3, 2)), np.zeros((3, 2))
    for weights, error in (([1.0, 2.0, 3.0], TypeError), ([0.0, 0.0], ZeroDivisionError)):
        with pytest.raises(error):
            skm.root_mean_squared_error(Y, P, multioutput=weights)
        with pytest.raises(error):
            fm.root_mean_squared_error(Y, P, multioutput=weights)


def _parameter_cases():
    """Values of alpha, power, normalize and multioutput where scikit-learn's parameter validation differs from
    a plain check: a bool taken as a number, a number not taken as a bool, refusals of type and value alike."""
    y, p = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.5, 5.0])
    labels, proba = np.array([0, 1, 1, 0]), np.array([0.2, 0.7, 0.6, 0.4])
    out = []
    for value in (True, False, np.True_, "0.5", None, float("nan"), 1.5):
        out += [("mean_pinball_loss", (y, p), {"alpha": value}), ("d2_pinball_score", (y, p), {"alpha": value})]
    for value in (True, False, 0.5, "1", None, float("inf"), float("nan")):
        out += [("mean_tweedie_deviance", (y, p), {"power": value}), ("d2_tweedie_score", (y, p), {"power": value})]
    for value in (1, 0, 1.0, None, "True"):
        out += [("log_loss", (labels, proba), {"normalize": value}),
                ("zero_one_loss", (labels, labels[::-1]), {"normalize": value})]
    for value in (None, 1.0, "variance_weighted"):
        out += [(name, (y, p), {"multioutput": value}) for name in _MULTIOUTPUT]
    return out


_PARAMETER_CASES = _parameter_cases()


@pytest.mark.parametrize("case", range(len(_PARAMETER_CASES)),
                         ids=lambda i: f"{_PARAMETER_CASES[i][0]}-{_PARAMETER_CASES[i][2]}")
def test_parameter_values_are_taken_and_refused_as_in_scikit_learn(case):
    """What scikit-learn's parameter validation takes (a bool is a number) gives scikit-learn's value; what it
    refuses (normalize must be a bool) raises an error that is both a ValueError and a TypeError, naming the
    parameter."""
    from sklearn.utils._param_validation import InvalidParameterError

    name, args, kwargs = _PARAMETER_CASES[case]
    try:
        theirs = getattr(skm, name)(*args, **kwargs)
    except InvalidParameterError:
        with pytest.raises(ValueError) as raised:
            getattr(fm, name)(*args, **kwargs)
        assert isinstance(raised.value, TypeError)
        assert list(kwargs)[0] in str(raised.value)
        return
    _same(getattr(fm, name)(*args, **kwargs), theirs)


def test_float32_agrees_to_float32_precision():
    """scikit-learn sums float32 data in float32; fusedloss accumulates in float64 (the closer value)."""
    d = _data(10_000, seed=3)
    y, p = d["y"].astype(np.float32), d["p"].astype(np.float32)
    exact = float(np.mean((d["y"].astype(np.float32).astype(np.float64) - p.astype(np.float64)) ** 2))
    ours = fm.mean_squared_error(y, p)
    theirs = skm.mean_squared_error(y, p)
    assert abs(ours - theirs) <= 1e-5 * theirs
    assert abs(ours - exact) <= abs(theirs - exact) + 1e-7 * exact


@pytest.mark.parametrize("call, message", [
    (lambda: fm.mean_squared_error([1.0, 2.0], [1.0, 2.0, 3.0]), "inconsistent numbers of samples"),
    (lambda: fm.mean_squared_error([1.0, np.nan], [1.0, 2.0]), "y_true contains NaN"),
    (lambda: fm.mean_absolute_error([1.0, 2.0], [1.0, np.inf]), "y_pred contains infinity"),
    (lambda: fm.mean_squared_error([], []), "empty"),
    (lambda: fm.mean_squared_error(np.zeros((2, 2, 2)), np.zeros((2, 2, 2))), "1-D or 2-D"),
    (lambda: fm.mean_squared_error(["a", "b"], [1.0, 2.0]), "y_true must be numeric"),
    (lambda: fm.mean_squared_error([1.0, 2.0], [1.0, 2.0], sample_weight=[0.0, 0.0]), "at least one non-zero"),
    (lambda: fm.mean_squared_error([1.0, 2.0], [1.0, 2.0], sample_weight=[1.0]), "inconsistent numbers"),
    (lambda: fm.mean_squared_error([1.0, 2.0], [1.0, 2.0], sample_weight=[np.nan, 1.0]), "sample_weight contains"),
    (lambda: fm.mean_squared_error(np.ones((2, 2)), np.ones((2, 3))), "different numbers of outputs"),
    (lambda: fm.mean_squared_error([1.0], [1.0], multioutput="variance_weighted"), "multioutput must be"),
    (lambda: fm.mean_squared_error([1.0], [1.0], multioutput=[0.5]), "useful only with several outputs"),
    (lambda: fm.mean_squared_error(np.ones((2, 2)), np.ones((2, 2)), multioutput=[1.0]), "one weight per output"),
    (lambda: fm.mean_pinball_loss([1.0], [1.0], alpha=1.5), "alpha must be a number in \\[0, 1\\]"),
    (lambda: fm.mean_tweedie_deviance([1.0], [1.0], power=0.5), "power must be a number in"),
    (lambda: fm.mean_poisson_deviance([1.0, 2.0], [0.0, 1.0]), "strictly positive y_pred; y_pred has 0.0"),
    (lambda: fm.mean_poisson_deviance([-1.0, 2.0], [1.0, 1.0]), "non-negative y"),
    (lambda: fm.mean_gamma_deviance([0.0, 2.0], [1.0, 1.0]), "strictly positive y and y_pred; y_true has 0.0"),
    (lambda: fm.mean_tweedie_deviance(np.ones((2, 2)), np.ones((2, 2)), power=1), "several outputs"),
    (lambda: fm.log_loss([1, 1], [0.5, 0.2]), "only one label"),
    (lambda: fm.log_loss([1, 0], [0.5, 1.2]), "greater than 1"),
    (lambda: fm.log_loss([1, 0], [0.5, -0.2]), "lower than 0"),
    (lambda: fm.log_loss([1, 0, 2], [0.5, 0.2, 0.3]), "different numbers of classes: 3 vs 2"),
    (lambda: fm.log_loss([1, 0, 5], np.full((3, 3), 1 / 3), labels=[0, 1, 2]), "not belonging to the passed labels"),
    (lambda: fm.log_loss([1, 0, 1], np.full((3, 3), 1 / 3), labels=[0, 1]), "number of classes in labels"),
    (lambda: fm.log_loss([0.5, 1.0], [0.5, 0.2]), "continuous values"),
    (lambda: fm.log_loss([1, 0], [0.5, 0.2], y_pred=[0.1, 0.2]), "not both"),
    (lambda: fm.hinge_loss([0, 1, 2], [0.2, 0.3, 0.4]), "must be \\(n_samples, n_classes\\)"),
    (lambda: fm.hinge_loss([0, 1, 1], np.zeros((3, 2))), "must be 1-D for a binary target"),
    (lambda: fm.hinge_loss([0, 1, 2], np.zeros((3, 4))), "include all labels"),
    (lambda: fm.zero_one_loss([1.0, 2.5], [1, 2]), "continuous values"),
    (lambda: fm.zero_one_loss(["a", "b"], [1, 2]), "mix label types"),
    (lambda: fm.mean_squared_log_error(np.array([1.0, -1.0]), np.array([1.0, 2.0])),
     "Mean Squared Logarithmic Error cannot be used when targets contain values less than or equal to -1"),
    (lambda: fm.root_mean_squared_log_error([1.0, 2.0], [1.0, -3.0]), "^Root Mean Squared Logarithmic Error"),
    (lambda: fm.mean_squared_log_error(np.ones((2, 2)), -2 * np.ones((2, 2))), "less than or equal to -1"),
    (lambda: fm.mean_absolute_percentage_error([1.0, np.nan], [1.0, 2.0]), "y_true contains NaN"),
    (lambda: fm.mean_squared_error(np.array([1 + 5j, 2.0]), [1.0, 2.0]), "y_true: Complex data not supported"),
    (lambda: fm.mean_absolute_error([1.0, 2.0], np.array([1.0, 2j])), "y_pred: Complex data not supported"),
])
def test_errors_name_the_problem_where_scikit_learn_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_scikit_learns_other_refusals():
    """Weights that sum to zero (of both signs) divide by zero in scikit-learn's average; several outputs are
    not a Tweedie deviance at any power."""
    w = np.array([1.0, -1.0, 0.0])
    for fn in (fm.mean_squared_error, fm.mean_absolute_error, fm.zero_one_loss):
        with pytest.raises(ZeroDivisionError, match="Weights sum to zero"):
            fn(np.array([1, 2, 3]), np.array([1, 2, 2]), sample_weight=w)
    for power in (0, 1.5):
        with pytest.raises(ValueError, match="several outputs"):
            fm.mean_tweedie_deviance(np.ones((3, 2)), np.ones((3, 2)), power=power)
    with pytest.raises(ValueError, match="power must be"):
        fm.mean_tweedie_deviance([1.0], [1.0], power=float("inf"))


def test_device_arrays_are_refused_with_the_fix():
    class DeviceArray:  # what CuPy and torch CUDA tensors look like from here
        __cuda_array_interface__ = {"shape": (2,), "typestr": "<f8", "data": (0, False), "version": 3}

    with pytest.raises(TypeError, match="device array .* copy it to the host"):
        fm.mean_squared_error(DeviceArray(), np.ones(2))


def test_the_fused_kernel_runs_the_common_case(monkeypatch):
    """1-D float arrays take the kernel; anything unusual (lists, 2-D, negative weights) the checked path."""
    import fusedloss._sklearn_metrics as implementation
    import fusedloss.metrics as metrics

    calls = []
    real = dict(implementation.LOSSES)

    class Spy:
        def __init__(self, name):
            self.name = name

        def __call__(self, *a, **k):
            calls.append(self.name)
            return real[self.name](*a, **k)

    monkeypatch.setattr(implementation, "LOSSES", {k: Spy(k) for k in real})
    y, p = np.linspace(0, 1, 100), np.linspace(1, 0, 100)
    metrics.mean_squared_error(y, p)
    metrics.mean_absolute_error(y, p, sample_weight=np.ones(100))
    metrics.mean_pinball_loss(y, p, alpha=0.3)
    metrics.hinge_loss((y > 0.5).astype(int), p)
    metrics.mean_absolute_percentage_error(y, p)
    metrics.mean_squared_log_error(y, p)
    metrics.root_mean_squared_error(y, p)
    metrics.root_mean_squared_log_error(y, p, sample_weight=np.ones(100))
    assert calls == ["mse", "mae", "quantile", "hinge", "mape", "msle", "mse", "msle"]
    calls.clear()
    metrics.mean_squared_error(y, p, sample_weight=-np.ones(100))
    metrics.mean_squared_error(list(y), p)
    with pytest.raises(ValueError, match="less than or equal to -1"):  # out of the domain: the checked path
        metrics.mean_squared_log_error(y - 2, p)
    assert calls == []
    with pytest.raises(ValueError, match="y_pred contains NaN"):  # non-finite data leaves the kernel for the checks
        metrics.mean_squared_error(y, np.full(100, np.nan))


def test_make_scorer_in_cross_val_score():
    from sklearn.datasets import make_classification, make_regression
    from sklearn.linear_model import LogisticRegression, PoissonRegressor, Ridge
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import KFold, cross_val_score

    X, y = make_regression(n_samples=120, n_features=5, noise=5.0, random_state=0)
    cv = KFold(4, shuffle=True, random_state=0)
    for name in ("mean_squared_error", "mean_absolute_error", "d2_absolute_error_score"):
        greater = name.startswith("d2")
        ours = cross_val_score(Ridge(), X, y, cv=cv, scoring=make_scorer(getattr(fm, name), greater_is_better=greater))
        theirs = cross_val_score(Ridge(), X, y, cv=cv,
                                 scoring=make_scorer(getattr(skm, name), greater_is_better=greater))
        _same(ours, theirs)
    ours = cross_val_score(Ridge(), X, y, cv=cv,
                           scoring=make_scorer(fm.mean_pinball_loss, greater_is_better=False, alpha=0.9))
    _same(ours, cross_val_score(Ridge(), X, y, cv=cv,
                                scoring=make_scorer(skm.mean_pinball_loss, greater_is_better=False, alpha=0.9)))

    counts = np.random.default_rng(0).poisson(np.exp(X[:, 0] / 3))
    scorer = make_scorer(fm.mean_poisson_deviance, greater_is_better=False)
    _same(cross_val_score(PoissonRegressor(), X, counts, cv=cv, scoring=scorer),
          cross_val_score(PoissonRegressor(), X, counts, cv=cv, scoring="neg_mean_poisson_deviance"))

    Xc, yc = make_classification(n_samples=150, n_features=6, n_informative=4, n_classes=3, random_state=0)
    model = LogisticRegression(max_iter=500)
    scorer = make_scorer(fm.log_loss, greater_is_better=False, response_method="predict_proba")
    _same(cross_val_score(model, Xc, yc, cv=cv, scoring=scorer),
          cross_val_score(model, Xc, yc, cv=cv, scoring="neg_log_loss"))
    scorer = make_scorer(fm.zero_one_loss, greater_is_better=False)
    _same(cross_val_score(model, Xc, yc, cv=cv, scoring=scorer),
          -1 + cross_val_score(model, Xc, yc, cv=cv, scoring="accuracy"))
