"""Bad input is rejected at the public boundary with the right error class and a
message naming the argument, and a rejected call modifies nothing."""

import importlib

import numpy as np
import pytest

import fastnn
from fastnn_suite import GRADCHECK_TOL, make_problem, skip_reason
from fastnn.backends import REGISTRY, _interface

VE, TE = fastnn.FastnnValueError, fastnn.FastnnTypeError


def test_error_classes_subclass_builtins():
    assert issubclass(VE, ValueError) and issubclass(TE, TypeError)


def _base(output="sigmoid", dtype=np.float64):
    n_out = 3 if output == "softmax" else 1
    return make_problem([3, 4, n_out], 5, output, dtype, seed=31)


def _set(params, key, value):
    p = dict(params)
    p[key] = value
    return p


def _drop(params, key):
    return {k: v for k, v in params.items() if k != key}


def _with(arr, idx, value):
    out = np.array(arr, dtype=np.result_type(arr, type(value)))
    out[idx] = value
    return out


# (id, exception, name that must appear in the message, builder, apis)
# builder(params, X, Y) -> (params, X, Y, kwargs); the base problem is sigmoid with 1 output unit.
ALL = ("gradients", "gradcheck", "forward")
GRAD = ("gradients", "gradcheck")
CASES = [
    # shapes
    ("Y-too-many-columns", VE, "Y", lambda p, X, Y: (p, X, np.zeros((1, 6)), {}), GRAD),
    ("Y-too-few-columns", VE, "Y", lambda p, X, Y: (p, X, Y[:, :4], {}), GRAD),
    ("Y-wrong-rows", VE, "Y", lambda p, X, Y: (p, X, np.zeros((2, 5)), {}), GRAD),
    ("Y-3d", VE, "Y", lambda p, X, Y: (p, X, Y[None], {}), GRAD),
    ("X-wrong-n0", VE, "X", lambda p, X, Y: (p, X[:2], Y, {}), ALL),
    ("X-transposed", VE, "X", lambda p, X, Y: (p, np.ascontiguousarray(X.T), Y, {}), ALL),
    ("X-1d", VE, "X", lambda p, X, Y: (p, X[:, 0], Y, {}), ALL),
    ("X-3d", VE, "X", lambda p, X, Y: (p, X[None], Y, {}), ALL),
    ("m-zero", VE, "X", lambda p, X, Y: (p, X[:, :0], Y[:, :0], {}), ALL),
    # non-finite values
    ("X-nan", VE, "X", lambda p, X, Y: (p, _with(X, (1, 2), np.nan), Y, {}), ALL),
    ("X-inf", VE, "X", lambda p, X, Y: (p, _with(X, (0, 0), -np.inf), Y, {}), ALL),
    ("Y-nan", VE, "Y", lambda p, X, Y: (p, X, _with(Y, (0, 1), np.nan), {}), GRAD),
    ("Y-inf-identity", VE, "Y", lambda p, X, Y: (p, X, _with(Y, (0, 1), np.inf), {"output": "identity"}), GRAD),
    ("W-nan", VE, "params", lambda p, X, Y: (_set(p, "W2", _with(p["W2"], (0, 0), np.nan)), X, Y, {}), ALL),
    ("b-inf", VE, "params", lambda p, X, Y: (_set(p, "b1", _with(p["b1"], (2, 0), np.inf)), X, Y, {}), ALL),
    ("X-too-large-for-float32", VE, "X",
     lambda p, X, Y: ({k: v.astype(np.float32) for k, v in p.items()}, _with(X, (0, 0), 1e300), Y, {}),
     ("gradients", "forward")),
    # dtypes
    ("X-complex", TE, "X", lambda p, X, Y: (p, X.astype(np.complex128), Y, {}), ALL),
    ("X-object", TE, "X", lambda p, X, Y: (p, X.astype(object), Y, {}), ALL),
    ("X-string", TE, "X", lambda p, X, Y: (p, X.astype(str), Y, {}), ALL),
    ("X-ragged", TE, "X", lambda p, X, Y: (p, [[1.0, 2.0], [3.0]], Y, {}), ("gradcheck",)),
    ("Y-complex", TE, "Y", lambda p, X, Y: (p, X, Y.astype(np.complex64), {}), GRAD),
    ("Y-string", TE, "Y", lambda p, X, Y: (p, X, Y.astype(str), {}), GRAD),
    ("Y-object", TE, "Y", lambda p, X, Y: (p, X, Y.astype(object), {}), GRAD),
    ("W-complex", TE, "params", lambda p, X, Y: (_set(p, "W1", p["W1"].astype(np.complex128)), X, Y, {}), ALL),
    ("W-object", TE, "params", lambda p, X, Y: (_set(p, "W1", p["W1"].astype(object)), X, Y, {}), ALL),
    ("W-string", TE, "params", lambda p, X, Y: (_set(p, "W1", p["W1"].astype(str)), X, Y, {}), ALL),
    ("params-int", TE, "params",
     lambda p, X, Y: ({k: np.ones(v.shape, dtype=np.int64) for k, v in p.items()}, X, Y, {}), ALL),
    ("params-bool", TE, "params", lambda p, X, Y: (_set(p, "b2", p["b2"] > 0), X, Y, {}), ALL),
    ("params-mixed-dtype", TE, "params", lambda p, X, Y: (_set(p, "b1", p["b1"].astype(np.float32)), X, Y, {}), ALL),
    ("params-mixed-dtype-W", TE, "params", lambda p, X, Y: (_set(p, "W2", p["W2"].astype(np.float32)), X, Y, {}), ALL),
    # labels
    ("bce-label-half", VE, "Y", lambda p, X, Y: (p, X, _with(Y, (0, 0), 0.5), {}), GRAD),
    ("bce-label-2", VE, "Y", lambda p, X, Y: (p, X, _with(Y.astype(int), (0, 3), 2), {}), GRAD),
    ("bce-label-minus-1", VE, "Y", lambda p, X, Y: (p, X, _with(Y, (0, 3), -1.0), {}), GRAD),
    # names and options
    ("hidden-unknown", VE, "hidden", lambda p, X, Y: (p, X, Y, {"hidden": "softplus"}), ALL),
    ("hidden-none", VE, "hidden", lambda p, X, Y: (p, X, Y, {"hidden": None}), ALL),
    ("hidden-case", VE, "hidden", lambda p, X, Y: (p, X, Y, {"hidden": "ReLU"}), ALL),
    ("output-unknown", VE, "output", lambda p, X, Y: (p, X, Y, {"output": "tanh"}), ALL),
    ("output-list", VE, "output", lambda p, X, Y: (p, X, Y, {"output": ["sigmoid"]}), ALL),
    ("scaling-unknown", VE, "scaling", lambda p, X, Y: (p, X, Y, {"scaling": "mean"}), GRAD),
    ("output_grad-unknown", VE, "output_grad", lambda p, X, Y: (p, X, Y, {"output_grad": "exact"}), GRAD),
    ("backend-unknown", VE, "backend", lambda p, X, Y: (p, X, Y, {"backend": "cuda-xyz"}), ALL),
    ("backend-not-str", VE, "backend", lambda p, X, Y: (p, X, Y, {"backend": 3}), ALL),
    ("l2-negative", VE, "l2", lambda p, X, Y: (p, X, Y, {"l2": -0.1}), GRAD),
    ("l2-nan", VE, "l2", lambda p, X, Y: (p, X, Y, {"l2": float("nan")}), GRAD),
    ("l2-inf", VE, "l2", lambda p, X, Y: (p, X, Y, {"l2": float("inf")}), GRAD),
    ("l2-string", TE, "l2", lambda p, X, Y: (p, X, Y, {"l2": "0.1"}), GRAD),
    ("l2-bool", TE, "l2", lambda p, X, Y: (p, X, Y, {"l2": True}), GRAD),
    ("l2-array", TE, "l2", lambda p, X, Y: (p, X, Y, {"l2": np.array([0.1])}), GRAD),
    # parameter structure
    ("b-1d", VE, "params", lambda p, X, Y: (_set(p, "b1", p["b1"].ravel()), X, Y, {}), ALL),
    ("b-row", VE, "params", lambda p, X, Y: (_set(p, "b1", p["b1"].T.copy()), X, Y, {}), ALL),
    ("b-wrong-length", VE, "params", lambda p, X, Y: (_set(p, "b2", np.zeros((2, 1))), X, Y, {}), ALL),
    ("W-chain-mismatch", VE, "params", lambda p, X, Y: (_set(p, "W2", np.ones((1, 3))), X, Y, {}), ALL),
    ("W-1d", VE, "params", lambda p, X, Y: (_set(p, "W2", p["W2"].ravel()), X, Y, {}), ALL),
    ("W-empty", VE, "params",
     lambda p, X, Y: ({"W1": np.zeros((0, 3)), "b1": np.zeros((0, 1))}, X, Y, {}), ALL),
    ("missing-b", VE, "params", lambda p, X, Y: (_drop(p, "b2"), X, Y, {}), ALL),
    ("missing-W", VE, "params", lambda p, X, Y: (_drop(p, "W1"), X, Y, {}), ALL),
    ("extra-key", VE, "params", lambda p, X, Y: (_set(p, "W3", np.ones((1, 1))), X, Y, {}), ALL),
    ("stray-key", VE, "params", lambda p, X, Y: (_set(p, "lr", np.ones(1)), X, Y, {}), ALL),
    ("empty-params", VE, "params", lambda p, X, Y: ({}, X, Y, {}), ALL),
    ("params-not-dict", TE, "params", lambda p, X, Y: (list(p.values()), X, Y, {}), ALL),
    # softmax
    ("softmax-one-unit", VE, "output", lambda p, X, Y: (p, X, np.zeros(5, dtype=int), {"output": "softmax"}), GRAD),
]

