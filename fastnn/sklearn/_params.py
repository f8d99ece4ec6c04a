"""Constructor parameters: the activation tables and the checks that name a bad parameter."""

import numbers

import numpy as np

from .. import _dropout
from ..errors import FastnnValueError

#: scikit-learn's hidden activation name -> fastnn's.
_HIDDEN = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
#: scikit-learn's ``out_activation_`` -> fastnn's output layer (with its loss).
_OUTPUT = {"logistic": "sigmoid", "softmax": "softmax", "identity": "identity", "exp": "exp"}
_SOLVERS = ("lbfgs", "sgd", "adam")
_STOCHASTIC = ("sgd", "adam")
_SCHEDULES = ("constant", "invscaling", "adaptive")
_SCALINGS = ("deferred", "absorbed")
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


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


def _check_shared(est):
    """Check the parameters both estimators share; return the hidden layer sizes as a list."""
    name = type(est).__name__
    sizes = est.hidden_layer_sizes
    if not hasattr(sizes, "__iter__"):
        sizes = [sizes]
    sizes = list(sizes)
    for s in sizes:
        if _is_bool(s) or not isinstance(s, numbers.Integral):
            raise TypeError(f"{name}: hidden_layer_sizes must be integers, got {est.hidden_layer_sizes!r}")
        if s <= 0:
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
    _check_choice(est, "solver", _SOLVERS)
    _check_choice(est, "activation", tuple(_HIDDEN))
    _check_real(est, "alpha", 0)
    if not (isinstance(est.batch_size, str) and est.batch_size == "auto"):
        _check_int(est, "batch_size")
    _check_choice(est, "learning_rate", _SCHEDULES)
    _check_real(est, "learning_rate_init", 0, low_open=True)
    _check_real(est, "power_t", 0)
    _check_int(est, "max_iter")
    _check_bool(est, "shuffle")
    _check_real(est, "tol", 0)
    if not isinstance(est.verbose, numbers.Integral):
        raise TypeError(f"{name}: verbose must be a bool or an integer, got {est.verbose!r}")
    _check_bool(est, "warm_start")
    _check_real(est, "momentum", 0, 1, high_open=False)
    _check_bool(est, "nesterovs_momentum")
    _check_bool(est, "early_stopping")
    _check_real(est, "validation_fraction", 0, 1)
    _check_real(est, "beta_1", 0, 1)
    _check_real(est, "beta_2", 0, 1)
    _check_real(est, "epsilon", 0, low_open=True)
    _check_int(est, "n_iter_no_change", allow_inf=True)
    _check_int(est, "max_fun")
    if est.backend is not None and not isinstance(est.backend, str):
        raise TypeError(f"{name}: backend must be None or a backend name, got {est.backend!r}")
    if est.dtype is not None:
        try:
            dt = np.dtype(est.dtype)
        except TypeError as exc:
            raise TypeError(f"{name}: dtype must be None, float32 or float64, got {est.dtype!r}") from exc
        if dt not in _DTYPES:
            raise ValueError(f"{name}: dtype must be None, float32 or float64, got {dt}")
    if est.scaling == "sum":
        raise ValueError(f"{name}: scaling='sum' is not supported: it optimizes the summed "
                         "loss, not scikit-learn's mean loss; use 'deferred' or 'absorbed'")
    _check_choice(est, "scaling", _SCALINGS)
    _check_dropout(est, len(sizes))
    return [int(s) for s in sizes]


def _check_dropout(est, n_hidden):
    """``dropout``'s keep probabilities, one per hidden layer (all 1.0: no dropout).

    Dropout needs a stochastic solver: L-BFGS minimises one deterministic
    objective, which a mask drawn anew at every evaluation is not.
    """
    name = type(est).__name__
    try:
        keeps = _dropout.check_keep(est.dropout, n_hidden)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: {exc}") from None
    if est.solver not in _STOCHASTIC and any(k != 1.0 for k in keeps):
        raise FastnnValueError(f"{name}: dropout={est.dropout!r} needs a stochastic solver "
                               f"('sgd' or 'adam'), got solver={est.solver!r}: L-BFGS minimises "
                               "a deterministic objective")
    return keeps


def _check_class_weight(est):
    """``class_weight``: None, "balanced" or a dict of finite weights >= 0."""
    cw = est.class_weight
    if not (cw is None or isinstance(cw, dict) or (isinstance(cw, str) and cw == "balanced")):
        raise ValueError(f"MLPClassifier: class_weight must be None, 'balanced' or a dict "
                         f"{{class: weight}}, got {cw!r}")
    if isinstance(cw, dict):
        for label, weight in cw.items():
            if _is_bool(weight) or not isinstance(weight, numbers.Real) \
                    or not np.isfinite(weight) or weight < 0:
                raise ValueError(f"MLPClassifier: class_weight[{label!r}] must be a finite "
                                 f"number >= 0, got {weight!r}")
