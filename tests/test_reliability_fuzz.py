"""Hostile input, fuzzed, on every backend (issue 7, part 1).

Each example draws a small valid problem, breaks ONE argument in one way
(shape, dtype, value, layout, container, label encoding, option), calls the
public API on the backend under test and checks the contract:

* the call returns finite results equal, within THE tolerance of conftest, to
  the NumPy backend on the canonical form of the same arguments (C-contiguous,
  same values), or
* it raises FastnnValueError / FastnnTypeError whose message names the broken
  argument (mutations marked ``reject`` must raise), and
* it never modifies an input, never returns NaN, and never hands a kernel an
  array it did not validate: every call runs under :func:`kernel_guard`, which
  wraps every kernel of the backend's interface and fails on an array that is
  not C-contiguous, aligned, writeable, of a supported dtype and of shapes
  that fit together (the compiled kernels do not bounds-check).

The fuzz body runs in-process; the guard is what keeps a bad array from a
compiled kernel.  ``FASTNN_SOAK=1`` multiplies the number of examples by 20
and draws fresh random seeds (the default run is derandomized, so CI sees the
same cases every time); see docs/reliability.md.
"""

import collections
import contextlib
import copy
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn
import naive
from fastnn import _validation as V
from fastnn import DivergenceError, FastnnTypeError, FastnnValueError, SaturationError
from fastnn.backends import _interface, get_backend
from fastnn.compat import dnn, planar
from fastnn.model import OPTIMIZER_OPTIONS
from fastnn.network import ForwardCache
from fastnn_suite import BACKEND_PARAMS, GRADCHECK_TOL, assert_close, make_problem, tol

SOAK = os.environ.get("FASTNN_SOAK") == "1"
FASTNN_ERRORS = (FastnnValueError, FastnnTypeError)
HIDDEN = ("identity", "sigmoid", "tanh", "relu", "leaky_relu")
OUTPUTS = ("sigmoid", "softmax", "identity")


#: (test, outcome) -> count; written to $FASTNN_FUZZ_STATS (JSON) at the end of the module,
#: for the table in docs/reliability.md.
STATS = collections.Counter()


def tally(test, kind):
    STATS[f"{test}|{kind}"] += 1


@pytest.fixture(scope="module", autouse=True)
def _dump_stats():
    yield
    path = os.environ.get("FASTNN_FUZZ_STATS")
    if path:
        with open(path, "w") as fh:
            json.dump(dict(sorted(STATS.items())), fh, indent=1)


