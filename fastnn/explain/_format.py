"""How explain writes numbers, shapes and small matrices (shared by the sections and the renderers)."""

import numpy as np


def _fmt_err(x):
    if not np.isfinite(x):
        return "nan" if np.isnan(x) else "inf"
    return "0" if x == 0 else f"{x:.1e}"


def _shape(a):
    return "(" + ", ".join(str(int(d)) for d in np.shape(a)) + ")"


def _num(x, digits=4):
    s = f"{float(x):.{digits}g}"
    return s


def _paren(x):
    s = _num(x)
    return f"({s})" if s.startswith("-") else s


def _matrix(a, digits=4):
    """A small matrix on one line; a column (n, 1) is written as a row with ``.T``."""
    a = np.asarray(a, dtype=np.float64)
    suffix = ""
    if a.ndim == 2 and a.shape[1] == 1 and a.shape[0] > 1:
        a, suffix = a.T, ".T"
    text = np.array2string(a, separator=", ", max_line_width=10 ** 6, threshold=10 ** 6,
                           formatter={"float_kind": lambda v: _num(v, digits)})
    return " ".join(text.split()) + suffix

