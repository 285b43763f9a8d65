"""Files that a bundle or a checkpoint names, read and written as untrusted data.

A bundle and a checkpoint come from someone else. Every path string one of their files holds
(a manifest entry, a ``modules.json`` path, a graph name that becomes a file name) turns into a
file here, in ``inside``, and nowhere else:

- it must be relative, in normal form (``onnx/model.onnx``: no ``.`` or ``..`` parts, no empty
  parts, no backslash, no drive), and
- after resolving the symlinks of the folders it passes through, it must still be inside the
  root. The last part may itself be a symlink (the Hub cache links each file to a blob
  elsewhere): what a path names is checked, not where its bytes live.

Reading: ``read_json_file`` and ``read_text_file`` open only regular files (never a FIFO or a
device), refuse files over a size limit, decode strict UTF-8 and bound JSON nesting, and raise
the error class the caller names with what was wrong and how to fix it.

Writing: ``write_bytes_atomic`` writes a temp file beside the target and renames it;
``exchange`` swaps two directories in one step where the OS can; ``writer_lock`` keeps two
writers of one bundle apart; ``scratch_beside`` makes a temp folder beside (never inside) a
bundle, tagged with the owner's pid so that the next writer can remove what a killed one left.

May import only ``runtime.errors`` and the standard library.

>>> inside("bundle", "onnx/model.onnx", what="variants.fp32.files.model")
PosixPath('bundle/onnx/model.onnx')
>>> inside("bundle", "../secret", what="variants.fp32.files.model")  # doctest: +ELLIPSIS
Traceback (most recent call last):
    ...
runtime.errors.UnsafePathError: variants.fp32.files.model names '../secret', which has a ...
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import logging
import math
import os
import re
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import BundleBusyError, BundleError, EdgeportError, UnsafePathError

# JSON files of a bundle or checkpoint: the largest tokenizer.json files on the Hub are about
# 35 MB (Gemma 3's); a manifest or config is a few kB.
MAX_JSON_BYTES = 256 * 2**20
MAX_JSON_DEPTH = 64
_PATH_HINT = ("Note: a path in a bundle or checkpoint file must be relative and stay inside its "
              "folder, like 'onnx/model.onnx'.")


# --- paths ------------------------------------------------------------------------------------
def check_relative(relative: Any, *, what: str) -> PurePosixPath:
    """``relative`` as a path in normal form, or an UnsafePathError naming ``what`` (the entry
    that holds it). Looks at the string only, never at the disk."""
    if not isinstance(relative, str):
        raise UnsafePathError(f"{what} must be a path string, got {type(relative).__name__}. "
                              + _PATH_HINT)
    problem = None
    if not relative:
        problem = "is empty"
    elif "\x00" in relative:
        problem = "holds a NUL character"
    elif "\\" in relative:
        problem = "holds a backslash (use '/')"
    elif relative.startswith("/"):
        problem = "is absolute"
    elif re.match(r"^[A-Za-z]:", relative):
        problem = "starts with a drive"
    elif ".." in relative.split("/"):
        problem = "has a '..' part"
    elif str(PurePosixPath(relative)) != relative or "." in relative.split("/"):
        problem = f"is not in normal form (write {str(PurePosixPath(relative))!r})"
    if problem:
        raise UnsafePathError(f"{what} names {relative[:200]!r}, which {problem}. " + _PATH_HINT)
    return PurePosixPath(relative)


def inside(root: str | os.PathLike, relative: Any, *, what: str,
           directory: bool = False) -> Path:
    """The file (or, with ``directory``, the folder) that ``relative`` names under ``root``:
    ``root / relative``, once checked.

    The folders on the way are resolved: one that is a symlink leading out of ``root`` is an
    UnsafePathError, like a ``..`` part. With ``directory``, the path is resolved whole, since a
    folder that is a symlink would lead all its files elsewhere. The file need not exist.
    """
    parts = check_relative(relative, what=what)
    base = Path(root).resolve()
    target = base.joinpath(*parts.parts)
    resolved = target.resolve() if directory else target.parent.resolve() / target.name
    if resolved != base and base not in resolved.parents:
        kind = "folder" if directory else "path"
        raise UnsafePathError(
            f"{what} names {relative!r}, a {kind} that a symlink leads outside {Path(root)}. "
            + _PATH_HINT)
    return Path(root).joinpath(*parts.parts)  # in the caller's form, for its messages


def safe_name(name: Any, *, what: str) -> str:
    """A name that becomes part of a file name (a graph or variant name): letters, digits, '-',
    '_' and '.', not starting with '.' or '-'."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", name):
        raise UnsafePathError(
            f"{what} {str(name)[:80]!r} is not usable as a file name. Note: use letters, digits, "
            "'-', '_' and '.' (not first), at most 128 characters.")
    return name


