"""fastnn.MLPClassifier / MLPRegressor: scikit-learn's estimator checks, and
agreement with sklearn.neural_network on the same settings.

With the same ``random_state`` fastnn draws the same initial weights, batches
and validation split as scikit-learn and applies the same update rules, so in
float64 a fit follows scikit-learn's trajectory up to rounding: the tracking
tests compare parameters and loss curves, not just scores.
"""

import functools
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.datasets import load_digits, make_blobs, make_multilabel_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402
from sklearn.utils.estimator_checks import estimator_checks_generator  # noqa: E402

import fastnn  # noqa: E402
from fastnn import MLPClassifier, MLPRegressor  # noqa: E402
from conftest import backend_params  # noqa: E402
from fastnn_suite import tol, trajectory_rtol  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def assert_params_close(a, b, dtype, err_msg=""):
    """Every coefs_/intercepts_ array of a and b within trajectory_rtol(dtype) * max|param|."""
    pa, pb = a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_
    assert len(pa) == len(pb)
    for i, (x, y) in enumerate(zip(pa, pb)):
        assert x.shape == y.shape, err_msg
        scale = max(float(np.max(np.abs(x))), float(np.finfo(dtype).tiny))
        np.testing.assert_allclose(x, y, rtol=0, atol=trajectory_rtol(dtype) * scale,
                                   err_msg=f"{err_msg} [param {i}]")


def _small_classification(n=240, n_features=12, centers=3, seed=0):
    X, y = make_blobs(n_samples=n, n_features=n_features, centers=centers, random_state=seed)
    return (X - X.mean(axis=0)) / X.std(axis=0), y


def _small_regression(n=300, seed=0, n_outputs=1):
    rng = np.random.RandomState(seed)
    X = rng.uniform(-1, 1, (n, 4))
    Y = np.column_stack([np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.5 * X[:, 3] * k
                         for k in range(1, n_outputs + 1)])
    return X, (Y[:, 0] if n_outputs == 1 else Y)


# ------------------------------------------------------- sklearn's own checks

#: Checks expected to fail, with the reason.  None currently: every check that
#: applies passes (the sample_weight and sparse checks included; the pandas and
#: array-API checks skip themselves when those are not installed).
EXPECTED_FAILED_CHECKS = {}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


#: Checks that cannot apply to these estimators, with the reason (scikit-learn's
#: check would only skip itself); :func:`test_not_applicable_checks_do_not_apply`
#: holds each reason true.  They are left out so that the run has no skips.
NOT_APPLICABLE = {
    "check_classifiers_multilabel_output_format_decision_function":
        "MLPClassifier has no decision_function (neither has scikit-learn's)",
}


def _check_id(check):
    if isinstance(check, functools.partial):
        kwargs = ",".join(f"{k}={v}" for k, v in check.keywords.items())
        return f"{check.func.__name__}({kwargs})" if kwargs else check.func.__name__
    return check.__name__


def _estimator_checks(estimators):
    params = []
    for estimator in estimators:
        for est, check in estimator_checks_generator(
                estimator, expected_failed_checks=_expected_failed_checks(estimator), mark="xfail"):
            name = _check_id(check)
            if name.partition("(")[0] not in NOT_APPLICABLE:
                params.append(pytest.param(est, check, id=f"{type(estimator).__name__}-{name}"))
    return params


# Tiny nets, few epochs, a larger step so check_classifiers_train's accuracy
# (> 0.83) and check_regressors_train's R^2 (> 0.5) are reached in 10 epochs.
@pytest.mark.parametrize("estimator, check", _estimator_checks(
    [MLPClassifier((10,), max_iter=10, learning_rate_init=0.05, random_state=0),
     MLPRegressor(hidden_layer_sizes=(10,), max_iter=10, learning_rate_init=0.05, random_state=0)]))
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_not_applicable_checks_do_not_apply():
    generated = {_check_id(c).partition("(")[0]
                 for est in (MLPClassifier(), MLPRegressor())
                 for _, c in estimator_checks_generator(est)}
    assert set(NOT_APPLICABLE) <= generated, "a check left out is no longer generated"
    for est in (MLPClassifier(), SkMLPClassifier()):
        assert not hasattr(est, "decision_function")


# ------------------------------------------------------------- accuracy parity

