"""The public estimators: :class:`MLPClassifier` and :class:`MLPRegressor`."""

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ._base import _BaseMLP
from ._data import _validated_xy
from ._docs import _ATTRS_DOC, _PARAMS_DOC
from ._labels import _binarized, _class_weighted, _first_partial_fit, _labels_of
from ._params import _check_choice, _check_class_weight
from ._stochastic import _stochastic_solver


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = """Multi-layer perceptron classifier on fastnn's kernels.

    A drop-in counterpart of :class:`sklearn.neural_network.MLPClassifier`.  Binary and multi-label targets use logistic outputs
    with binary cross-entropy, multiclass targets a softmax with categorical
    cross-entropy.
""" + _PARAMS_DOC + """
    class_weight : None, "balanced" or dict, default=None
        Beyond scikit-learn: per-class weights, applied as per-example weights
        (multiplying ``sample_weight``).  "balanced" is
        ``n_samples / (n_classes * bincount(y))`` of the data given to ``fit``
        (not available in ``partial_fit``).  Single-label targets only.

    Attributes
    ----------
    classes_ : ndarray or list of ndarray
        Class labels.""" + _ATTRS_DOC + """
    Examples
    --------
    >>> from fastnn import MLPClassifier
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = MLPClassifier((64,), max_iter=50, random_state=0).fit(X / 16, y)
    """
    # The public path (pickles and documentation name it), not the defining module.
    __module__ = "fastnn.sklearn"

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 backend=None, dtype=None, scaling="deferred", class_weight=None, dropout=None):
        super().__init__(hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
                         learning_rate_init, power_t, max_iter, shuffle, random_state, tol,
                         verbose, warm_start, momentum, nesterovs_momentum, early_stopping,
                         validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change, max_fun,
                         backend, dtype, scaling, class_weight=class_weight,
                         dropout=dropout)

    def _output_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _validate_input(self, X, y, incremental, reset):
        X, y = _validated_xy(self, X, y, reset)
        return X, _binarized(self, y, incremental)

    def _example_weights(self, sample_weight, Y, incremental):
        """sample_weight times the class_weight of each example's class (float64), or None."""
        if self.class_weight is None:
            return super()._example_weights(sample_weight, Y, incremental)
        return _class_weighted(self, sample_weight, Y, incremental)

    def _check_params(self):
        _check_class_weight(self)
        return super()._check_params()

    def _targets_for_score(self, Y):
        return self._label_binarizer.inverse_transform(Y)

    def _predict_from_outputs(self, AL):
        if self.n_outputs_ == 1:
            AL = AL.ravel()
        return _labels_of(self._label_binarizer, AL)

    @staticmethod
    def _score_function(y, y_pred, sample_weight=None):
        if sample_weight is None and isinstance(y, np.ndarray) and y.ndim == 1 \
                and isinstance(y_pred, np.ndarray) and y_pred.shape == y.shape:
            # accuracy_score's value, an exact count of matches over n (one rounding),
            # without its validation of the targets on every epoch of early stopping
            # (about 0.5 ms, an epoch's time on digits)
            return int(np.count_nonzero(y == y_pred)) / y.shape[0]
        return accuracy_score(y, y_pred, sample_weight=sample_weight)

    @available_if(_stochastic_solver)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``X``, ``y``, continuing from the current state.

        Only with the stochastic solvers ("sgd", "adam"), as scikit-learn.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array-like of shape (n_classes,), default=None
            All classes of all calls; required on the first call.

        Returns
        -------
        self : MLPClassifier
        """
        self._check_params()
        _first_partial_fit(self, y, classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_proba(self, X):
        """Class probabilities, columns ordered as ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Binary problems give two columns ``[1 - p, p]``.
        """
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            p = y_pred.ravel()
            return np.vstack([1 - p, p]).T
        return y_pred

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        y_prob = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = """Multi-layer perceptron regressor on fastnn's kernels.

    A drop-in counterpart of :class:`sklearn.neural_network.MLPRegressor`:
    identity outputs with the loss ``1/2 mean((y - p)^2)`` (averaged over
    samples and outputs), or exponential outputs with the half Poisson
    deviance, plus the L2 term.
""" + _PARAMS_DOC.replace("    Parameters\n    ----------\n", """    Parameters
    ----------
    loss : {"squared_error", "poisson"}, default="squared_error"
        "poisson": exponential output and the half Poisson deviance
        ``mean(y log(y / p) - y + p)`` (summed over outputs), as scikit-learn.
""") + """
    Attributes
    ----------""" + _ATTRS_DOC + """
    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import MLPRegressor
    >>> X = np.random.default_rng(0).uniform(-1, 1, (500, 3))
    >>> reg = MLPRegressor(hidden_layer_sizes=(32,), max_iter=200, random_state=0)
    >>> reg = reg.fit(X, X.sum(axis=1))
    """
    # The public path (pickles and documentation name it), not the defining module.
    __module__ = "fastnn.sklearn"

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 backend=None, dtype=None, scaling="deferred", dropout=None):
        super().__init__(hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
                         learning_rate_init, power_t, max_iter, shuffle, random_state, tol,
                         verbose, warm_start, momentum, nesterovs_momentum, early_stopping,
                         validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change, max_fun,
                         backend, dtype, scaling, loss=loss, dropout=dropout)

    def _check_params(self):
        _check_choice(self, "loss", ("squared_error", "poisson"))
        return super()._check_params()

    def _output_activation(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _validate_input(self, X, y, incremental, reset):
        X, y = _validated_xy(self, X, y, reset, y_numeric=True)
        return X, (y.reshape(-1, 1) if y.ndim == 1 else y)

    def _targets_for_score(self, Y):
        return Y.ravel() if Y.shape[1] == 1 else Y

    def _predict_from_outputs(self, AL):
        return AL.ravel() if AL.shape[1] == 1 else AL

    @staticmethod
    def _score_function(y, y_pred, sample_weight=None):
        return r2_score(y, y_pred, sample_weight=sample_weight)

    @available_if(_stochastic_solver)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``X``, ``y``, continuing from the current state.

        Only with the stochastic solvers ("sgd", "adam").

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : MLPRegressor
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
