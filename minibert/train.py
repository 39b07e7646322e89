"""Fine-tuning on GLUE-style classification data: adapters, full fine-tuning, and the paper's baselines.

The protocol of Houlsby2019 §3.1 / Devlin2019: AdamW (weight decay 0.01, not on LayerNorms and biases,
eps 1e-6), linear warmup over 10% of the steps then linear decay to 0, gradient clipping at 1.0,
batch 32, max length 128; learning rate about 3e-4 for adapters and 3e-5 for full fine-tuning.

Modes: "adapter" (the adapter preset's policy), "full" (every parameter), "layernorm" (LayerNorms + head
only), "top-k" (the top k encoder layers + pooler + head).

Resuming: `fine_tune` can hand a trainer state (step, optimizer moments, schedule, dropout generators,
history, best) to a `checkpoint` callback and continue from one (`state=`). The data order of epoch e is a
permutation drawn from (seed, e), so a run stopped after any step and resumed gives bit-identical weights to
a run that was never stopped (on the same machine and BLAS).
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np

from autograd import no_grad, optim

MODES = ("adapter", "full", "layernorm", "top-k")
ADAPTER_NAME = "task"


def set_trainable(model, mode: str, preset: str = "houlsby", size: int | None = None, top_k: int = 1,
                  seed: int = 0) -> list:
    """Freeze / unfreeze `model` (a BertForSequenceClassification) for a training mode; returns trainable names.

    adapter: adds adapter "task" (preset, bottleneck `size` if given) and trains what its policy trains
    (for "houlsby": the adapters, every LayerNorm and the head). full: everything. layernorm: every LayerNorm
    and the head. top-k: encoder layers L-k .. L-1, the pooler and the head.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "adapter":
        from adapters import AdapterConfig, add_adapter, train_adapter

        overrides = {"bottleneck_size": size} if size is not None else {}
        add_adapter(model, ADAPTER_NAME, AdapterConfig.from_preset(preset, **overrides), seed=seed)
        return train_adapter(model, ADAPTER_NAME)
    layers = model.config.num_hidden_layers
    if mode == "top-k" and not (isinstance(top_k, int) and 1 <= top_k <= layers):
        raise ValueError(f"top_k must be an integer from 1 to {layers} (the model's layers), got {top_k!r}")
    top = tuple(f"bert.encoder.layer.{i}." for i in range(layers - top_k, layers))
    for name, p in model.named_parameters():
        if mode == "full":
            p.requires_grad = True
        elif mode == "layernorm":
            p.requires_grad = ".LayerNorm." in name or name.startswith("classifier.")
        else:
            p.requires_grad = name.startswith(top + ("classifier.", "bert.pooler."))
    model.train()
    return [n for n, p in model.named_parameters() if p.requires_grad]


def parameter_groups(model, weight_decay: float) -> list:
    """AdamW groups: decay on weight matrices, none on LayerNorms and biases (BERT's convention)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name.endswith(".bias") or ".LayerNorm." in name else decay).append(p)
    return [g for g in ({"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0})
            if g["params"]]


def matthews(pred, gold) -> float:
    """Matthews correlation for binary labels (0 when undefined, as sklearn)."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    tp = float(np.sum((pred == 1) & (gold == 1)))
    tn = float(np.sum((pred == 0) & (gold == 0)))
    fp = float(np.sum((pred == 1) & (gold == 0)))
    fn = float(np.sum((pred == 0) & (gold == 1)))
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denom if denom else 0.0


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the n training examples in `epoch`: a permutation that depends only on (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batches(examples, tok, batch_size, max_length, order=None):
    """Yield (encoding, labels) for consecutive chunks of `order` (default: the examples as given)."""
    order = np.arange(len(examples)) if order is None else order
    for start in range(0, len(order), batch_size):
        chunk = [examples[i] for i in order[start:start + batch_size]]
        pairs = [e.text_b for e in chunk] if chunk[0].text_b is not None else None
        enc = tok([e.text_a for e in chunk], pairs, max_length=max_length)
        yield enc, np.array([e.label for e in chunk], dtype=np.int64)


def evaluate(model, tok, examples, batch_size=64, max_length=128, metric="accuracy") -> dict:
    """Accuracy (and Matthews correlation with metric="matthews") of `model` on `examples`, in eval mode."""
    if not examples:
        raise ValueError("no examples to evaluate on")
    was_training = model.training
    model.eval()
    preds, gold = [], []
    with no_grad():
        for enc, labels in batches(examples, tok, batch_size, max_length):
            logits = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).logits.data
            preds.append(logits.argmax(-1))
            gold.append(labels)
    model.train(was_training)
    pred, gold = np.concatenate(preds), np.concatenate(gold)
    result = {"accuracy": float(np.mean(pred == gold)), "n": int(len(gold))}
    if metric == "matthews":
        result["matthews"] = matthews(pred, gold)
    return result


