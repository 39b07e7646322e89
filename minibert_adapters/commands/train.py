"""The `minibert train` command: options, run folders, --resume / --overwrite, Ctrl-C and time limits.

The loop itself is `training.fine_tune`; saving is `checkpoints`; this module only turns options into a
run and reports it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
from safetensors import SafetensorError

from adapters import load_adapter, save_adapter
from adapters.io import WEIGHTS_NAME as ADAPTER_WEIGHTS
from minibert import BertForSequenceClassification, Tokenizer
from minibert.weights import WEIGHTS_NAME as MODEL_WEIGHTS
from minibert_adapters.commands.arguments import (
    DIVERGED,
    check_max_length,
    output_that_outlives_its_reader,
    positive_float,
    writable_folder,
)
from minibert_adapters.training.checkpoints import (
    HISTORY,
    OPTIMIZER_STATE,
    TRAINER_STATE,
    RunLock,
    existing_dir,
    load_trainer_state,
    read_json,
    replace_dir,
    save_trainer_state,
    write_json,
)
from minibert_adapters.training.data import TASKS, read_task
from minibert_adapters.training.loop import ADAPTER_NAME, StateMismatch, fine_tune, set_trainable
from minibert_adapters.training.settings import (
    ADDED_LATER,
    BY_NAME,
    DEFAULT_LR,
    RUN_DEFAULTS,
    SETTINGS,
    STEERING_DEFAULTS,
    SettingError,
    add_options,
    check_settings,
    train_config,
)

TRAIN_EPILOG = """\
output (--out DIR):
  DIR/history.json  settings, status (running / stopped / complete / diverged), every step's loss, the dev
                    results, best
  DIR/best/         the adapter (adapter_config.json + adapter.safetensors; load with adapters.load_adapter)
                    or, in the other modes, the whole model (config.json + model.safetensors) with the best
                    dev score so far, and metrics.json
  DIR/last/         the same for the latest step, plus trainer_state.json + optimizer.npz for --resume
  Each folder is written beside the old one and swapped in, so a crash or Ctrl-C never loses it.
  Saved after every evaluation, every --save-every steps, at the end, and on Ctrl-C, SIGTERM or SIGHUP (a
  closed terminal; first signal: finish the step, save, exit 130; second: abort at once). Output that can no
  longer be shown (its terminal or pipe closed) is dropped; the run goes on.

options and modes:
  An option given for a mode it does not apply to is refused (exit 2), not ignored: --preset, --size and
  --init-std apply to mode adapter, --top-k to mode top-k, --pooler to adapter, layernorm and head.

second runs:
  An --out that already holds a run is refused unless
  --resume     continue it to its --steps: options not given are taken from the run; a different value is an
               error, except for --eval-every / --save-every / --log-every; a complete run is only reported.
               The result has the same weights as a run that was never stopped (on the same machine).
               Without DIR/last/ a run with a best/ or steps done is refused (it would restart over best/).
  --overwrite  delete its history.json, best/ and last/ and start again.

diverging:
  A step whose loss or gradient norm is not finite (a learning rate far too high) stops the run there, before
  its update: nothing of it is saved (best/ and last/ keep the last finite weights), history.json says
  "diverged", and the exit status is 3. --resume of a diverged run only reports it.

