# %% [markdown]
# # 4. Adapter tuning on real data
#
# The paper's claim is a trade-off: adapters train a few percent of the parameters and get close to full
# fine-tuning, where training the LayerNorms alone falls short.
#
# > "To explore this trade-off, we consider different adapter sizes, and compare to two baselines:
# > (i) Fine-tuning of only the top k layers of BERT_BASE. (ii) Tuning only the layer normalization
# > parameters." (§3.4)
#
# > "We optimize using Adam (Kingma & Ba, 2014), whose learning rate is increased linearly over the first
# > 10% of the steps, and then decayed linearly to zero." (§3.1)
#
# Here: all-MiniLM-L6-v2 on SST-2 sentences (binary sentiment, Socher2013; the sentence-level split of
# Kim2014), with `minibert_adapters.training.loop.fine_tune` (AdamW, warm-up then linear decay, clipping at 1.0) for
# four methods: adapters with m = 64 and m = 8, LayerNorms only, and full fine-tuning. Then two adapters
# on one frozen base model, switched per task.
#
# **This is a small budget**: 60 steps of 16 sentences (960 sentences; the first cell says what share of
# an epoch that is), max 32 tokens, one seed, no learning-rate sweep, so that the notebook runs in a few
# minutes on 2 CPU cores. Its numbers show the shape of the trade-off on this machine, not the paper's
# protocol (3 or 20 epochs, batch 32, a sweep, best of 5 seeds). Full-size numbers come from the
# experiments runner; this notebook does not reproduce them, but section 4.3 plots the committed ones.

# %%
import json
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from adapters import (AdapterConfig, adapter_summary, add_adapter, parameter_roles, save_adapter, set_active_adapter,
                      train_adapter)
from autograd import no_grad, optim
from minibert import BertForSequenceClassification, BertModel, Tokenizer
from minibert_adapters.training.data import TASKS, default_data_dir, read_task
from minibert_adapters.training.loop import TrainConfig, fine_tune, set_trainable

plt.rcParams.update({"figure.dpi": 80, "font.size": 9})
ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "tests" / "fixtures").is_dir())
SLICES = ROOT / "tests" / "fixtures" / "glue"
tok = Tokenizer.from_pretrained()


def data_dir_for(task):
    """The full data set ($MINIBERT_DATA, or ../shared/data in a checkout) if it has the task, else the
    small real slice shipped in tests/fixtures/glue."""
    full = default_data_dir()
    spec = TASKS[task]
    if full is not None and all((Path(full) / spec.folder / f).is_file() for f in spec.files.values()):
        return Path(full), "the full data set"
    return SLICES, "the slice shipped in tests/fixtures/glue (set MINIBERT_DATA for the full data set)"


sst_dir, sst_source = data_dir_for("sst2-sentences")
train, dev = read_task("sst2-sentences", "train", sst_dir), read_task("sst2-sentences", "dev", sst_dir)
majority = max(np.mean([e.label for e in dev]), 1 - np.mean([e.label for e in dev]))
print(f"SST-2 sentences from {sst_source}: {len(train):,} train, {len(dev):,} dev sentences")
print(f"dev: {np.mean([e.label for e in dev]):.1%} positive; majority-class accuracy {majority:.3f}")
print("e.g.", *[f"{e.label} | {e.text_a}" for e in train[:3]], sep="\n  ")
BUDGET = dict(steps=60, batch_size=16, max_length=32, seed=0)   # the same for every method; lr differs
seen = BUDGET["steps"] * BUDGET["batch_size"]
print(f"budget: {BUDGET['steps']} steps x {BUDGET['batch_size']} = {seen} training sentences, "
      f"{seen / len(train):.2f} of an epoch")

