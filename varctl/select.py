"""The one pattern rule shared by every command: which layers (and so variables) a pattern selects.

A pattern without `/` matches a layer's own name at any depth; a pattern with `/` matches the
layer's full path. Globs by default (fnmatch, case-sensitive), regular expressions with --regex
(full match). Selecting a layer selects everything inside it (`within`).

choose_layers/first_layers turn freeze/unfreeze's options (--pattern, --first/--upto/--in, --all)
into layers.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence

from varctl.errors import UsageError
from varctl.model import Cause, Layer, ModelInfo, Variable, within


class Selector:
    """Patterns (globs, or regular expressions with `regex`) and the layers they select."""

    __slots__ = ("patterns", "regex")  # a plain class: a frozen dataclass costs ~0.5 ms at import

    def __init__(self, patterns: tuple[str, ...] = (), regex: bool = False) -> None:
        self.patterns = patterns
        self.regex = regex
        for p in patterns:
            self._match(p)  # a bad regular expression is a usage error now, not at the first layer

    def __repr__(self) -> str:
        return f"Selector({self.patterns!r}, regex={self.regex})"

    def _match(self, pattern: str) -> Callable[[str], re.Match[str] | None]:
        """The compiled test of `pattern` (re caches it): a glob is fnmatchcase's own regex."""
        if not self.regex:
            return re.compile(fnmatch.translate(pattern)).match
        try:
            return re.compile(pattern).fullmatch
        except re.error as e:
            raise UsageError(f"invalid regular expression '{pattern}': {e}") from None

    def _selected(self, pattern: str, paths: Iterable[str]) -> list[str]:
        """Those of `paths` whose layer `pattern` selects itself (one compiled match per layer)."""
        match = self._match(pattern)
        if "/" in pattern:
            return [p for p in paths if match(p)]
        return [p for p in paths if match(p[p.rfind("/") + 1 :])]  # the layer's own name

    def matches_layer(self, pattern: str, layer_path: str) -> bool:
        """Does `pattern` select the layer at `layer_path` itself (not through an ancestor)?"""
        return bool(self._selected(pattern, (layer_path,)))

    def _chosen(self, info: ModelInfo) -> set[str]:
        paths = [l.path for l in info.layers]
        return {p for pattern in self.patterns for p in self._selected(pattern, paths)}

    def layers(self, info: ModelInfo) -> list[Layer]:
        """Layers selected directly by at least one pattern, in model order."""
        chosen = self._chosen(info)
        return [l for l in info.layers if l.path in chosen]

    def unmatched(self, infos: Sequence[ModelInfo]) -> list[str]:
        paths = [l.path for info in infos for l in info.layers]
        return [p for p in self.patterns if not self._selected(p, paths)]

    def variables(self, info: ModelInfo) -> list[Variable]:
        """Variables inside a selected layer (all of them when there are no patterns)."""
        if not self.patterns:
            return list(info.variables)
        chosen = self._chosen(info)
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
    # `bool(v.trainable) == trainable`, without the property's call per variable
    return [v for v in variables if (v.cause is Cause.TRAINABLE) == trainable]


def no_match_error(patterns: Sequence[str], infos: Sequence[ModelInfo]) -> UsageError:
    """`pattern 'dens_*' matches no layer` with difflib's close matches as the hint."""
    names = sorted(
        {l.name for info in infos for l in info.layers} | {l.path for info in infos for l in info.layers}
    )
    var_paths = {v.path for info in infos for v in info.variables}
    p = patterns[0]
    if p in var_paths or any(fnmatch.fnmatchcase(v, p) for v in var_paths):
        return UsageError(
            f"pattern '{p}' names a variable, not a layer",
            hint=f"trainability is saved per layer in Keras: select the layer ('{p.rsplit('/', 1)[0]}')",
        )
    import difflib  # only for this error's hint

    close = difflib.get_close_matches(p.replace("*", "").replace("?", ""), names, n=3, cutoff=0.5)
    hint = (
        f"did you mean {', '.join(repr(c) for c in close)}?"
        if close
        else "run 'varctl list --by-layer' to see layer names"
    )
    return UsageError(f"pattern '{p}' matches no layer", hint=hint)
