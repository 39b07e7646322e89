"""The loaders never load a wrong checkpoint quietly.

Every damaged file (bytes flipped, truncated, or a tensor removed, renamed, re-typed, or set to NaN) either
raises one of the errors the loaders document (ValueError, of which CheckpointError and StateDictError
are kinds, or OSError), or loads exactly the values that were saved. Files this project writes carry a
digest of their tensors, so a flipped bit in the data is caught too.
"""

import json

import numpy as np
import pytest
from helpers import TINY, tiny_config, tiny_inputs
from safetensors.numpy import load_file, save_file

from adapters import AdapterConfig, AdapterSet, add_adapter, load_adapter, save_adapter
from autograd.nn import StateDictError
from minibert import BertForSequenceClassification, BertModel

N_BYTE_FLIPS = 150
N_TRUNCATIONS = 50


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("saved")
    model = BertForSequenceClassification(tiny_config(num_labels=3), dtype=np.float32, seed=1)
    add_adapter(model, "task", AdapterConfig.from_preset("houlsby", bottleneck_size=TINY["M"]), seed=2)  # M <= D
    for p in model.parameters():  # every tensor trained away from its init
        p.data += np.random.default_rng(3).standard_normal(p.shape).astype(p.dtype) * 0.01
    save_adapter(model, "task", root / "adapter")
    BertModel(tiny_config(), seed=4).save_pretrained(root / "model")
    values = {k: p.data.copy() for k, p in AdapterSet.of(model).task_parameters("task").items()}
    return root, values


def fresh():
    return BertForSequenceClassification(tiny_config(num_labels=3), dtype=np.float32, seed=1)


def load_adapter_or_error(folder):
    model = fresh()
    try:
        load_adapter(model, folder)
    except (ValueError, OSError) as e:
        assert str(e), "an error must say what is wrong"
        return None
    return {k: p.data for k, p in AdapterSet.of(model).task_parameters("task").items()}


def load_model_or_error(folder):
    try:
        return BertModel.from_pretrained(folder).state_dict()
    except (ValueError, OSError) as e:
        assert str(e)
        return None


