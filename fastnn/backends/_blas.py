"""The GEMM of the BLAS that NumPy itself loaded, with its ``alpha`` and ``beta``.

``W = beta * W + alpha * dZ @ A_prev.T`` in one BLAS call is a whole SGD step
of a weight matrix (``alpha = -lr/m``, ``beta = 1 - lr * l2/m``) with no
``dW`` array: no allocation, no scaling pass, no update pass.  NumPy's ``@``
has no ``beta``.  SciPy's ``scipy.linalg.blas.sgemm`` has, but SciPy ships a
second OpenBLAS with its own thread pool, and alternating it with NumPy's
products made both pools fight for the cores (measured on 2 cores: a NumPy
forward GEMM followed by SciPy's fused update took 97 ms against 58 ms for
NumPy's GEMM plus a separate update).  So the ``cblas_?gemm`` symbol is looked
up in the library NumPy has loaded, through ctypes.

:data:`GEMM` maps a dtype to ``f(W, dZ, A_prev, alpha, beta)``, or is empty
where the library or its symbols are not found (other BLAS builds, other
platforms); callers then take the two-step route.  The functions assume what
the kernel interface promises: C-contiguous arrays of one dtype and matching
shapes (BLAS does not check bounds).
"""

import ctypes
import glob
import os

import numpy as np

#: The CBLAS enum values (order, transposition) the calls pass.
CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS = 101, 111, 112

#: (symbol pattern, C type of the integer arguments): the scipy-openblas builds
#: of NumPy's wheels (ILP64, prefixed and suffixed symbols) first, then plain CBLAS.
_SYMBOLS = (("scipy_cblas_{t}gemm64_", ctypes.c_int64), ("cblas_{t}gemm64_", ctypes.c_int64),
            ("cblas_{t}gemm", ctypes.c_int))


def _loaded_libraries():
    """Paths of the shared objects mapped into this process (Linux), else None."""
    try:
        with open("/proc/self/maps") as fh:
            return {line.split()[-1] for line in fh if "/" in line}
    except OSError:
        return None


def _numpy_blas_paths():
    """NumPy's bundled BLAS libraries that this process has loaded."""
    root = os.path.dirname(os.path.dirname(np.__file__))
    found = []
    for folder in (os.path.join(root, "numpy.libs"), os.path.join(os.path.dirname(np.__file__),
                                                                  ".dylibs")):
        found += sorted(glob.glob(os.path.join(folder, "*openblas*")))
    loaded = _loaded_libraries()
    if loaded is None:
        return []
    loaded = {os.path.realpath(q) for q in loaded}
    return [p for p in found if os.path.realpath(p) in loaded]


def _function(lib, name, restype, argtypes):
    """The symbol ``name`` of ``lib`` as an instance of its own ctypes prototype, or None.

    Numba's dispatcher keys the types of a call's arguments on a fingerprint of
    each, and the fingerprint of a ctypes function is its Python type, not its
    signature: every symbol read off a ``CDLL`` is a ``lib._FuncPtr``, so
    ``?gemm`` and ``?dot`` passed to one compiled function would share a cached
    type, match no compiled signature, and send every call through Numba's
    Python-level typing (0.4 ms a call of the compiled steps).  A
    ``CFUNCTYPE`` prototype is a class of its own for each signature.
    """
    try:
        return ctypes.CFUNCTYPE(restype, *argtypes)((name, lib))
    except AttributeError:
        return None


def _bind(lib, t, ctype, scalar):
    for pattern, int_t in _SYMBOLS:
        fn = _function(lib, pattern.format(t=t), None,
                       [ctypes.c_int, ctypes.c_int, ctypes.c_int, int_t, int_t, int_t, scalar,
                        ctypes.c_void_p, int_t, ctypes.c_void_p, int_t, scalar, ctypes.c_void_p,
                        int_t])
        if fn is not None:
            return fn
    return None


def _make(fn, dtype):
    cast = np.dtype(dtype).type

    def gemm_update(W, dZ, A_prev, alpha, beta):
        """W = beta W + alpha dZ @ A_prev.T, in place, in one GEMM (A_prev.T never copied)."""
        n, m = dZ.shape
        k = A_prev.shape[0]
        fn(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS, n, k, m, cast(alpha), dZ.ctypes.data, m,
           A_prev.ctypes.data, m, cast(beta), W.ctypes.data, k)
    return gemm_update


def _bind_dot(lib, t, scalar):
    """``cblas_?dot`` (the product ``np.vdot`` computes for contiguous vectors), or None."""
    for pattern, int_t in _SYMBOLS:
        fn = _function(lib, pattern.format(t=t).replace("gemm", "dot"), scalar,
                       [int_t, ctypes.c_void_p, int_t, ctypes.c_void_p, int_t])
        if fn is not None:
            return fn
    return None


def _find():
    for path in _numpy_blas_paths():
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same handle, the same threads
        except OSError:
            continue
        found = {np.dtype(dt): (_bind(lib, t, dt, scalar), _bind_dot(lib, t, scalar))
                 for t, dt, scalar in (("s", np.float32, ctypes.c_float),
                                       ("d", np.float64, ctypes.c_double))}
        if all(g is not None and d is not None for g, d in found.values()):
            return ({dt: _make(g, dt) for dt, (g, _) in found.items()}, found, path)
    return {}, {}, None


#: dtype -> gemm_update; dtype -> the raw ctypes ``(cblas_?gemm, cblas_?dot)``, which
#: compiled code calls (``_numba_kernels/steps.py``); the library they came from (None:
#: not found).
GEMM, CBLAS, LIBRARY = _find()
