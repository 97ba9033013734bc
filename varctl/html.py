"""`page(infos)`: one self-contained HTML page (inline CSS and JS, no network) showing models.

The model data goes into the page as JSON in a `<script type="application/json">` block and the
script builds the DOM with createElement/textContent, so a string from the file (a layer named
`<img onerror=...>`, `</script>`) is always text, never markup. The page's Content-Security-Policy
allows no request of any kind: everything it needs is inline.
"""

from __future__ import annotations

import html
import json
from typing import Any

from varctl import __version__
from varctl.model import ModelInfo, Variable

PAGE_SCHEMA = "varctl.html/1"
EDITABLE_FORMATS = ("keras", "h5")  # what freeze/unfreeze accept (formats.EDITABLE)

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)

# Characters that end or change the meaning of a <script> block or a JS string, as JSON escapes.
_SCRIPT_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def page_data(infos: list[ModelInfo]) -> dict[str, Any]:
    """What the page shows, as plain JSON-able data (the page's `varctl-data` block)."""
    return {"schema": PAGE_SCHEMA, "varctl": __version__, "models": [_model(i) for i in infos]}


def _model(info: ModelInfo) -> dict[str, Any]:
    editable = info.format in EDITABLE_FORMATS
    return {
        "source": info.source,
        "format": info.format,
        "keras_version": info.keras_version,
        "name": info.name,
        "class_name": info.class_name,
        "trainable": info.trainable,
        "editable": editable,
        "totals": info.totals(),
        "warnings": list(info.warnings),
        "layers": [
            {
                "path": l.path,
                "name": l.name,
                "class_name": l.class_name,
                "parent": l.parent,
                "depth": l.depth,
                "flag": l.flag,
                # freeze/unfreeze change layers that have a config entry of their own
                "pickable": editable and l.editable and l.class_name != "InputLayer",
            }
            for l in info.layers
        ],
        "variables": [
            {
                "path": v.path,
                "layer": v.layer,
                "name": v.name,
                "shape": list(v.shape),
                "dtype": v.dtype,
                "params": v.params,
                "trainable": v.trainable,
                "reason": v.reason,
            }
            for v in info.variables
        ],
    }


def restrict(info: ModelInfo, variables: list[Variable]) -> ModelInfo:
    """`info` showing only `variables` (a `-p`/`--trainable` selection) and the layers that hold them."""
    if len(variables) == len(info.variables):
        return info
    keep: set[str] = set()
    for v in variables:
        parts = v.layer.split("/")
        keep.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    layers = tuple(l for l in info.layers if l.path in keep)
    return info.replace(layers=layers, variables=tuple(variables))


def script_json(payload: Any) -> str:
    """JSON that is safe inside `<script type="application/json">`: no `<`, `>`, `&`, U+2028/9.

    ASCII only (non-ASCII as \\u escapes), so a lone surrogate in a name cannot break the output.
    """
    text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    for ch, esc in _SCRIPT_ESCAPES.items():
        text = text.replace(ch, esc)
    return text


def _title(infos: list[ModelInfo]) -> str:
    if not infos:
        return "varctl"
    names = ", ".join(i.source for i in infos[:3]) + (f" and {len(infos) - 3} more" if len(infos) > 3 else "")
    return f"{names} · varctl"


