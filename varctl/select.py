"""The one pattern rule shared by every command: which layers (and so variables) a pattern selects.

A pattern without `/` matches a layer's own name at any depth; a pattern with `/` matches the
layer's full path. Globs by default (fnmatch, case-sensitive), regular expressions with --regex
(full match). Selecting a layer selects everything inside it (`within`).

choose_layers/first_layers turn freeze/unfreeze's options (--pattern, --first/--upto/--in, --all)
into layers.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from varctl.errors import UsageError
from varctl.model import Layer, ModelInfo, Variable, within


@dataclass(frozen=True)
class Selector:
    patterns: tuple[str, ...] = ()
    regex: bool = False

    def __post_init__(self) -> None:
        if self.regex:
            for p in self.patterns:
                try:
                    re.compile(p)
                except re.error as e:
                    raise UsageError(f"invalid regular expression '{p}': {e}") from None

    def _match(self, pattern: str) -> Callable[[str], bool]:
        if self.regex:
            rx = re.compile(pattern)
            return lambda s: rx.fullmatch(s) is not None
        return lambda s: fnmatchcase(s, pattern)

    def matches_layer(self, pattern: str, layer_path: str) -> bool:
        """Does `pattern` select the layer at `layer_path` itself (not through an ancestor)?"""
        target = layer_path if "/" in pattern else layer_path.rsplit("/", 1)[-1]
        return self._match(pattern)(target)

    def layers(self, info: ModelInfo) -> list[Layer]:
        """Layers selected directly by at least one pattern, in model order."""
        return [l for l in info.layers if any(self.matches_layer(p, l.path) for p in self.patterns)]

    def unmatched(self, infos: Sequence[ModelInfo]) -> list[str]:
        return [
            p
            for p in self.patterns
            if not any(self.matches_layer(p, l.path) for info in infos for l in info.layers)
        ]

    def variables(self, info: ModelInfo) -> list[Variable]:
        """Variables inside a selected layer (all of them when there are no patterns)."""
        if not self.patterns:
            return list(info.variables)
        chosen = {l.path for l in self.layers(info)}
        return [v for v in info.variables if within(v.layer, chosen)]




def choose_layers(
    info: ModelInfo,
    selector: Selector,
    *,
    first: int | None,
    upto: str | None,
    within_layer: str | None,
    all_layers: bool,
    action: str,
) -> list[Layer]:
    """The layers a freeze/unfreeze names: patterns, --first/--upto (of --in), or --all."""
    if selector.patterns and (missing := selector.unmatched([info])):
        raise no_match_error(missing, [info])
    if all_layers:
        return [l for l in info.layers if l.parent is None]
    selected = selector.layers(info)
    if first is not None or upto is not None:
        selected += first_layers(info, first, upto, within_layer)
    if not selected:
        raise UsageError(f"{action}: say what to change with --pattern, --first/--upto or --all")
    return selected


def first_layers(
    info: ModelInfo, count: int | None, upto: str | None, within_layer: str | None
) -> list[Layer]:
    """The Keras guide's `base_model.layers[:N]` (or up to a named layer), as Layers."""
    parent_path = None
    if within_layer is not None:
        matches = [l for l in info.layers if l.path == within_layer or l.name == within_layer]
        if len(matches) != 1:
            raise UsageError(f"--in '{within_layer}' names {'no' if not matches else 'more than one'} layer")
        parent_path = matches[0].path
    children = [l for l in info.layers if l.parent == parent_path and l.index is not None]
    children.sort(key=lambda l: l.index or 0)
    if upto is not None:
        names = [l.name for l in children]
        if upto not in names:
            where = f"'{within_layer}'" if within_layer else "the model"
            raise UsageError(f"--upto '{upto}' is not a layer of {where}")
        return children[: names.index(upto) + 1]
    if count is None or count < 0:
        raise UsageError("--first needs a count of 0 or more")
    return children[:count]


def filter_trainable(variables: list[Variable], trainable: bool | None) -> list[Variable]:
    if trainable is None:
        return variables
    return [v for v in variables if bool(v.trainable) == trainable]


def no_match_error(patterns: Sequence[str], infos: Sequence[ModelInfo]) -> UsageError:
    """`pattern 'dens_*' matches no layer` with difflib's close matches as the hint."""
    names = sorted(
        {l.name for info in infos for l in info.layers} | {l.path for info in infos for l in info.layers}
    )
    var_paths = {v.path for info in infos for v in info.variables}
    p = patterns[0]
    if p in var_paths or any(fnmatchcase(v, p) for v in var_paths):
        return UsageError(
            f"pattern '{p}' names a variable, not a layer",
            hint=f"trainability is saved per layer in Keras: select the layer ('{p.rsplit('/', 1)[0]}')",
        )
    close = difflib.get_close_matches(p.replace("*", "").replace("?", ""), names, n=3, cutoff=0.5)
    hint = (
        f"did you mean {', '.join(repr(c) for c in close)}?"
        if close
        else "run 'varctl list --by-layer' to see layer names"
    )
    return UsageError(f"pattern '{p}' matches no layer", hint=hint)
