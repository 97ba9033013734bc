"""Sharded weights (`save_weights("x.weights.json", max_shard_size=...)`): a JSON index whose
`weight_map` names `.h5` shards next to it. One listing over every shard (groups spanning shards
merged); a missing shard, or one that does not hold what the index says, is refused by name.

The format protocol: `read(path, source, config=None) -> Parsed` (read-only, like a weights-only
file; `config`: the model's architecture, from `list --config`, names the variables and gives
the flags).
"""

from __future__ import annotations

from typing import Any

from varctl.formats import hub_files
from varctl.formats.parsed import Parsed


def read(path: str, source: str, config: Any = None) -> Parsed:
    if config is not None:
        return Parsed(hub_files.read_weights_with_config(path, source, config, fmt="sharded"), path)
    weights = hub_files.weights_manifest(path, sharded=True)
    return Parsed(hub_files.weights_listing(weights, source, "sharded"), path)
