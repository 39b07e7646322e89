"""The Houlsby bottleneck adapter module."""

from __future__ import annotations

import numpy as np

import autograd.functional as F
from autograd import nn

_NON_LINEARITY = {
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": lambda x: F.gelu(x, approximate="none"),
    "relu": F.relu,
    "swish": F.silu,
    "tanh": F.tanh,
}


def truncated_normal(rng, std, shape, dtype, bound=2.0):
    """N(0, std^2) redrawn wherever |x| > bound * std (TensorFlow's truncated_normal, used by adapter-bert)."""
    x = rng.standard_normal(shape)
    outside = np.abs(x) > bound
    while outside.any():
        x[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(x) > bound
    return (x * std).astype(dtype)


class BottleneckAdapter(nn.Module):
    """Houlsby adapter (Houlsby2019 §2.1, Fig. 2).

    Math:  A(h) = h + up(f(down(h))),  down(h) = h @ W_down^T + b_down (D -> M),  up(z) = z @ W_up^T + b_up (M -> D).
    Parameters: W_down (M, D), b_down (M,), W_up (D, M), b_up (D,): 2MD + D + M.
    Called as adapter(a, x) with a the sub-layer output (after dense + dropout) and x the sub-layer input;
    returns a + up(f(down(h))) with h = a (sequential, Houlsby) or h = x (parallel ablation).
    Convention: init follows the original code: weights truncated normal (std `init_std`, cut at 2 std),
    biases zero; init="zeros" also zeroes W_up so the adapter is exactly the identity.
    """

    def __init__(self, hidden_size, bottleneck_size, non_linearity="gelu_tanh", init="truncated_normal",
                 init_std=1e-3, parallel=False, layer_norm=False, layer_norm_eps=1e-12, dtype=np.float32, rng=None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng()
        d, m = hidden_size, bottleneck_size
        self.hidden_size, self.bottleneck_size = d, m
        self.non_linearity, self.parallel = non_linearity, parallel
        self.f = _NON_LINEARITY[non_linearity]
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

    def extra_repr(self):
        kind = "parallel" if self.parallel else "sequential"
        return f"D={self.hidden_size}, M={self.bottleneck_size}, f={self.non_linearity}, {kind}"
