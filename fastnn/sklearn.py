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

Solvers
-------
"sgd" and "adam" run scikit-learn's epoch loop; "lbfgs" hands fastnn's loss
and gradient (one forward and backward pass over all samples, parameters
flattened in scikit-learn's order: every ``coefs_[l]`` raveled, then every
``intercepts_[l]``) to SciPy's L-BFGS-B with scikit-learn's options
(``maxiter=max_iter``, ``maxfun=max_fun``, ``gtol=tol``).

Beyond the dense float arrays of the kernels
--------------------------------------------
``sample_weight`` (and the classifier's ``class_weight``) multiply the output
delta ``dZ[L]`` and the loss column by column, and ``1/m`` becomes
``1/sum(sample_weight)`` (see :func:`fastnn._passes._backward`).  Sparse ``X``
(CSR or CSC) stays sparse: the first layer's products run in SciPy and the
kernels see their dense results.  ``MLPRegressor(loss="poisson")`` has the
exponential output: the kernels compute ``Z[L]``, and ``exp``, the delta and
the half Poisson deviance are formed in NumPy on the ``(n_outputs, m)`` output.
"""

import numbers
import warnings

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d, gen_batches
from sklearn.utils import shuffle as _shuffle
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_array, check_is_fitted

from ._passes import SparseRows, _backward, _forward, _scales
from .backends import get_backend
from .errors import FastnnValueError
from .optim import _check_beta

try:
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # scikit-learn < 1.6
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

__all__ = ["MLPClassifier", "MLPRegressor"]

#: scikit-learn's hidden activation name -> fastnn's.
_HIDDEN = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
#: scikit-learn's ``out_activation_`` -> fastnn's output layer (with its loss).
_OUTPUT = {"logistic": "sigmoid", "softmax": "softmax", "identity": "identity", "exp": "exp"}
_SOLVERS = ("lbfgs", "sgd", "adam")
_STOCHASTIC = ("sgd", "adam")
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
    # Fresh copies: the kernels update them in place, and a loaded model's state may be
    # read-only (joblib.load(..., mmap_mode="r")).
    return [bk.to_device(np.array(bk.to_host(s), order="C", copy=True)) for s in state]


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

    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden_sizes = self._check_params()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        n_samples, n_features = X.shape
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        SW = self._example_weights(sample_weight, Y, incremental)
        n_outputs = Y.shape[1]
        layer_units = [n_features] + hidden_sizes + [n_outputs]

        self._random_state = check_random_state(self.random_state)
        if first_pass:
            dtype = X.dtype if self.dtype is None else np.dtype(self.dtype)
            self._initialize(layer_units, dtype)
        else:
            dtype = self._checked_params(layer_units, training=True)
        self.n_outputs_ = n_outputs

        if self.solver == "lbfgs":
            self._fit_lbfgs(X, Y, SW, dtype)
        else:
            self._fit_stochastic(X, Y, SW, dtype, incremental)

        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        return self

    def _example_weights(self, sample_weight, Y, incremental):
        """Per-example weights as float64 ``(n_samples,)``, or None (all ones)."""
        if sample_weight is None:
            return None
        return np.asarray(sample_weight, dtype=np.float64)

    def _checked_params(self, layer_units=None, training=False):
        """The dtype of ``coefs_``/``intercepts_``, after checking them before any kernel sees them.

        They are public attributes a user may assign: every array must be 2-D
        (``coefs_[i]``: ``(fan_in, fan_out)``) or 1-D (``intercepts_[i]``:
        ``(fan_out,)``), chained, of one dtype (float32 or float64) and, to
        continue training, finite.
        """
        name = type(self).__name__
        coefs, intercepts = getattr(self, "coefs_", None), getattr(self, "intercepts_", None)
        if not isinstance(coefs, (list, tuple)) or not isinstance(intercepts, (list, tuple)) \
                or len(coefs) != len(intercepts) or not coefs:
            raise ValueError(f"{name}: coefs_ and intercepts_ must be lists of the same non-zero "
                             "length (one array per layer)")
        arrays = [np.asarray(a) for a in list(coefs) + list(intercepts)]
        dtypes = {a.dtype for a in arrays}
        if len(dtypes) != 1 or dtypes.pop() not in _DTYPES:
            raise TypeError(f"{name}: coefs_ and intercepts_ must all be float32 or all float64 "
                            f"arrays, got dtypes {[a.dtype.name for a in arrays]}")
        shapes = [a.shape for a in arrays[:len(coefs)]]
        if any(len(s) != 2 for s in shapes):
            raise ValueError(f"{name}: every coefs_[i] must be 2-D (fan_in, fan_out), got {shapes}")
        units = [shapes[0][0]] + [s[1] for s in shapes]
        if layer_units is not None and units != list(layer_units) or any(
                a[1] != b[0] for a, b in zip(shapes[:-1], shapes[1:])):
            expected = "" if layer_units is None else " but this data and hidden_layer_sizes " \
                f"need {list(zip(layer_units[:-1], layer_units[1:]))}"
            raise ValueError(f"{name}: the fitted coefs_ have shapes {shapes}{expected}; refit "
                             "with warm_start=False")
        for i, b in enumerate(arrays[len(coefs):]):
            if b.shape != (units[i + 1],):
                raise ValueError(f"{name}: intercepts_[{i}] has shape {b.shape}; expected "
                                 f"({units[i + 1]},) to match coefs_[{i}] {shapes[i]}")
        if training and not all(np.isfinite(a).all() for a in arrays):
            raise ValueError(f"{name}: coefs_ or intercepts_ have non-finite values; refit with "
                             "warm_start=False")
        return arrays[0].dtype

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
        if self.solver in _STOCHASTIC:
            self._initialize_stochastic()

    def _initialize_stochastic(self):
        """The epoch loop's records (scikit-learn sets them for the stochastic solvers only)."""
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

    def _device_params(self, bk, dtype, copy=False):
        """``W[l]`` ``(fan_out, fan_in)`` and ``b[l]`` ``(fan_out, 1)`` on ``bk``, C-contiguous.

        ``copy=True`` (training updates them in place): always fresh arrays, so
        read-only or shared ``coefs_`` (a joblib memory map) are never written.
        """
        def put(a):
            return bk.to_device(np.array(a, dtype=dtype, order="C", copy=True) if copy
                                else np.ascontiguousarray(a, dtype=dtype))
        Ws = [put(np.asarray(c).T) for c in self.coefs_]
        bs = [put(np.reshape(b, (-1, 1))) for b in self.intercepts_]
        return Ws, bs

    def _store_params(self, bk, Ws, bs):
        """coefs_ = W.T and intercepts_ = b raveled (views of host arrays)."""
        self.coefs_ = [np.asarray(bk.to_host(W)).T for W in Ws]
        self.intercepts_ = [np.asarray(bk.to_host(b)).reshape(-1) for b in bs]

    def _training_backend(self, work, dtype):
        bk = self._backend(work)
        if dtype.type not in bk.DTYPES:
            raise TypeError(f"{type(self).__name__}: dtype {dtype} is not supported by backend "
                            f"{bk.NAME!r}")
        return bk

    def _loss_div(self):
        # scikit-learn's squared loss is also averaged over the outputs.
        return self.n_outputs_ if self.out_activation_ == "identity" else 1

    # ------------------------------------------------------------------ L-BFGS

    def _fit_lbfgs(self, X, Y, SW, dtype):
        units = [X.shape[1]] + [np.shape(c)[1] for c in self.coefs_]
        bk = self._training_backend(X.shape[0] * max(units[1:]), dtype)
        objective = _LbfgsObjective(self, bk, X, Y, SW, dtype)
        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        result = scipy.optimize.minimize(
            objective, _pack(self.coefs_, self.intercepts_), method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol,
                     **_lbfgs_print_option(iprint)})
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = result.fun
        self.coefs_, self.intercepts_ = objective.unpack(result.x)

    def _loss_grad_lbfgs(self, packed_coef_inter, X, y, sample_weight, *workspace):
        """scikit-learn's private L-BFGS objective: ``(loss, gradient)`` at the flat parameters.

        Parameters
        ----------
        packed_coef_inter : ndarray of shape (n_parameters,)
            Every ``coefs_[l]`` raveled, then every ``intercepts_[l]``.
        X : array-like of shape (n_samples, n_features)
        y : ndarray of shape (n_samples, n_outputs)
            Binarized labels (classifier) or targets.
        sample_weight : ndarray of shape (n_samples,) or None
        *workspace
            scikit-learn's preallocated lists; unused.

        Returns
        -------
        loss : float
        grad : ndarray of shape (n_parameters,)
            The parameters are left in ``coefs_``, ``intercepts_``.
        """
        dtype = self._checked_params()
        X = check_array(X, accept_sparse=["csr", "csc"], dtype=_VALIDATE_DTYPES)
        Y = np.asarray(y)
        Y = Y.reshape(-1, 1) if Y.ndim == 1 else Y
        SW = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        units = [X.shape[1]] + [np.shape(c)[1] for c in self.coefs_]
        bk = self._training_backend(X.shape[0] * max(units[1:]), dtype)
        objective = _LbfgsObjective(self, bk, X, Y, SW, dtype)
        loss, grad = objective(packed_coef_inter)
        self.coefs_, self.intercepts_ = objective.unpack(packed_coef_inter)
        return loss, grad

    # -------------------------------------------------------- stochastic loop

    def _split_for_early_stopping(self, X, Y, SW):
        """scikit-learn's validation split (same draws); the weights follow their examples."""
        # don't stratify in multilabel classification (as scikit-learn)
        stratify = Y if is_classifier(self) and self.n_outputs_ == 1 else None
        arrays = (X, Y) if SW is None else (X, Y, SW)
        parts = train_test_split(*arrays, random_state=self._random_state,
                                 test_size=self.validation_fraction, stratify=stratify)
        X_train, X_val, Y_train, Y_val = parts[:4]
        SW_train, SW_val = (None, None) if SW is None else parts[4:]
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        return X_train, Y_train, SW_train, (X_val, self._targets_for_score(Y_val), SW_val)

    def _fit_stochastic(self, X, Y, SW, dtype, incremental):
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._make_optimizer()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if not hasattr(self, "loss_curve_"):  # warm start from an L-BFGS fit
            self._initialize_stochastic()
        early_stopping = self.early_stopping
        if early_stopping:
            X_train, Y_train, SW_train, val = self._split_for_early_stopping(X, Y, SW)
        else:
            X_train, Y_train, SW_train, val = X, Y, SW, None

        # Minibatches are gathered as rows of the row-major X (contiguous reads: a column
        # gather from a transposed copy reads one cache line per entry, ~16x the traffic)
        # and reach the first layer as a transposed view (gather_columns): a transposed
        # copy per batch cost as much as the gather.  Targets likewise: one cache line
        # per example (its row) instead of one per output.  Sparse X: CSR rows.
        XR = _sparse_as(X_train, dtype, "csr") if sp.issparse(X_train) else _rows(X_train, dtype, "X")
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
        bk = self._training_backend(batch_size * max(units[1:]), dtype)
        Ws, bs = self._device_params(bk, dtype, copy=True)
        params = Ws + bs
        opt = self._optimizer
        opt.bind(bk, params)
        if val is not None:
            val = (_full_batch(bk, val[0], dtype),) + val[1:]
        try:
            self._epochs(bk, Ws, bs, XR, YR, SW_train, batch_size, val, incremental)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        finally:
            self._store_params(bk, Ws, bs)
            opt.unbind(bk)

        if early_stopping:
            # restore the best weights (as copies, so later warm starts leave them alone)
            self.coefs_ = [np.array(c.T, order="C").T for c in self._best_coefs]
            self.intercepts_ = [np.array(b) for b in self._best_intercepts]

    def _epoch(self, bk, Ws, bs, XR, YR, SW, batch_size, sample_idx):
        """One pass over the minibatches; returns scikit-learn's epoch loss."""
        dtype, opt = YR.dtype, self._optimizer
        hidden, output = _HIDDEN[self.activation], _OUTPUT[self.out_activation_]
        fold = opt.FOLDS_WEIGHT_EPILOGUE
        alpha, loss_div = float(self.alpha), self._loss_div()
        params = Ws + bs
        n_samples = XR.shape[0]
        accumulated_loss = 0.0
        for batch in gen_batches(n_samples, batch_size):
            idx = sample_idx[batch] if self.shuffle else batch
            Xb = SparseRows(XR[idx]) if sp.issparse(XR) else bk.gather_columns(XR, idx)
            Yr = np.take(YR, idx, axis=0) if self.shuffle else YR[idx]
            Yb = bk.to_device(np.ascontiguousarray(Yr.T))
            SWb = None if SW is None else SW[idx]
            m = Yr.shape[0]
            norm = m if SWb is None else float(np.sum(SWb))
            As, ZL = _forward(bk, Ws, bs, Xb, hidden, output)
            dWs, dbs, loss_sum = _backward(bk, Ws, As, ZL, Yb, hidden, output, self.scaling,
                                           "fused", alpha, weights="bare" if fold else "full",
                                           sample_weight=SWb)
            del As, ZL
            batch_loss = loss_sum / (norm * loss_div)
            if alpha:
                batch_loss += 0.5 * alpha * _sum_squares(bk, Ws) / norm
            accumulated_loss += batch_loss * m
            opt.step(bk, params, dWs + dbs,
                     (len(Ws), _scales(self.scaling, norm, dtype)[1], dtype.type(alpha / norm))
                     if fold else None)
        return accumulated_loss / n_samples

    def _epochs(self, bk, Ws, bs, XR, YR, SW, batch_size, val, incremental):
        """scikit-learn's epoch loop: stopping rules, schedules, the ConvergenceWarning."""
        opt = self._optimizer
        n_samples = XR.shape[0]
        sample_idx = np.arange(n_samples, dtype=int)
        self.n_iter_ = 0
        for _ in range(self.max_iter):
            if self.shuffle:
                sample_idx = _shuffle(sample_idx, random_state=self._random_state)
            self.loss_ = self._epoch(bk, Ws, bs, XR, YR, SW, batch_size, sample_idx)
            self.n_iter_ += 1
            self.t_ += n_samples
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))

            self._update_no_improvement_count(bk, Ws, bs, val)
            opt.iteration_ends(self.t_)

            if self._no_improvement_count > self.n_iter_no_change:
                what = "Validation score" if val is not None else "Training loss"
                msg = ("%s did not improve more than tol=%f for %d consecutive epochs."
                       % (what, self.tol, self.n_iter_no_change))
                if opt.trigger_stopping(msg, self.verbose):
                    break
                self._no_improvement_count = 0

            if incremental:
                break

            if self.n_iter_ == self.max_iter:
                warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                              "optimization hasn't converged yet." % self.max_iter,
                              ConvergenceWarning)

    def _update_no_improvement_count(self, bk, Ws, bs, val):
        if val is not None:
            XvT, y_val, sw_val = val
            AL = self._output_from(bk, Ws, bs, XvT)
            val_score = self._score_outputs(AL, y_val, sw_val)
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
        """Output activations for row-major ``X`` (dense or sparse), in the model's dtype."""
        if check_input:
            X = _validate_data(self, X, accept_sparse=["csr", "csc"], dtype=_VALIDATE_DTYPES,
                               reset=False)
        dtype = self._checked_params()
        units = [X.shape[1]] + [np.shape(c)[1] for c in self.coefs_]
        if units[0] != np.shape(self.coefs_[0])[0]:
            raise ValueError(f"X has {units[0]} features, but {type(self).__name__} is "
                             f"expecting {np.shape(self.coefs_[0])[0]} features as input.")
        bk = self._backend(X.shape[0] * max(units[1:]))
        Ws, bs = self._device_params(bk, dtype)
        return self._output_from(bk, Ws, bs, _full_batch(bk, X, dtype))

    def _score_outputs(self, AL, y, sample_weight=None):
        """Validation score of outputs ``AL`` against ``y`` (NaN when ``AL`` is not finite)."""
        if not np.isfinite(AL).all():
            return np.nan
        return self._score_function(y, self._predict_from_outputs(AL), sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _stochastic_solver(estimator):
    """``available_if`` condition of ``partial_fit`` (scikit-learn's AttributeError otherwise)."""
    if estimator.solver not in _STOCHASTIC:
        raise AttributeError("partial_fit is only available for stochastic optimizers. "
                             f"{estimator.solver} is not stochastic.")
    return True


def _sparse_as(X, dtype, fmt=None):
    """Sparse ``X`` with data of ``dtype`` (format ``fmt`` if given); never densified."""
    out = X.asformat(fmt) if fmt is not None else X
    out = out.astype(dtype, copy=False)
    if out.dtype.itemsize < X.dtype.itemsize and out.nnz and not np.isfinite(out.data).all():
        raise ValueError(f"X has values too large for {np.dtype(dtype).name}")
    return out


def _full_batch(bk, X, dtype):
    """All of row-major ``X`` as the first layer's input: device columns, or SparseRows."""
    if sp.issparse(X):
        return SparseRows(_sparse_as(X, dtype))
    return bk.to_device(_columns(X, dtype, "X"))


def _pack(coefs, intercepts):
    """scikit-learn's flat parameter vector (float64): coefs_ raveled, then intercepts_."""
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel()
                           for a in list(coefs) + list(intercepts)])


