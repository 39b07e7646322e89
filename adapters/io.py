"""Adapter-only checkpoints: safetensors + JSON, a few MB instead of the whole model.

An adapter checkpoint holds exactly what one task changes on a frozen base: the adapter's own
parameters plus the base parameters its policy trains (LayerNorms, head), under the model's own names.
`load_adapter` also reads AdapterHub's folders (`adapters.adapterhub`), and says what any other folder is.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from adapters.adapter_set import AdapterSet, copy_into_adapter
from adapters.adapterhub import is_adapterhub_meta, load_adapterhub
from adapters.compat import DEFAULT_KIND
from adapters.kinds import kind_named, kind_of
from adapters.peft import load_peft
from adapters.policy import base_model
from minibert.pretrained import read_json_object
from minibert.weights import read_safetensors, write_atomically, write_safetensors

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter.safetensors"
FORMAT_VERSION = 1


def save_adapter(model, name: str, directory) -> dict:
    """Write adapter_config.json + adapter.safetensors for adapter `name`; returns sizes in bytes.

    adapter_bytes / config_bytes: the two files. model_bytes: the tensor bytes of the pretrained model's
    own parameters (what saving the full model instead would at least cost); percent_of_model: adapter_bytes
    as a share of it.
    """
    adapter_set = AdapterSet.of(model)
    config = adapter_set.config(name)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: np.ascontiguousarray(p.data) for k, p in adapter_set.task_parameters(name).items()}
    bert = base_model(model)
    meta = {"format_version": FORMAT_VERSION, "name": name, "kind": kind_of(config).name, "config": config.to_dict(),
            "base_model": {"hidden_size": bert.config.hidden_size, "num_hidden_layers": bert.config.num_hidden_layers,
                           "model_class": type(model).__name__,
                           # Which model to load the adapter onto: "all-MiniLM-L6-v2" (the embedded default) or
                           # the folder it was loaded from; None for a model built in memory.
                           "name_or_path": bert.config.extra.get("_name_or_path"),
                           "num_labels": model.config.num_labels if model is not bert else None},
            "dtype": str(bert.dtype), "parameters": sorted(tensors)}
    write_safetensors(directory / WEIGHTS_NAME, tensors)
    write_atomically(directory / CONFIG_NAME, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    adapter_bytes = (directory / WEIGHTS_NAME).stat().st_size
    model_bytes = sum(p.data.nbytes for k, p in model.named_parameters() if k in model.checkpoint_names)
    return {"adapter_bytes": adapter_bytes, "config_bytes": (directory / CONFIG_NAME).stat().st_size,
            "model_bytes": model_bytes, "percent_of_model": 100.0 * adapter_bytes / model_bytes}


def read_adapter_meta(directory) -> dict:
    """adapter_config.json of a saved adapter, checked: every problem names the file."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {CONFIG_NAME} in {directory} (not a saved adapter)")
    meta = read_json_object(path, "adapter config")
    what = folder_kind(meta)
    if what != "minibert-adapters":
        raise ValueError(f"{path}: {what}, not an adapter saved by save_adapter")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported format_version {meta.get('format_version')!r}")
    missing = [k for k in ("name", "config", "base_model") if k not in meta]
    if missing or not isinstance(meta.get("base_model"), dict) or "hidden_size" not in meta["base_model"]:
        raise ValueError(f"{path} lacks {', '.join(missing) or 'base_model.hidden_size'}: not written by save_adapter")
    unknown = sorted(set(meta) - set(META_FIELDS))
    if unknown:
        raise ValueError(f"{path}: unknown field {unknown[0]!r} (fields: {', '.join(META_FIELDS)})")
    for field, types, what in META_FIELDS.values():
        value = meta.get(field) if "." not in field else meta["base_model"].get(field.split(".")[1])
        if value is not None and not (isinstance(value, types) and not isinstance(value, bool)):
            raise ValueError(f"{path}: {field} must be {what}, got {value!r}")
    for field in ("hidden_size", "num_hidden_layers"):
        value = meta["base_model"].get(field)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise ValueError(f"{path}: base_model.{field} must be a positive integer, got {value!r}")
    if meta.get("dtype") not in (None, "float32", "float64"):
        raise ValueError(f"{path}: dtype must be 'float32' or 'float64', got {meta['dtype']!r}")
    if meta.get("parameters") is not None and not all(isinstance(n, str) for n in meta["parameters"]):
        raise ValueError(f"{path}: parameters must be a list of tensor names")
    return meta


