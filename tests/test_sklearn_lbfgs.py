"""solver="lbfgs": fastnn's loss and gradient under SciPy's L-BFGS-B, as scikit-learn.

With the same seed both start from the same Glorot draw, evaluate the same
loss and gradient (to rounding) and hand them to the same L-BFGS-B with the
same options, so the iterates agree to rounding (growing with the
iterations: the trajectory tests stop at 6; see SKLEARN_TRACKING_EPS).
"""

import re
import warnings

import numpy as np
import pytest


from sklearn.datasets import make_blobs, make_multilabel_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402

import fastnn  # noqa: E402
from fastnn import MLPClassifier, MLPRegressor  # noqa: E402
from fastnn_suite import (  # noqa: E402
    SKLEARN_TRACKING_EPS, assert_estimators_track, assert_losses_track)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _blobs(centers=3, n=240):
    X, y = make_blobs(n_samples=n, n_features=12, centers=centers, random_state=0)
    return (X - X.mean(axis=0)) / X.std(axis=0), y


def _regression(n_outputs=3, n=300):
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, (n, 4))
    Y = np.column_stack([np.sin(2 * X[:, 0]) + k * X[:, 1] * X[:, 2] for k in range(1, n_outputs + 1)])
    return X, (Y[:, 0] if n_outputs == 1 else Y)


def _datasets():
    X, y = _blobs()
    Xm, Ym = make_multilabel_classification(n_samples=200, n_features=10, n_classes=4,
                                            random_state=0)
    return {
        "multiclass": (MLPClassifier, SkMLPClassifier, X, y),
        "binary": (MLPClassifier, SkMLPClassifier, X, y == 1),
        "multilabel": (MLPClassifier, SkMLPClassifier, Xm, Ym),
        "regression": (MLPRegressor, SkMLPRegressor, *_regression(1)),
        "multioutput": (MLPRegressor, SkMLPRegressor, *_regression(3)),
    }


CASES = [(data, act) for data in ("multiclass", "binary", "multilabel", "regression", "multioutput")
         for act in ("relu", "logistic", "tanh", "identity")
         # ill-conditioned: rounding grows past the tolerance (conftest), objective tested only
         if (data, act) not in (("multilabel", "identity"), ("regression", "logistic"))]


@pytest.mark.parametrize("data,activation", CASES, ids=[f"{d}-{a}" for d, a in CASES])
def test_lbfgs_tracks_sklearn(data, activation):
    Ours, Theirs, X, y = _datasets()[data]
    settings = dict(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=6, random_state=0,
                    activation=activation, alpha=1e-3)
    ours, theirs = Ours(**settings).fit(X, y), Theirs(**settings).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.out_activation_ == theirs.out_activation_
    assert_losses_track(ours.loss_, theirs.loss_, err_msg="loss_")
    assert_estimators_track(ours, theirs, err_msg=f"{data} {activation}")
    assert ours.predict(X).shape == theirs.predict(X).shape


@pytest.mark.parametrize("activation", ["relu", "logistic", "tanh", "identity"])
def test_lbfgs_loss_and_gradient_are_sklearns(activation):
    """The objective itself, at the same flat parameters: loss and every gradient entry."""
    eps = np.finfo(np.float64).eps
    for Ours, Theirs, X, y in _datasets().values():
        settings = dict(hidden_layer_sizes=(7, 5), solver="lbfgs", max_iter=2, alpha=0.1,
                        random_state=0, activation=activation)
        ours, theirs = Ours(**settings).fit(X, y), Theirs(**settings).fit(X, y)
        theta = np.concatenate([a.ravel() for a in theirs.coefs_ + theirs.intercepts_])
        Y = theirs._label_binarizer.transform(y) if hasattr(theirs, "classes_") else \
            np.reshape(y, (len(y), -1))
        sw = np.random.RandomState(1).uniform(0.5, 2, len(y))
        for weights in (None, sw):
            L = theirs.n_layers_ - 1
            work = ([X] + [None] * L, [None] * L, [None] * L, [None] * L)
            loss_t, grad_t = theirs._loss_grad_lbfgs(theta.copy(), X, Y, weights, *work)
            loss_o, grad_o = ours._loss_grad_lbfgs(theta.copy(), X, Y, weights)
            assert_losses_track(loss_o, loss_t)
            np.testing.assert_allclose(grad_o, grad_t, rtol=0,
                                       atol=SKLEARN_TRACKING_EPS * eps * np.abs(grad_t).max())
            # the parameters are left in coefs_/intercepts_, as scikit-learn's
            np.testing.assert_array_equal(ours.coefs_[0], theirs.coefs_[0])


