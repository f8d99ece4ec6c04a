"""``dropout=`` on MLPClassifier and MLPRegressor (a fastnn extension).

Inverted dropout in the stochastic solvers' minibatch steps, with the masks of
``fastnn/_dropout.py`` (one source on every backend), seeded from
``random_state`` and numbered by minibatch step.  Checked here: the default is
bitwise the fit without it; seeds; backends against NumPy; predict never
drops; the objective's gradient with the mask fixed by central differences of
a plainly written objective; one SGD step against a plainly written step with
the same mask; validation, the L-BFGS refusal, get_params and clone.
"""

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from fastnn import MLPClassifier, MLPRegressor, _dropout  # noqa: E402
from fastnn.backends import numpy_backend  # noqa: E402
from fastnn.sklearn._objective import _loss_and_grads, _spec  # noqa: E402
from fastnn_suite import (FD_STEP, GRADCHECK_TOL, assert_close,  # noqa: E402
                          assert_estimators_track, backend_params)
import naive  # noqa: E402


def _blobs(n=120, seed=0):
    X, y = make_blobs(n, n_features=4, centers=3, random_state=seed)
    return X / 4.0, y


def _regression(n=120, seed=0):
    X = np.random.default_rng(seed).uniform(-1, 1, (n, 4))
    return X, np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2]


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def _params(est):
    return [np.asarray(a) for a in list(est.coefs_) + list(est.intercepts_)]


def _bitwise_equal(a, b):
    pa, pb = _params(a), _params(b)
    return len(pa) == len(pb) and all(np.array_equal(x, y) for x, y in zip(pa, pb)) \
        and a.loss_curve_ == b.loss_curve_


_SMALL = dict(hidden_layer_sizes=(12, 8), max_iter=6, batch_size=32, backend="numpy")


# ---------------------------------------------------------------- off by default

@pytest.mark.parametrize("cls,data", [(MLPClassifier, _blobs), (MLPRegressor, _regression)])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_default_is_bitwise_the_fit_without_dropout(cls, data, solver):
    X, y = data()
    base = _fit(cls(**_SMALL, solver=solver, random_state=0), X, y)
    for off in (None, 1.0, (1.0, 1.0)):
        other = _fit(cls(**_SMALL, solver=solver, random_state=0, dropout=off), X, y)
        assert _bitwise_equal(base, other), off
    on = _fit(cls(**_SMALL, solver=solver, random_state=0, dropout=0.8), X, y)
    assert not _bitwise_equal(base, on)  # dropout changes training


def test_lbfgs_without_dropout_accepts_keep_one():
    X, y = _blobs()
    a = _fit(MLPClassifier((8,), solver="lbfgs", max_iter=5, random_state=0), X, y)
    b = _fit(MLPClassifier((8,), solver="lbfgs", max_iter=5, random_state=0, dropout=1.0), X, y)
    assert all(np.array_equal(x, z) for x, z in zip(_params(a), _params(b)))


# ------------------------------------------------------------------------ seeds

def test_same_random_state_same_fit_different_random_state_different_masks():
    X, y = _blobs()
    kw = dict(_SMALL, dropout=(0.7, 0.9), shuffle=False)
    a = _fit(MLPClassifier(**kw, random_state=3), X, y)
    b = _fit(MLPClassifier(**kw, random_state=3), X, y)
    assert _bitwise_equal(a, b)
    # Another seed changes the initial weights as well as the masks; the masks alone
    # are compared through the seeds the two fits draw them from.
    c = _fit(MLPClassifier(**kw, random_state=4), X, y)
    assert c._dropout_spec[1] != a._dropout_spec[1]
    key_a, key_c = (_dropout.step_key(s._dropout_spec[1], 1, 0) for s in (a, c))
    assert not np.array_equal(_dropout.keep_mask((12, 32), 0.7, key_a),
                              _dropout.keep_mask((12, 32), 0.7, key_c))
    assert not _bitwise_equal(a, c)


def test_int_random_state_keeps_the_weights_split_and_shuffles_of_the_fit_without_dropout():
    X, y = _blobs()
    kw = dict(_SMALL, max_iter=1, early_stopping=True, random_state=5)
    plain = MLPClassifier(**kw, learning_rate_init=1e-300)
    dropped = MLPClassifier(**kw, learning_rate_init=1e-300, dropout=0.5)
    for est in (plain, dropped):
        _fit(est, X, y)
    # A step of 1e-300 leaves the weights as initialised: the same with and without dropout.
    assert all(np.array_equal(x, z) for x, z in zip(_params(plain), _params(dropped)))
    assert plain.validation_scores_ == dropped.validation_scores_


