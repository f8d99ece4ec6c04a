"""scikit-learn estimators running on fastnn's kernels.

:class:`MLPClassifier` and :class:`MLPRegressor` mirror
:class:`sklearn.neural_network.MLPClassifier` / ``MLPRegressor``: the same
parameters (with their defaults), fitted attributes, training loop
(minibatches, shuffling, ``tol`` / ``n_iter_no_change``, early stopping,
``ConvergenceWarning``), initialisation (Glorot uniform drawn from
``check_random_state(random_state)`` in scikit-learn's order) and optimizer
update rules, so that with the same ``random_state`` a fit follows
scikit-learn's trajectory up to floating-point rounding.  The forward and
backward passes and the parameter updates run on a fastnn backend
(:func:`fastnn.get_backend`).

Layout
------
scikit-learn's ``X`` is row-major ``(n_samples, n_features)``; fastnn computes
in the course's column-major notation.  ``X`` is transposed once, at the
boundary, to a C-contiguous ``(n_features, n_samples)`` array of the
computation dtype; minibatches are column gathers from it.  Parameters live as
fastnn's ``W[l]`` ``(n_l, n_{l-1})`` and ``b[l]`` ``(n_l, 1)``; the fitted
``coefs_[l]`` is ``W[l].T`` (shape ``(fan_in, fan_out)``, a view) and
``intercepts_[l]`` is ``b[l]`` raveled (a view).

Not supported: ``solver="lbfgs"``, ``MLPRegressor(loss="poisson")``,
``sample_weight``, and sparse ``X`` (fastnn's kernels are dense).
"""

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d, gen_batches
from sklearn.utils import shuffle as _shuffle
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted

from ._passes import _backward, _forward, _scales
from .backends import get_backend

try:
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # scikit-learn < 1.6
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

__all__ = ["MLPClassifier", "MLPRegressor"]

#: scikit-learn's hidden activation name -> fastnn's.
_HIDDEN = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
#: scikit-learn's ``out_activation_`` -> fastnn's output layer (with its loss).
_OUTPUT = {"logistic": "sigmoid", "softmax": "softmax", "identity": "identity"}
_SOLVERS = ("sgd", "adam")
_SCHEDULES = ("constant", "invscaling", "adaptive")
_SCALINGS = ("deferred", "absorbed")
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_VALIDATE_DTYPES = (np.float64, np.float32)


# ------------------------------------------------------------------ helpers

def _columns(A, dtype, name, copy=False):
    """Row-major ``A`` (n, k) as a C-contiguous ``(k, n)`` array of ``dtype``: the one transpose."""
    if copy:
        out = np.array(A.T, dtype=dtype, order="C")
    else:
        out = np.ascontiguousarray(A.T, dtype=dtype)
    if out.dtype.itemsize < A.dtype.itemsize and out.size and not np.isfinite(out).all():
        raise ValueError(f"{name} has values too large for {np.dtype(dtype).name}")
    return out


def _rows(A, dtype, name):
    """Row-major ``A`` as a C-contiguous array of ``dtype`` (no copy when it already is one)."""
    out = np.ascontiguousarray(A, dtype=dtype)
    if out.dtype.itemsize < A.dtype.itemsize and out.size and not np.isfinite(out).all():
        raise ValueError(f"{name} has values too large for {np.dtype(dtype).name}")
    return out


def _sum_squares(bk, Ws):
    """sum_l ||W[l]||^2 as a float (scikit-learn's L2 term before scaling)."""
    return sum(float(np.vdot(W, W)) for W in map(bk.to_host, Ws))


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def _check_real(est, name, low, high=None, low_open=False, high_open=True):
    value = getattr(est, name)
    if _is_bool(value) or not isinstance(value, numbers.Real) or np.isnan(value):
        raise TypeError(f"{type(est).__name__}: {name} must be a real number, got {value!r}")
    bad_low = value <= low if low_open else value < low
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        left = "(" if low_open else "["
        right = "inf)" if high is None else (f"{high})" if high_open else f"{high}]")
        raise ValueError(f"{type(est).__name__}: {name} must be in the range {left}{low}, {right}; "
                         f"got {value!r}")
    return float(value)