def test_lbfgs_has_no_loss_curve_and_no_partial_fit():
    X, y = _blobs()
    clf = MLPClassifier((8,), solver="lbfgs", max_iter=5, random_state=0).fit(X, y)
    assert not hasattr(clf, "loss_curve_") and not hasattr(clf, "best_loss_")
    assert clf.t_ == 0 and 0 < clf.n_iter_ <= 5 and np.isfinite(clf.loss_)
    for est in (MLPClassifier(solver="lbfgs"), MLPRegressor(solver="lbfgs")):
        assert not hasattr(est, "partial_fit")
        with pytest.raises(AttributeError) as info:
            est.partial_fit  # noqa: B018
        assert "partial_fit is only available for stochastic" in str(info.value.__cause__)
    assert hasattr(MLPClassifier(solver="sgd"), "partial_fit")
    assert hasattr(MLPRegressor(solver="adam"), "partial_fit")


def _warning_text(fit):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit()
    return [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]


@pytest.mark.parametrize("limit", ["max_iter", "max_fun"])
def test_lbfgs_limits_and_convergence_warning_as_sklearn(limit):
    X, y = _blobs()
    settings = dict(hidden_layer_sizes=(16,), solver="lbfgs", random_state=0, tol=0.0,
                    max_iter=4 if limit == "max_iter" else 200,
                    max_fun=6 if limit == "max_fun" else 15000)
    ours, theirs = MLPClassifier(**settings), SkMLPClassifier(**settings)
    ours_msg, theirs_msg = _warning_text(lambda: ours.fit(X, y)), _warning_text(lambda: theirs.fit(X, y))
    assert ours_msg == theirs_msg and len(ours_msg) == 1
    assert re.search(r"lbfgs failed to converge after \d+ iteration", ours_msg[0])
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.n_iter_ == 4 if limit == "max_iter" else ours.n_iter_ <= 6


def test_lbfgs_converged_fit_does_not_warn():
    X, y = _blobs(centers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier((8,), solver="lbfgs", tol=1e-2, random_state=0).fit(X, y)
    assert clf.n_iter_ < 200 and clf.score(X, y) == 1.0


def test_lbfgs_warm_start_continues_like_sklearn():
    X, y = _blobs()
    settings = dict(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=4, random_state=0,
                    warm_start=True)
    ours, theirs = MLPClassifier(**settings), SkMLPClassifier(**settings)
    for _ in range(2):
        ours.fit(X, y)
        theirs.fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 4
    assert_estimators_track(ours, theirs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_lbfgs_numpy_and_numba_backends_agree(dtype):
    X, y = _blobs()
    X = X.astype(dtype)
    fits = {b: MLPClassifier((16, 8), solver="lbfgs", max_iter=10, random_state=0, backend=b,
                             alpha=1e-3).fit(X, y) for b in ("numpy", "numba", "numba-parallel")}
    for name in ("numba", "numba-parallel"):
        assert fits[name].coefs_[0].dtype == dtype
        assert fits[name].n_iter_ == fits["numpy"].n_iter_
        assert_estimators_track(fits[name], fits["numpy"], dtype, err_msg=name)


def test_lbfgs_float32_stays_float32_and_follows_float64():
    X, y = _blobs()
    c32 = MLPClassifier((8,), solver="lbfgs", max_iter=5, random_state=0).fit(X.astype(np.float32), y)
    assert all(a.dtype == np.float32 for a in c32.coefs_ + c32.intercepts_)
    assert c32.predict_proba(X.astype(np.float32)).dtype == np.float32
    c64 = MLPClassifier((8,), solver="lbfgs", max_iter=5, random_state=0).fit(X, y)
    np.testing.assert_array_equal(c32.predict(X.astype(np.float32)), c64.predict(X))
