"""`AdapterConfig` and the named presets: the original code, the paper, AdapterHub, and the paper's ablations.

Each preset reproduces one column of this table by name (docs/conventions.md gives the sources):

| thing         | "houlsby" (google-research/adapter-bert) | "houlsby-paper" (Houlsby2019) | "adapterhub-houlsby" |
|---------------|------------------------------------------|-------------------------------|----------------------|
| non-linearity | GELU, tanh form ("gelu_new")             | same as the code              | swish ("silu")       |
| init          | truncated normal std 1e-3, zero biases   | std 1e-2 (§3.6: robust < 1e-2) | N(0, 0.02) ("bert")  |
| trained       | adapters + every LayerNorm + head        | same                          | adapters + head      |
| size          | m = 64                                   | m = 64 (of {8, 64, 256})      | reduction factor 16  |
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

import autograd.functional as F

INITS = ("truncated_normal", "normal", "zeros")
PLACEMENTS = ("both", "attention", "ffn")


@dataclass
class AdapterConfig:
    """How one adapter is shaped, placed, initialised and trained.

    Math (Houlsby2019 §2.1, Fig. 2):  A(h) = h + W_up f(W_down h + b_down) + b_up,
    W_down (M, D), W_up (D, M): 2MD + D + M parameters per module.
    """

    bottleneck_size: int | None = 64        # M; None -> hidden_size / reduction_factor
    reduction_factor: float | None = None   # D / M, AdapterHub's way to give the size
    non_linearity: str = "gelu_new"         # f, by Hugging Face's name: "gelu_new" (tanh GELU, adapter-bert),
                                            # "gelu", "relu", "silu", "tanh"; aliases such as "swish" accepted
    init: str = "truncated_normal"          # "truncated_normal" (cut at 2 std), "normal", "zeros" (W_up = 0)
    init_std: float = 1e-3                  # std of the weight init (biases start at zero)
    placement: str = "both"                 # "both" (Houlsby), "attention" or "ffn" sub-layer only
    parallel: bool = False                  # False: A(a) on the sub-layer output a; True: a + A'(x), x its input
    layer_norm: bool = False                # a LayerNorm on the adapter's input, inside the adapter (ablation)
    train_layer_norms: bool = True          # training policy: the base model's LayerNorms train too
    train_head: bool = True                 # the classification head trains (when the model has one)
    train_pooler: bool = False              # the pooler trains (adapter-bert keeps it frozen)

    def __post_init__(self):
        problems = []
        if self.bottleneck_size is None and self.reduction_factor is None:
            problems.append("give bottleneck_size or reduction_factor")
        size = self.bottleneck_size
        if isinstance(size, numbers.Integral) and not isinstance(size, bool):
            self.bottleneck_size = size = int(size)  # NumPy integers too; stored as a JSON-able int
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
            problems.append(f"bottleneck_size must be a positive integer, got {self.bottleneck_size!r}")
        if self.reduction_factor is not None and not self.reduction_factor > 0:
            problems.append(f"reduction_factor must be positive, got {self.reduction_factor!r}")
        try:  # one vocabulary: the activation registry's canonical names
            self.non_linearity = F.canonical_activation(self.non_linearity)
        except ValueError as e:
            problems.append(f"non_linearity: {e}")
        if self.init not in INITS:
            problems.append(f"init {self.init!r} is not one of {INITS}")
        if not (isinstance(self.init_std, numbers.Real) and 0 <= self.init_std < math.inf):
            problems.append(f"init_std must be a finite number >= 0, got {self.init_std!r}")
        if self.placement not in PLACEMENTS:
            problems.append(f"placement {self.placement!r} is not one of {PLACEMENTS}")
        if problems:
            raise ValueError("invalid AdapterConfig: " + "; ".join(problems))

    def size_for(self, hidden_size: int) -> int:
        """M for a model of width D: bottleneck_size if given, else D / reduction_factor (at least 1)."""
        if self.bottleneck_size is not None:
            return self.bottleneck_size
        return max(1, int(hidden_size // self.reduction_factor))

    @property
    def sublayers(self) -> tuple:
        return {"both": ("attention", "ffn"), "attention": ("attention",), "ffn": ("ffn",)}[self.placement]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AdapterConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown AdapterConfig field(s): {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> AdapterConfig:
        """A named preset (see PRESETS), with any field overridden: from_preset("houlsby", bottleneck_size=8)."""
        if name not in PRESETS:
            raise ValueError(f"unknown adapter preset {name!r}; choose one of {', '.join(PRESETS)}")
        fields = {**PRESETS[name]["fields"], **overrides}
        if "reduction_factor" in overrides and "bottleneck_size" not in overrides:
            fields["bottleneck_size"] = None
        return cls.from_dict(fields)  # an unknown override is a ValueError naming it, as in from_dict


_HOULSBY = dict(bottleneck_size=64, non_linearity="gelu_new", init="truncated_normal", init_std=1e-3,
                placement="both", parallel=False, layer_norm=False, train_layer_norms=True, train_head=True,
                train_pooler=False)

PRESETS = {
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
        "doc": "Pfeiffer2021 (AdapterFusion) placement: one adapter per layer, after the FFN only; reduction factor "
               "16, ReLU. Deviation: AdapterHub's SeqBnConfig also re-applies the original LayerNorm before the "
               "adapter; here the adapter sits where Houlsby's FFN adapter sits.",
        "fields": {**_HOULSBY, "bottleneck_size": None, "reduction_factor": 16, "non_linearity": "relu",
                   "placement": "ffn", "init": "normal", "init_std": 0.02, "train_layer_norms": False},
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
