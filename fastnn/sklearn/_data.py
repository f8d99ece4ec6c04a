"""Arrays at the scikit-learn boundary: row-major in, fastnn's column-major layout out
(a full batch of X as the transposed view of the row-major array where the backend
takes one: :func:`_full_batch`)."""

import numpy as np
import scipy.sparse as sp
from sklearn.utils import column_or_1d

from .._validation import all_finite
from ..engine import SparseRows

try:
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # scikit-learn < 1.6
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

#: dtypes scikit-learn's validation may convert X to (float64 first, as scikit-learn).
_VALIDATE_DTYPES = (np.float64, np.float32)


def _columns(A, dtype, name, copy=False):
    """Row-major ``A`` (n, k) as a C-contiguous ``(k, n)`` array of ``dtype``: the one transpose."""
    if copy:
        out = np.array(A.T, dtype=dtype, order="C")
    else:
        out = np.ascontiguousarray(A.T, dtype=dtype)
    if out.dtype.itemsize < A.dtype.itemsize and out.size and not all_finite(out):
        raise ValueError(f"{name} has values too large for {np.dtype(dtype).name}")
    return out


def _rows(A, dtype, name):
    """Row-major ``A`` as a C-contiguous array of ``dtype`` (no copy when it already is one)."""
    out = np.ascontiguousarray(A, dtype=dtype)
    if out.dtype.itemsize < A.dtype.itemsize and out.size and not all_finite(out):
        raise ValueError(f"{name} has values too large for {np.dtype(dtype).name}")
    return out


def _sparse_as(X, dtype, fmt=None):
    """Sparse ``X`` with data of ``dtype`` (format ``fmt`` if given); never densified."""
    out = X.asformat(fmt) if fmt is not None else X
    out = out.astype(dtype, copy=False)
    if out.dtype.itemsize < X.dtype.itemsize and out.nnz and not all_finite(out.data):
        raise ValueError(f"X has values too large for {np.dtype(dtype).name}")
    return out


def _full_batch(bk, X, dtype):
    """All of ``X`` (m, n) as the first layer's input, without a copy on the host where the
    dtype is already right: a column-major ``X``'s transpose is the columns; a row-major
    one's columns are the backend's ``gather_columns`` of its rows (a transposed view,
    which the products take as it is); sparse, SparseRows."""
    if sp.issparse(X):
        return SparseRows(_sparse_as(X, dtype))
    if X.flags.f_contiguous and not X.flags.c_contiguous:  # e.g. a DataFrame's values
        return bk.to_device(_columns(X, dtype, "X"))         # its transpose: the columns
    XR = _rows(X, dtype, "X")
    return bk.gather_columns(XR, slice(0, XR.shape[0]))


def _validated_xy(est, X, y, reset, **kwargs):
    """scikit-learn's validation of ``X`` (dense or CSR/CSC, float) and ``y``; a column ``y`` raveled."""
    X, y = _validate_data(est, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                          dtype=_VALIDATE_DTYPES, reset=reset, **kwargs)
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    return X, y
