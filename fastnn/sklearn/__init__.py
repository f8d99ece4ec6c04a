"""scikit-learn estimators running on fastnn's kernels.

:class:`MLPClassifier` and :class:`MLPRegressor` mirror
:class:`sklearn.neural_network.MLPClassifier` / ``MLPRegressor``: the same
parameters (with their defaults), fitted attributes, training loop
(minibatches, shuffling, ``tol`` / ``n_iter_no_change``, early stopping,
``ConvergenceWarning``), initialisation (Glorot uniform drawn from
``check_random_state(random_state)`` in scikit-learn's order) and optimizer
update rules, so that with the same ``random_state`` a fit follows
scikit-learn's trajectory up to floating-point rounding.  The forward and
backward passes and the parameter updates run on a fastnn backend
(:func:`fastnn.get_backend`).

Layout
------
scikit-learn's ``X`` is row-major ``(n_samples, n_features)``; fastnn computes
in the course's column-major notation.  ``X`` is transposed once, at the
boundary, to a C-contiguous ``(n_features, n_samples)`` array of the
computation dtype; minibatches are column gathers from it.  Parameters live as
fastnn's ``W[l]`` ``(n_l, n_{l-1})`` and ``b[l]`` ``(n_l, 1)``; the fitted
``coefs_[l]`` is ``W[l].T`` (shape ``(fan_in, fan_out)``, a view) and
``intercepts_[l]`` is ``b[l]`` raveled (a view).

Solvers
-------
"sgd" and "adam" run scikit-learn's epoch loop; "lbfgs" hands fastnn's loss
and gradient (one forward and backward pass over all samples, parameters
flattened in scikit-learn's order: every ``coefs_[l]`` raveled, then every
``intercepts_[l]``) to SciPy's L-BFGS-B with scikit-learn's options
(``maxiter=max_iter``, ``maxfun=max_fun``, ``gtol=tol``).

Beyond the dense float arrays of the kernels
--------------------------------------------
``sample_weight`` (and the classifier's ``class_weight``) multiply the output
delta ``dZ[L]`` and the loss column by column, and ``1/m`` becomes
``1/sum(sample_weight)`` (see :func:`fastnn.engine.backward`).  Sparse ``X``
(CSR or CSC) stays sparse: the first layer's products run in SciPy and the
kernels see their dense results.  ``MLPRegressor(loss="poisson")`` has the
exponential output: the kernels compute ``Z[L]``, and ``exp``, the delta and
the half Poisson deviance are formed in NumPy on the ``(n_outputs, m)`` output.

Modules
-------
``_params`` the parameter checks and activation tables; ``_data`` the
boundary layout conversions; ``_labels`` the classifier's targets and class
weights; ``_optim`` scikit-learn's SGD and Adam rules; ``_stochastic`` the
epoch loop; ``_lbfgs`` the L-BFGS objective; ``_base`` the shared estimator;
``_estimators`` the two public classes.
"""

from ._estimators import MLPClassifier, MLPRegressor
# Estimators pickled before this package was split refer to these by this path.
from ._optim import _SklearnAdam, _SklearnSGD  # noqa: F401

__all__ = ["MLPClassifier", "MLPRegressor"]
