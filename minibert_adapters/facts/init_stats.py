"""Is an adapter's init the distribution its config claims? Near-identity judged per config, not by one threshold.

Houlsby2019 §2.1: "if the parameters of the projection layers are initialized to near-zero, the module is
initialized to an approximate identity function". How near depends on the config (docs/conventions.md), so
each kind states what every tensor of its modules claims at init (`AdapterKind.init_claims`: zeros, ones,
normal, truncated normal, uniform), and the init is judged against that claim, two ways:

1. The distribution (`judge_init`): the measured std of each tensor kind (leaf), pooled over the modules,
   against the claimed one. A normal cut at 2 std and redrawn has std 0.8796 sigma (`truncated_std_factor`); an
   untruncated one sigma; U(-b, b) has std b / sqrt(3). The measured std may be off by sampling noise,
   1/sqrt(2n) relative for n values, and is allowed five times that (plus 1%). A truncated or uniform init has
   no value beyond its bound; zeros and ones are exact. An init 10x the claimed std fails here whatever its
   effect on the output.
2. The output change (`AdapterKind.expected_init_change`): what the claimed init predicts for the relative
   change of the final hidden states. The estimate is good to a small factor; the check allows ten times it.
"""

from __future__ import annotations

import math

import numpy as np

SAMPLING_SIGMAS = 5.0      # allowed deviation of the measured std, in standard errors of the std
STD_FLOOR = 0.01           # ... and never tighter than 1% (float32 rounding, tiny samples)
CHANGE_FACTOR = 10.0       # the output change may exceed the estimate by this much


def truncated_std_factor(bound: float) -> float:
    """std of N(0, 1) conditioned on |x| <= b: sqrt(1 - 2 b phi(b) / (2 Phi(b) - 1))."""
    density = math.exp(-bound**2 / 2) / math.sqrt(2 * math.pi)
    return math.sqrt(1.0 - 2 * bound * density / math.erf(bound / math.sqrt(2)))


TRUNCATED_STD_FACTOR = truncated_std_factor(2.0)  # adapter-bert's cut at 2 std


def judge_init(claims: dict, tensors: dict) -> dict:
    """Judge adapter tensors at init against their claims.

    claims: {leaf: adapters.kinds.Claim}; tensors: {leaf ("down.weight", ...): [one array per module]}. Returns a
    JSON-able dict with one entry per leaf and "ok"; a leaf without a claim fails.
    """
    entries = {}
    for leaf, arrays in sorted(tensors.items()):
        values = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
        n = values.size
        entry = {"values": int(n), "max_abs": float(np.abs(values).max()) if n else 0.0}
        claim = claims.get(leaf)
        if claim is None:
            entry.update(claim="unknown", ok=False)
        elif claim.distribution in ("zeros", "ones"):
            target = 0.0 if claim.distribution == "zeros" else 1.0
            entry.update(claim=claim.distribution, ok=bool(np.all(values == target)))
        else:
            if claim.distribution == "uniform":
                std, bound = claim.bound / math.sqrt(3), claim.bound
            elif claim.distribution == "truncated_normal":
                std, bound = claim.std, claim.bound * claim.std
            else:
                std, bound = claim.std, None
            measured = float(np.sqrt(np.mean(values**2))) if n else 0.0
            entry.update(claim=claim.distribution, claimed_std=std, measured_std=measured)
            if std == 0.0:
                entry["ok"] = bool(entry["max_abs"] == 0.0)
            else:
                expected = std * (truncated_std_factor(claim.bound) if claim.distribution == "truncated_normal"
                                  else 1.0)
                allowed = max(STD_FLOOR, SAMPLING_SIGMAS / math.sqrt(2 * max(n, 1)))
                entry.update(expected_std=expected, ratio=measured / expected, allowed_ratio=[1 - allowed, 1 + allowed])
                ok = abs(measured / expected - 1.0) <= allowed
                if bound is not None:
                    entry["bound"] = bound
                    ok = ok and entry["max_abs"] <= bound * (1 + 1e-6)  # float32 rounding of the bound
                entry["ok"] = bool(ok)
        entries[leaf] = entry
    return {"leaves": entries, "ok": all(e["ok"] for e in entries.values())}


def judge_modules(kind, config, bert_config, modules) -> dict:
    """judge_init for the modules of one adapter: modules is [(place, {leaf: array})], place one (path, label, slot)
    of the kind's slots. Tensors of one leaf are
    pooled over the modules that claim the same distribution for it (a LoRA A of a 384-wide and of a 1536-wide
    Linear claim different bounds, and are judged apart, labelled with the bound or std)."""
    groups = {}
    for place, leaves in modules:
        claims = kind.init_claims(config, bert_config, place)
        for leaf, array in leaves.items():
            groups.setdefault((leaf, claims.get(leaf)), []).append(array)
    per_leaf = {}
    for leaf, _ in groups:
        per_leaf[leaf] = per_leaf.get(leaf, 0) + 1
    claims, tensors = {}, {}
    for (leaf, claim), arrays in groups.items():
        label = leaf
        if per_leaf[leaf] > 1 and claim is not None:
            label += f" ({'bound' if claim.distribution == 'uniform' else 'std'} {claim.bound or claim.std:.3g})"
        claims[label], tensors[label] = claim, arrays
    return judge_init({k: v for k, v in claims.items() if v is not None}, tensors)
