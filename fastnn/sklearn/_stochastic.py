"""solver="sgd"/"adam": scikit-learn's epoch loop (minibatches, stopping rules, early stopping)."""

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from .. import _dropout
from ..engine import SQUARES_DOT, SQUARES_NONE, MinibatchWorkspace, SparseRows
from ..network import backend_lock
from ..threads import policy_for
from ._data import _full_batch, _rows, _sparse_as
from ._objective import _batch_loss, _batch_loss_from, _fold, _loss_and_grads, _spec
from ._optim import _SklearnAdam, _SklearnSGD
from ._params import _STOCHASTIC


def _shuffled(sample_idx, random_state):
    """scikit-learn's ``utils.shuffle(sample_idx, random_state=random_state)`` for one array,
    without its parameter validation (0.3 ms a call, an epoch's time on digits): a
    ``random_state.shuffle`` of ``arange(n)``, then a take.  ``random_state`` is a
    ``RandomState``; held equal to scikit-learn's by ``tests/test_sklearn.py``."""
    perm = np.arange(sample_idx.shape[0])
    random_state.shuffle(perm)
    return sample_idx[perm]


def _batches(n_samples, batch_size):
    """scikit-learn's ``utils.gen_batches(n_samples, batch_size)`` as a list, without its
    parameter validation: consecutive slices of ``batch_size``, the last one short."""
    return [slice(s, min(s + batch_size, n_samples)) for s in range(0, n_samples, batch_size)]


