"""The on-disk kernel cache follows edits of any kernel source.

Numba checks a cached function only against its own file's timestamp; fastnn
keeps a digest of all kernel sources beside the cache and drops the cache
when it changes (``_numba_config.drop_stale_cache``).
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numba")

INIT = """
from fastnn.backends._numba_config import drop_stale_cache

def _probe():
    pass

drop_stale_cache(_probe)
"""
CALLER = """
from fastnn.backends._numba_config import jit
from .callee import value

@jit
def f():
    return value()
"""
CALLEE = """
from fastnn.backends._numba_config import jit

@jit(inline="always")
def value():
    return {}
"""


def _run(root, cache):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", "import kpkg.caller as c; print(c.f())"], env=env,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def test_editing_an_inlined_helper_recompiles_its_callers(tmp_path):
    pkg = tmp_path / "kpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent(INIT))
    (pkg / "caller.py").write_text(textwrap.dedent(CALLER))
    (pkg / "callee.py").write_text(textwrap.dedent(CALLEE.format("1.0")))
    cache = tmp_path / "cache"
    assert _run(tmp_path, cache) == 1.0
    assert any(n.startswith("caller.f") and n.endswith(".nbi")
               for _, _, files in os.walk(cache) for n in files), "nothing was cached"
    assert _run(tmp_path, cache) == 1.0  # loaded from the cache
    (pkg / "callee.py").write_text(textwrap.dedent(CALLEE.format("2.0")))
    assert _run(tmp_path, cache) == 2.0
