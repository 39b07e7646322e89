"""Write a cross-check case (docs/crosscheck.md) from a PyTorch BERT with adapters. Needs torch, numpy, safetensors.

Standalone on purpose: copy this file next to your model code. It imports nothing of minibert-adapters, so it runs
in your PyTorch environment; `minibert crosscheck CASE` then judges the file in this project's environment.

    import torch, transformers
    from write_case_torch import write_case

    model = transformers.BertModel.from_pretrained(path, attn_implementation="eager")
    add_my_adapters(model)                                   # your implementation, trained or not
    enc = tokenizer(["a sentence", "another, longer sentence"], padding=True, return_tensors="pt")
    write_case("my_adapter.safetensors", model, enc["input_ids"], enc["attention_mask"], enc["token_type_ids"],
               adapter_config={"preset": "houlsby", "bottleneck_size": 64},
               name_map={"adapter.down_proj.": "adapters.mine.down.", "adapter.up_proj.": "adapters.mine.up."})
    # then: minibert crosscheck my_adapter.safetensors

What it does: eval mode; hidden states 0..L from `model(..., output_hidden_states=True).hidden_states` (or your
`hidden_states_fn`); one backward of sum(last_hidden_state * cotangent) with a random cotangent that is zero at
padding; every parameter under its case name; `grad/` for every parameter that got a gradient; `trainable` = the
parameters with requires_grad. Parameters of a head (`classifier.`, `cls.`) are left out: a case is a BertModel.
A module shared by several places (one adapter for every layer) is written out under each of its names.

Names: a case wants Hugging Face BertModel names, and adapter tensors as
`encoder.layer.<i>.attention.output.adapters.<name>.down.weight` (`.down.bias`, `.up.weight`, `.up.bias`; the same
under `encoder.layer.<i>.output`) or AdapterHub's `...adapter_down.0.weight` / `adapter_up.weight`. If yours differ,
`name_map` renames: a dict of substring replacements applied in order, or a function name -> new name (None drops
the parameter).
"""

from __future__ import annotations

import json

import numpy as np
import torch
from safetensors.numpy import save_file

HEAD_PREFIXES = ("classifier.", "cls.", "qa_outputs.")


def _rename(name: str, name_map) -> str | None:
    if name.startswith(HEAD_PREFIXES):
        return None
    if callable(name_map):
        return name_map(name)
    for old, new in (name_map or {}).items():
        name = name.replace(old, new)
    return name


def _numpy(t: torch.Tensor) -> np.ndarray:
    return np.array(t.detach().cpu().numpy(), copy=True, order="C")  # a copy: .numpy() shares the tensor's memory


def snapshot(model, name_map=None, keep=lambda name: ".adapters." in name) -> dict:
    """{case name: array} of the parameters `keep` selects (default: the adapter's), e.g. right after init, to pass
    as write_case(..., init=...) so the init is judged too."""
    out = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        new = _rename(name, name_map)
        if new is not None and keep(new):
            out[new] = _numpy(p)
    return out


def base_digest(tensors: dict) -> str:
    """SHA-256 over each tensor's name, shape and float32 (little-endian) bytes, in name order: the digest by
    which a case names its base (docs/crosscheck.md, "A base named by digest")."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.ascontiguousarray(np.asarray(tensors[name]), dtype="<f4")
        h.update(f"{name}|{tuple(a.shape)}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_case(path, model, input_ids, attention_mask, token_type_ids=None, *, adapter_config=None,
               adapter_name=None, bert_config=None, name_map=None, init=None, cotangent=None, seed=0,
               hidden_states_fn=None, producer=None, base_by_digest=False):
    """Run `model` once forward and backward and write the case file at `path`.

    adapter_config: dict, this project's AdapterConfig fields or {"preset": "houlsby", ...overrides}; None for a
    plain BERT. bert_config: the config.json dict (default: model.config.to_dict()). init: {case name: array} of
    the adapter parameters at init (see `snapshot`). hidden_states_fn(model, ids, mask, types) -> L + 1 tensors
    (B, T, D), for models that do not take output_hidden_states. base_by_digest: leave out the parameters that do
    not train and name them by their digest (a case of MiniLM with adapters is then a few MB; the judge finds the
    base in its embedded MiniLM or a --base folder). Returns the path.
    """
    as_long = [None if t is None else torch.as_tensor(t, dtype=torch.long) for t in
               (input_ids, attention_mask, token_type_ids)]
    ids, mask, types = as_long
    # every name of a parameter, even one module shared by several places: it is written under each of them (with
    # its gradient, the sum over the places), and the cross-check names that `tied-weights`
    params = dict(model.named_parameters(remove_duplicate=False))
    dtype = next(iter(params.values())).dtype
    if dtype not in (torch.float64, torch.float32):
        raise ValueError(f"a case is float64 or float32; the model's parameters are {dtype}")
    training = model.training
    model.eval()  # no dropout: the case holds the function itself
    model.zero_grad(set_to_none=True)
    try:
        if hidden_states_fn is not None:
            hidden = list(hidden_states_fn(model, ids, mask, types))
        else:
            hidden = list(model(input_ids=ids, attention_mask=mask, token_type_ids=types,
                                output_hidden_states=True).hidden_states)
        last = hidden[-1]
        if cotangent is None:
            rng = np.random.default_rng(seed)
            cotangent = rng.standard_normal(tuple(last.shape)) * mask.numpy()[:, :, None]  # zero at padding
        cot = torch.as_tensor(np.asarray(cotangent), dtype=last.dtype)
        (last * cot).sum().backward()
    finally:
        model.train(training)

    tensors, trainable = {}, []
    for name, p in params.items():
        new = _rename(name, name_map)
        if new is None:
            continue
        if f"param/{new}" in tensors:
            raise ValueError(f"name_map sends two parameters to {new!r}")
        tensors[f"param/{new}"] = _numpy(p)
        if p.requires_grad:
            trainable.append(new)
        if p.grad is not None:
            tensors[f"grad/{new}"] = _numpy(p.grad)
    for name, value in (init or {}).items():
        tensors[f"init/{name}"] = np.ascontiguousarray(np.asarray(value))
    tensors["input/input_ids"] = _numpy(ids)
    tensors["input/attention_mask"] = _numpy(mask)
    if types is not None:
        tensors["input/token_type_ids"] = _numpy(types)
    tensors["input/cotangent"] = _numpy(cot)
    for i, h in enumerate(hidden):
        tensors[f"output/hidden_states/{i}"] = _numpy(h)
    if bert_config is None:
        bert_config = model.config.to_dict()
    meta = {"format": "minibert-crosscheck", "version": "1", "bert_config": json.dumps(bert_config, default=str),
            "trainable": json.dumps(trainable),
            "producer": producer or f"tools/write_case_torch.py, torch {torch.__version__}"}
    if adapter_config is not None:
        meta["adapter_config"] = json.dumps(adapter_config)
    if adapter_name is not None:
        meta["adapter_name"] = adapter_name
    if base_by_digest:
        frozen = sorted(k[len("param/"):] for k in tensors if k.startswith("param/")
                        and k[len("param/"):] not in set(trainable))
        meta["base"] = json.dumps({"sha256": base_digest({k: tensors[f"param/{k}"] for k in frozen}),
                                   "tensors": frozen})
        for k in frozen:
            del tensors[f"param/{k}"]
    save_file(tensors, str(path), metadata=meta)
    return path


if __name__ == "__main__":
    print(__doc__)