# %% [markdown]
# ## 4.1 Four methods, one budget
#
# Every run starts from the same pre-trained weights, the same randomly initialised head (seed 0) and the
# same order of training sentences. Only what trains, and the learning rate, differ:
#
# | method | trains | learning rate |
# |---|---|---|
# | adapter, m = 64 and m = 8 | adapters + every LayerNorm + head (the original code's policy) | 3·10⁻³ |
# | LayerNorm only | every LayerNorm + head | 3·10⁻³ |
# | full fine-tuning | everything | 10⁻⁴ |
#
# 3·10⁻³ is the top of the paper's adapter sweep {3·10⁻⁵, 3·10⁻⁴, 3·10⁻³} (§3.2); 10⁻⁴ is above BERT's
# own fine-tuning rates {2, 3, 5}·10⁻⁵ (Devlin2019, Appendix A.3), for the short budget. Both were picked
# after one short trial on this machine (for adapters, 3·10⁻³ over 10⁻³), not swept.

# %%
methods = {  # name -> (how to make the model trainable, learning rate)
    "adapter m=64": (lambda m: (add_adapter(m, "sst2", AdapterConfig.from_preset("houlsby", bottleneck_size=64)),
                                train_adapter(m, "sst2")), 3e-3),
    "adapter m=8": (lambda m: set_trainable(m, "adapter", size=8), 3e-3),
    "LayerNorm only": (lambda m: set_trainable(m, "layernorm"), 3e-3),
    "full fine-tuning": (lambda m: set_trainable(m, "full"), 1e-4),
}
runs, models = {}, {}
for name, (make_trainable, lr) in methods.items():
    model = BertForSequenceClassification.from_pretrained(num_labels=2, seed=0)
    make_trainable(model)
    trained = sum(p.size for p in model.parameters() if p.requires_grad)
    start = time.perf_counter()
    result = fine_tune(model, tok, train, dev, TrainConfig(lr=lr, **BUDGET))
    runs[name] = {"trained": trained, "history": result["history"], "dev": result["final"]["accuracy"],
                  "seconds": time.perf_counter() - start}
    models[name] = model
    print(f"{name:<17} trained {trained:>10,} parameters, dev accuracy {runs[name]['dev']:.3f} "
          f"({runs[name]['seconds']:.0f} s)", flush=True)

base_size = adapter_summary(models["adapter m=64"], "sst2")["base_parameters"]

# %% [markdown]
# ## 4.2 Loss curves
#
# Training cross-entropy per step (thin), and its moving average over 10 steps (thick). Right, the
# learning-rate multiplier every run used: it rises over the first 10% of the steps and falls linearly
# to 0 at the last.

# %%
COLORS = {"adapter m=64": "C1", "adapter m=8": "#f5b971", "LayerNorm only": "C2", "full fine-tuning": "C0"}
fig, (ax, ax_lr) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [2.2, 1]})
for name, run in runs.items():
    steps = [row["step"] for row in run["history"]]
    loss = np.array([row["loss"] for row in run["history"]])
    smooth = np.convolve(loss, np.ones(10) / 10, mode="valid")
    ax.plot(steps, loss, color=COLORS[name], alpha=0.25, lw=0.8)
    ax.plot(steps[9:], smooth, color=COLORS[name], lw=2, label=f"{name} (dev {run['dev']:.3f})")
ax.axhline(np.log(2), color="0.5", ls=":", label="ln 2 (a coin flip)")
ax.set_xlabel("optimizer step (16 sentences each)")
ax.set_ylabel("training cross-entropy (nats)")
ax.set_title("SST-2 sentences, small budget")
ax.legend(fontsize=8)
for name, run in runs.items():
    peak = methods[name][1]
    ax_lr.plot([row["step"] for row in run["history"]], [row["lr"] / peak for row in run["history"]],
               color=COLORS[name], lw=1, label=f"{name}, peak {peak:g}")
ax_lr.set_xlabel("optimizer step")
ax_lr.set_ylabel("learning rate / peak")
ax_lr.set_title("warm-up 10%, then linear decay")
ax_lr.legend(fontsize=7)
fig.tight_layout()

# %% [markdown]
# ## 4.3 Accuracy against trained parameters
#
# The paper's Figures 3 and 4 put the number of trained parameters per task on a log axis and the
# validation score on the other. The same plot for the four runs above (dev accuracy on all dev sentences,
# one seed each, so differences of a point or two are within noise):

