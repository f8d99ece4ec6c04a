"""Inverted dropout: the keep probabilities and the counter-based masks.

Every backend draws the same mask without sharing a generator: the mask is a
pure function of ``(seed, layer, step, row, column)``, computed where it is
applied (one fused pass: hash, compare, scale), and recomputed in the backward
pass instead of being stored.

The hash is Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random
numbers: as easy as 1, 2, 3", SC 2011), written once here,
:func:`philox4x32`, in arithmetic that works unchanged on NumPy arrays (the
NumPy backend, vectorised), on scalars compiled by ``numba.njit`` (the Numba
backends) and by ``numba.cuda.jit(device=True)`` (the CUDA backend): every value
is a ``uint64`` holding 32 bits, so the 32 x 32-bit products never overflow and
no sum leaves 33 bits.  For hidden unit ``i`` and example column ``j`` of
hidden layer ``l`` at training step ``t``::

    counter = (j, i, t mod 2^32, l + 2^16 (t div 2^32 mod 2^16)),  key = (seed mod 2^32, seed div 2^32)
    kept    = word 0 of philox4x32(counter, key) < round(keep * 2^32)

so ``P(kept) = round(keep * 2^32) / 2^32`` (``keep = 1``: every unit) and, the
counter being a bijection's input, every (layer, step, unit, example) gets its
own draw.  Kept activations are divided by ``keep`` (rounded to the array's
dtype), dropped ones are set to 0 (a select, so a non-finite dropped value
does not leak into the product).
"""

import numbers
from dataclasses import dataclass

import numpy as np

from .errors import FastnnTypeError, FastnnValueError

_U64 = np.uint64
#: Philox4x32 multipliers and Weyl key increments (Random123's constants).
PHILOX_M0, PHILOX_M1 = _U64(0xD2511F53), _U64(0xCD9E8D57)
PHILOX_W0, PHILOX_W1 = _U64(0x9E3779B9), _U64(0xBB67AE85)
LOW32 = _U64(0xFFFFFFFF)
SHIFT32 = _U64(32)
ROUNDS = 10
#: Largest dropout seed + 1 (the 64-bit Philox key).
SEED_LIMIT = 1 << 64


def philox4x32(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of the counter ``(c0, c1, c2, c3)`` under the key ``(k0, k1)``.

    Parameters
    ----------
    c0, c1, c2, c3, k0, k1 : numpy.uint64 scalars or arrays (broadcast together)
        Each holds a 32-bit word (values below 2^32).

    Returns
    -------
    tuple of four uint64 values or arrays
        The four 32-bit output words.  The same source runs under NumPy,
        ``numba.njit`` and ``numba.cuda.jit(device=True)``.
    """
    for r in range(ROUNDS):
        if r:
            k0 = (k0 + PHILOX_W0) & LOW32
            k1 = (k1 + PHILOX_W1) & LOW32
        p0 = PHILOX_M0 * c0
        p1 = PHILOX_M1 * c2
        c0, c1, c2, c3 = ((p1 >> SHIFT32) ^ c1 ^ k0, p1 & LOW32,
                          (p0 >> SHIFT32) ^ c3 ^ k1, p0 & LOW32)
    return c0, c1, c2, c3


def threshold(keep):
    """``round(keep * 2^32)`` as uint64: a unit is kept when its word is below it."""
    return _U64(min(round(float(keep) * 4294967296.0), 4294967296))


def step_key(seed, layer, t):
    """``(c2, c3, k0, k1)``, the part of the Philox input fixed for one layer and step.

    Parameters
    ----------
    seed : int in [0, 2^64)
    layer : int in [1, 2^16)
        The hidden layer (1-based, as ``W[l]``).
    t : int >= 0
        The training step.
    """
    return (_U64(t & 0xFFFFFFFF), _U64(layer + (((t >> 32) & 0xFFFF) << 16)),
            _U64(seed & 0xFFFFFFFF), _U64((seed >> 32) & 0xFFFFFFFF))


def keep_mask(shape, keep, key):
    """The boolean mask (True: kept) of an ``(n, m)`` activation, vectorised in NumPy.

    ``key`` is :func:`step_key`'s tuple.  The reference every backend's fused
    kernel is tested against, bit for bit.
    """
    n, m = shape
    c2, c3, k0, k1 = key
    rows = np.arange(n, dtype=np.uint64)[:, None]
    cols = np.arange(m, dtype=np.uint64)[None, :]
    word = philox4x32(cols, rows, c2, c3, k0, k1)[0]
    return np.broadcast_to(word, (n, m)) < threshold(keep)


def check_keep(dropout, n_hidden):
    """Keep probabilities, one per hidden layer, as a tuple of floats.

    Parameters
    ----------
    dropout : None, a real number, or a sequence of ``n_hidden`` real numbers
        ``None``: no dropout (every keep probability 1.0).  Each must satisfy
        ``0 < keep <= 1``.
    n_hidden : int
        Number of hidden layers (``L - 1``).

    Raises
    ------
    FastnnTypeError, FastnnValueError
        Naming ``dropout``.
    """
    if dropout is None:
        return (1.0,) * n_hidden
    scalar = isinstance(dropout, numbers.Real) and not isinstance(dropout, (bool, np.bool_))
    if scalar:
        values = [dropout] * n_hidden
        if n_hidden == 0 and float(dropout) != 1.0:
            raise FastnnValueError(f"dropout: the network has no hidden layer to drop units of "
                                   f"(got keep probability {dropout!r})")
    elif isinstance(dropout, (str, bytes, dict)) or not hasattr(dropout, "__len__"):
        raise FastnnTypeError(f"dropout: expected None, a keep probability or a sequence of "
                              f"{n_hidden} (one per hidden layer), got {type(dropout).__name__}")
    else:
        values = list(dropout)
        if len(values) != n_hidden:
            raise FastnnValueError(f"dropout: expected {n_hidden} keep probabilities (one per "
                                   f"hidden layer), got {len(values)}")
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise FastnnTypeError(f"dropout: keep probabilities must be real numbers, got {v!r}")
        v = float(v)
        if not 0.0 < v <= 1.0:  # also refuses NaN
            raise FastnnValueError(f"dropout: keep probabilities must satisfy 0 < keep <= 1 "
                                   f"(1.0: no dropout), got {v}")
        out.append(v)
    return tuple(out)


def check_seed(seed, name="dropout_seed"):
    """A dropout seed: an int in [0, 2^64)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise FastnnTypeError(f"{name}: expected an int in [0, 2**64), got {type(seed).__name__}")
    if not 0 <= int(seed) < SEED_LIMIT:
        raise FastnnValueError(f"{name}: expected an int in [0, 2**64), got {seed}")
    return int(seed)


def derive_seed(seed):
    """A 64-bit dropout seed from a model's ``seed`` (None, an int >= 0 or a Generator).

    An int gives a fixed seed, a Generator one draw from it, None fresh entropy.
    """
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, SEED_LIMIT, dtype=np.uint64))
    entropy = None if seed is None else [int(seed), 0x64726F70]  # a stream of its own ("drop")
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


@dataclass(frozen=True)
class DropoutStep:
    """The dropout of one training step: keep probabilities, seed and step number."""
    keeps: tuple
    seed: int
    t: int

    def key(self, layer):
        """:func:`step_key` of hidden layer ``layer`` (1-based)."""
        return step_key(self.seed, layer, self.t)
