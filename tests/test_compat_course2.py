"""Course 2 helper modules: init_utils, reg_utils, gc_utils, opt_utils (+ opt_utils_v1a).

Each helper is checked against a plain re-derivation written here, against
central differences where it computes a gradient, for the course's seeds and
dict semantics (rebind, no array changed in place), and against the
published values the spec quotes.
"""

import sys

import numpy as np
import pytest

from fastnn.compat import gc_utils as gc
from fastnn.compat import init_utils as init
from fastnn.compat import opt_utils as opt
from fastnn.compat import reg_utils as reg

from conftest import GRADCHECK_TOL, assert_close
from test_compat_course1 import assert_printed, star

KEYS = ("W1", "b1", "W2", "b2", "W3", "b3")


def net(dims, seed=0, scale=1.0):
    rng = np.random.RandomState(seed)
    p = {}
    for l in range(1, len(dims)):
        p[f"W{l}"] = rng.randn(dims[l], dims[l - 1]) * scale
        p[f"b{l}"] = rng.randn(dims[l], 1) * 0.1
    return p


def data(n_x=4, m=7, seed=1):
    rng = np.random.RandomState(seed)
    return rng.randn(n_x, m), (rng.rand(1, m) > 0.5).astype(np.int64)


# ------------------------------------------------- plain re-derivation

def ref_forward(X, p, masks=None, keep_prob=1.0):
    """Z, A lists (index 1..3) of ReLU, ReLU, sigmoid layers; masks scale A1, A2."""
    Z, A = [None], [X]
    for l in (1, 2, 3):
        z = p[f"W{l}"] @ A[-1] + p[f"b{l}"]
        a = 1 / (1 + np.exp(-z)) if l == 3 else np.where(z > 0, z, 0.0)
        if masks is not None and l < 3:
            a = a * masks[l - 1] / keep_prob
        Z.append(z)
        A.append(a)
    return Z, A


def ref_grads(X, Y, p, masks=None, keep_prob=1.0, lambd=0.0):
    """dZ_l, dW_l, db_l, dA_l of the mean cross-entropy (+ L2), as plain formulas."""
    m = X.shape[1]
    Z, A = ref_forward(X, p, masks, keep_prob)
    out, dZ = {}, (A[3] - Y) / m
    for l in (3, 2, 1):
        out[f"dZ{l}"] = dZ
        out[f"dW{l}"] = dZ @ A[l - 1].T + lambd / m * p[f"W{l}"]
        out[f"db{l}"] = dZ.sum(axis=1, keepdims=True)
        if l > 1:
            dA = p[f"W{l}"].T @ dZ
            if masks is not None:
                dA = dA * masks[l - 2] / keep_prob
            out[f"dA{l - 1}"] = dA
            dZ = dA * (A[l - 1] > 0)
    return out


def ref_losses(a3, Y):
    return np.array([[-np.log(a) if y == 1 else -np.log(1 - a) for a, y in zip(a3[0], Y[0])]])


def central_differences(cost, p, eps=1e-6):
    """d cost / d p[k] for every entry of every parameter."""
    grads = {}
    for k in p:
        G = np.zeros_like(p[k])
        for idx in np.ndindex(p[k].shape):
            saved = p[k][idx]
            p[k][idx] = saved + eps
            plus = cost(p)
            p[k][idx] = saved - eps
            minus = cost(p)
            p[k][idx] = saved
            G[idx] = (plus - minus) / (2 * eps)
        grads["d" + k] = G
    return grads


def relative_difference(g, gn):
    a = np.concatenate([g[k].ravel() for k in sorted(gn)])
    b = np.concatenate([gn[k].ravel() for k in sorted(gn)])
    return np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b))


def assert_rebound(fn, params, *args):
    """``fn(params, ...)`` returns ``params`` itself with new arrays; the old ones unchanged."""
    held = dict(params)
    copies = {k: v.copy() for k, v in params.items()}
    out = fn(params, *args)
    first = out[0] if isinstance(out, tuple) else out
    assert first is params
    for k in held:
        assert np.array_equal(held[k], copies[k]) and params[k] is not held[k]
    return out


# ------------------------------------------------------------ modules

