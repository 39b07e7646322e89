"""`minibert convert`: pytorch_model.bin -> model.safetensors. Runs only where torch is installed (it is an
optional dependency, needed for this step alone); the error without torch is tested in tests/test_cli.py."""

import numpy as np
import pytest
from conftest import tiny_config, tiny_inputs

from minibert import BertModel
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
