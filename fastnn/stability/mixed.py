"""Mixed-precision recipes, the two ways of applying ``1/m`` and micro-batch
accumulation: the gradient computation of a sweep point whose ``recipe`` is
not ``"plain"``, whose ``inv_m`` is ``"div"`` or whose ``micro`` is above 1.

Storage (``W``, ``A``, ``dZ``, the stored gradients) is in the point's format;
every elementwise operation is the format's (the backend or the exact
emulation of :mod:`.formats`).  The sums over the m examples accumulate in
float32 for float16/bfloat16 (as BLAS on widened values and tensor cores do)
and in the format itself for float32/float64.  What differs:

``recipe``
    ``"plain"``: the ``1/m`` and every stored value in the format:
    deferred ``dW = fl(fl(acc) * fl(1/m))``, absorbed ``dZ[L] = fl(fl(A - Y) * fl(1/m))``.
    ``"fp32_epilogue"``: the scale is a float32 operation on the float32 value
    and rounded once to the format -- deferred ``dW = fl(fl32(acc * fl32(1/m)))``
    (a GEMM with ``alpha = 1/m`` in its float32 epilogue), absorbed
    ``dZ[L] = fl(fl32((A - Y) * fl32(1/m)))`` (still stored in the format).
    ``"static_ls"``: loss scaling by the power of two ``loss_scale`` = S:
    ``dZ[L] = fl(fl32((A - Y) * S [* fl32(1/m)]))``, backward in the format,
    each gradient stored in the format (``fl(fl32(acc [* fl32(1/m)]))``), then
    widened to a float32 master gradient and unscaled there (``/ S``, exact).
    ``"dynamic_ls"``: the same with S the largest power of two in
    ``[2^-24, 2^24]`` for which no stored value overflows -- where a dynamic
    scaler (halve on overflow, double after a run of finite steps) settles.
``inv_m``
    ``"mul"``: multiply by ``fl(1/m)`` (two roundings); ``"div"``: divide by
    m, one correctly rounded operation (m itself need not be representable).
``micro``, ``accum``
    The m examples are split into ``micro`` = k contiguous micro-batches,
    each computed as above and added up: ``"global"`` -- every micro-batch
    uses the global ``1/m`` and the gradients are added in the gradient's
    precision; ``"per_micro"`` -- every micro-batch takes its own mean
    (``1/m_j``), the sum of the k means is scaled by ``1/k``; ``"fp32"`` --
    as ``"global"``, added into a float32 accumulator (the result is float32).
"""

import math

import numpy as np

from .. import engine
from ..errors import FastnnValueError
from .formats import _round_fast

RECIPES = ("plain", "fp32_epilogue", "static_ls", "dynamic_ls")
INV_M = ("mul", "div")
ACCUMS = ("global", "per_micro", "fp32")
#: Range of the dynamic loss scale (powers of two).
LS_MIN, LS_MAX = 2.0 ** -24, 2.0 ** 24


class _Ctx:
    """Rounding and scaling in the point's format (``"fmt"``) or float32 (``"f32"``)."""

    def __init__(self, fmt, inv_m):
        self.fmt, self.inv_m = fmt, inv_m
        self.narrow = not fmt.native
        self.peak = 0.0
        self.track = False

    def rnd(self, prec, y):
        """y (float64 values) rounded to ``prec``; narrow and float32 values are
        held in float64 arrays, float32/float64 formats in their own dtype."""
        y = np.asarray(y, dtype=np.float64)
        if prec == "f32" and (self.narrow or self.fmt.name == "float64"):
            with np.errstate(over="ignore"):
                return y.astype(np.float32).astype(np.float64)
        if self.track:
            fin = np.abs(y[np.isfinite(y)])
            if fin.size:
                self.peak = max(self.peak, float(fin.max()))
        if self.narrow:
            return _round_fast(y, self.fmt)
        with np.errstate(over="ignore"):
            return y.astype(self.fmt.storage)

    def inv(self, c, prec):
        """fl_prec(1/c) as a float."""
        return float(np.asarray(self.rnd(prec, np.float64(1.0) / c)).reshape(-1)[0])

    def scale(self, x, c, prec, S=1.0):
        """``x * S / c`` rounded to ``prec`` (``c=None``: no 1/c), by ``inv_m``."""
        if self.fmt.name == "float64" and prec == "fmt":
            x = np.asarray(x, np.float64)
            y = x * S if c is None else (x * (S * (1.0 / c)) if self.inv_m == "mul" else (x * S) / c)
            return y
        x = np.asarray(x, np.float64)
        if c is None:
            y = x * S
        elif self.inv_m == "mul":
            y = x * (S * self.inv(c, prec))       # exact product: <= 24 x 24 bits
        else:
            y = (x * S) / c                       # one float64 rounding, then innocuous
        return self.rnd(prec, y)

    def acc(self, dZ, A):
        """dZ @ A.T accumulated in float32 (narrow formats) or the format."""
        if self.narrow:
            return (dZ.astype(np.float32) @ A.astype(np.float32).T).astype(np.float64)
        return dZ @ A.T

    def row_sum(self, dZ):
        if self.narrow:
            return dZ.astype(np.float32).sum(axis=1, keepdims=True).astype(np.float64)
        return dZ.sum(axis=1, keepdims=True)


