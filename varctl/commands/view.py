"""`varctl view`: the HTML page of one or more models, in the browser (and `list -f html`'s core)."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import tempfile
from typing import TYPE_CHECKING, Annotated

from varctl import out
from varctl.commands._run import handle_errors

if TYPE_CHECKING:  # the declarations, for annotations only: varctl.cli resolves them
    import typer

    from varctl.commands._options import PathsArg
    from varctl.model import ModelInfo
    from varctl.select import Selector


def html_pages(
    models: list[str], selector: Selector | None = None, trainable: bool | None = None, load: object = None
) -> tuple[str | None, int]:
    """Open every model (as `run_each` does: errors on stderr, the others still shown) and make
    one page of the readable ones, showing the variables `selector` and `trainable` keep.

    Returns:
        (the page, or None when no model could be read; the exit code).
    """
    from varctl.commands._run import run_each
    from varctl.html import page, restrict
    from varctl.model import LIST_SCHEMA
    from varctl.render import Format
    from varctl.select import filter_trainable

    infos: list[ModelInfo] = []

    def collect(info: ModelInfo) -> tuple[None, int]:
        chosen = selector.variables(info) if selector is not None else list(info.variables)
        infos.append(restrict(info, filter_trainable(chosen, trainable)))
        return None, 0

    code = 0
    try:
        run_each(models, Format.table, LIST_SCHEMA, collect, selector=selector, load=load)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    return (page(infos) if infos else None), code


def list_html(models: list[str], selector: Selector, trainable: bool | None, load: object) -> None:
    """`varctl list -f html`: the page on stdout; exit with the worst model's code."""
    text, code = html_pages(models, selector, trainable, load)
    if text is not None:
        sys.stdout.write(text)
        sys.stdout.flush()
    if code:
        raise SystemExit(code)


def _temp_name(models: list[str]) -> str:
    stem = os.path.basename(models[0].rstrip("/\\")) if models else "model"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(stem)[0]).strip("._") or "model"
    return stem[:40]


def _write_output(text: str, target: str) -> str:
    """Write `text` to `target` atomically (a temp file in its folder, then rename); regular files only."""
    from varctl.errors import OutputError, UsageError

    real = os.path.realpath(target)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise OutputError(f"cannot write '{target}': {e.strerror or e}") from e
    else:
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(
                f"-o '{target}' is not a regular file", hint="give a file name such as model.html"
            )
    folder = os.path.dirname(real) or "."
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".varctl-", suffix=".html.tmp", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, real)
    except OSError as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise OutputError(f"cannot write '{target}': {e.strerror or e}") from e
    return target


def _write_temp(text: str, models: list[str]) -> str:
    """A new file `varctl-<name>-XXXX.html` in the temp folder, readable only by its owner."""
    from varctl.errors import OutputError

    try:
        fd, path = tempfile.mkstemp(prefix=f"varctl-{_temp_name(models)}-", suffix=".html")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise OutputError(f"cannot write the page in '{tempfile.gettempdir()}': {e.strerror or e}") from e
    return path


def why_no_browser() -> str | None:
    """Why a browser cannot be opened here (None: try). No terminal means no person to look at it."""
    if not sys.stderr.isatty():
        return "not a terminal"
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display"
    return None


def open_in_browser(path: str) -> str | None:
    """Open `path` in the default browser; None on success, else why not."""
    import webbrowser
    from pathlib import Path

    if (why := why_no_browser()) is not None:
        return why
    try:
        opened = webbrowser.open(Path(path).resolve().as_uri())
    except Exception as e:
        return f"the browser failed: {e}"
    return None if opened else "no browser found"


@handle_errors
def view(
    models: PathsArg,
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", metavar="FILE", help="Write the page to this file instead of a temporary one."
        ),
    ] = None,
    no_open: Annotated[
        bool, typer.Option("--no-open", help="Only write the page; do not start a browser.")
    ] = False,
) -> None:
    """Show models as an interactive HTML page (offline, self-contained) in the browser.  Example: varctl view m.keras"""
    text, code = html_pages(models)
    if text is not None:
        path = _write_output(text, output) if output else _write_temp(text, models)
        out.message("info", f"wrote {path}")
        if not no_open and (why := open_in_browser(path)) is not None:
            out.message("info", f"open it in a browser ({why}: none was started)")
    if code:
        raise SystemExit(code)
