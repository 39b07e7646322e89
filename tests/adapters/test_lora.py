"""LoRA (Hu2021): the three facts for any sizes, PEFT's target matching, the scaling, merge and unmerge.

h = W x + b + s B A dropout(x) on every Linear target_modules names, s = alpha / r (rsLoRA: alpha / sqrt(r));
r (d_in + d_out) parameters per adapted Linear; B = 0 at init, so the model starts exactly at the base.
"""

import numpy as np
import pytest
from adapter_helpers import build, run, tiny_preset
from helpers import TINY, TOL, tiny_config, tiny_inputs
from hypothesis import given
from hypothesis import strategies as st

from adapters import (
    ConfigError,
    LoraConfig,
    adapter_summary,
    add_adapter,
    load_adapter,
    merge_adapter,
    save_adapter,
    train_adapter,
    unmerge_adapter,
)
from adapters.lora.kind import LORA, targets
from adapters.lora.module import LoraLinear
from autograd import Tensor
from autograd.gradcheck import gradcheck
from minibert import BertForSequenceClassification, BertModel
from minibert_adapters import testing

BERT_LINEARS = [f"encoder.layer.{i}.{n}" for i in range(TINY["L"]) for n in (
    "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
    "intermediate.dense", "output.dense")] + ["pooler.dense"]


def randomise(model, name, seed=3, std=0.3):
    """Trained-like LoRA weights (B non-zero), so a wrong formula changes the numbers."""
    rng = np.random.default_rng(seed)
    for key, p in model.named_parameters():
        if f".adapters.{name}." in key:
            p.data = rng.normal(0.0, std, p.shape)


@pytest.mark.parametrize("targets_, expected", [
    (["query", "value"], [n for n in BERT_LINEARS if n.endswith((".query", ".value"))]),
    (["dense"], [n for n in BERT_LINEARS if n.endswith(".dense")]),             # the pooler's too, as PEFT matches
    (["output.dense"], [n for n in BERT_LINEARS if n.endswith(".output.dense")]),  # attention.output.dense too
    (r"encoder\.layer\.0\..*", [n for n in BERT_LINEARS if n.startswith("encoder.layer.0.")]),  # a pattern: whole
    (["self.key"], [n for n in BERT_LINEARS if n.endswith(".key")]),
])
def test_target_modules_match_as_peft_matches_them(targets_, expected):
    model = build(seed=0)
    config = LoraConfig(r=2, target_modules=targets_)
    assert [path for path, _, _ in LORA.slots(model, config)] == expected
    assert LORA.expected_modules(config, model.config) == len(expected)
    # a bottleneck adapter's own Linears are never LoRA targets, even for ".*"
    add_adapter(model, "b", tiny_preset("houlsby"))
    assert [p for p, _, _ in LORA.slots(model, LoraConfig(r=2, target_modules=".*"))] == BERT_LINEARS
    assert targets(config, expected[0])


@given(st.data())
def test_every_adapted_linear_has_r_times_d_in_plus_d_out_parameters(data):
    bert = data.draw(testing.bert_configs())
    config = data.draw(testing.adapter_configs(bert, kind="lora"))
    model = BertModel(bert, dtype=np.float64, seed=0)
    add_adapter(model, "t", config)
    summary = adapter_summary(model, "t")
    assert len(summary["modules"]) == LORA.expected_modules(config, bert)
    for row in summary["modules"]:
        assert row["counted"] == row["formula"] == config.r * (row["d_in"] + row["d_out"])
    assert summary["adapter_parameters"] == sum(r["formula"] for r in summary["modules"])


@given(st.data())
def test_lora_starts_exactly_at_the_base_model(data):
    bert = data.draw(testing.bert_configs())
    config = data.draw(testing.adapter_configs(bert, kind="lora"))
    model = BertModel(bert, dtype=np.float64, seed=1).eval()
    ids, mask, types = tiny_inputs(V=bert.vocab_size, T=min(7, bert.max_position_embeddings))
    base = model(ids, mask, types).last_hidden_state.data
    add_adapter(model, "t", config, seed=2)
    assert np.array_equal(model(ids, mask, types).last_hidden_state.data, base)
    for key, p in model.named_parameters():
        if key.endswith("lora_B.weight"):
            assert not p.data.any()


