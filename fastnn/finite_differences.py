"""Central differences: the one implementation behind ``gradcheck`` and ``explain``."""

import numpy as np

__all__ = ["central_differences"]


def central_differences(V, f, h):
    """Central differences of a scalar function with respect to every entry of an array.

    Each entry ``V[j]`` is set to ``V[j] + h`` and to ``V[j] - h`` in place,
    ``f()`` is evaluated after each, and the entry is restored to its saved
    value before the next one, so ``f`` sees ``V`` changed in one entry at a
    time and ``V`` is unchanged on return.

    Parameters
    ----------
    V : numpy.ndarray
        The array to perturb, any shape; modified in place during the call
        and restored entry by entry.
    f : callable
        ``f() -> float``: the function, reading ``V`` (or a view of it).
    h : float
        The step.

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as ``V``:
        ``G[j] = (f(V + h e_j) - f(V - h e_j)) / (2 h)``.
    """
    G = np.empty_like(V)
    for idx in np.ndindex(V.shape):
        saved = V[idx]
        V[idx] = saved + h
        plus = f()
        V[idx] = saved - h
        minus = f()
        V[idx] = saved
        G[idx] = (plus - minus) / (2 * h)
    return G
