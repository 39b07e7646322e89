"""The cross-check exchange format: one safetensors file, a *case*, that any framework can write.

A case holds everything needed to judge one implementation of BERT with a Houlsby adapter against this project:
its configs, every parameter, one batch of inputs, the hidden states it computed (eval mode) and the gradients
of `loss = sum(last_hidden_state * cotangent)`. docs/crosscheck.md is the contract; in short:

    __metadata__  format="minibert-crosscheck", version="1", bert_config (config.json as JSON),
                  adapter_config (JSON: the fields of a kind's config with its "kind" (default: the
                  bottleneck kind, adapters.compat), or {"preset": "houlsby", ...overrides}; absent for a plain BERT),
                  trainable (JSON list of names), optional adapter_name, optional producer
    param/<name>            every parameter; Hugging Face BertModel names (a `bert.` prefix is accepted);
                            adapter tensors under our names or AdapterHub's (docs/crosscheck.md lists both)
    input/input_ids, input/attention_mask, optional input/token_type_ids       int64 (B, T)
    input/cotangent         (B, T, D), the same float dtype as the parameters
    output/hidden_states/<i>   i = 0 (embeddings) .. L, (B, T, D)
    grad/<name>             for every parameter the implementation gave a gradient
    init/<name>             optional: the adapter parameters as initialised, before any training
    merged/<name>           optional: base-model parameters as the implementation's merge left them (a method
                            that folds into the weights: LoRA, (IA)^3); one not given is taken as left unchanged

The dtype of the parameters (float64 or float32) says which row of the tolerance table judges the case.
Reading checks everything a comparison needs and raises `CaseError` naming the file and the tensor or field.
Names are normalised here (no `bert.` prefix, our adapter leaf names), so nothing after this module sees
another implementation's spelling.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adapters import kind_of, preset_config
from adapters.compat import DEFAULT_KIND
from adapters.kinds import kind_named
from adapters.names import adapter_key, adapter_parameter_name
from minibert import BertConfig

FORMAT = "minibert-crosscheck"
VERSION = "1"
FLOATS = ("float64", "float32")


class CaseError(ValueError):
    """A case that cannot be judged (missing tensor, wrong shape, unknown name, config that does not parse).
    The message names the case and what is wrong; `minibert crosscheck` exits 2 with it."""


@dataclass
class Case:
    """One cross-check case, names already normalised (see the module doc)."""

    bert_config: dict
    adapter_config: dict | None
    trainable: list
    params: dict
    input_ids: np.ndarray
    attention_mask: np.ndarray
    cotangent: np.ndarray
    hidden_states: list
    grads: dict = field(default_factory=dict)
    init: dict = field(default_factory=dict)
    merged: dict = field(default_factory=dict)
    token_type_ids: np.ndarray | None = None
    adapter_name: str | None = None
    producer: str = ""
    source: str = "<memory>"

    @property
    def dtype(self):
        return next(iter(self.params.values())).dtype

    def tensors(self) -> dict:
        """The tensors as they go into the file."""
        out = {f"param/{k}": v for k, v in self.params.items()}
        out.update({"input/input_ids": self.input_ids, "input/attention_mask": self.attention_mask,
                    "input/cotangent": self.cotangent})
        if self.token_type_ids is not None:
            out["input/token_type_ids"] = self.token_type_ids
        out.update({f"output/hidden_states/{i}": h for i, h in enumerate(self.hidden_states)})
        out.update({f"grad/{k}": v for k, v in self.grads.items()})
        out.update({f"init/{k}": v for k, v in self.init.items()})
        out.update({f"merged/{k}": v for k, v in self.merged.items()})
        return {k: np.ascontiguousarray(v) for k, v in out.items()}

    def metadata(self) -> dict:
        meta = {"format": FORMAT, "version": VERSION, "bert_config": json.dumps(self.bert_config),
                "trainable": json.dumps(list(self.trainable))}
        if self.adapter_config is not None:
            meta["adapter_config"] = json.dumps(self.adapter_config)
        if self.adapter_name:
            meta["adapter_name"] = self.adapter_name
        if self.producer:
            meta["producer"] = self.producer
        return meta

    def save(self, path, base_by_digest: bool = False) -> Path:
        """Write the case. base_by_digest: leave out the base tensors that do not train and name them by their
        digest instead (minibert_adapters.crosscheck.base): a case of a real model with trained adapters is then a
        few MB; the judge finds the base in the embedded model or a --base folder."""
        from safetensors.numpy import save_file

        from minibert_adapters.crosscheck.base import KEY, base_metadata, frozen_base_names

        path = Path(path)
        tensors, meta = self.tensors(), self.metadata()
        if base_by_digest:
            names = frozen_base_names(self.params, self.trainable, lambda k: adapter_key(k) is not None)
            meta[KEY] = base_metadata(self.params, names)
            for name in names:
                tensors.pop(f"param/{name}")
                tensors.pop(f"grad/{name}", None)
        save_file(tensors, str(path), metadata=meta)
        return path


# ---- reading ---------------------------------------------------------------------------------------------------
def read_case(path, bases=None) -> Case:
    """Read and check a case file. Raises CaseError (a ValueError) naming the file and the problem. bases: the
    model folders where a base named by digest is looked for, before the embedded MiniLM."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CaseError(f"{path}: no such case file")
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, ValueError, OSError) as e:
        raise CaseError(f"{path}: not a readable safetensors file: {e}") from None
    return case_from_tensors(tensors, meta, source=str(path), bases=bases)


