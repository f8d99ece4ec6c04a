"""Running a stability sweep: local processes or dask, resumable storage, the CLI."""

import contextlib
import gzip
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field

from ..errors import FastnnValueError
from .evaluate import BASE, evaluate_point
from .grid import group_key, point_key, sweep_points

RESULTS = "results.jsonl"
FAILURES = "failures.jsonl"
SPEC = "sweep.json"


# --------------------------------------------------------------------------- storage

def load_results(out_dir):
    """All point records in a results folder.

    Parameters
    ----------
    out_dir : str or path
        Folder with ``results.jsonl``, or a ``.jsonl`` / ``.jsonl.gz`` file.

    Returns
    -------
    list of dict
        One record per point (the last one when a key appears twice):
        ``{"key", "params", "metrics"}``.  A truncated last line (a run
        killed while writing) is ignored, so that point is computed again.
    """
    path = os.fspath(out_dir)
    if os.path.isdir(path):
        path = os.path.join(path, RESULTS)
    records = {}
    if not os.path.exists(path):
        return []
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
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
        return {"key": key, "params": {**BASE, **point}, "metrics": evaluate_point(point),
                "env": environment()}
    except Exception as exc:  # noqa: BLE001 -- reported with the point's parameters
        return {"key": key, "params": {**BASE, **point}, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()}


def _task_group(points):
    """Evaluate a group of points that share their forward pass (one task)."""
    return [_task(p) for p in points]


def _groups(todo):
    """Points grouped by :func:`.grid.group_key`, largest m first (the long
    tasks start early, so the workers finish together)."""
    groups = {}
    for p in todo:
        groups.setdefault(group_key(p), []).append(p)
    return sorted(groups.values(), key=lambda g: -int(g[0]["m"]) * int(g[0].get("width", 8)))


_ENV = None


def environment():
    """Versions behind a result: Python, NumPy, fastnn, the BLAS libraries
    (threadpoolctl), the machine and the long double format."""
    global _ENV
    if _ENV is None:
        import platform

        import numpy as np

        from .. import __version__ as fastnn_version
        from .reference import reference_kind
        blas = []
        try:
            from threadpoolctl import threadpool_info
            for lib in threadpool_info():
                if lib.get("user_api") == "blas":
                    blas.append({"api": lib.get("internal_api"), "version": lib.get("version"),
                                 "threads": lib.get("num_threads"),
                                 "lib": os.path.basename(lib.get("filepath") or "")})
        except ImportError:
            blas = None
        _ENV = {"python": platform.python_version(), "numpy": np.__version__, "fastnn": fastnn_version,
                "blas": blas, "machine": platform.machine(), "system": platform.system(),
                "longdouble_bits": int(np.finfo(np.longdouble).nmant) + 1,
                "float64_reference": reference_kind()}
    return _ENV


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
    for group in _groups(todo):
        for rec in _task_group(group):
            on_done(rec)


def _run_local(todo, on_done, workers):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")
    with _single_thread_env():
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init)
        futures = {pool.submit(_task_group, g): g for g in _groups(todo)}
    try:
        for fut in as_completed(futures):
            exc = fut.exception()
            if exc is not None:
                for p in futures[fut]:
                    on_done({"key": point_key(p), "params": {**BASE, **p},
                             "error": f"{type(exc).__name__}: {exc}", "traceback": ""})
            else:
                for rec in fut.result():
                    on_done(rec)
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
        for g in _groups(todo):
            fut = client.submit(_task_group, g, key=f"fastnn-stability-{point_key(g[0])}", pure=False)
            futures[fut.key] = (fut, g)
        for fut in as_completed([f for f, _ in futures.values()]):
            g = futures[fut.key][1]
            if fut.status == "error":
                exc = fut.exception()
                for p in g:
                    on_done({"key": point_key(p), "params": {**BASE, **p},
                             "error": f"{type(exc).__name__}: {exc}", "traceback": ""})
            else:
                for rec in fut.result():
                    on_done(rec)
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


