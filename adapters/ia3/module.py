"""The (IA)^3 module of one Linear: a learned rescaling of its output, or of its input."""

from __future__ import annotations

import numpy as np

from adapters.kinds import AdapterModule
from autograd.nn import Parameter


class IA3Scale(AdapterModule):
    """A learned vector rescaling one Linear.

    Ref: Liu2022 §3.3 (l_k, l_v, l_ff).
    Math:  output-scaled y = l * (W x + b), l (d_out,);  feed-forward (input-scaled) y = W (l * x) + b, l (d_in,).
    Called as the Linear's hook, ia3(x, affine) -> y. Convention: l starts at ones, so the model starts exactly at
    the base model (Liu2022: "initialized with ones").
    """

    def __init__(self, d_in, d_out, feedforward: bool, dtype=np.float32, name=None):
        super().__init__(name)
        self.d_in, self.d_out, self.feedforward = d_in, d_out, bool(feedforward)
        self.ia3_l = Parameter(np.ones(d_in if feedforward else d_out, dtype=dtype))  # PEFT's name

    def forward(self, x, affine):
        if self.feedforward:
            return affine(x * self.ia3_l)  # (..., d_in) scaled, then W . + b
        return affine(x) * self.ia3_l  # (..., d_out) scaled, bias included

    def num_formula_parameters(self) -> int:
        return self.d_in if self.feedforward else self.d_out

    def shape_info(self) -> dict:
        return {"d_in": self.d_in, "d_out": self.d_out, "scales": "input" if self.feedforward else "output"}

    def extra_repr(self):
        return f"{self.name}: scales the {'input' if self.feedforward else 'output'} ({self.num_formula_parameters()})"
