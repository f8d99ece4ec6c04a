"""fastnn: fast, verified fully-connected networks in the course's notation.

``X`` is ``(n_0, m)``, one example per column; ``W[l]`` is ``(n_l, n_{l-1})``,
``b[l]`` is ``(n_l, 1)``.  See ``docs/derivation.md`` for the math.
"""

from .backends import available_backends, get_backend, set_backend
from .errors import (BackendUnavailableError, DivergenceError, FastnnTypeError,
                     FastnnValueError, SaturationError)
from .explain import explain
from .model import History, Model
from .network import (ForwardCache, backward, cost, forward, gradcheck, gradients,
                      init_params)

__version__ = "0.1.0"

__all__ = [
    "Model", "History", "init_params", "forward", "backward", "gradients", "cost", "gradcheck", "ForwardCache",
    "set_backend", "get_backend", "available_backends",
    "FastnnValueError", "FastnnTypeError", "SaturationError", "DivergenceError",
    "BackendUnavailableError", "explain",
]


def __getattr__(name):
    """Lazy ``fastnn.MLPClassifier`` / ``fastnn.MLPRegressor`` (scikit-learn is imported on first use)."""
    if name in ("MLPClassifier", "MLPRegressor"):
        from . import sklearn as _sklearn
        return getattr(_sklearn, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
