"""Adapter-only checkpoints (safetensors + JSON, kilobytes to a few MB) and AdapterHub interop.

An adapter checkpoint holds exactly what one task changes on a frozen base: the adapter's own
parameters plus the base parameters its policy trains (LayerNorms, head), under the model's own names.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from adapters.config import AdapterConfig
from adapters.model import (
    _config,
    _registry,
    active_adapter,
    add_adapter,
    base_model,
    remove_adapter,
    set_active_adapter,
    task_parameters,
)
from minibert.weights import write_atomically

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter.safetensors"
FORMAT_VERSION = 1


def save_adapter(model, name: str, directory) -> dict:
    """Write adapter_config.json + adapter.safetensors for adapter `name`; returns sizes in bytes.

    adapter_bytes / config_bytes: the two files. model_bytes: the tensor bytes of the whole model without
    its adapters (what saving the full model instead would at least cost); percent_of_model: adapter_bytes
    as a share of it.
    """
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = _config(model, name)
    tensors = {k: np.ascontiguousarray(v) for k, v in task_parameters(model, name).items()}
    bert = base_model(model)
    meta = {"format_version": FORMAT_VERSION, "name": name, "config": config.to_dict(),
            "base_model": {"hidden_size": bert.config.hidden_size, "num_hidden_layers": bert.config.num_hidden_layers,
                           "model_class": type(model).__name__},
            "dtype": str(bert.dtype), "parameters": sorted(tensors)}
    write_atomically(directory / WEIGHTS_NAME, lambda p: save_file(tensors, str(p)))
    write_atomically(directory / CONFIG_NAME, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    adapter_bytes = (directory / WEIGHTS_NAME).stat().st_size
    model_bytes = sum(p.data.nbytes for k, p in model.named_parameters() if ".adapters." not in k)
    return {"adapter_bytes": adapter_bytes, "config_bytes": (directory / CONFIG_NAME).stat().st_size,
            "model_bytes": model_bytes, "percent_of_model": 100.0 * adapter_bytes / model_bytes}


def load_adapter(model, directory, name: str | None = None, set_active: bool = True) -> str:
    """Restore an adapter saved by save_adapter onto a (freshly loaded) base model, bit-exactly.

    Adds the adapter if the model does not have it (an adapter of that name already there must have the
    saved config), then copies every saved tensor after checking its name and shape. Returns the adapter's name.
    """
    from minibert.weights import read_safetensors

    directory = Path(directory)
    if not (directory / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"no {CONFIG_NAME} in {directory} (not a saved adapter)")
    meta = json.loads((directory / CONFIG_NAME).read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{directory / CONFIG_NAME}: unsupported format_version {meta.get('format_version')!r}")
    name = name or meta["name"]
    bert = base_model(model)
    if meta["base_model"]["hidden_size"] != bert.config.hidden_size:
        raise ValueError(f"adapter was trained on hidden_size {meta['base_model']['hidden_size']}, "
                         f"this model has {bert.config.hidden_size}")
    tensors = read_safetensors(directory / WEIGHTS_NAME)
    if name != meta["name"]:
        tensors = {k.replace(f".adapters.{meta['name']}.", f".adapters.{name}."): v for k, v in tensors.items()}
    config = AdapterConfig.from_dict(meta["config"])
    added = name not in getattr(model, "adapter_configs", {})
    if added:
        add_adapter(model, name, config, set_active=False)
    else:
        _refuse_other_config(model, name, config, directory)
    _copy_into_task(model, tensors, f"adapter {name!r} from {directory}", name, added, set_active)
    return name


def _refuse_other_config(model, name: str, config: AdapterConfig, source):
    """Loading onto an existing adapter `name` needs the same config: same shapes but another function
    (non-linearity, placement, parallel, ...) would not restore the saved adapter, only look like it.
    The size may be given either way (bottleneck_size or reduction_factor); only M itself must agree."""
    d = base_model(model).config.hidden_size
    size_fields = ("bottleneck_size", "reduction_factor")
    have = {**model.adapter_configs[name].to_dict(), "M": model.adapter_configs[name].size_for(d)}
    want = {**config.to_dict(), "M": config.size_for(d)}
    differ = [f"{k}: model {have[k]!r} vs file {want[k]!r}" for k in want
              if k not in size_fields and have.get(k) != want[k]]
    if differ:
        raise ValueError(f"adapter {name!r} already on the model has another config than {source} "
                         f"({', '.join(differ)}); remove_adapter(model, {name!r}) first or load under another name")


def _copy_into_task(model, tensors: dict, what: str, name: str, added: bool, set_active: bool):
    """Copy the tensors in while task `name` is active (its LayerNorm / head values are then the model's),
    then leave `name` active or go back to the adapter that was."""
    previous = active_adapter(model)
    set_active_adapter(model, name)
    try:
        _copy_checked(model, tensors, what, name, remove_on_error=added)
    finally:
        if not set_active or name not in _registry(model):
            set_active_adapter(model, previous if previous in _registry(model) else None)


def _copy_checked(model, tensors: dict, what: str, name: str, remove_on_error: bool = False):
    """Copy `tensors` into the model after checking them all; every parameter of adapter `name` must be there.

    On a mismatch nothing is copied, and with remove_on_error the (just added) adapter is removed again.
    """
    own = dict(model.named_parameters())
    unexpected = [k for k in tensors if k not in own]
    missing = [k for k in own if f".adapters.{name}." in k and k not in tensors]  # would stay randomly initialised
    mis_shaped = [f"{k}: file {v.shape} vs model {own[k].shape}" for k, v in tensors.items()
                  if k in own and v.shape != own[k].shape]
    if unexpected or missing or mis_shaped:
        if remove_on_error:
            remove_adapter(model, name)
        raise KeyError(f"{what} does not fit the model: unexpected {unexpected}; missing {missing}; "
                       f"mis-shaped {mis_shaped}")
    for k, v in tensors.items():
        own[k].data = np.array(v, dtype=own[k].dtype)


# ---- AdapterHub interop -------------------------------------------------------------------------------------
# AdapterHub (adapters 1.x) names a Houlsby (DoubleSeqBnConfig) adapter's weights, inside BertModel:
#   encoder.layer.{i}.attention.output.adapters.{name}.adapter_down.0.{weight,bias}   (Linear D -> M, then act)
#   encoder.layer.{i}.attention.output.adapters.{name}.adapter_up.{weight,bias}       (Linear M -> D)
#   encoder.layer.{i}.output.adapters.{name}.adapter_down.0 / adapter_up              (FFN side)
# with a `bert.` prefix inside head models. Ours: ...adapters.{name}.down / .up.
_HUB_KEY = re.compile(r"^(?:bert\.)?(encoder\.layer\.\d+\.(?:attention\.output|output))\.adapters\.([^.]+)\."
                      r"(adapter_down\.0|adapter_up)\.(weight|bias)$")
_HUB_NON_LINEARITY = {"swish": "swish", "silu": "swish", "relu": "relu", "tanh": "tanh", "gelu": "gelu",
                      "gelu_new": "gelu_tanh", "gelu_orig": "gelu"}


def config_from_adapterhub(hub: dict, hidden_size: int, bottleneck_size: int | None = None) -> AdapterConfig:
    """Translate an AdapterHub bottleneck config dict (adapter_config.json's "config") into ours.

    Only the Houlsby form is accepted: sequential adapters after dense + dropout, residual taken before
    the original LayerNorm, which is applied after (original_ln_before False, original_ln_after True).
    bottleneck_size: M read from the weights; when given it wins over D // reduction_factor (which
    rounds down a float ratio such as 20 / 3 to the wrong M).
    """
    def get(key, default=None):
        return hub.get(key, default)

    problems = []
    if get("original_ln_before", False):
        problems.append("original_ln_before=True (Pfeiffer-style) is not the Houlsby placement")
    if not get("original_ln_after", True):
        problems.append("original_ln_after=False")
    if get("is_parallel", False):
        problems.append("is_parallel=True")
    if get("scaling", 1.0) not in (1.0, 1, None):
        problems.append(f"scaling={get('scaling')}")
    if get("ln_before", False) or get("ln_after", False):
        problems.append("adapter-internal LayerNorms (ln_before / ln_after)")
    act = str(get("non_linearity", "swish")).lower()
    if act not in _HUB_NON_LINEARITY:
        problems.append(f"non_linearity {act!r}")
    if problems:
        raise ValueError("AdapterHub config is not a Houlsby adapter this reference reproduces: " + "; ".join(problems))
    mh, out = get("mh_adapter", True), get("output_adapter", True)
    placement = "both" if mh and out else "attention" if mh else "ffn"
    if bottleneck_size is None:
        bottleneck_size = int(hidden_size // float(get("reduction_factor", 16)))
    return AdapterConfig(bottleneck_size=bottleneck_size,
                         non_linearity=_HUB_NON_LINEARITY[act], init="normal", init_std=0.02, placement=placement,
                         train_layer_norms=False, train_head=True)


def _read_hub(source):
    """(tensors, hub config dict or None) from an AdapterHub folder or a state dict."""
    if isinstance(source, dict):
        return source, None
    from minibert.weights import read_safetensors

    folder = Path(source)
    config = None
    if (folder / "adapter_config.json").is_file():
        config = json.loads((folder / "adapter_config.json").read_text())
        config = config.get("config", config)
    # adapter.safetensors: what AdapterHub's save_adapter(..., use_safetensors=True) writes.
    for fname in ("adapter.safetensors", "adapter_weights.safetensors", "pytorch_adapter.safetensors"):
        if (folder / fname).is_file():
            return read_safetensors(folder / fname), config
    if (folder / "pytorch_adapter.bin").is_file():
        raise ValueError(f"{folder} holds pytorch_adapter.bin (a pickle); convert it to safetensors with torch "
                         "(torch.load(..., weights_only=True)) first: this library never unpickles")
    raise FileNotFoundError(f"no AdapterHub adapter weights (*.safetensors) in {folder}")


def load_adapterhub(model, source, name: str, hub_name: str | None = None, config: AdapterConfig | None = None,
                    set_active: bool = True) -> str:
    """Load an AdapterHub Houlsby adapter (folder or state dict) into `model` as adapter `name`.

    hub_name: the adapter's name inside the AdapterHub weight keys (default: the only one there).
    """
    tensors, hub_config = _read_hub(source)
    bert = base_model(model)
    matches = {k: _HUB_KEY.match(k) for k in tensors}
    bad = [k for k, m in matches.items() if m is None]
    if bad:
        raise KeyError(f"not AdapterHub Houlsby adapter weights: {bad[:5]}{' ...' if len(bad) > 5 else ''}")
    names = sorted({m.group(2) for m in matches.values()})
    hub_name = hub_name or (names[0] if len(names) == 1 else None)
    if hub_name not in names:
        raise KeyError(f"choose hub_name among the adapters in the weights: {names}")
    prefix = "bert." if getattr(model, "bert", None) is not None else ""
    ours = {}
    for key, m in matches.items():
        if m.group(2) == hub_name:
            part = "down" if m.group(3).startswith("adapter_down") else "up"
            ours[f"{prefix}{m.group(1)}.adapters.{name}.{part}.{m.group(4)}"] = tensors[key]
    downs = [v for k, v in ours.items() if k.endswith(".down.weight")]  # (M, D): the weights say what M is
    if config is None:
        # Without a config file (a state dict), the weights also say which sub-layers have adapters.
        slots = [m.group(1) for m in matches.values() if m.group(2) == hub_name]
        present = {"mh_adapter": any(s.endswith(".attention.output") for s in slots),
                   "output_adapter": any(not s.endswith(".attention.output") for s in slots)}
        config = config_from_adapterhub({**present, **(hub_config or {})}, bert.config.hidden_size,
                                        int(downs[0].shape[0]) if downs else None)
    elif downs and config.bottleneck_size is None:
        config = dataclasses.replace(config, bottleneck_size=int(downs[0].shape[0]))  # never edit the caller's
    added = name not in getattr(model, "adapter_configs", {})
    if added:
        add_adapter(model, name, config, set_active=False)
    else:
        _refuse_other_config(model, name, config, "the AdapterHub weights")
    _copy_into_task(model, ours, f"AdapterHub adapter {hub_name!r}", name, added, set_active)
    return name


def export_adapterhub(model, name: str, directory=None, hub_name: str | None = None) -> dict:
    """Adapter `name`'s weights under AdapterHub's key names (BertModel layout, no `bert.` prefix).

    With `directory`, also writes adapter_weights.safetensors and an adapter_config.json in AdapterHub's
    DoubleSeqBnConfig vocabulary. Returns the state dict.
    """
    config = _config(model, name)
    hub_name = hub_name or name
    act = {"swish": "swish", "relu": "relu", "tanh": "tanh", "gelu": "gelu", "gelu_tanh": "gelu_new"}
    if config.parallel or config.layer_norm:
        raise ValueError("AdapterHub's DoubleSeqBnConfig has no parallel / inner-LayerNorm variant to export to")
    out = {}
    for key, p in model.named_parameters():
        m = re.match(rf"^(?:bert\.)?(.+)\.adapters\.{re.escape(name)}\.(down|up)\.(weight|bias)$", key)
        if m:
            part = "adapter_down.0" if m.group(2) == "down" else "adapter_up"
            out[f"{m.group(1)}.adapters.{hub_name}.{part}.{m.group(3)}"] = np.ascontiguousarray(p.data)
    if directory is not None:
        from safetensors.numpy import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        d = base_model(model).config.hidden_size
        m = config.size_for(d)
        reduction_factor = d / m
        while int(d // reduction_factor) < m:  # AdapterHub takes M = int(D // reduction_factor): 20 // (20 / 3) = 2
            reduction_factor = float(np.nextafter(reduction_factor, 0.0))
        hub_config = {"architecture": "bottleneck", "mh_adapter": "attention" in config.sublayers,
                      "output_adapter": "ffn" in config.sublayers, "reduction_factor": reduction_factor,
                      "non_linearity": act[config.non_linearity], "original_ln_before": False,
                      "original_ln_after": True, "residual_before_ln": True, "scaling": 1.0, "is_parallel": False,
                      "ln_before": False, "ln_after": False}
        write_atomically(directory / "adapter_weights.safetensors", lambda p: save_file(out, str(p)))
        (directory / "adapter_config.json").write_text(json.dumps({"config": hub_config, "name": hub_name}, indent=2))
    return out
