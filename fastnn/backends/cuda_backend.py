"""CUDA backend: every kernel of :mod:`fastnn.backends._interface` as numba.cuda kernels.

Parameters, activations and gradients stay on the GPU as numba.cuda device
arrays for a whole ``fit``; only ``to_host`` and the scalar results
(``loss_sum``, ``all_finite``, the chain route's saturation check) copy back.

Running
-------
On a machine with an NVIDIA GPU and driver::

    pip install -e ".[test,cuda]"
    python -m pytest -m cuda tests/cuda

(without ``NUMBA_ENABLE_CUDASIM``), or ``bash .ci/gpu``, which also runs the main
suite's ``cuda`` cases and times this backend (docs/benchmarks.md, "On a GPU").
Without a GPU the same tests run under Numba's CUDA simulator, which must be
switched on before numba is imported::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cuda tests/cuda

Numerics
--------
Every kernel reads its inputs, computes in float64 and rounds once when it
stores, for float32 and float64 arrays alike: dot products and sums get float64
accumulators, and an activation is evaluated once per output.  Where the NumPy
reference rounds an intermediate that changes *behaviour* (the course's
``dA[L]`` in the chain route, which overflows or divides by zero in float32,
and the optimizer state ``M``, ``V``), the value is rounded to the array dtype
at the same point.  Reductions (row sums for ``db``, the loss, the non-finite
counts) are shared-memory trees: each block writes a partial, a second launch
folds the partials of a row; no float atomics, so results are bitwise
reproducible for a given ``TPB``.

Launch configuration
--------------------
``TPB`` (threads per block of 1-D launches) and ``TILE`` (the side of a
matmul tile) are read at every launch, so tests can set them small to run the
multi-block paths on tiny arrays.  Kernels that use shared memory are built
by factories for one size (a compile-time constant, so the tile loop unrolls)
and kept in ``_CACHE``, keyed by kind, dtype and size.  Their shared memory is
the launch's dynamic shared memory (``cuda.shared.array(0, ...)``, its byte
count given at launch): the same speed on a GPU as a static array, and under
the simulator a buffer made once per launch, where static arrays are created
lazily by the first thread that reaches them without a lock, a race that can
hand two threads of one block different arrays (numba-cuda 0.30).

Small problems have small grids (a 5-unit layer is one block), so every launch
is configured with numba-cuda's low-occupancy warning switched off
(:class:`_QuietLaunch`): that warning (a ``NumbaPerformanceWarning`` for any
grid under 128 blocks) is advice for a hand-written launch, and would reach the
user of a small net on every step.  The warning about implicit host-to-device
copies stays on: a host array reaching a kernel is a bug here.
"""

import logging
import math
import threading

import numpy as np
from numba import cuda, float64, from_dtype

try:  # numba-cuda's own config module; older releases read numba's
    from numba.cuda.core import config as _cuda_config
except ImportError:  # pragma: no cover - depends on the numba-cuda release
    from numba.core import config as _cuda_config

from .. import _dropout
from ..activations import LEAKY_SLOPE
from ..errors import NoDeviceError, SaturationError
from . import _cuda_probe, _interface
from ._numba_config import quiet as _quiet
from . import numpy_backend as _np_backend
from ._numba_kernels import formulas
from ._numba_kernels.formulas import CODES, IDENTITY, LEAKY_RELU, RELU, SIGMOID, SOFTMAX, TANH

if not cuda.is_available():
    # The registry turns this into BackendUnavailableError, state "no device".
    raise NoDeviceError(
        "numba.cuda found no usable CUDA GPU/driver and the simulator is off "
        "(set NUMBA_ENABLE_CUDASIM=1 before numba is imported to simulate)")
#: Whether kernels compile here (the simulator runs their Python source instead).
_COMPILES = not getattr(_cuda_config, "ENABLE_CUDASIM", 0)
if _COMPILES:
    # A numba-cuda that cannot compile with this NumPy: "broken", with the reason.
    _cuda_probe.check_compiler()

__all__ = [*_interface.CONSTANTS, *_interface.KERNELS]

NAME = "cuda"
DTYPES = (np.float32, np.float64)

#: Threads per block of the 1-D launches (elementwise, column and reduction kernels).
TPB = 128
#: Side of the square matmul tiles; a matmul block has TILE * TILE threads.
TILE = 16

# What the output kernel computes besides the loss.
_LOSS_ONLY, _FUSED, _CHAIN = range(3)

# Matmul epilogues (compile-time, one kernel each).
_EPI_PLAIN, _EPI_BIAS_ACT, _EPI_AXPBY, _EPI_OFFSET_BIAS_ACT = range(4)

#: Kernels built by the factories, keyed by (kind, dtype name, size, flags...).
_CACHE = {}

