"""Stability experiments: is the deferred ``1/m`` about numerical stability?

Every sweep point (a placement of the ``1/m`` -- ``scaling`` --, a number
format, ``m``, the network, data set and training stage, the mixed-precision
recipe, how ``1/m`` is applied, micro-batching, the output-gradient route, the
summation of the ``m`` per-example terms, the backend and a seed) is computed
in its format and compared with a higher-precision reference of the same
computation: float64 for float16, bfloat16 and float32 runs; for float64 runs
long double where it is extended (x87 80-bit), double-double elsewhere.  See
``docs/stability.md`` for the findings.

>>> import fastnn.stability
>>> result = fastnn.stability.run("stability-results", quick=True)   # doctest: +SKIP

Points are independent tasks.  They run on local processes (both cores by
default, no setup) or, with ``scheduler="tcp://HOST:PORT"``, on an existing
dask.distributed cluster (``pip install "dask[distributed]"``; fastnn must be
importable on the workers).  Each finished point is appended at once to
``results.jsonl`` in the results folder (one JSON line, flushed and fsynced);
a re-run skips the points already there, so an interrupted sweep loses at most
the points that were running.

Modules: :mod:`.grid` (presets, points), :mod:`.runner` (running, storage,
CLI), :mod:`.formats` (number formats, emulation, summations),
:mod:`.reference` (higher-precision references, :mod:`._dd`),
:mod:`.evaluate` (one point), :mod:`.mixed` (recipes, 1/m, micro-batches),
:mod:`.problems` (data sets, training stages), :mod:`.stats` (paired
statistics), :mod:`.report` (tables and plots).
"""

from .evaluate import BASE, evaluate_point, relative_errors
from .formats import DTYPES, SUMMATIONS, round_to_format, weighted_sums
from .grid import PRESETS, point_key, sweep_points
from .mixed import ACCUMS, INV_M, RECIPES
from .reference import reference_gradients, reference_kind
from .runner import SweepResult, environment, load_results, run, write_report, _cli  # noqa: F401

__all__ = ["run", "sweep_points", "point_key", "load_results", "write_report", "evaluate_point",
           "reference_gradients", "reference_kind", "relative_errors", "round_to_format", "weighted_sums",
           "environment", "SweepResult", "BASE", "PRESETS", "DTYPES", "SUMMATIONS", "RECIPES", "INV_M",
           "ACCUMS"]
