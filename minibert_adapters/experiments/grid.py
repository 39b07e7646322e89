"""The paper's comparison as a resumable grid of `minibert train` runs: `minibert experiments run | report`.

A grid file (experiments/*.json) lists tasks x methods x learning rates x epochs x seeds:

    {"description": "...",
     "settings": {"batch_size": 32, "max_length": 64},           # every run's `minibert train` options
     "task_settings": {"rte": {"max_length": 128}},             # per task, over "settings"
     "tasks": ["sst2-sentences", "cola", "rte"],
     "epochs": [3], "seeds": [0, 1, 2],
     "methods": [{"name": "adapter-64", "mode": "adapter", "size": 64, "lrs": [1e-3, 3e-4]},
                 {"name": "full", "mode": "full", "lrs": [1e-4, 5e-5]}, ...]}

A method takes any of `mode, preset, size, top_k, init_std, optimizer` and may override "epochs". `run` (and
its dry run) checks every cell as `minibert train` checks its options (`check_settings`) before starting
anything: a value train would refuse, or an option that does not apply to the method's mode. Each cell
is one `minibert train` run folder, OUT/runs/TASK/METHOD/lrLR-epE-seedS, so it inherits train's --resume,
locks and Ctrl-C handling; the exact command is kept in its command.txt. Runs are started in the order of
value: seed 0 before seed 1, and each method's first-listed learning rate (the expected best) before the others.
`run` skips complete runs, resumes stopped ones, and stops cleanly at --time-limit, so a grid can be run in
slices over several sessions. A run that diverged (a non-finite loss: its learning rate is too high) is a
result, not a failure: it is recorded as "diverged", never retried, and the grid goes on.
"""

from __future__ import annotations

import math
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from minibert_adapters.commands.arguments import DIVERGED
from minibert_adapters.training.checkpoints import HISTORY, TRAINER_STATE, RunLock, read_json
from minibert_adapters.training.data import TASKS
from minibert_adapters.training.loop import MODES
from minibert_adapters.training.settings import SettingError, check_settings, grid_keys

