"""Fault injection for the checkpoint tests, run inside the child processes they spawn.

``INSTALL`` is Python source a child script starts with: it replaces
``fastnn.checkpoint._after_temp_written`` (a no-op seam in production) by a hook that,
on the N-th write of the process, sends the process SIGKILL (``KILL_AT=N`` in its
environment) or SIGSTOP (``STOP_AT=N``) after the temporary file is complete and
fsynced, just before the rename.
"""

#: Environment variables of the child: the write (1-based) at which to kill or stop it.
KILL_AT = "FAULT_KILL_AT_WRITE"
STOP_AT = "FAULT_STOP_AT_WRITE"

INSTALL = r'''
import os as _os, signal as _signal
from fastnn import checkpoint as _ckpt
_writes = [0]

def _fault_hook(tmp):
    _writes[0] += 1
    for var, sig in (("%s", _signal.SIGKILL), ("%s", _signal.SIGSTOP)):
        if _os.environ.get(var) == str(_writes[0]):
            _os.kill(_os.getpid(), sig)

_ckpt._after_temp_written = _fault_hook
''' % (KILL_AT, STOP_AT)
