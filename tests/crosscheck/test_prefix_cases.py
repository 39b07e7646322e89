"""Cross-checking prefix tuning: a correct one (table or MLP) passes with an empty diagnosis; the classic bugs get
their codes, in float64 and float32: the table read in another layout than PEFT's (keys and values swapped, every
key before every value, heads and head dims transposed) `prefix-layout`; the mask not extended over the prefix
(the prefix masked out, its visible block put after the tokens' mask) `prefix-mask`; the embeddings looked up
without the prefix's shift (positions from 0, token types kept) `prefix-positions`; a table not drawn as claimed
`init-scale`."""

import numpy as np
import pytest
from helpers import tiny_config, tiny_inputs

import minibert.modeling
from adapters import PrefixConfig, add_adapter, train_adapter
from minibert import BertModel
from minibert_adapters.crosscheck import crosscheck
from minibert_adapters.crosscheck.case import case_from_model


def relaid(past_of):
    """An embeddings hook that hands the layers `past_of(rows (B, P, 2L, H, Dh), L)` instead of the correct past:
    another implementation's reading of the same table."""
    def wrap(module):
        def hook(input_ids, token_type_ids, position_ids):
            types, positions, _ = module(input_ids, token_type_ids, position_ids)
            B, m = input_ids.shape[0], module
            rows = m.rows(B).reshape(B, m.num_virtual_tokens, 2 * m.num_layers, m.num_heads, m.head_dim)
            return types, positions, past_of(rows, m.num_layers)
        return hook
    return wrap


def pairs(kv, keys, values):
    """[(kv[k], kv[v])] per layer, kv (2L, B, H, P, Dh)."""
    return [(kv[k], kv[v]) for k, v in zip(keys, values)]


LAYOUTS = {
    "keys and values swapped": relaid(lambda rows, L: pairs(rows.transpose(2, 0, 3, 1, 4), range(1, 2 * L, 2),
                                                            range(0, 2 * L, 2))),
    "every layer's key, then every layer's value": relaid(lambda rows, L: pairs(rows.transpose(2, 0, 3, 1, 4),
                                                                                range(L), range(L, 2 * L))),
    "split as (Dh, H)": relaid(lambda rows, L: pairs(
        rows.reshape(rows.shape[:3] + (rows.shape[4], rows.shape[3])).transpose(2, 0, 4, 1, 3),
        range(0, 2 * L, 2), range(1, 2 * L, 2))),
}
EMBEDDINGS = {
    "not shifted by P": lambda m: (lambda ids, types, positions: (np.zeros_like(types), positions,
                                                                  m(ids, types, positions)[2])),
    "token types kept": lambda m: (lambda ids, types, positions: (types,) + m(ids, types, positions)[1:]),
}


def masked_out(attention_mask, past, dtype):
    """The prefix masked out like padding."""
    mask = minibert.modeling.additive_mask(np.asarray(attention_mask), dtype)
    hidden = np.full(mask.shape[:3] + (past[0][0].shape[2],), np.finfo(dtype).min, dtype=dtype)
    return minibert.modeling.Tensor(np.concatenate([hidden, mask], axis=-1))


def mask_after(attention_mask, past, dtype):
    """The ones of the prefix concatenated after the tokens' mask instead of before it."""
    mask = minibert.modeling.additive_mask(np.asarray(attention_mask), dtype)
    visible = np.zeros(mask.shape[:3] + (past[0][0].shape[2],), dtype=dtype)
    return minibert.modeling.Tensor(np.concatenate([mask, visible], axis=-1))


MASKS = {"the prefix masked out": masked_out, "put after the real tokens' mask": mask_after}


def case(monkeypatch, bug=None, dtype=np.float64, projection=False):
    model = BertModel(tiny_config(), dtype=dtype, seed=0).eval()
    add_adapter(model, "t", PrefixConfig(num_virtual_tokens=3, prefix_projection=projection, encoder_hidden_size=5),
                seed=1)
    module = model.embeddings.adapters["t"]
    if bug == "init-scale":  # the table drawn as BERT's weights, N(0, 0.02), instead of torch's N(0, 1)
        for p in module.parameters():
            p.data = np.random.default_rng(2).normal(0.0, 0.02, p.shape).astype(dtype)
    init = {f"embeddings.adapters.t.{k}": p.data.copy() for k, p in module.named_parameters()}
    train_adapter(model, "t")
    model.eval()
    if bug in LAYOUTS:
        model.embeddings.hook = LAYOUTS[bug](module)
    if bug in EMBEDDINGS:
        model.embeddings.hook = EMBEDDINGS[bug](module)
    ids, mask, types = tiny_inputs()
    with monkeypatch.context() as patch:
        if bug in MASKS:
            patch.setattr(minibert.modeling, "encoder_mask", MASKS[bug])
        return case_from_model(model, ids, mask, types, init=init)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("projection", [False, True], ids=["table", "mlp"])
def test_a_correct_prefix_passes_with_an_empty_diagnosis(monkeypatch, dtype, projection):
    report = crosscheck(case(monkeypatch, None, dtype, projection))
    assert report["ok"] and report["diagnosis"] == [], report["explanations"]
    assert report["adapter_kind"] == "prefix"


BUGS = [("prefix-layout", b) for b in LAYOUTS] + [("prefix-mask", b) for b in MASKS] + \
       [("prefix-positions", b) for b in EMBEDDINGS] + [("init-scale", "init-scale")]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("code,bug", BUGS, ids=[b for _, b in BUGS])
def test_each_classic_prefix_bug_gets_its_code(monkeypatch, code, bug, dtype):
    report = crosscheck(case(monkeypatch, bug, dtype))
    assert not report["ok"]
    assert report["diagnosis"] == [code], report["explanations"]
    if code != "init-scale":
        assert bug in " ".join(e["sentence"] for e in report["explanations"])
