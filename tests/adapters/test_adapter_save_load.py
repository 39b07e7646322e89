"""Adapter-only checkpoints (adapter_config.json + adapter.safetensors) and the AdapterHub key mapping."""

import json
import struct
import tempfile

import numpy as np
import pytest
from adapter_helpers import (
    assert_same_arrays,
    build,
    config_strategy,
    configs,
    expected_trainable,
    logits,
    loss_backward,
    model_classes,
    model_shapes,
    run,
    snapshot,
)
from helpers import TINY, tiny_config, tiny_inputs
from hypothesis import assume, given
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

from adapters import (
    AdapterConfig,
    active_adapter,
    adapter_summary,
    add_adapter,
    export_adapterhub,
    load_adapter,
    load_adapterhub,
    save_adapter,
    set_active_adapter,
    train_adapter,
)
from autograd.optim import AdamW
from minibert import BertConfig, BertForSequenceClassification, BertModel

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
    assume(m <= d)  # a bottleneck of the model (add_adapter refuses a wider one)
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
    add_adapter(model, "ln", AdapterConfig(bottleneck_size=3, layer_norm=True))
    with pytest.raises(ValueError, match="ln_before"):
        export_adapterhub(model, "ln")
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


# ---- save / load ----------------------------------------------------------------------------------------------
@given(shape=model_shapes(), cls=model_classes, config=config_strategy, dtype=st.sampled_from((np.float32, np.float64)),
       seed=st.integers(0, 99))
def test_save_load_round_trip_for_any_config_and_policy(shape, cls, config, dtype, seed):
    """The file holds exactly what the policy trains (pooler too when it trains), and loading it onto a
    fresh base restores every parameter and every output bit for bit."""
    overrides, m = shape
    config = AdapterConfig.from_dict({**config.to_dict(), "bottleneck_size": m})

    def fresh():
        return cls(tiny_config(num_labels=3, **overrides), dtype=dtype, seed=0).eval()

    model = fresh()
    add_adapter(model, "task", config, seed=seed)
    add_adapter(model, "other", AdapterConfig(bottleneck_size=1), seed=seed + 1, set_active=False)  # D >= 1
    expected = expected_trainable(model, "task", config)
    rng = np.random.default_rng(seed)
    for k, p in model.named_parameters():  # as if trained: everything the policy trains differs from a fresh base
        if k in expected:
            p.data = (p.data + rng.normal(0, 0.1, p.shape)).astype(dtype)
    saved, out = snapshot(model), run(model)
    with tempfile.TemporaryDirectory() as folder:
        sizes = save_adapter(model, "task", folder)
        tensors = load_adapter_file(folder)
        meta = json.loads(open(f"{folder}/adapter_config.json").read())
        target = fresh()
        assert load_adapter(target, folder) == "task"
    assert set(tensors) == expected and meta["parameters"] == sorted(expected)
    assert all(tensors[k].dtype == np.dtype(dtype) and np.array_equal(tensors[k], saved[k]) for k in tensors)
    assert AdapterConfig.from_dict(meta["config"]) == config
    assert sizes["adapter_bytes"] > sum(v.nbytes for v in tensors.values())
    got = snapshot(target)
    assert set(got) == set(saved) - {k for k in saved if ".adapters.other." in k}
    assert_same_arrays({k: saved[k] for k in got}, got)
    last, pool = run(target)
    assert np.array_equal(last, out[0]) and np.array_equal(pool, out[1])


@pytest.mark.parametrize("preset", ["houlsby", "adapterhub-houlsby"])
def test_load_onto_a_base_freshly_loaded_from_disk_is_bit_exact(tmp_path, preset):
    """The deployment path in float32: one pretrained base on disk, the task's adapter file beside it."""
    BertModel(tiny_config(vocab_size=300), dtype=np.float32, seed=0).save_pretrained(tmp_path / "base")
    model = BertForSequenceClassification.from_pretrained(tmp_path / "base", dtype=np.float32, num_labels=3)
    add_adapter(model, "sst2", AdapterConfig.from_preset(preset, bottleneck_size=TINY["M"]), seed=1)
    train_adapter(model, "sst2")
    rng = np.random.default_rng(0)
    for p in model.parameters():  # as if trained: what the policy trains moves, nothing else
        if p.requires_grad:
            p.data = (p.data + rng.normal(0, 0.1, p.shape)).astype(np.float32)
    model.eval()
    saved, out = snapshot(model), run(model)
    save_adapter(model, "sst2", tmp_path / "sst2")
    fresh = BertForSequenceClassification.from_pretrained(tmp_path / "base", dtype=np.float32, num_labels=3).eval()
    assert not np.array_equal(run(fresh)[0], out[0])
    load_adapter(fresh, tmp_path / "sst2")
    assert_same_arrays(saved, snapshot(fresh))
    got = run(fresh)
    assert np.array_equal(got[0], out[0]) and np.array_equal(got[1], out[1])


def load_adapter_file(folder):
    from safetensors.numpy import load_file
    return load_file(f"{folder}/adapter.safetensors")


