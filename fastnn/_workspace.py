"""The engine's minibatch workspace: one training step's arrays, allocated once.

Part of the engine layer (:mod:`fastnn.engine` re-exports it).  A minibatch
epoch on a backend with the minibatch kernels
(:data:`fastnn.backends._interface.MINIBATCH_KERNELS`) runs each step as a fixed
sequence of those kernels on arrays allocated here once: the gathered batch,
every layer's activations and deltas (one set per batch size: the last batch
of an epoch may be short), and the parameters and their gradients as views
into two flat arrays, so that the optimizer updates and checks the whole
network in one kernel call each (:meth:`fastnn.optim.SGD.step_flat`).  The
kernels are the allocating ones' twins, so a step gives bitwise the results of
:func:`fastnn.engine.forward` and :func:`fastnn.engine.backward`
(``tests/test_workspace.py``).

The flat arrays hold every weight matrix first, then every bias
(``W[1], ..., W[L], b[1], ..., b[L]``), so a rule that treats weights apart
(an L2 term folded into the update) works on two segments.
"""

import time

import numpy as np

from . import threads
from .backends._interface import MINIBATCH_KERNELS, SQUARES_NONE, STEPS_DONE

__all__ = ["MinibatchWorkspace", "CHUNK_SECONDS"]

#: :meth:`MinibatchWorkspace.run_steps` sizes its compiled calls to about this many
#: seconds each (a KeyboardInterrupt waits at most that long; the Python between
#: calls is then well under 1% of the time).
CHUNK_SECONDS = 0.1


def _scales(scaling, m, dtype):
    from .engine import scales
    return scales(scaling, m, dtype)


