"""Crash-safe output, used by every writer: a temp file in the target's folder, fsync, rename, fsync
of the folder; an exclusive lock on the input while it is edited; clean-up of temp files left by
dead processes; and byte-range copies that let the kernel move the bytes.

Output targets: `-o` names a regular file or nothing yet. A device, FIFO, socket or directory is
refused (OutputError, exit 4) before anything is written, and again just before the rename. A
symlink is followed: the file it names is replaced and the link kept. Replacing an existing file
keeps its mode and owner (as `cp` does); a new file gets the input's mode.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from varctl.errors import OutputError, UnreadableModel

TEMP_PREFIX = ".varctl-"
COPY_CHUNK = 1 << 20


def check_target(target: str) -> os.stat_result | None:
    """The stat of the file `target` names (None if it does not exist yet).

    Raises:
        OutputError: the target exists and is not a regular file (device, FIFO, socket, directory).
    """
    real = os.path.realpath(target)
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise OutputError(f"cannot write '{target}': {e.strerror or e}") from e
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a directory"
            if stat.S_ISDIR(st.st_mode)
            else "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "not a regular file"
        )
        raise OutputError(
            f"cannot write '{target}': it is {kind}, not a regular file (nothing written)",
            hint="give -o the path of a new or existing regular file",
        )
    return st


def temp_path(folder: str, suffix: str) -> str:
    """A new empty temp file in `folder`, named so that _remove_orphans finds it if we die."""
    import tempfile  # here: the readers import this module, and only writers need tempfile (1.3 ms)

    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=suffix, dir=folder)
    os.close(fd)
    return tmp


@contextmanager
def atomic_output(target: str, like: str, check: Callable[[str], None] | None = None) -> Iterator[str]:
    """Yield a temp path in the target's folder; on success fsync it and rename it over `target`.

    The original file (and `target`, if it exists) is untouched on any failure, and the temp file
    is removed. `check(temp_path)` runs on the finished temp file before the rename. A `target`
    that is a symlink is resolved, so the link is kept and its file replaced.
    """
    real = os.path.realpath(target)
    existing = check_target(target)
    folder = os.path.dirname(real) or "."
    remove_orphans(folder)
    try:
        # The temp name keeps the target's extension: Keras only loads `.keras` files by name.
        tmp = temp_path(folder, f".tmp{os.path.splitext(real)[1]}")
    except OSError as e:
        raise OutputError(f"cannot write in '{folder}': {e.strerror or e}") from e
    try:
        yield tmp
        if check is not None:
            check(tmp)
        st = existing if existing is not None else os.stat(like)
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        with contextlib.suppress(OSError):  # not permitted: keep our own ownership
            os.chown(tmp, st.st_uid, st.st_gid)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        check_target(target)  # again: it may have become a FIFO or a device meanwhile
        os.replace(tmp, real)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        unlink(tmp)
        raise OutputError(f"cannot write '{target}': {e.strerror or e}") from e
    except BaseException:
        unlink(tmp)
        raise


def remove_orphans(folder: str) -> None:
    """Delete temp files left by varctl processes that died mid-write (kill -9, power loss).

    Temp names carry the writer's pid; a file whose process is gone is an orphan. A live
    process's file is never touched.
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not name.startswith(TEMP_PREFIX):
            continue
        pid_text = name[len(TEMP_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            unlink(os.path.join(folder, name))
        except PermissionError:
            pass  # alive, another user's


def unlink(path: str) -> None:
    with suppress(OSError):
        os.unlink(path)


def copy_range(fsrc: Any, fdst: Any, start: int, length: int) -> None:
    """Copy bytes [start, start + length) of `fsrc` to where `fdst` stands, and move `fdst` past them."""
    done = _kernel_copy(fsrc, fdst, start, length)
    fsrc.seek(start + done)
    left = length - done
    while left > 0:
        chunk = fsrc.read(min(COPY_CHUNK, left))
        if not chunk:
            raise OutputError("the input file changed or shrank while it was being copied")
        fdst.write(chunk)
        left -= len(chunk)


def copy_file(src: str, dst: str) -> None:
    """Copy the whole of `src` over `dst` (kernel copy where it can)."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        copy_range(fin, fout, 0, os.fstat(fin.fileno()).st_size)


def _kernel_copy(fsrc: Any, fdst: Any, start: int, length: int) -> int:
    """As much of the range as os.copy_file_range copies (0 where it is missing or refuses).

    The kernel moves the bytes without a trip through Python (and shares extents on filesystems
    that can): the weights are nearly all of a model file.
    """
    copy_file_range = getattr(os, "copy_file_range", None)
    if copy_file_range is None or length <= 0:
        return 0
    try:
        src_fd, dst_fd = fsrc.fileno(), fdst.fileno()
    except (AttributeError, OSError, ValueError):
        return 0
    fdst.flush()
    at = fdst.tell()
    done = 0
    try:
        while done < length:
            n = copy_file_range(src_fd, dst_fd, min(length - done, 1 << 30), start + done, at + done)
            if n == 0:  # end of the input: the caller's read loop reports the shrunken file
                break
            done += n
    except OSError as e:
        if e.errno in (28, 122):  # ENOSPC, EDQUOT: the read/write loop would fail the same way
            raise
        # EXDEV, ENOSYS, EINVAL on some filesystems: the read/write loop does the rest
    fdst.seek(at + done)
    return done


class Guard:
    """Held while a model is read, planned and rewritten: an exclusive lock on the input file and
    the stat snapshot that proves nobody else changed it meanwhile."""

    def __init__(self, path: str, fd: int) -> None:
        self.path, self.fd = path, fd
        self.snapshot = _identity(os.fstat(fd))

    def check_unchanged(self) -> None:
        try:
            now = _identity(os.stat(self.path))
        except OSError as e:
            raise OutputError(f"'{self.path}' disappeared during the run; nothing written") from e
        if now != self.snapshot:
            raise OutputError(f"'{self.path}' was changed by someone else during the run; nothing written")


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@contextmanager
def locked(path: str, *, shared: bool = False) -> Iterator[Guard]:
    """Lock `path` for editing (flock, non-blocking): a second varctl editing it gets an error.

    `shared`: the input is only read (`-o` elsewhere): several such edits may read it at once, but
    not while one replaces it (`--in-place` takes the lock exclusively)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not hang us
    except OSError as e:
        reason = "no such file" if isinstance(e, FileNotFoundError) else (e.strerror or str(e)).lower()
        raise UnreadableModel(f"cannot open '{path}': {reason}") from e
    try:
        for _ in range(3):
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OutputError(
                    f"'{path}' is being edited by another varctl process", hint="try again when it is done"
                ) from None
            # The other process may have renamed a new file over the path while we waited for the
            # lock on the old one: lock what the path names now.
            if _identity(os.fstat(fd))[:2] == _identity(os.stat(path))[:2]:
                break
            os.close(fd)
            fd = os.open(path, os.O_RDONLY)
        yield Guard(path, fd)
    finally:
        os.close(fd)
