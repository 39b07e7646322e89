"""`crosscheck` names the bug of each deliberately wrong implementation in the zoo, and passes the correct one.

Every member is trained through its own wrong forward before its case is written (crosscheck_zoo.py), so the
cases carry trained adapter weights, and each is judged in float64 and float32 (the precision bug only exists
in a float64 case). For each member the correct implementation, built by the same steps, must pass the same
check with an empty diagnosis: a check that fails everything would not pass these tests.
"""

import json

import crosscheck_zoo as zoo
import numpy as np
import pytest

from minibert_adapters.cli import main
from minibert_adapters.crosscheck import crosscheck
from minibert_adapters.crosscheck.case import read_case

DTYPES = {"float64": np.float64, "float32": np.float32}
MEMBERS = [(bug, dtype) for bug in zoo.BUGS for dtype in DTYPES if not (bug == "precision" and dtype == "float32")]


@pytest.fixture(scope="module")
def correct_reports():
    return {dtype: crosscheck(zoo.build(None, DTYPES[dtype])) for dtype in DTYPES}


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_correct_implementation_passes_with_an_empty_diagnosis(correct_reports, dtype):
    report = correct_reports[dtype]
    assert report["ok"], report["explanations"]
    assert report["diagnosis"] == [] and report["explanations"] == []


@pytest.mark.parametrize("bug, dtype", MEMBERS)
def test_each_wrong_implementation_fails_with_its_code(correct_reports, bug, dtype):
    report = crosscheck(zoo.build(bug, DTYPES[dtype]))
    codes = bug.split(":")[0].split("+")  # two bugs in one module: both named
    assert not report["ok"]
    assert report["diagnosis"] == codes, report["explanations"]
    assert [e["code"] for e in report["explanations"]] == codes
    assert correct_reports[dtype]["ok"] and correct_reports[dtype]["diagnosis"] == []


def test_the_diagnosis_says_where(correct_reports):
    """The missing adapters are in the last layer only; the first layer is not blamed."""
    report = crosscheck(zoo.build("missing-modules", np.float64))
    sentence = report["explanations"][0]["sentence"]
    assert "layer 1 is reproduced by: no adapter after attention and after the FFN" in sentence
    assert "layer 0" not in sentence
    assert [r["ok"] for r in report["forward"]["layers"]][:2] == [True, True]  # embeddings and layer 0 agree


def test_the_zoo_cases_carry_trained_adapter_weights():
    case = zoo.build(None, np.float64)
    moved = [float(np.abs(case.params[k] - case.init[k]).max()) for k in case.init]
    assert len(moved) == 4 * 2 * zoo.BERT["num_hidden_layers"] and min(moved) > 1e-2  # init std is 1e-3


def test_the_command_exits_0_when_it_agrees_and_1_with_the_diagnosis(tmp_path, capsys):
    zoo.build(None, np.float32).save(tmp_path / "good.safetensors")
    zoo.build("skip-connection", np.float32).save(tmp_path / "bad.safetensors")
    assert main(["crosscheck", str(tmp_path / "good.safetensors")]) == 0
    assert capsys.readouterr().out.rstrip().endswith("AGREES")
    assert main(["crosscheck", str(tmp_path / "bad.safetensors")]) == 1
    out = capsys.readouterr().out
    assert "DIAGNOSIS: skip-connection" in out and "internal skip connection is missing" in out
    assert main(["crosscheck", str(tmp_path / "bad.safetensors"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["diagnosis"] == ["skip-connection"] and report["ok"] is False


def test_a_saved_case_reads_back_the_same(tmp_path):
    case = zoo.build("trainable-set", np.float32)
    back = read_case(case.save(tmp_path / "c.safetensors"))
    assert back.trainable == case.trainable and back.adapter_name == case.adapter_name
    assert sorted(back.params) == sorted(case.params) and sorted(back.grads) == sorted(case.grads)
    for k in case.params:
        np.testing.assert_array_equal(back.params[k], case.params[k])
    assert crosscheck(back)["diagnosis"] == ["trainable-set"]


def test_rtol_replaces_the_table_and_is_recorded(tmp_path, capsys):
    """The precision member passes when the float64 case is judged at float32's tolerance, by request."""
    zoo.build("precision", np.float64).save(tmp_path / "p.safetensors")
    assert main(["crosscheck", str(tmp_path / "p.safetensors"), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["tolerance"]["hidden"] == 1e-10
    assert main(["crosscheck", str(tmp_path / "p.safetensors"), "--json", "--rtol", "5e-4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["tolerance"]["hidden"] == report["tolerance"]["gradient"] == 5e-4


def test_adapter_tensors_absent_from_a_layer_are_missing_modules():
    """The other way to miss a module: the implementation never created the last layer's adapters."""
    from minibert_adapters.crosscheck.case import Case

    case = zoo.build("missing-modules", np.float64)
    keep = {k: v for k, v in case.params.items() if not k.startswith("encoder.layer.1.") or k in
            zoo.BertModel(zoo.BertConfig(**zoo.BERT)).checkpoint_names}
    case = Case(**{**case.__dict__, "params": keep, "trainable": [k for k in case.trainable if k in keep],
                   "grads": {k: v for k, v in case.grads.items() if k in keep},
                   "init": {k: v for k, v in case.init.items() if k in keep}})
    report = crosscheck(case)
    assert report["diagnosis"] == ["missing-modules"], report["explanations"]
    assert report["counts"]["missing_modules"] == ["encoder.layer.1.attention.output", "encoder.layer.1.output"]
    assert report["counts"]["modules_per_layer"] == [2, 0]


def test_a_wrong_backward_is_located_at_the_stage_where_the_gradients_part():
    """The FFN adapters' f' drops a term: walking back from the loss, the last layer's FFN adapter is the first
    place that differs, and in it W_up's gradients agree while W_down's do not."""
    report = crosscheck(zoo.build("backward", np.float64))
    (sentence,) = [e["sentence"] for e in report["explanations"]]
    assert "first differ in encoder.layer.1.output:" in sentence
    assert "the up gradients agree and the down ones do not" in sentence and "f'" in sentence
