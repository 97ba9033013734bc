"""keras-hub LoRA adapter weights (`backbone.save_lora_weights("x.lora.h5")`): the rank and, per
target layer, the adapter pair lora_kernel_a / lora_kernel_b. Read-only.

The format protocol: `read(path, source) -> Parsed`.
"""

from __future__ import annotations

import os

from varctl.errors import UnreadableModel
from varctl.formats import _h5safe
from varctl.formats.hub_files import open_h5
from varctl.formats.parsed import Parsed
from varctl.model import ModelFormat, ModelInfo


def is_lora(path: str) -> bool:
    """HDF5 whose root holds only `lora`, with `lora/vars/rank` (keras-hub's layout)."""
    with open_h5(path) as h5:
        budget = _h5safe.Budget()
        if _h5safe.member_names(h5, budget) != ["lora"]:
            return False
        lora = _h5safe.get_group(h5, "lora")
        own = _h5safe.get_group(lora, "vars") if lora is not None else None
        return own is not None and _h5safe.get_dataset(own, "rank") is not None


def read(path: str, source: str) -> Parsed:
    """The rank and, per target layer (its index among the backbone's layers with weights, as
    keras-hub records it), the adapter pair lora_kernel_a / lora_kernel_b."""
    from varctl.model import Cause, Layer, Variable

    with open_h5(path) as h5:
        budget = _h5safe.Budget()
        lora = _h5safe.get_group(h5, "lora")
        own = _h5safe.get_group(lora, "vars") if lora is not None else None
        rank_ds = _h5safe.get_dataset(own, "rank") if own is not None else None
        if lora is None or rank_ds is None:
            raise UnreadableModel("not a keras-hub LoRA file: no lora/vars/rank")
        rank: int | None = None
        if rank_ds.shape == () and rank_ds.dtype.kind in "iu":
            rank = int(rank_ds[()])
        layers, variables = [], []
        targets = [n for n in _h5safe.member_names(lora, budget) if n != "vars"]
        for target in sorted(targets, key=_h5safe.natural_key):
            group = _h5safe.get_group(lora, target)
            vars_group = _h5safe.get_group(group, "vars") if group is not None else None
            if vars_group is None:
                raise UnreadableModel(f"LoRA target '{target}' has no vars group")
            layer = f"target_{target}"
            layers.append(Layer(layer, layer, "LoRA adapter", True, None, False, 0, None, known=True))
            for name in ("lora_kernel_a", "lora_kernel_b"):
                ds = _h5safe.get_dataset(vars_group, name)
                if ds is None:
                    raise UnreadableModel(f"LoRA target '{target}' has no {name}")
                shape, dtype, itemsize = _h5safe.dataset_meta(ds)
                variables.append(
                    Variable(
                        path=f"{layer}/{name}",
                        layer=layer,
                        name=name,
                        shape=shape,
                        dtype=dtype,
                        cause=Cause.TRAINABLE,
                        detail=None,
                        storage=f"lora/{target}/vars/{name}",
                        itemsize=itemsize,
                    )
                )
    note = (
        f"keras-hub LoRA adapters, rank {rank if rank is not None else '?'}, for {len(layers)} target "
        "layer(s) named by their index among the backbone's layers with weights (keras-hub records "
        "no names): backbone.load_lora_weights(...) enables LoRA and trains these adapters"
    )
    info = ModelInfo(
        source=source,
        format=ModelFormat.LORA,
        keras_version=None,
        name=os.path.basename(source.rstrip("/")),
        class_name="LoRA",
        trainable=True,
        layers=tuple(layers),
        variables=tuple(variables),
        warnings=(note,),
        details=(f"LoRA rank {rank if rank is not None else '?'}",),
    )
    return Parsed(info, path)
