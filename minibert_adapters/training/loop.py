"""Fine-tuning on GLUE-style classification data: adapters, full fine-tuning, and the paper's baselines.

The protocol of Houlsby2019 §3.1 / Devlin2019: AdamW (weight decay 0.01, not on LayerNorms and biases:
`adapters.policy.decays`), eps 1e-6, linear warmup over 10% of the steps then linear decay to 0, gradient
clipping at 1.0, batch 32, max length 128; learning rate about 3e-4 for adapters and 3e-5 for full
fine-tuning. optimizer="adapter-bert" runs the original code's variant instead (no bias correction, decay
from step 0); docs/conventions.md §2 compares the two.

Modes: "adapter" (the adapter preset's policy), "full" (every parameter), "layernorm" (LayerNorms + head
only), "top-k" (the top k encoder layers + pooler + head), "head" (the classifier alone on the frozen
encoder); each is an `adapters.policy.Policy`.

Divergence: a step whose loss or gradient norm is not finite is not taken, and training stops there
(`fine_tune`'s "diverged"); no checkpoint is handed after it, and none is ever handed with non-finite
weights, so best/ and last/ keep the last finite state.

Resuming: `fine_tune` can hand a trainer state (step, optimizer moments, schedule, dropout generators,
history, best) to a `checkpoint` callback and continue from one (`state=`). The data order of epoch e is a
permutation drawn from (seed, e), so a run stopped after any step and resumed gives bit-identical weights to
a run that was never stopped (on the same machine and BLAS).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from adapters import Policy, add_adapter, apply_policy, kind_of, preset_config, train_adapter, weight_decay_groups
from autograd import no_grad, optim
from minibert_adapters.training.metrics import matthews

MODES = ("adapter", "full", "layernorm", "top-k", "head")
# docs/conventions.md §2: "adamw" is variant B (torch.optim.AdamW, bias-corrected, linear decay from the peak),
# "adapter-bert" variant A (the original code: no bias correction, decay from step 0 that warm-up overrides).
OPTIMIZERS = ("adamw", "adapter-bert")
ADAPTER_NAME = "task"


def set_trainable(model, mode: str, preset: str = "houlsby", size: int | None = None, top_k: int = 1,
                  seed: int = 0, init_std: float | None = None, pooler: bool = False) -> list:
    """Freeze / unfreeze `model` (a BertForSequenceClassification) for a training mode; returns trainable names.

    adapter: adds adapter "task" (preset, bottleneck `size` if given) and trains what its policy trains
    (for "houlsby": the adapters, every LayerNorm and the head). full: everything. layernorm: every LayerNorm
    and the head. top-k: encoder layers L-k .. L-1, the pooler and the head. head: the classification layer
    alone, on the frozen encoder and pooler (the paper's "frozen encoder" floor).
    pooler: also train the pooler (dense + tanh on [CLS]) in the modes that freeze it (adapter, layernorm, head).
    Convention (`minibert train`'s default, `--pooler train`): all-MiniLM-L6-v2's pooler was never trained
    (sentence-transformers trains the encoder under mean pooling; its pooler bias is exactly zero), so the runs
    train it with the task in every mode; adapter-bert's frozen pooler (BERT's was trained) is `--pooler frozen`.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if init_std is not None and mode != "adapter":
        raise ValueError(f"init_std sets the adapters' initial weights; mode {mode!r} has no adapters")
    if mode == "adapter":
        base = preset_config(preset)
        kind = kind_of(base)
        overrides = {"train_pooler": True} if pooler else {}
        if size is not None:
            if kind.size_field is None:
                raise ValueError(f"size: preset {preset!r} is of kind {kind.name!r}, which has no size")
            overrides[kind.size_field] = size
        if init_std is not None:
            # 0 would be the zero init in disguise (and a normal draw of std 0): that is init="zeros".
            if not (isinstance(init_std, (int, float)) and 0 < init_std < math.inf):
                raise ValueError(f"init_std must be a finite number > 0, got {init_std!r} (for an exact identity "
                                 "use a preset with the kind's identity init, e.g. houlsby-zero-init)")
            if "init_std" not in base.to_dict():
                raise ValueError(f"preset {preset!r} is of kind {kind.name!r}, whose config has no init_std")
            # Does the std enter the claimed init at all? Two stds that claim the same init say it does not.
            claims = [kind.init_claims(preset_config(preset, init_std=s), model.bert.config)
                      for s in (init_std, 2 * init_std)]
            if claims[0] == claims[1] or kind.identity_config(base) == base:
                raise ValueError(f"preset {preset!r}: an init std does not change its init (it has no std, or "
                                 "starts at an exact identity)")
            overrides["init_std"] = init_std
        add_adapter(model, ADAPTER_NAME, preset_config(preset, **overrides), seed=seed)
        return train_adapter(model, ADAPTER_NAME)
    layers = model.config.num_hidden_layers
    if mode == "top-k" and not (isinstance(top_k, int) and 1 <= top_k <= layers):
        raise ValueError(f"top_k must be an integer from 1 to {layers} (the model's layers), got {top_k!r}")
    policy = {"full": Policy(everything=True),
              "layernorm": Policy(layer_norms=True, head=True, pooler=pooler),
              "head": Policy(head=True, pooler=pooler),
              "top-k": Policy(layers=frozenset(range(layers - top_k, layers)), pooler=True, head=True)}[mode]
    trainable = apply_policy(model, policy)
    model.train()
    return trainable


@dataclass
class TrainConfig:
    """The settings of one fine-tuning run (Houlsby2019 §3.1 / Devlin2019 defaults)."""

    steps: int                    # optimizer steps
    lr: float                     # peak learning rate (reached at the end of warm-up)
    batch_size: int = 32
    max_length: int = 128         # tokens per example; longer ones are cut
    weight_decay: float = 0.01    # AdamW's decoupled decay, on what adapters.policy.decays allows
    warmup_fraction: float = 0.1  # linear warm-up over this share of the steps, then linear decay to 0
    clip: float = 1.0             # gradient-norm clipping (0: none)
    seed: int = 0                 # data order (dropout and init are seeded where the model is built)
    metric: str = "accuracy"      # the dev metric that picks the best step ("matthews" for CoLA)
    optimizer: str = "adamw"      # "adamw" (torch-style, decay from the peak) or "adapter-bert" (its code's)
    eval_every: int = 0           # evaluate on dev every N steps (0: only after the last step)
    save_every: int = 0           # also hand a "last" checkpoint every N steps (0: only at evaluations and the end)

    def __post_init__(self):
        for name in ("steps", "batch_size", "max_length"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < math.inf):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        ranges = (("weight_decay", 0.0, math.inf), ("warmup_fraction", 0.0, 1.0), ("clip", 0.0, math.inf))
        for name, low, high in ranges:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value < high):
                raise ValueError(f"{name} must be a number in [{low:g}, {high:g}), got {value!r}")
        if self.metric not in ("accuracy", "matthews"):
            raise ValueError(f"metric must be 'accuracy' or 'matthews', got {self.metric!r}")


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


