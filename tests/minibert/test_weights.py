"""Loading and saving Hugging Face folders: a checked copy, clear errors, bit-exact round trips."""

import json

import numpy as np
import pytest
from helpers import tiny_config, tiny_inputs
from safetensors.numpy import load_file, save_file

from minibert import BertForSequenceClassification, BertModel
from minibert.weights import CheckpointError


def write_folder(path, config, tensors):
    path.mkdir(parents=True, exist_ok=True)
    config.to_json_file(path / "config.json")
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path / "model.safetensors"))
    return path


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_then_load_is_bit_exact(tmp_path, dtype):
    model = BertModel(tiny_config(), dtype=dtype, seed=5)
    model.save_pretrained(tmp_path)
    again = BertModel.from_pretrained(tmp_path, dtype=dtype)
    for (k, a), (k2, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype and np.array_equal(a, b)
    saved = load_file(str(tmp_path / "model.safetensors"))
    assert sorted(saved) == sorted(model.state_dict())
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "bert"


def test_every_problem_is_listed_in_one_error(tmp_path):
    config = tiny_config()
    sd = dict(BertModel(config).state_dict())
    del sd["pooler.dense.bias"], sd["encoder.layer.1.output.dense.weight"]
    sd["encoder.layer.0.attention.self.query.weight"] = np.zeros((3, 3), np.float32)
    sd["encoder.layer.9.output.dense.weight"] = np.zeros((2, 2), np.float32)
    write_folder(tmp_path, config, sd)
    with pytest.raises(CheckpointError) as err:
        BertModel.from_pretrained(tmp_path)
    msg = str(err.value)
    for key in ("pooler.dense.bias", "encoder.layer.1.output.dense.weight", "encoder.layer.9.output.dense.weight",
                "encoder.layer.0.attention.self.query.weight: checkpoint (3, 3) vs model (12, 12)"):
        assert key in msg
    assert "missing (2)" in msg and "unexpected (1)" in msg and "mis-shaped (1)" in msg


def test_bert_prefix_old_layernorm_names_and_buffers_are_understood(tmp_path):
    config = tiny_config()
    model = BertModel(config, dtype=np.float64, seed=2)
    renamed = {}
    for k, v in model.state_dict().items():
        k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        renamed["bert." + k] = v
    renamed["bert.embeddings.position_ids"] = np.arange(16, dtype=np.int64)[None]
    renamed["cls.predictions.bias"] = np.zeros(3)
    write_folder(tmp_path, config, renamed)
    loaded = BertModel.from_pretrained(tmp_path, dtype=np.float64)
    ids, mask, types = tiny_inputs()
    assert np.array_equal(loaded(ids, mask, types).last_hidden_state.data,
                          model.eval()(ids, mask, types).last_hidden_state.data)


def test_head_model_from_a_base_checkpoint_and_back(tmp_path):
    base = BertModel(tiny_config(), seed=4)
    base.save_pretrained(tmp_path / "base")
    clf = BertForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=3)
    assert clf.classifier.weight.shape == (3, 12)
    assert np.array_equal(clf.bert.pooler.dense.weight.data, base.pooler.dense.weight.data)
    clf.save_pretrained(tmp_path / "clf")
    keys = load_file(str(tmp_path / "clf" / "model.safetensors"))
    assert "bert.embeddings.word_embeddings.weight" in keys and "classifier.weight" in keys
    again = BertForSequenceClassification.from_pretrained(tmp_path / "clf")
    assert again.config.num_labels == 3 and np.array_equal(again.classifier.weight.data, clf.classifier.weight.data)
    # a base model ignores the head of a classification checkpoint
    base_again = BertModel.from_pretrained(tmp_path / "clf")
    assert np.array_equal(base_again.pooler.dense.bias.data, base.pooler.dense.bias.data)


def test_truncated_safetensors_gets_a_clear_error(tmp_path):
    BertModel(tiny_config()).save_pretrained(tmp_path)
    blob = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        BertModel.from_pretrained(tmp_path)


def test_missing_files_and_non_bert_config(tmp_path):
    with pytest.raises(FileNotFoundError):
        BertModel.from_pretrained(tmp_path / "nowhere")
    tiny_config().to_json_file(tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="minibert convert"):
        BertModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "hidden_size": 8}))
    with pytest.raises(ValueError, match="gpt2"):
        BertModel.from_pretrained(tmp_path)