# The fields of adapter_config.json (save_adapter writes them all): {field: (field, JSON types, in words)}.
META_FIELDS = {"format_version": ("format_version", int, "an integer"), "name": ("name", str, "a string"),
               "kind": ("kind", str, "a string"), "config": ("config", dict, "an object"),
               "base_model": ("base_model", dict, "an object"), "dtype": ("dtype", str, "a string"),
               "parameters": ("parameters", list, "a list")}


def folder_kind(meta: dict) -> str:
    """What wrote an adapter_config.json: "minibert-adapters", "AdapterHub", or a sentence saying what it is."""
    if "format_version" in meta:
        return "minibert-adapters"
    if is_adapterhub_meta(meta):
        return "AdapterHub"
    if "peft_type" in meta:
        return "PEFT"
    return "a JSON file of unknown origin (neither this project's format_version, AdapterHub's config and version, " \
           "nor PEFT's peft_type)"


def load_adapter(model, directory, name: str | None = None, set_active: bool = True) -> str:
    """Restore an adapter saved by save_adapter onto a (freshly loaded) base model, bit-exactly; an AdapterHub
    folder (its save_adapter with use_safetensors=True) is read with `load_adapterhub`, a PEFT folder (its
    save_pretrained) with `adapters.peft.load_peft`.

    Adds the adapter if the model does not have it (an adapter of that name already there must have the
    saved config), then copies every saved tensor into the task after `check_state`: the file must hold
    everything the adapter's policy trains (a missing head or LayerNorm would silently stay as it was).
    Returns the adapter's name.
    """
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if path.is_file():
        raw = read_json_object(path, "adapter config")
        if folder_kind(raw) == "AdapterHub":
            return load_adapterhub(model, directory, name or raw.get("name"), set_active=set_active)
        if folder_kind(raw) == "PEFT":
            return load_peft(model, directory, name, set_active=set_active)
    meta = read_adapter_meta(directory)
    name = name or meta["name"]
    bert = base_model(model)
    if meta["base_model"]["hidden_size"] != bert.config.hidden_size:
        raise ValueError(f"adapter was trained on hidden_size {meta['base_model']['hidden_size']}, "
                         f"this model has {bert.config.hidden_size}")
    layers = meta["base_model"].get("num_hidden_layers")
    if layers is not None and layers != bert.config.num_hidden_layers:
        raise ValueError(f"{path}: base_model.num_hidden_layers is {layers}, this model has "
                         f"{bert.config.num_hidden_layers}")
    tensors = read_safetensors(directory / WEIGHTS_NAME)
    # a float tensor of another dtype than saved (float16 cast on the way) would be cast back silently; a tensor
    # that is no float at all is named by check_state below
    other = sorted(k for k, v in tensors.items() if np.issubdtype(v.dtype, np.floating)
                   and meta.get("dtype") is not None and str(v.dtype) != meta["dtype"])
    if other:
        raise ValueError(f"{path}: dtype {meta['dtype']!r}, but {directory / WEIGHTS_NAME} holds "
                         f"{tensors[other[0]].dtype} tensors ({other[0]}{' and more' if len(other) > 1 else ''})")
    if name != meta["name"]:
        tensors = {k.replace(f".adapters.{meta['name']}.", f".adapters.{name}."): v for k, v in tensors.items()}
    try:
        config = kind_named(meta.get("kind", DEFAULT_KIND)).config_class.from_dict(meta["config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{directory / CONFIG_NAME}: {e}") from None
    copy_into_adapter(model, name, config, tensors, f"adapter {name!r} from {directory}", set_active=set_active)
    return name


