"""Quantized and LoRA layers: which variables Keras holds after loading them, and in which order.

Dense, EinsumDense and Embedding build different variables per quantization mode (read from the
layer's `dtype` policy and `quantization_config`), save them in a fixed per-mode order
(`variable_serialization_spec`), and list them in `model.weights` in creation order split by the
flag they were created with (`_trainable_variables + _non_trainable_variables`). A layer saved
with LoRA enabled stores no adapters (Keras merges them into the kernel) but keeps `lora_rank` in
its config: loading re-enables LoRA, which freezes the kernel and creates both adapter factors
as zeros. Every rule here is checked against Keras 3.15 in tests/test_quantization.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from varctl.formats.catalog import ChildSpec, LayerSpec, VarSpec, is_variant, lora_rank, mode_of
from varctl.model import Cause, ModelInfo, Variable, within

if TYPE_CHECKING:
    from varctl.formats.tree import Node, Tree

Config = dict[str, Any]


@dataclass(frozen=True)
class Made:
    """One variable a layer creates, in creation order."""

    key: str  # the attribute / serialization-spec name (`quantized_kernel`)
    name: str  # `variable.name` as Keras names it (`kernel`)
    created_trainable: bool  # decides its list in `model.weights` (trainable list first)
    trainable: bool | None = None  # its own flag after build, when it differs (LoRA freezes the kernel)
    nature: str | None = None  # why it is never trainable
    stored: bool = True  # saved in the weights file (LoRA adapters are not)
    packed: bool = False  # int4: two logical weights per stored int8
    dtype: str = "float32"  # for variables not in the file

    @property
    def own_flag(self) -> bool:
        """The variable's own `trainable` after the layer is built."""
        return self.created_trainable if self.trainable is None else self.trainable


class QuantSpec(LayerSpec):
    """A LayerSpec (variables in save order, as the file holds them) plus what Keras adds on load."""

    variant: ClassVar[bool] = True
    mode: str | None = None  # int8 | int4 | float8 | gptq | awq | None
    lora_rank: int | None = None
    made: tuple[Made, ...] = ()  # every variable in creation order, stored or not

    def __init__(
        self,
        variables: tuple[VarSpec, ...],
        children: tuple[ChildSpec, ...] = (),
        mode: str | None = None,
        lora_rank: int | None = None,
        made: tuple[Made, ...] = (),
    ) -> None:
        self._init(locals())

    @property
    def label(self) -> str | None:
        """The `quantization` value shown for the layer: `int8`, `lora`, `int8+lora` (None: plain)."""
        parts = [p for p in (self.mode, "lora" if self.lora_rank else None) if p]
        return "+".join(parts) or None

    def weights_order(self) -> list[Made]:
        """`layer.weights` order: created-trainable variables first, each group in creation order."""
        return [m for m in self.made if m.created_trainable] + [
            m for m in self.made if not m.created_trainable
        ]


def _int4_grouped(config: Config) -> bool:
    """int4 with a block size (sub-channel: adds a zero point and `g_idx`) or per channel."""
    qc = config.get("quantization_config")
    if isinstance(qc, dict) and qc.get("class_name") == "Int4QuantizationConfig":
        inner = qc.get("config")
        block = (
            inner.get("block_size", 128) if isinstance(inner, dict) else 128
        )  # Int4QuantizationConfig's default
        return block is not None and block != -1
    dtype = config.get("dtype")
    mode = (dtype.get("config") or {}).get("mode") if isinstance(dtype, dict) else None
    if isinstance(mode, str) and "/" in mode:
        return mode.split("/")[1].strip() != "-1"
    return False


_NT = "{mode}-quantized (created non-trainable)"


