"""`AdapterSet`: the adapters of one model, and the functions that add, switch, remove and train them.

Several named adapters (tasks) live on one frozen base model. The AdapterSet, kept on the model as
`model.adapter_set`, owns all adapter state:

- each adapter's config and, in every slot its kind names, its module (registered as
  `<slot>.adapters.<name>`, so parameters are named `...attention.output.adapters.<name>.down.weight`);
- which adapter is active: the slots' hooks point at its modules; None leaves every hook empty;
- each task's own copies of the base modules its policy trains (LayerNorms, head, pooler). In the paper
  these are part of what a task learns, so two tasks must not share them. Activating a task puts its
  copies into the model *by reference* (`set_submodule`), and None puts the base model's own modules back,
  so the base model comes back bit for bit and no values are ever copied between tasks.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from adapters.configs import ConfigError, KindConfig, preset_config
from adapters.kinds import kind_of
from adapters.policy import Policy, apply_policy, base_model, count_by_role, parameter_roles
from autograd import nn
from autograd.nn import StateDictError, check_state


class AdapterSet:
    """The adapters on one model. Get it with `AdapterSet.of(model)`; the functions below wrap it."""

    def __init__(self, model):
        self.model = model
        self.configs = {}        # adapter name -> its config (a copy, never the caller's object)
        self.active = None       # the adapter the hooks apply, or None
        self._slots = []         # (encoder layer index, slot module) for every slot holding an `adapters` dict
        self.layers = None       # the encoder layers whose slots apply the active adapter (None: all)
        self._task_modules = {}  # adapter name -> {module path: the task's own copy of that base module}
        self._base_modules = {}  # module path -> the base model's module there, for paths some task owns

    @classmethod
    def of(cls, model) -> AdapterSet:
        """The model's AdapterSet, created empty the first time."""
        found = getattr(model, "adapter_set", None)
        if found is None:
            base_model(model)  # a TypeError for a non-model, before anything is attached to it
            model.adapter_set = found = cls(model)
        return found

    # ---- adding and removing ------------------------------------------------------------------------------
    def config(self, name: str):
        if name not in self.configs:
            known = ", ".join(self.configs) or "none"
            raise KeyError(f"no adapter named {name!r} on this model (adapters: {known})")
        return self.configs[name]

    def add(self, name: str, config, seed: int | None = 0, check_fit: bool = True):
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"adapter name must be a Python identifier (it becomes part of parameter names), "
                             f"got {name!r}")
        config = preset_config(config) if isinstance(config, str) else config
        if not isinstance(config, KindConfig):
            raise TypeError(f"config must be an AdapterConfig or a preset name (or another kind's config, a "
                            f"KindConfig), got {type(config).__name__}")
        kind = kind_of(config)
        # A copy: the caller may go on to edit or reuse its object, which must not change this adapter.
        config = dataclasses.replace(config)
        if name in self.configs:
            raise ValueError(f"an adapter named {name!r} already exists; remove_adapter(model, {name!r}) first")
        bert = base_model(self.model)
        places = list(kind.slots(bert, config))
        problems = kind.fit_problems(config, bert.config, places) if check_fit else []
        if problems:  # before building: a refused adapter leaves no modules behind in some slots
            raise ConfigError(f"{type(config).__name__} does not fit this model: " + "; ".join(problems))
        rng = np.random.default_rng(seed)
        for place in places:
            slot = place[2]
            if "adapters" not in dict(slot.named_children()):
                slot.adapters = nn.ModuleDict()
                self._slots.append((_layer_of(bert, slot), slot))
            slot.adapters[name] = kind.build(name, config, bert.config, bert.dtype, rng, place)
        self.configs[name] = config
        # The task's own copies of the base modules its policy trains, made from the base model's.
        policy = Policy.for_adapter(name, config)
        owned = {}
        for pname, (role, module, _) in parameter_roles(self.model).items():
            path = pname.rpartition(".")[0]
            if role.kind != "adapter" and policy.trains(role) and path not in owned:
                # No task has owned `path` before, or its base module was kept: either way this is the base's.
                owned[path] = copy.deepcopy(self._base_modules.setdefault(path, module))
        self._task_modules[name] = owned
        return config

    def remove(self, name: str):
        self.config(name)
        if self.active == name:
            self.activate(None)  # the base model's LayerNorm / head modules come back
        for _, slot in self._slots:
            if name in slot.adapters:
                del slot.adapters[name]
        del self.configs[name], self._task_modules[name]
        still_owned = {path for modules in self._task_modules.values() for path in modules}
        self._base_modules = {p: m for p, m in self._base_modules.items() if p in still_owned}

    # ---- switching ------------------------------------------------------------------------------------------
    def activate(self, name: str | None, layers=None):
        """Point the slots' hooks at adapter `name`'s modules (None: no hook) and put task `name`'s own base
        modules in place (None: the base model's).

        layers: the encoder layers whose adapters apply (default: all). Leaving a span out removes those
        adapters without retraining, Houlsby2019 §3.6's ablation (Fig. 6); the task's LayerNorms and head
        stay in place.
        """
        if name is not None:
            self.config(name)
        n_layers = base_model(self.model).config.num_hidden_layers
        if layers is not None:
            layers = frozenset(int(i) for i in layers)
            bad = sorted(i for i in layers if not 0 <= i < n_layers)
            if bad:
                raise ValueError(f"layers {bad} do not exist; the model has layers 0 to {n_layers - 1}")
        own = self._task_modules.get(name, {})
        for path, base in self._base_modules.items():
            self.model.set_submodule(path, own.get(path, base))
        for layer, slot in self._slots:
            applies = name in slot.adapters and (layers is None or layer in layers)
            slot.hook = slot.adapters[name].forward if applies else None
        self.active, self.layers = name, layers

    # ---- what one task owns -------------------------------------------------------------------------------
    def task_parameters(self, name: str) -> dict:
        """{parameter name: Parameter} of everything adapter `name`'s policy trains, as task `name` sees them
        (its own LayerNorm / head modules, also while another adapter is active)."""
        policy = Policy.for_adapter(name, self.config(name))
        own = self._task_modules[name]
        found = {}
        for pname, (role, _, p) in parameter_roles(self.model).items():
            if policy.trains(role):
                path, _, leaf = pname.rpartition(".")
                found[pname] = dict(own[path].named_parameters(recurse=False))[leaf] if path in own else p
        return found

    def train(self, name: str) -> list:
        self.activate(name)
        trainable = apply_policy(self.model, Policy.for_adapter(name, self.config(name)))
        self.model.train()
        return trainable

    def summary(self, name: str) -> dict:
        config = self.config(name)
        bert = base_model(self.model)
        prefix = "" if bert is self.model else "bert."
        rows = []
        for path, sublayer, slot in kind_of(config).slots(bert, config):
            module = slot.adapters[name]
            rows.append({"module": f"{prefix}{path}.adapters.{name}", "sublayer": sublayer, **module.shape_info(),
                         "formula": module.num_formula_parameters(), "counted": module.num_parameters()})
        trained = set(self.task_parameters(name))
        counts = count_by_role(self.model, trained)
        base_total = sum(p.size for n, p in bert.named_parameters() if n in bert.checkpoint_names)
        trainable = sum(counts.values())
        return {
            "adapter": name, "config": config.to_dict(), "modules": rows,
            "adapter_parameters": counts.get("adapter", 0), "layer_norm_parameters": counts.get("layer_norm", 0),
            "head_parameters": counts.get("head", 0), "pooler_parameters": counts.get("pooler", 0),
            "trainable_parameters": trainable, "base_parameters": base_total,
            "percent_of_base": 100.0 * trainable / base_total,
        }