def _check_int(est, name, low=1, allow_inf=False):
    value = getattr(est, name)
    if allow_inf and isinstance(value, numbers.Real) and not _is_bool(value) and value == np.inf:
        return value
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{type(est).__name__}: {name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{type(est).__name__}: {name} must be >= {low}, got {value!r}")
    return int(value)


def _check_choice(est, name, choices):
    value = getattr(est, name)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{type(est).__name__}: {name} must be one of {list(choices)}, got {value!r}")
    return value


def _check_bool(est, name):
    value = getattr(est, name)
    if not _is_bool(value):
        raise TypeError(f"{type(est).__name__}: {name} must be a bool, got {value!r}")
    return bool(value)


# ------------------------------------------------------- scikit-learn's updates

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
        if self.velocities is not None:
            self.velocities = [np.asarray(bk.to_host(v)) for v in self.velocities]

    #: The gradients it takes are complete (weight_grad applied 1/m and L2).
    FOLDS_WEIGHT_EPILOGUE = False

    def step(self, bk, params, grads, fold=None):
        """One update of every parameter, in place."""
        t = params[0].dtype.type
        lr = t(self.learning_rate)
        if not self.momentum:
            for P, G in zip(params, grads):
                bk.sgd_update(P, G, lr)
            return
        mu, decay = t(self.momentum), t(1.0 - self.momentum)
        for P, G, V in zip(params, grads, self.velocities):
            bk.sgd_update(V, V, decay)       # v = momentum * v
            bk.sgd_update(V, G, lr)          # v = momentum * v - lr * g
            if self.nesterov:
                bk.sgd_update(P, V, -mu)     # p += momentum * v
                bk.sgd_update(P, G, lr)      # p -= lr * g
            else:
                bk.sgd_update(P, V, t(-1))   # p += v

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
        self.ms = _state_on(bk, self.ms, params)
        self.vs = _state_on(bk, self.vs, params)

    def unbind(self, bk):
        self.ms = [np.asarray(bk.to_host(a)) for a in self.ms]
        self.vs = [np.asarray(bk.to_host(a)) for a in self.vs]

    #: It takes each dW bare and applies ``g_scale dW + l2 W`` itself (``fold``).
    FOLDS_WEIGHT_EPILOGUE = True

    def step(self, bk, params, grads, fold=None):
        """One update of every parameter, in place.

        ``fold = (n_weights, g_scale, l2)``: the first ``n_weights`` gradients
        are bare ``dZ @ A_prev.T`` and get ``adam_update``'s ``g_scale``, ``l2``.
        """
        self.t += 1
        correction2 = np.sqrt(1.0 - self.beta_2 ** self.t)
        self.learning_rate = self.learning_rate_init * correction2 / (1.0 - self.beta_1 ** self.t)
        t = params[0].dtype.type
        lr, b1, b2 = t(self.learning_rate_init), t(self.beta_1), t(self.beta_2)
        eps = t(self.epsilon / correction2)
        n_weights, g_scale, l2 = fold or (0, 1, 0)
        for i, (P, G, M, V) in enumerate(zip(params, grads, self.ms, self.vs)):
            if i < n_weights:
                bk.adam_update(P, G, M, V, lr, b1, b2, eps, self.t, g_scale, l2)
            else:
                bk.adam_update(P, G, M, V, lr, b1, b2, eps, self.t)

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
    return [bk.to_device(np.ascontiguousarray(bk.to_host(s))) for s in state]


# ---------------------------------------------------------------- estimators

class _BaseMLP(BaseEstimator):
    """Shared fit/predict machinery of :class:`MLPClassifier` and :class:`MLPRegressor`."""

    # -------------------------------------------------------- parameter checks

    def _check_params(self):
        """Validate the constructor parameters; return the hidden layer sizes as a list."""
        name = type(self).__name__
        sizes = self.hidden_layer_sizes
        if not hasattr(sizes, "__iter__"):
            sizes = [sizes]
        sizes = list(sizes)
        for s in sizes:
            if _is_bool(s) or not isinstance(s, numbers.Integral):
                raise TypeError(f"{name}: hidden_layer_sizes must be integers, got {self.hidden_layer_sizes!r}")
            if s <= 0:
                raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        if self.solver == "lbfgs":
            raise ValueError(f"{name}: solver='lbfgs' is not supported by fastnn (its kernels "
                             "implement the stochastic solvers only); use solver='adam' or 'sgd', "
                             "or sklearn.neural_network for L-BFGS")
        _check_choice(self, "solver", _SOLVERS)
        _check_choice(self, "activation", tuple(_HIDDEN))
        _check_real(self, "alpha", 0)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            _check_int(self, "batch_size")
        _check_choice(self, "learning_rate", _SCHEDULES)
        _check_real(self, "learning_rate_init", 0, low_open=True)
        _check_real(self, "power_t", 0)
        _check_int(self, "max_iter")
        _check_bool(self, "shuffle")
        _check_real(self, "tol", 0)
        if not isinstance(self.verbose, numbers.Integral):
            raise TypeError(f"{name}: verbose must be a bool or an integer, got {self.verbose!r}")
        _check_bool(self, "warm_start")
        _check_real(self, "momentum", 0, 1, high_open=False)
        _check_bool(self, "nesterovs_momentum")
        _check_bool(self, "early_stopping")
        _check_real(self, "validation_fraction", 0, 1)
        _check_real(self, "beta_1", 0, 1)
        _check_real(self, "beta_2", 0, 1)
        _check_real(self, "epsilon", 0, low_open=True)
        _check_int(self, "n_iter_no_change", allow_inf=True)
        _check_int(self, "max_fun")
        if self.backend is not None and not isinstance(self.backend, str):
            raise TypeError(f"{name}: backend must be None or a backend name, got {self.backend!r}")
        if self.dtype is not None:
            try:
                dt = np.dtype(self.dtype)
            except TypeError as exc:
                raise TypeError(f"{name}: dtype must be None, float32 or float64, got {self.dtype!r}") from exc
            if dt not in _DTYPES:
                raise ValueError(f"{name}: dtype must be None, float32 or float64, got {dt}")
        if self.scaling == "sum":
            raise ValueError(f"{name}: scaling='sum' is not supported: it optimizes the summed "
                             "loss, not scikit-learn's mean loss; use 'deferred' or 'absorbed'")
        _check_choice(self, "scaling", _SCALINGS)
        return [int(s) for s in sizes]

    def _backend(self, work):
        return get_backend(self.backend, work)

    # -------------------------------------------------------------------- fit

    def _fit(self, X, y, incremental=False):
        hidden_sizes = self._check_params()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        n_samples, n_features = X.shape
        if first_pass:
            dtype = X.dtype if self.dtype is None else np.dtype(self.dtype)
        else:
            dtype = np.asarray(self.coefs_[0]).dtype
        n_outputs = Y.shape[1]
        layer_units = [n_features] + hidden_sizes + [n_outputs]

        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(layer_units, dtype)
        else:
            shapes = [tuple(np.shape(c)) for c in self.coefs_]
            expected = [(a, b) for a, b in zip(layer_units[:-1], layer_units[1:])]
            if shapes != expected:
                raise ValueError(
                    f"{type(self).__name__}: the fitted coefs_ have shapes {shapes} but this data "
                    f"and hidden_layer_sizes need {expected}; refit with warm_start=False")
        self.n_outputs_ = n_outputs

        self._fit_stochastic(X, Y, dtype, incremental)

        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        return self

    def _initialize(self, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = layer_units[-1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._output_activation()
        self.coefs_, self.intercepts_ = [], []
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            # Glorot uniform, drawn in scikit-learn's order (coef, then intercept) in float64.
            factor = 2.0 if self.activation == "logistic" else 6.0
            bound = np.sqrt(factor / (fan_in + fan_out))
            coef = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            intercept = self._random_state.uniform(-bound, bound, fan_out)
            W = np.ascontiguousarray(coef.T, dtype=dtype)
            b = np.array(intercept, dtype=dtype).reshape(-1, 1)
            self.coefs_.append(W.T)
            self.intercepts_.append(b.reshape(-1))
        self._best_coefs = [np.array(c) for c in self.coefs_]
        self._best_intercepts = [np.array(b) for b in self.intercepts_]
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _make_optimizer(self):
        if self.solver == "sgd":
            return _SklearnSGD(self.learning_rate_init, self.learning_rate, self.momentum,
                               self.nesterovs_momentum, self.power_t)
        return _SklearnAdam(self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon)

    def _device_params(self, bk, dtype):
        Ws = [bk.to_device(np.ascontiguousarray(np.asarray(c).T, dtype=dtype)) for c in self.coefs_]
        bs = [bk.to_device(np.ascontiguousarray(np.reshape(b, (-1, 1)), dtype=dtype))
              for b in self.intercepts_]
        return Ws, bs

    def _store_params(self, bk, Ws, bs):
        """coefs_ = W.T and intercepts_ = b raveled (views of host arrays)."""
        self.coefs_ = [np.asarray(bk.to_host(W)).T for W in Ws]
        self.intercepts_ = [np.asarray(bk.to_host(b)).reshape(-1) for b in bs]

    def _fit_stochastic(self, X, Y, dtype, incremental):
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._make_optimizer()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            # don't stratify in multilabel classification (as scikit-learn)
            stratify = Y if is_classifier(self) and self.n_outputs_ == 1 else None
            X_train, X_val, Y_train, Y_val = train_test_split(
                X, Y, random_state=self._random_state, test_size=self.validation_fraction,
                stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                 "or the size of your dataset.")
            y_val = self._targets_for_score(Y_val)
        else:
            X_train, Y_train, X_val, y_val = X, Y, None, None

        # Minibatches are gathered as rows of the row-major X (contiguous reads: a column
        # gather from a transposed copy reads one cache line per entry, ~16x the traffic)
        # and reach the first layer as a transposed view (gather_columns): a transposed
        # copy per batch cost as much as the gather.  Targets likewise: one cache line
        # per example (its row) instead of one per output.
        XR = _rows(X_train, dtype, "X")
        YR = _rows(Y_train, dtype, "y")
        del X_train, Y_train
        n_samples = XR.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than "
                              "sample size. It is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        units = [XR.shape[1]] + [np.shape(c)[1] for c in self.coefs_]
        bk = self._backend(batch_size * max(units[1:]))
        if dtype.type not in bk.DTYPES:
            raise TypeError(f"{type(self).__name__}: dtype {dtype} is not supported by backend "
                            f"{bk.NAME!r}")
        Ws, bs = self._device_params(bk, dtype)
        params = Ws + bs
        opt = self._optimizer
        opt.bind(bk, params)
        XvT = None if X_val is None else bk.to_device(_columns(X_val, dtype, "X"))

        hidden, output = _HIDDEN[self.activation], _OUTPUT[self.out_activation_]
        fold = opt.FOLDS_WEIGHT_EPILOGUE
        alpha = float(self.alpha)
        # scikit-learn's squared loss is also averaged over the outputs.
        loss_div = self.n_outputs_ if output == "identity" else 1
        sample_idx = np.arange(n_samples, dtype=int)
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    sample_idx = _shuffle(sample_idx, random_state=self._random_state)
                accumulated_loss = 0.0
                for batch in gen_batches(n_samples, batch_size):
                    idx = sample_idx[batch] if self.shuffle else batch
                    Xb = bk.gather_columns(XR, idx)
                    Yr = np.take(YR, idx, axis=0) if self.shuffle else YR[idx]
                    Yb = bk.to_device(np.ascontiguousarray(Yr.T))
                    m = Xb.shape[1]
                    As, ZL = _forward(bk, Ws, bs, Xb, hidden, output)
                    dWs, dbs, loss_sum = _backward(bk, Ws, As, ZL, Yb, hidden, output,
                                                   self.scaling, "fused", alpha,
                                                   weights="bare" if fold else "full")
                    del As, ZL
                    batch_loss = loss_sum / (m * loss_div)
                    if alpha:
                        batch_loss += 0.5 * alpha * _sum_squares(bk, Ws) / m
                    accumulated_loss += batch_loss * m
                    opt.step(bk, params, dWs + dbs,
                             (len(Ws), _scales(self.scaling, m, dtype)[1], dtype.type(alpha / m))
                             if fold else None)

                self.n_iter_ += 1
                self.loss_ = accumulated_loss / n_samples
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))

                self._update_no_improvement_count(early_stopping, bk, Ws, bs, XvT, y_val)
                opt.iteration_ends(self.t_)

                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        msg = ("Validation score did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    else:
                        msg = ("Training loss did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    if opt.trigger_stopping(msg, self.verbose):
                        break
                    self._no_improvement_count = 0

                if incremental:
                    break

                if self.n_iter_ == self.max_iter:
                    warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                                  "optimization hasn't converged yet." % self.max_iter,
                                  ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        finally:
            self._store_params(bk, Ws, bs)
            opt.unbind(bk)

        if early_stopping:
            # restore the best weights (as copies, so later warm starts leave them alone)
            self.coefs_ = [np.array(c.T, order="C").T for c in self._best_coefs]
            self.intercepts_ = [np.array(b) for b in self._best_intercepts]

    def _update_no_improvement_count(self, early_stopping, bk, Ws, bs, XvT, y_val):
        if early_stopping:
            AL = self._output_from(bk, Ws, bs, XvT)
            val_score = self._score_outputs(AL, y_val)
            self.validation_scores_.append(val_score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            last_valid_score = self.validation_scores_[-1]
            if last_valid_score < (self.best_validation_score_ + self.tol):
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last_valid_score > self.best_validation_score_:
                self.best_validation_score_ = last_valid_score
                self._best_coefs = [np.array(bk.to_host(W)).T for W in Ws]
                self._best_intercepts = [np.array(bk.to_host(b)).reshape(-1) for b in bs]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    # ---------------------------------------------------------------- predict

    def _output_from(self, bk, Ws, bs, XT):
        """Output activations ``(n_samples, n_outputs)`` (host, C order) for columns ``XT``."""
        As, _ = _forward(bk, Ws, bs, XT, _HIDDEN[self.activation], _OUTPUT[self.out_activation_])
        return np.ascontiguousarray(np.asarray(bk.to_host(As[-1])).T)

    def _forward_pass_fast(self, X, check_input=True):
        """Output activations for row-major ``X``, computed in the model's dtype."""
        if check_input:
            X = _validate_data(self, X, accept_sparse=False, dtype=_VALIDATE_DTYPES, reset=False)
        dtype = np.asarray(self.coefs_[0]).dtype
        XT = _columns(X, dtype, "X")
        units = [XT.shape[0]] + [np.shape(c)[1] for c in self.coefs_]
        bk = self._backend(XT.shape[1] * max(units[1:]))
        Ws, bs = self._device_params(bk, dtype)
        return self._output_from(bk, Ws, bs, bk.to_device(XT))

    def _score_outputs(self, AL, y):
        """Validation score of outputs ``AL`` against ``y`` (NaN when ``AL`` is not finite)."""
        if not np.isfinite(AL).all():
            return np.nan
        return self._score_function(y, self._predict_from_outputs(AL))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


_PARAMS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element is the number of units in the ith hidden layer.
    activation : {"identity", "logistic", "tanh", "relu"}, default="relu"
        Hidden-layer activation ("logistic" is fastnn's "sigmoid").
    solver : {"adam", "sgd"}, default="adam"
        Stochastic solver with scikit-learn's update rules.  "lbfgs" is not
        supported (ValueError).
    alpha : float, default=0.0001
        L2 strength: the loss is the mean loss plus
        ``alpha / (2 n_samples) * sum ||W||^2`` (fastnn's ``l2=alpha``).
    batch_size : int or "auto", default="auto"
        Minibatch size; "auto" is ``min(200, n_samples)``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Learning-rate schedule of solver="sgd" (as scikit-learn).
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
        Exponent of the "invscaling" schedule.
    max_iter : int, default=200
        Maximum number of epochs.
    shuffle : bool, default=True
        Shuffle the samples every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the early-stopping split and the shuffles,
        drawn in the same order as scikit-learn.
    tol : float, default=1e-4
    verbose : bool, default=False
    warm_start : bool, default=False
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, defaults 0.9, 0.999, 1e-8
        Adam's parameters.
    n_iter_no_change : int, default=10
    max_fun : int, default=15000
        Accepted for compatibility with scikit-learn's signature; unused (it
        only applies to L-BFGS).
    backend : str or None, default=None
        fastnn backend ("numpy", "numba", "numba-parallel", "auto"); None is
        fastnn's default (see :func:`fastnn.get_backend`).
    dtype : {None, "float32", "float64"}, default=None
        Computation dtype.  None: float32 when X is float32, else float64.
        Fixed at the first fit (warm starts and partial_fit keep it).
    scaling : {"deferred", "absorbed"}, default="deferred"
        Where fastnn applies the ``1/m`` of the gradient (same gradient up to
        rounding).
"""

_ATTRS_DOC = """
    coefs_ : list of ndarray
        ``coefs_[i]`` has shape ``(fan_in, fan_out)``: fastnn's ``W[i+1].T``.
    intercepts_ : list of ndarray
        ``intercepts_[i]`` has shape ``(fan_out,)``.
    loss_ : float
        Loss after the last epoch.
    loss_curve_ : list of float
        Loss after every epoch.
    best_loss_ : float or None
        Minimum of ``loss_curve_`` (None with early stopping).
    validation_scores_ : list of float or None
        Score on the validation split after every epoch (early stopping only).
    best_validation_score_ : float or None
    n_iter_ : int
        Epochs run by the last fit.
    t_ : int
        Training samples seen: ``n_iter_ * n_samples`` summed over fits.
    n_layers_ : int
    n_outputs_ : int
    out_activation_ : str
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X had string column names.
"""


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = """Multi-layer perceptron classifier on fastnn's kernels.

    A drop-in counterpart of :class:`sklearn.neural_network.MLPClassifier`
    (stochastic solvers).  Binary and multi-label targets use logistic outputs
    with binary cross-entropy, multiclass targets a softmax with categorical
    cross-entropy.
""" + _PARAMS_DOC + """
    Attributes
    ----------
    classes_ : ndarray or list of ndarray
        Class labels.""" + _ATTRS_DOC + """
    Examples
    --------
    >>> from fastnn import MLPClassifier
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = MLPClassifier((64,), max_iter=50, random_state=0).fit(X / 16, y)
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 backend=None, dtype=None, scaling="deferred"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype
        self.scaling = scaling

    def _output_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _validate_input(self, X, y, incremental, reset):
        X, y = _validate_data(self, X, y, accept_sparse=False, multi_output=True,
                              dtype=_VALIDATE_DTYPES, reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the "
                        f"previous call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError("`y` has classes not in `self.classes_`. "
                                 f"`self.classes_` has {self.classes_}. 'y' has {classes}.")
        return X, self._label_binarizer.transform(y)

    def _targets_for_score(self, Y):
        return self._label_binarizer.inverse_transform(Y)

    def _predict_from_outputs(self, AL):
        if self.n_outputs_ == 1:
            AL = AL.ravel()
        return self._label_binarizer.inverse_transform(AL)

    @staticmethod
    def _score_function(y, y_pred):
        return accuracy_score(y, y_pred)

    def fit(self, X, y):
        """Fit the model to ``X`` (n_samples, n_features) and labels ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            Class labels, or a label-indicator matrix for multi-label.

        Returns
        -------
        self : MLPClassifier
        """
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``X``, ``y``, continuing from the current state.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
        classes : array-like of shape (n_classes,), default=None
            All classes of all calls; required on the first call.

        Returns
        -------
        self : MLPClassifier
        """
        self._check_params()
        if classes is None:
            if getattr(self, "classes_", None) is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
        elif getattr(self, "classes_", None) is not None:
            if not np.array_equal(self.classes_, unique_labels(classes)):
                raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                                 f"partial_fit, was: {self.classes_!r}")
        else:
            self.classes_ = unique_labels(classes)
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Predicted class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        check_is_fitted(self)
        return self._predict_from_outputs(self._forward_pass_fast(X))

    def predict_proba(self, X):
        """Class probabilities, columns ordered as ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Binary problems give two columns ``[1 - p, p]``.
        """
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            p = y_pred.ravel()
            return np.vstack([1 - p, p]).T
        return y_pred

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        y_prob = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = """Multi-layer perceptron regressor on fastnn's kernels.

    A drop-in counterpart of :class:`sklearn.neural_network.MLPRegressor`
    (stochastic solvers, squared error): identity outputs, loss
    ``1/2 mean((y - p)^2)`` (averaged over samples and outputs) plus the L2 term.
""" + _PARAMS_DOC.replace("    Parameters\n    ----------\n", """    Parameters
    ----------
    loss : {"squared_error"}, default="squared_error"
        "poisson" is not supported (ValueError).
""") + """
    Attributes
    ----------""" + _ATTRS_DOC + """
    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import MLPRegressor
    >>> X = np.random.default_rng(0).uniform(-1, 1, (500, 3))
    >>> reg = MLPRegressor(hidden_layer_sizes=(32,), max_iter=200, random_state=0)
    >>> reg = reg.fit(X, X.sum(axis=1))
    """

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 backend=None, dtype=None, scaling="deferred"):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype
        self.scaling = scaling

    def _check_params(self):
        if self.loss == "poisson":
            raise ValueError("MLPRegressor: loss='poisson' is not supported by fastnn; "
                             "use loss='squared_error'")
        _check_choice(self, "loss", ("squared_error",))
        return super()._check_params()

    def _output_activation(self):
        return "identity"

    def _validate_input(self, X, y, incremental, reset):
        X, y = _validate_data(self, X, y, accept_sparse=False, multi_output=True, y_numeric=True,
                              dtype=_VALIDATE_DTYPES, reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, (y.reshape(-1, 1) if y.ndim == 1 else y)

    def _targets_for_score(self, Y):
        return Y.ravel() if Y.shape[1] == 1 else Y

    def _predict_from_outputs(self, AL):
        return AL.ravel() if AL.shape[1] == 1 else AL

    @staticmethod
    def _score_function(y, y_pred):
        return r2_score(y, y_pred)

    def fit(self, X, y):
        """Fit the model to ``X`` (n_samples, n_features) and targets ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self : MLPRegressor
        """
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y):
        """One epoch over ``X``, ``y``, continuing from the current state.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self : MLPRegressor
        """
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Predicted targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        check_is_fitted(self)
        return self._predict_from_outputs(self._forward_pass_fast(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