def test_digits_accuracy_within_one_point_of_sklearn():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, random_state=0)
    settings = dict(hidden_layer_sizes=(64,), solver="adam", max_iter=50, random_state=0)
    ours = MLPClassifier(**settings).fit(X_tr, y_tr).score(X_te, y_te)
    theirs = SkMLPClassifier(**settings).fit(X_tr, y_tr).score(X_te, y_te)
    assert ours > 0.9
    assert abs(ours - theirs) <= 0.01, (ours, theirs)


def test_regressor_r2_on_a_smooth_function():
    X, y = _small_regression(n=600)
    X_te, y_te = _small_regression(n=200, seed=1)
    reg = MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=300,
                       random_state=0).fit(X, y)
    assert reg.score(X_te, y_te) > 0.9
    assert reg.out_activation_ == "identity"
    assert reg.predict(X_te).shape == (200,)


# ------------------------------------------------------ tracking scikit-learn

TRACKING_CONFIGS = [
    dict(solver="adam"),
    dict(solver="adam", alpha=0.1, batch_size=50, shuffle=False),
    dict(solver="sgd", learning_rate_init=0.05),
    dict(solver="sgd", learning_rate_init=0.05, nesterovs_momentum=False),
    dict(solver="sgd", learning_rate_init=0.1, momentum=0.0),
    dict(solver="sgd", learning_rate_init=0.2, learning_rate="invscaling", power_t=0.25),
    dict(solver="sgd", learning_rate_init=0.05, learning_rate="adaptive", tol=0.5,
         n_iter_no_change=1),
    dict(solver="adam", activation="logistic"),
    dict(solver="adam", activation="tanh", hidden_layer_sizes=(8, 6)),
    dict(solver="adam", activation="identity", hidden_layer_sizes=()),
]


@pytest.mark.parametrize("config", TRACKING_CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_classifier_tracks_sklearn(config):
    X, y = _small_classification()
    settings = dict(hidden_layer_sizes=(16,), max_iter=8, random_state=0, learning_rate_init=0.01)
    settings.update(config)
    ours = MLPClassifier(**settings).fit(X, y)
    theirs = SkMLPClassifier(**settings).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=trajectory_rtol())
    assert_params_close(ours, theirs, np.float64)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=0, atol=trajectory_rtol())


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_regressor_tracks_sklearn(n_outputs):
    X, y = _small_regression(n_outputs=n_outputs)
    settings = dict(hidden_layer_sizes=(16,), max_iter=6, random_state=0, learning_rate_init=0.01,
                    alpha=0.01)
    ours = MLPRegressor(**settings).fit(X, y)
    theirs = SkMLPRegressor(**settings).fit(X, y)
    # scikit-learn's squared loss averages over outputs as well as samples
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=trajectory_rtol())
    assert_params_close(ours, theirs, np.float64)
    assert ours.predict(X).shape == theirs.predict(X).shape


def test_binary_and_multilabel_track_sklearn():
    X, y = _small_classification(centers=2)
    Xm, Ym = make_multilabel_classification(n_samples=200, n_features=10, n_classes=4, random_state=0)
    for data_X, data_y, out in ((X, y, "logistic"), (Xm, Ym, "logistic")):
        settings = dict(hidden_layer_sizes=(12,), max_iter=5, random_state=0, learning_rate_init=0.01)
        ours = MLPClassifier(**settings).fit(data_X, data_y)
        theirs = SkMLPClassifier(**settings).fit(data_X, data_y)
        assert ours.out_activation_ == theirs.out_activation_ == out
        assert ours.n_outputs_ == theirs.n_outputs_
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=trajectory_rtol())
        assert_params_close(ours, theirs, np.float64)
        np.testing.assert_array_equal(ours.predict(data_X), theirs.predict(data_X))
    assert ours.predict(Xm).shape == Ym.shape
    assert ours.predict_proba(Xm).shape == Ym.shape


def test_convergence_stop_and_warning_like_sklearn():
    X, y = _small_classification()
    settings = dict(hidden_layer_sizes=(8,), max_iter=50, tol=10.0, n_iter_no_change=2,
                    random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # stopping early: no warning
        ours = MLPClassifier(**settings).fit(X, y)
    theirs = SkMLPClassifier(**settings).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ < 50
    assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=trajectory_rtol())
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X, y)


# ------------------------------------------------------------ fitted attributes

