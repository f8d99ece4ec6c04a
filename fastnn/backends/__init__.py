"""Backend registry: one module per backend, all exporting the kernels in
:mod:`fastnn.backends._interface`.

Backends are imported on first use, so ``import fastnn`` does not pay for Numba
(or CUDA) until a compiled backend is asked for.
"""

import importlib
import os
import warnings

from ..errors import BackendUnavailableError, FastnnValueError

#: backend name -> module that implements it.
REGISTRY = {
    "numpy": "fastnn.backends.numpy_backend",
    "numba": "fastnn.backends.numba_serial",
    "numba-parallel": "fastnn.backends.numba_parallel",
    "cuda": "fastnn.backends.cuda_backend",
}

#: Order in which "auto" tries backends for large work (fastest first) ...
_AUTO_ORDER = ("numba-parallel", "numba", "numpy")
#: ... and for small work, where starting threads costs more than it saves.
_AUTO_ORDER_SMALL = ("numba", "numpy")
#: "auto" counts work as the number of entries of the largest activation the
#: kernels compute, ``max(n_1, ..., n_L) * m`` (the input is only read by BLAS,
#: which has threads of its own); below this it prefers the serial kernels.
#: Measured on 2 cores: serial was faster at 5e3 entries (cat, [12288, 20, 7,
#: 5, 1], m = 209: 9.5 vs 10.3 ms a step), at 6.6e4 (mnist, [784, 256, 128,
#: 10], batch 256: 1.21 vs 1.33 s an epoch of MLPClassifier), parallel at 1e6
#: (wide, [2048, 2048, 2048, 10], m = 512: 172 vs 189 ms a step, float32).
AUTO_PARALLEL_MIN = 1 << 18

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


_warned = False


def get_backend(name=None, work=None):
    """Return the backend module for ``name``.

    ``None`` means the default: :func:`set_backend`'s choice, else the
    ``FASTNN_BACKEND`` environment variable, else ``"auto"``.  ``"auto"`` picks
    the fastest CPU backend that imports: ``numba-parallel`` when ``work``
    (entries of the largest computed activation, ``max(n_1..n_L) * m``) is at least
    ``AUTO_PARALLEL_MIN`` or unknown, ``numba`` below it, and ``numpy`` when
    Numba is not installed (with one warning per process).
    """
    global _warned
    if name is None:
        name = _default or os.environ.get("FASTNN_BACKEND") or "auto"
    _check_name(name)
    if name != "auto":
        return _load(name)
    small = work is not None and work < AUTO_PARALLEL_MIN
    for candidate in (_AUTO_ORDER_SMALL if small else _AUTO_ORDER):
        try:
            module = _load(candidate)
        except BackendUnavailableError:
            continue
        if candidate == "numpy" and not _warned:
            _warned = True
            warnings.warn("fastnn: Numba is not available, using the NumPy backend "
                          f"({_unavailable.get('numba', '')})", RuntimeWarning, stacklevel=3)
        return module
    return _load("numpy")


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
