"""Course 1 helper modules: dnn_app_utils_v3, planar_utils, the data loaders, the fast path's labels.

Each helper is checked against a plain re-derivation written here (the course's
seeds and formulas, spelled out), plus the published values the spec quotes.
"""

import math
import os
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn.compat import _data, dnn, planar
from fastnn.compat import dnn_app_utils_v3 as app
from fastnn.compat import planar_utils

from conftest import assert_close, backend_params, tol, trajectory_rtol

FAST_BACKENDS = backend_params([name for name in fastnn.backends.REGISTRY if name != "cuda"])
#: The course's cat data: ``$FASTNN_CATVNONCAT_DIR`` when set, else the project's
#: shared data folder beside the repository (``../shared/data/catvnoncat``).
CAT_DIR = (os.environ.get(_data.CAT_ENV)
           or str(Path(__file__).resolve().parents[2] / "shared" / "data" / "catvnoncat"))
#: The notebook's L-layer network, and its run on the cat data shortened for CI
#: (2500 iterations there): costs recorded at iterations 0 and 100, and printed
#: for those and the last one.
CAT_DIMS = (12288, 20, 7, 5, 1)
CAT_ITERATIONS = 120
needs_cat_data = pytest.mark.skipif(not os.path.isdir(CAT_DIR), reason=f"shared data absent: {CAT_DIR}")


def assert_printed(actual, printed):
    """``actual`` rounds to the published decimal string ``printed``.

    Within half a unit of the last printed digit (exact Decimal arithmetic),
    or printed as Python's shortest round-trip repr of ``actual``.
    """
    actual = float(actual)
    if repr(actual) == printed:
        return
    p = Decimal(printed)
    half_unit = Decimal(5).scaleb(p.as_tuple().exponent - 1)
    assert abs(Decimal(actual) - p) <= half_unit, f"{actual!r} does not print as {printed}"


def star(module):
    ns = {}
    exec(f"from {module} import *", ns)
    ns.pop("__builtins__")
    return ns


# ------------------------------------------------------------ dnn_app_utils_v3

APP_FILE_NAMES = {
    "sigmoid", "relu", "relu_backward", "sigmoid_backward", "load_data",
    "initialize_parameters", "initialize_parameters_deep", "linear_forward",
    "linear_activation_forward", "L_model_forward", "compute_cost", "linear_backward",
    "linear_activation_backward", "L_model_backward", "update_parameters", "predict",
    "print_mislabeled_images",
}


def test_app_star_import_gives_the_files_names_and_graded_models():
    ns = star("fastnn.compat.dnn_app_utils_v3")
    assert set(ns) == APP_FILE_NAMES | {"two_layer_model", "L_layer_model"}
    assert ns["initialize_parameters_deep"] is app.initialize_parameters_deep
    assert ns["update_parameters"] is app.update_parameters
    # The names the file defines as the Step-by-Step assignment does are those.
    for name in APP_FILE_NAMES - {"initialize_parameters_deep", "update_parameters",
                                  "load_data", "print_mislabeled_images"}:
        assert ns[name] is getattr(dnn, name), name


@pytest.mark.parametrize("dims", [[5, 4, 3], (12, 7, 5, 1), [3, 1]])
def test_app_initialize_parameters_deep_is_seed1_over_sqrt(dims):
    np.random.seed(99)
    params = app.initialize_parameters_deep(dims)
    after = np.random.rand()
    np.random.seed(1)
    assert list(params) == [k for l in range(1, len(dims)) for k in (f"W{l}", f"b{l}")]
    for l in range(1, len(dims)):
        expected = np.random.randn(dims[l], dims[l - 1]) / math.sqrt(dims[l - 1])
        assert_close(params[f"W{l}"], expected, np.float64, 1)
        assert params[f"b{l}"].shape == (dims[l], 1) and not params[f"b{l}"].any()
    assert np.random.rand() == after  # the RNG is left where the course leaves it


