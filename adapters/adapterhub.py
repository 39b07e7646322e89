"""AdapterHub interop: load an AdapterHub Houlsby adapter, export ours under AdapterHub's names.

AdapterHub (the `adapters` package, 1.x) is a PyTorch library whose import name is also `adapters`; it is
never imported here. Its files are read and written with safetensors and JSON only.

Also the one place that reads adapter parameter names written by someone else (`adapter_key`): ours
(`...output.adapters.<name>.down.weight`) and AdapterHub's (`...output.adapters.<name>.adapter_down.0.weight`),
with or without the `bert.` prefix. `minibert crosscheck` uses it to read case files.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np

import autograd.functional as F
from adapters.adapter_set import AdapterSet
from adapters.config import AdapterConfig
from adapters.io import copy_into_adapter
from adapters.policy import base_model
from minibert.weights import read_safetensors, write_atomically

# AdapterHub (adapters 1.x) names a Houlsby (DoubleSeqBnConfig) adapter's weights, inside BertModel:
#   encoder.layer.{i}.attention.output.adapters.{name}.adapter_down.0.{weight,bias}   (Linear D -> M, then act)
#   encoder.layer.{i}.attention.output.adapters.{name}.adapter_up.{weight,bias}       (Linear M -> D)
#   encoder.layer.{i}.output.adapters.{name}.adapter_down.0 / adapter_up              (FFN side)
# with a `bert.` prefix inside head models. Ours: ...adapters.{name}.down / .up.
_HUB_KEY = re.compile(r"^(?:bert\.)?(encoder\.layer\.\d+\.(?:attention\.output|output))\.adapters\.([^.]+)\."
                      r"(adapter_down\.0|adapter_up)\.(weight|bias)$")

# Any adapter parameter, ours or AdapterHub's: <slot path>.adapters.<adapter name>.<leaf>.
_ANY_ADAPTER_KEY = re.compile(r"^(?:bert\.)?(.+?)\.adapters\.([^.]+)\.(.+)$")
# AdapterHub's leaf names -> ours (adapter_down is Sequential(Linear, activation), hence the `.0`).
_HUB_LEAVES = {"adapter_down.0.weight": "down.weight", "adapter_down.0.bias": "down.bias",
               "adapter_up.weight": "up.weight", "adapter_up.bias": "up.bias"}
# Our BottleneckAdapter's leaves (the inner LayerNorm only with the `layer_norm` ablation).
ADAPTER_LEAVES = ("down.weight", "down.bias", "up.weight", "up.bias", "layer_norm.weight", "layer_norm.bias")


def adapter_key(key: str):
    """(slot path, adapter name, leaf in our names) for an adapter parameter name, ours or AdapterHub's, with or
    without the `bert.` prefix; None for any other name.

        adapter_key("bert.encoder.layer.3.output.adapters.demo.adapter_down.0.weight")
        -> ("encoder.layer.3.output", "demo", "down.weight")

    The leaf may still be unknown (e.g. "gate.weight"): the caller decides what to do with it.
    """
    m = _ANY_ADAPTER_KEY.match(key)
    if m is None:
        return None
    slot, name, leaf = m.groups()
    return slot, name, _HUB_LEAVES.get(leaf, leaf)


def adapter_parameter_name(slot: str, name: str, leaf: str) -> str:
    """Our name of adapter `name`'s parameter `leaf` in the slot at `slot` (the inverse of `adapter_key`)."""
    return f"{slot}.adapters.{name}.{leaf}"


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
    try:
        F.canonical_activation(act)
    except ValueError:
        problems.append(f"non_linearity {act!r}")
    if problems:
        raise ValueError("AdapterHub config is not a Houlsby adapter this reference reproduces: " + "; ".join(problems))
    mh, out = get("mh_adapter", True), get("output_adapter", True)
    placement = "both" if mh and out else "attention" if mh else "ffn"
    if bottleneck_size is None:
        bottleneck_size = int(hidden_size // float(get("reduction_factor", 16)))
    return AdapterConfig(bottleneck_size=bottleneck_size,
                         non_linearity=act, init="normal", init_std=0.02, placement=placement,
                         train_layer_norms=False, train_head=True)


def _read_hub(source):
    """(tensors, hub config dict or None) from an AdapterHub folder or a state dict."""
    if isinstance(source, dict):
        return source, None
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
    # AdapterHub keeps the head apart from the adapter: only the adapter's own tensors are required.
    copy_into_adapter(model, name, config, ours, f"AdapterHub adapter {hub_name!r}", adapter_only=True,
                      set_active=set_active)
    return name


# What AdapterHub 1.3.0's save_adapter writes for a DoubleSeqBnConfig, field by field (docs/conventions.md, "AdapterHub
# file format"), for the fields our config does not decide. Writing all 33 keeps the file in AdapterHub's own
# vocabulary; a missing key would take AdapterHub's default, which is the same value.
_HUB_BN_DEFAULTS = {
    "adapter_residual_before_ln": False, "cross_adapter": False, "dropout": 0.0, "factorized_phm_W": True,
    "factorized_phm_rule": False, "hypercomplex_nonlinearity": "glorot-uniform", "init_weights_seed": None,
    "inv_adapter": None, "inv_adapter_reduction_factor": None, "is_parallel": False, "learn_phm": True,
    "leave_out": [], "ln_after": False, "ln_before": False, "original_ln_after": True, "original_ln_before": False,
    "phm_bias": True, "phm_c_init": "normal", "phm_dim": 4, "phm_init_range": 0.0001, "phm_layer": False,
    "phm_rank": 1, "residual_before_ln": True, "scaling": 1.0, "shared_W_phm": False, "shared_phm_rule": True,
    "stochastic_depth": 0.0, "use_gating": False,
}
HUB_WEIGHTS_NAME = "adapter.safetensors"   # AdapterHub's SAFE_WEIGHTS_NAME; load with use_safetensors=True
HUB_VERSION = "adapters.1.3.0"            # the release this file format was checked against (tools/)


def _hub_reduction_factor(d: int, m: int) -> float:
    """r with int(D // r) == M, as AdapterHub computes M: D / M, nudged down where float rounding loses one."""
    reduction_factor = d / m
    while int(d // reduction_factor) < m:  # 20 // (20 / 3) = 2, not 3
        reduction_factor = float(np.nextafter(reduction_factor, 0.0))
    return float(reduction_factor)


def export_adapterhub(model, name: str, directory=None, hub_name: str | None = None,
                      model_name: str | None = None) -> dict:
    """Adapter `name`'s weights under AdapterHub's key names (BertModel layout, no `bert.` prefix).

    With `directory`, also writes the two files AdapterHub 1.3.0 loads with
    `model.load_adapter(directory, use_safetensors=True)`: `adapter.safetensors` and `adapter_config.json`
    (top-level `config`, `hidden_size`, `model_class`, `model_name`, `model_type`, `name`, `version`; `config` in
    DoubleSeqBnConfig's vocabulary, without an `architecture` key, which 1.3.0 would reject). model_name: the base
    model's Hugging Face id (AdapterHub only records it); default: the config's `_name_or_path`, if any.
    Returns the state dict.

    Convention: only the adapter's own tensors are exported. AdapterHub has no place for the base LayerNorms that
    the `houlsby` policy trains; putting them in under base names would overwrite the shared base model there.
    """
    config = AdapterSet.of(model).config(name)
    hub_name = hub_name or name
    if config.parallel or config.layer_norm:
        raise ValueError("AdapterHub's DoubleSeqBnConfig has no parallel / inner-LayerNorm variant to export to")
    out = {}
    for key, p in model.named_parameters():
        parsed = adapter_key(key)
        if parsed is not None and parsed[1] == name:
            slot, _, leaf = parsed
            hub_leaf = {v: k for k, v in _HUB_LEAVES.items()}[leaf]
            out[f"{slot}.adapters.{hub_name}.{hub_leaf}"] = np.ascontiguousarray(p.data)
    if directory is not None:
        from safetensors.numpy import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        bert = base_model(model)
        d = bert.config.hidden_size
        hub_config = {**_HUB_BN_DEFAULTS,
                      "mh_adapter": "attention" in config.sublayers, "output_adapter": "ffn" in config.sublayers,
                      "reduction_factor": _hub_reduction_factor(d, config.size_for(d)),
                      # AdapterHub's name for SiLU is "swish"; the others are transformers' names, as ours
                      "non_linearity": {"silu": "swish"}.get(config.non_linearity, config.non_linearity),
                      # "bert": N(0, 0.02) as our "normal"; "houlsby": truncated normal, the closest to ours.
                      # Only used when AdapterHub draws a fresh adapter; loading overwrites it.
                      "init_weights": "bert" if config.init == "normal" else "houlsby"}
        meta = {"config": hub_config, "hidden_size": d, "model_class": "BertModel",
                "model_name": model_name if model_name is not None else bert.config.extra.get("_name_or_path", ""),
                "model_type": "bert", "name": hub_name, "version": HUB_VERSION}
        write_atomically(directory / HUB_WEIGHTS_NAME, lambda p: save_file(out, str(p)))
        text = json.dumps(meta, indent=2, sort_keys=True) + "\n"  # as AdapterHub writes it: indent 2, sorted keys
        write_atomically(directory / "adapter_config.json", lambda p: p.write_text(text))
    return out
