"""Adapter-only checkpoints (adapter_config.json + adapter.safetensors) and the AdapterHub key mapping."""

import json

import numpy as np
import pytest
from adapter_helpers import assert_same_arrays, build, configs, logits, loss_backward, run, snapshot
from conftest import TINY
from hypothesis import given
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

from adapters import (
    AdapterConfig,
    active_adapter,
    add_adapter,
    export_adapterhub,
    load_adapter,
    load_adapterhub,
    save_adapter,
    set_active_adapter,
    train_adapter,
)
from autograd.optim import AdamW
from minibert import BertForSequenceClassification, BertModel

BIG_VOCAB = dict(vocab_size=3000)  # a vocabulary big enough that the base dwarfs the adapter, as in real BERTs


def trained(preset="houlsby", cls=BertForSequenceClassification, steps=2, **config):
    """A model whose adapter, LayerNorms and head all differ from a fresh build (so a load must restore them)."""
    model = build(cls, num_labels=3, seed=0, **(config or BIG_VOCAB))
    add_adapter(model, "sst2", AdapterConfig.from_preset(preset, bottleneck_size=4), seed=1)
    train_adapter(model, "sst2")
    opt = AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        if cls is BertForSequenceClassification:
            loss_backward(model)
        else:
            (model(*_inputs()).last_hidden_state ** 2).mean().backward()
        opt.step()
    return model.eval()


def _inputs():
    from conftest import tiny_inputs
    return tiny_inputs()


def expected_keys(model, preset):
    names = [k for k, _ in model.named_parameters()]
    keys = {k for k in names if ".adapters.sst2." in k or k.startswith("classifier.")}
    if preset == "houlsby":
        keys |= {k for k in names if ".LayerNorm." in k}
    return keys


@pytest.mark.parametrize("preset", ["houlsby", "adapterhub-houlsby"])
def test_save_writes_only_what_the_policy_trains(tmp_path, preset):
    model = trained(preset)
    add_adapter(model, "other", AdapterConfig(bottleneck_size=2), seed=3, set_active=False)
    sizes = save_adapter(model, "sst2", tmp_path / "sst2")
    folder = tmp_path / "sst2"
    assert sorted(p.name for p in folder.iterdir()) == ["adapter.safetensors", "adapter_config.json"]
    tensors = load_file(str(folder / "adapter.safetensors"))
    keys = expected_keys(model, preset)
    assert set(tensors) == keys
    assert not any(".adapters.other." in k or "pooler" in k or "embeddings.word" in k for k in tensors)
    params = snapshot(model)
    for k, v in tensors.items():
        assert v.dtype == np.float64 and np.array_equal(v, params[k]), k
    meta = json.loads((folder / "adapter_config.json").read_text())
    assert meta["name"] == "sst2" and meta["format_version"] == 1
    assert meta["config"] == AdapterConfig.from_preset(preset, bottleneck_size=4).to_dict()
    assert meta["base_model"]["hidden_size"] == TINY["D"] and meta["base_model"]["num_hidden_layers"] == TINY["L"]
    assert meta["parameters"] == sorted(keys)
    assert sizes["adapter_bytes"] == (folder / "adapter.safetensors").stat().st_size
    assert sizes["config_bytes"] == (folder / "adapter_config.json").stat().st_size
    # far smaller than the whole model's weights in the same format
    save_file({k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}, str(tmp_path / "full.safetensors"))
    full = (tmp_path / "full.safetensors").stat().st_size
    assert sizes["adapter_bytes"] < 0.05 * full
    assert not list(tmp_path.glob("**/*.tmp"))  # the atomic writes left no temporary files