def test_app_initialize_parameters_deep_published_values():
    W1 = app.initialize_parameters_deep([5, 4, 3])["W1"]
    assert_printed(W1[0, 0], "0.72642933")
    assert_printed(W1[0, 1], "-0.27358579")
    # The Step-by-Step name keeps its own behaviour.
    W1 = dnn.initialize_parameters_deep([5, 4, 3])["W1"]
    assert_printed(W1[0, 0], "0.01788628")
    assert_printed(W1[0, 1], "0.0043651")


def test_app_update_parameters_rebinds_the_given_dict():
    rng = np.random.RandomState(0)
    params = {"W1": rng.randn(3, 2), "b1": rng.randn(3, 1), "W2": rng.randn(1, 3), "b2": rng.randn(1, 1)}
    grads = {"dW1": rng.randn(3, 2), "db1": rng.randn(3, 1), "dW2": rng.randn(1, 3),
             "db2": rng.randn(1, 1), "dA0": rng.randn(2, 4)}
    old = {k: v.copy() for k, v in params.items()}
    held = dict(params)
    out = app.update_parameters(params, grads, 0.1)
    assert out is params and set(out) == set(old)
    for k in old:
        assert np.array_equal(held[k], old[k])  # old arrays untouched
        assert out[k] is not held[k]
        np.testing.assert_array_equal(out[k], old[k] - 0.1 * grads["d" + k])
    # Step-by-Step keeps copying.
    fresh = dict(old)
    assert dnn.update_parameters(fresh, grads, 0.1) is not fresh
    assert all(fresh[k] is old[k] for k in old)


def test_L_layer_model_from_app_module_equals_its_own_pieces():
    rng = np.random.RandomState(3)
    X, Y = rng.rand(6, 9), (rng.rand(1, 9) > 0.5).astype(float)
    params, costs = app.L_layer_model(X, Y, [6, 4, 1], num_iterations=3)
    p = app.initialize_parameters_deep([6, 4, 1])
    for _ in range(3):
        AL, caches = app.L_model_forward(X, p)
        p = app.update_parameters(p, app.L_model_backward(AL, Y, caches), 0.0075)
    for k in p:
        np.testing.assert_array_equal(params[k], p[k])


# ------------------------------------------------------------------- load_data

def _write_cat_files(folder, h5py, m_train=4, m_test=3):
    rng = np.random.RandomState(0)
    data = {"train_set_x": rng.randint(0, 256, (m_train, 64, 64, 3)).astype(np.uint8),
            "train_set_y": rng.randint(0, 2, m_train).astype(np.int64),
            "test_set_x": rng.randint(0, 256, (m_test, 64, 64, 3)).astype(np.uint8),
            "test_set_y": rng.randint(0, 2, m_test).astype(np.int64),
            "list_classes": np.array([b"non-cat", b"cat"])}
    for part in ("train", "test"):
        with h5py.File(os.path.join(folder, f"{part}_catvnoncat.h5"), "w") as f:
            for key, value in data.items():
                if key.startswith(part) or key == "list_classes":
                    f[key] = value
    return data


def _check_loaded(out, data):
    train_x, train_y, test_x, test_y, classes = out
    assert train_x.dtype == np.uint8 and np.array_equal(train_x, data["train_set_x"])
    assert train_y.shape == (1, 4) and train_y.dtype == np.int64
    assert np.array_equal(train_y[0], data["train_set_y"])
    assert test_x.shape == (3, 64, 64, 3) and np.array_equal(test_x, data["test_set_x"])
    assert test_y.shape == (1, 3) and np.array_equal(test_y[0], data["test_set_y"])
    assert list(classes) == [b"non-cat", b"cat"]


def test_load_data_reads_a_folder_given_or_from_the_environment(tmp_path, monkeypatch):
    import h5py
    data = _write_cat_files(tmp_path, h5py)
    _check_loaded(app.load_data(tmp_path), data)
    monkeypatch.setenv("FASTNN_CATVNONCAT_DIR", str(tmp_path))
    _check_loaded(app.load_data(), data)
    monkeypatch.delenv("FASTNN_CATVNONCAT_DIR")
    monkeypatch.chdir(tmp_path.parent)
    os.rename(tmp_path, tmp_path.parent / "datasets")  # the notebooks' own layout
    _check_loaded(app.load_data(), data)


