"""Floating-point stability: where the 1/m goes, and the output-gradient route.

Every figure is a ``track_`` with ``unit = "relative error"``: the max-norm of
the error divided by the max-norm of the reference, for the worst layer
(``max_l ||dW[l] - ref[l]||_inf / ||ref[l]||_inf``; the same for ``db``).

The reference is computed in higher precision from the *same* inputs:

- float32 runs: float64 arithmetic on the float32 inputs (exactly representable);
- float64 runs: ``np.longdouble`` arithmetic on the float64 inputs.  On x86-64
  Linux that is the x87 80-bit format (64-bit significand, unit roundoff
  u = 2**-64 = 5.4e-20, 2048 times finer than float64's 2**-53).  Where
  ``np.longdouble`` is just float64 (Windows, macOS on ARM) the float64 runs
  are skipped; on aarch64 Linux it is IEEE quad (slow but finer still).

The reference is the NumPy backend's formulas written out here (forward, then
``G[L] = A[L] - Y``, ``dW = (G @ A.T) / m``, ``db = sum(G) / m``,
``G[l-1] = (W.T @ G) * (1 - A**2)``), with every sum over the m examples done
pairwise (chunked elementwise products and ``np.sum``, never a sequential
dot), so its own error grows like ``log2(m) * u_ref``.  How large its error is
is tracked too (``TrackReferenceError``): the same code run one precision
lower on the same inputs (float64 for the longdouble reference, float32 for
the float64 one) has a measured error e_low; error bounds of one algorithm
scale with the unit roundoff, so the reference's error is estimated as
``e_low * u_ref / u_low`` (``/ 2048`` for longdouble, ``/ 2**29`` for float64).

References are cached on disk (``common.bench_cache_dir("references")``),
keyed by the data's fingerprint: they do not depend on fastnn's code, so one
computation serves every commit.  The m = 10**6, depth-5 longdouble one takes
about half a minute the first time.
"""

import hashlib
import os

import numpy as np

import fastnn

from .common import (BACKENDS, DTYPES, SATURATION_LEVELS, SCALINGS, STABILITY_DEPTHS,
                     STABILITY_MS, bench_cache_dir, require_backend, stability_data)

try:  # imported here so that asv's forkserver children inherit it
    import numba  # noqa: F401
except ImportError:
    pass

REF_VERSION = 1
_CHUNK = 4096
_UNIT_ROUNDOFF = {np.dtype(np.float32): 2.0 ** -24, np.dtype(np.float64): 2.0 ** -53}


def ref_dtype(dtype):
    """The reference dtype for a run in ``dtype`` (NotImplementedError if none here)."""
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return np.dtype(np.float64)
    if np.finfo(np.longdouble).nmant < 63:
        raise NotImplementedError("np.longdouble is no wider than float64 on this platform: "
                                  "no extended-precision reference for float64 runs")
    return np.dtype(np.longdouble)


def _unit_roundoff(dtype):
    dtype = np.dtype(dtype)
    if dtype in _UNIT_ROUNDOFF:
        return _UNIT_ROUNDOFF[dtype]
    return float(np.finfo(dtype).epsneg)  # 2**-64 for the x87 format


def _sum_nt(G, A):
    """``G @ A.T`` summed pairwise over the columns, in the arrays' dtype."""
    parts = []
    for s in range(0, G.shape[1], _CHUNK):
        P = G[:, None, s:s + _CHUNK] * A[None, :, s:s + _CHUNK]
        parts.append(P.sum(axis=-1))          # pairwise along the contiguous axis
    return np.stack(parts, axis=-1).sum(axis=-1)


def reference_gradients(params, X, Y, rdt):
    """(dWs, dbs) of the cost J for a tanh/sigmoid network, computed in ``rdt``."""
    L = len(params) // 2
    Ws = [np.asarray(params[f"W{l}"], dtype=rdt) for l in range(1, L + 1)]
    bs = [np.asarray(params[f"b{l}"], dtype=rdt) for l in range(1, L + 1)]
    As = [np.asarray(X, dtype=rdt)]
    one = rdt.type(1)
    for l in range(L):
        Z = Ws[l] @ As[-1]                    # inner dimension <= 16: a short dot
        Z += bs[l]
        if l < L - 1:
            As.append(np.tanh(Z))
        else:
            AL = one / (one + np.exp(-Z))
    m = X.shape[1]
    G = AL - np.asarray(Y, dtype=rdt)         # d(sum of losses)/dZ[L]
    dWs, dbs = [None] * L, [None] * L
    for l in range(L - 1, -1, -1):
        dWs[l] = _sum_nt(G, As[l]) / rdt.type(m)
        dbs[l] = G.sum(axis=1, keepdims=True) / rdt.type(m)
        if l:
            G = (Ws[l].T @ G) * (one - As[l] * As[l])
    return dWs, dbs


