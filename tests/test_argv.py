"""The start-up path (varctl/commands/_argv.py) runs exactly what Typer would, or leaves it to Typer.

For every command line it takes, the command function gets the very arguments Typer passes it
(differential: Typer's parse is captured on a probe of the same signature); every line it does not
take plainly is Typer's, and its table is what scripts/gen_cli_docs.py compiles from the app.
"""

from __future__ import annotations

import functools
import inspect
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from varctl.cli import COMMANDS, Command
from varctl.commands import _argv
from varctl.commands._argv_table import COMMANDS as TABLE

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import gen_cli_docs  # noqa: E402

VALUES = {"str": ["m.keras", "dense*", "-x", "a=b", ""], "append": ["dense*", "base/*", "-y"]}
NUMBERS = ["0", "3", "+2", "1_000", " 4", "-1", "x", "2.5", "1e3", "nan"]


def _typer_kwargs(name: str, argv: list[str]) -> dict[str, Any] | None:
    """What Typer passes the command function for `argv` (None: Typer refuses it)."""
    calls: list[dict[str, Any]] = []

    @functools.wraps(COMMANDS[name])
    def probe(**kwargs: Any) -> None:
        calls.append(kwargs)

    app = typer.Typer()
    app.command(name, cls=Command)(probe)
    app.command("other-command")(lambda: None)  # two commands: Typer then wants the name first
    result = CliRunner().invoke(app, argv)
    if result.exit_code != 0:
        return None
    assert len(calls) == 1, result.output
    return calls[0]


def _fast_kwargs(argv: list[str]) -> dict[str, Any] | None:
    call = _argv.parse(argv)
    if call is None:
        return None
    assert isinstance(call, functools.partial)
    bound = inspect.signature(call.func).bind(**call.keywords)
    bound.apply_defaults()
    return dict(bound.arguments)


def _check(argv: list[str]) -> bool:
    """True when the fast path took `argv`; then Typer passes the same arguments."""
    fast = _fast_kwargs(argv)
    if fast is None:
        return False
    typer_kwargs = _typer_kwargs(argv[0], argv)
    assert typer_kwargs is not None, argv
    assert repr(sorted(typer_kwargs.items())) == repr(sorted(fast.items())), argv  # repr: nan == nan
    return True


def _positionals(name: str) -> list[str]:
    shape = TABLE[name][2]
    return ["m.keras", "n.h5"] if shape == (("models", -1),) else [f"{p}.keras" for p, _ in shape]


def _value(action: str, arg: Any, rng: random.Random) -> str:
    if action == "choice":
        module, cls, _ = arg
        values = [m.value for m in getattr(__import__(module, fromlist=[cls]), cls)]
        return rng.choice([*values, values[-1].upper(), "nope"])
    if action in ("int", "float"):
        return rng.choice(NUMBERS)
    return rng.choice(VALUES[action])


def test_the_table_is_what_the_generator_writes():
    assert gen_cli_docs.ARGV_TABLE.read_text(encoding="utf-8") == gen_cli_docs.argv_table(), (
        "varctl/commands/_argv_table.py is stale: run python scripts/gen_cli_docs.py"
    )
    assert list(TABLE) == list(COMMANDS)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_alone_gives_what_typer_gives(name):
    rng = random.Random(0)
    taken = 0
    for flag, (_, action, arg) in TABLE[name][3].items():
        values = [None] if action == "const" else [_value(action, arg, rng) for _ in range(4)]
        for value in values:
            extra = [flag] if value is None else [flag, value]
            taken += _check([name, *_positionals(name), *extra])
            taken += _check([name, *extra, *_positionals(name)])
            if value is not None and flag.startswith("--"):
                taken += _check([name, *_positionals(name), f"{flag}={value}"])
    assert taken > 2 * len(TABLE[name][3])  # most lines are plain: the path is not a no-op


@pytest.mark.parametrize("name", list(COMMANDS))
def test_random_command_lines_give_what_typer_gives(name):
    """Options in any order, repeated, with odd values: taken only when Typer agrees exactly."""
    rng = random.Random(name)
    flags = list(TABLE[name][3].items())
    taken = 0
    for _ in range(150):
        argv = [name]
        positional = _positionals(name)
        for _ in range(rng.randint(0, 5)):
            flag, (_, action, arg) = rng.choice(flags)
            argv += [flag] if action == "const" else [flag, _value(action, arg, rng)]
            if positional and rng.random() < 0.3:
                argv.append(positional.pop(0))
        argv += positional if rng.random() < 0.9 else positional[:-1]
        if rng.random() < 0.1:
            argv.insert(rng.randint(1, len(argv)), rng.choice(["--help", "--", "-", "--nope", "-fjson"]))
        taken += _check(argv)
    assert taken > 50


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["--version", "list"],
        ["lsit", "m.keras"],
        ["list"],  # a missing model: Typer's usage error
        ["list", "m.keras", "--help"],
        ["list", "m.keras", "-h"],
        ["list", "m.keras", "--format"],  # a missing value
        ["list", "m.keras", "--format", "yaml"],
        ["list", "m.keras", "-fjson"],  # Click takes it; the fast path leaves it to Click
        ["list", "m.keras", "--regex=yes"],
        ["list", "m.keras", "--step", "-1"],
        ["list", "--", "-odd.keras"],
        ["list", "-"],
        ["freeze", "a.keras", "b.keras"],
        ["diff", "a.keras"],
    ],
)
def test_lines_it_leaves_to_typer(argv):
    assert _argv.parse(argv) is None


def test_shell_completion_is_always_typer(monkeypatch):
    monkeypatch.setenv("_VARCTL_COMPLETE", "complete_bash")
    assert _argv.parse(["list", "m.keras"]) is None


_PROBE = """
import sys
from varctl.__main__ import main
sys.argv = ["varctl", *sys.argv[1:]]
try:
    main()
finally:
    sys.stderr.write("\\nTYPER " + str("typer" in sys.modules) + "\\n")
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _PROBE, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_a_plain_command_line_runs_without_typer_and_the_same_as_typer():
    fast = _run("list", "sample_models/seed_dense.keras", "-f", "json")
    assert fast.stderr.endswith("TYPER False\n") and fast.returncode == 0
    # `-fjson` is Click's to read: same output, through Typer.
    slow = _run("list", "sample_models/seed_dense.keras", "-fjson")
    assert slow.stderr.endswith("TYPER True\n") and slow.returncode == 0
    assert fast.stdout == slow.stdout


def test_exit_codes_and_messages_match_on_both_paths():
    for args in (["nope.keras"], ["sample_models/seed_dense.keras", "--frozen", "dense*"]):
        fast = _run("check", *args, "-f", "table")
        slow = _run("check", *args, "-ftable")  # the same line, read by Click
        assert "TYPER False" in fast.stderr and "TYPER True" in slow.stderr
        assert fast.returncode == slow.returncode != 0
        assert fast.stdout == slow.stdout
        assert fast.stderr.rsplit("TYPER", 1)[0] == slow.stderr.rsplit("TYPER", 1)[0]
