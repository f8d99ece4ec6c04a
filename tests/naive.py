"""A slow, obviously-correct reference for the functional core.

Everything is done one example (one column) at a time with scalar Python
floats (float64), ``math`` functions, and ``math.fsum`` for every sum (an
exactly-rounded sum, so the reference's own rounding error is far below the
tolerances).  The formulas are the per-example ones of BACKGROUND.md:

    z[l] = W[l] a[l-1] + b[l],   a[l] = g(z[l])
    dz[L] = a[L] - y                      (sigmoid+BCE, softmax+CE, identity+1/2 (a-y)^2)
    dW[l] = dz[l] a[l-1]^T,  db[l] = dz[l]
    da[l-1] = W[l]^T dz[l],  dz[l-1] = da[l-1] * g'(z[l-1])

and the batch gradient is the MEAN of the per-example gradients (deferred and
absorbed: the gradient of J) or their SUM (scaling="sum"), plus ``(l2/m) W``.
"""

import math

import numpy as np

from fastnn.activations import LEAKY_SLOPE

# ---------------------------------------------------------------- activations


def g(name, z):
    """Activation of one scalar pre-activation ``z``."""
    if name == "identity":
        return z
    if name == "sigmoid":
        # 1/(1+e^-z), written so that exp never overflows.
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)
    if name == "tanh":
        return math.tanh(z)
    if name == "relu":
        return z if z > 0 else 0.0
    if name == "leaky_relu":
        return z if z > 0 else LEAKY_SLOPE * z
    raise ValueError(name)


def g_prime(name, z):
    """Derivative of the activation at ``z`` (relu'(0) = 0, leaky'(0) = slope)."""
    if name == "identity":
        return 1.0
    if name == "sigmoid":
        s = g("sigmoid", z)
        return s * (1.0 - s)
    if name == "tanh":
        t = math.tanh(z)
        return 1.0 - t * t
    if name == "relu":
        return 1.0 if z > 0 else 0.0
    if name == "leaky_relu":
        return 1.0 if z > 0 else LEAKY_SLOPE
    raise ValueError(name)


def output_activation(name, z):
    """Output activations of one example: list of logits -> list of outputs."""
    if name == "softmax":
        zmax = max(z)
        e = [math.exp(zk - zmax) for zk in z]
        s = math.fsum(e)
        return [ek / s for ek in e]
    return [g(name, zk) for zk in z]


def example_loss(name, z, y):
    """Loss of one example from its logits ``z`` and label vector ``y``.

    sigmoid: -[y log a + (1-y) log(1-a)] = softplus(z) - y z per unit (same
    function, written from the logit so it is exact for any z).
    softmax: -sum_k y_k log a_k = -sum_k y_k (z_k - logsumexp(z)).
    identity: sum_k 1/2 (a_k - y_k)^2.
    """
    if name == "sigmoid":
        return math.fsum(max(zk, 0.0) - yk * zk + math.log1p(math.exp(-abs(zk)))
                         for zk, yk in zip(z, y))
    if name == "softmax":
        zmax = max(z)
        lse = zmax + math.log(math.fsum(math.exp(zk - zmax) for zk in z))
        return -math.fsum(yk * (zk - lse) for zk, yk in zip(z, y))
    if name == "identity":
        return math.fsum(0.5 * (zk - yk) ** 2 for zk, yk in zip(z, y))
    raise ValueError(name)


# ------------------------------------------------------------ one example


def _unpack(params):
    L = len(params) // 2
    Ws = [np.asarray(params[f"W{l}"], dtype=np.float64) for l in range(1, L + 1)]
    bs = [np.asarray(params[f"b{l}"], dtype=np.float64) for l in range(1, L + 1)]
    return Ws, bs


def _affine(W, b, a):
    """z_k = sum_j W[k, j] a_j + b_k, one unit at a time."""
    n_out, n_in = W.shape
    return [math.fsum([float(W[k, j]) * a[j] for j in range(n_in)] + [float(b[k, 0])])
            for k in range(n_out)]


