"""``Model.fit(batch_size=None)`` with plain SGD: many epochs per call of an
``engine.FullBatchLoop`` (the dual first layer where it pays), with callbacks,
divergence checks and checkpoints at epoch boundaries.

The shape ``DIMS`` with ``M`` examples is one where the dual form pays (n0 much
larger than m) and that the Numba backends' compiled loop declines (above its
``LOOP_MAX_MULTIPLY_ADDS``), so the dual runs on every backend.  The reference
is the plain per-epoch engine path: NumPy's ``sgd_steps`` one primal step per
epoch.
"""

import numpy as np
import pytest

import fastnn
import fastnn.model as fm
from fastnn import engine
from fastnn.backends import get_backend
from fastnn.errors import DivergenceError

from conftest import assert_close, backend_params, make_problem

HOST = backend_params(["numpy", "numba", "numba-parallel"])
DIMS, M, EPOCHS = [2000, 8, 4, 1], 70, 24
KEYS = [f"{p}{l}" for l in range(1, len(DIMS)) for p in "Wb"]


class _Stop(Exception):
    pass


def _model(params, dtype, hidden="tanh", output="sigmoid"):
    model = fastnn.Model(DIMS, hidden, output, dtype=dtype, seed=0)
    model.params = {k: v.copy() for k, v in params.items()}
    return model


def _per_epoch(params, X, Y, hidden, output, lr, epochs, l2=0.0):
    """The reference: NumPy's primal ``sgd_steps``, one epoch per call."""
    bk = get_backend("numpy")
    Ws = [params[f"W{l}"].copy() for l in range(1, len(DIMS))]
    bs = [params[f"b{l}"].copy() for l in range(1, len(DIMS))]
    costs = []
    for _ in range(epochs):
        c, steps = engine.sgd_steps(bk, Ws, bs, X, Y, hidden, output, "deferred", l2, lr, 1,
                                    dual=False)
        assert steps == 1
        costs.append(c[0])
    return np.array(costs), dict(zip(KEYS, [a for pair in zip(Ws, bs) for a in pair]))


def _assert_tracks(costs, params, ref_costs, ref_params, dtype, epochs):
    """Within the table's tolerance for ``epochs`` steps of reductions over n0 (as
    tests/test_dual_loop.py, which explains the magnitudes)."""
    n_terms = DIMS[0] * epochs
    assert_close(np.asarray(costs), ref_costs, dtype, n_terms,
                 magnitude=np.abs(ref_costs) + np.max(ref_costs), err_msg="costs")
    for k in KEYS:
        assert params[k].dtype == dtype, k
        want = ref_params[k]
        assert_close(params[k], want, dtype, n_terms, magnitude=np.abs(want) + np.max(np.abs(want)),
                     err_msg=k)


@pytest.fixture
def dual_calls(monkeypatch):
    """Counts the epochs the dual form ran (FullBatchLoop._dual_steps)."""
    calls = []
    real = engine.FullBatchLoop._dual_steps

    def spy(self, lr, iterations, costs):
        calls.append(iterations)
        return real(self, lr, iterations, costs)
    monkeypatch.setattr(engine.FullBatchLoop, "_dual_steps", spy)
    return calls


@pytest.fixture
def fast_chunks(monkeypatch):
    """Every chunk counts as fast: chunks double 1, 2, 4, 8, ... (epochs 1, 2-3, 4-7, 8-15)."""
    monkeypatch.setattr(fm, "LOOP_CHUNK_SECONDS", float("inf"))


@pytest.mark.parametrize("name", HOST)
@pytest.mark.parametrize("hidden, output", [("tanh", "sigmoid"), ("relu", "identity")])
def test_fit_equals_the_per_epoch_path(name, dtype, hidden, output, dual_calls, fast_chunks):
    """The dual form, in chunks of several epochs, is the per-epoch primal path to
    rounding; the dual ran every epoch; the dtype is kept."""
    params, X, Y = make_problem(DIMS, M, output, dtype, seed=3)
    model = _model(params, dtype, hidden, output)
    h = model.fit(X, Y, epochs=EPOCHS, lr=0.05, backend=name, progress=False)
    ref_costs, ref_params = _per_epoch(params, X, Y, hidden, output, 0.05, EPOCHS)
    assert sum(dual_calls) == EPOCHS and len(dual_calls) < EPOCHS
    assert len(h.cost) == len(h.time) == EPOCHS
    _assert_tracks(h.cost, model.params, ref_costs, ref_params, dtype, EPOCHS)


