"""Whether numba-cuda can compile kernels with the NumPy installed here.

numba-cuda loads its typing registries at its first compile, and a registry
that names a NumPy function NumPy no longer has makes every compile fail deep
inside numba-cuda: numba-cuda 0.30.4 registers ``np.row_stack``, which NumPy 2.5
removed, so on a GPU the first kernel of a fit raised ``AttributeError``.  The
CUDA backend calls :func:`check_compiler` when it loads on a GPU (the simulator
compiles nothing), so that such a pair of versions makes the backend "broken",
with this reason, instead.  Importing this module needs no GPU.
"""

from importlib.metadata import PackageNotFoundError, version

import numpy as np


def _version(package):
    try:
        return version(package)
    except PackageNotFoundError:
        return "(not installed)"


def check_compiler():
    """Load numba-cuda's typing registries, as its first compile does (about 1 s once).

    Raises
    ------
    RuntimeError
        When they fail to load, naming numba-cuda's and NumPy's versions.
    """
    try:
        from numba.cuda.descriptor import cuda_target
    except ImportError:  # another numba-cuda layout: its first compile will tell
        return
    try:
        cuda_target.typing_context.refresh()
    except Exception as exc:
        raise RuntimeError(
            f"numba-cuda {_version('numba-cuda')} cannot compile kernels with NumPy "
            f"{np.__version__} ({type(exc).__name__}: {exc}); install a NumPy that this "
            f"numba-cuda supports (fastnn's 'cuda' extra asks for one)") from exc
