"""Check analytic gradients against central finite differences, in float64.

Two modes:
- full (small inputs): the whole Jacobian J of every input. Analytic rows come from one backward pass per
  output element (upstream gradient e_k); numeric columns from (f(x + eps e_j) - f(x - eps e_j)) / 2 eps.
  A failure names the input, the input element, the output element, analytic and numeric values.
- fast (large inputs, HIPS autograd's idea): random projections v^T J u for random u (input-shaped)
  and v (output-shaped): analytic = sum(u * grad) with grad from one backward pass of v;
  numeric = (v . f(x + eps u) - v . f(x - eps u)) / 2 eps. A failure names the input and the projection.

Both compare with |analytic - numeric| <= atol + rtol * |numeric| (torch.autograd.gradcheck's defaults).
"""

from __future__ import annotations

import numpy as np

from autograd.tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """An analytic gradient disagreed with finite differences."""


def _output(fn, inputs) -> Tensor:
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    return out


def _analytic_vjp(fn, inputs, checked, v):
    """grad of sum(v * fn(inputs)) w.r.t. each checked input (zeros where the graph does not reach)."""
    for x in checked:
        x.grad = None
    out = _output(fn, inputs)
    if out.requires_grad:
        out.backward(v.reshape(out.shape))
    grads = [x.grad.copy() if x.grad is not None else np.zeros_like(x.data) for x in checked]
    for x in checked:
        x.grad = None
    return grads


def _one_hot(n, k):
    e = np.zeros(n)
    e[k] = 1.0
    return e


def _numeric_directional(fn, inputs, x, direction, eps):
    """(f(x + eps d) - f(x - eps d)) / (2 eps), the whole output, with x.data restored afterwards."""
    original = x.data  # the caller's array object itself comes back (never modified: x.data is reassigned)
    try:
        with no_grad():
            x.data = original + eps * direction
            plus = _output(fn, inputs).data.astype(np.float64)
            x.data = original - eps * direction
            minus = _output(fn, inputs).data.astype(np.float64)
    finally:
        x.data = original
    return (plus - minus) / (2 * eps)


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, fast=None, n_projections=3, seed=0) -> bool:
    """Return True if fn's gradients w.r.t. every input with requires_grad match finite differences.

    fn: callable taking the tensors in `inputs` and returning one Tensor (any shape).
    fast: None chooses full mode when (output size) x (total checked input size) <= 20,000.
    Raises GradcheckError on a mismatch and TypeError if a checked input is not float64. Every input keeps its
    own array object and its `.grad` as they were before the call.
    """
    inputs = list(inputs)
    checked = [x for x in inputs if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True")
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.requires_grad and x.dtype != np.float64:
            raise TypeError(f"gradcheck needs float64 inputs (finite differences in float32 are too coarse); "
                            f"input {i} is {x.dtype}")
    saved_grads = [x.grad for x in checked]
    try:
        return _check(fn, inputs, checked, eps, atol, rtol, fast, n_projections, seed)
    finally:
        for x, grad in zip(checked, saved_grads):
            x.grad = grad


def _check(fn, inputs, checked, eps, atol, rtol, fast, n_projections, seed) -> bool:
    names = {id(x): i for i, x in enumerate(inputs)}
    with no_grad():
        out_size = _output(fn, inputs).size
    if fast is None:
        fast = out_size * sum(x.size for x in checked) > 20_000
    rng = np.random.default_rng(seed)

    def close(a, n):
        return abs(a - n) <= atol + rtol * abs(n)

    if fast:
        for _ in range(n_projections):
            v = rng.standard_normal(out_size)
            grads = _analytic_vjp(fn, inputs, checked, v)
            for x, grad in zip(checked, grads):
                u = rng.standard_normal(x.shape)
                analytic = float(np.sum(u * grad))
                numeric = float(np.sum(v * _numeric_directional(fn, inputs, x, u, eps).reshape(-1)))
                if not close(analytic, numeric):
                    raise GradcheckError(f"input {names[id(x)]} (shape {x.shape}): random projection v^T J u "
                                         f"analytic {analytic:.10g} vs numeric {numeric:.10g}")
        return True

    # Full Jacobians: analytic rows (one backward per output element), numeric columns.
    # One-hot upstream gradients built one at a time (np.eye(out_size) would hold out_size^2 floats per row).
    rows = [_analytic_vjp(fn, inputs, checked, _one_hot(out_size, k)) for k in range(out_size)]
    for c, x in enumerate(checked):
        analytic = np.stack([row[c].reshape(-1) for row in rows])  # (n_out, n_in)
        for j in range(x.size):
            e_j = _one_hot(x.size, j).reshape(x.shape)
            numeric = _numeric_directional(fn, inputs, x, e_j, eps).reshape(-1)  # (n_out,)
            for k in range(out_size):
                if not close(analytic[k, j], numeric[k]):
                    where = np.unravel_index(j, x.shape) if x.shape else ()
                    raise GradcheckError(f"input {names[id(x)]} (shape {x.shape}), element {tuple(map(int, where))}, "
                                         f"output element {k}: analytic {analytic[k, j]:.10g} vs numeric "
                                         f"{numeric[k]:.10g}")
    return True
