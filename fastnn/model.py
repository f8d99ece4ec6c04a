"""``Model``: a trainer around the functional core.

The training loop runs on any backend through the same kernel calls; parameters
and optimizer state stay on the backend for the whole ``fit`` and are copied
back to ``Model.params`` (NumPy arrays) at the end of each epoch.

Reliability (``docs/reliability.md``): a step whose cost, gradient or updated
parameters are not finite is never applied (``on_divergence``), and
``fit(..., checkpoint=PATH)`` / ``fit(..., resume=PATH)`` stop and continue a
run bit for bit (:mod:`fastnn.checkpoint`).
"""

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from . import _dropout, engine
from . import _validation as V
from . import checkpoint as _ckpt
from .activations import check_hidden, check_output
from .backends import REGISTRY, get_backend
from .errors import BackendUnavailableError, DivergenceError, FastnnValueError, SaturationError
from .engine import FullBatchLoop, MinibatchWorkspace
from .network import (OUTPUT_GRADS, SCALINGS, _check_layer_dims, _rng, backend_for_dtype, backend_lock,
                      init_params)
from .optim import OPTIMIZERS, make_optimizer
from . import threads
from .threads import policy_for

FORMAT_VERSION = 1

#: Keyword options each optimizer takes besides ``lr``.
OPTIMIZER_OPTIONS = {"sgd": (), "momentum": ("beta",), "adam": ("beta1", "beta2", "eps")}
ON_DIVERGENCE = ("raise", "skip")
#: With ``on_divergence="skip"``: give up after this many skipped steps in a row.
MAX_CONSECUTIVE_SKIPS = 50
#: The whole-loop path aims at chunks of epochs (one call of the loop each) of about
#: this many seconds: the chunk doubles while it takes under half of it, and
#: halves above twice it.  Callbacks, the progress bar, the divergence checks and
#: checkpoints run between chunks, at epoch boundaries.
LOOP_CHUNK_SECONDS = 0.15
#: The whole-loop path runs at most this many epochs per compiled call (each
#: call allocates one cost per epoch): ``epochs=10**12`` starts at once.
MAX_LOOP_CHUNK = 1 << 16

# Kept for callers of the old private name.
_atomic_savez = _ckpt.atomic_savez


