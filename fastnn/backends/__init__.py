"""Backend registry: one module per backend, all exporting the kernels in
:mod:`fastnn.backends._interface`.

Backends are imported on first use, so ``import fastnn`` does not pay for Numba
(or CUDA) until a compiled backend is asked for.
"""

import importlib
import os

from ..errors import BackendUnavailableError, FastnnValueError

#: backend name -> module that implements it.
REGISTRY = {
    "numpy": "fastnn.backends.numpy_backend",
    "numba": "fastnn.backends.numba_serial",
    "numba-parallel": "fastnn.backends.numba_parallel",
}

#: Order in which "auto" tries backends (fastest first).
_AUTO_ORDER = ("numpy",)

_loaded = {}
_unavailable = {}
_default = None


def _load(name):
    if name in _loaded:
        return _loaded[name]
    if name in _unavailable:
        raise BackendUnavailableError(f"backend {name!r} is not available: {_unavailable[name]}")
    try:
        module = importlib.import_module(REGISTRY[name])
    except Exception as exc:  # ImportError, or a CUDA driver error at import
        _unavailable[name] = f"{type(exc).__name__}: {exc}"
        raise BackendUnavailableError(
            f"backend {name!r} is not available: {_unavailable[name]}") from exc
    _loaded[name] = module
    return module


def _check_name(name):
    if not isinstance(name, str) or (name not in REGISTRY and name != "auto"):
        raise FastnnValueError(
            f"backend: unknown backend {name!r}; expected 'auto' or one of {tuple(REGISTRY)}")
    return name


def set_backend(name):
    """Set the process-wide default backend (``"auto"`` or a name in ``REGISTRY``)."""
    global _default
    _check_name(name)
    if name != "auto":
        _load(name)
    _default = name


def get_backend(name=None):
    """Return the backend module for ``name``.

    ``None`` means the default: :func:`set_backend`'s choice, else the
    ``FASTNN_BACKEND`` environment variable, else ``"auto"``.
    """
    if name is None:
        name = _default or os.environ.get("FASTNN_BACKEND") or "auto"
    _check_name(name)
    if name == "auto":
        for candidate in _AUTO_ORDER:
            try:
                return _load(candidate)
            except BackendUnavailableError:
                continue
    return _load(name)


def available_backends():
    """Map each backend name to ``None`` when it works here, else the reason it does not."""
    status = {}
    for name in REGISTRY:
        try:
            _load(name)
            status[name] = None
        except BackendUnavailableError:
            status[name] = _unavailable[name]
    return status
