"""The LoRA module of one Linear: the low-rank update, its init, and merging it into the weight."""

from __future__ import annotations

import math

import numpy as np

from adapters.kinds import AdapterModule
from autograd import nn


def lora_parameters(d_in: int, d_out: int, r: int) -> int:
    """r (d_in + d_out): A (r, d_in) and B (d_out, r) (Hu2021 §4.1)."""
    return r * (d_in + d_out)


class LoraLinear(AdapterModule):
    """The update of one adapted Linear.

    Ref: Hu2021 §4.1, Eq. 3.
    Math:  h = W x + b + s B A dropout(x),  A (r, d_in), B (d_out, r),  s = alpha / r (rsLoRA: alpha / sqrt(r)).
    Called as the Linear's hook, lora(x, affine) -> y, with affine(x) = W x + b the Linear's own map.
    Convention: PEFT's init: A Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(d_in), 1/sqrt(d_in)) (or
    N(0, 1/r^2) for init="gaussian"), B = 0, so the model starts exactly at the base model.
    """

    def __init__(self, d_in, d_out, r, scaling, dropout=0.0, init="kaiming_uniform", dtype=np.float32, rng=None,
                 name=None):
        super().__init__(name)
        rng = rng if rng is not None else np.random.default_rng()
        self.d_in, self.d_out, self.r, self.scaling = d_in, d_out, r, float(scaling)
        self.lora_A = nn.Linear(d_in, r, bias=False, dtype=dtype, rng=rng)  # A (r, d_in), PEFT's name
        self.lora_B = nn.Linear(r, d_out, bias=False, dtype=dtype, rng=rng)  # B (d_out, r)
        if init == "gaussian":
            self.lora_A.weight.data = rng.normal(0.0, 1.0 / r, (r, d_in)).astype(dtype)
        else:
            bound = 1.0 / math.sqrt(d_in)
            self.lora_A.weight.data = rng.uniform(-bound, bound, (r, d_in)).astype(dtype)
        self.lora_B.weight.data = np.zeros((d_out, r), dtype=dtype)
        self.dropout = nn.Dropout(dropout, rng=rng)
        self.merged_weight = None  # the Linear's own weight while the update is merged into it

    def forward(self, x, affine):
        y = affine(x)  # (..., d_out)
        if self.merged_weight is not None:  # W already holds W + s B A
            return y
        return y + self.lora_B(self.lora_A(self.dropout(x))) * self.scaling  # (..., d_in) -> r -> d_out

    def delta(self) -> np.ndarray:
        """s B A (d_out, d_in): what merging adds to W."""
        return self.scaling * (self.lora_B.weight.data @ self.lora_A.weight.data)

    def num_formula_parameters(self) -> int:
        return lora_parameters(self.d_in, self.d_out, self.r)

    def shape_info(self) -> dict:
        return {"d_in": self.d_in, "d_out": self.d_out, "r": self.r}

    def extra_repr(self):
        return f"{self.name}: r={self.r}, {self.d_in} -> {self.d_out}, s={self.scaling:g}"


def merge(linear: nn.Linear, module: LoraLinear):
    """W <- W + s B A in `linear`, keeping W to restore it bit for bit (`unmerge`). Convention: a merged update is
    for inference; W is frozen, so training a merged model would not train A and B."""
    if module.merged_weight is not None:
        raise ValueError(f"LoRA adapter {module.name!r} is already merged into this Linear")
    module.merged_weight = linear.weight.data
    linear.weight.data = (linear.weight.data + module.delta()).astype(linear.weight.dtype)


def unmerge(linear: nn.Linear, module: LoraLinear):
    """Put W back exactly as it was before `merge`."""
    if module.merged_weight is None:
        raise ValueError(f"LoRA adapter {module.name!r} is not merged into this Linear")
    linear.weight.data, module.merged_weight = module.merged_weight, None
