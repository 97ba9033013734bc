"""Static reads run in a forked child with a time and memory limit: a crash or hang of the HDF5 C library
on a malformed file becomes one clean error line, not a dead or stuck varctl.

Fork only (no exec): the child is this process, modules already imported, so the cost is the fork
itself (README "Safety" has the figures). The child sends back a pickle of our own plain data
(ModelInfo, tuples, dicts) or of the exception it raised; the parent unpickles it with an allowlist
of classes, so even a child that a file managed to subvert cannot make the parent run code.

VARCTL_NO_SANDBOX=1 runs readers in-process (for debugging, e.g. under pdb); VARCTL_READ_TIMEOUT
(seconds, default 60) and VARCTL_READ_MEMORY_MB (growth allowed over the parent's address space,
default 4096) tune the limits.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import io
import os
import pickle
import select
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from varctl.errors import OutputError, UnreadableModel, UnsafeFile, VarctlError

try:  # imported here, not in the child: the child imports nothing
    import resource
except ImportError:  # not Unix
    resource = None  # type: ignore[assignment]

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MEMORY_MB = 4096
# The child's answer is our metadata: a few MB even for a model of 10,000 layers.
MAX_RESULT_BYTES = 512 * 1024 * 1024
_READ_CHUNK = 1 << 20


def enabled() -> bool:
    return hasattr(os, "fork") and os.environ.get("VARCTL_NO_SANDBOX", "") in ("", "0")


def _env_number(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, "") or default)
    except ValueError:
        return default
    return value if value > 0 else default


def call(
    fn: Callable[..., T],
    *args: Any,
    label: str = "the file",
    verb: str = "reading",
    timeout_s: float | None = None,
    memory_mb: float | None = None,
    tune: str | None = None,
    **kwargs: Any,
) -> T:
    """`fn(*args, **kwargs)` in a forked child; its result or exception, as if called here.

    Args:
        fn: a reader; it must return picklable plain data (our dataclasses, builtins).
        label: how error messages name the input ("the file", "'m.h5'").
        timeout_s, memory_mb: limits instead of VARCTL_READ_TIMEOUT / VARCTL_READ_MEMORY_MB;
            `tune` then names the settings that change them (the hint of a refusal).

    Raises:
        whatever `fn` raised (type, message and hint kept); UnreadableModel if the child died
        (the HDF5 library crashed), UnsafeFile if it ran out of time or memory.
    """
    if not enabled():
        return fn(*args, **kwargs)
    if _exiting:
        reap_exited()
    timeout = timeout_s or _env_number("VARCTL_READ_TIMEOUT", DEFAULT_TIMEOUT_S)
    memory = memory_mb or _env_number("VARCTL_READ_MEMORY_MB", DEFAULT_MEMORY_MB)
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:  # no fork (process limit): read in-process rather than not at all
        os.close(r)
        os.close(w)
        return fn(*args, **kwargs)
    if pid == 0:  # pragma: no cover - runs in the child, which never returns
        os.close(r)
        _child(w, fn, args, kwargs, memory, tune)
    os.close(w)
    reaped = False
    answer: tuple[str, Any] | None = None
    unreadable: UnreadableModel | None = None  # why data is not a whole answer
    try:
        data, timed_out, too_big = _collect(r, time.monotonic() + timeout)
        if timed_out or too_big:
            os.kill(pid, signal.SIGKILL)
        elif data:
            answer, unreadable = _answer_in(data)
        if answer is not None and _deferring:  # the child is exiting: reaped later (answers_first)
            _exiting.append(pid)
        else:
            _, status = os.waitpid(pid, 0)
        reaped = True
    finally:
        os.close(r)
        if not reaped:  # interrupted (Ctrl-C) or failed: never leave a running child or a zombie
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    if answer is not None:
        kind, value = answer
        if kind == "error":
            raise value
        return value  # type: ignore[no-any-return]
    if timed_out:
        raise UnsafeFile(
            f"{verb} {label} took longer than {timeout:g} s (refused: a malformed HDF5 file can make "
            "the HDF5 library loop)",
            hint=tune or "if the file is sound but huge, raise VARCTL_READ_TIMEOUT (seconds)",
        )
    if too_big:
        raise UnsafeFile(f"{verb} {label} produced more than {MAX_RESULT_BYTES // 2**20} MiB of metadata")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGINT:
            raise KeyboardInterrupt
        raise UnreadableModel(
            f"the HDF5 library crashed while {verb} {label} ({name})"
            + (": the file is malformed" if verb == "reading" else ""),
            hint="set VARCTL_NO_SANDBOX=1 to read it in-process (for debugging only)",
        )
    if not data:
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
        raise UnreadableModel(f"the reader process for {label} ended without an answer (exit {code})")
    assert unreadable is not None  # data, and no answer in it
    raise unreadable


# Children that sent a whole answer and are exiting, inside answers_first().
_exiting: list[int] = []
_deferring = False


@contextlib.contextmanager
def answers_first() -> Iterator[None]:
    """Within it, call() goes on with a child's whole answer without waiting for the kernel to
    tear the child down (~1.2 ms after its answer, for a child forked from a 17 MB process); the
    children are reaped at the next call (without blocking) and, at the latest, on leaving it.
    Every CLI command runs in it (commands/_run.handle_errors): by the time its output is
    written, its children are gone, and none is left as a zombie, nor to PID 1 (which in a
    container may never reap it). Outside it (the Python API), call() reaps each child at once."""
    global _deferring
    outer, _deferring = _deferring, True
    try:
        yield
    finally:
        _deferring = outer
        if not outer:
            reap_exited(block=True)


def reap_exited(block: bool = False) -> None:
    """Reap the children call() left exiting: those already gone, or (`block`) all of them."""
    for pid in list(_exiting):
        try:
            done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
        except ChildProcessError:  # reaped by someone else (a SIGCHLD handler, os.wait())
            done = pid
        if done:
            _exiting.remove(pid)


def _answer_in(data: bytes) -> tuple[tuple[str, Any] | None, UnreadableModel | None]:
    """(the child's answer, None), or (None, why `data` is not one: a child that died mid-write,
    whose exit status the parent then waits for)."""
    try:
        return _loads(data), None
    except UnreadableModel as e:
        return None, e


def in_child(fn: Callable[..., T], *args: Any, what: str) -> T:
    """Run an HDF5 *write* `fn(*args)` in a forked child: whatever goes wrong there (an exception,
    a crash of the HDF5 library on a full disk, a hang) is one OutputError (exit 4) here.

    The caller owns the files `fn` writes and removes them on failure (a killed child cannot).
    """
    try:
        return call(fn, *args, label=f"'{what}'", verb="writing")
    except (OutputError, KeyboardInterrupt):
        raise
    except VarctlError as e:
        raise OutputError(f"cannot write {what}: {e.message}") from None
    except Exception as e:
        errno = getattr(e, "errno", None)
        text = os.strerror(errno) if errno else " ".join(str(e).split()) or type(e).__name__
        raise OutputError(f"cannot write {what}: {text}") from None


def _collect(r: int, deadline: float) -> tuple[bytes, bool, bool]:
    """Read the child's answer until EOF, the deadline, or the size limit (data, timed out, too big)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"", True, False
        ready, _, _ = select.select([r], [], [], left)
        if not ready:
            continue
        chunk = os.read(r, _READ_CHUNK)
        if not chunk:
            return b"".join(chunks), False, False
        size += len(chunk)
        if size > MAX_RESULT_BYTES:
            return b"", False, True
        chunks.append(chunk)


