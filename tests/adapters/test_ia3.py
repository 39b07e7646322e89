"""(IA)^3 (Liu2022): the three facts for any sizes, the two ways it rescales a Linear, PEFT's defaults for BERT.

y = l * (W x + b) on the keys and values (l of size d_out), y = W (l * x) + b on a feed-forward module (l of size
d_in); l = 1 at init, so the model starts exactly at the base.
"""

import numpy as np
import pytest
from adapter_helpers import build, run
from helpers import TINY, TOL, tiny_inputs
from hypothesis import given
from hypothesis import strategies as st

from adapters import ConfigError, IA3Config, adapter_summary, add_adapter, load_adapter, save_adapter, train_adapter
from adapters.ia3.kind import IA3
from adapters.ia3.module import IA3Scale
from autograd import Tensor
from autograd.gradcheck import gradcheck
from minibert import BertForSequenceClassification, BertModel
from minibert_adapters import testing


def randomise(model, name, seed=3):
    rng = np.random.default_rng(seed)
    for key, p in model.named_parameters():
        if f".adapters.{name}." in key:
            p.data = 1.0 + rng.normal(0.0, 0.3, p.shape)


def test_peft_defaults_scale_keys_and_values_at_the_output_and_every_output_dense_at_the_input():
    model = build(seed=0)
    add_adapter(model, "t", "ia3")
    rows = {r["module"].removesuffix(".adapters.t"): r for r in adapter_summary(model, "t")["modules"]}
    D, F_ = TINY["D"], TINY["F"]
    for i in range(TINY["L"]):
        assert rows[f"encoder.layer.{i}.attention.self.key"]["formula"] == D            # output-scaled: d_out
        assert rows[f"encoder.layer.{i}.attention.self.value"]["formula"] == D
        assert rows[f"encoder.layer.{i}.attention.output.dense"]["formula"] == D        # input-scaled: d_in
        assert rows[f"encoder.layer.{i}.output.dense"]["formula"] == F_                 # the FFN's input, d_ff
    assert len(rows) == 4 * TINY["L"] == IA3.expected_modules(IA3Config(), model.config)
    assert adapter_summary(model, "t")["adapter_parameters"] == TINY["L"] * (3 * D + F_)


@given(st.data())
def test_ia3_starts_exactly_at_the_base_model_and_counts_its_formula(data):
    bert = data.draw(testing.bert_configs())
    config = data.draw(testing.adapter_configs(bert, kind="ia3"))
    model = BertModel(bert, dtype=np.float64, seed=1).eval()
    ids, mask, types = tiny_inputs(V=bert.vocab_size, T=min(7, bert.max_position_embeddings))
    base = model(ids, mask, types).last_hidden_state.data
    add_adapter(model, "t", config)
    assert np.array_equal(model(ids, mask, types).last_hidden_state.data, base)
    for row in adapter_summary(model, "t")["modules"]:
        assert row["counted"] == row["formula"] == (row["d_in"] if row["scales"] == "input" else row["d_out"])


def test_output_and_input_scaling_are_the_formulas():
    model = build(seed=0)
    add_adapter(model, "t", "ia3")
    randomise(model, "t")
    x = np.random.default_rng(4).normal(0, 1, (2, 3, TINY["D"]))
    key = model.encoder.layer[0].attention.self.key
    l_k = key.adapters["t"].ia3_l.data
    np.testing.assert_allclose(key(Tensor(x)).data, l_k * (x @ key.weight.data.T + key.bias.data), rtol=0,
                               atol=1e-12)
    dense = model.encoder.layer[1].attention.output.dense
    l_d = dense.adapters["t"].ia3_l.data
    np.testing.assert_allclose(dense(Tensor(x)).data, (l_d * x) @ dense.weight.data.T + dense.bias.data, rtol=0,
                               atol=1e-12)
    # the two are different functions: scaling the wrong side is caught
    assert np.abs(dense(Tensor(x)).data - l_d * (x @ dense.weight.data.T + dense.bias.data)).max() > 1e-3


@pytest.mark.parametrize("feedforward", [False, True])
def test_gradcheck_ia3_module_alone(feedforward):
    rng = np.random.default_rng(0)
    module = IA3Scale(7, 5, feedforward, dtype=np.float64)
    module.ia3_l.data = 1.0 + rng.normal(0, 0.3, module.ia3_l.shape)
    w, b = Tensor(rng.normal(0, 1, (5, 7))), Tensor(rng.normal(0, 1, 5))
    x = Tensor(rng.normal(0, 1, (2, 3, 7)), requires_grad=True)
    weights = rng.standard_normal((2, 3, 5))
    assert gradcheck(lambda x, *ps: module(x, lambda v: v @ w.transpose(1, 0) + b) * Tensor(weights),
                     [x, *module.parameters()], **TOL["gradcheck"])


def test_gradients_reach_only_the_vectors_and_the_head(tmp_path):
    model = build(BertForSequenceClassification, num_labels=3, seed=0)
    add_adapter(model, "t", "ia3")
    randomise(model, "t")
    trainable = set(train_adapter(model, "t"))
    assert trainable == {k for k in dict(model.named_parameters()) if ".adapters.t." in k or k.startswith("classifier")}
    ids, mask, types = tiny_inputs()
    model(ids, mask, types, labels=np.array([0, 2])).loss.backward()
    assert {k for k, p in model.named_parameters() if p.grad is not None} == trainable
    model.eval()
    out = run(model)
    save_adapter(model, "t", tmp_path / "t")
    fresh = build(BertForSequenceClassification, num_labels=3, seed=0).eval()
    load_adapter(fresh, tmp_path / "t")
    assert np.array_equal(run(fresh)[0], out[0])


def test_bad_ia3_configs_are_refused_by_name():
    with pytest.raises(ConfigError, match="target_modules must not be empty"):
        IA3Config(target_modules=[])
    with pytest.raises(ConfigError, match="feedforward_modules must be list or str"):
        IA3Config(feedforward_modules=None)