@pytest.mark.parametrize("name", HOST)
@pytest.mark.parametrize("options", [dict(l2=0.3), dict(epochs=3)], ids=["l2", "few-epochs"])
def test_no_dual_where_it_does_not_apply(name, dtype, options, dual_calls):
    """With an L2 term (whose decay of W1 the dual form does not carry), or too few
    epochs to pay for X.T @ X, the primal loop runs: same run, to rounding."""
    options = {"epochs": EPOCHS, "l2": 0.0, **options}
    params, X, Y = make_problem(DIMS, M, "sigmoid", dtype, seed=4)
    model = _model(params, dtype)
    h = model.fit(X, Y, lr=0.05, backend=name, progress=False, **options)
    ref_costs, ref_params = _per_epoch(params, X, Y, "tanh", "sigmoid", 0.05, options["epochs"],
                                       options["l2"])
    assert dual_calls == []
    _assert_tracks(h.cost, model.params, ref_costs, ref_params, dtype, options["epochs"])


@pytest.mark.parametrize("name", HOST)
def test_callback_every_epoch_sees_the_params(name, dtype, dual_calls):
    """The callback runs after every epoch, in order, with the history so far and
    ``model.params`` (W1 formed from the dual form) as the per-epoch path has them."""
    params, X, Y = make_problem(DIMS, M, "sigmoid", dtype, seed=5)
    seen = []

    def callback(epoch, model, history):
        seen.append((epoch, len(history.cost), {k: v.copy() for k, v in model.params.items()}))
    model = _model(params, dtype)
    model.fit(X, Y, epochs=EPOCHS, lr=0.05, backend=name, progress=False, callback=callback)
    assert [(e, n) for e, n, _ in seen] == [(e, e) for e in range(1, EPOCHS + 1)]
    assert sum(dual_calls) == EPOCHS
    for epoch in (1, 7, EPOCHS):
        ref_costs, ref_params = _per_epoch(params, X, Y, "tanh", "sigmoid", 0.05, epoch)
        _assert_tracks(ref_costs, seen[epoch - 1][2], ref_costs, ref_params, dtype, epoch)
    for k in KEYS:   # the last callback saw the final params
        np.testing.assert_array_equal(seen[-1][2][k], model.params[k])


def test_progress_bar_counts_every_epoch(dual_calls, fast_chunks, monkeypatch):
    """The bar advances by each chunk's epochs, to the total."""
    updates = []

    class Bar:
        def update(self, n):
            updates.append(n)

        def set_postfix(self, **kw):
            pass

        def close(self):
            pass
    monkeypatch.setattr(fm, "_progress", lambda total, enabled, initial=0: Bar())
    params, X, Y = make_problem(DIMS, M, "sigmoid", np.float64, seed=5)
    _model(params, np.float64).fit(X, Y, epochs=EPOCHS, lr=0.05, backend="numpy")
    assert updates == [1, 2, 4, 8, 9] and sum(dual_calls) == EPOCHS


@pytest.mark.parametrize("name", HOST)
@pytest.mark.parametrize("mode", ["raise", "skip"])
def test_divergence_inside_a_chunk_rolls_back(name, dtype, mode, dual_calls, fast_chunks):
    """A linear net whose lr is too large: the cost overflows inside the chunk of
    epochs 4-7.  The chunk is redone epoch by epoch from its start and the error
    names the epoch; params are bit for bit those the same run has at the epoch
    before (seen by a callback), finite.  (A full batch cannot skip a non-finite
    cost: "skip" raises at the same place.)"""
    params, X, Y = make_problem(DIMS, M, "identity", dtype, seed=1)
    kw = dict(epochs=60, lr=0.1, backend=name, progress=False)
    model = _model(params, dtype, "identity", "identity")
    with pytest.raises(DivergenceError) as info:
        model.fit(X, Y, on_divergence=mode, **kw)
    epoch = info.value.epoch
    assert 4 < epoch <= 7 and info.value.step == 1 and dual_calls[:3] == [1, 2, 4]
    if mode == "skip":
        assert "Skipping cannot help" in str(info.value)

    def stop(e, m, h):
        if e == epoch - 1:
            raise _Stop
    ref = _model(params, dtype, "identity", "identity")
    with pytest.raises(_Stop):
        ref.fit(X, Y, callback=stop, **kw)
    for k in KEYS:
        assert np.isfinite(model.params[k]).all()
        np.testing.assert_array_equal(model.params[k], ref.params[k], err_msg=k)