def page(infos: list[ModelInfo]) -> str:
    """One self-contained HTML page showing every model in `infos` (in order).

    Args:
        infos: the models, as read by `open_model`.

    Returns:
        The page (UTF-8 text). It makes no network request and runs offline.
    """
    return _TEMPLATE.format(
        csp=CSP,  # a constant with no character that needs escaping in an attribute
        title=html.escape(_title(infos), quote=False),
        version=html.escape(__version__, quote=False),
        css=_CSS,
        data=script_json(page_data(infos)),
        js=_JS,
    )


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="varctl {version}">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header class="top"><span class="logo">varctl</span><span class="sub">saved-model variables</span></header>
<main id="app"><noscript>This page needs JavaScript to show the model (it runs offline).</noscript></main>
<footer class="foot">Made by varctl {version}. This page is self-contained and makes no network request.</footer>
<script type="application/json" id="varctl-data">{data}</script>
<script>{js}</script>
</body>
</html>
"""

_CSS = """
:root {
  --bg: #f7f7f8; --card: #ffffff; --fg: #1d1d21; --muted: #6b6b76; --line: #e3e3e8;
  --accent: #2f6fde; --train: #1f9d55; --train-bg: #e3f5ea; --frozen: #5b6b8c; --frozen-bg: #e6eaf2;
  --mixed: #b7791f; --mixed-bg: #fbf0dc; --unknown: #a33ea1; --unknown-bg: #f6e3f5;
  --warn-bg: #fff6e0; --warn-line: #f0c36d; --hover: #f1f4fb; --code-bg: #f0f1f4;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace;
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #15161a; --card: #1e1f24; --fg: #e6e6ea; --muted: #9a9aa6; --line: #32333b;
    --accent: #6ea0ff; --train: #4cc27f; --train-bg: #16311f; --frozen: #9aa9c7; --frozen-bg: #252b38;
    --mixed: #e3aa4f; --mixed-bg: #3a2d14; --unknown: #dc8bda; --unknown-bg: #3a2139;
    --warn-bg: #33290f; --warn-line: #8a6a1f; --hover: #262833; --code-bg: #2a2b31;
  }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
.top { display: flex; align-items: baseline; gap: .6em; padding: 14px 24px 0; }
.logo { font-weight: 700; font-size: 17px; letter-spacing: -.01em; }
.sub { color: var(--muted); }
main { padding: 8px 24px 24px; }
.foot { color: var(--muted); font-size: 12px; padding: 0 24px 24px; }
.model { background: var(--card); border: 1px solid var(--line); border-radius: 10px; margin: 12px 0 20px;
  box-shadow: 0 1px 2px rgba(0,0,0,.04); }
.head { padding: 16px 18px 10px; border-bottom: 1px solid var(--line); }
.head h2 { margin: 0; font: 600 16px/1.3 var(--mono); word-break: break-all; }
.meta { color: var(--muted); margin-top: 3px; }
.meta code, .mono { font-family: var(--mono); font-size: 12.5px; }
.tiles { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0 4px; }
.tile { border: 1px solid var(--line); border-radius: 8px; padding: 7px 12px; min-width: 130px; }
.tile b { display: block; font-size: 17px; font-variant-numeric: tabular-nums; }
.tile span { color: var(--muted); font-size: 12px; }
.tile.t b { color: var(--train); } .tile.f b { color: var(--frozen); }
.overall { height: 8px; border-radius: 4px; overflow: hidden; display: flex; background: var(--line);
  margin: 10px 0 4px; max-width: 640px; }
.overall i, .bar i { display: block; height: 100%; }
.tr { background: var(--train); } .fr { background: var(--frozen); } .un { background: var(--unknown); }
.warnings { margin: 10px 0 4px; padding: 8px 12px; background: var(--warn-bg);
  border: 1px solid var(--warn-line); border-radius: 8px; }