def fuzz_settings(n):
    return settings(max_examples=n * 20 if SOAK else n, deadline=None, derandomize=not SOAK,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------- kernel guard


def is_device_array(a):
    """A numba.cuda device array (or the simulator's stand-in), told apart without importing numba."""
    return not isinstance(a, np.ndarray) and hasattr(a, "copy_to_host") and hasattr(a, "dtype")


def _is_array(a):
    return isinstance(a, np.ndarray) or is_device_array(a)


def _arrays(args):
    for a in args:
        if _is_array(a):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from (x for x in a if _is_array(x))


#: Kernels whose second argument is a layer's input A_prev, which for the first
#: layer may be the transposed view that gather_columns returns, or the transpose of
#: what gather_rows_into wrote (see _interface).
_TAKES_A_PREV = ("forward_hidden", "forward_output", "weight_grad", "forward_hidden_into",
                 "forward_output_into", "weight_grad_into")
#: Kernels that take arrays of any shape (the optimizers run on flat parameter arrays).
_ANY_SHAPE = ("sgd_update", "momentum_update", "adam_update", "all_finite")


def _check_gather_into_call(bk, name, args):
    """gather_rows_into / gather_targets_into(R, idx, out): in-range indices, out of the
    batch's shape, C-contiguous and of R's dtype."""
    R, idx, out = args
    _check_gather_call(bk, (R, idx))
    want = (idx.size, R.shape[1]) if name == "gather_rows_into" else (R.shape[1], idx.size)
    assert isinstance(out, np.ndarray) and out.shape == want and out.dtype == R.dtype \
        and out.flags.c_contiguous and out.flags.writeable, \
        f"{bk.NAME}.{name}: out {getattr(out, 'shape', None)} for a batch of shape {want}"


def _check_gather_call(bk, args):
    """gather_columns(XR, idx): a host C-contiguous (N, n_x) array and in-range indices."""
    XR, idx = args
    assert isinstance(XR, np.ndarray) and XR.ndim == 2 and XR.flags.c_contiguous, \
        f"{bk.NAME}.gather_columns: XR is not a C-contiguous 2-D host array"
    assert XR.dtype.type in bk.DTYPES, f"{bk.NAME}.gather_columns: dtype {XR.dtype}"
    if isinstance(idx, slice):
        start, stop, step = idx.indices(XR.shape[0])
        assert step == 1 and stop > start, f"{bk.NAME}.gather_columns: slice {idx}"
    else:
        assert isinstance(idx, np.ndarray) and idx.ndim == 1 and idx.size > 0 \
            and idx.dtype.kind in "iu" and 0 <= idx.min() and idx.max() < XR.shape[0], \
            f"{bk.NAME}.gather_columns: indices {idx!r} for {XR.shape[0]} rows"


def _check_steps_call(bk, args):
    """minibatch_steps: in-range example order and batch starts, and every array of the
    shape, dtype and layout the compiled steps index without bounds checks."""
    XR, YR, order, starts, layers, bufs, _, _, _, update, _, _, losses, squares = args
    Ws, bs, dWs, dbs, P, G = layers
    Xb, Yb, As, Z, dZs = bufs
    rule, S1, S2, n_fold, consts, per_step = update
    N, b, dtype = XR.shape[0], Xb.shape[0], P.dtype
    floats = [XR, YR, *Ws, *bs, *dWs, *dbs, P, G, Xb, Yb, *As, Z, *dZs, S1, S2, consts, per_step]
    for a in floats:
        assert isinstance(a, np.ndarray) and a.dtype == dtype and a.dtype.type in bk.DTYPES \
            and a.flags.c_contiguous and a.flags.aligned, \
            f"{bk.NAME}.minibatch_steps: an array that is not C-contiguous {dtype}"
    for a, n in ((order, N), (starts, None)):
        assert a.dtype == np.int64 and a.ndim == 1 and a.flags.c_contiguous, \
            f"{bk.NAME}.minibatch_steps: indices {a.dtype} {a.shape}"
    assert np.array_equal(np.sort(order), np.arange(N)), f"{bk.NAME}.minibatch_steps: order"
    assert starts.size and starts.min() >= 0 and starts.max() + b <= N, \
        f"{bk.NAME}.minibatch_steps: batch starts {starts} for {N} examples, batches of {b}"
    dims = [Xb.shape[1]] + [W.shape[0] for W in Ws]
    assert YR.shape == (N, dims[-1]) and XR.shape == (N, dims[0]) and Yb.shape == (dims[-1], b) \
        and Z.shape == (dims[-1], b), f"{bk.NAME}.minibatch_steps: examples and targets"
    for l, (W, bias, dW, db, A, dZ) in enumerate(zip(Ws, bs, dWs, dbs, As, dZs)):
        assert W.shape == dW.shape == (dims[l + 1], dims[l]) and bias.shape == db.shape \
            == (dims[l + 1], 1) and A.shape == dZ.shape == (dims[l + 1], b), \
            f"{bk.NAME}.minibatch_steps: layer {l + 1} shapes"
        assert np.shares_memory(W, P) and np.shares_memory(dW, G), \
            f"{bk.NAME}.minibatch_steps: layer {l + 1} is not a view of the flat arrays"
    assert P.shape == G.shape == (sum(W.size + bias.size for W, bias in zip(Ws, bs)),)
    assert S1.size in (0, P.size) and S2.size in (0, P.size) and 0 <= n_fold <= P.size \
        and consts.shape == (6,) and per_step.shape == (starts.size, 3) and rule in range(4)
    assert losses.dtype == squares.dtype == np.float64 and losses.shape == (starts.size,) \
        and squares.shape == (starts.size, len(Ws)), f"{bk.NAME}.minibatch_steps: outputs"


def _check_kernel_call(bk, name, args, gathered=()):
    """The preconditions _interface promises the kernels: fail loudly if one is broken.

    ``gathered``: ids of the batches gather_columns returned, which may be
    transposed views where a kernel takes the first layer's input.
    """
    if name == "gather_columns":
        return _check_gather_call(bk, args)
    if name in ("gather_rows_into", "gather_targets_into"):
        return _check_gather_into_call(bk, name, args)
    if name == "minibatch_steps":
        return _check_steps_call(bk, args)
    arrays = list(_arrays(args))
    batch = args[1] if name in _TAKES_A_PREV and (
        id(args[1]) in gathered or id(getattr(args[1], "base", None)) in gathered) else None
    for a in arrays:
        if a is batch and isinstance(a, np.ndarray):
            assert (a.flags.c_contiguous or a.flags.f_contiguous) and a.flags.aligned, \
                f"{bk.NAME}.{name}: a gathered batch that is not contiguous"
        elif is_device_array(a):
            # Device allocations are aligned and writeable; layout is all that can go wrong.
            assert a.is_c_contiguous(), f"{bk.NAME}.{name}: got a device array that is not C-contiguous"
        else:
            assert a.flags.c_contiguous and a.flags.aligned and a.flags.writeable, \
                f"{bk.NAME}.{name}: got an array that is not C-contiguous, aligned and writeable"
        # The cuda kernels take device arrays only: a host array would be copied to the GPU
        # and back around every launch (and written back into, for in-place kernels).
        assert bk.NAME != "cuda" or is_device_array(a), f"{bk.NAME}.{name}: got a host array"
        assert a.dtype.type in bk.DTYPES, f"{bk.NAME}.{name}: dtype {a.dtype} not in {bk.DTYPES}"
        assert (a.ndim == 2 or (a.ndim == 1 and name in _ANY_SHAPE)) and a.size > 0, \
            f"{bk.NAME}.{name}: array of shape {a.shape}"
    assert len({a.dtype for a in arrays}) <= 1, f"{bk.NAME}.{name}: mixed dtypes"
    s = [getattr(a, "shape", None) for a in args]
    if name in ("forward_hidden", "forward_output", "forward_hidden_into", "forward_output_into"):
        W, A, b = s[:3]
        ok = W[1] == A[0] and b == (W[0], 1)
        outs = {"forward_hidden_into": s[4:5], "forward_output_into": s[4:6]}.get(name, [])
        ok = ok and all(o == (W[0], A[1]) for o in outs)
    elif name == "output_delta_into":
        ok = s[0] == s[1] == s[2] == s[6] and s[7] == (s[0][0], 1)
    elif name == "backward_hidden_into":
        ok = s[0] == s[1] and s[4] == (s[0][0], 1)
    elif name == "weight_grad_into":
        dZ, A, W = s[:3]
        ok = dZ[1] == A[1] and W == (dZ[0], A[0]) == s[5]
    elif name == "input_grad_into":
        W, dZ, out = s[:3]
        ok = W[0] == dZ[0] and out == (W[1], dZ[1])
    elif name in ("output_delta", "output_delta_chain", "output_loss"):
        ok = s[0] == s[1] == s[2]
    elif name == "backward_hidden":
        ok = s[0] == s[1]
    elif name == "weight_grad":
        dZ, A, W = s[:3]
        ok = dZ[1] == A[1] and W == (dZ[0], A[0])
    elif name == "weight_step":
        W, dZ, A = s[:3]
        ok = dZ[1] == A[1] and W == (dZ[0], A[0])
    elif name == "input_grad":
        ok = s[0][0] == s[1][0]
    elif name in ("sgd_update", "momentum_update", "adam_update"):
        ok = len({a.shape for a in arrays}) == 1
    elif name == "compiled_loop":
        Ws, bs, X, Y = args[:4]
        ok = len(Ws) == len(bs) and Ws[0].shape[1] == X.shape[0] and Y.shape[1] == X.shape[1] \
            and Ws[-1].shape[0] == Y.shape[0] \
            and all(b.shape == (W.shape[0], 1) for W, b in zip(Ws, bs)) \
            and all(Ws[i + 1].shape[1] == Ws[i].shape[0] for i in range(len(Ws) - 1))
    else:
        ok = True
    assert ok, f"{bk.NAME}.{name}: shapes {s} do not fit together"


@contextlib.contextmanager
def kernel_guard(bk):
    """Every kernel of ``bk`` checks its arguments first (see module docstring)."""
    names = [n for n in _interface.KERNELS + _interface.OPTIONAL_KERNELS
             if n not in ("to_device", "to_host") and hasattr(bk, n)]
    originals = {n: getattr(bk, n) for n in names}
    batches = []  # what gather_columns returned (kept alive, so their ids stay theirs)
    gathered = set()

    def wrap(name, fn):
        def guarded(*args):
            _check_kernel_call(bk, name, args, gathered)
            out = fn(*args)
            if name in ("gather_columns", "gather_rows_into"):
                written = out if name == "gather_columns" else args[2]
                batches.append(written)
                gathered.add(id(written))
            return out
        return guarded

    for n, fn in originals.items():
        setattr(bk, n, wrap(n, fn))
    try:
        yield
    finally:
        for n, fn in originals.items():
            setattr(bk, n, fn)


def test_kernel_guard_catches_a_bad_array():
    bk = get_backend("numpy")
    with kernel_guard(bk):
        with pytest.raises(AssertionError, match="contiguous"):
            bk.forward_hidden(np.ones((2, 3)), np.asfortranarray(np.ones((3, 4))), np.ones((2, 1)), "relu")
        with pytest.raises(AssertionError, match="shapes"):
            bk.forward_hidden(np.ones((2, 3)), np.ones((4, 4)), np.ones((2, 1)), "relu")
        with pytest.raises(AssertionError, match="mixed"):
            bk.sgd_update(np.ones((2, 3)), np.ones((2, 3), np.float32), 0.1)
        with pytest.raises(AssertionError, match="indices"):
            bk.gather_columns(np.ones((4, 3)), np.array([0, 4]))
        # a gathered batch may be a transposed view, as the first layer's input only
        Xb = bk.gather_columns(np.ones((4, 3)), np.array([0, 3]))
        bk.forward_hidden(np.ones((2, 3)), Xb, np.ones((2, 1)), "relu")
        with pytest.raises(AssertionError, match="contiguous"):
            bk.backward_hidden(Xb, Xb, "relu", 1.0)
        # the minibatch kernels: indices, the out arrays' shapes, the gathered rows' transpose
        rows = np.empty((2, 3))
        with pytest.raises(AssertionError, match="indices"):
            bk.gather_rows_into(np.ones((4, 3)), np.array([0, 4]), rows)
        with pytest.raises(AssertionError, match="out"):
            bk.gather_rows_into(np.ones((4, 3)), np.array([0, 1, 2]), rows)
        bk.gather_rows_into(np.ones((4, 3)), np.array([0, 3]), rows)
        bk.forward_hidden_into(np.ones((2, 3)), rows.T, np.ones((2, 1)), "relu", np.empty((2, 2)))
        with pytest.raises(AssertionError, match="contiguous"):
            bk.forward_hidden_into(np.ones((2, 3)), np.ones((2, 3)).T, np.ones((2, 1)), "relu",
                                   np.empty((2, 2)))
        with pytest.raises(AssertionError, match="shapes"):
            bk.forward_hidden_into(np.ones((2, 3)), rows.T, np.ones((2, 1)), "relu", np.empty((2, 3)))
        with pytest.raises(AssertionError, match="shapes"):
            bk.input_grad_into(np.ones((2, 3)), np.ones((2, 4)), np.empty((3, 5)))
        with pytest.raises(AssertionError, match="shape"):
            bk.backward_hidden(np.ones(4), np.ones(4), "relu", 1.0)  # 1-D: the optimizers only
        bk.adam_update(*(np.ones(4) for _ in range(4)), 0.1, 0.9, 0.99, 1e-8, 1)
    assert bk.forward_hidden.__name__ == "forward_hidden"


# --------------------------------------------------------------- utilities


def snapshot(obj):
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return (obj.copy(), obj.dtype, obj.shape, obj.flags.writeable)
    return copy.copy(obj)


def unchanged(obj, snap):
    if isinstance(obj, dict):
        return obj.keys() == snap.keys() and all(unchanged(obj[k], snap[k]) for k in obj)
    if isinstance(obj, (list, tuple)):
        return len(obj) == len(snap) and all(unchanged(a, b) for a, b in zip(obj, snap))
    if isinstance(obj, np.ndarray):
        values, dtype, shape, writeable = snap
        return (obj.dtype == dtype and obj.shape == shape and obj.flags.writeable == writeable
                and np.array_equal(obj, values, equal_nan=obj.dtype.kind in "fc"))
    return True


def canon(x):
    """The canonical form of an argument: C-contiguous, aligned, writeable, same values."""
    if isinstance(x, dict):
        return {k: canon(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return np.array(x, copy=True, order="C")
    if isinstance(x, list):
        try:
            return np.array(x)
        except ValueError:
            return x
    return x


def attempt(call):
    """("ok", value) | ("error", exc) | ("saturation", exc) | ("diverged", exc)."""
    try:
        return "ok", call()
    except FASTNN_ERRORS as exc:
        return "error", exc
    except SaturationError as exc:
        return "saturation", exc
    except DivergenceError as exc:
        return "diverged", exc


def is_overflow(outcome):
    return outcome[0] == "error" and "overflow" in str(outcome[1])


def all_finite(value):
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(all_finite(v) for v in value)
    if isinstance(value, ForwardCache):
        return True
    if isinstance(value, (np.ndarray, float, np.floating)):
        return bool(np.isfinite(value).all())
    return True


def close(out, ref, dtype, n, mags=None, msg=""):
    """Results of the backend against the NumPy backend's, within tol(dtype, n).

    ``mags`` (same structure as ``ref``) holds the sums of |terms| from
    naive.*_magnitudes that rtol multiplies; without it, ``|ref| + max|ref|``.
    """
    if isinstance(ref, dict):
        assert set(out) == set(ref), msg
        for k in ref:
            close(out[k], ref[k], dtype, n, None if mags is None else mags[k], f"{msg}[{k}]")
    elif isinstance(ref, (tuple, list)):
        for i, (a, b) in enumerate(zip(out, ref)):
            close(a, b, dtype, n, None if mags is None else mags[i], f"{msg}[{i}]")
    elif isinstance(ref, ForwardCache):
        return
    elif isinstance(ref, np.ndarray):
        assert isinstance(out, np.ndarray) and out.shape == ref.shape and out.dtype == ref.dtype, msg
        mag = mags
        if mag is None:
            mag = np.abs(ref.astype(np.float64)) + (np.max(np.abs(ref.astype(np.float64))) if ref.size else 0)
        assert_close(out, ref, dtype, n, magnitude=mag, err_msg=msg)
    elif isinstance(ref, float):
        assert isinstance(out, float), msg
        assert_close(out, ref, dtype, n, magnitude=abs(ref) if mags is None else mags, err_msg=msg)


def check_contract(out, ref, target, must_reject, dtype, n, mags=None, what=""):
    """The outcome on the backend under test against the NumPy backend's on canonical input."""
    kind, value = out
    if kind == "error" and target != "none":
        assert target in str(value), f"{what}: the message does not name {target!r}: {value}"
    if must_reject:
        assert kind == "error", f"{what}: broken {target!r} was accepted: {kind} {value!r:.300}"
        return
    if kind == "ok":
        assert all_finite(value), f"{what}: returned a non-finite result"
    if kind == "ok" and ref[0] == "ok":
        close(value, ref[1], dtype, n, mags() if callable(mags) else mags, what)
    elif is_overflow(out) or is_overflow(ref):
        # Where the float range runs out may differ by a rounding between
        # backends (the compiled loss sums in float64): finite or overflow both pass.
        assert kind in ("ok", "error") and ref[0] in ("ok", "error"), f"{what}: {out} vs {ref}"
    else:
        assert kind == ref[0], f"{what}: {kind} ({value!r:.200}) but the NumPy backend gives {ref[0]} ({ref[1]!r:.200})"


# -------------------------------------------------------------- mutations


def _readonly(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def _unaligned(a):
    a = np.asarray(a)
    buf = bytearray(a.nbytes + 1)
    out = np.frombuffer(buf, dtype=a.dtype, offset=1, count=a.size).reshape(a.shape)
    out[...] = a
    return out


def _strided(a):
    a = np.asarray(a)
    big = np.zeros((a.shape[0], 2 * a.shape[1]) if a.ndim == 2 else (2 * a.shape[0],), a.dtype)
    if a.ndim == 2:
        big[:, ::2] = a
        return big[:, ::2]
    big[::2] = a
    return big[::2]


def _with(a, value):
    a = np.array(a, dtype=np.result_type(a, type(value)))
    a.flat[a.size // 2] = value
    return a


def _huge(dtype):
    return 1e300 if np.dtype(dtype) == np.float64 else 1e30 if np.dtype(dtype) == np.float32 else 1e4


def _tiny(dtype):
    return float(np.finfo(dtype).smallest_subnormal) * 3


# Layout/container changes that keep the values: always accepted.
LAYOUTS = {
    "fortran": np.asfortranarray, "strided": _strided, "readonly": _readonly,
    "unaligned": _unaligned, "list": lambda a: np.asarray(a).tolist(),
}


def array_mutations(kind, dtype):
    """(name, function of the valid array, must_reject) for X, params['W1'] or a target Y."""
    out = [(f"layout-{k}", f, None if (kind == "W" and k == "list") else False) for k, f in LAYOUTS.items()]
    out += [
        ("nan", lambda a: _with(a, np.nan), True),
        ("inf", lambda a: _with(a, np.inf), True),
        ("-inf", lambda a: _with(a, -np.inf), True),
        ("complex", lambda a: np.asarray(a).astype(np.complex128), True),
        ("object", lambda a: np.asarray(a).astype(object), True),
        ("string", lambda a: np.asarray(a).astype(str), True),
        ("1d", lambda a: np.asarray(a).ravel(), None),
        ("3d", lambda a: np.asarray(a)[None], True),
        ("transposed", lambda a: np.ascontiguousarray(np.asarray(a).T), None),
        ("extra-row", lambda a: np.vstack([a, a[:1]]), True),
        ("extra-column", lambda a: np.hstack([a, a[:, :1]]), None if kind == "X" else True),
        ("huge", lambda a: np.asarray(a) * _huge(dtype), None),
        ("subnormal", lambda a: np.asarray(a) * _tiny(dtype), False),
        ("negative-zero", lambda a: np.where(np.asarray(a) > 0, a, -0.0).astype(np.asarray(a).dtype), False),
        ("float16", lambda a: np.asarray(a).astype(np.float16), None),
        ("float32", lambda a: np.asarray(a).astype(np.float32), None),
        ("float64", lambda a: np.asarray(a).astype(np.float64), None),
        ("all-equal", lambda a: np.full_like(np.asarray(a), 0.75), False),
    ]
    if kind == "X":
        out += [("int", lambda a: np.round(np.asarray(a) * 3).astype(np.int64), False),
                ("bool", lambda a: np.asarray(a) > 0, False),
                ("uint8", lambda a: (np.abs(np.asarray(a)) * 10).astype(np.uint8), False),
                ("no-columns", lambda a: np.asarray(a)[:, :0], True),
                ("scalar", lambda a: np.float64(1.0), True),
                ("none", lambda a: None, True),
                ("ragged-list", lambda a: [[1.0, 2.0], [3.0]], True)]
    if kind == "W":
        out += [("int", lambda a: np.round(np.asarray(a) * 3).astype(np.int64), True),
                ("bool", lambda a: np.asarray(a) > 0, True),
                ("no-rows", lambda a: np.asarray(a)[:0], True)]
    return out


def label_mutations(output, n_L):
    """(name, function of the valid one-hot/0-1/target Y, must_reject)."""
    out = [(f"layout-{k}", f, False) for k, f in LAYOUTS.items()]
    out += [("nan", lambda Y: _with(Y, np.nan), True),
            ("complex", lambda Y: np.asarray(Y).astype(np.complex64), True),
            ("string", lambda Y: np.asarray(Y).astype(str), True),
            ("object", lambda Y: np.asarray(Y).astype(object), True),
            ("extra-column", lambda Y: np.hstack([Y, Y[:, :1]]), True),
            ("missing-column", lambda Y: np.asarray(Y)[:, 1:] if Y.shape[1] > 1 else Y[:, :0], True),
            ("3d", lambda Y: np.asarray(Y)[None], True),
            ("int", lambda Y: np.asarray(Y).astype(np.int64) if output != "identity" else np.round(Y).astype(int), False),
            ("float32", lambda Y: np.asarray(Y).astype(np.float32), False)]
    if output == "sigmoid":
        out += [("label-2", lambda Y: _with(Y, 2.0), True),
                ("label-minus-1", lambda Y: _with(Y, -1.0), True),
                ("label-half", lambda Y: _with(Y, 0.5), True),
                ("bool", lambda Y: np.asarray(Y) > 0, False),
                ("1d", lambda Y: np.asarray(Y).ravel(), n_L != 1),
                ("single-class", lambda Y: np.ones_like(Y), False)]
    elif output == "softmax":
        out += [("class-labels", lambda Y: np.asarray(Y).argmax(axis=0), False),
                ("class-labels-row", lambda Y: np.asarray(Y).argmax(axis=0)[None], False),
                ("class-labels-float", lambda Y: np.asarray(Y).argmax(axis=0).astype(float), False),
                ("class-label-too-large", lambda Y: _with(np.asarray(Y).argmax(axis=0), n_L), True),
                ("class-label-negative", lambda Y: _with(np.asarray(Y).argmax(axis=0), -1), True),
                ("class-label-fraction", lambda Y: _with(np.asarray(Y).argmax(axis=0).astype(float), 0.5), True),
                ("class-label-huge", lambda Y: _with(np.asarray(Y).argmax(axis=0).astype(np.uint64), 2 ** 63), True),
                ("one-hot-two-ones", lambda Y: np.where(np.arange(Y.shape[0])[:, None] < 2, 1.0, 0.0) + 0 * Y, True),
                ("one-hot-bool", lambda Y: np.asarray(Y) > 0, False),
                ("single-class", lambda Y: np.eye(Y.shape[0])[:, [0] * Y.shape[1]], False)]
    else:
        out += [("huge-targets", lambda Y: np.asarray(Y) * _huge(np.asarray(Y).dtype), None),
                ("inf", lambda Y: _with(Y, np.inf), True)]
    return out


def option_mutations():
    """(kwarg, bad value, must_reject) for the keyword options of the functional API."""
    return [("hidden", "ReLU", True), ("hidden", None, True), ("hidden", 3, True),
            ("output", "tanh", True), ("output", None, True), ("scaling", "mean", True),
            ("output_grad", "exact", True), ("l2", -1.0, True), ("l2", float("nan"), True),
            ("l2", float("inf"), True), ("l2", "0.1", True), ("l2", True, True),
            ("l2", np.array([0.1]), True), ("l2", 1e300, None), ("l2", 0.5, False),
            ("backend", "nope", True), ("backend", 3, True)]


def params_mutations(params):
    """(name, new params, must_reject) that break the dict, not one array."""
    def drop(k):
        return {kk: v for kk, v in params.items() if kk != k}

    def put(k, v):
        return {**params, k: v}

    L = len(params) // 2
    W1 = params["W1"]
    other = np.float32 if W1.dtype != np.float32 else np.float64
    return [("missing-b", drop(f"b{L}"), True), ("missing-W", drop("W1"), True),
            ("extra-layer", put(f"W{L + 1}", np.ones((1, 1), W1.dtype)), True),
            ("stray-key", put("lr", np.ones(1)), True), ("int-key", put(3, np.ones(1)), True),
            ("b-1d", put("b1", params["b1"].ravel()), True),
            ("b-row", put("b1", params["b1"].T.copy()), W1.shape[0] != 1),
            ("W-chain", put(f"W{L}", np.ones((params[f"W{L}"].shape[0], params[f"W{L}"].shape[1] + 1), W1.dtype)), True),
            ("mixed-dtype", put("b1", params["b1"].astype(other)), True),
            ("not-a-dict", list(params.values()), True), ("empty", {}, True), ("none", None, True)]


# ------------------------------------------------------------- strategies


@st.composite
def problems(draw, backend):
    bk_dtypes = [np.dtype(t) for t in get_backend(backend).DTYPES]
    dtype = draw(st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)] +
                                 [np.dtype(np.float16)] * (np.float16 in get_backend("numpy").DTYPES)))
    output = draw(st.sampled_from(OUTPUTS))
    hidden = draw(st.sampled_from(HIDDEN))
    dims = draw(st.lists(st.integers(1, 5), min_size=2, max_size=4))
    if output == "softmax":
        dims[-1] = max(dims[-1], 2)
    m = draw(st.sampled_from([1, 2, 3, 5, 8]))
    seed = draw(st.integers(0, 2 ** 16))
    params, X, Y = make_problem(dims, m, output, dtype, seed=seed)
    return {"params": params, "X": X, "Y": Y, "dtype": dtype, "output": output, "hidden": hidden,
            "dims": dims, "m": m, "supported": dtype in bk_dtypes}


@st.composite
def mutated(draw, backend, target):
    """A problem with at most one argument broken: (problem, target, name, must_reject)."""
    p = draw(problems(backend))
    name, must_reject = "valid", False
    if target == "X":
        name, f, must_reject = draw(st.sampled_from(array_mutations("X", p["dtype"])))
        p["X"] = f(p["X"])
    elif target == "Y":
        name, f, must_reject = draw(st.sampled_from(label_mutations(p["output"], p["dims"][-1])))
        p["Y"] = f(p["Y"])
    elif target == "W1":
        name, f, must_reject = draw(st.sampled_from(array_mutations("W", p["dtype"])))
        p["params"] = {**p["params"], "W1": f(p["params"]["W1"])}
        target = "params"
    elif target == "params":
        name, new, must_reject = draw(st.sampled_from(params_mutations(p["params"])))
        p["params"] = new
    p["kw"] = {}
    if target == "option":
        target, value, must_reject = draw(st.sampled_from(option_mutations()))
        name = f"{target}={value!r}"
        if target in ("hidden", "output"):
            p[target] = value
        else:
            p["kw"] = {target: value}
    return p, target, name, must_reject


def _n_terms(p):
    return max(list(p["dims"]) + [p["m"]])


def magnitudes(api, params, X, Y, hidden, output, kw):
    """naive's sums of |terms| for a call that succeeded, on its validated arguments."""
    Ws, bs, dt = V.check_params(canon(params))
    P = {}
    for l, (W, b) in enumerate(zip(Ws, bs), start=1):
        P[f"W{l}"], P[f"b{l}"] = W.astype(np.float64), b.astype(np.float64)
    Xc = V.check_X(canon(X), Ws[0].shape[1], dt).astype(np.float64)
    if api == "forward":
        return naive.forward_magnitudes(P, Xc, hidden, output)[0], None
    Yc = V.check_Y(canon(Y), output, Ws[-1].shape[0], Xc.shape[1], dt).astype(np.float64)
    try:
        with np.errstate(all="ignore"):
            J_mag, g_mag = naive.gradient_magnitudes(P, Xc, Yc, hidden, output, kw.get("scaling", "deferred"),
                                                     float(kw.get("l2", 0.0)))
    except OverflowError:  # Python floats raise where NumPy gives inf: no finite bound to use
        return None
    return g_mag if api == "backward" else (J_mag, g_mag)


# ------------------------------------------------------------------ tests


#: What to break (one argument per example; how, is drawn from the mutation lists).
TARGETS = ["X", "Y", "W1", "params", "option", "none"]


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("target", TARGETS)
@fuzz_settings(15)
@given(data=st.data())
def test_functional_api_fuzz(backend, target, data):
    """forward, gradients (both output routes), backward, cost, gradcheck under one broken argument."""
    p, target, name, must_reject = data.draw(mutated(backend, target))
    bk = get_backend(backend)
    params, X, Y, dtype, kw = p["params"], p["X"], p["Y"], p["dtype"], p["kw"]
    hidden, output = p["hidden"], p["output"]
    what = f"{backend}: {target} {name} ({dtype.name}, {hidden}/{output}, dims {p['dims']}, m {p['m']})"
    saved = snapshot((params, X, Y))
    n = _n_terms(p)
    # float16 on a compiled backend: every call must refuse it by name.
    unsupported = not p["supported"] and "backend" not in kw
    on_bk = dict(kw, backend=kw.get("backend", backend))
    on_ref = dict(kw, backend=kw.get("backend", "numpy"))

    def on(api, *args, **k):
        return attempt(lambda: api(*args, **k))

    tally("functional", "examples")
    tally("functional", f"mutation:{target}")

    def expect(out, ref, where, api):
        tally("functional", f"{where}:{out[0]}")
        if unsupported:
            assert out[0] == "error" and (target in str(out[1]) or "params" in str(out[1])), f"{what} {where}: {out}"
        else:
            mags = (lambda: magnitudes(api, params, X, Y, hidden, output, kw))  # noqa: E731
            check_contract(out, ref, target, must_reject, dtype, n, mags, f"{what} {where}")

    fkw = {k: v for k, v in on_bk.items() if k == "backend"}
    fkw_ref = {k: v for k, v in on_ref.items() if k == "backend"}
    with kernel_guard(bk):
        fwd = on(fastnn.forward, params, X, hidden=hidden, output=output, **fkw)
        fwd_ref = on(fastnn.forward, canon(params), canon(X), hidden=hidden, output=output, **fkw_ref)
        if not any(k in kw for k in ("l2", "scaling", "output_grad")) and target != "Y":
            expect(fwd, fwd_ref, "forward", "forward")
        for route in ("fused", "chain"):
            out = on(fastnn.gradients, params, X, Y, hidden=hidden, output=output,
                     **dict(on_bk, output_grad=on_bk.get("output_grad", route)))
            ref = on(fastnn.gradients, canon(params), canon(X), canon(Y), hidden=hidden, output=output,
                     **dict(on_ref, output_grad=on_ref.get("output_grad", route)))
            expect(out, ref, f"gradients/{route}", "gradients")
        if fwd[0] == "ok" and fwd_ref[0] == "ok":
            k = {kk: v for kk, v in kw.items() if kk != "backend"}
            out = on(fastnn.backward, params, fwd[1][1], Y, **k)
            ref = on(fastnn.backward, canon(params), fwd_ref[1][1], canon(Y), **k)
            expect(out, ref, "backward", "backward")
        # cost() from a valid NumPy forward pass, with this Y and l2 (same computation twice).
        if target in ("Y", "l2", "none"):
            base = make_problem(p["dims"], p["m"], output, dtype, seed=0)
            AL, cache = fastnn.forward(base[0], base[1], hidden=hidden, output=output, backend="numpy")
            ckw = {k: v for k, v in kw.items() if k == "l2"}
            for logits in (None, np.asarray(cache.ZL)):
                out = on(fastnn.cost, AL, Y, output=output, logits=logits, params=base[0], **ckw)
                ref = on(fastnn.cost, AL, canon(Y), output=output, logits=logits, params=base[0], **ckw)
                tally("functional", f"cost:{out[0]}")
                if out[0] == "ok" and out[1] == np.inf:  # the documented -log(0) of a saturated wrong output
                    assert logits is None and ref[1] == np.inf, what
                    continue
                check_contract(out, ref, target, must_reject, dtype, n, None, f"{what} cost")
        # gradcheck: float64 central differences, small nets only (it is O(P^2 m)).
        if sum(np.size(v) for v in fastnn.init_params(p["dims"]).values()) <= 40 and not unsupported:
            out = on(fastnn.gradcheck, params, X, Y, hidden=hidden, output=output, **on_bk)
            ref = on(fastnn.gradcheck, canon(params), canon(X), canon(Y), hidden=hidden, output=output,
                     **on_ref)
            tally("functional", f"gradcheck:{out[0]}")
            if out[0] == "ok":
                assert math.isfinite(out[1]) and out[1] >= 0, f"{what} gradcheck: {out[1]}"
                assert not must_reject, f"{what} gradcheck accepted it"
                # The same values in float64: where the canonical input's gradient checks
                # out, the accepted variant's must too (a variant read differently fails).
                if ref[0] == "ok" and ref[1] < GRADCHECK_TOL:
                    assert out[1] < GRADCHECK_TOL, f"{what} gradcheck: {out[1]} (canonical {ref[1]})"
            elif out[0] != "saturation":
                assert target != "none" and target in str(out[1]), f"{what} gradcheck: {out[1]}"
    assert unchanged((params, X, Y), saved), f"{what}: an input array was modified"


def _cache_mutations(cache, dtype, bk):
    As = list(cache.As)
    # Host copies for the edits that need NumPy methods (a CUDA device array has no
    # astype or tolist; the simulator's stand-in forwards them to NumPy).
    hAs, hZL = [np.asarray(bk.to_host(a)) for a in As], np.asarray(bk.to_host(cache.ZL))
    out = [("short", ForwardCache(As[:-1], cache.ZL, cache.hidden, cache.output, cache.backend), True),
           ("wrong-shape", ForwardCache(As[:1] + [np.zeros((As[1].shape[0] + 1, As[1].shape[1]), dtype)] + As[2:],
                                        cache.ZL, cache.hidden, cache.output, cache.backend), True),
           ("wrong-dtype", ForwardCache([a.astype(np.float16 if dtype != np.float16 else np.float32) for a in hAs],
                                        cache.ZL, cache.hidden, cache.output, cache.backend), True),
           ("ZL-wrong-shape", ForwardCache(As, np.zeros((cache.ZL.shape[0] + 1, cache.ZL.shape[1]), dtype),
                                           cache.hidden, cache.output,
                                           cache.backend), True),
           ("list", ForwardCache([a.tolist() for a in hAs], cache.ZL, cache.hidden, cache.output, cache.backend), True),
           ("tuple", (As, cache.ZL), True),
           ("fortran", ForwardCache([np.asfortranarray(a) for a in hAs], np.asfortranarray(hZL), cache.hidden,
                                    cache.output, cache.backend), False),
           ("hidden", ForwardCache(As, cache.ZL, "softplus", cache.output, cache.backend), True),
           ("backend", ForwardCache(As, cache.ZL, cache.hidden, cache.output, "nope"), True)]
    # The name an error must give: the cache, or the cache field that is wrong.
    return out


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@fuzz_settings(25)
@given(data=st.data())
def test_backward_rejects_edited_caches(backend, data):
    """A ForwardCache is a public dataclass: a hand-edited one must not reach the kernels.

    Regression: a cache whose A[1] had the wrong shape went into the compiled
    backward kernels on the Numba backends (out-of-bounds reads, garbage dW).
    """
    p = data.draw(problems(backend))
    if not p["supported"]:
        return
    bk = get_backend(backend)
    params, X, Y, dtype = p["params"], p["X"], p["Y"], p["dtype"]
    _, cache = fastnn.forward(params, X, hidden=p["hidden"], output=p["output"], backend=backend)
    name, bad, must_reject = data.draw(st.sampled_from(_cache_mutations(cache, dtype, bk)))
    with kernel_guard(bk):
        out = attempt(lambda: fastnn.backward(params, bad, Y))
    tally("cache", "examples")
    tally("cache", out[0])
    if must_reject:
        expected = name if name in ("hidden", "backend") else "cache"
        assert out[0] == "error" and expected in str(out[1]), f"{name}: {out}"
    else:
        ref = fastnn.backward(params, cache, Y)
        assert out[0] == "ok", f"{name}: {out}"
        close(out[1], ref, dtype, _n_terms(p), msg=name)


# ------------------------------------------------------------------ Model


def model_mutations(p):
    """(kind, key, value, target named in the error, must_reject); kind in ctor/fit/params."""
    dtype = p["dtype"]
    tiny_lr = 1e-50 if dtype == np.float32 else 1e-330 if dtype == np.float64 else 1e-9
    W1 = p["params"]["W1"]
    return [
        ("ctor", "layer_dims", [3], "layer_dims", True), ("ctor", "layer_dims", [3, 0, 1], "layer_dims", True),
        ("ctor", "layer_dims", [3, 2.5], "layer_dims", True), ("ctor", "layer_dims", "32", "layer_dims", True),
        ("ctor", "layer_dims", None, "layer_dims", True), ("ctor", "layer_dims", [3, 2 ** 70], "layer_dims", True),
        ("ctor", "hidden", "ReLU", "hidden", True), ("ctor", "output", "tanh", "output", True),
        ("ctor", "dtype", np.int32, "dtype", True), ("ctor", "dtype", "nope", "dtype", True),
        ("ctor", "seed", -1, "seed", True), ("ctor", "seed", "x", "seed", True),
        ("fit", "epochs", 0, "epochs", True), ("fit", "epochs", 1.5, "epochs", True),
        ("fit", "epochs", True, "epochs", True), ("fit", "batch_size", 0, "batch_size", True),
        ("fit", "batch_size", 2.5, "batch_size", True), ("fit", "batch_size", 10 ** 9, "batch_size", False),
        ("fit", "optimizer", "SGD", "optimizer", True), ("fit", "optimizer", None, "optimizer", True),
        ("fit", "lr", 0.0, "lr", True), ("fit", "lr", -0.1, "lr", True), ("fit", "lr", float("nan"), "lr", True),
        ("fit", "lr", "0.1", "lr", True), ("fit", "lr", tiny_lr, "lr", True),
        ("fit", "lr", 1e300 if dtype == np.float64 else 1e30, "lr", None),
        ("fit", "l2", -1.0, "l2", True), ("fit", "scaling", "mean", "scaling", True),
        ("fit", "output_grad", "exact", "output_grad", True), ("fit", "foo", 1, "foo", True),
        ("fit", "beta", 0.9, "beta", True), ("fit", "beta", 1.5, "beta", True),
        ("fit", "eps", 0.0, "eps", True), ("fit", "shuffle_seed", -1, "shuffle_seed", True),
        ("fit", "shuffle_seed", "a", "shuffle_seed", True), ("fit", "callback", 3, "callback", True),
        ("fit", "on_divergence", "ignore", "on_divergence", True), ("fit", "checkpoint", 3, "checkpoint", True),
        ("fit", "checkpoint", "", "checkpoint", True), ("fit", "checkpoint", "/no/such/dir/ck", "checkpoint", True),
        ("fit", "checkpoint_every", 0, "checkpoint_every", True),
        ("fit", "resume", 3, "resume", True), ("fit", "backend", "nope", "backend", True),
        ("fit", "progress", "yes", "progress", False),
        ("params", "W1", np.zeros((W1.shape[0] + 2, W1.shape[1] + 2), W1.dtype), "params", True),
        ("params", "W1", W1.astype(np.float16 if dtype != np.float16 else np.float32), "params", True),
        ("params", "W1", _with(W1, np.nan), "params", True), ("params", "W1", None, "params", True),
        ("params", "b1", p["params"]["b1"].ravel(), "params", True),
        ("params", "W1", np.asfortranarray(W1), "params", False), ("params", "W1", _readonly(W1), "params", False),
        ("params", "W1", W1.tolist() if dtype == np.float64 else W1, "params", False),
        ("params", "W9", W1, "params", True),
    ]


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@fuzz_settings(40)
@given(data=st.data())
def test_model_fuzz(backend, data):
    """Model(...), fit (both paths), predict_proba, score under one broken argument."""
    p = data.draw(problems(backend))
    bk = get_backend(backend)
    if data.draw(st.booleans()):
        kind, key, value, target, must_reject = data.draw(st.sampled_from(model_mutations(p)))
    else:
        kind = "data"
        which = data.draw(st.sampled_from(["X", "Y"]))
        if which == "X":
            key, f, must_reject = data.draw(st.sampled_from(array_mutations("X", p["dtype"])))
        else:
            key, f, must_reject = data.draw(st.sampled_from(label_mutations(p["output"], p["dims"][-1])))
        value, target = f(p[which]), which
    dims, hidden, output, dtype = p["dims"], p["hidden"], p["output"], p["dtype"]
    X, Y = p["X"], p["Y"]
    if kind == "data":
        X, Y = (value, Y) if target == "X" else (X, value)
    ctor = {"layer_dims": dims, "hidden": hidden, "output": output, "dtype": dtype, "seed": 3}
    fit = {"epochs": 2, "batch_size": data.draw(st.sampled_from([None, 1, 3])),
           "optimizer": data.draw(st.sampled_from(["sgd", "momentum", "adam"])), "lr": 0.05,
           "shuffle_seed": 1, "progress": False}
    if fit["optimizer"] == "adam" and dtype == np.float16:
        fit["eps"] = 1e-4  # the default 1e-8 is below float16's smallest normal: refused by name
    if kind == "fit" and key in OPTIMIZER_OPTIONS[fit["optimizer"]] and value in (0.9,):
        must_reject = False  # a valid option of this optimizer
    if kind == "ctor":
        ctor[key] = value
    elif kind == "fit":
        fit[key] = value
    what = f"{backend}: {kind} {key}={value!r:.60} ({dtype.name}, {hidden}/{output}, dims {dims}, m {p['m']})"
    saved = snapshot((X, Y))

    def run(X, Y, backend_name, edit):
        model = fastnn.Model(**ctor)
        if edit is not None:
            model.params[edit[0]] = edit[1]
        try:
            history = model.fit(X, Y, **dict({"backend": backend_name}, **fit))
        except DivergenceError:
            assert all(np.isfinite(v).all() for v in model.params.values()), "non-finite params kept"
            raise
        return model.params, history.cost, model.predict_proba(X, backend=backend_name)

    edit = (key, value) if kind == "params" else None
    with kernel_guard(bk):
        out = attempt(lambda: run(X, Y, backend, edit))
    tally("model", "examples")
    tally("model", out[0])
    ref = attempt(lambda: run(canon(X), canon(Y), "numpy", (key, canon(value)) if edit else None))
    if out[0] == "error" and not p["supported"] and "dtype" in str(out[1]):
        return  # float16 on a compiled backend: refused by name, as it must be
    # Values at the edge of the float range (or an absurd lr): where a step first
    # overflows may differ by a rounding between backends (the compiled loop sums
    # the loss in float64), so "diverged" on one side and finite on the other passes.
    edge = key in ("huge", "huge-targets") or (kind == "fit" and key == "lr")
    if "diverged" in (out[0], ref[0]):
        assert out[0] == ref[0] or (edge and {out[0], ref[0]} <= {"ok", "diverged", "error"}), f"{what}: {out} {ref}"
    elif out[0] == "ok" and ref[0] == "ok":
        params, costs, proba = out[1]
        n = max(dims + [p["m"]]) * p["m"] * 2 * 4
        assert all(np.isfinite(v).all() for v in params.values()) and np.isfinite(proba).all(), what
        close(params, ref[1][0], dtype, n, msg=what + " params")
        close(proba, ref[1][2], dtype, n, msg=what + " predict_proba")
        rtol = tol(dtype, n)[0] * 10
        np.testing.assert_allclose(costs, ref[1][1], rtol=rtol, atol=rtol * max(map(abs, ref[1][1])), err_msg=what)
    else:
        check_contract(out, ref, target, must_reject, dtype, 16, None, what)
    if must_reject:
        assert out[0] == "error" and target in str(out[1]), f"{what}: {out}"
    assert unchanged((X, Y), saved), f"{what}: fit modified its input"


# ------------------------------------------------------------------ compat


def compat_mutations():
    """(argument, function of the valid value, must_reject) for the backend= fast path."""
    return [("X", np.asfortranarray, False), ("X", lambda X: X.tolist(), False),
            ("X", _readonly, False), ("X", _strided, False),
            ("X", lambda X: (X * 4).astype(np.int64), False), ("X", lambda X: _with(X, np.nan), True),
            ("X", lambda X: X.astype(complex), True), ("X", _drop_row, True),
            ("X", lambda X: X * 1e300, None), ("Y", lambda Y: Y > 0, False),
            ("Y", lambda Y: Y.astype(np.int8), False), ("Y", lambda Y: Y.ravel(), False),
            # a real-valued label is what the course code takes (its own tests feed randn
            # labels): the fast path takes it too, with the course loop's numbers
            ("Y", lambda Y: _with(Y, 2.0), False), ("Y", lambda Y: _with(Y, np.nan), True),
            ("Y", lambda Y: Y[:, 1:], True),
            ("learning_rate", lambda lr: float("nan"), True), ("learning_rate", lambda lr: "0.1", True),
            ("learning_rate", lambda lr: -lr, False), ("learning_rate", lambda lr: 1e300, None),
            ("num_iterations", lambda n: 2.5, True), ("num_iterations", lambda n: -1, False),
            ("num_iterations", lambda n: np.int64(n), False), ("none", lambda v: v, False)]


def _drop_row(X):
    return X[:-1]


FAST = [p for p in BACKEND_PARAMS if p.values[0] != "cuda"]


@pytest.mark.parametrize("backend", FAST)
@fuzz_settings(30)
@given(data=st.data())
def test_compat_fast_path_fuzz(backend, data):
    """The course's model functions with backend=: the course loop's numbers, or a named error."""
    model = data.draw(st.sampled_from(["L_layer_model", "two_layer_model", "nn_model"]))
    m = data.draw(st.sampled_from([1, 4, 9]))
    n_x = data.draw(st.integers(1, 4))
    rng = np.random.RandomState(data.draw(st.integers(0, 1000)))
    args = {"X": rng.randn(n_x, m), "Y": (rng.rand(1, m) > 0.5).astype(float),
            "learning_rate": 0.05, "num_iterations": data.draw(st.integers(0, 4))}
    target, f, must_reject = data.draw(st.sampled_from(compat_mutations()))
    if f is _drop_row and model == "nn_model":
        must_reject = None  # nn_model sizes the network from X itself
    if target != "none":
        args[target] = f(args[target])
    what = f"{backend}: {model} {target} mutated"

    def call(a, fast):
        kw = {"backend": backend} if fast else {}
        if model == "nn_model":
            if a["learning_rate"] != 0.05:
                return None  # nn_model has no learning rate argument (1.2)
            return planar.nn_model(a["X"], a["Y"], 3, num_iterations=a["num_iterations"], **kw)
        dims = [n_x, 3, 1] if model == "L_layer_model" else (n_x, 3, 1)
        return getattr(dnn, model)(a["X"], a["Y"], dims, learning_rate=a["learning_rate"],
                                   num_iterations=a["num_iterations"], **kw)[0]

    saved = snapshot(args)
    with kernel_guard(get_backend(backend)):
        try:
            out = attempt(lambda: call(args, True))
            tally("compat", "examples")
            tally("compat", out[0])
        except Exception as exc:  # noqa: BLE001
            # Only where the course's own code, shared by both paths, fails first
            # (e.g. layer_sizes(X) reads X.shape of a list): the same error as the course.
            with pytest.raises(type(exc)):
                with np.errstate(all="ignore"):
                    call(args, False)
            return
    if out[0] == "ok" and out[1] is None:
        return
    assert unchanged(args, saved), f"{what}: an input was modified"
    if must_reject:
        assert out[0] == "error" and target in str(out[1]), f"{what}: {out}"
        return
    try:
        with np.errstate(all="ignore"):
            ref = call(canon(args), False)
    except Exception:  # noqa: BLE001 - the course loop fails its own way on what it cannot take
        ref = None
    if out[0] == "ok":
        assert all(np.isfinite(v).all() for v in out[1].values()), f"{what}: non-finite parameters"
        if ref is None or not all(np.isfinite(v).all() for v in ref.values()):
            # The course's dA[L] = -(Y/A - (1-Y)/(1-A)) divides by a saturated output and
            # gives NaN; the fast path's dZ[L] = A - Y has no division and stays finite.
            return
        iters = max(int(args["num_iterations"]), 1)
        rtol = tol(np.float64, m * iters + 4)[0] * 4
        # Magnitude of the terms: the parameters' size plus what the steps moved them by
        # (the course's dZ = dA * A(1-A) cancels to A - Y: its error is relative to O(1)
        # terms, not to the small result).
        lr = float(args["learning_rate"]) if not isinstance(args["learning_rate"], str) else 0.05
        scale = max(np.max(np.abs(v)) for v in ref.values()) + abs(lr) * iters
        for k in ref:
            assert np.max(np.abs(out[1][k] - ref[k])) <= rtol * scale, f"{what}: {k}"
    else:
        assert out[0] in ("error", "diverged"), f"{what}: {out}"
        if ref is not None:
            assert not all(np.isfinite(v).all() for v in ref.values()) or out[0] == "error", \
                f"{what}: the course loop gives finite numbers, the fast path {out}"


@fuzz_settings(30)
@given(data=st.data())
def test_compat_step_functions_never_modify_inputs(data):
    """The Week-4 step functions are the course's NumPy code (its results, its errors,
    NaN included, by design); what they must never do is change their inputs."""
    rng = np.random.RandomState(data.draw(st.integers(0, 1000)))
    dims = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)) + [1]
    m = data.draw(st.integers(1, 5))
    params = {}
    for l in range(1, len(dims)):
        params[f"W{l}"] = rng.randn(dims[l], dims[l - 1])
        params[f"b{l}"] = rng.randn(dims[l], 1)
    X = rng.randn(dims[0], m)
    Y = (rng.rand(1, m) > 0.5).astype(int)
    name, f, _ = data.draw(st.sampled_from([(n, f, r) for n, f, r in array_mutations("X", np.float64)
                                            if n not in ("ragged-list",)]))
    X = f(X)
    saved = snapshot((params, X, Y))
    tally("compat-steps", "examples")

    def backward():
        AL, caches = dnn.L_model_forward(np.asarray(X, float), params)
        return dnn.L_model_backward(AL, Y, caches)

    with np.errstate(all="ignore"):
        for step in (lambda: dnn.L_model_forward(X, params),
                     lambda: dnn.compute_cost(dnn.L_model_forward(np.asarray(X, float), params)[0], Y),
                     backward,
                     lambda: dnn.update_parameters(params, {f"d{k}": v for k, v in params.items()}, 0.1),
                     lambda: dnn.linear_forward(X, params["W1"], params["b1"]),
                     lambda: dnn.relu(X), lambda: dnn.sigmoid(X)):
            try:
                step()
            except Exception:  # noqa: BLE001 - any Python exception is the course's behaviour
                pass
    assert unchanged((params, X, Y), saved), f"X {name}: a course function modified its input"