MODULE_NAMES = {
    "fastnn.compat.init_utils": {
        "sigmoid", "relu", "forward_propagation", "backward_propagation", "update_parameters",
        "compute_loss", "load_cat_dataset", "predict", "load_dataset", "plot_decision_boundary",
        "predict_dec", "initialize_parameters_zeros", "initialize_parameters_random",
        "initialize_parameters_he", "model"},
    "fastnn.compat.reg_utils": {
        "sigmoid", "relu", "load_planar_dataset", "initialize_parameters", "compute_cost",
        "forward_propagation", "backward_propagation", "update_parameters", "predict",
        "load_dataset", "plot_decision_boundary", "predict_dec", "load_2D_dataset",
        "compute_cost_with_regularization", "backward_propagation_with_regularization",
        "forward_propagation_with_dropout", "backward_propagation_with_dropout", "model"},
    "fastnn.compat.gc_utils": {
        "sigmoid", "relu", "dictionary_to_vector", "vector_to_dictionary", "gradients_to_vector",
        "forward_propagation", "backward_propagation", "gradient_check", "forward_propagation_n",
        "backward_propagation_n", "gradient_check_n"},
    "fastnn.compat.opt_utils": {
        "sigmoid", "relu", "load_params_and_grads", "initialize_parameters", "compute_cost",
        "forward_propagation", "backward_propagation", "predict", "load_2D_dataset",
        "plot_decision_boundary", "predict_dec", "load_dataset", "update_parameters_with_gd",
        "random_mini_batches", "initialize_velocity", "update_parameters_with_momentum",
        "initialize_adam", "update_parameters_with_adam", "update_lr", "schedule_lr_decay",
        "model"},
}


@pytest.mark.parametrize("module", sorted(MODULE_NAMES))
def test_star_import_gives_the_files_names(module):
    ns = star(module)
    assert set(ns) == MODULE_NAMES[module]
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(ns["relu"](x), [0.0, 0.0, 2.0])
    np.testing.assert_array_equal(ns["sigmoid"](x), 1 / (1 + np.exp(-x)))


def test_opt_utils_v1a_is_the_same_module():
    assert star("fastnn.compat.opt_utils_v1a") == star("fastnn.compat.opt_utils")


# ------------------------------------------------------ initialisation

@pytest.mark.parametrize("fn, seed, scale", [
    (init.initialize_parameters_random, 3, lambda n: 10.0),
    (init.initialize_parameters_he, 3, lambda n: np.sqrt(2.0 / n)),
    (reg.initialize_parameters, 3, lambda n: 1 / np.sqrt(n)),
    (opt.initialize_parameters, 3, lambda n: np.sqrt(2.0 / n)),
])
def test_initialisers_rederived(fn, seed, scale):
    dims = [4, 6, 3, 1]
    np.random.seed(0)
    p = fn(dims)
    after = np.random.rand()
    np.random.seed(seed)
    assert list(p) == list(KEYS)
    for l in (1, 2, 3):
        assert_close(p[f"W{l}"], np.random.randn(dims[l], dims[l - 1]) * scale(dims[l - 1]),
                     np.float64, 1)
        assert p[f"b{l}"].shape == (dims[l], 1) and not p[f"b{l}"].any()
    assert np.random.rand() == after


def test_zeros_initialisation_draws_nothing():
    np.random.seed(4)
    p = init.initialize_parameters_zeros([3, 2, 1])
    after = np.random.rand()
    np.random.seed(4)
    assert np.random.rand() == after
    assert [p[k].shape for k in ("W1", "b1", "W2", "b2")] == [(2, 3), (2, 1), (1, 2), (1, 1)]
    assert not any(v.any() for v in p.values())


def test_initialisers_published_values():
    p = init.initialize_parameters_random([3, 2, 1])
    for got, printed in zip(p["W1"][0], ("17.88628473", "4.36509851", "0.96497468")):
        assert_printed(got, printed)
    for got, printed in zip(p["W2"][0], ("-0.82741481", "-6.27000677")):
        assert_printed(got, printed)
    p = init.initialize_parameters_he([3, 1, 2])
    for got, printed in zip(p["W1"][0], ("1.46040903", "0.3564088", "0.07878985")):
        assert_printed(got, printed)
    for got, printed in zip(p["W2"][:, 0], ("-2.63537665", "-0.39228616")):
        assert_printed(got, printed)


# ------------------------------------------------- three-layer core

