"""A zoo of deliberately wrong Houlsby-adapter implementations, built on this project's own engine.

Each member takes the correct model and changes one thing, the way a bug in another implementation would: a
hook swapped, a module's forward replaced, a small subclass. Every member then trains its adapter for a few
steps *through its own (wrong) forward*, so cases are judged with trained weights, as the issue demands, and
writes a case exactly as any writer would (`case_from_model`). `build(None, ...)` is the correct implementation
through the same steps: every test that expects a member to fail also expects it to pass.
"""

from __future__ import annotations

import math

import numpy as np

import autograd.functional as F
from adapters import AdapterConfig, AdapterSet, add_adapter, train_adapter
from autograd import Tensor, optim
from autograd.tensor import Function
from minibert import BertConfig, BertModel
from minibert_adapters.crosscheck.case import Case, adapter_config_dict, case_from_model

NAME = "task"
# All sizes distinct (B=3, T=8, D=12, H=3, Dh=4, F=37, V=99, P=16, M=5), two layers.
BERT = dict(vocab_size=99, hidden_size=12, num_hidden_layers=2, num_attention_heads=3, intermediate_size=37,
            max_position_embeddings=16, hidden_act="gelu")


def inputs(seed=0, B=3, T=8):
    """Token ids with padding at the end of two rows (a wrong mask must have something to get wrong)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, BERT["vocab_size"], size=(B, T))
    mask = np.ones((B, T), dtype=np.int64)
    mask[1, T - 3:] = 0
    mask[2, T - 1:] = 0
    ids[mask == 0] = 0
    types = np.zeros((B, T), dtype=np.int64)
    types[:, T // 2:] = 1
    return ids, mask, types


class WrongSignMaskBert(BertModel):
    """Adds +max instead of -max at padded keys: attention goes to the padding instead of away from it."""

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                output_hidden_states=False):
        from minibert.modeling import BertModelOutput, check_inputs

        input_ids, attention_mask, token_type_ids, position_ids = check_inputs(
            self.config, input_ids, attention_mask, token_type_ids, position_ids)
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        padding = 1.0 - attention_mask[:, None, None, :].astype(self.dtype)
        additive_mask = Tensor(padding * -np.finfo(self.dtype).min)  # the bug: the sign
        hidden_states = self.encoder(x, additive_mask)
        return BertModelOutput(hidden_states[-1], None, tuple(hidden_states) if output_hidden_states else None)


def pretrained_like(model, seed):
    """Peaked attention, as in a pretrained BERT: query and key weights 15x a fresh model's 0.02.

    A freshly initialised BERT attends almost uniformly, so masking the wrong keys would change little; the
    embeddings keep their small scale (their LayerNorm sees a small variance, where its eps shows).
    """
    rng = np.random.default_rng(seed + 10)
    for layer in model.encoder.layer:
        for lin in (layer.attention.self.query, layer.attention.self.key):
            lin.weight.data = rng.normal(0.0, 0.3, lin.weight.shape).astype(lin.weight.dtype)


def slots(model):
    """(sublayer, slot module, adapter module) of every slot with the adapter."""
    for layer in model.encoder.layer:
        for sublayer, slot in (("attention", layer.attention.output), ("ffn", layer.output)):
            if NAME in getattr(slot, "adapters", {}):
                yield sublayer, slot, slot.adapters[NAME]


# ---- the bugs: each changes the correct model in one place -----------------------------------------------------
def adapter_after_layernorm(model):
    """placement: y = LN(x + a); then A(y): the adapter on the wrong side of the LayerNorm."""
    for _, slot, adapter in slots(model):
        def forward(h, x, slot=slot, adapter=adapter):
            y = slot.LayerNorm(x + slot.dropout(slot.dense(h)))
            return y + adapter.up(adapter.f(adapter.down(y)))
        slot.forward = forward


def adapter_without_skip(model):
    """skip-connection: the hook returns W_up f(W_down a) + b_up, forgetting `a +`."""
    for _, slot, adapter in slots(model):
        slot.hook = lambda a, x, norm, adapter=adapter: norm(x + adapter.up(adapter.f(adapter.down(a))))


def relu_instead_of_gelu(model):
    """non-linearity: the config claims tanh-GELU, the module applies ReLU."""
    for _, _, adapter in slots(model):
        adapter.f = F.relu


def init_ten_times_the_std(model):
    """init-scale: W_down and W_up drawn with 10x the claimed std (1e-2 where the config says 1e-3)."""
    for _, _, adapter in slots(model):
        adapter.down.weight.data = adapter.down.weight.data * 10
        adapter.up.weight.data = adapter.up.weight.data * 10


def layer_norms_trainable(model):
    """trainable-set: the LayerNorms train although the claimed policy (train_layer_norms=False) freezes them."""
    for name, p in model.named_parameters():
        if "LayerNorm" in name:
            p.requires_grad = True


def no_adapter_in_last_layer(model):
    """missing-modules: the last layer's adapters are created but never called (hooks left empty)."""
    last = model.encoder.layer[-1]
    last.attention.output.hook = None
    last.output.hook = None