def test_float32_in_float32_coefs_out():
    X, y = _small_classification()
    clf = MLPClassifier((16, 8), max_iter=3, random_state=0).fit(X.astype(np.float32), y)
    assert all(c.dtype == np.float32 for c in clf.coefs_ + clf.intercepts_)
    assert clf.predict_proba(X.astype(np.float32)).dtype == np.float32
    clf64 = MLPClassifier((16, 8), max_iter=3, random_state=0).fit(X, y)
    assert all(c.dtype == np.float64 for c in clf64.coefs_ + clf64.intercepts_)
    forced = MLPClassifier((16, 8), max_iter=3, random_state=0, dtype="float32").fit(X, y)
    assert all(c.dtype == np.float32 for c in forced.coefs_ + forced.intercepts_)
    # float32 follows the float64 fit to float32 rounding
    for a, b in zip(clf.coefs_, clf64.coefs_):
        np.testing.assert_allclose(a, b, rtol=0, atol=trajectory_rtol(np.float32) * np.abs(b).max())


def test_coefs_shapes_and_attributes():
    X, y = _small_classification(n_features=12, centers=3)
    clf = MLPClassifier((16, 8), max_iter=3, random_state=0).fit(X, y)
    assert [c.shape for c in clf.coefs_] == [(12, 16), (16, 8), (8, 3)]
    assert [b.shape for b in clf.intercepts_] == [(16,), (8,), (3,)]
    assert clf.n_layers_ == 4 and clf.n_outputs_ == 3 and clf.n_features_in_ == 12
    assert clf.out_activation_ == "softmax"
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert len(clf.loss_curve_) == clf.n_iter_ == 3
    assert clf.loss_ == clf.loss_curve_[-1] and clf.best_loss_ == min(clf.loss_curve_)
    assert clf.t_ == 3 * X.shape[0]
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    proba = clf.predict_proba(X)
    assert proba.shape == (X.shape[0], 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=tol(np.float64, proba.shape[1])[0])
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba))
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])


def test_binary_predict_proba_has_two_columns():
    X, y = _small_classification(centers=2)
    labels = np.array(["no", "yes"])[y]
    clf = MLPClassifier((8,), max_iter=5, random_state=0).fit(X, labels)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    assert clf.coefs_[-1].shape == (8, 1)
    proba = clf.predict_proba(X)
    assert proba.shape == (X.shape[0], 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[(proba[:, 1] > 0.5).astype(int)])


def test_feature_names_in_from_dataframe():
    pd = pytest.importorskip("pandas")
    X, y = _small_classification(n_features=3)
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    clf = MLPClassifier((4,), max_iter=2, random_state=0).fit(df, y)
    np.testing.assert_array_equal(clf.feature_names_in_, ["a", "b", "c"])


# ------------------------------------------- partial_fit, warm_start, early stop

def test_partial_fit_tracks_sklearn():
    X, y = _small_classification()
    ours = MLPClassifier((16,), random_state=0, learning_rate_init=0.01)
    theirs = SkMLPClassifier((16,), random_state=0, learning_rate_init=0.01)
    with pytest.raises(ValueError, match="classes must be passed"):
        ours.partial_fit(X, y)
    classes = np.unique(y)
    for start in (0, 80, 160):
        part = slice(start, start + 80)
        ours.partial_fit(X[part], y[part], classes=classes)
        theirs.partial_fit(X[part], y[part], classes=classes)
    assert ours.n_iter_ == theirs.n_iter_ == 1
    assert ours.t_ == theirs.t_ == 240
    assert_params_close(ours, theirs, np.float64)
    ours.partial_fit(X, y)   # classes only needed the first time
    reg = MLPRegressor(hidden_layer_sizes=(8,), random_state=0)
    Xr, yr = _small_regression()
    reg.partial_fit(Xr, yr).partial_fit(Xr, yr)
    assert reg.t_ == 2 * Xr.shape[0] and len(reg.loss_curve_) == 2
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(Xr, yr)


def test_warm_start_continues_like_sklearn():
    X, y = _small_classification()
    settings = dict(hidden_layer_sizes=(16,), max_iter=3, random_state=0, warm_start=True)
    ours, theirs = MLPClassifier(**settings), SkMLPClassifier(**settings)
    ours.fit(X, y)
    theirs.fit(X, y)
    first = [c.copy() for c in ours.coefs_]
    ours.fit(X, y)
    theirs.fit(X, y)
    assert len(ours.loss_curve_) == 6 and ours.t_ == 6 * X.shape[0]
    assert not all(np.array_equal(a, b) for a, b in zip(first, ours.coefs_))
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=trajectory_rtol())
    assert_params_close(ours, theirs, np.float64)
    # without warm_start, a second fit starts again from the same initialization
    cold = MLPClassifier((16,), max_iter=3, random_state=0).fit(X, y)
    np.testing.assert_allclose(cold.coefs_[0], first[0])
    with pytest.raises(ValueError, match="same classes"):
        ours.fit(X[y != 2], y[y != 2])


