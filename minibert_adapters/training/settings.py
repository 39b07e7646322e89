"""Every setting of a fine-tuning run, decided once: its default, its meaning, and where it may be given.

`SETTINGS` is the one table. Everything else is read from it, so the places cannot disagree:

- `minibert train`'s options: one `--name` per setting, with the help and type given here;
- what `--resume` keeps: a "run" setting defines the run (given again, it must be the saved value); a
  "steering" setting only steers evaluation, saving and printing (the saved value is the default, and it may
  change);
- what a run saved before a setting existed used (`before`), so that old run folders still resume;
- the loop's `TrainConfig` (`train_config`);
- the keys of an experiment grid (`grid_keys`): "method" settings a grid's method may set, "settings" ones its
  `settings` / `task_settings`; "axis" ones are the grid's own axes (task, lr, epochs, seed);
- which modes a setting applies to (`modes`): `check_settings` refuses a setting given for a mode it does not
  apply to, for `minibert train`'s options and for every cell of a grid alike.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from minibert_adapters.commands.arguments import (
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from minibert_adapters.training.data import TASKS
from minibert_adapters.training.loop import MODES, OPTIMIZERS, TrainConfig

NOT_NEW = object()  # `before` of a setting every saved run has


def eval_every(text):
    """--eval-every: a number of steps (0: only at the end), or "epoch" (after every pass over the data)."""
    return "epoch" if text.strip().lower() == "epoch" else non_negative_int(text)


@dataclass(frozen=True)
class Setting:
    name: str
    default: object
    help: str
    role: str = "run"           # "run" (defines the run) or "steering" (evaluation, saving, printing)
    type: object = None         # the option's argparse type (None: a string)
    choices: tuple = None
    grid: str | None = None     # "method", "settings", "axis" or None (not in grids)
    before: object = NOT_NEW    # the value of runs saved before this setting existed
    group: str | None = None    # options of one group are mutually exclusive
    modes: tuple = None         # the modes it applies to (None: every mode)
    lacking: str = ""           # what the other modes lack, for the message refusing it there

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


# Default peak learning rates by mode (Houlsby2019 §3.1 / Devlin2019: about 3e-4 for adapters, 3e-5 for full).
DEFAULT_LR = {"adapter": 3e-4, "layernorm": 3e-4, "full": 3e-5, "top-k": 3e-5, "head": 1e-3}

SETTINGS = (
    Setting("task", "sst2-sentences", "the GLUE task (default sst2-sentences, 6,920 train sentences)",
            choices=tuple(TASKS), grid="axis"),
    Setting("mode", "adapter", "what trains (default adapter): adapter = the preset's policy, full = everything, "
                               "layernorm = LayerNorms + head, top-k, head", choices=MODES, grid="method"),
    Setting("preset", "houlsby", "adapter preset in mode adapter (default houlsby: adapters + LayerNorms + head)",
            grid="method", modes=("adapter",), lacking="has no adapters"),
    Setting("size", None, "adapter size, its kind's size field (M for Houlsby adapters; default: the preset's, 64)",
            type=positive_int, grid="method", modes=("adapter",), lacking="has no adapters"),
    Setting("top_k", 1, "encoder layers trained in mode top-k (default 1)", type=positive_int, grid="method",
            modes=("top-k",), lacking="does not train a number of top layers"),
    Setting("init_std", None, "std of the adapters' initial weights, over the preset's (houlsby: 1e-3; Houlsby2019 "
                              "Fig. 6 sweeps 1e-7 .. 1); must be > 0: an exact identity is the preset "
                              "houlsby-zero-init", type=positive_float, grid="method", before=None,
            modes=("adapter",), lacking="has no adapters"),
    Setting("optimizer", "adamw", "adamw (default: torch-style AdamW, bias-corrected, linear decay from the peak) or "
                                  "adapter-bert (the original code: no bias correction, decay from step 0); "
                                  "docs/conventions.md §2", choices=OPTIMIZERS, grid="method", before="adamw"),
    Setting("pooler", "train", "the pooler (dense + tanh on [CLS]): 'train' it with the task in every mode (default: "
                               "all-MiniLM-L6-v2's pooler was never trained), or keep it 'frozen' in modes adapter, "
                               "layernorm and head, as the original code does for BERT's trained pooler",
            choices=("train", "frozen"), grid="method", before="frozen", modes=("adapter", "layernorm", "head"),
            lacking="always trains the pooler"),
    Setting("steps", 100, "optimizer steps (default 100)", type=positive_int, group="length"),
    Setting("epochs", None, "passes over the training data, the paper's unit: steps = N * ceil(train / batch size)",
            type=positive_int, grid="axis", before=None, group="length"),
    Setting("lr", None, "peak learning rate (default 3e-4 for adapter and layernorm, 3e-5 for full and top-k, 1e-3 "
                        "for head)", type=positive_float, grid="axis"),
    Setting("batch_size", 32, "examples per step (default 32)", type=positive_int, grid="settings"),
    Setting("max_length", 128, "tokens per example, longer ones are cut (default 128)", type=positive_int,
            grid="settings"),
    Setting("weight_decay", 0.01, "AdamW's decoupled weight decay, not on LayerNorms and biases (default 0.01)",
            type=non_negative_float, grid="settings", before=0.01),
    Setting("warmup_fraction", 0.1, "linear warm-up over this share of the steps, then linear decay to 0 "
                                    "(default 0.1)", type=fraction, grid="settings", before=0.1),
    Setting("clip", 1.0, "clip the gradients' global norm at this value (default 1.0; 0: no clipping)",
            type=non_negative_float, grid="settings", before=1.0),
    Setting("train_limit", None, "train on a random sample of N training examples (drawn with --seed; default: all)",
            type=positive_int, grid="settings"),
    Setting("eval_limit", None, "evaluate on a fixed random sample of N dev examples (the same for every seed; "
                                "default: all)", type=positive_int, grid="settings"),
    Setting("seed", 0, "adapter / head initialisation, data order, dropout (default 0)", type=non_negative_int,
            grid="axis"),
    Setting("model", None, "Hugging Face folder; default: the embedded all-MiniLM-L6-v2", grid="settings"),
    Setting("eval_every", 0, "evaluate on dev every N steps, or 'epoch' after every epoch (default 0: only after the "
                             "last step)", role="steering", type=eval_every, grid="settings"),
    Setting("save_every", 25, "also save last/ every N steps (default 25; 0: only at evaluations and the end)",
            role="steering", type=non_negative_int, grid="settings"),
    Setting("log_every", 10, "print a progress line every N steps (default 10; always the first and last)",
            role="steering", type=positive_int),
    # "data" steers: --resume reads the same files without being told again (a run resumed on the default data
    # instead would silently train on other examples); it may change if the folder moved, and a different number
    # of examples is refused by the command.
    Setting("data", None, "data folder (default $MINIBERT_DATA, else ../shared/data); --resume reuses the run's",
            role="steering"),
)
BY_NAME = {s.name: s for s in SETTINGS}

RUN_DEFAULTS = {s.name: s.default for s in SETTINGS if s.role == "run"}
STEERING_DEFAULTS = {s.name: s.default for s in SETTINGS if s.role == "steering"}
ADDED_LATER = {s.name: s.before for s in SETTINGS if s.before is not NOT_NEW}


class SettingError(ValueError):
    """A setting refused by `check_settings`: `name` is the setting, `value` as given, `problem` why; each caller
    says where it was given (an option, a grid cell's field)."""

    def __init__(self, name: str, value, problem: str):
        super().__init__(f"{name} {value!r}: {problem}")
        self.name, self.value, self.problem = name, value, problem


def _as_text(value) -> str:
    """A value as it is written on the command line (the experiment runner writes floats with :g)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_settings(given: dict) -> dict:
    """Check settings exactly as `minibert train` takes them, before anything is loaded; the one check for its
    options and for each cell of an experiment grid.

    given: {setting name: value} of what a user or a grid cell gives (None: not given), "mode" included when
    it is not the default. Each value goes through its option's type and choices, as on the command line;
    a setting given for a mode it does not apply to is refused (it would be ignored, and yet recorded);
    a preset must exist, and a size needs a preset whose kind has one. Returns the values as the options
    parse them; raises a SettingError naming the first setting refused.
    """
    parsed = {}
    for name, value in given.items():
        if value is None:
            continue
        setting = BY_NAME.get(name)
        if setting is None:
            raise SettingError(name, value, "not a setting of minibert train")
        text = _as_text(value)
        try:
            parsed[name] = setting.type(text) if setting.type is not None else text
        except argparse.ArgumentTypeError as e:
            raise SettingError(name, value, str(e)) from None
        if setting.choices is not None and parsed[name] not in setting.choices:
            raise SettingError(name, value, f"choose one of {', '.join(setting.choices)}")
    mode = parsed.get("mode", BY_NAME["mode"].default)
    for name in parsed:
        modes = BY_NAME[name].modes
        if modes is not None and mode not in modes:
            raise SettingError(name, given[name], f"does not apply to mode {mode}, which {BY_NAME[name].lacking} "
                                                  f"(it applies to mode {' / '.join(modes)} only)")
    if mode == "adapter":
        from adapters import kind_of, preset_config

        preset = parsed.get("preset", BY_NAME["preset"].default)
        try:
            kind = kind_of(preset_config(preset))
        except ValueError as e:  # adapters' ConfigError, naming the presets there are
            raise SettingError("preset", preset, str(e)) from None
        if "size" in parsed and kind.size_field is None:
            raise SettingError("size", given["size"], f"preset {preset} is of kind {kind.name}, which has no size")
    return parsed


def grid_keys(level: str) -> set:
    """The settings a grid gives at `level`: "method" (a method's keys) or "settings" (settings, task_settings)."""
    return {s.name for s in SETTINGS if s.grid == level}


def add_options(parser):
    """One option per setting, with no default (None: not given), so that --resume can tell given from not."""
    groups = {}
    for s in SETTINGS:
        target = parser
        if s.group is not None:
            if s.group not in groups:
                groups[s.group] = parser.add_mutually_exclusive_group()
            target = groups[s.group]
        kwargs = {"help": s.help}
        if s.type is not None:
            kwargs["type"] = s.type
        if s.choices is not None:
            kwargs["choices"] = list(s.choices)
        target.add_argument(s.option, **kwargs)


def train_config(s: dict, metric: str, steps_per_epoch: int) -> TrainConfig:
    """The loop's config for resolved settings `s` (every setting present) of a task with `metric`."""
    return TrainConfig(steps=s["steps"], lr=s["lr"], batch_size=s["batch_size"], max_length=s["max_length"],
                       weight_decay=s["weight_decay"], warmup_fraction=s["warmup_fraction"], clip=s["clip"],
                       seed=s["seed"], metric=metric, save_every=s["save_every"], optimizer=s["optimizer"],
                       eval_every=steps_per_epoch if s["eval_every"] == "epoch" else s["eval_every"])
