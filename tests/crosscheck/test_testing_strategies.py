"""minibert_adapters.testing: the public strategies draw what they promise, the reference case of any drawn model
passes `crosscheck`, a bug planted in any drawn model is named, and the property test in docs/crosscheck.md runs."""

import crosscheck_zoo as zoo
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from adapters import AdapterConfig, add_adapter, train_adapter
from minibert import BertModel
from minibert_adapters.crosscheck import crosscheck
from minibert_adapters.crosscheck.case import case_from_model
from minibert_adapters.testing import (
    adapter_configs,
    axis_sizes,
    bert_configs,
    random_weights,
    reference_case,
    token_batches,
)


@given(st.data())
def test_drawn_sizes_are_all_distinct_and_batches_are_padded(data):
    config = data.draw(bert_configs())
    adapter = data.draw(adapter_configs(config))
    batch = data.draw(token_batches(config))
    sizes = [config.num_attention_heads, config.head_dim, config.hidden_size, config.intermediate_size,
             config.vocab_size, config.max_position_embeddings, config.type_vocab_size]
    assert len(set(sizes)) == len(sizes) and min(sizes) >= 2
    B, T = batch.input_ids.shape
    taken = axis_sizes(config)
    assert adapter.bottleneck_size not in taken and B not in taken and T not in taken and B != T
    assert T <= config.max_position_embeddings
    assert not batch.attention_mask.all() and batch.attention_mask[:, 0].all()  # padding, never an empty row
    real = batch.attention_mask == 1
    assert (batch.input_ids[~real] == 0).all() and (batch.input_ids[real] > 0).all()


@given(st.data())
def test_the_reference_case_of_any_drawn_model_passes(data):
    config = data.draw(bert_configs())
    adapter = data.draw(st.none() | adapter_configs(config))
    batch = data.draw(token_batches(config))
    weights = random_weights(config, adapter, seed=data.draw(st.integers(0, 2**16)))
    for dtype in (np.float64, np.float32):
        report = crosscheck(reference_case(config, adapter, weights, batch, dtype=dtype))
        assert report["ok"] and report["diagnosis"] == [], report["explanations"]


BUGS = {"skip-connection": zoo.adapter_without_skip, "placement": zoo.adapter_after_layernorm,
        "non-linearity": zoo.relu_instead_of_gelu, "base-mismatch": zoo.layer_norm_eps_1e5}


@given(st.data(), st.sampled_from(sorted(BUGS)))
def test_a_bug_planted_in_any_drawn_model_is_named(data, bug):
    config = data.draw(bert_configs())
    m = data.draw(adapter_configs(config)).bottleneck_size
    adapter = AdapterConfig(bottleneck_size=m, non_linearity=data.draw(st.sampled_from(("gelu_new", "gelu", "silu"))),
                            placement=data.draw(st.sampled_from(("both", "attention", "ffn"))))
    batch = data.draw(token_batches(config))
    weights = random_weights(config, adapter, seed=data.draw(st.integers(0, 2**16)), name=zoo.NAME)
    model = BertModel(config, dtype=np.float64)
    add_adapter(model, zoo.NAME, adapter)
    model.load_state_dict(weights)
    train_adapter(model, zoo.NAME)
    model.eval()
    BUGS[bug](model)
    report = crosscheck(case_from_model(model, batch.input_ids, batch.attention_mask, batch.token_type_ids))
    assert report["diagnosis"] == [bug], report["explanations"]


def test_the_documented_property_test_runs():
    """docs/crosscheck.md's example, with this project's own forward standing in for "yours"."""
    def my_forward(config, adapter, weights, batch):
        return reference_case(config, adapter, weights, batch).hidden_states[-1]

    @given(st.data())
    def test_my_adapter_bert_matches_the_reference(data):
        config = data.draw(bert_configs())
        adapter = data.draw(adapter_configs(config))
        batch = data.draw(token_batches(config))
        weights = random_weights(config, adapter, seed=data.draw(st.integers(0, 2**16)))
        ref = reference_case(config, adapter, weights, batch)
        mine = my_forward(config, adapter, weights, batch)
        real = batch.attention_mask.astype(bool)
        assert np.abs(mine[real] - ref.hidden_states[-1][real]).max() < 1e-10

    test_my_adapter_bert_matches_the_reference()