def layer_norm_eps_1e5(model):
    """base-mismatch: every LayerNorm with eps 1e-5 (PyTorch's default) instead of BERT's 1e-12."""
    for _, module in model.named_modules():
        if hasattr(module, "eps"):
            module.eps = 1e-5


def output_scaled(factor):
    def bug(model):
        """scale: the adapter's branch multiplied by a factor the claim does not have (scaling 1)."""
        for _, slot, adapter in slots(model):
            slot.hook = lambda a, x, norm, adapter=adapter: norm(x + (a + factor * adapter.adapt(a)))
    return bug


def relu_and_no_skip(model):
    """skip-connection and non-linearity in one module: ReLU, and the branch returned without `a +`."""
    for _, slot, adapter in slots(model):
        adapter.f = F.relu
        slot.hook = lambda a, x, norm, adapter=adapter: norm(x + adapter.adapt(a))


def one_module_shared_by_every_layer(model):
    """tied-weights: layer 0's adapters serve every layer, and are written out under each layer's slots."""
    first = model.encoder.layer[0]
    for layer in model.encoder.layer[1:]:
        for own, shared in ((layer.attention.output, first.attention.output), (layer.output, first.output)):
            own.adapters[NAME] = shared.adapters[NAME]
            own.hook = shared.adapters[NAME].forward


def token_types_ignored(model):
    """base-mismatch: the embeddings look up token type 0 for every token."""
    model.embeddings.hook = lambda ids, types, positions: (np.zeros_like(types), positions, None)


def positions_from_one(model):
    """base-mismatch: positions counted 1 .. T instead of 0 .. T - 1."""
    model.embeddings.hook = lambda ids, types, positions: (types, positions + 1, None)


def adapter_before_the_output_dense(model):
    """placement: the attention adapter applied to the context, before attention.output.dense."""
    for sublayer, slot, adapter in slots(model):
        if sublayer == "attention":
            slot.forward = lambda h, x, slot=slot, adapter=adapter: slot.LayerNorm(
                x + slot.dropout(slot.dense(h + adapter.adapt(h))))


class GeluWithADroppedTerm(Function):
    """The tanh GELU forward, right; its backward without the second term of the product rule (the classic slip in
    a hand-written derivative): f'(z) = 0.5 (1 + tanh(u)) instead of that + 0.5 z (1 - tanh(u)^2) u'."""

    @staticmethod
    def forward(ctx, z):
        t = np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3))  # Python floats keep z's dtype
        ctx.save_for_backward(t)
        return 0.5 * z * (1 + t)

    @staticmethod
    def backward(ctx, g):
        (t,) = ctx.saved
        return (g * 0.5 * (1 + t),)


def gelu_backward_wrong(model):
    """backward: the adapters' non-linearity computes the right forward and a wrong derivative."""
    for _, _, adapter in slots(model):
        adapter.f = GeluWithADroppedTerm.apply


