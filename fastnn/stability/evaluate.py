"""Evaluation of one stability sweep point (:func:`evaluate_point`).

A point fixes the placement of the ``1/m`` (``scaling``), the number format,
``m``, the network, the data set and training stage, the output-gradient
route, the summation of the ``m`` per-example terms, the backend, the
mixed-precision recipe, how ``1/m`` is applied (``inv_m``), micro-batching
and a seed.  Its gradients are computed in its format and compared with a
higher-precision reference of the same computation (:mod:`.reference`).

Shapes are the course's: ``X`` ``(n_0, m)``, ``W[l]`` ``(n_l, n_{l-1})``,
``b[l]`` ``(n_l, 1)``, ``A[l]``, ``dZ[l]`` ``(n_l, m)``.
"""

import functools
import hashlib
import math
import time
from dataclasses import dataclass

import numpy as np

from .. import engine
from ..backends import get_backend
from ..errors import FastnnValueError, SaturationError
from ..network import SCALINGS, OUTPUT_GRADS
from . import problems
from ._dd import DD
from .formats import (DTYPES, SUMMATIONS, EmulatedBackend, _format, _mul, _round_fast,  # noqa: F401
                      chain_unchecked, weighted_sums)
from .mixed import ACCUMS, INV_M, RECIPES, mixed_gradients
from .reference import _ref_cost, reference_gradients, reference_kind

#: Parameters of one sweep point and their defaults.
BASE = {
    "scaling": "deferred", "dtype": "float32", "m": 1000, "depth": 3, "width": 8, "n_in": 8,
    "hidden": "relu", "output": "sigmoid", "output_grad": "fused", "summation": "backend",
    "backend": "numpy", "seed": 0, "steps": 20, "lr": 0.3,
    "recipe": "plain", "inv_m": "mul", "micro": 1, "accum": "global", "loss_scale": 4096.0,
    "stage": 0, "data": "teacher",
}

#: Parameters the reference depends on (scaling, route, summation, backend,
#: recipe, inv_m, micro-batching and loss scale do not change the exact gradient).
_REF_KEYS = ("dtype", "m", "depth", "width", "n_in", "hidden", "output", "seed", "steps", "lr",
             "stage", "data")


def _problem(pt):
    """Parameters and data of a point, in float64, before rounding to the format
    (see :mod:`.problems`)."""
    return problems.problem(pt)


def _gprime_nonzero(A, hidden):
    """Where g'(Z) is non-zero, judged from the computed A (float64 tests)."""
    A = np.asarray(A, dtype=np.float64)
    if hidden == "relu":
        return A > 0
    if hidden == "tanh":
        return np.abs(A) < 1
    if hidden == "sigmoid":
        return (A > 0) & (A < 1)
    return np.ones(A.shape, dtype=bool)


# --------------------------------------------------------------------------- reference

@dataclass
class _Reference:
    GW: list
    Gb: list
    dz_nonzero: list        # packed bits per layer
    shapes: list
    trajectory: list        # steps + 1 flat parameter vectors (reference dtype, or (hi, lo))
    cost_final: object      # reference-dtype scalar (None for double-double)
    kind: str


def _flat(Ws, bs, dtype):
    return np.concatenate([np.asarray(a, dtype=dtype).ravel() for a in list(Ws) + list(bs)])


def _flat_dd(Ws, bs):
    parts = list(Ws) + list(bs)
    return (np.concatenate([p.hi.ravel() for p in parts]), np.concatenate([p.lo.ravel() for p in parts]))


def _ref_precision(fmt):
    """(kind, dtype-or-kind) of the reference for a format."""
    if fmt.name != "float64":
        return "float64", np.float64
    kind = reference_kind()
    return kind, (np.longdouble if kind == "longdouble" else "double-double")


