"""Every preset by name: what it builds, on both model classes, and that its doc cites its source."""


import numpy as np
import pytest
from adapter_helpers import (
    build,
    expected_trainable,
    run,
    slot_adapters,
    sublayer_slots,
)
from helpers import TINY

from adapters import (
    PRESETS,
    AdapterConfig,
    adapter_summary,
    add_adapter,
    train_adapter,
)
from adapters.bottleneck.config import BOTTLENECK_PRESETS
from minibert import BertForSequenceClassification, BertModel

# ---- presets --------------------------------------------------------------------------------------------------
SOURCES = ("adapter-bert", "Houlsby2019", "AdapterHub", "Pfeiffer2021", "He2022", "Hu2021", "PEFT", "Kalajdzievski2023")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_doc_cites_its_source(name):
    doc = PRESETS[name]["doc"]
    assert any(source in doc for source in SOURCES), f"{name}: {doc!r} names none of {SOURCES}"


@pytest.mark.parametrize("name", sorted(BOTTLENECK_PRESETS))
@pytest.mark.parametrize("cls", [BertModel, BertForSequenceClassification])
def test_every_preset_by_name_builds_what_it_says(name, cls):
    """add_adapter(model, name, "<preset>") inserts modules of the preset's size, form and placement."""
    model = build(cls, num_labels=3, hidden_size=64, num_attention_heads=4)  # D = 64: houlsby's M = 64 fits
    base = run(model)
    config = add_adapter(model, "t", name)
    assert config == AdapterConfig.from_preset(name)
    fields = PRESETS[name]["fields"]
    m = fields["bottleneck_size"] or int(64 // fields["reduction_factor"])  # D = 64: reduction 16 -> 4, 2 -> 32
    sublayers = {"both": {"attention", "ffn"}, "attention": {"attention"}, "ffn": {"ffn"}}[config.placement]
    filled = set()
    for _, kind, slot in sublayer_slots(model):
        if "t" not in slot_adapters(slot):
            assert slot.hook is None
            continue
        filled.add(kind)
        a = slot.adapters["t"]
        assert (a.hidden_size, a.bottleneck_size) == (64, m)
        assert (a.non_linearity, a.parallel, a.layer_norm is not None) == (config.non_linearity, config.parallel,
                                                                             config.layer_norm)
        assert slot.hook == slot.adapters["t"].forward
    assert filled == sublayers
    assert len(adapter_summary(model)["modules"]) == TINY["L"] * len(sublayers)
    out = run(model)
    if config.init in ("zeros", "mam_adapter"):  # W_up = 0: exactly the base model
        assert np.array_equal(out[0], base[0])
    else:
        assert not np.array_equal(out[0], base[0])


def test_pfeiffer_is_ffn_only_with_a_reduction_factor_and_trains_adapters_and_head():
    c = AdapterConfig.from_preset("pfeiffer")
    assert (c.placement, c.reduction_factor, c.bottleneck_size, c.non_linearity) == ("ffn", 16, None, "relu")
    assert (c.parallel, c.layer_norm) == (False, False)
    assert (c.train_layer_norms, c.train_head, c.train_pooler) == (False, True, False)
    model = build(BertForSequenceClassification, num_labels=2, hidden_size=32, num_attention_heads=4)  # M = 32 / 16
    add_adapter(model, "p", "pfeiffer")
    assert set(train_adapter(model, "p")) == expected_trainable(model, "p", c)
    assert sum(1 for k, _ in model.named_parameters() if k.endswith(".adapters.p.down.weight")) == TINY["L"]


