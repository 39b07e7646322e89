"""Houlsby bottleneck adapters (Houlsby2019) on minibert.

    from adapters import AdapterConfig, add_adapter, train_adapter, adapter_summary
    add_adapter(model, "sst2", "houlsby")      # 2 adapters per layer, m = 64
    trainable = train_adapter(model, "sst2")   # freezes everything the policy does not train
"""

from adapters.config import PRESETS, AdapterConfig
from adapters.io import export_adapterhub, load_adapter, load_adapterhub, save_adapter
from adapters.model import (
    active_adapter,
    adapter_summary,
    add_adapter,
    remove_adapter,
    set_active_adapter,
    train_adapter,
)
from adapters.modules import BottleneckAdapter

__all__ = ["AdapterConfig", "PRESETS", "BottleneckAdapter", "add_adapter", "set_active_adapter", "active_adapter",
           "remove_adapter", "train_adapter", "adapter_summary", "save_adapter", "load_adapter", "load_adapterhub",
           "export_adapterhub"]
