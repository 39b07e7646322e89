"""The prefix-tuning module: the table of virtual keys and values (or the MLP computing it), handed to every layer.

One module per adapter, in the embeddings' hook (minibert's BertEmbeddings: a slot on the ids, which may also supply
past keys and values to every layer's attention). It holds what PEFT's PrefixEncoder holds, under PEFT's names.
"""

from __future__ import annotations

import math

import numpy as np

import autograd.functional as F
from adapters.kinds import AdapterModule
from autograd import nn
from autograd.nn import Parameter


def prefix_parameters(P: int, L: int, D: int, projection: bool = False, E: int | None = None) -> int:
    """2 L D P for the table alone (P keys and P values of width D in each of L layers); with the projection
    P D + (D + 1) E + (E + 1) 2 L D: the embedding e (P, D), W1 (E, D), b1 (E,), W2 (2LD, E), b2 (2LD,). PEFT
    counts every one of them (get_nb_trainable_parameters)."""
    if not projection:
        return 2 * L * D * P
    return P * D + (D + 1) * E + (E + 1) * 2 * L * D


def torch_linear_init(linear: nn.Linear, rng) -> nn.Linear:
    """weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch's nn.Linear default (kaiming_uniform_ with
    a = sqrt(5) for the weight), which PEFT's PrefixEncoder keeps."""
    bound = 1.0 / math.sqrt(linear.in_features)
    dtype = linear.weight.dtype
    linear.weight.data = rng.uniform(-bound, bound, linear.weight.shape).astype(dtype)
    linear.bias.data = rng.uniform(-bound, bound, linear.bias.shape).astype(dtype)
    return linear


class Tanh(nn.Module):
    """y = tanh(x), as a module (so that the MLP's Linears are transform.0 and transform.2, PEFT's names)."""

    def forward(self, x):
        return x.tanh()


class PrefixEncoder(AdapterModule):
    """The virtual keys and values of every layer, and the input hook that puts them in front of the real ones.

    Ref: Li2021 §4.2 (prefix activations P_theta in every layer), §4.3 (P_theta = MLP_theta(P'_theta)); PEFT 0.21
    PrefixEncoder (tools/PEFT_NOTES.md, "Prefix tuning").
    Math:  E = prompt_embeddings (P, 2 L D),  or with projection  E = W2 tanh(W1 e + b1) + b2,  e (P, D);
           row p of E viewed as (2L, H, Dh): block 2i is layer i's key of virtual token p, block 2i + 1 its value;
           layer i:  K = [E_key_i ; x Wk^T + bk],  V = [E_value_i ; x Wv^T + bv]   (P + T keys, prefix first),
                     softmax(Q K^T / sqrt(Dh) + M) V with M 0 at the P virtual keys.
    Called as the embeddings' hook, prefix(input_ids, token_type_ids, position_ids) -> (token_type_ids,
    position_ids, past) (minibert.modeling.BertEmbeddings).
    Convention: PEFT 0.21's behaviour on a BertModel: the real tokens take positions P .. P + T - 1 (transformers
    counts the P cached keys as past tokens; explicit position ids are shifted too), token types become 0 (PEFT
    drops token_type_ids, so sentence pairs lose their segment embeddings), and every example gets its own copy of
    the P rows (PEFT embeds arange(P) for each), so a parameter's gradient is the sum over the batch.
    Convention: PEFT's init: the embedding N(0, 1) (torch's nn.Embedding), the MLP's Linears torch's default
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias. None of it is near zero: prefix tuning starts away from
    the base model (PrefixKind.expected_init_change bounds how far).
    """

    def __init__(self, num_virtual_tokens, num_layers, num_heads, head_dim, max_positions, projection=False,
                 encoder_hidden_size=None, dtype=np.float32, rng=None, name=None):
        super().__init__(name)
        rng = rng if rng is not None else np.random.default_rng()
        self.num_virtual_tokens, self.num_layers = num_virtual_tokens, num_layers
        self.num_heads, self.head_dim, self.max_positions = num_heads, head_dim, max_positions
        self.hidden_size = num_heads * head_dim
        self.projection = bool(projection)
        P, D = num_virtual_tokens, self.hidden_size
        width = 2 * num_layers * D  # one row: every layer's key and value, 2 L D
        if self.projection:
            self.encoder_hidden_size = E = encoder_hidden_size if encoder_hidden_size is not None else D
            self.embedding = nn.Embedding(P, D, dtype=dtype, init_std=1.0, rng=rng)  # e (P, D), N(0, 1)
            self.transform = nn.Sequential(torch_linear_init(nn.Linear(D, E, dtype=dtype, rng=rng), rng), Tanh(),
                                           torch_linear_init(nn.Linear(E, width, dtype=dtype, rng=rng), rng))
        else:
            self.encoder_hidden_size = None
            self.prompt_embeddings = Parameter(rng.standard_normal((P, width)).astype(dtype))  # E (P, 2LD), N(0, 1)

    def rows(self, batch_size: int):
        """E for every example, (B, P, 2 L D): the virtual tokens 0 .. P-1 of each example, embedded (and projected)."""
        tokens = np.broadcast_to(np.arange(self.num_virtual_tokens), (batch_size, self.num_virtual_tokens))  # (B, P)
        if self.projection:
            return self.transform(self.embedding(tokens))  # (B, P, D) -> (B, P, E) -> (B, P, 2LD)
        return F.embedding(tokens, self.prompt_embeddings)  # (B, P, 2LD)

    def table(self):
        """E itself, (P, 2 L D): what PEFT saves as `prompt_embeddings` (for a projection, the MLP's output)."""
        return self.rows(1)[0]

    def past(self, batch_size: int) -> list:
        """[(keys, values)] per layer, each (B, H, P, Dh): row p of E is (2L, H, Dh), layer-major, key before value."""
        B, P, L, H, Dh = batch_size, self.num_virtual_tokens, self.num_layers, self.num_heads, self.head_dim
        kv = self.rows(B).reshape(B, P, 2 * L, H, Dh).transpose(2, 0, 3, 1, 4)  # (2L, B, H, P, Dh)
        return [(kv[2 * i], kv[2 * i + 1]) for i in range(L)]

    def forward(self, input_ids, token_type_ids, position_ids):
        P = self.num_virtual_tokens
        last = int(np.max(position_ids)) + P
        if last >= self.max_positions:
            raise ValueError(f"{P} virtual tokens shift the positions to {last}, beyond max_position_embeddings "
                             f"{self.max_positions}; shorten the input to at most {self.max_positions - P} tokens")
        return np.zeros_like(token_type_ids), position_ids + P, self.past(input_ids.shape[0])

    def num_formula_parameters(self) -> int:
        return prefix_parameters(self.num_virtual_tokens, self.num_layers, self.hidden_size, self.projection,
                                 self.encoder_hidden_size)

    def shape_info(self) -> dict:
        info = {"P": self.num_virtual_tokens, "L": self.num_layers, "D": self.hidden_size}
        return {**info, "E": self.encoder_hidden_size} if self.projection else info

    def extra_repr(self):
        how = f"MLP of width {self.encoder_hidden_size}" if self.projection else "table"
        return f"{self.name}: {self.num_virtual_tokens} virtual tokens, {how}"
