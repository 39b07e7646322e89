"""Hypothesis strategies, a reference-case builder and references below the model: property-test your own adapter
code against this project.

    pip install "minibert-adapters[testing]"          # hypothesis
    from minibert_adapters.testing import (bert_configs, adapter_configs, token_batches, random_weights,
                                           reference_case)
    from minibert_adapters.testing import (adapter_reference, sublayer_reference, expected_trainable,
                                           assert_matches_reference)   # one module; one sub-layer; what trains

A property test in a few lines (docs/crosscheck.md has it in full):

    @given(st.data())
    def test_my_adapter_bert_matches_the_reference(data):
        config = data.draw(bert_configs())                       # tiny, every axis size distinct
        adapter = data.draw(adapter_configs(config, plain=True)) # plain Houlsby, M distinct from the rest
        batch = data.draw(token_batches(config))                 # with padding
        weights = random_weights(config, adapter, seed=data.draw(st.integers(0, 2**16)))
        ref = reference_case(config, adapter, weights, batch)    # this project's hidden states and gradients
        mine = my_forward(config, adapter, weights, batch)       # yours: the last hidden state (B, T, D)
        real = batch.attention_mask.astype(bool)
        assert np.abs(mine[real] - ref.hidden_states[-1][real]).max() < 1e-10

`reference_case` returns a `minibert_adapters.crosscheck.case.Case`; `crosscheck(case)` judges a case your code wrote.
The project's own tests draw from these same strategies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adapters import KindConfig, add_adapter, train_adapter
from adapters.compat import DEFAULT_KIND
from adapters.kinds import kind_named
from adapters.names import adapter_key, adapter_parameter_name
from minibert import BertConfig, BertModel
from minibert_adapters.crosscheck.case import Case, case_from_model, padding_zeroed_cotangent


def _strategies():
    try:
        from hypothesis import strategies as st
    except ImportError:
        raise ImportError("minibert_adapters.testing needs hypothesis: pip install 'minibert-adapters[testing]' "
                          "(or pip install hypothesis)") from None
    return st


def axis_sizes(config: BertConfig) -> set:
    """The sizes of the tensor axes a BERT of this config has: H, Dh, D, F, V, P and the token types."""
    return {config.num_attention_heads, config.head_dim, config.hidden_size, config.intermediate_size,
            config.vocab_size, config.max_position_embeddings, config.type_vocab_size}


def bert_configs(distinct_sizes: bool = True, max_layers: int = 3, hidden_act=("gelu", "gelu_new")):
    """Tiny BertConfigs (D <= 28). distinct_sizes: every axis size different and at least 2 (H, Dh, D, F, V, P
    and the 2 token types), so an axis swapped or broadcast by mistake cannot give the right numbers; each size
    is drawn from the values the others leave free (no draw is thrown away, so shrinking stays fast). False also
    draws sizes of 1 and repeats (edge cases). Dropout 0.1 as BERT; the reference runs in eval mode.
    """
    st = _strategies()

    def free(low, high, taken):
        return st.sampled_from([v for v in range(low, high + 1) if v not in taken])

    @st.composite
    def draw(draw):
        if distinct_sizes:
            taken = {2}  # the token types
            heads = draw(free(3, 4, taken))
            head_dim = draw(free(3, 7, taken | {heads}))
            taken |= {heads, head_dim, heads * head_dim}
            intermediate = draw(free(3, 41, taken))
            vocab = draw(free(30, 97, taken | {intermediate}))
            positions = draw(free(12, 24, taken | {intermediate, vocab}))
        else:
            heads, head_dim = draw(st.integers(1, 4)), draw(st.integers(1, 5))
            intermediate, vocab, positions = (draw(st.integers(3, 41)), draw(st.integers(30, 97)),
                                              draw(st.integers(12, 24)))
        return BertConfig(vocab_size=vocab, hidden_size=heads * head_dim, num_attention_heads=heads,
                          num_hidden_layers=draw(st.integers(1, max_layers)), intermediate_size=intermediate,
                          max_position_embeddings=positions, hidden_act=draw(st.sampled_from(hidden_act)))

    return draw()


def adapter_configs(bert_config: BertConfig | None = None, kind: str = DEFAULT_KIND, plain: bool = False,
                    **options):
    """Configs of adapter kind `kind` (its `config_strategy`, whose options `options` are). Given a `bert_config`,
    the kind's sizes are drawn different from every axis size of it (and at least 2). The default kind's options
    are sizes=(1, 6), ablations=True (the parallel and inner-LayerNorm variants), policies=True (every
    combination of what trains) and plain=True: plain Houlsby adapters only, what an implementation of the
    paper's adapter should be tested on."""
    st = _strategies()
    if plain:
        options["plain"] = True
    avoid = frozenset(axis_sizes(bert_config)) if bert_config is not None else frozenset()
    try:
        return kind_named(kind).config_strategy(st, bert_config, avoid=avoid, **options)
    except TypeError as e:
        raise ValueError(f"adapter_configs(kind={kind!r}): {e}") from None


