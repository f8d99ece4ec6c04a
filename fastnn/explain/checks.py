"""The checks of :func:`fastnn.explain.explain`: tolerances, :class:`Check`, central differences.

Tolerances
----------
Every threshold used by the checks is set here, and only here.

``FD_STEP = 1e-5``
    Central differences ``(F(v + h) - F(v - h)) / (2h)`` in float64 have a
    truncation error ``h^2 |F'''| / 6`` and a rounding error ``~ eps |F| / h``
    (``eps = 2.2e-16``).  For the O(1) derivatives of these small nets the sum
    is smallest near ``h ~ eps^(1/3) ~ 1e-5``, where both are ``~ 1e-10``.
``TOL_FD = 1e-6``
    Threshold on ``||analytic - numerical|| / (||analytic|| + ||numerical||)``.
    A correct derivative of ordinary size (entries ~1e-3 .. 1) lands at
    ``1e-11 .. 1e-9``, a margin of 1000 or more, while any convention mistake
    (a stray factor ``m``, a missing transpose, a wrong ``g'``) is an O(1)
    relative error.  (Over ~1,800 random nets the worst was ``4e-7``, for a
    ``dW`` of norm ``1e-5``: see the floor below.)  The rounding
    part does not grow with ``m``: a derivative with respect to column ``i``
    of ``Z[l]`` or ``A[l]`` differences ``L_i`` alone (see ``_FiniteDiff``).
``FD_NOISE_C = 100`` (the resolution floor)
    A derivative whose entries are themselves ~1e-5 or smaller can be off by
    more than ``TOL_FD`` relatively just from the rounding noise ``eps |F| / h``
    of the differences (``|F|`` the objective's value).  Such a check also
    passes when ``||analytic - numerical|| <= FD_NOISE_C * sqrt(k) * eps |F| / h``
    (``k`` entries), and says so ("at FD resolution").  The measured ratio of
    error to ``sqrt(k) eps |F| / h`` stayed below 32 over ~1,800 random nets
    (every activation, output and scaling, depth 1..3, widths 1..5, m 1..8),
    truncation included; the floor is ``~2e-9 |F| sqrt(k)``, far below any O(1) mistake
    in a derivative that is not itself that small.
``KINK_MARGIN = 100 h``
    relu and leaky_relu have a kink at 0, where a central difference averages
    two slopes.  Their data are redrawn (from the same seeded generator) until
    every hidden ``|Z|`` is at least ``100 h``; perturbing ``W`` moves ``Z`` by
    ``h |A|``, so no difference crosses the kink.
``TOL_EXACT = 1e-12``
    Two analytic float64 routes to the same number (batch ``dW`` against the
    mean of per-example ``dw``, deferred against absorbed ``dW``, chain against
    fused ``dZ[L]``, an index sum against the matrix product) differ by
    rounding only, ``~ sqrt(n) eps ~ 1e-15`` for sums of ``n`` up to a few
    thousand terms (arrays are compared as norms and a single entry against
    the sum of its terms' magnitudes, never relative to a value that a
    cancelling sum made small).  The worst over the ~1,800
    random nets was ``2e-14``: ``1e-12`` leaves a margin of 50 and is still
    ``10^11`` below an O(1) mistake.
``TOL_F32 = 1000 * eps(float32) ~ 1.2e-4``
    A float32 gradient against the float64 one from the same inputs differs by
    float32 rounding, ``~ sqrt(n) eps32 ~ 1e-7 .. 1e-6`` (worst measured:
    ``1e-7``); a broken route gives inf/NaN or an O(1) error.
"""

import math
from dataclasses import dataclass

import numpy as np

from .. import engine
from ..activations import ACTIVATIONS
from ..backends import numpy_backend as _nb
from ..finite_differences import central_differences
from ..network import _objective
from ._format import _fmt_err

#: Step of the central differences (module docstring, "Tolerances").
FD_STEP = 1e-5
#: Bound on the relative error of an analytic derivative against central differences.
TOL_FD = 1e-6
#: Bound on the relative difference of two analytic float64 routes to one quantity.
TOL_EXACT = 1e-12
#: Bound on the relative error of a float32 gradient against float64.
TOL_F32 = 1000 * float(np.finfo(np.float32).eps)
#: Safety factor on the rounding noise ``eps |F| / h`` of one central difference (see Check).
FD_NOISE_C = 100.0
_EPS64 = float(np.finfo(np.float64).eps)
#: relu/leaky_relu: data are redrawn until every hidden |Z| is at least this (100 steps) ...
KINK_MARGIN = 100 * FD_STEP
#: ... at most this many times.
KINK_REDRAWS = 50
#: Most entries explain() perturbs in all (each costs two partial forward passes).
MAX_FD_ENTRIES = 20000

CHECK_MARK, CROSS_MARK = "\u2713", "\u2717"