exit status: 0 done (or stopped by --time-limit; --resume continues), 2 bad input, 3 diverged, 130 interrupted.
"""


def register(sub):
    p = sub.add_parser(
        "train", help="fine-tune on GLUE data (adapters, full, layernorm or top-k)",
        description="Fine-tune the embedded all-MiniLM-L6-v2 (or --model) on a GLUE-style task from "
                    "$MINIBERT_DATA (default ../shared/data), with Houlsby adapters or a baseline, "
                    "printing progress and evaluating on the dev set. Example: minibert train --task sst2 "
                    "--train-limit 2000 --steps 200 --batch-size 16 --max-length 64 --eval-every 50 --out runs/sst2",
        epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p)  # one option per run setting (minibert_adapters.training.settings)
    p.add_argument("--time-limit", type=positive_float, metavar="SECONDS",
                   help="stop (and save) after the first step that ends past this many seconds of training")
    p.add_argument("--out", help="folder for the best / last adapter (or model) and history.json; "
                                 "without it nothing is saved")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    again.add_argument("--overwrite", action="store_true", help="discard the run saved in --out and start again")
    p.set_defaults(func=_cmd_train)


def subsample(examples, n, seed):
    """n examples drawn without replacement by `seed`, in their original order (all of them if n is None)."""
    if n is None or n >= len(examples):
        return list(examples)
    keep = np.sort(np.random.default_rng(seed).choice(len(examples), size=n, replace=False))
    return [examples[i] for i in keep]


STOP_SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated", signal.SIGHUP: "hung up"}


class _Stop:
    """should_stop for fine_tune: True after a first Ctrl-C, SIGTERM or SIGHUP (a second one aborts at once), or
    past the time limit. SIGTERM is what `timeout`, batch schedulers and `docker stop` send, SIGHUP what a closed
    terminal (or a dropped ssh session) sends: each saves like Ctrl-C."""

    def __init__(self, time_limit):
        self.time_limit, self.start = time_limit, time.perf_counter()
        self.interrupted, self.timed_out, self.signal_name = False, False, None

    def on_signal(self, signum, frame):
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted, self.signal_name = True, STOP_SIGNALS[signum]
        what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\n{what}: stopping after this step and saving ({what} again to abort at once)", file=sys.stderr,
              flush=True)

    @contextlib.contextmanager
    def handling_signals(self):
        """Route SIGINT, SIGTERM and SIGHUP here while training (only the main thread may set handlers)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.on_signal) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                if handler is not None:  # None: a handler not set from Python, which cannot be put back
                    signal.signal(sig, handler)

    def __call__(self):
        if self.time_limit is not None and time.perf_counter() - self.start > self.time_limit:
            self.timed_out = True
        return self.interrupted or self.timed_out


def _check_options(args, mode: str):
    """The options given (not their defaults: each is None unless given) through `check_settings`, the check
    every grid cell gets too: an option that does not apply to the run's `mode` is refused, not ignored and
    recorded."""
    given = {**{s.name: getattr(args, s.name) for s in SETTINGS}, "mode": mode}
    try:
        check_settings(given)
    except SettingError as e:
        raise ValueError(f"{BY_NAME[e.name].option} {e.value}: {e.problem}") from None


def _resolve_settings(args, out: Path | None) -> tuple[dict, dict | None]:
    """The run's settings from the options, the defaults and (with --resume) the saved run."""
    given = {k: getattr(args, k) for k in RUN_DEFAULTS}
    saved = None
    history_file = out / HISTORY if out is not None else None
    if args.resume:
        if out is None:
            raise ValueError("--resume needs --out (the folder of the run to continue)")
        if not history_file.is_file():
            raise FileNotFoundError(f"{history_file} not found: there is no run in {out} to resume")
        saved = read_json(history_file, "run history")
        if isinstance(saved.get("settings"), dict):  # runs saved before these options existed had their defaults
            saved["settings"] = {**ADDED_LATER, **saved["settings"]}
        if not isinstance(saved.get("settings"), dict) or set(RUN_DEFAULTS) - set(saved["settings"]):
            raise ValueError(f"{history_file}: damaged run history (no complete 'settings'); "
                             "use --overwrite to start the run again")
        differ = [f"--{k.replace('_', '-')} {given[k]} (the run has {saved['settings'][k]})"
                  for k in RUN_DEFAULTS if given[k] is not None and given[k] != saved["settings"][k]]
        if differ:
            raise ValueError("--resume continues a run with its own settings; these differ: " + "; ".join(differ))
        settings = {k: saved["settings"][k] for k in RUN_DEFAULTS}
        settings.update({k: saved["settings"].get(k, v) if getattr(args, k) is None else getattr(args, k)
                         for k, v in STEERING_DEFAULTS.items()})
    else:
        if history_file is not None and history_file.is_file() and not args.overwrite:
            raise ValueError(f"{out} already holds a training run ({history_file}); pass --resume to continue "
                             "it or --overwrite to start again")
        settings = {k: RUN_DEFAULTS[k] if given[k] is None else given[k] for k in RUN_DEFAULTS}
        settings["lr"] = settings["lr"] or DEFAULT_LR[settings["mode"]]
        if settings["epochs"] is not None:
            settings["steps"] = None  # derived from the training set's size once it is read
        settings.update({k: v if getattr(args, k) is None else getattr(args, k) for k, v in STEERING_DEFAULTS.items()})
    return settings, saved


