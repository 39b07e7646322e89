"""The (IA)^3 kind (Liu2022): learned vectors rescaling the keys, the values and the feed-forward's input.

    config.py   IA3Config and the preset (PEFT's defaults for BERT)
    module.py   IA3Scale: y = l * (W x + b), or W (l * x) + b for a feed-forward module; l = 1 at init
    kind.py     which Linears it rescales, its count (d_out or d_in per Linear)
"""

from adapters.ia3.config import IA3_PRESETS, IA3Config
from adapters.ia3.kind import IA3, IA3Kind
from adapters.ia3.module import IA3Scale

__all__ = ["IA3Config", "IA3_PRESETS", "IA3Scale", "IA3Kind", "IA3"]
