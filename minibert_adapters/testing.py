"""Hypothesis strategies and a reference-case builder: property-test your own adapter code against this project.

    pip install "minibert-adapters[testing]"          # hypothesis
    from minibert_adapters.testing import (bert_configs, adapter_configs, token_batches, random_weights,
                                           reference_case)

A property test in a few lines (docs/crosscheck.md has it in full):

    @given(st.data())
    def test_my_adapter_bert_matches_the_reference(data):
        config = data.draw(bert_configs())                       # tiny, every axis size distinct
        adapter = data.draw(adapter_configs(config))             # bottleneck variants, M distinct from the rest
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
    """Tiny BertConfigs (D <= 30). distinct_sizes: every axis size different and at least 2 (H, Dh, D, F, V, P
    and the 2 token types), so an axis swapped or broadcast by mistake cannot give the right numbers;
    False also draws sizes of 1 and repeats (edge cases). Dropout 0.1 as BERT; the reference runs in eval mode.
    """
    st = _strategies()
    low = 2 if distinct_sizes else 1

    @st.composite
    def draw(draw):
        heads = draw(st.integers(low, 4))
        head_dim = draw(st.integers(low, 5 if not distinct_sizes else 7))
        config = BertConfig(
            vocab_size=draw(st.integers(30, 97)), hidden_size=heads * head_dim, num_attention_heads=heads,
            num_hidden_layers=draw(st.integers(1, max_layers)), intermediate_size=draw(st.integers(3, 41)),
            max_position_embeddings=draw(st.integers(12, 24)), hidden_act=draw(st.sampled_from(hidden_act)))
        if distinct_sizes:
            sizes = [heads, head_dim, config.hidden_size, config.intermediate_size, config.vocab_size,
                     config.max_position_embeddings, config.type_vocab_size]
            draw(st.just(None).filter(lambda _: len(set(sizes)) == len(sizes)))  # reject repeats
        return config

    return draw()


def adapter_configs(bert_config: BertConfig | None = None, kind: str = DEFAULT_KIND, **options):
    """Configs of adapter kind `kind` (its `config_strategy`). Given a `bert_config`, the kind's sizes are drawn
    different from every axis size of it (and at least 2). For bottleneck adapters, options are sizes=(1, 6),
    ablations=True (the parallel and inner-LayerNorm variants), policies=True (every combination of what
    trains)."""
    st = _strategies()
    avoid = frozenset(axis_sizes(bert_config)) if bert_config is not None else frozenset()
    return kind_named(kind).config_strategy(st, bert_config, avoid=avoid, **options)


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
