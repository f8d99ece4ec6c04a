"""Files that survive a crash: atomic ``.npz`` writes and training checkpoints.

:func:`atomic_savez` writes a temporary file in the target's folder, flushes
and fsyncs it, then renames it over the target with :func:`os.replace` (atomic
on POSIX and Windows) and fsyncs the folder.  A process killed at any moment
leaves either the old file or the new one at the target path, never a mix; at
worst a stale ``.<name>.tmp-*.npz`` file next to it, which
:func:`remove_stale_temps` deletes once its writer is gone.

Several processes may write next to the same target: each temporary file is
named after its writer (process id, a hash of the host name, random bytes),
created with ``O_EXCL`` and the mode ``0o666`` less the umask (what ``open``
gives), and held under an exclusive ``flock`` while it exists.  A temporary
file is removed as stale only when its writer is known to be dead: a process
id of this host that no longer runs, or (another host's, or an unparsable
name) a file older than :data:`STALE_AGE` seconds whose lock is free.

Reading is bounded before anything is allocated (:func:`read_archive`): the
zip directory and each ``.npy`` header are read first; a member whose declared
size does not fit in the bytes it occupies (stored members) or in
:data:`MAX_DEFLATE_RATIO` times them (deflated ones) is refused, as is any
member the metadata does not call for (never inflated) and metadata nested
deeper than :data:`MAX_META_DEPTH`.

A checkpoint (written by ``Model.fit(..., checkpoint=PATH)``) is one such file
holding the parameters, the optimizer's state (``state_dict``), the shuffle
generator's ``bit_generator.state`` (as JSON), the epoch and step counters,
the fit options, a fingerprint of the training data, and the history.
:func:`read_checkpoint` refuses anything truncated, corrupted, of another
format or version, or malformed, with a :class:`~fastnn.errors.FastnnValueError`.
"""

import glob
import hashlib
import json
import math
import os
import re
import secrets
import socket
import time
import zipfile
import zlib
from dataclasses import dataclass

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

import numpy as np

from .errors import FastnnValueError

FORMAT = "fastnn.Checkpoint"
VERSION = 1


def _after_temp_written(tmp):
    """Called by :func:`atomic_savez` with the temporary file's path once it is complete
    and fsynced, just before the rename (the worst moment for a non-atomic writer).

    A no-op: a seam for tests, which replace this module attribute (in a child
    process) to kill or stop the writer there.
    """

#: A temporary file of another host (or of an unknown writer) is stale only when
#: older than this many seconds and not locked.
STALE_AGE = 3600
#: zlib's largest compression ratio: a deflated member declaring more bytes than
#: this many times its compressed size is refused before it is inflated.
MAX_DEFLATE_RATIO = 1032
#: Deepest nesting of lists and objects accepted in the JSON metadata.
MAX_META_DEPTH = 16


def npz_path(path):
    """``path`` as ``np.savez`` names it: with ``.npz`` appended when missing."""
    path = os.fspath(path)
    return path if path.endswith(".npz") else path + ".npz"


def _temp_prefix(path):
    return "." + os.path.basename(path) + ".tmp-"


def _host_tag():
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


_TEMP_NAME = re.compile(r"-(\d+)-([0-9a-f]{8})-[0-9a-f]{16}\.npz$")


