"""The bottleneck kind: Houlsby adapters and AdapterHub's bottleneck family (SeqBn, DoubleSeqBn, ParBn).

    config.py      BottleneckConfig (= AdapterConfig) and the presets
    module.py      BottleneckAdapter: the equation A(h) = s up(f(down(h))) and its placements, the init
    kind.py        where it attaches, its count 2MD + D + M, its init claims, its known-wrong variants
    adapterhub.py  AdapterHub's names and config vocabulary, both ways
"""

from adapters.bottleneck.config import BOTTLENECK_PRESETS, INITS, PLACEMENTS, AdapterConfig, BottleneckConfig
from adapters.bottleneck.kind import BOTTLENECK, BottleneckKind
from adapters.bottleneck.module import BottleneckAdapter, bottleneck_parameters, truncated_normal

__all__ = ["AdapterConfig", "BottleneckConfig", "BOTTLENECK_PRESETS", "INITS", "PLACEMENTS", "BottleneckAdapter",
           "BottleneckKind", "BOTTLENECK", "bottleneck_parameters", "truncated_normal"]