def _generators(model) -> list:
    """The distinct random generators the model's modules hold (dropout masks), in module order."""
    seen, found = set(), []
    for _, module in model.named_modules():
        for value in vars(module).values():
            if isinstance(value, np.random.Generator) and id(value) not in seen:
                seen.add(id(value))
                found.append(value)
    return found


def fine_tune(model, tok, train_examples, dev_examples, *, steps: int, lr: float, batch_size=32, max_length=128,
              weight_decay=0.01, warmup_fraction=0.1, clip=1.0, seed=0, metric="accuracy", eval_every=0,
              save_every=0, log=None, checkpoint=None, should_stop=None, state=None) -> dict:
    """Train the parameters that require grad for `steps` optimizer steps (AdamW + linear warmup/decay).

    Evaluates on `dev_examples` every `eval_every` steps (0: only after the last step). Callbacks:
    log(row) after every step; checkpoint(kind, trainer_state) with kind "best" when the dev `metric`
    improves and "last" after every evaluation, every `save_every` steps, at the end and when stopped;
    should_stop() after every step (True: stop there, after the "last" checkpoint). `state`: a trainer state
    from checkpoint() to continue from; the model must already hold the weights saved with it.

    Returns {"history": one row per step, "final": the dev result after the last step (None if stopped),
    "best": {"step", metric, "dev"} or None, "step": steps done, "stopped": bool}.
    """
    if not (isinstance(steps, int) and steps > 0):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not (isinstance(batch_size, int) and batch_size > 0):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not train_examples:
        raise ValueError("no training examples")
    if not dev_examples:
        raise ValueError("no dev examples to evaluate on")
    groups = parameter_groups(model, weight_decay)
    if not groups:
        raise ValueError("no parameter requires grad; call set_trainable first")
    opt = optim.AdamW(groups, lr=lr, eps=1e-6, weight_decay=weight_decay)
    schedule = optim.LinearWarmupDecay(opt, total=steps, warmup_fraction=warmup_fraction)
    params = [p for g in groups for p in g["params"]]
    generators = _generators(model)
    history, best, step, seconds_before = [], None, 0, 0.0
    if state is not None:
        if state["steps"] != steps:
            raise ValueError(f"the saved run trains {state['steps']} steps, not {steps} (the schedule depends on it)")
        opt.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if len(state["generators"]) != len(generators):
            raise ValueError("the saved run has another number of random generators (another model?)")
        for g, saved in zip(generators, state["generators"]):
            g.bit_generator.state = saved
        history, best, step = list(state["history"]), state["best"], state["step"]
        seconds_before = state["seconds"]

    def trainer_state():
        return {"step": step, "steps": steps, "optimizer": opt.state_dict(), "schedule": schedule.state_dict(),
                "generators": [g.bit_generator.state for g in generators], "history": list(history),
                "best": best, "seconds": seconds_before + time.perf_counter() - start}

    per_epoch = math.ceil(len(train_examples) / batch_size)
    start, stopped = time.perf_counter(), False
    while step < steps and not stopped:
        epoch, offset = divmod(step, per_epoch)
        order = epoch_order(len(train_examples), seed, epoch)[offset * batch_size:]
        for enc, labels in batches(train_examples, tok, batch_size, max_length, order):
            model.train()
            loss = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], labels=labels).loss
            opt.zero_grad()
            loss.backward()
            norm = optim.clip_grad_norm_(params, clip) if clip else float("nan")
            lr_used = opt.param_groups[0]["lr"]
            opt.step()
            schedule.step()
            step += 1
            row = {"step": step, "epoch": epoch, "loss": float(loss.data), "grad_norm": float(norm), "lr": lr_used,
                   "seconds": seconds_before + time.perf_counter() - start}
            evaluated = (eval_every and step % eval_every == 0) or step == steps
            improved = False
            if evaluated:
                row["dev"] = evaluate(model, tok, dev_examples, max_length=max_length, metric=metric)
                improved = best is None or row["dev"][metric] > best[metric]
                if improved:
                    best = {"step": step, metric: row["dev"][metric], "dev": row["dev"]}
            history.append(row)
            if log:
                log(row)
            stopped = step < steps and should_stop is not None and bool(should_stop())
            if checkpoint:
                if improved:
                    checkpoint("best", trainer_state())
                if evaluated or stopped or (save_every and step % save_every == 0):
                    checkpoint("last", trainer_state())
            if stopped or step >= steps:
                break
    final = history[-1].get("dev") if step == steps and history else None
    return {"history": history, "final": final, "best": best, "step": step, "stopped": stopped}


