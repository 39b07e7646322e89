# %% [markdown]
# # 3. The adapter's math
#
# Houlsby et al. (2019) put a small bottleneck module into every transformer layer, twice:
#
# > "The adapter is always applied directly to the output of the sub-layer, after the projection back to
# > the input size, but before adding the skip connection back. The output of the adapter is then passed
# > directly into the following layer normalization." (§2.1)
#
# > "The adapters first project the original d-dimensional features into a smaller dimension, m, apply a
# > nonlinearity, then project back to d dimensions. The total number of parameters added per layer,
# > including biases, is 2md + d + m." (§2.1)
#
# > "With the skip-connection, if the parameters of the projection layers are initialized to near-zero,
# > the module is initialized to an approximate identity function." (§2.1)
#
# In symbols, for one token vector h of size d:
#
#     A(h) = h + W_up f(W_down h + b_down) + b_up,     W_down: (m, d),  W_up: (d, m)
#
# This notebook checks each sentence on the real all-MiniLM-L6-v2 (d = 384, 6 layers): the equation and
# where it sits (Figure 2), the count 2md + d + m, the identity at init and the paper's robustness
# argument about the init scale, and where the gradients go. Everything is imported from `adapters/`:
# the equation, placement and init live in `adapters/bottleneck.py`, what trains in `adapters/policy.py`.

# %%
import inspect
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from adapters import (AdapterConfig, BottleneckAdapter, adapter_summary, add_adapter, parameter_roles,
                      remove_adapter, set_active_adapter, train_adapter)
from autograd import Tensor, no_grad
from autograd.gradcheck import gradcheck
from minibert import BertForSequenceClassification, BertModel, Tokenizer
from minibert_adapters.training.data import read_task

plt.rcParams.update({"figure.dpi": 80, "font.size": 9})
ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "tests" / "fixtures").is_dir())
rng = np.random.default_rng(0)
tok = Tokenizer.from_pretrained()

# %% [markdown]
# ## 3.1 The equation in code
#
# `BottleneckAdapter.forward` is the slot's hook, called as `adapter(a, x, norm)`: `a` is the sub-layer output
# after its dense projection and dropout, `x` the sub-layer's input (used by the parallel ablation) and `norm`
# the sub-layer's own LayerNorm. In Houlsby's form it returns norm(x + a + A(a)), where A(h) = up(f(down(h)))
# is `adapter.adapt`; the other branches are AdapterHub's variants of where the adapter sits:

# %%
print(inspect.getsource(BottleneckAdapter.forward))
adapter = BottleneckAdapter(hidden_size=384, bottleneck_size=64, dtype=np.float64, rng=rng)
h = Tensor(rng.standard_normal((2, 5, 384)))                        # (B, T, D)
with no_grad():
    z = adapter.f(adapter.down(h))                                  # (B, T, D) -> (B, T, M)
    out = h + adapter.adapt(h)                                      # (B, T, M) -> (B, T, D), plus h
print("h", h.shape, "-> f(W_down h + b_down)", z.shape, "-> A(h)", out.shape)
print("W_down", adapter.down.weight.shape, " b_down", adapter.down.bias.shape,
      " W_up", adapter.up.weight.shape, " b_up", adapter.up.bias.shape, " f =", adapter.non_linearity)

# %% [markdown]
# ## 3.2 Figure 2: where the adapter sits
#
# Left, one encoder layer; right, the adapter. Green boxes hold parameters that train during adapter
# tuning: the adapters, the LayerNorms and (not drawn) the classification head, as the caption of Figure 2
# says. Grey boxes are frozen pre-trained weights or operations without parameters. Dashed arrows are
# skip connections.

# %%
def draw_stack(ax, x, boxes, title):
    """Boxes from bottom to top, arrows between them; returns the y of each box."""
    ys = np.arange(len(boxes)) * 1.0
    for y, (text, trained) in zip(ys, boxes):
        ax.add_patch(FancyBboxPatch((x - 1.3, y - 0.3), 2.6, 0.6, boxstyle="round,pad=0.02",
                                    fc="#bfe3b4" if trained else "#e4e4e4", ec="0.3"))
        ax.text(x, y, text, ha="center", va="center", fontsize=8)
    for y0, y1 in zip(ys[:-1], ys[1:]):
        ax.add_patch(FancyArrowPatch((x, y0 + 0.3), (x, y1 - 0.3), arrowstyle="->", mutation_scale=10))
    ax.text(x, ys[-1] + 0.8, title, ha="center", fontsize=10, weight="bold")
    return ys