def test_early_stopping_validation_scores_like_sklearn():
    X, y = _small_classification(n=400)
    settings = dict(hidden_layer_sizes=(16,), max_iter=30, random_state=0, early_stopping=True,
                    validation_fraction=0.2, n_iter_no_change=3, learning_rate_init=0.01)
    ours = MLPClassifier(**settings).fit(X, y)
    theirs = SkMLPClassifier(**settings).fit(X, y)
    assert len(ours.validation_scores_) == ours.n_iter_
    assert ours.best_validation_score_ == max(ours.validation_scores_)
    assert ours.best_loss_ is None
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)
    assert_params_close(ours, theirs, np.float64)   # the restored best weights
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, early_stopping=True,
                       random_state=0).fit(*_small_regression())
    assert len(reg.validation_scores_) == reg.n_iter_


# ----------------------------------------------------------- backends, errors

@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("backend", backend_params(["numpy", "numba", "numba-parallel"]))
def test_prediction_reads_X_in_place(backend, order, monkeypatch):
    """predict, predict_proba and score hand a C- or F-contiguous X of the model's dtype
    (F: a DataFrame's values) to the first layer without a copy, as the transposed view
    of its rows or its transpose (at 10000 x 784 float32 the copy took longer than the
    products: predict_proba 48 ms with it, 28.5 ms without)."""
    import fastnn.sklearn._base as base
    X, y = _small_classification(n=120)
    X = np.asarray(X, dtype=np.float32, order=order)
    est = MLPClassifier((8,), max_iter=2, random_state=0, backend=backend).fit(X, y)
    expected = est.predict_proba(X)
    seen, forward = [], base._forward

    def spy(bk, Ws, bs, A0, *args):
        seen.append(np.shares_memory(A0, X))
        return forward(bk, Ws, bs, A0, *args)

    monkeypatch.setattr(base, "_forward", spy)
    np.testing.assert_array_equal(est.predict_proba(X), expected)
    est.predict(X), est.score(X, y)
    assert seen == [True, True, True]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_numpy_and_numba_backends_agree(dtype, solver):
    X, y = _small_classification(n=300)
    X = X.astype(dtype)
    fits = {}
    for backend in ("numpy", "numba"):
        fits[backend] = MLPClassifier((16, 8), solver=solver, max_iter=3, batch_size=64,
                                      learning_rate_init=0.01, random_state=0,
                                      backend=backend).fit(X, y)
    a, b = fits["numpy"], fits["numba"]
    assert a.coefs_[0].dtype == b.coefs_[0].dtype == dtype
    assert_params_close(a, b, dtype, err_msg=f"{solver} {np.dtype(dtype).name}")
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=trajectory_rtol(dtype))
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=0,
                               atol=trajectory_rtol(dtype))


def test_unsupported_options_raise_clear_errors():
    X, y = _small_classification()
    with pytest.raises(ValueError, match="loss must be one of"):
        MLPRegressor(loss="huber").fit(*_small_regression())
    with pytest.raises(ValueError, match="scaling='sum' is not supported"):
        MLPClassifier(scaling="sum").fit(X, y)
    with pytest.raises(ValueError, match="activation"):
        MLPClassifier(activation="leaky_relu").fit(X, y)
    with pytest.raises(ValueError, match="dtype"):
        MLPClassifier(dtype="float16").fit(X, y)
    with pytest.raises(ValueError, match="unknown backend"):
        MLPClassifier(backend="nope", max_iter=1).fit(X, y)


def test_verbose_prints_progress(capsys):
    X, y = _small_classification()
    MLPClassifier((4,), max_iter=2, random_state=0, verbose=True).fit(X, y)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Iteration 2, loss = " in out