METHOD_OPTIONS = sorted(grid_keys("method") - {"mode"})  # a method's `minibert train` options besides its mode
METHOD_KEYS = {"name", "mode", "lrs", "epochs", *METHOD_OPTIONS}
SETTING_KEYS = grid_keys("settings")
GRID_KEYS = {"description", "settings", "task_settings", "tasks", "methods", "epochs", "seeds"}
COMMAND = "command.txt"
LOG = "train.log"
MIN_SECONDS = 60  # a slice with less time left than this starts no new run: loading alone takes a few seconds


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    task: str
    method: dict
    lr: float
    epochs: int
    seed: int
    settings: dict

    @property
    def folder(self) -> Path:
        return Path("runs") / self.task / self.method["name"] / f"lr{self.lr:g}-ep{self.epochs}-seed{self.seed}"

    def options(self) -> dict:
        """{setting: value} of the `minibert train` options this run gives, in their command-line order."""
        m = self.method
        given = {"task": self.task, "mode": m["mode"], **{key: m[key] for key in METHOD_OPTIONS
                                                          if m.get(key) is not None}}
        given.update(lr=self.lr, epochs=self.epochs, seed=self.seed)
        settings = {"eval_every": "epoch", **self.settings}
        return {**given, **{key: settings[key] for key in sorted(settings) if settings[key] is not None}}

    def train_args(self, out: Path) -> list:
        """The `minibert train` options of this run (without --resume / --time-limit / --data)."""
        args = [part for key, value in self.options().items() for part in (f"--{key.replace('_', '-')}",
                                                                             _fmt(value))]
        return args + ["--out", str(out / self.folder)]


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def load_grid(path) -> dict:
    """The grid in `path`, checked: a ValueError naming the file and the first problem."""
    grid = read_json(Path(path), "experiment grid")

    def bad(message):
        return ValueError(f"{path}: {message}")

    unknown = set(grid) - GRID_KEYS
    if unknown:
        raise bad(f"unknown key(s) {sorted(unknown)}; a grid has {sorted(GRID_KEYS)}")
    for key in ("tasks", "methods", "epochs", "seeds"):
        if not isinstance(grid.get(key), list) or not grid[key]:
            raise bad(f"'{key}' must be a non-empty list")
    for task in grid["tasks"]:
        if task not in TASKS:
            raise bad(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    for group in [grid.get("settings", {}), *grid.get("task_settings", {}).values()]:
        if not isinstance(group, dict) or set(group) - SETTING_KEYS:
            raise bad(f"settings may only hold {sorted(SETTING_KEYS)}, got {group!r}")
    for task in grid.get("task_settings", {}):
        if task not in grid["tasks"]:
            raise bad(f"task_settings names {task!r}, which is not in 'tasks'")
    if not all(_positive(e, int) for e in grid["epochs"]):
        raise bad("'epochs' must be positive integers")
    names = set()
    for m in grid["methods"]:
        if not isinstance(m, dict) or not {"name", "mode", "lrs"} <= set(m) or set(m) - METHOD_KEYS:
            raise bad(f"a method needs name, mode and lrs, and may hold {sorted(METHOD_KEYS)}: {m!r}")
        if m["name"] in names or "/" in m["name"]:
            raise bad(f"method name {m['name']!r} is repeated or holds '/'")
        names.add(m["name"])
        if m["mode"] not in MODES:
            raise bad(f"method {m['name']}: unknown mode {m['mode']!r}; choose from {', '.join(MODES)}")
        lrs = m["lrs"]
        if not isinstance(lrs, list) or not lrs or not all(_positive(x, float) for x in lrs):
            raise bad(f"method {m['name']}: 'lrs' must be a non-empty list of positive numbers")
        epochs = m.get("epochs", grid["epochs"])
        if not isinstance(epochs, list) or not epochs or not all(_positive(e, int) for e in epochs):
            raise bad(f"method {m['name']}: 'epochs' must be a non-empty list of positive integers")
        # Run folders are named by lr{lr:g}: two lrs with one name would be one run.
        if len({_fmt(float(x)) for x in lrs}) < len(lrs) or len(set(epochs)) < len(epochs):
            raise bad(f"method {m['name']}: a learning rate or epoch count is repeated (as the folder names "
                      f"print them: {', '.join(_fmt(float(x)) for x in lrs)})")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in grid["seeds"]):
        raise bad("'seeds' must be non-negative integers")
    if len(set(grid["seeds"])) < len(grid["seeds"]):
        raise bad("'seeds' has a repeated seed")
    return grid


def check_cells(grid: dict, grid_path) -> None:
    """Every cell of the grid through `check_settings`, the check `minibert train` gives its options, so that
    a value train would refuse (or an option that does not apply to its mode) stops the grid before anything
    starts, not hours later in one run's train.log; a ValueError naming the file, the cell and the field."""
    for cell in cells(grid):
        try:
            check_settings(cell.options())
        except SettingError as e:
            raise ValueError(f"{grid_path}: cell {cell.folder}: '{e.name}' {_fmt(e.value)}: {e.problem}") from None


def _positive(value, kind) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value > 0 and math.isfinite(value) and (kind is float or isinstance(value, int))


def cells(grid: dict, tasks=None, methods=None, seeds=None, first_lrs=None, lrs=None, epochs=None) -> list:
    """Every run of the grid (optionally only some tasks / methods / seeds / learning rates / epochs, or each method's
    first `first_lrs` learning rates), in the order they are started. A filter value the grid does not have
    is a ValueError naming it: a typo must not quietly shrink the slice."""
    _check_filter("--task", tasks, grid["tasks"])
    _check_filter("--method", methods, [m["name"] for m in grid["methods"]])
    _check_filter("--seed", seeds, grid["seeds"])
    _check_filter("--lr", lrs, sorted({float(lr) for m in grid["methods"] for lr in m["lrs"]}))
    _check_filter("--epochs", epochs, sorted({e for m in grid["methods"] for e in m.get("epochs", grid["epochs"])}))
    chosen = [m for m in grid["methods"] if not methods or m["name"] in methods]
    out = []
    for seed in grid["seeds"]:
        if seeds and seed not in seeds:
            continue
        for rank in range(min(max(len(m["lrs"]) for m in grid["methods"]), first_lrs or math.inf)):
            for task in grid["tasks"]:
                if tasks and task not in tasks:
                    continue
                settings = {**grid.get("settings", {}), **grid.get("task_settings", {}).get(task, {})}
                for m in chosen:
                    if rank < len(m["lrs"]) and (not lrs or float(m["lrs"][rank]) in lrs):
                        for n_epochs in m.get("epochs", grid["epochs"]):
                            if not epochs or n_epochs in epochs:
                                out.append(Cell(task, m, float(m["lrs"][rank]), n_epochs, seed, settings))
    return out


