"""Golden outputs: every command in every output format on the sample models, compared whole-string.

`pytest --update-golden tests/test_golden.py` rewrites tests/golden/ from the current output; review
the diff before committing it. The JSON files are the schema contract (docs/json.md): a change to one
of them is a change of a public format.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
FORMATS = ("table", "json", "csv", "markdown")
CI_FORMATS = (*FORMATS, "github")  # check and diff also write GitHub workflow annotations

# case: (arguments, exit code). Paths are relative to the repository root, so the outputs are stable.
CASES: dict[str, tuple[list[str], int]] = {
    "list": (["list", "sample_models/transfer_learning.keras"], 0),
    "list_h5": (["list", "sample_models/seed_explicit.h5"], 0),
    "list_by_layer": (["list", "sample_models/transfer_learning.keras", "--by-layer"], 0),
    "list_many": (["list", "sample_models/seed_dense.keras", "sample_models/batchnorm.h5"], 0),
    "check_pass": (
        ["check", "sample_models/transfer_learning.keras", "--frozen", "mobilenetv2_0.35_96",
         "--max-trainable-params", "5000", "--no-lambda"],
        0,
    ),
    "check_fail": (["check", "sample_models/seed_dense.keras", "--frozen", "dense", "--finite"], 1),
    "check_many": (
        ["check", "sample_models/batchnorm.keras", "sample_models/seed_dense.keras", "--max-trainable-params", "800"],
        1,
    ),
    "diff": (["diff", "sample_models/seed_dense.keras", "sample_models/seed_explicit.keras", "--values"], 1),
    "stats": (["stats", "sample_models/batchnorm.keras"], 0),
    "freeze_dry_run": (["freeze", "sample_models/seed_dense.keras", "-p", "dense", "--dry-run"], 0),
    "unfreeze_dry_run": (
        ["unfreeze", "sample_models/transfer_learning.keras", "-p", "block_16*", "--dry-run"],
        0,
    ),
}  # fmt: skip


def check_golden(request: pytest.FixtureRequest, cli, case: str, args: list[str], code: int) -> None:
    """Run one call in every output format and compare each stdout with tests/golden/<case>.<fmt>."""
    update = request.config.getoption("--update-golden")
    for fmt in CI_FORMATS if args[0] in ("check", "diff") else FORMATS:
        result = cli(*args, "-f", fmt, code=code)
        path = GOLDEN / f"{case}.{fmt}"
        if update:
            path.write_text(result.stdout, encoding="utf-8")
            continue
        assert path.exists(), f"{path} missing: run pytest --update-golden"
        assert result.stdout == path.read_text(encoding="utf-8"), f"{case} -f {fmt} differs from {path}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case, cli, request, monkeypatch):
    monkeypatch.chdir(ROOT)
    args, code = CASES[case]
    check_golden(request, cli, case, args, code)


def test_every_golden_file_belongs_to_a_case():
    expected = {f"{case}.{fmt}" for case in CASES for fmt in CI_FORMATS}
    assert {p.name for p in GOLDEN.iterdir()} <= expected