# ------------------------------------------------------------- init_params


@fuzz_settings(40)
@given(layer_dims=st.one_of(
           st.lists(st.integers(1, 5), min_size=2, max_size=4),
           st.lists(st.integers(1, 5), min_size=2, max_size=4).map(tuple),
           st.lists(st.integers(-2, 6), min_size=0, max_size=5),
           st.lists(st.one_of(st.floats(-2, 6), st.just(float("nan"))), min_size=1, max_size=4),
           st.lists(st.sampled_from([2 ** 70, 2 ** 62, 3, "3", None, [3], True]), min_size=1, max_size=3),
           st.sampled_from([None, 5, "32", b"12"])),
       init=st.one_of(st.sampled_from(["he", "xavier", "small"]), st.sampled_from(["he", "small"]),
                      st.sampled_from(["glorot", None, 3])),
       dtype=st.one_of(st.sampled_from([np.float16, np.float32, np.float64, "float32"]),
                       st.sampled_from([np.float32, np.float64]),
                       st.sampled_from([np.int32, np.complex64, object, "nope"])),
       seed=st.one_of(st.integers(0, 2 ** 40), st.just(None), st.integers(-3, -1),
                      st.sampled_from(["x", 1.5, True])))
def test_init_params_fuzz(layer_dims, init, dtype, seed):
    """Any arguments: the right shapes, finite values, or an error naming the argument."""
    tally("init_params", "examples")
    try:
        params = fastnn.init_params(layer_dims, init=init, dtype=dtype, seed=seed)
        tally("init_params", "ok")
    except FASTNN_ERRORS as exc:
        tally("init_params", "error")
        assert any(n in str(exc) for n in ("layer_dims", "init", "dtype", "seed")), str(exc)
        return
    dims = [int(d) for d in layer_dims]
    assert len(params) == 2 * (len(dims) - 1)
    for l in range(1, len(dims)):
        assert params[f"W{l}"].shape == (dims[l], dims[l - 1]) and params[f"b{l}"].shape == (dims[l], 1)
        assert np.isfinite(params[f"W{l}"]).all() and params[f"W{l}"].dtype == np.dtype(dtype)