@pytest.mark.parametrize("name", HOST)
@pytest.mark.parametrize("mode", ["raise", "skip"])
def test_update_that_overflows_is_undone(name, dtype, mode, dual_calls):
    """An lr near the dtype's largest value (inputs scaled by 10): the first update
    overflows, though the cost and gradients are finite.  "raise": nothing is
    applied, the error names epoch 1.  "skip": epoch 1's update is undone and
    lr halved; the smaller lrs take a few epochs more to end in a cost that
    skipping cannot help, which raises with finite params."""
    params, X, Y = make_problem(DIMS, M, "identity", dtype, seed=2)
    X = (X * 10).astype(dtype)
    huge = float(np.finfo(dtype).max) / 10
    model = _model(params, dtype, "relu", "identity")
    with pytest.raises(DivergenceError) as info:
        model.fit(X, Y, epochs=EPOCHS, lr=huge, backend=name, progress=False, on_divergence=mode)
    assert dual_calls[0] == 1
    if mode == "raise":
        assert (info.value.epoch, info.value.step, info.value.reason) == (1, 1, "update")
        for k in KEYS:
            np.testing.assert_array_equal(model.params[k], params[k], err_msg=k)
        return
    assert info.value.epoch > 1 and "Skipping cannot help" in str(info.value)
    assert all(np.isfinite(v).all() for v in model.params.values())
    assert info.value.lr < huge / 2            # the updates at lr and lr / 2 both overflowed


@pytest.mark.parametrize("name", HOST)
def test_loop_snapshot_restore_and_finite(name, dtype):
    """FullBatchLoop: an overflowing update makes ``finite()`` False (W1 formed and
    checked); ``restore`` puts back the state of ``snapshot`` exactly; the run
    from there is the run from the snapshot."""
    params, X, Y = make_problem(DIMS, M, "identity", dtype, seed=2)
    X = (X * 10).astype(dtype)
    bk = get_backend(name)
    P = [bk.to_device(params[k].copy()) for k in KEYS]
    loop = engine.FullBatchLoop(bk, P[0::2], P[1::2], X, Y, "relu", "identity", "deferred", 0.0,
                                dual=True)
    loop.run(1e-4, 3)
    snap = loop.snapshot()
    before = [np.array(bk.to_host(p)) for p in loop.params()]
    with np.errstate(all="ignore"):
        loop.run(float(np.finfo(dtype).max) / 10, 1)
    assert not loop.finite()
    loop.restore(snap)
    assert loop.finite()
    for got, want in zip(loop.params(), before):
        np.testing.assert_array_equal(bk.to_host(got), want)
    c1, _ = loop.run(1e-4, 4)
    loop.restore(snap)
    c2, _ = loop.run(1e-4, 4)
    np.testing.assert_array_equal(c1, c2)


@pytest.mark.parametrize("name", HOST)
def test_loop_result_does_not_depend_on_chunks(name, dtype):
    """Epochs cut into calls any way give the same bits, reading the params between
    calls or not; ``engine.sgd_steps(dual=True)`` is the one-call run."""
    params, X, Y = make_problem(DIMS, M, "sigmoid", dtype, seed=6)
    bk = get_backend(name)
    runs = []
    for cuts in ([20], [1, 2, 4, 8, 5], [3] * 6 + [2]):
        P = [bk.to_device(params[k].copy()) for k in KEYS]
        loop = engine.FullBatchLoop(bk, P[0::2], P[1::2], X, Y, "tanh", "sigmoid", "deferred", 0.0,
                                    dual=True)
        costs = []
        for n in cuts:
            c, steps = loop.run(0.05, n)
            assert steps == n
            costs.extend(c)
            if len(cuts) > 5:
                loop.params()
        runs.append((costs, [np.array(bk.to_host(p)) for p in loop.params()]))
    P = [bk.to_device(params[k].copy()) for k in KEYS]
    c, _ = engine.sgd_steps(bk, P[0::2], P[1::2], X, Y, "tanh", "sigmoid", "deferred", 0.0, 0.05, 20,
                            dual=True)
    runs.append((list(c), [np.array(bk.to_host(p)) for p in P]))
    for costs, arrays in runs[1:]:
        np.testing.assert_array_equal(costs, runs[0][0])
        for got, want in zip(arrays, runs[0][1]):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", HOST)
