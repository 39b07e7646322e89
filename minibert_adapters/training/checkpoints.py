"""Training checkpoints on disk: the trainer state beside the weights, folders swapped in whole.

A run folder holds `best/` and `last/` (each a model or adapter folder; `last/` also holds
trainer_state.json + optimizer.npz for --resume) and history.json. Every folder is written beside the old
one and renamed into place, and every file is written to a temporary name first, so a crash or a kill at
any moment leaves a complete `best/` and `last/` behind. A write that fails (a full disk, `ulimit -f`) removes
its temporary file and says which file it was writing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
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
    write_or_clean_up(directory / OPTIMIZER_STATE, write_npz)
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


# What trainer_state.json must hold, and of which JSON type, for fine_tune to continue from it.
STATE_FIELDS = {"step": int, "steps": int, "schedule": dict, "generators": list, "history": list,
                "seconds": (int, float), "optimizer": dict}


def _first_line(e: Exception) -> str:
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


def load_trainer_state(directory) -> dict:
    """The state save_trainer_state wrote; a ValueError naming the damaged or missing file, in one line."""
    directory = Path(directory)
    meta_file, arrays_file = directory / TRAINER_STATE, directory / OPTIMIZER_STATE
    try:
        meta = read_json(meta_file, "trainer state")
    except ValueError as e:
        raise ValueError(f"{e}; use --overwrite to start the run again") from None
    try:
        for key, kind in STATE_FIELDS.items():
            if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
                raise TypeError(f"'{key}' is {type(meta[key]).__name__}")
        if meta["best"] is not None and not isinstance(meta["best"], dict):
            raise TypeError(f"'best' is {type(meta['best']).__name__}")
        if not 0 <= meta["step"] <= meta["steps"]:
            raise ValueError(f"step {meta['step']} of {meta['steps']}")
        steps = {int(i): int(n) for i, n in meta["optimizer"]["steps"].items()}
        groups = [{**g, "betas": tuple(g["betas"])} for g in meta["optimizer"]["param_groups"]]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{meta_file}: damaged trainer state ({_first_line(e)}); use --overwrite to start the "
                         "run again") from None
    if not arrays_file.is_file():
        raise ValueError(f"{arrays_file}: missing (the optimizer state --resume needs); use --overwrite to start "
                         "the run again")
    try:
        with np.load(arrays_file, allow_pickle=False) as arrays:
            opt_state = {i: {"step": n, "exp_avg": arrays[f"exp_avg.{i}"], "exp_avg_sq": arrays[f"exp_avg_sq.{i}"]}
                         for i, n in steps.items()}
    except Exception as e:  # noqa: BLE001  a damaged zip fails in many ways (BadZipFile, zlib.error, EOFError, ...)
        raise ValueError(f"{arrays_file}: damaged optimizer state ({_first_line(e)}); use --overwrite to start "
                         "the run again") from None
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
    write_or_clean_up(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


def write_or_clean_up(path: Path, write):
    """`write_atomically`, but a failure (a full disk, `ulimit -f`: "File too large") removes the temporary
    file and raises an OSError naming `path`: the system's own message often names no file."""
    path = Path(path)
    try:
        write_atomically(path, write)
    except OSError as e:
        path.with_name(path.name + ".tmp").unlink(missing_ok=True)
        raise OSError(f"{path}: cannot write: {e.strerror or e}") from None


class RunLock:
    """Only one `minibert train` at a time in one --out: a second one would overwrite the first's files and
    both would report success.

    Convention: an OS advisory lock (`flock`) on OUT/.lock, not a pid file. The kernel drops the lock when its
    process ends, however it ends (SIGKILL included), so a lock is never stale and a reused pid can never hold
    a folder. The file also names the holder's pid, for the error message; it stays behind, empty, when free.
    """

    NAME = ".lock"
    WAIT = 1.0  # seconds a new train retries: `holder` takes the lock shared for an instant to ask

    @classmethod
    def holder(cls, folder: Path) -> int | None:
        """The process id of a live `minibert train` holding `folder` (0 if it has not written it yet), or None."""
        try:
            f = open(Path(folder) / cls.NAME, encoding="utf-8")
        except OSError:
            return None
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = f.read().strip()
                return int(pid) if pid.isdigit() else 0
            fcntl.flock(f, fcntl.LOCK_UN)
            return None

    def __init__(self, out: Path | None):
        self.path = out / self.NAME if out is not None else None
        self.file = None

    def __enter__(self):
        if self.path is None:
            return self
        self.file = open(self.path, "a+", encoding="utf-8")  # "a+": never truncate a file another process holds
        deadline = time.monotonic() + self.WAIT
        while True:
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = self.holder(self.path.parent)
                    self.file.close()
                    raise ValueError(f"{self.path.parent} is in use by another minibert train (process "
                                     f"{holder or '?'}); wait for it, or give another --out") from None
                time.sleep(0.05)
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()
        return self

    def __exit__(self, *exc):
        if self.file is not None:
            self.file.seek(0)
            self.file.truncate()  # free: no pid to report
            self.file.flush()
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None
