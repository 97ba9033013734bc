"""Regenerate docs/img/html-view.png: the transfer-learning sample's page in headless chromium.

Run from the repository root: `python docs/img/make_screenshot.py` (needs /usr/bin/chromium).
A copy of the page gets a few lines of script that do what a user would (type a filter, check
two layers, pick "unfreeze") before the screenshot is taken.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from varctl.formats import open_model  # noqa: E402
from varctl.html import page  # noqa: E402

DEMO = """<script>
(function () {
  var sec = document.querySelector("section.model");
  var f = sec.querySelector("input.filter");
  f.value = "block_16_*"; f.dispatchEvent(new Event("input"));
  sec.querySelectorAll("tr.layer").forEach(function (r) {
    if (/block_16_(expand|expand_BN)$/.test(r.dataset.path)) r.querySelector("input.pick").click();
  });
  sec.querySelector("input.action[value=unfreeze]").click();
})();
</script></body>"""


def main() -> None:
    text = page([open_model("sample_models/transfer_learning.keras")]).replace("</body>", DEMO)
    out = ROOT / "docs" / "img" / "html-view.png"
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "page.html"
        html.write_text(text, encoding="utf-8")
        subprocess.run(
            [
                "/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--hide-scrollbars", f"--user-data-dir={tmp}/profile",
                f"--screenshot={out}", "--window-size=1200,900", html.as_uri(),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    print(out)


if __name__ == "__main__":
    main()