def _layer_of(bert, slot) -> int | None:
    """The index of the encoder layer that contains `slot` (None outside the encoder)."""
    for i, layer in enumerate(bert.encoder.layer):
        if any(module is slot for _, module in layer.named_modules()):
            return i
    return None


# ---- the functional API -----------------------------------------------------------------------------------
def add_adapter(model, name: str, config="houlsby", seed: int | None = 0, set_active: bool = True):
    """Insert adapter `name` (an AdapterConfig or a preset name) into every slot its placement names.

    The new adapters have the model's dtype; `seed` draws their init. Returns the config used (a copy).
    """
    adapter_set = AdapterSet.of(model)
    config = adapter_set.add(name, config, seed)
    if set_active:
        adapter_set.activate(name)
    return config


def set_active_adapter(model, name: str | None, layers=None):
    """Make `name` the adapter the model applies (None: the plain base model, bit for bit).

    Frozen base weights never change; the base modules a policy trains (LayerNorms, head) are per task.
    layers: apply the adapter only in these encoder layers (default: all), e.g. `range(0, 3)` to remove
    the adapters of layers 3 and up without retraining (Houlsby2019 §3.6, Fig. 6).
    """
    AdapterSet.of(model).activate(name, layers)


def active_adapter(model) -> str | None:
    return AdapterSet.of(model).active


