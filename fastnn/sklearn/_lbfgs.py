"""solver="lbfgs": fastnn's full-batch loss and gradient handed to SciPy's L-BFGS-B."""

import numpy as np
import scipy.optimize
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import check_array

from ..network import backend_lock
from ..threads import policy_for
from ._data import _VALIDATE_DTYPES, _columns, _full_batch
from ._objective import _loss_and_grads, _spec


class _LbfgsSolver:
    """The L-BFGS fit of :class:`~fastnn.sklearn._base._BaseMLP`."""

    def _fit_lbfgs(self, X, Y, SW, dtype):
        objective = _LbfgsObjective(self, self._training_backend(X.shape[0], dtype), X, Y, SW,
                                    dtype)
        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        with backend_lock(objective.bk), policy_for(objective.bk, self.coefs_, X.shape[0]):
            result = scipy.optimize.minimize(
                objective, _pack(self.coefs_, self.intercepts_), method="L-BFGS-B", jac=True,
                options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol,
                         **_lbfgs_print_option(iprint)})
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = result.fun
        self.coefs_, self.intercepts_ = objective.unpack(result.x)

    def _loss_grad_lbfgs(self, packed_coef_inter, X, y, sample_weight, *workspace):
        """scikit-learn's private L-BFGS objective: ``(loss, gradient)`` at the flat parameters.

        Parameters
        ----------
        packed_coef_inter : ndarray of shape (n_parameters,)
            Every ``coefs_[l]`` raveled, then every ``intercepts_[l]``.
        X : array-like of shape (n_samples, n_features)
        y : ndarray of shape (n_samples, n_outputs)
            Binarized labels (classifier) or targets.
        sample_weight : ndarray of shape (n_samples,) or None
        *workspace
            scikit-learn's preallocated lists; unused.

        Returns
        -------
        loss : float
        grad : ndarray of shape (n_parameters,)
            The parameters are left in ``coefs_``, ``intercepts_``.
        """
        dtype = self._checked_params()
        X = check_array(X, accept_sparse=["csr", "csc"], dtype=_VALIDATE_DTYPES)
        Y = np.asarray(y)
        Y = Y.reshape(-1, 1) if Y.ndim == 1 else Y
        SW = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        objective = _LbfgsObjective(self, self._training_backend(X.shape[0], dtype), X, Y, SW,
                                    dtype)
        loss, grad = objective(packed_coef_inter)
        self.coefs_, self.intercepts_ = objective.unpack(packed_coef_inter)
        return loss, grad


def _pack(coefs, intercepts):
    """scikit-learn's flat parameter vector (float64): coefs_ raveled, then intercepts_."""
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel()
                           for a in list(coefs) + list(intercepts)])


def _lbfgs_print_option(iprint):
    try:
        from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
    except ImportError:  # scikit-learn < 1.5
        return {"iprint": iprint}
    return _get_additional_lbfgs_options_dict("iprint", iprint)


class _LbfgsObjective:
    """scikit-learn's L-BFGS objective on fastnn's passes: ``x -> (loss, gradient)``.

    ``x`` is the flat float64 vector of :func:`_pack`.  Each call unpacks it to
    the backend's ``W[l] = coefs_[l].T`` and ``b[l]`` in the model's dtype, runs
    one forward and one backward pass over all samples (weighted when ``SW`` is
    given) and returns scikit-learn's loss (mean loss plus
    ``alpha/(2 sum(SW)) sum ||W||^2``) and the gradient packed the same way.
    """

    def __init__(self, est, bk, X, Y, SW, dtype):
        self.bk, self.dtype, self.SW = bk, dtype, SW
        self.X = _full_batch(bk, X, dtype)
        self.Y = bk.to_device(_columns(Y, dtype, "y"))
        self.shapes = [tuple(np.shape(c)) for c in est.coefs_]
        self.spec = _spec(est)
        self.norm = Y.shape[0] if SW is None else float(np.sum(SW))

    def unpack(self, x):
        """``(coefs_, intercepts_)`` of ``x`` as host arrays of the model's dtype (fresh copies)."""
        coefs, intercepts, start = [], [], 0
        for fan_in, fan_out in self.shapes:
            W = np.array(x[start:start + fan_in * fan_out].reshape(fan_in, fan_out).T,
                         dtype=self.dtype, order="C")
            coefs.append(W.T)
            start += fan_in * fan_out
        for _, fan_out in self.shapes:
            intercepts.append(np.array(x[start:start + fan_out], dtype=self.dtype))
            start += fan_out
        return coefs, intercepts

    def __call__(self, x):
        bk = self.bk
        coefs, intercepts = self.unpack(np.asarray(x, dtype=np.float64))
        Ws = [bk.to_device(np.ascontiguousarray(c.T)) for c in coefs]
        bs = [bk.to_device(b.reshape(-1, 1)) for b in intercepts]
        loss, dWs, dbs = _loss_and_grads(bk, self.spec, Ws, bs, self.X, self.Y, self.norm,
                                         self.SW)
        grad = np.concatenate([np.asarray(bk.to_host(dW)).T.ravel() for dW in dWs]
                              + [np.asarray(bk.to_host(db)).ravel() for db in dbs])
        return float(loss), grad.astype(np.float64, copy=False)
