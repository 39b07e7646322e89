"""`BottleneckConfig` (also importable as `AdapterConfig`) and its presets: the original code, the paper,
AdapterHub's bottleneck family, and the paper's ablations.

Each preset reproduces one source by name (docs/conventions.md gives the sources; `PRESETS[name]["doc"]` says
what each sets):

| preset                | where, fed what                   | f              | init               | size | s |
|-----------------------|-----------------------------------|----------------|--------------------|------|---|
| houlsby (adapter-bert)| attention + FFN, fed a            | GELU, tanh form| trunc. normal 1e-3 | 64   | 1 |
| houlsby-paper         | same                              | same           | trunc. normal 1e-2 | 64   | 1 |
| adapterhub-houlsby    | same (DoubleSeqBn)                | swish ("silu") | N(0, 0.02), "bert" | D/16 | 1 |
| pfeiffer (SeqBn)      | FFN, fed LN(x + a)                | ReLU           | N(0, 0.02), "bert" | D/16 | 1 |
| adapterhub-parallel   | FFN, fed x, in parallel (ParBn)   | ReLU           | "mam_adapter"      | D/2  | 4 |

The original code and the paper also train every LayerNorm and the head; AdapterHub's train the head only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import autograd.functional as F
from adapters.configs import KindConfig, finite, register_presets

INITS = ("truncated_normal", "normal", "zeros", "mam_adapter")
PLACEMENTS = ("both", "attention", "ffn")


@dataclass
class BottleneckConfig(KindConfig):
    """How one bottleneck adapter is shaped, placed, initialised and trained.

    Math (Houlsby2019 §2.1, Fig. 2):  A(h) = h + s (W_up f(W_down h + b_down) + b_up),
    W_down (M, D), W_up (D, M): 2MD + D + M parameters per module. Where h comes from and where the
    residual and the sub-layer's own LayerNorm go are AdapterHub's four fields (`original_ln_before`,
    `original_ln_after`, `residual_before_ln`, `parallel` = its `is_parallel`), with its defaults, which
    are Houlsby's placement: see `BottleneckAdapter.forward`.
    """

    bottleneck_size: int | None = 64        # M; None -> hidden_size / reduction_factor
    reduction_factor: float | None = None   # D / M, AdapterHub's way to give the size
    non_linearity: str = "gelu_new"         # f, by Hugging Face's name: "gelu_new" (tanh GELU, adapter-bert),
                                            # "gelu", "relu", "silu", "tanh"; aliases such as "swish" accepted
    init: str = "truncated_normal"          # "truncated_normal" (cut at 2 std), "normal", "zeros" (W_up = 0),
                                            # "mam_adapter" (W_down Kaiming-uniform, W_up = 0: AdapterHub's name)
    init_std: float = 1e-3                  # std of the weight init (biases start at zero)
    placement: str = "both"                 # "both" (Houlsby), "attention" or "ffn" sub-layer only
    parallel: bool = False                  # False: A(a) on the sub-layer output a; True: a + A'(x), x its input
    layer_norm: bool = False                # a LayerNorm on the adapter's input, inside it (ablation; AdapterHub's
                                            # ln_before)
    scaling: float = 1.0                    # s, multiplies the up-projection (AdapterHub's ParBn: 4.0)
    original_ln_before: bool = False        # AdapterHub: feed the adapter LN(x + a) instead of a (SeqBn: True)
    original_ln_after: bool = True          # AdapterHub: end with LN(x + ...) (False: return the adapter's sum)
    residual_before_ln: bool | Literal["post_add"] = True  # AdapterHub: the adapter's skip is a (True), its input
                                            # LN(x + a) (False), or x + a ("post_add")

    def problems(self) -> list:
        problems = []
        if self.bottleneck_size is None and self.reduction_factor is None:
            problems.append("give bottleneck_size or reduction_factor")
        if self.bottleneck_size is not None and self.bottleneck_size <= 0:
            problems.append(f"bottleneck_size must be a positive integer, got {self.bottleneck_size!r}")
        if self.reduction_factor is not None and not finite(self.reduction_factor, strict=True):
            problems.append(f"reduction_factor must be positive, got {self.reduction_factor!r}")
        if not finite(self.scaling, low=float("-inf")):
            problems.append(f"scaling must be a finite number, got {self.scaling!r}")
        try:  # one vocabulary: the activation registry's canonical names
            self.non_linearity = F.canonical_activation(self.non_linearity)
        except ValueError as e:
            problems.append(f"non_linearity: {e}")
        if self.init not in INITS:
            problems.append(f"init {self.init!r} is not one of {INITS}")
        if not finite(self.init_std):
            problems.append(f"init_std must be a finite number >= 0, got {self.init_std!r}")
        if self.placement not in PLACEMENTS:
            problems.append(f"placement {self.placement!r} is not one of {PLACEMENTS}")
        return problems

    def size_for(self, hidden_size: int) -> int:
        """M for a model of width D: bottleneck_size if given, else D / reduction_factor (at least 1).

        Rounded down as AdapterHub's int(D // r), so that an adapter saved with a factor loads at the size it was
        saved with; a new adapter must have a size that needs no rounding (`size_problem`)."""
        if self.bottleneck_size is not None:
            return self.bottleneck_size
        return max(1, int(hidden_size // self.reduction_factor))

    def size_problem(self, hidden_size: int) -> str | None:
        """Why the size is no bottleneck of a model of width D, or None: M must be a whole number from 1 to D. A
        wider "bottleneck" is not one, and a reduction factor that D / factor rounds (to 0, or to a whole number
        below it) would train another size than the one asked for."""
        if self.bottleneck_size is not None:
            if self.bottleneck_size > hidden_size:
                return (f"bottleneck_size {self.bottleneck_size} is larger than the hidden size {hidden_size}: a "
                        f"bottleneck is at most as wide as the layer it adapts (give at most {hidden_size})")
            return None
        factor = self.reduction_factor
        exact, m = hidden_size / factor, int(hidden_size // factor)
        given = f"reduction_factor {factor:g} on the hidden size {hidden_size}"
        if m < 1:
            return f"{given} gives a bottleneck of {exact:g}, less than 1 (give a factor of at most {hidden_size})"
        if m > hidden_size:
            return f"{given} gives a bottleneck of {m}, wider than the hidden size (a factor below 1 widens the layer)"
        if abs(m * factor - hidden_size) > 1e-9 * hidden_size:
            return (f"{given} does not divide it: {hidden_size} / {factor:g} = {exact!r} would be rounded down to "
                    f"{m}; give a factor that divides {hidden_size}, or bottleneck_size")
        return None

    @property
    def sublayers(self) -> tuple:
        return {"both": ("attention", "ffn"), "attention": ("attention",), "ffn": ("ffn",)}[self.placement]

    @staticmethod
    def preset_fields(fields: dict, overrides: dict) -> dict:
        """A preset's fields with overrides: from_preset("houlsby", bottleneck_size=8). Giving a reduction factor
        to a preset with a fixed size switches it to the factor."""
        fields = {**fields, **overrides}
        if "reduction_factor" in overrides and "bottleneck_size" not in overrides:
            fields["bottleneck_size"] = None
        return fields


AdapterConfig = BottleneckConfig  # the name this config had first; both stay importable


_HOULSBY = dict(bottleneck_size=64, non_linearity="gelu_new", init="truncated_normal", init_std=1e-3,
                placement="both", parallel=False, layer_norm=False, train_layer_norms=True, train_head=True,
                train_pooler=False, scaling=1.0, original_ln_before=False, original_ln_after=True,
                residual_before_ln=True)

BOTTLENECK_PRESETS = {
    "houlsby": {
        "doc": "The original code (google-research/adapter-bert modeling.py, feedforward_adapter): GELU (tanh form), "
               "truncated normal std 1e-3, zero biases, m=64, after attention and FFN, trains adapters + every "
               "LayerNorm + head; pooler frozen.",
        "fields": _HOULSBY,
    },
    "houlsby-paper": {
        "doc": "Houlsby2019 §3.6: as 'houlsby' but init std 1e-2, the largest std the paper found robust.",
        "fields": {**_HOULSBY, "init_std": 1e-2},
    },
    "adapterhub-houlsby": {
        "doc": "AdapterHub DoubleSeqBnConfig ('houlsby'): swish, reduction factor 16, N(0, 0.02) weights and zero "
               "biases ('bert' init), trains adapters + head only (LayerNorms frozen).",
        "fields": {**_HOULSBY, "bottleneck_size": None, "reduction_factor": 16, "non_linearity": "silu",
                   "init": "normal", "init_std": 0.02, "train_layer_norms": False},
    },
    "pfeiffer": {
        "doc": "AdapterHub SeqBnConfig ('pfeiffer', Pfeiffer2021 AdapterFusion): one adapter per layer, after the FFN, "
               "fed LN(x + a) with the sub-layer's own LayerNorm, skip from a, then LN(x + ...) again; reduction "
               "factor 16, ReLU, N(0, 0.02) weights ('bert' init), trains adapters + head.",
        "fields": {**_HOULSBY, "bottleneck_size": None, "reduction_factor": 16, "non_linearity": "relu",
                   "placement": "ffn", "init": "normal", "init_std": 0.02, "train_layer_norms": False,
                   "original_ln_before": True},
    },
    "adapterhub-parallel": {
        "doc": "AdapterHub ParBnConfig (He2022's parallel adapter): after the FFN, fed the sub-layer input x, "
               "added to a scaled by s = 4; reduction factor 2, ReLU, 'mam_adapter' init (W_down Kaiming-uniform, "
               "W_up and biases zero), trains adapters + head.",
        "fields": {**_HOULSBY, "bottleneck_size": None, "reduction_factor": 2, "non_linearity": "relu",
                   "placement": "ffn", "parallel": True, "scaling": 4.0, "init": "mam_adapter", "init_std": 0.0,
                   "train_layer_norms": False},
    },
    "houlsby-attention-only": {"doc": "Houlsby2019 §3.6 ablation ('inserting adapters only inside the attention "
                                      "layer'): adapters only after the attention sub-layer.",
                               "fields": {**_HOULSBY, "placement": "attention"}},
    "houlsby-ffn-only": {"doc": "Placement ablation after Pfeiffer2021 (AdapterFusion: one adapter per layer, after "
                                "the feed-forward sub-layer), with the rest of 'houlsby' unchanged.",
                         "fields": {**_HOULSBY, "placement": "ffn"}},
    "houlsby-parallel": {"doc": "Houlsby2019 §3.6 ablation ('adding adapters in parallel to the main layers'), in "
                                "He2022's form: a + A'(x) with the adapter fed the sub-layer input.",
                         "fields": {**_HOULSBY, "parallel": True}},
    "houlsby-layernorm": {"doc": "Houlsby2019 §3.6 ablation ('adding a batch/layer normalization to the adapter'): "
                                 "a LayerNorm on the adapter input, inside the adapter.",
                          "fields": {**_HOULSBY, "layer_norm": True}},
    "houlsby-relu": {"doc": "Houlsby2019 §3.6 ablation ('different activation functions'): ReLU.",
                     "fields": {**_HOULSBY, "non_linearity": "relu"}},
    "houlsby-tanh": {"doc": "Houlsby2019 §3.6 ablation ('different activation functions, such as tanh'): tanh.",
                     "fields": {**_HOULSBY, "non_linearity": "tanh"}},
    "houlsby-zero-init": {"doc": "Houlsby2019 §2.1's near-identity init taken to its limit (§3.6 ablates the init "
                                 "std): W_up and b_up start at zero, an exact identity (W_down still random, so W_up "
                                 "gets a gradient).", "fields": {**_HOULSBY, "init": "zeros"}},
}

register_presets(BottleneckConfig, BOTTLENECK_PRESETS)
