"""fusedloss.boosting as a user meets it: the README's snippets run as written, validation sets start from the
training set's initial score (so the reported metric is the true loss), and scikit-learn-style classifiers give
probabilities."""

from __future__ import annotations

import pathlib
import pickle
import re
import warnings

import numpy as np
import pytest

import fusedloss as fl
import fusedloss.boosting as fb

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _lightgbm():
    return pytest.importorskip("lightgbm", reason="LightGBM is not installed (pip install lightgbm)")


def _xgboost():
    return pytest.importorskip("xgboost", reason="XGBoost is not installed (pip install xgboost)")


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(title)
    end = text.find("\n### ", start + len(title))
    return text[start:end if end != -1 else None]


def _snippets(title: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", _section(title), flags=re.S)


def _binary(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=n) > 1.8).astype(np.float64)
    return X, y


def test_the_readme_boosting_snippets_run_as_written(capsys):
    """The code blocks of the README's boosting section, executed in order in one namespace (the second uses the
    first's data), and what they claim: the printed value is the last validation metric LightGBM reported."""
    _lightgbm()
    blocks = _snippets("### Gradient boosting")
    assert len(blocks) == 2 and "lightgbm_datasets" in blocks[0] and "predict_proba(X_test)[:, 1]" in blocks[1]
    namespace: dict = {}
    exec(compile(blocks[0], "README.md[boosting 1]", "exec"), namespace)
    printed = float(capsys.readouterr().out.strip().splitlines()[-1])
    ns = namespace
    assert ns["proba"].shape == (len(ns["X_test"]),) and np.all((ns["proba"] > 0) & (ns["proba"] < 1))
    reported = ns["booster"].best_score["valid_0"]["binary_focal"]  # the last round's (no early stopping)
    assert printed == pytest.approx(reported, rel=1e-12)
    exec(compile(blocks[1], "README.md[boosting 2]", "exec"), namespace)
    assert ns["proba"].shape == (len(ns["X_test"]),)
    assert set(np.unique(ns["labels"])) <= {0.0, 1.0}


def test_the_readme_metrics_snippet_runs_as_written():
    pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    (block,) = _snippets("### scikit-learn metrics")
    namespace: dict = {}
    exec(compile(block, "README.md[metrics]", "exec"), namespace)
    assert namespace["scores"].shape == (5,) and np.all(namespace["scores"] < 0)


@pytest.mark.parametrize("name, params", [("binary_focal", {"gamma": 2.0}),
                                          ("binary_cross_entropy_with_logits", {})])
@pytest.mark.parametrize("weighted", [False, True])
def test_lightgbm_reports_the_true_validation_loss(name, params, weighted):
    lgb = _lightgbm()
    X, y = _binary(3000, 0)
    Xv, yv = _binary(1000, 1)
    w = np.random.default_rng(2).uniform(0.5, 2.0, len(y)) if weighted else None
    wv = np.random.default_rng(3).uniform(0.5, 2.0, len(yv)) if weighted else None
    train, (valid,), init = fb.lightgbm_datasets(name, X, y, weight=w, valid_sets=[(Xv, yv, wv)], **params)
    assert init == pytest.approx(fb.initial_score(name, y, w, **params), rel=1e-12)
    history: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "validation set without init_score" warning here
        booster = lgb.train({"objective": fb.lightgbm_objective(name, **params), "verbose": -1, "num_threads": 1},
                            train, num_boost_round=15, valid_sets=[valid], feval=fb.lightgbm_metric(name, **params),
                            callbacks=[lgb.record_evaluation(history)])
    reported = history["valid_0"][name]
    wv32 = None if wv is None else wv.astype(np.float32).astype(np.float64)  # LightGBM keeps float32 weights
    true = getattr(fl, name)(booster.predict(Xv) + init, yv, sample_weight=wv32, **params)
    assert reported[-1] == pytest.approx(true, rel=1e-12)
    assert reported[-1] < reported[0]  # it trained


