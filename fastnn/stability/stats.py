"""Paired statistics of the stability report.

Two variants A and B (e.g. absorbed and deferred) measured on the same seeds
(same data and weights) give paired log-ratios ``d_s = ln(err_A,s / err_B,s)``.
The effect is the geometric-mean ratio ``exp(mean d)``; its 95 % interval is
a percentile bootstrap over seeds; the test is the two-sided sign-flip
(paired permutation) test of ``mean d = 0`` -- exact up to 2^16 sign
patterns, Monte Carlo (20,000 patterns) above; p-values of all comparisons
of a report are adjusted together by Holm's step-down method, and a
difference is called only where the adjusted p is below 0.05.
"""

import itertools
import zlib

import numpy as np

ALPHA = 0.05
N_BOOT = 4000
N_FLIPS = 20_000


def _rng(tag):
    return np.random.default_rng(zlib.crc32(repr(tag).encode()))


def bootstrap_ci(d, level=0.95, n_boot=N_BOOT, tag=0):
    """Percentile bootstrap interval of ``exp(mean(d))``.

    Parameters
    ----------
    d : array_like, shape (n,)
        Paired log-ratios.
    level : float
    n_boot : int
    tag : hashable
        Seeds the resampling (the same data and tag give the same interval).

    Returns
    -------
    (lo, hi) : floats, the interval of the ratio (not of its log)
    """
    d = np.asarray(d, dtype=float)
    if d.size < 2:
        r = float(np.exp(d.mean())) if d.size else float("nan")
        return r, r
    idx = _rng(tag).integers(0, d.size, size=(n_boot, d.size))
    means = d[idx].mean(axis=1)
    a = (1 - level) / 2
    lo, hi = np.quantile(means, [a, 1 - a])
    return float(np.exp(lo)), float(np.exp(hi))


def sign_flip_p(d, n_flips=N_FLIPS, tag=0):
    """Two-sided p-value of the paired sign-flip test of ``mean(d) = 0``.

    Exact (all 2^n sign patterns) for n <= 16, otherwise Monte Carlo with
    ``n_flips`` patterns plus the observed one.  The p-value counts patterns
    whose ``|mean|`` is at least the observed one.
    """
    d = np.asarray(d, dtype=float)
    n = d.size
    if n == 0:
        return 1.0
    obs = abs(d.mean())
    if obs == 0:
        return 1.0
    if n <= 16:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        stats = np.abs(signs @ d) / n
        return float(np.mean(stats >= obs * (1 - 1e-12)))
    signs = _rng(tag).choice((1.0, -1.0), size=(n_flips, n))
    stats = np.abs(signs @ d) / n
    return float((1 + np.sum(stats >= obs * (1 - 1e-12))) / (n_flips + 1))


def holm(pvalues):
    """Holm step-down adjusted p-values (same order as given)."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj


def paired(a, b, tag=0, floor=1e-300):
    """Paired comparison of errors ``a``, ``b`` (dicts seed -> error).

    Returns
    -------
    dict
        ``n`` (common seeds), ``ratio`` (geometric mean of a/b), ``lo``, ``hi``
        (95 % bootstrap interval), ``p`` (sign-flip, unadjusted), ``inf_a``,
        ``inf_b`` (seeds where a or b is not finite; those seeds are left out
        of the ratio).
    """
    seeds = sorted(set(a) & set(b))
    out = {"n": len(seeds), "ratio": None, "lo": None, "hi": None, "p": None, "inf_a": 0, "inf_b": 0}
    fin = []
    for s in seeds:
        fa, fb = np.isfinite(a[s]), np.isfinite(b[s])
        out["inf_a"] += int(not fa)
        out["inf_b"] += int(not fb)
        if fa and fb:
            fin.append(np.log(max(a[s], floor)) - np.log(max(b[s], floor)))
    if fin:
        d = np.array(fin)
        out["ratio"] = float(np.exp(d.mean()))
        out["lo"], out["hi"] = bootstrap_ci(d, tag=tag)
        out["p"] = sign_flip_p(d, tag=tag) if d.size >= 2 else 1.0
        out["n_finite"] = int(d.size)
    return out
