"""scikit-learn's SGD and Adam update rules, run through a fastnn backend's update kernels."""

import numpy as np

from ..backends import _interface as _I
from ..backends.numpy_backend import adam_coefficients
from ..errors import FastnnValueError
from ..optim import _adam_consts, _check_beta


class _SklearnSGD:
    """scikit-learn's ``SGDOptimizer``, applied through the backend's ``sgd_update`` kernel.

    Velocity ``v = momentum * v - lr * g``; the parameter gets ``+= v``, or with
    Nesterov ``+= momentum * v - lr * g``.  Each line is a ``P -= s * G`` kernel
    call (``v *= momentum`` is ``v -= (1 - momentum) v``), so it runs on any
    backend and equals scikit-learn's rule up to rounding.  The learning-rate
    schedules (``invscaling``, ``adaptive``) are scikit-learn's.
    """

    def __init__(self, learning_rate_init, lr_schedule, momentum, nesterov, power_t):
        self.learning_rate_init = learning_rate_init
        self.learning_rate = float(learning_rate_init)
        self.lr_schedule = lr_schedule
        self.momentum = momentum
        self.nesterov = nesterov
        self.power_t = power_t
        self.velocities = None

    def bind(self, bk, params):
        """Put the state on ``bk`` (zeros when missing or not matching ``params``)."""
        if self.momentum:
            self.velocities = _state_on(bk, self.velocities, params)

    def unbind(self, bk):
        """Move the state to host NumPy arrays (picklable, backend independent)."""
        self._flat = None  # the workspace's arrays (step_flat) are not kept past the fit
        if self.velocities is not None:
            self.velocities = [np.asarray(bk.to_host(v)) for v in self.velocities]

    #: The gradients it takes are complete (weight_grad applied 1/m and L2).
    FOLDS_WEIGHT_EPILOGUE = False

    def step(self, bk, params, grads, fold=None, states=None):
        """One update of every parameter, in place (``states``: the velocities, when not
        ``self.velocities``)."""
        t = params[0].dtype.type
        lr = t(self.learning_rate)
        if not self.momentum:
            for P, G in zip(params, grads):
                bk.sgd_update(P, G, lr)
            return
        mu, decay = t(self.momentum), t(1.0 - self.momentum)
        for P, G, V in zip(params, grads, self.velocities if states is None else states):
            bk.sgd_update(V, V, decay)       # v = momentum * v
            bk.sgd_update(V, G, lr)          # v = momentum * v - lr * g
            if self.nesterov:
                bk.sgd_update(P, V, -mu)     # p += momentum * v
                bk.sgd_update(P, G, lr)      # p -= lr * g
            else:
                bk.sgd_update(P, V, t(-1))   # p += v

    def step_flat(self, bk, ws, fold=None):
        """:meth:`step` on a :class:`fastnn.engine.MinibatchWorkspace`'s flat arrays
        (bitwise the same: every line is elementwise)."""
        flat = _flat_state(self, bk, ws, ("velocities",) if self.momentum else ())
        self.step(bk, [ws.P_flat], [ws.G_flat], states=[flat["velocities"]] if flat else None)

    def flat_program(self, bk, ws, n, fold=None):
        """The next ``n`` :meth:`step_flat` updates as ``minibatch_steps`` takes them:
        ``(rule, S1, S2, n_fold, consts, per_step)`` (``_numba_kernels/steps.py``)."""
        t = ws.dtype.type
        per_step = np.zeros((n, 3), ws.dtype)
        per_step[:, 0] = t(self.learning_rate)
        consts = np.zeros(6, ws.dtype)
        if not self.momentum:
            return _I.RULE_SGD, consts[:0], consts[:0], 0, consts, per_step
        v = _flat_state(self, bk, ws, ("velocities",))["velocities"]
        mu = t(self.momentum)
        consts[:4] = t(1.0 - self.momentum), -mu, bool(self.nesterov), t(-1)
        return _I.RULE_VELOCITY, v, v[:0], 0, consts, per_step

    def advance(self, n):
        """Nothing to count (the schedules move per epoch, :meth:`iteration_ends`)."""

    def iteration_ends(self, time_step):
        if self.lr_schedule == "invscaling":
            self.learning_rate = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg, verbose):
        if self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False


