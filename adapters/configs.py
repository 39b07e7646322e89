"""What every adapter kind's config shares: what trains besides the kind, typed fields, presets by name.

Each kind's config is a dataclass that inherits `KindConfig`, so it takes the three fields of the training
policy (adapter-bert's "what trains", Houlsby2019 §2.1) and the same checks:

    train_layer_norms   the base model's LayerNorms train too (the original code: yes)
    train_head          the classification head trains (when the model has one)
    train_pooler        the pooler trains (adapter-bert keeps BERT's pooler frozen)

Every field is checked against its annotation, from Python and from JSON alike: `"parallel": "false"` is
refused, not read as true. Presets of every kind live in one table, `PRESETS`, and `preset_config(name)`
finds one whatever its kind.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from dataclasses import dataclass

import numpy as np


class ConfigError(ValueError):
    """A config field of the wrong type or value; the message names the config class and the field."""


def _allowed(annotation) -> tuple:
    """The Python types (and literal values) an annotation like `int | None` or `bool | str` admits."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return tuple(t for a in typing.get_args(annotation) for t in _allowed(a))
    if origin is typing.Literal:
        return tuple(("literal", v) for v in typing.get_args(annotation))
    return (annotation,)


def check_field(owner: str, name: str, value, annotation):
    """`value` converted to what `annotation` admits (a NumPy integer becomes an int, an int a float), or a
    ConfigError. Convention: a bool is never taken for a number, nor a number for a bool."""
    allowed = _allowed(annotation)
    for t in allowed:
        if isinstance(t, tuple) and t[0] == "literal":
            if value == t[1] and type(value) is type(t[1]):
                return value
        elif t is type(None) or t is None:
            if value is None:
                return None
        elif t is bool:
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
        elif t is int:
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                return int(value)
        elif t is float:
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                return float(value)
        elif isinstance(t, type) and isinstance(value, t):
            return value
    names = [repr(t[1]) if isinstance(t, tuple) else ("None" if t in (None, type(None)) else t.__name__)
             for t in allowed]
    raise ConfigError(f"{owner}.{name} must be {' or '.join(names)}, got {value!r} ({type(value).__name__})")


@dataclass
class KindConfig:
    """The fields every kind's config takes: what trains besides the kind's own parameters."""

    train_layer_norms: bool = True          # training policy: the base model's LayerNorms train too
    train_head: bool = True                 # the classification head trains (when the model has one)
    train_pooler: bool = False              # the pooler trains (adapter-bert keeps it frozen)

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, check_field(type(self).__name__, f.name, getattr(self, f.name), hints[f.name]))
        problems = self.problems()
        if problems:
            raise ConfigError(f"invalid {type(self).__name__}: " + "; ".join(problems))

    def problems(self) -> list:
        """What is wrong with the field values beyond their types (each kind adds its own)."""
        return []

    def to_dict(self) -> dict:
        """The fields, the kind's own first and the shared policy fields last (the order files and reports show)."""
        d = dataclasses.asdict(self)
        shared = [f.name for f in dataclasses.fields(KindConfig)]
        return {**{k: v for k, v in d.items() if k not in shared}, **{k: d[k] for k in shared}}

    @classmethod
    def from_dict(cls, d: dict):
        if not isinstance(d, dict):
            raise ConfigError(f"a {cls.__name__} is read from a JSON object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field(s): {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_preset(cls, name: str, **overrides):
        """A named preset of this config's kind, with any field overridden."""
        config = preset_config(name, **overrides)
        if not isinstance(config, cls):
            raise ConfigError(f"preset {name!r} is a {type(config).__name__}, not a {cls.__name__}")
        return config


def finite(value, low=0.0, strict=False) -> bool:
    """Is `value` a finite number >= low (> low with strict)?"""
    return isinstance(value, numbers.Real) and math.isfinite(value) and (value > low if strict else value >= low)


# ---- presets of every kind, found by one lookup -------------------------------------------------------------
PRESETS: dict = {}  # name -> {"doc": str, "fields": dict, "config_class": the kind's config class}


def register_presets(config_class, presets: dict):
    """Add a kind's presets ({name: {"doc", "fields"}}) to the one table; a name used twice is an error."""
    for name, spec in presets.items():
        if name in PRESETS:
            raise ValueError(f"preset {name!r} is defined twice")
        PRESETS[name] = {**spec, "config_class": config_class}


def preset_config(name: str, **overrides):
    """The config of preset `name` (of whichever kind), with any field overridden."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ConfigError(f"unknown adapter preset {name!r}; choose one of {', '.join(PRESETS)}")
    spec = PRESETS[name]
    cls = spec["config_class"]
    fields = cls.preset_fields(spec["fields"], overrides) if hasattr(cls, "preset_fields") else \
        {**spec["fields"], **overrides}
    return cls.from_dict(fields)  # an unknown override is a ConfigError naming it