.warnings li { margin: 2px 0 2px 1em; overflow-wrap: anywhere; }
.warnings ul { margin: 0; padding: 0; }
.warnings strong { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.tools { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: center; padding: 10px 18px;
  border-bottom: 1px solid var(--line); }
.tools input[type=search], .picker input[type=text] { font: 13px var(--mono); padding: 5px 9px; width: 300px;
  border: 1px solid var(--line); border-radius: 6px; background: var(--bg); color: var(--fg); }
.tools input:focus, .picker input:focus { outline: 2px solid var(--accent); outline-offset: -1px; }
.seg { display: inline-flex; border: 1px solid var(--line); border-radius: 6px; overflow: hidden; }
.seg label { padding: 4px 10px; cursor: pointer; user-select: none; }
.seg input { display: none; }
.seg label:has(input:checked) { background: var(--accent); color: #fff; }
button { font: inherit; font-size: 13px; padding: 4px 10px; border: 1px solid var(--line); border-radius: 6px;
  background: var(--card); color: var(--fg); cursor: pointer; }
button:hover { background: var(--hover); }
.count { color: var(--muted); margin-left: auto; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th { text-align: left; font-weight: 600; font-size: 12px; color: var(--muted); padding: 6px 8px;
  border-bottom: 1px solid var(--line); white-space: nowrap; }
td { padding: 3px 8px; border-bottom: 1px solid var(--line); vertical-align: middle; white-space: nowrap; }
tr:hover td { background: var(--hover); }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.pick { width: 26px; padding-right: 0; }
tr.var td { font-size: 12.5px; color: var(--muted); }
tr.var td.name { color: var(--fg); font-family: var(--mono); font-size: 12px; }
tr.layer td.name { font-weight: 500; }
tr.context td { opacity: .55; }
.name .caret { display: inline-block; width: 16px; border: 0; padding: 0; background: none; color: var(--muted);
  cursor: pointer; font-size: 11px; }
.name .nocaret { display: inline-block; width: 16px; }
.cls { color: var(--muted); }
.bar { display: inline-flex; width: 96px; height: 7px; background: var(--line); border-radius: 4px;
  overflow: hidden; vertical-align: middle; }
.pct { display: inline-block; width: 52px; text-align: right; color: var(--muted); font-size: 12px;
  font-variant-numeric: tabular-nums; margin-left: 6px; }
.badge { display: inline-block; padding: 0 7px; border-radius: 10px; font-size: 12px; font-weight: 500; }
.s-trainable { color: var(--train); background: var(--train-bg); }
.s-frozen { color: var(--frozen); background: var(--frozen-bg); }
.s-mixed { color: var(--mixed); background: var(--mixed-bg); }
.s-unknown { color: var(--unknown); background: var(--unknown-bg); }
.s-none { color: var(--muted); }
td.reason { color: var(--muted); font-size: 12px; white-space: normal; min-width: 170px; max-width: 340px; }
.prefix { color: var(--muted); display: inline-block; max-width: 26ch; overflow: hidden; white-space: nowrap;
  text-overflow: ellipsis; direction: rtl; vertical-align: bottom; }
.bar i, .overall i { min-width: 2px; }
.picker { padding: 10px 18px 14px; border-top: 1px solid var(--line); display: grid; gap: 8px;
  background: var(--card); border-radius: 0 0 10px 10px; }
.picker.active { position: sticky; bottom: 0; box-shadow: 0 -4px 12px rgba(0,0,0,.08); }
.picker .row { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: center; }
.picker input.output { flex: 1; min-width: 260px; }
.picker .cmdbox { display: flex; gap: 8px; align-items: stretch; }
.picker code.cmd { flex: 1; display: block; padding: 8px 10px; background: var(--code-bg); border-radius: 6px;
  font: 12.5px/1.5 var(--mono); white-space: pre-wrap; overflow-wrap: anywhere; min-height: 2.2em; }
.picker .note { color: var(--mixed); font-size: 12.5px; }
.picker .hint { color: var(--muted); font-size: 12.5px; }
.legend { display: inline-flex; gap: 10px; color: var(--muted); font-size: 12px; align-items: center; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px;
  vertical-align: -1px; }
[hidden] { display: none !important; }
"""

# The page's script. It reads the JSON block and builds everything with createElement and
# textContent (never innerHTML), so nothing from the model file is parsed as markup.
_JS = r"""
"use strict";
(function () {
  var DATA = JSON.parse(document.getElementById("varctl-data").textContent);
  var app = document.getElementById("app");
  app.textContent = "";

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function num(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ","); }
  function bytes(n) {
    var units = ["B", "KB", "MB", "GB", "TB"], i = 0, s = n;
    while (s >= 1000 && i < units.length - 1) { s /= 1000; i++; }
    return i === 0 ? s + " B" : s.toFixed(2) + " " + units[i];
  }
  function pct(part, whole) { return whole ? (100 * part / whole) : 0; }
  function fmtPct(p) { return p === 0 ? "0%" : p < 0.01 ? "<0.01%" : p.toFixed(2) + "%"; }
  function shape(s) { return "(" + s.join(", ") + (s.length === 1 ? ",)" : ")"); }
  // Control, zero-width and bidi characters are shown as \u escapes (as the terminal output does).
  var INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g;
  var HAS_INVISIBLE = new RegExp(INVISIBLE.source);
  function show(s) {
    return String(s).replace(INVISIBLE, function (c) {
      return "\\u" + ("000" + c.charCodeAt(0).toString(16)).slice(-4);
    });
  }

  // A shell word: single quotes, or $'...' with \xHH escapes of the UTF-8 bytes when the text
  // holds characters a reader could not see (so the command shown is exactly the command copied).
  function shq(s) {
    s = String(s);
    if (HAS_INVISIBLE.test(s)) {
      return "$'" + s.replace(/[\\']/g, "\\$&").replace(INVISIBLE, function (c) {
        return Array.prototype.map.call(new TextEncoder().encode(c), function (b) {
          return "\\x" + ("0" + b.toString(16)).slice(-2);
        }).join("");
      }) + "'";
    }
    return "'" + s.replace(/'/g, "'\"'\"'") + "'";
  }
  // fnmatch: a literal name as a glob (varctl patterns are globs).
  function globEscape(s) { return s.replace(/[*?[]/g, "[$&]"); }
  // fnmatch.translate, case-sensitive, full match.
  function globRegex(p) {
    var out = "", i = 0, n = p.length;
    while (i < n) {
      var c = p[i++];
      if (c === "*") out += ".*";
      else if (c === "?") out += ".";
      else if (c === "[") {
        var j = i;
        if (j < n && p[j] === "!") j++;
        if (j < n && p[j] === "]") j++;
        while (j < n && p[j] !== "]") j++;
        if (j >= n) out += "\\[";
        else {
          var stuff = p.slice(i, j).replace(/\\/g, "\\\\");
          i = j + 1;
          if (stuff[0] === "!") stuff = "^" + stuff.slice(1);
          else if (stuff[0] === "^") stuff = "\\" + stuff;
          out += "[" + stuff + "]";
        }
      } else out += c.replace(/[.*+?^${}()|[\]\\\/-]/g, "\\$&");
    }
    try { return new RegExp("^(?:" + out + ")$", "s"); } catch (e) { return /(?!)/; }
  }
  function matcher(q) {
    if (/[*?[]/.test(q)) { var rx = globRegex(q); return function (s) { return rx.test(s); }; }
    var low = q.toLowerCase();
    return function (s) { return s.toLowerCase().indexOf(low) !== -1; };
  }
  function stateOf(vars) {
    if (!vars.length) return "none";
    var t = 0, f = 0;
    for (var i = 0; i < vars.length; i++) {
      if (vars[i].trainable === null) return "unknown";
      if (vars[i].trainable) t++; else f++;
    }
    return f === 0 ? "trainable" : t === 0 ? "frozen" : "mixed";
  }
  var STATE_TEXT = { trainable: "trainable", frozen: "frozen", mixed: "mixed", unknown: "unknown", none: "—" };
  function badge(state, title) {
    var b = el("span", "badge s-" + state, STATE_TEXT[state]);
    if (title) b.title = title;
    return b;
  }
  function bar(tparams, fparams, uparams, total) {
    var wrap = el("span", "cell-bar");
    var b = el("span", "bar");
    [[tparams, "tr"], [fparams, "fr"], [uparams, "un"]].forEach(function (p) {
      if (p[0] > 0) { var i = el("i", p[1]); i.style.width = pct(p[0], total) + "%"; b.appendChild(i); }
    });
    var share = pct(tparams + fparams + uparams, total);
    b.title = fmtPct(share) + " of the model's params: " + num(tparams) + " trainable, " +
      num(fparams) + " frozen" + (uparams ? ", " + num(uparams) + " unknown" : "");
    wrap.appendChild(b);
    wrap.appendChild(el("span", "pct", tparams + fparams + uparams ? fmtPct(share) : ""));
    return wrap;
  }

  DATA.models.forEach(function (m, mi) { app.appendChild(renderModel(m, mi)); });

  function renderModel(m, mi) {
    var sec = el("section", "model");
    sec.dataset.model = String(mi);
    var total = m.totals.params;

    // Header: file, format, Keras version, totals, warnings.
    var head = el("div", "head");
    head.appendChild(el("h2", "source", show(m.source)));
    var meta = el("div", "meta");
    meta.appendChild(document.createTextNode(m.format + " · " +
      (m.keras_version ? "Keras " + m.keras_version : "Keras version unknown") + " · " + m.class_name + " "));
    meta.appendChild(el("code", "", show(m.name)));
    meta.appendChild(document.createTextNode(" · " + num(m.layers.length) + " layers · " +
      num(m.variables.length) + " variables"));
    head.appendChild(meta);
    var tiles = el("div", "tiles");
    [["Total params", num(total), ""],
     ["Trainable", num(m.totals.trainable) + " (" + fmtPct(pct(m.totals.trainable, total)) + ")", "t"],
     ["Non-trainable", num(m.totals.non_trainable), "f"],
     ["Size", bytes(m.totals.bytes), ""]].forEach(function (t) {
      var tile = el("div", "tile " + t[2]);
      tile.appendChild(el("b", "", t[1]));
      tile.appendChild(el("span", "", t[0]));
      tiles.appendChild(tile);
    });
    head.appendChild(tiles);
    var unknown = 0;
    m.variables.forEach(function (v) { if (v.trainable === null) unknown += v.params; });
    if (unknown) tiles.children[2].lastChild.textContent = "Non-trainable (" + num(unknown) + " unknown)";
    var overall = el("div", "overall");
    overall.title = "trainable vs non-trainable params";
    [[m.totals.trainable, "tr"], [m.totals.non_trainable - unknown, "fr"], [unknown, "un"]].forEach(function (p) {
      if (p[0] > 0) { var i = el("i", p[1]); i.style.width = pct(p[0], total) + "%"; overall.appendChild(i); }
    });
    head.appendChild(overall);
    var legend = el("div", "legend");
    [["tr", "trainable"], ["fr", "frozen / non-trainable"], ["un", "unknown"]].forEach(function (l) {
      var s = el("span"); s.appendChild(el("i", l[0])); s.appendChild(document.createTextNode(l[1]));
      legend.appendChild(s);
    });
    head.appendChild(legend);
    if (m.warnings.length) {
      var w = el("div", "warnings");
      w.appendChild(el("strong", "", m.warnings.length === 1 ? "Warning" : m.warnings.length + " warnings"));
      var ul = el("ul");
      m.warnings.forEach(function (t) { ul.appendChild(el("li", "warning", show(t))); });
      w.appendChild(ul);
      head.appendChild(w);
    }
    sec.appendChild(head);

    // The tree: layers by path, variables under their layer (or the nearest enclosing one).
    var nodes = {}, roots = [], order = [];
    m.layers.forEach(function (l) {
      var n = { layer: l, kids: [], vars: [], all: [], parent: null, expanded: true };
      nodes[l.path] = n;
      order.push(n);
    });
    function above(a, n) { for (; a; a = a.parent) if (a === n) return true; return false; }
    order.forEach(function (n) {
      var p = n.layer.parent !== null ? nodes[n.layer.parent] : null;
      if (p && !above(p, n)) { n.parent = p; p.kids.push(n); } else roots.push(n);  // never a cycle
    });
    var looseVars = [];
    var vnodes = m.variables.map(function (v) {
      var owner = nodes[v.layer], path = v.layer;
      while (!owner && path.indexOf("/") !== -1) { path = path.slice(0, path.lastIndexOf("/")); owner = nodes[path]; }
      var vn = { v: v, owner: owner || null };
      if (owner) owner.vars.push(vn); else looseVars.push(vn);
      for (var o = owner; o; o = o.parent) o.all.push(v);
      return vn;
    });
    function rowsBelow(n) { var c = n.vars.length; n.kids.forEach(function (k) { c += 1 + rowsBelow(k); }); return c; }
    function defaults() { order.forEach(function (n) { n.expanded = rowsBelow(n) <= 60; }); }
    defaults();

    // Toolbar: filter box, trainable/frozen/all, expand/collapse.
    var tools = el("div", "tools");
    var search = el("input");
    search.type = "search";
    search.className = "filter";
    search.placeholder = "filter: dense*  base/*  kernel";
    search.title = "A glob (* ? [..]) on layer names, or on paths when it contains '/', as in varctl -p " +
      "(it also matches variable names); plain text matches anywhere in the name, ignoring case.";
    search.setAttribute("aria-label", "filter layers and variables");
    tools.appendChild(search);
    var seg = el("span", "seg"), stateFilter = "all";
    ["all", "trainable", "frozen"].forEach(function (s) {
      var lab = el("label"), r = el("input");
      r.type = "radio"; r.name = "state-" + mi; r.value = s; r.checked = s === "all";
      r.className = "state-filter";
      r.addEventListener("change", function () { stateFilter = s; applyFilter(); });
      lab.appendChild(r); lab.appendChild(document.createTextNode(s));
      seg.appendChild(lab);
    });
    tools.appendChild(seg);
    var bExp = el("button", "expand-all", "Expand all"), bCol = el("button", "collapse-all", "Collapse all");
    bExp.type = bCol.type = "button";
    bExp.addEventListener("click", function () { order.forEach(function (n) { n.expanded = true; }); refresh(); });
    bCol.addEventListener("click", function () { order.forEach(function (n) { n.expanded = false; }); refresh(); });
    tools.appendChild(bExp); tools.appendChild(bCol);
    var count = el("span", "count");
    tools.appendChild(count);
    sec.appendChild(tools);

    var scroll = el("div", "scroll");
    var table = el("table", "tree");
    var thead = el("thead"), hr = el("tr");
    [["", "pick"], ["layer / variable", ""], ["class / shape", ""], ["dtype", ""], ["params", "num"],
     ["share of params", ""], ["trainable", ""], ["why not trainable", ""]].forEach(function (h) { hr.appendChild(el("th", h[1], h[0])); });
    thead.appendChild(hr); table.appendChild(thead);
    var tbody = el("tbody");
    table.appendChild(tbody);
    scroll.appendChild(table);
    sec.appendChild(scroll);

    function indent(td, depth) { td.style.paddingLeft = (8 + 18 * depth) + "px"; }
    function layerRow(n) {
      var l = n.layer, tr = el("tr", "layer");
      tr.dataset.path = l.path;
      n.row = tr;
      var tdPick = el("td", "pick");
      if (l.pickable && n.all.length) {
        var cb = el("input"); cb.type = "checkbox"; cb.className = "pick";
        cb.title = "select for freeze/unfreeze";
        cb.addEventListener("change", function () { n.picked = cb.checked; updateCommand(); });
        n.checkbox = cb;
        tdPick.appendChild(cb);
      }
      tr.appendChild(tdPick);
      var tdName = el("td", "name");
      indent(tdName, l.depth);
      if (n.kids.length || n.vars.length) {
        var c = el("button", "caret");
        c.type = "button";
        c.setAttribute("aria-label", "expand or collapse");
        c.addEventListener("click", function () { n.expanded = !n.expanded; refresh(); });
        n.caret = c;
        tdName.appendChild(c);
      } else tdName.appendChild(el("span", "nocaret"));
      tdName.appendChild(el("span", "label", show(l.name)));
      tdName.title = show(l.path);
      tr.appendChild(tdName);
      tr.appendChild(el("td", "cls", show(l.class_name)));
      tr.appendChild(el("td", ""));
      var p = 0, t = 0, u = 0;
      n.all.forEach(function (v) { p += v.params; if (v.trainable === null) u += v.params; else if (v.trainable) t += v.params; });
      tr.appendChild(el("td", "num", num(p)));
      var tdBar = el("td", "");
      if (n.all.length) tdBar.appendChild(bar(t, p - t - u, u, total));
      tr.appendChild(tdBar);
      var tdState = el("td", "");
      var st = stateOf(n.all);
      tdState.appendChild(badge(st, "layer flag: " + (l.flag ? "trainable" : "frozen")));
      tr.dataset.state = st;
      tr.appendChild(tdState);
      tr.appendChild(el("td", "reason"));
      tbody.appendChild(tr);
      n.vars.forEach(function (vn) { varRow(vn, l.depth + 1); });
      n.kids.forEach(layerRow);
    }
    function varRow(vn, depth) {
      var v = vn.v, tr = el("tr", "var");
      tr.dataset.path = v.path;
      vn.row = tr;
      tr.appendChild(el("td", "pick"));
      var tdName = el("td", "name");
      indent(tdName, depth);
      tdName.appendChild(el("span", "nocaret"));
      var label = el("span", "label"), cut = v.path.length - v.name.length;
      if (cut > 0 && v.path.slice(cut) === v.name) {  // the layer part muted, the name plain
        var pre = el("span", "prefix"), inner = el("bdi", "", show(v.path.slice(0, cut)));
        inner.dir = "ltr";
        pre.appendChild(inner);
        label.appendChild(pre);
        label.appendChild(el("span", "", show(v.name)));
      } else label.textContent = show(v.path);
      tdName.appendChild(label);
      tdName.title = show(v.path);
      tr.appendChild(tdName);
      tr.appendChild(el("td", "mono", shape(v.shape)));
      tr.appendChild(el("td", "mono", show(v.dtype)));
      tr.appendChild(el("td", "num", num(v.params)));
      var tdBar = el("td", "");
      var u = v.trainable === null ? v.params : 0, t = v.trainable ? v.params : 0;
      tdBar.appendChild(bar(t, v.params - t - u, u, total));
      tr.appendChild(tdBar);
      var tdState = el("td", "");
      var st = v.trainable === null ? "unknown" : v.trainable ? "trainable" : "frozen";
      tdState.appendChild(badge(st));
      tr.dataset.state = st;
      tr.appendChild(tdState);
      tr.appendChild(el("td", "reason", v.reason ? show(v.reason) : ""));
      tbody.appendChild(tr);
    }
    looseVars.forEach(function (vn) { varRow(vn, 0); });
    roots.forEach(layerRow);

    // Filtering: which rows pass (ok), then which are shown (ok and every ancestor expanded).
    var filtering = false;
    function varPasses(v) {
      if (stateFilter === "trainable") return v.trainable === true;
      if (stateFilter === "frozen") return v.trainable !== true;  // as `varctl list --frozen`
      return true;
    }
    function applyFilter() {
      var q = search.value.trim(), on = q !== "" || stateFilter !== "all";
      var match = q ? matcher(q) : null, byPath = q.indexOf("/") !== -1;
      function walk(n, selected) {
        var l = n.layer;
        var sel = selected || !match || match(byPath ? l.path : l.name);
        var any = false;
        n.vars.forEach(function (vn) {
          vn.ok = (sel || (match && match(byPath ? vn.v.path : vn.v.name))) && varPasses(vn.v);
          any = any || vn.ok;
        });
        n.kids.forEach(function (k) { if (walk(k, sel)) any = true; });
        n.ok = any || (sel && stateFilter === "all");
        n.context = n.ok && !(sel && (stateFilter === "all" || any));
        return n.ok;
      }
      looseVars.forEach(function (vn) {
        vn.ok = (!match || match(byPath ? vn.v.path : vn.v.name)) && varPasses(vn.v);
      });
      roots.forEach(function (r) { walk(r, false); });
      if (on) {  // open the way to everything that passes
        order.forEach(function (n) { n.expanded = false; });
        vnodes.forEach(function (vn) { if (vn.ok) for (var o = vn.owner; o; o = o.parent) o.expanded = true; });
        order.forEach(function (n) { if (n.ok) for (var o = n.parent; o; o = o.parent) o.expanded = true; });
      } else if (filtering) defaults();
      filtering = on;
      refresh();
    }
    function refresh() {
      var shownVars = 0, okVars = 0;
      function visible(o) { for (; o; o = o.parent) if (!o.expanded) return false; return true; }
      order.forEach(function (n) {
        n.row.hidden = !((!filtering || n.ok) && visible(n.parent));
        n.row.classList.toggle("context", filtering && !!n.context);
        if (n.caret) {
          n.caret.textContent = n.expanded ? "▾" : "▸";
          n.caret.setAttribute("aria-expanded", n.expanded ? "true" : "false");
        }
      });
      vnodes.forEach(function (vn) {
        var ok = !filtering || vn.ok;
        vn.row.hidden = !(ok && visible(vn.owner));
        if (ok) okVars++;
        if (!vn.row.hidden) shownVars++;
      });
      count.textContent = filtering
        ? okVars + " of " + vnodes.length + " variables match"
        : vnodes.length + " variables" + (shownVars < vnodes.length ? " (" + shownVars + " shown; expand layers for the rest)" : "");
    }
    search.addEventListener("input", applyFilter);

    // Freeze/unfreeze picker: checked layers -> the exact varctl command.
    var picker = el("div", "picker");
    var cmdCode = el("code", "cmd"), note = el("div", "note"), action = "freeze";
    var out = el("input");
    if (m.editable) {
      var row1 = el("div", "row");
      var seg2 = el("span", "seg");
      ["freeze", "unfreeze"].forEach(function (a) {
        var lab = el("label"), r = el("input");
        r.type = "radio"; r.name = "action-" + mi; r.value = a; r.checked = a === "freeze";
        r.className = "action";
        r.addEventListener("change", function () {
          if (out.value === defaultOut(action)) out.value = defaultOut(a);
          action = a; updateCommand();
        });
        lab.appendChild(r); lab.appendChild(document.createTextNode(a));
        seg2.appendChild(lab);
      });
      row1.appendChild(seg2);
      row1.appendChild(el("span", "hint", "the checked layers (and everything inside them), writing to"));
      out.type = "text"; out.className = "output"; out.value = defaultOut(action);
      out.setAttribute("aria-label", "output file");
      out.addEventListener("input", updateCommand);
      row1.appendChild(out);
      var clear = el("button", "clear", "Clear selection");
      clear.type = "button";
      clear.addEventListener("click", function () {
        order.forEach(function (n) { if (n.checkbox) { n.checkbox.checked = false; n.picked = false; } });
        updateCommand();
      });
      row1.appendChild(clear);
      picker.appendChild(row1);
      var box = el("div", "cmdbox");
      box.appendChild(cmdCode);
      var copy = el("button", "copy", "Copy");
      copy.type = "button";
      copy.addEventListener("click", function () { copyText(cmdCode.textContent, copy); });
      box.appendChild(copy);
      picker.appendChild(box);
      picker.appendChild(note);
    } else {
      picker.appendChild(el("div", "hint", "varctl freeze/unfreeze edit .keras and .h5 models; this " +
        m.format + " file can be listed but not edited."));
    }
    sec.appendChild(picker);

    function defaultOut(a) {
      var file = m.source, slash = file.lastIndexOf("/"), dot = file.lastIndexOf(".");
      var stem = dot > slash + 1 ? file.slice(0, dot) : file, ext = dot > slash + 1 ? file.slice(dot) : ".keras";
      return stem + (a === "freeze" ? ".frozen" : ".unfrozen") + ext;
    }
    // The pattern that selects exactly this layer: its name when no other layer outside it has
    // that name, else its full path (a pattern with '/' matches paths); glob characters escaped.
    function patternFor(n) {
      var l = n.layer;
      if (l.name.indexOf("/") === -1) {
        var clash = order.filter(function (o) {
          return o.layer.name === l.name && o.layer.path !== l.path && o.layer.path.indexOf(l.path + "/") !== 0;
        });
        if (!clash.length) return { p: globEscape(l.name) };
        if (l.path.indexOf("/") === -1) return { p: globEscape(l.name), clash: clash };
      }
      return { p: globEscape(l.path) };
    }
    function updateCommand() {
      if (!m.editable) return;
      var chosen = order.filter(function (n) {
        if (!n.picked) return false;
        for (var o = n.parent; o; o = o.parent) if (o.picked) return false;  // inside a checked layer
        return true;
      });
      note.textContent = "";
      picker.classList.toggle("active", chosen.length > 0);  // keep the command in view while picking
      if (!chosen.length) {
        cmdCode.textContent = "";
        cmdCode.dataset.empty = "true";
        cmdCode.appendChild(el("span", "hint", "Check layers in the table to build a varctl " + action + " command."));
        return;
      }
      delete cmdCode.dataset.empty;
      var file = m.source.charAt(0) === "-" ? "./" + m.source : m.source;
      var words = ["varctl", action, shq(file)], notes = [];
      chosen.forEach(function (n) {
        var pat = patternFor(n);
        words.push("-p", shq(pat.p));
        if (pat.clash) notes.push("'" + show(pat.p) + "' also selects " + pat.clash.map(function (c) {
          return show(c.layer.path); }).join(", ") + " (a pattern without '/' matches names at any depth)");
      });
      var o = out.value.trim() || defaultOut(action);
      words.push("-o", shq(o.charAt(0) === "-" ? "./" + o : o));
      cmdCode.textContent = words.join(" ");
      note.textContent = notes.join("; ");
    }
    updateCommand();
    applyFilter();
    return sec;
  }

  function copyText(text, button) {
    function done(ok) {
      var old = "Copy";
      button.textContent = ok ? "Copied" : "Select and copy";
      setTimeout(function () { button.textContent = old; }, 1500);
    }
    if (!text) return;
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(fallback()); });
    } else done(fallback());
    function fallback() {
      var ta = document.createElement("textarea");
      ta.value = text; ta.setAttribute("readonly", ""); ta.style.position = "fixed"; ta.style.opacity = "0";
      document.body.appendChild(ta); ta.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(ta);
      return ok;
    }
  }
})();
"""
