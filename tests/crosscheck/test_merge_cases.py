"""Cross-checking merged weights (a case's merged/ tensors): a correct merge of LoRA or (IA)^3 passes with an empty
diagnosis; the classic wrong merges (the update scaled by another factor than s, subtracted, transposed; an (IA)^3
bias left unscaled) get the code `merge` naming what was done, in float64 and float32; a case that cannot be
judged is refused."""

import numpy as np
import pytest
from helpers import tiny_config, tiny_inputs

from adapters import LoraConfig, add_adapter, merge_adapter, train_adapter, unmerge_adapter
from minibert import BertModel
from minibert_adapters.crosscheck import CaseError, crosscheck
from minibert_adapters.crosscheck.case import Case, case_from_model

LORA = LoraConfig(r=4, alpha=6.0, target_modules=["query", "value"])  # s = alpha / r = 1.5


def trained(config, dtype, shift):
    """A tiny BERT with adapter "t" of `config`, its parameters moved as training would, policy applied. Its biases
    are not zero, as a pretrained model's are not (a merge that forgets one must show)."""
    model = BertModel(tiny_config(), dtype=dtype, seed=0).eval()
    add_adapter(model, "t", config, seed=1)
    rng = np.random.default_rng(0)
    for k, p in model.named_parameters():
        if k.endswith(".bias") and ".adapters." not in k:
            p.data = rng.normal(0, 0.1, p.shape).astype(dtype)
        if ".adapters." in k:
            p.data = (p.data + shift + rng.normal(0, 0.3, p.shape)).astype(dtype)
    train_adapter(model, "t")
    return model.eval()


def lora_case(dtype, wrong=None, forward_scale=None):
    """A LoRA case whose merged/ tensors come from merge_adapter, or from `wrong(W, B A)` for every adapted Linear;
    forward_scale: the unmerged model's update scaled by this instead of s (the `scale` bug)."""
    model = trained(LORA, dtype, 0.0)
    linears = {f"encoder.layer.{i}.attention.self.{n}": getattr(layer.attention.self, n)
               for i, layer in enumerate(model.encoder.layer) for n in ("query", "value")}
    if wrong is None:
        merge_adapter(model, "t")
        merged = {f"{path}.weight": linear.weight.data.copy() for path, linear in linears.items()}
        unmerge_adapter(model, "t")
    else:
        merged = {}
        for path, linear in linears.items():
            m = linear.adapters["t"]
            BA = m.lora_B.weight.data.astype(np.float64) @ m.lora_A.weight.data.astype(np.float64)
            merged[f"{path}.weight"] = wrong(linear.weight.data.astype(np.float64), BA).astype(dtype)
    if forward_scale is not None:
        for linear in linears.values():
            linear.adapters["t"].scaling = forward_scale
    ids, mask, types = tiny_inputs()
    return case_from_model(model, ids, mask, types, merged=merged)


def ia3_case(dtype, bias_scaled=True):
    """(IA)^3 with PEFT's BERT defaults, merged by hand: an output-scaled Linear's rows and bias times l, an
    input-scaled one's columns."""
    model = trained("ia3", dtype, 1.0)
    merged = {}
    for name, linear in model.named_modules():
        if getattr(linear, "adapters", None) is not None and "t" in linear.adapters and hasattr(linear, "weight"):
            m = linear.adapters["t"]
            l = m.ia3_l.data
            if m.feedforward:
                merged[f"{name}.weight"] = linear.weight.data * l[None, :]
            else:
                merged[f"{name}.weight"] = linear.weight.data * l[:, None]
                if bias_scaled:
                    merged[f"{name}.bias"] = linear.bias.data * l
    ids, mask, types = tiny_inputs()
    return case_from_model(model, ids, mask, types, merged=merged)


def sentences(report) -> str:
    return " ".join(e["sentence"] for e in report["explanations"])


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_a_correct_merge_passes_with_an_empty_diagnosis(dtype):
    for c in (lora_case(dtype), ia3_case(dtype)):
        report = crosscheck(c)
        assert report["ok"] and report["diagnosis"] == [], report["explanations"]
        assert report["merge"]["given"] and report["merge"]["output_error"] <= report["tolerance"]["hidden"]


WRONG_LORA = {
    "alpha (not divided by r) = 6": lambda W, BA: W + 6.0 * BA,
    "1 (no scaling) = 1": lambda W, BA: W + BA,
    "the update subtracted": lambda W, BA: W - 1.5 * BA,
    "the update transposed": lambda W, BA: W + 1.5 * BA.T,
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("what", list(WRONG_LORA))
def test_a_wrong_lora_merge_is_named(what, dtype):
    report = crosscheck(lora_case(dtype, WRONG_LORA[what]))
    assert not report["ok"] and report["diagnosis"] == ["merge"], report["explanations"]
    assert what in sentences(report)
    assert report["forward"]["ok"]  # the unmerged model is right: only its merge is wrong


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_an_ia3_merge_that_leaves_the_bias_unscaled_is_named(dtype):
    report = crosscheck(ia3_case(dtype, bias_scaled=False))
    assert not report["ok"] and report["diagnosis"] == ["merge"], report["explanations"]
    assert "scaled but not the bias" in sentences(report)
    assert report["merge"]["output_error"] > report["tolerance"]["hidden"]


def test_a_merge_is_judged_against_the_cases_own_unmerged_model():
    # Both scaled by alpha: the forward is wrong (`scale`), the merge agrees with it.
    report = crosscheck(lora_case(np.float64, WRONG_LORA["alpha (not divided by r) = 6"], forward_scale=6.0))
    assert report["diagnosis"] == ["scale"] and report["merge"]["ok"], report["explanations"]
    # The merge is the claimed one but the unmerged model scales by alpha: they disagree, and the sentence says
    # which one departs from the claim.
    report = crosscheck(lora_case(np.float64, lambda W, BA: W + 1.5 * BA, forward_scale=6.0))
    assert report["diagnosis"] == ["scale", "merge"], report["explanations"]
    assert "the unmerged model departs from the claim" in sentences(report)


def test_a_merge_that_changes_a_linear_without_an_adapter_is_named():
    c = lora_case(np.float64)
    key = "encoder.layer.0.attention.self.key.weight"
    c = Case(**{**c.__dict__, "merged": {**c.merged, key: c.params[key] * 1.01}})
    report = crosscheck(c)
    assert report["diagnosis"] == ["merge"] and "which no adapter adapts" in sentences(report)


def test_merged_tensors_a_case_cannot_have_are_refused():
    c = lora_case(np.float64)
    adapter = next(k for k in c.params if ".adapters." in k)
    with pytest.raises(CaseError, match="base-model parameters"):
        crosscheck(Case(**{**c.__dict__, "merged": {adapter: c.params[adapter]}}))
    with pytest.raises(CaseError, match="has shape"):
        crosscheck(Case(**{**c.__dict__, "merged": {"encoder.layer.0.attention.self.query.weight": np.zeros(3)}}))
    prefix = trained("prefix", np.float64, 0.0)
    ids, mask, types = tiny_inputs()
    p = case_from_model(prefix, ids, mask, types)
    query = "encoder.layer.0.attention.self.query.weight"
    with pytest.raises(CaseError, match="does not merge"):
        crosscheck(Case(**{**p.__dict__, "merged": {query: p.params[query]}}))