#: The "about N s" of the first-compile message: the first fit of a process took
#: 4.4-7.4 s on an H200 (docs/benchmarks.md, "On a GPU"), almost all of it compiling.
CUDA_COMPILE_SECONDS = 5
_said_compiling = [False]


def _say_compiling():
    """Log once per process, on ``fastnn.compile``, that the first kernels compile now
    (numba-cuda keeps no disk cache of them); ``FASTNN_QUIET=1`` silences it."""
    if _said_compiling[0] or not _COMPILES:
        return
    _said_compiling[0] = True
    if not _quiet():
        logging.getLogger("fastnn.compile").warning(
            "compiling CUDA kernels, first use in this process, about %d s", CUDA_COMPILE_SECONDS)


# --------------------------------------------------------------- device functions

#: The dropout hash: the same source as the NumPy and Numba backends' (fastnn._dropout).
_philox = cuda.jit(device=True)(_dropout.philox4x32)
# The loss formulas: the same sources as the Numba backends' (_numba_kernels/formulas.py),
# here in float64: their ``one`` is _WIDE, a float64 1 (a NumPy scalar, so that the
# simulator's Python arithmetic widens float32 entries as the GPU's typing does).
_WIDE = np.float64(1.0)
_loss_term = cuda.jit(device=True)(formulas.loss_term)
_column_max = cuda.jit(device=True)(formulas.column_max)
_column_exp_sum = cuda.jit(device=True)(formulas.column_exp_sum)
_xent_column = cuda.jit(device=True)(formulas.xent_column)


@cuda.jit(device=True)
def _g(z, code):
    """Elementwise activation ``code`` of a float64 ``z`` (softmax is not elementwise)."""
    if code == SIGMOID:
        # exp(-|z|) <= 1 never overflows; the branches are the same function.
        e = math.exp(-abs(z))
        if z >= 0.0:
            return 1.0 / (1.0 + e)
        return e / (1.0 + e)
    if code == TANH:
        return math.tanh(z)
    if code == RELU:
        # Written so that a NaN passes through, as with np.maximum.
        return 0.0 if z < 0.0 else z
    if code == LEAKY_RELU:
        return z if z > 0.0 else z * LEAKY_SLOPE
    return z


@cuda.jit(device=True)
def _dz(da, a, code):
    """dA * g'(Z) with g' written through A = g(Z), as in activations.DERIVATIVES."""
    if code == SIGMOID:
        return da * a * (1.0 - a)
    if code == TANH:
        return da * (1.0 - a * a)
    if code == RELU:
        # A select, not a product: an inf/NaN dA where A <= 0 still gives 0.
        return 0.0 if a <= 0.0 else da
    if code == LEAKY_RELU:
        return da * LEAKY_SLOPE if a <= 0.0 else da
    return da


@cuda.jit(device=True)
def _column_loss(Z, A, Y, j, code):
    """Summed loss of column j, from the logits as numpy_backend._loss_terms."""
    if code == SOFTMAX:
        zmax = _column_max(Z, j, _WIDE)
        return _xent_column(Z, Y, j, zmax + math.log(_column_exp_sum(Z, j, zmax, _WIDE)), _WIDE)
    loss = 0.0
    for i in range(Z.shape[0]):
        loss += _loss_term(float64(Z[i, j]), float64(A[i, j]), float64(Y[i, j]), code)
    return loss


@cuda.jit(device=True)
def _tree_fold(s, t, size, take_max):
    """Fold s[0:size] into s[0] pairwise in a fixed order, by + (or by max when take_max);
    every thread of the block calls it."""
    half = 1
    while half * 2 < size:
        half *= 2
    while half > 0:
        if t < half and t + half < size:
            if take_max:
                s[t] = max(s[t], s[t + half])
            else:
                s[t] += s[t + half]
        cuda.syncthreads()
        half //= 2


@cuda.jit(device=True)
def _tree_sum(s, t, size):
    """Fold s[0:size] into s[0] pairwise in a fixed order; every thread of the block calls it."""
    _tree_fold(s, t, size, False)


# --------------------------------------------------------------- kernel factories