def _child(
    w: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    memory: float,
    tune: str | None,
) -> None:
    """Run `fn` and write its pickled outcome to `w`; always ends the process with os._exit."""
    code = 0
    try:
        gc.disable()  # a collection would touch every object: copy-on-write faults for nothing
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent reports it, not us
        debug = bool(os.environ.get("VARCTL_DEBUG"))
        faulthandler.disable()  # pytest enables it: a crash here is reported by the parent
        if not debug:
            # glibc and HDF5 may print to fd 2 before dying; the user gets the parent's one line.
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        _limit_memory(memory)
        try:
            outcome: tuple[str, Any] = ("ok", fn(*args, **kwargs))
        except MemoryError:
            message = f"reading it needs more than {int(memory):,} MiB of memory (refused)"
            outcome = ("error", UnsafeFile(message, hint=tune))
        except BaseException as e:
            if debug:
                import traceback  # VARCTL_DEBUG only: 1.2 ms of every start otherwise

                traceback.print_exc()
            outcome = ("error", e)
        payload = _dumps(outcome)
        view = memoryview(payload)
        while view:
            view = view[os.write(w, view) :]
        # The answer is whole: the parent goes on, once it sees the pipe's end, while the kernel
        # ends this process. Every other descriptor is closed first (those inherited from the
        # parent too): an flock held through one must not outlive the answer.
        os.closerange(0, w)
        os.closerange(w + 1, _max_fd())
        os.close(w)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 65536


