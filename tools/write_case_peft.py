"""Write a cross-check case (docs/crosscheck.md) from a Hugging Face PEFT model: LoRA, (IA)^3 or prefix tuning on a
transformers BertModel. Needs torch, transformers, peft, numpy, safetensors.

Standalone like tools/write_case_torch.py (which it uses: keep the two files side by side): it imports nothing of
minibert-adapters, so it runs in your PEFT environment; `minibert crosscheck CASE` judges the file in this
project's.

    import peft, torch, transformers
    from write_case_peft import snapshot, write_case

    base = transformers.BertModel.from_pretrained(path, attn_implementation="eager")
    model = peft.get_peft_model(base, peft.LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"]))
    init = snapshot(model)                                   # the adapter as initialised: its init is judged too
    ...                                                      # train it
    enc = tokenizer(["a sentence", "another, longer sentence"], padding=True, return_tensors="pt")
    write_case("lora.safetensors", model, enc["input_ids"], enc["attention_mask"], enc["token_type_ids"],
               init=init)
    # then, in this project's environment: minibert crosscheck lora.safetensors
    # merged=True also writes the weights PEFT's merge_adapter() makes (LoRA, (IA)^3): the merge is judged too

(IA)^3 is the same with `peft.IA3Config()`; prefix tuning with
`peft.PrefixTuningConfig(num_virtual_tokens=P, task_type="FEATURE_EXTRACTION")` (without `prefix_projection`).
For a float64 case, `.double()` the BertModel before get_peft_model, or the PeftModel after it (PEFT builds a
prefix's table in float32 whatever the base's dtype).

What it writes: the active adapter's claim is its PEFT config itself (`peft_model.peft_config[name].to_dict()`, as
adapter_config.json holds it: sets as sorted lists, enums as their values), which the cross-check reads as
`load_adapter` reads a PEFT folder; base tensors under transformers' BertModel names (PEFT's `base_model.model.`
prefix and `.base_layer.` removed); adapter tensors under this project's names:

    base_model.model.encoder.layer.0.attention.self.query.lora_A.default.weight (r, in)
        -> encoder.layer.0.attention.self.query.adapters.default.lora_A.weight
    base_model.model.encoder.layer.0.attention.self.key.ia3_l.default   (d_out, 1), or (1, d_in) where input-scaled
        -> encoder.layer.0.attention.self.key.adapters.default.ia3_l   (a vector)
    prompt_encoder.default.embedding.weight (P, 2 L D)
        -> embeddings.adapters.default.prompt_embeddings

Other adapters of the model are left out (a case holds one: the active adapter). Refused with a ValueError naming
the reason: another PEFT method, prefix tuning with `prefix_projection` (PEFT's MLP: this project reads a PEFT
prefix as its table only, which is what PEFT saves), several active adapters, a merged adapter, a base model that
is not a BertModel, parameters of mixed dtypes. Whatever of the config this project does not reproduce (DoRA,
`bias="all"`, `rank_pattern`, ...) the cross-check refuses itself, naming the field (exit 2).

Prefix tuning: PEFT ignores token_type_ids (it warns and drops them) and this project's prefix does the same, so
the writer does not pass them to PEFT; the case still records them.

    python tools/write_case_peft.py      # prints this help
"""

from __future__ import annotations

import enum
import re
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # write_case_torch, beside this file

import write_case_torch  # noqa: E402

METHODS = ("LORA", "IA3", "PREFIX_TUNING")
_LORA = re.compile(r"^(?P<path>.+)\.(?P<leaf>lora_[AB])\.(?P<adapter>[^.]+)\.(?P<what>weight|bias)$")
_IA3 = re.compile(r"^(?P<path>.+)\.ia3_l\.(?P<adapter>[^.]+)$")
_PREFIX = re.compile(r"^prompt_encoder\.(?P<adapter>[^.]+)\.(?P<rest>.+)$")
# PEFT tensors of other LoRA-like variants, which a case has no name for
_OTHER_LORA = re.compile(r"\.(lora_embedding_[AB]|lora_magnitude_vector|lora_[AB])\.")


def _active(peft_model) -> str:
    name = peft_model.active_adapter
    if not isinstance(name, str):
        raise ValueError(f"the PEFT model has several active adapters ({name!r}); a case holds one: "
                         "peft_model.set_adapter(name) first")
    return name


def _method(peft_model, name: str) -> str:
    config = peft_model.peft_config[name]
    method = getattr(config.peft_type, "value", config.peft_type)
    if method not in METHODS:
        raise ValueError(f"adapter {name!r} is a PEFT {method} adapter; this writer knows {', '.join(METHODS)}")
    if method == "PREFIX_TUNING" and getattr(config, "prefix_projection", False):
        raise ValueError(f"adapter {name!r} is prefix tuning with prefix_projection=True (PEFT's MLP): this project "
                         "reads a PEFT prefix as its table only (what PEFT saves); write the case of a prefix without "
                         "the projection")
    return method