def _make_matmul(dtype, tile, trans_a, trans_b, epilogue):
    nbtype = from_dtype(dtype)
    # One padding column keeps the transposed stores into shared memory free of
    # bank conflicts.  The two tiles are row-major (tile, pad) blocks of the
    # dynamic shared memory, a at 0 and b at sb0.
    pad = tile + 1
    sb0 = tile * pad

    @cuda.jit
    def matmul(A, B, bias, E, alpha, beta, act, out):
        """out = epilogue(op(A) @ op(B)), one TILE x TILE block of out, via shared-memory tiles."""
        sm = cuda.shared.array(0, nbtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row0 = cuda.blockIdx.y * tile
        col0 = cuda.blockIdx.x * tile
        M = out.shape[0]
        N = out.shape[1]
        if trans_a:
            K = A.shape[0]
        else:
            K = A.shape[1]
        acc = 0.0
        for k0 in range(0, K, tile):
            # Tile a: sm[r * pad + c] = op(A)[row0 + r, k0 + c]; tile b:
            # sm[sb0 + r * pad + c] = op(B)[k0 + r, col0 + c].
            # For a transposed operand threadIdx.x walks its contiguous axis, so
            # the global loads stay coalesced and the transpose happens in the
            # shared-memory store instead of in a copy.
            if trans_a:
                if row0 + tx < M and k0 + ty < K:
                    sm[tx * pad + ty] = A[k0 + ty, row0 + tx]
                else:
                    sm[tx * pad + ty] = 0
            else:
                if row0 + ty < M and k0 + tx < K:
                    sm[ty * pad + tx] = A[row0 + ty, k0 + tx]
                else:
                    sm[ty * pad + tx] = 0
            if trans_b:
                if col0 + ty < N and k0 + tx < K:
                    sm[sb0 + tx * pad + ty] = B[col0 + ty, k0 + tx]
                else:
                    sm[sb0 + tx * pad + ty] = 0
            else:
                if k0 + ty < K and col0 + tx < N:
                    sm[sb0 + ty * pad + tx] = B[k0 + ty, col0 + tx]
                else:
                    sm[sb0 + ty * pad + tx] = 0
            cuda.syncthreads()
            for kk in range(tile):
                acc += float64(sm[ty * pad + kk]) * float64(sm[sb0 + kk * pad + tx])
            # The next iteration overwrites the tiles other threads may still read.
            cuda.syncthreads()
        i = row0 + ty
        j = col0 + tx
        if i < M and j < N:
            if epilogue == _EPI_BIAS_ACT:
                out[i, j] = _g(acc + float64(bias[i, 0]), act)
            elif epilogue == _EPI_OFFSET_BIAS_ACT:
                out[i, j] = _g(acc + float64(E[i, j]) + float64(bias[i, 0]), act)
            elif epilogue == _EPI_AXPBY:
                v = alpha * acc
                if beta != 0.0:
                    v += beta * float64(E[i, j])
                out[i, j] = v
            else:
                out[i, j] = acc

    return matmul


def _make_activate(dtype):
    @cuda.jit
    def activate(Z, code, A):
        """A = g(Z) for one column per thread; softmax subtracts the column max before exp."""
        j = cuda.grid(1)
        n = Z.shape[0]
        if j < Z.shape[1]:
            if code == SOFTMAX:
                zmax = _column_max(Z, j, _WIDE)
                s = _column_exp_sum(Z, j, zmax, _WIDE)
                for i in range(n):
                    A[i, j] = math.exp(float64(Z[i, j]) - zmax) / s
            else:
                for i in range(n):
                    A[i, j] = _g(float64(Z[i, j]), code)

    return activate


def _make_output(dtype, tpb):
    cast = from_dtype(dtype)

    @cuda.jit(device=True)
    def chain_da(a, y, code, scale):
        """The course's dA[L] (times scale), rounded to the array dtype where NumPy rounds it."""
        if code == SIGMOID:
            da = cast(-(y / a - (1.0 - y) / (1.0 - a)))
        elif code == SOFTMAX:
            da = cast(-(y / a))
        else:
            da = cast(a - y)
        if scale != 1.0:
            da = cast(da * scale)
        return float64(da)

    @cuda.jit
    def output(Z, A, Y, code, mode, dz_scale, dZ, partial):
        """dZ[L] of a block of columns, and its partial row sums, loss and non-finite count."""
        s = cuda.shared.array(0, float64)
        t = cuda.threadIdx.x
        b = cuda.blockIdx.x
        j = b * tpb + t
        n = Z.shape[0]
        live = j < Z.shape[1]
        loss = 0.0
        if live:
            loss = _column_loss(Z, A, Y, j, code)
        # Softmax couples a column: dZ = A * (dA - sum_k A_k dA_k).
        coupling = 0.0
        if live and mode == _CHAIN and code == SOFTMAX:
            for i in range(n):
                a = float64(A[i, j])
                coupling += a * chain_da(a, float64(Y[i, j]), code, dz_scale)
        bad = 0.0
        if mode != _LOSS_ONLY:
            for i in range(n):
                d = 0.0
                if live:
                    a = float64(A[i, j])
                    y = float64(Y[i, j])
                    if mode == _CHAIN:
                        da = chain_da(a, y, code, dz_scale)
                        if code == SIGMOID:
                            v = da * a * (1.0 - a)
                        elif code == SOFTMAX:
                            v = a * (da - coupling)
                        else:
                            v = da
                    else:
                        v = (a - y) * dz_scale
                    r = cast(v)
                    dZ[i, j] = r
                    # db sums the rounded dZ that is returned, as NumPy does.
                    d = float64(r)
                    if not math.isfinite(d):
                        bad += 1.0
                s[t] = d
                cuda.syncthreads()
                _tree_sum(s, t, tpb)
                if t == 0:
                    partial[i, b] = s[0]
        s[t] = loss
        cuda.syncthreads()
        _tree_sum(s, t, tpb)
        if t == 0:
            partial[n, b] = s[0]
        s[t] = bad
        cuda.syncthreads()
        _tree_sum(s, t, tpb)
        if t == 0:
            partial[n + 1, b] = s[0]

    return output


def _make_backward(dtype, tpb):
    cast = from_dtype(dtype)

    @cuda.jit
    def backward(dA, A, code, dZ, partial):
        """dZ = dA * g'(Z) on one row segment per block, and that segment's partial row sum."""
        s = cuda.shared.array(0, float64)
        t = cuda.threadIdx.x
        b = cuda.blockIdx.x
        i = cuda.blockIdx.y
        j = b * tpb + t
        d = 0.0
        if j < A.shape[1]:
            r = cast(_dz(float64(dA[i, j]), float64(A[i, j]), code))
            dZ[i, j] = r
            d = float64(r)
        s[t] = d
        cuda.syncthreads()
        _tree_sum(s, t, tpb)
        if t == 0:
            partial[i, b] = s[0]

    return backward


def _make_finish(dtype, tpb):
    @cuda.jit
    def finish(partial, row0, scale, out):
        """out[r, 0] = scale * sum(partial[row0 + r, :]), row r = blockIdx.x, in a fixed order."""
        s = cuda.shared.array(0, float64)
        t = cuda.threadIdx.x
        r = cuda.blockIdx.x
        acc = 0.0
        for k in range(t, partial.shape[1], tpb):
            acc += partial[row0 + r, k]
        s[t] = acc
        cuda.syncthreads()
        _tree_sum(s, t, tpb)
        if t == 0:
            out[r, 0] = scale * s[0]

    return finish


def _make_block_reduce(dtype, tpb, op):
    """``op`` "count_nonfinite" (a sum of 0/1) or "max_abs" (inf for inf or NaN) over blocks."""
    count = op == "count_nonfinite"

    @cuda.jit
    def block_reduce(x, partial):
        """partial[0, block] = op over the block's segment of the flat x."""
        s = cuda.shared.array(0, float64)
        t = cuda.threadIdx.x
        b = cuda.blockIdx.x
        k = b * tpb + t
        v = 0.0
        if k < x.shape[0]:
            a = abs(float64(x[k]))
            finite = math.isfinite(a)
            if count:
                v = 0.0 if finite else 1.0
            else:
                v = a if finite else math.inf
        s[t] = v
        cuda.syncthreads()
        _tree_fold(s, t, tpb, not count)
        if t == 0:
            partial[0, b] = s[0]

    return block_reduce


def _make_sgd(dtype):
    @cuda.jit
    def sgd(P, G, lr):
        """P -= lr * G on the flat arrays."""
        k = cuda.grid(1)
        if k < P.shape[0]:
            P[k] = float64(P[k]) - lr * float64(G[k])

    return sgd


def _make_momentum(dtype):
    cast = from_dtype(dtype)

    @cuda.jit
    def momentum(P, G, V, lr, beta):
        """V = beta V + (1 - beta) G; P -= lr V, on the flat arrays."""
        k = cuda.grid(1)
        if k < P.shape[0]:
            v = cast(beta * float64(V[k]) + (1.0 - beta) * float64(G[k]))
            V[k] = v
            P[k] = float64(P[k]) - lr * float64(v)

    return momentum


def _make_adam(dtype):
    cast = from_dtype(dtype)

    @cuda.jit
    def adam(P, G, M, V, beta1, beta2, step, eps_t, g_scale, l2):
        """One bias-corrected Adam step on the flat arrays (numpy_backend.adam_update)."""
        k = cuda.grid(1)
        if k < P.shape[0]:
            g = float64(G[k]) * g_scale + l2 * float64(P[k])
            # The state is kept in the array dtype, so the step uses it rounded.
            mk = cast(beta1 * float64(M[k]) + (1.0 - beta1) * g)
            vk = cast(beta2 * float64(V[k]) + (1.0 - beta2) * (g * g))
            M[k] = mk
            V[k] = vk
            P[k] = float64(P[k]) - step * float64(mk) / (math.sqrt(float64(vk)) + eps_t)

    return adam


def _make_dropout(dtype):
    cast = from_dtype(dtype)

    @cuda.jit
    def dropout(A, keep, threshold, c2, c3, k0, k1, out):
        """out = A / keep where the unit's Philox word is below threshold, else 0 (flat index)."""
        k = cuda.grid(1)
        m = A.shape[1]
        if k < A.shape[0] * m:
            i = k // m
            j = k - i * m
            word = _philox(np.uint64(j), np.uint64(i), c2, c3, k0, k1)[0]
            if word < threshold:
                # float64 quotient rounded once: the dtype's correctly rounded A / keep.
                out[i, j] = cast(float64(A[i, j]) / keep)
            else:
                out[i, j] = 0

    return dropout


def _make_fill(dtype):
    @cuda.jit
    def fill(x, value):
        """x[:] = value on the flat array."""
        k = cuda.grid(1)
        if k < x.shape[0]:
            x[k] = value

    return fill


_FACTORIES = {
    "matmul": _make_matmul,
    "activate": _make_activate,
    "output": _make_output,
    "backward": _make_backward,
    "finish": _make_finish,
    "block_reduce": _make_block_reduce,
    "sgd": _make_sgd,
    "momentum": _make_momentum,
    "adam": _make_adam,
    "fill": _make_fill,
    "dropout": _make_dropout,
}


class _QuietLaunch:
    """A kernel whose ``[grid, block, stream, shared]`` skips the low-occupancy warning.

    numba-cuda warns (``NumbaPerformanceWarning``) when a launch configuration
    has fewer than 128 blocks; here that is the size of the problem, not a
    mistake (module docstring).  The check runs when the configuration is made,
    so the setting ``CUDA_LOW_OCCUPANCY_WARNINGS`` is off for that moment only
    and restored after, under a lock, so that fastnn's launches from several
    threads always put the user's setting back; a launch of the user's own
    configured by another thread in that moment could miss its warning.
    """

    __slots__ = ("kernel",)
    _lock = threading.Lock()

    def __init__(self, kernel):
        self.kernel = kernel

    def __getitem__(self, launch):
        with self._lock:
            old = getattr(_cuda_config, "CUDA_LOW_OCCUPANCY_WARNINGS", 0)
            _cuda_config.CUDA_LOW_OCCUPANCY_WARNINGS = 0
            try:
                return self.kernel[launch]
            finally:
                _cuda_config.CUDA_LOW_OCCUPANCY_WARNINGS = old


def _kernel(kind, dtype, *key):
    """The compiled kernel ``kind`` for ``dtype`` and the factory arguments ``key`` (cached)."""
    dtype = np.dtype(dtype)
    cache_key = (kind, dtype.name) + key
    kern = _CACHE.get(cache_key)
    if kern is None:
        _say_compiling()
        kern = _QuietLaunch(_FACTORIES[kind](dtype, *key))
        _CACHE[cache_key] = kern
    return kern


# --------------------------------------------------------------- launch helpers

def _blocks(n, per_block):
    return (n + per_block - 1) // per_block


def _tree_bytes(tpb):
    """Dynamic shared memory of a reduction kernel: one float64 per thread."""
    return tpb * 8


def _flat(x):
    return x.reshape(x.size)


def _matmul(A, B, M, N, trans_a, trans_b, epilogue, bias=None, E=None, alpha=1.0, beta=0.0,
            act=IDENTITY, out=None):
    """op(A) @ op(B) with the epilogue applied, in A's dtype, into a new (M, N) array or
    ``out`` (which may be ``E``: each entry is read and written by one thread only)."""
    tile = int(TILE)
    if out is None:
        out = cuda.device_array((M, N), dtype=A.dtype)
    kern = _kernel("matmul", A.dtype, tile, bool(trans_a), bool(trans_b), epilogue)
    shared = 2 * tile * (tile + 1) * A.dtype.itemsize
    # Unused operands get a placeholder of the right kind: the kernel never reads them.
    kern[(_blocks(N, tile), _blocks(M, tile)), (tile, tile), 0, shared](
        A, B, out if bias is None else bias, out if E is None else E,
        float(alpha), float(beta), int(act), out)
    return out


def _finish(partial, row0, nrows, scale, out):
    tpb = int(TPB)
    _kernel("finish", out.dtype, tpb)[nrows, tpb, 0, _tree_bytes(tpb)](
        partial, int(row0), float(scale), out)


# --------------------------------------------------------------- the interface

def to_device(x):
    """Copy a host array to the GPU.

    Parameters
    ----------
    x : numpy.ndarray or device array, any shape

    Returns
    -------
    numba.cuda device array
        ``x`` itself when it already is one, else a copy of ``x`` (made
        C-contiguous first), same shape and dtype.
    """
    if cuda.devicearray.is_cuda_ndarray(x):
        return x
    return cuda.to_device(np.ascontiguousarray(x))


def to_host(x):
    """Copy a device array back to the host.

    Parameters
    ----------
    x : device array or numpy.ndarray, any shape

    Returns
    -------
    numpy.ndarray
        Same shape and dtype (``np.asarray(x)`` for a host array).
    """
    if cuda.devicearray.is_cuda_ndarray(x):
        return x.copy_to_host()
    return np.asarray(x)


def gather_columns(XR, idx):
    """Minibatch ``X[:, idx]`` from the host's row-major ``XR = X.T``, copied to the GPU.

    Parameters
    ----------
    XR : numpy.ndarray, shape (N, n_x), C-contiguous
    idx : ndarray of int, shape (b,), or slice

    Returns
    -------
    numba.cuda device array, shape (n_x, b), C-contiguous
        Gathered and transposed on the host, then copied once.
    """
    return to_device(np.ascontiguousarray(XR[idx].T))


def zeros_like(x):
    """Zeros on the device.

    Parameters
    ----------
    x : device array, any shape

    Returns
    -------
    device array
        Shape and dtype of ``x``, all zeros.
    """
    out = cuda.device_array(x.shape, dtype=x.dtype)
    if out.size:
        tpb = int(TPB)
        _kernel("fill", out.dtype)[_blocks(out.size, tpb), tpb](_flat(out), 0.0)
    return out


def all_finite(x):
    """Whether every entry is finite.

    Parameters
    ----------
    x : device array, any shape

    Returns
    -------
    bool
        True when no entry is inf or NaN (one scalar copied to the host).
    """
    if x.size == 0:
        return True
    tpb = int(TPB)
    nb = _blocks(x.size, tpb)
    partial = cuda.device_array((1, nb), dtype=np.float64)
    _kernel("block_reduce", x.dtype, tpb, "count_nonfinite")[nb, tpb, 0, _tree_bytes(tpb)](
        _flat(x), partial)
    count = cuda.device_array((1, 1), dtype=np.float64)
    _finish(partial, 0, 1, 1.0, count)
    return bool(count.copy_to_host()[0, 0] == 0)


def max_abs(x):
    """Largest ``|x|``.

    Parameters
    ----------
    x : device array, any shape

    Returns
    -------
    float
        inf when an entry is inf or NaN; 0.0 for an empty array.  Block maxima
        are folded by the same kernel until one value is left (max is exact in
        any order), then one scalar is copied to the host.
    """
    if x.size == 0:
        return 0.0
    tpb = int(TPB)
    v = _flat(x)
    while True:
        nb = _blocks(v.size, tpb)
        partial = cuda.device_array((1, nb), dtype=np.float64)
        _kernel("block_reduce", v.dtype, tpb, "max_abs")[nb, tpb, 0, _tree_bytes(tpb)](v, partial)
        if nb == 1:
            return float(partial.copy_to_host()[0, 0])
        v = _flat(partial)


def _affine_act(W, A_prev, b, activation, Z0=None):
    """g(W @ A_prev (+ Z0) + b), a new (n_l, m) array: one matmul launch, the offset,
    bias and activation in its epilogue."""
    epilogue = _EPI_BIAS_ACT if Z0 is None else _EPI_OFFSET_BIAS_ACT
    return _matmul(W, A_prev, W.shape[0], A_prev.shape[1], False, False, epilogue,
                   bias=b, E=Z0, act=CODES[activation])


def forward_hidden(W, A_prev, b, activation):
    """Hidden layer forward, bias and activation fused into the matmul.

    Parameters
    ----------
    W : device array, shape (n_l, n_{l-1})
    A_prev : device array, shape (n_{l-1}, m)
    b : device array, shape (n_l, 1)
    activation : str
        A name in ``fastnn.activations.HIDDEN_ACTIVATIONS``.

    Returns
    -------
    A : device array, shape (n_l, m)
        ``g(W @ A_prev + b)``.
    """
    return _affine_act(W, A_prev, b, activation)


def forward_hidden_offset(W, A_prev, b, Z0, activation):
    """Hidden layer forward with a fixed offset, all fused into the matmul.

    Parameters
    ----------
    W, A_prev, b, activation
        As :func:`forward_hidden` (``W`` may have no columns).
    Z0 : device array, shape (n_l, m)

    Returns
    -------
    A : device array, shape (n_l, m)
        ``g(W @ A_prev + Z0 + b)``.
    """
    return _affine_act(W, A_prev, b, activation, Z0)


def forward_output(W, A_prev, b, output):
    """Output layer forward, keeping the logits for a stable loss.

    Parameters
    ----------
    W, A_prev, b
        As :func:`forward_hidden`, for the output layer (``n_L`` rows).
    output : {"sigmoid", "softmax", "identity"}

    Returns
    -------
    Z : device array, shape (n_L, m)
        ``W @ A_prev + b``.
    A : device array, shape (n_L, m)
        ``g(Z)``; softmax normalises each column.
    """
    Z = _affine_act(W, A_prev, b, "identity")
    A = cuda.device_array(Z.shape, dtype=Z.dtype)
    tpb = int(TPB)
    _kernel("activate", Z.dtype)[_blocks(Z.shape[1], tpb), tpb](Z, CODES[output], A)
    return Z, A


def _output(Z, A, Y, output, mode, dz_scale, db_scale):
    """Launch the output kernel and fold its partials: (dZ, db, loss_sum, nonfinite count)."""
    n, m = Z.shape
    tpb = int(TPB)
    nb = _blocks(m, tpb)
    # Rows 0..n-1: partial sums of dZ's rows; row n: the loss; row n+1: non-finite dZ entries.
    partial = cuda.device_array((n + 2, nb), dtype=np.float64)
    dZ = cuda.device_array(Z.shape, dtype=Z.dtype) if mode != _LOSS_ONLY else Z
    _kernel("output", Z.dtype, tpb)[nb, tpb, 0, _tree_bytes(tpb)](Z, A, Y, CODES[output], mode,
                                              float(dz_scale), dZ, partial)
    db = None
    if mode != _LOSS_ONLY:
        db = cuda.device_array((n, 1), dtype=Z.dtype)
        _finish(partial, 0, n, db_scale, db)
    tail = cuda.device_array((2, 1), dtype=np.float64)
    _finish(partial, n, 2 if mode == _CHAIN else 1, 1.0, tail)
    host = tail.copy_to_host()
    return dZ, db, float(host[0, 0]), host[1, 0] if mode == _CHAIN else 0.0


def output_loss(Z, A, Y, output):
    """Summed loss over all examples, from the logits.

    Parameters
    ----------
    Z, A, Y : device arrays, shape (n_L, m)
        Logits, output activations, labels.
    output : {"sigmoid", "softmax", "identity"}
        Selects binary cross-entropy, categorical cross-entropy or ``1/2 (a - y)^2``.

    Returns
    -------
    float
        ``sum`` of the per-entry loss terms of ``numpy_backend._loss_terms``.
    """
    return _output(Z, A, Y, output, _LOSS_ONLY, 1.0, 1.0)[2]


def output_delta(Z, A, Y, output, dz_scale, db_scale):
    """Fused output layer: gradient, bias gradient and summed loss in one pass.

    Parameters
    ----------
    Z, A, Y : device arrays, shape (n_L, m)
    output : {"sigmoid", "softmax", "identity"}
    dz_scale, db_scale : float
        ``dZ = dz_scale * (A - Y)``; ``db = db_scale * sum(dZ, axis=1)``.

    Returns
    -------
    dZ : device array, shape (n_L, m)
    db : device array, shape (n_L, 1)
    loss_sum : float
    """
    dZ, db, loss, _ = _output(Z, A, Y, output, _FUSED, dz_scale, db_scale)
    return dZ, db, loss


def output_delta_chain(Z, A, Y, output, dz_scale, db_scale):
    """The course's route: ``dA[L]`` from the loss, then ``dZ[L] = dA[L] * g'(Z[L])``.

    Parameters and returns are those of :func:`output_delta`.

    Raises
    ------
    SaturationError
        When a saturated output (A rounded to 0 or 1) made ``dZ`` non-finite.
    """
    dZ, db, loss, bad = _output(Z, A, Y, output, _CHAIN, dz_scale, db_scale)
    if bad:
        raise SaturationError(
            f"output_grad='chain': the {output} output saturated (A rounded to 0 or 1 in "
            f"{np.dtype(A.dtype)}), so dA[L] = -(Y/A - (1-Y)/(1-A)) is not finite; "
            "use output_grad='fused' (dZ[L] = A - Y), which has no division")
    return dZ, db, loss


def backward_hidden(dA, A, activation, db_scale):
    """Hidden layer backward, fused with the bias gradient.

    Parameters
    ----------
    dA : device array, shape (n_l, m)
        Overwritten: it becomes ``dZ``.
    A : device array, shape (n_l, m)
        The forward activations; ``g'`` is computed from them.
    activation : str
        A name in ``fastnn.activations.HIDDEN_ACTIVATIONS``.
    db_scale : float

    Returns
    -------
    dZ : device array, shape (n_l, m)
        ``dA * g'(Z)`` (the storage of ``dA``).
    db : device array, shape (n_l, 1)
        ``db_scale * sum(dZ, axis=1)``.
    """
    n, m = A.shape
    tpb = int(TPB)
    nb = _blocks(m, tpb)
    partial = cuda.device_array((n, nb), dtype=np.float64)
    _kernel("backward", A.dtype, tpb)[(nb, n), tpb, 0, _tree_bytes(tpb)](
        dA, A, CODES[activation], dA, partial)
    db = cuda.device_array((n, 1), dtype=A.dtype)
    _finish(partial, 0, n, db_scale, db)
    return dA, db


def _dropout_into(A, out, keep, key):
    if A.size:
        tpb = int(TPB)
        kd = float(np.dtype(A.dtype).type(keep))  # keep rounded to the dtype, as the NumPy backend
        _kernel("dropout", A.dtype)[_blocks(A.size, tpb), tpb](
            A, kd, _dropout.threshold(keep), *key, out)
    return out


def dropout_forward(A, keep, key):
    """Inverted dropout of a hidden layer's activations, mask hashed in the same kernel.

    Parameters
    ----------
    A : device array, shape (n_l, m)
    keep : float in (0, 1]
    key : tuple
        :func:`fastnn._dropout.step_key` of the layer and step.

    Returns
    -------
    device array, shape (n_l, m)
        ``A / keep`` where kept, 0 elsewhere: bitwise the NumPy backend's.
    """
    return _dropout_into(A, cuda.device_array(A.shape, dtype=A.dtype), keep, key)


def dropout_backward(dA, keep, key):
    """``dA * mask / keep`` in place, the forward's mask recomputed.

    Parameters
    ----------
    dA : device array, shape (n_l, m), overwritten
    keep : float in (0, 1]
    key : tuple

    Returns
    -------
    device array
        ``dA`` itself.
    """
    return _dropout_into(dA, dA, keep, key)


def weight_grad(dZ, A_prev, W, scale, l2_scale):
    """Weight gradient, without a transposed copy of ``A_prev``.

    Parameters
    ----------
    dZ : device array, shape (n_l, m)
    A_prev : device array, shape (n_{l-1}, m)
    W : device array, shape (n_l, n_{l-1})
    scale, l2_scale : float

    Returns
    -------
    dW : device array, shape (n_l, n_{l-1})
        ``scale * dZ @ A_prev.T + l2_scale * W``.
    """
    return _matmul(dZ, A_prev, dZ.shape[0], A_prev.shape[0], False, True, _EPI_AXPBY,
                   E=W, alpha=scale, beta=l2_scale)


def weight_step(W, dZ, A_prev, alpha, beta):
    """A weight matrix's SGD step in one matmul: ``W = beta * W + alpha * dZ @ A_prev.T``.

    Parameters
    ----------
    W : device array, shape (n_l, n_{l-1}), updated in place (the epilogue reads
        and writes each entry from one thread)
    dZ : device array, shape (n_l, m)
    A_prev : device array, shape (n_{l-1}, m)
    alpha, beta : float
    """
    _matmul(dZ, A_prev, dZ.shape[0], A_prev.shape[0], False, True, _EPI_AXPBY, E=W,
            alpha=alpha, beta=beta, out=W)


def input_grad(W, dZ):
    """Gradient with respect to the layer's input, without a transposed copy of ``W``.

    Parameters
    ----------
    W : device array, shape (n_l, n_{l-1})
    dZ : device array, shape (n_l, m)

    Returns
    -------
    dA_prev : device array, shape (n_{l-1}, m)
        ``W.T @ dZ``.
    """
    return _matmul(W, dZ, W.shape[1], dZ.shape[1], True, False, _EPI_PLAIN)


def _launch_flat(kind, P, *args):
    if P.size:
        tpb = int(TPB)
        _kernel(kind, P.dtype)[_blocks(P.size, tpb), tpb](*args)


def sgd_update(P, G, lr):
    """Gradient descent step, in place.

    Parameters
    ----------
    P, G : device arrays of one shape
        Parameter (updated: ``P -= lr * G``) and its gradient.
    lr : float
    """
    _launch_flat("sgd", P, _flat(P), _flat(G), float(lr))


def momentum_update(P, G, V, lr, beta):
    """Momentum step, in place.

    Parameters
    ----------
    P, G, V : device arrays of one shape
        Parameter, gradient, velocity: ``V = beta V + (1 - beta) G``; ``P -= lr V``.
    lr, beta : float
    """
    _launch_flat("momentum", P, _flat(P), _flat(G), _flat(V), float(lr), float(beta))


def adam_update(P, G, M, V, lr, beta1, beta2, eps, t, g_scale=1, l2=0):
    """Bias-corrected Adam step ``t`` (``t >= 1``), in place.

    Parameters
    ----------
    P, G, M, V : device arrays of one shape
        Parameter, gradient, first and second moments (all updated but ``G``).
    lr, beta1, beta2, eps : float
    t : int
    g_scale, l2 : float
        The gradient is ``g_scale * G + l2 * P`` (weight_grad's epilogue, folded in).
    """
    # The same step and eps_t (rounded to the array dtype) as the NumPy backend.
    step, eps_t = _np_backend.adam_coefficients(lr, beta1, beta2, eps, t, P.dtype)
    _launch_flat("adam", P, _flat(P), _flat(G), _flat(M), _flat(V), float(beta1),
                 float(beta2), float(step), float(eps_t), float(g_scale), float(l2))
