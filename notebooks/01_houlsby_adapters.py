# %% [markdown]
# # Houlsby adapters, equation by equation
#
# A plain-text notebook (the `# %%` cells open in Jupyter with jupytext, in VS Code, or run as a
# script: `python notebooks/01_houlsby_adapters.py`). It uses a tiny random BERT so it runs in seconds;
# `minibert check` does the same on the real all-MiniLM-L6-v2.
#
# Houlsby et al. (2019, §2.1) insert a bottleneck module twice in every transformer layer:
#
#     A(h) = h + W_up f(W_down h + b_down) + b_up,     W_down: d -> m,  W_up: m -> d
#
# after each sub-layer's dense projection and dropout, before the residual add and LayerNorm.

# %%
import numpy as np

from adapters import AdapterConfig, adapter_summary, add_adapter, set_active_adapter, train_adapter
from autograd import Tensor, no_grad
from autograd.gradcheck import gradcheck
from minibert import BertConfig, BertForSequenceClassification

config = BertConfig(vocab_size=99, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                    intermediate_size=37, max_position_embeddings=16)
model = BertForSequenceClassification(config, dtype=np.float64, seed=0).eval()
rng = np.random.default_rng(0)
input_ids = rng.integers(1, 99, size=(2, 7))
attention_mask = np.ones((2, 7), dtype=np.int64)
attention_mask[1, 5:] = 0

# %% [markdown]
# ## Fact 1: 2md + d + m parameters per adapter

# %%
add_adapter(model, "task", AdapterConfig.from_preset("houlsby", bottleneck_size=5))
summary = adapter_summary(model, "task")
d, m = 24, 5
for row in summary["modules"]:
    print(f"{row['module']:<55} 2md+d+m = {2 * m * d + d + m}  counted = {row['counted']}")
    assert row["counted"] == 2 * m * d + d + m
print(f"trainable: {summary['trainable_parameters']} of {summary['base_parameters']} "
      f"({summary['percent_of_base']:.1f}%: adapters + LayerNorms + head, as the original code trains)")

# %% [markdown]
# ## Fact 2: identity at init
#
# With W_up = 0 the adapter adds exactly nothing, so the adapted model *is* the base model.

# %%
with no_grad():
    set_active_adapter(model, None)
    base = model.bert(input_ids, attention_mask).last_hidden_state.data
    add_adapter(model, "zero", AdapterConfig.from_preset("houlsby-zero-init", bottleneck_size=5))
    zero = model.bert(input_ids, attention_mask).last_hidden_state.data
    set_active_adapter(model, "task")
    near = model.bert(input_ids, attention_mask).last_hidden_state.data
print("zero init, bit-identical:", np.array_equal(zero, base))
print("std 1e-3 init, relative change:", np.linalg.norm(near - base) / np.linalg.norm(base))

# %% [markdown]
# ## Fact 3: gradients reach only the trainable parameters

# %%
trainable = set(train_adapter(model, "task"))
model.eval()  # no dropout, so finite differences see the same function
loss = model(input_ids, attention_mask, labels=[1, 0]).loss
loss.backward()
with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
print(f"{len(with_grad)} parameters got a gradient; equal to the trainable set: {with_grad == trainable}")
assert with_grad == trainable

adapter_params = [p for name, p in model.named_parameters() if ".adapters.task." in name]
R = Tensor(rng.standard_normal((2, 7, 24)))
print("gradcheck of every adapter parameter:",
      gradcheck(lambda *ps: (model.bert(input_ids, attention_mask).last_hidden_state * R).sum(),
                adapter_params, fast=True))