def _made(cls: str, mode: str | None, config: Config, lora: int | None) -> tuple[list[Made], list[str]]:  # noqa: C901 - mirrors each build() per mode
    """(creation order, save order by key) of one layer, following its build()."""
    nat = _NT.format(mode=mode)
    if cls in ("Embedding", "ReversibleEmbedding"):
        w = "embeddings"
        made: list[Made] = []
        save = [w]
        if mode == "int8":
            made += [Made(w, w, False, nature=nat), Made(f"{w}_scale", f"{w}_scale", False, nature=nat)]
            save += [f"{w}_scale"]
        elif mode == "int4":
            made += [
                Made(w, w, False, nature=nat, packed=True),
                Made(f"{w}_scale", f"{w}_scale", False, nature=nat),
            ]
            save += [f"{w}_scale"]
            if _int4_grouped(config):
                made += [
                    Made(f"{w}_zero", f"{w}_zero", False, nature=nat),
                    Made("g_idx", "g_idx", False, nature=nat),
                ]
                save += [f"{w}_zero", "g_idx"]
        else:
            made.append(Made(w, w, True))
        if lora:
            made += _adapters("lora_embeddings", made, w, lora)
        if cls == "ReversibleEmbedding" and not config.get("tie_weights", True):
            r = "reverse_embeddings"  # built after the embeddings (and after LoRA's adapters)
            if mode == "int8":
                made += [Made(r, r, False, nature=nat), Made(f"{r}_scale", f"{r}_scale", False, nature=nat)]
                save += [r, f"{r}_scale"]
            elif mode == "int4":
                made += [
                    Made(r, r, False, nature=nat, packed=True),
                    Made(f"{r}_scale", f"{r}_scale", False, nature=nat),
                ]
                save += [r, f"{r}_scale"]
                if _int4_grouped(config):
                    made.append(Made(f"{r}_zero", f"{r}_zero", False, nature=nat))
                    save.append(f"{r}_zero")
            else:
                made.append(Made(r, r, True))
                save.append(r)
        return made, save
    # Dense and EinsumDense
    bias = bool(config.get("use_bias", True)) if cls == "Dense" else config.get("bias_axes") is not None
    zero = "zero_point" if cls == "EinsumDense" else "kernel_zero"
    made = []
    save = ["kernel", "bias"]
    if mode == "int8":
        made += [
            Made("kernel", "kernel", False, nature=nat),
            Made("kernel_scale", "kernel_scale", False, nature=nat),
        ]
        save += ["kernel_scale"]
    elif mode == "int4":
        made += [
            Made("kernel", "kernel", False, nature=nat, packed=True),
            Made("kernel_scale", "kernel_scale", False, nature=nat),
        ]
        save += ["kernel_scale"]
        if _int4_grouped(config):
            made += [
                Made("kernel_zero", "kernel_zero", False, nature=nat),
                Made("g_idx", "g_idx", False, nature=nat),
            ]
            save += ["kernel_zero", "g_idx"]
    elif mode == "float8":
        for k in [
            "inputs_scale",
            "inputs_amax_history",
            "kernel_scale",
            "kernel_amax_history",
            "outputs_grad_scale",
            "outputs_grad_amax_history",
        ]:
            made.append(Made(k, k, True))  # trainable: Keras overwrites them with their "gradient"
        save += [m.key for m in made]
    elif mode in ("gptq", "awq"):
        made += [
            Made("quantized_kernel", "kernel", False, nature=nat, packed=True),
            Made("kernel_scale", "kernel_scale", False, nature=nat),
            # Keras 3.15 saves no zero point for gptq/awq (_get_kernel_with_merged_lora returns
            # None for it) yet builds one and expects it on load: the file does not load.
            Made("kernel_zero", zero, False, nature=nat, stored=False, dtype="uint8"),
        ]
        if mode == "awq":
            made.append(Made("awq_scales", "awq_scales", False, nature=nat))
        made.append(Made("g_idx", "g_idx", False, nature=nat))
        save = ["bias", *(m.key for m in made if m.stored)]
    if mode not in ("int8", "int4", "gptq", "awq"):
        made.append(Made("kernel", "kernel", True))
    if bias:
        made.append(Made("bias", "bias", True))
    else:
        save.remove("bias")
    if lora:
        made += _adapters("lora_kernel", made, "kernel", lora)
    return made, save