# ---- checkpoints on disk -------------------------------------------------------------------------------------
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
    with open(directory / OPTIMIZER_STATE, "wb") as f:
        np.savez(f, **arrays)
    meta = {k: v for k, v in state.items() if k != "optimizer"}
    meta["optimizer"] = {"param_groups": opt["param_groups"], "steps": steps}
    (directory / TRAINER_STATE).write_text(json.dumps(meta, indent=1) + "\n")


def load_trainer_state(directory) -> dict:
    directory = Path(directory)
    meta = json.loads((directory / TRAINER_STATE).read_text())
    with np.load(directory / OPTIMIZER_STATE, allow_pickle=False) as arrays:
        opt_state = {int(i): {"step": n, "exp_avg": arrays[f"exp_avg.{i}"], "exp_avg_sq": arrays[f"exp_avg_sq.{i}"]}
                     for i, n in meta["optimizer"]["steps"].items()}
    groups = [{**g, "betas": tuple(g["betas"])} for g in meta["optimizer"]["param_groups"]]
    meta["optimizer"] = {"state": opt_state, "param_groups": groups}
    return meta


def _replace_dir(tmp: Path, dst: Path):
    """Put the finished folder `tmp` in place of `dst`. A crash at any point leaves a complete folder at
    `dst` or at `dst`.old (which `_existing` falls back to)."""
    old = dst.with_name(dst.name + ".old")
    if old.exists() and dst.exists():
        shutil.rmtree(old)
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    if old.exists():
        shutil.rmtree(old)


def _existing(dst: Path) -> Path | None:
    old = dst.with_name(dst.name + ".old")
    return dst if dst.is_dir() else old if old.is_dir() else None


def _write_json(path: Path, obj):
    from minibert.weights import write_atomically

    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


# ---- the `minibert train` command ------------------------------------------------------------------------
# Options that define a run: on --resume they default to the saved values, and a different value is an error.
RUN_DEFAULTS = {"task": "sst2-sentences", "mode": "adapter", "preset": "houlsby", "size": None, "top_k": 1,
                "steps": 100, "lr": None, "batch_size": 32, "max_length": 128, "train_limit": None,
                "eval_limit": None, "seed": 0, "model": None}
