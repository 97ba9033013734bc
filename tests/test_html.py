"""The HTML page (`varctl list -f html`, `varctl view`): escaping, no network, and a real browser.

The browser tests run Debian's chromium headless on a test copy of the page with a small harness
script that reads the rendered DOM, drives the filter and the picker like a user (typing, clicking)
and writes what it saw into the DOM, which `--dump-dom` hands back. The commands the picker shows
are then run for real (`--dry-run -f json`) to check they select exactly the checked layers.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest
from typer.testing import CliRunner

from varctl.cli import app
from varctl.formats import open_model
from varctl.html import CSP, page, page_data, script_json
from varctl.model import Cause, Layer, ModelFormat, ModelInfo, Variable
from varctl.select import Selector, filter_trainable

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
SAMPLE_FILES = sorted(SAMPLES.glob("*.keras")) + sorted(SAMPLES.glob("*.h5"))
CHROMIUM = Path("/usr/bin/chromium")
ENV = {"NO_COLOR": "1", "COLUMNS": "120", "FORCE_COLOR": None, "TTY_COMPATIBLE": None}

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
)

XSS = "<img src=x onerror=alert(1)>"
SCRIPT_END = "</script><script>alert(2)</script>"
QUOTED = 'it\'s "q" [x]*'
INVISIBLE_NAME = "dense_\u2028 \u202egnp.exe"


def _shown(text: str) -> str:
    """What the page shows for `text`: control, zero-width, bidi, U+2028/9 as \\u escapes."""
    pattern = "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]"
    return re.sub(pattern, lambda m: f"\\u{ord(m.group()):04x}", text)


def _hand_info() -> ModelInfo:
    """Strings no Keras layer name can hold (`/`), as a class name, path and warning could."""
    layer = Layer(
        path="evil",
        name="evil",
        class_name=SCRIPT_END,
        flag=True,
        config_flag=True,
        editable=True,
        depth=0,
        parent=None,
    )
    var = Variable(
        path="evil/kernel\u2028",
        layer="evil",
        name="kernel\u2028",
        shape=(2, 3),
        dtype="float32",
        cause=Cause.NATURE,
        detail=f"{XSS} & {SCRIPT_END} \u2029",
        storage="/x",
    )
    return ModelInfo(
        source=f"odd {XSS}.keras",
        format=ModelFormat.KERAS,
        keras_version="3.15.1",
        name="m\"'<>&",
        class_name="Functional",
        trainable=True,
        # parents that point at each other (no reader makes this; the page must still show both)
        layers=(
            layer,
            layer.replace(path="a", name="a", parent="b"),
            layer.replace(path="b", name="b", parent="a"),
        ),
        variables=(var,),
        warnings=(f"warning {SCRIPT_END} {XSS} &amp; \u2028",),
    )


def _data_block(text: str) -> str:
    match = re.search(r'<script type="application/json" id="varctl-data">(.*?)</script>', text, re.S)
    assert match, "no data block"
    return match.group(1)


# -- the page as text ----------------------------------------------------------------------------


def test_script_json_escapes_what_could_end_the_block():
    payload = {"a": f"{SCRIPT_END}{XSS}&\u2028\u2029<!--", "é": "\ud800"}
    text = script_json(payload)
    for ch in "<>&\u2028\u2029":
        assert ch not in text
    assert text.isascii()
    assert json.loads(text) == payload


def test_hostile_strings_are_data_not_markup():
    info = _hand_info()
    text = page([info])
    block = _data_block(text)
    assert json.loads(block) == json.loads(json.dumps(page_data([info])))
    assert json.loads(block)["models"][0]["layers"][0]["class_name"] == SCRIPT_END
    # The only tags are the page's own: nothing from the file became an element.
    assert text.count("</script>") == 2
    assert text.count("<script") == 2
    assert "<img" not in text and "<script><" not in text
    assert "\u2028" not in text and "\u2029" not in text
    # The title is the one place file text goes into HTML on the server side: escaped.
    assert "<title>odd &lt;img src=x onerror=alert(1)&gt;.keras · varctl</title>" in text


def test_the_script_never_parses_strings_as_html():
    from varctl.html import _JS

    code = "\n".join(line.split("//")[0] for line in _JS.splitlines())  # comments aside
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("):
        assert sink not in code, sink


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_page_round_trips_and_requests_nothing(path):
    info = open_model(str(path))
    text = page([info])
    data = json.loads(_data_block(text))
    assert data == json.loads(json.dumps(page_data([info])))
    model = data["models"][0]
    assert [v["path"] for v in model["variables"]] == [v.path for v in info.variables]
    assert [l["path"] for l in model["layers"]] == [l.path for l in info.layers]
    assert model["totals"] == info.totals()
    # Nothing that makes a browser fetch: no URL, no src/href, no CSS url()/@import.
    assert not re.search(r"https?:|//[a-z0-9]|\bsrc\s*=|\bhref\s*=|url\(|@import|<link|<iframe", text, re.I)
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in text
    assert "default-src 'none'" in CSP and "connect-src" not in CSP


def test_page_size_grows_linearly_and_stays_small():
    info = open_model(str(SAMPLES / "transfer_learning.keras"))
    text = page([info])
    # 262 variables, 159 layers: well under 1 KB per row, so a 1,000-layer model is < 1 MB.
    assert len(text.encode()) < 200_000


# -- the CLI ---------------------------------------------------------------------------------------


def test_list_format_html_writes_the_page_to_stdout():
    sample = str(SAMPLES / "transfer_learning.keras")
    result = CliRunner().invoke(app, ["list", sample, "-f", "html"], env=ENV)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("<!DOCTYPE html>")
    assert json.loads(_data_block(result.stdout)) == json.loads(json.dumps(page_data([open_model(sample)])))
    assert result.stderr == ""


def test_list_formats_are_the_shared_formats_plus_html():
    from varctl.commands.listing import ListFormat
    from varctl.render import Format

    # list hands every other value to run_each as Format(value): each must exist there.
    assert {f.value for f in ListFormat} - {"html"} <= {f.value for f in Format}
    assert "html" not in {f.value for f in Format}


def test_list_html_with_a_pattern_shows_the_selection_and_its_layers():
    sample = str(SAMPLES / "transfer_learning.keras")
    result = CliRunner().invoke(app, ["list", sample, "-f", "html", "-p", "block_1_*", "--frozen"], env=ENV)
    assert result.exit_code == 0, result.output
    model = json.loads(_data_block(result.stdout))["models"][0]
    info = open_model(sample)
    chosen = filter_trainable(Selector(("block_1_*",)).variables(info), False)
    assert [v["path"] for v in model["variables"]] == [v.path for v in chosen]
    holders = {v.layer for v in chosen} | {"mobilenetv2_0.35_96"}
    assert {l["path"] for l in model["layers"]} == holders
    assert model["totals"] == info.totals(chosen)


def test_list_html_many_models_one_unreadable(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    good = str(SAMPLES / "seed_dense.keras")
    result = CliRunner().invoke(app, ["list", good, str(bad), good, "-f", "html"], env=ENV)
    assert result.exit_code == 3, result.output
    assert [m["source"] for m in json.loads(_data_block(result.stdout))["models"]] == [good, good]
    assert "bad.keras" in result.stderr and "Traceback" not in result.output


def test_list_html_nothing_readable_writes_nothing(tmp_path):
    result = CliRunner().invoke(app, ["list", str(tmp_path / "missing.keras"), "-f", "html"], env=ENV)
    assert result.exit_code == 3
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["freeze", "M", "-p", "dense", "-o", "OUT", "-f", "html"],
        ["unfreeze", "M", "-p", "dense", "--dry-run", "-f", "html"],
        ["check", "M", "-f", "html"],
        ["stats", "M", "-f", "html"],
        ["diff", "M", "M", "-f", "html"],
    ],
    ids=lambda a: a[0],
)
def test_html_is_a_usage_error_for_other_commands(args, tmp_path):
    sample = str(SAMPLES / "seed_dense.keras")
    out = tmp_path / "out.keras"
    argv = [sample if a == "M" else str(out) if a == "OUT" else a for a in args]
    result = CliRunner().invoke(app, argv, env=ENV)
    assert result.exit_code == 2, result.output
    assert "html" in result.stderr and result.stdout == ""
    assert not out.exists()


def test_view_no_open_writes_a_private_temp_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    sample = str(SAMPLES / "transfer_learning.keras")
    result = CliRunner().invoke(app, ["view", sample, "--no-open"], env=ENV)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    [written] = tmp_path.glob("varctl-transfer_learning-*.html")
    assert result.stderr == f"varctl: info: wrote {written}\n"
    assert written.stat().st_mode & 0o077 == 0
    assert json.loads(_data_block(written.read_text(encoding="utf-8")))["models"][0]["source"] == sample


def test_view_opens_the_browser_only_where_one_can_be_opened(tmp_path, monkeypatch):
    import webbrowser

    from varctl.commands import view

    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    target = tmp_path / "page.html"
    sample = str(SAMPLES / "seed_dense.keras")
    # CliRunner's stderr is not a terminal: no browser, the path only.
    result = CliRunner().invoke(app, ["view", sample, "-o", str(target)], env=ENV)
    assert result.exit_code == 0, result.output
    assert opened == []
    assert result.stderr.splitlines() == [
        f"varctl: info: wrote {target}",
        "varctl: info: open it in a browser (not a terminal: none was started)",
    ]
    monkeypatch.setattr(view, "why_no_browser", lambda: None)
    result = CliRunner().invoke(app, ["view", sample, "-o", str(target)], env=ENV)
    assert result.exit_code == 0, result.output
    assert opened == [target.resolve().as_uri()]
    assert result.stderr == f"varctl: info: wrote {target}\n"
    monkeypatch.setattr(webbrowser, "open", lambda url: False)
    result = CliRunner().invoke(app, ["view", sample, "-o", str(target)], env=ENV)
    assert "no browser found" in result.stderr and result.exit_code == 0


def test_view_output_must_be_a_regular_file(tmp_path):
    sample = str(SAMPLES / "seed_dense.keras")
    result = CliRunner().invoke(app, ["view", sample, "-o", str(tmp_path), "--no-open"], env=ENV)
    assert result.exit_code == 2, result.output
    assert "not a regular file" in result.stderr
    result = CliRunner().invoke(app, ["view", sample, "-o", "/dev/null", "--no-open"], env=ENV)
    assert result.exit_code == 2, result.output
    result = CliRunner().invoke(
        app, ["view", sample, "-o", str(tmp_path / "no" / "such" / "p.html"), "--no-open"], env=ENV
    )
    assert result.exit_code == 4, result.output
    assert "cannot write" in result.stderr and "Traceback" not in result.output


def test_view_unreadable_model_exit_3(tmp_path):
    result = CliRunner().invoke(app, ["view", str(tmp_path / "missing.keras"), "--no-open"], env=ENV)
    assert result.exit_code == 3
    assert "missing.keras" in result.stderr and "wrote" not in result.stderr


# -- a real browser --------------------------------------------------------------------------------

_HEAD = "<script>window.__alerts=[];window.alert=function(m){window.__alerts.push(String(m));};</script>"

_HARNESS = r"""
(function () {
  var SC = JSON.parse(document.getElementById("selftest-scenarios").textContent);
  var R = { models: [], scenarios: [], alerts: window.__alerts, csp: [] };
  document.addEventListener("securitypolicyviolation", function (e) { R.csp.push(e.blockedURI); });
  var secs = Array.prototype.slice.call(document.querySelectorAll("section.model"));
  function rowsOf(sec) { return Array.prototype.slice.call(sec.querySelectorAll("tbody tr")); }
  function shown(sec) { return rowsOf(sec).filter(function (r) { return !r.hidden; }).map(function (r) { return r.dataset.path; }); }
  function layerRow(sec, path) {
    return rowsOf(sec).filter(function (r) { return r.classList.contains("layer") && r.dataset.path === path; })[0];
  }
  function type(sec, text) {
    var f = sec.querySelector("input.filter"); f.value = text; f.dispatchEvent(new Event("input"));
  }
  function reset(sec) {
    type(sec, "");
    sec.querySelector("input.state-filter[value=all]").click();
    var c = sec.querySelector("button.clear"); if (c) c.click();
    var a = sec.querySelector("input.action[value=freeze]"); if (a) a.click();
  }
  secs.forEach(function (sec) {
    var collapsed = shown(sec).length;
    sec.querySelector("button.expand-all").click();
    R.models.push({
      source: sec.querySelector("h2.source").textContent,
      warnings: Array.prototype.map.call(sec.querySelectorAll("li.warning"), function (w) { return w.textContent; }),
      rows: rowsOf(sec).map(function (r) {
        return [r.classList.contains("layer") ? "layer" : "var", r.dataset.path,
                r.querySelector(".label").textContent, r.hidden, r.dataset.state];
      }),
      collapsed: collapsed,
      pickable: rowsOf(sec).filter(function (r) { return r.querySelector("input.pick"); }).map(function (r) { return r.dataset.path; })
    });
  });
  SC.forEach(function (s) {
    var sec = secs[s.model], res = { missing: [] };
    reset(sec);
    (s.pick || []).forEach(function (p) {
      var r = layerRow(sec, p), cb = r && r.querySelector("input.pick");
      if (cb) cb.click(); else res.missing.push(p);
    });
    if (s.action) sec.querySelector("input.action[value=" + s.action + "]").click();
    if (s.filter) type(sec, s.filter);
    if (s.state) sec.querySelector("input.state-filter[value=" + s.state + "]").click();
    res.shown = shown(sec);
    res.context = rowsOf(sec).filter(function (r) { return !r.hidden && r.classList.contains("context"); }).map(function (r) { return r.dataset.path; });
    var cmd = sec.querySelector("code.cmd");
    res.command = cmd && !cmd.dataset.empty ? cmd.textContent : null;
    var note = sec.querySelector(".picker .note");
    res.note = note ? note.textContent : null;
    res.count = sec.querySelector(".count").textContent;
    if (s.copy) {  // the Copy button hands the command, as shown, to the clipboard
      Object.defineProperty(navigator, "clipboard", { configurable: true, value: { writeText: function (t) {
        res.copied = t; return Promise.resolve();
      } } });
      sec.querySelector("button.copy").click();
    }
    R.scenarios.push(res);
  });
  var probe = new Image();
  probe.src = "http://127.0.0.1:9/varctl-probe.png";  // must be blocked by the page's own CSP
  setTimeout(function () {
    R.resources = performance.getEntriesByType("resource").map(function (e) { return e.name; });
    R.elements = { img: document.getElementsByTagName("img").length, scripts: document.scripts.length };
    document.getElementById("selftest").textContent = JSON.stringify(R);
  }, 200);
})();
"""


def _run_chromium(html_path: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp / 'profile'}",
            *extra,
            html_path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _browse(infos: list[ModelInfo], scenarios: list[dict], tmp: Path) -> dict:
    """Render `page(infos)` in headless chromium, run the harness, return what it recorded."""
    text = page(infos)
    test_copy = text.replace("<head>\n", "<head>\n" + _HEAD + "\n", 1).replace(
        "</body>",
        '<pre id="selftest"></pre>'
        f'<script type="application/json" id="selftest-scenarios">{script_json(scenarios)}</script>'
        f"<script>{_HARNESS}</script></body>",
    )
    path = tmp / "page.html"
    path.write_text(test_copy, encoding="utf-8")
    proc = _run_chromium(path, tmp, "--virtual-time-budget=3000", "--dump-dom")
    match = re.search(r'<pre id="selftest">(.*?)</pre>', proc.stdout, re.S)
    assert match and match.group(1), f"the harness did not finish: {proc.stderr[-2000:]}"
    return json.loads(unescape(match.group(1)))


@pytest.fixture(scope="module")
def hostile_keras(tmp_path_factory) -> Path:
    """A real .keras file whose layer names are markup, quotes, globs and invisible characters."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    inp = keras.Input((3,), name="in")
    base = keras.Sequential(
        [
            keras.layers.Dense(4, name="dense"),
            keras.layers.Dense(4, name=XSS),
            keras.layers.BatchNormalization(),
        ],
        name="base [v2]*",
    )
    x = base(inp)
    x = keras.layers.Dense(3, name="dense")(x)
    quoted = keras.layers.Dense(2, name=QUOTED)
    quoted.trainable = False
    x = quoted(x)
    x = keras.layers.Dense(1, name=INVISIBLE_NAME)(x)
    path = tmp_path_factory.mktemp("hostile") / "hostile model.keras"
    model = keras.Model(inp, x, name="hostile")
    model.save(path)
    model.save_weights(path.with_name("hostile.weights.h5"))  # trainable state unknown, not editable
    return path


