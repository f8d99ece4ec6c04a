"""Files that survive a crash: atomic ``.npz`` writes and training checkpoints.

:func:`atomic_savez` writes a temporary file in the target's folder, flushes
and fsyncs it, then renames it over the target with :func:`os.replace` (atomic
on POSIX and Windows) and fsyncs the folder.  A process killed at any moment
leaves either the old file or the new one at the target path, never a mix; at
worst a stale ``.<name>.tmp-*.npz`` file next to it, which
:func:`remove_stale_temps` deletes.

A checkpoint (written by ``Model.fit(..., checkpoint=PATH)``) is one such file
holding the parameters, the optimizer's state (``state_dict``), the shuffle
generator's ``bit_generator.state`` (as JSON), the epoch and step counters,
the fit options, a fingerprint of the training data, and the history.
:func:`read_checkpoint` refuses anything truncated, corrupted, of another
format or version, or malformed, with a :class:`~fastnn.errors.FastnnValueError`.
"""

import glob
import json
import os
import signal
import tempfile
import zlib

import numpy as np

from .errors import FastnnValueError

FORMAT = "fastnn.Checkpoint"
VERSION = 1

#: Test-only fault injection (private): when this environment variable holds
#: an integer N, the N-th :func:`atomic_savez` call of the process kills the
#: process with SIGKILL after the temporary file is complete and fsynced, just
#: before the rename -- the worst moment for a non-atomic writer.
_KILL_HOOK = "_FASTNN_TEST_KILL_BEFORE_REPLACE"
_writes = 0


def npz_path(path):
    """``path`` as ``np.savez`` names it: with ``.npz`` appended when missing."""
    path = os.fspath(path)
    return path if path.endswith(".npz") else path + ".npz"


def _temp_prefix(path):
    return "." + os.path.basename(path) + ".tmp-"


def _test_hook():
    global _writes
    _writes += 1
    target = os.environ.get(_KILL_HOOK)
    if target and target.isdigit() and _writes == int(target):
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_savez(path, arrays):
    """``np.savez`` to a temporary file in the target folder, fsync, ``os.replace``, fsync the folder.

    Returns the path written (with ``.npz`` appended when missing).
    """
    path = npz_path(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        _test_hook()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)
    return path


def remove_stale_temps(path):
    """Delete the temporary files a killed :func:`atomic_savez` left next to ``path``."""
    path = npz_path(path)
    folder = os.path.dirname(os.path.abspath(path))
    for tmp in glob.glob(os.path.join(glob.escape(folder), glob.escape(_temp_prefix(path)) + "*.npz")):
        try:
            os.unlink(tmp)
        except OSError:
            pass


def read_npz(path, name):
    """All arrays of an ``.npz`` file; anything unreadable is a FastnnValueError naming ``name``."""
    try:
        # The file is opened here so that it is closed also when NumPy refuses it.
        with open(path, "rb") as fh:
            data = np.load(fh, allow_pickle=False)
            if not hasattr(data, "files"):
                raise ValueError("not an .npz archive")
            with data:
                return {k: data[k] for k in data.files}
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except MemoryError:
        raise
    except Exception as exc:  # BadZipFile, zlib.error, EOFError, ValueError, OSError, ...
        raise FastnnValueError(f"{name}: {path!s} is not a readable fastnn file: truncated or "
                               f"corrupted ({type(exc).__name__}: {exc})") from exc


# ----------------------------------------------------------------- JSON parts


def _encode(obj):
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": obj.dtype.str}
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _decode(obj):
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__", "dtype"}:
            return np.array(obj["__ndarray__"], dtype=np.dtype(obj["dtype"]))
        return {k: _decode(v) for k, v in obj.items()}
    return obj


def rng_state(rng):
    """``rng.bit_generator.state`` as a JSON-serialisable dict."""
    return _encode(rng.bit_generator.state)


def rng_from_state(state, name="resume", path=""):
    """A ``numpy.random.Generator`` whose bit generator has exactly ``state``."""
    try:
        cls = getattr(np.random, state["bit_generator"])
        if not (isinstance(cls, type) and issubclass(cls, np.random.BitGenerator)):
            raise TypeError(f"{state['bit_generator']!r} is not a bit generator")
        bit_generator = cls()
        bit_generator.state = _decode(state)
    except Exception as exc:
        raise FastnnValueError(f"{name}: checkpoint {path} holds a malformed shuffle generator state "
                               f"({type(exc).__name__}: {exc})") from exc
    return np.random.Generator(bit_generator)


def data_fingerprint(X, Y):
    """Shapes, dtypes and CRC-32s of the (validated, C-contiguous) training arrays."""
    return {"X": [list(X.shape), X.dtype.str, zlib.crc32(X) & 0xFFFFFFFF],
            "Y": [list(Y.shape), Y.dtype.str, zlib.crc32(Y) & 0xFFFFFFFF]}


# ---------------------------------------------------------------- read, write


def write_checkpoint(path, meta, arrays):
    """Write ``meta`` (JSON) and ``arrays`` atomically; returns the path written."""
    meta = dict(meta, format=FORMAT, format_version=VERSION)
    return atomic_savez(path, {"__meta__": np.array(json.dumps(meta)), **arrays})


def read_checkpoint(path, name="resume"):
    """``(meta, arrays)`` of a checkpoint, after the format checks.

    Raises FileNotFoundError when there is no file, FastnnValueError when it is
    not a complete checkpoint of this format and version.
    """
    path = npz_path(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name}: no checkpoint at {path!s}")
    arrays = read_npz(path, name)
    raw = arrays.pop("__meta__", None)
    try:
        meta = json.loads(str(raw)) if raw is not None and raw.shape == () else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise FastnnValueError(f"{name}: {path!s} has no fastnn checkpoint metadata")
    if meta.get("format") != FORMAT or meta.get("format_version") != VERSION:
        raise FastnnValueError(f"{name}: {path!s} has format {meta.get('format')!r} version "
                               f"{meta.get('format_version')!r}; expected {FORMAT!r} version {VERSION}")
    return meta, arrays


def field(meta, dotted, kind, name="resume", path=""):
    """``meta["a"]["b"]`` for ``dotted == "a.b"``, checked to be an instance of ``kind``."""
    value = meta
    try:
        for part in dotted.split("."):
            value = value[part]
    except (KeyError, TypeError, IndexError):
        raise FastnnValueError(f"{name}: checkpoint {path} lacks the field {dotted!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FastnnValueError(f"{name}: checkpoint {path} field {dotted!r} has the wrong type "
                               f"({type(value).__name__})")
    return value