# --- reading ----------------------------------------------------------------------------------
def read_bytes_file(path: str | os.PathLike, what: str, *, error: type[EdgeportError] = BundleError,
                    max_bytes: int = MAX_JSON_BYTES, missing: type[EdgeportError] | None = None
                    ) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; ``error`` otherwise (``missing``
    when it does not exist). A FIFO, device or folder is refused without reading it."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise (missing or error)(f"{what} is missing: {path} does not exist.") from None
    except IsADirectoryError:
        raise error(f"{what} at {path} is a folder, not a file.") from None
    except OSError as exc:
        raise error(f"{what} at {path} cannot be opened: {exc.strerror}.") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # a folder opens too, on Linux
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise error(f"{what} at {path} is {kind}. Note: it must be a plain file.")
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > max_bytes:
            raise error(f"{what} at {path} is {info.st_size:,} bytes, over the limit of "
                        f"{max_bytes:,}. Note: the file is not what it should be; replace it.")
        data = handle.read(info.st_size + 1)  # one byte more: a file still growing is seen
    if len(data) > info.st_size:
        raise error(f"{what} at {path} grew while it was read. Note: read it again once "
                    "whatever writes it has finished.")
    return data


def read_text_file(path: str | os.PathLike, what: str, *, error: type[EdgeportError] = BundleError,
                   max_bytes: int = MAX_JSON_BYTES, missing: type[EdgeportError] | None = None
                   ) -> str:
    """``read_bytes_file`` decoded as strict UTF-8."""
    data = read_bytes_file(path, what, error=error, max_bytes=max_bytes, missing=missing)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} at {path} is not UTF-8 text (byte {exc.start}). Note: the file is "
                    "corrupt or not the file it should be; replace it.") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str, what: str, *, error: type[EdgeportError] = BundleError,
               max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Strict JSON (no NaN or Infinity) nested at most ``max_depth`` deep; ``error`` otherwise."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise error(f"{what} is nested too deeply to be read. Note: the file is damaged or "
                    "crafted; replace it.") from None
    except ValueError as exc:
        raise error(f"{what} is not valid JSON ({str(exc)[:200]}). Note: the file is corrupt or "
                    "was edited by hand; replace it.") from None
    if _depth_over(value, max_depth):
        raise error(f"{what} is nested more than {max_depth} levels deep. Note: the file is "
                    "damaged or crafted; replace it.")
    return value


def _depth_over(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in item
                         if isinstance(child, (dict, list)))
    return False


def read_json_file(path: str | os.PathLike, what: str, *, error: type[EdgeportError] = BundleError,
                   max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH,
                   missing: type[EdgeportError] | None = None, expect: type | None = None) -> Any:
    """A JSON file read within bounds; with ``expect`` (dict, list), of that type."""
    text = read_text_file(path, what, error=error, max_bytes=max_bytes, missing=missing)
    value = parse_json(text, f"{what} at {path}", error=error, max_depth=max_depth)
    if expect is not None and not isinstance(value, expect):
        wanted = {dict: "a JSON object", list: "a JSON array"}.get(expect, expect.__name__)
        raise error(f"{what} at {path} holds {json_kind(value)}, not {wanted}. Note: the file is "
                    "damaged or not the file it should be; replace it.")
    return value