@functools.lru_cache(maxsize=6)
def _reference(ref_key, kind_override=None):
    """The reference of a point, shared by every scaling, recipe, route, summation, backend."""
    pt = dict(ref_key)
    fmt = _format(pt["dtype"])
    kind, P = _ref_precision(fmt)
    Ws, bs, X, Y = _rounded_problem(ref_key)
    hidden, output = pt["hidden"], pt["output"]
    m, steps = X.shape[1], int(pt["steps"])
    if kind == "double-double":
        GW, Gb, nz, _ = reference_gradients(Ws, bs, X, Y, hidden, output, P)
        Wt, bt = [DD(W) for W in Ws], [DD(b) for b in bs]
        traj = [_flat_dd(Wt, bt)]
        for _ in range(steps):
            gW, gb, _, _ = reference_gradients(Wt, bt, X, Y, hidden, output, P)
            Wt = [W - (G / float(m)) * float(pt["lr"]) for W, G in zip(Wt, gW)]
            bt = [b - (G / float(m)) * float(pt["lr"]) for b, G in zip(bt, gb)]
            traj.append(_flat_dd(Wt, bt))
        cost = None
    else:
        Ws = [np.asarray(W, P) for W in Ws]
        bs = [np.asarray(b, P) for b in bs]
        X, Y = np.asarray(X, P), np.asarray(Y, P)
        GW, Gb, nz, _ = reference_gradients(Ws, bs, X, Y, hidden, output, P)
        lr = P(pt["lr"])
        traj = [_flat(Ws, bs, P)]
        Wt, bt = [W.copy() for W in Ws], [b.copy() for b in bs]
        for _ in range(steps):
            gW, gb, _, _ = reference_gradients(Wt, bt, X, Y, hidden, output, P)
            for W, G in zip(Wt, gW):
                W -= lr * (G / m)
            for b, G in zip(bt, gb):
                b -= lr * (G / m)
            traj.append(_flat(Wt, bt, P))
        cost = _ref_cost(Wt, bt, X, Y, hidden, output, P) if steps else math.nan
    return _Reference(GW, Gb, [np.packbits(z.ravel()) for z in nz], [z.shape for z in nz],
                      traj, cost, kind)


_FWD = {}


def forward_shared(bk, Ws, bs, X, pt):
    """The forward pass ``(As, ZL)``; points that share their reference key and
    backend (every scaling, recipe, route of one problem) share one forward
    pass while ``pt["_fwd_key"]`` is set (one entry kept)."""
    key = pt.get("_fwd_key")
    if key is not None and key in _FWD:
        return _FWD[key]
    with np.errstate(all="ignore"):
        res = engine.forward(bk, Ws, bs, X, pt["hidden"], pt["output"])
    if key is not None:
        _FWD.clear()
        _FWD[key] = res
    return res


@functools.lru_cache(maxsize=1)
def _rounded_problem(ref_key):
    fmt = _format(dict(ref_key)["dtype"])
    return tuple(_round_all(v, fmt) for v in _problem(dict(ref_key)))


def _round_all(v, fmt):
    if isinstance(v, list):
        return [np.asarray(fmt.array(a), dtype=np.float64) for a in v]
    return np.asarray(fmt.array(v), dtype=np.float64)


# --------------------------------------------------------------------------- the run

def _backend(pt, fmt):
    if not fmt.native:
        if pt["backend"] != "numpy":
            raise FastnnValueError(f"backend: {fmt.name} is emulated on the numpy backend only, "
                                   f"got {pt['backend']!r}")
        return EmulatedBackend(fmt.name)
    bk = get_backend(pt["backend"])
    if fmt.storage not in bk.DTYPES:
        raise FastnnValueError(f"backend {bk.NAME!r} does not support {fmt.name}")
    return bk


class _FormatScalars:
    """Stands for a NumPy dtype in :func:`fastnn.engine.scales` (the one scaling table).

    Its ``type`` rounds a scalar to the format (``fmt.scalar``), so an emulated
    format gets its own ``1/m`` and a native one exactly ``dtype.type(1/m)``.
    """

    def __init__(self, fmt):
        self.type = fmt.scalar


def _check_point(pt):
    for key, allowed in (("scaling", SCALINGS), ("output_grad", OUTPUT_GRADS),
                         ("summation", SUMMATIONS)):
        if pt[key] not in allowed:
            raise FastnnValueError(f"{key}: unknown {pt[key]!r}; expected one of {allowed}")


def _dz_counts(dZ, rz, A, hidden):
    """``(under, counted, nonfinite, total)`` of one layer's ``dZ``: ``counted`` the
    entries where the reference ``dZ`` (``rz``) is non-zero and, for a hidden layer
    (``A`` its activations; None for the output layer), ``g'(Z)`` is too; ``under``
    those of them that are 0 here."""
    counted = rz if A is None else rz & _gprime_nonzero(A, hidden)
    with np.errstate(invalid="ignore"):
        under = (dZ == 0) & counted
    return int(under.sum()), int(counted.sum()), int((~np.isfinite(dZ)).sum()), int(dZ.size)