def test_checkpoints_at_epoch_boundaries_and_resume(name, dtype, dual_calls, fast_chunks,
                                                    tmp_path, monkeypatch):
    """Chunks end at every checkpoint epoch (15, 30 and the last, 40), where the dual
    form restarts (and the last 10 epochs, too few for it to pay, run primal); a run
    stopped at epoch 20 and resumed from its checkpoint (epoch 15) with the same
    checkpoint_every is the uninterrupted run bit for bit."""
    params, X, Y = make_problem(DIMS, M, "sigmoid", dtype, seed=7)
    written = []
    real = fm._Trainer.write_checkpoint
    monkeypatch.setattr(fm._Trainer, "write_checkpoint",
                        lambda self: written.append(self.epoch) or real(self))
    kw = dict(epochs=40, lr=0.05, backend=name, progress=False, checkpoint_every=15)
    whole = _model(params, dtype)
    h_whole = whole.fit(X, Y, checkpoint=tmp_path / "whole", **kw)
    assert written == [15, 30, 40]
    assert dual_calls == [1, 2, 4, 8, 15]

    def stop(epoch, model, history):
        if epoch == 20:
            raise _Stop
    stopped = _model(params, dtype)
    with pytest.raises(_Stop):
        stopped.fit(X, Y, checkpoint=tmp_path / "run", callback=stop, **kw)
    resumed = fastnn.Model.from_checkpoint(tmp_path / "run.npz")
    h = resumed.fit(X, Y, checkpoint=tmp_path / "run", resume=tmp_path / "run.npz", **kw)
    np.testing.assert_array_equal(h.cost, h_whole.cost)
    for k in KEYS:
        np.testing.assert_array_equal(resumed.params[k], whole.params[k], err_msg=k)


def test_params_assigned_between_fits(dual_calls):
    """A second fit starts from params assigned after the first: bit for bit a fresh
    model's fit from them.  ``FullBatchLoop.rebase`` with new arrays does the same
    for a loop."""
    dtype = np.float32
    params, X, Y = make_problem(DIMS, M, "sigmoid", dtype, seed=8)
    other, _, _ = make_problem(DIMS, M, "sigmoid", dtype, seed=9)
    kw = dict(epochs=EPOCHS, lr=0.05, backend="numpy", progress=False)
    model = _model(params, dtype)
    model.fit(X, Y, **kw)
    model.params = {k: v.copy() for k, v in other.items()}
    model.fit(X, Y, **kw)
    fresh = _model(other, dtype)
    fresh.fit(X, Y, **kw)
    for k in KEYS:
        np.testing.assert_array_equal(model.params[k], fresh.params[k], err_msg=k)
    bk = get_backend("numpy")
    loop = engine.FullBatchLoop(bk, [params[k].copy() for k in KEYS[0::2]],
                                [params[k].copy() for k in KEYS[1::2]], X, Y, "tanh", "sigmoid",
                                "deferred", 0.0, dual=True)
    loop.run(0.05, 5)
    loop.rebase([other[k].copy() for k in KEYS[0::2]], [other[k].copy() for k in KEYS[1::2]],
                dual=True)
    c1, _ = loop.run(0.05, 5)
    new = engine.FullBatchLoop(bk, [other[k].copy() for k in KEYS[0::2]],
                               [other[k].copy() for k in KEYS[1::2]], X, Y, "tanh", "sigmoid",
                               "deferred", 0.0, dual=True)
    c2, _ = new.run(0.05, 5)
    np.testing.assert_array_equal(c1, c2)
    for got, want in zip(loop.params(), new.params()):
        np.testing.assert_array_equal(got, want)
