"""Fine-tuning on GLUE-style classification data: adapters, full fine-tuning, and the paper's baselines.

The protocol of Houlsby2019 §3.1 / Devlin2019: AdamW (weight decay 0.01, not on LayerNorms and biases,
eps 1e-6), linear warmup over 10% of the steps then linear decay to 0, gradient clipping at 1.0,
batch 32, max length 128; learning rate about 3e-4 for adapters and 3e-5 for full fine-tuning.

Modes: "adapter" (the adapter preset's policy), "full" (every parameter), "layernorm" (LayerNorms + head
only), "top-k" (the top k encoder layers + pooler + head).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from autograd import no_grad, optim

MODES = ("adapter", "full", "layernorm", "top-k")


def set_trainable(model, mode: str, preset: str = "houlsby", size: int | None = None, top_k: int = 1,
                  seed: int = 0) -> list:
    """Freeze / unfreeze `model` (a BertForSequenceClassification) for a training mode; returns trainable names."""
    from adapters import AdapterConfig, add_adapter, train_adapter

    if mode == "adapter":
        overrides = {"bottleneck_size": size} if size else {}
        add_adapter(model, "task", AdapterConfig.from_preset(preset, **overrides), seed=seed)
        return train_adapter(model, "task")
    layers = model.config.num_hidden_layers
    for name, p in model.named_parameters():
        if mode == "full":
            p.requires_grad = True
        elif mode == "layernorm":
            p.requires_grad = ".LayerNorm." in name or name.startswith("classifier.")
        elif mode == "top-k":
            top = any(name.startswith(f"bert.encoder.layer.{i}.") for i in range(layers - top_k, layers))
            p.requires_grad = top or name.startswith(("classifier.", "bert.pooler."))
        else:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
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
    tp = float(np.sum((pred == 1) & (gold == 1)))
    tn = float(np.sum((pred == 0) & (gold == 0)))
    fp = float(np.sum((pred == 1) & (gold == 0)))
    fn = float(np.sum((pred == 0) & (gold == 1)))
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denom if denom else 0.0


def batches(examples, tok, batch_size, max_length, rng=None):
    order = rng.permutation(len(examples)) if rng is not None else np.arange(len(examples))
    for start in range(0, len(order), batch_size):
        chunk = [examples[i] for i in order[start:start + batch_size]]
        pairs = [e.text_b for e in chunk] if chunk[0].text_b is not None else None
        enc = tok([e.text_a for e in chunk], pairs, max_length=max_length)
        yield enc, np.array([e.label for e in chunk])


def evaluate(model, tok, examples, batch_size=64, max_length=128, metric="accuracy") -> dict:
    model.eval()
    preds, gold = [], []
    with no_grad():
        for enc, labels in batches(examples, tok, batch_size, max_length):
            logits = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).logits.data
            preds.append(logits.argmax(-1))
            gold.append(labels)
    pred, gold = np.concatenate(preds), np.concatenate(gold)
    result = {"accuracy": float(np.mean(pred == gold)), "n": int(len(gold))}
    if metric == "matthews":
        result["matthews"] = matthews(pred, gold)
    return result


def fine_tune(model, tok, train_examples, dev_examples, *, steps: int, lr: float, batch_size=32, max_length=128,
              weight_decay=0.01, warmup_fraction=0.1, clip=1.0, seed=0, metric="accuracy", eval_every=0,
              log=None) -> dict:
    """Train the parameters that require grad for `steps` optimizer steps; returns the history."""
    rng = np.random.default_rng(seed)
    opt = optim.AdamW(parameter_groups(model, weight_decay), lr=lr, eps=1e-6, weight_decay=weight_decay)
    schedule = optim.LinearWarmupDecay(opt, total=steps, warmup_fraction=warmup_fraction)
    params = [p for p in model.parameters() if p.requires_grad]
    history, step, start = [], 0, time.perf_counter()
    while step < steps:
        for enc, labels in batches(train_examples, tok, batch_size, max_length, rng):
            model.train()
            loss = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], labels=labels).loss
            opt.zero_grad()
            loss.backward()
            norm = optim.clip_grad_norm_(params, clip)
            opt.step()
            schedule.step()
            step += 1
            row = {"step": step, "loss": float(loss.data), "grad_norm": norm, "lr": opt.param_groups[0]["lr"],
                   "seconds": time.perf_counter() - start}
            if (eval_every and step % eval_every == 0) or step == steps:
                row["dev"] = evaluate(model, tok, dev_examples, max_length=max_length, metric=metric)
            history.append(row)
            if log:
                log(row)
            if step >= steps:
                break
    return {"history": history, "final": history[-1].get("dev")}


def add_train_parser(sub):
    p = sub.add_parser("train", help="fine-tune on GLUE data (adapters, full, layernorm or top-k)")
    p.add_argument("--task", default="sst2-sentences", help="sst2, cola, rte or sst2-sentences")
    p.add_argument("--mode", default="adapter", choices=MODES)
    p.add_argument("--preset", default="houlsby", help="adapter preset (mode adapter)")
    p.add_argument("--size", type=int, help="adapter bottleneck size M")
    p.add_argument("--top-k", type=int, default=1, help="layers trained in mode top-k")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lr", type=float, help="default 3e-4 (adapter, layernorm), 3e-5 (full, top-k)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--train-limit", type=int, help="use only the first N training examples")
    p.add_argument("--eval-limit", type=int, help="evaluate on only the first N dev examples")
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--data", help="data folder (default $MINIBERT_DATA or ../shared/data)")
    p.add_argument("--model", help="Hugging Face folder; default: embedded all-MiniLM-L6-v2")
    p.add_argument("--out", help="folder for the trained adapter (or full model) and history.json")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from minibert import BertForSequenceClassification, Tokenizer
    from minibert.data import TASKS, read_task

    task = TASKS.get(args.task)
    if task is None:
        raise ValueError(f"unknown task {args.task!r}; choose one of {', '.join(TASKS)}")
    train_ex = read_task(args.task, "train", args.data)[: args.train_limit]
    dev_ex = read_task(args.task, "dev", args.data)[: args.eval_limit]
    tok = Tokenizer.from_pretrained(args.model)
    model = BertForSequenceClassification.from_pretrained(args.model, num_labels=task.num_labels, seed=args.seed)
    trainable = set_trainable(model, args.mode, args.preset, args.size, args.top_k, args.seed)
    lr = args.lr or (3e-4 if args.mode in ("adapter", "layernorm") else 3e-5)
    n_train = sum(p.size for n, p in model.named_parameters() if n in set(trainable))
    print(f"{args.task}: {len(train_ex)} train / {len(dev_ex)} dev; mode {args.mode}; "
          f"{n_train:,} trainable parameters; lr {lr:g}; {args.steps} steps")

    def log(row):
        dev = f"  dev {json.dumps(row['dev'])}" if "dev" in row else ""
        print(f"step {row['step']:5d}  loss {row['loss']:.4f}  lr {row['lr']:.2e}  {row['seconds']:7.1f}s{dev}",
              flush=True)

    result = fine_tune(model, tok, train_ex, dev_ex, steps=args.steps, lr=lr, batch_size=args.batch_size,
                       max_length=args.max_length, seed=args.seed, metric=task.metric, eval_every=args.eval_every,
                       log=log)
    if args.out:
        out = Path(args.out)
        if args.mode == "adapter":
            from adapters import save_adapter
            save_adapter(model, "task", out)
        else:
            model.save_pretrained(out)
        (out / "history.json").write_text(json.dumps(result, indent=2))
        print(f"saved to {out}")
    return 0
