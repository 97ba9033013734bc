"""The docs keep up with the code: commands, exit codes, links, the generated CLI page, runnable examples.

- docs/cli.md is what scripts/gen_cli_docs.py writes from `--help`; `pytest tests/test_docs.py
  --update-golden` rewrites it, and rewrites the output under each `$ varctl ...` line of the
  ```console blocks of README.md and docs/*.md from a real run (review the diff before committing).
- Every ```console block is run: its commands, in order, in one scratch folder per page (with
  `sample_models/` linked in), and the output must be exactly what the page shows.
"""

from __future__ import annotations

import functools
import re
import shlex
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from varctl import errors
from varctl.cli import app

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import gen_cli_docs  # noqa: E402

README = ROOT / "README.md"
CLI_MD = ROOT / "docs" / "cli.md"
ENV = {
    "NO_COLOR": "1",
    "COLUMNS": "120",
    "FORCE_COLOR": None,
    "TTY_COMPATIBLE": None,
    "GITHUB_STEP_SUMMARY": None,
}
COMMANDS = gen_cli_docs.commands()
PAGES = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "CONTRIBUTING.md"]

# Pages other engineers are writing. A link to one of them may dangle until it lands; the lead empties
# this list at merge, after which every relative link must resolve.
COMING = {
    "docs/keras-hub.md",
}

CONSOLE_BLOCK = re.compile(r"^```console\n(.*?)^```$", re.M | re.S)
SH_BLOCK = re.compile(r"^```(?:sh|yaml)\n(.*?)^```$", re.M | re.S)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no '## {title}' section"
    return match.group(1)


# -- commands, exit codes, set-up ----------------------------------------------------------------


def test_the_app_registers_exactly_the_commands_of_cli_py():
    assert sorted(COMMANDS) == sorted(["list", "freeze", "unfreeze", "check", "diff", "stats", "view"])


def test_readme_command_table_names_every_command_once():
    table = _section(_text(README), "Commands")
    documented = re.findall(r"^\| `varctl (\S+)", table, re.M)
    assert sorted(documented) == sorted(COMMANDS)


def test_cli_md_is_what_the_generator_writes(request):
    expected = gen_cli_docs.cli_markdown()
    if request.config.getoption("--update-golden"):
        CLI_MD.write_text(expected, encoding="utf-8")
    assert _text(CLI_MD) == expected, "docs/cli.md is stale: run python scripts/gen_cli_docs.py"
    documented = re.findall(r"^## `varctl (\S+)`$", expected, re.M)
    assert documented == COMMANDS


@pytest.mark.parametrize("name", COMMANDS)
def test_command_help_has_an_example(name):
    result = CliRunner().invoke(app, [name, "--help"], env=ENV, prog_name="varctl")
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout
    example = " ".join(result.stdout.split("Example", 1)[1].split())  # help text is wrapped
    assert f"varctl {name} " in example


def test_readme_has_the_setup_commands_ci_runs():
    try_it = (
        "python3 -m venv .venv && .venv/bin/pip install -e . && "
        ".venv/bin/varctl list sample_models/transfer_learning.keras"
    )
    text = _text(README)
    assert f"```sh\n{try_it}\n```" in text
    assert "```sh\nbash .ci/run\n```" in text
    assert (ROOT / ".ci" / "run").is_file()


def test_readme_exit_codes_match_errors_py():
    codes = {int(c) for c in re.findall(r"^\| (\d+) \|", _section(_text(README), "Exit codes"), re.M)}
    defined = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    assert codes == defined


def test_no_issue_numbers_or_history_in_the_docs():
    for page in PAGES:
        text = _text(page)
        assert not re.search(r"\bissue \d+|\bseed article\b|#\d{1,4}\b(?!\w)", text, re.I), page.name


# -- links ------------------------------------------------------------------------------------------


def _links(page: Path) -> list[str]:
    text = re.sub(r"^```.*?^```$", "", _text(page), flags=re.M | re.S)  # links inside code are not links
    return [a or b for a, b in LINK.findall(text)]


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for the page's headings: lower case, punctuation dropped, spaces as '-'."""
    text = re.sub(r"^```.*?^```$", "", _text(page), flags=re.M | re.S)
    return {
        re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.*)$", text, re.M)
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    missing = []
    for target in _links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # a URL
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
        if rel in COMING:
            continue
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in _anchors(path)):
            missing.append(target)
    assert not missing, f"{page.name} links to missing files or headings: {missing}"


def test_the_allow_list_holds_only_missing_pages():
    assert not [p for p in COMING if (ROOT / p).exists()], "a page in COMING exists now: drop it from COMING"


# -- examples ---------------------------------------------------------------------------------------