# Options that only steer evaluation, saving and printing: on --resume they default to the saved values too,
# but may be changed.
STEERING_DEFAULTS = {"eval_every": 0, "save_every": 25, "log_every": 10}
DEFAULT_LR = {"adapter": 3e-4, "layernorm": 3e-4, "full": 3e-5, "top-k": 3e-5}

TRAIN_EPILOG = """\
output (--out DIR):
  DIR/history.json  settings, status (running / stopped / complete), every step's loss, the dev results, best
  DIR/best/         the adapter (adapter_config.json + adapter.safetensors; load with adapters.load_adapter)
                    or, in the other modes, the whole model (config.json + model.safetensors) with the best
                    dev score so far, and metrics.json
  DIR/last/         the same for the latest step, plus trainer_state.json + optimizer.npz for --resume
  Each folder is written beside the old one and swapped in, so a crash or Ctrl-C never loses it.
  Saved after every evaluation, every --save-every steps, at the end, and on Ctrl-C (first Ctrl-C: finish
  the step, save, exit 130; second: abort at once).

second runs:
  An --out that already holds a run is refused unless
  --resume     continue it to its --steps: options not given are taken from the run; a different value is an
               error, except for --eval-every / --save-every / --log-every; a complete run is only reported.
               The result has the same weights as a run that was never stopped (on the same machine).
  --overwrite  delete its history.json, best/ and last/ and start again.

exit status: 0 done (or stopped by --time-limit; --resume continues), 2 bad input, 130 interrupted.
"""


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        import argparse
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text):
    return 0 if text.strip() == "0" else _positive_int(text)


def _positive_float(text):
    import argparse
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def add_train_parser(sub):
    import argparse

    from minibert.data import TASKS

    p = sub.add_parser(
        "train", help="fine-tune on GLUE data (adapters, full, layernorm or top-k)",
        description="Fine-tune the embedded all-MiniLM-L6-v2 (or --model) on a GLUE-style task from "
                    "$MINIBERT_DATA (default ../shared/data), with Houlsby adapters or a baseline, "
                    "printing progress and evaluating on the dev set. Example: minibert train --task sst2 "
                    "--train-limit 2000 --steps 200 --batch-size 16 --max-length 64 --eval-every 50 --out runs/sst2",
        epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=list(TASKS), help="default sst2-sentences (6,920 train sentences)")
    p.add_argument("--mode", choices=MODES, help="what trains (default adapter): adapter = the preset's policy, "
                                                "full = everything, layernorm = LayerNorms + head, top-k")
    p.add_argument("--preset", help="adapter preset in mode adapter (default houlsby: adapters + LayerNorms + head)")
    p.add_argument("--size", type=_positive_int, help="adapter bottleneck size M (default: the preset's, 64)")
    p.add_argument("--top-k", type=_positive_int, help="encoder layers trained in mode top-k (default 1)")
    p.add_argument("--steps", type=_positive_int, help="optimizer steps (default 100)")
    p.add_argument("--lr", type=_positive_float, help="peak learning rate (default 3e-4 for adapter and layernorm, "
                                                      "3e-5 for full and top-k)")
    p.add_argument("--batch-size", type=_positive_int, help="default 32")
    p.add_argument("--max-length", type=_positive_int, help="tokens per example, longer ones are cut (default 128)")
    p.add_argument("--train-limit", type=_positive_int,
                   help="train on a random sample of N training examples (drawn with --seed; default: all)")
    p.add_argument("--eval-limit", type=_positive_int,
                   help="evaluate on a fixed random sample of N dev examples (the same for every seed; default: all)")
    p.add_argument("--seed", type=_non_negative_int,
                   help="adapter / head initialisation, data order, dropout (default 0)")
    p.add_argument("--model", help="Hugging Face folder; default: the embedded all-MiniLM-L6-v2")
    p.add_argument("--eval-every", type=_non_negative_int,
                   help="evaluate on dev every N steps (default 0: only after the last step)")
    p.add_argument("--save-every", type=_non_negative_int,
                   help="also save last/ every N steps (default 25; 0: only at evaluations and the end)")
    p.add_argument("--log-every", type=_positive_int, help="print a progress line every N steps "
                                                                     "(default 10; always the first and last)")
    p.add_argument("--time-limit", type=_positive_float, metavar="SECONDS",
                   help="stop (and save) after the first step that ends past this many seconds of training")
    p.add_argument("--data", help="data folder (default $MINIBERT_DATA, else ../shared/data)")
    p.add_argument("--out", help="folder for the best / last adapter (or model) and history.json; "
                                 "without it nothing is saved")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    again.add_argument("--overwrite", action="store_true", help="discard the run saved in --out and start again")
    p.set_defaults(func=_cmd_train)