def rel_error(approx, ref):
    """Worst layer's max-norm error over max-norm reference, in the reference's dtype."""
    worst = 0.0
    for a, r in zip(approx, ref):
        scale = np.max(np.abs(r))
        err = np.max(np.abs(np.asarray(a, dtype=r.dtype) - r))
        worst = max(worst, float(err / scale) if scale else float(err))
    return worst


def _fingerprint(params, X, Y):
    h = hashlib.sha256()
    for k in sorted(params):
        h.update(k.encode())
        h.update(np.ascontiguousarray(params[k]).tobytes())
    h.update(repr((X.shape, X.dtype.str)).encode())
    h.update(np.ascontiguousarray(X[:, :256]).tobytes())
    h.update(np.ascontiguousarray(X[:, -256:]).tobytes())
    h.update(np.packbits(np.asarray(Y) > 0).tobytes())
    return h.hexdigest()[:16]


def reference(m, depth, dtype):
    """``{"dW": [...], "db": [...], "self_dW": float, "self_db": float}`` for the
    stability data (cached on disk): the reference gradients in ``ref_dtype(dtype)``
    and the estimates of their own relative error."""
    rdt = ref_dtype(dtype)
    params, X, Y = stability_data(m, depth, dtype)
    L = len(params) // 2
    name = f"ref-v{REF_VERSION}-{np.dtype(dtype).name}-m{m}-d{depth}-{_fingerprint(params, X, Y)}.npz"
    path = os.path.join(bench_cache_dir("references"), name)
    if os.path.exists(path):
        with np.load(path) as f:
            return {"dW": [f[f"dW{l}"] for l in range(1, L + 1)],
                    "db": [f[f"db{l}"] for l in range(1, L + 1)],
                    "self_dW": float(f["self_dW"]), "self_db": float(f["self_db"])}
    dWs, dbs = reference_gradients(params, X, Y, rdt)
    low = np.dtype(dtype)                      # the inputs are exact in it
    dWl, dbl = reference_gradients(params, X, Y, low)
    ratio = _unit_roundoff(rdt) / _unit_roundoff(low)
    out = {"dW": dWs, "db": dbs, "self_dW": rel_error(dWl, dWs) * ratio,
           "self_db": rel_error(dbl, dbs) * ratio}
    arrays = {f"dW{l}": a for l, a in enumerate(dWs, 1)}
    arrays.update({f"db{l}": a for l, a in enumerate(dbs, 1)})
    tmp = path + f".tmp{os.getpid()}.npz"
    np.savez(tmp, self_dW=out["self_dW"], self_db=out["self_db"], **arrays)
    os.replace(tmp, path)
    return out


def _grads(backend, scaling, dtype, m, depth):
    params, X, Y = stability_data(m, depth, dtype)
    L = len(params) // 2
    _, g = fastnn.gradients(params, X, Y, hidden="tanh", output="sigmoid", scaling=scaling,
                            backend=backend)
    return [g[f"dW{l}"] for l in range(1, L + 1)], [g[f"db{l}"] for l in range(1, L + 1)]


class TrackGradientError:
    """Relative error of ``fastnn.gradients``' dW and db against the
    higher-precision reference, per backend, 1/m placement, dtype, m, depth.

    Network ``[8, 16, ..., 16, 1]``, tanh hidden layers, sigmoid output
    (``common.stability_data``).  m = 2**14 is the control: 1/m is a power of
    two there, so deferred and absorbed must agree exactly.
    """

    params = [BACKENDS, SCALINGS, DTYPES, STABILITY_MS, STABILITY_DEPTHS]
    param_names = ["backend", "scaling", "dtype", "m", "depth"]
    unit = "relative error"
    rounds = 1
    timeout = 900

    def setup(self, backend, scaling, dtype, m, depth):
        require_backend(backend, dtype)
        ref = reference(m, depth, dtype)
        dW, db = _grads(backend, scaling, dtype, m, depth)
        self.err_dW = rel_error(dW, ref["dW"])
        self.err_db = rel_error(db, ref["db"])

    def track_dW_rel_error(self, backend, scaling, dtype, m, depth):
        return self.err_dW

    def track_db_rel_error(self, backend, scaling, dtype, m, depth):
        return self.err_db


class TrackScalingGap:
    """The gap between the two 1/m placements themselves:
    ``max_l max|dW_deferred - dW_absorbed| / max|dW_deferred|`` (and for db).
    Exactly 0 at m = 2**14; elsewhere a few units of the dtype's rounding."""

    params = [BACKENDS, DTYPES, STABILITY_MS, STABILITY_DEPTHS]
    param_names = ["backend", "dtype", "m", "depth"]
    unit = "relative error"
    rounds = 1
    timeout = 900

    def setup(self, backend, dtype, m, depth):
        require_backend(backend, dtype)
        dWd, dbd = _grads(backend, "deferred", dtype, m, depth)
        dWa, dba = _grads(backend, "absorbed", dtype, m, depth)
        wide = np.longdouble  # differences of float32/float64 values, exactly
        self.gap_dW = rel_error(dWa, [np.asarray(a, dtype=wide) for a in dWd])
        self.gap_db = rel_error(dba, [np.asarray(a, dtype=wide) for a in dbd])

    def track_dW_gap(self, backend, dtype, m, depth):
        return self.gap_dW

    def track_db_gap(self, backend, dtype, m, depth):
        return self.gap_db


