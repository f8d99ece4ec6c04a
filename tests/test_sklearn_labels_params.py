"""Label handling with scikit-learn's exact errors, and user-assigned fitted
parameters checked before any kernel sees them."""

import joblib
import numpy as np
import pytest


from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402

import fastnn  # noqa: E402
from fastnn import MLPClassifier, MLPRegressor  # noqa: E402
from fastnn_suite import assert_estimators_track  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

X4 = [[1, 2], [2, 3], [3, 4], [4, 5]]


def _error(call):
    with pytest.raises(Exception) as info:
        call()
    return type(info.value), str(info.value)


def _same_error(make_call):
    """``make_call(Estimator)`` raises the same type and message with fastnn's and scikit-learn's."""
    ours, theirs = _error(make_call(MLPClassifier)), _error(make_call(SkMLPClassifier))
    assert ours == theirs
    return ours


@pytest.mark.parametrize("labels", [
    [0, 0, 0, 1], [True, True, True, False], ["a", "a", "a", "b"], [2.0, 2.0, 2.0, 5.0],
    np.array(["x", "x", "x", "y"], dtype=object)], ids=["int", "bool", "str", "float", "object"])
def test_early_stopping_split_error_names_classes_as_sklearn(labels):
    kind, message = _same_error(lambda Est: lambda: Est(early_stopping=True).fit(X4, labels))
    # the split sees boolean indicators: the one-member class is named 'True' or 'False'
    minority = "['False']" if labels[-1] is False else "['True']"
    assert kind is ValueError and message.endswith(minority)


def test_multiclass_early_stopping_split_is_not_stratified_as_sklearn():
    """scikit-learn stratifies only one-output targets (binary): a multiclass class with
    one member is no error, and the split is the same."""
    y = ["a", "a", "a", "b", "b", "b", "c"] * 2
    X = np.arange(28.0).reshape(14, 2) / 28
    settings = dict(hidden_layer_sizes=(3,), early_stopping=True, validation_fraction=0.3,
                    max_iter=3, random_state=0)
    ours, theirs = MLPClassifier(**settings).fit(X, y), SkMLPClassifier(**settings).fit(X, y)
    np.testing.assert_array_equal(ours.validation_scores_, theirs.validation_scores_)


@pytest.mark.parametrize("labels", [
    np.array(["a", 1, "a", 1], dtype=object), [0.5, 1.5, 2.25, 3.0], [[1, 2], [3, 4], [5, 6], [7, 8]]],
    ids=["mixed", "continuous", "multiclass-multioutput"])
def test_bad_labels_errors_as_sklearn(labels):
    _same_error(lambda Est: lambda: Est(max_iter=1).fit(X4, labels))


def test_partial_fit_label_errors_as_sklearn():
    y = [0, 1, 0, 1]
    _same_error(lambda Est: lambda: Est().partial_fit(X4, y))
    _same_error(lambda Est: lambda: Est().partial_fit(X4, y, classes=[0, 1]).partial_fit(
        X4, y, classes=[1, 2]))
    _same_error(lambda Est: lambda: Est().partial_fit(X4, y, classes=[0, 1]).partial_fit(
        X4, [0, 2, 0, 1]))
    _same_error(lambda Est: lambda: Est(warm_start=True, max_iter=1).fit(X4, y).fit(
        X4, ["a", "b", "a", "b"]))


def test_string_and_bool_labels_predict_their_own_type():
    X = np.arange(40.0).reshape(20, 2) / 40
    for labels in (np.array(["no", "yes"] * 10), np.array([True, False] * 10)):
        clf = MLPClassifier((4,), solver="lbfgs", random_state=0, early_stopping=True).fit(X, labels)
        assert clf.predict(X).dtype == labels.dtype
        np.testing.assert_array_equal(clf.classes_, np.unique(labels))


# ------------------------------------------------------ user-assigned coefs_

BACKENDS = ["numpy", "numba", "numba-parallel"]