class _StochasticSolver:
    """The minibatch fit of :class:`~fastnn.sklearn._base._BaseMLP` (solvers "sgd", "adam")."""

    def _initialize_stochastic(self):
        """The epoch loop's records (scikit-learn sets them for the stochastic solvers only)."""
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _make_optimizer(self):
        if self.solver == "sgd":
            return _SklearnSGD(self.learning_rate_init, self.learning_rate, self.momentum,
                               self.nesterovs_momentum, self.power_t)
        return _SklearnAdam(self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon)

    def _split_for_early_stopping(self, X, Y, SW):
        """scikit-learn's validation split (same draws); the weights follow their examples."""
        # don't stratify in multilabel classification (as scikit-learn)
        stratify = Y if is_classifier(self) and self.n_outputs_ == 1 else None
        arrays = (X, Y) if SW is None else (X, Y, SW)
        parts = train_test_split(*arrays, random_state=self._random_state,
                                 test_size=self.validation_fraction, stratify=stratify)
        X_train, X_val, Y_train, Y_val = parts[:4]
        SW_train, SW_val = (None, None) if SW is None else parts[4:]
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        return X_train, Y_train, SW_train, (X_val, self._targets_for_score(Y_val), SW_val)

    def _fit_stochastic(self, X, Y, SW, dtype, incremental):
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._make_optimizer()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if not hasattr(self, "loss_curve_"):  # warm start from an L-BFGS fit
            self._initialize_stochastic()
        early_stopping = self.early_stopping
        if early_stopping:
            X_train, Y_train, SW_train, val = self._split_for_early_stopping(X, Y, SW)
        else:
            X_train, Y_train, SW_train, val = X, Y, SW, None

        # Minibatches are gathered as rows of the row-major X (contiguous reads: a column
        # gather from a transposed copy reads one cache line per entry, ~16x the traffic)
        # and reach the first layer as a transposed view (gather_columns): a transposed
        # copy per batch cost as much as the gather.  Targets likewise: one cache line
        # per example (its row) instead of one per output.  Sparse X: CSR rows.
        XR = _sparse_as(X_train, dtype, "csr") if sp.issparse(X_train) else _rows(X_train, dtype, "X")
        YR = _rows(Y_train, dtype, "y")
        del X_train, Y_train
        batch_size = self._batch_size(XR.shape[0])
        bk = self._training_backend(batch_size, dtype)
        Ws, bs = self._device_params(bk, dtype, copy=True)
        opt = self._optimizer
        opt.bind(bk, Ws + bs)
        ws = self._workspace(bk, XR, SW_train, Ws, dtype)
        if ws is not None:  # the parameters become views of its flat array
            P = ws.adopt([p for pair in zip(Ws, bs) for p in pair])
            Ws, bs = P[0::2], P[1::2]
        if val is not None:
            val = (_full_batch(bk, val[0], dtype),) + val[1:]
        try:
            with backend_lock(bk), policy_for(bk, Ws, batch_size):
                self._epochs(bk, Ws, bs, XR, YR, SW_train, batch_size, val, incremental, ws)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        finally:
            self._store_params(bk, Ws, bs)
            opt.unbind(bk)

        if early_stopping:
            # restore the best weights (as copies, so later warm starts leave them alone)
            self.coefs_ = [np.array(c.T, order="C").T for c in self._best_coefs]
            self.intercepts_ = [np.array(b) for b in self._best_intercepts]

    def _batch_size(self, n_samples):
        """scikit-learn's minibatch size: "auto" is ``min(200, n)``; others clipped to ``[1, n]``."""
        if self.batch_size == "auto":
            return min(200, n_samples)
        if self.batch_size > n_samples:
            warnings.warn("Got `batch_size` less than 1 or larger than "
                          "sample size. It is going to be clipped")
        return int(np.clip(self.batch_size, 1, n_samples))

    def _workspace(self, bk, XR, SW, Ws, dtype):
        """The engine's minibatch workspace for this fit, or None where the epoch runs kernel
        by kernel (sparse X, sample weights, dropout, a Poisson output, a backend without the
        minibatch kernels)."""
        if sp.issparse(XR) or SW is not None or self._dropout_spec is not None \
                or not MinibatchWorkspace.supports(bk, _spec(self).output):
            return None
        return MinibatchWorkspace(bk, [Ws[0].shape[1]] + [W.shape[0] for W in Ws], dtype)

    def _workspace_epoch(self, bk, ws, XR, YR, batch_size, sample_idx):
        """:meth:`_epoch` on the workspace: bitwise the same steps, nothing allocated per
        batch, one optimizer call per rule over the flat parameters; the full-size
        batches, then the short last one (a call of its own size), as compiled steps
        where the backend has them (``run_steps``)."""
        opt, spec = self._optimizer, _spec(self)
        fold = opt.FOLDS_WEIGHT_EPILOGUE
        Ws = ws.params[0::2]
        n_samples = XR.shape[0]
        order = sample_idx if self.shuffle else np.arange(n_samples)
        losses = []  # each compiled step's loss times its batch size, in order
        done = 0
        for starts, size in ws.batch_groups(n_samples, batch_size):
            def on_chunk(loss_sums, squares, size=size):
                losses.extend(_batch_loss_from(spec, float(loss), sq, size) * size
                              for loss, sq in zip(loss_sums, squares))
            ran = ws.run_steps(XR, YR, order, starts, size, spec.hidden, spec.output,
                               spec.scaling, spec.alpha, opt, on_chunk, bare=fold,
                               fold=_fold(spec, len(Ws), size, YR.dtype) if fold else None,
                               check=False,
                               squares_mode=SQUARES_DOT if spec.alpha else SQUARES_NONE)
            if ran is None:
                break
            done += ran
        accumulated_loss = 0.0
        for loss in losses:
            accumulated_loss += loss
        for batch in _batches(n_samples, batch_size)[done:]:
            idx = sample_idx[batch] if self.shuffle else batch
            m = batch.stop - batch.start
            loss_sum = ws.step(XR, YR, idx, spec.hidden, spec.output, spec.scaling, spec.alpha,
                               bare=fold)
            accumulated_loss += _batch_loss(bk, spec, Ws, loss_sum, m) * m
            opt.step_flat(bk, ws, _fold(spec, len(Ws), m, YR.dtype) if fold else None)
        return accumulated_loss / n_samples

    def _epoch(self, bk, Ws, bs, XR, YR, SW, batch_size, sample_idx):
        """One pass over the minibatches; returns scikit-learn's epoch loss."""
        dtype, opt, spec = YR.dtype, self._optimizer, _spec(self)
        fold = opt.FOLDS_WEIGHT_EPILOGUE
        params = Ws + bs
        n_samples = XR.shape[0]
        accumulated_loss = 0.0
        for batch in _batches(n_samples, batch_size):
            idx = sample_idx[batch] if self.shuffle else batch
            Xb = SparseRows(XR[idx]) if sp.issparse(XR) else bk.gather_columns(XR, idx)
            Yr = np.take(YR, idx, axis=0) if self.shuffle else YR[idx]
            Yb = bk.to_device(np.ascontiguousarray(Yr.T))
            SWb = None if SW is None else SW[idx]
            m = Yr.shape[0]
            norm = m if SWb is None else float(np.sum(SWb))
            batch_loss, dWs, dbs = _loss_and_grads(bk, spec, Ws, bs, Xb, Yb, norm, SWb,
                                                   "bare" if fold else "full", self._next_drop())
            accumulated_loss += batch_loss * m
            opt.step(bk, params, dWs + dbs, _fold(spec, len(Ws), norm, dtype) if fold else None)
        return accumulated_loss / n_samples

    def _next_drop(self):
        """The :class:`fastnn._dropout.DropoutStep` of the next minibatch step (None: no dropout).

        Steps are numbered over the estimator's training since its weights were
        initialised (warm starts and ``partial_fit`` continue the count), so no
        two steps of one seed share masks.
        """
        if self._dropout_spec is None:
            return None
        keeps, seed = self._dropout_spec
        t = getattr(self, "_dropout_steps", 0)
        self._dropout_steps = t + 1
        return _dropout.DropoutStep(keeps, seed, t)

    def _epochs(self, bk, Ws, bs, XR, YR, SW, batch_size, val, incremental, ws=None):
        """scikit-learn's epoch loop: stopping rules, schedules, the ConvergenceWarning."""
        opt = self._optimizer
        n_samples = XR.shape[0]
        sample_idx = np.arange(n_samples, dtype=int)
        self.n_iter_ = 0
        for _ in range(self.max_iter):
            if self.shuffle:
                sample_idx = _shuffled(sample_idx, self._random_state)
            if ws is not None:
                self.loss_ = self._workspace_epoch(bk, ws, XR, YR, batch_size, sample_idx)
            else:
                self.loss_ = self._epoch(bk, Ws, bs, XR, YR, SW, batch_size, sample_idx)
            self.n_iter_ += 1
            self.t_ += n_samples
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))

            self._update_no_improvement_count(bk, Ws, bs, val)
            opt.iteration_ends(self.t_)

            if self._no_improvement_count > self.n_iter_no_change:
                what = "Validation score" if val is not None else "Training loss"
                msg = ("%s did not improve more than tol=%f for %d consecutive epochs."
                       % (what, self.tol, self.n_iter_no_change))
                if opt.trigger_stopping(msg, self.verbose):
                    break
                self._no_improvement_count = 0

            if incremental:
                break

            if self.n_iter_ == self.max_iter:
                warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                              "optimization hasn't converged yet." % self.max_iter,
                              ConvergenceWarning)

    def _update_no_improvement_count(self, bk, Ws, bs, val):
        if val is not None:
            XvT, y_val, sw_val = val
            AL = self._output_from(bk, Ws, bs, XvT)
            val_score = self._score_outputs(AL, y_val, sw_val)
            self.validation_scores_.append(val_score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            last_valid_score = self.validation_scores_[-1]
            if last_valid_score < (self.best_validation_score_ + self.tol):
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last_valid_score > self.best_validation_score_:
                self.best_validation_score_ = last_valid_score
                self._best_coefs = [np.array(bk.to_host(W)).T for W in Ws]
                self._best_intercepts = [np.array(bk.to_host(b)).reshape(-1) for b in bs]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]


def _stochastic_solver(estimator):
    """``available_if`` condition of ``partial_fit`` (scikit-learn's AttributeError otherwise)."""
    if estimator.solver not in _STOCHASTIC:
        raise AttributeError("partial_fit is only available for stochastic optimizers. "
                             f"{estimator.solver} is not stochastic.")
    return True
