"""The course's data sets: the cat images read from their HDF5 files, the rest generated.

Generated sets draw from the global legacy NumPy RNG with the course's seeds
and algorithms, so they equal the notebooks' data.  Optional dependencies
(h5py, scikit-learn, scipy) are imported on first use, with a clear error.
"""

import importlib
import os

import numpy as np

#: Where :func:`load_data` looks when no path is given (after the variable below).
CAT_ENV = "FASTNN_CATVNONCAT_DIR"
CAT_FILES = ("train_catvnoncat.h5", "test_catvnoncat.h5")
COURSE_DIR = "datasets"  # the notebooks' folder, relative to the working directory


class MissingDependencyError(ImportError):
    """An optional package that a course helper needs is not installed."""


def optional(module, pip_name, why):
    """Import ``module`` or raise :class:`MissingDependencyError` saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{why} needs the optional package {pip_name!r}: pip install {pip_name}") from exc


def find_files(names, path, env, what):
    """The folder holding every file in ``names``: ``path``, else ``$env``, else ``datasets/``.

    Raises FileNotFoundError naming every file and every folder tried.
    """
    if path is not None:
        folders = [os.fspath(path)]
    elif os.environ.get(env):
        folders = [os.environ[env]]
    else:
        folders = [COURSE_DIR]
    for folder in folders:
        if all(os.path.isfile(os.path.join(folder, n)) for n in names):
            return folder
    raise FileNotFoundError(
        f"{what}: could not find {' and '.join(names)} in {', '.join(map(repr, folders))}; "
        f"pass the folder holding them as `path=` or set the environment variable {env}")


def load_data(path=None):
    """The cat / non-cat images of Course 1, as the course's ``load_data``.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Folder holding ``train_catvnoncat.h5`` and ``test_catvnoncat.h5``.
        Default: ``$FASTNN_CATVNONCAT_DIR``, else ``datasets/`` (the notebooks').

    Returns
    -------
    train_x_orig : ndarray, uint8, shape (209, 64, 64, 3)
    train_y : ndarray, int64, shape (1, 209)
    test_x_orig : ndarray, uint8, shape (50, 64, 64, 3)
    test_y : ndarray, int64, shape (1, 50)
    classes : ndarray of bytes, shape (2,), ``[b'non-cat', b'cat']``

    Raises
    ------
    FileNotFoundError
        Naming both files and the folder tried.
    MissingDependencyError
        (an ImportError) when h5py is not installed.
    """
    h5py = optional("h5py", "h5py", "load_data (the course's HDF5 cat images)")
    folder = find_files(CAT_FILES, path, CAT_ENV, "load_data")
    with h5py.File(os.path.join(folder, CAT_FILES[0]), "r") as train, \
            h5py.File(os.path.join(folder, CAT_FILES[1]), "r") as test:
        train_x = np.array(train["train_set_x"][:])
        train_y = np.array(train["train_set_y"][:])
        test_x = np.array(test["test_set_x"][:])
        test_y = np.array(test["test_set_y"][:])
        classes = np.array(test["list_classes"][:])
    return train_x, train_y.reshape(1, -1), test_x, test_y.reshape(1, -1), classes


def load_cat_dataset(path=None):
    """The cat images flattened and scaled, as Course 2's ``load_cat_dataset``.

    Parameters
    ----------
    path : as in :func:`load_data`

    Returns
    -------
    train_x : ndarray, float64, shape (12288, 209), pixels / 255, one image per column
    train_y : ndarray, int64, shape (1, 209)
    test_x : ndarray, float64, shape (12288, 50)
    test_y : ndarray, int64, shape (1, 50)
    classes : ndarray of bytes, shape (2,)
    """
    train_x, train_y, test_x, test_y, classes = load_data(path)
    train_x = train_x.reshape(train_x.shape[0], -1).T / 255
    test_x = test_x.reshape(test_x.shape[0], -1).T / 255
    return train_x, train_y, test_x, test_y, classes


def _two_curves(N, curve):
    """X (2, 2N) and uint8 Y (1, 2N) from ``curve(j) -> (x, y)`` for classes j = 0, 1."""
    X = np.zeros((2 * N, 2))
    Y = np.zeros((2 * N, 1), dtype="uint8")
    for j in range(2):
        rows = slice(N * j, N * (j + 1))
        X[rows] = np.column_stack(curve(j))
        Y[rows] = j
    return X.T, Y.T


def load_planar_dataset():
    """Course 1's "flower": two classes of 200 points (``np.random.seed(1)`` inside).

    Class j: ``t = linspace(3.12 j, 3.12 (j+1), 200) + 0.2 randn(200)``,
    ``r = 4 sin(4 t) + 0.2 randn(200)``, points ``(r sin t, r cos t)``.

    Returns
    -------
    X : ndarray, float64, shape (2, 400)
    Y : ndarray, uint8, shape (1, 400)
    """
    np.random.seed(1)
    N = 200

    def petal(j):
        t = np.linspace(j * 3.12, (j + 1) * 3.12, N) + np.random.randn(N) * 0.2
        r = 4 * np.sin(4 * t) + np.random.randn(N) * 0.2
        return r * np.sin(t), r * np.cos(t)

    return _two_curves(N, petal)


def load_spiral_dataset(randomness, seed):
    """Course 2's ``reg_utils.load_planar_dataset(randomness, seed)``: two spirals of 25 points.

    Seeds the global RNG with ``seed``. Class 0: ``t = linspace(0, 4 * 3.1415, 25)``,
    ``r = 0.3 t^2 + randomness * randn(25)``; class 1: ``t = linspace(1, 4 * 3.1415, 25)``,
    ``r = 0.2 t^2 + randomness * randn(25)``; points ``(r cos t, r sin t)``.

    Returns
    -------
    X : ndarray, float64, shape (2, 50)
    Y : ndarray, uint8, shape (1, 50)
    """
    np.random.seed(seed)
    N = 25

    def arm(j):
        t = np.linspace(j, 4 * 3.1415, N)
        r = (0.3, 0.2)[j] * np.square(t) + np.random.randn(N) * randomness
        return r * np.cos(t), r * np.sin(t)

    return _two_curves(N, arm)


def load_extra_datasets():
    """Course 1's four extra planar sets and a structureless one (no seed inside).

    Calls scikit-learn's generators in the course's order, all but the blobs
    drawing from the global RNG, then ``(rand(200, 2), rand(200, 2))``.

    Returns
    -------
    noisy_circles, noisy_moons, blobs, gaussian_quantiles, no_structure : tuples
        Each ``(X, y)`` with X of shape (200, 2) and y of shape (200,)
        (one example per row, as scikit-learn returns them).
    """
    datasets = optional("sklearn.datasets", "scikit-learn", "load_extra_datasets")
    N = 200
    noisy_circles = datasets.make_circles(n_samples=N, factor=.5, noise=.3)
    noisy_moons = datasets.make_moons(n_samples=N, noise=.2)
    blobs = datasets.make_blobs(n_samples=N, random_state=5, n_features=2, centers=6)
    gaussian_quantiles = datasets.make_gaussian_quantiles(
        mean=None, cov=0.5, n_samples=N, n_features=2, n_classes=2, shuffle=True,
        random_state=None)
    no_structure = np.random.rand(N, 2), np.random.rand(N, 2)
    return noisy_circles, noisy_moons, blobs, gaussian_quantiles, no_structure


def sklearn_set(maker, seed, **kwargs):
    """``sklearn.datasets.<maker>(**kwargs)`` after ``np.random.seed(seed)``, as (X.T, y as (1, m))."""
    datasets = optional("sklearn.datasets", "scikit-learn", f"the {maker} data set")
    np.random.seed(seed)
    X, y = getattr(datasets, maker)(**kwargs)
    return X.T, y.reshape((1, y.shape[0]))


def load_2D_dataset(path=None):
    """Course 2's football-field data: ``data.mat`` (keys X, y, Xval, yval).

    Parameters
    ----------
    path : str or os.PathLike, optional
        Folder holding ``data.mat``; default ``$FASTNN_COURSE2_DIR``, else ``datasets/``.

    Returns
    -------
    train_X : ndarray, float64, shape (2, 211)
    train_Y : ndarray, float64, shape (1, 211)
    test_X : ndarray, float64, shape (2, 200)
    test_Y : ndarray, float64, shape (1, 200)
    """
    io = optional("scipy.io", "scipy", "load_2D_dataset")
    folder = find_files(("data.mat",), path, "FASTNN_COURSE2_DIR", "load_2D_dataset")
    data = io.loadmat(os.path.join(folder, "data.mat"))
    return (data["X"].T.astype(np.float64), data["y"].T.astype(np.float64),
            data["Xval"].T.astype(np.float64), data["yval"].T.astype(np.float64))