# ------------------------------------------------ regressions found by the fuzz


def test_regression_cost_of_probabilities_outside_0_1_is_refused():
    """Was: cost(AL=[[1.5, 0.5]], Y=[[0, 1]]) returned nan (log1p(-1.5))."""
    for output, AL, Y in (("sigmoid", [[1.5, 0.5]], [[0, 1]]), ("sigmoid", [[-0.5, 0.5]], [[1, 1]]),
                          ("softmax", [[1.5, 0.5], [0.2, 0.5]], [0, 1])):
        with pytest.raises(FastnnValueError, match="AL"):
            fastnn.cost(np.array(AL), np.array(Y), output=output)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_regression_overflow_is_an_error_not_a_silent_inf(backend):
    """Was: gradients() of float16 params with identity targets of 3000 returned cost inf and
    inf in dW; cost() of identity outputs 1e200 apart returned inf."""
    with pytest.raises(FastnnValueError, match="AL, Y"):
        fastnn.cost(np.array([[1e200]]), np.array([[-1e200]]), output="identity")
    params, X, Y = make_problem([3, 4, 1], 5, "identity", np.float32, seed=1)
    with pytest.raises(FastnnValueError, match="X, Y, params"):
        fastnn.gradients(params, X * 1e30, Y * 1e30, output="identity", backend=backend)
    with pytest.raises(FastnnValueError, match="X, params"):
        fastnn.forward({k: v * np.float32(1e20) for k, v in params.items()}, X * 1e20, output="identity",
                       backend=backend)
    assert fastnn.cost(np.array([[0.0]]), np.array([[1]])) == np.inf  # -log(0): the documented inf


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_regression_fit_validates_model_params(backend):
    """Was: model.params["W2"] = np.zeros((1, 7)) on a [3, 4, 1] model reached the compiled
    kernels of the Numba backends and corrupted the heap ("double free or corruption")."""
    X, Y = make_problem([3, 4, 1], 5, "sigmoid", seed=2)[1:]
    bk = get_backend(backend)
    for key, bad in (("W2", np.zeros((1, 7))), ("W1", np.zeros((4, 3), np.float32)), ("b1", np.zeros(4)),
                     ("W1", np.full((4, 3), np.nan))):
        model = fastnn.Model([3, 4, 1], seed=0)
        model.params[key] = bad
        with kernel_guard(bk), pytest.raises(FASTNN_ERRORS, match="params"):
            model.fit(X, Y, epochs=2, backend=backend, progress=False)
        with kernel_guard(bk), pytest.raises(FASTNN_ERRORS, match="params"):
            model.fit(X, Y, epochs=2, batch_size=2, backend=backend, progress=False)


