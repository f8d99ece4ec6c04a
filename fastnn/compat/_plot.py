"""The course helpers' figures (matplotlib, optional).

Functions whose only job is a figure need matplotlib and say so; loaders and
models that draw a figure on the side skip it when matplotlib is missing.
"""

import numpy as np

from ._data import optional


def pyplot(needed_by=None):
    """``matplotlib.pyplot``; without it: None, or an ImportError when ``needed_by`` is given."""
    if needed_by is not None:
        return optional("matplotlib.pyplot", "matplotlib", needed_by)
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_decision_boundary(model, X, y, *, show=False):
    """Colour the plane by ``model``'s prediction and scatter the points.

    The grid runs from each row's minimum - 1 to maximum + 1 in steps of 0.01;
    ``model`` is called once on all grid points (one point per row, columns
    x1 and x2).

    Parameters
    ----------
    model : callable, ``(K, 2) ndarray -> array of K predictions``
    X : ndarray, shape (2, m)
    y : array_like, m labels (shape (1, m) or (m,)), the point colours
    show : bool
        Call ``plt.show()`` at the end (Course 2's copies do).
    """
    plt = pyplot("plot_decision_boundary")
    x1 = np.arange(X[0, :].min() - 1, X[0, :].max() + 1, 0.01)
    x2 = np.arange(X[1, :].min() - 1, X[1, :].max() + 1, 0.01)
    xx, yy = np.meshgrid(x1, x2)
    Z = np.asarray(model(np.c_[xx.ravel(), yy.ravel()])).reshape(xx.shape)
    plt.contourf(xx, yy, Z, cmap=plt.cm.Spectral)
    plt.ylabel("x2")
    plt.xlabel("x1")
    plt.scatter(X[0, :], X[1, :], c=np.ravel(y), cmap=plt.cm.Spectral)
    if show:
        plt.show()


def print_mislabeled_images(classes, X, y, p):
    """Show the images whose prediction differs from the label (no ``plt.show()``).

    Sets ``rcParams['figure.figsize'] = (40.0, 40.0)``; image k of n goes to
    ``subplot(2, n, k + 1)``, titled ``"Prediction: <class> \\n Class: <class>"``.

    Parameters
    ----------
    classes : ndarray of bytes, shape (2,)
    X : ndarray, shape (12288, m), one flattened 64x64x3 image per column
    y : ndarray of int, shape (1, m), labels
    p : ndarray, shape (1, m), predictions (0.0 / 1.0)
    """
    plt = pyplot("print_mislabeled_images")
    wrong = np.asarray(np.where(p + y == 1))[1]
    plt.rcParams["figure.figsize"] = (40.0, 40.0)
    n = len(wrong)
    for k, index in enumerate(wrong):
        plt.subplot(2, n, k + 1)
        plt.imshow(X[:, index].reshape(64, 64, 3), interpolation="nearest")
        plt.axis("off")
        plt.title("Prediction: " + classes[int(p[0, index])].decode("utf-8")
                  + " \n Class: " + classes[y[0, index]].decode("utf-8"))


def scatter_set(X, Y):
    """The loaders' side figure: points of X (2, m) coloured by Y, if matplotlib is there."""
    plt = pyplot()
    if plt is not None:
        plt.scatter(X[0, :], X[1, :], c=np.ravel(Y), s=40, cmap=plt.cm.Spectral)


def plot_costs(costs, ylabel, xlabel, learning_rate):
    """The models' side figure: the recorded costs, then ``plt.show()``, if matplotlib is there."""
    plt = pyplot()
    if plt is not None:
        plt.plot(costs)
        plt.ylabel(ylabel)
        plt.xlabel(xlabel)
        plt.title("Learning rate =" + str(learning_rate))
        plt.show()