def _fitted(backend, solver="adam"):
    rng = np.random.RandomState(0)
    X, y = rng.rand(60, 5), rng.randint(0, 3, 60)
    return MLPClassifier((7,), max_iter=3, random_state=0, backend=backend,
                         solver=solver).fit(X, y), X, y


def _uses(clf, X, y):
    """Every way a fitted model's parameters reach the kernels."""
    return {"predict": lambda: clf.predict(X), "partial_fit": lambda: clf.partial_fit(X, y),
            "warm_start": lambda: clf.set_params(warm_start=True).fit(X, y)}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("use", ["predict", "partial_fit", "warm_start"])
def test_wrong_shapes_are_refused_before_the_kernels(backend, use):
    clf, X, y = _fitted(backend)
    clf.intercepts_[0] = np.zeros(3)
    with pytest.raises(ValueError, match=r"intercepts_\[0\] has shape \(3,\); expected \(7,\)"):
        _uses(clf, X, y)[use]()
    clf, X, y = _fitted(backend)
    clf.coefs_[1] = np.zeros((6, 3))
    with pytest.raises(ValueError, match="coefs_ have shapes"):
        _uses(clf, X, y)[use]()
    clf, X, y = _fitted(backend)
    clf.intercepts_ = clf.intercepts_[:1]
    with pytest.raises(ValueError, match="lists of the same non-zero length"):
        _uses(clf, X, y)[use]()


@pytest.mark.parametrize("use", ["predict", "partial_fit", "warm_start"])
def test_float16_and_mixed_dtypes_are_refused(use):
    clf, X, y = _fitted("numpy")
    clf.coefs_ = [c.astype(np.float16) for c in clf.coefs_]
    with pytest.raises(TypeError, match="must all be float32 or all float64"):
        _uses(clf, X, y)[use]()
    clf, X, y = _fitted("numpy")
    clf.coefs_[0] = clf.coefs_[0].astype(np.float32)
    with pytest.raises(TypeError, match="must all be float32 or all float64"):
        _uses(clf, X, y)[use]()


@pytest.mark.parametrize("use", ["partial_fit", "warm_start"])
def test_non_finite_parameters_are_refused_for_training(use):
    clf, X, y = _fitted("numpy")
    clf.coefs_[0][0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite values"):
        _uses(clf, X, y)[use]()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_partial_fit_on_a_read_only_memory_mapped_model(backend, solver, tmp_path):
    clf, X, y = _fitted(backend, solver)
    path = tmp_path / "model.joblib"
    joblib.dump(clf, path)
    loaded = joblib.load(path, mmap_mode="r")
    assert not loaded.coefs_[0].flags.writeable
    loaded.partial_fit(X, y)
    clf.partial_fit(X, y)
    assert_estimators_track(loaded, clf)
    assert loaded.t_ == clf.t_


def test_assigned_parameters_are_used():
    """Valid assigned coefs_ (any layout, list of arrays) are the ones predict uses."""
    clf, X, _ = _fitted("numpy")
    ref = clf.predict_proba(X)
    clf.coefs_ = [np.asfortranarray(c) for c in clf.coefs_]
    clf.intercepts_ = [list(b) for b in clf.intercepts_][:0] + [np.array(b) for b in clf.intercepts_]
    np.testing.assert_array_equal(clf.predict_proba(X), ref)
    clf.coefs_[1] = np.zeros_like(clf.coefs_[1])
    clf.intercepts_[1] = np.array([0.0, 5.0, 0.0])
    assert (clf.predict(X) == clf.classes_[1]).all()


def test_regressor_checks_its_parameters_too():
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(
        np.random.RandomState(0).rand(20, 3), np.arange(20.0))
    reg.intercepts_[-1] = np.zeros(2)
    with pytest.raises(ValueError, match=r"intercepts_\[1\] has shape \(2,\); expected \(1,\)"):
        reg.predict(np.zeros((2, 3)))
