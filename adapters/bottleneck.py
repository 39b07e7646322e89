"""The Houlsby bottleneck adapter: its equation, its init, and its placement in the model.

Placement (Houlsby2019 §2.1, Fig. 2; adapter-bert's `adapter_fn`): in every encoder layer, one adapter
after the attention output projection and one after the feed-forward output projection, each after
dense + dropout and before the residual add and LayerNorm:

    a = Dropout(Dense(sublayer(x)));   y = LayerNorm(x + A(a))

which is minibert's `SublayerOutput.hook`. Parameters are named
`encoder.layer.{i}.attention.output.adapters.{name}.down.weight` (and `.output.` for the FFN side).
"""

from __future__ import annotations

import numpy as np

import autograd.functional as F
from adapters.config import AdapterConfig
from adapters.kinds import AdapterKind, AdapterModule, register_kind
from autograd import nn


def truncated_normal(rng, std, shape, dtype, bound=2.0):
    """N(0, std^2) redrawn wherever |x| > bound * std (TensorFlow's truncated_normal, used by adapter-bert)."""
    x = rng.standard_normal(shape)
    outside = np.abs(x) > bound
    while outside.any():
        x[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(x) > bound
    return (x * std).astype(dtype)


class BottleneckAdapter(AdapterModule):
    """Houlsby adapter.

    Ref: Houlsby2019 §2.1, Fig. 2.
    Math:  A(h) = h + up(f(down(h))),  down(h) = h @ W_down^T + b_down (D -> M),  up(z) = z @ W_up^T + b_up (M -> D).
    Parameters: W_down (M, D), b_down (M,), W_up (D, M), b_up (D,): 2MD + D + M.
    Called as the slot's hook, adapter(a, x), with a the sub-layer output (after dense + dropout) and x the
    sub-layer input; returns a + up(f(down(h))) with h = a (sequential, Houlsby) or h = x (parallel ablation).
    Convention: init as the original code: weights truncated normal (std `init_std`, cut at 2 std), biases
    zero; init="normal" draws untruncated N(0, init_std^2) (AdapterHub's "bert" init); init="zeros" also
    zeroes W_up, so the adapter is exactly the identity.
    """

    def __init__(self, hidden_size, bottleneck_size, non_linearity="gelu_new", init="truncated_normal",
                 init_std=1e-3, parallel=False, layer_norm=False, layer_norm_eps=1e-12, dtype=np.float32, rng=None,
                 name=None):
        super().__init__(name)
        rng = rng if rng is not None else np.random.default_rng()
        d, m = hidden_size, bottleneck_size
        self.hidden_size, self.bottleneck_size = d, m
        self.non_linearity, self.parallel = F.canonical_activation(non_linearity), parallel
        self.f = F.activation(non_linearity)
        if layer_norm:
            self.layer_norm = nn.LayerNorm(d, eps=layer_norm_eps, dtype=dtype)
        else:
            self.layer_norm = None
        self.down = nn.Linear(d, m, dtype=dtype, rng=rng)  # W_down (M, D)
        self.up = nn.Linear(m, d, dtype=dtype, rng=rng)  # W_up (D, M)
        draw = (lambda shape: truncated_normal(rng, init_std, shape, dtype)) if init != "normal" else \
            (lambda shape: rng.normal(0.0, init_std, shape).astype(dtype))
        self.down.weight.data = draw((m, d))
        self.up.weight.data = np.zeros((d, m), dtype=dtype) if init == "zeros" else draw((d, m))
        # biases stay zero (nn.Linear's init)

    def forward(self, a, x):
        h = x if self.parallel else a  # (B, T, D)
        if self.layer_norm is not None:
            h = self.layer_norm(h)
        z = self.f(self.down(h))  # (B, T, D) -> (B, T, M)
        return a + self.up(z)  # (B, T, M) -> (B, T, D)

    def num_formula_parameters(self) -> int:
        """2MD + D + M (Houlsby2019 §2.1), plus 2D for the LayerNorm of the `layer_norm` ablation."""
        d, m = self.hidden_size, self.bottleneck_size
        return 2 * m * d + d + m + (2 * d if self.layer_norm is not None else 0)

    def shape_info(self) -> dict:
        return {"D": self.hidden_size, "M": self.bottleneck_size}

    def extra_repr(self):
        kind = "parallel" if self.parallel else "sequential"
        return f"{self.name}: D={self.hidden_size}, M={self.bottleneck_size}, f={self.non_linearity}, {kind}"


def bottleneck_slots(bert, config: AdapterConfig):
    """(path, sublayer, slot) for every sub-layer output the placement names: "attention" and/or "ffn"."""
    for i, layer in enumerate(bert.encoder.layer):
        if "attention" in config.sublayers:
            yield f"encoder.layer.{i}.attention.output", "attention", layer.attention.output
        if "ffn" in config.sublayers:
            yield f"encoder.layer.{i}.output", "ffn", layer.output


def build_bottleneck(name, config: AdapterConfig, bert_config, dtype, rng) -> BottleneckAdapter:
    d = bert_config.hidden_size
    return BottleneckAdapter(d, config.size_for(d), config.non_linearity, config.init, config.init_std,
                             config.parallel, config.layer_norm, bert_config.layer_norm_eps, dtype=dtype, rng=rng,
                             name=name)


BOTTLENECK = register_kind(AdapterKind("bottleneck", AdapterConfig, bottleneck_slots, build_bottleneck))
