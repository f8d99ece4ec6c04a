"""Whole training steps: speed and peak memory, per config, backend and dtype.

A *step* is what :mod:`benchmarks.compare` times: forward pass, backward pass
(``scaling="deferred"``, fused output gradient), and an SGD update of every
parameter.  Three routes to it:

- ``TimeTrainStep``: kernel by kernel through ``fastnn.engine.forward`` /
  ``backward`` and ``bk.sgd_update`` (what ``Model.fit`` does with minibatches
  or a non-SGD optimizer);
- ``TimeTrainLoop``: the backend's whole-loop ``sgd_loop`` (compiled on Numba;
  what ``Model.fit`` runs for full-batch SGD), reported **per step**;
- ``TimeCourseStep``: the course-style NumPy code (``common.course_step``), the
  baseline series (it does not depend on a backend);
- ``TimeFitEpoch``: one epoch of ``Model.fit`` with minibatches and Adam
  (``common.FITS``): the compiled steps on the Numba backends and everything a
  fit does around them (validation, the short last batch, per-call costs).

The configs are ``common.CONFIGS``: planar (tiny), cat (12288 inputs), mnist,
wide (2048-2048-2048, ~20 GFLOP a step, hundreds of ms on a laptop).
"""

import functools
import gc
import time

import numpy as np

import fastnn
from fastnn import engine

from .common import (BACKENDS, CONFIGS, DTYPES, FITS, cached_data, course_step, fit_data,
                     require_backend, reset_peak_rss, sync)

try:  # imported here so that asv's forkserver children inherit it
    import numba  # noqa: F401
except ImportError:
    pass

CONFIG_NAMES = ["planar", "cat", "mnist", "wide"]
LR = 0.01
#: Calls per timed sample (asv's ``number``), per config: enough to lift a
#: sample of the small configs well above timer and scheduler noise.
NUMBER = {"planar": 50, "cat": 5, "mnist": 5, "wide": 1}
#: Steps per ``sgd_loop`` call in TimeTrainLoop: the loop's point is to amortise
#: the per-call overhead over many steps, so a call runs several.
LOOP_STEPS = {"planar": 100, "cat": 10, "mnist": 10, "wide": 2}

_warm = set()


def _state(bk, config, dtype):
    """Fresh backend copies of the config's parameters, and its X, Y."""
    params, X, Y = cached_data(config, dtype)
    L = len(params) // 2
    Ws = [bk.to_device(params[f"W{l}"].copy()) for l in range(1, L + 1)]
    bs = [bk.to_device(params[f"b{l}"].copy()) for l in range(1, L + 1)]
    return Ws, bs, bk.to_device(X), bk.to_device(Y)


def _step(bk, Ws, bs, X, Y, hidden, output, lr):
    As, ZL = engine.forward(bk, Ws, bs, X, hidden, output)
    dWs, dbs, _ = engine.backward(bk, Ws, As, ZL, Y, hidden, output, "deferred", "fused", 0.0)
    for P, G in zip(Ws + bs, dWs + dbs):
        bk.sgd_update(P, G, lr)


def _scaled_clock(factor):
    return time.perf_counter() * factor


class _Training:
    params = [CONFIG_NAMES, BACKENDS, DTYPES]
    param_names = ["config", "backend", "dtype"]
    repeat = (2, 10, 8.0)
    timeout = 600

    def _prepare(self, config, backend, dtype):
        self.bk = require_backend(backend, dtype)
        _, self.hidden, self.output, _ = CONFIGS[config]
        self.Ws, self.bs, self.X, self.Y = _state(self.bk, config, dtype)
        self.lr = np.dtype(dtype).type(LR)


class TimeTrainStep(_Training):
    """One training step, kernel by kernel (forward, backward, SGD update)."""

    def setup(self, config, backend, dtype):
        self._prepare(config, backend, dtype)
        self.number = NUMBER[config]
        key = ("step", config, backend, dtype)
        if key not in _warm:  # JIT compile / cache load, outside every sample
            _step(self.bk, self.Ws, self.bs, self.X, self.Y, self.hidden, self.output, self.lr)
            sync(self.bk)
            _warm.add(key)

    def time_step(self, config, backend, dtype):
        _step(self.bk, self.Ws, self.bs, self.X, self.Y, self.hidden, self.output, self.lr)
        sync(self.bk)