def _plan(command: str) -> list[str]:
    """Run a command the page shows (for real, as a dry run); the layers its plan changes."""
    assert command.startswith("varctl ")
    line = f"{shlex.quote(sys.executable)} -m varctl {command[len('varctl ') :]} --dry-run -f json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LC_ALL": "C.UTF-8"}
    proc = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [c["layer"] for c in json.loads(proc.stdout)["changes"]]


@needs_chromium
def test_in_chromium(tmp_path, hostile_keras):
    weights = hostile_keras.with_name("hostile.weights.h5")
    legacy = ROOT / "tests" / "legacy_files" / "3.0.5" / "nested.keras"  # a frozen container, mixed
    files = [*SAMPLE_FILES, hostile_keras, weights, legacy]
    infos = [open_model(str(p)) for p in files] + [_hand_info()]
    tl = SAMPLE_FILES.index(SAMPLES / "transfer_learning.keras")
    bn = SAMPLE_FILES.index(SAMPLES / "batchnorm.keras")
    hm = len(SAMPLE_FILES)
    tl_info, hm_info = infos[tl], infos[hm]
    src, stem = tl_info.source, tl_info.source[: -len(".keras")]
    hsrc = hm_info.source
    scenarios = [
        {"model": tl, "filter": "dense*"},
        {"model": tl, "filter": "mobilenetv2_0.35_96/block_1_*"},
        {"model": tl, "filter": "block_16_*"},
        {"model": tl, "state": "trainable"},
        {"model": tl, "state": "frozen", "filter": "Conv_1*"},
        {"model": bn, "filter": "*moving_mean"},
        {"model": tl, "pick": ["mobilenetv2_0.35_96/Conv1", "dense"], "copy": True},
        {"model": tl, "pick": ["mobilenetv2_0.35_96", "mobilenetv2_0.35_96/Conv1"], "action": "unfreeze"},
        {"model": hm, "pick": ["base [v2]*/dense", QUOTED, f"base [v2]*/{XSS}", INVISIBLE_NAME]},
        {"model": hm, "pick": ["dense"]},
        {"model": tl},
        {"model": hm + 1, "pick": [QUOTED]},
    ]
    seen = _browse(infos, scenarios, tmp_path)

    # Every layer and variable of every model is in the DOM, as text, all shown once expanded.
    assert len(seen["models"]) == len(infos)
    for info, model in zip(infos, seen["models"], strict=True):
        assert model["source"] == _shown(info.source)
        assert model["warnings"] == [_shown(w) for w in info.warnings]
        rows = model["rows"]
        assert sorted(r[1] for r in rows if r[0] == "layer") == sorted(l.path for l in info.layers)
        assert sorted(r[1] for r in rows if r[0] == "var") == sorted(v.path for v in info.variables)
        labels = {(r[0], r[1]): r[2] for r in rows}
        for l in info.layers:
            assert labels["layer", l.path] == _shown(l.name)
        for v in info.variables:
            assert labels["var", v.path] == _shown(v.path)
            state = {True: "trainable", False: "frozen", None: "unknown"}[v.trainable]
            assert [r[4] for r in rows if r[:2] == ["var", v.path]] == [state]
        assert not any(r[3] for r in rows), "a row stays hidden after 'Expand all'"
        assert 0 < model["collapsed"] <= len(rows)
    # Hostile names stayed text: no element, no script ran, nothing fetched.
    assert seen["alerts"] == []
    assert seen["elements"] == {"img": 0, "scripts": 5}  # alert trap, data, page, scenarios, harness
    # The one resource entry is the harness's own probe, which the CSP blocked: the page has none.
    assert seen["resources"] == ["http://127.0.0.1:9/varctl-probe.png"]
    assert "http://127.0.0.1:9/varctl-probe.png" in seen["csp"]
    assert seen["models"][-1]["rows"][0][2] == "evil"
    states = {r[4] for m in seen["models"] for r in m["rows"]}
    assert states == {"trainable", "frozen", "mixed", "unknown", "none"}
    # A weights-only file has no layer flags to edit: no picker, no checkbox.
    assert infos[hm + 1].format == "weights" and seen["models"][hm + 1]["pickable"] == []
    assert seen["models"][hm]["pickable"] and seen["scenarios"][-1]["command"] is None

    res = seen["scenarios"]

    def expected(info: ModelInfo, pattern: str) -> set[str]:
        """The rows `varctl list -p pattern` selects, plus the layers that contain them."""
        sel = Selector((pattern,))
        paths = {v.path for v in sel.variables(info)} | {l.path for l in sel.layers(info)}
        for l in info.layers:
            if any(
                l.path == p or p.startswith(l.path + "/") for p in {x.path for x in sel.layers(info)}
            ) or any(v.layer == l.path or v.layer.startswith(l.path + "/") for v in sel.variables(info)):
                paths.add(l.path)
        return paths

    assert res[0]["shown"] == ["dense", "dense/kernel", "dense/bias"]
    assert set(res[1]["shown"]) == expected(tl_info, "mobilenetv2_0.35_96/block_1_*")
    assert res[1]["context"] == ["mobilenetv2_0.35_96"]
    assert set(res[2]["shown"]) == expected(tl_info, "block_16_*")
    trainable = filter_trainable(list(tl_info.variables), True)
    assert res[3]["shown"] == ["dense", *(v.path for v in trainable)]
    assert res[3]["count"] == f"{len(trainable)} of {len(tl_info.variables)} variables match"
    frozen_conv = [v.path for v in tl_info.variables if v.layer.split("/")[-1].startswith("Conv_1")]
    assert [p for p in res[4]["shown"] if "/" in p and p.count("/") > 1] == frozen_conv
    moving = [v.path for v in infos[bn].variables if v.name == "moving_mean"]
    assert [p for p in res[5]["shown"] if p in {v.path for v in infos[bn].variables}] == moving
    assert all(not r["missing"] for r in res[:-1])

    # The picker: exact, shell-quoted commands that select exactly the checked layers.
    assert res[6]["command"] == f"varctl freeze '{src}' -p 'Conv1' -p 'dense' -o '{stem}.frozen.keras'"
    assert res[6]["copied"] == res[6]["command"]
    assert _plan(res[6]["command"]) == ["dense"]  # Conv1 is frozen already (its base is)
    assert res[7]["command"] == (
        f"varctl unfreeze '{src}' -p 'mobilenetv2_0.35_96' -o '{stem}.unfrozen.keras'"
    )
    cmd = res[8]["command"]
    assert cmd == (
        f"varctl freeze '{hsrc}' -p 'base [[]v2][*]/dense' -p '<img src=x onerror=alert(1)>'"
        f" -p 'it'\"'\"'s \"q\" [[]x][*]' -p $'dense_\\xe2\\x80\\xa8 \\xe2\\x80\\xaegnp.exe'"
        f" -o '{hsrc[: -len('.keras')]}.frozen.keras'"
    )
    assert res[8]["note"] == ""
    # QUOTED is frozen already: the plan changes the other three, and not the top-level `dense`.
    assert sorted(_plan(cmd)) == sorted(["base [v2]*/dense", f"base [v2]*/{XSS}", INVISIBLE_NAME])
    assert res[9]["command"].endswith("-p 'dense' -o '" + hsrc[: -len(".keras")] + ".frozen.keras'")
    assert "also selects base [v2]*/dense" in res[9]["note"]
    assert res[10]["command"] is None
    assert res[11]["missing"] == [QUOTED]


@needs_chromium
def test_page_renders_without_errors_in_the_console(tmp_path):
    """The page's own script runs cleanly (no exception logged) on a multi-model page."""
    text = page(
        [open_model(str(SAMPLES / "transfer_learning.keras")), open_model(str(SAMPLES / "batchnorm.h5"))]
    )
    path = tmp_path / "p.html"
    path.write_text(text, encoding="utf-8")
    proc = _run_chromium(path, tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom")
    assert "Uncaught" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stdout.count('<section class="model"') == 2
    assert "Check layers in the table" in proc.stdout
