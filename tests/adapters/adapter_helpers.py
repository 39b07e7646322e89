"""Shared pieces for the adapter tests: float64 tiny models, snapshots, Hypothesis shapes and NumPy oracles.

The NumPy functions here are written from the formulas (Houlsby2019 §2.1, Fig. 2; Vaswani2017 Eq. 1),
not from the autograd code, so a test comparing the two compares independent computations.
"""

from __future__ import annotations

import numpy as np
from helpers import TINY, tiny_config, tiny_inputs
from hypothesis import strategies as st
from scipy.special import erf

from adapters import AdapterSet
from adapters.bottleneck.config import PLACEMENTS
from adapters.bottleneck.kind import NON_LINEARITIES
from autograd import Tensor, no_grad
from minibert import BertForSequenceClassification, BertModel
from minibert_adapters import testing


def configs(model) -> dict:
    """The model's adapter configs by name (empty when it has none)."""
    return AdapterSet.of(model).configs


def slot_adapters(slot) -> dict:
    """{adapter name: module} attached to a sub-layer output (empty when none is)."""
    return dict(slot.adapters.items()) if "adapters" in dict(slot.named_children()) else {}


def sublayer_slots(model):
    """(path, "attention" or "ffn", module) of every place a bottleneck adapter can go."""
    bert = getattr(model, "bert", model)
    prefix = "bert." if bert is not model else ""
    for i, layer in enumerate(bert.encoder.layer):
        yield f"{prefix}encoder.layer.{i}.attention.output", "attention", layer.attention.output
        yield f"{prefix}encoder.layer.{i}.output", "ffn", layer.output

F64 = np.float64


def build(cls=BertModel, seed=0, **config):
    """A float64 tiny model (eval mode) of class `cls` with tiny_config(**config)."""
    return cls(tiny_config(**config), dtype=F64, seed=seed).eval()


def tiny_preset(name: str, **overrides):
    """Bottleneck preset `name` with the tiny models' M (TINY["M"]): its own size (64, or D / 16) is no bottleneck
    of D = 12, which add_adapter refuses."""
    from adapters import AdapterConfig

    return AdapterConfig.from_preset(name, **{"bottleneck_size": TINY["M"], **overrides})


def run(model, inputs=None):
    """(last_hidden_state, pooler_output) arrays of a forward pass (of `model.bert` for a head model)."""
    ids, mask, types = inputs if inputs is not None else tiny_inputs()
    bert = getattr(model, "bert", model)
    with no_grad():
        out = bert(ids, mask, types)
    return out.last_hidden_state.data.copy(), out.pooler_output.data.copy()


def logits(model, inputs=None):
    ids, mask, types = inputs if inputs is not None else tiny_inputs()
    with no_grad():
        return model(ids, mask, types).logits.data.copy()


def snapshot(model) -> dict:
    """{parameter name: copy of its array}."""
    return {k: p.data.copy() for k, p in model.named_parameters()}


def assert_same_arrays(a: dict, b: dict, keys=None):
    keys = sorted(a) if keys is None else sorted(keys)
    for k in keys:
        assert a[k].dtype == b[k].dtype, k
        assert np.array_equal(a[k], b[k]), f"{k} differs"


def randomise_biases(model, name, scale, seed=7):
    """Give adapter `name`'s zero-initialised biases random values, so a test also checks where they enter."""
    rng = np.random.default_rng(seed)
    for k, p in model.named_parameters():
        if f".adapters.{name}." in k and k.endswith(".bias") and ".layer_norm." not in k:
            p.data = rng.normal(0.0, scale, p.shape).astype(p.dtype)


def loss_backward(model, labels=(0, 2), inputs=None):
    """Cross-entropy of a BertForSequenceClassification, one backward pass; returns the loss value."""
    ids, mask, types = inputs if inputs is not None else tiny_inputs()
    out = model(ids, mask, types, labels=np.asarray(labels))
    out.loss.backward()
    return float(out.loss.data)


# ---- Hypothesis: random widths, bottlenecks, depths, heads, placements ----------------------------------------
# One source: the public strategies of minibert_adapters.testing, which users draw from for their own tests.
def model_shapes():
    """A BertConfig override dict with D = H * Dh (H heads, Dh head dim) and L layers, plus M. Sizes down to 1 and
    repeats allowed (testing.bert_configs(distinct_sizes=False)): the edge cases of one head, one unit, one layer."""
    def overrides(config):
        return dict(hidden_size=config.hidden_size, num_attention_heads=config.num_attention_heads,
                    num_hidden_layers=config.num_hidden_layers, intermediate_size=config.intermediate_size)
    # M <= D: a wider "bottleneck" is refused (BottleneckKind.fit_problems)
    return testing.bert_configs(distinct_sizes=False).flatmap(
        lambda config: st.tuples(st.just(overrides(config)), st.integers(1, min(9, config.hidden_size))))


placements = st.sampled_from(PLACEMENTS)
non_linearities = st.sampled_from(NON_LINEARITIES)
model_classes = st.sampled_from((BertModel, BertForSequenceClassification))


# ---- NumPy oracles --------------------------------------------------------------------------------------------
NP_ACT = {
    "gelu_new": lambda x: 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3))),
    "gelu": lambda x: 0.5 * x * (1.0 + erf(x / np.sqrt(2.0))),
    "relu": lambda x: np.maximum(x, 0.0),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
}