def predict_logits(model, tok, examples, batch_size=64, max_length=128) -> np.ndarray:
    """The (N, num_labels) logits of `model` on `examples` (labels unused), in eval mode, without gradients."""
    if not examples:
        raise ValueError("no examples to predict")
    was_training = model.training
    model.eval()
    chunks = []
    with no_grad():
        for enc, _ in batches(examples, tok, batch_size, max_length):
            chunks.append(model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).logits.data)
    model.train(was_training)
    return np.concatenate(chunks)


def evaluate(model, tok, examples, batch_size=64, max_length=128, metric="accuracy") -> dict:
    """Accuracy (and Matthews correlation with metric="matthews") of `model` on `examples`, in eval mode."""
    if not examples:
        raise ValueError("no examples to evaluate on")
    pred = predict_logits(model, tok, examples, batch_size, max_length).argmax(-1)
    gold = np.array([e.label for e in examples])
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


class StateMismatch(ValueError):
    """A trainer state that does not fit the run it is given to; `part` is "optimizer" (the moments' count or
    shapes) or "trainer" (steps, schedule, generators), so a caller can name the file that holds it."""

    def __init__(self, part: str, message: str):
        super().__init__(message)
        self.part = part


def optimizer_for(model, config: TrainConfig) -> tuple:
    """(optimizer, schedule, trained parameters) of a run: AdamW (or the original code's AdamWeightDecay) on the
    parameters that require grad, decay where adapters.policy.decays allows, eps 1e-6, linear warm-up and decay
    over config.steps."""
    c = config
    groups = weight_decay_groups(model, c.weight_decay)
    if not groups:
        raise ValueError("no parameter requires grad; call set_trainable first")
    original = c.optimizer == "adapter-bert"
    opt = (optim.AdamWeightDecay if original else optim.AdamW)(groups, lr=c.lr, eps=1e-6, weight_decay=c.weight_decay)
    schedule = optim.LinearWarmupDecay(opt, total=c.steps, warmup_fraction=c.warmup_fraction,
                                       decay_from_start=original)
    return opt, schedule, [p for g in groups for p in g["params"]]


def optimizer_step(loss, opt, schedule, params, clip) -> tuple:
    """One step of a run: backward, clip by the global norm (clip 0 or None: no clipping), update, advance the
    schedule. Returns (loss, gradient norm, lr used); lr None when the loss or the norm is not finite, and then
    nothing is updated (the run has diverged)."""
    opt.zero_grad()
    loss.backward()
    # Without clipping the norm is still measured: a non-finite gradient must stop the run either way.
    norm = optim.clip_grad_norm_(params, clip if clip else math.inf)
    loss_value = float(loss.data)
    if not (math.isfinite(loss_value) and math.isfinite(norm)):
        return loss_value, norm, None
    lr_used = opt.param_groups[0]["lr"]
    opt.step()
    schedule.step()
    return loss_value, norm, lr_used