def _json_field(meta: dict, key: str, where: str, required: bool = True):
    if key not in meta:
        if required:
            raise CaseError(f"{where}: metadata has no {key!r}")
        return None
    try:
        return json.loads(meta[key])
    except (TypeError, json.JSONDecodeError) as e:
        raise CaseError(f"{where}: metadata {key!r} is not valid JSON: {e}") from None


def parse_bert_config(d, where: str) -> BertConfig:
    if not isinstance(d, dict):
        raise CaseError(f"{where}: metadata 'bert_config' must be a JSON object (config.json)")
    try:
        return BertConfig.from_dict(d)
    except (TypeError, ValueError) as e:
        raise CaseError(f"{where}: metadata 'bert_config' does not parse: {e}") from None




def adapter_config_dict(config) -> dict:
    """A config as a case's adapter_config: its kind and its fields."""
    return {"kind": kind_of(config).name, **config.to_dict()}


def parse_adapter_config(d, where: str, bert_config=None):
    """The config of the case's adapter_config: {"kind": name, ...fields}, {"preset": name, ...overrides}, or the
    adapter_config.json PEFT wrote (with its "peft_type"), read as load_adapter reads a PEFT folder."""
    if not isinstance(d, dict):
        raise CaseError(f"{where}: metadata 'adapter_config' must be a JSON object")
    try:
        if "peft_type" in d:
            from adapters.peft import peft_kind

            return peft_kind(d["peft_type"]).config_from_peft(d, bert_config)
        fields = dict(d)
        if "preset" in fields:
            config = preset_config(fields.pop("preset"), **{k: v for k, v in fields.items() if k != "kind"})
            if fields.get("kind", kind_of(config).name) != kind_of(config).name:
                raise ValueError(f"kind {fields['kind']!r} but preset {d['preset']!r} is of kind "
                                 f"{kind_of(config).name!r}")
            return config
        return kind_named(fields.pop("kind", DEFAULT_KIND)).config_class.from_dict(fields)
    except (TypeError, ValueError) as e:
        raise CaseError(f"{where}: metadata 'adapter_config' does not parse: {e}") from None


def canonical_name(name: str):
    """(our parameter name, adapter name or None). Strips `bert.`, turns AdapterHub's adapter leaves into ours."""
    parsed = adapter_key(name)
    if parsed is not None:
        slot, adapter, leaf = parsed
        return adapter_parameter_name(slot, adapter, leaf), adapter, leaf
    return name.removeprefix("bert."), None, None