class _SklearnAdam:
    """scikit-learn's ``AdamOptimizer`` through the backend's ``adam_update`` kernel.

    scikit-learn steps ``p -= lr_t * m / (sqrt(v) + eps)`` with
    ``lr_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)``; fastnn's ``adam_update``
    is specified as ``p -= lr * m_hat / (sqrt(v_hat) + eps')`` with bias-corrected
    moments.  The two are the same update when ``eps' = eps / sqrt(1 - beta_2^t)``,
    which is what is passed, so the rule is scikit-learn's up to rounding, on any
    backend.  The weights' gradients arrive bare (``dZ @ A_prev.T``) and the
    kernel applies ``1/m`` and the L2 term as it updates (``fold``).
    """

    def __init__(self, learning_rate_init, beta_1, beta_2, epsilon):
        self.learning_rate_init = learning_rate_init
        self.learning_rate = float(learning_rate_init)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.t = 0
        self.ms = None
        self.vs = None

    def bind(self, bk, params):
        self.check_dtype(params[0].dtype)
        self.ms = _state_on(bk, self.ms, params)
        self.vs = _state_on(bk, self.vs, params)

    def check_dtype(self, dtype):
        """The kernels run the moments in ``dtype``: a ``beta_1``/``beta_2`` that rounds to 1
        there, or an ``epsilon`` below its smallest normal, is refused by name."""
        _check_beta(self.beta_1, "beta_1", dtype, "the first moment would stay 0 and no parameter "
                    "would move")
        _check_beta(self.beta_2, "beta_2", dtype, "the second moment would stay 0 and every update "
                    "would divide by epsilon alone")
        tiny = float(np.finfo(dtype).tiny)
        if self.epsilon < tiny:
            raise FastnnValueError(f"epsilon: {self.epsilon:g} is below the smallest normal "
                                   f"{np.dtype(dtype).name} ({tiny:g}) and rounds to 0 there; use "
                                   f"epsilon >= {tiny:g} or float64 data")

    def unbind(self, bk):
        self._flat = None  # the workspace's arrays (step_flat) are not kept past the fit
        self.ms = [np.asarray(bk.to_host(a)) for a in self.ms]
        self.vs = [np.asarray(bk.to_host(a)) for a in self.vs]

    #: It takes each dW bare and applies ``g_scale dW + l2 W`` itself (``fold``).
    FOLDS_WEIGHT_EPILOGUE = True

    def step(self, bk, params, grads, fold=None, states=None):
        """One update of every parameter, in place.

        ``fold = (n_weights, g_scale, l2)``: the first ``n_weights`` gradients
        are bare ``dZ @ A_prev.T`` and get ``adam_update``'s ``g_scale``, ``l2``.
        ``states``: the moments ``(ms, vs)``, when not ``self.ms``, ``self.vs``.
        """
        self.t += 1
        correction2 = self._set_learning_rate()
        t = params[0].dtype.type
        lr, b1, b2 = t(self.learning_rate_init), t(self.beta_1), t(self.beta_2)
        eps = t(self.epsilon / correction2)
        n_weights, g_scale, l2 = fold or (0, 1, 0)
        ms, vs = (self.ms, self.vs) if states is None else states
        for i, (P, G, M, V) in enumerate(zip(params, grads, ms, vs)):
            if i < n_weights:
                bk.adam_update(P, G, M, V, lr, b1, b2, eps, self.t, g_scale, l2)
            else:
                bk.adam_update(P, G, M, V, lr, b1, b2, eps, self.t)

    def step_flat(self, bk, ws, fold=None):
        """:meth:`step` on a :class:`fastnn.engine.MinibatchWorkspace`'s flat arrays: two
        calls, the weights' segment (folded) and the biases' (bitwise the same)."""
        flat = _flat_state(self, bk, ws, ("ms", "vs"))
        n = ws.n_weights
        halves = lambda a: [a[:n], a[n:]]  # noqa: E731
        self.step(bk, halves(ws.P_flat), halves(ws.G_flat), fold and (1,) + tuple(fold[1:]),
                  states=(halves(flat["ms"]), halves(flat["vs"])))

    def flat_program(self, bk, ws, n, fold=None):
        """See :meth:`_SklearnSGD.flat_program`: each step's ``(step, eps_t)`` formed as
        :meth:`step` and ``adam_update`` form them; the weights' segment folded."""
        flat = _flat_state(self, bk, ws, ("ms", "vs"))
        t = ws.dtype.type
        lr, b1, b2 = t(self.learning_rate_init), t(self.beta_1), t(self.beta_2)
        per_step = np.zeros((n, 3), ws.dtype)
        for s in range(n):
            step = self.t + 1 + s
            eps = t(self.epsilon / np.sqrt(1.0 - self.beta_2 ** step))
            per_step[s, 1:] = adam_coefficients(lr, b1, b2, eps, step, ws.dtype)
        n_fold, g_scale, l2 = fold or (0, 1, 0)
        if g_scale == 1 and not l2:  # adam_update's unfolded kernel
            n_fold = 0
        return (_I.RULE_ADAM, flat["ms"], flat["vs"], ws.n_weights if n_fold else 0,
                _adam_consts(b1, b2, ws.dtype, t(g_scale), t(l2)), per_step)

    def advance(self, n):
        """Count ``n`` updates made by the compiled steps, as :meth:`step` counts them."""
        if n:
            self.t += n
            self._set_learning_rate()

    def _set_learning_rate(self):
        """scikit-learn's ``learning_rate`` of step ``t``; returns ``sqrt(1 - beta_2^t)``."""
        correction2 = np.sqrt(1.0 - self.beta_2 ** self.t)
        self.learning_rate = self.learning_rate_init * correction2 / (1.0 - self.beta_1 ** self.t)
        return correction2

    def iteration_ends(self, time_step):
        pass

    def trigger_stopping(self, msg, verbose):
        if verbose:
            print(msg + " Stopping.")
        return True


