"""Building each section of :class:`ExplainResult`, and :func:`explain`, which puts them together.

Every analytic number here comes from fastnn's own passes (:mod:`.problem`);
every numerical one from the central differences of :mod:`.checks`.
"""

import math

import numpy as np

from .. import engine
from ..activations import LEAKY_SLOPE, OUTPUT_LOSS
from ..backends import numpy_backend as _nb
from ..errors import SaturationError
from ..network import cost, gradients
from ._format import _matrix, _num, _paren, _shape
from .checks import (FD_NOISE_C, FD_STEP, KINK_MARGIN, KINK_REDRAWS, TOL_EXACT, TOL_F32, TOL_FD, Check,
                     _fd_check, _FiniteDiff, _rel)
from .problem import _check_args, _make_problem, _record_backward
from .result import (BackwardLayer, Conventions, EveryLayerRow, ExplainResult, ForwardStep, IndexSum, Line,
                     OneExample, OutputLayer, Quantity)

_GPRIME = {
    "identity": "1",
    "sigmoid": "A[{l}] * (1 - A[{l}])",
    "tanh": "1 - A[{l}]**2",
    "relu": "(Z[{l}] > 0)",
    "leaky_relu": f"where(Z[{{l}}] > 0, 1, {LEAKY_SLOPE})",
}
_LOSS_FORMULA = {
    "sigmoid": "L_i = -sum_k [Y[k,i] log A[L][k,i] + (1 - Y[k,i]) log(1 - A[L][k,i])]",
    "softmax": "L_i = -sum_k Y[k,i] log A[L][k,i]",
    "identity": "L_i = (1/2) sum_k (A[L][k,i] - Y[k,i])**2",
}



def _objective_text(scaling, l2):
    reg = " + (l2/(2m)) sum_l ||W[l]||^2" if l2 else ""
    if scaling == "sum":
        return f"S = sum_i L_i{reg}"
    return f"J = (1/m) sum_i L_i{reg}"


def _backward_texts(scaling, l, L, l2, hidden, is_output):
    """(formula, derivative_of, one_over_m) for dZ, dW, db, dA of layer l."""
    reg = f" + (l2/m) W[{l}]" if l2 else ""
    reg_note = f"; the L2 term adds (l2/m) W[{l}]" if l2 else ""
    gp = _GPRIME[hidden].format(l=l)
    if is_output:
        dz = f"dZ[{l}] = (1/m) (A[{l}] - Y)" if scaling == "absorbed" else f"dZ[{l}] = A[{l}] - Y"
    elif hidden == "identity":
        dz = f"dZ[{l}] = dA[{l}] * g'(Z[{l}]), g' = 1"
    else:
        dz = f"dZ[{l}] = dA[{l}] * g'(Z[{l}]), g'(Z[{l}]) = {gp}"
    if scaling == "deferred":
        f_dw = f"dW[{l}] = (1/m) dZ[{l}] @ A[{l - 1}].T{reg}"
        f_db = f"db[{l}] = (1/m) sum(dZ[{l}], axis=1)"
    else:
        f_dw = f"dW[{l}] = dZ[{l}] @ A[{l - 1}].T{reg}"
        f_db = f"db[{l}] = sum(dZ[{l}], axis=1)"
    f_da = f"dA[{l - 1}] = W[{l}].T @ dZ[{l}]"
    if scaling == "deferred":
        of = (f"m * dJ/dZ[{l}] = d(sum_i L_i)/dZ[{l}]", f"dJ/dW[{l}]", f"dJ/db[{l}]",
              f"m * dJ/dA[{l - 1}] = d(sum_i L_i)/dA[{l - 1}]")
        where = ("none: deferred to every dW, db" if is_output else "none: dZ stays m * dJ/dZ",
                 "here: (1/m) times the sum over the m columns" + reg_note,
                 "here: (1/m) times the sum over the m columns",
                 "none: dA stays m * dJ/dA")
    elif scaling == "absorbed":
        of = (f"dJ/dZ[{l}]", f"dJ/dW[{l}]", f"dJ/db[{l}]", f"dJ/dA[{l - 1}]")
        where = ("here, once: (1/m)(A - Y); every earlier quantity inherits it" if is_output
                 else f"inherited from dZ[{L}] through dA[{l}]; none added",
                 f"none added: already inside dZ[{l}]" + reg_note,
                 f"none added: already inside dZ[{l}]",
                 f"inherited from dZ[{l}]; none added")
    else:
        of = (f"dS/dZ[{l}]", f"dS/dW[{l}]", f"dS/db[{l}]", f"dS/dA[{l - 1}]")
        where = ("none (gradient of the summed loss)", "none" + (f"; only the L2 term (l2/m) W[{l}]" if l2 else ""),
                 "none", "none")
    return (dz, f_dw, f_db, f_da), of, where


