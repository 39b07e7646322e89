"""`minibert convert`: pytorch_model.bin -> model.safetensors. Runs only where torch is installed (it is an
optional dependency, needed for this step alone; CI runs these in its torch environment)."""

import numpy as np
import pytest
from helpers import tiny_config, tiny_inputs

from minibert import BertModel
from minibert.weights import read_safetensors
from minibert_adapters.cli import main

torch = pytest.importorskip("torch")


def test_convert_round_trip(tmp_path):
    model = BertModel(tiny_config(), dtype=np.float32, seed=9).eval()
    src = tmp_path / "src"
    src.mkdir()
    tiny_config().to_json_file(src / "config.json")
    torch.save({"bert." + k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()},
               src / "pytorch_model.bin")
    assert main(["convert", str(src), str(tmp_path / "dst")]) == 0
    loaded = BertModel.from_pretrained(tmp_path / "dst")
    ids, mask, types = tiny_inputs()
    assert np.array_equal(loaded(ids, mask, types).last_hidden_state.data,
                          model(ids, mask, types).last_hidden_state.data)


class NotATensor:
    """An arbitrary object: unpickling it would run arbitrary code paths, so convert must refuse."""


def test_convert_refuses_pickled_objects(tmp_path, capsys):
    torch.save({"x": NotATensor()}, tmp_path / "pytorch_model.bin")
    assert main(["convert", str(tmp_path / "pytorch_model.bin"), str(tmp_path / "out.safetensors")]) == 2
    assert "refusing to unpickle" in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()


def saved_state(seed=9):
    model = BertModel(tiny_config(), dtype=np.float32, seed=seed).eval()
    return model, {k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()}


def test_convert_unwraps_a_state_dict_saved_inside_a_training_checkpoint(tmp_path, capsys):
    model, state = saved_state()
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "pytorch_model.bin")
    assert main(["convert", str(tmp_path / "pytorch_model.bin"), str(tmp_path / "out.safetensors")]) == 0
    assert "unwrapped the state dict stored under 'state_dict'" in capsys.readouterr().out
    tensors = read_safetensors(tmp_path / "out.safetensors")
    assert all(np.array_equal(tensors[k], v) for k, v in model.state_dict().items())


def test_convert_widens_bfloat16_to_float32_and_says_so(tmp_path, capsys):
    _, state = saved_state()
    state = {k: v.to(torch.bfloat16) for k, v in state.items()}
    torch.save(state, tmp_path / "pytorch_model.bin")
    assert main(["convert", str(tmp_path / "pytorch_model.bin"), str(tmp_path / "out.safetensors")]) == 0
    assert "widened" in capsys.readouterr().out
    tensors = read_safetensors(tmp_path / "out.safetensors")
    for k, v in state.items():
        assert tensors[k].dtype == np.float32 and np.array_equal(tensors[k], v.float().numpy())


def test_convert_refuses_an_empty_file_and_an_unwritable_destination(tmp_path, capsys):
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    assert main(["convert", str(tmp_path / "pytorch_model.bin"), str(tmp_path / "out.safetensors")]) == 2
    assert "is empty" in capsys.readouterr().err
    _, state = saved_state()
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "blocker").write_text("a file where a folder should be")
    assert main(["convert", str(tmp_path / "pytorch_model.bin"), str(tmp_path / "blocker" / "dst")]) == 2
    err = capsys.readouterr().err
    assert "blocker" in err and err.count("\n") == 1
