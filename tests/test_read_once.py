"""The reader protocol: one read keeps what an editor needs, and re-interpreting the file's own
config over the scanned manifest (no file access) gives exactly what the read gave."""

from __future__ import annotations

import pytest

from tests.conftest import SAMPLES
from varctl.formats import interpret, open_model, read_model

EDITABLE = sorted(p.name for p in SAMPLES.iterdir() if p.suffix in (".keras", ".h5"))


@pytest.mark.parametrize("name", EDITABLE)
def test_interpret_reproduces_the_read(name, tmp_path):
    copy = tmp_path / name
    copy.write_bytes((SAMPLES / name).read_bytes())
    parsed = read_model(str(copy), for_edit=True)
    assert parsed.info == open_model(str(copy))  # what list shows does not depend on for_edit
    copy.unlink()  # interpret works from the Parsed alone: the file is gone
    assert interpret(parsed, parsed.config) == parsed.info