def copy_folder(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def corruptions(data: bytes, seed: int):
    """N_BYTE_FLIPS files with one random byte changed, N_TRUNCATIONS cut at a random length."""
    rng = np.random.default_rng(seed)
    for _ in range(N_BYTE_FLIPS):
        b = bytearray(data)
        i = int(rng.integers(len(b)))
        b[i] ^= int(rng.integers(1, 256))
        yield bytes(b)
    for _ in range(N_TRUNCATIONS):
        yield data[:int(rng.integers(len(data)))]


def test_damaged_adapter_files_never_load_other_values(saved, tmp_path):
    root, values = saved
    original = (root / "adapter" / "adapter.safetensors").read_bytes()
    outcomes = {"refused": 0, "same values": 0}
    for i, data in enumerate(corruptions(original, seed=0)):
        folder = copy_folder(root / "adapter", tmp_path / f"a{i}")
        (folder / "adapter.safetensors").write_bytes(data)
        loaded = load_adapter_or_error(folder)
        if loaded is None:
            outcomes["refused"] += 1
            continue
        assert loaded.keys() == values.keys() and all(np.array_equal(loaded[k], values[k]) for k in values), i
        outcomes["same values"] += 1
    assert outcomes["refused"] >= N_BYTE_FLIPS // 2  # nearly every change matters; a few hit header padding


def test_damaged_adapter_configs_are_refused_with_the_file_named(saved, tmp_path):
    root, _ = saved
    meta = json.loads((root / "adapter" / "adapter_config.json").read_text())
    variants = ["", "{", "[]", "null", json.dumps({**meta, "format_version": 7}),
                json.dumps({k: v for k, v in meta.items() if k != "base_model"}),
                json.dumps({**meta, "base_model": {}}), json.dumps({**meta, "config": {"bottleneck_size": -1}}),
                json.dumps({**meta, "config": {"no_such_field": 1}}), json.dumps({**meta, "kind": "lora"})]
    for i, variant in enumerate(variants):
        folder = copy_folder(root / "adapter", tmp_path / f"c{i}")
        (folder / "adapter_config.json").write_text(variant)
        model = fresh()
        with pytest.raises((ValueError, OSError)) as e:
            load_adapter(model, folder)
        assert "adapter_config.json" in str(e.value) or "kind" in str(e.value), (variant, e.value)
        assert "task" not in AdapterSet.of(model).configs  # nothing half-added



@pytest.mark.parametrize("fmt", ["ours", "AdapterHub", "PEFT"])
@pytest.mark.parametrize("content, problem", [
    (b"{", "is not valid JSON"), (b"[1]", "is not a JSON object (it holds a JSON array)"),
    (b'{"name": "caf\xe9"}', "is not UTF-8 text"),
])
def test_a_damaged_adapter_config_json_is_named_alike_by_every_loader(saved, tmp_path, fmt, content, problem):
    from helpers import FIXTURES

    from adapters import load_adapterhub, load_peft

    root, _ = saved
    source = {"ours": root / "adapter", "AdapterHub": FIXTURES / "adapterhub_houlsby",
              "PEFT": FIXTURES / "peft" / "lora_qv"}[fmt]
    folder = copy_folder(source, tmp_path / "damaged")
    path = folder / "adapter_config.json"
    path.write_bytes(content)
    loaders = [load_adapter] + {"ours": [], "AdapterHub": [load_adapterhub], "PEFT": [load_peft]}[fmt]
    for load in loaders:
        with pytest.raises(ValueError) as e:
            load(fresh(), folder)
        assert str(e.value).startswith(f"{path}: the ") and problem in str(e.value), (load.__name__, e.value)

def test_randomly_damaged_adapter_configs_never_load_other_values(saved, tmp_path):
    root, values = saved
    text = (root / "adapter" / "adapter_config.json").read_text()
    rng = np.random.default_rng(1)
    refused = 0
    for i in range(60):  # one character replaced by a NUL or a brace
        j = int(rng.integers(len(text)))
        folder = copy_folder(root / "adapter", tmp_path / f"r{i}")
        (folder / "adapter_config.json").write_text(text[:j] + "\x00}"[int(rng.integers(2))] + text[j + 1:])
        loaded = load_adapter_or_error(folder)
        if loaded is None:
            refused += 1
            continue
        assert all(np.array_equal(loaded[k], values[k]) for k in values), i  # e.g. the informative "parameters"
    assert refused >= 30


@pytest.mark.parametrize("damage", ["drop classifier", "drop layer norm", "nan", "inf", "int32", "rename",
                                    "reshape"])
def test_tensor_level_damage_is_refused_by_name(saved, tmp_path, damage):
    root, _ = saved
    folder = copy_folder(root / "adapter", tmp_path / "a")
    tensors = load_file(str(folder / "adapter.safetensors"))
    ln = "bert.encoder.layer.0.output.LayerNorm.weight"
    down = "bert.encoder.layer.1.output.adapters.task.down.weight"
    if damage == "drop classifier":
        del tensors["classifier.weight"]
        expected = "missing (1): classifier.weight"
    elif damage == "drop layer norm":
        del tensors[ln]
        expected = f"missing (1): {ln}"
    elif damage in ("nan", "inf"):
        tensors[down][0, 0] = np.nan if damage == "nan" else np.inf
        expected = f"NaN or Inf values (1): {down}"
    elif damage == "int32":
        tensors[down] = tensors[down].astype(np.int32)
        expected = f"not floating point (1): {down} (int32)"
    elif damage == "rename":
        tensors["bert.encoder.layer.9.output.adapters.task.down.weight"] = tensors.pop(down)
        expected = "unexpected (1): bert.encoder.layer.9.output.adapters.task.down.weight"
    else:
        tensors[down] = tensors[down].reshape(-1)
        expected = "mis-shaped (1)"
    save_file(tensors, str(folder / "adapter.safetensors"))  # no digest: as a file written elsewhere
    model = fresh()
    head = model.classifier.weight.data.copy()
    with pytest.raises(StateDictError) as e:
        load_adapter(model, folder)
    assert expected in str(e.value)
    assert np.array_equal(model.classifier.weight.data, head) and not AdapterSet.of(model).configs


def test_damaged_model_files_never_load_other_values(saved, tmp_path):
    root, _ = saved
    original = (root / "model" / "model.safetensors").read_bytes()
    reference = BertModel.from_pretrained(root / "model").state_dict()
    refused = 0
    for i, data in enumerate(corruptions(original, seed=2)):
        folder = copy_folder(root / "model", tmp_path / f"m{i}")
        (folder / "model.safetensors").write_bytes(data)
        loaded = load_model_or_error(folder)
        if loaded is None:
            refused += 1
            continue
        assert all(np.array_equal(loaded[k], reference[k]) for k in reference), i
    assert refused >= N_BYTE_FLIPS // 2


def test_nan_in_a_checkpoint_without_a_digest_is_refused(saved, tmp_path):
    root, _ = saved
    folder = copy_folder(root / "model", tmp_path / "m")
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["pooler.dense.bias"][2] = np.nan
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(StateDictError, match=r"NaN or Inf values \(1\): pooler.dense.bias"):
        BertModel.from_pretrained(folder)


def test_empty_batches_and_fractional_labels_are_refused():
    model = BertForSequenceClassification(tiny_config(), seed=0)
    ids, mask, types = tiny_inputs()
    with pytest.raises(ValueError, match="empty batch"):
        model(np.zeros((0, 5), dtype=np.int64))
    for labels in ([0.5, 1], [1.7, 1]):
        with pytest.raises(ValueError, match="whole numbers"):
            model(ids, mask, types, labels=labels)
    with pytest.raises(ValueError, match="out of range"):
        model(ids, mask, types, labels=[0, 2])
    assert np.isfinite(model(ids, mask, types, labels=[1.0, 0.0]).loss.data)  # whole floats are class indices