def _adapters(prefix: str, made: list[Made], base: str, rank: int) -> list[Made]:
    """enable_lora(): two float32 adapters, created trainable; the base weight frozen."""
    for i, m in enumerate(made):
        if m.key == base and m.created_trainable:
            made[i] = dataclasses.replace(
                m, trainable=False, nature=f"frozen by LoRA (lora_rank {rank}): Keras trains its adapters"
            )
    return [
        Made(f"{prefix}_a", f"{prefix}_a", True, stored=False),
        Made(f"{prefix}_b", f"{prefix}_b", True, stored=False),
    ]


def spec_for(class_name: str, config: Config) -> QuantSpec | None:
    """The spec of a quantized or LoRA-enabled Dense/EinsumDense/Embedding, or of any Keras
    ReversibleEmbedding (None: a plain layer, or one varctl cannot describe)."""
    if not is_variant(class_name, config):
        return None  # a plain layer: the catalog's own entry
    mode = mode_of(config)
    lora = lora_rank(config)
    if class_name.endswith("Embedding") and mode not in (None, "int8", "int4"):
        mode = None  # Embedding quantizes to int8/int4 only (float8 leaves it a float layer)
    if class_name == "ReversibleEmbedding" and lora and not config.get("tie_weights", True):
        return None  # Keras 3.15 cannot load it (enable_lora locks the tracker before reverse_embeddings)
    made, save = _made(class_name, mode, config, lora)
    by_key = {m.key: m for m in made}
    saved = tuple(VarSpec(by_key[k].name, by_key[k].own_flag, by_key[k].nature) for k in save)
    return QuantSpec(variables=saved, mode=mode, lora_rank=lora, made=tuple(made))


# -- after the tree is resolved ----------------------------------------------------------------


def _made_shape(
    node: Node, spec: QuantSpec, made: Made, found: dict[str, Variable]
) -> tuple[int, ...] | None:
    """The shape of a variable Keras creates on load (not in the file)."""
    if made.key == "kernel_zero":  # gptq/awq: like kernel_scale, (units, groups)
        scale = found.get("kernel_scale")
        return scale.shape if scale is not None else None
    rank = spec.lora_rank or 0
    cfg = node.config
    a = made.key.endswith("_a")
    if node.class_name.endswith("Embedding"):
        n, d = cfg.get("input_dim"), cfg.get("output_dim")
        if not isinstance(n, int) or not isinstance(d, int):
            return None
        return (n, rank) if a else (rank, d)
    kernel = found.get("kernel")
    if kernel is None:
        return None
    if node.class_name == "Dense":
        units = cfg.get("units")
        if not isinstance(units, int):
            return None
        return (kernel.shape[0], rank) if a else (rank, units)
    if spec.mode == "int4":  # EinsumDense int4 stores a flattened 2-D kernel: the logical shape is lost
        return None
    return (*kernel.shape[:-1], rank) if a else (rank, kernel.shape[-1])


def _logical(node: Node, made: Made, v: Variable, found: dict[str, Variable]) -> int | None:
    """The number of weights a packed variable holds (two int4 values per stored int8)."""
    if not made.packed:
        return None
    if node.class_name.endswith("Embedding"):  # (input_dim, output_dim), reversed or not
        n, d = node.config.get("input_dim"), node.config.get("output_dim")
        return n * d if isinstance(n, int) and isinstance(d, int) else None
    scale = found.get("kernel_scale")
    if scale is None or not scale.shape:
        return None
    if made.key == "quantized_kernel":  # gptq/awq: (units or packed units, input_dim)
        g_idx = found.get("g_idx")
        return scale.shape[0] * g_idx.shape[0] if g_idx is not None and g_idx.shape else None
    return v.shape[0] * scale.shape[-1]  # int4: (rows, ceil(columns / 2)); scale (..., columns)