def fine_tune(model, tok, train_examples, dev_examples, config: TrainConfig, *, log=None, checkpoint=None,
              should_stop=None, state=None) -> dict:
    """Train the parameters that require grad for `config.steps` optimizer steps (AdamW + linear warmup/decay).

    Evaluates on `dev_examples` every `config.eval_every` steps (0: only after the last step). Callbacks:
    log(row) after every step; checkpoint(kind, trainer_state) with kind "best" when the dev metric
    improves and "last" after every evaluation, every `config.save_every` steps, at the end and when
    stopped; should_stop() after every step (True: stop there, after the "last" checkpoint). `state`: a
    trainer state from checkpoint() to continue from; the model must already hold the weights saved with it.

    Stops at the first step whose loss or gradient norm is not finite, before its update (that step is not
    taken, not logged and not saved), or whose update left a trained weight non-finite (not saved).

    Returns {"history": one row per step, "final": the dev result after the last step (None if stopped),
    "best": {"step", metric, "dev"} or None, "step": steps done, "stopped": bool, "diverged": None or
    {"step": the step that diverged, "reason": what was not finite}}.
    """
    c = config
    steps, batch_size, max_length, metric = c.steps, c.batch_size, c.max_length, c.metric
    if not train_examples:
        raise ValueError("no training examples")
    if not dev_examples:
        raise ValueError("no dev examples to evaluate on")
    opt, schedule, params = optimizer_for(model, c)
    generators = _generators(model)
    history, best, step, seconds_before = [], None, 0, 0.0
    if state is not None:
        if state["steps"] != steps:
            raise ValueError(f"the saved run trains {state['steps']} steps, not {steps} (the schedule depends on it)")
        try:
            opt.load_state_dict(state["optimizer"])
            for i, saved in state["optimizer"]["state"].items():
                # load_state_dict checks counts only: moments of other shapes would fail mid-step, unexplained.
                shapes = {saved["exp_avg"].shape, saved["exp_avg_sq"].shape}
                if not 0 <= int(i) < len(params) or shapes != {params[int(i)].shape}:
                    raise ValueError(f"moments of parameter {i} have shape {sorted(shapes)}, not the model's")
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise StateMismatch("optimizer", f"the saved optimizer state does not fit this model: {e}") from None
        try:
            schedule.load_state_dict(state["schedule"])
            if len(state["generators"]) != len(generators):
                raise ValueError("the saved run has another number of random generators (another model?)")
            for g, saved in zip(generators, state["generators"]):
                g.bit_generator.state = saved
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise StateMismatch("trainer", f"the saved schedule or random generators do not fit: {e}") from None
        history, best, step = list(state["history"]), state["best"], state["step"]
        seconds_before = state["seconds"]

    def trainer_state():
        return {"step": step, "steps": steps, "optimizer": opt.state_dict(), "schedule": schedule.state_dict(),
                "generators": [g.bit_generator.state for g in generators], "history": list(history),
                "best": best, "seconds": seconds_before + time.perf_counter() - start}

    per_epoch = math.ceil(len(train_examples) / batch_size)
    start, stopped, diverged = time.perf_counter(), False, None
    while step < steps and not stopped and diverged is None:
        epoch, offset = divmod(step, per_epoch)
        order = epoch_order(len(train_examples), c.seed, epoch)[offset * batch_size:]
        for enc, labels in batches(train_examples, tok, batch_size, max_length, order):
            model.train()
            loss = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], labels=labels).loss
            loss_value, norm, lr_used = optimizer_step(loss, opt, schedule, params, c.clip)
            if lr_used is None:
                diverged = {"step": step + 1, "reason": f"loss {loss_value:g}, gradient norm {norm:g}"}
                break
            step += 1
            row = {"step": step, "epoch": epoch, "loss": loss_value, "grad_norm": float(norm), "lr": lr_used,
                   "seconds": seconds_before + time.perf_counter() - start}
            evaluated = (c.eval_every and step % c.eval_every == 0) or step == steps
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
            saving = checkpoint and (improved or evaluated or stopped or (c.save_every and step % c.save_every == 0))
            if saving and not all(np.isfinite(p.data).all() for p in params):
                # Finite gradients can still overflow a weight; such weights never reach best/ or last/.
                diverged, stopped = {"step": step, "reason": "a trained weight is not finite after the update"}, False
                break
            if checkpoint:
                if improved:
                    checkpoint("best", trainer_state())
                if evaluated or stopped or (c.save_every and step % c.save_every == 0):
                    checkpoint("last", trainer_state())
            if stopped or step >= steps:
                break
    final = history[-1].get("dev") if step == steps and history and diverged is None else None
    return {"history": history, "final": final, "best": best, "step": step, "stopped": stopped,
            "diverged": diverged}

