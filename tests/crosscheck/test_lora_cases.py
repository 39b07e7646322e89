"""Cross-checking LoRA implementations: a correct one passes with an empty diagnosis; the classic bugs get their
codes (the update scaled by alpha instead of alpha / r, B not zero at init, Linears adapted that the claim does
not name, adapted Linears left out), in float64 and float32."""

import numpy as np
import pytest
from helpers import tiny_config, tiny_inputs

from adapters import AdapterSet, LoraConfig, add_adapter, train_adapter
from adapters.lora.module import LoraLinear
from minibert import BertModel
from minibert_adapters.crosscheck import crosscheck
from minibert_adapters.crosscheck.case import Case, case_from_model

CLAIM = dict(r=4, alpha=6.0, target_modules=["query", "value", "output.dense"])


def lora_modules(model):
    return [m for _, m in model.named_modules() if isinstance(m, LoraLinear)]


def case(bug=None, dtype=np.float64, rslora=False):
    """A trained-like LoRA model of the claimed config with one bug planted, as its case."""
    model = BertModel(tiny_config(), dtype=dtype, seed=0).eval()
    claimed = LoraConfig(**CLAIM, use_rslora=rslora)
    built = LoraConfig(**{**CLAIM, "target_modules": CLAIM["target_modules"] + ["key"]}, use_rslora=rslora) \
        if bug == "target-modules" else claimed
    add_adapter(model, "t", built, seed=1)
    rng = np.random.default_rng(0)
    if bug == "init-scale":  # B drawn like A instead of zero
        for m in lora_modules(model):
            m.lora_B.weight.data = rng.normal(0, 0.05, m.lora_B.weight.shape).astype(dtype)
    init = {k: p.data.copy() for k, p in AdapterSet.of(model).task_parameters("t").items() if ".adapters." in k}
    for k, p in model.named_parameters():
        if ".adapters." in k:
            p.data = (p.data + rng.normal(0, 0.3, p.shape)).astype(dtype)
    train_adapter(model, "t")
    model.eval()
    if bug == "scale":
        for m in lora_modules(model):
            m.scaling = claimed.alpha  # alpha, not alpha / r
    if bug == "missing-modules":
        model.encoder.layer[1].attention.self.value.hook = None
    ids, mask, types = tiny_inputs()
    c = case_from_model(model, ids, mask, types, init=init)
    if bug == "target-modules":  # the implementation claims the config without "key"
        c = Case(**{**c.__dict__, "adapter_config": {"kind": "lora", **claimed.to_dict()}})
    return c


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("rslora", [False, True])
def test_a_correct_lora_passes_with_an_empty_diagnosis(dtype, rslora):
    report = crosscheck(case(None, dtype, rslora))
    assert report["ok"] and report["diagnosis"] == [], report["explanations"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("bug", ["scale", "init-scale", "target-modules", "missing-modules"])
def test_each_classic_lora_bug_gets_its_code(bug, dtype):
    report = crosscheck(case(bug, dtype))
    assert not report["ok"]
    assert bug in report["diagnosis"], report["explanations"]
    if bug == "scale":
        assert "alpha (not divided by r) = 6" in " ".join(e["sentence"] for e in report["explanations"])


def test_pefts_own_adapter_config_is_accepted_as_the_claim():
    """A case may claim its config with the adapter_config.json PEFT wrote (peft_type, lora_alpha, ...)."""
    c = case(None)
    peft_claim = {"peft_type": "LORA", "r": CLAIM["r"], "lora_alpha": CLAIM["alpha"],
                  "target_modules": CLAIM["target_modules"], "lora_dropout": 0.0, "bias": "none"}
    report = crosscheck(Case(**{**c.__dict__, "adapter_config": peft_claim}))
    assert report["ok"] and report["diagnosis"] == [], report["explanations"]
    wrong = {**peft_claim, "use_rslora": True}  # claims alpha / sqrt(r) = 3, the model computes alpha / r = 1.5
    report = crosscheck(Case(**{**c.__dict__, "adapter_config": wrong}))
    assert not report["ok"] and "scale" in report["diagnosis"], report["explanations"]
    assert "alpha / r = 1.5" in " ".join(e["sentence"] for e in report["explanations"])
