"""Cross-checking (IA)^3 implementations: a correct one passes with an empty diagnosis; its vectors on the wrong side
of the Linear ("scaled-side"), missing from a layer, on Linears the claim does not name, or not ones at init, are
named, in float64 and float32."""

import numpy as np
import pytest
from helpers import tiny_config, tiny_inputs

from adapters import IA3Config, add_adapter, train_adapter
from minibert import BertModel
from minibert_adapters.crosscheck import crosscheck
from minibert_adapters.crosscheck.case import Case, case_from_model


def case(bug=None, dtype=np.float64):
    """(IA)^3 with PEFT's BERT defaults, trained-like vectors, one bug planted."""
    model = BertModel(tiny_config(), dtype=dtype, seed=0).eval()
    if bug == "target-modules":  # the queries rescaled too, while the claim is PEFT's defaults
        add_adapter(model, "t", IA3Config(target_modules=["key", "value", "output.dense", "query"],
                                          feedforward_modules=["output.dense"]))
    else:
        add_adapter(model, "t", "ia3")
    rng = np.random.default_rng(0)
    vectors = {k: p for k, p in model.named_parameters() if ".adapters." in k}
    if bug == "init-scale":  # l drawn around 1 instead of exactly ones
        for p in vectors.values():
            p.data = rng.normal(1.0, 0.1, p.shape).astype(dtype)
    init = {k: p.data.copy() for k, p in vectors.items()}
    for k, p in model.named_parameters():
        if ".adapters." in k:
            p.data = (1.0 + rng.normal(0, 0.3, p.shape)).astype(dtype)
    train_adapter(model, "t")
    model.eval()
    if bug == "scaled-side":  # attention.output.dense (square) scaled at its output instead of its input
        for layer in model.encoder.layer:
            m = layer.attention.output.dense.adapters["t"]
            layer.attention.output.dense.hook = lambda x, affine, m=m: affine(x) * m.ia3_l
    if bug == "missing-modules":
        model.encoder.layer[1].attention.self.key.hook = None
    ids, mask, types = tiny_inputs()
    c = case_from_model(model, ids, mask, types, init=init)
    if bug == "target-modules":
        c = Case(**{**c.__dict__, "adapter_config": {"preset": "ia3"}})
    return c


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_a_correct_ia3_passes_with_an_empty_diagnosis(dtype):
    report = crosscheck(case(None, dtype))
    assert report["ok"] and report["diagnosis"] == [], report["explanations"]
    assert report["adapter_kind"] == "ia3"


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("bug", ["scaled-side", "missing-modules", "target-modules", "init-scale"])
def test_each_ia3_bug_gets_its_code(bug, dtype):
    report = crosscheck(case(bug, dtype))
    assert not report["ok"] and bug in report["diagnosis"], report["explanations"]
