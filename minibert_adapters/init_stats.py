"""Is an adapter's init the distribution its config claims? Near-identity judged per preset, not by one threshold.

Houlsby2019 §2.1: "if the parameters of the projection layers are initialized to near-zero, the module is
initialized to an approximate identity function". How near depends on the preset (docs/conventions.md):

| preset               | W_down, W_up                              | biases |
|----------------------|-------------------------------------------|--------|
| houlsby              | truncated normal, std 1e-3, cut at 2 std  | zero   |
| houlsby-paper        | truncated normal, std 1e-2, cut at 2 std  | zero   |
| adapterhub-houlsby   | normal, std 0.02 (not truncated)          | zero   |
| houlsby-zero-init    | W_down as houlsby, W_up exactly zero      | zero   |

So the init is judged against its own config, two ways:

1. The distribution (`judge_init`): the measured std of each weight matrix kind, pooled over the modules, against
   the claimed one. A normal cut at 2 std and redrawn has std 0.8796 sigma (`TRUNCATED_STD_FACTOR`); an
   untruncated one sigma. The measured std may be off by sampling noise, 1/sqrt(2n) relative for n values, and
   is allowed five times that (plus 1%). A truncated init has no value beyond 2 sigma; biases are exactly zero;
   "zeros" has W_up exactly zero. An init 10x the claimed std fails here whatever its effect on the output.
2. The output change (`expected_relative_change`): what the claimed std predicts for the relative change of the
   final hidden states. One adapter adds W_up f(W_down a) to a; with n_in-by-n_out weights of std s_d and s_u
   and f'(0) = k, each token changes by about k s_d s_u sqrt(M D) times |a|, and a sub-layer's output a is about as
   large as its residual input (|a| / |x + a| ~ 1). Over 2L sub-layers the changes add up to about sqrt(2L) times
   that. The estimate is good to a small factor; the check allows ten times it.
"""

from __future__ import annotations

import math

import numpy as np

TRUNCATION = 2.0  # adapter-bert: TF's truncated_normal redraws values beyond 2 std
# std of N(0, 1) conditioned on |x| <= 2: sqrt(1 - 2 b phi(b) / (2 Phi(b) - 1)) at b = 2
TRUNCATED_STD_FACTOR = math.sqrt(1.0 - 2 * TRUNCATION * math.exp(-TRUNCATION**2 / 2) / math.sqrt(2 * math.pi)
                                 / math.erf(TRUNCATION / math.sqrt(2)))
SAMPLING_SIGMAS = 5.0      # allowed deviation of the measured std, in standard errors of the std
STD_FLOOR = 0.01           # ... and never tighter than 1% (float32 rounding, tiny samples)
CHANGE_FACTOR = 10.0       # the output change may exceed the estimate by this much
# f'(0) of each non-linearity: the slope with which a small W_down a passes through f. ReLU: 1/2 on average.
SLOPE_AT_ZERO = {"gelu": 0.5, "gelu_new": 0.5, "gelu_pytorch_tanh": 0.5, "silu": 0.5, "relu": 0.5, "tanh": 1.0}


def claimed_weight_init(config, leaf: str):
    """(distribution, std) that `config` claims for an adapter weight: "truncated_normal", "normal" or "zeros"."""
    if leaf == "up.weight" and config.init == "zeros":
        return "zeros", 0.0
    return ("normal" if config.init == "normal" else "truncated_normal"), float(config.init_std)


def judge_init(config, tensors: dict) -> dict:
    """Judge adapter tensors at init against `config`'s claim.

    tensors: {leaf ("down.weight", "up.bias", ...): [one array per module]}. Returns a JSON-able dict with one
    entry per leaf and "ok".
    """
    entries = {}
    for leaf, arrays in sorted(tensors.items()):
        values = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
        n = values.size
        entry = {"values": int(n), "max_abs": float(np.abs(values).max()) if n else 0.0}
        if leaf.endswith(".bias") and not leaf.startswith("layer_norm"):
            entry.update(claim="zeros", ok=bool(entry["max_abs"] == 0.0))
        elif leaf.startswith("layer_norm"):
            continue  # the layer_norm ablation's own LayerNorm starts at (1, 0) as every LayerNorm
        else:
            kind, std = claimed_weight_init(config, leaf)
            measured = float(np.sqrt(np.mean(values**2))) if n else 0.0
            entry.update(claim=kind, claimed_std=std, measured_std=measured)
            if kind == "zeros" or std == 0.0:
                entry["ok"] = bool(entry["max_abs"] == 0.0)
            else:
                expected = std * (TRUNCATED_STD_FACTOR if kind == "truncated_normal" else 1.0)
                allowed = max(STD_FLOOR, SAMPLING_SIGMAS / math.sqrt(2 * max(n, 1)))
                entry.update(expected_std=expected, ratio=measured / expected, allowed_ratio=[1 - allowed, 1 + allowed])
                ok = abs(measured / expected - 1.0) <= allowed
                if kind == "truncated_normal":
                    entry["bound"] = TRUNCATION * std
                    ok = ok and entry["max_abs"] <= TRUNCATION * std * (1 + 1e-6)  # float32 rounding of the bound
                entry["ok"] = bool(ok)
        entries[leaf] = entry
    return {"leaves": entries, "ok": all(e["ok"] for e in entries.values())}


def expected_relative_change(config, hidden_size: int, num_layers: int) -> float:
    """The relative change of the final hidden states that `config`'s init std predicts (see the module doc)."""
    m = config.size_for(hidden_size)
    _, std_down = claimed_weight_init(config, "down.weight")
    _, std_up = claimed_weight_init(config, "up.weight")
    per_sublayer = SLOPE_AT_ZERO.get(config.non_linearity, 1.0) * std_down * std_up * math.sqrt(m * hidden_size)
    return per_sublayer * math.sqrt(num_layers * len(config.sublayers))
