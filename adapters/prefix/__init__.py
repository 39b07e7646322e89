"""The prefix-tuning kind (Li2021): P trained keys and values in front of every layer's own, as PEFT 0.21 computes it.

    config.py   PrefixConfig and the presets (the table; the MLP reparametrization)
    module.py   PrefixEncoder: the table E (P, 2LD) or E = W2 tanh(W1 e + b1) + b2, handed to every layer
    kind.py     its one place (the embeddings' hook), its count, its init, PEFT's file names
"""

from adapters.prefix.config import PREFIX_PRESETS, PrefixConfig
from adapters.prefix.kind import PREFIX, PrefixKind
from adapters.prefix.module import PrefixEncoder, prefix_parameters

__all__ = ["PrefixConfig", "PREFIX_PRESETS", "PrefixEncoder", "PrefixKind", "PREFIX", "prefix_parameters"]
