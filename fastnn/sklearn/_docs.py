"""The parameter and attribute sections both estimators' docstrings share."""

_PARAMS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element is the number of units in the ith hidden layer.
    activation : {"identity", "logistic", "tanh", "relu"}, default="relu"
        Hidden-layer activation ("logistic" is fastnn's "sigmoid").
    solver : {"adam", "sgd", "lbfgs"}, default="adam"
        "adam", "sgd": stochastic solvers with scikit-learn's update rules.
        "lbfgs": SciPy's L-BFGS-B on the full-batch loss and gradient
        (``max_iter`` iterations, ``max_fun`` loss evaluations, ``tol`` the
        projected-gradient tolerance); no ``loss_curve_``, no ``partial_fit``.
    alpha : float, default=0.0001
        L2 strength: the loss is the mean loss plus
        ``alpha / (2 n_samples) * sum ||W||^2`` (fastnn's ``l2=alpha``).
    batch_size : int or "auto", default="auto"
        Minibatch size; "auto" is ``min(200, n_samples)``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Learning-rate schedule of solver="sgd" (as scikit-learn).
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
        Exponent of the "invscaling" schedule.
    max_iter : int, default=200
        Maximum number of epochs.
    shuffle : bool, default=True
        Shuffle the samples every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the early-stopping split and the shuffles,
        drawn in the same order as scikit-learn.
    tol : float, default=1e-4
    verbose : bool, default=False
    warm_start : bool, default=False
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, defaults 0.9, 0.999, 1e-8
        Adam's parameters.
    n_iter_no_change : int, default=10
    max_fun : int, default=15000
        Most loss evaluations of solver="lbfgs".
    backend : str or None, default=None
        fastnn backend ("numpy", "numba", "numba-parallel", "auto"); None is
        fastnn's default (see :func:`fastnn.get_backend`).
    dtype : {None, "float32", "float64"}, default=None
        Computation dtype.  None: float32 when X is float32, else float64.
        Fixed at the first fit (warm starts and partial_fit keep it).
    scaling : {"deferred", "absorbed"}, default="deferred"
        Where fastnn applies the ``1/m`` of the gradient (same gradient up to
        rounding).
    dropout : None, float or sequence of floats, default=None
        Beyond scikit-learn: inverted dropout while training, the keep
        probability of every hidden layer (a float) or of each (one per hidden
        layer); None or 1.0: no dropout.  Stochastic solvers only (solver="lbfgs"
        refuses it).  ``predict``, ``predict_proba``, ``score`` and the
        early-stopping validation score never drop; ``loss_curve_`` holds the
        training loss with the masks applied.  Masks come from a counter-based
        hash of (seed, layer, minibatch step, unit, example) (``fastnn/_dropout.py``),
        the same on every backend; the seed comes from ``random_state``: an int
        gives a seed of its own (the weights, split and shuffles stay those of
        the fit without dropout), a RandomState or None one draw from it.
"""

_ATTRS_DOC = """
    coefs_ : list of ndarray
        ``coefs_[i]`` has shape ``(fan_in, fan_out)``: fastnn's ``W[i+1].T``.
    intercepts_ : list of ndarray
        ``intercepts_[i]`` has shape ``(fan_out,)``.
    loss_ : float
        Loss after the last epoch.
    loss_curve_ : list of float
        Loss after every epoch (stochastic solvers only).
    best_loss_ : float or None
        Minimum of ``loss_curve_`` (None with early stopping).
    validation_scores_ : list of float or None
        Score on the validation split after every epoch (early stopping only).
    best_validation_score_ : float or None
    n_iter_ : int
        Epochs run by the last fit.
    t_ : int
        Training samples seen: ``n_iter_ * n_samples`` summed over fits.
    n_layers_ : int
    n_outputs_ : int
    out_activation_ : str
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X had string column names.
"""