def _state_on(bk, state, params):
    """Optimizer state for ``params`` on backend ``bk``: kept when it matches, else zeros."""
    if state is None or len(state) != len(params) or any(
            s.shape != P.shape or s.dtype != P.dtype for s, P in zip(state, params)):
        return [bk.zeros_like(P) for P in params]
    # Fresh copies: the kernels update them in place, and a loaded model's state may be
    # read-only (joblib.load(..., mmap_mode="r")).
    return [bk.to_device(np.array(bk.to_host(s), order="C", copy=True)) for s in state]


def _flat_state(opt, bk, ws, names):
    """``{name: flat array}`` of the optimizer's state lists ``names``, kept in ``ws``'s
    layout; the lists become the flat arrays' views (copied in when they are not yet)."""
    cached = getattr(opt, "_flat", None)
    if cached is not None and cached[0] is ws and all(
            all(a is v for a, v in zip(getattr(opt, name), cached[1][name][1])) for name in names):
        return {name: cached[1][name][0] for name in names}
    made = {}
    for name in names:
        # The state lists are in the estimator's order (W[1..L], then b[1..L]); ws.split's
        # is W[1], b[1], ...
        state = getattr(opt, name)
        L = len(state) // 2
        made[name] = ws.flat_copy([bk.to_host(a) for pair in zip(state[:L], state[L:])
                                   for a in pair])
        views = made[name][1]
        setattr(opt, name, views[0::2] + views[1::2])
        made[name] = (made[name][0], getattr(opt, name))
    opt._flat = (ws, made)
    return {name: made[name][0] for name in names}