# %%
print(f"{'method':<17} {'trained':>11} {'% of base':>9} {'dev acc':>8} {'seconds':>8}")
for name, run in runs.items():
    print(f"{name:<17} {run['trained']:>11,} {100 * run['trained'] / base_size:>9.3f} {run['dev']:>8.3f} "
          f"{run['seconds']:>8.0f}")

fig, ax = plt.subplots(figsize=(6.5, 3.8))
for name, run in runs.items():
    ax.scatter(run["trained"], run["dev"], s=60, color=COLORS[name], zorder=3)
    ax.annotate(name, (run["trained"], run["dev"]), textcoords="offset points", xytext=(6, -12), fontsize=8)
adapters = [runs["adapter m=8"], runs["adapter m=64"]]
ax.plot([r["trained"] for r in adapters], [r["dev"] for r in adapters], color="C1", lw=1)
ax.axhline(majority, color="0.5", ls=":", label=f"majority class ({majority:.3f})")
ax.set_xscale("log")
ax.set_xlabel("trained parameters per task (log scale)")
ax.set_ylabel("dev accuracy")
ax.set_title(f"small budget: {BUDGET['steps']} steps × {BUDGET['batch_size']} sentences, one seed")
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()

# %% [markdown]
# What to read from it, and what not. §3.4 found LayerNorm-only tuning clearly behind adapters ("performance
# decreases by approximately 3.5% on CoLA and 4% on MNLI"); the cell below states this run's gap. The gap
# between adapters and full fine-tuning after so few steps says as much about how fast each learns at these
# learning rates as about the quality the paper measures after several epochs.

# %%
gap_ln = runs["adapter m=64"]["dev"] - runs["LayerNorm only"]["dev"]
gap_full = runs["full fine-tuning"]["dev"] - runs["adapter m=64"]["dev"]
print(f"adapter m=64 minus LayerNorm only: {100 * gap_ln:+.1f} points; "
      f"full fine-tuning minus adapter m=64: {100 * gap_full:+.1f} points "
      f"(one seed, {len(dev)} dev sentences: one sentence is {100 / len(dev):.2f} points)")

# %% [markdown]
# ### The same plot at full size
#
# The experiments runner (`minibert experiments run --grid experiments/table1.json`) trains every method for
# 3 epochs of the whole training set, over several learning rates and seeds, and commits the best-on-dev
# result per method to `experiments/results/results.json`; `experiments/results/RESULTS.md` gives each run's
# exact command. This cell only reads that file: the runs take hours on 2 cores. Error bars are the standard
# error over seeds (none where one seed has run so far); the file says how many seeds (`n`) and learning
# rates (`tried`) each point rests on.

# %%
results = json.loads((ROOT / "experiments" / "results" / "results.json").read_text(encoding="utf-8"))
full_size = sorted((r for r in results if r["task"] == "sst2-sentences"), key=lambda r: r["trainable"])
print(f"{'method':<12} {'trained':>11} {'% of base':>9} {'dev acc':>8} {'± s.e.m.':>8} {'seeds':>5} {'lr':>7}")
for r in full_size:
    sem = f"{100 * r['sem']:.1f}" if r["sem"] is not None else "-"
    print(f"{r['method']:<12} {r['trainable']:>11,} {100 * r['trainable'] / r['pretrained']:>9.3f} "
          f"{100 * r['mean']:>8.1f} {sem:>8} {r['n']:>5} {r['lr']:>7g}")

fig, ax = plt.subplots(figsize=(6.5, 3.8))
for r in full_size:
    ax.errorbar(r["trainable"], r["mean"], yerr=r["sem"] or 0, fmt="o", capsize=3, zorder=3,
                color="C1" if r["mode"] == "adapter" else "C0")
    ax.annotate(r["method"], (r["trainable"], r["mean"]), textcoords="offset points", xytext=(6, -12), fontsize=8)
for name, run in runs.items():  # this notebook's small-budget runs, for scale
    ax.scatter(run["trained"], run["dev"], s=25, marker="x", color=COLORS[name], zorder=2)
ax.set_xscale("log")
ax.set_xlabel("trained parameters per task (log scale)")
ax.set_ylabel("dev accuracy")
ax.set_title("SST-2 sentences, 3 epochs, best lr on dev (o); this notebook's small budget (x)")
fig.tight_layout()