class MinibatchWorkspace:
    """Preallocated arrays for minibatch steps of one network on one backend.

    Parameters
    ----------
    bk : backend module
        One with every kernel of ``MINIBATCH_KERNELS`` (:meth:`supports`).
    layer_dims : list of int
        ``[n_0, ..., n_L]``.
    dtype : numpy.dtype

    Attributes
    ----------
    params, grads : lists of 2L arrays
        ``W[1], b[1], ..., W[L], b[L]`` (the trainer's order), views into
        ``P_flat`` and ``G_flat``.
    P_flat, G_flat : backend arrays, shape (n_params,)
        Weights first, then biases; ``n_weights`` entries of weights.
    """

    def __init__(self, bk, layer_dims, dtype):
        self.bk, self.dims, self.dtype = bk, list(layer_dims), np.dtype(dtype)
        L = len(self.dims) - 1
        w_sizes = [self.dims[l + 1] * self.dims[l] for l in range(L)]
        self.n_weights = sum(w_sizes)
        self.n_params = self.n_weights + sum(self.dims[1:])
        self.P_flat = bk.to_device(np.zeros(self.n_params, self.dtype))
        self.G_flat = bk.to_device(np.zeros(self.n_params, self.dtype))
        self.params = self.split(self.P_flat)
        self.grads = self.split(self.G_flat)
        self._per_size = {}

    @staticmethod
    def supports(bk, output):
        """Whether steps of a net with this output can run here: ``bk`` has every minibatch
        kernel, and the output is not a host one (``engine.HOST_OUTPUTS``)."""
        from .engine import HOST_OUTPUTS
        return output not in HOST_OUTPUTS and all(callable(getattr(bk, name, None))
                                                  for name in MINIBATCH_KERNELS)

    @staticmethod
    def batch_groups(n_samples, batch_size):
        """An epoch's batches by size, for :meth:`run_steps`: ``(starts, size)`` of the
        full-size ones, then of the short last one when there is one.

        Returns
        -------
        list of (ndarray of int64, int)
            ``[(starts (n_samples // batch_size,), batch_size)]``, and
            ``([start], n_samples % batch_size)`` when that is not 0.
        """
        n_full = n_samples // batch_size
        groups = [(np.arange(n_full, dtype=np.int64) * batch_size, batch_size)]
        if n_samples % batch_size:
            groups.append((np.array([n_full * batch_size], np.int64), n_samples % batch_size))
        return groups

    def split(self, flat):
        """Views of a flat ``(n_params,)`` array as ``[W[1], b[1], ..., W[L], b[L]]``."""
        views, w_at, b_at = [], 0, self.n_weights
        for n_prev, n in zip(self.dims[:-1], self.dims[1:]):
            views.append(flat[w_at:w_at + n * n_prev].reshape(n, n_prev))
            views.append(flat[b_at:b_at + n].reshape(n, 1))
            w_at, b_at = w_at + n * n_prev, b_at + n
        return views

    def flat_copy(self, arrays):
        """A new flat array holding ``arrays`` (in :meth:`split`'s order), and its views."""
        flat = self.bk.to_device(np.zeros(self.n_params, self.dtype))
        views = self.split(flat)
        for v, a in zip(views, arrays):
            v[...] = a
        return flat, views

    def adopt(self, P):
        """``params``, holding the values of ``P`` (copied in unless ``P`` are these views)."""
        if any(p is not v for p, v in zip(P, self.params)):
            for v, p in zip(self.params, P):
                v[...] = self.bk.to_host(p)
        return self.params

    def _buffers(self, b):
        bufs = self._per_size.get(b)
        if bufs is None:
            empty = lambda *shape: self.bk.to_device(np.empty(shape, self.dtype))  # noqa: E731
            dims = self.dims
            bufs = {"X": empty(b, dims[0]), "Y": empty(dims[-1], b),
                    "A": [empty(n, b) for n in dims[1:]], "Z": empty(dims[-1], b),
                    "dZ": [empty(n, b) for n in dims[1:]]}
            self._per_size[b] = bufs
        return bufs

    def step(self, XR, YR, idx, hidden, output, scaling, l2, bare=False):
        """Gather the batch ``idx``, run the forward and backward passes into ``grads``.

        Parameters
        ----------
        XR : array, shape (N, n_0), C-contiguous
            The examples as rows.
        YR : array, shape (N, n_L), C-contiguous
            The targets as rows.
        idx : ndarray of int, shape (b,), or slice
            The batch's examples (a slice of consecutive ones is read in place).
        hidden, output, scaling : str
            As :func:`fastnn.engine.backward` (fused output delta).
        l2 : float
            L2 strength (the term ``(l2 / b) W``).
        bare : bool
            Leave ``1/m`` and the L2 term out of the weight gradients
            (:func:`fastnn.engine.backward_products`).

        Returns
        -------
        loss_sum : float
            The summed loss of the batch, from :func:`fastnn.engine.backward`.
        """
        bk = self.bk
        if isinstance(idx, slice):  # consecutive examples: the first layer reads XR itself
            X0 = bk.gather_columns(XR, idx)  # a view, no copy
            idx = np.arange(*idx.indices(XR.shape[0]))
            bufs = self._buffers(idx.shape[0])
        else:
            bufs = self._buffers(idx.shape[0])
            bk.gather_rows_into(XR, idx, bufs["X"])
            X0 = bufs["X"].T
        m = idx.shape[0]
        bk.gather_targets_into(YR, idx, bufs["Y"])
        Ws, bs, dWs, dbs = self.params[0::2], self.params[1::2], self.grads[0::2], self.grads[1::2]
        As = [X0] + bufs["A"]
        L = len(Ws)
        for l in range(L - 1):
            bk.forward_hidden_into(Ws[l], As[l], bs[l], hidden, As[l + 1])
        bk.forward_output_into(Ws[-1], As[-2], bs[-1], output, bufs["Z"], As[-1])
        dz_scale, w_scale = _scales(scaling, m, self.dtype)
        dZs = bufs["dZ"]
        loss_sum = bk.output_delta_into(bufs["Z"], As[-1], bufs["Y"], output, dz_scale, w_scale,
                                        dZs[-1], dbs[-1])
        if bare:
            scale, l2_scale = self.dtype.type(1), self.dtype.type(0)
        else:
            scale, l2_scale = w_scale, self.dtype.type(l2 / m)
        for l in range(L - 1, -1, -1):
            bk.weight_grad_into(dZs[l], As[l], Ws[l], scale, l2_scale, dWs[l])
            if l:
                bk.input_grad_into(Ws[l], dZs[l], dZs[l - 1])
                bk.backward_hidden_into(dZs[l - 1], As[l], hidden, w_scale, dbs[l - 1])
        return loss_sum

    def run_steps(self, XR, YR, order, starts, b, hidden, output, scaling, l2, opt, on_chunk,
                  bare=False, fold=None, check=True, squares_mode=SQUARES_NONE):
        """Steps on the batches at ``starts``, each of the workspace's batch size ``b``, with
        the optimizer's update, in compiled calls of about :data:`CHUNK_SECONDS` each
        (the backend's optional ``minibatch_steps`` kernel): bitwise :meth:`step` then
        ``opt.step_flat`` for each batch, with no Python between steps.

        Parameters
        ----------
        XR, YR : arrays, shapes (N, n_0), (N, n_L), C-contiguous
            As :meth:`step`.
        order : ndarray of int64, shape (N,)
            The epoch's order of the examples; batch ``s`` is
            ``order[starts[s]:starts[s] + b]``.
        starts : ndarray of int64, shape (n,)
        b : int
            The batch size (every batch here has ``b`` examples).
        hidden, output, scaling, l2, bare : as :meth:`step`.
        opt : optimizer
            One with ``flat_program(bk, ws, n, fold)`` and ``advance(n)``
            (:class:`fastnn.optim.SGD` and the estimators' optimizers).
        on_chunk : callable
            ``on_chunk(losses, squares)`` after each call, in order: each applied
            step's summed loss ``(k,)`` and the weights' sums of squares before its
            update ``(k, L)``
            (``squares_mode``: ``_interface.SQUARES_*``; zeros for ``SQUARES_NONE``).
        fold : tuple, optional
            The estimators' ``(n_weights, g_scale, l2)``, given to ``flat_program``
            (None: the gradients are complete).
        check : bool
            Stop at the first step whose loss or gradient is not finite, before its update.

        Returns
        -------
        int or None
            The number of steps run (``len(starts)`` unless ``check`` stopped one:
            that step is the next, not applied); None when the backend has no such
            kernel or declines this network (nothing run: step from Python).
        """
        kernel = getattr(self.bk, "minibatch_steps", None)
        if kernel is None or not len(starts):
            return None if kernel is None else 0
        order = np.ascontiguousarray(order, dtype=np.int64)
        starts = np.ascontiguousarray(starts, dtype=np.int64)
        bufs = self._buffers(b)
        dz_scale, w_scale = _scales(scaling, b, self.dtype)
        scale, l2_scale = (1, 0) if bare else (w_scale, l2 / b)
        layers = (self.params[0::2], self.params[1::2], self.grads[0::2], self.grads[1::2],
                  self.P_flat, self.G_flat)
        work = (bufs["X"], bufs["Y"], bufs["A"], bufs["Z"], bufs["dZ"])
        done, n, chunk = 0, len(starts), 16  # the first call times 16 steps
        while done < n:
            if done:
                threads.refresh()   # a load that started meanwhile: the free cores
            k = min(chunk, n - done)
            program = opt.flat_program(self.bk, self, k, fold)
            losses, squares = np.zeros(k), np.zeros((k, len(self.dims) - 1))
            t0 = time.perf_counter()
            out = kernel(XR, YR, order, starts[done:done + k], layers, work, hidden, output,
                         (dz_scale, w_scale, scale, l2_scale), program, check, squares_mode,
                         losses, squares)
            if out is None:
                return None if done == 0 else done
            ran, status = out
            opt.advance(ran)
            on_chunk(losses[:ran], squares[:ran])
            done += ran
            if status != STEPS_DONE:
                return done
            elapsed = time.perf_counter() - t0
            chunk = max(1, int(k * min(2.0, CHUNK_SECONDS / max(elapsed, 1e-6))))
        return done