def _backward_section(grads, fd, Ws, As, Y, hidden, output, scaling, l2):
    L, m = len(Ws), fd.m
    objective = "S" if scaling == "sum" else "J"
    layers = []
    for l in range(L, 0, -1):
        is_out = l == L
        formulas, of, where = _backward_texts(scaling, l, L, l2, hidden, is_out)
        dZ, dW, db, dA = grads.dZ[l], grads.dW[l], grads.db[l], grads.dA[l - 1]
        A_prev = As[l - 1]
        if is_out:
            z_shapes = f"{_shape(dZ)} = {_shape(As[l])} - {_shape(Y)}"
        else:
            z_shapes = f"{_shape(dZ)} = {_shape(grads.dA[l])} * {_shape(As[l])}"
        shapes = (z_shapes,
                  f"{_shape(dW)} = {_shape(dZ)} @ {_shape(A_prev.T)}",
                  f"{_shape(db)} = sum({_shape(dZ)}, axis=1)",
                  f"{_shape(dA)} = {_shape(Ws[l - 1].T)} @ {_shape(dZ)}")
        zfac = m if scaling == "deferred" else 1
        specs = ((f"dZ[{l}]", dZ, "Z", l, zfac), (f"dW[{l}]", dW, "W", l, 1),
                 (f"db[{l}]", db, "b", l, 1), (f"dA[{l - 1}]", dA, "A", l - 1, zfac))
        qs = []
        for i, (name, value, var, idx, fac) in enumerate(specs):
            num, check = _fd_check(fd, value, objective, var, idx, fac)
            qs.append(Quantity(name, formulas[i], shapes[i], of[i], where[i], value, num, check))
        if is_out:
            title = f"Layer {l} (output: {output} + {OUTPUT_LOSS[output]})"
        else:
            title = f"Layer {l} (hidden: {hidden})"
        if l == 1:
            title += "; dA[0] = d/dX is never used in training, shown for completeness"
        layers.append(BackwardLayer(l, title, qs))
    return layers


def _forward_section(Ws, bs, As, Zs, hidden, output):
    L = len(Ws)
    steps = []
    for l in range(1, L + 1):
        act = output if l == L else hidden
        W, b, A_prev, Z, A = Ws[l - 1], bs[l - 1], As[l - 1], Zs[l], As[l]
        a_formula = f"A[{l}] = {act}(Z[{l}])" + (" (over each column)" if act == "softmax" else "")
        steps.append(ForwardStep(
            l, act, f"Z[{l}] = W[{l}] @ A[{l - 1}] + b[{l}]",
            f"{_shape(Z)} = {_shape(W)} @ {_shape(A_prev)} + {_shape(b)}",
            f"b[{l}] {_shape(b)} broadcast over {Z.shape[1]} columns",
            a_formula, f"{_shape(A)} = {act}({_shape(Z)})", W, b, A_prev, Z, A))
    return steps


