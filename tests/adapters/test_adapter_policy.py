"""One rule for what trains, what is counted and what is decayed (adapters.policy), by module type and role."""

import numpy as np
import pytest
from adapter_helpers import build, tiny_preset

from adapters import AdapterConfig, AdapterSet, Policy, add_adapter, parameter_roles, set_active_adapter, train_adapter
from adapters.policy import decays, weight_decay_groups
from autograd import nn
from minibert import BertForSequenceClassification


def decay_split(model):
    groups = weight_decay_groups(model, 0.01)
    names = {id(p): k for k, p in model.named_parameters()}
    return ({names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]},
            {names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"]})


def test_an_adapters_own_layer_norm_is_not_decayed():
    """With the LayerNorm-inside-the-adapter ablation, that LayerNorm is exempt from weight decay like every
    other LayerNorm, whatever its attribute is called; the adapter's biases too; its matrices are decayed."""
    model = build(BertForSequenceClassification, num_labels=3)
    add_adapter(model, "t", tiny_preset("houlsby-layernorm"))
    train_adapter(model, "t")
    decayed, exempt = decay_split(model)
    inner = {k for k in exempt if ".adapters.t.layer_norm." in k}
    assert len(inner) == 2 * 2 * model.config.num_hidden_layers  # weight and bias, two adapters per layer
    assert not {k for k in decayed if ".layer_norm." in k or ".LayerNorm." in k or k.endswith(".bias")}
    assert {k for k in decayed if ".adapters.t." in k} == {
        k for k, _ in model.named_parameters() if ".adapters.t." in k and k.endswith(("down.weight", "up.weight"))}
    assert "classifier.weight" in decayed and "classifier.bias" in exempt


def test_decay_is_decided_by_module_type_not_by_name():
    renamed = nn.Module()
    renamed.gain = nn.LayerNorm(4)  # a LayerNorm under an unusual name
    renamed.proj = nn.Linear(4, 3)
    assert not decays(renamed.gain, renamed.gain.weight) and not decays(renamed.gain, renamed.gain.bias)
    assert decays(renamed.proj, renamed.proj.weight) and not decays(renamed.proj, renamed.proj.bias)


def test_roles_come_from_the_owning_module():
    model = build(BertForSequenceClassification, num_labels=3)
    add_adapter(model, "t", AdapterConfig(bottleneck_size=3, layer_norm=True))
    roles = {k: role for k, (role, _, _) in parameter_roles(model).items()}
    assert roles["classifier.weight"].kind == "head"
    assert roles["bert.pooler.dense.weight"].kind == "pooler"
    assert roles["bert.embeddings.LayerNorm.weight"].kind == "layer_norm"
    assert roles["bert.embeddings.word_embeddings.weight"].kind == "base"
    assert roles["bert.encoder.layer.1.output.LayerNorm.bias"] == type(roles["classifier.weight"])(
        "layer_norm", layer=1)
    inner = roles["bert.encoder.layer.0.output.adapters.t.layer_norm.weight"]
    assert (inner.kind, inner.adapter, inner.layer) == ("adapter", "t", 0)  # an adapter's LayerNorm is the adapter's
    assert set(roles) == {k for k, _ in model.named_parameters()}


@pytest.mark.parametrize("policy, expected", [
    (Policy(layer_norms=True, head=True), lambda k: ".LayerNorm." in k or k.startswith("classifier.")),
    (Policy(layers=frozenset({1}), pooler=True, head=True),
     lambda k: k.startswith(("bert.encoder.layer.1.", "bert.pooler.", "classifier."))),
    (Policy(everything=True), lambda k: True),
])
def test_the_papers_baselines_are_policies(policy, expected):
    from adapters import apply_policy

    model = build(BertForSequenceClassification, num_labels=3)
    trainable = set(apply_policy(model, policy))
    assert trainable == {k for k, _ in model.named_parameters() if expected(k)}
    assert all(p.requires_grad == (k in trainable) for k, p in model.named_parameters())


def test_each_task_has_its_own_layer_norm_and_head_modules_switched_by_reference():
    model = build(BertForSequenceClassification, num_labels=3)
    base_ln, base_head = model.bert.encoder.layer[0].output.LayerNorm, model.classifier
    add_adapter(model, "a", AdapterConfig(bottleneck_size=3))
    add_adapter(model, "b", AdapterConfig(bottleneck_size=3))
    b_ln = model.bert.encoder.layer[0].output.LayerNorm  # "b" is active now: its own modules are in place
    set_active_adapter(model, "a")
    assert model.bert.encoder.layer[0].output.LayerNorm is not b_ln is not base_ln
    model.classifier.weight.data += 1.0  # task a trains its head ...
    set_active_adapter(model, None)
    assert model.classifier is base_head and model.bert.encoder.layer[0].output.LayerNorm is base_ln
    set_active_adapter(model, "b")
    assert not np.array_equal(model.classifier.weight.data, AdapterSet.of(model).task_parameters("a")[
        "classifier.weight"].data)  # ... which task b's head does not share
    order = [k for k, _ in model.named_parameters()]
    set_active_adapter(model, "a")
    assert [k for k, _ in model.named_parameters()] == order  # swapping keeps every name in its place
