"""Training checkpoints on disk: the trainer state beside the weights, folders swapped in whole.

A run folder holds `best/` and `last/` (each a model or adapter folder; `last/` also holds
trainer_state.json + optimizer.npz for --resume) and history.json. Every folder is written beside the old
one and renamed into place, and every file is written to a temporary name first, so a crash or a kill at
any moment leaves a complete `best/` and `last/` behind.
"""

from __future__ import annotations

import json
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