def _one_example_section(Ws, bs, X, Y, grads, hidden, output, scaling, l2):
    L, m = len(Ws), X.shape[1]
    col = 0
    # Per-example gradients: the same passes on one column (m = 1: no 1/m anywhere).
    per = []
    for i in range(m):
        Xi, Yi = np.ascontiguousarray(X[:, i:i + 1]), np.ascontiguousarray(Y[:, i:i + 1])
        As_i, ZL_i = engine.forward(_nb, Ws, bs, Xi, hidden, output)
        per.append((As_i, _record_backward(Ws, As_i, ZL_i, Yi, hidden, output, "sum", 0.0)))
    As0, g0 = per[0]
    dz, a_prev, dw, db = g0.dZ[L], As0[L - 1], g0.dW[L], g0.db[L]
    per_example = [
        Line(f"dz[{L}]", f"dz[{L}] = a[{L}] - y", _shape(dz), _matrix(dz)),
        Line(f"a[{L - 1}]", f"a[{L - 1}] = column {col} of A[{L - 1}]", _shape(a_prev), _matrix(a_prev)),
        Line(f"dw[{L}]", f"dw[{L}] = dz[{L}] @ a[{L - 1}].T",
             f"{_shape(dw)} = {_shape(dz)} @ {_shape(a_prev.T)}", _matrix(dw)),
        Line(f"db[{L}]", f"db[{L}] = dz[{L}]", _shape(db), _matrix(db)),
    ]
    reduce_name = "sum" if scaling == "sum" else "mean"
    rule = {"deferred": "dW[l] = (1/m) dZ[l] @ A[l-1].T = (1/m) sum_i dz_i a_i.T: the mean of the m per-example dw",
            "absorbed": "dW[l] = dZ[l] @ A[l-1].T = sum_i ((1/m) dz_i) a_i.T: the mean of the m per-example dw",
            "sum": "dW[l] = dZ[l] @ A[l-1].T = sum_i dz_i a_i.T: the sum of the m per-example dw"}[scaling]
    if l2:
        rule += " (plus the L2 term (l2/m) W[l], which belongs to no example)"
    zscale = 1.0 / m if scaling == "absorbed" else 1.0
    batch_col = grads.dZ[L][:, col:col + 1]
    ztext = f"dZ[{L}][:, {col}] = (1/m) dz[{L}]" if scaling == "absorbed" else f"dZ[{L}][:, {col}] = dz[{L}]"
    lines = [Line(f"dZ[{L}][:, {col}]", ztext, _shape(batch_col), _matrix(batch_col),
                  Check(f"batch dZ[{L}] column {col} against the per-example dz", _rel(batch_col, zscale * dz),
                        TOL_EXACT))]
    for l in range(L, 0, -1):
        dws = np.stack([g.dW[l] for _, g in per])
        dbs = np.stack([g.db[l] for _, g in per])
        red_w = dws.sum(axis=0) if scaling == "sum" else dws.mean(axis=0)
        red_b = dbs.sum(axis=0) if scaling == "sum" else dbs.mean(axis=0)
        data_w = grads.dW[l] - (l2 / m) * Ws[l - 1] if l2 else grads.dW[l]
        wt = f"dW[{l}] - (l2/m) W[{l}]" if l2 else f"dW[{l}]"
        lines.append(Line(f"dW[{l}]", f"{wt} = {reduce_name}_i dw_i[{l}]",
                          f"{_shape(grads.dW[l])} = {reduce_name} of {m} x {_shape(dws[0])}", "",
                          Check(f"batch dW[{l}] against the {reduce_name} of per-example dw", _rel(data_w, red_w),
                                TOL_EXACT)))
        lines.append(Line(f"db[{l}]", f"db[{l}] = {reduce_name}_i db_i[{l}]",
                          f"{_shape(grads.db[l])} = {reduce_name} of {m} x {_shape(dbs[0])}", "",
                          Check(f"batch db[{l}] against the {reduce_name} of per-example db", _rel(grads.db[l], red_b),
                                TOL_EXACT)))
    sums = [_index_sum_dw(Ws, grads, per, L, scaling, l2, m)]
    lda = max(range(1, L + 1), key=lambda k: (Ws[k - 1].shape[0], k))
    sums.append(_index_sum_da(Ws, grads, lda))
    return OneExample(L, col, per_example, rule, lines, sums)


def _terms_text(pairs):
    parts = [f"{_paren(a)}*{_paren(b)}" for a, b in pairs]
    if len(parts) > 6:
        parts = parts[:3] + ["..."] + parts[-2:]
    return " + ".join(parts)