def test_regression_fit_option_errors_are_fastnn_errors():
    """Was: unknown optimizer options, bad shuffle_seed and a non-callable callback raised
    builtin TypeError/ValueError from deep inside (the callback only after a whole epoch)."""
    X, Y = make_problem([3, 4, 1], 5, "sigmoid", seed=2)[1:]
    model = fastnn.Model([3, 4, 1], seed=0)
    for kw, exc, name in (({"foo": 1}, FastnnTypeError, "foo"), ({"beta": 0.9}, FastnnTypeError, "beta"),
                          ({"shuffle_seed": "a"}, FastnnTypeError, "shuffle_seed"),
                          ({"shuffle_seed": -1}, FastnnValueError, "shuffle_seed"),
                          ({"callback": 3}, FastnnTypeError, "callback")):
        before = snapshot(model.params)
        with pytest.raises(exc, match=name):
            model.fit(X, Y, epochs=1, batch_size=2, progress=False, **kw)
        assert unchanged(model.params, before)
    for lr in (1e39, 1e-50):  # inf and 0 in float32
        with pytest.raises(FastnnValueError, match="lr"):
            fastnn.Model([3, 4, 1], dtype=np.float32).fit(X, Y, lr=lr, progress=False)


def test_regression_model_load_refuses_truncated_files(tmp_path):
    """Was: Model.load of a truncated or bit-flipped file raised zipfile.BadZipFile."""
    path = fastnn.Model([3, 4, 1], seed=0).save(tmp_path / "m")
    data = Path(path).read_bytes()
    for bad in (data[:len(data) // 2], data[:-7], bytes(b ^ (0xFF if i == len(data) // 2 else 0)
                                                         for i, b in enumerate(data)), b""):
        Path(path).write_bytes(bad)
        with pytest.raises(FastnnValueError, match="path"):
            fastnn.Model.load(path)


