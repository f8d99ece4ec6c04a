"""Stability experiments: is the deferred ``1/m`` about numerical stability?

Every sweep point (a placement of the ``1/m`` -- ``scaling`` --, a number
format, ``m``, the network, the output-gradient route, the summation of the
``m`` per-example terms, the backend and a seed) is computed in its format and
compared with a higher-precision reference of the same computation: float64
for float16, bfloat16 and float32 runs, long double (x87 80-bit, eps 1.08e-19)
for float64 runs.  See ``docs/stability.md`` for the findings.

>>> import fastnn.stability
>>> result = fastnn.stability.run("stability-results", quick=True)   # doctest: +SKIP

Points are independent tasks.  They run on local processes (both cores by
default, no setup) or, with ``scheduler="tcp://HOST:PORT"``, on an existing
dask.distributed cluster (``pip install "dask[distributed]"``; fastnn must be
importable on the workers).  Each finished point is appended at once to
``results.jsonl`` in the results folder (one JSON line, flushed and fsynced);
a re-run skips the points already there, so an interrupted sweep loses at most
the points that were running.
"""

import contextlib
import hashlib
import itertools
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field

from ._stability_core import (BASE, DTYPES, SUMMATIONS, evaluate_point, reference_gradients,
                              relative_errors, round_to_format, weighted_sums)
from .errors import FastnnValueError
from .network import SCALINGS

__all__ = ["run", "sweep_points", "point_key", "load_results", "write_report", "evaluate_point",
           "reference_gradients", "relative_errors", "round_to_format", "weighted_sums",
           "SweepResult", "BASE", "PRESETS", "DTYPES", "SUMMATIONS"]


#: m from 10 to about 10^6: each power of ten next to a power of two.
M_LOG = (10, 16, 100, 128, 1000, 1024, 10_000, 16_384, 100_000, 131_072, 1_000_000, 1_048_576)

#: Sweep presets.  ``ms``: m of the placement sweep (all scalings, all formats);
#: ``m_sub``: m of the summation, route and backend sweeps; ``m_arch``: m of the
#: depth/width/activation sweep; training (``steps`` SGD steps) where m <= ``m_train``.
PRESETS = {
    "quick": {"ms": (10, 16, 1000, 1024), "m_sub": (1024,), "m_arch": (), "m_train": 16,
              "seeds": 2, "seeds_large": 2, "steps": 10, "backends": ("numpy",)},
    "medium": {"ms": M_LOG, "m_sub": (100, 1024, 16_384, 131_072), "m_arch": (1000, 1024),
               "m_train": 1024, "seeds": 3, "seeds_large": 2, "steps": 20,
               "backends": ("numpy", "numba", "numba-parallel")},
    "full": {"ms": M_LOG, "m_sub": M_LOG, "m_arch": (1000, 1024, 100_000, 131_072), "m_train": 16_384,
             "seeds": 5, "seeds_large": 5, "steps": 50, "backends": ("numpy", "numba", "numba-parallel")},
}
#: m above which a preset uses ``seeds_large`` seeds (float16 at m ~ 10^6 costs ~10 s a point).
M_LARGE = 200_000

#: Variations of the network in the architecture sweep (each against BASE).
ARCH_VARIANTS = ({"depth": 2}, {"depth": 5}, {"width": 32}, {"hidden": "tanh"},
                 {"hidden": "sigmoid"}, {"hidden": "leaky_relu"})

RESULTS = "results.jsonl"
FAILURES = "failures.jsonl"
SPEC = "sweep.json"