def test_a_validation_set_without_init_score_is_warned_about():
    """Built the natural way (init_score on the training set only), LightGBM scores the validation set from 0:
    the reported value is not the loss of the predictions, and the metric says so once."""
    lgb = _lightgbm()
    X, y = _binary(3000, 0)
    Xv, yv = _binary(1000, 1)
    init = fb.initial_score("binary_focal", y, gamma=2.0)
    train = lgb.Dataset(X, y, init_score=np.full(len(y), init))
    valid = lgb.Dataset(Xv, yv)
    history: dict = {}
    with pytest.warns(UserWarning, match="validation set has no init_score.*lightgbm_datasets") as record:
        booster = lgb.train({"objective": fb.lightgbm_objective("binary_focal", gamma=2.0), "verbose": -1,
                             "num_threads": 1}, train, num_boost_round=10, valid_sets=[valid],
                            feval=fb.lightgbm_metric("binary_focal", gamma=2.0),
                            callbacks=[lgb.record_evaluation(history)])
    assert sum("init_score" in str(r.message) for r in record) == 1
    true = fl.binary_focal(booster.predict(Xv) + init, yv, gamma=2.0)
    assert abs(history["valid_0"]["binary_focal"][-1] - true) > 0.1 * true


def test_xgboost_reports_the_true_validation_loss():
    xgb = _xgboost()
    X, y = _binary(3000, 0)
    Xv, yv = _binary(1000, 1)
    dtrain, (dvalid,), init = fb.xgboost_dmatrices("binary_focal", X, y, valid_sets=[(Xv, yv)], gamma=2.0)
    history: dict = {}
    booster = xgb.train({"disable_default_eval_metric": 1, "nthread": 1, "max_depth": 3}, dtrain, num_boost_round=10,
                        obj=fb.xgboost_objective("binary_focal", gamma=2.0), evals=[(dvalid, "valid")],
                        custom_metric=fb.xgboost_metric("binary_focal", gamma=2.0), evals_result=history)
    raw = booster.predict(xgb.DMatrix(Xv, base_margin=np.full(len(yv), init)), output_margin=True)
    true = fl.binary_focal(raw, yv, gamma=2.0)
    assert history["valid"]["binary_focal"][-1] == pytest.approx(true, rel=1e-4)  # XGBoost logs 6 digits


def test_fused_classifier_gives_probabilities_and_labels():
    _lightgbm()
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    X, y = _binary(2000, 0)
    Xv, yv = _binary(600, 1)
    labels = np.where(y > 0, "yes", "no")
    clf = fb.FusedLGBMClassifier(loss="binary_focal", loss_params={"gamma": 2.0}, n_estimators=15, verbose=-1,
                                 n_jobs=1)
    clf.fit(X, labels, eval_X=(Xv,), eval_y=(np.where(yv > 0, "yes", "no"),),
            eval_metric=fb.lightgbm_metric("binary_focal", api="sklearn", gamma=2.0))
    proba = clf.predict_proba(Xv)
    assert proba.shape == (len(Xv), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    raw = clf.decision_function(Xv)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-raw)), rtol=1e-12)
    assert list(clf.classes_) == ["no", "yes"]
    np.testing.assert_array_equal(clf.predict(Xv), np.where(raw > 0, "yes", "no"))
    # the eval set started from the initial score too: the reported metric is the true loss
    assert clf.evals_result_["valid_0"]["binary_focal"][-1] == pytest.approx(
        fl.binary_focal(raw, yv, gamma=2.0), rel=1e-12)
    # a scikit-learn estimator: clone keeps the parameters, pickling keeps the model
    assert clone(clf).get_params()["loss_params"] == {"gamma": 2.0}
    assert clf.get_params()["objective"] is None
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(Xv), proba)
    scores = cross_val_score(fb.FusedLGBMClassifier(n_estimators=5, verbose=-1, n_jobs=1), X, y, cv=3,
                             scoring="neg_log_loss")
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