SOFTMAX_CASES = [
    ("class-label-too-large", VE, "Y", lambda p, X, Y: (p, X, np.array([0, 1, 3, 2, 0]), {})),
    ("class-label-negative", VE, "Y", lambda p, X, Y: (p, X, np.array([0, 1, -1, 2, 0]), {})),
    ("class-label-non-integer", VE, "Y", lambda p, X, Y: (p, X, np.array([0, 1, 1.5, 2, 0]), {})),
    ("class-label-row-non-integer", VE, "Y", lambda p, X, Y: (p, X, np.array([[0, 1, 0.5, 2, 0]]), {})),
    ("class-labels-too-few", VE, "Y", lambda p, X, Y: (p, X, np.array([0, 1, 2, 0]), {})),
    ("class-labels-too-many", VE, "Y", lambda p, X, Y: (p, X, np.array([0, 1, 2, 0, 1, 1]), {})),
    ("one-hot-two-ones", VE, "Y", lambda p, X, Y: (p, X, _with(Y, (slice(None), 0), 1.0), {})),
    ("one-hot-no-one", VE, "Y", lambda p, X, Y: (p, X, _with(Y, (slice(None), 0), 0.0), {})),
    ("one-hot-not-binary", VE, "Y", lambda p, X, Y: (p, X, Y * 0.5, {})),
    ("one-hot-wrong-shape", VE, "Y", lambda p, X, Y: (p, X, np.eye(3)[:, [0, 1, 2, 0]], {})),
    ("class-labels-nan", VE, "Y", lambda p, X, Y: (p, X, np.array([0, 1, np.nan, 2, 0]), {})),
    ("class-labels-string", TE, "Y", lambda p, X, Y: (p, X, np.array(["0", "1", "2", "0", "1"]), {})),
]