# %% [markdown]
# ## 4.4 Two adapters on one frozen base
#
# > "Adapter modules yield a compact and extensible model; they add only a few trainable parameters per
# > task, and new tasks can be added without revisiting previous ones." (Abstract)
#
# The adapter model above has one adapter, `sst2`. Add a second, `cola` (grammatical acceptability,
# Warstadt2019; scored by Matthews correlation, as GLUE does), train it on the same base model with the
# same budget, then switch between them with `set_active_adapter`. Each task has its own adapters,
# LayerNorms and head; the frozen base weights are shared and never change.

# %%
model = models["adapter m=64"]
cola_dir, cola_source = data_dir_for("cola")
cola_train, cola_dev = read_task("cola", "train", cola_dir), read_task("cola", "dev", cola_dir)
print(f"CoLA from {cola_source}: {len(cola_train):,} train, {len(cola_dev):,} dev sentences")

probe = tok(["a gripping, beautifully acted film.", "the plot is dull and the jokes fall flat.",
             "the film were gripping.", "the book gave her him to."])


def logits_of(m):
    m.eval()  # no dropout: the same input gives the same logits
    with no_grad():
        return m(probe["input_ids"], probe["attention_mask"]).logits.data


def base_weights(m):
    """Copies of the frozen pre-trained weights (roles "base" and "pooler"; adapters/policy.py)."""
    return {n: p.data.copy() for n, (role, _, p) in parameter_roles(m).items() if role.kind in ("base", "pooler")}


set_active_adapter(model, "sst2")
sst2_logits_before, frozen_before = logits_of(model), base_weights(model)
add_adapter(model, "cola", "houlsby")
train_adapter(model, "cola")
cola = fine_tune(model, tok, cola_train, cola_dev, TrainConfig(lr=3e-3, metric="matthews", **BUDGET))
cola_majority = max(np.mean([e.label for e in cola_dev]), 1 - np.mean([e.label for e in cola_dev]))
print(f"cola adapter: dev accuracy {cola['final']['accuracy']:.3f}, Matthews correlation "
      f"{cola['final']['matthews']:.3f} (majority class: accuracy {cola_majority:.3f}, Matthews 0)")
if cola["final"]["matthews"] == 0 and np.isclose(cola["final"]["accuracy"], cola_majority):
    print("accuracy of the majority class and Matthews 0: at this budget the cola adapter has learned the label "
          "prior, not acceptability (the paper trained up to 20 epochs, §3.2)")

set_active_adapter(model, "sst2")
print("sst2 logits after training cola, bit for bit as before:", np.array_equal(logits_of(model), sst2_logits_before))
print("frozen base weights unchanged:",
      all(np.array_equal(w, dict(model.named_parameters())[n].data) for n, w in frozen_before.items()))

# %% [markdown]
# The same four sentences through the same base model, with each task's adapter active (softmax
# probability of label 1: "positive" for SST-2, "acceptable" for CoLA). With `None`, the base model itself
# comes back, bit for bit.

# %%
def p_label1(m):
    z = logits_of(m)
    return np.exp(z[:, 1]) / np.exp(z).sum(axis=1)


set_active_adapter(model, "sst2")
p_sst2 = p_label1(model)
set_active_adapter(model, "cola")
p_cola = p_label1(model)
print(f"{'sentence':<45} {'P(positive), sst2':>18} {'P(acceptable), cola':>20}")
for text, a, b in zip(["a gripping, beautifully acted film.", "the plot is dull and the jokes fall flat.",
                       "the film were gripping.", "the book gave her him to."], p_sst2, p_cola):
    print(f"{text:<45} {a:>18.3f} {b:>20.3f}")

set_active_adapter(model, None)
fresh = BertModel.from_pretrained()
model.eval()
with no_grad():
    ours = model.bert(probe["input_ids"], probe["attention_mask"]).last_hidden_state.data
    theirs = fresh(probe["input_ids"], probe["attention_mask"]).last_hidden_state.data
print("no adapter active == a freshly loaded base model, bit for bit:", np.array_equal(ours, theirs))