@pytest.mark.parametrize("preset", ["houlsby", "adapterhub-houlsby"])
@pytest.mark.parametrize("cls", [BertForSequenceClassification, BertModel])
def test_load_onto_a_fresh_base_is_bit_exact(tmp_path, preset, cls):
    model = trained(preset, cls)
    saved_params = snapshot(model)
    saved_out = run(model)
    save_adapter(model, "sst2", tmp_path)

    fresh = build(cls, num_labels=3, seed=0, **BIG_VOCAB)
    assert np.abs(run(fresh)[0] - saved_out[0]).max() > 1e-6  # before loading, the outputs differ
    assert load_adapter(fresh, tmp_path) == "sst2"
    assert active_adapter(fresh) == "sst2"
    assert configs(fresh)["sst2"] == configs(model)["sst2"]
    assert_same_arrays(saved_params, snapshot(fresh))  # every parameter, adapters and base, bit for bit
    assert set(snapshot(fresh)) == set(saved_params)
    out = run(fresh)
    assert np.array_equal(out[0], saved_out[0]) and np.array_equal(out[1], saved_out[1])
    if cls is BertForSequenceClassification:
        assert np.array_equal(logits(fresh), logits(model))


def test_load_into_a_model_that_already_has_the_adapter_and_under_a_new_name(tmp_path):
    model = trained("adapterhub-houlsby")
    save_adapter(model, "sst2", tmp_path)
    out = run(model)
    again = build(BertForSequenceClassification, num_labels=3, seed=0, **BIG_VOCAB)
    add_adapter(again, "sst2", AdapterConfig.from_preset("adapterhub-houlsby", bottleneck_size=4), seed=99)
    load_adapter(again, tmp_path)
    assert np.array_equal(run(again)[0], out[0])

    renamed = build(BertForSequenceClassification, num_labels=3, seed=0, **BIG_VOCAB)
    assert load_adapter(renamed, tmp_path, name="copy", set_active=False) == "copy"
    assert active_adapter(renamed) is None
    names = [k for k, _ in renamed.named_parameters()]
    assert any(".adapters.copy." in k for k in names) and not any(".adapters.sst2." in k for k in names)
    set_active_adapter(renamed, "copy")
    assert np.array_equal(run(renamed)[0], out[0])


def test_load_errors(tmp_path):
    model = trained("adapterhub-houlsby")
    save_adapter(model, "sst2", tmp_path / "ok")
    wide = build(BertForSequenceClassification, num_labels=3, hidden_size=15, num_attention_heads=3)
    with pytest.raises(ValueError, match="hidden_size 12.*15"):
        load_adapter(wide, tmp_path / "ok")
    assert not configs(wide)  # nothing half-added
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_adapter(build(BertForSequenceClassification), tmp_path / "missing")
    # a head model's adapter (bert.* names, a classifier) does not fit a bare BertModel
    bare = build(BertModel, **BIG_VOCAB)
    with pytest.raises(KeyError, match="does not fit"):
        load_adapter(bare, tmp_path / "ok")
    assert not configs(bare) and not any(".adapters." in k for k, _ in bare.named_parameters())
    # a different number of labels: the head is mis-shaped
    two = build(BertForSequenceClassification, num_labels=2, **BIG_VOCAB)
    with pytest.raises(KeyError, match="classifier.weight"):
        load_adapter(two, tmp_path / "ok")
    assert not configs(two)
    # a file without one of the adapter's tensors: it would stay randomly initialised, so it is refused
    tensors = load_file(str(tmp_path / "ok" / "adapter.safetensors"))
    gone = "bert.encoder.layer.1.output.adapters.sst2.up.weight"
    del tensors[gone]
    save_file(tensors, str(tmp_path / "ok" / "adapter.safetensors"))
    fresh = build(BertForSequenceClassification, num_labels=3, **BIG_VOCAB)
    before = snapshot(fresh)
    with pytest.raises(KeyError, match=f"missing.*{gone}"):
        load_adapter(fresh, tmp_path / "ok")
    assert not configs(fresh)
    assert_same_arrays(before, snapshot(fresh))  # nothing copied


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_weights_file_is_a_clear_error(tmp_path, damage):
    model = trained("adapterhub-houlsby")
    save_adapter(model, "sst2", tmp_path)
    path = tmp_path / "adapter.safetensors"
    data = path.read_bytes()
    path.write_bytes({"garbage": b"\x00not a safetensors file" * 40, "truncated": data[: len(data) // 2],
                      "empty": b""}[damage])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_adapter(build(BertForSequenceClassification, num_labels=3, **BIG_VOCAB), tmp_path)


def test_unsupported_format_version(tmp_path):
    save_adapter(trained("adapterhub-houlsby"), "sst2", tmp_path)
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "adapter_config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format_version"):
        load_adapter(build(BertForSequenceClassification, num_labels=3, **BIG_VOCAB), tmp_path)


