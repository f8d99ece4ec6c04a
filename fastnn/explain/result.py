"""The structured result of :func:`fastnn.explain.explain`: one dataclass per section."""

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .checks import Check


@dataclass
class ForwardStep:
    """Layer ``l`` of the forward pass.

    ``z_shapes`` reads ``"(n_l, m) = (n_l, n_{l-1}) @ (n_{l-1}, m) + (n_l, 1)"``,
    taken from the arrays ``W``, ``A_prev``, ``b`` and ``Z`` (``(n_l, m)``).
    """
    layer: int
    activation: str
    z_formula: str
    z_shapes: str
    broadcast: str
    a_formula: str
    a_shapes: str
    W: np.ndarray
    b: np.ndarray
    A_prev: np.ndarray
    Z: np.ndarray
    A: np.ndarray


@dataclass
class Quantity:
    """One backward quantity (``dZ[l]``, ``dW[l]``, ``db[l]`` or ``dA[l-1]``).

    Attributes
    ----------
    name : str
        ``"dZ[2]"`` etc.
    formula : str
        How fastnn computes it, e.g. ``"dW[2] = (1/m) dZ[2] @ A[1].T"``.
    shapes : str
        Result shape first, then the operands' shapes, from the arrays.
    derivative_of : str
        What it is the derivative of, e.g. ``"m * dJ/dZ[2]"``.
    one_over_m : str
        Where the ``1/m`` enters (or does not).
    value : numpy.ndarray
        The analytic value, shape as in ``shapes``.
    numerical : numpy.ndarray
        The central-difference value it is checked against, same shape.
    check : Check
    """
    name: str
    formula: str
    shapes: str
    derivative_of: str
    one_over_m: str
    value: np.ndarray
    numerical: np.ndarray
    check: Check


@dataclass
class BackwardLayer:
    """The four quantities of layer ``layer``, in the order dZ, dW, db, dA_prev."""
    layer: int
    title: str
    quantities: list


@dataclass
class Line:
    """A labelled line: ``label``, a formula or value ``text``, optional ``shapes``,
    ``detail`` (numbers or a comment) and ``check``."""
    label: str
    text: str
    shapes: str = ""
    detail: str = ""
    check: Optional[Check] = None


@dataclass
class IndexSum:
    """One matrix-product entry written out as its index sum, with the numbers."""
    entry: str
    index_form: str
    numbers: str
    value: float
    matrix_value: float
    why: str
    check: Check


@dataclass
class OneExample:
    """Section 3: the per-example ``dw = dz a^T`` next to the batch ``dW``."""
    layer: int
    column: int
    per_example: list      # of Line: dz, a, dw, db for one column
    batch_rule: str
    batch_lines: list      # of Line: batch dZ column, dW[l], db[l] vs mean/sum of per-example
    index_sums: list       # of IndexSum


@dataclass
class EveryLayerRow:
    """Section 4: layer ``layer`` when ``1/m`` is applied in every layer's ``dZ``.

    ``factor`` is ``||dW[l] (absorbed)|| / ||dW[l] (wrong)||`` on the data
    term (``l2 = 0``); ``expected`` is ``m^(L-l)``.  ``check`` compares the two; ``rel_err``
    is the wrong ``dW[l]`` against the numerical ``dJ/dW[l]``, and ``verdict``
    says whether that comparison passes.
    """
    layer: int
    rel_err: float
    verdict: str
    factor: float
    expected_text: str
    expected: float
    check: Optional[Check]


@dataclass
class Conventions:
    """Section 4: deferred against absorbed, and the 1/m-in-every-layer mistake."""
    lines: list            # of Line: ratios dZ, dA (= m) and equal dW, db
    notes: list            # of str
    every_layer: list      # of EveryLayerRow
    every_layer_note: str


@dataclass
class OutputLayer:
    """Section 5: the course's chain route against the fused ``A - Y``."""
    lines: list            # of Line
    saturated: list        # of Line (empty for the identity output)
    notes: list            # of str


@dataclass
class ExplainResult:
    """Everything :func:`explain` computed; render it with :func:`render_text`
    or :func:`render_markdown`.

    ``forward[l-1]`` and ``backward[...]`` (output layer first, as backprop
    runs) hold the arrays of layer ``l``; ``notes`` the method and tolerances.
    """
    layers: list
    hidden: str
    output: str
    m: int
    scaling: str
    seed: int
    l2: float
    header: list
    forward: list
    loss_lines: list
    backward_intro: list
    backward: list
    one_example: OneExample
    conventions: Conventions
    output_layer: OutputLayer
    notes: list
    short_answer: list = field(default_factory=list)   # of str: three sentences, printed first
    X: np.ndarray = field(repr=False, default=None)
    Y: np.ndarray = field(repr=False, default=None)

    def checks(self):
        """Every :class:`Check` in the result, in the order they are printed."""
        out = []
        for bl in self.backward:
            out.extend(q.check for q in bl.quantities)
        ex = self.one_example
        out.extend(ln.check for ln in ex.per_example + ex.batch_lines if ln.check)
        out.extend(s.check for s in ex.index_sums)
        out.extend(ln.check for ln in self.conventions.lines if ln.check)
        out.extend(r.check for r in self.conventions.every_layer if r.check)
        out.extend(ln.check for ln in self.output_layer.lines + self.output_layer.saturated if ln.check)
        return out

    @property
    def all_passed(self):
        """True when every check passed."""
        return all(c.passed for c in self.checks())

