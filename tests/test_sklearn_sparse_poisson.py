"""Sparse X (CSR/CSC, matrices and arrays) and MLPRegressor(loss="poisson"),
against the dense fit, scikit-learn and the NumPy backend."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402

import fastnn  # noqa: E402
from fastnn import MLPClassifier, MLPRegressor  # noqa: E402
from fastnn_suite import assert_estimators_track, assert_losses_track  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

CONTAINERS = [sp.csr_matrix, sp.csc_matrix, sp.csr_array, sp.csc_array]


def _sparse_data(n=200, n_features=60, density=0.1, seed=0):
    rng = np.random.RandomState(seed)
    X = sp.random(n, n_features, density=density, format="csr", random_state=rng).toarray()
    y = (X[:, :20].sum(axis=1) > np.median(X[:, :20].sum(axis=1))).astype(int) \
        + (X[:, 20:40].sum(axis=1) > np.median(X[:, 20:40].sum(axis=1)))
    return X, y


@pytest.fixture
def no_densify(monkeypatch):
    """Make densifying a wide SciPy sparse matrix or array (X has 60 columns) an error for
    the test's duration; narrow ones (scikit-learn's label indicators, <= 3 columns) pass."""
    for cls in CONTAINERS:
        for name in ("toarray", "todense"):
            original = getattr(cls, name)

            def guarded(self, *args, _original=original, **kwargs):
                if self.shape[1] > 10:
                    raise AssertionError("a sparse X was densified")
                return _original(self, *args, **kwargs)
            monkeypatch.setattr(cls, name, guarded)


@pytest.mark.parametrize("container", CONTAINERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_sparse_fit_equals_dense_fit(container, solver, request):
    X, y = _sparse_data()
    settings = dict(hidden_layer_sizes=(10,), solver=solver, max_iter=6, random_state=0,
                    learning_rate_init=0.01, alpha=1e-3)
    dense = MLPClassifier(**settings).fit(X, y)
    Xs = container(X)
    request.getfixturevalue("no_densify")
    sparse = MLPClassifier(**settings).fit(Xs, y, sample_weight=np.ones(len(y)))
    assert sparse.n_iter_ == dense.n_iter_
    assert_estimators_track(sparse, dense)
    proba = sparse.predict_proba(Xs)
    np.testing.assert_allclose(proba, dense.predict_proba(X), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(sparse.predict(Xs), dense.predict(X))


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_sparse_tracks_sklearn(solver, request):
    X, y = _sparse_data()
    Xs = sp.csr_matrix(X)
    request.getfixturevalue("no_densify")
    sw = np.random.RandomState(3).uniform(0.2, 2, len(y))
    settings = dict(hidden_layer_sizes=(10,), solver=solver, max_iter=6, random_state=0,
                    learning_rate_init=0.01)
    ours = MLPClassifier(**settings).fit(Xs, y, sample_weight=sw)
    theirs = SkMLPClassifier(**settings).fit(Xs, y, sample_weight=sw)
    assert_estimators_track(ours, theirs)
    reg = MLPRegressor(hidden_layer_sizes=(), max_iter=4, random_state=0).fit(Xs, y.astype(float))
    reg_sk = SkMLPRegressor(hidden_layer_sizes=(), max_iter=4, random_state=0).fit(Xs, y.astype(float))
    assert_losses_track(reg.loss_curve_, reg_sk.loss_curve_)
    assert_estimators_track(reg, reg_sk)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_sparse_numpy_and_numba_backends_agree(dtype):
    X, y = _sparse_data()
    Xs = sp.csr_matrix(X.astype(dtype))
    fits = {b: MLPClassifier((10, 5), max_iter=4, random_state=0, backend=b).fit(Xs, y)
            for b in ("numpy", "numba", "numba-parallel")}
    for name in ("numba", "numba-parallel"):
        assert fits[name].coefs_[0].dtype == dtype
        assert_estimators_track(fits[name], fits["numpy"], dtype, err_msg=name)


def test_sparse_early_stopping_and_partial_fit(request):
    X, y = _sparse_data()
    Xs, Xc = sp.csr_matrix(X), sp.csc_matrix(X[100:])
    request.getfixturevalue("no_densify")
    settings = dict(hidden_layer_sizes=(10,), max_iter=5, random_state=0, early_stopping=True,
                    n_iter_no_change=100)
    ours, theirs = MLPClassifier(**settings).fit(Xs, y), SkMLPClassifier(**settings).fit(Xs, y)
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=0, atol=1e-12)
    assert_estimators_track(ours, theirs)
    clf = MLPClassifier((10,), random_state=0).partial_fit(Xs[:100], y[:100], classes=[0, 1, 2])
    clf.partial_fit(Xc, y[100:])
    assert clf.t_ == 200


# ------------------------------------------------------------------ poisson

def _counts(n=300, seed=0, n_outputs=1):
    rng = np.random.RandomState(seed)
    X = rng.uniform(-1, 1, (n, 3))
    rate = np.exp(np.column_stack([0.5 + X[:, 0] - 0.5 * X[:, 1] * k for k in range(1, n_outputs + 1)]))
    Y = rng.poisson(rate).astype(float)
    return X, (Y[:, 0] if n_outputs == 1 else Y)


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
@pytest.mark.parametrize("n_outputs", [1, 2])
def test_poisson_tracks_sklearn(solver, n_outputs):
    X, y = _counts(n_outputs=n_outputs)
    settings = dict(loss="poisson", hidden_layer_sizes=(8,), solver=solver, max_iter=6,
                    random_state=0, learning_rate_init=0.01, alpha=1e-3)
    sw = np.random.RandomState(4).uniform(0.5, 2, len(y))
    ours = MLPRegressor(**settings).fit(X, y, sample_weight=sw)
    theirs = SkMLPRegressor(**settings).fit(X, y, sample_weight=sw)
    assert ours.out_activation_ == theirs.out_activation_ == "exp"
    assert_losses_track(ours.loss_, theirs.loss_)
    if solver != "lbfgs":
        assert_losses_track(ours.loss_curve_, theirs.loss_curve_)
    assert_estimators_track(ours, theirs)
    pred = ours.predict(X)
    assert pred.shape == theirs.predict(X).shape and (pred > 0).all()
    np.testing.assert_allclose(pred, theirs.predict(X), rtol=1e-10)


def test_poisson_objective_is_sklearns():
    X, y = _counts(n_outputs=2)
    ours = MLPRegressor(loss="poisson", hidden_layer_sizes=(5,), solver="lbfgs", max_iter=1,
                        random_state=0, alpha=0.3).fit(X, y)
    theirs = SkMLPRegressor(loss="poisson", hidden_layer_sizes=(5,), solver="lbfgs", max_iter=1,
                            random_state=0, alpha=0.3).fit(X, y)
    theta = np.concatenate([a.ravel() for a in theirs.coefs_ + theirs.intercepts_])
    work = ([X, None, None], [None] * 2, [None] * 2, [None] * 2)
    loss_t, grad_t = theirs._loss_grad_lbfgs(theta.copy(), X, y, None, *work)
    loss_o, grad_o = ours._loss_grad_lbfgs(theta.copy(), X, y, None)
    assert_losses_track(loss_o, loss_t)
    eps = np.finfo(np.float64).eps
    np.testing.assert_allclose(grad_o, grad_t, rtol=0, atol=100 * eps * np.abs(grad_t).max())


def test_poisson_numpy_and_numba_backends_agree():
    X, y = _counts()
    fits = {b: MLPRegressor(loss="poisson", hidden_layer_sizes=(8,), max_iter=4, random_state=0,
                            backend=b).fit(X, y) for b in ("numpy", "numba", "numba-parallel")}
    for name in ("numba", "numba-parallel"):
        assert_estimators_track(fits[name], fits["numpy"], err_msg=name)
        assert_losses_track(fits[name].loss_curve_, fits["numpy"].loss_curve_)


def test_poisson_loss_value_is_half_deviance():
    """loss_ of a fit equals the half Poisson deviance of its own predictions (alpha=0)."""
    X, y = _counts()
    reg = MLPRegressor(loss="poisson", hidden_layer_sizes=(4,), solver="lbfgs", max_iter=20,
                       alpha=0.0, random_state=0).fit(X, y)
    mu = reg.predict(X)
    with np.errstate(divide="ignore", invalid="ignore"):
        ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y, 1)), 0.0)
    deviance = np.mean(ylogy - y * np.log(mu) - y + mu)
    assert_losses_track(reg.loss_, deviance)