def _index_sum_dw(Ws, grads, per, l, scaling, l2, m):
    dZ = grads.dZ[l]
    A_prev = np.concatenate([p[0][l - 1] for p in per], axis=1)
    # Row 0, and the column whose entry is largest (an entry whose terms cancel to ~0
    # would hide the point).
    data = grads.dW[l] - (l2 / m) * Ws[l - 1]
    r, c = 0, int(np.argmax(np.abs(data[0])))
    pairs = [(dZ[r, i], A_prev[c, i]) for i in range(m)]
    total = math.fsum(a * b for a, b in pairs)
    entry = f"dW[{l}][{r},{c}]"
    pre, scale = ("(1/m) ", 1.0 / m) if scaling == "deferred" else ("", 1.0)
    index_form = f"{entry} = {pre}sum_i dZ[{l}][{r},i] * A[{l - 1}][{c},i]"
    numbers = (f"({1}/{m}) * " if scaling == "deferred" else "") + f"({_terms_text(pairs)})"
    value = scale * total
    mags = scale * math.fsum(abs(a * b) for a, b in pairs)
    if l2:
        w = Ws[l - 1][r, c]
        index_form += f" + (l2/m) W[{l}][{r},{c}]"
        numbers += f" + ({l2:g}/{m})*{_paren(w)}"
        value += l2 / m * w
        mags += abs(l2 / m * w)
    got = float(grads.dW[l][r, c])
    why = (f"the sum runs over the example index i, the column index of both dZ[{l}] and A[{l - 1}]; "
           f"a matrix product sums over the columns of its left factor and the rows of its right "
           f"factor, so A[{l - 1}] enters transposed: dZ[{l}] @ A[{l - 1}].T, "
           f"{_shape(dZ)} @ {_shape(A_prev.T)} = {_shape(grads.dW[l])}, the shape of W[{l}]")
    err = abs(value - got) / mags if mags else abs(value - got)
    return IndexSum(entry, index_form, numbers, value, got, why,
                    Check(f"the index sum against the matrix entry {entry}", err, TOL_EXACT))


def _index_sum_da(Ws, grads, l):
    W, dZ, dA = Ws[l - 1], grads.dZ[l], grads.dA[l - 1]
    j, i = (1 if W.shape[1] > 1 else 0), 0
    pairs = [(W[k, j], dZ[k, i]) for k in range(W.shape[0])]
    value = math.fsum(a * b for a, b in pairs)
    mags = math.fsum(abs(a * b) for a, b in pairs)
    entry = f"dA[{l - 1}][{j},{i}]"
    got = float(dA[j, i])
    why = (f"here the sum runs over k, the FIRST (row) index of W[{l}] and of dZ[{l}]; as a matrix "
           f"product that is W[{l}].T @ dZ[{l}], {_shape(W.T)} @ {_shape(dZ)} = {_shape(dA)}, "
           f"the shape of A[{l - 1}]")
    err = abs(value - got) / mags if mags else abs(value - got)
    return IndexSum(entry, f"{entry} = sum_k W[{l}][k,{j}] * dZ[{l}][k,{i}]", _terms_text(pairs), value, got,
                    why, Check(f"the index sum against the matrix entry {entry}", err, TOL_EXACT))


def _ratio_range(a, b):
    mask = b != 0
    if not mask.any():
        return None
    r = a[mask] / b[mask]
    return float(r.min()), float(r.max())