def register_slow_profile() -> str:
    """Register (and return the name of) a Hypothesis settings profile for slow machines: 10 examples, no
    deadline. Use it with `settings.load_profile(register_slow_profile())` or `pytest --hypothesis-profile
    minibert-slow` after calling this in your conftest.py."""
    from hypothesis import settings

    settings.register_profile("minibert-slow", max_examples=10, deadline=None)
    return "minibert-slow"


@dataclass
class Batch:
    """One batch of token ids (B, T) with its attention mask (1 real, 0 padding) and token types."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray


def token_batches(config: BertConfig, distinct_sizes: bool = True, max_batch: int = 4):
    """Batches for `config`: B and T different from the config's axis sizes (with distinct_sizes), T at most P,
    ids from 1 (0 is [PAD]), a second segment in some rows, and padding at the end of at least one row (every
    row keeps at least one real token)."""
    st = _strategies()
    taken = axis_sizes(config) if distinct_sizes else set()

    @st.composite
    def draw(draw):
        B = draw(st.integers(2, max_batch + len(taken)).filter(lambda b: b not in taken))
        T = draw(st.integers(3, config.max_position_embeddings).filter(lambda t: t not in taken and t != B))
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        lengths = rng.integers(1, T + 1, size=B)
        lengths[rng.integers(B)] = draw(st.integers(1, T - 1))  # at least one padded row
        mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)
        ids = rng.integers(1, config.vocab_size, size=(B, T)) * mask
        types = ((np.arange(T)[None, :] >= rng.integers(1, T + 1, size=(B, 1))) * mask).astype(np.int64)
        return Batch(ids.astype(np.int64), mask, types)

    return draw()


def random_weights(config: BertConfig, adapter_config: KindConfig | None, seed: int = 0, name: str = "adapter",
                   adapter_std: float = 0.3) -> dict:
    """{parameter name: float64 array} of a BERT with adapter `name`, as after training: base weights as a fresh
    BERT but with peaked attention (query and key std 0.3), LayerNorms away from (1, 0), and adapter weights and
    biases of std `adapter_std`, so that a misplaced or missing piece changes the numbers clearly."""
    model = BertModel(config, dtype=np.float64, seed=seed)
    if adapter_config is not None:
        add_adapter(model, name, adapter_config, seed=seed + 1)
    rng = np.random.default_rng(seed + 2)
    for key, p in model.named_parameters():
        if key not in model.checkpoint_names:
            p.data = rng.normal(0.0, adapter_std, p.shape)
        elif ".query." in key or ".key." in key:
            p.data = rng.normal(0.0, 0.3, p.shape)
        elif "LayerNorm" in key:
            p.data = p.data + rng.normal(0.0, 0.1, p.shape)
    return {k: p.data.copy() for k, p in model.named_parameters()}


def reference_case(config: BertConfig, adapter_config: KindConfig | None, weights: dict, batch: Batch,
                   dtype=np.float64, cotangent=None, seed: int = 0) -> Case:
    """This project's case for `weights` (names as `random_weights` gives them, or AdapterHub's adapter names):
    hidden states 0..L in eval mode, and gradients of sum(last_hidden_state * cotangent) for what the adapter's
    policy trains (everything, for a plain BERT). The default cotangent is random, zero at padding."""
    model = BertModel(config, dtype=dtype, seed=0, add_pooling_layer="pooler.dense.weight" in weights)
    names = {adapter_key(k)[1] for k in weights if adapter_key(k) is not None}
    if len(names) > 1:
        raise ValueError(f"weights of more than one adapter: {sorted(names)}")
    base = {k.removeprefix("bert."): v for k, v in weights.items() if adapter_key(k) is None}
    model.load_state_dict(base, strict=True)
    if adapter_config is not None:
        name = names.pop() if names else "adapter"
        add_adapter(model, name, adapter_config, seed=0)
        own = dict(model.named_parameters())
        for key, value in weights.items():
            parsed = adapter_key(key)
            if parsed is not None:
                own[adapter_parameter_name(parsed[0], name, parsed[2])].data = np.asarray(value, dtype=dtype)
        train_adapter(model, name)
    model.eval()
    if cotangent is None:
        cotangent = padding_zeroed_cotangent(batch.attention_mask, config.hidden_size, dtype, seed)
    return case_from_model(model, batch.input_ids, batch.attention_mask, batch.token_type_ids, cotangent,
                           producer="minibert_adapters.testing.reference_case")


# ---- references below the whole model ---------------------------------------------------------------------------
@dataclass
class Reference:
    """A reference output and the gradients of sum(output * cotangent): {name: array} for every weight given and
    for the inputs ("h", and "x" for a sub-layer)."""

    output: np.ndarray
    grads: dict


def _weights_into(module, weights: dict, what: str) -> None:
    """Copy {leaf: array} into `module`'s parameters (float64), every leaf required, no other name accepted."""
    own = dict(module.named_parameters())
    unknown, missing = sorted(set(weights) - set(own)), sorted(set(own) - set(weights))
    if unknown or missing:
        raise ValueError(f"{what}: weights {'unknown: ' + ', '.join(unknown) if unknown else ''}"
                         f"{'; ' if unknown and missing else ''}{'missing: ' + ', '.join(missing) if missing else ''}"
                         f" (expected {', '.join(sorted(own))})")
    for leaf, p in own.items():
        value = np.asarray(weights[leaf], dtype=np.float64)
        if value.shape != p.shape:
            raise ValueError(f"{what}: {leaf} has shape {value.shape}, expected {p.shape}")
        p.data = value.copy()
        p.requires_grad = True
        p.grad = None


