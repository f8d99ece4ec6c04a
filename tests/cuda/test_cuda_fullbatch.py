"""``Model.fit(batch_size=None)`` on the CUDA backend: the dual first layer of
``engine.FullBatchLoop`` (the backend has no compiled loop, so it runs wherever
``engine.dual_pays``), against the NumPy backend, and a resume bit for bit
(tests/test_fit_fullbatch.py holds the same on the host backends)."""

import numpy as np
import pytest

import fastnn
import fastnn.model as fm
from fastnn import engine

pytestmark = pytest.mark.cuda

DTYPES = [np.float32, np.float64]
DIMS, M, EPOCHS = [9, 5, 1], 4, 12   # n0 > m: the dual form pays from 6 epochs on


class _Stop(Exception):
    pass


@pytest.fixture
def launch(cb, monkeypatch):
    """TPB = 4, TILE = 4: small blocks, cheap under the simulator."""
    monkeypatch.setattr(cb, "TPB", 4)
    monkeypatch.setattr(cb, "TILE", 4)


@pytest.fixture
def dual_calls(monkeypatch):
    calls = []
    real = engine.FullBatchLoop._dual_steps
    monkeypatch.setattr(engine.FullBatchLoop, "_dual_steps",
                        lambda self, lr, n, costs: calls.append(n) or real(self, lr, n, costs))
    return calls


def _problem(dtype):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((DIMS[0], M)).astype(dtype)
    Y = (rng.random((1, M)) > 0.5).astype(dtype)
    return X, Y


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_dual_matches_numpy(cb, tols, registered, launch, dual_calls, dtype):
    X, Y = _problem(dtype)
    models = {}
    for backend in ("cuda", "numpy"):
        models[backend] = fastnn.Model(DIMS, "tanh", "sigmoid", dtype=dtype, seed=2)
        models[backend].fit(X, Y, epochs=EPOCHS, lr=0.5, backend=backend, progress=False)
    assert sum(dual_calls) == 2 * EPOCHS
    start = fastnn.Model(DIMS, "tanh", "sigmoid", dtype=dtype, seed=2).params
    for k, want in models["numpy"].params.items():
        got = models["cuda"].params[k]
        assert got.dtype == np.dtype(dtype)
        tols.assert_close(got, want, dtype, 4 * EPOCHS * DIMS[0],
                          magnitude=np.abs(start[k]) + np.abs(want - start[k]), err_msg=k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_resume_is_bit_identical(cb, registered, launch, dual_calls, dtype, tmp_path, monkeypatch):
    """Checkpoints every 6 epochs (the dual form restarts there); a run stopped at
    epoch 8 and resumed from epoch 6 ends as the uninterrupted run, bit for bit."""
    monkeypatch.setattr(fm, "LOOP_CHUNK_SECONDS", float("inf"))
    X, Y = _problem(dtype)
    kw = dict(epochs=EPOCHS, lr=0.5, backend="cuda", progress=False, checkpoint_every=6)
    whole = fastnn.Model(DIMS, "tanh", "sigmoid", dtype=dtype, seed=2)
    h_whole = whole.fit(X, Y, checkpoint=tmp_path / "whole", **kw)
    assert dual_calls == [1, 2, 3, 4, 2]   # chunks 1, 2, 4 cut at epoch 6; 4, 8 cut at 12

    def stop(epoch, model, history):
        if epoch == 8:
            raise _Stop
    stopped = fastnn.Model(DIMS, "tanh", "sigmoid", dtype=dtype, seed=2)
    with pytest.raises(_Stop):
        stopped.fit(X, Y, checkpoint=tmp_path / "run", callback=stop, **kw)
    resumed = fastnn.Model.from_checkpoint(tmp_path / "run.npz")
    h = resumed.fit(X, Y, checkpoint=tmp_path / "run", resume=tmp_path / "run.npz", **kw)
    np.testing.assert_array_equal(h.cost, h_whole.cost)
    for k, v in whole.params.items():
        np.testing.assert_array_equal(resumed.params[k], v, err_msg=k)