def example_forward(Ws, bs, x, hidden, output):
    """Pre-activations ``zs`` and activations ``acts`` (acts[0] = x) of one example."""
    acts, zs = [list(x)], []
    L = len(Ws)
    for l in range(L):
        z = _affine(Ws[l], bs[l], acts[-1])
        zs.append(z)
        acts.append([g(hidden, zk) for zk in z] if l < L - 1 else output_activation(output, z))
    return zs, acts


def example_backward(Ws, zs, acts, y, hidden):
    """Per-example gradients of the example's loss: lists (dWs, dbs) of numpy arrays."""
    L = len(Ws)
    dz = [ak - yk for ak, yk in zip(acts[L], y)]  # dL/dz[L] for all three output/loss pairs
    dWs, dbs = [None] * L, [None] * L
    for l in range(L - 1, -1, -1):
        a_prev = acts[l]
        dWs[l] = np.array([[dz[k] * a_prev[j] for j in range(len(a_prev))] for k in range(len(dz))])
        dbs[l] = np.array([[dzk] for dzk in dz])
        if l > 0:
            W = Ws[l]
            da = [math.fsum(float(W[k, j]) * dz[k] for k in range(W.shape[0])) for j in range(W.shape[1])]
            dz = [da[j] * g_prime(hidden, zs[l - 1][j]) for j in range(len(da))]
    return dWs, dbs


# ------------------------------------------------------------ the batch


def _column(M, i):
    return [float(v) for v in np.asarray(M, dtype=np.float64)[:, i]]


def labels_matrix(Y, output, n_L, m):
    """Y as an (n_L, m) float64 matrix; softmax integer labels become one-hot."""
    Y = np.asarray(Y)
    if output == "softmax" and (Y.ndim == 1 or Y.shape[0] == 1) and n_L > 1:
        labels = Y.reshape(-1).astype(int)
        out = np.zeros((n_L, m))
        for i, c in enumerate(labels):
            out[c, i] = 1.0
        return out
    return np.asarray(Y, dtype=np.float64).reshape(n_L, m)


def forward(params, X, hidden, output):
    """(AL, ZL) as (n_L, m) float64 arrays."""
    Ws, bs = _unpack(params)
    X = np.asarray(X, dtype=np.float64)
    m = X.shape[1]
    AL = np.zeros((Ws[-1].shape[0], m))
    ZL = np.zeros_like(AL)
    for i in range(m):
        zs, acts = example_forward(Ws, bs, _column(X, i), hidden, output)
        AL[:, i] = acts[-1]
        ZL[:, i] = zs[-1]
    return AL, ZL


def losses(params, X, Y, hidden, output):
    """Vector of the m per-example losses L_i."""
    Ws, bs = _unpack(params)
    X = np.asarray(X, dtype=np.float64)
    m = X.shape[1]
    Y = labels_matrix(Y, output, Ws[-1].shape[0], m)
    out = np.zeros(m)
    for i in range(m):
        zs, _ = example_forward(Ws, bs, _column(X, i), hidden, output)
        out[i] = example_loss(output, zs[-1], _column(Y, i))
    return out


def l2_term(params, m, l2):
    """(l2 / (2m)) sum_l ||W[l]||_F^2."""
    Ws, _ = _unpack(params)
    return l2 / (2 * m) * math.fsum(float(w) ** 2 for W in Ws for w in W.ravel())


def cost(params, X, Y, hidden, output, l2=0.0):
    """J = (1/m) sum_i L_i + (l2/(2m)) sum ||W||^2."""
    L_i = losses(params, X, Y, hidden, output)
    m = L_i.shape[0]
    return math.fsum(L_i) / m + l2_term(params, m, l2)


