"""PEFT interop: read a folder PEFT's `save_pretrained` wrote, write one `PeftModel.from_pretrained` loads.

PEFT (Hugging Face, 0.21) is never imported: its files are JSON and safetensors. A PEFT folder holds
`adapter_config.json` (with its `peft_type`) and `adapter_model.safetensors`, whose keys are the wrapped model's
module paths under "base_model.model." followed by PEFT's leaf name ("...attention.self.query.lora_A.weight").
What is specific to a method (its config vocabulary, its leaf names and their shapes) is its kind's
(`peft_type`, `config_from_peft`, `config_to_peft`, `peft_leaves`, `from_peft` / `to_peft`); this module only
moves files. A kind whose file is not one tensor per parameter under a module path says so with two optional
methods: `peft_key(key) -> (module path, PEFT leaf)` reads a saved key, `peft_state(bert, name, config) ->
{saved key: array}` gives what to write (prefix tuning saves one `prompt_embeddings`, with no module path, and
for its MLP form the MLP's output, not its weights). tools/PEFT_NOTES.md records what PEFT computes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from adapters.adapter_set import AdapterSet, copy_into_adapter
from adapters.kinds import KINDS, kind_of
from adapters.names import adapter_key, adapter_parameter_name
from adapters.policy import base_model
from minibert.pretrained import read_json_object
from minibert.weights import read_safetensors, write_atomically

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PREFIX = "base_model.model."   # the wrapped model's modules, as PEFT's saved keys name them
PEFT_VERSION = "0.21.2"        # the release this file format was checked against (tools/make_peft_fixture.py)


def peft_kind(peft_type):
    for kind in KINDS.values():
        if getattr(kind, "peft_type", None) == peft_type:
            return kind
    known = ", ".join(k.peft_type for k in KINDS.values() if getattr(k, "peft_type", None))
    raise ValueError(f"PEFT peft_type {peft_type!r} has no adapter kind here (read: {known})")


def read_peft_config(folder: Path) -> dict:
    path = folder / PEFT_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"no {PEFT_CONFIG} in {folder} (not a PEFT adapter folder)")
    config = read_json_object(path, "PEFT adapter config")
    if "peft_type" not in config:
        raise ValueError(f"{path} has no peft_type: not written by PEFT")
    return config


def load_peft(model, folder, name: str | None = None, set_active: bool = True) -> str:
    """Load the adapter PEFT saved in `folder` into `model` as adapter `name` (default "default", PEFT's name).
    Returns the name. Every problem names the folder and the tensor or field."""
    folder = Path(folder)
    peft_config = read_peft_config(folder)
    kind = peft_kind(peft_config["peft_type"])
    bert = base_model(model)
    try:
        config = kind.config_from_peft(peft_config, bert.config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{folder / PEFT_CONFIG}: {e}") from None
    if not (folder / PEFT_WEIGHTS).is_file():
        if (folder / "adapter_model.bin").is_file():
            raise ValueError(f"{folder} holds adapter_model.bin (a pickle); save it with safe_serialization=True: "
                             "this library never unpickles")
        raise FileNotFoundError(f"no {PEFT_WEIGHTS} in {folder}")
    name = name or "default"
    prefix = "bert." if bert is not model else ""
    places = {place[0]: place for place in kind.all_slots(bert)}
    ours, unknown = {}, []
    for key, value in read_safetensors(folder / PEFT_WEIGHTS).items():
        path, leaf = saved_key(kind, key)
        if path not in places:
            unknown.append(key)
            continue
        ours[prefix + adapter_parameter_name(path, name, kind.peft_leaves[leaf])] = \
            kind.from_peft(leaf, value, config, places[path])
    if unknown:
        raise KeyError(f"{folder / PEFT_WEIGHTS}: not {kind.name} tensors of this model's modules: {unknown[:5]}")
    copy_into_adapter(model, name, config, ours, f"PEFT adapter in {folder}", adapter_only=True,
                      set_active=set_active)
    return name


def saved_key(kind, key: str):
    """(module path, PEFT leaf) of a key of adapter_model.safetensors; (None, None) when it is not the kind's. The
    kind's own `peft_key` if it has one, else the module path after "base_model.model." and one of its leaves."""
    if hasattr(kind, "peft_key"):
        return kind.peft_key(key)
    return _split(key.removeprefix(PREFIX), kind.peft_leaves)


def _split(key: str, leaves: dict):
    """(module path, PEFT leaf) of a saved key; (None, None) when no leaf of the kind ends it."""
    for leaf in leaves:
        if key.endswith("." + leaf):
            return key[: -len(leaf) - 1], leaf
    return None, None


def export_peft(model, name: str, directory, base_model_name_or_path: str | None = None) -> dict:
    """Write adapter `name` as PEFT's save_pretrained would: adapter_config.json and adapter_model.safetensors, which
    `PeftModel.from_pretrained(transformers.BertModel, directory)` loads. Returns the tensors.

    Convention: only the method's own tensors are written (PEFT keeps a task head in `modules_to_save`, which is
    not written here).
    """
    from safetensors.numpy import save_file

    config = AdapterSet.of(model).config(name)
    kind = kind_of(config)
    if getattr(kind, "peft_type", None) is None:
        raise ValueError(f"adapter {name!r} is of kind {kind.name!r}, which PEFT does not have")
    bert = base_model(model)
    if hasattr(kind, "peft_state"):  # a kind whose file is not its parameters one by one
        out = kind.peft_state(bert, name, config)
    else:
        out = _parameters_as_saved(kind, bert, name, config)
    meta = {**kind.config_to_peft(config), "peft_version": PEFT_VERSION,
            "base_model_name_or_path": base_model_name_or_path if base_model_name_or_path is not None
            else bert.config.extra.get("_name_or_path")}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(directory / PEFT_WEIGHTS, lambda p: save_file(out, str(p), metadata={"format": "pt"}))
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    write_atomically(directory / PEFT_CONFIG, lambda p: p.write_text(text))
    return out


def _parameters_as_saved(kind, bert, name, config) -> dict:
    """{saved key: array}: each parameter of adapter `name` under "base_model.model.<module path>.<PEFT leaf>"."""
    places = {place[0]: place for place in kind.slots(bert, config)}
    theirs = {ours: peft for peft, ours in kind.peft_leaves.items()}
    out = {}
    for key, p in bert.named_parameters():
        parsed = adapter_key(key)
        if parsed is not None and parsed[1] == name and parsed[0] in places:
            path, _, leaf = parsed
            out[f"{PREFIX}{path}.{theirs[leaf]}"] = np.ascontiguousarray(
                kind.to_peft(theirs[leaf], p.data, config, places[path]))
    return out
