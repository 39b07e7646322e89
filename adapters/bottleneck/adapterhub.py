"""AdapterHub's vocabulary for bottleneck adapters (`adapters` 1.x, BnConfig and its subclasses), both ways.

AdapterHub is never imported: its files are JSON and safetensors. tools/ADAPTERHUB_NOTES.md records what
AdapterHub 1.3.0 computes for each field; `BottleneckAdapter.forward` computes the same.
"""

from __future__ import annotations

import numpy as np

import autograd.functional as F
from adapters.bottleneck.config import BottleneckConfig

# What AdapterHub 1.3.0's save_adapter writes for a BnConfig, field by field (docs/conventions.md, "AdapterHub
# file format"), for the fields our config does not decide. Writing all 33 keeps the file in AdapterHub's own
# vocabulary; a missing key would take AdapterHub's default, which is the same value.
HUB_BN_DEFAULTS = {
    "adapter_residual_before_ln": False, "cross_adapter": False, "dropout": 0.0, "factorized_phm_W": True,
    "factorized_phm_rule": False, "hypercomplex_nonlinearity": "glorot-uniform", "init_weights_seed": None,
    "inv_adapter": None, "inv_adapter_reduction_factor": None, "is_parallel": False, "learn_phm": True,
    "leave_out": [], "ln_after": False, "ln_before": False, "original_ln_after": True, "original_ln_before": False,
    "phm_bias": True, "phm_c_init": "normal", "phm_dim": 4, "phm_init_range": 0.0001, "phm_layer": False,
    "phm_rank": 1, "residual_before_ln": True, "scaling": 1.0, "shared_W_phm": False, "shared_phm_rule": True,
    "stochastic_depth": 0.0, "use_gating": False,
}
# AdapterHub's init_weights -> ours, and back ("houlsby" is truncated normal std 1e-2 cut at 2 std).
HUB_INITS = {"bert": {"init": "normal", "init_std": 0.02},
             "houlsby": {"init": "truncated_normal", "init_std": 1e-2},
             "mam_adapter": {"init": "mam_adapter", "init_std": 0.0}}
# Fields that change what AdapterHub computes and that this reference does not reproduce, with the value that
# it does reproduce.
# ln_before is our inner `layer_norm`, but AdapterHub puts it first in adapter_down's Sequential, which moves the
# Linear to adapter_down.1: not read or written here.
UNSUPPORTED = {"ln_before": False, "ln_after": False, "use_gating": False, "phm_layer": False, "inv_adapter": None,
               "leave_out": [], "stochastic_depth": 0.0, "cross_adapter": False}


def hub_non_linearity(name: str) -> str:
    """Our canonical activation name for AdapterHub's (it lower-cases it; "swish" is SiLU)."""
    return F.canonical_activation(str(name).lower())


def config_from_hub(hub: dict, hidden_size: int, bottleneck_size: int | None = None) -> BottleneckConfig:
    """Our BottleneckConfig for an AdapterHub bottleneck config dict (adapter_config.json's "config").

    bottleneck_size: M read from the weights; when given it wins over D // reduction_factor (which rounds a
    float ratio such as 20 / 3 down to the wrong M). Raises ValueError naming every field it cannot reproduce.
    """
    problems = [f"{k}={hub[k]!r}" for k, ok in UNSUPPORTED.items() if k in hub and hub[k] not in (ok, None)
                and not (k == "leave_out" and not hub[k])]
    scaling = hub.get("scaling", 1.0)
    if isinstance(scaling, str) or isinstance(scaling, bool):
        problems.append(f"scaling={scaling!r} (a learned scaling; only a number is reproduced)")
    if float(hub.get("dropout", 0.0) or 0.0) != 0.0:
        problems.append(f"dropout={hub['dropout']!r} (the adapter's own dropout)")
    init = hub.get("init_weights", "bert")
    if init not in HUB_INITS:
        problems.append(f"init_weights={init!r}")
    try:
        act = hub_non_linearity(hub.get("non_linearity", "swish"))
    except ValueError:
        act = None
        problems.append(f"non_linearity={hub.get('non_linearity')!r}")
    if problems:
        raise ValueError("AdapterHub bottleneck config not reproduced here: " + "; ".join(problems))
    mh, out = hub.get("mh_adapter", True), hub.get("output_adapter", True)
    if not (mh or out):
        raise ValueError("AdapterHub bottleneck config with neither mh_adapter nor output_adapter")
    placement = "both" if mh and out else "attention" if mh else "ffn"
    if bottleneck_size is None:
        factor = hub.get("reduction_factor", 16)
        if isinstance(factor, dict):
            raise ValueError(f"reduction_factor per layer ({factor!r}) is not reproduced here")
        bottleneck_size = max(1, int(hidden_size // float(factor)))
    return BottleneckConfig(bottleneck_size=bottleneck_size, non_linearity=act, placement=placement,
                            parallel=bool(hub.get("is_parallel", False)),
                            scaling=float(scaling), original_ln_before=bool(hub.get("original_ln_before", False)),
                            original_ln_after=bool(hub.get("original_ln_after", True)),
                            residual_before_ln=hub.get("residual_before_ln", True), train_layer_norms=False,
                            train_head=True, **HUB_INITS[init])


def hub_reduction_factor(d: int, m: int) -> float | int:
    """r with int(D // r) == M, as AdapterHub computes M: D / M, nudged down where float rounding loses one."""
    reduction_factor = d / m
    while int(d // reduction_factor) < m:  # 20 // (20 / 3) = 2, not 3
        reduction_factor = float(np.nextafter(reduction_factor, 0.0))
    # A whole ratio is written as AdapterHub's own configs write it (32, not 32.0).
    return int(reduction_factor) if float(reduction_factor).is_integer() else float(reduction_factor)


def config_to_hub(config: BottleneckConfig, hidden_size: int) -> dict:
    """AdapterHub's BnConfig dict (all 33 keys) for our config."""
    if config.layer_norm:
        raise ValueError("an adapter with an inner LayerNorm is AdapterHub's ln_before, whose tensor names (the "
                         "Linear moves to adapter_down.1) this export does not write")
    d = hidden_size
    if config.init == "mam_adapter":
        init = "mam_adapter"
    else:
        # "bert": N(0, 0.02) as our "normal"; "houlsby": truncated normal, the closest to ours. Only used when
        # AdapterHub draws a fresh adapter; loading overwrites it.
        init = "bert" if config.init == "normal" else "houlsby"
    return {**HUB_BN_DEFAULTS,
            "mh_adapter": config.placement in ("both", "attention"),
            "output_adapter": config.placement in ("both", "ffn"),
            "reduction_factor": hub_reduction_factor(d, config.size_for(d)),
            # AdapterHub's name for SiLU is "swish"; the others are transformers' names, as ours
            "non_linearity": {"silu": "swish"}.get(config.non_linearity, config.non_linearity),
            "is_parallel": config.parallel, "scaling": config.scaling,
            "original_ln_before": config.original_ln_before, "original_ln_after": config.original_ln_after,
            "residual_before_ln": config.residual_before_ln, "init_weights": init}