def objective(params, X, Y, hidden, output, scaling, l2=0.0):
    """What each scaling differentiates: J, or for "sum" the summed loss + L2 term."""
    L_i = losses(params, X, Y, hidden, output)
    m = L_i.shape[0]
    data = math.fsum(L_i) if scaling == "sum" else math.fsum(L_i) / m
    return data + l2_term(params, m, l2)


def gradients(params, X, Y, hidden, output, scaling="deferred", l2=0.0):
    """(J, grads): grads the mean ("deferred"/"absorbed") or sum ("sum") of the
    per-example gradients, plus (l2/m) W; J the cost (as fastnn.gradients)."""
    Ws, bs = _unpack(params)
    X = np.asarray(X, dtype=np.float64)
    m = X.shape[1]
    L = len(Ws)
    Y = labels_matrix(Y, output, Ws[-1].shape[0], m)
    per_dW = [[] for _ in range(L)]
    per_db = [[] for _ in range(L)]
    for i in range(m):
        zs, acts = example_forward(Ws, bs, _column(X, i), hidden, output)
        dWs, dbs = example_backward(Ws, zs, acts, _column(Y, i), hidden)
        for l in range(L):
            per_dW[l].append(dWs[l])
            per_db[l].append(dbs[l])
    scale = 1.0 if scaling == "sum" else 1.0 / m
    grads = {}
    for l in range(L):
        grads[f"dW{l + 1}"] = scale * _fsum_arrays(per_dW[l]) + (l2 / m) * Ws[l]
        grads[f"db{l + 1}"] = scale * _fsum_arrays(per_db[l])
    return cost(params, X, Y, hidden, output, l2), grads


def _fsum_arrays(arrays):
    """Elementwise exactly-rounded sum of equally shaped arrays."""
    stack = np.stack(arrays)
    out = np.empty(stack.shape[1:])
    for idx in np.ndindex(out.shape):
        out[idx] = math.fsum(stack[(slice(None),) + idx])
    return out


# ------------------------------------------------- magnitudes for tolerances
#
# Not part of the reference computation: these give, for every computed
# quantity, the scale its rounding error is proportional to (Higham's running
# error bound |fl(x.y) - x.y| <= gamma_n |x|.|y|, applied operation by
# operation).  Every term is replaced by its absolute value, so an entry whose
# terms cancel keeps the size of the terms.


def _g_prime_mag(name, z, a, amag):
    """|g'(z)| plus the error it inherits from ``a`` (fastnn evaluates g' from
    A = g(Z): 1 - A^2 for tanh, A (1 - A) for sigmoid)."""
    inherited = {"tanh": 2 * abs(a), "sigmoid": abs(1 - 2 * a)}.get(name, 0.0) * amag
    return abs(g_prime(name, z)) + inherited


def example_forward_magnitudes(Ws, bs, x, zs, acts, hidden, output):
    """``|z|_mag = sum |W| |a|_mag + |b|`` and ``|a|_mag = |a| + |g'(z)| |z|_mag``
    per layer (an error of ~eps |z|_mag in z reaches a through g')."""
    amags, zmags = [[abs(v) for v in x]], []
    L = len(Ws)
    for l in range(L):
        W, b = Ws[l], bs[l]
        zmag = [math.fsum([abs(float(W[k, j])) * amags[-1][j] for j in range(W.shape[1])]
                          + [abs(float(b[k, 0]))]) for k in range(W.shape[0])]
        zmags.append(zmag)
        a, z = acts[l + 1], zs[l]
        if l == L - 1 and output == "softmax":
            # da_k = a_k (dz_k - sum_j a_j dz_j)
            amags.append([abs(a[k]) + a[k] * (zmag[k] + max(zmag)) for k in range(len(a))])
        else:
            name = hidden if l < L - 1 else output
            amags.append([abs(a[k]) + abs(g_prime(name, z[k])) * zmag[k] for k in range(len(a))])
    return zmags, amags