def _lbfgs_print_option(iprint):
    try:
        from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
    except ImportError:  # scikit-learn < 1.5
        return {"iprint": iprint}
    return _get_additional_lbfgs_options_dict("iprint", iprint)


class _LbfgsObjective:
    """scikit-learn's L-BFGS objective on fastnn's passes: ``x -> (loss, gradient)``.

    ``x`` is the flat float64 vector of :func:`_pack`.  Each call unpacks it to
    the backend's ``W[l] = coefs_[l].T`` and ``b[l]`` in the model's dtype, runs
    one forward and one backward pass over all samples (weighted when ``SW`` is
    given) and returns scikit-learn's loss (mean loss plus
    ``alpha/(2 sum(SW)) sum ||W||^2``) and the gradient packed the same way.
    """

    def __init__(self, est, bk, X, Y, SW, dtype):
        self.bk, self.dtype, self.SW = bk, dtype, SW
        self.X = _full_batch(bk, X, dtype)
        self.Y = bk.to_device(_columns(Y, dtype, "y"))
        self.shapes = [tuple(np.shape(c)) for c in est.coefs_]
        self.hidden, self.output = _HIDDEN[est.activation], _OUTPUT[est.out_activation_]
        self.alpha, self.scaling, self.loss_div = float(est.alpha), est.scaling, est._loss_div()
        self.norm = Y.shape[0] if SW is None else float(np.sum(SW))

    def unpack(self, x):
        """``(coefs_, intercepts_)`` of ``x`` as host arrays of the model's dtype (fresh copies)."""
        coefs, intercepts, start = [], [], 0
        for fan_in, fan_out in self.shapes:
            W = np.array(x[start:start + fan_in * fan_out].reshape(fan_in, fan_out).T,
                         dtype=self.dtype, order="C")
            coefs.append(W.T)
            start += fan_in * fan_out
        for _, fan_out in self.shapes:
            intercepts.append(np.array(x[start:start + fan_out], dtype=self.dtype))
            start += fan_out
        return coefs, intercepts

    def __call__(self, x):
        bk = self.bk
        coefs, intercepts = self.unpack(np.asarray(x, dtype=np.float64))
        Ws = [bk.to_device(np.ascontiguousarray(c.T)) for c in coefs]
        bs = [bk.to_device(b.reshape(-1, 1)) for b in intercepts]
        As, ZL = _forward(bk, Ws, bs, self.X, self.hidden, self.output)
        dWs, dbs, loss_sum = _backward(bk, Ws, As, ZL, self.Y, self.hidden, self.output,
                                       self.scaling, "fused", self.alpha,
                                       sample_weight=self.SW)
        loss = loss_sum / (self.norm * self.loss_div)
        if self.alpha:
            loss += 0.5 * self.alpha * _sum_squares(bk, Ws) / self.norm
        grad = np.concatenate([np.asarray(bk.to_host(dW)).T.ravel() for dW in dWs]
                              + [np.asarray(bk.to_host(db)).ravel() for db in dbs])
        return float(loss), grad.astype(np.float64, copy=False)