def skip(ax, x, y_from, y_to, side=1.0):
    ax.add_patch(FancyArrowPatch((x + side * 1.3, y_from), (x + side * 1.3, y_to),
                                 connectionstyle=f"arc3,rad={0.45 * side}", arrowstyle="->",
                                 mutation_scale=10, color="C0", ls="--"))


layer_boxes = [("x (B, T, D)", False), ("multi-head attention", False), ("dense D→D, dropout", False),
               ("adapter", True), ("+ x (residual)", False), ("LayerNorm", True),
               ("dense D→F, GELU", False), ("dense F→D, dropout", False), ("adapter", True),
               ("+ (residual)", False), ("LayerNorm", True)]
adapter_boxes = [("h = sub-layer output (D)", False), ("W_down h + b_down: D→M", True),
                 ("f (GELU, tanh form)", False), ("W_up · + b_up: M→D", True), ("+ h (internal skip)", False),
                 ("to residual + LayerNorm", False)]
fig, ax = plt.subplots(figsize=(9, 6.4))
ys = draw_stack(ax, 0, layer_boxes, "Transformer layer (post-LN)")
skip(ax, 0, ys[0], ys[4])
skip(ax, 0, ys[5], ys[9])
ya = draw_stack(ax, 5, adapter_boxes, "Adapter")
skip(ax, 5, ya[0], ya[4])
ax.add_patch(FancyBboxPatch((3.5, ya[0] - 0.5), 3.0, ya[-1] - ya[0] + 1.0, boxstyle="round,pad=0.02",
                            fc="none", ec="0.6", ls=":"))
for y in (ys[3], ys[8]):
    ax.add_patch(FancyArrowPatch((1.35, y), (3.45, ya[2]), arrowstyle="-", ls=":", color="0.5"))
ax.set_xlim(-2.2, 7.6)
ax.set_ylim(-0.8, ys[-1] + 1.3)
ax.axis("off")
fig.tight_layout()

# %% [markdown]
# The drawing is the claim; the model is the fact. After `add_adapter(model, "demo", "houlsby")`, every
# layer's two `SublayerOutput` slots (`attention.output` and `output`) hold a hook, and a sub-layer's
# output equals LayerNorm(x + A(Dense(h))) computed from its parts. (`houlsby` is the original code's
# preset: m = 64, tanh-GELU, truncated normal init with std 1e-3.)

# %%
model = BertModel.from_pretrained(dtype=np.float64)
add_adapter(model, "demo", AdapterConfig.from_preset("houlsby", init_std=1e-2), seed=0)
for i, layer in enumerate(model.encoder.layer):
    print(f"layer {i}: attention.output.hook set: {layer.attention.output.hook is not None}, "
          f"output.hook set: {layer.output.hook is not None}")

slot = model.encoder.layer[2].output                       # the FFN side of layer 2
h_ffn = Tensor(rng.standard_normal((2, 5, 1536)))          # (B, T, F): the FFN's intermediate activation
x_in = Tensor(rng.standard_normal((2, 5, 384)))            # (B, T, D): the FFN's input
with no_grad():
    a = slot.dense(h_ffn)                                  # dropout is the identity in eval mode
    by_parts = slot.LayerNorm(x_in + (a + slot.adapters["demo"].adapt(a)))
    whole = slot(h_ffn, x_in)
print("LayerNorm(x + a + A(a)) with a = Dense(h), == slot(h, x):", np.array_equal(by_parts.data, whole.data))
remove_adapter(model, "demo")

# %% [markdown]
# ## 3.3 Counting: 2md + d + m
#
# W_down is (m, d) and b_down is (m,); W_up is (d, m) and b_up is (d,). Together: md + m + dm + d =
# **2md + d + m**. (The paper says "per layer"; the count is per adapter module, and each layer has two.)
# Counted on real modules for the hidden sizes of MiniLM (384), BERT-base (768) and BERT-large (1024) and
# the paper's GLUE sizes m ∈ {8, 64, 256}:

# %%
print(f"{'d':>5} {'m':>4} {'2md + d + m':>12} {'counted':>9}")
for d in (384, 768, 1024):
    for m in (8, 64, 256):
        counted = BottleneckAdapter(d, m, rng=rng).num_parameters()
        print(f"{d:>5} {m:>4} {2 * m * d + d + m:>12,} {counted:>9,}")
        assert counted == 2 * m * d + d + m