def np_linear(x, lin):
    """x @ W^T + b with W (out, in), from a minibert / autograd Linear's arrays."""
    return x @ lin.weight.data.T + lin.bias.data


def np_layer_norm(x, ln, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * ln.weight.data + ln.bias.data


def inside_norm(adapter, a, x):
    """What a residual adapter hook puts inside its sub-layer's norm(x + .): called with an identity norm, minus x."""
    with no_grad():
        return adapter(Tensor(a), Tensor(x), lambda t: t).data - x


def np_adapter(adapter, a, x, eps=1e-12):
    """Houlsby: a + W_up f(W_down h + b_down) + b_up with h = a (sequential) or x (parallel), optional inner LN."""
    h = x if adapter.parallel else a
    if adapter.layer_norm is not None:
        h = np_layer_norm(h, adapter.layer_norm, eps)
    return a + np_linear(NP_ACT[adapter.non_linearity](np_linear(h, adapter.down)), adapter.up)


def np_attention(x, attn, additive_mask):
    """softmax(Q K^T / sqrt(Dh) + mask) V per head, heads concatenated: (B, T, D) -> (B, T, D)."""
    B, T, D = x.shape
    H = attn.num_heads
    Dh = D // H

    def heads(y):
        return y.reshape(B, T, H, Dh).transpose(0, 2, 1, 3)  # (B, T, D) -> (B, H, T, Dh)

    q, k, v = heads(np_linear(x, attn.query)), heads(np_linear(x, attn.key)), heads(np_linear(x, attn.value))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(Dh) + additive_mask  # (B, H, T, T)
    scores = scores - scores.max(-1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(-1, keepdims=True)
    return (p @ v).transpose(0, 2, 1, 3).reshape(B, T, D)


def np_encoder_layer(layer, x, additive_mask, eps, adapter_name=None, placement="houlsby"):
    """One post-LN encoder layer in eval mode, with adapter `adapter_name` in its slots.

    placement "houlsby": LN(x + A(Dense(sublayer(x)))), A carrying its own skip (the design).
    Wrong variants, to show the comparison can tell placements apart:
    "after_ln": A(LN(x + a));  "on_sum": LN(A(x + a)).
    """
    def sub(slot, a, x):
        adapter = slot_adapters(slot).get(adapter_name)
        if adapter is None:
            return np_layer_norm(x + a, slot.LayerNorm, eps)
        if placement == "houlsby":
            return np_layer_norm(x + np_adapter(adapter, a, x, eps), slot.LayerNorm, eps)
        if placement == "after_ln":
            y = np_layer_norm(x + a, slot.LayerNorm, eps)
            return np_adapter(adapter, y, y, eps)
        if placement == "on_sum":
            s = x + a
            return np_layer_norm(np_adapter(adapter, s, s, eps), slot.LayerNorm, eps)
        raise ValueError(placement)

    a = np_linear(np_attention(x, layer.attention.self, additive_mask), layer.attention.output.dense)
    x1 = sub(layer.attention.output, a, x)
    h = NP_ACT["gelu"](np_linear(x1, layer.intermediate.dense))  # tiny_config's hidden_act is exact GELU
    f = np_linear(h, layer.output.dense)
    return sub(layer.output, f, x1)


def additive_mask(mask, dtype=F64):
    return (1.0 - np.asarray(mask)[:, None, None, :].astype(dtype)) * np.finfo(dtype).min  # (B, 1, 1, T)


def model_layer(layer, x, mask):
    with no_grad():
        return layer(Tensor(x), Tensor(additive_mask(mask))).data



def expected_trainable(model, name, config):
    """What adapter `name`'s policy trains, restated here from the presets' table (docs/conventions.md), not
    asked of adapters.policy: its own adapter; the base model's LayerNorms, the classification head and the
    pooler when the config says so; nothing else."""
    out = set()
    for k, _ in model.named_parameters():
        own = f".adapters.{name}." in k
        base_layer_norm = ".adapters." not in k and ".LayerNorm." in k
        head = k in ("classifier.weight", "classifier.bias")
        pooler = k.startswith(("pooler.", "bert.pooler."))
        if own or (base_layer_norm and config.train_layer_norms) or (head and config.train_head) \
                or (pooler and config.train_pooler):
            out.add(k)
    return out


def scalar_loss(model, inputs=None, seed=3):
    """A scalar that depends on every parameter: cross-entropy for a head model, a random projection of the
    last hidden state and the pooler output for a bare BertModel."""
    ids, mask, types = inputs if inputs is not None else tiny_inputs()
    if isinstance(model, BertForSequenceClassification):
        labels = np.arange(ids.shape[0]) % model.config.num_labels
        return model(ids, mask, types, labels=labels).loss
    out = model(ids, mask, types)
    rng = np.random.default_rng(seed)
    w_last = Tensor(rng.standard_normal(out.last_hidden_state.shape))
    w_pool = Tensor(rng.standard_normal(out.pooler_output.shape))
    return (out.last_hidden_state * w_last).sum() + (out.pooler_output * w_pool).sum()


config_strategy = testing.adapter_configs(sizes=(1, 6))