def test_adapter_file_size_against_the_full_model(tmp_path, capsys):
    """all-MiniLM-L6-v2's shape in float32 with a 2-label head: the 'houlsby' adapter file holds its 605,954
    trainable floats and a header, 2.7% of the model's 22.7 M parameters."""
    config = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
                        num_labels=2)
    model = BertForSequenceClassification(config, dtype=np.float32, seed=0)
    add_adapter(model, "sst2", "houlsby")
    summary = adapter_summary(model)
    assert summary["trainable_parameters"] == 595_200 + 13 * 2 * 384 + 384 * 2 + 2 == 605_954
    sizes = save_adapter(model, "sst2", tmp_path)
    raw = (tmp_path / "adapter.safetensors").read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])  # safetensors: u64 header length, JSON header, raw tensors
    assert sizes["adapter_bytes"] == len(raw) == 8 + header_len + 4 * 605_954
    assert sizes["model_bytes"] == 4 * (22_713_216 + 384 * 2 + 2)
    assert sizes["percent_of_model"] == pytest.approx(100 * len(raw) / sizes["model_bytes"], rel=1e-12)
    assert 2.6 < sizes["percent_of_model"] < 2.8
    with capsys.disabled():
        print(f"\n    adapter file {sizes['adapter_bytes']:,} B + config {sizes['config_bytes']:,} B vs model "
              f"{sizes['model_bytes']:,} B: {sizes['percent_of_model']:.2f}%")




# ---- bugs found by the audit ----------------------------------------------------------------------------------
def test_a_config_object_used_twice_keeps_each_adapter_its_own(tmp_path):
    """Editing a config after add_adapter must not change what the first adapter records (and saves)."""
    model = build()
    config = AdapterConfig(bottleneck_size=4, init_std=0.3)
    add_adapter(model, "a", config, seed=1)
    config.bottleneck_size, config.non_linearity = 2, "relu"
    add_adapter(model, "b", config, seed=2)
    assert (configs(model)["a"].bottleneck_size, configs(model)["a"].non_linearity) == (4, "gelu_new")
    assert configs(model)["b"].bottleneck_size == 2
    set_active_adapter(model, "a")
    out = run(model)
    save_adapter(model, "a", tmp_path)
    fresh = build()
    load_adapter(fresh, tmp_path)
    assert np.array_equal(run(fresh)[0], out[0])


def test_loading_over_an_adapter_with_another_config_is_refused(tmp_path):
    """Same shapes, other function: copying the weights would not restore the saved adapter."""
    model = build()
    add_adapter(model, "t", AdapterConfig(bottleneck_size=4, init_std=0.3), seed=1)
    save_adapter(model, "t", tmp_path)
    other = build()
    add_adapter(other, "t", AdapterConfig(bottleneck_size=4, init_std=0.3, non_linearity="relu", parallel=True),
                seed=5)
    before = snapshot(other)
    with pytest.raises(ValueError, match="non_linearity: model 'relu' vs file 'gelu_new'.*parallel"):
        load_adapter(other, tmp_path)
    assert_same_arrays(before, snapshot(other))  # nothing copied
    assert configs(other)["t"].non_linearity == "relu"


def test_loading_onto_a_base_of_another_depth_is_refused(tmp_path):
    model = build(num_hidden_layers=3)
    add_adapter(model, "t", AdapterConfig(bottleneck_size=3), seed=1)
    save_adapter(model, "t", tmp_path)
    for depth in (2, 4):
        target = build(num_hidden_layers=depth)
        with pytest.raises(ValueError, match=f"base_model.num_hidden_layers is 3, this model has {depth}"):
            load_adapter(target, tmp_path)
        assert not configs(target) and not any(".adapters." in k for k, _ in target.named_parameters())




def test_an_adapter_saved_by_an_earlier_version_loads_and_computes_the_same_logits():
    """Written by commit fb55466 (tools/make_adapter_compat_fixture.py), with its "gelu_tanh" activation
    name and no "kind" key; the logits are that version's."""
    from helpers import FIXTURES, TOL

    folder = FIXTURES / "adapter_written_by_fb55466"
    model = BertForSequenceClassification(tiny_config(num_labels=3), dtype=np.float64, seed=0)
    assert load_adapter(model, folder) == "sst2"
    assert configs(model)["sst2"].non_linearity == "gelu_new"
    model.eval()
    ids, mask, types = tiny_inputs()
    expected = np.load(folder / "logits_by_fb55466.npy", allow_pickle=False)
    np.testing.assert_allclose(model(ids, mask, types).logits.data, expected, rtol=0, atol=TOL["f64_same_math"])


@pytest.mark.parametrize("edit, message", [
    ({"dtype": "float16"}, "dtype must be 'float32' or 'float64'"),
    ({"dtype": "float32"}, "dtype 'float32', but"),  # the weights are float64
    ({"parameters": "all"}, "parameters must be a list"),
    ({"comment": "x"}, "unknown field 'comment'"),
    ({"base_model": {"hidden_size": 12, "num_hidden_layers": "2"}}, "num_hidden_layers must be a positive integer"),
])
def test_every_field_of_adapter_config_json_is_checked(tmp_path, edit, message):
    import json

    model = build()
    add_adapter(model, "t", AdapterConfig(bottleneck_size=3), seed=1)
    save_adapter(model, "t", tmp_path)
    path = tmp_path / "adapter_config.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, **edit}))
    with pytest.raises(ValueError, match=message):
        load_adapter(build(), tmp_path)