def _points(preset, points, grid):
    """The preset's points, or the explicit ones completed with BASE (checked)."""
    if points is None:
        return sweep_points(preset, **grid)
    if grid:
        raise FastnnValueError(f"points: given together with grid options {sorted(grid)}")
    for p in points:
        unknown = set(p) - set(BASE)
        if unknown:
            raise FastnnValueError(f"points: unknown parameters {sorted(unknown)}; expected keys of BASE")
    return [{**BASE, **p} for p in points]


def _todo(out_dir, points):
    """Distinct points not yet in the folder's results."""
    done = {r["key"] for r in load_results(out_dir)}
    todo, seen = [], set()
    for p in points:
        k = point_key(p)
        if k not in done and k not in seen:
            seen.add(k)
            todo.append(p)
    return todo


def _write_spec(out_dir, preset, grid, n_points):
    """``sweep.json``: what was asked for, with the environment; an empty failures file."""
    _write_atomic(os.path.join(out_dir, SPEC), json.dumps(
        {"preset": preset, "grid": {k: v for k, v in grid.items()},
         "base": {**BASE, **grid.get("base", {})}, "n_points": n_points, "env": environment(),
         "command": " ".join(sys.argv) if sys.argv else ""}, indent=1, sort_keys=True, default=list))
    _write_atomic(os.path.join(out_dir, FAILURES), "")


def _recorder(out_dir, result, bar):
    """The callback that appends each finished point to the results or failures file."""
    res_path, fail_path = os.path.join(out_dir, RESULTS), os.path.join(out_dir, FAILURES)

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
    return on_done


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
    points = _points(preset, points, grid)
    os.makedirs(out_dir, exist_ok=True)
    todo = _todo(out_dir, points)
    _write_spec(out_dir, None if explicit else preset, grid, len(points))
    result = SweepResult(out_dir, len(points), len(points) - len(todo), 0)
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(todo), desc="stability", unit="pt", smoothing=0.05)
    on_done = _recorder(out_dir, result, bar)
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
        Where the report goes (and, without ``records``, the results folder).
    records : list of dict or str, optional
        Records, or a results folder / ``.jsonl(.gz)`` file to read them from.
        Default: :func:`load_results` of ``out_dir``.

    Returns
    -------
    dict
        File name -> path of everything written.
    """
    from .report import write_report as _write
    out_dir = os.fspath(out_dir)
    if records is None or isinstance(records, (str, os.PathLike)):
        records = load_results(out_dir if records is None else records)
    os.makedirs(out_dir, exist_ok=True)
    base = dict(BASE)
    spec = os.path.join(out_dir, SPEC)
    if os.path.exists(spec):
        with open(spec, encoding="utf-8") as fh:
            base.update(json.load(fh).get("base", {}))
    return _write(out_dir, records, base)


def _format_failure(rec):
    params = ", ".join(f"{k}={v!r}" for k, v in sorted(rec["params"].items()))
    return f"  {rec['error']}\n    point {rec['key']}: {params}"


def _cli_report(args):
    if not args.source:
        raise FastnnValueError("report: give the results (a folder or a .jsonl/.jsonl.gz file)")
    records = load_results(args.source)
    if not records:
        raise FastnnValueError(f"report: no results in {args.source!r}")
    out = args.out if args.out != "stability-results" else "stability-report"
    t0 = time.perf_counter()
    files = write_report(out, records)
    print(f"fastnn stability report: {len(records)} records from {args.source}, {time.perf_counter() - t0:.1f} s")
    for name, path in sorted(files.items()):
        print(f"wrote {path}")
    return 0


def _cli(args):
    """Entry of ``fastnn stability`` (see :func:`fastnn.cli._add_stability`)."""
    if getattr(args, "action", "run") == "report":
        return _cli_report(args)
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