def json_kind(value: Any) -> str:
    """What JSON value ``value`` is, for messages: "a JSON object", "a string", "null", ..."""
    return {dict: "a JSON object", list: "a JSON array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def finite(value: Any) -> bool:
    """Whether ``value`` is a real number that is not NaN or infinite (bools are not numbers)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


# --- writing ----------------------------------------------------------------------------------
def umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file (or a folder's entries) to disk, where the OS allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temp file of a random name beside ``path``, flush it, then rename: readers
    never see half a file (a manifest, a report, a TensorRT plan), and a symlink planted at a
    predictable name cannot redirect the write (mkstemp opens with O_EXCL)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; a bundle is for sharing
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_path(path.parent)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """``write_bytes_atomic`` of UTF-8 text."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """``write_bytes_atomic`` of indented JSON."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def _renameat2():
    """libc's renameat2 (Linux 3.15+, glibc 2.28+), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _renamex_np():
    """macOS's renamex_np (10.12+), or None."""
    if sys.platform != "darwin":
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renamex_np
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_AT_FDCWD, _RENAME_EXCHANGE, _RENAME_SWAP = -100, 2, 2


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap two existing paths in one atomic step (Linux renameat2 RENAME_EXCHANGE, macOS
    renamex_np RENAME_SWAP). False when the OS or file system cannot; nothing moved then."""
    a, b = os.fsencode(os.fspath(a)), os.fsencode(os.fspath(b))
    linux, mac = _renameat2(), _renamex_np()
    if linux is not None:
        result = linux(_AT_FDCWD, a, _AT_FDCWD, b, _RENAME_EXCHANGE)
    elif mac is not None:
        result = mac(a, b, _RENAME_SWAP)
    else:
        return False
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), os.fsdecode(a))


# --- writers of one bundle ---------------------------------------------------------------------
LOCK_NAME = ".edgeport.lock"
# How long a writer waits for another writer of the same bundle before saying it is busy: a
# quantize of a large model takes minutes.
WRITER_WAIT = 600.0


@contextlib.contextmanager
def writer_lock(folder: str | os.PathLike, *, wait: float | None = None) -> Iterator[None]:
    """Hold the writer lock of a bundle folder (an fcntl lock on ``.edgeport.lock`` beside its
    manifest): a second writer waits up to ``wait`` seconds (``WRITER_WAIT`` when None), then
    is told the bundle is busy.
    Readers take no lock. A folder that was replaced while waiting (``export --overwrite``) is
    locked anew. Where fcntl does not exist (Windows), writers are not kept apart."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    folder = Path(folder)
    path = folder / LOCK_NAME
    wait = WRITER_WAIT if wait is None else wait
    deadline = time.monotonic() + wait
    waited = False
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_CLOEXEC", 0), 0o666 & ~umask())
        except OSError as exc:
            raise BundleError(
                f"Cannot take the writer lock {path}: {exc.strerror}. Note: writing a bundle "
                "needs write access to its folder.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if not waited and wait > 0:
                logging.getLogger("edgeport").warning(
                    "%s is being written by another edgeport process; waiting up to %.0f s",
                    folder, wait)
                waited = True
            if time.monotonic() >= deadline:
                raise BundleBusyError(
                    f"The bundle {folder} is busy: another edgeport process is writing it. "
                    "Note: wait for it to finish, then run this again.") from None
            time.sleep(0.05)
            continue
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
        except OSError:
            same = False
        if same:
            break
        os.close(fd)  # the folder was replaced while we waited: lock the new one
    try:
        yield
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process of that id exists (a reused id reads as alive: nothing is removed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def scratch_beside(target: str | os.PathLike, kind: str) -> Path:
    """A new temp folder beside ``target`` (same file system: the final move is a rename),
    named ``.<target>.<kind>-<pid>-<random>``. What such folders a dead process left is removed
    first (see ``remove_stale``)."""
    target = Path(target).absolute()
    remove_stale(target, kind)
    path = Path(tempfile.mkdtemp(prefix=f".{target.name}.{kind}-{os.getpid()}-",
                                 dir=target.parent))
    os.chmod(path, 0o777 & ~umask())  # mkdtemp makes 0700
    return path


def remove_stale(target: str | os.PathLike, kind: str) -> None:
    """Remove ``.<target>.<kind>-<pid>-*`` folders beside ``target`` whose process is gone."""
    target = Path(target).absolute()
    pattern = re.compile(re.escape(f".{target.name}.{kind}-") + r"(\d+)-[^/]*$")
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            match = pattern.match(entry.name)
            if match and not pid_alive(int(match.group(1))):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
