"""`IA3Config` and its preset: PEFT's defaults for BERT."""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.configs import KindConfig, register_presets

# PEFT's defaults for model_type "bert" (TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING and
# TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING): the keys, the values and every output.dense.
PEFT_BERT_TARGETS = ["key", "value", "output.dense"]
PEFT_BERT_FEEDFORWARD = ["output.dense"]


@dataclass
class IA3Config(KindConfig):
    """(IA)^3 (Liu2022 §3.3): learned vectors that rescale activations, initialised at ones.

    On a Linear that `target_modules` names: y = l * (W x + b) (l of size d_out: keys, values), or, if
    `feedforward_modules` also names it, y = W (l * x) + b (l of size d_in: the feed-forward's input).
    Convention: both lists are matched as PEFT matches target_modules (a name or its last dotted parts; a string
    is a regular expression); a feed-forward module must also be a target.
    """

    target_modules: list | str = field(default_factory=lambda: list(PEFT_BERT_TARGETS))
    feedforward_modules: list | str = field(default_factory=lambda: list(PEFT_BERT_FEEDFORWARD))
    train_layer_norms: bool = False   # (IA)^3 trains its vectors ...
    train_head: bool = True           # ... and the task head

    def problems(self) -> list:
        problems = []
        for name in ("target_modules", "feedforward_modules"):
            value = getattr(self, name)
            if isinstance(value, list) and not all(isinstance(t, str) and t for t in value):
                problems.append(f"{name} must be a list of names, got {value!r}")
        if isinstance(self.target_modules, list) and not self.target_modules:
            problems.append("target_modules must not be empty")
        return problems


IA3_PRESETS = {
    "ia3": {"doc": "Liu2022 (IA)^3 with PEFT's IA3Config() defaults for BERT: keys and values rescaled at their "
                   "output, every output.dense at its input.", "fields": {}},
}

register_presets(IA3Config, IA3_PRESETS)