_PARAMS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element is the number of units in the ith hidden layer.
    activation : {"identity", "logistic", "tanh", "relu"}, default="relu"
        Hidden-layer activation ("logistic" is fastnn's "sigmoid").
    solver : {"adam", "sgd", "lbfgs"}, default="adam"
        "adam", "sgd": stochastic solvers with scikit-learn's update rules.
        "lbfgs": SciPy's L-BFGS-B on the full-batch loss and gradient
        (``max_iter`` iterations, ``max_fun`` loss evaluations, ``tol`` the
        projected-gradient tolerance); no ``loss_curve_``, no ``partial_fit``.
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
        Most loss evaluations of solver="lbfgs".
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
        Loss after every epoch (stochastic solvers only).
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

    A drop-in counterpart of :class:`sklearn.neural_network.MLPClassifier`.  Binary and multi-label targets use logistic outputs
    with binary cross-entropy, multiclass targets a softmax with categorical
    cross-entropy.
""" + _PARAMS_DOC + """
    class_weight : None, "balanced" or dict, default=None
        Beyond scikit-learn: per-class weights, applied as per-example weights
        (multiplying ``sample_weight``).  "balanced" is
        ``n_samples / (n_classes * bincount(y))`` of the data given to ``fit``
        (not available in ``partial_fit``).  Single-label targets only.

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
                 backend=None, dtype=None, scaling="deferred", class_weight=None):
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
        self.class_weight = class_weight

    def _output_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _validate_input(self, X, y, incremental, reset):
        X, y = _validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
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
        # Boolean indicators, as scikit-learn: the stratified split names classes 'True'.
        return X, self._label_binarizer.transform(y).astype(bool)

    def _example_weights(self, sample_weight, Y, incremental):
        """sample_weight times the class_weight of each example's class (float64), or None."""
        if self.class_weight is None:
            return super()._example_weights(sample_weight, Y, incremental)
        if self._label_binarizer.y_type_.startswith("multilabel"):
            raise ValueError("class_weight is not supported for multilabel targets")
        if incremental and isinstance(self.class_weight, str):
            raise ValueError("class_weight 'balanced' is not supported for partial_fit: the "
                             "class frequencies of one batch are not those of the data; pass "
                             "a dict {class: weight} instead")
        y = self._label_binarizer.inverse_transform(Y.ravel() if Y.shape[1] == 1 else Y)
        class_weight = self.class_weight
        if isinstance(class_weight, dict):
            unknown = [c for c in class_weight if c not in set(self.classes_.tolist())]
            if unknown:
                raise ValueError(f"class_weight: classes {unknown} are not in classes_ "
                                 f"{self.classes_}")
        weights = compute_sample_weight(class_weight, y)
        if sample_weight is not None:
            weights = weights * np.asarray(sample_weight, dtype=np.float64)
        return weights

    def _check_params(self):
        cw = self.class_weight
        if not (cw is None or isinstance(cw, dict) or (isinstance(cw, str) and cw == "balanced")):
            raise ValueError(f"MLPClassifier: class_weight must be None, 'balanced' or a dict "
                             f"{{class: weight}}, got {cw!r}")
        if isinstance(cw, dict):
            for label, weight in cw.items():
                if _is_bool(weight) or not isinstance(weight, numbers.Real) \
                        or not np.isfinite(weight) or weight < 0:
                    raise ValueError(f"MLPClassifier: class_weight[{label!r}] must be a finite "
                                     f"number >= 0, got {weight!r}")
        return super()._check_params()

    def _targets_for_score(self, Y):
        return self._label_binarizer.inverse_transform(Y)

    def _predict_from_outputs(self, AL):
        if self.n_outputs_ == 1:
            AL = AL.ravel()
        return self._label_binarizer.inverse_transform(AL)

    @staticmethod
    def _score_function(y, y_pred, sample_weight=None):
        return accuracy_score(y, y_pred, sample_weight=sample_weight)

    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X`` (n_samples, n_features) and labels ``y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            CSR or CSC matrices stay sparse.
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            Class labels, or a label-indicator matrix for multi-label.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each example in the loss and its gradient (and in the
            early-stopping score).

        Returns
        -------
        self : MLPClassifier
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @available_if(_stochastic_solver)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``X``, ``y``, continuing from the current state.

        Only with the stochastic solvers ("sgd", "adam"), as scikit-learn.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array-like of shape (n_classes,), default=None
            All classes of all calls; required on the first call.

        Returns
        -------
        self : MLPClassifier
        """
        self._check_params()
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

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

    A drop-in counterpart of :class:`sklearn.neural_network.MLPRegressor`:
    identity outputs with the loss ``1/2 mean((y - p)^2)`` (averaged over
    samples and outputs), or exponential outputs with the half Poisson
    deviance, plus the L2 term.
""" + _PARAMS_DOC.replace("    Parameters\n    ----------\n", """    Parameters
    ----------
    loss : {"squared_error", "poisson"}, default="squared_error"
        "poisson": exponential output and the half Poisson deviance
        ``mean(y log(y / p) - y + p)`` (summed over outputs), as scikit-learn.
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
        _check_choice(self, "loss", ("squared_error", "poisson"))
        return super()._check_params()

    def _output_activation(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _validate_input(self, X, y, incremental, reset):
        X, y = _validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                              y_numeric=True,
                              dtype=_VALIDATE_DTYPES, reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, (y.reshape(-1, 1) if y.ndim == 1 else y)

    def _targets_for_score(self, Y):
        return Y.ravel() if Y.shape[1] == 1 else Y

    def _predict_from_outputs(self, AL):
        return AL.ravel() if AL.shape[1] == 1 else AL

    @staticmethod
    def _score_function(y, y_pred, sample_weight=None):
        return r2_score(y, y_pred, sample_weight=sample_weight)

    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X`` (n_samples, n_features) and targets ``y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            CSR or CSC matrices stay sparse.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each example in the loss and its gradient (and in the
            early-stopping score).

        Returns
        -------
        self : MLPRegressor
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @available_if(_stochastic_solver)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``X``, ``y``, continuing from the current state.

        Only with the stochastic solvers ("sgd", "adam").

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : MLPRegressor
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

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
