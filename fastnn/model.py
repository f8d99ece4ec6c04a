"""``Model``: a trainer around the functional core.

The training loop runs on any backend through the same kernel calls; parameters
and optimizer state stay on the backend for the whole ``fit`` and are copied
back to ``Model.params`` (NumPy arrays) at the end of each epoch.
"""

import json
import os
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from . import _validation as V
from .activations import check_hidden, check_output
from .backends import get_backend
from .errors import DivergenceError, FastnnValueError
from ._passes import _backward, _forward
from .network import OUTPUT_GRADS, SCALINGS, _check_layer_dims, init_params
from .optim import make_optimizer

FORMAT_VERSION = 1


@dataclass
class History:
    """What :meth:`Model.fit` returns: one entry per epoch.

    ``cost`` is the mean over the epoch's minibatches of the cost ``J`` (data
    term plus L2), weighted by batch size; ``time`` is seconds per epoch.
    """
    cost: list = field(default_factory=list)
    time: list = field(default_factory=list)
    backend: str = ""

    def __len__(self):
        return len(self.cost)


class Model:
    """A fully-connected L-layer network.

    Parameters
    ----------
    layer_dims : sequence of int
        ``[n_0, n_1, ..., n_L]``.
    hidden : {"identity", "sigmoid", "tanh", "relu", "leaky_relu"}
    output : {"sigmoid", "softmax", "identity"}
        With binary cross-entropy, categorical cross-entropy and squared error.
    dtype : float32 or float64 (float16 on the NumPy backend only)
    seed : int, numpy.random.Generator or None
        Seeds the initial weights.
    init : {"he", "xavier", "small"} or None
        ``None``: "he" for (leaky) ReLU hidden layers, "xavier" otherwise.

    Attributes
    ----------
    params : dict
        ``"W1", "b1", ...``: ``W[l]`` is ``(n_l, n_{l-1})``, ``b[l]`` is ``(n_l, 1)``.
    """

    def __init__(self, layer_dims, hidden="relu", output="sigmoid", *, dtype=np.float64,
                 seed=None, init=None):
        self.layer_dims = _check_layer_dims(layer_dims)
        self.hidden = check_hidden(hidden)
        self.output = check_output(output)
        self.dtype = V.check_dtype(dtype)
        if output == "softmax" and self.layer_dims[-1] < 2:
            raise FastnnValueError("layer_dims: softmax output needs at least 2 units in the last layer")
        if init is None:
            init = "he" if hidden in ("relu", "leaky_relu") else "xavier"
        self.params = init_params(self.layer_dims, init=init, dtype=self.dtype, seed=seed)

    def __repr__(self):
        return (f"Model({self.layer_dims}, hidden={self.hidden!r}, output={self.output!r}, "
                f"dtype={self.dtype.name})")

    @property
    def L(self):
        """Number of layers with parameters."""
        return len(self.layer_dims) - 1

    def _check_data(self, X, Y=None):
        X = V.check_X(X, self.layer_dims[0], self.dtype)
        if Y is not None:
            Y = V.check_Y(Y, self.output, self.layer_dims[-1], X.shape[1], self.dtype)
        return X, Y

    def fit(self, X, Y, *, epochs=10, batch_size=None, optimizer="sgd", lr=0.01, l2=0.0,
            scaling="deferred", output_grad="fused", backend=None, shuffle_seed=None,
            progress=True, callback=None, **optimizer_options):
        """Train with minibatch gradient descent.

        Parameters
        ----------
        X : array_like, shape (n_0, m)
        Y : array_like
            ``(n_L, m)`` labels/targets; softmax also takes integer labels ``(m,)``.
        epochs : int
        batch_size : int or None
            ``None``: the whole batch every step (no shuffling needed).
        optimizer : {"sgd", "momentum", "adam"}
            Options: ``beta`` (momentum), ``beta1``, ``beta2``, ``eps`` (adam).
        lr, l2 : float
        scaling : {"deferred", "absorbed", "sum"}
        output_grad : {"fused", "chain"}
        backend : str or None
        shuffle_seed : int or None
            Seeds the per-epoch shuffle of the minibatches.
        progress : bool
            Show a progress bar over epochs (on stderr).
        callback : callable or None
            ``callback(epoch, model, history)`` after every epoch, with
            ``model.params`` up to date.

        Returns
        -------
        History

        Raises
        ------
        DivergenceError
            When a step gives a non-finite cost or gradient.  ``params`` then
            hold the last finite values (that step's update is not applied).
        """
        X, Y = self._check_data(X, Y)
        epochs = V.check_positive_int(epochs, "epochs")
        m = X.shape[1]
        batch_size = m if batch_size is None else min(V.check_positive_int(batch_size, "batch_size"), m)
        V.check_choice(scaling, "scaling", SCALINGS)
        V.check_choice(output_grad, "output_grad", OUTPUT_GRADS)
        l2 = V.check_nonneg_float(l2, "l2")
        opt = make_optimizer(optimizer, lr, **optimizer_options)
        bk = get_backend(backend, batch_size * max(self.layer_dims))
        if self.dtype.type not in bk.DTYPES:
            raise V.FastnnTypeError(f"dtype: {self.dtype} is not supported by backend {bk.NAME!r}")

        keys = [f"{p}{l}" for l in range(1, self.L + 1) for p in "Wb"]
        P = [bk.to_device(self.params[k]) for k in keys]
        Ws, bs = P[0::2], P[1::2]
        full_batch = batch_size >= m
        Xd, Yd = (bk.to_device(X), bk.to_device(Y)) if full_batch else (None, None)
        rng = np.random.default_rng(shuffle_seed)
        history = History(backend=bk.NAME)
        bar = _progress(epochs, progress)
        if full_batch and opt.name == "sgd" and output_grad == "fused":
            # Whole-loop path: one backend call runs many steps (a compiled
            # loop on the Numba backends); same operations as the step loop.
            try:
                self._fit_loop(bk, Ws, bs, Xd, Yd, epochs, scaling, l2, opt.lr, history, bar,
                               callback)
            finally:
                if bar is not None:
                    bar.close()
                self._sync(bk, keys, P)
            return history
        try:
            for epoch in range(1, epochs + 1):
                t0 = time.perf_counter()
                total = 0.0
                order = None if full_batch else rng.permutation(m)
                for step, start in enumerate(range(0, m, batch_size), start=1):
                    if full_batch:
                        Xb, Yb = Xd, Yd
                    else:
                        idx = order[start:start + batch_size]
                        Xb = bk.to_device(np.take(X, idx, axis=1))
                        Yb = bk.to_device(np.take(Y, idx, axis=1))
                    As, ZL = _forward(bk, Ws, bs, Xb, self.hidden, self.output)
                    dWs, dbs, loss_sum = _backward(bk, Ws, As, ZL, Yb, self.hidden, self.output,
                                                   scaling, output_grad, l2)
                    mb = Yb.shape[1]
                    J = loss_sum / mb
                    if l2:
                        J += l2 / (2 * mb) * sum(float(np.sum(np.square(bk.to_host(W), dtype=np.float64)))
                                                 for W in Ws)
                    grads = [g for pair in zip(dWs, dbs) for g in pair]
                    if not np.isfinite(J) or not all(bk.all_finite(g) for g in grads):
                        raise DivergenceError(
                            f"epoch {epoch}, step {step}: the cost or a gradient is not finite "
                            f"(cost {J}); the learning rate (lr={opt.lr}) is probably too large, or "
                            "the inputs are badly scaled. params hold the values before this step.")
                    opt.step(bk, P, grads)
                    total += J * mb
                history.cost.append(total / m)
                history.time.append(time.perf_counter() - t0)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(cost=f"{history.cost[-1]:.5g}")
                if callback is not None:
                    self._sync(bk, keys, P)
                    callback(epoch, self, history)
        finally:
            if bar is not None:
                bar.close()
            self._sync(bk, keys, P)
        return history

    def _fit_loop(self, bk, Ws, bs, X, Y, epochs, scaling, l2, lr, history, bar, callback):
        keys = [f"{p}{l}" for l in range(1, self.L + 1) for p in "Wb"]
        chunk = 1 if callback is not None else max(1, epochs // 100)
        done = 0
        while done < epochs:
            n = min(chunk, epochs - done)
            t0 = time.perf_counter()
            costs, steps = bk.sgd_loop(Ws, bs, X, Y, self.hidden, self.output, scaling, l2, lr, n)
            elapsed = time.perf_counter() - t0
            history.cost.extend(float(c) for c in costs[:steps])
            history.time.extend([elapsed / max(steps, 1)] * steps)
            if steps < n:
                raise DivergenceError(
                    f"epoch {done + steps + 1}, step 1: the cost or a gradient is not finite "
                    f"(cost {costs[steps]}); the learning rate (lr={lr}) is probably too large, or "
                    "the inputs are badly scaled. params hold the values before this step.")
            done += n
            if bar is not None:
                bar.update(n)
                bar.set_postfix(cost=f"{history.cost[-1]:.5g}")
            if callback is not None:
                P = [a for pair in zip(Ws, bs) for a in pair]
                self._sync(bk, keys, P)
                callback(done, self, history)

    def _sync(self, bk, keys, P):
        for k, arr in zip(keys, P):
            self.params[k] = bk.to_host(arr)

    def predict_proba(self, X, *, backend=None):
        """Output activations ``A[L]``, shape ``(n_L, m)``, in the model's dtype."""
        from .network import forward
        X, _ = self._check_data(X)
        return forward(self.params, X, hidden=self.hidden, output=self.output, backend=backend)[0]

    def predict(self, X, *, backend=None):
        """Predictions for the columns of X.

        Returns
        -------
        numpy.ndarray
            sigmoid: 0/1 integers ``(n_L, m)`` (``A > 0.5``); softmax: class
            indices ``(m,)``; identity: ``A[L]``, ``(n_L, m)``.
        """
        A = self.predict_proba(X, backend=backend)
        if self.output == "sigmoid":
            return (A > 0.5).astype(np.int64)
        if self.output == "softmax":
            return A.argmax(axis=0)
        return A

    def score(self, X, Y, *, backend=None):
        """Accuracy (sigmoid, softmax; fraction of correct entries) or R^2 (identity)."""
        X, Yc = self._check_data(X, Y)
        pred = self.predict(X, backend=backend)
        if self.output == "softmax":
            return float(np.mean(pred == Yc.argmax(axis=0)))
        if self.output == "sigmoid":
            return float(np.mean(pred == Yc))
        resid = np.sum((Yc.astype(np.float64) - pred) ** 2)
        total = np.sum((Yc - Yc.mean(axis=1, keepdims=True)).astype(np.float64) ** 2)
        return float(1 - resid / total) if total else 0.0

    def save(self, path):
        """Write the model to ``path`` (``.npz``) atomically: a temporary file, then rename."""
        meta = {"format": "fastnn.Model", "format_version": FORMAT_VERSION,
                "layer_dims": self.layer_dims, "hidden": self.hidden, "output": self.output,
                "dtype": self.dtype.name}
        _atomic_savez(path, {"__meta__": np.array(json.dumps(meta)), **self.params})

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save`; refuses corrupt or mismatched files."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise FastnnValueError(f"path: {path!s} is not a readable fastnn model file ({exc})") from exc
        try:
            meta = json.loads(str(arrays.pop("__meta__")))
        except (KeyError, ValueError) as exc:
            raise FastnnValueError(f"path: {path!s} has no fastnn metadata; not a saved Model") from exc
        if meta.get("format") != "fastnn.Model" or meta.get("format_version") != FORMAT_VERSION:
            raise FastnnValueError(f"path: {path!s} has format {meta.get('format')!r} version "
                                   f"{meta.get('format_version')!r}; expected 'fastnn.Model' "
                                   f"version {FORMAT_VERSION}")
        model = cls(meta["layer_dims"], meta["hidden"], meta["output"], dtype=meta["dtype"], seed=0)
        expected = set(model.params)
        if set(arrays) != expected:
            raise FastnnValueError(f"path: {path!s} holds arrays {sorted(arrays)}, expected {sorted(expected)}")
        for k, arr in arrays.items():
            ref = model.params[k]
            if arr.shape != ref.shape or arr.dtype != ref.dtype:
                raise FastnnValueError(f"path: {path!s}: {k} has shape {arr.shape} and dtype {arr.dtype}; "
                                       f"expected {ref.shape} {ref.dtype} from layer_dims {meta['layer_dims']}")
            if not np.isfinite(arr).all():
                raise FastnnValueError(f"path: {path!s}: {k} contains NaN or Inf")
        model.params = {k: np.ascontiguousarray(arrays[k]) for k in model.params}
        return model


def _atomic_savez(path, arrays):
    """np.savez to a temporary file in the target folder, fsync, then os.replace."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _progress(total, enabled):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    # disable=None: no bar when stderr is not a terminal (logs, CI).
    return tqdm(total=total, unit="epoch", leave=False, dynamic_ncols=True, disable=None)