@pytest.mark.parametrize("module", [init, reg, opt])
def test_forward_propagation_rederived(module):
    X, _ = data()
    p = net([4, 5, 3, 1])
    a3, cache = module.forward_propagation(X, p)
    Z, A = ref_forward(X, p)
    assert len(cache) == 12
    for l in (1, 2, 3):
        z, a, W, b = cache[4 * (l - 1):4 * l]
        assert_close(z, Z[l], np.float64, 5, magnitude=np.abs(p[f"W{l}"]) @ np.abs(A[l - 1]) + 1)
        assert_close(a, A[l], np.float64, 5, magnitude=np.abs(A[l]) + 1)
        assert W is p[f"W{l}"] and b is p[f"b{l}"]
    assert a3 is cache[9]


@pytest.mark.parametrize("module, upper", [(init, False), (opt, False), (reg, True)])
def test_backward_propagation_rederived_and_by_differences(module, upper):
    X, Y = data()
    p = net([4, 5, 3, 1])
    grads = module.backward_propagation(X, Y, module.forward_propagation(X, p)[1])
    z, a = ("dZ", "dA") if upper else ("dz", "da")
    assert list(grads) == [z + "3", "dW3", "db3", a + "2", z + "2", "dW2", "db2",
                           a + "1", z + "1", "dW1", "db1"]
    ref = ref_grads(X, Y, p)
    scale = X.shape[1] if upper else 1  # reg defers 1/m (dZ, dA unscaled); init and opt absorb it
    for key, value in ref.items():
        name = key.replace("dZ", z).replace("dA", a)
        expected = value * (scale if key[:2] in ("dZ", "dA") else 1)
        assert_close(grads[name], expected, np.float64, 7, magnitude=np.abs(expected).max() + 1e-300)
    mean_cost = lambda q: np.mean(ref_losses(ref_forward(X, q)[1][3], Y))  # noqa: E731
    assert relative_difference(grads, central_differences(mean_cost, p)) < GRADCHECK_TOL


def test_costs_of_each_file():
    rng = np.random.RandomState(2)
    a3, Y = rng.rand(1, 6) * 0.98 + 0.01, (rng.rand(1, 6) > 0.5).astype(np.int64)
    losses = ref_losses(a3, Y)
    assert_close(init.compute_loss(a3, Y), losses.mean(), np.float64, 6)
    assert_close(reg.compute_cost(a3, Y), losses.mean(), np.float64, 6)
    assert_close(opt.compute_cost(a3, Y), losses.sum(), np.float64, 6)
    assert isinstance(init.compute_loss(a3, Y), np.float64)


def test_saturated_outputs_give_inf_or_are_dropped_without_warnings():
    Y = np.array([[1, 0, 1]])
    right = np.array([[1.0, 0.0, 0.5]])  # exactly right: 0 * inf terms, dropped by nansum
    assert init.compute_loss(right, Y) == pytest.approx(np.log(2) / 3, rel=1e-15)
    assert np.isnan(opt.compute_cost(right, Y))  # a plain sum keeps the nan
    wrong = np.array([[0.0, 0.0, 0.5]])
    assert init.compute_loss(wrong, Y) == np.inf and reg.compute_cost(wrong, Y) == np.inf


@pytest.mark.parametrize("module", [init, reg, opt])
def test_updates_rebind_the_given_dict(module):
    fn = getattr(module, "update_parameters", None) or module.update_parameters_with_gd
    p = net([4, 5, 3, 1])
    grads = {"d" + k: v * 0.5 + 1 for k, v in net([4, 5, 3, 1], seed=9).items()}
    grads["dA1"] = np.ones(3)
    old = {k: v.copy() for k, v in p.items()}
    assert_rebound(fn, p, grads, 0.1)
    for k in KEYS:
        np.testing.assert_array_equal(p[k], old[k] - 0.1 * grads["d" + k])


def test_predict_and_predict_dec(capsys):
    X, Y = data(m=9)
    p = net([4, 5, 3, 1])
    A3 = ref_forward(X, p)[1][3]
    for module in (init, reg, opt):
        pred = module.predict(X, Y, p)
        assert pred.dtype == np.int64 and pred.shape == (1, 9)
        np.testing.assert_array_equal(pred, (A3 > 0.5).astype(int))
        assert capsys.readouterr().out == "Accuracy: " + str(np.mean(pred[0] == Y[0])) + "\n"
        np.testing.assert_array_equal(module.predict_dec(p, X), A3 > 0.5)


# ------------------------------------------------------------ reg_utils