def _check_filter(option: str, chosen, available) -> None:
    unknown = [value for value in chosen or [] if value not in available]
    if unknown:
        raise ValueError(f"{option} {', '.join(map(_fmt, unknown))}: not in the grid, which has "
                         f"{', '.join(map(_fmt, available))}")


DONE = ("complete", "diverged")  # statuses the runner never starts again


def run_status(folder: Path) -> str:
    """"complete", "diverged" (stopped at a non-finite loss; rerunning it would diverge the same way),
    "running" (a live `minibert train` holds the folder), "stopped" (resumable), "no-state"
    (stopped, but its saved state is not here: weights and optimizer state are never committed, so a clone
    has none; the runner starts it again), "new", or "damaged" (an unreadable history.json, which the runner
    leaves alone for a person to look at)."""
    if RunLock.holder(folder) is not None:
        return "running"
    history = folder / HISTORY
    if not history.is_file():
        return "new"
    try:
        status = read_json(history, "run history").get("status")
    except ValueError:
        return "damaged"
    if status in DONE:
        return status
    return "stopped" if (folder / "last" / TRAINER_STATE).is_file() else "no-state"


FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Forward:
    """Pass SIGINT / SIGTERM / SIGHUP on to every running `minibert train` (each saves and exits), then stop the
    grid. The children run in their own sessions, so a closed terminal's SIGHUP reaches them only from here;
    left to its default, it would end the runner and then each child at its next write into the runner's pipe,
    unsaved."""

    def __init__(self):
        self.children, self.stop = set(), False

    def __call__(self, signum, frame):
        self.stop = True
        for child in list(self.children):
            if child.poll() is None:
                child.send_signal(signum)


