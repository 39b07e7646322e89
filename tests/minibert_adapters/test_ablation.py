"""Removing a trained adapter from a span of layers (Houlsby2019 Fig. 6) equals zeroing that span's adapter
output (W_up = 0, b_up = 0 makes A(h) = h), computed on a second copy of the model."""

import numpy as np
import pytest
from helpers import tiny_config, tiny_inputs

from adapters import AdapterConfig, AdapterSet, add_adapter
from autograd import no_grad
from minibert import BertForSequenceClassification
from minibert_adapters.experiments.ablation import ablate_spans, layers_without

L = 3


def adapted_model():
    model = BertForSequenceClassification(tiny_config(num_hidden_layers=L, num_labels=2), dtype=np.float64, seed=0)
    # A large init so every adapter visibly changes the output.
    add_adapter(model, "t", AdapterConfig.from_preset("houlsby", bottleneck_size=5, init="normal", init_std=0.5))
    AdapterSet.of(model).activate("t")
    return model.eval()


def logits(model):
    ids, mask, types = tiny_inputs()
    with no_grad():
        return model(ids, mask, types).logits.data.copy()


def score_of(model):
    return lambda: float(np.sum(np.abs(logits(model))))


def test_layers_without_a_span():
    assert layers_without((1, 2), 4) == [0, 3]
    assert layers_without((0, 3), 4) == []
    with pytest.raises(ValueError, match="not a range of layers"):
        layers_without((2, 1), 4)
    with pytest.raises(ValueError, match="not a range of layers"):
        layers_without((0, 4), 4)


def test_each_span_removed_equals_that_span_zeroed_in_a_copy():
    model = adapted_model()
    result = ablate_spans(model, "t", score_of(model))
    assert result["layers"] == L and len(result["spans"]) == L * (L + 1) // 2
    assert [(s["first"], s["last"]) for s in result["spans"]] == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    for span in result["spans"]:
        copy = adapted_model()
        for name, p in copy.named_parameters():
            layer = int(name.split(".")[3]) if ".adapters.t.up." in name else None
            if layer is not None and span["first"] <= layer <= span["last"]:
                p.data = np.zeros_like(p.data)
        expected = score_of(copy)()
        assert span["score"] == pytest.approx(expected, rel=1e-12)
        assert span["drop"] == pytest.approx(result["baseline"] - expected, rel=1e-12)
        assert span["score"] != pytest.approx(result["baseline"], rel=1e-6)  # the span mattered


def test_the_adapter_is_back_in_every_layer_afterwards():
    model = adapted_model()
    before = logits(model)
    ablate_spans(model, "t", score_of(model))
    assert np.array_equal(logits(model), before)