def _subsample(examples, n, seed):
    if n is None or n >= len(examples):
        return list(examples)
    keep = np.sort(np.random.default_rng(seed).choice(len(examples), size=n, replace=False))
    return [examples[i] for i in keep]


class _Stop:
    """should_stop for fine_tune: True after a first Ctrl-C (a second one aborts) or past the time limit."""

    def __init__(self, time_limit):
        self.time_limit, self.start, self.interrupted, self.timed_out = time_limit, time.perf_counter(), False, False

    def on_sigint(self, signum, frame):
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        print("\nCtrl-C: stopping after this step and saving (Ctrl-C again to abort at once)", file=sys.stderr,
              flush=True)

    def __call__(self):
        if self.time_limit is not None and time.perf_counter() - self.start > self.time_limit:
            self.timed_out = True
        return self.interrupted or self.timed_out


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
        saved = json.loads(history_file.read_text())
        differ = [f"--{k.replace('_', '-')} {given[k]} (the run has {saved['settings'][k]})"
                  for k in RUN_DEFAULTS if given[k] is not None and given[k] != saved["settings"][k]]
        if differ:
            raise ValueError("--resume continues a run with its own settings; these differ: " + "; ".join(differ))
        settings = {k: saved["settings"][k] for k in RUN_DEFAULTS}
        settings.update({k: saved["settings"].get(k, v) if getattr(args, k) is None else getattr(args, k)
                         for k, v in STEERING_DEFAULTS.items()})
    else:
        if history_file is not None and history_file.is_file() and not args.overwrite:
            status = json.loads(history_file.read_text())
            raise ValueError(f"{out} already holds a training run ({status.get('status')}, step "
                             f"{status.get('step')} of {status['settings']['steps']}); pass --resume to continue "
                             "it or --overwrite to start again")
        settings = {k: RUN_DEFAULTS[k] if given[k] is None else given[k] for k in RUN_DEFAULTS}
        settings["lr"] = settings["lr"] or DEFAULT_LR[settings["mode"]]
        settings.update({k: v if getattr(args, k) is None else getattr(args, k) for k, v in STEERING_DEFAULTS.items()})
    return settings, saved