def _output_layer(bk, fmt, ZL, AL, Y, pt, dz_scale, db_scale):
    """``(dZ[L], db[L], saturated)`` by the point's route; ``db`` None when the
    chain route saturated (its ``dZ`` then computed unchecked)."""
    if pt["output_grad"] != "chain":
        return bk.output_delta(ZL, AL, Y, pt["output"], dz_scale, db_scale)[:2] + (False,)
    try:
        return bk.output_delta_chain(ZL, AL, Y, pt["output"], dz_scale, db_scale)[:2] + (False,)
    except SaturationError:
        return chain_unchecked(bk, fmt, AL, Y, pt["output"], dz_scale), None, True


def _run_gradients(bk, fmt, Ws, bs, X, Y, pt, ref_nz=None):
    """dW, db of one point's configuration; with ``ref_nz`` also dZ underflow counts.

    The engine's backward pass (:func:`fastnn.engine.backward_from_delta`) from
    the point's output delta; its per-layer hook sums each ``dW``, ``db`` as the
    point's ``summation`` says and counts the ``dZ`` entries.

    Returns ``(dWs, dbs, info)``; info has ``saturated`` and, when ``ref_nz``
    is given, per-layer ``(dz_underflow, dz_counted, dz_nonfinite, dz_total)``.
    """
    _check_point(pt)
    hidden, summation = pt["hidden"], pt["summation"]
    m, L = X.shape[1], len(Ws)
    dz_scale, w_scale = engine.scales(pt["scaling"], m, _FormatScalars(fmt))
    As, ZL = forward_shared(bk, Ws, bs, X, pt)
    dZ, db, saturated = _output_layer(bk, fmt, ZL, As[-1], Y, pt, dz_scale, w_scale)
    info = {"saturated": saturated, "dz": []}
    dWs, dbs = [None] * L, [None] * L
    ones = np.ones((1, m), dtype=np.float64 if not fmt.native else fmt.storage)

    def hook(layer, arrays):
        l, dZ, db = layer - 1, arrays["dZ"], arrays["db"]
        if ref_nz is not None:
            info["dz"].append(_dz_counts(dZ, ref_nz[l], None if l == L - 1 else As[l + 1], hidden))
        if summation == "backend" and db is not None:
            dWs[l] = bk.weight_grad(dZ, As[l], Ws[l], w_scale, 0)
            dbs[l] = db
        else:
            method = "pairwise" if summation == "backend" else summation
            dWs[l] = _mul(fmt, weighted_sums(dZ, As[l], method, fmt.name), w_scale)
            dbs[l] = _mul(fmt, weighted_sums(dZ, ones, method, fmt.name), w_scale)

    with np.errstate(all="ignore"):
        engine.backward_from_delta(bk, Ws, As, dZ, db, hidden, w_scale, hook=hook)
    info["dz"].reverse()
    return dWs, dbs, info


def _errors(g, r):
    """(norm-wise, max-norm, entrywise max) relative errors of g against r
    (an array, or a double-double ``DD``: then ``(g - hi) - lo`` in float64)."""
    g = np.asarray(g)
    if not np.isfinite(g).all():
        return math.inf, math.inf, math.inf
    if isinstance(r, DD):
        d = np.abs((g.astype(np.float64) - r.hi) - r.lo)
        r = r.hi
    else:
        d = np.abs(g.astype(r.dtype) - r)
    rn = np.sqrt(np.sum(r * r))
    dn = np.sqrt(np.sum(d * d))
    if rn == 0:
        return (0.0, 0.0, 0.0) if dn == 0 else (math.inf, math.inf, math.inf)
    ra = np.abs(r)
    nzm = ra > 0
    elem = float(np.max(d[nzm] / ra[nzm])) if nzm.any() else 0.0
    if (d[~nzm] > 0).any():
        elem = math.inf
    return float(dn / rn), float(d.max() / ra.max()), elem


def relative_errors(g, r):
    """Relative errors of a computed array against its reference.

    Parameters
    ----------
    g : numpy.ndarray, any shape
        Computed values (any floating dtype).
    r : numpy.ndarray or double-double ``DD``, shape of ``g``
        Reference values, in a precision at least that of ``g``.

    Returns
    -------
    dict
        ``"norm"``: ``||g - r||_2 / ||r||_2``; ``"max"``: ``max|g - r| / max|r|``;
        ``"elem"``: ``max_i |g_i - r_i| / |r_i|`` over ``r_i != 0`` (``inf`` when an
        entry with ``r_i == 0`` is not zero).  All ``inf`` when ``g`` has inf/NaN.
    """
    if isinstance(r, DD):
        n, mx, el = _errors(g, r)
        return {"norm": n, "max": mx, "elem": el}
    r = np.asarray(r)
    if r.dtype not in (np.float64, np.longdouble):
        r = r.astype(np.float64)
    n, mx, el = _errors(g, r)
    return {"norm": n, "max": mx, "elem": el}