def test_l2_cost_and_backward_rederived_and_by_differences():
    X, Y = data()
    p = net([4, 5, 3, 1])
    lambd = 0.7
    a3, cache = reg.forward_propagation(X, p)
    m = X.shape[1]
    expected = ref_losses(a3, Y).mean() + lambd / (2 * m) * sum((p[f"W{l}"] ** 2).sum() for l in (1, 2, 3))
    assert_close(reg.compute_cost_with_regularization(a3, Y, p, lambd), expected, np.float64, 20)
    grads = reg.backward_propagation_with_regularization(X, Y, cache, lambd)
    assert len(grads) == 11
    ref = ref_grads(X, Y, p, lambd=lambd)
    for l in (1, 2, 3):
        assert_close(grads[f"dW{l}"], ref[f"dW{l}"], np.float64, 7,
                     magnitude=np.abs(ref[f"dW{l}"]).max())

    def cost(q):
        return reg.compute_cost_with_regularization(reg.forward_propagation(X, q)[0], Y, q, lambd)

    assert relative_difference(grads, central_differences(cost, p)) < GRADCHECK_TOL


def _masks(shapes, keep_prob):
    np.random.seed(1)
    return [(np.random.rand(*s) < keep_prob).astype(np.int64) for s in shapes]


def test_dropout_forward_masks_seed_and_cache():
    X, _ = data(m=6)
    p = net([4, 5, 3, 1])
    keep_prob = 0.7
    A3, cache = reg.forward_propagation_with_dropout(X, p, keep_prob)
    D1, D2 = _masks([(5, 6), (3, 6)], keep_prob)
    assert len(cache) == 14
    assert cache[1].dtype == np.int64 and np.array_equal(cache[1], D1)
    assert np.array_equal(cache[6], D2)
    Z, A = ref_forward(X, p, [D1, D2], keep_prob)
    assert_close(cache[2], A[1], np.float64, 5, magnitude=np.abs(A[1]) + 1)
    assert_close(cache[7], A[2], np.float64, 5, magnitude=np.abs(A[2]) + 1)
    assert_close(A3, A[3], np.float64, 5)
    again, _ = reg.forward_propagation_with_dropout(X, p, keep_prob)
    np.testing.assert_array_equal(again, A3)  # seed 1 on entry: same masks every call
    assert 0 < D1.sum() < D1.size  # the masks do drop something here


def test_dropout_backward_rederived_and_by_differences_with_the_masks_fixed():
    X, Y = data(m=6)
    p = net([4, 5, 3, 1])
    keep_prob = 0.8
    _, cache = reg.forward_propagation_with_dropout(X, p, keep_prob)
    grads = reg.backward_propagation_with_dropout(X, Y, cache, keep_prob)
    masks = [cache[1], cache[6]]
    ref = ref_grads(X, Y, p, masks, keep_prob)
    for key in ("dA1", "dA2", "dW1", "dW2", "dW3", "db1"):
        expected = ref[key] * (X.shape[1] if key.startswith("dA") else 1)  # dA without 1/m
        assert_close(grads[key], expected, np.float64, 7, magnitude=np.abs(expected).max())
    assert not grads["dA1"][masks[0] == 0].any()
    # Every forward call reseeds, so the masks stay fixed under the differences.
    def cost(q):
        return reg.compute_cost(reg.forward_propagation_with_dropout(X, q, keep_prob)[0], Y)

    assert relative_difference(grads, central_differences(cost, p)) < GRADCHECK_TOL


def test_dropout_published_values():
    np.random.seed(1)
    X = np.random.randn(3, 5)
    p = {k: np.random.randn(*s) for k, s in zip(KEYS, [(2, 3), (2, 1), (3, 2), (3, 1), (1, 3), (1, 1)])}
    A3, cache = reg.forward_propagation_with_dropout(X, p, keep_prob=0.7)
    for got, printed in zip(A3[0, :3], ("0.36974721", "0.00305176", "0.04565099")):
        assert_printed(got, printed)
    np.testing.assert_array_equal(cache[1], [[1, 0, 1, 1, 1], [1, 1, 1, 1, 1]])