def _cmd_train(args) -> int:
    from minibert import BertForSequenceClassification, Tokenizer
    from minibert.data import TASKS, read_task

    out = Path(args.out) if args.out else None
    settings, saved = _resolve_settings(args, out)
    if saved is not None and saved.get("status") == "complete":
        best = saved.get("best") or {}
        print(f"{out} holds a complete run ({saved['step']} steps); final dev {json.dumps(saved.get('final'))}; "
              f"best {json.dumps(best.get('dev'))} at step {best.get('step')}. Nothing to do.")
        return 0
    s = settings
    task = TASKS[s["task"]]
    train_ex = _subsample(read_task(s["task"], "train", args.data), s["train_limit"], s["seed"])
    dev_ex = _subsample(read_task(s["task"], "dev", args.data), s["eval_limit"], 0)
    tok = Tokenizer.from_pretrained(s["model"])
    last = _existing(out / "last") if saved is not None else None
    if last is not None and s["mode"] != "adapter":
        model = BertForSequenceClassification.from_pretrained(last, num_labels=task.num_labels, seed=s["seed"])
    else:
        model = BertForSequenceClassification.from_pretrained(s["model"], num_labels=task.num_labels,
                                                              seed=s["seed"])
    trainable = set(set_trainable(model, s["mode"], s["preset"], s["size"], s["top_k"], s["seed"]))
    state = None
    if last is not None:
        if s["mode"] == "adapter":
            from adapters import load_adapter
            load_adapter(model, last, ADAPTER_NAME)
        state = load_trainer_state(last)
    elif saved is not None:
        print(f"{out} has no saved step yet: starting the run again from step 0")
    n_train = sum(p.size for n, p in model.named_parameters() if n in trainable)
    n_total = sum(p.size for n, p in model.named_parameters() if ".adapters." not in n)
    print(f"{s['task']}: {len(train_ex):,} train / {len(dev_ex):,} dev examples; mode {s['mode']}"
          f"{' (' + s['preset'] + ')' if s['mode'] == 'adapter' else ''}; {n_train:,} trainable parameters "
          f"({100 * n_train / n_total:.2f}% of {n_total:,}); lr {s['lr']:g}; {s['steps']} steps of "
          f"{s['batch_size']} (max length {s['max_length']}); metric {task.metric}", flush=True)
    if state is not None:
        print(f"resuming {out} at step {state['step']}", flush=True)
    if out is None:
        print("not saving anything (give --out DIR to keep the trained weights)", flush=True)

    record = {"settings": {**s, "n_train": len(train_ex), "n_dev": len(dev_ex), "trainable_parameters": n_train},
              "status": "running", "step": state["step"] if state else 0, "best": state["best"] if state else None,
              "final": None, "history": state["history"] if state else []}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if args.overwrite:
            for name in ("best", "last", "best.old", "last.old", ".best.tmp", ".last.tmp", HISTORY):
                path = out / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        _write_json(out / HISTORY, record)

    def checkpoint(kind, st):
        tmp = out / f".{kind}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        if s["mode"] == "adapter":
            from adapters import save_adapter
            save_adapter(model, ADAPTER_NAME, tmp)
        else:
            model.save_pretrained(tmp)
        if kind == "last":
            save_trainer_state(tmp, st)
        else:
            _write_json(tmp / "metrics.json", st["best"])
        _replace_dir(tmp, out / kind)
        record.update(step=st["step"], best=st["best"], history=st["history"])
        _write_json(out / HISTORY, record)

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

    stop = _Stop(args.time_limit)
    in_main_thread = signal.getsignal(signal.SIGINT) is not None and _is_main_thread()
    previous = signal.signal(signal.SIGINT, stop.on_sigint) if in_main_thread else None
    try:
        result = fine_tune(model, tok, train_ex, dev_ex, steps=s["steps"], lr=s["lr"], batch_size=s["batch_size"],
                           max_length=s["max_length"], seed=s["seed"], metric=task.metric,
                           eval_every=s["eval_every"], save_every=s["save_every"], log=log,
                           checkpoint=checkpoint if out is not None else None, should_stop=stop, state=state)
    except KeyboardInterrupt:
        saved_at = f"; {out}/last holds the last saved step" if out is not None else ""
        print(f"aborted{saved_at}", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
    record.update(status="stopped" if result["stopped"] else "complete", step=result["step"], best=result["best"],
                  final=result["final"], history=result["history"])
    if out is not None:
        _write_json(out / HISTORY, record)
    best = result["best"]
    if result["stopped"]:
        why = "interrupted" if stop.interrupted else f"time limit {args.time_limit:g}s"
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


def _is_main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()