def _snapshot(obj):
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, list):
        return [_snapshot(v) for v in obj]
    return obj


def _same(a, b):
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _call(api, params, X, Y, kw):
    if api == "gradients":
        return fastnn.gradients(params, X, Y, **kw)
    if api == "gradcheck":
        return fastnn.gradcheck(params, X, Y, **kw)
    kw = {k: v for k, v in kw.items() if k in ("hidden", "output", "backend")}
    return fastnn.forward(params, X, **kw)


def _check_rejected(exc, name, api, params, X, Y, kw):
    saved = _snapshot((params, X, Y))
    with pytest.raises(exc) as info:
        _call(api, params, X, Y, kw)
    assert type(info.value) is exc, f"expected {exc.__name__}, got {type(info.value).__name__}: {info.value}"
    assert name in str(info.value), f"message does not name {name!r}: {info.value}"
    assert _same(saved, (params, X, Y)), "a rejected call modified its inputs"


@pytest.mark.parametrize("case_id, exc, name, build, api", [
    pytest.param(c[0], c[1], c[2], c[3], api, id=f"{c[0]}-{api}") for c in CASES for api in c[4]])
def test_bad_input_is_rejected(case_id, exc, name, build, api):
    _check_rejected(exc, name, api, *build(*_base()))


@pytest.mark.parametrize("api", GRAD)
@pytest.mark.parametrize("case_id, exc, name, build", SOFTMAX_CASES, ids=[c[0] for c in SOFTMAX_CASES])
def test_bad_class_labels_are_rejected(api, case_id, exc, name, build):
    params, X, Y, kw = build(*_base("softmax"))
    _check_rejected(exc, name, api, params, X, Y, dict(kw, output="softmax"))


