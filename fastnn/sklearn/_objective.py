"""scikit-learn's training objective on fastnn's passes: the mean loss, its L2 term and gradient.

Both solvers evaluate it here: the minibatch loop on a batch, L-BFGS on all
samples.  This is the package's one use of fastnn's forward and backward passes
for training.
"""

from collections import namedtuple

import numpy as np

from .. import engine
from ._params import _HIDDEN, _OUTPUT

#: What the objective needs of an estimator: fastnn's hidden and output activations,
#: the ``1/m`` placement, the L2 strength and the loss divisor (see :func:`_spec`).
_Spec = namedtuple("_Spec", "hidden output scaling alpha loss_div")

#: The backward function for :func:`_loss_and_grads`'s ``weights``.
_BACKWARD = {"full": engine.backward, "bare": engine.backward_products}


def _spec(est):
    """The :data:`_Spec` of a fitted or initialised estimator ``est``."""
    # scikit-learn's squared loss is also averaged over the outputs.
    loss_div = est.n_outputs_ if est.out_activation_ == "identity" else 1
    return _Spec(_HIDDEN[est.activation], _OUTPUT[est.out_activation_], est.scaling,
                 float(est.alpha), loss_div)


def _squares(bk, Ws):
    """||W[l]||^2 of each layer, as floats (scikit-learn's ``np.dot(s.ravel(), s.ravel())``,
    in the weights' dtype)."""
    return [float(np.vdot(W, W)) for W in map(bk.to_host, Ws)]


def _loss_and_grads(bk, spec, Ws, bs, X, Y, norm, sample_weight=None, weights="full", drop=None):
    """scikit-learn's loss of one batch and the gradient lists ``(loss, dWs, dbs)``.

    Parameters
    ----------
    bk : backend
    spec : _Spec
    Ws, bs : lists of device arrays
        ``W[l]`` of shape ``(n_l, n_{l-1})``, ``b[l]`` of shape ``(n_l, 1)``.
    X : device array of shape (n_0, m), or SparseRows
    Y : device array of shape (n_L, m)
    norm : float
        ``m``, or ``sum(sample_weight)`` when weighted.
    sample_weight : ndarray of shape (m,) or None
    weights : {"full", "bare"}
        "full": :func:`fastnn.engine.backward`; "bare": :func:`fastnn.engine.backward_products`,
        which leaves ``1/m`` and the L2 term of every ``dW`` to the optimizer (see :func:`_fold`).
    drop : fastnn._dropout.DropoutStep or None
        Inverted dropout of this step's hidden layers (None: none): the loss and
        gradient of the network with these masks fixed.

    Returns
    -------
    loss : float
        The mean loss (over examples, and outputs for the squared loss) plus
        ``alpha / (2 norm) * sum ||W||^2``.
    dWs, dbs : lists of device arrays, shaped as ``Ws``, ``bs``
    """
    Gs = None
    if drop is None:
        As, ZL = engine.forward(bk, Ws, bs, X, spec.hidden, spec.output)
    else:
        As, Gs, ZL = engine.forward_dropout(bk, Ws, bs, X, spec.hidden, spec.output, drop)
    backward = _BACKWARD[weights]
    dWs, dbs, loss_sum = backward(bk, Ws, As, ZL, Y, spec.hidden, spec.output, spec.scaling,
                                  "fused", spec.alpha, sample_weight=sample_weight, drop=drop,
                                  Gs=Gs)
    del As, Gs, ZL
    return _batch_loss(bk, spec, Ws, loss_sum, norm), dWs, dbs


def _batch_loss(bk, spec, Ws, loss_sum, norm):
    """scikit-learn's loss of a batch from its summed loss: the mean plus ``alpha / (2 norm)
    sum ||W||^2`` (``Ws`` before the step's update)."""
    return _batch_loss_from(spec, loss_sum, _squares(bk, Ws) if spec.alpha else (), norm)


def _batch_loss_from(spec, loss_sum, squares, norm):
    """:func:`_batch_loss` from each layer's ``||W||^2`` (read only when ``alpha`` is
    nonzero; the compiled steps' ``SQUARES_DOT``)."""
    loss = loss_sum / (norm * spec.loss_div)
    if spec.alpha:
        loss += 0.5 * spec.alpha * sum(float(q) for q in squares) / norm
    return loss


def _fold(spec, n_weights, norm, dtype):
    """``(n_weights, g_scale, l2)``: what an optimizer taking bare ``dW`` applies to each."""
    return n_weights, engine.scales(spec.scaling, norm, dtype)[1], dtype.type(spec.alpha / norm)