def test_reg_model_matches_its_loop_and_refuses_both_regularisers(capsys, monkeypatch):
    X, Y = reg.load_planar_dataset(0.3, 2)
    monkeypatch.setattr("fastnn.compat._plot.pyplot", lambda needed_by=None: None)
    with pytest.raises(ValueError, match="lambd and keep_prob"):
        reg.model(X, Y, lambd=0.1, keep_prob=0.8, num_iterations=1)
    for kw in ({"lambd": 0.7}, {"keep_prob": 0.86}):
        got = reg.model(X, Y, num_iterations=3, **kw)
        assert capsys.readouterr().out.startswith("Cost after iteration 0: ")
        p = reg.initialize_parameters([2, 20, 3, 1])
        for _ in range(3):
            if "lambd" in kw:
                g = ref_grads(X, Y, p, lambd=0.7)
            else:
                g = ref_grads(X, Y, p, _masks([(20, 50), (3, 50)], 0.86), 0.86)
            p = {k: p[k] - 0.3 * g["d" + k] for k in KEYS}
        for k in KEYS:
            assert_close(got[k], p[k], np.float64, 50, magnitude=np.abs(p[k]).max() + 1)


def test_reg_spiral_dataset_rederived():
    np.random.seed(0)
    X, Y = reg.load_planar_dataset(0.2, 5)
    after = np.random.rand()
    np.random.seed(5)
    assert X.shape == (2, 50) and Y.shape == (1, 50) and Y.dtype == np.uint8
    for j, (start, c) in enumerate(((0, 0.3), (1, 0.2))):
        t = np.linspace(start, 4 * 3.1415, 25)
        r = c * np.square(t) + 0.2 * np.random.randn(25)
        np.testing.assert_array_equal(X[:, 25 * j:25 * (j + 1)], [r * np.cos(t), r * np.sin(t)])
        assert (Y[0, 25 * j:25 * (j + 1)] == j).all()
    assert np.random.rand() == after


def test_load_2D_dataset_reads_data_mat(tmp_path, monkeypatch):
    import scipy.io as sio
    rng = np.random.RandomState(0)
    mat = {"X": rng.randn(11, 2), "y": rng.randint(0, 2, (11, 1)).astype(float),
           "Xval": rng.randn(7, 2), "yval": rng.randint(0, 2, (7, 1)).astype(float)}
    sio.savemat(tmp_path / "data.mat", mat)
    monkeypatch.setattr("fastnn.compat._plot.pyplot", lambda needed_by=None: None)
    for module in (reg, opt):
        out = module.load_2D_dataset(tmp_path)
        for got, key in zip(out, ("X", "y", "Xval", "yval")):
            assert got.dtype == np.float64
            np.testing.assert_array_equal(got, mat[key].T)
    with pytest.raises(FileNotFoundError, match="data.mat"):
        reg.load_2D_dataset(tmp_path / "nowhere")


# ------------------------------------------------------------- gc_utils

def _gc_params(seed=3):
    rng = np.random.RandomState(seed)
    return {k: rng.randn(*s) for k, s in zip(KEYS, [(5, 4), (5, 1), (3, 5), (3, 1), (1, 3), (1, 1)])}


def test_vector_round_trip_keys_and_views():
    p = _gc_params()
    theta, keys = gc.dictionary_to_vector(p)
    assert theta.shape == (47, 1)
    np.testing.assert_array_equal(theta[:, 0], np.concatenate([p[k].ravel() for k in KEYS]))
    assert keys == [k for k in KEYS for _ in range(p[k].size)]
    back = gc.vector_to_dictionary(theta)
    for k in KEYS:
        np.testing.assert_array_equal(back[k], p[k])
        assert np.shares_memory(back[k], theta)
    grads = {"d" + k: v * 2 for k, v in p.items()}
    grads["dA1"] = np.ones((5, 3))
    np.testing.assert_array_equal(gc.gradients_to_vector(grads), theta * 2)


def test_gradient_check_1d_published_value_and_messages(capsys):
    assert gc.forward_propagation(2, 4) == 8 and gc.backward_propagation(2, 4) == 2
    assert_printed(gc.gradient_check(2, 4, print_msg=True), "2.919335883291695e-10")
    out = capsys.readouterr().out
    assert out == ("\033[92mYour backward propagation works perfectly fine! difference = "
                   + str(gc.gradient_check(2, 4)) + "\033[0m\n")