# %% [markdown]
# On the whole MiniLM, with 2 modules × 6 layers, and as a share of the base model's 22.7M parameters.
# Adapter tuning also trains the LayerNorms (2d per LayerNorm, 13 of them) and the head (d·2 + 2 for two
# classes); `adapter_summary` counts each role (the policy decides, `adapters/policy.py`). The paper's
# Figure 4 sweeps m = 2⁰ … 2⁹ on BERT (d = 768 or 1024); on MiniLM's d = 384 the sweep stops at 2⁸, because
# m = 512 would be wider than the layer it adapts, no bottleneck (`add_adapter` refuses it):

# %%
clf = BertForSequenceClassification.from_pretrained(num_labels=2)   # float32 is enough for counting
sizes = [2 ** n for n in range(9)]
rows = []
for m in sizes:
    add_adapter(clf, f"m{m}", AdapterConfig.from_preset("houlsby", bottleneck_size=m), set_active=False)
    s = adapter_summary(clf, f"m{m}")
    assert s["adapter_parameters"] == 12 * (2 * m * 384 + 384 + m)
    rows.append(s)
    remove_adapter(clf, f"m{m}")
base = rows[0]["base_parameters"]
print(f"base model: {base:,} parameters; LayerNorms {rows[0]['layer_norm_parameters']:,}, "
      f"head {rows[0]['head_parameters']:,} (trained with every adapter size)")
print(f"{'m':>4} {'adapters':>10} {'trained':>10} {'% of base':>9}")
for m, s in zip(sizes, rows):
    print(f"{m:>4} {s['adapter_parameters']:>10,} {s['trainable_parameters']:>10,} {s['percent_of_base']:>9.2f}")

fig, ax = plt.subplots(figsize=(6, 3.4))
ax.loglog(sizes, [100 * s["adapter_parameters"] / base for s in rows], "o-", label="adapters only")
ax.loglog(sizes, [s["percent_of_base"] for s in rows], "s-", label="adapters + LayerNorms + head (trained)")
ax.axhline(100 * (rows[0]["layer_norm_parameters"] + rows[0]["head_parameters"]) / base, color="C2", ls=":",
           label="LayerNorms + head alone")
ax.set_xscale("log", base=2)
ax.set_xlabel("bottleneck size m")
ax.set_ylabel("parameters per task, % of base model")
ax.set_title("MiniLM (d = 384, 12 adapter modules)")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## 3.4 Identity at init, and the init scale
#
# > "A near-identity initialization is required for stable training of the adapted model" (§2)
#
# Exactly zero is possible: the `houlsby-zero-init` preset sets W_up = 0, so A(h) = h and the adapted
# model *is* the base model, bit for bit. (W_down stays random so that W_up still gets a gradient.)

# %%
sentences = ["The film is a delight from start to finish.", "A dull, plodding mess.",
             "It rains in the valley every spring.", "The committee approved the budget on Tuesday."]
enc = tok(sentences)
real = enc["attention_mask"].astype(bool)


def last_hidden(m):
    with no_grad():
        return m(enc["input_ids"], enc["attention_mask"]).last_hidden_state.data[real]   # (real tokens, D)


h_base = last_hidden(model)
add_adapter(model, "zero", "houlsby-zero-init")
print("W_up = 0: adapted model == base model, bit for bit:", np.array_equal(last_hidden(model), h_base))
remove_adapter(model, "zero")

# %% [markdown]
# The paper's main runs drew both weight matrices from a normal with std 10⁻², truncated at two standard
# deviations; the original code uses 10⁻³. §3.6 tests the std over [10⁻⁷, 1]:
#
# > "We observe that on both datasets, the performance of adapters is robust for standard deviations
# > below 10⁻². However, when the initialization is too large, performance degrades" (§3.6)
#
# The argument behind it is visible before any training: how far does the freshly initialised model move
# from the base model? Below, the relative change of the final hidden states, ‖h_A − h‖ / ‖h‖ over every
# real token of four sentences, for 15 stds (seed 0 each time). Left, the truncated draw itself.

# %%
stds = np.logspace(-7, 0, 15)
change = []
for s in stds:
    add_adapter(model, "probe", AdapterConfig.from_preset("houlsby", init_std=float(s)), seed=0)
    change.append(np.linalg.norm(last_hidden(model) - h_base) / np.linalg.norm(h_base))
    remove_adapter(model, "probe")
change = np.array(change)
small = stds <= 1e-3
slope = np.polyfit(np.log10(stds[small]), np.log10(change[small]), 1)[0]
for s, c in zip(stds, change):
    print(f"std {s:8.1e}: relative change {c:.2e}")