def _create_temp(path):
    """A new temporary file next to ``path``, named after this writer, locked: ``(fd, name)``."""
    folder = os.path.dirname(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(folder, f"{_temp_prefix(path)}{os.getpid()}-{_host_tag()}-"
                                   f"{secrets.token_hex(8)}.npz")
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for open()
        except FileExistsError:
            continue
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        return fd, tmp


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
    fd, tmp = _create_temp(path)
    fh = os.fdopen(fd, "wb")
    try:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
        if os.name != "posix":  # Windows cannot rename an open file
            fh.close()
        _after_temp_written(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        fh.close()  # releases the lock, after the rename on POSIX
    _fsync_dir(folder)
    return path


def _writer_alive(tmp):
    """Whether the writer of the temporary file ``tmp`` may still be running."""
    found = _TEMP_NAME.search(os.path.basename(tmp))
    if found and found.group(2) == _host_tag() and os.name == "posix":
        pid = int(found.group(1))
        if pid == os.getpid():
            return True
        try:
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return False
        except OSError:  # PermissionError: it exists, under another user
            return True
        return True
    try:  # another host's or an unknown writer: old enough, and not locked
        if time.time() - os.path.getmtime(tmp) < STALE_AGE:
            return True
    except OSError:
        return True
    return _locked(tmp)


def _locked(tmp):
    if fcntl is None:
        return False
    try:
        fd = os.open(tmp, os.O_RDONLY)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # releases the lock if taken
    return False


def remove_stale_temps(path):
    """Delete the temporary files that killed writers of ``path`` left next to it.

    A temporary file whose writer may still be running (see the module's
    docstring) is left alone.
    """
    path = npz_path(path)
    folder = os.path.dirname(os.path.abspath(path))
    for tmp in glob.glob(os.path.join(glob.escape(folder), glob.escape(_temp_prefix(path)) + "*.npz")):
        if _writer_alive(tmp):
            continue
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _bad(name, path, why):
    return FastnnValueError(f"{name}: {path!s} is not a readable fastnn file: {why}")


def _open_zip(path, name):
    try:
        return zipfile.ZipFile(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # BadZipFile, OSError, ValueError, ...
        raise _bad(name, path, f"truncated or corrupted ({type(exc).__name__}: {exc})") from exc


def _members(zf, name, path):
    """``{array name: ZipInfo}`` of an ``.npz`` archive, from its directory alone."""
    members = {}
    for info in zf.infolist():
        key = info.filename[:-4] if info.filename.endswith(".npy") else None
        if key is None or key in members:
            raise _bad(name, path, f"unexpected member {info.filename!r}")
        members[key] = info
    return members


def _header(zf, info, size, name, path):
    """``(shape, fortran_order, dtype)`` of a member, after checking that its declared
    size fits in the bytes it occupies; reads only the ``.npy`` header."""
    key = info.filename[:-4]
    ratio = {zipfile.ZIP_STORED: 1, zipfile.ZIP_DEFLATED: MAX_DEFLATE_RATIO}.get(info.compress_type)
    if ratio is None:
        raise _bad(name, path, f"{key}: unsupported compression {info.compress_type}")
    if info.header_offset + info.compress_size > size or info.file_size > ratio * info.compress_size:
        raise _bad(name, path, f"{key}: declares {info.file_size} bytes, more than its "
                               f"{info.compress_size} bytes on disk can hold")
    try:
        with zf.open(info) as fp:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
            else:
                raise ValueError(f".npy format version {version}")
            offset = fp.tell()
    except Exception as exc:
        raise _bad(name, path, f"{key}: bad .npy header ({type(exc).__name__}: {exc})") from exc
    if dtype.hasobject or dtype.kind not in "fU":
        raise _bad(name, path, f"{key}: unexpected dtype {dtype}")
    if offset + math.prod(shape) * dtype.itemsize != info.file_size:
        raise _bad(name, path, f"{key}: its header declares shape {shape} of {dtype}, which does "
                               f"not fit the {info.file_size} bytes the member holds")
    return shape, fortran, dtype


def _read_member(zf, info, name, path):
    try:
        with zf.open(info) as fp:
            return np.lib.format.read_array(fp, allow_pickle=False)
    except Exception as exc:  # zlib.error, BadZipFile (CRC), EOFError, ValueError, ...
        raise _bad(name, path, f"truncated or corrupted ({type(exc).__name__}: {exc})") from exc


def _parse_meta(raw, name, path):
    """The JSON metadata as a dict (None when it is not a JSON object), depth bounded."""
    try:
        meta = json.loads(str(raw)) if raw.shape == () and raw.dtype.kind == "U" else None
    except RecursionError:
        raise _bad(name, path, f"metadata nested deeper than {MAX_META_DEPTH} levels") from None
    except ValueError:
        return None
    stack = [(meta, 1)]
    while stack:
        obj, depth = stack.pop()
        if isinstance(obj, (dict, list)):
            if depth > MAX_META_DEPTH:
                raise _bad(name, path, f"metadata nested deeper than {MAX_META_DEPTH} levels")
            stack.extend((v, depth + 1) for v in (obj.values() if isinstance(obj, dict) else obj))
    return meta if isinstance(meta, dict) else None


def read_archive(path, name, expect=None):
    """``(meta, arrays)`` of an ``.npz`` file written by :func:`atomic_savez`, read bounded.

    Parameters
    ----------
    path : str
    name : str
        The argument named in the errors.
    expect : callable or None
        ``expect(meta)`` (``meta`` the ``__meta__`` member's JSON object, or
        None when there is none or it is not one) returns ``{array name:
        (shape, dtype)}``, the arrays the file must hold, or raises.  The
        archive's member names, and every member's ``.npy`` header, are checked
        against it before any array is read.  ``None``: any float arrays.

    Returns
    -------
    meta : dict or None
    arrays : dict of numpy.ndarray
        Every member but ``__meta__``.

    Raises FileNotFoundError (and the other errors of opening a file) as they
    are; FastnnValueError naming ``name`` for anything else.
    """
    size = os.path.getsize(path)
    with _open_zip(path, name) as zf:
        members = _members(zf, name, path)
        meta_info = members.pop("__meta__", None)
        meta = None
        if meta_info is not None:
            shape, _, dtype = _header(zf, meta_info, size, name, path)
            if shape == () and dtype.kind == "U":
                meta = _parse_meta(_read_member(zf, meta_info, name, path), name, path)
        expected = expect(meta) if expect is not None else None
        if expected is not None and set(members) != set(expected):
            # Refused from the zip directory alone: no unexpected member is inflated.
            raise FastnnValueError(f"{name}: {path!s} holds arrays {sorted(members)}, expected "
                                   f"{sorted(expected)}")
        for key, info in members.items():
            shape, _, dtype = _header(zf, info, size, name, path)
            if expected is None:
                if dtype.kind != "f":
                    raise _bad(name, path, f"{key}: not a floating-point array ({dtype})")
                continue
            want_shape, want_dtype = tuple(expected[key][0]), np.dtype(expected[key][1])
            if shape != want_shape or dtype != want_dtype:
                raise FastnnValueError(f"{name}: {path!s}: {key} has shape {shape} and dtype "
                                       f"{dtype}; expected {want_shape} {want_dtype}")
        arrays = {key: _read_member(zf, info, name, path) for key, info in members.items()}
    return meta, arrays


def read_npz(path, name):
    """All float arrays of an ``.npz`` file (bounded, see :func:`read_archive`) and its
    ``__meta__`` JSON object under the key ``"__meta__"`` when it has one."""
    meta, arrays = read_archive(path, name)
    if meta is not None:
        arrays["__meta__"] = meta
    return arrays


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
    """Shapes, dtypes and CRC-32s of the (validated, C- or F-contiguous) training arrays.

    The CRC is that of the entries in C order: the same data gives the same
    fingerprint whatever its memory layout.
    """
    return {"X": [list(X.shape), X.dtype.str, _crc32_c_order(X)],
            "Y": [list(Y.shape), Y.dtype.str, _crc32_c_order(Y)]}


def _crc32_c_order(A):
    """CRC-32 of the bytes of ``A`` in C order; a non-C-contiguous ``A`` is read a block of
    rows at a time (copies of about 1 MiB, not one of ``A``)."""
    if A.flags.c_contiguous:
        return zlib.crc32(A) & 0xFFFFFFFF
    rows = max(1, (1 << 20) // max(1, A[:1].nbytes))
    crc = 0
    for start in range(0, A.shape[0], rows):
        crc = zlib.crc32(np.ascontiguousarray(A[start:start + rows]), crc)
    return crc & 0xFFFFFFFF


# ---------------------------------------------------------------- read, write


def write_checkpoint(path, meta, arrays):
    """Write ``meta`` (JSON) and ``arrays`` atomically; returns the path written."""
    meta = dict(meta, format=FORMAT, format_version=VERSION)
    return atomic_savez(path, {"__meta__": np.array(json.dumps(meta)), **arrays})


def read_checkpoint(path, name="resume", expect=None):
    """``(meta, arrays)`` of a checkpoint, after the format checks.

    ``expect(meta)``, called once the format and version are checked, gives the
    arrays the file must hold (see :func:`read_archive`).  Raises
    FileNotFoundError when there is no file, FastnnValueError when it is not a
    complete checkpoint of this format and version.
    """
    path = npz_path(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name}: no checkpoint at {path!s}")

    def check(meta):
        if not isinstance(meta, dict):
            raise FastnnValueError(f"{name}: {path!s} has no fastnn checkpoint metadata")
        if meta.get("format") != FORMAT or meta.get("format_version") != VERSION:
            raise FastnnValueError(f"{name}: {path!s} has format {meta.get('format')!r} version "
                                   f"{meta.get('format_version')!r}; expected {FORMAT!r} version {VERSION}")
        return expect(meta) if expect is not None else None

    return read_archive(path, name, check)


def expected_arrays(layer_dims, dtype, slots=()):
    """``{name: (shape, dtype)}`` of the parameters of ``layer_dims`` and of each optimizer slot."""
    out = {}
    for l in range(1, len(layer_dims)):
        out[f"W{l}"] = ((layer_dims[l], layer_dims[l - 1]), dtype)
        out[f"b{l}"] = ((layer_dims[l], 1), dtype)
    keys = list(out)
    for slot in slots:
        for i, key in enumerate(keys):
            out[f"opt.{slot}.{i}"] = out[key]
    return out


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


# ---------------------------------------------------------------- training state
#
# What ``Model.fit(..., checkpoint=PATH)`` writes and ``fit(..., resume=PATH)``
# reads back: ``save_trainer`` builds the metadata and arrays of one training
# state and writes them; ``check_model`` and ``load_trainer`` check a file read
# with :func:`read_checkpoint` against the resuming call and return its state.

#: The training options that must be the same in a resuming call (``backend``,
#: ``epochs`` and ``checkpoint_every`` may differ).
RESUME_MUST_MATCH = ("batch_size", "optimizer", "optimizer_options", "lr", "l2", "scaling",
                     "output_grad", "on_divergence", "shuffle_seed")


@dataclass
class TrainerState:
    """One training state, as saved in a checkpoint.

    ``params`` maps ``W1, b1, ...`` to arrays ``(n_l, n_{l-1})`` / ``(n_l, 1)``;
    ``optimizer`` is the optimizer's ``state_dict`` (``"t"`` and one list of
    arrays, in parameter order, per slot ``"m"``/``"v"``); ``epoch`` counts
    completed epochs, ``steps`` applied steps, ``skips`` consecutive skipped
    steps; ``cost``, ``time`` and ``lr_changes`` are the history so far.
    """
    params: dict
    optimizer: dict
    lr: float
    rng: np.random.Generator
    epoch: int
    steps: int
    skips: int
    cost: list
    time: list
    lr_changes: list


def save_trainer(path, model, fit, fingerprint, state):
    """Write the checkpoint of a training state atomically; returns the path written.

    Parameters
    ----------
    path : path
    model : dict
        The model's description (``layer_dims``, ``hidden``, ``output``,
        ``dtype``, and ``dropout``/``dropout_seed`` when it drops).
    fit : dict
        The fit call's options (``FitOptions.record()``).
    fingerprint : dict
        :func:`data_fingerprint` of the training data.
    state : TrainerState
        Host arrays; the optimizer slots present in ``state.optimizer`` are saved.
    """
    arrays = dict(state.params)
    slots = [s for s in ("m", "v") if s in state.optimizer]
    for slot in slots:
        for i, a in enumerate(state.optimizer[slot]):
            arrays[f"opt.{slot}.{i}"] = a
    meta = {
        "model": model,
        "fit": fit,
        "state": {"epoch": state.epoch, "steps": state.steps, "skips": state.skips,
                  "lr": state.lr, "optimizer_t": int(state.optimizer["t"]), "optimizer_slots": slots,
                  "rng": rng_state(state.rng)},
        "data": fingerprint,
        "history": {"cost": state.cost, "time": state.time, "lr_changes": state.lr_changes},
    }
    return write_checkpoint(path, meta, arrays)


def check_model(meta, spec, path):
    """Refuse a checkpoint whose model description differs from ``spec`` (a JSON-like dict)."""
    theirs = field(meta, "model", dict, "resume", path)
    if theirs != spec:
        raise FastnnValueError(f"resume: checkpoint {path} is for a model {theirs}; this model is {spec}")


def load_trainer(path, meta, arrays, *, spec, fingerprint, fit, slots, check_lr):
    """The :class:`TrainerState` of a checkpoint read with :func:`read_checkpoint`,
    checked against the resuming call.

    Parameters
    ----------
    path : path
        For the messages.
    meta, arrays
        What :func:`read_checkpoint` returned.
    spec : dict
        The model's description, as :func:`save_trainer` takes it (JSON-like).
    fingerprint : dict
        :func:`data_fingerprint` of this call's data.
    fit : dict
        This call's options; those in :data:`RESUME_MUST_MATCH` must equal the
        checkpoint's (a ``"<Generator>"`` shuffle seed matches any).
    slots : sequence of str
        The optimizer's slots: the checkpoint may hold no others.
    check_lr : callable
        ``check_lr(lr)`` validates the stored learning rate (raises ValueError/TypeError).

    Raises
    ------
    FastnnValueError
        When the checkpoint belongs to another model, data or options, or is inconsistent.
    """
    f = lambda dotted, kind: field(meta, dotted, kind, "resume", path)  # noqa: E731
    check_model(meta, spec, path)
    if f("data", dict) != json.loads(json.dumps(fingerprint)):
        raise FastnnValueError(f"resume: X and Y differ from the data checkpoint {path} was "
                               "trained on (shape, dtype or contents)")
    _check_same_options(f("fit", dict), fit, path)
    epoch, steps, skips = f("state.epoch", int), f("state.steps", int), f("state.skips", int)
    lr, t = f("state.lr", float), f("state.optimizer_t", int)
    stored_slots = f("state.optimizer_slots", list)
    cost, times = f("history.cost", list), f("history.time", list)
    changes = f("history.lr_changes", list)
    if min(epoch, steps, skips, t) < 0 or len(cost) != epoch or len(times) != epoch or \
            not all(isinstance(c, (int, float)) for c in cost + times) or \
            not all(isinstance(c, dict) for c in changes) or not set(stored_slots) <= set(slots):
        raise FastnnValueError(f"resume: checkpoint {path} has inconsistent counters or history")
    try:
        lr = check_lr(lr)
    except (ValueError, TypeError) as exc:
        raise FastnnValueError(f"resume: checkpoint {path} holds a bad learning rate ({exc})") from None
    rng = rng_from_state(f("state.rng", dict), "resume", path)
    expected = expected_arrays(spec["layer_dims"], np.dtype(spec["dtype"]), stored_slots)
    checked = checked_arrays(arrays, expected, "resume", path)
    n = 2 * (len(spec["layer_dims"]) - 1)
    params = {k: checked[k] for k in list(expected)[:n]}
    optimizer = {"t": t}
    for slot in stored_slots:
        optimizer[slot] = [checked[f"opt.{slot}.{i}"] for i in range(n)]
    return TrainerState(params, optimizer, lr, rng, epoch, steps, skips, [float(c) for c in cost],
                        [float(c) for c in times], list(changes))


def _check_same_options(stored, mine, path):
    for key in RESUME_MUST_MATCH:
        ours, theirs = mine[key], stored.get(key, "<missing>")
        if key == "shuffle_seed" and "<Generator>" in (ours, theirs):
            continue
        if ours != theirs:
            raise FastnnValueError(f"resume: checkpoint {path} was written with {key}={theirs!r}, "
                                   f"this call has {key}={ours!r}; continue with the same options")


def checked_arrays(arrays, expected, name, path):
    """``arrays`` with exactly the keys, shapes and dtypes of ``expected`` (``{key: (shape,
    dtype)}``), all finite, C-contiguous."""
    if set(arrays) != set(expected):
        raise FastnnValueError(f"{name}: {path} holds arrays {sorted(arrays)}, expected {sorted(expected)}")
    out = {}
    for k, (shape, dtype) in expected.items():
        arr = arrays[k]
        if arr.shape != tuple(shape) or arr.dtype != dtype:
            raise FastnnValueError(f"{name}: {path}: {k} has shape {arr.shape} and dtype {arr.dtype}; "
                                   f"expected {tuple(shape)} {np.dtype(dtype)}")
        if not np.isfinite(arr).all():
            raise FastnnValueError(f"{name}: {path}: {k} contains NaN or Inf")
        out[k] = np.ascontiguousarray(arr)
    return out
