"""Helpers shared by the autograd tests: float64 leaves, inputs kept away from kinks, and the gradient check.

Values come from a NumPy generator seeded by a Hypothesis-drawn integer, so Hypothesis chooses (and shrinks)
the shapes and the seed while the values keep the distances from non-differentiable points a test needs.
"""

import numpy as np
from helpers import TOL
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from autograd import Function, Tensor
from autograd.gradcheck import gradcheck

seeds = st.integers(0, 2**32 - 1)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
nonscalar_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def leaf(array) -> Tensor:
    """A float64 leaf that requires a gradient."""
    return Tensor(np.asarray(array, dtype=np.float64), requires_grad=True)


def away_from_zero(rng, shape, low=0.2, high=2.0):
    """Random sign times U(low, high): never within `low` of 0 (relu's kink, division by ~0)."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, high, size=shape)


def distinct(rng, shape, gap=0.1):
    """A random permutation of 0, gap, 2 gap, ... (centred): no two elements tie, so max is differentiable."""
    n = int(np.prod(shape, dtype=int))
    return ((rng.permutation(n) - n / 2) * gap).reshape(shape)


def check_grads(fn, *inputs):
    """gradcheck twice, in float64: the full Jacobian (upstream e_k for every output element k), then random
    projections v^T J u (a random upstream gradient v)."""
    assert gradcheck(fn, inputs, **TOL["gradcheck"])
    assert gradcheck(fn, inputs, fast=True, **TOL["gradcheck"])


class Cube(Function):
    """y = x^3 with dx = 3 x^2 g; `wrong_at` (a flat index, or "all") returns 2 x^2 g there instead:
    a deliberately wrong backward for the gradient checker to catch. Reset wrong_at to None after use."""

    wrong_at = None

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        factor = np.full(x.shape, 3.0)
        if Cube.wrong_at == "all":
            factor[...] = 2.0
        elif Cube.wrong_at is not None:
            factor.flat[Cube.wrong_at] = 2.0
        return factor * x**2 * g