class TrackReferenceError:
    """Estimated relative error of the reference itself (see the module
    docstring): it should sit orders of magnitude below TrackGradientError's
    figures for the same dtype, m and depth, or those figures mean nothing."""

    params = [DTYPES, STABILITY_MS, STABILITY_DEPTHS]
    param_names = ["dtype", "m", "depth"]
    unit = "relative error"
    rounds = 1
    timeout = 900

    def setup(self, dtype, m, depth):
        self.ref = reference(m, depth, dtype)

    def track_reference_error_estimate(self, dtype, m, depth):
        return max(self.ref["self_dW"], self.ref["self_db"])


class TrackOutputRoute:
    """Output gradient near saturation: fused ``dZ[L] = A - Y`` against the
    course's chain ``dA[L] = -(Y/A - (1-Y)/(1-A))``, ``dZ[L] = dA[L] * A(1-A)``.

    1000 sigmoid outputs, all with label 1 (confident and right, the usual
    state late in training), logits set so that ``1 - A`` is within a factor
    e**0.5 of ``one_minus_a``; so the true ``dZ[L] = A - 1 = -sigmoid(-z)`` is
    about ``-one_minus_a``.  The relative error of each route's dZ[L] (from
    the backend's ``forward_output`` and ``output_delta`` /
    ``output_delta_chain``) against the reference dtype's ``-1/(1 + exp(z))``.

    Once ``A`` rounds to exactly 1 (float32 from 1 - A < 3e-8, float64 from
    6e-17) the fused route returns 0 (relative error 1), and the chain route
    divides 0 by 0 and raises ``fastnn.SaturationError``: tracked as NaN
    (no point on the graph).
    """

    params = [BACKENDS, DTYPES, SATURATION_LEVELS]
    param_names = ["backend", "dtype", "one_minus_a"]
    unit = "relative error"
    rounds = 1
    timeout = 300

    def setup(self, backend, dtype, one_minus_a):
        bk = require_backend(backend, dtype)
        rdt = ref_dtype(dtype)
        dt = np.dtype(dtype)
        rng = np.random.default_rng(0)
        z0 = np.log((1 - one_minus_a) / one_minus_a)
        z = (z0 + rng.uniform(-0.5, 0.5, (1, 1000))).astype(dt)
        ref = -1 / (1 + np.exp(z.astype(rdt)))
        W = bk.to_device(np.ones((1, 1), dtype=dt))
        b = bk.to_device(np.zeros((1, 1), dtype=dt))
        Y = bk.to_device(np.ones_like(z))
        Z, A = bk.forward_output(W, bk.to_device(z), b, "sigmoid")   # Z == z exactly
        one = dt.type(1)
        self.err = {}
        for route, kernel in (("fused", bk.output_delta), ("chain", bk.output_delta_chain)):
            try:
                dZ, _, _ = kernel(Z, A, Y, "sigmoid", one, one)
            except fastnn.SaturationError:
                self.err[route] = float("nan")
            else:
                self.err[route] = rel_error([bk.to_host(dZ)], [ref])

    def track_fused_rel_error(self, backend, dtype, one_minus_a):
        return self.err["fused"]

    def track_chain_rel_error(self, backend, dtype, one_minus_a):
        return self.err["chain"]


class TrackMixedPrecision:
    """float16 mixed-precision recipes (``fastnn.stability.mixed``): worst-layer
    norm-wise relative dW error against the float64 reference, and the fraction
    of ``dZ`` entries flushed to zero, per recipe and 1/m placement.

    ``plain``: every value and the 1/m in float16; ``fp32_epilogue``: the 1/m
    a float32 operation on the float32 accumulator; ``static_ls`` / ``dynamic_ls``:
    loss scaling (4096 / the largest scale that does not overflow) with a float32
    master gradient.  Network ``[8, 8, 8, 1]``, ReLU, sigmoid output, seed 0,
    at initialisation; m = 2^17 is where plain absorbed flushes a few per cent
    of ``dZ`` and deferred is still finite.
    """

    params = [("plain", "fp32_epilogue", "static_ls", "dynamic_ls"), ("deferred", "absorbed"),
              [10_000, 131_072]]
    param_names = ["recipe", "scaling", "m"]
    unit = "relative error"
    rounds = 1
    timeout = 300

    def setup(self, recipe, scaling, m):
        from fastnn.stability import evaluate_point
        self.res = evaluate_point({"dtype": "float16", "m": m, "scaling": scaling, "recipe": recipe,
                                   "steps": 0})

    def track_dW_rel_error(self, recipe, scaling, m):
        return max(self.res["err_dW"])

    def track_dz_flushed_fraction(self, recipe, scaling, m):
        return self.res["dz_underflow"]
