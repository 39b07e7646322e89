"""What files written before adapter kinds had names are read as: the one place for such defaults.

Adapter folders (`adapter_config.json` without "kind"), cross-check cases (an `adapter_config` without "kind")
and AdapterHub folders (a `config` without "architecture", as AdapterHub 1.3.0 writes its bottleneck adapters)
all mean the bottleneck kind.
"""

DEFAULT_KIND = "bottleneck"              # our files without "kind"
HUB_DEFAULT_ARCHITECTURE = "bottleneck"  # AdapterHub configs without "architecture"