def test_gradient_check_n_finds_the_planted_mistakes(capsys):
    X, Y = data(n_x=4, m=5, seed=4)
    p = _gc_params(4)
    cost, cache = gc.forward_propagation_n(X, Y, p)
    assert_close(cost, ref_losses(ref_forward(X, p)[1][3], Y).mean(), np.float64, 5)
    fixed = gc.backward_propagation_n(X, Y, cache, fixed=True)
    ref = ref_grads(X, Y, p)
    for l in (1, 2, 3):
        assert_close(fixed[f"dW{l}"], ref[f"dW{l}"], np.float64, 5, magnitude=np.abs(ref[f"dW{l}"]).max())
    assert np.abs(fixed["dW2"]).max() > 0.1 and np.abs(fixed["db1"]).max() > 0.1  # mistakes show
    planted = gc.backward_propagation_n(X, Y, cache)
    np.testing.assert_array_equal(planted["dW2"], 2 * fixed["dW2"])
    np.testing.assert_array_equal(planted["db1"], 4 * fixed["db1"])
    good = gc.gradient_check_n(p, fixed, X, Y, print_msg=True)
    assert good < 2e-7 and "works perfectly fine" in capsys.readouterr().out
    bad = gc.gradient_check_n(p, planted, X, Y, print_msg=True)
    assert bad > 2e-7 and capsys.readouterr().out.startswith(
        "\033[93mThere is a mistake in the backward propagation! difference = " + str(bad))
    assert isinstance(bad, np.float64)


def test_gradient_check_n_published_values():
    np.random.seed(1)
    X = np.random.randn(4, 3)
    Y = np.array([1, 1, 0])
    p = {k: np.random.randn(*s) for k, s in zip(KEYS, [(5, 4), (5, 1), (3, 5), (3, 1), (1, 3), (1, 1)])}
    cost, cache = gc.forward_propagation_n(X, Y, p)
    assert_printed(cost, "2.407833389834357")
    assert_printed(gc.gradient_check_n(p, gc.backward_propagation_n(X, Y, cache), X, Y),
                   "0.2850931567761623")
    assert_printed(gc.gradient_check_n(p, gc.backward_propagation_n(X, Y, cache, fixed=True), X, Y),
                   "1.1890913024229996e-07")


# ------------------------------------------------------------ opt_utils

def _params_and_grads():
    W1, b1, W2, b2, dW1, db1, dW2, db2 = opt.load_params_and_grads()
    return ({"W1": W1, "b1": b1, "W2": W2, "b2": b2},
            {"dW1": dW1, "db1": db1, "dW2": dW2, "db2": db2})


def test_load_params_and_grads_draws_in_order():
    arrays = opt.load_params_and_grads(seed=2)
    np.random.seed(2)
    for got, shape in zip(arrays, [(2, 3), (2, 1), (3, 3), (3, 1)] * 2):
        np.testing.assert_array_equal(got, np.random.randn(*shape))


def test_momentum_rederived_and_rebound():
    p, g = _params_and_grads()
    v = opt.initialize_velocity(p)
    assert set(v) == {"dW1", "db1", "dW2", "db2"} and all(not x.any() for x in v.values())
    old_p, old_v = {k: x.copy() for k, x in p.items()}, {k: x.copy() for k, x in v.items()}
    for _ in range(2):
        v_before = dict(v)
        out_p, out_v = assert_rebound(opt.update_parameters_with_momentum, p, g, v, 0.9, 0.01)
        assert out_v is v and all(v[k] is not v_before[k] for k in v)
    for k in ("W1", "b1", "W2", "b2"):
        vk = old_v["d" + k]
        pk = old_p[k]
        for _ in range(2):
            vk = 0.9 * vk + 0.1 * g["d" + k]
            pk = pk - 0.01 * vk
        assert_close(v["d" + k], vk, np.float64, 2)
        assert_close(p[k], pk, np.float64, 2)


def test_adam_rederived_with_bias_correction():
    p, g = _params_and_grads()
    v, s = opt.initialize_adam(p)
    ref = {k: x.copy() for k, x in p.items()}
    rv, rs = {k: np.zeros_like(x) for k, x in g.items()}, {k: np.zeros_like(x) for k, x in g.items()}
    for t in (1, 2, 3):
        out = assert_rebound(opt.update_parameters_with_adam, p, g, v, s, t, 0.02, 0.8, 0.888, 1e-2)
        assert out[1] is v and out[2] is s
        for k in ref:
            gk = g["d" + k]
            rv["d" + k] = 0.8 * rv["d" + k] + 0.2 * gk
            rs["d" + k] = 0.888 * rs["d" + k] + 0.112 * gk * gk
            v_hat, s_hat = rv["d" + k] / (1 - 0.8 ** t), rs["d" + k] / (1 - 0.888 ** t)
            ref[k] = ref[k] - 0.02 * v_hat / (np.sqrt(s_hat) + 1e-2)
            assert_close(out[3]["d" + k], v_hat, np.float64, 4)
            assert_close(out[4]["d" + k], s_hat, np.float64, 4)
            assert_close(p[k], ref[k], np.float64, 4, magnitude=np.abs(ref[k]) + 0.02)