def apply(tree: Tree, info: ModelInfo, nodes: list[Node] | None = None) -> ModelInfo:
    """Put quantized and LoRA layers' variables as Keras holds them after loading: `model.weights`
    order, LoRA adapters created on load, each variable and layer marked with its mode; warn
    about LoRA adapters that will never train. `nodes`: `tree.root.walk()`, when already made."""
    quant = [n for n in (tree.root.walk() if nodes is None else nodes) if isinstance(n.spec, QuantSpec)]
    if not quant:
        return info
    index = {id(v): i for i, v in enumerate(info.variables)}
    by_path = {v.path: v for v in info.variables}
    replaced: dict[int, list[Variable]] = {}  # position of a layer's first variable -> its new list
    dropped: set[int] = set()  # positions of the other variables of those layers
    labels: dict[str, str | None] = {}
    dead: list[str] = []
    unloadable: list[str] = []
    for node in quant:
        spec = node.spec
        assert isinstance(spec, QuantSpec)
        labels[node.path] = spec.label
        current = [by_path[v.path] for v in node.variables if v.path in by_path]
        if not current or len(current) != len(spec.variables) or not node.known:
            continue  # the file did not match the spec: listed as read, with the reader's warning
        found = {v.name: v for v in current}
        keyed = {m.key: found.get(m.name) for m in spec.made if m.stored}
        new: list[Variable] = []
        for m in spec.weights_order():
            v = keyed.get(m.key) if m.stored else None
            if m.stored and v is None:
                break
            if v is None:  # a LoRA adapter (zeros) or gptq/awq zero point, made by Keras on load
                shape = _made_shape(node, spec, m, found)
                if shape is None:
                    break
                probe = _PROBE.replace(cause=Cause.NATURE, detail=m.nature) if m.nature else _PROBE
                cause, detail = tree._effective(node, probe)
                v = Variable(
                    path=f"{node.path}/{m.name}" if node.path else m.name,
                    layer=node.path,
                    name=m.name,
                    shape=shape,
                    dtype=m.dtype,
                    cause=cause,
                    detail=detail,
                    storage="",  # not in the file
                    itemsize=_ITEMSIZE.get(m.dtype, 4),
                )
            new.append(v.replace(quantization=spec.label, logical_params=_logical(node, m, v, found)))
        else:
            slots = sorted(index[id(v)] for v in current)
            if slots != list(range(slots[0], slots[0] + len(slots))):
                continue
            replaced[slots[0]] = new
            dropped.update(slots[1:])
            if spec.lora_rank and any(v.trainable for v in new if v.storage == ""):
                dead.append(node.path)
            if spec.mode in ("gptq", "awq"):
                unloadable.append(node.path)
    flat: list[Variable] = []
    for i, v in enumerate(info.variables):
        if i in replaced:
            flat.extend(replaced[i])
        elif i not in dropped:
            flat.append(v)
    layers = tuple(
        layer.replace(quantization=labels[layer.path]) if layer.path in labels else layer
        for layer in info.layers
    )
    warnings = list(info.warnings)
    if dead:
        warnings.append(lora_warning(dead))
    if unloadable:
        warnings.append(
            f"gptq/awq layers {_names(unloadable)} were saved without their zero point "
            "(`kernel_zero`): Keras 3.15 writes them that way and then refuses to load the file "
            '("expected N variables, but received N-1"); the list shows what Keras builds for them, '
            "with `kernel_zero` not in the file"
        )
    return info.replace(variables=tuple(flat), layers=layers, warnings=tuple(warnings))


_ITEMSIZE = {"float32": 4, "uint8": 1, "int8": 1}

# A variable created trainable (what an adapter is), to ask the tree what Keras makes of it.
_PROBE = Variable("", "", "", (), "float32", Cause.TRAINABLE, None, "")


def _names(layers: list[str]) -> str:
    return ", ".join(f"`{p}`" for p in layers[:5]) + (
        f" and {len(layers) - 5} more" if len(layers) > 5 else ""
    )