def _cmd_train(args) -> int:
    out = Path(args.out) if args.out else None
    if out is not None:
        writable_folder(out, "--out")  # before anything slow: a file in the way or a read-only folder
    with RunLock(out), output_that_outlives_its_reader():
        return _train(args, out)


def _train(args, out: Path | None) -> int:
    s, saved = _resolve_settings(args, out)
    _check_options(args, s["mode"])
    if saved is not None and saved.get("status") == "complete":
        best = saved.get("best") or {}
        print(f"{out} holds a complete run ({saved['step']} steps); final dev {json.dumps(saved.get('final'))}; "
              f"best {json.dumps(best.get('dev'))} at step {best.get('step')}. Nothing to do.")
        return 0
    if saved is not None and saved.get("status") == "diverged":
        # Resumed, it would take the same steps to the same non-finite loss: the settings must change.
        print(f"minibert train: {out} holds a run that diverged ({_diverged_text(saved.get('diverged'))}); "
              "nothing to do: start it again with another --lr (--overwrite) or in another --out", file=sys.stderr)
        return DIVERGED
    if saved is not None:
        _check_resumable(out, saved)
    task = TASKS[s["task"]]
    check_max_length(s["max_length"], s["model"])
    data = str(Path(s["data"]).resolve()) if s["data"] else None
    s["data"] = data
    train_ex = subsample(read_task(s["task"], "train", data), s["train_limit"], s["seed"])
    dev_ex = subsample(read_task(s["task"], "dev", data), s["eval_limit"], 0)
    if saved is not None:
        was = (saved["settings"].get("n_train"), saved["settings"].get("n_dev"))
        if None not in was and was != (len(train_ex), len(dev_ex)):
            raise ValueError(f"the run trained on {was[0]:,} / evaluated on {was[1]:,} examples, the data now "
                             f"read has {len(train_ex):,} / {len(dev_ex):,}: give --data the run's data folder")
    per_epoch = math.ceil(len(train_ex) / s["batch_size"])
    if s["epochs"] is not None:
        derived = s["epochs"] * per_epoch
        if s["steps"] is not None and s["steps"] != derived:  # a resumed run whose training data changed size
            raise ValueError(f"--epochs {s['epochs']} now means {derived} steps, but the run was started with "
                             f"{s['steps']} ({len(train_ex):,} training examples now): the data changed")
        s["steps"] = derived
        print(f"{s['epochs']} epochs of {len(train_ex):,} examples = {s['steps']} steps of {s['batch_size']} "
              f"({per_epoch} per epoch)", flush=True)
    tok = Tokenizer.from_pretrained(s["model"])
    model, state, n_train, n_total = _build_model(s, task, out if saved is not None else None)
    print(f"{s['task']}: {len(train_ex):,} train / {len(dev_ex):,} dev examples; mode {s['mode']}"
          f"{' (' + s['preset'] + ')' if s['mode'] == 'adapter' else ''}, pooler {s['pooler']}; "
          f"{n_train:,} trainable parameters "
          f"({100 * n_train / n_total:.2f}% of the {n_total:,} of the pretrained model); {s['optimizer']} "
          f"lr {s['lr']:g}; {s['steps']} steps of {s['batch_size']} (max length {s['max_length']}); "
          f"metric {task.metric}", flush=True)
    if state is not None:
        print(f"resuming {out} at step {state['step']}", flush=True)
    elif saved is not None:
        print(f"{out} has no saved step yet: starting the run again from step 0")
    if out is None:
        print("not saving anything (give --out DIR to keep the trained weights)", flush=True)

    record = {"settings": {**s, "n_train": len(train_ex), "n_dev": len(dev_ex), "trainable_parameters": n_train,
                           "pretrained_parameters": n_total},
              "status": "running", "step": state["step"] if state else 0, "best": state["best"] if state else None,
              "final": None, "history": state["history"] if state else []}
    if out is not None:
        _start_run_folder(out, record, args.overwrite)
    config = train_config(s, task.metric, per_epoch)
    stop = _Stop(args.time_limit)
    try:
        with stop.handling_signals():
            result = fine_tune(model, tok, train_ex, dev_ex, config, log=_progress_printer(s, task, state),
                               checkpoint=_checkpointer(model, s["mode"], out, record) if out else None,
                               should_stop=stop, state=state)
    except StateMismatch as e:  # the saved state is read before any step: name the file that holds it
        held_in = OPTIMIZER_STATE if e.part == "optimizer" else TRAINER_STATE
        raise ValueError(f"{existing_dir(out / 'last')}/{held_in}: {e}; use --overwrite to start the run "
                         "again") from None
    except KeyboardInterrupt:
        saved_at = f"; {out}/last holds the last saved step" if out is not None else ""
        print(f"aborted{saved_at}", file=sys.stderr)
        return 130
    status = "diverged" if result["diverged"] else "stopped" if result["stopped"] else "complete"
    record.update(status=status, step=result["step"], best=result["best"], final=result["final"],
                  history=result["history"], diverged=result["diverged"])
    if out is not None:
        write_json(out / HISTORY, record)
    return _report(result, s, task, out, stop, args.time_limit)