def test_optimizer_published_values():
    p, g = _params_and_grads()
    opt.update_parameters_with_gd(p, g, 0.01)
    for got, printed in zip(p["W1"][0], ("1.63535156", "-0.62320365", "-0.53718766")):
        assert_printed(got, printed)
    p, g = _params_and_grads()
    p, v = opt.update_parameters_with_momentum(p, g, opt.initialize_velocity(p), 0.9, 0.01)
    for got, printed in zip(p["W1"][0], ("1.62544598", "-0.61290114", "-0.52907334")):
        assert_printed(got, printed)
    assert_printed(v["dW1"][0, 0], "-0.11006192")
    p, g = _params_and_grads()
    v, s = opt.initialize_adam(p)
    p, v, s, _, _ = opt.update_parameters_with_adam(p, g, v, s, t=2, learning_rate=0.02,
                                                    beta1=0.8, beta2=0.888, epsilon=1e-2)
    for got, printed in zip(p["W1"][0], ("1.63942428", "-0.6268425", "-0.54320974")):
        assert_printed(got, printed)
    assert_printed(v["dW1"][0, 0], "-0.22012384")
    assert_printed(s["dW1"][0, 0], "0.13567261")


@pytest.mark.parametrize("m, size", [(7, 2), (8, 4), (3, 64)])
def test_random_mini_batches_rederived(m, size):
    rng = np.random.RandomState(0)
    X, Y = rng.randn(3, m), rng.rand(1, m) < 0.5
    batches = opt.random_mini_batches(X, Y, size, seed=5)
    after = np.random.rand()
    np.random.seed(5)
    perm = np.random.permutation(m)
    assert np.random.rand() == after
    assert len(batches) == -(-m // size)
    for k, (bx, by) in enumerate(batches):
        cols = perm[k * size:(k + 1) * size]
        np.testing.assert_array_equal(bx, X[:, cols])
        np.testing.assert_array_equal(by, Y[:, cols])
        assert by.dtype == np.bool_ and by.shape == (1, len(cols))


def test_random_mini_batches_published_values():
    np.random.seed(1)
    X, Y = np.random.randn(7, 3), np.random.randn(1, 3) < 0.5
    batches = opt.random_mini_batches(X, Y, 2, seed=0)
    for got, printed in zip(batches[0][0][0], ("-0.52817175", "-0.61175641")):
        assert_printed(got, printed)
    assert batches[0][1].tolist() == [[False, False]] and len(batches) == 2


def test_learning_rate_decay_published_values():
    assert_printed(opt.update_lr(0.5, 2, 1), "0.16666666666666666")
    assert_printed(opt.schedule_lr_decay(0.5, 100, 1, 100), "0.25")
    assert_printed(opt.schedule_lr_decay(0.5, 10, 1, 100), "0.5")
    assert_printed(opt.schedule_lr_decay(0.3, 1000, 0.25, 100), "0.0857142857")
    assert opt.update_lr(1.0, 3, 0.5) == 1.0 / 2.5
    assert opt.schedule_lr_decay(1.0, 1999, 1, 1000) == 0.5


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "adam"])
def test_opt_model_matches_a_plain_loop(optimizer, capsys, monkeypatch):
    monkeypatch.setattr("fastnn.compat._plot.pyplot", lambda needed_by=None: None)
    rng = np.random.RandomState(0)
    X, Y = rng.randn(2, 10), (rng.rand(1, 10) > 0.5).astype(np.int64)
    dims = [2, 4, 3, 1]
    got = opt.model(X, Y, dims, optimizer, learning_rate=0.05, mini_batch_size=4, num_epochs=3,
                    decay=opt.update_lr, decay_rate=0.5)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Cost after epoch 0: ") and out[1] == "learning rate after epoch 0: 0.050000"
    p = init.initialize_parameters_he(dims)
    v = {"d" + k: np.zeros_like(x) for k, x in p.items()}
    s = {"d" + k: np.zeros_like(x) for k, x in p.items()}
    t, lr = 0, 0.05
    for epoch in range(3):
        np.random.seed(11 + epoch)
        perm = np.random.permutation(10)
        for start in range(0, 10, 4):
            cols = perm[start:start + 4]
            g = ref_grads(X[:, cols], Y[:, cols], p)
            t += 1
            for k in p:
                gk = g["d" + k]
                v["d" + k] = (0.9 * v["d" + k] + 0.1 * gk) if optimizer != "gd" else gk
                s["d" + k] = 0.999 * s["d" + k] + 0.001 * gk * gk
                if optimizer == "adam":
                    step = v["d" + k] / (1 - 0.9 ** t) / (np.sqrt(s["d" + k] / (1 - 0.999 ** t)) + 1e-8)
                else:
                    step = v["d" + k]
                p[k] = p[k] - lr * step
        lr = 0.05 / (1 + 0.5 * epoch)
    for k in p:
        assert_close(got[k], p[k], np.float64, 40, magnitude=np.abs(p[k]).max() + 1)


