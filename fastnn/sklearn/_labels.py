"""The classifier's targets: labels to indicator columns, class weights to example weights."""

import numpy as np
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels


def _binarized(est, y, incremental):
    """``y`` as boolean indicator columns ``(n_samples, n_outputs)``; fits the binarizer on a new fit.

    A warm start must see the same classes, a ``partial_fit`` no class outside
    ``classes_`` (scikit-learn's errors).
    """
    if not hasattr(est, "classes_") or (not est.warm_start and not incremental):
        est._label_binarizer = LabelBinarizer()
        est._label_binarizer.fit(y)
        est.classes_ = est._label_binarizer.classes_
    else:
        classes = unique_labels(y)
        if est.warm_start:
            if set(classes) != set(est.classes_):
                raise ValueError(
                    "warm_start can only be used where `y` has the same classes as in the "
                    f"previous call to fit. Previously got {est.classes_}, `y` has {classes}")
        elif len(np.setdiff1d(classes, est.classes_, assume_unique=True)):
            raise ValueError("`y` has classes not in `self.classes_`. "
                             f"`self.classes_` has {est.classes_}. 'y' has {classes}.")
    # Boolean indicators, as scikit-learn: the stratified split names classes 'True'.
    return _indicators(est._label_binarizer, y)


def _indicators(binarizer, y):
    """``binarizer.transform(y).astype(bool)``: for 1-D labels of a fitted binary or
    multiclass binarizer, the comparison with its (sorted) ``classes_`` itself, without
    ``transform``'s target checks (about 1 ms a call, ``partial_fit``'s largest cost on
    small batches; ``y`` was checked on the way in); a label outside the classes gives a
    row of False, as there (two classes: ``transform``, whose columns then depend on the
    labels).  Other targets go through ``transform``."""
    classes = binarizer.classes_
    if (isinstance(y, np.ndarray) and y.ndim == 1 and len(classes) >= 2
            and binarizer.y_type_ in ("binary", "multiclass") and binarizer.neg_label == 0
            and binarizer.pos_label == 1 and not binarizer.sparse_output):
        if len(classes) > 2:
            return y[:, None] == classes[None, :]
        pos = y == classes[1]
        if (pos | (y == classes[0])).all():  # else transform's columns depend on the labels
            return pos[:, None]
    return binarizer.transform(y).astype(bool)


def _labels_of(binarizer, AL):
    """``binarizer.inverse_transform(AL)``: for the outputs of a binary (``(n,)``) or
    multiclass (``(n, n_classes)``) problem, the class of the first largest output or of an
    output above 0.5 itself, without ``inverse_transform``'s array-API dispatch (about 0.06
    ms a ``predict``).  Other outputs go through ``inverse_transform``."""
    classes = binarizer.classes_
    if (isinstance(AL, np.ndarray) and not binarizer.sparse_input_
            and binarizer.neg_label == 0 and binarizer.pos_label == 1):
        if binarizer.y_type_ == "multiclass" and AL.ndim == 2 and AL.shape[1] == len(classes):
            return classes[np.argmax(AL, axis=1)]
        if binarizer.y_type_ == "binary" and AL.ndim == 1 and len(classes) == 2:
            return classes[(AL > 0.5).astype(np.intp)]
    return binarizer.inverse_transform(AL)


def _first_partial_fit(est, y, classes):
    """On ``partial_fit``'s first call, fit the binarizer on ``classes`` (or multilabel ``y``)."""
    if _check_partial_fit_first_call(est, classes):
        est._label_binarizer = LabelBinarizer()
        if type_of_target(y).startswith("multilabel"):
            est._label_binarizer.fit(y)
        else:
            est._label_binarizer.fit(classes)


def _class_weighted(est, sample_weight, Y, incremental):
    """``sample_weight`` times the ``class_weight`` of each example's class, float64 ``(n_samples,)``.

    ``Y`` is the binarized target; ``est.class_weight`` is not None.
    """
    if est._label_binarizer.y_type_.startswith("multilabel"):
        raise ValueError("class_weight is not supported for multilabel targets")
    if incremental and isinstance(est.class_weight, str):
        raise ValueError("class_weight 'balanced' is not supported for partial_fit: the "
                         "class frequencies of one batch are not those of the data; pass "
                         "a dict {class: weight} instead")
    y = est._label_binarizer.inverse_transform(Y.ravel() if Y.shape[1] == 1 else Y)
    class_weight = est.class_weight
    if isinstance(class_weight, dict):
        unknown = [c for c in class_weight if c not in set(est.classes_.tolist())]
        if unknown:
            raise ValueError(f"class_weight: classes {unknown} are not in classes_ "
                             f"{est.classes_}")
    weights = compute_sample_weight(class_weight, y)
    if sample_weight is not None:
        weights = weights * np.asarray(sample_weight, dtype=np.float64)
    return weights