def evaluate_point(point):
    """Measure one sweep point against its higher-precision reference.

    Parameters
    ----------
    point : dict
        The keys of :data:`BASE` (missing ones take its defaults).

    Returns
    -------
    dict
        ``err_dW``/``err_db``: per-layer norm-wise relative errors (layer 1
        first), ``err_dW_max``/``err_db_max``: per-layer ``max|g-r|/max|r|``,
        ``err_dW_elem``/``err_db_elem``: per-layer entrywise maxima;
        ``underflow``: fraction of ``dW``, ``db`` entries that are 0 where the
        reference is non-zero; ``subnormal``: fraction below the smallest normal;
        ``overflow``: fraction that is inf/NaN (the reference is always finite);
        ``dz_underflow``/``dz_overflow``: the same for the ``dZ[l]`` entries
        (zeros from ``g'(Z) = 0`` excluded); ``saturated``: the chain route's
        output saturated; training: ``drift_max``, ``drift_final`` (relative
        parameter distance to the reference trajectory), ``cost_drift``
        (relative difference of the final cost, both evaluated in the
        reference precision), ``steps_done``; ``ref``: the reference
        (``"float64"``, ``"longdouble"`` or ``"double-double"``);
        ``loss_scale``: the loss scale used (loss-scaling recipes), ``passes``:
        gradient passes it took.
    """
    with np.errstate(all="ignore"):
        return _evaluate(point)


def _evaluate(point):
    t0 = time.perf_counter()
    pt = {**BASE, **point}
    fmt = _format(pt["dtype"])
    bk = _backend(pt, fmt)
    ref_key = tuple((k, pt[k]) for k in _REF_KEYS)
    ref = _reference(ref_key, _ref_precision(fmt)[0])
    m = int(pt["m"])
    Ws, bs, X, Y = _rounded_problem(ref_key)
    pt["_fwd_key"] = (ref_key, pt["backend"], _ref_precision(fmt)[0])
    dev = (lambda a: bk.to_device(a.astype(fmt.storage))) if fmt.native else (lambda a: a.copy())
    Wd, bd, Xd, Yd = [dev(W) for W in Ws], [dev(b) for b in bs], dev(X), dev(Y)
    nz = [np.unpackbits(p, count=int(np.prod(s))).reshape(s).astype(bool)
          for p, s in zip(ref.dz_nonzero, ref.shapes)]
    dWs, dbs, info = _gradients(bk, fmt, Wd, bd, Xd, Yd, pt, nz)
    div = 1 if pt["scaling"] == "sum" else m
    out = {k: [] for k in ("err_dW", "err_db", "err_dW_max", "err_db_max", "err_dW_elem", "err_db_elem")}
    under = counted = sub = nonfinite = total = 0
    for g_list, r_list, name in ((dWs, ref.GW, "dW"), (dbs, ref.Gb, "db")):
        for g, rG in zip(g_list, r_list):
            g = bk.to_host(g)
            r = rG / (float(div) if isinstance(rG, DD) else rG.dtype.type(div))
            n, mx, el = _errors(g, r)
            r = r.hi if isinstance(r, DD) else r
            out[f"err_{name}"].append(n)
            out[f"err_{name}_max"].append(mx)
            out[f"err_{name}_elem"].append(el)
            rnz = r != 0
            gf = np.asarray(g, dtype=np.float64)
            under += int(((gf == 0) & rnz).sum())
            sub += int(((gf != 0) & (np.abs(gf) < fmt.tiny) & rnz).sum())
            counted += int(rnz.sum())
            nonfinite += int((~np.isfinite(gf)).sum())
            total += gf.size
    out["underflow"] = under / counted if counted else 0.0
    out["subnormal"] = sub / counted if counted else 0.0
    out["overflow"] = nonfinite / total
    dz = info["dz"]
    out["dz_underflow_layers"] = [u / c if c else 0.0 for u, c, _, _ in dz]
    out["dz_underflow"] = sum(u for u, _, _, _ in dz) / max(1, sum(c for _, c, _, _ in dz))
    out["dz_overflow"] = sum(f for _, _, f, _ in dz) / max(1, sum(t for _, _, _, t in dz))
    out["saturated"] = info["saturated"]
    out["loss_scale"] = info.get("loss_scale")
    out["passes"] = info.get("passes", 1)
    digest = hashlib.sha256()
    for g in dWs + dbs:
        digest.update(np.ascontiguousarray(bk.to_host(g)).tobytes())
    out["grad_sha"] = digest.hexdigest()[:16]
    out.update(_train(bk, fmt, Wd, bd, Xd, Yd, pt, ref))
    out["ref"] = ref.kind
    out["elapsed_s"] = round(time.perf_counter() - t0, 4)
    return out