def name_map(peft_model, name: str | None = None):
    """name -> case name (None: left out) for PEFT adapter `name` (default: the active one) of `peft_model`: the
    function to give write_case_torch (write_case, snapshot)."""
    name = name or _active(peft_model)
    method = _method(peft_model, name)

    def rename(key: str) -> str | None:
        if method == "PREFIX_TUNING":
            if key == "word_embeddings.weight":  # PeftModel's alias of the base's word embeddings (shared)
                return None
            m = _PREFIX.match(key)
            if m is not None:
                if m["adapter"] != name:
                    return None
                if m["rest"] != "embedding.weight":
                    raise ValueError(f"{key}: not a prefix table (prefix_projection?); not reproduced here")
                return f"embeddings.adapters.{name}.prompt_embeddings"
            base = key.removeprefix("base_model.")
        else:
            base = key.removeprefix("base_model.model.")
        if base == key:
            raise ValueError(f"{key}: not a parameter of PEFT's wrapped BertModel")
        m = _LORA.match(base)
        if m is not None:
            if m["adapter"] != name:
                return None
            if m["what"] == "bias":
                raise ValueError(f"{key}: LoRA with lora_bias=True is not reproduced here")
            return f"{m['path']}.adapters.{name}.{m['leaf']}.weight"
        m = _IA3.match(base)
        if m is not None:
            return f"{m['path']}.adapters.{name}.ia3_l" if m["adapter"] == name else None
        if _OTHER_LORA.search(base):
            raise ValueError(f"{key}: a PEFT tensor a case has no name for (DoRA, LoRA on embeddings, ...)")
        return base.replace(".base_layer.", ".")

    return rename


def _vectors(tensors: dict) -> dict:
    """(IA)^3's l, (d_out, 1) or (1, d_in) in PEFT, as this project's vector; everything else as it is."""
    return {k: np.ascontiguousarray(v.reshape(-1)) if k.endswith(".ia3_l") else v for k, v in tensors.items()}


def snapshot(peft_model, name: str | None = None) -> dict:
    """{case name: array} of adapter `name`'s tensors (default: the active adapter), e.g. right after
    get_peft_model, to pass as write_case(..., init=...) so the init is judged too."""
    rename = name_map(peft_model, name)
    return _vectors(write_case_torch.snapshot(peft_model, name_map=rename))


def _json(value):
    """PEFT's config values as adapter_config.json holds them: sets as sorted lists, enums as their values."""
    if isinstance(value, enum.Enum):
        return _json(value.value)
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((_json(v) for v in value), key=str)
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "to_dict"):
        return _json(value.to_dict())
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return _json(dataclasses.asdict(value))
    return str(value)


def adapter_config(peft_model, name: str | None = None) -> dict:
    """The case's adapter_config: adapter `name`'s PEFT config dict (with its peft_type), JSON-able."""
    name = name or _active(peft_model)
    _method(peft_model, name)
    return _json(peft_model.peft_config[name].to_dict())


def _check_model(peft_model, name: str) -> None:
    base = peft_model.get_base_model()
    if type(base).__name__ != "BertModel":
        raise ValueError(f"the PEFT model wraps a {type(base).__name__}; a case is a transformers BertModel")
    merged = [n for n, m in peft_model.named_modules() if getattr(m, "merged", False)]
    if merged:
        raise ValueError(f"the adapter is merged into the base weights ({merged[0]}, ...): unmerge_adapter() first")
    dtypes = {p.dtype for p in peft_model.parameters()}
    if len(dtypes) != 1:
        raise ValueError(f"the PEFT model's parameters are of several dtypes ({sorted(map(str, dtypes))}): "
                         "peft_model.to(torch.float64) (or float32) first")


def merged_tensors(peft_model, name: str) -> dict:
    """{case name: array} of the base weights of every Linear adapter `name` adapts, as PEFT's merge_adapter()
    leaves them (then unmerged again): the case's merged/ tensors."""
    peft_model.merge_adapter()
    try:
        out = {}
        for module_name, module in peft_model.named_modules():
            if getattr(module, "merged", False) and hasattr(module, "base_layer"):
                path = module_name.removeprefix("base_model.model.")
                for what, tensor in module.base_layer.named_parameters():
                    out[f"{path}.{what}"] = tensor.detach().cpu().numpy().copy()
    finally:
        peft_model.unmerge_adapter()
    return out


def write_case(path, peft_model, input_ids, attention_mask, token_type_ids=None, init=None, merged=False,
               **kwargs):
    """write_case_torch.write_case for the active adapter of `peft_model` (a peft.PeftModel on a BertModel), with
    its PEFT config as the claim. init: `snapshot(peft_model)` right after get_peft_model. merged: also write the
    weights PEFT's merge_adapter() makes (LoRA, (IA)^3), so the merge is judged too. kwargs go to
    write_case_torch.write_case (cotangent, seed, producer, ...). Returns the path."""
    import peft
    from safetensors import safe_open
    from safetensors.numpy import save_file

    name = _active(peft_model)
    method = _method(peft_model, name)
    _check_model(peft_model, name)
    if merged and method == "PREFIX_TUNING":
        raise ValueError("merged=True: a prefix does not merge into the weights")
    if method == "PREFIX_TUNING" and "hidden_states_fn" not in kwargs:
        kwargs["hidden_states_fn"] = lambda model, ids, mask, types: model(
            input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states  # PEFT drops token types
    kwargs.setdefault("producer", f"tools/write_case_peft.py, peft {peft.__version__}")
    kwargs.setdefault("bert_config", peft_model.get_base_model().config.to_dict())
    write_case_torch.write_case(path, peft_model, input_ids, attention_mask, token_type_ids,
                                adapter_config=adapter_config(peft_model, name), adapter_name=name,
                                name_map=name_map(peft_model, name), init=None if init is None else _vectors(init),
                                **kwargs)
    if method == "IA3" or merged:  # l as a vector, in param/, grad/ and init/ alike; the merged weights beside
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if merged:
            tensors.update({f"merged/{k}": v for k, v in merged_tensors(peft_model, name).items()})
        save_file(_vectors(tensors), str(path), metadata=meta)
    return path


if __name__ == "__main__":
    print(__doc__)
