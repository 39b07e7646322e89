"""AdapterConfig and its presets: each column of the table in docs/conventions.md by name, overrides, validation."""

import math

import pytest
from adapter_helpers import build, tiny_preset
from helpers import TINY

import autograd.functional as F
from adapters import PRESETS, AdapterConfig, AdapterSet, ConfigError, LoraConfig, PrefixConfig, add_adapter
from adapters.bottleneck.config import BOTTLENECK_PRESETS, INITS, PLACEMENTS


@pytest.mark.parametrize("name", sorted(BOTTLENECK_PRESETS))
def test_every_preset_builds_and_round_trips_through_a_dict(name):
    config = AdapterConfig.from_preset(name)
    assert isinstance(config, AdapterConfig)
    assert config.non_linearity in F.ACTIVATIONS and config.init in INITS and config.placement in PLACEMENTS
    assert config.size_for(384) >= 1
    assert AdapterConfig.from_dict(config.to_dict()) == config
    assert PRESETS[name]["doc"].strip()


def test_houlsby_is_the_original_code():
    c = AdapterConfig.from_preset("houlsby")
    assert (c.bottleneck_size, c.non_linearity, c.init, c.init_std) == (64, "gelu_new", "truncated_normal", 1e-3)
    assert (c.placement, c.parallel, c.layer_norm) == ("both", False, False)
    assert c.train_layer_norms is True and c.train_head is True and c.train_pooler is False
    assert c.sublayers == ("attention", "ffn")
    assert c.size_for(12) == 64 and c.size_for(384) == 64
    assert AdapterConfig() == c  # the dataclass defaults are the original code


def test_houlsby_paper_differs_only_in_init_std():
    paper, code = AdapterConfig.from_preset("houlsby-paper").to_dict(), AdapterConfig.from_preset("houlsby").to_dict()
    assert paper["init_std"] == 1e-2
    assert {k for k in paper if paper[k] != code[k]} == {"init_std"}


def test_adapterhub_houlsby():
    c = AdapterConfig.from_preset("adapterhub-houlsby")
    assert c.bottleneck_size is None and c.reduction_factor == 16
    assert c.size_for(384) == 384 // 16 == 24 and c.size_for(768) == 48 and c.size_for(12) == 1  # at least 1
    assert (c.non_linearity, c.init, c.init_std) == ("silu", "normal", 0.02)
    assert c.train_layer_norms is False and c.train_head is True and c.train_pooler is False
    assert c.placement == "both" and not c.parallel


@pytest.mark.parametrize("name, field, value", [
    ("houlsby-attention-only", "placement", "attention"), ("houlsby-ffn-only", "placement", "ffn"),
    ("houlsby-parallel", "parallel", True), ("houlsby-layernorm", "layer_norm", True),
    ("houlsby-relu", "non_linearity", "relu"), ("houlsby-tanh", "non_linearity", "tanh"),
    ("houlsby-zero-init", "init", "zeros"),
])
def test_ablations_change_one_field_of_houlsby(name, field, value):
    ablation, code = AdapterConfig.from_preset(name).to_dict(), AdapterConfig.from_preset("houlsby").to_dict()
    assert ablation[field] == value
    assert {k for k in ablation if ablation[k] != code[k]} == {field}


def test_sublayers_follow_placement():
    assert AdapterConfig(placement="attention").sublayers == ("attention",)
    assert AdapterConfig(placement="ffn").sublayers == ("ffn",)


def test_overrides():
    c = AdapterConfig.from_preset("houlsby", bottleneck_size=8, non_linearity="relu", init_std=0.1)
    assert (c.bottleneck_size, c.non_linearity, c.init_std, c.init) == (8, "relu", 0.1, "truncated_normal")
    # giving a reduction factor to a preset with a fixed size switches it to the factor
    r = AdapterConfig.from_preset("houlsby", reduction_factor=4)
    assert r.bottleneck_size is None and r.size_for(384) == 96
    # an explicit size wins over a preset's reduction factor
    assert AdapterConfig.from_preset("adapterhub-houlsby", bottleneck_size=8).size_for(384) == 8
    # overriding never edits the preset table
    assert AdapterConfig.from_preset("houlsby").bottleneck_size == 64
    assert PRESETS["houlsby"]["fields"]["bottleneck_size"] == 64