class TimeTrainLoop(_Training):
    """Seconds per step of the backend's whole-loop ``sgd_loop``.

    Each call runs ``LOOP_STEPS[config]`` full-batch SGD steps; the benchmark's
    ``timer`` is ``perf_counter() / LOOP_STEPS[config]`` (set per config in
    ``setup``), so the figure is per step and comparable with TimeTrainStep.
    """

    def setup(self, config, backend, dtype):
        self._prepare(config, backend, dtype)
        self.steps = LOOP_STEPS[config]
        self.timer = functools.partial(_scaled_clock, 1.0 / self.steps)
        key = ("loop", config, backend, dtype)
        if key not in _warm:
            costs, steps = engine.sgd_loop(self.bk, self.Ws, self.bs, self.X, self.Y, self.hidden,
                                            self.output, "deferred", 0.0, LR, 1)
            sync(self.bk)
            if steps != 1:
                raise RuntimeError(f"sgd_loop stopped: cost {costs}")
            _warm.add(key)

    def time_sgd_loop(self, config, backend, dtype):
        engine.sgd_loop(self.bk, self.Ws, self.bs, self.X, self.Y, self.hidden, self.output,
                         "deferred", 0.0, LR, self.steps)
        sync(self.bk)


class TimeCourseStep:
    """Baseline: one step of the course-style NumPy code (``common.course_step``):
    caches, dA[L] through the loss for sigmoid, dA for every layer, new arrays."""

    params = [CONFIG_NAMES, DTYPES]
    param_names = ["config", "dtype"]
    repeat = (2, 10, 8.0)
    timeout = 600

    def setup(self, config, dtype):
        self.params_, self.X, self.Y = cached_data(config, dtype)
        _, self.hidden, self.output, _ = CONFIGS[config]
        self.number = NUMBER[config]

    def time_course_step(self, config, dtype):
        with np.errstate(all="ignore"):
            course_step(self.params_, self.X, self.Y, self.hidden, self.output)


class TimeFitEpoch:
    """One minibatch epoch of ``Model.fit`` (Adam, lr 1e-3, shuffled), the model trained on
    from sample to sample."""
    params = [list(FITS), BACKENDS, DTYPES]
    param_names = ["fit", "backend", "dtype"]
    repeat = (2, 10, 8.0)
    number = 1
    timeout = 600

    def setup(self, fit, backend, dtype):
        require_backend(backend, dtype)
        dims, _, self.batch = FITS[fit]
        self.X, self.y = fit_data(fit, dtype)
        self.model = fastnn.Model(dims, "relu", "softmax", dtype=dtype, seed=0)
        self.backend = backend
        self.time_epoch(fit, backend, dtype)  # compile or cache load, first touch

    def time_epoch(self, fit, backend, dtype):
        self.model.fit(self.X, self.y, epochs=1, batch_size=self.batch, optimizer="adam",
                       lr=1e-3, backend=self.backend, shuffle_seed=0, progress=False)


class PeakMemTrainStep:
    """Peak resident memory of one float32 training step, step by step or as
    one ``sgd_loop`` iteration.

    asv reads the process's peak RSS, which includes the interpreter, NumPy,
    Numba and the data.  ``setup`` runs the step once (compiling), then resets
    the peak (``common.reset_peak_rss``, Linux), so the figure is what setup
    left resident plus the step's own transient peak, without the compile's.
    """

    params = [CONFIG_NAMES, BACKENDS, ["step", "loop"]]
    param_names = ["config", "backend", "route"]
    rounds = 1
    timeout = 600

    def setup(self, config, backend, route):
        self.bk = require_backend(backend)
        _, self.hidden, self.output, _ = CONFIGS[config]
        self.Ws, self.bs, self.X, self.Y = _state(self.bk, config, "float32")
        self.route = route
        self._run()
        gc.collect()
        reset_peak_rss()

    def _run(self):
        if self.route == "step":
            _step(self.bk, self.Ws, self.bs, self.X, self.Y, self.hidden, self.output,
                  np.float32(LR))
        else:
            engine.sgd_loop(self.bk, self.Ws, self.bs, self.X, self.Y, self.hidden, self.output,
                             "deferred", 0.0, LR, 1)
        sync(self.bk)

    def peakmem_step(self, config, backend, route):
        self._run()


class PeakMemCourseStep:
    """Peak resident memory of one float32 course-style NumPy step (baseline)."""

    params = [CONFIG_NAMES]
    param_names = ["config"]
    rounds = 1
    timeout = 600

    def setup(self, config):
        self.params_, self.X, self.Y = cached_data(config, "float32")
        _, self.hidden, self.output, _ = CONFIGS[config]
        with np.errstate(all="ignore"):
            course_step(self.params_, self.X, self.Y, self.hidden, self.output)
        gc.collect()
        reset_peak_rss()

    def peakmem_course_step(self, config):
        with np.errstate(all="ignore"):
            course_step(self.params_, self.X, self.Y, self.hidden, self.output)