def remove_adapter(model, name: str):
    """Delete adapter `name` from every slot (deactivating it first if it was active)."""
    AdapterSet.of(model).remove(name)


def train_adapter(model, name: str) -> list:
    """Activate `name`, freeze every parameter its policy does not train, unfreeze those it does (see
    adapters.policy), set train mode. Returns the names of the trainable parameters."""
    return AdapterSet.of(model).train(name)


def adapter_summary(model, name: str | None = None) -> dict:
    """Parameter accounting for adapter `name` (default: the active one).

    Returns a dict: per-module rows (module, D, M, formula 2MD + D + M (+2D with an inner LayerNorm),
    counted), the adapter total, what the policy adds (LayerNorms 2D each, head, pooler), the trainable
    total, the base model's size (the pretrained BertModel, without adapters or a task head) and the
    trainable share of it in percent.
    """
    adapter_set = AdapterSet.of(model)
    name = name if name is not None else adapter_set.active
    if name is None:
        raise ValueError("no adapter given and none is active")
    return adapter_set.summary(name)


# ---- copying tensors into an adapter (what every loader shares) ------------------------------------------------
def refuse_other_config(model, name: str, config, source):
    """Loading onto an existing adapter `name` needs the same config: same shapes but another function
    (non-linearity, placement, parallel, ...) would not restore the saved adapter, only look like it.
    A size may be given in more than one way (a kind's `size_fields`); only the sizes themselves must agree."""
    bert_config = base_model(model).config
    existing = AdapterSet.of(model).config(name)
    kind = kind_of(config)
    if kind_of(existing) is not kind:
        raise ValueError(f"adapter {name!r} already on the model is of kind {kind_of(existing).name!r}, {source} of "
                         f"kind {kind.name!r}; remove_adapter(model, {name!r}) first or load under another name")
    have = {**existing.to_dict(), **kind.sizes(existing, bert_config)}
    want = {**config.to_dict(), **kind.sizes(config, bert_config)}
    differ = [f"{k}: model {have[k]!r} vs file {want[k]!r}" for k in want
              if k not in kind.size_fields and have.get(k) != want[k]]
    if differ:
        raise ValueError(f"adapter {name!r} already on the model has another config than {source} "
                         f"({', '.join(differ)}); remove_adapter(model, {name!r}) first or load under another name")


def copy_into_adapter(model, name: str, config, tensors: dict, what: str, adapter_only: bool = False,
                      set_active: bool = True):
    """Add adapter `name` with `config` (or check the one there has it), then copy `tensors` into task `name`.

    Everything is checked before anything is copied (`check_state`): required names (every parameter the
    adapter's policy trains; with adapter_only, the adapter's own), unknown names, shapes, dtypes, NaN / Inf.
    On a problem nothing changes: an adapter added here is removed again.
    """
    adapter_set = AdapterSet.of(model)
    added = name not in adapter_set.configs
    if added:
        # Saved tensors load at the shapes they have: fit_problems judges the sizes of new adapters (files written
        # before it, such as tests/fixtures/adapter_written_by_fb55466, hold a 64-wide "bottleneck" on width 12).
        adapter_set.add(name, config, check_fit=False)
    else:
        refuse_other_config(model, name, config, what)
    own = adapter_set.task_parameters(name)
    roles = parameter_roles(model)
    required = [k for k in own if roles[k][0].kind == "adapter"] if adapter_only else own
    try:
        check_state({k: p.shape for k, p in own.items()}, tensors, what=what, required=required)
    except StateDictError:
        if added:
            adapter_set.remove(name)
        raise
    for k, v in tensors.items():
        own[k].data = np.array(v, dtype=own[k].dtype)
    if set_active:
        adapter_set.activate(name)
