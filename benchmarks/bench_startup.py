"""Start-up: ``import fastnn`` and the first training step in a fresh process,
with a cold and a warm Numba cache.  ``timeraw_`` benchmarks: asv runs the
returned code in a new Python process and times only its statement part.

- ``TimerawImport.timeraw_import_fastnn``: ``import fastnn`` with NumPy already
  imported (untimed), i.e. what fastnn adds; Numba must not be in it (the
  backends are imported on first use).
- ``TimerawFirstStep.timeraw_first_step``: ``import fastnn``, then
  ``fastnn.gradients`` on the mnist config and a one-epoch ``Model.fit``
  (``[784, 32, 10]``, full batch: the compiled loop on Numba), float32.  This is
  the ``python -m benchmarks.compare`` start-up figure.

  - ``cold``: ``NUMBA_CACHE_DIR`` points at a new empty folder (set in the child
    before anything imports Numba, removed at its exit), so every kernel the
    step uses is compiled: the compile time.
  - ``warm``: ``NUMBA_CACHE_DIR`` points at a folder that ``setup`` filled by
    running the same code once (kept in ``.asv/bench-cache/numba-warm``): the
    cost of loading compiled kernels from disk.

  On the NumPy backend cold and warm are the same (no compiling): the baseline.
"""

import os
import subprocess
import sys
import textwrap

from .common import BACKENDS, bench_cache_dir, require_backend

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SETUP = """\
import os, sys
{cache}
sys.path.append({root!r})  # last: fastnn must be the copy installed for the commit measured
import numpy as np
from benchmarks.common import make_data
p, X, Y = make_data("mnist", "float32")
"""

_COLD = """\
import atexit, shutil, tempfile
_cache = tempfile.mkdtemp(prefix="fastnn-cold-numba-")
atexit.register(shutil.rmtree, _cache, True)
os.environ["NUMBA_CACHE_DIR"] = _cache"""

_STMT = """\
import fastnn
fastnn.gradients(p, X, Y, hidden="relu", output="softmax", backend={backend!r})
model = fastnn.Model([784, 32, 10], "relu", "softmax", dtype="float32", seed=0)
model.fit(X, Y, epochs=1, backend={backend!r}, progress=False)
"""


def first_step_code(backend, cache_line):
    """``(setup, stmt)`` of the first-step child process: ``setup`` (untimed)
    points Numba at a cache folder (``cache_line``), imports NumPy and makes the
    mnist data; ``stmt`` is ``import fastnn`` and the first step.  Shared with
    ``python -m benchmarks.compare``, so both report the same figure."""
    return (_SETUP.format(cache=cache_line, root=_ROOT),
            textwrap.dedent(_STMT.format(backend=backend)))


class TimerawImport:
    rounds = 1
    repeat = (3, 10, 10.0)
    warmup_time = 0
    timeout = 120

    def timeraw_import_fastnn(self):
        return "import fastnn", "import numpy"


class TimerawFirstStep:
    params = [BACKENDS, ["cold", "warm"]]
    param_names = ["backend", "cache"]
    rounds = 1
    repeat = (1, 3, 30.0)   # a cold sample compiles for a minute or more: one sample
    warmup_time = 0         # a warm-up call would be a whole extra process (a compile)
    timeout = 1200

    def setup(self, backend, cache):
        require_backend(backend)
        if cache == "cold":
            self.cache_line = _COLD
            return
        warm = bench_cache_dir("numba-warm")
        self.cache_line = f"os.environ['NUMBA_CACHE_DIR'] = {warm!r}"
        setup, stmt = self._code(backend)
        subprocess.run([sys.executable, "-c", setup + stmt], check=True, timeout=1100,
                       stdout=subprocess.DEVNULL)

    def _code(self, backend):
        return first_step_code(backend, self.cache_line)

    def timeraw_first_step(self, backend, cache):
        setup, stmt = self._code(backend)
        return stmt, setup
