"""Parity with PEFT 0.21.2 for LoRA and (IA)^3 on the real all-MiniLM-L6-v2.

Each folder of tests/fixtures/peft/ was written by tools/make_peft_fixture.py with the real library: PEFT's own
`save_pretrained` of an adapter with trained-like random weights (LoRA's B non-zero, (IA)^3's vectors away from
ones), PEFT's last hidden state in float64 and float32, the float64 gradients of loss = sum(last_hidden_state * R),
and PEFT's trainable-parameter count. `load_adapter` reads each folder (it recognises PEFT's) and must reproduce it.
"""

import json

import numpy as np
import pytest
from helpers import TOL
from peft_helpers import HIDDEN, PEFT, golden, loaded, meta

from adapters import (
    AdapterSet,
    adapter_summary,
    export_peft,
    load_adapter,
    merge_adapter,
    train_adapter,
    unmerge_adapter,
)
from adapters.names import adapter_parameter_name
from adapters.peft import PREFIX
from autograd import Tensor
from minibert import BertModel
from minibert.weights import read_safetensors

CONFIGS = ("lora_qv", "lora_dense_rslora", "ia3")
assert TOL["f32_parity"] <= HIDDEN[np.float32]








def error(h, want, mask):
    real = mask.astype(bool)
    return np.abs(h[real].astype(np.float64) - want[real]).max() / max(1.0, np.abs(want[real]).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("config", CONFIGS)
def test_last_hidden_state_matches_peft(config, dtype):
    g = golden(config)
    model, _ = loaded(config, dtype)
    model.eval()
    out = model(g["input_ids"], g["attention_mask"], g["token_type_ids"])
    want = g["last_hidden_state_f64" if dtype == np.float64 else "last_hidden_state_f32"]
    assert error(out.last_hidden_state.data, want, g["attention_mask"]) <= HIDDEN[dtype]
    if dtype == np.float64:  # the pooler's LoRA (target "dense" matches pooler.dense), through the pooler output
        np.testing.assert_allclose(out.pooler_output.data, g["pooler_output_f64"], rtol=0, atol=1e-10)
    assert error(g["base_last_hidden_state_f64"], want, g["attention_mask"]) > 1e-3  # the adapter matters


@pytest.mark.parametrize("config", CONFIGS)
def test_the_adapter_has_exactly_the_parameters_peft_counts(config):
    golden(config)
    model, name = loaded(config, np.float64)
    assert adapter_summary(model, name)["adapter_parameters"] == meta(config)["peft"]["get_nb_trainable_parameters"][
        "trainable"]
    trainable = set(train_adapter(model, name))
    own = {k for k in trainable if ".adapters." in k}
    assert len(own) == len(meta(config)["peft"]["trainable_model_names"])


@pytest.mark.parametrize("config", CONFIGS)
def test_gradients_match_peft_and_reach_only_its_parameters(config):
    g = golden(config)
    grads = {k.removeprefix("grad_f64/"): v for k, v in g.items() if k.startswith("grad_f64/")}
    model, name = loaded(config, np.float64)
    train_adapter(model, name)
    model.eval()
    out = model(g["input_ids"], g["attention_mask"], g["token_type_ids"]).last_hidden_state
    (out * Tensor(g["R"])).sum().backward()
    params = dict(model.named_parameters())
    with_grad = {k for k, p in params.items() if p.grad is not None}
    assert with_grad <= {k for k in params if ".adapters." in k}  # nothing of the base model moves
    scale = max(np.abs(v).max() for v in grads.values())
    for key, want in grads.items():
        path, _, leaf = key.removeprefix(PREFIX).rpartition(".lora_") if ".lora_" in key else \
            (key.removeprefix(PREFIX).rsplit(".", 1)[0], None, None)
        ours = adapter_parameter_name(path, name, "lora_" + leaf if leaf else "ia3_l")
        assert np.abs(params[ours].grad - want.reshape(params[ours].shape)).max() <= 1e-9 * scale, key


@pytest.mark.parametrize("config", ["lora_qv", "lora_dense_rslora"])
def test_merged_lora_gives_pefts_merged_model_and_unmerges_bit_for_bit(config):
    g = golden(config)
    model, name = loaded(config, np.float64)
    model.eval()
    before = {k: p.data.copy() for k, p in model.named_parameters()}
    merge_adapter(model, name)
    h = model(g["input_ids"], g["attention_mask"], g["token_type_ids"]).last_hidden_state.data
    assert error(h, g["merged_last_hidden_state_f64"], g["attention_mask"]) <= HIDDEN[np.float64]
    unmerge_adapter(model, name)
    assert all(np.array_equal(p.data, before[k]) for k, p in model.named_parameters())


@pytest.mark.parametrize("config", CONFIGS)
def test_export_writes_pefts_tensors_and_config(config, tmp_path):
    golden(config)
    model, name = loaded(config, np.float32)
    export_peft(model, name, tmp_path, base_model_name_or_path="sentence-transformers/all-MiniLM-L6-v2")
    ours, theirs = read_safetensors(tmp_path / "adapter_model.safetensors"), read_safetensors(
        PEFT / config / "adapter_model.safetensors")
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert ours[key].shape == theirs[key].shape and np.array_equal(ours[key], theirs[key]), key
    mine = json.loads((tmp_path / "adapter_config.json").read_text())
    peft = json.loads((PEFT / config / "adapter_config.json").read_text())
    for key, value in mine.items():  # every field we write has PEFT's value (PEFT fills the rest with defaults)
        if key not in ("inference_mode",):
            assert (sorted(value) if isinstance(value, list) else value) == \
                (sorted(peft[key]) if isinstance(peft[key], list) else peft[key]), key
    fresh = BertModel.from_pretrained(None, dtype=np.float32)
    load_adapter(fresh, tmp_path)
    assert AdapterSet.of(fresh).config("default") == AdapterSet.of(model).config(name)
