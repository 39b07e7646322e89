"""Training checkpoints on disk: the trainer state beside the weights, folders swapped in whole.

A run folder holds `best/` and `last/` (each a model or adapter folder; `last/` also holds
trainer_state.json + optimizer.npz for --resume) and history.json. Every folder is written beside the old
one and renamed into place, and every file is written to a temporary name first, so a crash or a kill at
any moment leaves a complete `best/` and `last/` behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from minibert.weights import write_atomically

TRAINER_STATE = "trainer_state.json"
OPTIMIZER_STATE = "optimizer.npz"
HISTORY = "history.json"


def save_trainer_state(directory, state: dict):
    """trainer_state.json (step, schedule, generators, history, best) + optimizer.npz (Adam moments)."""
    directory = Path(directory)
    opt = state["optimizer"]
    arrays, steps = {}, {}
    for i, s in opt["state"].items():
        steps[str(i)] = int(s["step"])
        arrays[f"exp_avg.{i}"] = s["exp_avg"]
        arrays[f"exp_avg_sq.{i}"] = s["exp_avg_sq"]

    def write_npz(tmp):
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a bare name
            np.savez(f, **arrays)
    write_atomically(directory / OPTIMIZER_STATE, write_npz)
    meta = {k: v for k, v in state.items() if k != "optimizer"}
    meta["optimizer"] = {"param_groups": opt["param_groups"], "steps": steps}
    write_json(directory / TRAINER_STATE, meta)


def read_json(path: Path, what: str) -> dict:
    """A JSON object from `path`; a ValueError naming the file when it is unreadable or not an object."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read the {what}: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: the {what} is not a JSON object")
    return value


def load_trainer_state(directory) -> dict:
    """The state save_trainer_state wrote; a ValueError naming the file for anything damaged or missing."""
    directory = Path(directory)
    meta = read_json(directory / TRAINER_STATE, "trainer state")
    try:
        with np.load(directory / OPTIMIZER_STATE, allow_pickle=False) as arrays:
            opt_state = {int(i): {"step": int(n), "exp_avg": arrays[f"exp_avg.{i}"],
                                  "exp_avg_sq": arrays[f"exp_avg_sq.{i}"]}
                         for i, n in meta["optimizer"]["steps"].items()}
        groups = [{**g, "betas": tuple(g["betas"])} for g in meta["optimizer"]["param_groups"]]
        for key in ("step", "steps", "schedule", "generators", "history", "best", "seconds"):
            meta[key]  # noqa: B018  (a KeyError here names what is missing)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError) as e:
        raise ValueError(f"{directory}: damaged trainer state ({TRAINER_STATE} / {OPTIMIZER_STATE}): "
                         f"{type(e).__name__}: {e}") from None
    meta["optimizer"] = {"state": opt_state, "param_groups": groups}
    return meta


def replace_dir(tmp: Path, dst: Path):
    """Put the finished folder `tmp` in place of `dst`. A crash at any point leaves a complete folder at
    `dst` or at `dst`.old (which `existing_dir` falls back to)."""
    old = dst.with_name(dst.name + ".old")
    if old.exists() and dst.exists():
        shutil.rmtree(old)
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    if old.exists():
        shutil.rmtree(old)


def existing_dir(dst: Path) -> Path | None:
    old = dst.with_name(dst.name + ".old")
    return dst if dst.is_dir() else old if old.is_dir() else None


def write_json(path: Path, obj):
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


class RunLock:
    """Only one `minibert train` at a time in one --out: a second one would overwrite the first's files and
    both would report success. The lock file names the process that holds it; a lock left by a process that
    no longer runs (killed with SIGKILL) is taken over."""

    NAME = ".lock"

    @classmethod
    def holder(cls, folder: Path) -> int | None:
        """The process id of a live `minibert train` holding `folder`, or None."""
        try:
            pid = (Path(folder) / cls.NAME).read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return None
        return int(pid) if pid.isdigit() and _process_runs(int(pid)) else None

    def __init__(self, out: Path | None):
        self.path = out / self.NAME if out is not None else None

    def __enter__(self):
        if self.path is None:
            return self
        # The lock appears with its pid already in it (written aside, then hard-linked into place, which fails
        # if the name exists): a reader never sees an empty lock and takes it for a stale one.
        mine = self.path.with_name(f"{self.NAME}.{os.getpid()}")
        mine.write_text(f"{os.getpid()}\n", encoding="utf-8")
        try:
            while True:
                try:
                    os.link(mine, self.path)
                    return self
                except FileExistsError:
                    holder = self.holder(self.path.parent)
                    if holder is not None:
                        raise ValueError(f"{self.path.parent} is in use by another minibert train (process "
                                         f"{holder}); wait for it, or give another --out") from None
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
        finally:
            mine.unlink(missing_ok=True)

    def __exit__(self, *exc):
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
