"""Inserting, switching, removing and training adapters on a minibert model, and counting their parameters.

Placement (Houlsby2019 §2.1, Fig. 2; adapter-bert modeling.py): in every encoder layer, one adapter in
`attention.output` and one in `output`, each applied after dense + dropout and before the residual add
and LayerNorm:  LN(x + A(Dropout(Dense(sublayer(x))))). Adapter parameters live under the module they
are inserted into: `encoder.layer.{i}.attention.output.adapters.{name}.down.weight`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from adapters.config import AdapterConfig
from adapters.modules import BottleneckAdapter


def base_model(model):
    """The BertModel inside `model` (itself, or `.bert` of a head model)."""
    bert = getattr(model, "bert", model)
    if not hasattr(bert, "encoder") or not hasattr(bert, "embeddings"):
        raise TypeError(f"expected a minibert BertModel or a model with a .bert, got {type(model).__name__}")
    return bert


def adapter_slots(model):
    """Yield (prefix, sublayer kind, slot module) for every place an adapter can go."""
    prefix = "bert." if getattr(model, "bert", None) is not None else ""
    for i, layer in enumerate(base_model(model).encoder.layer):
        yield f"{prefix}encoder.layer.{i}.attention.output", "attention", layer.attention.output
        yield f"{prefix}encoder.layer.{i}.output", "ffn", layer.output


def _registry(model) -> dict:
    if "adapter_configs" not in model.__dict__:
        object.__setattr__(model, "adapter_configs", {})
    return model.adapter_configs


def _config(model, name) -> AdapterConfig:
    configs = _registry(model)
    if name not in configs:
        known = ", ".join(configs) or "none"
        raise KeyError(f"no adapter named {name!r} on this model (adapters: {known})")
    return configs[name]


def _task_state(model) -> dict:
    """{adapter name, or None for the base model: {parameter name: array}}.

    A policy may train base parameters (the original code trains every LayerNorm and the head): each task
    then needs its own values of them, as in the paper, where only the adapters *and* these are per task.
    The values of the task whose adapter is active live in the model's parameters; every other task's
    (and the base model's) wait here. set_active_adapter swaps them.
    """
    if "adapter_task_state" not in model.__dict__:
        object.__setattr__(model, "adapter_task_state", {None: {}})
        object.__setattr__(model, "adapter_task_owner", None)  # whose values are in the parameters now
    return model.adapter_task_state


def _swap_task_state(model, new: str | None):
    """Put task `new`'s values of the shared trained parameters into the model, keeping the outgoing task's."""
    state = _task_state(model)
    owner = model.adapter_task_owner
    if owner == new:
        return
    params = dict(model.named_parameters())
    for k in state.get(owner, {}):  # the outgoing task (or the base model) keeps what it has now
        state[owner][k] = params[k].data.copy()
    incoming = {**state[None], **state.get(new, {})}  # the base values for anything `new` does not own
    for k, v in incoming.items():
        params[k].data = v.copy()
    object.__setattr__(model, "adapter_task_owner", new)


def task_parameters(model, name: str) -> dict:
    """{parameter name: array} of everything adapter `name`'s policy trains, as task `name` sees them
    (its own LayerNorm / head values, also while another adapter is active)."""
    config = _config(model, name)
    state = _task_state(model)
    values = {k: p.data for k, p in model.named_parameters() if policy_trains(k, name, config)}
    if model.adapter_task_owner != name:
        values.update(state.get(name, {}))
    return values


def add_adapter(model, name: str, config="houlsby", seed: int | None = 0, set_active: bool = True) -> AdapterConfig:
    """Insert adapter `name` (an AdapterConfig or a preset name) into every slot its placement names.

    The new adapters have the model's dtype. Returns the config used (a copy of the one given).
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"adapter name must be a Python identifier (it becomes part of parameter names), got {name!r}")
    config = AdapterConfig.from_preset(config) if isinstance(config, str) else config
    if not isinstance(config, AdapterConfig):
        raise TypeError(f"config must be an AdapterConfig or a preset name, got {type(config).__name__}")
    # A copy: the caller may go on to edit or reuse its object, which must not change what this adapter
    # records (save_adapter writes it, and the modules were built from it).
    config = dataclasses.replace(config)
    bert = base_model(model)  # a TypeError for a non-model before anything is attached to it
    if name in _registry(model):
        raise ValueError(f"an adapter named {name!r} already exists; remove_adapter(model, {name!r}) first")
    d, eps = bert.config.hidden_size, bert.config.layer_norm_eps
    m = config.size_for(d)
    rng = np.random.default_rng(seed)
    for _, kind, slot in adapter_slots(model):
        if kind in config.sublayers:
            slot.adapters[name] = BottleneckAdapter(
                d, m, config.non_linearity, config.init, config.init_std, config.parallel, config.layer_norm,
                eps, dtype=bert.dtype, rng=rng)
    _registry(model)[name] = config
    # The task starts from the base model's values of the base parameters its policy trains.
    state = _task_state(model)
    params = dict(model.named_parameters())
    shared = [k for k in params if ".adapters." not in k and policy_trains(k, name, config)]
    for k in shared:
        if k not in state[None]:  # no task trains it yet, so the value in the model is the base model's
            state[None][k] = params[k].data.copy()
    state[name] = {k: state[None][k].copy() for k in shared}
    if set_active:
        set_active_adapter(model, name)
    return config


