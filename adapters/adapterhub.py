"""AdapterHub interop: load an AdapterHub adapter folder, export ours so that AdapterHub loads it.

AdapterHub (the `adapters` package, 1.x) is a PyTorch library whose import name is also `adapters`; it is
never imported here. Its files are read and written with safetensors and JSON only. What is specific to a
method (its config vocabulary, its tensor names) is its kind's (`config_from_hub`, `config_to_hub`,
`foreign_leaves`); this module only moves files.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from adapters.adapter_set import AdapterSet, copy_into_adapter
from adapters.compat import HUB_DEFAULT_ARCHITECTURE
from adapters.kinds import KINDS, kind_of
from adapters.names import adapter_key, adapter_parameter_name
from adapters.policy import base_model
from minibert.pretrained import read_json_object
from minibert.weights import read_safetensors, write_atomically

HUB_WEIGHTS_NAME = "adapter.safetensors"   # AdapterHub's SAFE_WEIGHTS_NAME; load with use_safetensors=True
HUB_VERSION = "adapters.1.3.0"            # the release this file format was checked against (tools/)


def is_adapterhub_meta(meta: dict) -> bool:
    """Does an adapter_config.json look like AdapterHub's save_adapter wrote it (a `config` and `version`
    "adapters.<release>")?"""
    return isinstance(meta.get("config"), dict) and str(meta.get("version", "")).startswith("adapters.")


def _hub_kind(hub_config: dict | None):
    """The kind of an AdapterHub config: by its "architecture" (`compat.HUB_DEFAULT_ARCHITECTURE` without one)."""
    architecture = (hub_config or {}).get("architecture") or HUB_DEFAULT_ARCHITECTURE
    for kind in KINDS.values():
        if kind.hub_architecture == architecture:
            return kind
    raise ValueError(f"AdapterHub architecture {architecture!r} has no adapter kind here "
                     f"(kinds: {', '.join(k.name for k in KINDS.values() if k.hub_architecture)})")


def _read_hub(source):
    """(tensors, hub config dict or None) from an AdapterHub folder or a state dict."""
    if isinstance(source, dict):
        return source, None
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such AdapterHub adapter folder")
    config = None
    path = folder / "adapter_config.json"
    if path.is_file():
        config = read_json_object(path, "AdapterHub adapter config")
        config = config.get("config", config)
        if not isinstance(config, dict):
            raise ValueError(f"{path}: its 'config' is not a JSON object")
    # adapter.safetensors: what AdapterHub's save_adapter(..., use_safetensors=True) writes.
    for fname in (HUB_WEIGHTS_NAME, "adapter_weights.safetensors", "pytorch_adapter.safetensors"):
        if (folder / fname).is_file():
            return read_safetensors(folder / fname), config
    if (folder / "pytorch_adapter.bin").is_file():
        raise ValueError(f"{folder} holds pytorch_adapter.bin (a pickle); save it with use_safetensors=True, or "
                         "convert it with torch (torch.load(..., weights_only=True)) first: this library never "
                         "unpickles")
    raise FileNotFoundError(f"no AdapterHub adapter weights (*.safetensors) in {folder}")


def load_adapterhub(model, source, name: str | None = None, hub_name: str | None = None, config=None,
                    set_active: bool = True) -> str:
    """Load an AdapterHub adapter (its folder, or its state dict) into `model` as adapter `name` (default: its
    AdapterHub name).

    hub_name: the adapter's name inside the AdapterHub weight keys (default: the only one there). config: our
    config to use instead of translating AdapterHub's. Returns the adapter's name.
    """
    tensors, hub_config = _read_hub(source)
    bert = base_model(model)
    kind = kind_of(config) if config is not None else _hub_kind(hub_config)
    places = {path for path, _, _ in kind.all_slots(bert)}
    parsed = {k: adapter_key(k) for k in tensors}
    bad = [k for k, p in parsed.items() if p is None or p[0] not in places]
    if bad:
        raise KeyError(f"not AdapterHub {kind.name} adapter weights of this model: {bad[:5]}"
                       f"{' ...' if len(bad) > 5 else ''}")
    names = sorted({p[1] for p in parsed.values()})
    hub_name = hub_name or (names[0] if len(names) == 1 else None)
    if hub_name not in names:
        raise KeyError(f"choose hub_name among the adapters in the weights: {names}")
    name = name or hub_name
    by_slot = {}
    for key, (slot, adapter, leaf) in parsed.items():
        if adapter == hub_name:
            by_slot.setdefault(slot, {})[leaf] = tensors[key]
    if config is None:
        config = kind.config_from_hub(hub_config or {}, bert.config, by_slot)
    else:
        config = kind.sized_like(dataclasses.replace(config), by_slot, bert.config)  # never edit the caller's
    prefix = "bert." if bert is not model else ""
    ours = {prefix + adapter_parameter_name(slot, name, leaf): v for slot, leaves in by_slot.items()
            for leaf, v in leaves.items()}
    # AdapterHub keeps the head apart from the adapter: only the adapter's own tensors are required.
    copy_into_adapter(model, name, config, ours, f"AdapterHub adapter {hub_name!r}", adapter_only=True,
                      set_active=set_active)
    return name


def export_adapterhub(model, name: str, directory=None, hub_name: str | None = None,
                      model_name: str | None = None) -> dict:
    """Adapter `name`'s weights under AdapterHub's key names (BertModel layout, no `bert.` prefix).

    With `directory`, also writes the two files AdapterHub 1.3.0 loads with
    `model.load_adapter(directory, use_safetensors=True)`: `adapter.safetensors` and `adapter_config.json`
    (top-level `config`, `hidden_size`, `model_class`, `model_name`, `model_type`, `name`, `version`; `config` in
    AdapterHub's vocabulary, from the kind's `config_to_hub`). model_name: the base model's Hugging Face id
    (AdapterHub only records it); default: the config's `_name_or_path`, if any. Returns the state dict.

    Convention: only the adapter's own tensors are exported. AdapterHub has no place for the base LayerNorms that
    the `houlsby` policy trains; putting them in under base names would overwrite the shared base model there.
    """
    config = AdapterSet.of(model).config(name)
    kind = kind_of(config)
    bert = base_model(model)
    hub_config = kind.config_to_hub(config, bert.config)
    hub_name = hub_name or name
    theirs = {ours: hub for hub, ours in kind.foreign_leaves.items()}
    out = {}
    for key, p in model.named_parameters():
        parsed = adapter_key(key)
        if parsed is not None and parsed[1] == name:
            slot, _, leaf = parsed
            out[adapter_parameter_name(slot, hub_name, theirs.get(leaf, leaf))] = np.ascontiguousarray(p.data)
    if directory is not None:
        from safetensors.numpy import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"config": hub_config, "hidden_size": bert.config.hidden_size, "model_class": "BertModel",
                "model_name": model_name if model_name is not None else bert.config.extra.get("_name_or_path", ""),
                "model_type": "bert", "name": hub_name, "version": HUB_VERSION}
        write_atomically(directory / HUB_WEIGHTS_NAME, lambda p: save_file(out, str(p)))
        text = json.dumps(meta, indent=2, sort_keys=True) + "\n"  # as AdapterHub writes it: indent 2, sorted keys
        write_atomically(directory / "adapter_config.json", lambda p: p.write_text(text))
    return out
