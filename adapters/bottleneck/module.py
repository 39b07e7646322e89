"""The bottleneck adapter module: its equation and its init.

Placement (Houlsby2019 §2.1, Fig. 2; adapter-bert's `adapter_fn`): in every encoder layer, one adapter
after the attention output projection and one after the feed-forward output projection, each after
dense + dropout and before the residual add and LayerNorm:

    a = Dropout(Dense(sublayer(x)));   y = LayerNorm(x + A(a))

which is minibert's `SublayerOutput.hook`. Parameters are named
`encoder.layer.{i}.attention.output.adapters.{name}.down.weight` (and `.output.` for the FFN side).
"""

from __future__ import annotations

import math

import numpy as np

import autograd.functional as F
from adapters.kinds import AdapterModule
from autograd import nn


def truncated_normal(rng, std, shape, dtype, bound=2.0):
    """N(0, std^2) redrawn wherever |x| > bound * std (TensorFlow's truncated_normal, used by adapter-bert)."""
    x = rng.standard_normal(shape)
    outside = np.abs(x) > bound
    while outside.any():
        x[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(x) > bound
    return (x * std).astype(dtype)


def bottleneck_parameters(d: int, m: int, layer_norm: bool = False) -> int:
    """2MD + D + M (Houlsby2019 §2.1), plus 2D for the LayerNorm of the `layer_norm` ablation."""
    return 2 * m * d + d + m + (2 * d if layer_norm else 0)


class BottleneckAdapter(AdapterModule):
    """Houlsby adapter, and AdapterHub's bottleneck family around it.

    Ref: Houlsby2019 §2.1, Fig. 2; He2022 §3 (parallel); Pfeiffer2021 (AdapterFusion, SeqBn).
    Math:  A(h) = s up(f(down(h))),  down(h) = h @ W_down^T + b_down (D -> M),  up(z) = z @ W_up^T + b_up (M -> D).
    Parameters: W_down (M, D), b_down (M,), W_up (D, M), b_up (D,): 2MD + D + M.
    Called as its slot's hook, adapter(a, x, norm) -> y, with a the sub-layer output (after dense + dropout),
    x the sub-layer input and norm the sub-layer's own LayerNorm (AdapterHub's pre_forward / post_forward):

        sequential (Houlsby, default):  y = norm(x + a + A(a))
        original_ln_before (SeqBn):     y = norm(x + r + A(norm(x + a))), r = a, norm(x + a) or x + a
                                        by residual_before_ln (True, False, "post_add")
        parallel (ParBn, He2022):       y = norm(x + a + A(x))
        original_ln_after=False:        the sum inside norm(x + ...) is returned as it is, without x: r + A(h)

    Convention: init as the original code: weights truncated normal (std `init_std`, cut at 2 std), biases
    zero; init="normal" draws untruncated N(0, init_std^2) (AdapterHub's "bert" init); init="zeros" also
    zeroes W_up, so the adapter is exactly the identity; init="mam_adapter" draws W_down Kaiming-uniform
    U(-1/sqrt(D), 1/sqrt(D)) (torch's kaiming_uniform_ with a = sqrt(5)) with W_up zero (AdapterHub's name).
    """

    def __init__(self, hidden_size, bottleneck_size, non_linearity="gelu_new", init="truncated_normal",
                 init_std=1e-3, parallel=False, layer_norm=False, layer_norm_eps=1e-12, dtype=np.float32, rng=None,
                 name=None, scaling=1.0, original_ln_before=False, original_ln_after=True, residual_before_ln=True):
        super().__init__(name)
        rng = rng if rng is not None else np.random.default_rng()
        d, m = hidden_size, bottleneck_size
        self.hidden_size, self.bottleneck_size = d, m
        self.non_linearity, self.parallel = F.canonical_activation(non_linearity), parallel
        self.scaling = float(scaling)
        self.original_ln_before, self.original_ln_after = original_ln_before, original_ln_after
        self.residual_before_ln = residual_before_ln
        self.f = F.activation(non_linearity)
        if layer_norm:
            self.layer_norm = nn.LayerNorm(d, eps=layer_norm_eps, dtype=dtype)
        else:
            self.layer_norm = None
        self.down = nn.Linear(d, m, dtype=dtype, rng=rng)  # W_down (M, D)
        self.up = nn.Linear(m, d, dtype=dtype, rng=rng)  # W_up (D, M)
        if init == "mam_adapter":
            bound = 1.0 / math.sqrt(d)
            self.down.weight.data = rng.uniform(-bound, bound, (m, d)).astype(dtype)
            self.up.weight.data = np.zeros((d, m), dtype=dtype)
        else:
            draw = (lambda shape: truncated_normal(rng, init_std, shape, dtype)) if init != "normal" else \
                (lambda shape: rng.normal(0.0, init_std, shape).astype(dtype))
            self.down.weight.data = draw((m, d))
            self.up.weight.data = np.zeros((d, m), dtype=dtype) if init == "zeros" else draw((d, m))
        # biases stay zero (nn.Linear's init)

    def adapt(self, h, f=None):
        """A(h) = s up(f(down(h))), the adapter's own path (with its inner LayerNorm in that ablation); `f`
        replaces the non-linearity (the cross-check's variants)."""
        if self.layer_norm is not None:
            h = self.layer_norm(h)
        z = (f or self.f)(self.down(h))  # (B, T, D) -> (B, T, M)
        out = self.up(z)  # (B, T, M) -> (B, T, D)
        return out if self.scaling == 1.0 else out * self.scaling

    def forward(self, a, x, norm):
        if self.parallel:
            return norm(x + (a + self.adapt(x)))
        residual = a
        h = a
        if self.original_ln_before:
            h = x + a
            if self.residual_before_ln == "post_add":
                residual = h
            h = norm(h)
        if self.residual_before_ln is False:
            residual = h
        out = residual + self.adapt(h)
        return norm(x + out) if self.original_ln_after else out

    def num_formula_parameters(self) -> int:
        return bottleneck_parameters(self.hidden_size, self.bottleneck_size, self.layer_norm is not None)

    def shape_info(self) -> dict:
        return {"D": self.hidden_size, "M": self.bottleneck_size}

    def extra_repr(self):
        kind = "parallel" if self.parallel else "sequential"
        return f"{self.name}: D={self.hidden_size}, M={self.bottleneck_size}, f={self.non_linearity}, {kind}"