def test_fused_classifier_multiclass():
    _lightgbm()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 5))
    y = np.array(["a", "b", "c"])[np.argmax(X[:, :3] + rng.normal(size=(1500, 3)), axis=1)]
    clf = fb.FusedLGBMClassifier(loss="cross_entropy", n_estimators=10, verbose=-1, n_jobs=1).fit(X, y)
    codes = np.searchsorted(["a", "b", "c"], y)
    np.testing.assert_allclose(clf.init_score_, np.log(np.bincount(codes) / len(y)), rtol=1e-12)
    proba = clf.predict_proba(X)
    assert proba.shape == (1500, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.mean(clf.predict(X) == y) > 0.6
    assert fl.cross_entropy(clf.decision_function(X), codes) < fl.cross_entropy(
        np.tile(clf.init_score_, (1500, 1)), codes)


@pytest.mark.parametrize("library", ["lightgbm", "xgboost"])
@pytest.mark.parametrize("loss", ["cross_entropy", "categorical_focal"])
def test_a_multiclass_loss_on_two_classes_keeps_two_scores_per_row(library, loss):
    """The libraries train one score per row for two classes unless told otherwise; a multiclass loss needs
    two (its softmax over both), so the classifiers ask for them."""
    (_lightgbm if library == "lightgbm" else _xgboost)()
    X, y = _binary(800, 0)
    Xv, yv = _binary(300, 1)
    labels = np.where(y > 0, "yes", "no")
    args = {"n_estimators": 15, "n_jobs": 1, **({"verbose": -1} if library == "lightgbm" else {})}
    cls = fb.FusedLGBMClassifier if library == "lightgbm" else fb.FusedXGBClassifier
    metric = (fb.lightgbm_metric if library == "lightgbm" else fb.xgboost_metric)("cross_entropy", api="sklearn")
    if library == "xgboost":
        args["eval_metric"] = metric
    clf = cls(loss=loss, **args).fit(X, labels, eval_set=[(Xv, np.where(yv > 0, "yes", "no"))],
                                     **({"eval_metric": metric} if library == "lightgbm" else {"verbose": False}))
    codes = y.astype(np.int64)
    np.testing.assert_allclose(clf.init_score_, np.log(np.bincount(codes) / len(y)), rtol=1e-12)
    raw = clf.decision_function(Xv)
    assert raw.shape == (300, 2)
    proba = clf.predict_proba(Xv)
    np.testing.assert_allclose(proba, np.exp(raw) / np.exp(raw).sum(axis=1, keepdims=True), rtol=1e-12)
    assert list(clf.classes_) == ["no", "yes"]
    np.testing.assert_array_equal(clf.predict(Xv), np.where(raw[:, 1] > raw[:, 0], "yes", "no"))
    vcodes = yv.astype(np.int64)
    assert fl.cross_entropy(raw, vcodes) < fl.cross_entropy(np.tile(clf.init_score_, (300, 1)), vcodes)
    assert "num_class" not in clf.get_params()
    # a fusedloss metric on the validation set reports the true loss of the two scores
    result = clf.evals_result_["valid_0" if library == "lightgbm" else "validation_0"]
    assert result["cross_entropy"][-1] == pytest.approx(fl.cross_entropy(raw, vcodes), rel=1e-5)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(Xv), proba)


def test_fused_classifier_refuses_what_it_cannot_do():
    _lightgbm()
    X, y = _binary(200, 0)
    with pytest.raises(ValueError, match="loss must be one of"):
        fb.FusedLGBMClassifier(loss="mse", verbose=-1).fit(X, y)
    with pytest.raises(ValueError, match="binary loss, y has 3 classes"):
        fb.FusedLGBMClassifier(verbose=-1).fit(X, np.arange(200) % 3)


def _classifier(library, **params):
    (_lightgbm if library == "lightgbm" else _xgboost)()
    cls = fb.FusedLGBMClassifier if library == "lightgbm" else fb.FusedXGBClassifier
    return cls(n_estimators=3, n_jobs=1, **({"verbose": -1} if library == "lightgbm" else {}), **params)


def _error(call):
    with pytest.raises(Exception) as raised:
        call()
    return raised.value


@pytest.mark.parametrize("library", ["lightgbm", "xgboost"])
def test_fused_classifiers_refuse_a_regression_target_as_scikit_learn(library):
    """A continuous y raises scikit-learn's "Unknown label type: continuous" ValueError (the message of its
    check_classification_targets), whatever the loss, before anything is trained."""
    from sklearn.linear_model import LogisticRegression

    X, _ = _binary(300, 0)
    continuous = X[:, 0] * 3.7
    theirs = _error(lambda: LogisticRegression().fit(X, continuous))
    assert str(theirs).startswith("Unknown label type: continuous")
    for loss in ("binary_focal", "cross_entropy"):
        ours = _error(lambda: _classifier(library, loss=loss).fit(X, continuous))
        assert type(ours) is type(theirs) is ValueError and str(ours) == str(theirs)