def test_import_fastnn_does_not_import_sklearn():
    code = ("import sys, fastnn; assert 'sklearn' not in sys.modules; "
            "cls = fastnn.MLPClassifier; assert 'sklearn' in sys.modules; "
            "assert cls is fastnn.sklearn.MLPClassifier and fastnn.MLPRegressor")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("n", [1, 2, 7, 200, 1797])
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_the_epoch_shuffle_and_batches_are_scikit_learns(n, seed):
    """The estimators' own shuffle and batch slices (theirs validate their parameters on every
    epoch) give scikit-learn's ``utils.shuffle`` and ``utils.gen_batches``, and leave the
    random state where scikit-learn's leaves it."""
    from sklearn.utils import gen_batches, shuffle

    from fastnn.sklearn._stochastic import _batches, _shuffled
    idx = np.random.default_rng(seed).permutation(n)
    ours, theirs = np.random.RandomState(seed), np.random.RandomState(seed)
    for _ in range(3):
        a, b = _shuffled(idx, ours), shuffle(idx, random_state=theirs)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
        idx = a
    assert ours.randint(1 << 30) == theirs.randint(1 << 30)
    for batch_size in (1, 3, 200, n, n + 5):
        assert _batches(n, batch_size) == list(gen_batches(n, batch_size))


@pytest.mark.parametrize("labels", [np.arange(3), np.array([-1.0, 0.0, 7.0]),
                                    np.array(["a", "bb", "c"]), np.array([True, False]),
                                    np.array(["x", "y"], dtype=object)])
@pytest.mark.parametrize("n", [1, 7, 360])
def test_the_validation_accuracy_is_scikit_learns(labels, n):
    """The classifier's early-stopping score (without accuracy_score's per-call target
    checks) is scikit-learn's accuracy_score, value and type, for 1-D labels of each kind;
    2-D (multilabel) targets and sample weights go through accuracy_score itself."""
    from sklearn.metrics import accuracy_score

    rng = np.random.default_rng(n)
    y = labels[rng.integers(0, len(labels), n)]
    for y_pred in (y.copy(), labels[rng.integers(0, len(labels), n)]):
        ours = MLPClassifier._score_function(y, y_pred)
        theirs = accuracy_score(y, y_pred)
        assert type(ours) is type(theirs) and ours == theirs


@pytest.mark.parametrize("labels", [np.arange(5), np.array([-1.0, 0.0, 7.0, 9.0, 11.0]),
                                    np.array(["a", "bb", "c", "d", "e"]),
                                    np.array(["x", "y", "z", "u", "v"], dtype=object)])
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_the_label_indicators_are_the_binarizers(labels, k):
    """The classifier's indicator columns (without LabelBinarizer.transform's per-call
    target checks) are ``transform(y).astype(bool)``, shape and values, for binarizers
    fitted on 1, 2 (one column), 3 and 5 classes, on batches holding every class, a few
    of them, one, and labels outside the classes."""
    from sklearn.preprocessing import LabelBinarizer

    from fastnn.sklearn._labels import _indicators
    rng = np.random.default_rng(k)
    classes = labels[:k]
    binarizer = LabelBinarizer().fit(classes[rng.permutation(k)])
    for y in (classes[rng.integers(0, k, 40)], classes[:2][rng.integers(0, min(k, 2), 9)],
              classes[-1:].repeat(3), labels[rng.integers(0, 5, 30)]):
        theirs = binarizer.transform(y).astype(bool)
        if k >= 2 and np.isin(y, classes).all():  # the comparison itself, not transform
            binarizer.transform = None
        ours = _indicators(binarizer, y)
        binarizer.__dict__.pop("transform", None)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("labels", [np.arange(5), np.array([-1.0, 0.0, 7.0, 9.0, 11.0]),
                                    np.array(["a", "bb", "c", "d", "e"]),
                                    np.array(["x", "y", "z", "u", "v"], dtype=object)])
@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_predicted_labels_are_the_binarizers(labels, k, dtype):
    """The classifier's labels from its outputs (without inverse_transform's dispatch) are
    ``LabelBinarizer.inverse_transform``'s, value and dtype: the first largest of tied
    outputs, an output of exactly 0.5 (not above the threshold) with two classes."""
    from sklearn.preprocessing import LabelBinarizer

    from fastnn.sklearn._labels import _labels_of
    rng = np.random.default_rng(k)
    binarizer = LabelBinarizer().fit(labels[:k])
    n_out = 1 if k == 2 else k
    AL = rng.random((50, n_out)).astype(dtype)
    AL[:5] = 0.5            # ties, and the binary threshold itself
    AL[5:10, -1] = AL[5:10, 0]
    AL = AL.ravel() if n_out == 1 else AL
    theirs = binarizer.inverse_transform(AL)
    binarizer.inverse_transform = None      # the path without it
    ours = _labels_of(binarizer, AL)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)