# ---- AdapterHub -----------------------------------------------------------------------------------------------
def hub_keys(name, sublayers=("attention.output", "output")):
    return {f"encoder.layer.{i}.{s}.adapters.{name}.{part}.{leaf}" for i in range(TINY["L"]) for s in sublayers
            for part in ("adapter_down.0", "adapter_up") for leaf in ("weight", "bias")}


@pytest.mark.parametrize("cls, prefix", [(BertModel, ""), (BertForSequenceClassification, "bert.")])
def test_export_names_and_values(cls, prefix):
    model = build(cls, num_labels=3)
    add_adapter(model, "sst2", AdapterConfig(bottleneck_size=5, init_std=0.3), seed=1)
    sd = export_adapterhub(model, "sst2")
    assert set(sd) == hub_keys("sst2")  # BertModel layout: never a bert. prefix
    assert "encoder.layer.0.attention.output.adapters.sst2.adapter_down.0.weight" in sd
    assert "encoder.layer.0.output.adapters.sst2.adapter_up.weight" in sd
    params = snapshot(model)
    for i in range(TINY["L"]):
        for s in ("attention.output", "output"):
            hub, ours = f"encoder.layer.{i}.{s}.adapters.sst2.", f"{prefix}encoder.layer.{i}.{s}.adapters.sst2."
            for leaf in ("weight", "bias"):
                assert np.array_equal(sd[hub + "adapter_down.0." + leaf], params[ours + "down." + leaf])
                assert np.array_equal(sd[hub + "adapter_up." + leaf], params[ours + "up." + leaf])
    assert sd["encoder.layer.0.output.adapters.sst2.adapter_down.0.weight"].shape == (5, TINY["D"])
    assert set(export_adapterhub(model, "sst2", hub_name="task")) == hub_keys("task")
    ffn = build(cls)
    add_adapter(ffn, "p", AdapterConfig(bottleneck_size=2, placement="ffn"))
    assert set(export_adapterhub(ffn, "p")) == hub_keys("p", ("output",))


@pytest.mark.parametrize("cls", [BertModel, BertForSequenceClassification])
@pytest.mark.parametrize("non_linearity", ["gelu_new", "gelu", "relu", "silu", "tanh"])
def test_hub_round_trip_through_a_folder(tmp_path, cls, non_linearity):
    model = build(cls, num_labels=3)
    add_adapter(model, "sst2", AdapterConfig(bottleneck_size=5, init_std=0.3, non_linearity=non_linearity), seed=1)
    out = run(model)
    export_adapterhub(model, "sst2", tmp_path)
    hub = json.loads((tmp_path / "adapter_config.json").read_text())
    assert hub["name"] == "sst2" and hub["config"]["mh_adapter"] and hub["config"]["output_adapter"]
    fresh = build(cls, num_labels=3)
    assert load_adapterhub(fresh, tmp_path, "hub") == "hub"
    assert configs(fresh)["hub"].non_linearity == non_linearity
    got = run(fresh)
    assert np.array_equal(got[0], out[0]) and np.array_equal(got[1], out[1])


@given(heads=st.integers(1, 4), head_dim=st.integers(1, 6), m=st.integers(1, 12),
       placement=st.sampled_from(("both", "attention", "ffn")), as_dict=st.booleans())