def _layer_grads(ctx, dZ, A_prev, recipe, c_w, S):
    """``(dW, db, finite)`` of one layer from its ``dZ`` by the recipe (module docstring)."""
    out, finite = [], True
    for acc in (ctx.acc(dZ, A_prev), ctx.row_sum(dZ)):
        if recipe == "plain":
            g = ctx.rnd("fmt", acc)
            g = ctx.scale(g, c_w, "fmt") if c_w else g
        else:
            g = ctx.rnd("fmt", ctx.scale(acc, c_w, "f32") if c_w else acc)
        finite = finite and np.isfinite(g).all()
        if recipe in ("static_ls", "dynamic_ls"):
            g = ctx.rnd("f32", np.asarray(g, np.float64) / S)   # float32 master gradient
        out.append(g)
    return out[0], out[1], finite


def _chunk(ctx, bk, Ws, As, ZL, Y, cols, c, S, pt, ref_nz, counts):
    """Gradients of the columns ``cols`` with count c for the 1/c and loss scale S.

    The output delta is formed and scaled here; the hidden layers are the
    engine's pass (:func:`fastnn.engine.backward_from_delta`), whose per-layer
    hook sums each layer's ``dW``, ``db`` by the recipe and counts its ``dZ``.
    """
    from .evaluate import _dz_counts, _output_layer
    recipe, scaling, hidden = pt["recipe"], pt["scaling"], pt["hidden"]
    one = ctx.fmt.scalar(1.0)
    As = [A[:, cols] for A in As]
    dZ, _, sat = _output_layer(bk, ctx.fmt, ZL[:, cols], As[-1], Y[:, cols],
                               pt, one, one)
    c_dz = c if scaling == "absorbed" else None
    c_w = c if scaling == "deferred" else None
    if recipe == "plain":
        dZ = ctx.scale(dZ, c_dz, "fmt") if c_dz else dZ
    elif c_dz or S != 1.0:
        dZ = ctx.rnd("fmt", ctx.scale(dZ, c_dz, "f32", S))
    L = len(Ws)
    gW, gb = [None] * L, [None] * L
    bad = []

    def hook(layer, arrays):
        l, dZ = layer - 1, arrays["dZ"]
        if ref_nz is not None:
            A = None if l == L - 1 else As[l + 1]
            for i, n in enumerate(_dz_counts(dZ, ref_nz[l][:, cols], A, hidden)):
                counts[l][i] += n
        gW[l], gb[l], finite = _layer_grads(ctx, dZ, As[l], recipe, c_w, S)
        bad.append(not (finite and np.isfinite(dZ).all()))

    with np.errstate(all="ignore"):
        engine.backward_from_delta(bk, Ws, As, dZ, None, hidden, one, hook=hook)
    return gW + gb, any(bad), sat


