"""Dropout as a fastnn feature: ``Model(..., dropout=...)``.

The masks are Philox4x32-10 words of ``(seed, layer, step, unit, example)``
(``fastnn/_dropout.py``), one source compiled on every backend.  Checked here:
the hash against Random123's published answers and against its compiled twin;
every backend's fused kernel bitwise against the NumPy reference mask; the
mask's mean against keep (a binomial bound); gradients with the mask fixed by
central differences of a plainly written objective; every backend against the
NumPy backend; keep = 1 is bitwise the run without dropout; seeds; validation;
save/load and checkpoints.
"""

import math

import numpy as np
import pytest

import fastnn
from fastnn import _dropout
from fastnn.engine import backward as _backward, forward_dropout as _forward_dropout
from fastnn.backends import get_backend, numpy_backend
from fastnn.errors import FastnnTypeError, FastnnValueError
from fastnn_suite import (BACKEND_PARAMS, FD_STEP, GRADCHECK_TOL, PLANTED_MIN, assert_close,
                          backend_params, make_problem, tol)
import naive

U = np.uint64

# Random123's known-answer vectors for Philox4x32-10 (its tests/kat_vectors):
# counter, key, output words.
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


# ------------------------------------------------------------------ the hash


@pytest.mark.parametrize("ctr, key, out", PHILOX_KAT)
def test_philox_known_answers(ctr, key, out):
    words = _dropout.philox4x32(*map(U, ctr), *map(U, key))
    assert tuple(int(w) for w in words) == out


@pytest.mark.parametrize("name", backend_params(["numba"]))
def test_compiled_philox_is_its_source(name):
    """The Numba kernels' compiled Philox equals the NumPy evaluation of the same source."""
    from fastnn.backends._numba_kernels.dropout import _philox
    rng = np.random.default_rng(0)
    args = rng.integers(0, 1 << 32, size=(200, 6), dtype=np.uint64)
    args[0], args[1] = 0, 0xFFFFFFFF
    vectorised = _dropout.philox4x32(*args.T)
    for row, *words in zip(args, *vectorised):
        assert tuple(int(w) for w in _philox(*map(U, row))) == tuple(int(w) for w in words)


def _binomial_ok(count, n, p, sigmas=6.0):
    """|count - n p| within ``sigmas`` standard deviations of Binomial(n, p)."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.8, 0.97])
def test_mask_mean_is_keep(keep):
    """Kept fraction ~ Binomial(N, p) with p = round(keep 2^32) / 2^32; two steps' masks
    agree as independent draws would (p^2 + (1 - p)^2)."""
    shape = (300, 3000)
    n = shape[0] * shape[1]
    p = int(_dropout.threshold(keep)) / 2.0 ** 32
    a = _dropout.keep_mask(shape, keep, _dropout.step_key(7, 1, 0))
    b = _dropout.keep_mask(shape, keep, _dropout.step_key(7, 1, 1))
    assert _binomial_ok(int(a.sum()), n, p)
    assert _binomial_ok(int(a[: shape[0] // 2].sum()), n // 2, p)        # rows
    assert _binomial_ok(int(a[:, ::7].sum()), a[:, ::7].size, p)          # strided columns
    q = p * p + (1 - p) * (1 - p)
    assert _binomial_ok(int((a == b).sum()), n, q)


def test_every_input_of_the_key_changes_the_mask():
    base = dict(seed=11, layer=1, t=5)
    ref = _dropout.keep_mask((20, 50), 0.5, _dropout.step_key(**base))
    for change in ({"seed": 12}, {"seed": 11 + (1 << 32)}, {"layer": 2}, {"t": 6},
                   {"t": 5 + (1 << 32)}):
        other = _dropout.keep_mask((20, 50), 0.5, _dropout.step_key(**{**base, **change}))
        # Independent masks agree on about half the entries, never on all.
        assert 0.3 < float(np.mean(other == ref)) < 0.7, change
    # Rows and columns draw separately (a transposed index would repeat them).
    assert not np.array_equal(ref[0], ref[1]) and not np.array_equal(ref[:, 0], ref[:, 1])
    assert np.array_equal(ref, _dropout.keep_mask((20, 50), 0.5, _dropout.step_key(**base)))


# ------------------------------------------------------------------ the kernels


def _bits(x):
    x = np.ascontiguousarray(x)
    return x.view(np.uint8)


@pytest.mark.parametrize("name", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, keep", [((3, 2500), 0.7), ((1, 1), 0.3), ((7, 5), 0.9),
                                         ((4, 33), 1.0)])
def test_fused_kernel_equals_the_reference_mask_bitwise(name, dtype, shape, keep):
    bk = get_backend(name)
    rng = np.random.default_rng(1)
    A = rng.standard_normal(shape).astype(dtype)
    A.flat[::5] = 0.0
    A.flat[1::7] = -0.0
    key = _dropout.step_key((1 << 64) - 1, 3, (1 << 32) + 7)
    kd = np.dtype(dtype).type(keep)
    expected = np.where(_dropout.keep_mask(shape, keep, key), A / kd, np.dtype(dtype).type(0))
    out = bk.to_host(bk.dropout_forward(bk.to_device(A), keep, key))
    assert out.dtype == dtype and out.shape == shape
    assert np.array_equal(_bits(out), _bits(expected))
    dA = bk.to_device(A.copy())
    back = bk.to_host(bk.dropout_backward(dA, keep, key))
    assert np.array_equal(_bits(back), _bits(expected))
    assert np.array_equal(_bits(bk.to_host(dA)), _bits(expected)), "not in place"


# ------------------------------------------------------------------ gradients


def _engine(bk, params, X, Y, hidden, output, drop, scaling="deferred"):
    """(loss_sum, grads) of one training step's pass with the masks of ``drop``."""
    L = len(params) // 2
    Ws = [bk.to_device(params[f"W{l}"]) for l in range(1, L + 1)]
    bs = [bk.to_device(params[f"b{l}"]) for l in range(1, L + 1)]
    As, Gs, ZL = _forward_dropout(bk, Ws, bs, bk.to_device(X), hidden, output, drop)
    dWs, dbs, loss = _backward(bk, Ws, As, ZL, bk.to_device(Y), hidden, output, scaling,
                               "fused", 0.0, drop=drop, Gs=Gs)
    grads = {}
    for l in range(1, L + 1):
        grads[f"dW{l}"], grads[f"db{l}"] = bk.to_host(dWs[l - 1]), bk.to_host(dbs[l - 1])
    return loss, grads


