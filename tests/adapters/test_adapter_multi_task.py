"""Several named adapters on one frozen base: names, switching, removing, and the errors for bad names."""

import numpy as np
import pytest
from adapter_helpers import assert_same_arrays, build, configs, logits, loss_backward, run, snapshot, tiny_preset
from helpers import TINY, tiny_inputs

from adapters import (
    AdapterConfig,
    active_adapter,
    adapter_summary,
    add_adapter,
    export_adapterhub,
    remove_adapter,
    save_adapter,
    set_active_adapter,
    train_adapter,
)
from autograd import no_grad
from autograd.optim import AdamW
from minibert import BertForSequenceClassification, BertModel

L = TINY["L"]
LEAVES = ("down.weight", "down.bias", "up.weight", "up.bias")


def adapter_names(prefix, name, sublayers=("attention.output", "output")):
    return {f"{prefix}encoder.layer.{i}.{s}.adapters.{name}.{leaf}" for i in range(L) for s in sublayers
            for leaf in LEAVES}


@pytest.mark.parametrize("cls, prefix", [(BertModel, ""), (BertForSequenceClassification, "bert.")])
@pytest.mark.parametrize("placement, sublayers", [("both", ("attention.output", "output")),
                                                  ("attention", ("attention.output",)), ("ffn", ("output",))])
def test_parameter_names(cls, prefix, placement, sublayers):
    model = build(cls)
    base = set(dict(model.named_parameters()))
    add_adapter(model, "sst2", AdapterConfig(bottleneck_size=3, placement=placement))
    names = set(dict(model.named_parameters()))
    assert names - base == adapter_names(prefix, "sst2", sublayers)
    assert base <= names
    assert "encoder.layer.0.attention.output.adapters.sst2.down.weight" in {k.removeprefix("bert.") for k in names} \
        or placement == "ffn"


def test_inner_layer_norm_names():
    model = build()
    add_adapter(model, "ln", AdapterConfig(bottleneck_size=3, layer_norm=True))
    names = set(dict(model.named_parameters()))
    assert "encoder.layer.1.output.adapters.ln.layer_norm.weight" in names
    assert "encoder.layer.0.attention.output.adapters.ln.layer_norm.bias" in names


def _two_adapters(model):
    add_adapter(model, "sst2", AdapterConfig.from_preset("houlsby", bottleneck_size=4, init_std=0.3), seed=1)
    add_adapter(model, "cola", AdapterConfig.from_preset("houlsby", bottleneck_size=6, init_std=0.3), seed=2)


def test_switching_changes_outputs_and_never_the_base():
    model = build(BertForSequenceClassification, num_labels=3)
    base_params = snapshot(model)
    base_last, base_pool = run(model)
    _two_adapters(model)
    assert active_adapter(model) == "cola"  # the last one added is active
    cola = run(model)
    set_active_adapter(model, "sst2")
    assert active_adapter(model) == "sst2"
    sst2 = run(model)
    assert np.abs(sst2[0] - cola[0]).max() > 1e-3 and np.abs(sst2[0] - base_last).max() > 1e-3
    set_active_adapter(model, None)
    assert active_adapter(model) is None
    last, pool = run(model)
    assert np.array_equal(last, base_last) and np.array_equal(pool, base_pool)
    for name, want in (("cola", cola), ("sst2", sst2), ("cola", cola)):
        set_active_adapter(model, name)
        got = run(model)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert_same_arrays(base_params, snapshot(model), keys=base_params)  # every non-adapter array, bit for bit


def test_a_frozen_base_survives_training_one_task():
    """adapterhub-houlsby trains adapters + head only: the encoder stays the base, for every other task."""
    model = build(BertForSequenceClassification, num_labels=3)
    add_adapter(model, "a", AdapterConfig.from_preset("adapterhub-houlsby", bottleneck_size=4), seed=1)
    add_adapter(model, "b", AdapterConfig.from_preset("adapterhub-houlsby", bottleneck_size=4), seed=2)
    set_active_adapter(model, None)
    base = run(model)
    set_active_adapter(model, "b")
    b_before = run(model)
    before = snapshot(model)
    train_adapter(model, "a")
    opt = AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        loss_backward(model)
        opt.step()
    after = snapshot(model)
    moved = {k for k in before if not np.array_equal(before[k], after[k])}
    assert moved == {k for k in before if ".adapters.a." in k or k.startswith("classifier.")}
    model.eval()
    set_active_adapter(model, None)
    got = run(model)
    assert np.array_equal(got[0], base[0]) and np.array_equal(got[1], base[1])
    set_active_adapter(model, "b")
    got = run(model)
    assert np.array_equal(got[0], b_before[0]) and np.array_equal(got[1], b_before[1])