def example_loss_magnitude(name, z, zmag, a, amag, y):
    """Size of the terms of the example's loss plus the loss's change under
    the error of z (|dL/dz| |z|_mag with |dL/dz| <= |a| + |y|)."""
    n = len(z)
    if name == "sigmoid":
        return math.fsum(abs(z[k]) * (1 + abs(y[k])) + 1 + (amag[k] + abs(y[k])) * zmag[k]
                         for k in range(n))
    if name == "softmax":
        zmax = max(abs(v) for v in z)
        return math.fsum(abs(y[k]) * (abs(z[k]) + zmax + math.log(n) + 1) + (amag[k] + abs(y[k])) * zmag[k]
                         for k in range(n))
    return math.fsum(0.5 * (amag[k] + abs(y[k])) ** 2 + (amag[k] + abs(y[k])) * zmag[k] for k in range(n))


def forward_magnitudes(params, X, hidden, output):
    """(AL_mag, ZL_mag), shaped like :func:`forward`'s result."""
    Ws, bs = _unpack(params)
    X = np.asarray(X, dtype=np.float64)
    m = X.shape[1]
    AL, ZL = np.zeros((Ws[-1].shape[0], m)), np.zeros((Ws[-1].shape[0], m))
    for i in range(m):
        x = _column(X, i)
        zs, acts = example_forward(Ws, bs, x, hidden, output)
        zmags, amags = example_forward_magnitudes(Ws, bs, x, zs, acts, hidden, output)
        AL[:, i], ZL[:, i] = amags[-1], zmags[-1]
    return AL, ZL


def gradient_magnitudes(params, X, Y, hidden, output, scaling="deferred", l2=0.0):
    """(J_mag, grads_mag), shaped like :func:`gradients`'s result.

    The per-example backward pass of :func:`example_backward` in absolute
    values: ``|dz[L]| = |a|_mag + |y|``, ``|dW| = |dz| |a|_mag^T``,
    ``|da| = |W|^T |dz|``, ``|dz| = |da| * g'_mag``, summed over examples.
    """
    Ws, bs = _unpack(params)
    X = np.asarray(X, dtype=np.float64)
    m = X.shape[1]
    L = len(Ws)
    Y = labels_matrix(Y, output, Ws[-1].shape[0], m)
    dW_mag = [np.zeros(W.shape) for W in Ws]
    db_mag = [np.zeros((W.shape[0], 1)) for W in Ws]
    J_terms = []
    for i in range(m):
        x, y = _column(X, i), _column(Y, i)
        zs, acts = example_forward(Ws, bs, x, hidden, output)
        zmags, amags = example_forward_magnitudes(Ws, bs, x, zs, acts, hidden, output)
        J_terms.append(example_loss_magnitude(output, zs[-1], zmags[-1], acts[-1], amags[-1], y))
        dz = [amags[L][k] + abs(y[k]) for k in range(len(y))]
        for l in range(L - 1, -1, -1):
            dW_mag[l] += np.outer(dz, amags[l])
            db_mag[l] += np.array(dz).reshape(-1, 1)
            if l > 0:
                W = Ws[l]
                da = [math.fsum(abs(float(W[k, j])) * dz[k] for k in range(W.shape[0]))
                      for j in range(W.shape[1])]
                dz = [da[j] * _g_prime_mag(hidden, zs[l - 1][j], acts[l][j], amags[l][j])
                      for j in range(len(da))]
    scale = 1.0 if scaling == "sum" else 1.0 / m
    grads = {}
    for l in range(L):
        grads[f"dW{l + 1}"] = scale * dW_mag[l] + (l2 / m) * np.abs(Ws[l])
        grads[f"db{l + 1}"] = scale * db_mag[l]
    return math.fsum(J_terms) / m + l2_term(params, m, l2), grads


def central_differences(V, f, h):
    """The tests' own central differences: ``(f(V + h e_j) - f(V - h e_j)) / 2h`` for
    every entry j of ``V`` (perturbed in place and restored), as a new array shaped
    like ``V``.  Written here, apart from ``fastnn.finite_differences``, so that it
    can judge it and everything built on it."""
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