_G = {"tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "relu": lambda z: np.maximum(z, 0)}


def _plain_objective(params, X, Y, hidden, output, drop):
    """J = (1/m) sum of losses of the net with A[l] <- A[l] * D[l] / keep[l], written out."""
    L = len(params) // 2
    A = X
    for l in range(1, L):
        A = _G[hidden](params[f"W{l}"] @ A + params[f"b{l}"])
        keep = drop.keeps[l - 1]
        A = A * _dropout.keep_mask(A.shape, keep, drop.key(l)) / keep
    Z = params[f"W{L}"] @ A + params[f"b{L}"]
    if output == "sigmoid":
        losses = np.logaddexp(0, Z) - Y * Z
    elif output == "softmax":
        losses = -Y * (Z - np.log(np.exp(Z).sum(axis=0, keepdims=True)))
    else:
        losses = 0.5 * (Z - Y) ** 2
    return float(losses.sum()) / X.shape[1]


def _rel_error(params, X, Y, hidden, output, drop, bk=numpy_backend):
    _, grads = _engine(bk, params, X, Y, hidden, output, drop)
    g, gn = [], []
    for key, P in params.items():
        G = naive.central_differences(
            P, lambda: _plain_objective(params, X, Y, hidden, output, drop), FD_STEP)
        g.append(grads["d" + key].ravel())
        gn.append(G.ravel())
    g, gn = np.concatenate(g), np.concatenate(gn)
    return float(np.linalg.norm(g - gn) / (np.linalg.norm(g) + np.linalg.norm(gn)))


_DIMS = [4, 6, 5, 3]


def _problem(output, m=12, seed=0, dtype=np.float64):
    dims = _DIMS[:-1] + [{"softmax": 3}.get(output, 2)]
    return make_problem(dims, m, output, dtype, seed=seed)


@pytest.mark.parametrize("hidden", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("output", ["sigmoid", "softmax", "identity"])
@pytest.mark.parametrize("keeps", [(0.6, 0.6), (0.5, 1.0)])
def test_gradients_with_the_mask_fixed_by_central_differences(hidden, output, keeps):
    params, X, Y = _problem(output)
    drop = _dropout.DropoutStep(keeps, 2024, 3)
    loss, _ = _engine(numpy_backend, params, X, Y, hidden, output, drop)
    assert loss / X.shape[1] == pytest.approx(_plain_objective(params, X, Y, hidden, output, drop),
                                              rel=GRADCHECK_TOL)
    assert _rel_error(params, X, Y, hidden, output, drop) < GRADCHECK_TOL


def _without_division(dA, keep, key):
    dA[~_dropout.keep_mask(dA.shape, keep, key)] = 0
    return dA


@pytest.mark.parametrize("bug, planted", [("no /keep in the backward", _without_division),
                                          ("no mask in the backward", lambda dA, keep, key: dA)])
def test_a_planted_backward_bug_is_caught(monkeypatch, bug, planted):
    params, X, Y = _problem("sigmoid")
    drop = _dropout.DropoutStep((0.6, 0.6), 2024, 3)
    monkeypatch.setattr(numpy_backend, "dropout_backward", planted)
    assert _rel_error(params, X, Y, "tanh", "sigmoid", drop) > PLANTED_MIN, bug


def _magnitudes(params, X, Y, hidden, output, drop):
    """Sum of |terms| of every gradient entry (tests/naive.py's model, with the masks):
    forward ``|z| = |W| |a~| + |b|``, ``|a| = |a| + |g'(z)| |z|``, ``|a~| = |a| D / keep``;
    backward ``|dz[L]| = |a[L]| + |y|``, ``|dW| = |dz| |a~|^T / m``, ``|da~| = |W|^T |dz|``,
    ``|da| = |da~| D / keep``, ``|dz| = |da| (|g'| + the error g' inherits from a)``."""
    L = len(params) // 2
    Ws = [np.abs(params[f"W{l}"]) for l in range(1, L + 1)]
    a_mag, dropped, masks, acts, slopes = [np.abs(X)], [np.abs(X)], [None], [None], [None]
    A = X
    for l in range(1, L + 1):
        Z = params[f"W{l}"] @ A + params[f"b{l}"]
        z_mag = Ws[l - 1] @ dropped[-1] + np.abs(params[f"b{l}"])
        if l == L:
            A = fastnn.activations.ACTIVATIONS[output](Z.copy(), np.empty_like(Z))
            extra = A * (z_mag + z_mag.max(axis=0)) if output == "softmax" else \
                {"sigmoid": A * (1 - A), "identity": 1.0}[output] * z_mag
            a_mag.append(np.abs(A) + extra)
            break
        A = _G[hidden](Z)
        slope = {"tanh": 1 - A * A, "sigmoid": A * (1 - A), "relu": (A > 0) * 1.0}[hidden]
        mag = np.abs(A) + np.abs(slope) * z_mag
        inherited = {"tanh": 2 * np.abs(A), "sigmoid": np.abs(1 - 2 * A)}.get(hidden, 0.0) * mag
        D = _dropout.keep_mask(A.shape, drop.keeps[l - 1], drop.key(l)) / drop.keeps[l - 1]
        a_mag.append(mag)
        dropped.append(mag * D)
        masks.append(D)
        slopes.append(np.abs(slope) + inherited)
        A = A * D
    m = X.shape[1]
    dz = a_mag[-1] + np.abs(Y)
    out = {}
    for l in range(L, 0, -1):
        out[f"dW{l}"] = dz @ dropped[l - 1].T / m
        out[f"db{l}"] = dz.sum(axis=1, keepdims=True) / m
        if l > 1:
            dz = (Ws[l - 1].T @ dz) * masks[l - 1] * slopes[l - 1]
    return out


@pytest.mark.parametrize("name", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hidden, output", [("tanh", "sigmoid"), ("relu", "softmax"),
                                            ("sigmoid", "identity")])
def test_gradients_equal_the_numpy_backend(name, dtype, hidden, output):
    """Each backend's gradients against the NumPy backend in float64 on the same inputs
    (keeps exact in float32, so both divide by the same number)."""
    params, X, Y = _problem(output, m=40, seed=3, dtype=dtype)
    drop = _dropout.DropoutStep((0.75, 0.625), 99, 12)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    _, expected = _engine(numpy_backend, p64, X64, Y64, hidden, output, drop)
    _, grads = _engine(get_backend(name), params, X, Y, hidden, output, drop)
    mags = _magnitudes(p64, X64, Y64, hidden, output, drop)
    for k in expected:
        assert grads[k].dtype == dtype
        assert_close(grads[k], expected[k], dtype, n_terms=40, magnitude=mags[k],
                     err_msg=f"{name} {k}")


# ------------------------------------------------------------------ Model


def _data(m=48, seed=0, dtype=np.float64):
    _, X, Y = make_problem([5, 8, 6, 1], m, "sigmoid", dtype, seed=seed)
    return X, Y


def _fit(dropout=None, seed=0, backend="numpy", dtype=np.float64, data_seed=0, **kw):
    X, Y = _data(seed=data_seed, dtype=dtype)
    model = fastnn.Model([5, 8, 6, 1], "tanh", "sigmoid", dtype=dtype, seed=seed, dropout=dropout)
    opts = dict(epochs=4, lr=0.1, progress=False, backend=backend)
    opts.update(kw)
    return model, model.fit(X, Y, **opts)


def _same_bits(a, b):
    return set(a.params) == set(b.params) and all(
        np.array_equal(_bits(a.params[k]), _bits(b.params[k])) for k in a.params)


@pytest.mark.parametrize("name", BACKEND_PARAMS)
@pytest.mark.parametrize("kw", [{}, {"batch_size": 16, "optimizer": "adam", "lr": 0.01,
                                      "shuffle_seed": 0}])
def test_keep_one_is_exactly_the_run_without_dropout(name, kw):
    plain, h = _fit(None, backend=name, **kw)
    for keep in (1.0, (1.0, 1.0), [1, 1.0]):
        model, hk = _fit(keep, backend=name, **kw)
        assert model.dropout == (1.0, 1.0) and model.dropout_seed is None
        assert _same_bits(model, plain) and hk.cost == h.cost


def test_dropout_changes_training_and_a_seed_repeats_it():
    plain, _ = _fit(None, seed=5)
    a, ha = _fit(0.7, seed=5)
    b, hb = _fit(0.7, seed=5)
    assert _same_bits(a, b) and ha.cost == hb.cost
    assert not _same_bits(a, plain), "fit ignored dropout"
    c = fastnn.Model([5, 8, 6, 1], "tanh", "sigmoid", seed=5, dropout=0.7)
    assert c.dropout_seed == a.dropout_seed
    c.dropout_seed = a.dropout_seed + 1                 # same weights, another mask stream
    c.fit(*_data(), epochs=4, lr=0.1, progress=False, backend="numpy")
    assert not _same_bits(c, a)
    assert fastnn.Model([5, 8, 6, 1], seed=6, dropout=0.7).dropout_seed != a.dropout_seed


@pytest.mark.parametrize("kw", [{}, {"batch_size": 20, "shuffle_seed": 3}])
def test_fit_steps_use_the_masks_of_their_step_number(kw):
    """Model.fit's step t (from 0, epochs times batches) is DropoutStep(keeps, dropout_seed, t)."""
    X, Y = _data()
    model = fastnn.Model([5, 8, 6, 1], "tanh", "sigmoid", seed=1, dropout=(0.8, 0.6))
    params = {k: v.copy() for k, v in model.params.items()}
    model.fit(X, Y, epochs=2, lr=0.1, progress=False, backend="numpy", **kw)
    size = kw.get("batch_size", X.shape[1])
    rng = np.random.default_rng(kw.get("shuffle_seed"))
    t = 0
    for _ in range(2):
        order = rng.permutation(X.shape[1]) if kw else np.arange(X.shape[1])
        for start in range(0, X.shape[1], size):
            idx = order[start:start + size]
            drop = _dropout.DropoutStep((0.8, 0.6), model.dropout_seed, t)
            _, grads = _engine(numpy_backend, params, np.ascontiguousarray(X[:, idx]),
                               np.ascontiguousarray(Y[:, idx]), "tanh", "sigmoid", drop)
            for k in params:
                params[k] -= 0.1 * grads["d" + k]
            t += 1
    for k in params:
        assert_close(model.params[k], params[k], np.float64, n_terms=X.shape[1],
                     magnitude=np.abs(params[k]) + np.max(np.abs(params[k])), err_msg=k)


@pytest.mark.parametrize("name", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_equals_the_numpy_backend(name, dtype):
    out = {}
    for b in ("numpy", name):
        model, h = _fit((0.75, 0.5), seed=2, backend=b, dtype=dtype, epochs=3, batch_size=16,
                        optimizer="adam", lr=0.01, shuffle_seed=4)
        out[b] = (model.params, h.cost)
    rtol, _ = tol(dtype, 48 * 15)
    np.testing.assert_allclose(out[name][1], out["numpy"][1], rtol=rtol)
    for k, ref in out["numpy"][0].items():
        assert out[name][0][k].dtype == dtype
        assert_close(out[name][0][k], ref, dtype, 48 * 15, magnitude=np.abs(ref) + np.max(np.abs(ref)))


def test_predict_score_and_cost_never_drop():
    X, Y = _data()
    model = fastnn.Model([5, 8, 6, 1], "tanh", "sigmoid", seed=0, dropout=0.5)
    AL, _ = fastnn.forward(model.params, X, hidden="tanh", output="sigmoid", backend="numpy")
    for _ in range(2):
        assert np.array_equal(model.predict_proba(X, backend="numpy"), AL)
    assert model.score(X, Y) == float(np.mean((AL > 0.5) == Y))


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("bad, error", [
    (0.0, FastnnValueError), (-0.5, FastnnValueError), (1.5, FastnnValueError),
    (float("nan"), FastnnValueError), (float("inf"), FastnnValueError),
    ([0.5], FastnnValueError), ([0.5, 0.5, 0.5], FastnnValueError), ([0.5, 0.0], FastnnValueError),
    ("0.5", FastnnTypeError), (True, FastnnTypeError), ({"a": 1}, FastnnTypeError),
    ([0.5, None], FastnnTypeError), (object(), FastnnTypeError)])
def test_bad_dropout_is_refused_naming_it(bad, error):
    with pytest.raises(error, match="dropout"):
        fastnn.Model([5, 8, 6, 1], dropout=bad)


def test_dropout_needs_a_hidden_layer():
    with pytest.raises(FastnnValueError, match="dropout: the network has no hidden layer"):
        fastnn.Model([5, 1], dropout=0.5)
    assert fastnn.Model([5, 1], dropout=1.0).dropout == ()


@pytest.mark.parametrize("seed, error", [(-1, FastnnValueError), (1 << 64, FastnnValueError),
                                         (0.5, FastnnTypeError), (None, FastnnTypeError)])
def test_fit_checks_the_dropout_seed_and_keeps(seed, error):
    X, Y = _data()
    model = fastnn.Model([5, 8, 6, 1], dropout=0.5, seed=0)
    model.dropout_seed = seed
    with pytest.raises(error, match="dropout_seed"):
        model.fit(X, Y, epochs=1, progress=False)
    model.dropout_seed, model.dropout = 1, (0.5, 2.0)
    with pytest.raises(FastnnValueError, match="dropout"):
        model.fit(X, Y, epochs=1, progress=False)


# ------------------------------------------------------------------ persistence


def test_save_load_round_trip_continues_the_same_run(tmp_path):
    X, Y = _data()
    model, _ = _fit((0.9, 0.6), seed=8, epochs=2)
    model.save(tmp_path / "m.npz")
    loaded = fastnn.Model.load(tmp_path / "m.npz")
    assert loaded.dropout == (0.9, 0.6) and loaded.dropout_seed == model.dropout_seed
    assert "dropout" in repr(loaded)
    for m_ in (model, loaded):
        m_.fit(X, Y, epochs=2, lr=0.1, progress=False, backend="numpy")
    assert _same_bits(model, loaded)
    plain, _ = _fit(None, epochs=1)
    plain.save(tmp_path / "p.npz")
    again = fastnn.Model.load(tmp_path / "p.npz")
    assert again.dropout == (1.0, 1.0) and again.dropout_seed is None


def test_checkpoint_resume_is_bitwise_and_keeps_dropout(tmp_path):
    X, Y = _data()
    kw = dict(lr=0.05, batch_size=16, progress=False, backend="numpy", shuffle_seed=2)
    whole = fastnn.Model([5, 8, 6, 1], "tanh", seed=4, dropout=0.7)
    whole.fit(X, Y, epochs=4, **kw)
    part = fastnn.Model([5, 8, 6, 1], "tanh", seed=4, dropout=0.7)
    ck = tmp_path / "ck.npz"
    part.fit(X, Y, epochs=2, checkpoint=ck, **kw)
    restored = fastnn.Model.from_checkpoint(ck)
    assert restored.dropout == (0.7, 0.7) and restored.dropout_seed == whole.dropout_seed
    restored.fit(X, Y, epochs=4, resume=ck, **kw)
    assert _same_bits(restored, whole)
    other = fastnn.Model([5, 8, 6, 1], "tanh", seed=4, dropout=0.8)
    with pytest.raises(FastnnValueError, match="resume"):
        other.fit(X, Y, epochs=4, resume=ck, **kw)