def hooked(slot):
    """The name of the adapter whose module the slot's hook calls (None: no hook)."""
    return None if slot.hook is None else slot.hook.__self__.name


def test_placement_only_fills_its_slots_and_switching_follows():
    model = build()
    add_adapter(model, "att", AdapterConfig(bottleneck_size=3, placement="attention", init_std=0.3), seed=1)
    add_adapter(model, "ffn", AdapterConfig(bottleneck_size=3, placement="ffn", init_std=0.3), seed=2)
    layer = model.encoder.layer[0]
    assert (hooked(layer.attention.output), hooked(layer.output)) == (None, "ffn")
    assert active_adapter(model) == "ffn"
    set_active_adapter(model, "att")
    assert (hooked(layer.attention.output), hooked(layer.output)) == ("att", None)
    assert active_adapter(model) == "att"


def test_add_without_activating():
    model = build()
    base = run(model)
    add_adapter(model, "quiet", AdapterConfig(bottleneck_size=3, init_std=0.3), set_active=False)
    assert active_adapter(model) is None
    assert np.array_equal(run(model)[0], base[0])


def test_remove_adapter():
    model = build(BertForSequenceClassification, num_labels=3)
    _two_adapters(model)
    set_active_adapter(model, "sst2")
    sst2 = run(model)
    set_active_adapter(model, "cola")
    n_before = model.num_parameters()
    remove_adapter(model, "cola")
    names = [k for k, _ in model.named_parameters()]
    assert not any(".adapters.cola." in k for k in names)
    assert set(names) >= adapter_names("bert.", "sst2")
    assert model.num_parameters() == n_before - 2 * L * (2 * 6 * TINY["D"] + TINY["D"] + 6)
    assert active_adapter(model) is None  # the removed one was active
    assert "cola" not in configs(model)
    set_active_adapter(model, "sst2")
    assert np.array_equal(run(model)[0], sst2[0])
    # its name is free again
    add_adapter(model, "cola", AdapterConfig(bottleneck_size=2))
    remove_adapter(model, "sst2")
    assert active_adapter(model) == "cola"  # removing an inactive adapter leaves the active one alone
    assert not any(".adapters.sst2." in k for k, _ in model.named_parameters())


def test_duplicate_and_unknown_names():
    model = build(BertForSequenceClassification)
    add_adapter(model, "sst2", AdapterConfig(bottleneck_size=3))
    with pytest.raises(ValueError, match="already exists"):
        add_adapter(model, "sst2", AdapterConfig(bottleneck_size=3))
    for call in (lambda: set_active_adapter(model, "rte"), lambda: remove_adapter(model, "rte"),
                 lambda: train_adapter(model, "rte"), lambda: adapter_summary(model, "rte"),
                 lambda: export_adapterhub(model, "rte"), lambda: save_adapter(model, "rte", "/nonexistent/x")):
        with pytest.raises(KeyError, match="no adapter named 'rte'") as e:
            call()
        assert "sst2" in str(e.value)  # lists the adapters there are
    assert active_adapter(model) == "sst2"  # a failed call changed nothing
    with pytest.raises(KeyError):
        remove_adapter(build(), "sst2")  # a model without any adapters


@pytest.mark.parametrize("bad", ["my.task", "", "2nd", "a b", 3])
def test_names_must_be_identifiers(bad):
    model = build()
    with pytest.raises(ValueError, match="identifier"):
        add_adapter(model, bad, AdapterConfig(bottleneck_size=3))
    assert not any(".adapters." in k for k, _ in model.named_parameters())


def test_bad_config_and_bad_model():
    with pytest.raises(TypeError, match="AdapterConfig or a preset name"):
        add_adapter(build(), "x", {"bottleneck_size": 3})
    with pytest.raises(ValueError, match="unknown adapter preset"):
        add_adapter(build(), "x", "houlsbee")
    with pytest.raises(TypeError, match="BertModel"):
        add_adapter(object(), "x", "houlsby")