def _check(pt):
    for key, allowed in (("recipe", RECIPES), ("inv_m", INV_M), ("accum", ACCUMS)):
        if pt[key] not in allowed:
            raise FastnnValueError(f"{key}: unknown {pt[key]!r}; expected one of {allowed}")
    k = int(pt["micro"])
    if k < 1 or k > int(pt["m"]):
        raise FastnnValueError(f"micro must be in 1..m, got {k}")
    S = float(pt["loss_scale"])
    if pt["recipe"] == "static_ls" and not (S > 0 and math.frexp(S)[0] == 0.5):
        raise FastnnValueError(f"loss_scale must be a positive power of two, got {S}")
    if pt["backend"] != "numpy":
        raise FastnnValueError(f"backend: recipes, inv_m and micro-batches run on numpy only, got {pt['backend']!r}")
    if pt["summation"] != "backend":
        raise FastnnValueError("summation: recipes, inv_m and micro-batches use the backend's summation")


def _pass(ctx, bk, Ws, As, ZL, Y, pt, S, ref_nz):
    """One full gradient (all micro-batches); (grads, overflowed, saturated, counts)."""
    m, k = Y.shape[1], int(pt["micro"])
    bounds = [m * i // k for i in range(k + 1)]
    per = pt["accum"] == "per_micro"
    gprec = "f32" if pt["recipe"] in ("static_ls", "dynamic_ls") or pt["accum"] == "fp32" else "fmt"
    counts = [[0, 0, 0, 0] for _ in Ws]
    G, bad_any, sat_any = None, False, False
    for j in range(k):
        cols = slice(bounds[j], bounds[j + 1])
        c = (bounds[j + 1] - bounds[j]) if per else m
        g, bad, sat = _chunk(ctx, bk, Ws, As, ZL, Y, cols, c, S, pt, ref_nz, counts)
        bad_any, sat_any = bad_any or bad, sat_any or sat
        if G is None:
            G = [ctx.rnd(gprec, x) if gprec == "f32" else x for x in g]
        else:
            with np.errstate(all="ignore"):
                G = [ctx.rnd(gprec, np.asarray(a, np.float64) + np.asarray(b, np.float64)) for a, b in zip(G, g)]
    if per and pt["scaling"] != "sum" and k > 1:
        with np.errstate(all="ignore"):
            G = [ctx.scale(x, k, gprec) for x in G]
    return G, bad_any, sat_any, counts


def mixed_gradients(bk, fmt, Ws, bs, X, Y, pt, ref_nz=None):
    """dW, db of a point by its recipe, ``inv_m`` and micro-batching.

    Parameters
    ----------
    bk : backend or emulation
        The kernels of the format (float16/bfloat16: :class:`fastnn.backends.emulated.EmulatedBackend`).
    fmt : fastnn.backends.emulated.Format
    Ws, bs, X, Y : arrays of the format's storage, shapes as in the course
    pt : dict
        The point (every key of ``BASE``).
    ref_nz : list of bool arrays, optional
        Where the reference ``dZ[l]`` is non-zero (for the underflow counts).

    Returns
    -------
    dWs, dbs : lists, shapes of ``W[l]``, ``b[l]``
    info : dict
        ``saturated``, ``dz`` (per layer ``(under, counted, nonfinite, total)``),
        ``loss_scale`` (the S used, None without loss scaling), ``passes``.
    """
    _check(pt)
    ctx = _Ctx(fmt, pt["inv_m"])
    from .evaluate import forward_shared
    As, ZL = forward_shared(bk, Ws, bs, X, pt)
    recipe = pt["recipe"]
    S, passes = 1.0, 1
    if recipe == "static_ls":
        S = float(pt["loss_scale"])
    if recipe == "dynamic_ls":
        ctx.track = True                          # the largest stored magnitude at S = 1
        G, bad, sat, counts = _pass(ctx, bk, Ws, As, ZL, Y, pt, 1.0, None)
        ctx.track = False
        peak = ctx.peak if ctx.peak > 0 else 1.0
        S = min(LS_MAX, max(LS_MIN, 2.0 ** math.floor(math.log2(fmt.xmax / peak))))
        passes = 2
    G, bad, sat, counts = _pass(ctx, bk, Ws, As, ZL, Y, pt, S, ref_nz)
    while recipe == "dynamic_ls" and bad and S > LS_MIN:
        S /= 2
        passes += 1
        G, bad, sat, counts = _pass(ctx, bk, Ws, As, ZL, Y, pt, S, ref_nz)
    L = len(Ws)
    info = {"saturated": sat, "dz": [tuple(c) for c in counts],
            "loss_scale": S if recipe in ("static_ls", "dynamic_ls") else None, "passes": passes}
    return G[:L], G[L:], info