def test_base_problems_are_valid():
    """The cases above differ from a valid call only in what they break."""
    for output in ("sigmoid", "softmax", "identity"):
        params, X, Y = _base(output)
        fastnn.gradients(params, X, Y, output=output)
        assert fastnn.gradcheck(params, X, Y, output=output) < GRADCHECK_TOL
        fastnn.forward(params, X, output=output)
    params, X, Y = _base()
    fastnn.gradients({k: v.astype(np.float32) for k, v in params.items()}, X, Y)


@pytest.mark.parametrize("api", ["gradients", "forward"])
def test_ragged_X_is_rejected_before_use(api):
    params, X, Y = _base()
    _check_rejected(TE, "X", api, params, [[1.0, 2.0], [3.0]], Y, {})


def test_forward_rejects_softmax_with_one_unit():
    params, X, _ = _base()
    with pytest.raises(VE, match="output"):
        fastnn.forward(params, X, output="softmax")


# ------------------------------------------------------------ backward, cost


def test_backward_rejections():
    params, X, Y = _base()
    _, cache = fastnn.forward(params, X, hidden="tanh")
    saved = _snapshot((params, X, Y))

    def rejected(exc, name, *args, **kw):
        with pytest.raises(exc) as info:
            fastnn.backward(*args, **kw)
        assert type(info.value) is exc and name in str(info.value), str(info.value)

    rejected(TE, "cache", params, (cache.As, cache.ZL), Y)
    rejected(VE, "hidden", params, cache, Y, hidden="relu")
    rejected(VE, "output", params, cache, Y, output="identity")
    rejected(VE, "backend", params, cache, Y, backend="nope" if "nope" not in REGISTRY else "x")
    rejected(VE, "scaling", params, cache, Y, scaling="avg")
    rejected(VE, "output_grad", params, cache, Y, output_grad="course")
    rejected(VE, "l2", params, cache, Y, l2=-1.0)
    rejected(VE, "Y", params, cache, Y[:, :3])
    rejected(VE, "Y", params, cache, _with(Y, (0, 0), 0.25))
    other, _, _ = make_problem([2, 4, 1], 5, "sigmoid", seed=32)
    rejected(VE, "cache", other, cache, Y)
    deeper, _, _ = make_problem([3, 4, 4, 1], 5, "sigmoid", seed=32)
    rejected(VE, "cache", deeper, cache, Y)
    rejected(VE, "cache", {k: v.astype(np.float32) for k, v in params.items()}, cache, Y)
    rejected(TE, "params", _set(params, "W1", params["W1"].astype(int)), cache, Y)
    assert _same(saved, (params, X, Y))
    fastnn.backward(params, cache, Y)  # the cache is still good


def test_backward_softmax_one_unit_rejected():
    params, X, _ = _base()
    _, cache = fastnn.forward(params, X, output="identity")
    cache.output = "softmax"  # as if forward had accepted it
    with pytest.raises(VE, match="output"):
        fastnn.backward(params, cache, np.zeros(5, dtype=int))


def test_cost_rejections():
    params, X, Y = _base()
    AL, cache = fastnn.forward(params, X)
    saved = _snapshot((params, X, Y, AL))

    def rejected(exc, name, *args, **kw):
        with pytest.raises(exc) as info:
            fastnn.cost(*args, **kw)
        assert type(info.value) is exc and name in str(info.value), str(info.value)

    rejected(VE, "Y", AL, Y[:, :4])
    rejected(VE, "Y", AL, _with(Y, (0, 0), 2.0))
    rejected(VE, "AL", AL[:, :0], Y[:, :0])
    rejected(VE, "AL", AL[0], Y)
    rejected(VE, "AL", _with(AL, (0, 0), np.nan), Y)
    rejected(TE, "AL", AL.astype(complex), Y)
    rejected(VE, "output", AL, Y, output="relu")
    rejected(VE, "output", AL, np.zeros(5, dtype=int), output="softmax")
    rejected(VE, "l2", AL, Y, l2=-2.0)
    rejected(VE, "params", AL, Y, l2=0.5)  # l2 > 0 needs params
    rejected(TE, "params", AL, Y, l2=0.5, params=_set(params, "b1", params["b1"].astype(np.float32)))
    rejected(VE, "logits", AL, Y, logits=np.zeros((1, 4)))
    rejected(VE, "logits", AL, Y, logits=_with(np.asarray(cache.ZL), (0, 0), np.inf))
    assert _same(saved, (params, X, Y, AL))