print(f"slope of log(change) against log(std) for std <= 1e-3: {slope:.2f}")
print(f"original code's std 1e-3: {change[np.isclose(stds, 1e-3)][0]:.1e};  "
      f"paper's std 1e-2: {change[np.isclose(stds, 1e-2)][0]:.1e}")

probe = BottleneckAdapter(384, 64, init_std=1e-3, rng=np.random.default_rng(0))
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 1.4]})
ax0.hist(probe.down.weight.data.ravel() * 1e3, bins=60, color="C2")
ax0.axvline(-2, color="k", ls=":")
ax0.axvline(2, color="k", ls=":", label="±2 std (cut)")
ax0.set_xlabel("W_down value (× 10⁻³; std 10⁻³)")
ax0.set_ylabel("count (of 64 × 384)")
ax0.set_title("truncated normal init, as the original code")
ax0.legend(fontsize=8)
ax1.loglog(stds, change, "o-")
ax1.axvspan(stds[0], 1e-2, color="C2", alpha=0.12, label="§3.6: robust below 1e-2")
ax1.axvline(1e-3, color="C1", ls="--", label="original code, 1e-3")
ax1.axvline(1e-2, color="C3", ls="--", label="paper's main runs, 1e-2")
ax1.set_xlabel("init std of W_down and W_up")
ax1.set_ylabel("‖h_A − h‖ / ‖h‖, final layer")
ax1.set_title("distance from the base model at init (MiniLM)")
ax1.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# The slope is about 2: both weight matrices scale with the std, and near 0 the GELU is z/2 (its slope
# at 0 is 1/2), so A(h) − h = W_up f(W_down h) grows as std². Each factor of 10 in the std is a factor of
# 100 in the distance, until the std nears 10⁻¹: there the start is no longer close to the pre-trained
# function, the regime where §3.6 saw training degrade.
#
# ## 3.5 Where the gradients go
#
# > "During adapter tuning, the green layers are trained on the downstream data, this includes the
# > adapter, the layer normalization parameters, and the final classification layer" (Figure 2 caption)
#
# `train_adapter` freezes everything its policy does not train. One backward pass on four real SST-2
# training sentences (from the slice in `tests/fixtures/glue`), in float64 and eval mode (no dropout):
# `.grad` must be set on exactly the trainable parameters.

# %%
clf = BertForSequenceClassification.from_pretrained(dtype=np.float64, num_labels=2)
add_adapter(clf, "sst2", "houlsby")
trainable = set(train_adapter(clf, "sst2"))
clf.eval()
examples = read_task("sst2", "train", data_dir=ROOT / "tests" / "fixtures" / "glue")[:4]
batch = tok([e.text_a for e in examples])
labels = [e.label for e in examples]
loss = clf(batch["input_ids"], batch["attention_mask"], labels=labels).loss
loss.backward()
with_grad = {name for name, p in clf.named_parameters() if p.grad is not None}
print(f"loss {loss.item():.4f}; {len(with_grad)} parameter tensors got a gradient; "
      f"equal to the trainable set: {with_grad == trainable}")
assert with_grad == trainable

roles = parameter_roles(clf)
print(f"\n{'role':<11} {'tensors':>7} {'parameters':>11} {'with .grad':>10} {'grad L2 norm':>12}")
for kind in ("adapter", "layer_norm", "head", "pooler", "base"):
    entries = [(n, p) for n, (role, _, p) in roles.items() if role.kind == kind]
    graded = [p.grad for _, p in entries if p.grad is not None]
    norm = np.sqrt(sum(float((g * g).sum()) for g in graded)) if graded else 0.0
    print(f"{kind:<11} {len(entries):>7} {sum(p.size for _, p in entries):>11,} {len(graded):>10} {norm:>12.3e}")

# %% [markdown]
# Per layer and parameter group. The two weight matrices start with small gradients: W_up's gradient is
# the upstream gradient times f(W_down h), and W_down's passes back through W_up, so each carries the
# other's 10⁻³ init scale. b_up's gradient is the upstream gradient itself (summed over tokens), so b_up
# and the LayerNorms have the large gradients at the first step; b_down's, like W_down's, passes through
# W_up. With W_up = 0 (the zero-init preset), W_down's gradient would be exactly zero until W_up has moved.

# %%
def group_of(name):
    """'adapter W_down', 'adapter b_down', 'adapter W_up', 'adapter b_up' or 'LayerNorms'."""
    if ".adapters." not in name:
        return "LayerNorms"
    part = "down" if ".down." in name else "up"
    return f"adapter {'W' if name.endswith('weight') else 'b'}_{part}"


