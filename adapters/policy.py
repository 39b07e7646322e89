"""What trains, what is counted, and what is decayed: each decided once, here, by module type and role.

Every parameter has a role, from the module that owns it (never from its name):

    adapter     inside an AdapterModule (of any kind); carries the adapter's name
    layer_norm  a parameter of an nn.LayerNorm of the base model
    pooler      a parameter of the base model's pooler
    head        a parameter outside the base BertModel (a task head such as `classifier`)
    base        everything else of the pretrained model: embeddings, attention, feed-forward

Base, layer_norm and adapter roles inside encoder layer i also carry `layer=i` (for top-k training).

What trains (adapter-bert's two lines, Houlsby2019 §2.1): an adapter's own parameters, plus, as its
config says, the base LayerNorms, the head and the pooler; no other adapter. The paper's baselines are
policies too: full fine-tuning, LayerNorm only, top-k layers.
What decays (AdamW): every parameter except LayerNorm parameters (any LayerNorm, an adapter's own too)
and biases, as BERT and adapter-bert exclude them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from adapters.kinds import AdapterModule
from autograd import nn


@dataclass(frozen=True)
class Role:
    kind: str                   # "adapter", "layer_norm", "pooler", "head" or "base"
    adapter: str | None = None  # the adapter's name, for kind "adapter"
    layer: int | None = None    # the encoder layer, inside one


def base_model(model):
    """The BertModel inside `model` (itself, or `.bert` of a head model)."""
    bert = getattr(model, "bert", model)
    if not hasattr(bert, "encoder") or not hasattr(bert, "embeddings"):
        raise TypeError(f"expected a minibert BertModel or a model with a .bert, got {type(model).__name__}")
    return bert


def parameter_roles(model) -> dict:
    """{parameter name: (Role, the module that owns it, the Parameter)} for every parameter of `model`, in
    model order."""
    bert = base_model(model)
    entry = {id(bert): Role("base"), id(getattr(bert, "pooler", None)): Role("pooler")}
    entry.update({id(layer): Role("base", layer=i) for i, layer in enumerate(bert.encoder.layer)})
    roles = {}

    def visit(module, prefix, role):
        role = entry.get(id(module), role)
        if isinstance(module, AdapterModule):
            role = Role("adapter", adapter=module.name, layer=role.layer)
        elif isinstance(module, nn.LayerNorm) and role.kind != "adapter":
            role = replace(role, kind="layer_norm")
        for name, p in module.named_parameters(prefix, recurse=False):
            roles[name] = (role, module, p)
        for name, child in module.named_children():
            visit(child, f"{prefix}.{name}" if prefix else name, role)

    visit(model, "", Role("head") if bert is not model else Role("base"))
    return roles


@dataclass(frozen=True)
class Policy:
    """Which roles train. Build one with `for_adapter`, or directly for the paper's baselines."""

    adapter: str | None = None      # train this adapter's own parameters
    layer_norms: bool = False       # the base model's LayerNorms
    head: bool = False              # the task head
    pooler: bool = False            # the pooler
    layers: frozenset = field(default_factory=frozenset)  # encoder layers trained whole (top-k)
    everything: bool = False        # full fine-tuning: every parameter of the base model and head

    @classmethod
    def for_adapter(cls, name: str, config) -> Policy:
        return cls(adapter=name, layer_norms=config.train_layer_norms, head=config.train_head,
                   pooler=config.train_pooler)

    def trains(self, role: Role) -> bool:
        if role.kind == "adapter":
            return role.adapter == self.adapter
        if self.everything or role.layer in self.layers:
            return True
        return {"layer_norm": self.layer_norms, "head": self.head, "pooler": self.pooler}.get(role.kind, False)


def trainable_names(model, policy: Policy) -> list:
    """The names of the parameters `policy` trains, in model order."""
    return [name for name, (role, _, _) in parameter_roles(model).items() if policy.trains(role)]


def apply_policy(model, policy: Policy) -> list:
    """Freeze every parameter `policy` does not train, unfreeze those it does; returns the trainable names."""
    trainable = set(trainable_names(model, policy))
    for name, p in model.named_parameters():
        p.requires_grad = name in trainable
    return [name for name, _ in model.named_parameters() if name in trainable]


def decays(module, parameter) -> bool:
    """Does AdamW's weight decay apply to `parameter` of `module`? Not for LayerNorms, not for biases."""
    return not isinstance(module, nn.LayerNorm) and parameter is not getattr(module, "bias", None)


def weight_decay_groups(model, weight_decay: float) -> list:
    """AdamW parameter groups of the trainable parameters: decayed, and exempt (`decays`)."""
    decay, no_decay = [], []
    for _, module, p in parameter_roles(model).values():
        if p.requires_grad:
            (decay if decays(module, p) else no_decay).append(p)
    return [g for g in ({"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0})
            if g["params"]]


def count_by_role(model, names=None) -> dict:
    """{role kind: number of parameters} over `names` (default: all parameters of `model`)."""
    counts = {}
    for name, (role, _, p) in parameter_roles(model).items():
        if names is None or name in names:
            counts[role.kind] = counts.get(role.kind, 0) + p.size
    return counts