# ------------------------------------- data sets and published model runs

def _no_figures(monkeypatch):
    monkeypatch.setattr("fastnn.compat._plot.pyplot", lambda needed_by=None: None)


def test_init_load_dataset_and_published_first_costs(capsys, monkeypatch):
    from sklearn import datasets
    _no_figures(monkeypatch)
    train_X, train_Y, test_X, test_Y = init.load_dataset()
    np.random.seed(1)
    X, y = datasets.make_circles(n_samples=300, noise=.05)
    np.testing.assert_array_equal(train_X, X.T)
    np.testing.assert_array_equal(train_Y, y.reshape(1, 300))
    assert test_X.shape == (2, 100) and test_Y.shape == (1, 100)
    init.model(train_X, train_Y, num_iterations=1, initialization="zeros")
    init.model(train_X, train_Y, num_iterations=1, initialization="random")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(": ")[0] == "Cost after iteration 0"
    assert_printed(float(lines[0].split(": ")[1]), "0.6931471805599453")
    assert lines[1] == "Cost after iteration 0: inf"
    with pytest.raises(ValueError, match="initialization"):
        init.model(train_X, train_Y, initialization="ones")


def test_opt_load_dataset_and_published_first_costs(capsys, monkeypatch):
    from sklearn import datasets
    _no_figures(monkeypatch)
    train_X, train_Y = opt.load_dataset()
    np.random.seed(3)
    X, y = datasets.make_moons(n_samples=300, noise=.2)
    np.testing.assert_array_equal(train_X, X.T)
    np.testing.assert_array_equal(train_Y, y.reshape(1, 300))
    opt.model(train_X, train_Y, [2, 5, 2, 1], "gd", num_epochs=1)
    opt.model(train_X, train_Y, [2, 5, 2, 1], "adam", num_epochs=1)
    assert capsys.readouterr().out == "Cost after epoch 0: 0.702405\nCost after epoch 0: 0.702166\n"


def test_cat_dataset_is_flattened_and_scaled(tmp_path):
    h5py = pytest.importorskip("h5py")
    from test_compat_course1 import _write_cat_files
    raw = _write_cat_files(tmp_path, h5py)
    for loader in (init.load_cat_dataset, reg.load_dataset):
        train_x, train_y, test_x, test_y, classes = loader(tmp_path)
        assert train_x.shape == (12288, 4) and test_x.shape == (12288, 3)
        np.testing.assert_array_equal(train_x[:, 2], raw["train_set_x"][2].ravel() / 255)
        assert train_y.shape == (1, 4) and list(classes) == [b"non-cat", b"cat"]


def test_figures_skip_quietly_without_matplotlib(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    X, Y = reg.load_planar_dataset(0.1, 0)
    reg.model(X, Y, num_iterations=1)
    assert capsys.readouterr().out.startswith("Cost after iteration 0")
    with pytest.raises(ImportError, match="pip install matplotlib"):
        reg.plot_decision_boundary(lambda x: x[:, 0] > 0, X, Y)


def test_course2_plot_decision_boundary_shows(monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shows = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shows.append(1))
    X, Y = np.array([[0.0, 1.0, 0.5], [0.0, 0.5, 1.0]]), np.array([[0, 1, 1]])  # a 3 x 2.5 grid
    p = reg.initialize_parameters([2, 4, 3, 1])
    for module in (init, reg, opt):
        module.plot_decision_boundary(lambda x: module.predict_dec(p, x.T), X, Y)
    plt.close("all")
    assert shows == [1, 1, 1]