def test_lora_output_is_w_x_plus_b_plus_s_b_a_x():
    model = build(seed=0)
    for rslora, scaling in ((False, 16 / 4), (True, 16 / 2)):
        name = f"t{int(rslora)}"
        add_adapter(model, name, LoraConfig(r=4, alpha=16.0, target_modules=["value"], use_rslora=rslora))
        randomise(model, name)
        linear = model.encoder.layer[1].attention.self.value
        module = linear.adapters[name]
        assert module.scaling == scaling
        x = np.random.default_rng(4).normal(0, 1, (2, 3, TINY["D"]))
        want = x @ linear.weight.data.T + linear.bias.data + scaling * (x @ module.lora_A.weight.data.T) @ \
            module.lora_B.weight.data.T
        np.testing.assert_allclose(linear(Tensor(x)).data, want, rtol=0, atol=1e-12)
        wrong = x @ linear.weight.data.T + linear.bias.data + 16 * (x @ module.lora_A.weight.data.T) @ \
            module.lora_B.weight.data.T  # the classic bug: alpha instead of alpha / r
        assert np.abs(linear(Tensor(x)).data - wrong).max() > 1e-3


@pytest.mark.parametrize("d_in, d_out, r", [(7, 5, 3), (12, 37, 2)])
def test_gradcheck_lora_module_alone(d_in, d_out, r):
    rng = np.random.default_rng(0)
    module = LoraLinear(d_in, d_out, r, scaling=1.7, dtype=np.float64, rng=rng)
    module.lora_B.weight.data = rng.normal(0, 0.5, (d_out, r))
    w, b = Tensor(rng.normal(0, 1, (d_out, d_in))), Tensor(rng.normal(0, 1, d_out))
    x = Tensor(rng.normal(0, 1, (2, 3, d_in)), requires_grad=True)

    def affine(v):
        return v @ w.transpose(1, 0) + b

    weights = rng.standard_normal((2, 3, d_out))
    assert gradcheck(lambda x, *ps: module(x, affine) * Tensor(weights), [x, *module.parameters()],
                     **TOL["gradcheck"])


def test_gradients_reach_only_lora_and_the_head():
    model = build(BertForSequenceClassification, num_labels=3, seed=0)
    add_adapter(model, "t", "lora")
    randomise(model, "t")
    trainable = set(train_adapter(model, "t"))
    assert trainable == {k for k in dict(model.named_parameters()) if ".adapters.t." in k or k.startswith("classifier")}
    ids, mask, types = tiny_inputs()
    model(ids, mask, types, labels=np.array([0, 2])).loss.backward()
    with_grad = {k for k, p in model.named_parameters() if p.grad is not None}
    assert with_grad == trainable


def test_merge_gives_the_unmerged_outputs_and_unmerge_restores_every_weight_bit_for_bit():
    model = build(seed=0).eval()
    add_adapter(model, "t", "lora-dense-rs")
    randomise(model, "t")
    before = {k: p.data.copy() for k, p in model.named_parameters()}
    unmerged = run(model)[0]
    merge_adapter(model, "t")
    np.testing.assert_allclose(run(model)[0], unmerged, rtol=0, atol=1e-12)
    assert any(not np.array_equal(p.data, before[k]) for k, p in model.named_parameters())  # W really changed
    with pytest.raises(ValueError, match="already merged"):
        merge_adapter(model, "t")
    unmerge_adapter(model, "t")
    for k, p in model.named_parameters():
        assert np.array_equal(p.data, before[k]), k
    assert np.array_equal(run(model)[0], unmerged)


def test_lora_saves_and_loads_bit_for_bit(tmp_path):
    model = build(BertForSequenceClassification, num_labels=2, seed=0).eval()
    add_adapter(model, "t", LoraConfig(r=3, alpha=6.0, target_modules=["query", "output.dense"]))
    randomise(model, "t")
    out = run(model)
    save_adapter(model, "t", tmp_path / "t")
    fresh = build(BertForSequenceClassification, num_labels=2, seed=0).eval()
    load_adapter(fresh, tmp_path / "t")
    assert np.array_equal(run(fresh)[0], out[0])


@pytest.mark.parametrize("fields, message", [
    ({"r": 0}, "r must be a positive integer"), ({"r": 2.0}, "r must be int"),
    ({"target_modules": []}, "non-empty list"), ({"target_modules": ("query",)}, "target_modules must be list"),
    ({"use_rslora": "false"}, "use_rslora must be bool"), ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"init": "orthogonal"}, "init 'orthogonal'"),
])
def test_bad_lora_configs_are_refused_by_name(fields, message):
    with pytest.raises(ConfigError, match=message):
        LoraConfig(**fields)
    with pytest.raises(ConfigError, match=message):
        LoraConfig.from_dict({**LoraConfig().to_dict(), **fields})


def test_tiny_config_is_what_the_targets_were_written_for():
    assert tiny_config().num_hidden_layers == TINY["L"] == 2