def _train(bk, fmt, Ws, bs, X, Y, pt, ref):
    """N steps of full-batch gradient descent in the point's format and configuration."""
    steps = int(pt["steps"])
    if steps <= 0:
        return {"drift_max": None, "drift_final": None, "cost_drift": None, "steps_done": 0}
    P = np.longdouble if ref.kind == "longdouble" else np.float64
    m = X.shape[1]
    lr = fmt.scalar(pt["lr"] / m if pt["scaling"] == "sum" else pt["lr"])
    Ws = [W.copy() for W in Ws]
    bs = [b.copy() for b in bs]
    master = _uses_master(pt, fmt)
    if master:                                # float32 master weights, the format's copy for the passes
        lr32 = float(np.float32(pt["lr"] / m if pt["scaling"] == "sum" else pt["lr"]))
        Ms = [np.asarray(a, np.float64) for a in Ws + bs]
    drift = []
    done = 0
    for t in range(steps):
        with np.errstate(all="ignore"):
            dWs, dbs, _ = _gradients(bk, fmt, Ws, bs, X, Y, {**pt, "_fwd_key": None})
        grads = dWs + dbs
        if not all(np.isfinite(bk.to_host(g)).all() for g in grads):
            break
        if master:
            with np.errstate(all="ignore"):
                Ms = [_f32(Mp - _f32(lr32 * np.asarray(G, np.float64))) for Mp, G in zip(Ms, grads)]
            for Pm, Mp in zip(Ws + bs, Ms):
                Pm[...] = fmt.array(Mp)
        else:
            for Pm, G in zip(Ws + bs, grads):
                with np.errstate(all="ignore"):
                    bk.sgd_update(Pm, G, lr)
        done = t + 1
        state = Ms if master else [bk.to_host(a) for a in Ws + bs]
        th = np.concatenate([np.asarray(a, np.float64 if ref.kind == "double-double" else P).ravel()
                             for a in state])
        if not np.isfinite(th).all():
            drift.append(math.inf)
            break
        drift.append(_drift(th, ref.trajectory[t + 1]))
    if done < steps:
        return {"drift_max": math.inf, "drift_final": math.inf, "cost_drift": math.inf, "steps_done": done}
    if ref.cost_final is None:
        return {"drift_max": max(drift), "drift_final": drift[-1], "cost_drift": None, "steps_done": done}
    Xh, Yh = np.asarray(bk.to_host(X), np.float64), np.asarray(bk.to_host(Y), np.float64)
    cost = _ref_cost([bk.to_host(W) for W in Ws], [bk.to_host(b) for b in bs], Xh, Yh,
                     pt["hidden"], pt["output"], P)
    return {"drift_max": max(drift), "drift_final": drift[-1],
            "cost_drift": float(abs(cost - ref.cost_final) / abs(ref.cost_final)) if ref.cost_final else math.nan,
            "steps_done": done}


def _f32(x):
    return np.asarray(x, np.float64).astype(np.float32).astype(np.float64)


def _uses_master(pt, fmt):
    return pt["recipe"] != "plain" and not fmt.native


def _drift(th, rt):
    if isinstance(rt, tuple):
        hi, lo = rt
        return float(np.linalg.norm((th - hi) - lo) / np.linalg.norm(hi))
    return float(np.linalg.norm(th - rt) / np.linalg.norm(rt))


def _is_mixed(pt):
    return pt["recipe"] != "plain" or pt["inv_m"] != "mul" or int(pt["micro"]) != 1


def _gradients(bk, fmt, Ws, bs, X, Y, pt, ref_nz=None):
    """The plain path through the backend's kernels, or :func:`.mixed.mixed_gradients`."""
    if _is_mixed(pt):
        return mixed_gradients(bk, fmt, Ws, bs, X, Y, pt, ref_nz)
    return _run_gradients(bk, fmt, Ws, bs, X, Y, pt, ref_nz)