def set_active_adapter(model, name: str | None):
    """Make `name` the adapter every slot applies (None: the plain base model).

    Frozen base weights never change. The base parameters a policy trains (LayerNorms, head) are per task:
    the outgoing task's values are kept aside and `name`'s (or, for None, the base model's) put in place.
    """
    if name is not None:
        _config(model, name)
    _swap_task_state(model, name)
    for _, _, slot in adapter_slots(model):
        slot.active_adapter = name if name in slot.adapters else None


def active_adapter(model) -> str | None:
    for _, _, slot in adapter_slots(model):
        if slot.active_adapter is not None:
            return slot.active_adapter
    return None


def remove_adapter(model, name: str):
    """Delete adapter `name` from every slot (deactivating it if it was active)."""
    _config(model, name)
    if model.adapter_task_owner == name:
        set_active_adapter(model, None)  # the base model's LayerNorm / head values come back
    for _, _, slot in adapter_slots(model):
        if name in slot.adapters:
            del slot.adapters[name]
        if slot.active_adapter == name:
            slot.active_adapter = None
    del _registry(model)[name]
    del _task_state(model)[name]


def is_layer_norm(param_name: str) -> bool:
    return ".LayerNorm." in param_name or param_name.startswith("LayerNorm.")


def policy_trains(param_name: str, adapter_name: str, config: AdapterConfig) -> bool:
    """Does adapter `adapter_name`'s training policy train this parameter?

    Its own adapter parameters always; the base LayerNorms when config.train_layer_norms; the
    classification head when config.train_head; the pooler when config.train_pooler. Other adapters never.
    """
    if ".adapters." in param_name:
        return f".adapters.{adapter_name}." in param_name
    if is_layer_norm(param_name):
        return config.train_layer_norms
    if param_name.startswith("classifier."):
        return config.train_head
    if ".pooler." in param_name or param_name.startswith("pooler."):
        return config.train_pooler
    return False


def train_adapter(model, name: str) -> list:
    """Activate `name`, freeze every parameter its policy does not train, unfreeze those it does, set train mode.

    Returns the names of the trainable parameters.
    """
    config = _config(model, name)
    set_active_adapter(model, name)
    trainable = []
    for pname, p in model.named_parameters():
        p.requires_grad = policy_trains(pname, name, config)
        if p.requires_grad:
            trainable.append(pname)
    model.train()
    return trainable


def adapter_summary(model, name: str | None = None) -> dict:
    """Parameter accounting for adapter `name` (default: the active one).

    Returns a dict: per-module rows (module, D, M, formula 2MD + D + M (+2D with an inner LayerNorm),
    counted), the adapter total, what the policy adds (LayerNorms 2D each, head), the trainable total,
    the base model's size (the BertModel, without adapters or a task head) and the trainable share of it in
    percent.
    """
    name = name if name is not None else active_adapter(model)
    if name is None:
        raise ValueError("no adapter given and none is active")
    config = _config(model, name)
    rows = []
    for prefix, kind, slot in adapter_slots(model):
        if name in slot.adapters:
            a = slot.adapters[name]
            d, m = a.hidden_size, a.bottleneck_size
            formula = 2 * m * d + d + m + (2 * d if a.layer_norm is not None else 0)
            rows.append({"module": f"{prefix}.adapters.{name}", "sublayer": kind, "D": d, "M": m,
                         "formula": formula, "counted": a.num_parameters()})
    params = dict(model.named_parameters())
    # the pretrained BertModel without adapters; a task head is not part of the base (as check.py counts it)
    base_total = sum(p.size for k, p in base_model(model).named_parameters() if ".adapters." not in k)
    layer_norm = sum(p.size for k, p in params.items() if ".adapters." not in k and is_layer_norm(k)
                     and config.train_layer_norms)
    head = sum(p.size for k, p in params.items() if k.startswith("classifier.") and config.train_head)
    pooler = sum(p.size for k, p in params.items() if ".adapters." not in k and "pooler." in k and config.train_pooler)
    adapter_total = sum(r["counted"] for r in rows)
    trainable = sum(p.size for k, p in params.items() if policy_trains(k, name, config))
    return {
        "adapter": name, "config": config.to_dict(), "modules": rows, "adapter_parameters": adapter_total,
        "layer_norm_parameters": layer_norm, "head_parameters": head, "pooler_parameters": pooler,
        "trainable_parameters": trainable, "base_parameters": base_total,
        "percent_of_base": 100.0 * trainable / base_total,
    }