def _check_resumable(out: Path, saved: dict):
    """Refuse a --resume that would restart from step 0 over a run that made progress.

    Convention: without last/ (the only folder --resume continues from) a run that has a best/ or records
    steps done is refused, naming the folder: starting again from step 0 would overwrite best/ with the
    first evaluation of the new start, however much worse. Only a run that saved nothing yet (killed before
    its first save) starts again by itself; otherwise the user chooses: restore last/, or --overwrite.
    """
    if existing_dir(out / "last") is not None:
        return
    best = existing_dir(out / "best")
    step = saved.get("step") if isinstance(saved.get("step"), int) else 0
    progress = step > 0 or bool(saved.get("history")) or saved.get("best") is not None
    if best is None and not progress:
        return
    what = f"{best} holds the best dev score so far" if best is not None else f"{out / HISTORY} records {step} steps"
    raise ValueError(f"{out / 'last'} is missing, so --resume would start {out} again from step 0 and overwrite "
                     f"what it has ({what}); put last/ back to continue, or pass --overwrite to discard the run")


def _build_model(s: dict, task, resume_from: Path | None):
    """The model for the run, with its trainable set, restored from `resume_from`/last when there is one.
    Returns (model, trainer state or None, trainable parameter count, pretrained model's parameter count)."""
    last = existing_dir(resume_from / "last") if resume_from is not None else None
    source = last if last is not None and s["mode"] != "adapter" else s["model"]
    model = BertForSequenceClassification.from_pretrained(source, num_labels=task.num_labels, seed=s["seed"])
    trainable = set(set_trainable(model, s["mode"], s["preset"], s["size"], s["top_k"], s["seed"], s["init_std"],
                                  pooler=s["pooler"] == "train"))
    state = None
    if last is not None:
        if s["mode"] == "adapter":
            load_adapter(model, last, ADAPTER_NAME)
        state = load_trainer_state(last)
    n_train = sum(p.size for n, p in model.named_parameters() if n in trainable)
    n_total = sum(p.size for n, p in model.bert.named_parameters() if n in model.bert.checkpoint_names)
    return model, state, n_train, n_total


def _start_run_folder(out: Path, record: dict, overwrite: bool):
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for name in ("best", "last", "best.old", "last.old", ".best.tmp", ".last.tmp", HISTORY):
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    write_json(out / HISTORY, record)