@dataclass
class History:
    """What :meth:`Model.fit` returns: one entry per epoch.

    ``cost`` is the mean over the epoch's minibatches of the cost ``J`` (data
    term plus L2) before each step, weighted by batch size (steps skipped by
    ``on_divergence="skip"`` are left out; ``nan`` when all were; with dropout,
    the cost of each step's thinned network, as trained); ``time`` is
    seconds per epoch.  ``lr_changes`` lists the steps that
    ``on_divergence="skip"`` skipped: dicts ``{"epoch", "step", "lr", "reason",
    "cost"}`` with the halved learning rate ``lr`` used from the next step on
    and ``reason`` ``"cost"`` (non-finite cost or gradient) or ``"update"``
    (the update made a parameter non-finite).
    """
    cost: list = field(default_factory=list)
    time: list = field(default_factory=list)
    backend: str = ""
    lr_changes: list = field(default_factory=list)

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
    dtype : None, float16, float32 or float64
        ``None`` (the default): the dtype of the ``X`` of the first :meth:`fit`
        when it is a float16, float32 or float64 array (float32 in, a float32
        model out), else float64; fixed from then on.  The initial weights are
        drawn in float64 and rounded to it, as ``init_params`` does.  float16
        runs on the NumPy backend only (``backend="auto"`` picks it).
    seed : int, numpy.random.Generator or None
        Seeds the initial weights.
    init : {"he", "xavier", "small"} or None
        ``None``: "he" for (leaky) ReLU hidden layers, "xavier" otherwise.
    dropout : None, float or sequence of L - 1 floats
        Inverted dropout during ``fit`` only: the keep probability of each
        hidden layer's units (one float: every hidden layer), ``0 < keep <= 1``;
        ``None`` or 1.0: no dropout.  Kept activations are divided by keep;
        ``predict``, ``predict_proba`` and ``score`` never drop.  Masks come
        from a counter-based hash of ``(dropout_seed, layer, step, unit,
        example)`` (``fastnn/_dropout.py``): the same on every backend, and a
        run is repeated exactly by the same ``dropout_seed``.  With dropout,
        full-batch SGD runs step by step (not as the compiled ``sgd_loop``).

    Attributes
    ----------
    params : dict
        ``"W1", "b1", ...``: ``W[l]`` is ``(n_l, n_{l-1})``, ``b[l]`` is ``(n_l, 1)``.
    layer_dims, hidden, output, dtype
        As given.  All five attributes may be assigned; they are checked
        together on every ``fit``, ``predict``, ``score`` and ``save``
        (errors name ``model.<attribute>``).
    dropout : tuple of float
        The keep probability of each hidden layer (1.0: none).
    dropout_seed : int in [0, 2**64) or None
        Seeds the masks (None when there is no dropout): derived from ``seed``
        (an int gives a fixed one, a Generator one draw after the weights,
        None fresh entropy).  Saved with the model and in checkpoints.
    """

    def __init__(self, layer_dims, hidden="relu", output="sigmoid", *, dtype=None,
                 seed=None, init=None, dropout=None):
        #: True until the first fit fixes a dtype that was not given.
        self._dtype_from_data = dtype is None
        self.layer_dims, self.hidden, self.output, self.dtype = _check_spec(
            layer_dims, hidden, output, np.float64 if dtype is None else dtype)
        if init is None:
            init = "he" if hidden in ("relu", "leaky_relu") else "xavier"
        self.dropout = _dropout.check_keep(dropout, self.L - 1)
        self.params = init_params(self.layer_dims, init=init, dtype=self.dtype, seed=seed)
        self.dropout_seed = _dropout.derive_seed(seed) if self._dropping else None

    def __repr__(self):
        drop = f", dropout={self.dropout}" if self._dropping else ""
        return (f"Model({self.layer_dims}, hidden={self.hidden!r}, output={self.output!r}, "
                f"dtype={self.dtype.name}{drop})")

    @property
    def _dropping(self):
        return any(k != 1.0 for k in self.dropout)

    def _dropout_spec(self):
        """The dropout entries of saved files and checkpoints ({} without dropout)."""
        if not self._dropping:
            return {}
        return {"dropout": list(self.dropout), "dropout_seed": self.dropout_seed}

    def _set_dropout(self, spec, name, path):
        """Restore :meth:`_dropout_spec` from a file's metadata."""
        try:
            self.dropout = _dropout.check_keep(spec.get("dropout"), self.L - 1)
            seed = spec.get("dropout_seed")
            self.dropout_seed = None if seed is None else _dropout.check_seed(seed)
        except (TypeError, ValueError) as exc:
            raise FastnnValueError(f"{name}: {path!s} has a malformed dropout entry ({exc})") from exc
        if self._dropping and self.dropout_seed is None:
            raise FastnnValueError(f"{name}: {path!s} has dropout but no dropout_seed")

    @property
    def L(self):
        """Number of layers with parameters."""
        return len(self.layer_dims) - 1

    @property
    def _keys(self):
        return [f"{p}{l}" for l in range(1, self.L + 1) for p in "Wb"]

    def _adopt_data_dtype(self, X):
        """With ``dtype=None``: take X's floating dtype (the params rounded to it), once."""
        if not self._dtype_from_data:
            return
        kind = getattr(X, "dtype", None)
        if isinstance(kind, np.dtype) and kind in V.FLOAT_DTYPES and kind != self.dtype:
            self.params = {k: np.asarray(v).astype(kind) for k, v in self.params.items()}
            self.dtype = kind
        self._dtype_from_data = False

    def _check_data(self, X, Y=None, order="C"):
        """``(X, Y)`` validated by ``V.check_X`` and ``V.check_Y`` (their ``order``)."""
        X = V.check_X(X, self.layer_dims[0], self.dtype, n0_from="layer_dims[0] is n_0", order=order)
        if Y is not None:
            Y = V.check_Y(Y, self.output, self.layer_dims[-1], X.shape[1], self.dtype, order=order)
        return X, Y

    def _check_state(self):
        """Check the attributes a user can assign (``layer_dims``, ``hidden``, ``output``,
        ``dtype``, ``params``) as the constructor would; return ``params`` as private copies.

        Every path that computes with the model (``fit``, ``predict_proba`` and
        so ``predict`` and ``score``, ``save``) goes through here: the attributes
        are public, so nothing a user put there reaches a kernel unchecked.  The
        normalised ``layer_dims`` (a list of int) and ``dtype`` (a numpy dtype)
        are stored back; the errors name ``model.<attribute>``.
        """
        self.layer_dims, self.hidden, self.output, self.dtype = _check_spec(
            self.layer_dims, self.hidden, self.output, self.dtype, "model.")
        params = self._checked_params()
        drop = self.dropout
        if isinstance(drop, tuple) and all(k == 1.0 for k in drop):
            drop = None                     # no dropout, whatever the depth
        try:
            self.dropout = _dropout.check_keep(drop, self.L - 1)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"model.{exc}") from None
        return params

    def _checked_params(self, name="model.params"):
        """``self.params`` checked against ``layer_dims`` and ``dtype``, as private C-contiguous copies.

        ``params`` is a public attribute: what a user put there must not reach a
        compiled kernel with the wrong shape, dtype or layout.
        """
        Ws, bs, dtype = V.check_params(self.params, name)
        if dtype != self.dtype:
            raise V.FastnnTypeError(f"{name}: dtype {dtype} differs from model.dtype ({self.dtype})")
        for l, (W, b) in enumerate(zip(Ws, bs), start=1):
            expected = (self.layer_dims[l], self.layer_dims[l - 1]) if l <= self.L else None
            if W.shape != expected:
                raise FastnnValueError(f"{name}['W{l}']: shape {W.shape} does not match layer_dims "
                                       f"{self.layer_dims} (expected {expected})")
        if len(Ws) != self.L:
            raise FastnnValueError(f"{name}: has {len(Ws)} layers, layer_dims {self.layer_dims} has {self.L}")
        return [np.array(a, copy=True, order="C") for pair in zip(Ws, bs) for a in pair]

    def fit(self, X, Y, *, epochs=10, batch_size=None, optimizer="sgd", lr=0.01, l2=0.0,
            scaling="deferred", output_grad="fused", backend=None, shuffle_seed=None,
            progress=True, callback=None, on_divergence="raise", checkpoint=None,
            checkpoint_every=1, resume=None, **optimizer_options):
        """Train with minibatch gradient descent.

        Parameters
        ----------
        X : array_like, shape (n_0, m)
            With minibatches, X is copied at most once, an F-contiguous one (``data.T``) not at all.
        Y : array_like
            ``(n_L, m)`` labels/targets; softmax also takes integer labels ``(m,)``.
        epochs : int
            Total number of epochs; with ``resume``, training continues up to it.
        batch_size : int or None
            ``None``: the whole batch every step (plain SGD runs many epochs per call
            of :class:`fastnn.engine.FullBatchLoop`, checks and checkpoints at epoch ends);
            minibatches run as compiled steps where they can (``MinibatchWorkspace.run_steps``).
        optimizer : {"sgd", "momentum", "adam"}
            Options: ``beta`` (momentum), ``beta1``, ``beta2``, ``eps`` (adam).
        lr, l2 : float
            ``lr`` must stay a non-zero finite number in the model's dtype.
        scaling : {"deferred", "absorbed", "sum"}
        output_grad : {"fused", "chain"}
            ``"chain"`` raises :class:`~fastnn.errors.SaturationError` once an output saturates.
        backend : str or None
            With ``resume``, ``None`` means the backend the checkpoint was written on.
        shuffle_seed : int, numpy.random.Generator or None
            Seeds the per-epoch shuffle of the minibatches.
        progress : bool
            A progress bar over epochs (on stderr).
        callback : callable or None
            ``callback(epoch, model, history)`` after every epoch, with ``model.params`` up to date.
        on_divergence : {"raise", "skip"}
            A step whose cost or gradient is not finite, or whose update would
            make a parameter non-finite, is never applied.  ``"raise"``: raise
            DivergenceError.  ``"skip"``: skip it, halve lr, record it in
            ``History.lr_changes`` and go on (see :class:`DivergencePolicy` for
            when it gives up, and what each choice costs).
        checkpoint : path or None
            Written (``.npz`` appended when missing) atomically at the end of
            every ``checkpoint_every``-th epoch and of the last one.
        resume : path or None
            Continue the run saved in this checkpoint: the result equals bit for bit
            that of the uninterrupted run on the same backend and dtype (with the same
            ``checkpoint_every`` where the dual first layer runs: docs/reliability.md).
            The model, the data and the options of :data:`fastnn.checkpoint.RESUME_MUST_MATCH`
            must be those of the checkpoint, else FastnnValueError.

        Returns
        -------
        History
            With ``resume``, the whole run's history (the checkpoint's epochs first).

        Raises
        ------
        DivergenceError
            When a step gives a non-finite cost, gradient or parameter (``epoch``,
            ``step``, ``cost``, ``lr`` say where); ``params`` then hold the last
            finite values (that step's update is not applied) and can be saved.
        """
        self._check_state()
        self._adopt_data_dtype(X)
        P = self._checked_params()
        X, Y = self._check_data(X, Y, order=_data_order(X, batch_size))
        self._check_dropout()
        o, opt, rng = FitOptions.build(
            self.dtype, X.shape[1], epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
            l2=l2, scaling=scaling, output_grad=output_grad, on_divergence=on_divergence,
            shuffle_seed=shuffle_seed, callback=callback, checkpoint=checkpoint,
            checkpoint_every=checkpoint_every, resume=resume, optimizer_options=optimizer_options)
        saved, bk = self._resume_and_backend(o, backend)
        o = dataclasses.replace(o, backend=bk.NAME)
        trainer = _Trainer(self, bk, X, Y, P, opt, rng, o)
        if saved is not None:
            trainer.resume(*saved)
            _ckpt.remove_stale_temps(o.resume)
        if o.checkpoint is not None:
            _ckpt.remove_stale_temps(o.checkpoint)
        return trainer.run(progress)

    def _resume_and_backend(self, o, backend):
        """The checkpoint ``o.resume`` as ``(meta, arrays)`` (None without one) and the fit's
        backend (``None``: the checkpoint's when it works here, else the default)."""
        saved = (_ckpt.read_checkpoint(o.resume, "resume", self._resume_expect(o.resume))
                 if o.resume is not None else None)
        if saved is not None and backend is None:
            backend = _stored_backend(saved[0])
        return saved, backend_for_dtype(backend, o.batch_size * max(self.layer_dims[1:]), self.dtype)

    def _check_dropout(self):
        """Check the public dropout attributes before a fit."""
        self.dropout = _dropout.check_keep(self.dropout, self.L - 1)
        if self._dropping:
            self.dropout_seed = _dropout.check_seed(self.dropout_seed, "model.dropout_seed")

    def _spec(self):
        """The model's description in checkpoints, as JSON gives it back."""
        return {"layer_dims": self.layer_dims, "hidden": self.hidden, "output": self.output,
                "dtype": self.dtype.name, **json.loads(json.dumps(self._dropout_spec()))}

    def _resume_expect(self, path):
        """The arrays a checkpoint of this model may hold, given its metadata."""
        spec = self._spec()

        def expect(meta):
            _ckpt.check_model(meta, spec, path)
            slots = _ckpt.field(meta, "state.optimizer_slots", list, "resume", path)
            if not all(slot in ("m", "v") for slot in slots):
                raise FastnnValueError(f"resume: checkpoint {path} has inconsistent counters or history")
            return _ckpt.expected_arrays(self.layer_dims, self.dtype, slots)
        return expect

    @classmethod
    def from_checkpoint(cls, path):
        """The model saved in a checkpoint written by ``fit(..., checkpoint=path)``.

        Its ``params`` are those at the checkpoint; continue training with
        ``model.fit(X, Y, ..., resume=path)``.
        """
        path = V.check_path(path, "path")
        specs = []

        def expect(meta):
            spec = _spec_from_meta(meta.get("model"), "path", f"checkpoint {path}")
            state = meta.get("state")
            slots = state.get("optimizer_slots") if isinstance(state, dict) else None
            if not isinstance(slots, list) or not all(slot in ("m", "v") for slot in slots):
                raise FastnnValueError(f"path: checkpoint {path} lacks a valid 'state.optimizer_slots'")
            specs.append((spec, meta.get("model")))
            return _ckpt.expected_arrays(spec[0], spec[3], slots)

        _, arrays = _ckpt.read_checkpoint(path, "path", expect)
        params = {k: v for k, v in arrays.items() if not k.startswith("opt.")}  # optimizer state aside
        model = cls._from_arrays(specs[0][0], params, "path", path)
        model._set_dropout(specs[0][1], "path", f"checkpoint {path}")
        return model

    @classmethod
    def _from_arrays(cls, spec, arrays, name, path):
        """A model of ``spec`` (``_check_spec``'s result) with the parameters ``arrays``,
        checked; no initial weights are drawn."""
        model = cls.__new__(cls)
        model.layer_dims, model.hidden, model.output, model.dtype = spec
        model._dtype_from_data = False
        model.dropout, model.dropout_seed = (1.0,) * (model.L - 1), None
        model.params = _ckpt.checked_arrays(arrays, _ckpt.expected_arrays(spec[0], spec[3]), name, path)
        return model

    def _sync(self, bk, keys, P):
        for k, arr in zip(keys, P):
            self.params[k] = np.array(bk.to_host(arr), copy=True)

    def _outputs(self, X, Y, backend):
        """``(A[L], Y)`` for ``X`` and ``Y`` validated once (an F-ordered ``X`` is read in
        place), after the model's own state."""
        from .network import _outputs
        params = dict(zip(self._keys, self._check_state()))
        X, Y = self._check_data(X, Y, order="any")
        return _outputs(params, X, self.hidden, self.output, backend), Y

    def _predictions(self, A):
        if self.output == "sigmoid":
            return (A > 0.5).astype(np.int64)
        if self.output == "softmax":
            return A.argmax(axis=0)
        return A

    def predict_proba(self, X, *, backend=None):
        """Output activations ``A[L]``, shape ``(n_L, m)``, in the model's dtype."""
        return self._outputs(X, None, backend)[0]

    def predict(self, X, *, backend=None):
        """Predictions for the columns of X.

        Returns
        -------
        numpy.ndarray
            sigmoid: 0/1 integers ``(n_L, m)`` (``A > 0.5``); softmax: class
            indices ``(m,)``; identity: ``A[L]``, ``(n_L, m)``.
        """
        return self._predictions(self._outputs(X, None, backend)[0])

    def score(self, X, Y, *, backend=None):
        """Accuracy (sigmoid, softmax; fraction of correct entries) or R^2 (identity)."""
        A, Yc = self._outputs(X, Y, backend)
        pred = self._predictions(A)
        if self.output == "softmax":
            return float(np.mean(pred == Yc.argmax(axis=0)))
        if self.output == "sigmoid":
            return float(np.mean(pred == Yc))
        resid = np.sum((Yc.astype(np.float64) - pred) ** 2)
        total = np.sum((Yc - Yc.mean(axis=1, keepdims=True)).astype(np.float64) ** 2)
        return float(1 - resid / total) if total else 0.0

    def save(self, path):
        """Write the model to ``path`` (``.npz``) atomically: a temporary file, then rename."""
        params = dict(zip(self._keys, self._check_state()))
        meta = {"format": "fastnn.Model", "format_version": FORMAT_VERSION,
                "layer_dims": self.layer_dims, "hidden": self.hidden, "output": self.output,
                "dtype": self.dtype.name, **self._dropout_spec()}
        return _ckpt.atomic_savez(path, {"__meta__": np.array(json.dumps(meta)), **params})

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save`; refuses corrupt or mismatched files."""
        path = V.check_path(path, "path")
        specs = []

        def expect(meta):
            if meta is None:
                raise FastnnValueError(f"path: {path!s} has no fastnn metadata; not a saved Model")
            if meta.get("format") != "fastnn.Model" or meta.get("format_version") != FORMAT_VERSION:
                raise FastnnValueError(f"path: {path!s} has format {meta.get('format')!r} version "
                                       f"{meta.get('format_version')!r}; expected 'fastnn.Model' "
                                       f"version {FORMAT_VERSION}")
            specs.append(_spec_from_meta(meta, "path", str(path)))
            return _ckpt.expected_arrays(specs[0][0], specs[0][3])

        meta, arrays = _ckpt.read_archive(path, "path", expect)
        model = cls._from_arrays(specs[0], arrays, "path", path)
        model._set_dropout(meta, "path", path)
        return model


@dataclass(frozen=True)
class FitOptions:
    """The options of one :meth:`Model.fit` call, validated once (:meth:`build`).

    The first fields are those a checkpoint records (:meth:`record`), in its
    order; ``shuffle_seed`` is the seed as recorded (an int, None, or
    ``"<Generator>"`` for a generator).  ``callback``, ``checkpoint`` (a path
    with ``.npz``-less name as given, or None) and ``resume`` are not recorded.
    """
    epochs: int
    batch_size: int
    optimizer: str
    optimizer_options: dict
    lr: float
    l2: float
    scaling: str
    output_grad: str
    on_divergence: str
    shuffle_seed: object
    backend: str
    checkpoint_every: int
    callback: object = None
    checkpoint: object = None
    resume: object = None

    _RECORDED = ("epochs", "batch_size", "optimizer", "optimizer_options", "lr", "l2", "scaling",
                 "output_grad", "on_divergence", "shuffle_seed", "backend", "checkpoint_every")

    @classmethod
    def build(cls, dtype, m, *, epochs, batch_size, optimizer, lr, l2, scaling, output_grad,
              on_divergence, shuffle_seed, callback, checkpoint, checkpoint_every, resume,
              optimizer_options):
        """Validate :meth:`Model.fit`'s arguments for ``m`` examples of ``dtype``.

        Returns ``(options, optimizer, shuffle generator)``; ``options.backend``
        is ``""`` until the backend is chosen.
        """
        epochs = V.check_positive_int(epochs, "epochs")
        batch_size = m if batch_size is None else min(V.check_positive_int(batch_size, "batch_size"), m)
        V.check_choice(scaling, "scaling", SCALINGS)
        V.check_choice(output_grad, "output_grad", OUTPUT_GRADS)
        V.check_choice(on_divergence, "on_divergence", ON_DIVERGENCE)
        l2 = V.check_nonneg_float(l2, "l2")
        lr = V.check_lr(lr, dtype)
        V.check_choice(optimizer, "optimizer", OPTIMIZERS)
        unknown = sorted(set(optimizer_options) - set(OPTIMIZER_OPTIONS[optimizer]))
        if unknown:
            raise V.FastnnTypeError(f"{unknown[0]}: not an option of fit() or of optimizer "
                                    f"{optimizer!r} (its options: {OPTIMIZER_OPTIONS[optimizer]})")
        opt = make_optimizer(optimizer, lr, **optimizer_options)
        opt.check_dtype(dtype)
        rng = _rng(shuffle_seed, "shuffle_seed")
        V.check_callable(callback, "callback")
        checkpoint = V.check_path(checkpoint, "checkpoint")
        if checkpoint is not None and not os.path.isdir(os.path.dirname(os.path.abspath(checkpoint))):
            raise FastnnValueError(f"checkpoint: the folder of {checkpoint!r} does not exist")
        checkpoint_every = V.check_positive_int(checkpoint_every, "checkpoint_every")
        resume = V.check_path(resume, "resume")
        seed = (shuffle_seed if isinstance(shuffle_seed, (int, type(None))) else
                int(shuffle_seed) if isinstance(shuffle_seed, np.integer) else "<Generator>")
        options = cls(epochs, batch_size, optimizer,
                      {k: getattr(opt, k) for k in OPTIMIZER_OPTIONS[optimizer]}, lr, l2, scaling,
                      output_grad, on_divergence, seed, "", checkpoint_every, callback, checkpoint, resume)
        return options, opt, rng

    def record(self):
        """The recorded options as a dict (a checkpoint's ``"fit"`` entry)."""
        return {name: getattr(self, name) for name in self._RECORDED}


class DivergencePolicy:
    """What :meth:`Model.fit` does with a step that failed, in both training loops.

    A failure is ``"cost"`` (the cost or a gradient is not finite) or
    ``"update"`` (the update made a parameter non-finite); the step is never
    applied.  ``mode="raise"``: DivergenceError for the first failed step, with
    the parameters from before it (a minibatch loop finds it by replaying the
    epoch from a snapshot taken at its start: nothing is copied per step).
    ``mode="skip"``: halve lr, record the step in ``History.lr_changes`` and go
    on (one copy of the parameters and optimizer state per step); give up after
    :data:`MAX_CONSECUTIVE_SKIPS` skips in a row, when halving would make lr 0,
    or at once when skipping cannot help (a full batch whose cost is not finite
    at the current parameters, whatever the learning rate).
    """

    def __init__(self, mode, dtype):
        self.mode, self.dtype = mode, dtype
        self.skips = 0  # consecutive skipped steps

    @property
    def skipping(self):
        return self.mode == "skip"

    def applied(self):
        """A step was applied."""
        self.skips = 0

    def failed(self, opt, history, epoch, step, failure, J, full, locate=None):
        """Step ``step`` of ``epoch`` failed with cost ``J`` and was not applied.

        raise: ``locate()`` (which raises for the first failed step of the
        epoch) when given, else DivergenceError for this step.  skip: halve
        ``opt.lr`` and record it in ``history``, or raise when skipping cannot help.
        """
        if not self.skipping:
            if locate is not None:
                locate()
            raise self.error(epoch, step, failure, J, opt.lr)
        if failure == "cost" and full:
            raise self.error(epoch, step, failure, J, opt.lr,
                             " Skipping cannot help: the cost at the current parameters does "
                             "not depend on lr, and every full-batch step would repeat it.")
        self.skips += 1
        if self.skips > MAX_CONSECUTIVE_SKIPS:
            raise self.error(epoch, step, failure, J, opt.lr,
                             f" {MAX_CONSECUTIVE_SKIPS} steps in a row were skipped.")
        new_lr = opt.lr / 2
        if self.dtype.type(new_lr) == 0:
            raise self.error(epoch, step, failure, J, opt.lr, " Halving lr again would make it 0.")
        opt.lr = new_lr
        history.lr_changes.append({"epoch": epoch, "step": step, "lr": new_lr,
                                   "reason": failure, "cost": float(J)})

    @staticmethod
    def error(epoch, step, failure, J, lr, why=""):
        """The DivergenceError for step ``step`` of ``epoch``."""
        what = ("the cost or a gradient is not finite" if failure == "cost"
                else "the update made a parameter non-finite")
        err = DivergenceError(
            f"epoch {epoch}, step {step}: {what} (cost {J}); the learning rate (lr={lr:g}) is "
            f"probably too large, or the inputs are badly scaled.{why} Model.params hold the last "
            "finite values, from before this step (model.save() keeps them); "
            "fit(..., on_divergence='skip') skips such steps and halves lr.")
        err.epoch, err.step, err.cost, err.lr, err.reason = epoch, step, J, lr, failure
        return err


class _Trainer:
    """The state of one ``fit`` call: backend arrays, optimizer, shuffle generator, counters.

    ``X`` and ``Y`` come C- or F-contiguous (``V.check_X(..., order="any")``).
    Minibatches are gathered from their transposes as row-major arrays, which
    the transpose of an F-contiguous array (the course's ``data.T``, or the copy
    validation made) is without a copy; a full batch is made C-contiguous, as
    its kernels take it.
    """

    def __init__(self, model, bk, X, Y, P, opt, rng, options):
        if options.batch_size >= X.shape[1]:
            X, Y = V.c_contiguous(X), V.c_contiguous(Y)
        self.model, self.bk, self.X, self.Y = model, bk, X, Y
        self.P = [bk.to_device(a) for a in P]
        self.opt, self.rng, self.o = opt, rng, options
        self.policy = DivergencePolicy(options.on_divergence, model.dtype)
        self.history = History(backend=bk.NAME)
        self.epoch = 0          # completed epochs
        self.steps = 0          # applied steps
        self.bar = None
        self.ws = None          # the minibatch workspace, when the fit runs on it ...
        self.XR = self.YR = None  # ... and the examples and targets as rows, that it gathers
        self.fingerprint = (_ckpt.data_fingerprint(X, Y)
                            if options.checkpoint is not None or options.resume is not None else None)

    # ------------------------------------------------------------ main loop

    def run(self, progress):
        o = self.o
        if self.epoch >= o.epochs:
            self.sync()
            return self.history
        self.bar = _progress(o.epochs, progress, initial=self.epoch)
        full = o.batch_size >= self.X.shape[1]
        try:
            with np.errstate(over="ignore", invalid="ignore"), backend_lock(self.bk), \
                    policy_for(self.bk, self.P[0::2], min(o.batch_size, self.X.shape[1])):
                # The compiled whole loop has no dropout: with dropout, step by step.
                if full and o.optimizer == "sgd" and o.output_grad == "fused" \
                        and not self.model._dropping:
                    self._fit_loop()
                else:
                    self._fit_steps(full)
        finally:
            if self.bar is not None:
                self.bar.close()
            self.sync()
        return self.history

    def sync(self):
        self.model._sync(self.bk, self.model._keys, self.P)

    def _end_epochs(self, n):
        """After ``n`` more completed epochs: progress bar, callback, checkpoint."""
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(cost=f"{self.history.cost[-1]:.5g}")
        if self.o.callback is not None:
            self.sync()
            self.o.callback(self.epoch, self.model, self.history)
        if self._checkpoint_due():
            self.write_checkpoint()

    def _checkpoint_due(self):
        """Whether the epoch just ended writes a checkpoint."""
        o = self.o
        return o.checkpoint is not None and (self.epoch % o.checkpoint_every == 0 or
                                             self.epoch == o.epochs)

    # ------------------------------------------------------- snapshots

    def snapshot(self, with_state=True):
        params = [np.array(self.bk.to_host(p), copy=True) for p in self.P]
        return params, (self.opt.state_dict(self.bk) if with_state else None)

    def restore(self, snap):
        params, state = snap
        self.P = [self.bk.to_device(p.copy()) for p in params]
        if state is not None:
            self.opt.load_state_dict(self.bk, state)

    def _finite_params(self):
        return all(self.bk.all_finite(p) for p in self.P)

    # ------------------------------------------------------- minibatch loop

    def _step(self, batch, epoch, step, check_params=True):
        """One step on ``batch`` (what :meth:`_batches` makes); returns ``(failure, J)``
        with failure None, "cost" or "update".

        ``check_params=False`` leaves out the check of the updated parameters
        (one pass over them); the caller then checks at the end of the epoch.
        """
        if self.ws is not None:
            return self._workspace_step(batch, check_params)
        Xb, Yb = batch
        bk, model, o = self.bk, self.model, self.o
        Ws, bs = self.P[0::2], self.P[1::2]
        drop, Gs = None, None
        if model._dropping:
            # Step t of the run numbers the masks: the same at a replay or a resume.
            per_epoch = -(-self.X.shape[1] // o.batch_size)
            drop = _dropout.DropoutStep(model.dropout, model.dropout_seed,
                                        (epoch - 1) * per_epoch + (step - 1))
            As, Gs, ZL = engine.forward_dropout(bk, Ws, bs, Xb, model.hidden, model.output, drop)
        else:
            As, ZL = engine.forward(bk, Ws, bs, Xb, model.hidden, model.output)
        try:
            dWs, dbs, loss_sum = engine.backward(bk, Ws, As, ZL, Yb, model.hidden, model.output,
                                                 o.scaling, o.output_grad, o.l2, drop=drop, Gs=Gs)
        except SaturationError as exc:
            raise SaturationError(f"epoch {epoch}, step {step}: {exc}") from None
        J = engine.cost(bk, loss_sum, Ws, Yb.shape[1], o.l2)
        grads = [g for pair in zip(dWs, dbs) for g in pair]
        if not math.isfinite(J) or not all(bk.all_finite(g) for g in grads):
            return "cost", J
        self.opt.step(bk, self.P, grads)
        if check_params and not self._finite_params():
            return "update", J
        return None, J

    def _workspace_step(self, idx, check_params):
        """:meth:`_step` of the minibatch workspace: the batch ``idx`` of the row-major
        copies, no array allocated, one optimizer and one check call for all
        parameters; bitwise the same step as the kernel-by-kernel one."""
        bk, ws, model, o = self.bk, self.ws, self.model, self.o
        self.P = ws.adopt(self.P)
        loss_sum = ws.step(self.XR, self.YR, idx, model.hidden, model.output, o.scaling, o.l2)
        J = engine.cost(bk, loss_sum, self.P[0::2], idx.shape[0], o.l2)
        if not math.isfinite(J) or not bk.all_finite(ws.G_flat):
            return "cost", J
        self.opt.step_flat(bk, ws)
        if check_params and not bk.all_finite(ws.P_flat):
            return "update", J
        return None, J

    def _use_workspace(self, full):
        """Set up the minibatch workspace when this fit can run on it (else ``ws`` is None)."""
        self.ws = None
        if full or self.model._dropping or self.o.output_grad != "fused" \
                or not MinibatchWorkspace.supports(self.bk, self.model.output):
            return
        self.ws = MinibatchWorkspace(self.bk, self.model.layer_dims, self.model.dtype)
        # The examples as rows: X.T itself when X is F-contiguous (no copy).
        self.XR = self.bk.to_device(np.ascontiguousarray(self.X.T))
        self.YR = self.bk.to_device(np.ascontiguousarray(self.Y.T))

    def _batches(self, full):
        """``batch(order, start)``: the minibatch at ``start`` of ``order`` (the device
        arrays ``(Xb, Yb)``, or the indices for the workspace)."""
        bk, X, Y, size = self.bk, self.X, self.Y, self.o.batch_size
        if full:
            Xd, Yd = bk.to_device(X), bk.to_device(Y)
            return lambda order, start: (Xd, Yd)
        if self.ws is not None:
            return lambda order, start: order[start:start + size]
        # Minibatches are gathered as rows of a row-major copy, then transposed:
        # gathering columns of (n_0, m) reads one cache line per entry (measured
        # ~40% of a minibatch epoch at MNIST shape), rows are contiguous.  The
        # batch reaches the first layer as a transposed view (gather_columns).
        # An F-contiguous X is its transpose's row-major array: no copy.
        XR = np.ascontiguousarray(X.T)

        def batch(order, start):
            idx = order[start:start + size]
            return bk.gather_columns(XR, idx), bk.to_device(np.take(Y, idx, axis=1))
        return batch

    def _fit_steps(self, full):
        m, skip = self.X.shape[1], self.policy.skipping
        starts = list(range(0, m, self.o.batch_size))
        self._use_workspace(full)
        batch = self._batches(full)
        while self.epoch < self.o.epochs:
            epoch = self.epoch + 1
            threads.refresh()
            t0 = time.perf_counter()
            order = None if full else self.rng.permutation(m)
            # skip: a backup before every step, and every update checked at once.
            # raise: one snapshot per epoch; the updated parameters are checked when
            # a cost or gradient is not finite and at the end of the epoch, and the
            # failed update is then found by replaying the epoch from the snapshot.
            start_snap = None if skip else self.snapshot()
            replay = lambda n: (batch(order, s) for s in starts[:n])  # noqa: E731
            applied = []  # (J, batch size) of the steps applied this epoch
            first = 0 if full else self._compiled_steps(order, epoch, applied, start_snap, replay)
            for step, start in enumerate(starts[first:], start=first + 1):
                b = batch(order, start)
                backup = self.snapshot() if skip else None
                failure, J = self._step(b, epoch, step, check_params=skip)
                if failure is None:
                    applied.append((J, min(self.o.batch_size, m - start)))
                    self.steps += 1
                    self.policy.applied()
                    continue
                if failure == "update" and backup is not None:
                    self.restore(backup)
                self.policy.failed(self.opt, self.history, epoch, step, failure, J, full,
                                   locate=lambda: self._locate(start_snap, replay, epoch, step, J))
            if not skip and not self._finite_params():
                self._locate(start_snap, replay, epoch, len(starts) + 1, None)
            self.history.cost.append(_weighted_mean(applied))
            self.history.time.append(time.perf_counter() - t0)
            self.epoch = epoch
            self._end_epochs(1)

    def _compiled_steps(self, order, epoch, applied, snap, replay):
        """The epoch's batches as compiled steps (``MinibatchWorkspace.run_steps``): the
        full-size ones, then the short last one (a call of its own size), where the fit
        runs on the workspace and raises on divergence; the number of steps run (the
        rest step from Python: none, or the last batch where the kernel declines it).
        Their costs go to ``applied``.  A step that failed (a loss or gradient that is
        not finite, or a cost made non-finite by the L2 term) is located by
        :meth:`_locate`, which replays the epoch from ``snap`` step by step and raises
        for it."""
        ws, o, model = self.ws, self.o, self.model
        if ws is None or self.policy.skipping or self.X.shape[1] < o.batch_size:
            return 0
        self.P = ws.adopt(self.P)
        total, ran, stopped = 0, False, False
        for group, size in ws.batch_groups(self.X.shape[1], o.batch_size):
            def on_chunk(losses, squares, size=size):
                applied.extend((engine.cost_from_squares(float(loss), sq, size, o.l2), size)
                               for loss, sq in zip(losses, squares))
            done = ws.run_steps(self.XR, self.YR, order, group, size,
                                model.hidden, model.output, o.scaling, o.l2, self.opt, on_chunk,
                                squares_mode=engine.SQUARES_PAIRWISE if o.l2 else
                                engine.SQUARES_NONE)
            if done is None:
                break
            ran, total = True, total + done
            if done < len(group):
                stopped = True
                break
        if not ran:
            return 0
        self.steps += total
        self.policy.applied()
        failed = next((i for i, (J, _) in enumerate(applied) if not math.isfinite(J)),
                      total if stopped else None)
        if failed is not None:
            self._locate(snap, replay, epoch, failed + 2, None)
        return total

    def _locate(self, snap, batches, epoch, step, J):
        """on_divergence="raise": raise DivergenceError for the first step of this epoch
        that failed, with the parameters as they were before it.

        ``step`` gave a non-finite cost or gradient (``J``), or is one past the
        epoch's last step when the parameters were found non-finite at its end.
        At finite parameters the failure is that step's; otherwise an earlier
        update overflowed: the epoch is replayed from its snapshot, each update
        checked, and the params are left as they were before the one that failed.
        """
        error = self.policy.error
        if J is not None and self._finite_params():
            raise error(epoch, step, "cost", J, self.opt.lr)
        self.restore(snap)
        for s, b in enumerate(batches(step - 1), start=1):
            before = self.snapshot(with_state=False)
            failure, Js = self._step(b, epoch, s)
            if failure == "update":
                self.restore(before)
            if failure is not None:
                raise error(epoch, s, failure, Js, self.opt.lr)
        # Not reproduced (a non-deterministic backend?): the last state known to be finite.
        self.restore(snap)
        raise error(epoch, step, "cost" if J is not None else "update", J, self.opt.lr,
                    " (Replaying the epoch did not reproduce it: params hold the values "
                    "from the start of the epoch.)")

    # ------------------------------------------------------- whole-loop path

    def _fit_loop(self):
        """Full-batch SGD with the fused output gradient: an :class:`engine.FullBatchLoop`
        runs many epochs per call (compiled on the Numba backends; the dual first
        layer where it pays), in chunks of about :data:`LOOP_CHUNK_SECONDS` that end
        at every callback and checkpoint epoch.  A chunk that failed is redone one
        epoch at a time from its start."""
        bk, o, model = self.bk, self.o, self.model
        t0 = time.perf_counter()
        self.loop = FullBatchLoop(bk, self.P[0::2], self.P[1::2], bk.to_device(self.X),
                                  bk.to_device(self.Y), model.hidden, model.output, o.scaling, o.l2)
        self.loop.rebase(dual=self.loop.pays(self._loop_segment()))
        self._loop_setup = time.perf_counter() - t0
        chunk = 1
        try:
            while self.epoch < o.epochs:
                threads.refresh()
                n = 1 if o.callback is not None else min(chunk, self._loop_segment())
                elapsed = self._loop_chunk(n)
                chunk = _next_chunk(chunk, n, elapsed)
        finally:
            self.P = self.loop.params()

    def _loop_segment(self):
        """Epochs from here to the next checkpoint written (or to the end): the dual
        form restarts there, and a chunk ends there."""
        o, end = self.o, self.o.epochs
        if o.checkpoint is not None:
            end = min(end, (self.epoch // o.checkpoint_every + 1) * o.checkpoint_every)
        return end - self.epoch

    def _loop_chunk(self, n):
        """``n`` epochs in one call of the loop; their seconds (None when a step failed:
        the chunk is then redone epoch by epoch from its start)."""
        loop = self.loop
        snap = loop.snapshot()
        t0 = time.perf_counter() - self._loop_setup   # the loop's setup counts to its first epochs
        costs, steps = loop.run(self.opt.lr, n)
        if steps == n and loop.finite():
            elapsed = time.perf_counter() - t0
            self._loop_setup = 0.0
            self.history.cost.extend(float(c) for c in costs)
            self.history.time.extend([elapsed / n] * n)
            self._advance(n)
            self._loop_end_epochs(n)
            return elapsed
        loop.restore(snap)
        for _ in range(n):
            if not self._loop_step():
                break
        return None

    def _loop_step(self):
        """One epoch of the loop, checked; False when its step failed (and was skipped)."""
        loop, epoch = self.loop, self.epoch + 1
        backup = loop.snapshot()
        t0 = time.perf_counter()
        costs, steps = loop.run(self.opt.lr, 1)
        J = float(costs[0])
        failure = "cost" if steps == 0 else None
        if failure is None and not loop.finite():
            loop.restore(backup)
            failure = "update"
        if failure is None:
            self.history.cost.append(J)
            self.history.time.append(time.perf_counter() - t0)
            self._advance(1)
        else:
            # raise: DivergenceError here, the loop holding the last finite parameters.
            self.policy.failed(self.opt, self.history, epoch, 1, failure, J, full=True)
            self.history.cost.append(float("nan"))
            self.history.time.append(time.perf_counter() - t0)
            self.epoch = epoch
        self._loop_end_epochs(1)
        return failure is None

    def _loop_end_epochs(self, n):
        """:meth:`_end_epochs`, the loop's parameters read first where they are needed
        (callback, checkpoint).  After a checkpoint the dual form restarts from the
        parameters written: a run resumed from it is this run bit for bit."""
        due = self._checkpoint_due()
        if due or self.o.callback is not None:
            self.P = self.loop.params()
        self._end_epochs(n)
        if due and self.epoch < self.o.epochs:
            self.loop.rebase(dual=self.loop.pays(self._loop_segment()))

    def _advance(self, n):
        self.epoch += n
        self.steps += n
        self.opt.t += n
        self.policy.applied()

    # ------------------------------------------------------- checkpoints

    def write_checkpoint(self):
        """Save the training state to ``options.checkpoint`` (:func:`fastnn.checkpoint.save_trainer`)."""
        state = _ckpt.TrainerState(
            {k: np.asarray(self.bk.to_host(p)) for k, p in zip(self.model._keys, self.P)},
            self.opt.state_dict(self.bk), self.opt.lr, self.rng, self.epoch, self.steps,
            self.policy.skips, self.history.cost, self.history.time, self.history.lr_changes)
        _ckpt.save_trainer(self.o.checkpoint, self.model._spec(), self.o.record(), self.fingerprint, state)

    def resume(self, meta, arrays):
        """Check a checkpoint read with ``read_checkpoint`` against this fit call, then continue from it."""
        model, opt = self.model, self.opt
        state = _ckpt.load_trainer(self.o.resume, meta, arrays, spec=model._spec(),
                                   fingerprint=self.fingerprint, fit=self.o.record(), slots=opt.slots,
                                   check_lr=lambda lr: V.check_lr(lr, model.dtype))
        self.P = [self.bk.to_device(state.params[k]) for k in model._keys]
        opt.load_state_dict(self.bk, state.optimizer)
        opt.lr = state.lr
        self.rng = state.rng
        self.epoch, self.steps, self.policy.skips = state.epoch, state.steps, state.skips
        self.history = History(cost=state.cost, time=state.time, backend=self.bk.NAME,
                               lr_changes=state.lr_changes)


def _check_spec(layer_dims, hidden, output, dtype, prefix=""):
    """``(layer_dims, hidden, output, dtype)`` checked together, as the constructor takes them.

    ``prefix`` goes before each name in the errors (``"model."`` for the
    attributes of an existing model).
    """
    try:
        dims = _check_layer_dims(layer_dims)
        hidden, output = check_hidden(hidden), check_output(output)
        dtype = V.check_dtype(dtype)
    except (ValueError, TypeError) as exc:
        if not prefix:
            raise
        raise type(exc)(prefix + str(exc)) from None
    if output == "softmax" and dims[-1] < 2:
        raise FastnnValueError(f"{prefix}layer_dims: a softmax output needs at least 2 units in the last "
                               f"layer, got {dims} ({prefix}output is 'softmax')")
    return dims, hidden, output, dtype


def _data_order(X, batch_size):
    """``check_X``'s order for a fit: ``"any"`` (a copy is F-contiguous, whose transpose
    the minibatches are gathered from) unless one batch holds every example of an
    array ``X`` (the full-batch kernels take C order; see :class:`_Trainer`)."""
    shape = getattr(X, "shape", None)
    full = batch_size is None or (isinstance(batch_size, (int, np.integer)) and isinstance(shape, tuple)
                                  and len(shape) == 2 and batch_size >= shape[1])
    return "C" if full else "any"


def _weighted_mean(costs):
    """Mean of the costs J weighted by batch size (nan for none), without overflow."""
    weight = sum(n for _, n in costs)
    if not weight:
        return float("nan")
    if len(costs) == 1:
        return costs[0][0]
    total = sum(J * n for J, n in costs)
    if math.isfinite(total):
        return total / weight
    return sum(J * (n / weight) for J, n in costs)


def _next_chunk(chunk, n, elapsed):
    """The whole-loop path's next chunk of epochs after ``n`` of ``chunk`` took
    ``elapsed`` seconds (None: a step failed and the chunk was redone)."""
    if elapsed is None or n < chunk:        # cut short: it says little of the speed
        return chunk
    if elapsed < LOOP_CHUNK_SECONDS / 2:
        return min(2 * chunk, MAX_LOOP_CHUNK)
    if elapsed > 2 * LOOP_CHUNK_SECONDS:
        return max(chunk // 2, 1)
    return chunk


def _stored_backend(meta):
    """The backend a checkpoint was written on, when it works here (else None: the default)."""
    fit = meta.get("fit")
    name = fit.get("backend") if isinstance(fit, dict) else None
    if not isinstance(name, str) or name not in REGISTRY:
        return None
    try:
        get_backend(name)
    except BackendUnavailableError:
        return None
    return name


def _spec_from_meta(spec, name, what):
    """``_check_spec`` of a file's model description (a dict), errors naming ``name``."""
    try:
        return _check_spec(spec["layer_dims"], spec["hidden"], spec["output"], spec["dtype"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FastnnValueError(f"{name}: {what} has a malformed model description ({exc})") from None


def _progress(total, enabled, initial=0):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    # disable=None: no bar when stderr is not a terminal (logs, CI).
    return tqdm(total=total, initial=initial, unit="epoch", leave=False, dynamic_ncols=True,
                disable=None)