def _conventions_section(Ws, As, ZL, Y, fd, hidden, output, l2):
    L, m = len(Ws), fd.m
    runs = {s: _record_backward(Ws, As, ZL, Y, hidden, output, s, l2) for s in ("deferred", "absorbed")}
    d, a = runs["deferred"], runs["absorbed"]
    lines = []
    for l in range(L, 0, -1):
        for name, x, y in ((f"dZ[{l}]", d.dZ[l], a.dZ[l]), (f"dA[{l - 1}]", d.dA[l - 1], a.dA[l - 1])):
            rng = _ratio_range(x, y)
            if rng is None:
                lines.append(Line(name, "deferred / absorbed", _shape(x), "all entries are 0", None))
                continue
            detail = _num(rng[0], 6) if _num(rng[0], 6) == _num(rng[1], 6) else \
                f"{_num(rng[0], 6)} .. {_num(rng[1], 6)}"
            lines.append(Line(name, "deferred = m * absorbed", _shape(x),
                              f"entrywise ratio {detail}, m = {m}",
                              Check(f"{name} deferred against m times {name} absorbed", _rel(x, m * y), TOL_EXACT)))
        for name, x, y in ((f"dW[{l}]", d.dW[l], a.dW[l]), (f"db[{l}]", d.db[l], a.db[l])):
            lines.append(Line(name, "deferred = absorbed", _shape(x), "",
                              Check(f"{name} deferred against absorbed", _rel(x, y), TOL_EXACT)))
    notes = [
        "deferred: dZ[L] = A - Y is d(sum_i L_i)/dZ[L]; every dZ, dA stays m * dJ/d(.), and each dW, db "
        "applies the 1/m itself.",
        "absorbed: dZ[L] = (1/m)(A - Y) = dJ/dZ[L]; the chain rule carries that one 1/m into every "
        "dA and dZ, so dW, db need none.",
        "sum: the same dZ as deferred, with dW, db m times larger (the gradient of sum_i L_i).",
    ]
    wrong = _record_backward(Ws, As, ZL, Y, hidden, output, "absorbed", l2, hidden_extra=1.0 / m)
    # The factor is measured on the data term alone (l2 = 0): subtracting (l2/m) W would cancel.
    a0 = _record_backward(Ws, As, ZL, Y, hidden, output, "absorbed", 0.0)
    wrong0 = _record_backward(Ws, As, ZL, Y, hidden, output, "absorbed", 0.0, hidden_extra=1.0 / m)
    rows = []
    for l in range(L, 0, -1):
        _, vs_fd = _fd_check(fd, wrong.dW[l], "J", "W", l)
        verdict = "right" if vs_fd.passed else "wrong"
        n_true, n_wrong = np.linalg.norm(a0.dW[l]), np.linalg.norm(wrong0.dW[l])
        exp = float(m) ** (L - l)
        text = f"{m}^{L - l} = {_num(exp, 12)}"
        if n_wrong == 0 or n_true == 0:
            rows.append(EveryLayerRow(l, vs_fd.rel_err, verdict, float("nan"), text, exp, None))
            continue
        factor = float(n_true / n_wrong)
        rows.append(EveryLayerRow(
            l, vs_fd.rel_err, verdict, factor, text, exp,
            Check(f"||dW[{l}]|| (absorbed, checked above) / ||dW[{l}] with 1/m in every layer|| against m^(L-l)",
                  abs(factor - exp) / exp, TOL_EXACT)))
    note = ("1/m in every layer: absorbed's dZ[L] = (1/m)(A - Y), then another 1/m in each hidden "
            "dZ[l] = (1/m) dA[l] * g'(Z[l]). Layer l picks up L - l extra factors, so its dW[l] is "
            "too small by m^(L-l): right at the output layer only.")
    return Conventions(lines, notes, rows, note)


def _output_section(Ws, bs, X, Y, As, ZL, hidden, output, scaling, l2):
    L = len(Ws)
    chain = {
        "sigmoid": f"dA[{L}] = -(Y/A[{L}] - (1-Y)/(1-A[{L}])); dZ[{L}] = dA[{L}] * A[{L}] * (1 - A[{L}])",
        "softmax": f"dA[{L}] = -Y/A[{L}]; dZ[{L}] = A[{L}] * (dA[{L}] - sum(A[{L}] * dA[{L}], axis=0))",
        "identity": f"dA[{L}] = A[{L}] - Y; dZ[{L}] = dA[{L}] * 1",
    }[output]
    zs = "(1/m) " if scaling == "absorbed" else ""
    fused = f"dZ[{L}] = {zs}(A[{L}] - Y)" if zs else f"dZ[{L}] = A[{L}] - Y"
    g_f = _record_backward(Ws, As, ZL, Y, hidden, output, scaling, l2, "fused")
    g_c = _record_backward(Ws, As, ZL, Y, hidden, output, scaling, l2, "chain")
    lines = [
        Line("chain", chain, _shape(g_c.dZ[L]), ""),
        Line("fused", fused, _shape(g_f.dZ[L]), ""),
        Line(f"dZ[{L}]", "chain = fused", _shape(g_f.dZ[L]), "on the float64 data above",
             Check(f"dZ[{L}] by the chain route against the fused route", _rel(g_c.dZ[L], g_f.dZ[L]), TOL_EXACT)),
    ]
    if output == "identity":
        return OutputLayer(lines, [], [
            "The identity output has no division (dA[L] = A - Y, g' = 1): the two routes are "
            "the same computation and nothing can saturate."])
    bs_s, Y_s, setup = _saturate(bs, Y, ZL, output)
    saturated = _saturated_lines(Ws, bs_s, X, Y_s, hidden, output, scaling, l2, fused)
    by = "A and 1 - A" if output == "sigmoid" else "A"
    notes = ["Saturated example: " + setup + ".",
             f"The chain route divides by {by}: once the output rounds to exactly 0 or 1 in float32 "
             "that is a division by zero, and inf * 0 = nan. A - Y has no division."]
    return OutputLayer(lines, saturated, notes)