def _checkpointer(model, mode: str, out: Path, record: dict):
    """checkpoint(kind, trainer_state) for fine_tune: the adapter (or whole model) into out/kind, swapped in."""
    def checkpoint(kind, st):
        tmp = out / f".{kind}.tmp"
        try:
            if tmp.exists():
                shutil.rmtree(tmp)
            if mode == "adapter":
                save_adapter(model, ADAPTER_NAME, tmp)
            else:
                model.save_pretrained(tmp)
            if kind == "last":
                save_trainer_state(tmp, st)
            else:
                write_json(tmp / "metrics.json", st["best"])
            replace_dir(tmp, out / kind)
        except (OSError, SafetensorError) as e:  # safetensors reports its I/O errors as its own exception
            # A full disk or `ulimit -f` ("File too large"): the half-written folder goes, the old one stays, and
            # the message names the file (the one left with a .tmp suffix, when the error itself names none).
            pending = [p.name.removesuffix(".tmp") for p in tmp.glob("*.tmp")] if tmp.is_dir() else []
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, OSError) and e.errno is None:  # already names its file (checkpoints.write_or_clean_up)
                what = str(e).replace(str(tmp), str(out / kind))  # the file as the user knows it, not its draft
            else:
                # safetensors removes its half-written file and names none: it writes only the weights file.
                weights = ADAPTER_WEIGHTS if mode == "adapter" else MODEL_WEIGHTS
                name = out / kind / weights if isinstance(e, SafetensorError) else \
                    out / kind / pending[0] if pending else getattr(e, "filename", None) or out / kind
                what = f"{name}: {getattr(e, 'strerror', None) or e}"
            raise OSError(f"cannot save {out / kind} ({what}); it keeps its previous state") from None
        record.update(step=st["step"], best=st["best"], history=st["history"])
        write_json(out / HISTORY, record)
    return checkpoint


def _progress_printer(s: dict, task, state):
    """log(row) for fine_tune: a line every --log-every steps, at the first and last, and at evaluations."""
    def log(row):
        first_or_last = row["step"] in (1, s["steps"]) or (state is not None and row["step"] == state["step"] + 1)
        if "dev" not in row and row["step"] % s["log_every"] and not first_or_last:
            return
        done = row["step"] - (state["step"] if state else 0)
        elapsed = row["seconds"] - (state["seconds"] if state else 0.0)
        eta = elapsed / done * (s["steps"] - row["step"])
        dev = f"  dev {task.metric} {row['dev'][task.metric]:.4f} (n={row['dev']['n']})" if "dev" in row else ""
        print(f"step {row['step']:5d}/{s['steps']}  loss {row['loss']:.4f}  lr {row['lr']:.2e}  "
              f"|g| {row['grad_norm']:.3f}  {row['seconds']:7.1f}s  eta {eta:6.0f}s{dev}", flush=True)
    return log


def _diverged_text(diverged) -> str:
    diverged = diverged if isinstance(diverged, dict) else {}
    return f"at step {diverged.get('step', '?')}: {diverged.get('reason', 'not finite')}"


def _report(result: dict, s: dict, task, out: Path | None, stop, time_limit) -> int:
    best = result["best"]
    if result["diverged"]:
        kept = ""
        if out is not None:
            last, best_dir = existing_dir(out / "last"), existing_dir(out / "best")
            kept = f"; kept: {best_dir} (step {best['step']})" if best_dir and best else "; nothing in best/"
            kept += f", {last} (the last finite step saved)" if last else ", nothing in last/"
        print(f"minibert train: error: diverged {_diverged_text(result['diverged'])}; nothing of that step was "
              f"saved{kept}; try a lower --lr", file=sys.stderr)
        return DIVERGED
    if result["stopped"]:
        why = f"{stop.signal_name}" if stop.interrupted else f"time limit {time_limit:g}s"
        where = f"; saved to {out}/last, continue with --resume" if out is not None else ""
        print(f"stopped at step {result['step']} of {s['steps']} ({why}){where}")
        if best is not None:
            print(f"best dev {task.metric} so far {best[task.metric]:.4f} at step {best['step']}")
        return 130 if stop.interrupted else 0
    final = result["final"]
    print(f"done: {s['steps']} steps in {result['history'][-1]['seconds']:.1f}s; dev {task.metric} "
          f"{final[task.metric]:.4f} (accuracy {final['accuracy']:.4f}, n={final['n']}); best "
          f"{best[task.metric]:.4f} at step {best['step']}")
    if out is not None:
        print(f"saved to {out} (best/, last/, {HISTORY})")
    return 0
