"""Cases written by the real AdapterHub (`adapters` 1.3.0): a Houlsby adapter (DoubleSeqBnConfig, M = 5, swish) on
a tiny transformers BertModel, trained five steps with AdapterHub's train_adapter, written in float32 and float64
by tools/write_case_adapterhub.py (the versions are in adapterhub_tiny.json). This project must judge them correct,
under AdapterHub's own names and its policy (only the adapter trains); and a change to any one of them must not."""

import json

import numpy as np
import pytest
from helpers import FIXTURES

from minibert_adapters.crosscheck import crosscheck
from minibert_adapters.crosscheck.case import Case, read_case

CASES = FIXTURES / "crosscheck"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adapterhubs_houlsby_adapter_agrees(dtype):
    meta = json.loads((CASES / "adapterhub_tiny.json").read_text())
    assert meta["versions"]["adapters"] == "1.3.0"
    case = read_case(CASES / f"adapterhub_tiny_{dtype}.safetensors")
    assert case.adapter_name == "demo"
    report = crosscheck(case)
    assert report["ok"] and report["diagnosis"] == [], report["explanations"]
    assert report["adapter_config"]["non_linearity"] == "silu" and not report["adapter_config"]["train_layer_norms"]
    assert report["init"]["given"] and report["init"]["ok"]


def test_the_same_case_with_one_layer_norm_trained_is_a_trainable_set_bug():
    case = read_case(CASES / "adapterhub_tiny_float64.safetensors")
    name = "encoder.layer.0.output.LayerNorm.weight"
    grads = {**case.grads, name: np.full_like(case.params[name], 0.5)}
    report = crosscheck(Case(**{**case.__dict__, "trainable": case.trainable + [name], "grads": grads}))
    assert report["diagnosis"] == ["trainable-set"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adapterhubs_seqbn_adapter_agrees_claimed_as_pfeiffer(dtype):
    """SeqBnConfig (M = 5, ReLU, the original LayerNorm before the adapter), claimed as the "pfeiffer" preset."""
    meta = json.loads((CASES / "adapterhub_seqbn_tiny.json").read_text())
    assert meta["versions"]["adapters"] == "1.3.0"
    case = read_case(CASES / f"adapterhub_seqbn_tiny_{dtype}.safetensors")
    assert case.adapter_config["preset"] == "pfeiffer"
    report = crosscheck(case)
    assert report["ok"] and report["diagnosis"] == [], report["explanations"]
    assert report["adapter_config"]["original_ln_before"] and report["adapter_config"]["placement"] == "ffn"


def test_the_seqbn_case_claimed_as_a_houlsby_ffn_adapter_fails():
    """The same SeqBn weights claimed without original_ln_before (the adapter fed a, not LN(x + a)) must not pass."""
    case = read_case(CASES / "adapterhub_seqbn_tiny_float64.safetensors")
    wrong = Case(**{**case.__dict__, "adapter_config": {**case.adapter_config, "original_ln_before": False}})
    assert not crosscheck(wrong)["ok"]
