"""Which Linears a method inside Linears adapts: PEFT's `target_modules` rule, for every kind that uses it.

Module names are relative to the BertModel ("encoder.layer.3.attention.self.query", "pooler.dense").
"""

from __future__ import annotations

import re

from autograd import nn

# The Linears of one BERT encoder layer, by their names inside it (Devlin2019's architecture, Hugging Face's names),
# and the pooler's: what expected_modules counts by arithmetic.
LAYER_LINEARS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                 "intermediate.dense", "output.dense")


def matches(target_modules, name: str) -> bool:
    """Does `target_modules` name the module called `name`? As PEFT decides: a string is a regular expression the
    whole name must match; a list matches a name equal to an entry or ending in "." + an entry."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return any(name == t or name.endswith("." + t) for t in target_modules)


def linears(bert):
    """(path, its last name part, the Linear) for every Linear of the base model, not those inside adapters."""
    for path, module in bert.named_modules():
        if path and isinstance(module, nn.Linear) and ".adapters." not in f".{path}.":
            yield path, path.rsplit(".", 1)[-1], module


def count_matches(target_modules, num_layers: int, pooler: bool = True) -> int:
    """How many of BERT's Linears `target_modules` names, by their names alone."""
    names = [f"encoder.layer.{i}.{n}" for i in range(num_layers) for n in LAYER_LINEARS]
    return sum(matches(target_modules, n) for n in names + (["pooler.dense"] if pooler else []))
