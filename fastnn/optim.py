"""Optimizers: SGD, momentum and Adam, updating parameters in place through
the backend's update kernels.

Each optimizer keeps its state as backend arrays, one per parameter, in the
order ``W1, b1, ..., WL, bL``; :meth:`state_dict` and :meth:`load_state_dict`
move it to and from plain NumPy arrays (for checkpoints).
"""

import numpy as np

from . import _validation as V
from .backends import _interface as _I
from .backends.numpy_backend import adam_coefficients

OPTIMIZERS = ("sgd", "momentum", "adam")


class SGD:
    """Plain gradient descent: ``P -= lr * G``."""

    name = "sgd"
    slots = ()

    def __init__(self, lr=0.01):
        self.lr = V.check_positive_float(lr, "lr")
        self.t = 0
        self.state = {}

    def check_dtype(self, dtype):
        """Check the hyperparameters in ``dtype``, the precision the updates use them in.

        Raises FastnnValueError naming the option when one rounds to a value the
        update cannot use (a beta that rounds to 1, an eps that rounds to 0).
        """
        V.check_lr(self.lr, dtype)

    def _init_state(self, bk, params):
        for slot in self.slots:
            if slot not in self.state:
                self.state[slot] = [bk.zeros_like(P) for P in params]

    def step(self, bk, params, grads):
        """Apply one update to the backend arrays ``params`` given ``grads`` (same order)."""
        self._init_state(bk, params)
        self.t += 1
        for i, (P, G) in enumerate(zip(params, grads)):
            self._update(bk, i, P, G)

    def _update(self, bk, i, P, G):
        bk.sgd_update(P, G, P.dtype.type(self.lr))

    def step_flat(self, bk, ws):
        """:meth:`step` on a :class:`fastnn.engine.MinibatchWorkspace`'s flat arrays.

        Updates ``ws.P_flat`` from ``ws.G_flat`` in one kernel call per rule;
        the state is kept as flat arrays whose :meth:`~MinibatchWorkspace.split`
        views are ``state[slot]`` (a state loaded or replaced since is copied in
        first).  Every update is elementwise, so the results are bitwise those
        of :meth:`step` on the views.
        """
        flat = self._flat_state(bk, ws)
        self.t += 1
        self._update(bk, None, ws.P_flat, ws.G_flat, *flat)

    def flat_program(self, bk, ws, n, fold=None):
        """The next ``n`` :meth:`step_flat` updates as ``minibatch_steps`` takes them:
        ``(rule, S1, S2, n_fold, consts, per_step)`` (``_numba_kernels/steps.py``;
        ``fold`` must be None: these take complete gradients).  Call :meth:`advance`
        with the number of steps the kernel ran."""
        t = ws.dtype.type
        per_step = np.zeros((n, 3), ws.dtype)
        per_step[:, 0] = t(self.lr)
        return self._program(bk, ws, per_step, t)

    def _program(self, bk, ws, per_step, t):
        empty = np.zeros(0, ws.dtype)
        return _I.RULE_SGD, empty, empty, 0, np.zeros(6, ws.dtype), per_step

    def advance(self, n):
        """Count ``n`` updates made by the compiled steps (:meth:`flat_program`)."""
        self.t += n

    def _flat_state(self, bk, ws):
        """The flat arrays of each slot, ``state[slot]`` their views (made when they are not)."""
        cached = getattr(self, "_flat", None)
        if cached is not None and cached[0] is ws and all(
                len(self.state.get(s, ())) == len(views)
                and all(a is v for a, v in zip(self.state[s], views))
                for s, (_, views) in zip(self.slots, cached[1])):
            return [flat for flat, _ in cached[1]]
        self._init_state(bk, ws.params)
        made = [ws.flat_copy([bk.to_host(a) for a in self.state[s]]) for s in self.slots]
        for s, (_, views) in zip(self.slots, made):
            self.state[s] = views
        self._flat = (ws, made)
        return [flat for flat, _ in made]

    def state_dict(self, bk):
        """Optimizer state as NumPy arrays: ``{"t": int, slot: [arrays]}``."""
        out = {"t": self.t}
        for slot, arrays in self.state.items():
            out[slot] = [np.array(bk.to_host(a)) for a in arrays]
        return out

    def load_state_dict(self, bk, state):
        """Restore what :meth:`state_dict` returned."""
        self.t = int(state["t"])
        self.state = {slot: [bk.to_device(np.array(a)) for a in state[slot]]
                      for slot in self.slots if slot in state}


