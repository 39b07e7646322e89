"""Houlsby bottleneck adapters (Houlsby2019) on minibert.

    from adapters import AdapterConfig, add_adapter, train_adapter, adapter_summary
    add_adapter(model, "sst2", "houlsby")      # 2 adapters per layer, m = 64
    trainable = train_adapter(model, "sst2")   # freezes everything the policy does not train

Where to look: the adapter's equation and init in `bottleneck.py`, its placement in `bottleneck_slots`,
what trains / is counted / is decayed in `policy.py`, the per-model state in `adapter_set.py`.
"""

# First: are `autograd` and `minibert` this project's, not other packages of the same names? (minibert.environment)
from minibert.environment import check_packages

check_packages(("autograd", "minibert"))

from adapters.adapter_set import (  # noqa: E402
    AdapterSet,
    active_adapter,
    adapter_summary,
    add_adapter,
    remove_adapter,
    set_active_adapter,
    train_adapter,
)
from adapters.adapterhub import export_adapterhub, load_adapterhub  # noqa: E402
from adapters.bottleneck import BottleneckAdapter  # noqa: E402
from adapters.config import PRESETS, AdapterConfig  # noqa: E402
from adapters.io import load_adapter, save_adapter  # noqa: E402
from adapters.kinds import KINDS, AdapterKind, AdapterModule, register_kind  # noqa: E402
from adapters.policy import Policy, apply_policy, parameter_roles, weight_decay_groups  # noqa: E402

__all__ = ["AdapterConfig", "PRESETS", "AdapterSet", "BottleneckAdapter", "AdapterModule", "AdapterKind", "KINDS",
           "register_kind", "add_adapter", "set_active_adapter", "active_adapter", "remove_adapter", "train_adapter",
           "adapter_summary", "save_adapter", "load_adapter", "load_adapterhub", "export_adapterhub", "Policy",
           "apply_policy", "parameter_roles", "weight_decay_groups"]