def run_grid(grid_path, out, time_limit=None, data=None, tasks=None, methods=None, seeds=None, first_lrs=None,
             threads=None, python=sys.executable, jobs=1, lrs=None, epochs=None, dry_run=False) -> int:
    """Run (or resume) every cell not yet complete, until done or `time_limit` seconds have passed.

    threads: BLAS / OpenMP threads of each run (default: the environment's). On a machine shared with other
    work, OpenBLAS threads that wait for each other made a step 18 times slower here; 1 avoids that.
    lrs, epochs: only these learning rates, only these epoch counts.
    dry_run: list the runs in the order they would start, with the status of each, and start nothing.
    A time_limit below MIN_SECONDS is refused: no run could start in it, and a resumed grid would never move.
    jobs: runs at the same time, started in the grid's order (with --threads 1, one per core). With one job a
    run's output is echoed here; with more, each run writes only its own train.log and this prints when each
    starts and ends.
    """
    if time_limit is not None and time_limit < MIN_SECONDS:
        raise ValueError(f"--time-limit {time_limit:g}: at least {MIN_SECONDS} s, or no run can start in it")
    grid, out = load_grid(grid_path), Path(out)
    check_cells(grid, grid_path)  # every cell, not only the filtered ones: a grid is checked whole
    todo = cells(grid, tasks, methods, seeds, first_lrs, lrs, epochs)
    env = dict(os.environ)
    if threads is not None:
        env.update({k: str(threads) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    if not todo:
        raise ValueError("no run of the grid matches the filters (--task, --method, --seed, --lr, --epochs, "
                         "--first-lrs)")
    if dry_run:  # what would run, in order, and nothing else: no folder is made, no grid copied
        statuses = [run_status(out / c.folder) for c in todo]
        for i, (cell, status) in enumerate(zip(todo, statuses)):
            print(f"[{i + 1}/{len(todo)}] {status:<8} {out / cell.folder}")
        gone = statuses.count("diverged")
        print(f"grid {grid_path}: {statuses.count('complete')} of {len(todo)} runs complete"
              f"{f', {gone} diverged' if gone else ''}, {sum(s not in DONE for s in statuses)} to go (dry run: "
              "nothing started)")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    # Several grids may share one results folder (run folders are named by task, method, lr, epochs, seed).
    (out / "grids").mkdir(exist_ok=True)
    (out / "grids" / Path(grid_path).name).write_text(Path(grid_path).read_text(encoding="utf-8"), encoding="utf-8")
    start, forward, failed = time.monotonic(), _Forward(), 0
    running = {}  # child process -> its run folder
    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}

    def finish(child):
        nonlocal failed
        folder = running.pop(child)
        forward.children.discard(child)
        code = child.wait()
        if code == DIVERGED and run_status(folder) == "diverged":
            print(f"  {folder}: diverged (recorded; not run again); see {folder / LOG}", flush=True)
        elif code not in (0, 130):
            failed += 1
            print(f"  {folder}: minibert train exited {code}; see {folder / LOG}", flush=True)
        elif jobs > 1:
            print(f"  {folder}: {run_status(folder)}", flush=True)
        if code == 130:
            forward.stop = True

    try:
        for i, cell in enumerate(todo):
            folder = out / cell.folder
            status = run_status(folder)
            if status in DONE:
                continue
            while len(running) >= jobs:  # wait for a free slot
                finish(_wait_any(running))
            left = None if time_limit is None else time_limit - (time.monotonic() - start)
            if forward.stop or (left is not None and left < MIN_SECONDS):
                break
            if status == "running":  # another runner (or a hand-started train) has it: leave it be
                print(f"  {folder}: running in process {RunLock.holder(folder)}; skipped", flush=True)
                continue
            if status == "damaged":
                failed += 1
                print(f"  {folder}: unreadable {HISTORY}; skipped (look at it, or delete the folder to rerun)")
                continue
            args = cell.train_args(out)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / COMMAND).write_text("minibert train " + shlex.join(args) + "\n", encoding="utf-8")
            extra = {"stopped": ["--resume"], "no-state": ["--overwrite"]}.get(status, [])
            if status == "no-state":
                print(f"  {folder}: stopped, but its saved state is not here; starting it again", flush=True)
            extra += ["--data", str(data)] if data else []
            extra += ["--time-limit", f"{max(1.0, left - 30):.0f}"] if left is not None else []
            print(f"[{i + 1}/{len(todo)}] {'resuming' if status == 'stopped' else 'starting'} {folder}", flush=True)
            argv = [python, "-m", "minibert_adapters", "train", *args, *extra]
            if jobs == 1:
                child = _run_child(argv, folder / LOG, forward, env)
                running[child] = folder
                finish(child)
            else:
                running[_start_child(argv, folder / LOG, forward, env)] = folder
        while running:
            finish(_wait_any(running))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    statuses = [run_status(out / c.folder) for c in todo]
    left = sum(status not in DONE for status in statuses)
    gone = statuses.count("diverged")
    advice = (f"; {failed} failed: see each one's {LOG}, fix the cause, then run again" if failed else
              " (stopped; run again to continue)" if left else "")
    print(f"grid {grid_path}: {statuses.count('complete')} of {len(todo)} runs complete"
          f"{f', {gone} diverged' if gone else ''}, {left} to go{advice}", flush=True)
    if forward.stop and left:
        return 130
    return 1 if failed else 0


def _start_child(argv, log: Path, forward: _Forward, env: dict) -> subprocess.Popen:
    """Start `argv` with its output appended to `log` only."""
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ {shlex.join(argv)}\n")
        f.flush()
        # Its own process group: a Ctrl-C at the terminal reaches it only through _Forward, exactly once.
        child = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    forward.children.add(child)
    return child


def _wait_any(running: dict) -> subprocess.Popen:
    """The first of the running children to end (polled every half second)."""
    while True:
        for child in running:
            if child.poll() is not None:
                return child
        time.sleep(0.5)


def _run_child(argv, log: Path, forward: _Forward, env: dict) -> subprocess.Popen:
    """Run `argv` to its end, echoing its output and appending it to `log`; the finished child."""
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ {shlex.join(argv)}\n")
        f.flush()
        # Its own process group: a Ctrl-C at the terminal reaches it only through _Forward, exactly once.
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 start_new_session=True, env=env)
        forward.children.add(child)
        for line in child.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            f.write(line)
            f.flush()
        child.wait()
    return child