@pytest.mark.parametrize("library", ["lightgbm", "xgboost"])
@pytest.mark.parametrize("loss", ["binary_focal", "cross_entropy"])
def test_fused_classifiers_require_y_as_scikit_learn(library, loss):
    from sklearn.linear_model import LogisticRegression

    X, _ = _binary(50, 0)
    theirs = _error(lambda: LogisticRegression().fit(X, None))
    model = _classifier(library, loss=loss)
    ours = _error(lambda: model.fit(X, None))
    assert type(ours) is type(theirs) is ValueError
    assert str(ours) == str(theirs).replace("LogisticRegression", type(model).__name__)


@pytest.mark.parametrize("library", ["lightgbm", "xgboost"])
@pytest.mark.parametrize("loss", ["binary_focal", "cross_entropy"])
def test_fused_classifiers_refuse_a_single_class(library, loss):
    """One class in y is a ValueError, as in scikit-learn's classifiers (a multiclass loss would otherwise train
    one score per row and fail in predict_proba)."""
    from sklearn.linear_model import LogisticRegression

    X, _ = _binary(100, 0)
    assert type(_error(lambda: LogisticRegression().fit(X, np.zeros(100)))) is ValueError
    for one in (np.zeros(100), np.full(100, "yes")):
        with pytest.raises(ValueError, match="a single class .* at least 2 classes"):
            _classifier(library, loss=loss).fit(X, one)


def test_fused_xgb_classifier_before_fit_raises_not_fitted_error():
    """scikit-learn's NotFittedError (a ValueError and an AttributeError), as XGBClassifier's own."""
    from sklearn.exceptions import NotFittedError

    X, _ = _binary(20, 0)
    with pytest.raises(NotFittedError):
        _xgboost().XGBClassifier().predict_proba(X)
    model = _classifier("xgboost")
    for method in ("predict", "predict_proba", "decision_function"):
        with pytest.raises(NotFittedError, match="FusedXGBClassifier instance is not fitted yet"):
            getattr(model, method)(X)


def test_fused_xgb_classifier_is_the_native_training():
    """FusedXGBClassifier trains exactly what xgb.train does with the same objective and base margins (same
    trees, same raw scores), and gives probabilities, the user's labels and a true validation metric."""
    xgb = _xgboost()
    from sklearn.base import clone

    X, y = _binary(1500, 0)
    Xv, yv = _binary(500, 1)
    args = {"n_estimators": 12, "max_depth": 3, "learning_rate": 0.3, "n_jobs": 1, "tree_method": "exact"}
    clf = fb.FusedXGBClassifier(loss="binary_focal", loss_params={"gamma": 2.0}, **args,
                                eval_metric=fb.xgboost_metric("binary_focal", api="sklearn", gamma=2.0))
    clf.fit(X, np.where(y > 0, "yes", "no"), eval_set=[(Xv, np.where(yv > 0, "yes", "no"))], verbose=False)
    dtrain, (dvalid,), init = fb.xgboost_dmatrices("binary_focal", X, y, valid_sets=[(Xv, yv)], gamma=2.0)
    booster = xgb.train({"max_depth": 3, "learning_rate": 0.3, "nthread": 1, "tree_method": "exact"}, dtrain,
                        num_boost_round=12, obj=fb.xgboost_objective("binary_focal", gamma=2.0))
    want = booster.predict(dvalid, output_margin=True)
    raw = clf.decision_function(Xv)
    np.testing.assert_allclose(raw, want, rtol=1e-6, atol=1e-6)
    assert clf.init_score_ == init
    proba = clf.predict_proba(Xv)
    assert proba.shape == (len(Xv), 2)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-raw)), rtol=1e-12)
    assert list(clf.classes_) == ["no", "yes"]
    np.testing.assert_array_equal(clf.predict(Xv), np.where(raw > 0, "yes", "no"))
    reported = clf.evals_result()["validation_0"]["binary_focal"][-1]
    assert reported == pytest.approx(fl.binary_focal(raw, yv, gamma=2.0), rel=1e-5)
    assert "loss" not in clf.get_xgb_params() and clf.get_params()["loss_params"] == {"gamma": 2.0}
    assert clone(clf).get_params()["loss"] == "binary_focal"