def test_same_seed_same_adapter_different_seed_different_adapter():
    a, b, c = build(), build(), build()
    add_adapter(a, "t", tiny_preset("houlsby"), seed=11)
    add_adapter(b, "t", tiny_preset("houlsby"), seed=11)
    add_adapter(c, "t", tiny_preset("houlsby"), seed=12)
    assert_same_arrays(snapshot(a), snapshot(b))
    assert not np.array_equal(snapshot(a)["encoder.layer.0.output.adapters.t.down.weight"],
                              snapshot(c)["encoder.layer.0.output.adapters.t.down.weight"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adapters_take_the_model_dtype(dtype):
    from helpers import tiny_config
    model = BertForSequenceClassification(tiny_config(), dtype=dtype, seed=0)
    add_adapter(model, "t", tiny_preset("houlsby"))
    assert {p.dtype for k, p in model.named_parameters() if ".adapters." in k} == {np.dtype(dtype)}
    assert logits(model.eval()).dtype == np.dtype(dtype)


def _train_a_little(model, name, steps=3):
    """A few AdamW steps of adapter `name` under its policy (here: adapters + LayerNorms + head)."""
    trainable = train_adapter(model, name)
    params = dict(model.named_parameters())
    opt = AdamW([params[k] for k in trainable], lr=1e-2)
    for _ in range(steps):
        for p in params.values():
            p.grad = None
        loss_backward(model)
        opt.step()
    model.eval()


def test_each_task_keeps_its_own_layer_norms_and_head():
    """Houlsby's policy trains LayerNorms and the head per task: switching tasks swaps them, None restores the
    base model's, and saving a task that is not active saves that task's values (Houlsby2019 §2.1)."""
    model = build(BertForSequenceClassification, num_labels=3)
    base_params, base_logits = snapshot(model), logits(model)
    config = AdapterConfig(bottleneck_size=4, init="normal", init_std=0.05)
    assert config.train_layer_norms and config.train_head
    add_adapter(model, "a", config, seed=1)
    add_adapter(model, "b", config, seed=2)
    _train_a_little(model, "a")
    a_params, a_logits = snapshot(model), logits(model)
    ln = "bert.encoder.layer.0.output.LayerNorm.weight"
    assert not np.array_equal(a_params[ln], base_params[ln])            # a's training moved the LayerNorms
    assert not np.array_equal(a_params["classifier.weight"], base_params["classifier.weight"])

    set_active_adapter(model, "b")                                       # b starts from the base values
    b_start = snapshot(model)
    for k in base_params:
        assert np.array_equal(b_start[k], base_params[k]), k
    _train_a_little(model, "b")
    b_logits = logits(model)

    set_active_adapter(model, None)                                      # the plain base model, bit for bit
    assert_same_arrays(snapshot(model), base_params, keys=base_params)
    np.testing.assert_array_equal(logits(model), base_logits)
    set_active_adapter(model, "a")
    assert_same_arrays(snapshot(model), a_params, keys=[k for k in a_params if ".adapters.b." not in k])
    np.testing.assert_array_equal(logits(model), a_logits)
    set_active_adapter(model, "b")
    np.testing.assert_array_equal(logits(model), b_logits)

    # Saved while b is active, a's file holds a's LayerNorms and head; loaded on a fresh base it is task a.
    import tempfile

    from adapters import load_adapter
    with tempfile.TemporaryDirectory() as folder:
        save_adapter(model, "a", folder)
        fresh = build(BertForSequenceClassification, num_labels=3)
        load_adapter(fresh, folder)
        np.testing.assert_array_equal(logits(fresh), a_logits)

    remove_adapter(model, "b")                                           # removing the active task: base again
    assert active_adapter(model) is None
    np.testing.assert_array_equal(logits(model), base_logits)


def test_adapters_switched_off_in_a_span_of_layers_leave_those_layers_as_the_base():
    """Houlsby2019 §3.6 (Fig. 6): remove a trained adapter from some layers without retraining."""
    model = build()
    add_adapter(model, "t", AdapterConfig(bottleneck_size=3, init_std=0.3), seed=1)
    ids, mask, types = tiny_inputs()

    def hidden(layers):
        set_active_adapter(model, "t", layers=layers)
        with no_grad():
            return [h.data for h in model(ids, mask, types, output_hidden_states=True).hidden_states]

    full, first_only, second_only, none = hidden(None), hidden([0]), hidden(range(1, 2)), hidden([])
    assert np.array_equal(first_only[1], full[1]) and not np.allclose(first_only[2], full[2])
    assert np.array_equal(second_only[1], none[1]) and not np.allclose(second_only[2], none[2])
    set_active_adapter(model, None)
    with no_grad():
        base = model(ids, mask, types).last_hidden_state.data
    assert np.array_equal(none[-1], base)  # no layer adapted: the base model (its LayerNorms are the task's own,
    # which this config trains but has not changed yet)
    with pytest.raises(ValueError, match=r"layers \[2\] do not exist"):
        set_active_adapter(model, "t", layers=[0, 2])
