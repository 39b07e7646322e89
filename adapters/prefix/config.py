"""`PrefixConfig` and its presets: prefix tuning as PEFT's PrefixTuningConfig computes it on BERT.

| preset            | P | what trains                                                  | source            |
|-------------------|---|--------------------------------------------------------------|-------------------|
| prefix            | 5 | the table itself: 2 L D P values (P keys, P values per layer) | Li2021 §4.2; PEFT |
| prefix-projection | 5 | an MLP of width E = 64 that computes the table                | Li2021 §4.3; PEFT |

Prefix tuning trains only its own tensors (PEFT freezes the whole base model, LayerNorms included) and the task head.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.configs import KindConfig, register_presets


@dataclass
class PrefixConfig(KindConfig):
    """Prefix tuning (Li2021 §4.2): P trained key and value vectors in front of every layer's own.

    Layer i attends over [K_prefix_i ; K_i] and [V_prefix_i ; V_i]; the rows come from one table E (P, 2 L D),
    trained directly, or with `prefix_projection` computed by an MLP, E = W2 tanh(W1 e + b1) + b2 from a smaller
    embedding e (P, D) (Li2021 §4.3's reparametrization, PEFT's PrefixEncoder).
    Convention: the model runs as PEFT 0.21 runs it (tools/PEFT_NOTES.md): the real tokens take the positions P ..
    P + T - 1 and token type 0, and every query, padding rows too, may attend to every virtual token.
    """

    num_virtual_tokens: int = 5                 # P, PEFT's num_virtual_tokens
    prefix_projection: bool = False             # compute the table by the MLP (PEFT's prefix_projection)
    encoder_hidden_size: int | None = None      # E, the MLP's width; None: the model's hidden size D (PEFT's default)
    train_layer_norms: bool = False             # prefix tuning trains its own tensors (PEFT freezes the base) ...
    train_head: bool = True                     # ... and the task head

    def problems(self) -> list:
        problems = []
        if self.num_virtual_tokens < 1:
            problems.append(f"num_virtual_tokens must be a positive integer, got {self.num_virtual_tokens!r}")
        if self.encoder_hidden_size is not None and self.encoder_hidden_size < 1:
            problems.append(f"encoder_hidden_size must be a positive integer or None, got {self.encoder_hidden_size!r}")
        return problems

    def width(self, hidden_size: int) -> int:
        """E, the MLP's width, for a model of width D = hidden_size."""
        return hidden_size if self.encoder_hidden_size is None else self.encoder_hidden_size


PREFIX_PRESETS = {
    "prefix": {"doc": "Li2021 prefix tuning as PEFT's PrefixTuningConfig(num_virtual_tokens=5): a trained table of "
                      "5 keys and 5 values per layer.", "fields": {"num_virtual_tokens": 5}},
    "prefix-projection": {"doc": "Li2021 §4.3 prefix tuning with the MLP reparametrization, as PEFT's "
                                 "PrefixTuningConfig(num_virtual_tokens=5, prefix_projection=True, "
                                 "encoder_hidden_size=64).",
                          "fields": {"num_virtual_tokens": 5, "prefix_projection": True, "encoder_hidden_size": 64}},
}

register_presets(PrefixConfig, PREFIX_PRESETS)
