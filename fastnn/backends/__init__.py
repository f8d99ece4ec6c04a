"""Backend registry: one module per backend, all exporting the kernels in
:mod:`fastnn.backends._interface`.

Backends are imported on first use, so ``import fastnn`` does not pay for Numba
(or CUDA) until a compiled backend is asked for.

:mod:`fastnn.backends.emulated` (float16/bfloat16 emulated on float64 arrays,
for the stability sweep) is not registered: it is made per format
(``EmulatedBackend("bfloat16")``) and has the kernels it lists in its
``KERNELS``, not the whole interface.
"""

import importlib
import importlib.util
import os
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import BackendUnavailableError, FastnnValueError, NoDeviceError

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

#: backend name -> the third-party packages it needs; a backend whose load fails
#: because one of these is absent is "not installed", any other failure "broken".
REQUIRES = {
    "numpy": (),
    "numba": ("numba", "llvmlite"),
    "numba-parallel": ("numba", "llvmlite"),
    "cuda": ("numba", "llvmlite", "numba.cuda"),
}

#: The pip distribution that provides each package of REQUIRES.
_PIP_NAME = {"numba": "numba", "llvmlite": "numba", "numba.cuda": "numba-cuda"}

#: The states of :class:`BackendStatus`.
AVAILABLE, NOT_INSTALLED, NO_DEVICE, BROKEN = "available", "not installed", "no device", "broken"


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend works here, and if not, why.

    ``state`` is ``"available"``; ``"not installed"`` (a package it needs is
    absent: ``pip install`` it); ``"no device"`` (CUDA: no GPU or driver and
    the simulator is off); or ``"broken"`` (everything it needs is installed,
    yet loading it failed: a bug, or incompatible versions).  ``reason`` is the
    error text (empty when available).  True in a boolean context exactly when
    the backend is available.
    """

    name: str
    state: str
    reason: str = ""

    @property
    def available(self):
        """True when the backend loads and runs here."""
        return self.state == AVAILABLE

    def __bool__(self):
        return self.available

    def __str__(self):
        return self.state if self.available else f"{self.state}: {self.reason}"


_loaded = {}
_status = {}
_default = None


def _missing_requirement(name, exc):
    """The required package whose absence caused ``exc``, else None."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    for package in REQUIRES[name]:
        if exc.name == package or exc.name.startswith(package + "."):
            try:
                found = importlib.util.find_spec(package) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                return package
    return None


def _classify(name, exc):
    """BackendStatus for a backend whose import raised ``exc``."""
    reason = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, NoDeviceError):
        return BackendStatus(name, NO_DEVICE, reason)
    package = _missing_requirement(name, exc)
    if package is not None:
        return BackendStatus(name, NOT_INSTALLED, f"{reason} (pip install {_PIP_NAME[package]})")
    return BackendStatus(name, BROKEN, f"installed but failed to load: {reason}")


def _load(name):
    if name in _loaded:
        return _loaded[name]
    if name in _status:
        raise BackendUnavailableError(f"backend {name!r} is not available: {_status[name]}",
                                      status=_status[name])
    try:
        module = importlib.import_module(REGISTRY[name])
    except Exception as exc:  # ImportError, or a CUDA driver error at import
        _status[name] = _classify(name, exc)
        raise BackendUnavailableError(
            f"backend {name!r} is not available: {_status[name]}", status=_status[name]) from exc
    _loaded[name] = module
    _status[name] = BackendStatus(name, AVAILABLE)
    return module


def _check_name(name, source="backend"):
    if not isinstance(name, str) or (name not in REGISTRY and name != "auto"):
        raise FastnnValueError(
            f"{source}: unknown backend {name!r}; expected 'auto' or one of {tuple(REGISTRY)}")
    return name


def set_backend(name):
    """Set the process-wide default backend (``"auto"`` or a name in ``REGISTRY``)."""
    global _default
    _check_name(name)
    if name != "auto":
        _load(name)
    _default = name


_warned = False


def get_backend(name=None, work=None, dtype=None):
    """Return the backend module for ``name``.

    ``None`` means the default: :func:`set_backend`'s choice, else the
    ``FASTNN_BACKEND`` environment variable, else ``"auto"``.  ``"auto"`` picks
    the fastest CPU backend that imports and computes in ``dtype`` (any when
    None): ``numba-parallel`` when ``work`` (entries of the largest computed
    activation, ``max(n_1..n_L) * m``) is at least ``AUTO_PARALLEL_MIN`` or
    unknown, ``numba`` below it, and ``numpy`` when Numba is not installed (with
    one warning per process) or for a dtype only NumPy has (float16).  A backend
    named explicitly is returned as it is, whatever ``dtype``.
    """
    global _warned
    if name is None:
        if _default is None and os.environ.get("FASTNN_BACKEND"):
            name = _check_name(os.environ["FASTNN_BACKEND"], "environment variable FASTNN_BACKEND")
        name = name or _default or "auto"
    _check_name(name)
    if name != "auto":
        return _load(name)
    small = work is not None and work < AUTO_PARALLEL_MIN
    missing = False
    for candidate in (_AUTO_ORDER_SMALL if small else _AUTO_ORDER):
        try:
            module = _load(candidate)
        except BackendUnavailableError:
            missing = True
            continue
        if dtype is not None and np.dtype(dtype).type not in module.DTYPES:
            continue
        if candidate == "numpy" and missing and not _warned:
            _warned = True
            warnings.warn("fastnn: the Numba backends are not available, using the NumPy backend "
                          f"(numba: {_status.get('numba', '')})", RuntimeWarning, stacklevel=3)
        return module
    return _load("numpy")


def available_backends():
    """Map each backend name to its :class:`BackendStatus` (loading each one).

    >>> {name: str(status) for name, status in available_backends().items()}  # doctest: +SKIP
    {'numpy': 'available', 'numba': 'available', 'numba-parallel': 'available',
     'cuda': "no device: NoDeviceError: numba.cuda found no usable CUDA GPU/driver ..."}
    """
    for name in REGISTRY:
        try:
            _load(name)
        except BackendUnavailableError:
            pass
    return {name: _status[name] for name in REGISTRY}