def _backward(output, cotangent, inputs: dict, module) -> Reference:
    from autograd import Tensor

    cot = np.ones_like(output.data) if cotangent is None else np.asarray(cotangent, dtype=np.float64)
    (output * Tensor(cot)).sum().backward()
    grads = {k: p.grad.copy() for k, p in module.named_parameters()}
    grads.update({k: t.grad.copy() for k, t in inputs.items()})
    return Reference(output.data.copy(), grads)


def _bert_for(hidden_size: int, bert_config) -> BertConfig:
    """The BERT config a module alone is built for: the one given, else a one-layer one of width D."""
    if bert_config is not None:
        return bert_config
    return BertConfig(vocab_size=8, hidden_size=hidden_size, num_hidden_layers=1, num_attention_heads=1,
                      intermediate_size=4 * hidden_size, max_position_embeddings=8)


def adapter_reference(adapter_config, weights: dict, h, cotangent=None, bert_config=None) -> Reference:
    """One adapter module alone, in float64, as its kind defines it (`AdapterKind.module_alone`): for Houlsby
    adapters y = h + s W_up f(W_down h + b_down) + b_up (Houlsby2019 §2.1, Fig. 2 right), the branch only for a
    parallel one; and the gradients of sum(y * cotangent) (cotangent default: ones) for every weight and for h.

    weights: {leaf: array} under the module's own names (for Houlsby "down.weight" (M, D), "down.bias" (M,),
    "up.weight" (D, M), "up.bias" (D,), plus "layer_norm.*" for the inner-LayerNorm ablation); h (..., D).
    bert_config gives the LayerNorm eps (default BERT's 1e-12)."""
    from adapters.kinds import kind_of
    from autograd import Tensor

    h = np.asarray(h, dtype=np.float64)
    kind = kind_of(adapter_config)
    bert = _bert_for(h.shape[-1], bert_config)
    module = kind.build("reference", adapter_config, bert, np.float64, np.random.default_rng(0))
    _weights_into(module, weights, "adapter_reference")
    x = Tensor(h, requires_grad=True)
    return _backward(kind.module_alone(module, x), cotangent, {"h": x}, module)


