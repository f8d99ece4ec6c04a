"""The fresh-process benchmark harness of ``benchmarks.compare`` and ``benchmarks.sklearn_compare``.

Every contender runs in a process of its own (``python -m benchmarks.run_one``),
one process at a time: the parent waits for a child to exit before it starts
the next, so no contender is timed beside another's live thread pool.  The
contenders alternate, round-robin, for R rounds (the first contender of a
round moves by one each round, so none always runs first or right after the
same neighbour); a contender's figure is the median over rounds, with the
smallest and largest round shown as its spread.  This module imports neither
fastnn nor any contender's library.
"""

import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time

#: Variables that pin an older, slower OpenBLAS kernel; unset for the children.
OPENBLAS_PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def round_robin(names, rounds):
    """The running order: ``[(round, name), ...]``, every name once per round,
    round ``r`` starting at ``names[r % len(names)]``."""
    names = list(names)
    order = []
    for r in range(rounds):
        start = r % len(names) if names else 0
        order.extend((r, names[(start + i) % len(names)]) for i in range(len(names)))
    return order


def summarize(values):
    """``{"median", "min", "max", "spread", "n"}`` of the per-round seconds; ``spread``
    is ``(max - min) / median`` (0 for one value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("values: no samples")
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    return {"median": med, "min": lo, "max": hi, "spread": (hi - lo) / med if med else 0.0,
            "n": len(values)}


# ------------------------------------------------------------------ background load

#: A busy loop that also ends by itself once its parent is gone (the parent
#: killed with SIGKILL cannot stop it otherwise).
BUSY_CODE = ("import os, sys\nparent = int(sys.argv[1])\n"
             "while os.getppid() == parent:\n    for _ in range(200000):\n        pass\n")


class BusyLoad:
    """``with BusyLoad(n):`` -- ``n`` busy Python processes for the duration of the block.

    They are stopped on leaving the block however it is left (an exception,
    Ctrl-C): SIGTERM, then SIGKILL after ``grace_s``, and waited for.
    """

    def __init__(self, n, grace_s=2.0):
        if n < 0:
            raise ValueError(f"n: must be >= 0, got {n}")
        self.n, self.grace_s, self.procs = n, grace_s, []

    def __enter__(self):
        try:
            for _ in range(self.n):
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-c", BUSY_CODE, str(os.getpid())],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True))
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for p in self.procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def __exit__(self, *exc):
        self.stop()
        return False


# ------------------------------------------------------------------ children

def child_env(environ=None):
    """(environment for the children, the OpenBLAS pins that were set and are unset there).

    ``environ``: the environment to start from (default ``os.environ``, left unchanged).
    """
    env = dict(os.environ if environ is None else environ)
    unset = {k: env.pop(k) for k in OPENBLAS_PINS if k in env}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env, unset


def run_child(contender, config, args=(), env=None, timeout=900):
    """Run ``python -m benchmarks.run_one CONTENDER CONFIG *args`` to its end; its JSON record."""
    cmd = [sys.executable, "-m", "benchmarks.run_one", contender, config, *map(str, args)]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_rounds(jobs, rounds, env=None, log=print):
    """Run ``jobs`` (``{label: (contender, config, args)}``) round-robin for ``rounds``.

    Returns ``{label: {"rounds": [seconds, ...], "records": [record, ...]}}``; a
    round's figure is the median of that child's samples.  Interrupted (Ctrl-C, or
    SIGTERM under :func:`sigterm_interrupts`), it returns the rounds done so far.
    """
    out = {label: {"rounds": [], "records": []} for label in jobs}
    for r, label in round_robin(jobs, rounds):
        contender, config, args = jobs[label]
        try:
            rec = run_child(contender, config, args, env)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep the rounds done
            log(f"  interrupted in round {r + 1}: reporting the rounds done")
            break
        value = statistics.median(rec["samples"])
        out[label]["rounds"].append(value)
        out[label]["records"].append(rec)
        log(f"  round {r + 1}/{rounds}  {label:<28} {value:8.3f} s  (warm-up {rec['warmup_s']:.2f} s)")
    return out


def sigterm_interrupts():
    """Make SIGTERM raise KeyboardInterrupt, so that ``finally`` blocks (the
    background load's stop) run when the script is terminated, not only on Ctrl-C."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, handler)


def completed(results):
    """``results`` without the contenders that finished no round."""
    return {label: entry for label, entry in results.items() if entry["rounds"]}


# ------------------------------------------------------------------ the machine

def cpu_model():
    """The CPU's model name from /proc/cpuinfo (else platform's answer)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info():
    """CPU model, cores, date, OS and the load average now."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "date": datetime.date.today().isoformat(),
            "platform": platform.platform(), "python": platform.python_version(),
            "loadavg": list(load) if load else None}


def versions_of(results):
    """The library versions the children reported, merged."""
    merged = {}
    for entry in results.values():
        for rec in entry["records"]:
            merged.update(rec["versions"])
    return merged


def blas_of(results):
    """The distinct BLAS lines the children reported, with the contenders that loaded each."""
    seen = {}
    for label, entry in results.items():
        for line in entry["records"][-1]["blas"] if entry["records"] else ():
            seen.setdefault(line, []).append(label)
    return seen


def markdown_header(machine, versions, unset, load_n, rounds):
    """The lines that head the Markdown tables: machine, date, versions, BLAS pins, load."""
    lib = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
    pins = (f"{', '.join(f'{k}={v}' for k, v in unset.items())} unset for the run" if unset
            else "OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE not set")
    load = f"beside {load_n} busy background process(es)" if load_n else "no background load started"
    return [f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['date']}; {lib}.",
            f"Each contender in a fresh process of its own, alternated round-robin, median of "
            f"{rounds} rounds (min-max in brackets); {load}; {pins}.", ""]


def fmt_s(summary):
    """``0.761 s (0.742-0.803)``, or in ms below 0.1 s: ``1.35 ms (1.33-1.41)``."""
    scale, unit = (1e3, "ms") if summary["median"] < 0.1 else (1.0, "s")
    f = (lambda x: f"{x * scale:.3g}") if scale != 1.0 else (lambda x: f"{x:.3f}")
    return f"{f(summary['median'])} {unit} ({f(summary['min'])}-{f(summary['max'])})"


def check_writable(path):
    """Raise ``SystemExit`` naming ``path`` when a result file could not be written there.

    Called before any work starts, so a long run never ends with nowhere to save.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as err:
        raise SystemExit(f"--json {path}: cannot write there ({err})") from None


def write_json(path, obj):
    """Write ``obj`` as JSON to ``path`` atomically (a temporary file in the folder, then rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
