"""A case file that cannot be judged exits 2 with one line naming the file and what is wrong; names written by
other implementations (a `bert.` prefix, AdapterHub's adapter leaves) are read as ours."""

import json

import crosscheck_zoo as zoo
import numpy as np
import pytest
from safetensors.numpy import save_file

from minibert_adapters.cli import main
from minibert_adapters.crosscheck import crosscheck
from minibert_adapters.crosscheck.case import Case, read_case


@pytest.fixture(scope="module")
def good():
    return zoo.build(None, np.float32)


def write(path, case: Case, drop=(), add=None, meta=None):
    tensors = {k: v for k, v in case.tensors().items() if k not in drop}
    tensors.update(add or {})
    metadata = {**case.metadata(), **(meta or {})}
    save_file(tensors, str(path), metadata={k: v for k, v in metadata.items() if v is not None})
    return path


def exit_2(path, capsys, *expected):
    assert main(["crosscheck", str(path)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert captured.out == "" and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("minibert crosscheck: error: ") and str(path) in err, err
    for text in expected:
        assert text in err, err
    return err


def test_a_missing_file_or_not_safetensors(tmp_path, capsys):
    exit_2(tmp_path / "nope.safetensors", capsys, "no such case file")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    exit_2(tmp_path / "junk.safetensors", capsys, "not a readable safetensors file")


@pytest.mark.parametrize("drop, expected", [
    ("input/cotangent", "missing tensor 'input/cotangent'"),
    ("input/input_ids", "missing tensor 'input/input_ids'"),
    ("output/hidden_states/2", "output/hidden_states must be 0..2"),
    ("param/encoder.layer.1.attention.self.key.weight", "missing (1): encoder.layer.1.attention.self.key.weight"),
])
def test_a_missing_tensor_is_named(tmp_path, capsys, good, drop, expected):
    exit_2(write(tmp_path / "c.safetensors", good, drop=[drop]), capsys, expected)


def test_a_wrong_shape_is_named(tmp_path, capsys, good):
    bad = {"param/encoder.layer.0.output.dense.weight": np.zeros((12, 36), np.float32)}
    exit_2(write(tmp_path / "c.safetensors", good, add=bad), capsys, "encoder.layer.0.output.dense.weight",
           "(12, 36) vs model (12, 37)")
    cot = {"input/cotangent": np.zeros((3, 8, 11), np.float32)}
    exit_2(write(tmp_path / "d.safetensors", good, add=cot), capsys, "'input/cotangent' must be float32 of shape")
    grad = {"grad/encoder.layer.0.output.LayerNorm.weight": np.zeros(5, np.float32)}
    exit_2(write(tmp_path / "e.safetensors", good, add=grad), capsys, "grad/encoder.layer.0.output.LayerNorm.weight")


@pytest.mark.parametrize("name, expected", [
    ("param/encoder.layer.0.output.dense.scale", "unknown parameter names"),
    ("weights/encoder.layer.0.output.dense.weight", "unknown tensor name 'weights/"),
    ("param/encoder.layer.0.intermediate.adapters.task.down.weight", "unknown parameter names"),
    ("param/encoder.layer.0.output.adapters.task.gate.weight", "unknown adapter parameter 'gate.weight'"),
])
def test_an_unknown_name_is_named(tmp_path, capsys, good, name, expected):
    exit_2(write(tmp_path / "c.safetensors", good, add={name: np.zeros(3, np.float32)}), capsys, expected)


@pytest.mark.parametrize("meta, expected", [
    ({"bert_config": "{not json"}, "metadata 'bert_config' is not valid JSON"),
    ({"bert_config": json.dumps({"hidden_size": 12, "num_attention_heads": 5})}, "bert_config' does not parse"),
    ({"adapter_config": json.dumps({"preset": "hoolsby"})}, "unknown adapter preset 'hoolsby'"),
    ({"adapter_config": json.dumps({"bottleneck_size": 5, "nonlinearity": "relu"})}, "unknown BottleneckConfig field"),
    ({"trainable": json.dumps("all")}, "'trainable' must be a JSON list"),
    ({"trainable": json.dumps(["encoder.layer.9.output.dense.weight"])}, "'trainable' names parameters"),
    ({"format": "something-else"}, "metadata 'format' is 'something-else'"),
    ({"version": "2"}, "metadata 'version' is '2'"),
    ({"adapter_name": "other"}, "adapter_name is 'other' but the tensors name 'task'"),
])
def test_metadata_that_does_not_parse_is_named(tmp_path, capsys, good, meta, expected):
    exit_2(write(tmp_path / "c.safetensors", good, meta=meta), capsys, expected)


def test_mixed_precision_and_two_adapters_are_refused(tmp_path, capsys, good):
    mixed = {"param/encoder.layer.0.output.dense.bias": good.params["encoder.layer.0.output.dense.bias"]
             .astype(np.float64)}
    exit_2(write(tmp_path / "c.safetensors", good, add=mixed), capsys, "must all be float64 or all float32")
    other = {"param/encoder.layer.0.output.adapters.second.down.bias": np.zeros(5, np.float32)}
    exit_2(write(tmp_path / "d.safetensors", good, add=other), capsys, "more than one adapter")


def test_bert_prefix_and_adapterhub_names_are_read_as_ours(tmp_path, good):
    """A case written from transformers' BertForSequenceClassification and AdapterHub's module names."""
    def theirs(name):
        name = name.replace(".down.", ".adapter_down.0.").replace(".up.", ".adapter_up.")
        return "bert." + name

    tensors = {}
    for key, value in good.tensors().items():
        kind, _, name = key.partition("/")
        tensors[f"{kind}/{theirs(name)}" if kind in ("param", "grad", "init") else key] = value
    meta = {**good.metadata(), "trainable": json.dumps([theirs(n) for n in good.trainable])}
    save_file(tensors, str(tmp_path / "hub.safetensors"), metadata=meta)
    case = read_case(tmp_path / "hub.safetensors")
    assert sorted(case.params) == sorted(good.params) and sorted(case.trainable) == sorted(good.trainable)
    report = crosscheck(case)
    assert report["ok"] and report["diagnosis"] == []


def transposed(case: Case, leaf="down.weight") -> dict:
    return {f"{group}/{k}": (v.T.copy() if k.endswith(leaf) else v) for group, tensors in
            (("param", case.params), ("grad", case.grads), ("init", case.init)) for k, v in tensors.items()}


def test_a_matrix_stored_transposed_is_named_with_the_claimed_shape(tmp_path, capsys, good):
    path = write(tmp_path / "t.safetensors", good, add=transposed(good))
    exit_2(path, capsys, "down.weight has shape (12, 5)", "(D = 12, M = 5) gives (5, 12)", "stored transposed")
    assert len(capsys.readouterr().err) < 400  # one short line, not every tensor


def test_under_json_every_outcome_is_one_json_object_on_stdout(tmp_path, capsys, good):
    bad = write(tmp_path / "t.safetensors", good, add=transposed(good))
    assert main(["crosscheck", str(bad), "--json"]) == 2
    out, err = capsys.readouterr()
    failure = json.loads(out)
    assert failure["ok"] is None and "stored transposed" in failure["error"] and "stored transposed" in err
    ok = write(tmp_path / "ok.safetensors", good)
    assert main(["crosscheck", str(ok), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_json_out_writes_the_report_while_the_text_is_printed(tmp_path, capsys, good):
    ok = write(tmp_path / "ok.safetensors", good)
    assert main(["crosscheck", str(ok), "--json-out", str(tmp_path / "report.json")]) == 0
    assert "AGREES" in capsys.readouterr().out
    assert json.loads((tmp_path / "report.json").read_text())["ok"] is True
    assert main(["crosscheck", str(ok), "--json-out", str(tmp_path)]) == 2  # a folder: refused before the work
    assert "--json-out" in capsys.readouterr().err


def test_a_tensor_absent_from_the_case_is_called_absent_not_frozen(tmp_path, capsys, good):
    name = next(k for k in good.params if k.endswith("adapters.task.up.bias"))
    path = write(tmp_path / "a.safetensors", good, drop=(f"param/{name}", f"grad/{name}", f"init/{name}"),
                 meta={"trainable": json.dumps([n for n in good.trainable if n != name])})
    report = crosscheck(path)
    assert name in report["trainable"]["absent"] and name not in report["trainable"]["missing"]
    assert main(["crosscheck", str(path)]) == 1
    out = capsys.readouterr().out
    assert "ABSENT FROM THE CASE" in out and "FROZEN, POLICY TRAINS" not in out


def test_non_finite_inputs_and_options_are_refused_and_nan_at_padding_is_not_read(tmp_path, capsys, good):
    cot = good.cotangent.copy()
    cot[0, 0, 0] = np.nan
    exit_2(write(tmp_path / "c.safetensors", good, add={"input/cotangent": cot}), capsys, "input/cotangent",
           "not finite")
    mask = good.attention_mask.copy()
    mask[0] = 0
    exit_2(write(tmp_path / "m.safetensors", good, add={"input/attention_mask": mask}), capsys, "no real token")
    hidden = good.hidden_states[1].copy()
    padded = np.argwhere(good.attention_mask == 0)[0]
    hidden[padded[0], padded[1]] = np.nan  # nothing reads a padded position
    assert crosscheck(write(tmp_path / "p.safetensors", good, add={"output/hidden_states/1": hidden}))["ok"]
    ok = write(tmp_path / "ok.safetensors", good)
    for option in (["--rtol", "inf"], ["--base", str(tmp_path / "nope")]):
        assert main(["crosscheck", str(ok), *option]) == 2
        assert option[0] in capsys.readouterr().err


def test_lora_dropout_is_off_in_the_reference_and_kinds_of_several_sizes_print(tmp_path, capsys):
    from helpers import tiny_config, tiny_inputs

    from adapters import LoraConfig, add_adapter, train_adapter
    from minibert import BertModel
    from minibert_adapters.crosscheck.case import case_from_model

    for config in (LoraConfig(r=4, alpha=8.0, target_modules=["query", "value"], dropout=0.1), "ia3"):
        model = BertModel(tiny_config(), dtype=np.float64, seed=0)
        add_adapter(model, "t", config, seed=1)
        train_adapter(model, "t")
        ids, mask, types = tiny_inputs()
        path = case_from_model(model.eval(), ids, mask, types).save(tmp_path / "case.safetensors")
        assert main(["crosscheck", str(path)]) == 0  # (IA)^3's modules count d_out or d_in: several numbers
        assert "AGREES" in capsys.readouterr().out