def test_hub_round_trip_keeps_any_bottleneck(heads, head_dim, m, placement, as_dict):
    """M comes back from the weights; the exported reduction factor gives M under AdapterHub's int(D // r)."""
    import tempfile

    d = heads * head_dim
    model = build(hidden_size=d, num_attention_heads=heads)
    config = AdapterConfig(bottleneck_size=m, non_linearity="silu", init="normal", init_std=0.3,
                           placement=placement)
    add_adapter(model, "t", config, seed=2)
    out = run(model)
    with tempfile.TemporaryDirectory() as folder:
        sd = export_adapterhub(model, "t", folder)
        r = json.loads(open(f"{folder}/adapter_config.json").read())["config"]["reduction_factor"]
        assert int(d // r) == m
        fresh = build(hidden_size=d, num_attention_heads=heads)
        load_adapterhub(fresh, sd if as_dict else folder, "t")
    assert configs(fresh)["t"].size_for(d) == m
    assert configs(fresh)["t"].placement == placement
    assert np.array_equal(run(fresh)[0], out[0])


def test_hub_round_trip_from_a_dict_with_a_config():
    model = build(BertForSequenceClassification, num_labels=3)
    config = AdapterConfig(bottleneck_size=5, init_std=0.3)  # gelu_new: a dict carries no config, so pass it
    add_adapter(model, "sst2", config, seed=1)
    out = run(model)
    fresh = build(BertForSequenceClassification, num_labels=3)
    load_adapterhub(fresh, export_adapterhub(model, "sst2"), "sst2", config=config)
    assert np.array_equal(run(fresh)[0], out[0])
    assert_same_arrays(snapshot(model), snapshot(fresh))


def test_hub_errors(tmp_path):
    model = build()
    for config in (AdapterConfig(bottleneck_size=3, parallel=True), AdapterConfig(bottleneck_size=3, layer_norm=True)):
        name = "par" if config.parallel else "ln"
        add_adapter(model, name, config)
        with pytest.raises(ValueError, match="DoubleSeqBnConfig"):
            export_adapterhub(model, name)
    add_adapter(model, "ok", AdapterConfig(bottleneck_size=3))
    sd = export_adapterhub(model, "ok")
    with pytest.raises(KeyError, match="not AdapterHub"):
        load_adapterhub(build(), {**sd, "encoder.layer.0.output.dense.weight": np.zeros((12, 37))}, "x")
    two = {**sd, **export_adapterhub(model, "ok", hub_name="other")}
    with pytest.raises(KeyError, match="hub_name"):
        load_adapterhub(build(), two, "x")
    fresh = build()
    load_adapterhub(fresh, two, "x", hub_name="other")
    assert "x" in configs(fresh)
    # a config that promises both sub-layers but weights for only one: refused, nothing left behind
    hub_config = {"mh_adapter": True, "output_adapter": True, "non_linearity": "gelu_new"}
    partial = {k: v for k, v in sd.items() if ".attention.output." not in k}
    save_file(partial, str(tmp_path / "adapter_weights.safetensors"))
    (tmp_path / "adapter_config.json").write_text(json.dumps({"config": hub_config}))
    fresh = build()
    with pytest.raises(KeyError, match="missing.*attention.output.adapters.x.down.weight"):
        load_adapterhub(fresh, tmp_path, "x")
    assert not configs(fresh) and not any(".adapters." in k for k, _ in fresh.named_parameters())
    # the same weights as a dict: the weights say only the FFN sub-layer has an adapter
    load_adapterhub(fresh, partial, "x")
    assert configs(fresh)["x"].placement == "ffn"
    (tmp_path / "adapter_weights.safetensors").unlink()
    (tmp_path / "adapter_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_adapterhub(build(), tmp_path, "x")
    (tmp_path / "pytorch_adapter.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="never unpickles"):
        load_adapterhub(build(), tmp_path, "x")
