"""Adapter kinds: the small interface one parameter-efficient method implements to plug into minibert.

A kind answers two questions and nothing else:

    slots(bert, config)                   -> [(path, sublayer, slot module)]   where its modules go
    build(config, bert_config, dtype, rng) -> AdapterModule                    one module for one slot

A *slot* is a module of the model with a `hook` attribute (minibert's `SublayerOutput` today: the place
between a sub-layer's dropout and its residual). `AdapterSet` does the rest for every kind alike: it
registers the built modules under `<slot>.adapters.<name>` (so their parameters get dotted names), points
`slot.hook` at the active one, decides what trains (`adapters.policy`, by module type: every AdapterModule
is an adapter), counts, saves and loads. A new kind is one module defining its config, its AdapterModule
and a `register_kind(...)` call; see docs/architecture.md for how LoRA and prefix tuning fit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from autograd import nn


class AdapterModule(nn.Module):
    """Base class of every adapter module; `name` is the adapter (task) it belongs to.

    Being an AdapterModule is what makes a parameter an adapter parameter (`adapters.policy`): the rule is
    by type, never by parameter-name strings. `forward` has the signature of its slot's hook.
    """

    def __init__(self, name: str | None = None):
        super().__init__()
        self.name = name

    def num_formula_parameters(self) -> int:
        """The parameter count the method's paper gives for this module (compared with the count in `check`)."""
        raise NotImplementedError

    def shape_info(self) -> dict:
        """The sizes that enter the formula, for reports (e.g. {"D": 384, "M": 64})."""
        return {}


@dataclass(frozen=True)
class AdapterKind:
    name: str                 # stored in adapter_config.json as "kind"
    config_class: type        # a dataclass with to_dict / from_dict
    slots: Callable           # (bert, config) -> iterable of (path relative to bert, sublayer, slot module)
    build: Callable           # (name, config, bert_config, dtype, rng) -> AdapterModule


KINDS: dict[str, AdapterKind] = {}


def register_kind(kind: AdapterKind) -> AdapterKind:
    KINDS[kind.name] = kind
    return kind


def kind_of(config) -> AdapterKind:
    """The kind whose config class `config` is an instance of."""
    for kind in KINDS.values():
        if isinstance(config, kind.config_class):
            return kind
    raise TypeError(f"no adapter kind takes a {type(config).__name__}; kinds: {', '.join(KINDS)}")


def kind_named(name: str) -> AdapterKind:
    if name not in KINDS:
        raise ValueError(f"unknown adapter kind {name!r}; known kinds: {', '.join(KINDS)}")
    return KINDS[name]