def test_fused_xgb_classifier_multiclass_and_errors():
    _xgboost()
    from sklearn.model_selection import cross_val_score

    rng = np.random.default_rng(0)
    X = rng.normal(size=(1200, 5))
    labels = np.array([10, 20, 30])
    y = labels[np.argmax(X[:, :3] + rng.normal(size=(1200, 3)), axis=1)]
    clf = fb.FusedXGBClassifier(loss="cross_entropy", n_estimators=10, max_depth=3, n_jobs=1).fit(X, y)
    codes = np.searchsorted(labels, y)
    np.testing.assert_allclose(clf.init_score_, np.log(np.bincount(codes) / len(y)), rtol=1e-12)
    proba = clf.predict_proba(X)
    assert proba.shape == (1200, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert set(clf.predict(X)) <= set(labels) and np.mean(clf.predict(X) == y) > 0.6
    assert fl.cross_entropy(clf.decision_function(X), codes) < fl.cross_entropy(
        np.tile(clf.init_score_, (1200, 1)), codes)
    again = pickle.loads(pickle.dumps(clf))  # the fitted objective is not kept, so the model pickles
    np.testing.assert_array_equal(again.predict_proba(X), proba)
    np.testing.assert_array_equal(again.predict(X), clf.predict(X))
    scores = cross_val_score(fb.FusedXGBClassifier(n_estimators=4, n_jobs=1), X[:600], (codes[:600] == 0), cv=3,
                             scoring="neg_log_loss")
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    with pytest.raises(ValueError, match="loss must be one of"):
        fb.FusedXGBClassifier(loss="mse").fit(X, codes)
    with pytest.raises(ValueError, match="binary loss, y has 3 classes"):
        fb.FusedXGBClassifier().fit(X, codes)
    with pytest.raises(ValueError, match="labels that y does not have"):
        fb.FusedXGBClassifier(loss="cross_entropy").fit(X, codes, eval_set=[(X[:5], np.full(5, 7))])


def test_initial_scores_and_probabilities():
    y = np.array([0, 1, 1, 2, 2, 2])
    w = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 3.0])
    np.testing.assert_allclose(fb.initial_scores("cross_entropy", y, w), np.log(np.array([1, 2, 5]) / 8))
    assert fb.initial_scores("binary_focal", [0.0, 1.0, 1.0], gamma=1.0) == fb.initial_score(
        "binary_focal", [0.0, 1.0, 1.0], gamma=1.0)
    p = fb.scores_to_proba("binary_focal", np.array([-800.0, 0.0, 800.0]))
    np.testing.assert_array_equal(p, [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    q = fb.scores_to_proba("cross_entropy", np.array([[0.0, np.log(3.0)], [1000.0, 0.0]]))
    np.testing.assert_allclose(q, [[0.25, 0.75], [1.0, 0.0]])
    with pytest.raises(ValueError, match="no probabilities"):
        fb.scores_to_proba("mse", [0.0])


def test_xgboost_sklearn_recipe_gives_probabilities():
    """The README's recipe for XGBoost's scikit-learn models: fit and predict with the initial score as
    base_margin; XGBClassifier applies the sigmoid to the margins."""
    xgb = _xgboost()
    X, y = _binary(1500, 0)
    init = fb.initial_score("binary_focal", y, gamma=2.0)
    model = xgb.XGBClassifier(objective=fb.xgboost_objective("binary_focal", api="sklearn", gamma=2.0),
                              n_estimators=10, max_depth=3, n_jobs=1)
    model.fit(X, y, base_margin=np.full(len(y), init))
    proba = model.predict_proba(X, base_margin=np.full(len(y), init))[:, 1]
    margin = model.predict(X, output_margin=True, base_margin=np.full(len(y), init))
    np.testing.assert_allclose(proba, fb.scores_to_proba("binary_focal", margin)[:, 1], rtol=1e-5)
    # the margins start from the initial score: the model beats the constant it started from
    assert fl.binary_focal(margin, y, gamma=2.0) < fl.binary_focal(np.full(1500, init), y, gamma=2.0)