def _run_block(block: str, cwd: Path, monkeypatch) -> str:
    """The block with each command's output replaced by what varctl prints now."""
    out: list[str] = []
    code = 0
    monkeypatch.chdir(cwd)
    for line in block.splitlines():
        if not line.startswith("$ "):
            continue
        out.append(line)
        argv = shlex.split(line[2:])
        if argv == ["echo", "$?"]:
            out.append(str(code))
            continue
        assert argv[0] == "varctl", f"a console block runs only varctl and 'echo $?': {line}"
        result = CliRunner().invoke(app, argv[1:], env=ENV, prog_name="varctl")
        assert result.exit_code in (0, 1), (line, result.output)
        code = result.exit_code
        out.extend(ln.rstrip() for ln in result.output.rstrip("\n").splitlines())
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_console_examples_print_what_the_page_shows(page, tmp_path, monkeypatch, request):
    text = _text(page)
    if "```console" not in text:
        pytest.skip("no console block")
    (tmp_path / "sample_models").symlink_to(ROOT / "sample_models")
    fresh = CONSOLE_BLOCK.sub(
        lambda m: "```console\n" + _run_block(m.group(1), tmp_path, monkeypatch) + "```", text
    )
    if request.config.getoption("--update-golden") and fresh != text:
        page.write_text(fresh, encoding="utf-8")
        text = fresh
    assert text == fresh, f"{page.name}: a console example prints something else now (--update-golden)"


@functools.cache
def _options(name: str) -> frozenset[str]:
    import typer.main

    command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
    return frozenset({opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"--help"})


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_examples_use_real_commands_and_options(page):
    for block in SH_BLOCK.findall(_text(page)):
        for line in block.splitlines():
            found = re.search(r"(?:^|[|;(&]\s*|bin/|run:\s*)varctl ([a-z]+)(.*)", line.strip())
            if not found:
                continue
            name, rest = found.group(1), re.split(r"\||&&|;|#|>", found.group(2))[0]
            assert name in COMMANDS, f"{page.name}: unknown command in {line!r}"
            words = shlex.split(rest.replace("$", ""))
            unknown = [
                w.split("=")[0] for w in words if w.startswith("-") and w.split("=")[0] not in _options(name)
            ]
            assert not unknown, f"{page.name}: {line!r} uses options varctl {name} does not have: {unknown}"


# -- JSON reference ---------------------------------------------------------------------------------


def _keys(node: object) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _keys(v)}
    return set()


def test_json_md_documents_every_schema_and_key_the_goldens_hold():
    """Each key of each golden JSON output is named (in backticks) in its schema's section of
    docs/json.md, or in the varctl.list/2 section that the other schemas refer to."""
    import json

    doc = _text(ROOT / "docs" / "json.md")
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "tests" / "golden").glob("*.json")):
        data = json.loads(_text(path))
        for obj in data if isinstance(data, list) else [data]:
            found.setdefault(obj["schema"], set()).update(_keys(obj))
    assert len(found) == 6, sorted(found)
    list_section = _section(doc, "`varctl.list/2`")
    for schema, keys in found.items():
        section = _section(doc, f"`{schema}`") + list_section
        named = set(re.findall(r"`[^`\n]*`", section))
        missing = [k for k in keys if not any(re.search(rf"\b{re.escape(k)}\b", n) for n in named)]
        assert not missing, f"docs/json.md does not document {missing} of {schema}"


JSON_EXAMPLE = re.compile(r"^`(varctl [^`]+)`[^\n]*:\n\n```json\n(.*?)^```$", re.M | re.S)
# The file the README's tour writes, which docs/json.md's diff example reads.
FINETUNE = "varctl unfreeze sample_models/transfer_learning.keras -p block_16* --keep-batchnorm-frozen -o finetune.keras"


def _is_excerpt(example: object, actual: object, where: str = "") -> None:
    """`example` is `actual` with some list tails cut (`...`): same keys in the same order, same values."""
    if isinstance(example, dict):
        assert isinstance(actual, dict), where
        assert list(example) == [k for k in actual if k in example], f"{where}: keys or their order"
        for key, value in example.items():
            _is_excerpt(value, actual[key], f"{where}.{key}")
    elif isinstance(example, list):
        cut = bool(example) and example[-1] == "..."
        shown = example[:-1] if cut else example
        assert isinstance(actual, list), where
        assert len(shown) < len(actual) if cut else len(shown) == len(actual), f"{where}: length"
        for i, (e, a) in enumerate(zip(shown, actual[: len(shown)], strict=True)):
            _is_excerpt(e, a, f"{where}[{i}]")
    else:
        assert example == actual, f"{where}: {example!r} != {actual!r}"


def test_json_md_examples_are_excerpts_of_real_output(tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sample_models").symlink_to(ROOT / "sample_models")
    run = CliRunner().invoke
    assert run(app, shlex.split(FINETUNE)[1:], env=ENV).exit_code == 0
    examples = JSON_EXAMPLE.findall(_text(ROOT / "docs" / "json.md"))
    assert len(examples) == 6
    for command, block in examples:
        result = run(app, shlex.split(command)[1:], env=ENV, prog_name="varctl")
        assert result.exit_code in (0, 1), (command, result.output)
        example = json.loads(re.sub(r",(\s*)\.\.\.", r',\1"..."', block))
        _is_excerpt(example, json.loads(result.stdout), command)
