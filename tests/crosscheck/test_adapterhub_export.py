"""`export_adapterhub` writes what AdapterHub 1.3.0 itself writes: the same file names, keys, config fields and values.

The fixture tests/fixtures/adapterhub_export/ is AdapterHub's own `save_adapter(..., use_safetensors=True)` of the
adapter it loaded from our export (tools/adapterhub_roundtrip.py ran the real library; meta.json records the
versions and that its output matched ours to 9e-16 in float64). This test runs the same export with NumPy only.
"""

import importlib.util
import json

import numpy as np
import pytest
from helpers import FIXTURES, ROOT

from minibert.weights import read_safetensors

FIXTURE = FIXTURES / "adapterhub_export"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("adapterhub_roundtrip", ROOT / "tools" / "adapterhub_roundtrip.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path_factory.mktemp("roundtrip")
    tool.export(out)
    return out / "ours"


def test_export_writes_the_file_names_adapterhub_reads(exported):
    written_by_hub = json.loads((FIXTURE / "meta.json").read_text())["files_written_by_adapterhub"]
    assert sorted(p.name for p in exported.iterdir()) == written_by_hub == ["adapter.safetensors",
                                                                             "adapter_config.json"]


def test_export_config_equals_adapterhubs_own(exported):
    ours = json.loads((exported / "adapter_config.json").read_text())
    theirs = json.loads((FIXTURE / "adapter_config.json").read_text())
    assert sorted(ours) == sorted(theirs)  # config, hidden_size, model_class, model_name, model_type, name, version
    assert sorted(ours["config"]) == sorted(theirs["config"])
    assert "architecture" not in ours["config"]  # AdapterHub 1.3.0 raises KeyError('bottleneck') on it
    assert ours == theirs
    assert ours["config"]["non_linearity"] == "gelu" and ours["version"] == "adapters.1.3.0"


def test_export_tensors_equal_what_adapterhub_loaded_and_saved(exported):
    ours, theirs = read_safetensors(exported / "adapter.safetensors"), read_safetensors(FIXTURE / "adapter.safetensors")
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert ours[key].dtype == theirs[key].dtype == np.float32, key
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def test_the_round_trip_was_checked_numerically():
    checks = json.loads((FIXTURE / "meta.json").read_text())["checks"]
    assert checks["every_adapter_tensor_loaded_equal"] and checks["max_abs_last_hidden_state_f64"] < 1e-12