class Momentum(SGD):
    """The course's momentum: ``V = beta V + (1 - beta) G``; ``P -= lr V``."""

    name = "momentum"
    slots = ("v",)

    def __init__(self, lr=0.01, beta=0.9):
        super().__init__(lr)
        self.beta = V.check_nonneg_float(beta, "beta")
        if self.beta >= 1:
            raise V.FastnnValueError(f"beta: expected a number in [0, 1), got {beta}")

    def check_dtype(self, dtype):
        """See :meth:`SGD.check_dtype`: ``beta`` must stay below 1 in ``dtype``."""
        super().check_dtype(dtype)
        _check_beta(self.beta, "beta", dtype, "(1 - beta) would be 0 and no parameter would move")

    def _program(self, bk, ws, per_step, t):
        (v,) = self._flat_state(bk, ws)
        consts = np.zeros(6, ws.dtype)
        consts[:2] = t(self.beta), t(1) - t(self.beta)
        return _I.RULE_MOMENTUM, v, v[:0], 0, consts, per_step

    def _update(self, bk, i, P, G, v=None):
        t = P.dtype.type
        bk.momentum_update(P, G, self.state["v"][i] if v is None else v, t(self.lr),
                           t(self.beta))


class Adam(SGD):
    """Adam with bias correction (Kingma & Ba), step counter ``t`` from 1."""

    name = "adam"
    slots = ("m", "v")

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(lr)
        for name, value in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= V.check_nonneg_float(value, name) < 1:
                raise V.FastnnValueError(f"{name}: expected a number in [0, 1), got {value}")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = V.check_positive_float(eps, "eps")

    def check_dtype(self, dtype):
        """See :meth:`SGD.check_dtype`: ``beta1``, ``beta2`` below 1 and ``eps`` a normal
        number in ``dtype``."""
        super().check_dtype(dtype)
        _check_beta(self.beta1, "beta1", dtype, "the bias correction 1 - beta1**t would be 0")
        _check_beta(self.beta2, "beta2", dtype, "the second moment would stay 0 and every update "
                    "would divide 0 by 0")
        tiny = np.finfo(dtype).tiny
        if np.dtype(dtype).type(self.eps) < tiny:
            raise V.FastnnValueError(
                f"eps: {self.eps:g} is below the smallest normal {np.dtype(dtype).name} ({tiny:g}), "
                "so the update's eps * sqrt(1 - beta2**t) can round to 0 and divide 0 by 0; "
                f"use eps >= {tiny:g} or a wider dtype")

    def flat_program(self, bk, ws, n, fold=None):
        """See :meth:`SGD.flat_program`: each step's ``(step, eps_t)`` from
        ``numpy_backend.adam_coefficients``, as ``adam_update`` forms them."""
        t = ws.dtype.type
        m, v = self._flat_state(bk, ws)
        per_step = np.zeros((n, 3), ws.dtype)
        for s in range(n):
            per_step[s, 1:] = adam_coefficients(t(self.lr), t(self.beta1), t(self.beta2),
                                                 t(self.eps), self.t + 1 + s, ws.dtype)
        return _I.RULE_ADAM, m, v, 0, _adam_consts(t(self.beta1), t(self.beta2), ws.dtype), per_step

    def _update(self, bk, i, P, G, m=None, v=None):
        t = P.dtype.type
        if m is None:
            m, v = self.state["m"][i], self.state["v"][i]
        bk.adam_update(P, G, m, v, t(self.lr), t(self.beta1), t(self.beta2), t(self.eps),
                       self.t)


def _adam_consts(beta1, beta2, dtype, g_scale=0, l2=0):
    """``minibatch_steps``' Adam constants: beta1, 1 - beta1, beta2, 1 - beta2 (in the
    dtype, as the backends' ``adam_update``), and the fold's g_scale, l2."""
    one = np.dtype(dtype).type(1)
    return np.array([beta1, one - beta1, beta2, one - beta2, g_scale, l2], dtype)


def _check_beta(beta, name, dtype, why):
    """``beta`` must stay below 1 once rounded to ``dtype`` (it is < 1 as a float64)."""
    dtype = np.dtype(dtype)
    if dtype.type(beta) >= 1:
        below = float(np.nextafter(dtype.type(1), dtype.type(0)))
        raise V.FastnnValueError(
            f"{name}: {beta!r} rounds to 1 in {dtype.name}, the dtype the update uses, so {why}; "
            f"use {name} <= {below!r} or a wider dtype")


_CLASSES = {"sgd": SGD, "momentum": Momentum, "adam": Adam}


def make_optimizer(name, lr, **options):
    """Build the optimizer called ``name`` with learning rate ``lr`` and its options."""
    V.check_choice(name, "optimizer", OPTIMIZERS)
    return _CLASSES[name](lr, **options)
