"""BertModel on tiny configs: names and shapes, masking, dropout, errors on bad input, gradients."""

import json

import numpy as np
import pytest
from helpers import TINY, TOL, tiny_config, tiny_inputs
from hypothesis import given
from hypothesis import strategies as st

from autograd import Tensor, no_grad
from autograd.gradcheck import gradcheck
from minibert import BertConfig, BertForSequenceClassification, BertModel, sentence_embeddings
from minibert.config import SIZE_FIELDS


def hf_names(L):
    """The parameter names of transformers' BertModel, written out from its module tree."""
    names = [f"embeddings.{e}_embeddings.weight" for e in ("word", "position", "token_type")]
    names += ["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
    for i in range(L):
        p = f"encoder.layer.{i}."
        for m in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            names += [p + m + ".weight", p + m + ".bias"]
        names += [p + "attention.output.LayerNorm.weight", p + "attention.output.LayerNorm.bias"]
        names += [p + "intermediate.dense.weight", p + "intermediate.dense.bias"]
        names += [p + "output.dense.weight", p + "output.dense.bias"]
        names += [p + "output.LayerNorm.weight", p + "output.LayerNorm.bias"]
    return names + ["pooler.dense.weight", "pooler.dense.bias"]


def test_parameter_names_and_layouts_are_hugging_faces():
    model = BertModel(tiny_config())
    sd = model.state_dict()
    assert sorted(sd) == sorted(hf_names(TINY["L"]))
    D, F, V, P = TINY["D"], TINY["F"], TINY["V"], TINY["P"]
    assert sd["embeddings.word_embeddings.weight"].shape == (V, D)
    assert sd["embeddings.position_embeddings.weight"].shape == (P, D)
    assert sd["encoder.layer.0.intermediate.dense.weight"].shape == (F, D)  # (out, in)
    assert sd["encoder.layer.1.output.dense.weight"].shape == (D, F)


def test_output_shapes_and_hidden_states():
    B, T, D, L = TINY["B"], TINY["T"], TINY["D"], TINY["L"]
    ids, mask, types = tiny_inputs()
    out = BertModel(tiny_config()).eval()(ids, mask, types, output_hidden_states=True)
    assert out.last_hidden_state.shape == (B, T, D)
    assert out.pooler_output.shape == (B, D)
    assert len(out.hidden_states) == L + 1 and out.hidden_states[-1] is out.last_hidden_state


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept_end_to_end(dtype):
    model = BertModel(tiny_config(), dtype=dtype).eval()
    out = model(*tiny_inputs())
    assert out.last_hidden_state.dtype == dtype and out.pooler_output.dtype == dtype


@given(st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_padding_does_not_change_real_tokens(n_pad, seed):
    """Appending padding (mask 0) with arbitrary ids leaves every real token's output unchanged."""
    model = BertModel(tiny_config(max_position_embeddings=32), dtype=np.float64).eval()
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, TINY["V"], size=(2, 5))
    padded = np.concatenate([ids, rng.integers(0, TINY["V"], size=(2, n_pad))], axis=1)
    mask = np.concatenate([np.ones((2, 5), int), np.zeros((2, n_pad), int)], axis=1)
    with no_grad():
        short = model(ids).last_hidden_state.data
        long = model(padded, mask).last_hidden_state.data
    np.testing.assert_allclose(long[:, :5], short, atol=TOL["f64_same_math"], rtol=0)


def test_dropout_only_in_train_mode():
    model = BertModel(tiny_config(), dtype=np.float64)
    ids, mask, types = tiny_inputs()
    model.eval()
    a = model(ids, mask, types).last_hidden_state.data
    b = model(ids, mask, types).last_hidden_state.data
    model.train()
    c = model(ids, mask, types).last_hidden_state.data
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_activation_is_chosen_by_config():
    ids, mask, types = tiny_inputs()
    exact = BertModel(tiny_config(hidden_act="gelu"), dtype=np.float64, seed=3).eval()
    tanh = BertModel(tiny_config(hidden_act="gelu_new"), dtype=np.float64, seed=3).eval()
    diff = np.abs(exact(ids, mask, types).last_hidden_state.data - tanh(ids, mask, types).last_hidden_state.data)
    assert 0 < diff.max() < 1e-2  # the two GELUs differ, but only slightly


@pytest.mark.parametrize("bad, message", [
    (dict(input_ids=np.array([[1, 2, 99]])), r"input_ids\[0, 2\] = 99 is out of range"),
    (dict(input_ids=np.array([[1, -1]])), r"input_ids\[0, 1\] = -1"),
    (dict(input_ids=np.array([[1.0, 2.0]])), "must be integers"),
    (dict(input_ids=np.ones((1, 17), int)), "exceeds max_position_embeddings 16"),
    (dict(input_ids=np.ones((2, 3), int), attention_mask=np.ones((2, 4), int)), "attention_mask has shape"),
    (dict(input_ids=np.ones((2, 3), int), token_type_ids=np.full((2, 3), 2)), "token_type_ids"),
    (dict(input_ids=np.ones((2, 3, 1), int)), "must have shape"),
])
def test_bad_input_gets_a_clear_error(bad, message):
    model = BertModel(tiny_config())
    with pytest.raises((ValueError, TypeError), match=message):
        model(**bad)


@pytest.mark.parametrize("kwargs, message", [
    (dict(hidden_size=10, num_attention_heads=3), "not divisible"),
    (dict(hidden_act="gelu_fast"), "hidden_act"),
    (dict(num_hidden_layers=0), "num_hidden_layers must be a positive integer"),
    (dict(vocab_size=-5), "vocab_size"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**kwargs)


def test_config_round_trip_and_non_bert(tmp_path):
    config = tiny_config(hidden_act="gelu_new")
    config.to_json_file(tmp_path / "config.json")
    again = BertConfig.from_json_file(tmp_path / "config.json")
    assert again.to_dict() == config.to_dict()
    with pytest.raises(ValueError, match="model_type 'gpt2'"):
        BertConfig.from_dict({"model_type": "gpt2", "hidden_size": 8})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        BertConfig.from_json_file(tmp_path / "bad.json")



@pytest.mark.parametrize("field, value, message", [
    ("hidden_dropout_prob", "0.1", 'hidden_dropout_prob must be a number in [0, 1), got "0.1" (a string)'),
    ("layer_norm_eps", None, "layer_norm_eps must be a positive number, got null"),
    ("hidden_act", ["gelu"], 'hidden_act must be an activation name (a string), got ["gelu"] (an array)'),
    ("num_hidden_layers", 2.0, "num_hidden_layers must be a positive integer, got 2.0 (a number)"),
    ("vocab_size", True, "vocab_size must be a positive integer, got true (a boolean)"),
    ("initializer_range", "0.02", 'initializer_range must be a number >= 0, got "0.02" (a string)'),
    ("classifier_dropout", 1.0, "classifier_dropout must be a number in [0, 1)"),
    ("pad_token_id", -1, "pad_token_id must be a token id"),
    ("id2label", ["neg", "pos"], "id2label must be an object of class names by index"),
])
def test_config_json_fields_are_checked_by_type_naming_the_file_and_the_field(tmp_path, field, value, message):
    fields = tiny_config().to_dict()
    fields[field] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(fields))
    with pytest.raises(ValueError) as info:
        BertConfig.from_json_file(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


@pytest.mark.parametrize("field", SIZE_FIELDS)
def test_a_config_json_without_a_size_says_which_instead_of_listing_missing_tensors(tmp_path, field):
    BertModel(tiny_config()).save_pretrained(tmp_path)
    fields = json.loads((tmp_path / "config.json").read_text())
    del fields[field]
    (tmp_path / "config.json").write_text(json.dumps(fields))
    with pytest.raises(ValueError) as info:
        BertModel.from_pretrained(tmp_path)
    path = f"{tmp_path / 'config.json'}"
    assert str(info.value).startswith(f"{path}: no {field}: ")
    assert len(str(info.value)) < len(path) + 200  # not bert-base's defaults and a list of the tensors they miss


def test_numpy_numbers_in_a_config_built_in_code_are_numbers():
    assert tiny_config(hidden_dropout_prob=np.float32(0.25), layer_norm_eps=np.float64(1e-6)).layer_norm_eps == 1e-6

def test_sequence_classification_loss_is_mean_cross_entropy():
    model = BertForSequenceClassification(tiny_config(num_labels=3), dtype=np.float64).eval()
    ids, mask, types = tiny_inputs()
    out = model(ids, mask, types, labels=[2, 0])
    z = out.logits.data
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    assert out.logits.shape == (2, 3)
    np.testing.assert_allclose(out.loss.data, -(logp[0, 2] + logp[1, 0]) / 2, rtol=1e-12)
    assert [n for n, _ in model.named_parameters()][-2:] == ["classifier.weight", "classifier.bias"]


def test_sentence_embeddings_are_masked_means_and_unit_length():
    model = BertModel(tiny_config(), dtype=np.float64).eval()
    ids, mask, types = tiny_inputs()
    out = model(ids, mask, types)
    h = out.last_hidden_state.data
    raw = sentence_embeddings(out, mask, normalize=False).data
    np.testing.assert_allclose(raw[1], h[1, mask[1] == 1].mean(0), rtol=1e-12)
    unit = sentence_embeddings(out, mask).data
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-12)


def test_whole_model_gradients_pass_gradcheck():
    """Every parameter of a tiny BERT (float64, eval mode): random projections of the full Jacobian."""
    model = BertForSequenceClassification(tiny_config(num_hidden_layers=1), dtype=np.float64, seed=1).eval()
    ids, mask, types = tiny_inputs()
    R = Tensor(np.random.default_rng(2).standard_normal((TINY["B"], TINY["T"], TINY["D"])))

    def loss(*params):
        out = model.bert(ids, mask, types)
        return (out.last_hidden_state * R).sum() + model(ids, mask, types, labels=[1, 0]).loss

    assert gradcheck(loss, model.parameters(), fast=True, n_projections=2, **TOL["gradcheck"])


def test_frozen_model_keeps_no_parameter_gradients():
    model = BertModel(tiny_config(), dtype=np.float64).eval().requires_grad_(False)
    x = model(*tiny_inputs()).last_hidden_state
    assert not x.requires_grad and x._node is None