with tempfile.TemporaryDirectory() as tmp:
    sizes = {name: save_adapter(model, name, Path(tmp) / name) for name in ("sst2", "cola")}
for name, s in sizes.items():
    print(f"save_adapter({name!r}): {s['adapter_bytes'] / 1e6:.2f} MB, {s['percent_of_model']:.1f}% of the base "
          f"model's {s['model_bytes'] / 1e6:.1f} MB")

# %% [markdown]
# ## Exercises
#
# The committed answers are correct; replace a body with your own and run the judge below it.
#
# 1. **The schedule.** Write `lr_multiplier(step, total, warmup_fraction)` for §3.1's schedule as the
#    project implements it (warm-up steps `int(total × fraction)`, multiplier 0 at step 0, 1 at the end of
#    warm-up, 0 at `total`); the judge compares every step with `optim.linear_warmup_decay`.
# 2. **What a task costs.** Write `trained_per_task(m, d, n_layers, n_labels)`: adapters (2 per layer),
#    every LayerNorm (two per layer and the embeddings'), and the head, for the `houlsby` policy. The judge
#    compares with `adapter_summary` for several m.
# 3. **N tasks.** Write `total_parameters(n_tasks, base, per_task)`, the parameters to store for n tasks with
#    adapters (one shared base), and `full_total(n_tasks, base, head)` for full fine-tuning (one whole
#    model per task); the judge computes the paper's "1.3× against 9×" comparison for this model.

# %%
def check(exercise, test):
    """Run `test`; print 'correct', or print why not and re-raise."""
    try:
        test()
    except Exception as err:
        print(f"{exercise}: not yet. {type(err).__name__}: {err}")
        raise
    print(f"{exercise}: correct")


# %%
def lr_multiplier(step, total, warmup_fraction=0.1):
    warmup = int(total * warmup_fraction)
    if step < warmup:
        return step / warmup
    return max(0.0, (total - step) / (total - warmup))


# %%
def judge_schedule():
    for total, fraction in [(80, 0.1), (1000, 0.1), (37, 0.2)]:
        for step in range(total + 2):
            ours, theirs = lr_multiplier(step, total, fraction), optim.linear_warmup_decay(step, total, fraction)
            assert np.isclose(ours, theirs), f"total {total}, step {step}: {ours} vs {theirs}"


check("Exercise 1", judge_schedule)


# %%
def trained_per_task(m, d, n_layers, n_labels):
    adapters = 2 * n_layers * (2 * m * d + d + m)
    layer_norms = (2 * n_layers + 1) * 2 * d
    head = d * n_labels + n_labels
    return adapters + layer_norms + head


# %%
def judge_per_task():
    probe_model = BertForSequenceClassification.from_pretrained(num_labels=2)
    d, n_layers = probe_model.config.hidden_size, probe_model.config.num_hidden_layers
    for m in (2, 8, 64):
        add_adapter(probe_model, f"m{m}", AdapterConfig.from_preset("houlsby", bottleneck_size=m), set_active=False)
        counted = adapter_summary(probe_model, f"m{m}")["trainable_parameters"]
        mine = trained_per_task(m, d, n_layers, 2)
        assert mine == counted, f"m={m}: {mine} vs {counted}"


check("Exercise 2", judge_per_task)


# %%
def total_parameters(n_tasks, base, per_task):
    return base + n_tasks * per_task


def full_total(n_tasks, base, head):
    return n_tasks * (base + head)


# %%
def judge_totals():
    per_task = runs["adapter m=64"]["trained"]
    head = models["full fine-tuning"].classifier.weight.size + models["full fine-tuning"].classifier.bias.size
    whole = sum(p.size for p in models["full fine-tuning"].parameters())
    for n in (1, 9, 26):
        assert total_parameters(n, base_size, per_task) == base_size + n * per_task
        assert full_total(n, base_size, head) == n * whole
    print(f"9 tasks (GLUE): adapters {total_parameters(9, base_size, per_task) / base_size:.2f}x the base model, "
          f"full fine-tuning {full_total(9, base_size, head) / base_size:.2f}x")


check("Exercise 3", judge_totals)