def test_random_state_instance_gives_one_draw_and_repeats_from_the_same_state():
    X, y = _blobs()
    a = _fit(MLPClassifier(**_SMALL, dropout=0.6, random_state=np.random.RandomState(9)), X, y)
    b = _fit(MLPClassifier(**_SMALL, dropout=0.6, random_state=np.random.RandomState(9)), X, y)
    assert _bitwise_equal(a, b)


def test_warm_start_continues_the_step_count():
    X, y = _blobs()
    est = MLPClassifier(**dict(_SMALL, max_iter=1), dropout=0.6, random_state=0, shuffle=False,
                        warm_start=True)
    steps_per_epoch = -(-X.shape[0] // 32)
    _fit(est, X, y)
    assert est._dropout_steps == steps_per_epoch
    _fit(est, X, y)
    assert est._dropout_steps == 2 * steps_per_epoch
    est.partial_fit(X, y)
    assert est._dropout_steps == 3 * steps_per_epoch


# --------------------------------------------------------------------- backends

@pytest.mark.parametrize("name", backend_params(["numba", "numba-parallel"]))
@pytest.mark.parametrize("cls,data,solver", [(MLPClassifier, _blobs, "adam"),
                                             (MLPRegressor, _regression, "sgd")])
def test_backends_agree_with_numpy(name, cls, data, solver):
    X, y = data()
    kw = dict(_SMALL, solver=solver, random_state=0, dropout=(0.6, 0.8))
    ref = _fit(cls(**kw), X, y)
    other = _fit(cls(**dict(kw, backend=name)), X, y)
    assert_estimators_track(other, ref, err_msg=name)
    off = _fit(cls(**dict(kw, dropout=None)), X, y)
    assert not np.allclose(_params(off)[0], _params(ref)[0])  # the masks did something


# ---------------------------------------------------------------------- predict

def _plain_forward(est, X):
    A = X.T
    acts = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh}
    for c, b in zip(est.coefs_[:-1], est.intercepts_[:-1]):
        A = acts[est.activation](c.T @ A + b[:, None])
    Z = est.coefs_[-1].T @ A + est.intercepts_[-1][:, None]
    if est.out_activation_ == "softmax":
        E = np.exp(Z - Z.max(axis=0))
        return (E / E.sum(axis=0)).T
    return Z.T


@pytest.mark.parametrize("cls,data", [(MLPClassifier, _blobs), (MLPRegressor, _regression)])
def test_predict_never_drops(cls, data):
    X, y = data()
    est = _fit(cls(**_SMALL, random_state=0, dropout=0.5), X, y)
    out = est.predict_proba(X) if cls is MLPClassifier else est.predict(X)
    out2 = est.predict_proba(X) if cls is MLPClassifier else est.predict(X)
    assert np.array_equal(out, out2)
    assert_close(out, _plain_forward(est, X).reshape(out.shape), np.float64)
    assert est.score(X, y) == est.score(X, y)


def test_early_stopping_scores_without_dropout():
    X, y = _regression(200)
    est = MLPRegressor(**dict(_SMALL, max_iter=1), random_state=0, dropout=0.5,
                       early_stopping=True)
    seen = []
    split = est._split_for_early_stopping

    def recording(*args):
        parts = split(*args)
        seen.append(parts[3])
        return parts
    est._split_for_early_stopping = recording
    _fit(est, X, y)
    # One epoch: the fitted weights are the ones scored; r2 without dropout on the split.
    (X_val, y_val, _), = seen
    assert est.validation_scores_ == [est.score(X_val, y_val)]


# ------------------------------------------------------- the objective, mask fixed

_ACT = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh}


def _plain_objective(Ws, bs, X, Y, est, drop):
    A = X
    for l, (W, b) in enumerate(zip(Ws[:-1], bs[:-1]), start=1):
        A = _ACT[est.activation](W @ A + b)
        keep = drop.keeps[l - 1]
        A = A * _dropout.keep_mask(A.shape, keep, drop.key(l)) / keep
    Z = Ws[-1] @ A + bs[-1]
    m = X.shape[1]
    if est.out_activation_ == "softmax":
        losses = -Y * (Z - np.log(np.exp(Z).sum(axis=0, keepdims=True)))
    else:
        losses = 0.5 * (Z - Y) ** 2
    return float(losses.sum()) / m + 0.5 * est.alpha * sum(float((W * W).sum()) for W in Ws) / m


