"""The estimator both :class:`MLPClassifier` and :class:`MLPRegressor` are: constructor, fit, predict."""

import numbers

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from .. import _dropout
from ..engine import forward as _forward
from ..backends import get_backend
from ._data import _VALIDATE_DTYPES, _full_batch, _validate_data
from ._lbfgs import _LbfgsSolver
from ._params import _DTYPES, _HIDDEN, _OUTPUT, _STOCHASTIC, _check_dropout, _check_shared
from ._stochastic import _StochasticSolver


class _BaseMLP(_StochasticSolver, _LbfgsSolver, BaseEstimator):
    """Shared constructor, fit and predict of :class:`MLPClassifier` and :class:`MLPRegressor`.

    The subclasses spell out their signatures (scikit-learn's ``get_params``
    reads them) and pass the shared parameters here, in this order; their own
    parameters (``class_weight``, ``loss``) arrive as keywords.
    """

    def __init__(self, hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
                 learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose,
                 warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction,
                 beta_1, beta_2, epsilon, n_iter_no_change, max_fun, backend, dtype, scaling,
                 **specific):
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
        for name, value in specific.items():
            setattr(self, name, value)

    def _check_params(self):
        """Validate the constructor parameters; return the hidden layer sizes as a list."""
        return _check_shared(self)

    def _backend(self, n_columns):
        """The backend for passes over ``n_columns`` examples (its work: the widest layer's size)."""
        return get_backend(self.backend, n_columns * max(np.shape(c)[1] for c in self.coefs_))

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
        self._dropout_spec = self._dropout_keeps_and_seed(len(hidden_sizes))

        if self.solver == "lbfgs":
            self._fit_lbfgs(X, Y, SW, dtype)
        else:
            self._fit_stochastic(X, Y, SW, dtype, incremental)

        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        return self

    def _dropout_keeps_and_seed(self, n_hidden):
        """``(keeps, seed)`` of this fit's dropout, or None without dropout.

        The seed: an int ``random_state`` gives one of its own (a stream apart
        from the weights, split and shuffles, which stay those of the fit
        without dropout); a ``RandomState`` or None gives one draw from it,
        after the initial weights.
        """
        keeps = _check_dropout(self, n_hidden)
        if all(k == 1.0 for k in keeps):
            return None
        rs = self.random_state
        if isinstance(rs, numbers.Integral) and not isinstance(rs, (bool, np.bool_)):
            return keeps, _dropout.derive_seed(int(rs))
        return keeps, int(self._random_state.randint(0, _dropout.SEED_LIMIT, dtype=np.uint64))

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
        self._dropout_steps = 0  # minibatch steps taken: numbers the dropout masks
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

    def _training_backend(self, n_columns, dtype):
        bk = self._backend(n_columns)
        if dtype.type not in bk.DTYPES:
            raise TypeError(f"{type(self).__name__}: dtype {dtype} is not supported by backend "
                            f"{bk.NAME!r}")
        return bk

    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X`` (n_samples, n_features) and ``y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            CSR or CSC matrices stay sparse.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels, or a label-indicator matrix for multi-label
            (:class:`MLPClassifier`); targets (:class:`MLPRegressor`).
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each example in the loss and its gradient (and in the
            early-stopping score).

        Returns
        -------
        self : MLPClassifier or MLPRegressor
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    # ---------------------------------------------------------------- predict

    def predict(self, X):
        """Predicted class labels (:class:`MLPClassifier`) or targets (:class:`MLPRegressor`).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            ``n_outputs`` is ``n_classes`` for multi-label classification.
        """
        check_is_fitted(self)
        return self._predict_from_outputs(self._forward_pass_fast(X))

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
        if X.shape[1] != np.shape(self.coefs_[0])[0]:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {np.shape(self.coefs_[0])[0]} features as input.")
        bk = self._backend(X.shape[0])
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
