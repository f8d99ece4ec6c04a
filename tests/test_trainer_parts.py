"""The parts of Model.fit on their own: FitOptions, DivergencePolicy, the checkpoint's
training-state API and the write seam of fastnn.checkpoint."""

import dataclasses
import os
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn import checkpoint as ckpt
from fastnn.errors import DivergenceError, FastnnValueError
from fastnn.model import MAX_CONSECUTIVE_SKIPS, DivergencePolicy, FitOptions, History
from fastnn.optim import make_optimizer


def _problem(m=24):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((3, m))
    return X, (X[:1] + X[1:2] > 0).astype(float)


def _build(**kw):
    args = dict(epochs=3, batch_size=None, optimizer="momentum", lr=0.1, l2=0.0, scaling="deferred",
                output_grad="fused", on_divergence="raise", shuffle_seed=4, callback=None,
                checkpoint=None, checkpoint_every=1, resume=None, optimizer_options={})
    args.update(kw)
    return FitOptions.build(np.dtype(np.float64), 24, **args)


def test_fit_options_are_validated_once_and_frozen():
    o, opt, rng = _build(batch_size=100, optimizer_options={"beta": 0.8})
    assert o.batch_size == 24 and o.optimizer_options == {"beta": 0.8} and opt.lr == o.lr
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.lr = 1.0
    with pytest.raises(FastnnValueError, match="epochs"):
        _build(epochs=0)
    with pytest.raises(fastnn.FastnnTypeError, match="eps"):
        _build(optimizer_options={"eps": 1e-8})


def test_the_checkpoint_records_fit_options_record(tmp_path):
    X, Y = _problem()
    path = str(tmp_path / "c.npz")
    fastnn.Model([3, 4, 1], seed=0).fit(X, Y, epochs=2, batch_size=8, optimizer="adam", lr=0.01,
                                        shuffle_seed=4, progress=False, backend="numpy", checkpoint=path)
    o, _, _ = _build(epochs=2, batch_size=8, optimizer="adam", lr=0.01, checkpoint=path)
    expected = dict(o.record(), backend="numpy")
    assert ckpt.read_checkpoint(path)[0]["fit"] == expected
    assert list(expected) == list(FitOptions._RECORDED)


def test_divergence_policy_skip_halves_lr_and_gives_up_after_max_skips():
    opt, history = make_optimizer("sgd", 1.0), History()
    policy = DivergencePolicy("skip", np.dtype(np.float64))
    for k in range(MAX_CONSECUTIVE_SKIPS):
        policy.failed(opt, history, 1, k + 1, "update", 2.0, full=False)
    assert opt.lr == 0.5 ** MAX_CONSECUTIVE_SKIPS and len(history.lr_changes) == MAX_CONSECUTIVE_SKIPS
    assert history.lr_changes[0] == {"epoch": 1, "step": 1, "lr": 0.5, "reason": "update", "cost": 2.0}
    with pytest.raises(DivergenceError, match="in a row"):
        policy.failed(opt, history, 1, 99, "update", 2.0, full=False)
    policy.applied()
    assert policy.skips == 0
    with pytest.raises(DivergenceError, match="Skipping cannot help") as info:
        policy.failed(opt, history, 2, 1, "cost", float("nan"), full=True)
    assert (info.value.epoch, info.value.step, info.value.reason) == (2, 1, "cost")


def test_divergence_policy_raise_locates_first_and_never_changes_lr():
    opt, history, located = make_optimizer("sgd", 1.0), History(), []

    def locate():
        located.append(True)
        raise DivergenceError("located")

    policy = DivergencePolicy("raise", np.dtype(np.float64))
    with pytest.raises(DivergenceError, match="located"):
        policy.failed(opt, history, 3, 2, "cost", float("inf"), full=False, locate=locate)
    with pytest.raises(DivergenceError, match="epoch 3, step 2") as info:
        policy.failed(opt, history, 3, 2, "update", 1.5, full=True)
    assert located == [True] and opt.lr == 1.0 and history.lr_changes == []
    assert (info.value.lr, info.value.cost, info.value.reason) == (1.0, 1.5, "update")


def _state(rng):
    params = {"W1": rng.standard_normal((2, 3)), "b1": rng.standard_normal((2, 1))}
    opt = {"t": 7, "v": [np.ones((2, 3)), np.zeros((2, 1))]}
    return ckpt.TrainerState(params, opt, 0.25, np.random.default_rng(9), 2, 7, 1, [0.5, 0.25],
                             [0.1, 0.1], [{"epoch": 1, "step": 3, "lr": 0.25, "reason": "cost",
                                           "cost": 1e300}])


def test_save_trainer_then_load_trainer_gives_the_state_back(tmp_path):
    spec = {"layer_dims": [3, 2], "hidden": "relu", "output": "sigmoid", "dtype": "float64"}
    fit = {"batch_size": 4, "optimizer": "momentum", "optimizer_options": {"beta": 0.9}, "lr": 0.5,
           "l2": 0.0, "scaling": "deferred", "output_grad": "fused", "on_divergence": "skip",
           "shuffle_seed": 1, "backend": "numpy", "epochs": 5, "checkpoint_every": 1}
    state = _state(np.random.default_rng(0))
    path = ckpt.save_trainer(str(tmp_path / "t"), spec, fit, {"X": 1}, state)
    meta, arrays = ckpt.read_checkpoint(path)
    back = ckpt.load_trainer(path, meta, arrays, spec=spec, fingerprint={"X": 1}, fit=fit,
                             slots=("v",), check_lr=float)
    for name in ("lr", "epoch", "steps", "skips", "cost", "time", "lr_changes"):
        assert getattr(back, name) == getattr(state, name), name
    for k in state.params:
        assert np.array_equal(back.params[k], state.params[k])
    assert back.optimizer["t"] == 7 and all(np.array_equal(a, b) for a, b in
                                            zip(back.optimizer["v"], state.optimizer["v"]))
    assert back.rng.random() == np.random.default_rng(9).random()
    with pytest.raises(FastnnValueError, match="l2=0.0, this call has l2=0.5"):
        ckpt.load_trainer(path, meta, arrays, spec=spec, fingerprint={"X": 1}, fit=dict(fit, l2=0.5),
                          slots=("v",), check_lr=float)
    with pytest.raises(FastnnValueError, match="is for a model"):
        ckpt.load_trainer(path, meta, arrays, spec=dict(spec, hidden="tanh"), fingerprint={"X": 1},
                          fit=fit, slots=("v",), check_lr=float)


def test_the_write_seam_sees_the_complete_temporary_file_before_the_rename(tmp_path, monkeypatch):
    seen = []

    def hook(tmp):
        with zipfile.ZipFile(tmp) as z:
            seen.append((os.path.basename(tmp).startswith(".m.npz.tmp-"), z.testzip(),
                         os.path.exists(tmp_path / "m.npz")))

    monkeypatch.setattr(ckpt, "_after_temp_written", hook)
    fastnn.Model([2, 1], seed=0).save(str(tmp_path / "m.npz"))
    assert seen == [(True, None, False)]
    assert os.path.exists(tmp_path / "m.npz")