def sublayer_reference(bert_config: BertConfig, adapter_config, weights: dict, h, x, cotangent=None) -> Reference:
    """The output half of one sub-layer with its adapter, in eval mode (dropout off): a = Dense(h), then the
    adapter's hook (Houlsby: y = LayerNorm(x + a + A(a))); without an adapter (adapter_config None) y =
    LayerNorm(x + a). Gradients of sum(y * cotangent) (default: ones) for every weight and for h and x.

    weights: {"dense.weight" (D, n_in), "dense.bias", "LayerNorm.weight", "LayerNorm.bias"} and the adapter's
    leaves under "adapter." ("adapter.down.weight", ...); n_in = D is the attention sub-layer, n_in =
    intermediate_size the FFN. h (B, T, n_in), x (B, T, D)."""
    from autograd import Tensor
    from autograd.nn import Module
    from minibert.modeling import SublayerOutput

    weights = dict(weights)
    if "dense.weight" not in weights:
        raise ValueError("sublayer_reference: weights need 'dense.weight' (D, n_in)")
    n_in = np.shape(weights["dense.weight"])[1]
    sublayer = SublayerOutput(bert_config, n_in, dtype=np.float64).eval()
    holder = Module()  # one module owning both, so every gradient is collected under its name
    holder.sublayer = sublayer
    if adapter_config is not None:
        from adapters.kinds import kind_of

        kind = kind_of(adapter_config)
        places = {label: place for place in kind.all_slots(BertModel(bert_config, dtype=np.float64, seed=0))
                  for _, label, slot in [place] if isinstance(slot, SublayerOutput)}
        label = "attention" if n_in == bert_config.hidden_size else "ffn"
        if label not in places:
            raise TypeError(f"sublayer_reference: a {kind.name} adapter has no module in a sub-layer's hook")
        holder.adapter = kind.build("reference", adapter_config, bert_config, np.float64, np.random.default_rng(0),
                                    ("", label, sublayer)).eval()
        sublayer.hook = holder.adapter.forward
    named = {f"sublayer.{k}": v for k, v in weights.items() if not k.startswith("adapter.")}
    named.update({k: v for k, v in weights.items() if k.startswith("adapter.")})
    _weights_into(holder, named, "sublayer_reference")
    th, tx = Tensor(np.asarray(h, dtype=np.float64), requires_grad=True), \
        Tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    ref = _backward(sublayer(th, tx), cotangent, {"h": th, "x": tx}, holder)
    ref.grads = {k.removeprefix("sublayer."): v for k, v in ref.grads.items()}
    return ref


def expected_trainable(bert_config: BertConfig, adapter_config, name: str = "adapter") -> list:
    """The parameter names (this project's, Hugging Face BertModel names for the base) that the adapter's policy
    trains on a BertModel of `bert_config`: what your implementation's requires_grad set should be."""
    from adapters.policy import Policy, trainable_names

    model = BertModel(bert_config, dtype=np.float64, seed=0)
    add_adapter(model, name, adapter_config, seed=0)
    return sorted(trainable_names(model, Policy.for_adapter(name, adapter_config)))


def assert_matches_reference(case, rtol: float | None = None) -> dict:
    """Judge a case (a Case or a case file) as `minibert crosscheck` does; AssertionError when it disagrees, whose
    message names the worst hidden state and the worst gradient and gives the diagnosis, one sentence per code.
    Returns the report when it agrees."""
    from minibert_adapters.crosscheck import crosscheck

    report = crosscheck(case, rtol=rtol)
    if report["ok"]:
        return report
    layers = report["forward"]["layers"]
    worst = max(layers, key=lambda r: r["local_error"])
    where = "the embeddings" if worst["index"] == 0 else f"layer {worst['index'] - 1}"
    lines = [f"the case disagrees with the reference ({report['dtype']}, hidden tolerance "
             f"{report['tolerance']['hidden']:g}): worst hidden state {where}, error {worst['local_error']:.2e} fed "
             "its own input"]
    grads = [g for g in report["gradients"]["parameters"] if not g["ok"]]
    if grads:
        g = max(grads, key=lambda g: g["relative"])
        lines.append(f"worst gradient {g['name']}: error {g['max_abs_error']:.2e} (relative {g['relative']:.2e})")
    lines += [f"{e['code'] or 'other'}: {e['sentence']}" for e in report["explanations"]]
    raise AssertionError("\n".join(lines))
