"""The scikit-learn estimators' newer paths on the CUDA backend against the NumPy
backend: per-example weights (sample_weight, class_weight), the Poisson loss, a
sparse X (first-layer products on the host), L-BFGS and dropout (the same masks
on every backend).  Same data, same seeds:
the same parameters and losses within twice the suite's bound.
"""

import numpy as np
import pytest
import scipy.sparse as sp

pytestmark = [pytest.mark.cuda,
              pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")]

DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]
M, STEPS = 24, 6          # examples; optimizer steps (3 batches of 8, 2 epochs)


@pytest.fixture
def small_launch(cb, monkeypatch):
    """TPB = 4, TILE = 4: m = 24 spans several blocks (and keeps the simulator quick)."""
    monkeypatch.setattr(cb, "TPB", 4)
    monkeypatch.setattr(cb, "TILE", 4)


def _close(tols, actual, expected, dtype, n_terms, magnitude, err_msg=""):
    tols.assert_close(actual, expected, dtype, 4 * max(int(n_terms), 1), magnitude=magnitude,
                      err_msg=err_msg)


def _case(name, dtype, rng):
    """(estimator class, its options, X, y, fit options) for one path."""
    from fastnn import MLPClassifier, MLPRegressor

    X = rng.standard_normal((M, 5)).astype(dtype)
    labels = rng.integers(0, 3, M)
    common = dict(hidden_layer_sizes=(6,), alpha=0.3, batch_size=8, max_iter=2,
                  learning_rate_init=0.01, random_state=0)
    if name == "sample_weight":
        return MLPClassifier, common, X, labels, {"sample_weight": rng.uniform(0.2, 3.0, M)}
    if name == "class_weight":
        return MLPClassifier, dict(common, class_weight="balanced"), X, labels, {}
    if name == "poisson":
        return MLPRegressor, dict(common, loss="poisson"), X, rng.poisson(2.0, M).astype(dtype), {}
    if name == "sparse":
        dense = np.where(rng.random((M, 5)) < 0.4, X, 0).astype(dtype)
        return MLPClassifier, common, sp.csr_matrix(dense), labels, {}
    if name == "dropout":
        return MLPClassifier, dict(common, dropout=0.7), X, labels, {}
    return MLPClassifier, dict(common, solver="lbfgs", max_iter=5), X, labels, {}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["sample_weight", "class_weight", "poisson", "sparse", "lbfgs",
                                  "dropout"])
def test_estimator_path_parity(cb, tols, registered, small_launch, name, dtype):
    fits = {}
    for backend in ("cuda", "numpy"):
        cls, options, X, y, fit_kw = _case(name, dtype, np.random.default_rng(11))
        fits[backend] = cls(backend=backend, **options).fit(X, y, **fit_kw)
    a, e = fits["cuda"], fits["numpy"]
    steps = 5 * 8 if name == "lbfgs" else STEPS   # L-BFGS: up to 5 iterations, a few evaluations each
    for x, ref in zip(a.coefs_ + a.intercepts_, e.coefs_ + e.intercepts_):
        assert x.dtype == np.dtype(dtype)
        # |P| plus what the steps moved it, over steps x batch terms
        _close(tols, x, ref, dtype, steps * 8, np.abs(ref) + np.abs(ref).max() + steps * 0.01,
               f"{name} params")
    _close(tols, a.loss_, e.loss_, dtype, steps * 8, abs(e.loss_) + 1.0, f"{name} loss")
