"""Parameter-efficient adapters on minibert, one kind per package, behind one interface (`adapters.kinds`).

    from adapters import BottleneckConfig, add_adapter, train_adapter, adapter_summary
    add_adapter(model, "sst2", "houlsby")      # 2 adapters per layer, m = 64
    trainable = train_adapter(model, "sst2")   # freezes everything the policy does not train

Where to look: a kind's equation, init, placement and count in its package (`bottleneck/`), what every kind
shares in `kinds.py` and `configs.py`, what trains / is counted / is decayed in `policy.py`, the per-model
state in `adapter_set.py`, files in `io.py` (ours) and `adapterhub.py` (AdapterHub's).
"""

# First: are `autograd` and `minibert` this project's, not other packages of the same names? (minibert.environment)
from minibert.environment import check_packages

check_packages(("autograd", "minibert"))

# The kinds this library ships, each registered by importing its package.
import adapters.bottleneck  # noqa: E402, F401
import adapters.ia3  # noqa: E402, F401
import adapters.lora  # noqa: E402, F401
import adapters.prefix  # noqa: E402, F401
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
from adapters.bottleneck import AdapterConfig, BottleneckAdapter, BottleneckConfig  # noqa: E402
from adapters.configs import PRESETS, ConfigError, KindConfig, preset_config  # noqa: E402
from adapters.ia3 import IA3Config  # noqa: E402
from adapters.io import load_adapter, save_adapter  # noqa: E402
from adapters.kinds import KINDS, AdapterKind, AdapterModule, kind_of, register_kind  # noqa: E402
from adapters.lora import LoraConfig, merge_adapter, unmerge_adapter  # noqa: E402
from adapters.peft import export_peft, load_peft  # noqa: E402
from adapters.policy import Policy, apply_policy, parameter_roles, weight_decay_groups  # noqa: E402
from adapters.prefix import PrefixConfig  # noqa: E402

__all__ = ["IA3Config", "LoraConfig", "merge_adapter", "unmerge_adapter", "AdapterConfig", "BottleneckConfig",
           "KindConfig", "ConfigError", "PRESETS", "preset_config", "AdapterSet", "BottleneckAdapter", "AdapterModule",
           "AdapterKind", "KINDS", "kind_of", "register_kind", "add_adapter", "set_active_adapter", "active_adapter",
           "remove_adapter", "train_adapter", "adapter_summary", "save_adapter", "load_adapter", "load_adapterhub",
           "export_adapterhub", "load_peft", "export_peft", "Policy", "apply_policy", "parameter_roles",
           "weight_decay_groups", "PrefixConfig"]