def _saturate(bs, Y, ZL, output):
    """``(bs, Y, setup)`` with column 0's output pushed to a confident wrong answer, and how."""
    L = len(bs)
    bs_s = [b.copy() for b in bs]
    Y_s = Y.copy()
    Z0 = ZL[:, 0]
    if output == "sigmoid":
        target = 25.0
        bs_s[-1] = bs_s[-1] + (target - Z0).reshape(-1, 1)
        Y_s[:, 0] = 0
        setup = (f"b[{L}] shifted by {target:g} - Z[{L}][:, 0] (every column moves; column 0 lands at "
                 f"Z = {target:g}) and column 0 labelled 0: a confident wrong answer, whose exact dZ is "
                 f"sigmoid({target:g}) - 0, about 1")
    else:
        gap = 110.0
        shift = np.zeros_like(bs_s[-1])
        shift[1, 0] = gap - (Z0[1] - Z0[0])
        bs_s[-1] = bs_s[-1] + shift
        Y_s[:, 0] = 0
        Y_s[0, 0] = 1
        setup = (f"b[{L}][1] raised so that Z[{L}][1,0] - Z[{L}][0,0] = {gap:g}, and column 0 labelled class 0: "
                 f"a confident wrong answer; A[{L}][0,0] = exp(-{gap:g}), about 1.7e-48, is below float32's "
                 "smallest subnormal (1.4e-45) and rounds to 0")
    return bs_s, Y_s, setup


def _saturated_lines(Ws, bs_s, X, Y_s, hidden, output, scaling, l2, fused):
    """The saturated problem in float32: its output, the chain route's dA[L], the fused route's dW, db."""
    L = len(Ws)
    saturated = []
    p32 = {}
    for l in range(1, L + 1):
        p32[f"W{l}"] = Ws[l - 1].astype(np.float32)
        p32[f"b{l}"] = bs_s[l - 1].astype(np.float32)
    p64 = {k: v.astype(np.float64) for k, v in p32.items()}
    X32, Y32 = X.astype(np.float32), Y_s.astype(np.float32)
    W32 = [p32[f"W{l}"] for l in range(1, L + 1)]
    b32 = [p32[f"b{l}"] for l in range(1, L + 1)]
    AL32 = engine.forward(_nb, W32, b32, X32, hidden, output)[0][-1]
    AL64 = engine.forward(_nb, [W.astype(np.float64) for W in W32], [b.astype(np.float64) for b in b32],
                            X32.astype(np.float64), hidden, output)[0][-1]
    a32, a64 = AL32[:, 0:1], AL64[:, 0:1]
    saturated.append(Line(f"A[{L}][:, 0]", "float32", _shape(a32),
                          f"{_matrix(a32, 17)}; float64: {_matrix(a64, 17)}"))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if output == "sigmoid":
            dA32 = -(Y32 / AL32 - (1 - Y32) / (1 - AL32))
        else:
            dA32 = -(Y32 / AL32)
    bad = int(np.size(dA32) - np.isfinite(dA32).sum())
    try:
        gradients(p32, X32, Y32, hidden=hidden, output=output, scaling=scaling, output_grad="chain",
                  l2=l2, backend="numpy")
        outcome = "finite (no SaturationError)"
    except SaturationError:
        outcome = "fastnn raises SaturationError"
    saturated.append(Line(f"chain dA[{L}]", "float32", _shape(dA32),
                          f"{bad} of {dA32.size} entries inf/nan; {outcome}"))
    _, g32 = gradients(p32, X32, Y32, hidden=hidden, output=output, scaling=scaling, output_grad="fused",
                       l2=l2, backend="numpy")
    _, g64 = gradients(p64, X32.astype(np.float64), Y32.astype(np.float64), hidden=hidden, output=output,
                       scaling=scaling, output_grad="fused", l2=l2, backend="numpy")
    v32 = np.concatenate([g32[k].ravel().astype(np.float64) for k in sorted(g32)])
    v64 = np.concatenate([g64[k].ravel() for k in sorted(g64)])
    saturated.append(Line("fused", f"{fused} in float32", "", "finite; dW, db against float64",
                          Check("float32 fused dW, db against float64", _rel(v32, v64), TOL_F32)))
    return saturated


