"""The LoRA kind (Hu2021): a low-rank update inside the Linears PEFT's target_modules names.

    config.py   LoraConfig and the presets (the paper's, PEFT's defaults, rsLoRA)
    module.py   LoraLinear: h = W x + b + s B A dropout(x), its init, merge and unmerge
    kind.py     which Linears it adapts, its count r (d_in + d_out), what its init claims
"""

from adapters.adapter_set import AdapterSet
from adapters.lora.config import LORA_PRESETS, LoraConfig
from adapters.lora.kind import LORA, LoraKind
from adapters.lora.module import LoraLinear, lora_parameters
from adapters.lora.module import merge as _merge
from adapters.lora.module import unmerge as _unmerge


def _modules(model, name):
    adapter_set = AdapterSet.of(model)
    config = adapter_set.config(name)
    if not isinstance(config, LoraConfig):
        raise TypeError(f"adapter {name!r} is a {type(config).__name__}, not a LoRA adapter")
    from adapters.policy import base_model

    return [(slot, slot.adapters[name]) for _, _, slot in LORA.slots(base_model(model), config)]


def merge_adapter(model, name: str):
    """Merge LoRA adapter `name` into the weights it adapts: W <- W + s B A (for inference; `unmerge_adapter` puts
    every W back bit for bit)."""
    for linear, module in _modules(model, name):
        _merge(linear, module)


def unmerge_adapter(model, name: str):
    for linear, module in _modules(model, name):
        _unmerge(linear, module)


__all__ = ["LoraConfig", "LORA_PRESETS", "LoraLinear", "LoraKind", "LORA", "lora_parameters", "merge_adapter",
           "unmerge_adapter"]