# when the bug is applied: before training starts ("init"), or after train_adapter set hooks and flags ("train")
BUGS = {
    "placement": (adapter_after_layernorm, "train"),
    "skip-connection": (adapter_without_skip, "train"),
    "non-linearity": (relu_instead_of_gelu, "train"),
    "init-scale": (init_ten_times_the_std, "init"),
    "trainable-set": (layer_norms_trainable, "train"),
    "missing-modules": (no_adapter_in_last_layer, "train"),
    "base-mismatch:eps": (layer_norm_eps_1e5, "train"),
    "base-mismatch:mask": (None, "class"),
    "precision": (None, "float32-inside"),
    "scale:2": (output_scaled(2.0), "train"),
    "scale:0.5": (output_scaled(0.5), "train"),
    "skip-connection+non-linearity": (relu_and_no_skip, "train"),
    "tied-weights": (one_module_shared_by_every_layer, "init"),
    "bottleneck-size": (None, "built-with-M-3"),
    "base-mismatch:token-types": (token_types_ignored, "train"),
    "base-mismatch:positions": (positions_from_one, "train"),
    "backward": (gelu_backward_wrong, "train"),
    "placement:before-dense": (adapter_before_the_output_dense, "train"),
}


def claimed_config(bug):
    overrides = dict(bottleneck_size=5)
    if bug == "trainable-set":
        overrides["train_layer_norms"] = False  # AdapterHub's policy: only the adapter trains
    return AdapterConfig.from_preset("houlsby", **overrides)


def build(bug: str | None, dtype=np.float64, seed: int = 0, steps: int = 6, lr: float = 0.05) -> Case:
    """The case of the zoo member `bug` (None: the correct implementation), trained for `steps` AdamW steps."""
    fn, when = BUGS.get(bug, (None, None))
    compute_dtype = np.float32 if when == "float32-inside" else dtype
    cls = WrongSignMaskBert if when == "class" else BertModel
    model = cls(BertConfig(**BERT), dtype=compute_dtype, seed=seed).eval()
    pretrained_like(model, seed)
    built = claimed_config(bug) if when != "built-with-M-3" else AdapterConfig.from_preset("houlsby", bottleneck_size=3)
    add_adapter(model, NAME, built, seed=seed + 1)
    if when == "init":
        fn(model)
    init = {k: p.data.copy() for k, p in AdapterSet.of(model).task_parameters(NAME).items() if k not in
            model.checkpoint_names}
    train_adapter(model, NAME)
    model.eval()  # no dropout: the weights move, the function stays deterministic
    if when == "train":
        fn(model)
    ids, mask, types = inputs(seed)
    target = np.random.default_rng(seed + 2).standard_normal(ids.shape + (BERT["hidden_size"],))
    trained = [p for p in model.parameters() if p.requires_grad]
    opt = optim.AdamW(trained, lr=lr, weight_decay=0.0)
    for _ in range(steps):
        opt.zero_grad()
        out = model(ids, mask, types).last_hidden_state
        ((out - Tensor(target.astype(compute_dtype))) ** 2).mean().backward()
        opt.step()
    case = case_from_model(model, ids, mask, types, init=init, producer=f"zoo: {bug or 'correct'}", seed=seed + 3)
    if when == "built-with-M-3":  # the model has M = 3, the case claims the config's M = 5
        case = Case(**{**case.__dict__, "adapter_config": adapter_config_dict(claimed_config(bug))})
    if compute_dtype != dtype:  # precision: a float64 case whose numbers were computed in float32
        case = Case(**{**case.__dict__, "params": as_dtype(case.params, dtype), "grads": as_dtype(case.grads, dtype),
                       "init": as_dtype(case.init, dtype), "cotangent": case.cotangent.astype(dtype),
                       "hidden_states": [h.astype(dtype) for h in case.hidden_states]})
    return case


def as_dtype(arrays: dict, dtype) -> dict:
    return {k: v.astype(dtype) for k, v in arrays.items()}
