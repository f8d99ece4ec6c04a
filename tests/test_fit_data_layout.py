"""Model.fit's data path: the finiteness check and the layout of X.

* ``_validation.all_finite`` is exact (NaN or Inf anywhere, in either layout,
  in the first or the last of its chunks; finite data whose sum overflows), and
  the validation errors keep their messages.
* An F-contiguous X (the transpose of a row-major ``(m, n_0)`` array, as the
  course writes ``data.T``) trains bitwise as its C-contiguous copy, and the
  minibatch steps gather from it without a copy of it.
* ``_validation.c_contiguous`` (a tall F-ordered X made C-contiguous for a full
  batch, a block of columns at a time) gives NumPy's copy byte for byte.
* A checkpoint's data fingerprint does not depend on the layout: a run
  checkpointed with one layout resumes with the other.
* ``Model.predict`` reads an F-contiguous X in place, with its C copy's outputs.
"""

import importlib
import re

import numpy as np
import pytest

import fastnn
from fastnn import _validation as V
from fastnn import checkpoint as ckpt
from fastnn import engine
from fastnn.backends import REGISTRY, get_backend
from fastnn.errors import FastnnValueError

from conftest import backend_params

HOST = backend_params([n for n in REGISTRY if n != "cuda"])
model_module = importlib.import_module("fastnn.model")
FLOATS = [np.float32, np.float64]

#: Entries of the arrays that take the chunked path: two and a half chunks.
BIG = 5 * V.FINITE_CHUNK // 2


