"""The full-batch SGD loop that runs many epochs per call, its state kept between
calls (:class:`FullBatchLoop`, exported by :mod:`fastnn.engine`): the trainer's
whole-loop path.
"""

import numpy as np

from .engine import dual_pays, scales, sgd_loop

__all__ = ["FullBatchLoop"]


def _copy(bk, x):
    """A private copy of the backend array ``x``."""
    return bk.to_device(np.array(bk.to_host(x), copy=True))


class FullBatchLoop:
    """Full-batch SGD run ``n`` epochs per call, its state kept between calls.

    The trainer's whole-loop path (``Model.fit`` with ``batch_size=None``,
    plain SGD) calls :meth:`run` in chunks of epochs and checks, snapshots
    and reads the parameters only between chunks.  In the primal form each
    call is :func:`sgd_loop` (the backend's ``compiled_loop`` where it takes
    the problem); in the dual form (:func:`sgd_steps`' docstring) the loop
    keeps ``G = X.T @ X`` (once per loop), ``Z0 = W1_0 @ X`` and ``C``
    across calls, so the result does not depend on how the epochs are cut
    into calls, and ``W1 = W1_0 + C @ X.T`` is formed only when
    :meth:`params` or :meth:`finite` need it.  :meth:`rebase` starts the
    dual form afresh from the current (or given) parameters.

    Parameters
    ----------
    bk : backend module
    Ws, bs : lists of L backend arrays
        ``W[l]`` ``(n_l, n_{l-1})``, ``b[l]`` ``(n_l, 1)``; the loop owns them from
        here on (read them back with :meth:`params`).
    X : backend array, shape (n_0, m)
    Y : backend array, shape (n_L, m)
    hidden, output, scaling : str
    l2 : float
    dual : bool
        The dual first layer (:meth:`pays` says when it pays); needs a hidden
        layer and no L2 term.
    """

    def __init__(self, bk, Ws, bs, X, Y, hidden, output, scaling, l2, dual=False):
        self.bk, self.X, self.Y = bk, X, Y
        self.hidden, self.output, self.scaling, self.l2 = hidden, output, scaling, l2
        self.Ws, self.bs = list(Ws), list(bs)
        self.dual, self._G, self._compiled, self._x_max = False, None, None, None
        self.rebase(dual=dual)

    def pays(self, epochs):
        """Whether the dual form pays over ``epochs`` epochs (:func:`dual_pays`), for
        float32 and float64 (``X.T @ X`` may overflow float16) where the backend's
        compiled loop declines the problem (it is faster where it takes it)."""
        X, m = self.X, self.X.shape[1]
        if len(self.Ws) < 2 or X.dtype.itemsize < 4 or \
                not dual_pays(*self.Ws[0].shape, m, self.l2, epochs):
            return False
        if self._compiled is None:
            compiled = getattr(self.bk, "compiled_loop", None)
            self._compiled = compiled is not None and compiled(
                self.Ws, self.bs, X, self.Y, self.hidden, self.output,
                *scales(self.scaling, m, X.dtype), self.l2, 0.0, 0) is not None
        return not self._compiled

    def rebase(self, Ws=None, bs=None, dual=None):
        """Start afresh from the current parameters, or from ``Ws``, ``bs`` (assigned
        from outside); ``dual``: the form from here on (None: unchanged)."""
        if Ws is not None:
            self.Ws, self.bs, self.dual = list(Ws), list(bs), False
        self.params()
        dual = self.dual if dual is None else bool(dual)
        if dual and (self.l2 or len(self.Ws) < 2):
            raise ValueError("the dual first layer needs a hidden layer and no L2 term")
        self.dual, self._stale = dual, False
        if not dual:
            self._W10 = self._Z0 = self._C = None
            return
        bk, X = self.bk, self.X
        if self._G is None:
            self._G = bk.input_grad(X, X)                                 # (m, m)
        self._W10 = _copy(bk, self.Ws[0])
        self._w10_max = bk.max_abs(self._W10)
        self._pristine = True        # Ws[0] still holds W1_0 (written in place at first)
        self._Z0 = bk.forward_hidden(self._W10, X, bk.zeros_like(self.bs[0]), "identity")
        self._C = bk.zeros_like(self._Z0)

    def run(self, lr, n):
        """``n`` epochs of full-batch SGD at learning rate ``lr``.

        Returns
        -------
        costs : numpy.ndarray, shape (n,)
            The cost of each epoch before its update (float64; NaN after a stop).
        steps : int
            Completed epochs; fewer than ``n`` when a cost or gradient was not
            finite (that update is not applied).  An update that makes a parameter
            non-finite is not caught here: :meth:`finite` tells.
        """
        if not self.dual:
            return sgd_loop(self.bk, self.Ws, self.bs, self.X, self.Y, self.hidden, self.output,
                            self.scaling, self.l2, lr, n, dual=False)
        costs = np.full(n, np.nan)
        steps = self._dual_steps(self.X.dtype.type(lr), n, costs)
        self._stale = self._stale or steps > 0
        return costs, steps

    def _dual_steps(self, lr, iterations, costs):
        """``iterations`` steps on ``C`` and the other layers; the number completed."""
        bk, X, Y, hidden, Ws, bs = self.bk, self.X, self.Y, self.hidden, self.Ws, self.bs
        m, dtype, L = X.shape[1], X.dtype, len(Ws)
        dz_scale, w_scale = scales(self.scaling, m, dtype)
        for it in range(iterations):
            As = [X, bk.forward_hidden_offset(self._C, self._G, bs[0], self._Z0, hidden)]
            for W, b in zip(Ws[1:-1], bs[1:-1]):
                As.append(bk.forward_hidden(W, As[-1], b, hidden))
            ZL, AL = bk.forward_output(Ws[-1], As[-1], bs[-1], self.output)
            As.append(AL)
            dZ, db, loss_sum = bk.output_delta(ZL, As[-1], Y, self.output, dz_scale, w_scale)
            grads, dWs = [], []
            for l in range(L - 1, 0, -1):
                dWs.append(bk.weight_grad(dZ, As[l], Ws[l], w_scale, dtype.type(0)))
                grads.append((bs[l], db))
                dA = bk.input_grad(Ws[l], dZ)
                dZ, db = bk.backward_hidden(dA, As[l], hidden, w_scale)
            grads.append((bs[0], db))
            costs[it] = loss_sum / m
            if not np.isfinite(costs[it]) or not (
                    bk.all_finite(dZ) and all(bk.all_finite(g) for g in dWs)
                    and all(bk.all_finite(g) for _, g in grads)):
                return it
            for l, dW in zip(range(L - 1, 0, -1), dWs):
                bk.sgd_update(Ws[l], dW, lr)
            for b, g in grads:
                bk.sgd_update(b, g, lr)
            bk.sgd_update(self._C, dZ, lr * w_scale)                     # C -= lr * w_scale * dZ1
        return iterations

    def params(self):
        """The parameters ``[W1, b1, ..., WL, bL]`` (backend arrays, the loop's own),
        ``W1 = W1_0 + C @ X.T`` formed when stale."""
        if self.dual and self._stale:
            bk, dtype = self.bk, self.X.dtype
            W = self.Ws[0] if self._pristine else _copy(bk, self._W10)
            bk.sgd_update(W, bk.weight_grad(self._C, self.X, W, dtype.type(1), dtype.type(0)),
                          dtype.type(-1))
            self.Ws[0], self._pristine, self._stale = W, False, False
        return [a for pair in zip(self.Ws, self.bs) for a in pair]

    def finite(self):
        """True when every parameter is finite.  In the dual form, ``C`` finite and
        ``|W1_0| + m |C| |X|`` bounded below a quarter of the dtype's largest value
        make ``W1`` certainly finite; otherwise ``W1`` is formed and checked."""
        bk = self.bk
        if not all(bk.all_finite(p) for p in self.Ws[1:] + self.bs):
            return False
        if not self.dual or not self._stale:
            return bk.all_finite(self.Ws[0])
        if not bk.all_finite(self._C):
            return False
        if self._x_max is None:
            self._x_max = bk.max_abs(self.X)
        bound = self._w10_max + self.X.shape[1] * bk.max_abs(self._C) * self._x_max
        if bound < float(np.finfo(self.X.dtype).max) / 4:
            return True
        return bk.all_finite(self.params()[0])

    def snapshot(self):
        """Host copies of the state that :meth:`run` changes, for :meth:`restore`."""
        live = [self._C] if self.dual else [self.Ws[0]]
        return self.dual, [np.array(self.bk.to_host(p), copy=True)
                           for p in live + self.Ws[1:] + self.bs]

    def restore(self, snap):
        """Put back a :meth:`snapshot` taken since the last :meth:`rebase`."""
        dual, arrays = snap
        if dual != self.dual:
            raise ValueError("a snapshot from before a rebase")
        arrays = [self.bk.to_device(a.copy()) for a in arrays]
        L = len(self.Ws)
        if dual:
            self._C, self._stale = arrays[0], True
        else:
            self.Ws[0] = arrays[0]
        self.Ws[1:], self.bs = arrays[1:L], arrays[L:]
