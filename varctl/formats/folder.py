"""Model folders (`model.save(dir, zipped=False)`) and keras-hub preset folders (`save_to_preset`):
an unzipped `.keras`, read and edited like one.

The format protocol (formats/__init__.py dispatches to it):
- `read(path, source, for_edit=False, config=None) -> Parsed`: config.json (a preset's task.json
  when it has one), metadata.json, and every weights file scanned once into one manifest (a
  preset's task weights at the root, its backbone's under the backbone's group; shards merged).
- `interpret(config, manifest, source) -> ModelInfo`: pure; re-run by the editor on an edited config.
- `write_folder(parsed, rewrite, dst, check=None)`: only the config file changes, so an in-place
  edit is one atomic rename (Keras never sees a half-edited folder); a new folder is assembled
  under a temp name next to `dst` and renamed into place; an existing `dst` is never overwritten.
- `compiled`, `saved_slots`, `optimizer_entry`, `check_rewrite`, `check_verify` and the constants
  an editor asks about.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from varctl.errors import OutputError, UnreadableModel, UsageError
from varctl.formats import _manifest, hub_files
from varctl.formats.hub_files import CONFIG, METADATA, PREPROCESSOR, TASK, TASK_WEIGHTS, TOKENIZER
from varctl.formats.parsed import Parsed
from varctl.model import ModelInfo

if TYPE_CHECKING:
    from varctl.formats.rewrite import Rewrite

WRITES_FOLDER = True  # the editor hands the whole output to write_folder (not a temp file)


def is_model_folder(path: str) -> bool:
    return os.path.isfile(os.path.join(path, CONFIG)) and (
        os.path.isfile(os.path.join(path, hub_files.WEIGHTS_H5))
        or os.path.isfile(os.path.join(path, hub_files.WEIGHTS_INDEX))
    )


def is_preset(path: str) -> bool:
    if not is_model_folder(path) or not os.path.isfile(os.path.join(path, METADATA)):
        return False
    meta = hub_files.read_json(os.path.join(path, METADATA))
    return isinstance(meta, dict) and "keras_hub_version" in meta


@dataclass
class Manifest:
    """What interpret() needs besides the config."""

    weights: _manifest.Group  # every weights file of the folder, merged
    keras_version: str | None
    fmt: str  # "folder" | "preset"
    details: tuple[str, ...] = ()  # header facts: keras-hub version, tokenizer, preprocessor
    declared: int | None = None  # metadata.json's parameter_count (presets)
    backbone: bool = False  # the count is the backbone's (a task preset)


def _version(meta: Any, key: str = "keras_version") -> str | None:
    return str(meta[key]) if isinstance(meta, dict) and meta.get(key) is not None else None


def _class_of(path: str) -> str | None:
    if not os.path.isfile(path):
        return None
    doc = hub_files.read_json(path)
    return str(doc["class_name"]) if isinstance(doc, dict) and doc.get("class_name") else None


def read(path: str, source: str, for_edit: bool = False, config: Any = None) -> Parsed:
    """Read a model folder or a keras-hub preset once (`config`: one given instead of the folder's)."""
    if config is None:
        config = hub_files.preset_config(path)  # task.json when present, else config.json
    meta_path = os.path.join(path, METADATA)
    meta = hub_files.read_json(meta_path) if os.path.isfile(meta_path) else None
    preset = isinstance(meta, dict) and "keras_hub_version" in meta
    weights = _manifest.Group("/")
    prefix = ""
    details: list[str] = []
    if preset:
        details.append(f"keras-hub {_version(meta, 'keras_hub_version') or '?'} preset")
        for label, fname in (("tokenizer", TOKENIZER), ("preprocessor", PREPROCESSOR)):
            cls = _class_of(os.path.join(path, fname))
            if cls:
                details.append(f"{label} {cls}")
        if os.path.isfile(os.path.join(path, TASK)):
            from varctl.formats.catalog_hub import is_backbone_entry
            from varctl.formats.tree import to_snake_case

            entry = config.get("config", {}).get("backbone") if isinstance(config, dict) else None
            if not isinstance(entry, dict) or not is_backbone_entry(entry):
                raise UnreadableModel("task.json holds no keras-hub backbone config")
            prefix = f"layers/{to_snake_case(str(entry['class_name']))}"
            task_weights = os.path.join(path, TASK_WEIGHTS)
            if os.path.isfile(task_weights):
                hub_files.merge_into(weights, hub_files.weights_manifest(task_weights), "", task_weights)
    for f in hub_files.folder_weights(path):
        hub_files.merge_into(weights, hub_files.weights_manifest(f), prefix, f)
    declared = meta.get("parameter_count") if preset and isinstance(meta, dict) else None
    manifest = Manifest(
        weights,
        _version(meta),
        "preset" if preset else "folder",
        tuple(details),
        declared if isinstance(declared, int) and not isinstance(declared, bool) else None,
        bool(prefix),
    )
    info = interpret(config, manifest, source)
    return Parsed(info, path, config, manifest) if for_edit else Parsed(info, path)


def interpret(config: Any, manifest: Manifest, source: str) -> ModelInfo:
    """The ModelInfo of `config` over the scanned weights (pure: no file is read)."""
    from varctl.formats import keras_zip
    from varctl.formats.tree import Tree

    tree = Tree(config, manifest.keras_version)
    keras_zip.walk(tree, config, manifest.weights)
    info = tree.finish(source=source, fmt=manifest.fmt, keras_version=manifest.keras_version)
    info = ModelInfo(**{**info.__dict__, "details": manifest.details})
    return _check_count(info, manifest)


def _check_count(info: ModelInfo, manifest: Manifest) -> ModelInfo:
    declared = manifest.declared
    if declared is None:
        return info
    if manifest.backbone:
        backbone = next(
            (l for l in info.layers if l.class_name.endswith("Backbone") and l.parent is None), None
        )
        inside = [
            v for v in info.variables if backbone is not None and v.path.startswith(backbone.path + "/")
        ]
        counted = sum(v.params for v in inside)
    else:
        counted = sum(v.params for v in info.variables)
    if counted == declared:
        return info
    warning = (
        f"metadata.json declares parameter_count {declared:,} for the backbone, but its weights hold "
        f"{counted:,}: the preset's files may not belong together"
    )
    return ModelInfo(**{**info.__dict__, "warnings": (*info.warnings, warning)})


# -- what an editor needs to know about this format ------------------------------------------------

REMAPS_OPTIMIZER = False  # the folder's weights are not rewritten: a changed trainable set drops it
UNCOMPILED_OUTPUT = "Keras loads the output uncompiled: call model.compile(...) before fit"
WARNS_WHEN_UNCOMPILED = False


def compiled(parsed: Parsed) -> bool:
    return isinstance(parsed.config, dict) and parsed.config.get("compile_config") is not None


def optimizer_entry(config: Any) -> Any:
    return (config.get("compile_config") or {}).get("optimizer") if isinstance(config, dict) else None


def saved_slots(parsed: Parsed) -> None:
    return None


def check_rewrite(parsed: Parsed, after: ModelInfo) -> None:
    """Refusals the writer would make: none (only the config file is rewritten)."""


def check_verify(parsed: Parsed) -> None:
    """--verify loads the output with keras.saving.load_model: a preset is not loaded so."""
    if parsed.format == "preset":
        raise UsageError(
            "--verify loads .keras files and model folders with keras.saving.load_model; a keras-hub "
            "preset loads with from_preset: edit without --verify and check it with `varctl list`"
        )


def write(parsed: Parsed, rewrite: Rewrite, tmp: str) -> None:
    raise NotImplementedError("a folder is written whole by write_folder")


def write_folder(
    parsed: Parsed, rewrite: Rewrite, dst: str, *, check: Callable[[str], None] | None = None
) -> None:
    """Write the edited config of the folder `parsed.target` to `dst` (a new folder, or itself).

    Only one file changes (config.json, or a preset's task.json), so an in-place edit is one atomic
    rename. A new folder is assembled next to `dst` under a temp name and renamed into place once
    complete; an existing `dst` is never overwritten. `check` runs on the finished folder (a
    hard-linked copy for an in-place edit) before the rename.
    """
    src = parsed.target
    text = json.dumps(rewrite.config, indent=4).encode("utf-8")
    name = os.path.basename(hub_files.config_path(src))
    parent = os.path.dirname(os.path.realpath(dst)) or "."
    try:
        if os.path.realpath(dst) == os.path.realpath(src):
            _in_place(src, name, text, parent, check)
        else:
            _new_folder(src, dst, name, text, parent, check)
    except OSError as e:
        raise OutputError(f"cannot write '{dst}': {e.strerror or e}") from e


def _in_place(src: str, name: str, text: bytes, parent: str, check: Callable[[str], None] | None) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".varctl-", suffix=".json", dir=parent)
    view = None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            # What the folder will be, for the check (--verify loads it): hard links to the
            # unchanged files plus the new config, outside the input (its guard still holds).
            view = tempfile.mkdtemp(prefix=".varctl-", dir=parent)
            shutil.copytree(src, view, dirs_exist_ok=True, symlinks=True, copy_function=_link_or_copy)
            os.unlink(os.path.join(view, name))
            shutil.copyfile(tmp, os.path.join(view, name))
            check(view)
        os.replace(tmp, os.path.join(src, name))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        if view is not None:
            shutil.rmtree(view, ignore_errors=True)


def _new_folder(
    src: str, dst: str, name: str, text: bytes, parent: str, check: Callable[[str], None] | None
) -> None:
    if os.path.lexists(dst):
        raise OutputError(f"'{dst}' exists: a model folder is written as a new folder (remove it first)")
    tmpdir = tempfile.mkdtemp(prefix=".varctl-", dir=parent)
    try:
        shutil.copytree(src, tmpdir, dirs_exist_ok=True, symlinks=True)
        with open(os.path.join(tmpdir, name), "wb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(tmpdir)
        os.rename(tmpdir, dst)
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