def _short_answer(L, m, scaling):
    """Where the 1/m goes in this network and why, in three sentences (printed first)."""
    mean = f"J = (1/m) sum_i L_i averages the m = {m} examples, so each dJ/dW[l], dJ/db[l] has exactly one 1/m."
    if scaling == "deferred":
        return [mean,
                f"Here (deferred, the course's) it sits in every dW[l] = (1/m) dZ[l] @ A[l-1].T and "
                f"db[l] = (1/m) sum(dZ[l]), l = 1..{L}.",
                "Not in dZ, dA: column i is example i's own gradient, and the 1/m comes with the sum over "
                "the columns (section 4)."]
    if scaling == "absorbed":
        return [mean,
                f"Here (absorbed) it sits once in dZ[{L}] = (1/m)(A[{L}] - Y); the chain rule carries it into "
                "every dA, dZ below.",
                "So dW[l] = dZ[l] @ A[l-1].T and db[l] = sum(dZ[l]) need none: another 1/m would count it "
                "twice (section 4)."]
    return [f"Here (sum) there is no 1/m: the objective is S = sum_i L_i = m J, so each dW[l], db[l] is "
            "m times dJ/dW[l], dJ/db[l].",
            f"The mean J needs exactly one 1/m: deferred puts it in each dW[l], db[l], absorbed once in "
            f"dZ[{L}]; the same dW, db.",
            "Under sum the learning rate takes the factor m: a step lr on S is a step m lr on J."]


def _header(dims, hidden, output, m, scaling, seed, l2, X, Y, y_text):
    """The two lines under the title: the network and the data."""
    return [
        f"layers {dims}, hidden {hidden}, output {output} ({OUTPUT_LOSS[output]}), m = {m}, "
        f"scaling {scaling}, seed {seed}" + (f", l2 = {l2:g}" if l2 else ""),
        f"random float64 data: X {_shape(X)} standard normal, Y {_shape(Y)} {y_text}, "
        "W[l] Xavier-normal, b[l] 0.1 * normal",
    ]


def _loss_lines(output, L, m, l2, J):
    """The per-example loss and the cost ``J`` (its value)."""
    return [
        Line("loss", _LOSS_FORMULA[output].replace("[L]", f"[{L}]"), f"({m},)", "one value per example (column)"),
        Line("cost", "J = (1/m) sum_i L_i" + (" + (l2/(2m)) sum_l ||W[l]||^2" if l2 else ""), "()",
             f"J = {_num(J, 10)}"),
    ]


def _backward_intro(scaling, l2):
    """The objective the backward quantities differentiate, and what that makes them."""
    obj = _objective_text(scaling, l2)
    meaning = {
        "deferred": "under deferred, dZ and dA are m times derivatives of J (derivatives of the summed loss); "
                    "only dW and db are derivatives of J",
        "absorbed": "under absorbed, every dZ, dA, dW, db is a derivative of J",
        "sum": "under sum, every quantity is a derivative of S, the summed loss (m times J's)",
    }[scaling]
    return [f"objective: {obj}; {meaning}."]


def _method_notes(hidden, L, Zs, redraws):
    """How the checks are made, their tolerances, and (relu, leaky_relu) the distance from the kink."""
    notes = [
        f"Each backward check: central differences with h = {FD_STEP:g} in float64 of the objective the "
        "quantity is the derivative of ('of'), perturbing W[l], b[l], or the intermediate Z[l] / A[l-1] "
        "and re-running the network from there; rel err = ||analytic - numerical|| / (||analytic|| + "
        "||numerical||).",
        f"Tolerances: against central differences rel err <= {TOL_FD:g} (their own error is ~ h^2 |f'''| + "
        f"eps |f| / h, about 1e-10), or, for a derivative too small for that, a difference below their "
        f"rounding noise ({FD_NOISE_C:g} sqrt(k) eps |f| / h, marked 'at FD resolution'); between two exact "
        f"float64 routes <= {TOL_EXACT:g} (rounding only, ~ sqrt(n) eps); float32 against float64 <= "
        f"{TOL_F32:.1e} (1000 eps32). A convention mistake is an O(1) error.",
    ]
    if hidden in ("relu", "leaky_relu") and L > 1:
        zmin = min(float(np.abs(Zs[l]).min()) for l in range(1, L))
        redrawn = f" (the random draw was repeated {redraws} times to get there)" if redraws else ""
        if zmin >= KINK_MARGIN:
            notes.append(f"{hidden} has a kink at 0: the smallest hidden |Z[l]| is {_num(zmin)}, at least "
                         f"{KINK_MARGIN:g} = 100 h, so no central difference straddles it{redrawn}.")
        else:
            notes.append(f"{hidden} has a kink at 0: the smallest hidden |Z[l]| is {_num(zmin)}, below "
                         f"{KINK_MARGIN:g} = 100 h even after {KINK_REDRAWS} draws (large m): a check may fail "
                         "from a central difference across the kink, not from backprop.")
    return notes