def _problem(cls, activation):
    if cls is MLPClassifier:
        X, y = _blobs(16, seed=1)
    else:
        X, y = _regression(16, seed=1)
    est = _fit(cls(hidden_layer_sizes=(6, 5), activation=activation, max_iter=1, alpha=0.3, random_state=0, dropout=(0.6, 0.8),
                   backend="numpy"), X, y)
    Y = est._label_binarizer.transform(y).T if cls is MLPClassifier else y[None, :]
    Ws = [np.array(c.T) for c in est.coefs_]
    bs = [np.array(b[:, None]) for b in est.intercepts_]
    return est, np.array(X.T), np.array(Y, dtype=np.float64), Ws, bs


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_objective_gradient_with_the_mask_fixed_by_central_differences(cls, activation):
    est, X, Y, Ws, bs = _problem(cls, activation)
    drop = _dropout.DropoutStep((0.6, 0.8), 77, 5)
    loss, dWs, dbs = _loss_and_grads(numpy_backend, _spec(est), Ws, bs, X, Y, X.shape[1],
                                     drop=drop)
    assert loss == pytest.approx(_plain_objective(Ws, bs, X, Y, est, drop), rel=GRADCHECK_TOL)
    g, gn = [], []
    for P, G in zip(Ws + bs, dWs + dbs):
        num = naive.central_differences(P, lambda: _plain_objective(Ws, bs, X, Y, est, drop),
                                        FD_STEP)
        g.append(np.asarray(G).ravel())
        gn.append(num.ravel())
    g, gn = np.concatenate(g), np.concatenate(gn)
    assert np.linalg.norm(g - gn) / (np.linalg.norm(g) + np.linalg.norm(gn)) < GRADCHECK_TOL


def test_one_sgd_step_is_a_plain_step_with_the_masks_of_its_step_number():
    X, y = _regression(16, seed=2)
    lr = 0.05
    est = MLPRegressor(hidden_layer_sizes=(6, 5), activation="tanh", solver="sgd", momentum=0.0, learning_rate_init=lr,
                       batch_size=16, shuffle=False, max_iter=1, alpha=0.0, random_state=4,
                       dropout=(0.5, 0.7), warm_start=True, backend="numpy")
    _fit(est, X, y)  # step 0
    Ws = [np.array(c.T) for c in est.coefs_]
    bs = [np.array(b[:, None]) for b in est.intercepts_]
    _fit(est, X, y)  # step 1: the second fit continues the count
    drop = _dropout.DropoutStep((0.5, 0.7), _dropout.derive_seed(4), 1)
    XT, Y = np.array(X.T), y[None, :]
    # A plain backward pass of the mean squared loss through the masked network.
    As, Ds, A = [XT], [], XT
    for l, (W, b) in enumerate(zip(Ws[:-1], bs[:-1]), start=1):
        H = np.tanh(W @ A + b)
        D = _dropout.keep_mask(H.shape, drop.keeps[l - 1], drop.key(l)) / drop.keeps[l - 1]
        Ds.append((H, D))
        A = H * D
        As.append(A)
    dZ = (Ws[-1] @ A + bs[-1] - Y) / XT.shape[1]
    new = [None] * (2 * len(Ws))
    for l in range(len(Ws) - 1, -1, -1):
        new[l] = Ws[l] - lr * dZ @ As[l].T
        new[len(Ws) + l] = bs[l] - lr * dZ.sum(axis=1, keepdims=True)
        if l:
            H, D = Ds[l - 1]
            dZ = (Ws[l].T @ dZ) * D * (1 - H ** 2)
    got = [np.asarray(c).T for c in est.coefs_] + [np.asarray(b)[:, None] for b in est.intercepts_]
    for a, b in zip(got, new):
        assert_close(a, b, np.float64)


# ------------------------------------------------------------- parameters, errors

@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_get_params_and_clone_round_trip(cls):
    est = cls(hidden_layer_sizes=(5, 4), dropout=(0.5, 0.9))
    assert est.get_params()["dropout"] == (0.5, 0.9)
    assert cls().get_params()["dropout"] is None
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    assert clone(est.set_params(dropout=0.7)).dropout == 0.7


@pytest.mark.parametrize("cls,data", [(MLPClassifier, _blobs), (MLPRegressor, _regression)])
@pytest.mark.parametrize("bad,exc", [(0.0, ValueError), (1.5, ValueError), (float("nan"), ValueError),
                                     ((0.5,), ValueError), ((0.5, 0.5, 0.5), ValueError),
                                     ("0.5", TypeError), (True, TypeError), ((0.5, None), TypeError)])
def test_validation_names_dropout(cls, data, bad, exc):
    X, y = data(40)
    with pytest.raises(exc, match=f"{cls.__name__}: dropout"):
        cls(hidden_layer_sizes=(4, 3), dropout=bad, max_iter=1).fit(X, y)


@pytest.mark.parametrize("cls,data", [(MLPClassifier, _blobs), (MLPRegressor, _regression)])
def test_lbfgs_refuses_dropout(cls, data):
    X, y = data(40)
    with pytest.raises(ValueError, match=r"dropout=0\.5 .*solver='lbfgs'"):
        cls(hidden_layer_sizes=(4,), solver="lbfgs", dropout=0.5).fit(X, y)
