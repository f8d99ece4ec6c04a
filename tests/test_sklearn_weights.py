"""sample_weight (every solver, fit and partial_fit) and class_weight, against
scikit-learn and against the NumPy backend.

A weight ``s_j`` multiplies example j's output delta and loss, and the mean
becomes ``sum_j s_j (.) / sum_j s_j`` (fastnn.engine.backward), as in
scikit-learn 1.7+: with the same seed the fits agree to rounding.
"""

import numpy as np
import pytest


from sklearn.datasets import make_blobs  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402
from sklearn.utils.class_weight import compute_sample_weight  # noqa: E402

import fastnn  # noqa: E402
from fastnn import MLPClassifier, MLPRegressor  # noqa: E402
from fastnn_suite import assert_estimators_track, assert_losses_track  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _classification(n=240):
    X, y = make_blobs(n_samples=n, n_features=8, centers=3, random_state=0)
    return (X - X.mean(axis=0)) / X.std(axis=0), y


def _regression(n=240, n_outputs=2):
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, (n, 4))
    Y = np.column_stack([np.sin(2 * X[:, 0]) + k * X[:, 1] for k in range(1, n_outputs + 1)])
    return X, Y


def _weights(n, seed=1):
    return np.random.RandomState(seed).uniform(0.1, 3.0, n)


CONFIGS = [
    ("clf", dict(solver="adam")),
    ("clf", dict(solver="sgd", learning_rate_init=0.05)),
    ("clf", dict(solver="adam", alpha=0.1, batch_size=50, shuffle=False)),
    ("clf", dict(solver="adam", early_stopping=True, validation_fraction=0.25,
                 n_iter_no_change=2, tol=0.0)),
    ("clf", dict(solver="lbfgs", max_iter=6)),
    ("reg", dict(solver="adam", alpha=0.01)),
    ("reg", dict(solver="sgd", learning_rate_init=0.05, early_stopping=True)),
    ("reg", dict(solver="lbfgs", max_iter=6)),
]


@pytest.mark.parametrize("kind,config", CONFIGS,
                         ids=[k + "-" + "-".join(f"{a}={b}" for a, b in c.items()) for k, c in CONFIGS])