def _limit_memory(memory_mb: float) -> None:
    """Cap the child's address space at the parent's plus `memory_mb`."""
    if resource is None:
        return
    try:
        fd = os.open("/proc/self/statm", os.O_RDONLY)
        try:
            pages = int(os.read(fd, 100).split()[0])
        finally:
            os.close(fd)
        extra = int(memory_mb * 2**20)
        limit = pages * os.sysconf("SC_PAGE_SIZE") + extra
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        if soft == resource.RLIM_INFINITY or limit < soft:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (OSError, ValueError, IndexError):
        pass  # no /proc (not Linux): no limit


def _dumps(outcome: tuple[str, Any]) -> bytes:
    try:
        return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        kind, value = outcome
        if kind != "error":
            raise
        return pickle.dumps(("error", ReaderBug(f"{type(value).__name__}: {value}")))


class ReaderBug(Exception):
    """A reader's exception that could not be sent from the child as it was."""


_SAFE_BUILTINS = frozenset(
    {"tuple", "list", "dict", "set", "frozenset", "str", "bytes", "bytearray", "int", "float", "bool",
     "complex", "NoneType", "slice", "range"}
)  # fmt: skip


class _Unpickler(pickle.Unpickler):
    """Only our own classes, builtin containers and builtin exceptions: never a function."""

    def find_class(self, module: str, name: str) -> Any:
        # Checked before super() imports anything: the module name comes from the child. A plain
        # name only: protocol 4 follows a dotted one attribute by attribute, out of our modules
        # into whatever they import ("varctl.cli" + "typer._completion_shared.subprocess.Popen"
        # is a class, and calling it runs a command).
        if "." not in name and (module == "builtins" or module.startswith("varctl.")):
            obj = super().find_class(module, name)
            if not isinstance(obj, type):
                allowed = False
            elif module == "builtins":
                allowed = name in _SAFE_BUILTINS or issubclass(obj, BaseException)
            else:  # a class defined there, not one imported into it (varctl.render + io.FileIO)
                allowed = obj.__module__ == module
            if allowed:
                return obj
        raise pickle.UnpicklingError(f"the reader process sent {module}.{name} (refused)")


def _loads(data: bytes) -> tuple[str, Any]:
    # Collections while thousands of objects are made would only walk them: none is garbage yet
    # (layers_4000, 12,000 variables and layers: 22 -> 17 ms).
    collecting = gc.isenabled()
    gc.disable()
    try:
        kind, value = _Unpickler(io.BytesIO(data)).load()
    except Exception as e:
        raise UnreadableModel(f"the reader process sent an unreadable answer ({e})") from None
    finally:
        if collecting:
            gc.enable()
    if kind not in ("ok", "error") or (kind == "error" and not isinstance(value, BaseException)):
        raise UnreadableModel("the reader process sent an unreadable answer")
    return kind, value