@dataclass
class Check:
    """One numerical comparison.

    Attributes
    ----------
    against : str
        What the analytic value was compared with.
    rel_err : float
        The relative error (``nan`` when the analytic value was not finite).
    tol : float
        The threshold (one of the module's ``TOL_*``).
    abs_err, floor : float
        For checks against central differences: ``||analytic - numerical||``
        and the resolution of the central differences themselves (their
        rounding noise, :data:`FD_NOISE_C` ``* eps |F| / h`` per entry).  A
        derivative so small that ``abs_err <= floor`` cannot be resolved
        further and passes; 0 for the other checks.
    """
    against: str
    rel_err: float
    tol: float
    abs_err: float = 0.0
    floor: float = 0.0

    @property
    def at_resolution(self):
        """True when the check passes only because the error is below the FD noise floor."""
        return bool(self.floor > 0 and not self.rel_err <= self.tol and np.isfinite(self.abs_err)
                    and self.abs_err <= self.floor)

    @property
    def passed(self):
        """True when ``rel_err <= tol`` or ``abs_err <= floor`` (False for NaN)."""
        return bool(self.rel_err <= self.tol) or self.at_resolution

    @property
    def mark(self):
        """The check mark or the cross."""
        return CHECK_MARK if self.passed else CROSS_MARK

    @property
    def summary(self):
        """``"<mark> <rel_err>"``, as both renderers print it."""
        text = f"{self.mark} {_fmt_err(self.rel_err)}"
        return text + " (at FD resolution)" if self.at_resolution else text


def _rel(a, b):
    """``||a - b|| / (||a|| + ||b||)`` (0 when both are zero, nan when not finite)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    den = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / den) if den else 0.0


class _FiniteDiff:
    """Central differences, in float64, of ``J`` or ``S`` with respect to
    ``W[l]``, ``b[l]``, ``Z[l]`` or ``A[l]``.

    ``J = (1/m) sum_i L_i + (l2/(2m)) sum ||W||^2`` is the cost and
    ``S = sum_i L_i + (l2/(2m)) sum ||W||^2`` what scaling="sum" differentiates.
    A derivative with respect to an intermediate ``Z[l]`` or ``A[l]`` perturbs
    that array and runs the rest of the network from there (the engine's
    forward pass on the NumPy backend).  An entry of column ``i`` of ``Z[l]`` or
    ``A[l]`` changes only ``L_i``: the other ``m - 1`` losses and the L2 term
    are constant and cancel exactly in ``F(v + h) - F(v - h)``, so only column
    ``i`` is re-run (which also keeps the rounding error from growing with m).
    """

    def __init__(self, Ws, bs, X, Y, Zs, As, hidden, output, l2, h=FD_STEP):
        self.Ws = [W.copy() for W in Ws]
        self.bs = [b.copy() for b in bs]
        self.X, self.Y, self.Zs, self.As = X, Y, Zs, As
        self.hidden, self.output, self.l2, self.h = hidden, output, l2, h
        self.L, self.m = len(Ws), X.shape[1]
        self._memo = {}
        #: (objective, var, l) -> rounding noise of one central difference, ``eps |F| / h``.
        self.noise = {}

    def _loss_from_A(self, k, A, Y):
        """Summed loss of the columns of ``A = A[k]`` when layers k+1..L run from it
        (the engine's forward pass over those layers)."""
        As, Z = engine.forward(_nb, self.Ws[k:], self.bs[k:], A, self.hidden, self.output)
        return _nb.output_loss(Z, As[-1], Y, self.output)

    def _loss_from_Z(self, l, Z, Y):
        """Summed loss of the columns of ``Z = Z[l]`` when g and layers l+1..L run from it."""
        if l < self.L:
            return self._loss_from_A(l, ACTIVATIONS[self.hidden](Z, np.empty_like(Z)), Y)
        AL = ACTIVATIONS[self.output](Z, np.empty_like(Z))
        return _nb.output_loss(Z, AL, Y, self.output)

    def derivative(self, objective, var, l):
        """d(objective)/d(var[l]) for objective in {"J", "S"}, var in {"W", "b", "Z", "A"}."""
        key = (objective, var, l)
        if key in self._memo:
            return self._memo[key]
        if var in ("W", "b"):
            V = (self.Ws if var == "W" else self.bs)[l - 1]
            kind = "deferred" if objective == "J" else "sum"

            def F():
                return _objective(self._loss_from_A(0, self.X, self.Y), self.Ws, self.m, kind, self.l2)

            size = abs(F())
            G = central_differences(V, F, self.h)
        else:
            full = self.Zs[l] if var == "Z" else self.As[l]
            run = self._loss_from_Z if var == "Z" else self._loss_from_A
            scale = 1.0 / self.m if objective == "J" else 1.0
            G = np.empty_like(full)
            size = 0.0
            for i in range(self.m):
                V = full[:, i:i + 1].copy()
                Yi = self.Y[:, i:i + 1]
                size = max(size, scale * abs(run(l, V, Yi)))
                G[:, i:i + 1] = scale * central_differences(V, lambda: run(l, V, Yi), self.h)
        self.noise[key] = _EPS64 * size / self.h
        self._memo[key] = G
        return G


def _fd_check(fd, value, objective, var, l, factor=1):
    """(numerical, Check): ``value`` against ``factor * d(objective)/d(var[l])`` by central differences."""
    num = factor * fd.derivative(objective, var, l)
    pre = "m * " if factor != 1 else ""
    diff = np.asarray(value, dtype=np.float64) - num
    abs_err = float(np.linalg.norm(diff)) if np.isfinite(diff).all() else float("nan")
    floor = FD_NOISE_C * factor * fd.noise[(objective, var, l)] * math.sqrt(num.size)
    return num, Check(f"{pre}central differences of {objective} w.r.t. {var}[{l}]", _rel(value, num), TOL_FD,
                      abs_err, floor)

