"""The parent reads the reader process's answer with an allowlist: a child that a file subverted
can send any bytes, and none of them may make the parent run code or touch a file."""

from __future__ import annotations

import contextlib
import io
import pickle
import random

import pytest

from varctl.errors import UnreadableModel, UsageError
from varctl.formats import _sandbox
from varctl.model import Cause, Layer, ModelFormat, ModelInfo, Variable


def _answer(module: str, name: str, args: tuple[object, ...]) -> bytes:
    """("ok", module.name(*args)) as a protocol-4 pickle, written opcode by opcode."""

    def text(s: str) -> bytes:
        raw = s.encode()
        return b"\x8c" + bytes([len(raw)]) + raw  # SHORT_BINUNICODE

    out = io.BytesIO()
    out.write(b"\x80\x04")  # PROTO 4
    out.write(text("ok"))
    out.write(text(module) + text(name) + b"\x93")  # STACK_GLOBAL
    out.write(pickle.dumps(args, protocol=4)[2:-1])  # the arguments, without PROTO and STOP
    out.write(b"R\x86.")  # REDUCE, TUPLE2, STOP
    return out.getvalue()


@pytest.mark.parametrize(
    ("module", "name"),
    [
        # protocol 4 resolves a dotted name attribute by attribute: through the modules ours import
        ("varctl.cli", "typer._completion_shared.subprocess.Popen"),
        ("varctl.formats.keras_zip", "zipfile.ZipFile"),
        # a class imported into one of our modules is not ours
        ("varctl.render", "io.FileIO"),
        ("varctl.model", "attrgetter"),
        ("varctl.formats.keras_zip", "shutil"),
        # functions, and modules outside ours
        ("builtins", "eval"),
        ("builtins", "getattr"),
        ("builtins", "type"),
        ("os", "system"),
        ("subprocess", "Popen"),
        ("varctl.formats._sandbox", "call"),
    ],
)
def test_a_subverted_child_cannot_make_the_parent_call_a_foreign_class(module, name, tmp_path):
    target = tmp_path / "pwned"
    args = (["touch", str(target)],) if "Popen" in name else (str(target), "w")
    with pytest.raises(UnreadableModel, match="unreadable answer"):
        _sandbox._loads(_answer(module, name, args))
    assert not target.exists()


def test_our_classes_and_exceptions_come_back():
    info = ModelInfo(
        "m.keras", ModelFormat.KERAS, "3.15.0", "m", "Functional", True,
        (Layer("d", "d", "Dense", True, True, True, 0, None),),
        (Variable("d/kernel", "d", "kernel", (2, 3), "float32", Cause.TRAINABLE, None, "w/0"),),
    )  # fmt: skip
    assert _sandbox._loads(_sandbox._dumps(("ok", info))) == ("ok", info)
    kind, error = _sandbox._loads(_sandbox._dumps(("error", UsageError("bad", hint="h"))))
    assert kind == "error" and isinstance(error, UsageError) and error.hint == "h"
    kind, error = _sandbox._loads(_sandbox._dumps(("error", ValueError("builtin"))))
    assert kind == "error" and isinstance(error, ValueError)


def test_random_bytes_are_one_clean_error():
    rng = random.Random(0)
    good = _sandbox._dumps(("ok", ModelInfo("m", ModelFormat.H5, None, "m", "S", True, (), ())))
    for _ in range(300):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        with contextlib.suppress(UnreadableModel):  # or an answer: the bytes still made sense
            _sandbox._loads(bytes(data))


def test_in_answers_first_children_are_reaped_later_and_all_on_leaving():
    """Inside answers_first() (every CLI command), call() returns as soon as the whole answer is
    in; an exiting child is reaped by a later call, and every one of them on leaving."""
    if not _sandbox.enabled():
        pytest.skip("the sandbox is off (VARCTL_NO_SANDBOX)")
    import os
    import time

    with _sandbox.answers_first():
        pids = [_sandbox.call(os.getpid) for _ in range(4)]
        assert len(set(pids)) == 4 and os.getpid() not in pids
        time.sleep(0.5)  # the children are gone by now: the next call reaps them
        last = _sandbox.call(os.getpid)
        assert _sandbox._exiting == [last]
        for pid in pids:
            with pytest.raises(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
    assert _sandbox._exiting == []
    with pytest.raises(ChildProcessError):
        os.waitpid(last, os.WNOHANG)


def test_outside_answers_first_each_child_is_reaped_at_once():
    """The Python API: a call leaves no child behind, running or a zombie."""
    if not _sandbox.enabled():
        pytest.skip("the sandbox is off (VARCTL_NO_SANDBOX)")
    import os

    pid = _sandbox.call(os.getpid)
    assert _sandbox._exiting == []
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_a_child_that_dies_mid_answer_is_waited_for_and_named(monkeypatch):
    """Half an answer is not an answer: the parent waits for the child and reports its death."""
    if not _sandbox.enabled():
        pytest.skip("the sandbox is off (VARCTL_NO_SANDBOX)")
    import os
    import signal

    whole = _sandbox._dumps(("ok", list(range(10_000))))

    def dying_child(w, fn, args, kwargs, memory, tune):
        os.write(w, whole[: len(whole) // 2])
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(_sandbox, "_child", dying_child)
    with (
        pytest.raises(UnreadableModel, match="crashed while reading the file .SIGKILL."),
        _sandbox.answers_first(),
    ):
        _sandbox.call(os.getpid)


def test_a_lock_the_parent_held_is_free_as_soon_as_the_answer_is_in(tmp_path):
    """The child inherits the parent's descriptors (an edit's flock on its input among them) and
    closes them before its answer ends: the parent can release the lock at once, child or no child."""
    if not _sandbox.enabled():
        pytest.skip("the sandbox is off (VARCTL_NO_SANDBOX)")
    import fcntl
    import os

    path = tmp_path / "locked"
    path.write_bytes(b"x")
    with _sandbox.answers_first():  # (as in a CLI command: the children are not waited for)
        for _ in range(20):
            with open(path, "rb") as held:
                fcntl.flock(held, fcntl.LOCK_EX)
                _sandbox.call(os.getpid)
            with open(path, "rb") as other:  # a new open file: blocked while any copy of `held` lives
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
