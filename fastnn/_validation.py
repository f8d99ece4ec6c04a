"""Checks at the public boundary.

Everything a user passes in is validated here, once, and converted to
C-contiguous arrays of the computation dtype (or, where the caller asks with
``order="any"``, C- or F-contiguous ones).  The kernels behind the boundary
assume valid input (compiled kernels do not check bounds).
"""

import numbers
import os

import numpy as np

from .errors import FastnnTypeError, FastnnValueError

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype, name="dtype"):
    """Return ``np.dtype(dtype)`` if it is float16/32/64, else raise TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise FastnnTypeError(f"{name}: expected a floating dtype, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise FastnnTypeError(f"{name}: expected float16, float32 or float64, got {dt}")
    return dt


def _as_numeric(x, name):
    if isinstance(x, np.ma.MaskedArray):
        # np.asarray would drop the mask and read the values under it (a masked
        # label -1, a masked NaN): the caller has to decide what a masked entry means.
        raise FastnnTypeError(f"{name}: masked arrays (numpy.ma) are not supported; fill the masked "
                              f"entries explicitly ({name}.filled(value)) or drop those examples")
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise FastnnTypeError(f"{name}: expected a numeric array, got {type(x).__name__}") from exc
    kind = arr.dtype.kind
    if kind == "c":
        raise FastnnTypeError(f"{name}: complex dtype {arr.dtype} is not supported; expected real numbers")
    if kind not in "biuf":
        raise FastnnTypeError(f"{name}: expected a numeric (real) array, got dtype {arr.dtype}")
    return arr


#: Above this many entries, :func:`all_finite` sums first and checks entry by entry
#: only a chunk of this many at a time.
FINITE_CHUNK = 1 << 18


def all_finite(arr):
    """Whether every entry of the floating array ``arr`` (any shape, any layout) is finite.

    Exact, without an ``arr``-sized temporary: a sum of floats is finite only
    when every term is (NaN propagates, an infinity stays infinite or becomes
    NaN, and nothing makes a non-finite partial sum finite again), so one
    ``np.add.reduce`` pass settles the common case, as scikit-learn's
    ``assert_all_finite`` does.  A sum that is not finite (a NaN or Inf entry,
    or finite entries whose sum overflows) is settled entry by entry,
    :data:`FINITE_CHUNK` entries at a time into one small buffer.
    """
    if arr.size <= FINITE_CHUNK or not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        return bool(np.isfinite(arr).all())
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(arr, axis=None)
    if np.isfinite(total):
        return True
    flat = arr.ravel(order="A")             # a view: arr is C- or F-contiguous
    buf = np.empty(FINITE_CHUNK, dtype=bool)
    for start in range(0, flat.size, FINITE_CHUNK):
        part = flat[start:start + FINITE_CHUNK]
        if not np.isfinite(part, out=buf[:part.size]).all():
            return False
    return True


#: F-contiguous arrays with at least this many rows are made C-contiguous a block of
#: :data:`C_COPY_COLUMNS` columns at a time (:func:`c_contiguous`).
C_COPY_MIN_ROWS = 512
C_COPY_COLUMNS = 16


def c_contiguous(arr, dtype=None):
    """``np.ascontiguousarray(arr, dtype)``, the same values, a block of columns at a time when
    ``arr`` is F-contiguous with :data:`C_COPY_MIN_ROWS` rows or more.

    NumPy's own transposing copy walks such an array with the long stride: the course's
    cat data ``(12288, 209)`` as ``data.T`` took 8 ms against 4 ms in blocks of 16
    columns, ``(3072, 50000)`` 1.6 s against 0.3 s; with few rows NumPy's is the faster.
    """
    dtype = arr.dtype if dtype is None else np.dtype(dtype)
    if (arr.ndim != 2 or arr.flags.c_contiguous or not arr.flags.f_contiguous
            or arr.shape[0] < C_COPY_MIN_ROWS):
        return np.ascontiguousarray(arr, dtype=dtype)
    out = np.empty(arr.shape, dtype=dtype)
    for j in range(0, arr.shape[1], C_COPY_COLUMNS):
        out[:, j:j + C_COPY_COLUMNS] = arr[:, j:j + C_COPY_COLUMNS]
    return out


def as_array(x, name, dtype, ndim=2, order="C"):
    """``x`` as a C-contiguous, aligned, writeable, finite array of ``dtype`` with ``ndim`` dimensions.

    ``order="any"``: C- or F-contiguous instead: ``x`` itself when it already is
    either, else an F-contiguous copy (its transpose is row-major, what
    :meth:`Model.fit` gathers minibatches from, without a further copy).
    Never modifies ``x``; copies only when a conversion is needed.
    """
    arr = _as_numeric(x, name)
    if arr.ndim != ndim:
        raise FastnnValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    if arr.dtype.kind == "f" and arr.size and not all_finite(arr):
        raise FastnnValueError(f"{name}: contains NaN or Inf; expected finite values")
    # order="any": C-contiguous only when that needs no copy.
    fortran = order == "any" and not (arr.flags.c_contiguous and arr.dtype == dtype)
    with np.errstate(over="ignore"):
        out = np.asfortranarray(arr, dtype=dtype) if fortran else c_contiguous(arr, dtype)
    if not (out.flags.writeable and out.flags.aligned):
        # Read-only (np.load(mmap_mode="r"), frozen buffers) or unaligned arrays
        # are their own array types to Numba: each would compile a second copy
        # of every kernel it reaches (tens of seconds).  The kernels never write
        # to inputs, so a private copy is only about the type.
        out = out.copy(order="F" if order == "any" else "C")
    if out.dtype.kind == "f" and arr.dtype.kind != "f" or out.dtype.itemsize < arr.dtype.itemsize:
        # A value can overflow to inf in the conversion (1e300 -> float32).
        if out.size and not all_finite(out):
            raise FastnnValueError(f"{name}: has values too large for {np.dtype(dtype)}")
    return out


def check_params(params, name="params"):
    """Validate a parameter dict ``{"W1", "b1", ..., "WL", "bL"}``.

    Returns ``(Ws, bs, dtype)``: lists of C-contiguous arrays (the originals when
    already contiguous) and their common floating dtype.
    """
    if not isinstance(params, dict):
        raise FastnnTypeError(f"{name}: expected a dict with keys 'W1', 'b1', ...; got {type(params).__name__}")
    L = 0
    while f"W{L + 1}" in params:
        L += 1
    if L == 0:
        raise FastnnValueError(f"{name}: expected keys 'W1', 'b1', ..., found {sorted(params, key=repr)[:6]}")
    expected = {f"{p}{l}" for l in range(1, L + 1) for p in "Wb"}
    extra = set(params) - expected
    missing = expected - set(params)
    if missing or extra:
        raise FastnnValueError(f"{name}: expected exactly the keys W1..W{L}, b1..b{L}; "
                               f"missing {sorted(missing)}, unexpected {sorted(extra, key=repr)}")
    dtype = None
    Ws, bs = [], []
    for l in range(1, L + 1):
        for key in (f"W{l}", f"b{l}"):
            arr = _as_numeric(params[key], f"{name}[{key!r}]")
            if arr.dtype not in FLOAT_DTYPES:
                raise FastnnTypeError(f"{name}[{key!r}]: expected float16, float32 or float64, got {arr.dtype}")
            if dtype is None:
                dtype = arr.dtype
            elif arr.dtype != dtype:
                raise FastnnTypeError(f"{name}[{key!r}]: dtype {arr.dtype} differs from W1's {dtype}")
        W = as_array(params[f"W{l}"], f"{name}['W{l}']", dtype)
        b = as_array(params[f"b{l}"], f"{name}['b{l}']", dtype)
        if W.shape[0] == 0 or W.shape[1] == 0:
            raise FastnnValueError(f"{name}['W{l}']: expected a non-empty (n_l, n_l-1) matrix, got {W.shape}")
        if l > 1 and W.shape[1] != Ws[-1].shape[0]:
            raise FastnnValueError(f"{name}['W{l}']: expected {Ws[-1].shape[0]} columns "
                                   f"(n_{l - 1}), got shape {W.shape}")
        if b.shape != (W.shape[0], 1):
            raise FastnnValueError(f"{name}['b{l}']: expected shape {(W.shape[0], 1)}, got {b.shape}")
        Ws.append(W)
        bs.append(b)
    return Ws, bs, dtype


def check_X(X, n0, dtype, name="X", n0_from="params['W1'] has n_0 columns", order="C"):
    """X as an ``(n0, m)`` array of ``dtype`` with m >= 1 (``n0_from`` says where n0 comes from).

    C-contiguous, or with ``order="any"`` C- or F-contiguous (:func:`as_array`).
    """
    X = as_array(X, name, dtype, order=order)
    if X.shape[0] != n0:
        raise FastnnValueError(f"{name}: expected {n0} rows (n_0, one feature per row, one "
                               f"example per column; {n0_from}), got shape {X.shape}")
    if X.shape[1] == 0:
        raise FastnnValueError(f"{name}: has no examples (m == 0); expected shape ({n0}, m) with m >= 1")
    return X


def check_Y(Y, output, n_L, m, dtype, name="Y", order="C"):
    """Labels/targets as an ``(n_L, m)`` array of ``dtype`` for the given output layer.

    sigmoid: 0/1 labels of shape ``(n_L, m)`` (``(m,)`` allowed when n_L == 1).
    softmax: one-hot ``(n_L, m)`` or integer class labels ``(m,)`` / ``(1, m)``.
    identity: real targets ``(n_L, m)`` (``(m,)`` allowed when n_L == 1).
    Layout as :func:`check_X`'s ``order``.
    """
    arr = _as_numeric(Y, name)
    if arr.dtype.kind == "f" and arr.size and not all_finite(arr):
        raise FastnnValueError(f"{name}: contains NaN or Inf; expected finite values")
    if output == "softmax":
        if n_L < 2:
            raise FastnnValueError("output: softmax needs at least 2 output units, the last layer has 1")
        if arr.ndim == 1 or (arr.ndim == 2 and arr.shape[0] == 1):
            labels = arr.reshape(-1)
            if labels.shape[0] != m:
                raise FastnnValueError(f"{name}: expected {m} labels (one per column of X), got shape {arr.shape}")
            if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
                raise FastnnValueError(f"{name}: class labels must be integers in [0, {n_L})")
            if labels.size and (labels.min() < 0 or labels.max() >= n_L):
                raise FastnnValueError(f"{name}: class labels must be in [0, {n_L}); got values "
                                       f"from {labels.min()} to {labels.max()}")
            out = np.zeros((n_L, m), dtype=dtype, order="F" if order == "any" else "C")
            out[labels.astype(np.intp), np.arange(m)] = 1
            return out
        if arr.shape != (n_L, m):
            raise FastnnValueError(f"{name}: expected one-hot shape {(n_L, m)} or {m} integer labels "
                                   f"(m = {m} columns of X), got shape {arr.shape}")
        if not np.isin(arr, (0, 1)).all() or not (arr.sum(axis=0) == 1).all():
            raise FastnnValueError(f"{name}: a {(n_L, m)} array must be one-hot (0/1, one 1 per column)")
        return as_array(arr, name, dtype, order=order)
    if arr.ndim == 1 and n_L == 1:
        arr = arr.reshape(1, -1)
    if arr.shape != (n_L, m):
        raise FastnnValueError(f"{name}: expected shape {(n_L, m)} (n_L, m), with m = {m} columns of X, "
                               f"got {arr.shape}")
    if output == "sigmoid" and not np.isin(arr, (0, 1)).all():
        raise FastnnValueError(f"{name}: binary cross-entropy labels must be 0 or 1")
    return as_array(arr, name, dtype, order=order)


def check_choice(value, name, choices):
    """Return ``value`` if it is one of ``choices``, else raise ValueError naming ``name``."""
    if not isinstance(value, str) or value not in choices:
        raise FastnnValueError(f"{name}: expected one of {tuple(choices)}, got {value!r}")
    return value


def check_nonneg_float(value, name):
    """A finite real number >= 0, as a Python float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise FastnnTypeError(f"{name}: expected a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise FastnnValueError(f"{name}: expected a finite number >= 0, got {value}")
    return value


def check_positive_float(value, name):
    """A finite real number > 0, as a Python float."""
    value = check_nonneg_float(value, name)
    if value == 0:
        raise FastnnValueError(f"{name}: expected a number > 0, got 0")
    return value


def check_positive_int(value, name):
    """An integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise FastnnTypeError(f"{name}: expected an integer, got {type(value).__name__}")
    if value < 1:
        raise FastnnValueError(f"{name}: expected an integer >= 1, got {value}")
    return int(value)


def check_callable(value, name):
    """``None`` or a callable."""
    if value is not None and not callable(value):
        raise FastnnTypeError(f"{name}: expected a callable or None, got {type(value).__name__}")
    return value


def check_path(value, name):
    """``None`` or a file path (str or os.PathLike), as a str."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise FastnnTypeError(f"{name}: expected a file path (str or os.PathLike), got {type(value).__name__}")
    path = os.fspath(value)
    if not isinstance(path, str) or not path:
        raise FastnnValueError(f"{name}: expected a non-empty str path, got {value!r}")
    return path


def check_lr(lr, dtype, name="lr"):
    """A learning rate > 0 that stays a finite, non-zero number in ``dtype``."""
    lr = check_positive_float(lr, name)
    with np.errstate(over="ignore", under="ignore"):
        as_dtype = np.dtype(dtype).type(lr)
    if not np.isfinite(as_dtype) or as_dtype == 0:
        raise FastnnValueError(f"{name}: {lr} is {'0' if as_dtype == 0 else 'inf'} in "
                               f"{np.dtype(dtype).name}; expected a learning rate that {np.dtype(dtype).name} "
                               "can represent")
    return lr