def explain(layers=(2, 4, 1), *, hidden="tanh", output="sigmoid", m=5, scaling="deferred", seed=0, l2=0.0):
    """Backprop for one small network, every quantity written out and checked.

    Parameters
    ----------
    layers : sequence of int
        ``[n_0, n_1, ..., n_L]``: input size, hidden sizes, output size.
    hidden : {"identity", "sigmoid", "tanh", "relu", "leaky_relu"}
        Activation of layers ``1..L-1``.
    output : {"sigmoid", "softmax", "identity"}
        Activation of layer ``L`` (with binary cross-entropy, categorical
        cross-entropy, or ``1/2 (a - y)^2``).
    m : int
        Number of examples (columns of ``X``, shape ``(n_0, m)``).
    scaling : {"deferred", "absorbed", "sum"}
        Where the ``1/m`` goes (see :mod:`fastnn.network`).
    seed : int
        Seeds the random weights, biases, ``X`` and ``Y``.
    l2 : float
        L2 strength; adds ``(l2/m) W[l]`` to every ``dW[l]``.

    Returns
    -------
    ExplainResult
        Forward steps, backward quantities (each with its value, a
        central-difference value of the same shape and a :class:`Check`), the
        one-example view, the convention comparison and the output-layer
        comparison.  ``result.all_passed`` is True for a correct fastnn.

    Raises
    ------
    FastnnValueError
        For unknown names, ``m < 1``, softmax with one output unit, or a
        network too large to differentiate numerically (:data:`MAX_FD_ENTRIES`).
    """
    dims, m, l2 = _check_args(layers, hidden, output, m, scaling, seed, l2)
    Ws, bs, X, Y, y_text, redraws = _make_problem(dims, m, output, hidden, seed)
    L = len(Ws)
    As, ZL = engine.forward(_nb, Ws, bs, X, hidden, output)
    Zs = {l: Ws[l - 1] @ As[l - 1] + bs[l - 1] for l in range(1, L)}
    Zs[L] = ZL
    grads = _record_backward(Ws, As, ZL, Y, hidden, output, scaling, l2)
    fd = _FiniteDiff(Ws, bs, X, Y, Zs, As, hidden, output, l2)
    params = {**{f"W{l}": Ws[l - 1] for l in range(1, L + 1)}, **{f"b{l}": bs[l - 1] for l in range(1, L + 1)}}
    J = cost(As[-1], Y, output=output, params=params, l2=l2, logits=ZL)

    header = _header(dims, hidden, output, m, scaling, seed, l2, X, Y, y_text)
    loss_lines = _loss_lines(output, L, m, l2, J)
    backward_intro = _backward_intro(scaling, l2)
    notes = _method_notes(hidden, L, Zs, redraws)
    return ExplainResult(
        layers=dims, hidden=hidden, output=output, m=m, scaling=scaling, seed=seed, l2=l2,
        header=header, forward=_forward_section(Ws, bs, As, Zs, hidden, output), loss_lines=loss_lines,
        backward_intro=backward_intro,
        backward=_backward_section(grads, fd, Ws, As, Y, hidden, output, scaling, l2),
        one_example=_one_example_section(Ws, bs, X, Y, grads, hidden, output, scaling, l2),
        conventions=_conventions_section(Ws, As, ZL, Y, fd, hidden, output, l2),
        output_layer=_output_section(Ws, bs, X, Y, As, ZL, hidden, output, scaling, l2),
        notes=notes, short_answer=_short_answer(L, m, scaling), X=X, Y=Y)