def case_from_tensors(tensors: dict, meta: dict, source: str = "<memory>", bases=None) -> Case:
    """Build a checked Case from a file's tensors and metadata (what read_case reads); a base named by digest
    is filled in from `bases` (minibert_adapters.crosscheck.base)."""
    where = source
    if meta.get("format") != FORMAT:
        raise CaseError(f"{where}: metadata 'format' is {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise CaseError(f"{where}: metadata 'version' is {meta.get('version')!r}; this reader knows {VERSION!r}")
    bert_dict = _json_field(meta, "bert_config", where)
    bert = parse_bert_config(bert_dict, where)
    adapter_dict = _json_field(meta, "adapter_config", where, required=False)
    known_leaves = None  # without a claimed config, adapter tensors are refused below
    if adapter_dict is not None:
        claimed = parse_adapter_config(adapter_dict, where, bert)
        kind = kind_of(claimed)
        known_leaves = set(kind.leaves(claimed)) | set(kind.foreign_leaves.values())
    trainable = _json_field(meta, "trainable", where)
    if not isinstance(trainable, list) or not all(isinstance(n, str) for n in trainable):
        raise CaseError(f"{where}: metadata 'trainable' must be a JSON list of parameter names")

    groups = {"param": {}, "grad": {}, "init": {}, "merged": {}, "input": {}, "hidden": {}}
    adapter_names = set()
    for key, value in tensors.items():
        kind, _, name = key.partition("/")
        if kind in ("param", "grad", "init", "merged") and name:
            ours, adapter, leaf = canonical_name(name)
            if adapter is not None:
                adapter_names.add(adapter)
                if known_leaves is not None and leaf not in known_leaves:
                    raise CaseError(f"{where}: tensor {key!r}: unknown adapter parameter {leaf!r} "
                                    f"(known: {', '.join(sorted(known_leaves))})")
            if ours in groups[kind]:
                raise CaseError(f"{where}: tensor {key!r} names the same parameter as another tensor ({ours})")
            groups[kind][ours] = value
        elif kind == "input" and name in ("input_ids", "attention_mask", "token_type_ids", "cotangent"):
            groups["input"][name] = value
        elif kind == "output" and re.fullmatch(r"hidden_states/\d+", name):
            groups["hidden"][int(name.split("/")[1])] = value
        else:
            raise CaseError(f"{where}: unknown tensor name {key!r} (expected param/, grad/, init/, merged/, "
                            "input/input_ids, "
                            "input/attention_mask, input/token_type_ids, input/cotangent, output/hidden_states/<i>)")

    params, inputs = groups["param"], groups["input"]
    if "base" in meta:
        from minibert_adapters.crosscheck.base import resolve_base

        field = _json_field(meta, "base", where)
        dtypes = {str(v.dtype) for v in params.values()} or {"float64"}
        try:
            base = resolve_base(field, next(iter(sorted(dtypes))), bases, where)
        except ValueError as e:
            raise CaseError(str(e)) from None
        both = sorted(set(base) & set(params))
        if both:
            raise CaseError(f"{where}: param/ tensors the metadata 'base' also names: {both[:5]}")
        params.update(base)
    if not params:
        raise CaseError(f"{where}: no param/ tensors")
    dtypes = {str(v.dtype) for v in params.values()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in FLOATS:
        raise CaseError(f"{where}: param/ tensors must all be float64 or all float32, found {sorted(dtypes)}")
    dtype = next(iter(dtypes))

    adapter_name = meta.get("adapter_name")
    if len(adapter_names) > 1:
        raise CaseError(f"{where}: tensors of more than one adapter ({sorted(adapter_names)}); a case holds one")
    if adapter_names:
        found = next(iter(adapter_names))
        if adapter_name and adapter_name != found:
            raise CaseError(f"{where}: metadata adapter_name is {adapter_name!r} but the tensors name {found!r}")
        adapter_name = found
        if adapter_dict is None:
            raise CaseError(f"{where}: adapter tensors ({found!r}) but no 'adapter_config' in the metadata")
    elif adapter_dict is not None:
        adapter_name = adapter_name or "adapter"

    for name in ("input_ids", "attention_mask", "cotangent"):
        if name not in inputs:
            raise CaseError(f"{where}: missing tensor 'input/{name}'")
    ids = inputs["input_ids"]
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise CaseError(f"{where}: 'input/input_ids' must be integers of shape (batch, tokens), got "
                        f"{ids.dtype} {ids.shape}")
    B, T = ids.shape
    for name in ("attention_mask", "token_type_ids"):
        v = inputs.get(name)
        if v is not None and (v.shape != (B, T) or not np.issubdtype(v.dtype, np.integer)):
            raise CaseError(f"{where}: 'input/{name}' must be integers of shape {(B, T)}, got {v.dtype} {v.shape}")
    shape = (B, T, bert.hidden_size)
    for label, v in [("input/cotangent", inputs["cotangent"])] + [
            (f"output/hidden_states/{i}", h) for i, h in sorted(groups["hidden"].items())]:
        if v.shape != shape or str(v.dtype) != dtype:
            raise CaseError(f"{where}: '{label}' must be {dtype} of shape {shape}, got {v.dtype} {v.shape}")
    L = bert.num_hidden_layers
    hidden = groups["hidden"]
    missing = [i for i in range(L + 1) if i not in hidden]
    if missing or len(hidden) != L + 1:
        extra = sorted(set(hidden) - set(range(L + 1)))
        raise CaseError(f"{where}: output/hidden_states must be 0..{L} (num_hidden_layers {L}); "
                        + (f"missing {missing}" if missing else f"unexpected {extra}"))

    not_adapter = [n for n in groups["init"] if adapter_key(n) is None]
    if not_adapter:
        raise CaseError(f"{where}: init/ tensors are for adapter parameters only, not {not_adapter[:5]}")
    adapter_merged = [n for n in groups["merged"] if adapter_key(n) is not None]
    if adapter_merged:
        raise CaseError(f"{where}: merged/ tensors are base-model parameters (the Linears merged into), not adapter "
                        f"parameters: {adapter_merged[:5]}")
    if groups["merged"] and adapter_dict is None:
        raise CaseError(f"{where}: merged/ tensors but no 'adapter_config' to say what was merged")
    for kind in ("grad", "init", "merged"):
        for name, v in groups[kind].items():
            if name not in params:
                raise CaseError(f"{where}: tensor '{kind}/{name}' has no param/{name}")
            if v.shape != params[name].shape:
                raise CaseError(f"{where}: '{kind}/{name}' has shape {v.shape}, its parameter {params[name].shape}")
    if not np.isfinite(inputs["cotangent"]).all():
        raise CaseError(f"{where}: 'input/cotangent' is not finite")
    real = np.asarray(inputs["attention_mask"]).astype(bool)
    for i, h in sorted(groups["hidden"].items()):  # padded positions are never compared: anything may be there
        if not np.isfinite(h[real]).all():
            raise CaseError(f"{where}: 'output/hidden_states/{i}' is not finite at a real token")
    if not np.asarray(inputs["attention_mask"]).any(axis=1).all():
        raise CaseError(f"{where}: 'input/attention_mask' has a row with no real token (all 0)")
    for group in ("param", "grad", "init", "merged"):
        for name, v in groups[group].items():
            if not np.issubdtype(v.dtype, np.floating) or not np.isfinite(v).all():
                raise CaseError(f"{where}: tensor '{group}/{name}' is not finite floating point")
    trainable = [canonical_name(n)[0] for n in trainable]
    unknown = [n for n in trainable if n not in params]
    if unknown:
        raise CaseError(f"{where}: 'trainable' names parameters the case does not have: {unknown[:5]}")
    return Case(bert_config=bert_dict, adapter_config=adapter_dict, trainable=trainable, params=params,
                input_ids=ids.astype(np.int64), attention_mask=inputs["attention_mask"].astype(np.int64),
                cotangent=inputs["cotangent"], hidden_states=[hidden[i] for i in range(L + 1)],
                grads=groups["grad"], init=groups["init"], merged=groups["merged"],
                token_type_ids=None if "token_type_ids" not in inputs else inputs["token_type_ids"].astype(np.int64),
                adapter_name=adapter_name, producer=meta.get("producer", ""), source=source)


# ---- writing a case from this project's own model -------------------------------------------------------------
def padding_zeroed_cotangent(attention_mask, hidden_size: int, dtype, seed: int = 0) -> np.ndarray:
    """A random cotangent (B, T, D), zero at padding positions.

    Convention: zero at padding, so the gradients do not depend on what an implementation computes for padded
    positions (nothing reads them); every writer in tools/ does the same.
    """
    mask = np.asarray(attention_mask)
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(mask.shape + (hidden_size,)) * mask[:, :, None]).astype(dtype)


def case_from_model(model, input_ids, attention_mask, token_type_ids=None, cotangent=None, init=None,
                    producer: str = "minibert-adapters", seed: int = 0, merged=None) -> Case:
    """The case of a model of this project (a BertModel or a model with a `.bert`), as any writer would make it.

    Runs in eval mode with the model's dtype; gradients of sum(last_hidden_state * cotangent) for every parameter
    with requires_grad (what the model trains is its `trainable`). Only the active adapter's parameters go in.
    Convention: a Parameter shared by several modules goes in under each of its names (expanded, not refused).
    init: {parameter name: array} of the adapter at init, if the caller kept it.
    merged: {base parameter name: array} as a merge left them (e.g. after `adapters.merge_adapter`), if any.
    """
    from adapters.policy import base_model, parameter_roles
    from autograd import Tensor

    bert = base_model(model)
    adapter_set = getattr(model, "adapter_set", None)
    active = adapter_set.active if adapter_set is not None else None
    roles = parameter_roles(bert)
    keep = [k for k, (role, _, _) in roles.items() if role.kind != "adapter" or role.adapter == active]
    # every name of a Parameter, even one shared by several modules: a shared module is written out under each of
    # its places, with its gradient (the sum over them) under each, and the judge names it tied-weights
    params = {k: p for k, (_, _, p) in roles.items()}
    training = bert.training
    bert.eval()
    if cotangent is None:
        cotangent = padding_zeroed_cotangent(attention_mask, bert.config.hidden_size, bert.dtype, seed)
    for p in params.values():
        p.grad = None
    try:
        out = bert(input_ids, attention_mask, token_type_ids, output_hidden_states=True)
        (out.last_hidden_state * Tensor(np.asarray(cotangent, dtype=bert.dtype))).sum().backward()
    finally:
        bert.train(training)
    return Case(bert_config=bert.config.to_dict(),
                adapter_config=adapter_config_dict(adapter_set.configs[active]) if active else None,
                trainable=[k for k in keep if params[k].requires_grad],
                params={k: params[k].data.copy() for k in keep},
                input_ids=np.asarray(input_ids, dtype=np.int64), attention_mask=np.asarray(attention_mask, np.int64),
                token_type_ids=None if token_type_ids is None else np.asarray(token_type_ids, np.int64),
                cotangent=np.asarray(cotangent, dtype=bert.dtype),
                hidden_states=[h.data.copy() for h in out.hidden_states],
                grads={k: params[k].grad.copy() for k in keep if params[k].grad is not None},
                init={k: np.asarray(v) for k, v in (init or {}).items()},
                merged={k: np.asarray(v) for k, v in (merged or {}).items()}, adapter_name=active, producer=producer)