def _big(dtype, order, rows=4, seed=0):
    """A finite (rows, BIG // rows) array of ``dtype`` in C or F layout."""
    a = np.random.default_rng(seed).standard_normal((rows, BIG // rows)).astype(dtype)
    return np.asfortranarray(a) if order == "F" else a


def _at_memory_position(a, k, value):
    """A copy of ``a`` (same layout) with the ``k``-th entry in memory order set to ``value``."""
    out = a.copy(order="A")
    order = "F" if out.flags.f_contiguous and not out.flags.c_contiguous else "C"
    out[np.unravel_index(k, out.shape, order=order)] = value
    return out


#: Memory positions: in the first chunk, and the very last entry (in the last chunk).
POSITIONS = [pytest.param(lambda size: 3, id="first-chunk"),
             pytest.param(lambda size: size - 1, id="last-chunk")]
BAD = [pytest.param(np.nan, id="nan"), pytest.param(np.inf, id="inf"), pytest.param(-np.inf, id="-inf")]


# ------------------------------------------------------------ all_finite


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("value", BAD)
def test_all_finite_finds_a_nonfinite_entry_in_any_chunk(dtype, order, position, value):
    a = _big(dtype, order)
    assert a.size > 2 * V.FINITE_CHUNK and V.all_finite(a)
    bad = _at_memory_position(a, position(a.size), value)
    assert not V.all_finite(bad)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("order", ["C", "F"])
def test_all_finite_accepts_finite_data_whose_sum_overflows(dtype, order):
    # Every entry finite, the sum is not: only the entry-by-entry check can say so.
    a = np.full((4, BIG // 4), np.finfo(dtype).max / 2, dtype=dtype, order=order)
    with np.errstate(over="ignore"):
        assert not np.isfinite(a.sum())
    assert V.all_finite(a)
    assert not V.all_finite(_at_memory_position(a, a.size - 1, np.nan))


def test_all_finite_is_isfinite_all_on_small_strided_and_float16_arrays():
    rng = np.random.default_rng(1)
    cases = [np.zeros((0, 3)), rng.standard_normal((3, 4)), rng.standard_normal((40, 30000))[::3, ::2],
             rng.standard_normal((6, BIG // 6)).astype(np.float16)]
    for a in cases:
        for value in (None, np.nan, np.inf):
            b = a.copy() if a.size else a
            if value is not None and a.size:
                b[tuple(i - 1 for i in b.shape)] = value
            assert V.all_finite(b) == bool(np.isfinite(b).all()), (a.shape, a.dtype, value)


# ------------------------------------------------------------ validation messages


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("value", BAD)
def test_fit_refuses_nonfinite_X_and_Y_with_the_same_messages(dtype, order, position, value):
    X = _big(dtype, order, rows=4)
    m = X.shape[1]
    model = fastnn.Model([4, 3, 1], "relu", "identity", dtype=dtype, seed=0)
    bad_X = _at_memory_position(X, position(X.size), value)
    with pytest.raises(FastnnValueError, match=re.escape("X: contains NaN or Inf; expected finite values")):
        model.fit(bad_X, np.zeros((1, m), dtype), epochs=1, batch_size=64, progress=False)
    # Y (1, m) in either layout is one contiguous line: the same positions, in memory order.
    Y = _big(dtype, order, rows=1)[:, :m].copy(order=order)
    bad_Y = _at_memory_position(Y, position(Y.size), value)
    with pytest.raises(FastnnValueError, match=re.escape("Y: contains NaN or Inf; expected finite values")):
        model.fit(X, bad_Y, epochs=1, batch_size=64, progress=False)
    for check in (lambda A: V.check_X(A, 4, dtype), lambda A: V.check_X(A, 4, dtype, order="any"),
                  lambda A: V.as_array(A, "X", dtype)):
        with pytest.raises(FastnnValueError, match=re.escape("X: contains NaN or Inf")):
            check(bad_X)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("position", POSITIONS)
def test_values_too_large_for_the_dtype_are_refused_in_either_layout(order, position):
    X = _big(np.float64, order)
    bad = _at_memory_position(X, position(X.size), 1e300)
    model = fastnn.Model([4, 3, 1], "relu", "identity", dtype=np.float32, seed=0)
    with pytest.raises(FastnnValueError, match=re.escape("X: has values too large for float32")):
        model.fit(bad, np.zeros((1, X.shape[1])), epochs=1, batch_size=64, progress=False)
    assert V.check_X(X, 4, np.float32, order="any").dtype == np.float32


@pytest.mark.parametrize("dtype", FLOATS)
def test_check_X_keeps_its_C_contract_and_order_any_copies_to_F(dtype):
    other = np.float32 if dtype == np.float64 else np.float64
    for X in (_big(dtype, "F"), _big(dtype, "C"), _big(dtype, "C")[:, ::2]):
        c = V.check_X(X, 4, dtype)
        assert c.flags.c_contiguous and np.array_equal(c, X)
        kept = V.check_X(X, 4, dtype, order="any")
        if X.flags.c_contiguous or X.flags.f_contiguous:
            assert kept is X
        else:                                   # strided: one copy, F-contiguous
            assert kept.flags.f_contiguous and not kept.flags.c_contiguous and np.array_equal(kept, X)
        cast = V.check_X(X, 4, other, order="any")
        assert cast.flags.f_contiguous and not cast.flags.c_contiguous and cast.dtype == other
        assert np.array_equal(cast, X.astype(other))
        # Read-only input: a private, writeable copy (F-contiguous with order="any").
        frozen = X.copy(order="A")
        frozen.flags.writeable = False
        f = V.check_X(frozen, 4, dtype, order="any")
        assert f.flags.writeable and f.flags.f_contiguous and not np.shares_memory(f, frozen)
        assert np.array_equal(f, X)
        assert V.check_X(frozen, 4, dtype).flags.c_contiguous


def _tall_F(dtype, cols=37, seed=3):
    """An F-contiguous array with enough rows for c_contiguous's blocked copy, and a number
    of columns that is not a multiple of its block."""
    rows = V.C_COPY_MIN_ROWS + 5
    a = np.random.default_rng(seed).standard_normal((rows, cols)) * 10
    return np.asfortranarray(a.astype(dtype))


@pytest.mark.parametrize("src, dst", [(np.float32, np.float32), (np.float64, np.float32),
                                      (np.float32, np.float64), (np.int64, np.float64)])
@pytest.mark.parametrize("cols", [1, V.C_COPY_COLUMNS, 37])
def test_c_contiguous_copies_a_tall_F_array_by_blocks_to_the_same_values(src, dst, cols):
    X = _tall_F(src, cols)
    assert X.flags.f_contiguous and X.shape[0] >= V.C_COPY_MIN_ROWS
    out = V.c_contiguous(X, dst)
    ref = np.ascontiguousarray(X, dtype=dst)
    assert out.flags.c_contiguous and out.dtype == np.dtype(dst) and out.shape == X.shape
    assert out.tobytes() == ref.tobytes()


def test_c_contiguous_leaves_C_arrays_and_short_F_arrays_to_numpy():
    C = np.ascontiguousarray(_tall_F(np.float64))
    assert V.c_contiguous(C) is C                     # nothing to copy
    short = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    out = V.c_contiguous(short, np.float32)
    assert out.flags.c_contiguous and np.array_equal(out, short)


def test_a_tall_F_X_is_checked_as_before_the_blocked_copy():
    X = _tall_F(np.float64)
    X[-1, -1] = 1e300                                  # finite in float64, not in float32
    with pytest.raises(FastnnValueError, match="too large for float32"):
        V.check_X(X, X.shape[0], np.float32)
    assert V.check_X(X, X.shape[0], np.float64).flags.c_contiguous


@pytest.mark.parametrize("backend", HOST)
def test_a_full_batch_fit_on_a_tall_F_X_is_bitwise_its_C_copy(backend):
    X = _tall_F(np.float32, cols=40)
    y = np.random.default_rng(4).integers(0, 2, (1, 40)).astype(np.float32)

    def fit(data):
        model = fastnn.Model([X.shape[0], 3, 1], "relu", "sigmoid", dtype=np.float32, seed=1)
        return model, model.fit(data, y, epochs=4, batch_size=None, lr=0.01, backend=backend,
                                progress=False)
    ref_model, ref = fit(np.ascontiguousarray(X))
    model, history = fit(X)
    assert history.cost == ref.cost
    for k, v in ref_model.params.items():
        np.testing.assert_array_equal(model.params[k], v, err_msg=k)


# ------------------------------------------------------------ fits in either layout


def _data(dtype, onehot=False):
    rng = np.random.default_rng(7)
    rows = rng.standard_normal((203, 6)).astype(dtype)    # (m, n_x), as data is loaded
    y = rng.integers(0, 3, 203)
    Y = np.eye(3, dtype=dtype)[y] if onehot else y          # (m, 3) rows, or labels
    return rows, Y


PATHS = [pytest.param({"batch_size": 64, "optimizer": "adam"}, id="workspace"),
         pytest.param({"batch_size": 64, "optimizer": "momentum", "dropout": 0.8}, id="kernel-by-kernel"),
         pytest.param({"batch_size": None, "optimizer": "sgd"}, id="whole-loop"),
         pytest.param({"batch_size": None, "optimizer": "adam"}, id="full-batch-steps")]


def _fit(X, Y, backend, dtype, options, **extra):
    options = dict(options)
    model = fastnn.Model([6, 5, 4, 3], "tanh", "softmax", dtype=dtype, seed=1,
                         dropout=options.pop("dropout", None))
    history = model.fit(X, Y, epochs=3, lr=0.05, backend=backend, shuffle_seed=2, progress=False,
                        **options, **extra)
    return model.params, history


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("options", PATHS)
@pytest.mark.parametrize("onehot", [False, True], ids=["labels", "onehot"])
def test_an_F_ordered_X_fits_bitwise_as_its_C_ordered_copy(backend, dtype, options, onehot):
    rows, Yrows = _data(dtype, onehot)
    X_F = rows.T
    assert X_F.flags.f_contiguous and not X_F.flags.c_contiguous
    Y_F = Yrows.T if onehot else Yrows
    ref_params, ref = _fit(np.ascontiguousarray(X_F), np.ascontiguousarray(Y_F), backend, dtype, options)
    params, history = _fit(X_F, Y_F, backend, dtype, options)
    assert history.cost == ref.cost and len(history.cost) == 3
    for k in ref_params:
        assert params[k].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(params[k], ref_params[k], err_msg=k)


def _spy_trainer_data(monkeypatch):
    """The ``(X, Y)`` each fit's trainer runs on, appended to the returned list."""
    seen = []
    real = model_module._Trainer.run

    def run(self, progress):
        seen.append((self.X, self.Y))
        return real(self, progress)
    monkeypatch.setattr(model_module._Trainer, "run", run)
    return seen


def _spy_gathered(monkeypatch, backend):
    """The arrays the minibatches are gathered from: the workspace's XR, YR (Python and
    compiled steps), and the row-major X of gather_columns (the kernel-by-kernel steps)."""
    seen = []

    def spy(owner, name, n_arrays):
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            arrays = args[1:1 + n_arrays] if owner is engine.MinibatchWorkspace else args[:n_arrays]
            seen.extend(arrays)
            return real(*args, **kwargs)
        monkeypatch.setattr(owner, name, wrapper)
    spy(engine.MinibatchWorkspace, "step", 2)
    spy(engine.MinibatchWorkspace, "run_steps", 2)
    spy(get_backend(backend), "gather_columns", 1)
    return seen


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("options", PATHS[:2])
def test_minibatches_are_gathered_from_an_F_ordered_X_without_a_copy(backend, options, monkeypatch):
    rows, Yrows = _data(np.float32, onehot=True)
    seen = _spy_gathered(monkeypatch, backend)
    _fit(rows.T, Yrows.T, backend, np.float32, options)
    assert seen, "no minibatch was gathered"
    assert all(np.shares_memory(a, rows) or np.shares_memory(a, Yrows) for a in seen)
    assert any(np.shares_memory(a, rows) for a in seen)
    # The same data C-ordered is copied once into rows (the spy sees those copies).
    seen.clear()
    X_C, Y_C = np.ascontiguousarray(rows.T), np.ascontiguousarray(Yrows.T)
    _fit(X_C, Y_C, backend, np.float32, options)
    assert seen and not any(np.shares_memory(a, X_C) or np.shares_memory(a, Y_C) for a in seen)


def _read_only(A):
    A = A.copy(order="A")
    A.flags.writeable = False
    return A


#: X (n_x, m) that validation copies (float32 model): the copy is the only one.
COPIED = {"cast-C": lambda rows: np.ascontiguousarray(rows.T, dtype=np.float64),
          "cast-F": lambda rows: rows.T.astype(np.float64),
          "strided": lambda rows: np.repeat(rows.T, 2, axis=1)[:, ::2],
          "read-only-C": lambda rows: _read_only(np.ascontiguousarray(rows.T))}


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("options", PATHS[:2])
@pytest.mark.parametrize("variant", list(COPIED))
def test_an_X_that_validation_copies_is_not_copied_again(backend, options, variant, monkeypatch):
    rows, y = _data(np.float32)
    ref_params, ref = _fit(np.ascontiguousarray(rows.T), y, backend, np.float32, options)
    spied = _spy_trainer_data(monkeypatch)
    seen = _spy_gathered(monkeypatch, backend)
    X = COPIED[variant](rows)
    params, history = _fit(X, y, backend, np.float32, options)
    trainer_data = [a for pair in spied for a in pair]
    assert not np.shares_memory(trainer_data[0], X)
    assert seen and all(any(np.shares_memory(a, t) for t in trainer_data) for a in seen)
    assert history.cost == ref.cost
    for k in ref_params:
        np.testing.assert_array_equal(params[k], ref_params[k], err_msg=k)


@pytest.mark.parametrize("options", PATHS[2:])
def test_a_full_batch_reaches_the_kernels_C_contiguous(options, monkeypatch):
    # The full-batch kernels take the trainer's X and Y as they are (compiled for C order).
    seen = _spy_trainer_data(monkeypatch)
    rows, Yrows = _data(np.float64, onehot=True)
    _fit(rows.T, Yrows.T, "numpy", np.float64, options)
    assert len(seen) == 1 and all(a.flags.c_contiguous for a in seen[0])


@pytest.mark.parametrize("batch_size", [None, 203, 500, np.int64(203)])
def test_a_full_batch_is_validated_to_C_order_at_once(batch_size, monkeypatch):
    # One batch of all 203 examples: validation's one copy is the C-contiguous one
    # the full-batch kernels take, not an F-contiguous one copied again.
    orders = []
    real = model_module.V.check_X

    def check_X(*args, order="C", **kwargs):
        orders.append(order)
        return real(*args, order=order, **kwargs)
    monkeypatch.setattr(model_module.V, "check_X", check_X)
    rows, y = _data(np.float64)
    _fit(np.ascontiguousarray(rows.T), y, "numpy", np.float32, {"batch_size": batch_size})
    _fit(rows.T, y, "numpy", np.float32, {"batch_size": 64})
    assert orders == ["C", "any"]


@pytest.mark.parametrize("backend", HOST)
def test_a_read_only_F_ordered_X_is_gathered_from_a_private_copy(backend, monkeypatch):
    rows, y = _data(np.float32)
    rows.flags.writeable = False
    seen = _spy_gathered(monkeypatch, backend)
    params, history = _fit(rows.T, y, backend, np.float32, PATHS[0].values[0])
    assert seen and not any(np.shares_memory(a, rows) for a in seen)
    assert all(a.flags.writeable and a.flags.c_contiguous for a in seen)
    ref_params, ref = _fit(np.ascontiguousarray(rows.T), y, backend, np.float32, PATHS[0].values[0])
    assert history.cost == ref.cost


# ------------------------------------------------------------ checkpoints across layouts


def test_the_data_fingerprint_does_not_depend_on_the_layout():
    rows, Yrows = _data(np.float64, onehot=True)
    a = ckpt.data_fingerprint(np.ascontiguousarray(rows.T), np.ascontiguousarray(Yrows.T))
    assert a == ckpt.data_fingerprint(rows.T, Yrows.T)
    big = _big(np.float32, "F", rows=3)             # read a block of rows at a time
    assert ckpt.data_fingerprint(big, big) == ckpt.data_fingerprint(np.ascontiguousarray(big), big)
    other = rows.T.copy(order="F")
    other[0, -1] += 1
    assert ckpt.data_fingerprint(other, Yrows.T) != a


class _Stop(Exception):
    pass


def _stop_at(epoch):
    def callback(e, model, history):
        if e == epoch:
            raise _Stop
    return callback


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("first, second", [("C", "F"), ("F", "C")])
@pytest.mark.parametrize("options", [PATHS[0], PATHS[2]])
def test_a_checkpoint_resumes_with_the_same_data_in_the_other_layout(tmp_path, backend, first, second,
                                                                     options):
    rows, Yrows = _data(np.float64, onehot=True)
    layout = {"F": (rows.T, Yrows.T), "C": (np.ascontiguousarray(rows.T), np.ascontiguousarray(Yrows.T))}
    path = str(tmp_path / "run.npz")
    ref_params, ref = _fit(*layout[first], backend, np.float64, options)
    with pytest.raises(_Stop):
        _fit(*layout[first], backend, np.float64, options, checkpoint=path, callback=_stop_at(2))
    params, history = _fit(*layout[second], backend, np.float64, options, resume=path)
    assert history.cost == ref.cost
    for k in ref_params:
        np.testing.assert_array_equal(params[k], ref_params[k], err_msg=k)
    # Other data in the same layout is still refused.
    X, Y = layout[second]
    X = X.copy(order="A")
    X[0, 0] += 1
    with pytest.raises(FastnnValueError, match="data"):
        _fit(X, Y, backend, np.float64, options, resume=path)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("backend", HOST)
def test_predict_reads_an_F_ordered_X_in_place(backend, dtype, monkeypatch):
    """Model.predict / predict_proba / score take the course's F-ordered X (``data.T``) as the first
    layer's input without a C copy (the copy was 12 of a 43 ms predict at 10000 x 784),
    with its C copy's outputs; a C-ordered X is read in place as before."""
    from conftest import assert_close

    network = importlib.import_module("fastnn.network")
    model = fastnn.Model([13, 9, 4], "relu", "softmax", dtype=dtype, seed=3)
    XF = np.random.default_rng(5).standard_normal((40, 13)).astype(dtype).T
    XC = np.ascontiguousarray(XF)
    expected = model.predict_proba(XC, backend=backend)
    seen, forward = [], network._forward

    def spy(bk, Ws, bs, A0, *args):
        seen.append(np.shares_memory(A0, XF) or np.shares_memory(A0, XC))
        return forward(bk, Ws, bs, A0, *args)

    monkeypatch.setattr(network, "_forward", spy)
    for X in (XF, XC):
        got = model.predict_proba(X, backend=backend)
        assert got.dtype == dtype and got.flags.c_contiguous
        assert_close(got, expected, dtype, 13, magnitude=np.ones_like(expected))
        np.testing.assert_array_equal(model.predict(X, backend=backend), expected.argmax(axis=0))
        assert model.score(X, expected.argmax(axis=0), backend=backend) == 1.0
    assert seen == [True] * 6


def test_predict_checks_X_once(monkeypatch):
    """Model.predict reads X for finiteness once (its own validation; the forward below it
    does not repeat the pass), and a non-finite X still raises naming X."""
    validation = importlib.import_module("fastnn._validation")
    model = fastnn.Model([13, 9, 4], "relu", "softmax", dtype=np.float32, seed=3)
    X = np.random.default_rng(5).standard_normal((13, 40)).astype(np.float32)
    passes, all_finite = [], validation.all_finite

    def spy(a):
        passes.append(np.shares_memory(a, X))
        return all_finite(a)

    monkeypatch.setattr(validation, "all_finite", spy)
    model.predict(X)
    assert passes.count(True) == 1
    X[3, 7] = np.nan
    with pytest.raises(FastnnValueError, match="X"):
        model.predict(X)
