"""Adapter parameter names, ours and other libraries': one parser for every kind.

Every adapter parameter lives under its slot as `<slot path>.adapters.<adapter name>.<leaf>`, ours
(`encoder.layer.3.output.adapters.demo.down.weight`) and AdapterHub's
(`encoder.layer.3.output.adapters.demo.adapter_down.0.weight`) alike, with or without the `bert.` prefix of a
head model. The leaf is translated into ours by the kinds' `foreign_leaves`.
"""

from __future__ import annotations

import re

from adapters.kinds import foreign_leaf

_ANY_ADAPTER_KEY = re.compile(r"^(?:bert\.)?(.+?)\.adapters\.([^.]+)\.(.+)$")


def adapter_key(key: str):
    """(slot path, adapter name, leaf in our names) for an adapter parameter name, ours or another library's, with
    or without the `bert.` prefix; None for any other name.

        adapter_key("bert.encoder.layer.3.output.adapters.demo.adapter_down.0.weight")
        -> ("encoder.layer.3.output", "demo", "down.weight")

    The leaf may still be unknown (e.g. "gate.weight"): the caller decides what to do with it.
    """
    m = _ANY_ADAPTER_KEY.match(key)
    if m is None:
        return None
    slot, name, leaf = m.groups()
    return slot, name, foreign_leaf(leaf)


def adapter_parameter_name(slot: str, name: str, leaf: str) -> str:
    """Our name of adapter `name`'s parameter `leaf` in the slot at `slot` (the inverse of `adapter_key`)."""
    return f"{slot}.adapters.{name}.{leaf}"