@pytest.mark.parametrize("field, value", [
    ("bottleneck_size", 0), ("bottleneck_size", -3), ("bottleneck_size", 2.5), ("bottleneck_size", True),
    ("reduction_factor", 0), ("reduction_factor", -16), ("reduction_factor", math.nan),
    ("non_linearity", "softplus"), ("non_linearity", "GELU"), ("init", "xavier"), ("init_std", -1e-3),
    ("init_std", math.nan), ("init_std", math.inf), ("placement", "output"),
])
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        AdapterConfig(**{field: value})
    with pytest.raises(ValueError, match=field):
        AdapterConfig.from_preset("houlsby", **{field: value})


def test_size_must_be_given_somehow():
    with pytest.raises(ValueError, match="bottleneck_size or reduction_factor"):
        AdapterConfig(bottleneck_size=None)


def test_unknown_preset_and_unknown_fields():
    with pytest.raises(ValueError, match="unknown adapter preset 'houlsbee'") as e:
        AdapterConfig.from_preset("houlsbee")
    assert "houlsby" in str(e.value)  # the message lists the choices
    with pytest.raises(ValueError, match="bottleneck"):
        AdapterConfig.from_dict({"bottleneck": 8})
    with pytest.raises(ValueError, match="bottleneck"):
        AdapterConfig.from_preset("houlsby", bottleneck=8)


def test_activation_names_from_other_vocabularies_mean_the_same_function():
    """adapter-bert's tanh GELU was saved as "gelu_tanh" and AdapterHub says "swish": both still load."""
    assert AdapterConfig(non_linearity="gelu_tanh").non_linearity == "gelu_new"
    assert AdapterConfig(non_linearity="swish").non_linearity == "silu"
    assert AdapterConfig(non_linearity="gelu_tanh") == AdapterConfig(non_linearity="gelu_new")


def test_a_numpy_integer_is_an_integer_size():
    import numpy as np

    config = AdapterConfig(bottleneck_size=np.int64(8))
    assert config.bottleneck_size == 8 and type(config.bottleneck_size) is int


# The tiny model: D = 12, F = 37, P = 16.
@pytest.mark.parametrize("config, message", [
    (AdapterConfig(bottleneck_size=1000), "bottleneck_size 1000 is larger than the hidden size 12"),
    (AdapterConfig(bottleneck_size=None, reduction_factor=16),
     "reduction_factor 16 on the hidden size 12 gives a bottleneck of 0.75, less than 1"),
    (AdapterConfig(bottleneck_size=None, reduction_factor=5),
     "reduction_factor 5 on the hidden size 12 does not divide it: 12 / 5 = 2.4 would be rounded down to 2"),
    (AdapterConfig(bottleneck_size=None, reduction_factor=0.5),
     "reduction_factor 0.5 on the hidden size 12 gives a bottleneck of 24, wider than the hidden size"),
    (LoraConfig(r=13, target_modules=["intermediate.dense"]),
     "r 13 is larger than min(d_in, d_out) = 12 of encoder.layer.0.intermediate.dense (12 -> 37"),
    (PrefixConfig(num_virtual_tokens=16), "num_virtual_tokens 16 leaves no position for the text: the model has "
                                          "max_position_embeddings 16"),
])
def test_a_size_the_model_cannot_take_is_refused_naming_the_field_value_and_model_size(config, message):
    model = build()
    with pytest.raises(ConfigError) as e:
        add_adapter(model, "t", config)
    assert f"{type(config).__name__} does not fit this model: {message}" in str(e.value)
    assert not AdapterSet.of(model).configs and not [k for k, _ in model.named_parameters() if ".adapters." in k]


@pytest.mark.parametrize("config", [AdapterConfig(bottleneck_size=TINY["D"]), tiny_preset("houlsby", bottleneck_size=1),
                                    AdapterConfig(bottleneck_size=None, reduction_factor=3),  # M = 4
                                    AdapterConfig(bottleneck_size=None, reduction_factor=12),  # M = 1
                                    LoraConfig(r=TINY["D"]), PrefixConfig(num_virtual_tokens=TINY["P"] - 1)])
def test_sizes_up_to_the_models_are_taken(config):
    add_adapter(build(), "t", config)