groups = ["adapter W_down", "adapter b_down", "adapter W_up", "adapter b_up", "LayerNorms"]
L = clf.config.num_hidden_layers
norms = np.zeros((len(groups), L))
for name, (role, _, p) in roles.items():
    if p.grad is not None and role.layer is not None:
        norms[groups.index(group_of(name)), role.layer] += float((p.grad ** 2).sum())
norms = np.sqrt(norms)
head_norm = np.sqrt(sum(float((p.grad ** 2).sum()) for n, (r, _, p) in roles.items() if r.kind == "head"))
fig, ax = plt.subplots(figsize=(7.5, 3.4))
width = 0.16
for g, name in enumerate(groups):
    ax.bar(np.arange(L) + (g - 2) * width, norms[g], width, label=name)
ax.set_yscale("log")
ax.set_xticks(range(L))
ax.set_xlabel("encoder layer")
ax.set_ylabel("gradient L2 norm (both sub-layers)")
ax.set_title(f"gradients at init, 4 SST-2 sentences (head: {head_norm:.2e}; frozen weights: none)")
ax.legend(fontsize=8, ncol=2)
fig.tight_layout()

# %% [markdown]
# The adapter gradients are also right, not only in the right place: `gradcheck` compares them with
# float64 central differences through the whole MiniLM (a random projection vᵀJu on two short sentences),
# for the adapters of the first and the last layer (16 tensors; all 48 take a few minutes on 2 cores).

# %%
short = tok(["A gripping film.", "A dull film."])
adapter_params = [p for name, p in clf.named_parameters()
                  if ".adapters.sst2." in name and roles[name][0].layer in (0, L - 1)]
print(f"gradcheck of {len(adapter_params)} adapter tensors (layers 0 and {L - 1}):",
      gradcheck(lambda *ps: clf(short["input_ids"], short["attention_mask"], labels=[1, 0]).loss,
                adapter_params, fast=True, n_projections=1))

# %% [markdown]
# ## Exercises
#
# The committed answers are correct; replace a body with your own and run the judge below it.
#
# 1. **The count.** Write `adapter_parameters(d, m)`; the judge builds modules for a grid of (d, m).
# 2. **The equation in NumPy.** Write `numpy_adapter(h, W_down, b_down, W_up, b_up)` with the tanh-form GELU,
#    f(z) = 0.5 z (1 + tanh(√(2/π)(z + 0.044715 z³))); the judge compares with `BottleneckAdapter`.
# 3. **Another policy.** AdapterHub's `"houlsby"` config (the `adapterhub-houlsby` preset) freezes the
#    LayerNorms. Which roles train? Set `my_roles` to a set of role kinds; the judge asks `train_adapter`.

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
def adapter_parameters(d, m):
    return 2 * m * d + d + m


# %%
def judge_count():
    for d in (12, 384, 768, 1024):
        for m in (1, 5, 64, 256):
            counted = BottleneckAdapter(d, m, rng=rng).num_parameters()
            assert adapter_parameters(d, m) == counted, f"d={d}, m={m}: {adapter_parameters(d, m)} vs {counted}"


check("Exercise 1", judge_count)


# %%
def numpy_adapter(h, W_down, b_down, W_up, b_up):
    z = h @ W_down.T + b_down                                                  # (B, T, D) -> (B, T, M)
    f = 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))  # tanh-form GELU
    return h + f @ W_up.T + b_up                                               # (B, T, M) -> (B, T, D)


# %%
def judge_equation():
    a = BottleneckAdapter(24, 5, init_std=0.3, dtype=np.float64, rng=np.random.default_rng(1))
    a.down.bias.data = rng.standard_normal(5)
    a.up.bias.data = rng.standard_normal(24)
    x = rng.standard_normal((2, 7, 24))
    with no_grad():
        expected = (Tensor(x) + a.adapt(Tensor(x))).data  # A(h) = h + up(f(down(h))), the adapter with its skip
    got = numpy_adapter(x, a.down.weight.data, a.down.bias.data, a.up.weight.data, a.up.bias.data)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


check("Exercise 2", judge_equation)

# %%
my_roles = {"adapter", "head"}


# %%
def judge_roles():
    add_adapter(clf, "hub", "adapterhub-houlsby")
    names = set(train_adapter(clf, "hub"))
    actual = {role.kind for n, (role, _, _) in parameter_roles(clf).items() if n in names}
    set_active_adapter(clf, "sst2")
    remove_adapter(clf, "hub")
    assert my_roles == actual, f"you said {sorted(my_roles)}; the policy trains {sorted(actual)}"


check("Exercise 3", judge_roles)