def lora_warning(layers: list[str]) -> str:
    """The warning for LoRA layers whose adapters Keras re-creates as zeros (and so never trains)."""
    return (
        f"LoRA adapters of {_names(layers)} come back as zeros: the file keeps `lora_rank` but not the "
        "adapters (Keras merged them into the kernel when saving), so loading freezes the kernel "
        "and creates both factors as zeros; with both zero neither gets a gradient and fit() never "
        "changes them (the exception: a file saved with optimizer state and resumed without "
        "recompiling, where the restored momentum moves them). To fine-tune, re-initialise "
        "the `_a` factor after loading (e.g. layer.lora_kernel_a.assign(keras.initializers."
        "HeUniform()(layer.lora_kernel_a.shape)); `lora_embeddings_a` for an Embedding), or save without LoRA and call enable_lora(rank) "
        "after loading, or keep the adapters with keras-hub's save_lora_weights/load_lora_weights"
    )


def check_unfreeze(after: ModelInfo, roots: list[str]) -> None:
    """Refuse an unfreeze of which Keras can train nothing because every selected variable is a
    quantized weight (created non-trainable: no flag in the file can change that)."""
    from varctl.errors import UsageError

    inside = [v for v in after.variables if within(v.layer, roots)]
    if not inside or any(v.trainable for v in inside):
        return
    if not all(v.quantization and v.cause is Cause.NATURE for v in inside):
        return
    layers = list(dict.fromkeys(v.layer for v in inside))
    modes = ", ".join(sorted({str(v.quantization) for v in inside}))
    raise UsageError(
        f"cannot unfreeze {_names(layers)}: all their variables are quantized ({modes}) and created "
        "non-trainable, so Keras trains none of them whatever the layer's flag",
        hint="fine-tune the float model and quantize afterwards, or enable LoRA on the layer "
        "after loading (layer.enable_lora(rank))",
    )


def loaded_label(layer: Any) -> str | None:
    """The `quantization` label of a layer Keras has loaded (`list --load`)."""
    mode = getattr(layer, "quantization_mode", None)
    lora = bool(getattr(layer, "lora_enabled", False))
    parts = [p for p in (mode if isinstance(mode, str) else None, "lora" if lora else None) if p]
    return "+".join(parts) or None


def loaded_dead_adapters(layers: list[tuple[str, Any, Any]], trainable: set[int]) -> list[str]:
    """Paths of loaded LoRA layers whose adapters are trainable and both exactly zero."""
    import numpy as np

    out = []
    for path, layer, _parent in layers:
        if not getattr(layer, "lora_enabled", False):
            continue
        pairs = [
            (getattr(layer, f"{p}_a", None), getattr(layer, f"{p}_b", None))
            for p in ("lora_kernel", "lora_embeddings")
        ]
        for a, b in pairs:
            if a is None or b is None or id(a) not in trainable:
                continue
            if not np.any(np.asarray(a)) and not np.any(np.asarray(b)):
                out.append(path)
    return out


def unfreeze_notes(after: ModelInfo, roots: list[str]) -> list[str]:
    """What an unfreeze of quantized or LoRA layers does not give (notes for the plan)."""

    def selected(path: str) -> bool:
        return within(path, roots)

    stay: dict[str, list[str]] = {}
    dead: list[str] = []
    for v in after.variables:
        if not v.quantization or not selected(v.layer):
            continue
        if v.cause is Cause.NATURE:
            stay.setdefault(v.layer, []).append(v.name)
        elif v.storage == "" and v.trainable and "lora" in v.quantization and v.layer not in dead:
            dead.append(v.layer)
    notes = []
    if stay:
        shown = "; ".join(f"`{layer}`: {', '.join(names)}" for layer, names in list(stay.items())[:5])
        notes.append(
            f"these variables stay frozen after loading whatever the flags (quantized weights are "
            f"created non-trainable; LoRA freezes the kernel it adapts): {shown}"
        )
    if dead:
        notes.append(
            f"the LoRA adapters of {_names(dead)} will be trainable but Keras re-creates them as "
            "zeros on load, so they get no gradient: re-initialise the `_a` factor after loading "
            "(see `varctl list`'s warning)"
        )
    return notes