def point_key(point):
    """Stable identifier of a sweep point: 16 hex digits of the SHA-256 of its
    parameters (completed with :data:`BASE`) as canonical JSON."""
    full = {**BASE, **point}
    text = json.dumps(full, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _available_backends(names):
    from .backends import available_backends
    status = available_backends()
    return tuple(n for n in names if n in status and status[n].available)


def sweep_points(preset="medium", *, dtypes=None, scalings=None, ms=None, seeds=None, steps=None,
                 backends=None, base=None):
    """The points of a sweep preset.

    Parameters
    ----------
    preset : {"quick", "medium", "full"}
        See :data:`PRESETS`.
    dtypes, scalings : sequence of str, optional
        Restrict the formats (:data:`DTYPES`) and scalings (deferred, absorbed, sum).
    ms : sequence of int, optional
        Replace the placement sweep's m (the other sweeps keep those of their
        m that are in ``ms``).
    seeds : int or sequence of int, optional
        Number of seeds (0, 1, ...) or the seeds themselves (default: the
        preset's, with fewer for m > :data:`M_LARGE`).
    steps : int, optional
        SGD steps of the training comparison (0: none).
    backends : sequence of str, optional
        Backends of the backend sweep (unavailable ones are dropped).
    base : dict, optional
        Overrides of :data:`BASE` shared by every point.

    Returns
    -------
    list of dict
        Distinct points, each with every key of :data:`BASE`, grouped so that
        points sharing a reference (all but scaling, route, summation, backend)
        are adjacent.
    """
    if preset not in PRESETS:
        raise FastnnValueError(f"preset: unknown {preset!r}; expected one of {tuple(PRESETS)}")
    cfg = PRESETS[preset]
    dtypes = tuple(dtypes or DTYPES)
    scalings = tuple(scalings or SCALINGS)
    for d in dtypes:
        if d not in DTYPES:
            raise FastnnValueError(f"dtypes: unknown {d!r}; expected some of {DTYPES}")
    for s in scalings:
        if s not in SCALINGS:
            raise FastnnValueError(f"scalings: unknown {s!r}; expected some of {SCALINGS}")
    given_seeds = seeds
    seeds = cfg["seeds"] if seeds is None else seeds
    seeds = tuple(range(seeds)) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
    steps = cfg["steps"] if steps is None else int(steps)
    m_all = tuple(int(m) for m in (ms or cfg["ms"]))
    keep = (lambda m: m in m_all) if ms else (lambda m: True)
    m_sub = tuple(m for m in cfg["m_sub"] if keep(m))
    m_arch = tuple(m for m in cfg["m_arch"] if keep(m))
    bks = _available_backends(backends or cfg["backends"])
    base = {**BASE, **(base or {})}
    two = tuple(s for s in scalings if s != "sum")
    points = []

    def add(**kw):
        p = {**base, **kw}
        p["steps"] = steps if p["m"] <= cfg["m_train"] and kw.get("steps", 1) else 0
        points.append(p)

    n_large = min(len(seeds), cfg["seeds_large"]) if given_seeds is None else len(seeds)
    for d, m, seed in itertools.product(dtypes, m_all, seeds):
        if m > M_LARGE and seed not in seeds[:n_large]:
            continue
        for s in scalings:                                        # placement of 1/m
            add(dtype=d, m=m, seed=seed, scaling=s)
    for d, m, seed in itertools.product(dtypes, m_sub, seeds):
        for s in two:
            for summ in SUMMATIONS:                               # summation order
                if not (summ == "fp64acc" and d == "float64"):
                    add(dtype=d, m=m, seed=seed, scaling=s, summation=summ)
            add(dtype=d, m=m, seed=seed, scaling=s, output_grad="chain")   # output route
        if d in ("float32", "float64"):
            for bk, s in itertools.product(bks, scalings):       # backends
                add(dtype=d, m=m, seed=seed, scaling=s, backend=bk)
    for var, d, m, seed in itertools.product(ARCH_VARIANTS, dtypes, m_arch, seeds):
        for s in two:                                             # depth, width, activation
            add(dtype=d, m=m, seed=seed, scaling=s, steps=0, **var)
    unique = {}
    for p in points:
        unique.setdefault(point_key(p), p)
    ref_keys = ("dtype", "m", "depth", "width", "n_in", "hidden", "output", "seed", "steps", "lr")
    return sorted(unique.values(), key=lambda p: (p["m"], tuple(str(p[k]) for k in ref_keys)))


# --------------------------------------------------------------------------- storage

def load_results(out_dir):
    """All point records in a results folder.

    Parameters
    ----------
    out_dir : str or path
        Folder with ``results.jsonl``.

    Returns
    -------
    list of dict
        One record per point (the last one when a key appears twice):
        ``{"key", "params", "metrics"}``.  A truncated last line (a run
        killed while writing) is ignored, so that point is computed again.
    """
    path = os.path.join(os.fspath(out_dir), RESULTS)
    records = {}
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "key" in rec and "metrics" in rec:
                records[rec["key"]] = rec
    return list(records.values())


def _append_line(path, obj):
    """Append one JSON line, flushed and fsynced (one write: a crash leaves at
    most one truncated last line, which :func:`load_results` skips)."""
    text = json.dumps(obj, sort_keys=True) + "\n"
    with open(path, "a+b") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell():
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                text = "\n" + text           # the previous writer died mid-line
        fh.write(text.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def _write_atomic(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------- tasks

_RUN_PID = None
_LIMITED = False


def _limit_blas():
    """One BLAS thread in this process (multi-threaded OpenBLAS on a busy
    machine is up to 1000x slower for these shapes); needs threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(1, user_api="blas")


def _task(point):
    """Evaluate one point; never raises: failures come back with their traceback."""
    global _LIMITED
    if os.getpid() != _RUN_PID and not _LIMITED:   # a worker process (dask or pool)
        _LIMITED = True
        _limit_blas()
    key = point_key(point)
    try:
        return {"key": key, "params": {**BASE, **point}, "metrics": evaluate_point(point)}
    except Exception as exc:  # noqa: BLE001 -- reported with the point's parameters
        return {"key": key, "params": {**BASE, **point}, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()}


def _worker_init():
    _limit_blas()


@contextlib.contextmanager
def _single_thread_env():
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update({n: "1" for n in names})
    try:
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def _run_serial(todo, on_done):
    for p in todo:
        on_done(_task(p))


def _run_local(todo, on_done, workers):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")
    with _single_thread_env():
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init)
        futures = {pool.submit(_task, p): p for p in todo}
    try:
        for fut in as_completed(futures):
            exc = fut.exception()
            if exc is not None:
                p = futures[fut]
                on_done({"key": point_key(p), "params": {**BASE, **p},
                         "error": f"{type(exc).__name__}: {exc}", "traceback": ""})
            else:
                on_done(fut.result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_dask(todo, on_done, scheduler):
    from distributed import Client, as_completed   # only here: dask is optional

    own = not isinstance(scheduler, Client)
    client = Client(scheduler) if own else scheduler
    try:
        futures = {}
        for p in todo:
            fut = client.submit(_task, p, key=f"fastnn-stability-{point_key(p)}", pure=False)
            futures[fut.key] = (fut, p)
        for fut in as_completed([f for f, _ in futures.values()]):
            p = futures[fut.key][1]
            if fut.status == "error":
                exc = fut.exception()
                on_done({"key": point_key(p), "params": {**BASE, **p},
                         "error": f"{type(exc).__name__}: {exc}", "traceback": ""})
            else:
                on_done(fut.result())
            fut.release()
    finally:
        if own:
            client.close()


@dataclass
class SweepResult:
    """What :func:`run` did.

    Attributes
    ----------
    out_dir : str
    n_points : int
        Points asked for.
    skipped : int
        Already in ``results.jsonl``: not computed again.
    computed : int
        Computed and written in this run.
    failures : list of dict
        ``{"key", "params", "error", "traceback"}`` of every failed point (also
        in ``failures.jsonl``); a re-run retries them.
    records : list of dict
        Every record in the folder after the run.
    files : dict
        Report files written (name -> path).
    """
    out_dir: str
    n_points: int
    skipped: int
    computed: int
    failures: list = field(default_factory=list)
    records: list = field(default_factory=list)
    files: dict = field(default_factory=dict)


def run(out_dir="stability-results", *, preset="medium", quick=False, points=None, scheduler=None,
        workers=None, progress=True, report=True, **grid):
    """Run a stability sweep into a results folder and write its report.

    Parameters
    ----------
    out_dir : str or path
        Results folder (created).  Holds ``results.jsonl`` (one JSON line per
        point), ``failures.jsonl``, ``sweep.json`` and the report
        (``summary.md``, PNG plots).
    preset : {"quick", "medium", "full"}
        See :data:`PRESETS`; ``quick=True`` means ``preset="quick"`` (well under
        a minute on two cores).
    points : list of dict, optional
        Explicit points (keys of :data:`BASE`; missing keys take its defaults)
        instead of a preset.  Parameter values are not checked up front: a
        value that makes the evaluation raise is reported as a failed point.
    scheduler : str or distributed.Client, optional
        ``"tcp://HOST:PORT"`` of a running dask.distributed scheduler (or a
        Client): every point is one dask task.  Default: local processes.
    workers : int, optional
        Local worker processes (default: ``min(2, cpu_count)``); 1 runs the
        points in this process, one after the other.
    progress : bool
        Show a tqdm progress bar.
    report : bool
        Write ``summary.md`` and the plots from every record in the folder.
    **grid
        ``dtypes``, ``scalings``, ``ms``, ``seeds``, ``steps``, ``backends``,
        ``base``: passed to :func:`sweep_points`.

    Returns
    -------
    SweepResult
    """
    global _RUN_PID
    out_dir = os.fspath(out_dir)
    if quick:
        preset = "quick"
    explicit = points is not None
    if points is None:
        points = sweep_points(preset, **grid)
    else:
        if grid:
            raise FastnnValueError(f"points: given together with grid options {sorted(grid)}")
        for p in points:
            unknown = set(p) - set(BASE)
            if unknown:
                raise FastnnValueError(f"points: unknown parameters {sorted(unknown)}; expected keys of BASE")
        points = [{**BASE, **p} for p in points]
    os.makedirs(out_dir, exist_ok=True)
    done = {r["key"] for r in load_results(out_dir)}
    todo, seen = [], set()
    for p in points:
        k = point_key(p)
        if k not in done and k not in seen:
            seen.add(k)
            todo.append(p)
    _write_atomic(os.path.join(out_dir, SPEC), json.dumps(
        {"preset": None if explicit else preset, "grid": {k: v for k, v in grid.items()},
         "base": {**BASE, **grid.get("base", {})}, "n_points": len(points),
         "command": " ".join(sys.argv) if sys.argv else ""}, indent=1, sort_keys=True, default=list))
    fail_path = os.path.join(out_dir, FAILURES)
    _write_atomic(fail_path, "")
    res_path = os.path.join(out_dir, RESULTS)
    result = SweepResult(out_dir, len(points), len(points) - len(todo), 0)
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(todo), desc="stability", unit="pt", smoothing=0.05)

    def on_done(rec):
        if "metrics" in rec:
            _append_line(res_path, rec)
            result.computed += 1
        else:
            _append_line(fail_path, rec)
            result.failures.append(rec)
        if bar is not None:
            bar.update(1)
            if result.failures:
                bar.set_postfix(failed=len(result.failures))

    _RUN_PID = os.getpid()
    workers = min(2, os.cpu_count() or 1) if workers is None else int(workers)
    limit = _limit_blas()
    try:
        if not todo:
            pass
        elif scheduler is not None:
            _run_dask(todo, on_done, scheduler)
        elif workers <= 1 or len(todo) == 1:
            _run_serial(todo, on_done)
        else:
            _run_local(todo, on_done, workers)
    finally:
        if limit is not None:
            limit.restore_original_limits()
        if bar is not None:
            bar.close()
    result.records = load_results(out_dir)
    if report and result.records:
        result.files = write_report(out_dir, result.records)
    return result


def write_report(out_dir, records=None):
    """Write ``summary.md`` and the PNG plots of a results folder.

    Parameters
    ----------
    out_dir : str or path
    records : list of dict, optional
        Default: :func:`load_results` of ``out_dir``.

    Returns
    -------
    dict
        File name -> path of everything written.
    """
    from ._stability_report import write_report as _write
    out_dir = os.fspath(out_dir)
    records = load_results(out_dir) if records is None else records
    base = dict(BASE)
    spec = os.path.join(out_dir, SPEC)
    if os.path.exists(spec):
        with open(spec, encoding="utf-8") as fh:
            base.update(json.load(fh).get("base", {}))
    return _write(out_dir, records, base)


def _format_failure(rec):
    params = ", ".join(f"{k}={v!r}" for k, v in sorted(rec["params"].items()))
    return f"  {rec['error']}\n    point {rec['key']}: {params}"


def _cli(args):
    """Entry of ``fastnn stability`` (see :func:`fastnn.cli._add_stability`)."""
    grid = {}
    for name in ("dtypes", "scalings", "ms", "seeds", "steps", "backends"):
        value = getattr(args, name, None)
        if value is not None:
            grid[name] = value
    t0 = time.perf_counter()
    res = run(args.out, preset="quick" if args.quick else args.preset, scheduler=args.scheduler,
              workers=args.workers, progress=not args.no_progress, report=not args.no_report, **grid)
    print(f"fastnn stability: {res.n_points} points, {res.skipped} already in {res.out_dir}, "
          f"{res.computed} computed, {len(res.failures)} failed, {time.perf_counter() - t0:.1f} s")
    for name, path in sorted(res.files.items()):
        print(f"wrote {path}")
    if res.failures:
        print(f"{len(res.failures)} point(s) failed (also in {os.path.join(res.out_dir, FAILURES)}):",
              file=sys.stderr)
        for rec in res.failures:
            print(_format_failure(rec), file=sys.stderr)
        return 1
    return 0