# ------------------------------------------------------------ init, backends


@pytest.mark.parametrize("dims", [[3], [], [3, 0], [3, -2, 1], [3, 2.5, 1]])
def test_init_params_rejects_bad_layer_dims(dims):
    with pytest.raises(VE, match="layer_dims"):
        fastnn.init_params(dims)


@pytest.mark.parametrize("dims", [None, 5, ["a", 2], [[3], 2]])
def test_init_params_rejects_non_integer_layer_dims(dims):
    with pytest.raises(TE, match="layer_dims"):
        fastnn.init_params(dims)


def test_init_params_rejects_bad_init_and_dtype():
    with pytest.raises(VE, match="init"):
        fastnn.init_params([3, 2], init="glorot")
    with pytest.raises(VE, match="init"):
        fastnn.init_params([3, 2], init=None)
    for dt in (np.int32, np.complex128, "float128" if hasattr(np, "float128") else np.longdouble, object, "nope"):
        with pytest.raises(TE, match="dtype"):
            fastnn.init_params([3, 2], dtype=dt)


def test_backend_names_are_checked():
    for bad in ("nope", "", 1, "NumPy"):  # (None means "the default")
        with pytest.raises(VE, match="backend"):
            fastnn.get_backend(bad)
        with pytest.raises(VE, match="backend"):
            fastnn.set_backend(bad)
    fastnn.get_backend("auto")


def test_unsupported_dtype_for_backend_is_a_type_error(backend_name):
    bk = fastnn.get_backend(backend_name)
    params, X, Y = _base()
    for dt in (np.float16, np.float32, np.float64):
        p = {k: v.astype(dt) for k, v in params.items()}
        if dt in bk.DTYPES:
            fastnn.gradients(p, X, Y, backend=backend_name)
        else:
            with pytest.raises(TE, match="params"):
                fastnn.gradients(p, X, Y, backend=backend_name)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_backend_module_implements_the_interface(name):
    reason = skip_reason(name)
    if reason:
        pytest.skip(reason)
    module = importlib.import_module(REGISTRY[name])
    missing = [k for k in _interface.KERNELS if not callable(getattr(module, k, None))]
    assert not missing, f"{REGISTRY[name]} lacks kernels {missing}"
    missing = [c for c in _interface.CONSTANTS if not hasattr(module, c)]
    assert not missing, f"{REGISTRY[name]} lacks constants {missing}"
    assert module.NAME == name, "NAME must be the registry key (ForwardCache.backend is looked up by it)"
    # __all__ lists exactly the interface: every kernel, the constants, and optional kernels it has.
    optional = [k for k in _interface.OPTIONAL_KERNELS if callable(getattr(module, k, None))]
    expected = set(_interface.KERNELS) | set(_interface.CONSTANTS) | set(optional)
    assert set(getattr(module, "__all__", ())) == expected, f"{REGISTRY[name]}.__all__"
    assert len(module.__all__) == len(expected), f"{REGISTRY[name]}.__all__ repeats a name"
    assert len(module.DTYPES) and all(np.dtype(t).kind == "f" for t in module.DTYPES)
    assert fastnn.get_backend(name) is module


@pytest.mark.parametrize("eps", [0.0, float("nan"), "a"])
def test_gradcheck_validates_eps(eps):
    params, X, Y = _base()
    with pytest.raises((VE, TE), match="eps"):
        fastnn.gradcheck(params, X, Y, eps=eps)


@pytest.mark.parametrize("seed", [-1, "x", 1.5])
def test_init_params_validates_seed(seed):
    with pytest.raises((VE, TE), match="seed"):
        fastnn.init_params([3, 2], seed=seed)