def test_load_data_missing_files_name_both(tmp_path, monkeypatch):
    (tmp_path / "train_catvnoncat.h5").write_bytes(b"")
    with pytest.raises(FileNotFoundError) as err:
        app.load_data(tmp_path)
    msg = str(err.value)
    assert "train_catvnoncat.h5" in msg and "test_catvnoncat.h5" in msg and str(tmp_path) in msg
    assert "FASTNN_CATVNONCAT_DIR" in msg
    monkeypatch.setenv("FASTNN_CATVNONCAT_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        app.load_data()


def test_load_data_without_h5py_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py -> ImportError
    with pytest.raises(ImportError, match="pip install h5py"):
        app.load_data(".")


@needs_cat_data
def test_cat_data_and_published_first_cost():
    train_x, train_y, test_x, test_y, classes = app.load_data(CAT_DIR)
    assert train_x.shape == (209, 64, 64, 3) and test_x.shape == (50, 64, 64, 3)
    assert train_y.shape == (1, 209) and test_y.shape == (1, 50)
    X = train_x.reshape(209, -1).T / 255
    # The quoted cost at iteration 0 is the application initialisation's on
    # layers (12288, 7, 1); [12288, 20, 7, 5, 1] starts at 0.7717493284237686.
    _, costs = app.L_layer_model(X, train_y, (12288, 7, 1), num_iterations=1)
    assert_printed(costs[0], "0.6950464961800915")
    _, fast = app.L_layer_model(X, train_y, (12288, 7, 1), num_iterations=1, backend="numpy")
    rtol, _ = tol(np.float64, X.shape[0])
    assert abs(float(fast[0]) - float(costs[0])) <= rtol * float(costs[0])


def _rederived_L_layer_model(X, Y, dims, learning_rate, num_iterations):
    """The application's L_layer_model in textbook form: (W, b) per layer, costs by iteration.

    ``np.random.seed(1)``, ``W_l = randn(n_l, n_{l-1}) / sqrt(n_{l-1})``, ``b_l = 0``;
    full-batch gradient descent on the mean cross-entropy of
    [LINEAR->RELU]*(L-1)->LINEAR->SIGMOID, with ``dZ_L = A_L - Y`` and
    ``dZ_l = W_{l+1}^T dZ_{l+1} * (A_l > 0)``; the cost of iterations 0, 100, ...
    and of the last one, before that iteration's step.
    """
    np.random.seed(1)
    Ws = [np.random.randn(n, n_prev) / np.sqrt(n_prev) for n_prev, n in zip(dims[:-1], dims[1:])]
    bs = [np.zeros((n, 1)) for n in dims[1:]]
    m, costs = X.shape[1], {}
    for i in range(num_iterations):
        As = [X]
        for l, (W, b) in enumerate(zip(Ws, bs)):
            Z = W @ As[-1] + b
            As.append(1 / (1 + np.exp(-Z)) if l == len(Ws) - 1 else np.maximum(Z, 0))
        AL = As[-1]
        if i % 100 == 0 or i == num_iterations - 1:
            costs[i] = -np.mean(Y * np.log(AL) + (1 - Y) * np.log(1 - AL))
        dZ = AL - Y
        for l in reversed(range(len(Ws))):
            dW, db = dZ @ As[l].T / m, dZ.sum(axis=1, keepdims=True) / m
            if l:
                dZ = (Ws[l].T @ dZ) * (As[l] > 0)
            Ws[l], bs[l] = Ws[l] - learning_rate * dW, bs[l] - learning_rate * db
    return Ws, bs, costs


@pytest.fixture(scope="module")
def cat_run():
    """The flattened cat images, their labels and the re-derived run (computed once)."""
    train_x, train_y, _, _, _ = app.load_data(CAT_DIR)
    X = train_x.reshape(train_x.shape[0], -1).T / 255
    return X, train_y, _rederived_L_layer_model(X, train_y, CAT_DIMS, 0.0075, CAT_ITERATIONS)


@needs_cat_data
@pytest.mark.parametrize("backend", [None, "auto"], ids=["course-loop", "auto"])
def test_L_layer_model_on_cat_data_matches_a_plain_rederivation(backend, cat_run, capsys):
    # The notebook's own call (layers [12288, 20, 7, 5, 1], learning rate 0.0075)
    # on the real images, shortened to CAT_ITERATIONS; the costs and parameters
    # of the two runs differ only in rounding (other summation orders, the
    # shortcut dZ_L = A_L - Y): TRAJECTORY_ULPS of the largest value compared.
    X, Y, (Ws, bs, ref_costs) = cat_run
    params, costs = app.L_layer_model(X, Y, CAT_DIMS, num_iterations=CAT_ITERATIONS,
                                      print_cost=True, backend=backend)
    printed = capsys.readouterr().out.splitlines()
    assert [ln.split(": ")[0] for ln in printed] == [f"Cost after iteration {i}" for i in ref_costs]
    got = np.array([float(ln.split(": ")[1]) for ln in printed])
    want = np.array(list(ref_costs.values()))
    atol = trajectory_rtol() * want.max()
    np.testing.assert_allclose(got, want, rtol=0, atol=atol)
    recorded = [want[k] for k, i in enumerate(ref_costs) if i % 100 == 0]
    np.testing.assert_allclose([float(c) for c in costs], recorded, rtol=0, atol=atol)
    assert costs[-1] < costs[0]  # it learns
    for l, (W, b) in enumerate(zip(Ws, bs), start=1):
        for name, ref in ((f"W{l}", W), (f"b{l}", b)):
            np.testing.assert_allclose(params[name], ref, rtol=0,
                                       atol=trajectory_rtol() * np.abs(ref).max(), err_msg=name)


# ---------------------------------------------------------------- planar_utils

def test_planar_utils_star_import():
    ns = star("fastnn.compat.planar_utils")
    assert set(ns) == {"plot_decision_boundary", "sigmoid", "load_planar_dataset",
                       "load_extra_datasets", "layer_sizes", "initialize_parameters",
                       "forward_propagation", "compute_cost", "backward_propagation",
                       "update_parameters", "nn_model", "predict"}
    assert ns["nn_model"] is planar.nn_model and ns["sigmoid"] is planar.sigmoid


def test_load_planar_dataset_rederived_point_by_point():
    np.random.seed(5)
    X, Y = planar_utils.load_planar_dataset()
    after = np.random.randn()
    np.random.seed(1)
    N = 200
    assert X.shape == (2, 400) and X.dtype == np.float64 and Y.shape == (1, 400) and Y.dtype == np.uint8
    for j in range(2):
        # Same operations in the same order: equal to the last bit.
        t = np.linspace(3.12 * j, 3.12 * (j + 1), N) + 0.2 * np.random.randn(N)
        r = 4 * np.sin(4 * t) + 0.2 * np.random.randn(N)
        cols = slice(j * N, (j + 1) * N)
        np.testing.assert_array_equal(X[0, cols], r * np.sin(t))
        np.testing.assert_array_equal(X[1, cols], r * np.cos(t))
        assert (Y[0, cols] == j).all()
    assert np.random.randn() == after


def test_load_planar_dataset_published_values():
    X, _ = planar_utils.load_planar_dataset()
    assert_printed(X[0, 0], "1.20444229")
    assert_printed(X[1, 0], "3.57611415")
    assert_printed(np.random.randn(), "0.8143431291489254")


def test_load_extra_datasets_draws_as_the_course():
    from sklearn import datasets
    np.random.seed(7)
    got = planar_utils.load_extra_datasets()
    after = np.random.rand()
    np.random.seed(7)
    expected = (datasets.make_circles(n_samples=200, factor=.5, noise=.3),
                datasets.make_moons(n_samples=200, noise=.2),
                datasets.make_blobs(n_samples=200, random_state=5, n_features=2, centers=6),
                datasets.make_gaussian_quantiles(mean=None, cov=0.5, n_samples=200, n_features=2,
                                                 n_classes=2, shuffle=True, random_state=None),
                (np.random.rand(200, 2), np.random.rand(200, 2)))
    assert np.random.rand() == after
    for (gx, gy), (ex, ey) in zip(got, expected):
        assert gx.shape == (200, 2) and gy.shape[0] == 200
        np.testing.assert_array_equal(gx, ex)
        np.testing.assert_array_equal(gy, ey)


def test_load_extra_datasets_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        planar_utils.load_extra_datasets()


# ---------------------------------------------------------------------- figures

@pytest.fixture
def pyplot(monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shows = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shows.append(1))
    monkeypatch.setitem(plt.rcParams, "figure.figsize", plt.rcParams["figure.figsize"])
    plt.close("all")
    yield plt, shows
    plt.close("all")


def test_plot_decision_boundary_calls_model_once_on_the_grid(pyplot):
    plt, shows = pyplot
    X = np.array([[0.0, 0.5, 1.0], [0.0, 0.25, 0.2]])
    y = np.array([[0, 1, 1]])
    calls = []

    def model(points):
        calls.append(points.copy())
        return points[:, 0] > 0.5

    planar_utils.plot_decision_boundary(model, X, y)
    assert len(calls) == 1
    n1 = len(np.arange(-1.0, 2.0, 0.01))
    n2 = len(np.arange(-1.0, 1.25, 0.01))
    assert calls[0].shape == (n1 * n2, 2)
    assert calls[0][0].tolist() == [-1.0, -1.0]
    ax = plt.gca()
    assert ax.get_xlabel() == "x1" and ax.get_ylabel() == "x2" and not shows


def test_print_mislabeled_images_draws_each_mistake(pyplot):
    plt, shows = pyplot
    rng = np.random.RandomState(0)
    X = rng.rand(64 * 64 * 3, 5)
    y = np.array([[1, 0, 1, 0, 1]])
    p = np.array([[1.0, 1.0, 0.0, 0.0, 1.0]])
    classes = np.array([b"non-cat", b"cat"])
    assert app.print_mislabeled_images(classes, X, y, p) is None
    axes = plt.gcf().axes
    assert [ax.get_title() for ax in axes] == ["Prediction: cat \n Class: non-cat",
                                               "Prediction: non-cat \n Class: cat"]
    assert np.array_equal(axes[0].images[0].get_array(), X[:, 1].reshape(64, 64, 3))
    assert tuple(plt.rcParams["figure.figsize"]) == (40.0, 40.0) and not shows


# --------------------------------------------------- fast path: real labels

def _course_cost(AL, Y):
    return -(np.sum(Y * np.log(AL)) + np.sum((1 - Y) * np.log(1 - AL))) / Y.shape[1]


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("model, dims", [(app.two_layer_model, (10, 4, 1)),
                                         (app.L_layer_model, [10, 5, 3, 1])])
def test_fast_path_takes_real_valued_labels(backend, model, dims):
    np.random.seed(1)
    X, Y = np.random.randn(10, 10), np.random.randn(1, 10)  # as the course's model tests
    p_ref, c_ref = model(X, Y, dims, num_iterations=101)
    p_fast, c_fast = model(X, Y, dims, num_iterations=101, backend=backend)
    rtol, _ = tol(np.float64, X.shape[1] * 101)
    assert len(c_fast) == len(c_ref) == 2
    for a, b in zip(c_ref, c_fast):
        assert abs(float(a) - float(b)) <= rtol * abs(float(a))
    for k in p_ref:
        assert_close(p_fast[k], p_ref[k], np.float64, X.shape[1] * 101,
                     magnitude=np.max(np.abs(p_ref[k])))
    # The first cost is the course's formula at the initial parameters.
    p0 = app.initialize_parameters(10, 4, 1) if len(dims) == 3 else app.initialize_parameters_deep(dims)
    AL, _ = dnn.L_model_forward(X, p0)
    assert abs(float(c_fast[0]) - _course_cost(AL, Y)) <= rtol * abs(_course_cost(AL, Y))


@pytest.mark.parametrize("Y", [np.full((1, 4), np.nan), np.zeros((2, 4))])
def test_fast_path_still_refuses_what_the_course_cannot_use(Y):
    X = np.random.RandomState(0).randn(3, 4)
    with pytest.raises(ValueError, match="Y"):
        app.L_layer_model(X, Y, [3, 2, 1], num_iterations=1, backend="numpy")


def test_loader_errors_are_the_documented_types():
    assert issubclass(_data.MissingDependencyError, ImportError)
