"""Run settings are decided once (minibert_adapters.training.settings): `minibert train`'s options, --resume's
defaults, the loop's config and the keys of an experiment grid all come from that one table, so they agree."""

import dataclasses

from minibert_adapters.cli import build_parser
from minibert_adapters.experiments.grid import METHOD_KEYS, SETTING_KEYS, Cell
from minibert_adapters.training.loop import TrainConfig
from minibert_adapters.training.settings import ADDED_LATER, RUN_DEFAULTS, SETTINGS, STEERING_DEFAULTS, train_config


def train_parser():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["train"]


def test_every_setting_is_a_train_option_and_every_option_a_setting():
    options = {a.dest for a in train_parser()._actions} - {"help", "time_limit", "out", "resume", "overwrite", "func"}
    assert options == {s.name for s in SETTINGS} == set(RUN_DEFAULTS) | set(STEERING_DEFAULTS)


def test_every_grid_key_is_a_train_option():
    options = {a.dest for a in train_parser()._actions}
    assert SETTING_KEYS <= options
    assert METHOD_KEYS - {"name", "lrs", "epochs"} <= options


def test_a_grid_cell_with_every_setting_parses_as_a_train_command(tmp_path):
    """The runner's command line for a cell that sets every grid key (warmup_fraction included) is one that
    `minibert train` accepts, and gives back each value."""
    settings = {"batch_size": 8, "max_length": 32, "weight_decay": 0.0, "warmup_fraction": 0.06, "clip": 0.5,
                "train_limit": 40, "eval_limit": 20, "eval_every": "epoch", "save_every": 5, "model": "m"}
    assert set(settings) == SETTING_KEYS
    method = {"name": "a", "mode": "adapter", "preset": "houlsby", "size": 8, "top_k": 1, "init_std": 0.01,
              "optimizer": "adapter-bert", "lrs": [1e-3]}
    cell = Cell("cola", method, 1e-3, 2, 1, settings)
    args = train_parser().parse_args(cell.train_args(tmp_path))
    for key, value in {**settings, "size": 8, "init_std": 0.01, "optimizer": "adapter-bert", "lr": 1e-3,
                       "epochs": 2, "seed": 1, "task": "cola"}.items():
        assert getattr(args, key) == value, key


def test_the_loop_config_takes_every_setting_it_has():
    resolved = {**RUN_DEFAULTS, **STEERING_DEFAULTS, "lr": 1e-3, "warmup_fraction": 0.25, "clip": 0.0,
                "weight_decay": 0.05}
    config = train_config(resolved, "accuracy", 10)
    assert (config.warmup_fraction, config.clip, config.weight_decay) == (0.25, 0.0, 0.05)
    shared = {f.name for f in dataclasses.fields(TrainConfig)} - {"metric"}
    assert shared <= set(resolved)


def test_runs_saved_before_a_setting_existed_resume_with_the_value_they_used():
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for name in ("weight_decay", "warmup_fraction", "clip"):
        assert ADDED_LATER[name] == defaults[name] == RUN_DEFAULTS[name]