def test_regression_huge_layer_dims_and_odd_keys():
    """Was: init_params([3, 2**70]) raised numpy's ValueError; a params dict with an int
    key and a str key raised TypeError while formatting the error message."""
    with pytest.raises(FastnnValueError, match="layer_dims"):
        fastnn.init_params([3, 2 ** 70])
    for params in ({1: np.ones((1, 1)), "a": 2}, {"W1": np.ones((1, 1)), "b1": np.ones((1, 1)), 3: 1, "x": 2}):
        with pytest.raises(FastnnValueError, match="params"):
            fastnn.forward(params, np.ones((1, 2)))


@pytest.mark.parametrize("backend", FAST)
def test_regression_compat_fast_path_validates_rate_and_iterations(backend):
    """Was: learning_rate="0.1" was silently accepted (the course raises), nan ran and then
    reported a divergence, and num_iterations=2.5 raised numpy's TypeError."""
    X = np.random.RandomState(0).randn(3, 5)
    Y = np.array([[0, 1, 1, 0, 1]])
    for kw, exc, name in (({"learning_rate": "0.1"}, FastnnTypeError, "learning_rate"),
                          ({"learning_rate": float("nan")}, FastnnValueError, "learning_rate"),
                          ({"num_iterations": 2.5}, FastnnTypeError, "num_iterations")):
        with pytest.raises(exc, match=name):
            dnn.L_layer_model(X, Y, [3, 4, 1], backend=backend, **{"num_iterations": 3, **kw})


@pytest.mark.parametrize("backend", [p for p in BACKEND_PARAMS if p.values[0] in ("numba", "numba-parallel")])
def test_regression_readonly_input_gets_no_second_compile(backend):
    """Was: read-only (or unaligned) X/Y went to the compiled kernels as their own Numba
    type, so the first such call compiled every kernel again (~40 s on the reference
    machine).  The boundary now hands the kernels a private writeable copy."""
    params, X, Y = make_problem([3, 4, 1], 6, "sigmoid", seed=3)
    bk = get_backend(backend)
    with kernel_guard(bk):  # asserts writeable, aligned arrays at every kernel
        fastnn.gradients({k: _readonly(v) for k, v in params.items()}, _readonly(X), _unaligned(Y),
                         backend=backend)
        fastnn.Model([3, 4, 1], seed=0).fit(_readonly(X), _readonly(Y), epochs=2, backend=backend,
                                            progress=False)
