"""`LoraConfig` and its presets: the paper's and PEFT's defaults for BERT.

| preset          | targets                 | r | alpha | s = alpha / r        | source                          |
|-----------------|-------------------------|---|-------|----------------------|---------------------------------|
| lora            | query, value            | 8 | 16    | 2                    | Hu2021 §4.2, §7.1 (W_q, W_v)    |
| lora-peft       | query, value            | 8 | 8     | 1                    | PEFT's LoraConfig() on BERT     |
| lora-dense-rs   | query, key, value, dense| 4 | 8     | alpha / sqrt(r) = 4  | rsLoRA (Kalajdzievski2023)      |

LoRA trains only its own matrices by default (PEFT's `bias="none"`, no LayerNorms) and the task head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.configs import KindConfig, finite, register_presets

INITS = ("kaiming_uniform", "gaussian")
# PEFT's default target_modules for model_type "bert" (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING).
PEFT_BERT_TARGETS = ["query", "value"]


@dataclass
class LoraConfig(KindConfig):
    """LoRA (Hu2021 §4.1): h = W x + b + s B A dropout(x) on every Linear that `target_modules` names.

    A (r, d_in), B (d_out, r): r (d_in + d_out) parameters per adapted Linear; s = alpha / r, or alpha / sqrt(r)
    with `use_rslora` (Kalajdzievski2023). Convention: `target_modules` is matched as PEFT matches it: a list names
    modules by their last dotted parts ("query" matches encoder.layer.3.attention.self.query, "dense" every
    *.dense, the pooler's too), a string is a regular expression the whole module name must match.
    """

    r: int = 8                                  # the rank
    alpha: float = 8.0                          # PEFT's lora_alpha (its default 8)
    target_modules: list | str = field(default_factory=lambda: list(PEFT_BERT_TARGETS))
    dropout: float = 0.0                        # on the input of A (PEFT's lora_dropout)
    use_rslora: bool = False                    # s = alpha / sqrt(r) instead of alpha / r
    init: str = "kaiming_uniform"               # A ~ U(-1/sqrt(d_in), 1/sqrt(d_in)) (PEFT's default); "gaussian": A ~
                                                # N(0, 1/r^2) (PEFT's init_lora_weights="gaussian"); B = 0 always
    train_layer_norms: bool = False             # LoRA trains its own matrices (PEFT: bias="none") ...
    train_head: bool = True                     # ... and the task head

    def problems(self) -> list:
        problems = []
        if self.r <= 0:
            problems.append(f"r must be a positive integer, got {self.r!r}")
        if not finite(self.alpha, low=float("-inf")):
            problems.append(f"alpha must be a finite number, got {self.alpha!r}")
        if not (finite(self.dropout) and self.dropout < 1):
            problems.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.target_modules, list):
            if not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules):
                problems.append(f"target_modules must be a non-empty list of names, got {self.target_modules!r}")
        elif not self.target_modules:
            problems.append("target_modules must not be an empty pattern")
        if self.init not in INITS:
            problems.append(f"init {self.init!r} is not one of {INITS}")
        return problems

    @property
    def scaling(self) -> float:
        """s = alpha / r (Hu2021 §4.1), or alpha / sqrt(r) with use_rslora."""
        return self.alpha / (self.r ** 0.5 if self.use_rslora else self.r)


LORA_PRESETS = {
    "lora": {"doc": "Hu2021 §4.2 and §7.1: LoRA on W_q and W_v (BERT's query and value), r = 8, alpha = 16.",
             "fields": {"r": 8, "alpha": 16.0, "target_modules": ["query", "value"]}},
    "lora-peft": {"doc": "PEFT's LoraConfig() defaults on BERT: query and value, r = 8, lora_alpha = 8, no dropout.",
                  "fields": {"r": 8, "alpha": 8.0, "target_modules": ["query", "value"]}},
    "lora-dense-rs": {"doc": "rsLoRA (Kalajdzievski2023, PEFT's use_rslora) on every Linear named query, key, value "
                             "or dense, r = 4, alpha = 8: s = alpha / sqrt(r).",
                      "fields": {"r": 4, "alpha": 8.0, "target_modules": ["query", "key", "value", "dense"],
                                 "use_rslora": True}},
}

register_presets(LoraConfig, LORA_PRESETS)