def test_sample_weight_fit_tracks_sklearn(kind, config):
    X, y = _classification() if kind == "clf" else _regression()
    Ours, Theirs = (MLPClassifier, SkMLPClassifier) if kind == "clf" else (MLPRegressor, SkMLPRegressor)
    settings = dict(hidden_layer_sizes=(12,), max_iter=8, random_state=0, learning_rate_init=0.01)
    settings.update(config)
    sw = _weights(len(y))
    ours, theirs = Ours(**settings).fit(X, y, sample_weight=sw), Theirs(**settings).fit(X, y, sample_weight=sw)
    assert ours.n_iter_ == theirs.n_iter_
    assert_losses_track(ours.loss_, theirs.loss_)
    if config["solver"] != "lbfgs":
        assert_losses_track(ours.loss_curve_, theirs.loss_curve_)
    if config.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_,
                                   rtol=0, atol=1e-12)
    assert_estimators_track(ours, theirs)
    # and the weights matter: an unweighted fit is a different fit
    plain = Ours(**settings).fit(X, y)
    assert not np.allclose(plain.coefs_[0], ours.coefs_[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_sample_weight_partial_fit_tracks_sklearn(kind):
    X, y = _classification() if kind == "clf" else _regression()
    Ours, Theirs = (MLPClassifier, SkMLPClassifier) if kind == "clf" else (MLPRegressor, SkMLPRegressor)
    ours = Ours(hidden_layer_sizes=(12,), random_state=0, learning_rate_init=0.01)
    theirs = Theirs(hidden_layer_sizes=(12,), random_state=0, learning_rate_init=0.01)
    sw = _weights(len(y))
    extra = {"classes": np.unique(y)} if kind == "clf" else {}
    for start in (0, 80, 160):
        part = slice(start, start + 80)
        ours.partial_fit(X[part], y[part], sample_weight=sw[part], **extra)
        theirs.partial_fit(X[part], y[part], sample_weight=sw[part], **extra)
    assert_losses_track(ours.loss_curve_, theirs.loss_curve_)
    assert_estimators_track(ours, theirs)


def test_integer_weights_equal_repeated_examples():
    """Weight 3 on an example is the same objective as the example three times."""
    X, y = _classification(60)
    counts = np.random.RandomState(2).randint(0, 4, len(y))
    counts[:3] = 1  # every class keeps an example
    clf = MLPClassifier((6,), solver="lbfgs", max_iter=1, alpha=0.5, random_state=0).fit(X, y)
    theta = np.concatenate([a.ravel() for a in clf.coefs_ + clf.intercepts_])
    Y = clf._label_binarizer.transform(y)
    loss_w, grad_w = clf._loss_grad_lbfgs(theta, X, Y, counts.astype(float))
    loss_r, grad_r = clf._loss_grad_lbfgs(theta, np.repeat(X, counts, axis=0),
                                          np.repeat(Y, counts, axis=0), None)
    assert_losses_track(loss_w, loss_r)
    eps = np.finfo(np.float64).eps
    np.testing.assert_allclose(grad_w, grad_r, rtol=0, atol=100 * eps * np.abs(grad_r).max())


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_sample_weight_numpy_and_numba_backends_agree(solver, dtype):
    X, y = _classification()
    X = X.astype(dtype)
    sw = _weights(len(y))
    fits = {b: MLPClassifier((12, 6), solver=solver, max_iter=4, batch_size=64, random_state=0,
                             learning_rate_init=0.01, backend=b).fit(X, y, sample_weight=sw)
            for b in ("numpy", "numba", "numba-parallel")}
    for name in ("numba", "numba-parallel"):
        assert fits[name].coefs_[0].dtype == dtype
        assert_estimators_track(fits[name], fits["numpy"], dtype, err_msg=name)


def _error(fit):
    with pytest.raises(Exception) as info:
        fit()
    return type(info.value), str(info.value)


@pytest.mark.parametrize("bad", [
    np.ones(5), np.ones((240, 1)), np.zeros(240), np.r_[np.nan, np.ones(239)],
    np.r_[np.inf, np.ones(239)], "heavy"], ids=["short", "2d", "zeros", "nan", "inf", "str"])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_bad_sample_weight_errors_are_sklearns(bad, method):
    X, y = _classification()
    extra = {"classes": np.unique(y)} if method == "partial_fit" else {}
    ours = _error(lambda: getattr(MLPClassifier(max_iter=1), method)(X, y, sample_weight=bad, **extra))
    theirs = _error(lambda: getattr(SkMLPClassifier(max_iter=1), method)(X, y, sample_weight=bad, **extra))
    assert ours == theirs


def test_scalar_and_negative_weights_as_sklearn():
    X, y = _regression()
    for sw in (2.5, np.r_[-0.5, np.ones(239)]):
        ours = MLPRegressor(hidden_layer_sizes=(6,), max_iter=3, random_state=0).fit(X, y, sample_weight=sw)
        theirs = SkMLPRegressor(hidden_layer_sizes=(6,), max_iter=3, random_state=0).fit(X, y, sample_weight=sw)
        assert_estimators_track(ours, theirs)


# ------------------------------------------------------------- class_weight

@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_class_weight_is_per_example_weight(solver):
    X, y = _classification()
    settings = dict(hidden_layer_sizes=(8,), solver=solver, max_iter=5, random_state=0)
    cw = {0: 0.5, 1: 2.0, 2: 1.0}
    sw = _weights(len(y))
    with_cw = MLPClassifier(class_weight=cw, **settings).fit(X, y, sample_weight=sw)
    direct = MLPClassifier(**settings).fit(X, y, sample_weight=sw * np.array([cw[c] for c in y]))
    np.testing.assert_array_equal(with_cw.coefs_[0], direct.coefs_[0])
    balanced = MLPClassifier(class_weight="balanced", **settings).fit(X[40:], y[40:])
    direct = MLPClassifier(**settings).fit(X[40:], y[40:],
                                           sample_weight=compute_sample_weight("balanced", y[40:]))
    np.testing.assert_array_equal(balanced.coefs_[0], direct.coefs_[0])
    plain = MLPClassifier(**settings).fit(X[40:], y[40:])
    assert not np.allclose(plain.coefs_[0], balanced.coefs_[0])


def test_class_weight_with_string_labels_and_partial_fit():
    X, y = _classification()
    labels = np.array(["a", "b", "c"])[y]
    cw = {"a": 3.0, "b": 1.0, "c": 1.0}
    clf = MLPClassifier((8,), class_weight=cw, random_state=0)
    ref = MLPClassifier((8,), random_state=0)
    clf.partial_fit(X, labels, classes=["a", "b", "c"])
    ref.partial_fit(X, labels, sample_weight=np.where(labels == "a", 3.0, 1.0), classes=["a", "b", "c"])
    np.testing.assert_array_equal(clf.coefs_[0], ref.coefs_[0])


def test_class_weight_errors():
    X, y = _classification()
    with pytest.raises(ValueError, match="class_weight must be None, 'balanced' or a dict"):
        MLPClassifier(class_weight="auto").fit(X, y)
    with pytest.raises(ValueError, match=r"class_weight\[1\] must be a finite number >= 0"):
        MLPClassifier(class_weight={1: -1.0}).fit(X, y)
    with pytest.raises(ValueError, match=r"classes \[7\] are not in classes_"):
        MLPClassifier(class_weight={7: 2.0}, max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="not supported for multilabel"):
        MLPClassifier(class_weight="balanced").fit(X, np.eye(3, dtype=int)[y])
    with pytest.raises(ValueError, match="'balanced' is not supported for partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])
