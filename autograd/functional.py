"""Neural-network functions (import as `F`), with fused closed-form backwards where they pay.

Fused: `linear` (a frozen weight skips its gradient matmul), `softmax`, `log_softmax`, `cross_entropy`
(log-softmax + NLL), `layer_norm`, `gelu`, `silu`. Each is tested against the same formula built from
primitives in `ops.py` and against finite differences. The others are compositions of primitives.

Weights follow the Hugging Face / PyTorch layout: `Linear.weight` is (out, in) and y = x @ W^T + b.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from autograd.ops import GetItem
from autograd.tensor import Function, Tensor, unbroadcast

_SQRT_2 = float(np.sqrt(2.0))  # Python floats: NumPy keeps a float32 array float32
_SQRT_2_OVER_PI = float(np.sqrt(2.0 / np.pi))


class Linear(Function):
    """y = x @ W^T + b with x (..., I), W (O, I), b (O,).

    dx = g @ W,   dW = g^T x summed over all leading axes,   db = g summed over all leading axes.
    Why fused: written as `x @ W.T` the weight gradient would be a batched (B, I, O) product summed
    afterwards; here it is one (O, N) @ (N, I) matmul with N = all leading axes flattened, and it is
    skipped entirely when W is frozen.
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        ctx.save_for_backward(x, weight)
        # Flattening the leading axes makes this one large GEMM instead of one small GEMM per batch row.
        y = x.reshape(-1, x.shape[-1]) @ weight.T  # (N, I) @ (I, O) -> (N, O), N = all leading axes
        if bias is not None:
            y += bias
        return y.reshape(x.shape[:-1] + (weight.shape[0],))  # (N, O) -> (..., O)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved
        needs = ctx.needs_input_grad
        g2 = g.reshape(-1, g.shape[-1])  # (..., O) -> (N, O)
        dx = dw = db = None
        if needs[0]:
            dx = (g2 @ weight).reshape(x.shape)  # (N, O) @ (O, I) -> (N, I) -> (..., I)
        if needs[1]:
            dw = g2.T @ x.reshape(-1, x.shape[-1])  # (O, N) @ (N, I) -> (O, I)
        if len(needs) > 2 and needs[2]:
            db = g2.sum(axis=0)  # (N, O) -> (O,)
        return (dx, dw, db) if len(needs) > 2 else (dx, dw)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Affine map in Hugging Face layout: x (..., I), weight (O, I), bias (O,) -> (..., O)."""
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input has {x.shape[-1]} features, weight expects {weight.shape[1]} "
                         f"(weight shape {weight.shape} is (out, in))")
    return Linear.apply(x, weight) if bias is None else Linear.apply(x, weight, bias)


def embedding(ids, weight: Tensor) -> Tensor:
    """Row lookup: ids (...) of ints, weight (V, D) -> (..., D). Gradient scatter-adds into the rows used."""
    ids = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"embedding ids must be integers, got dtype {ids.dtype}")
    bad = (ids < 0) | (ids >= weight.shape[0])
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise IndexError(f"id {int(ids[where])} at position {where} is out of range for an embedding "
                         f"of {weight.shape[0]} rows")
    return GetItem.apply(weight, index=ids)


class Relu(Function):
    """y = max(x, 0).   dx = g * (x > 0)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x > 0)
        return np.maximum(x, 0)

    @staticmethod
    def backward(ctx, g):
        (positive,) = ctx.saved
        return g * positive


def relu(x: Tensor) -> Tensor:
    return Relu.apply(x)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf(x): exact (scipy) in float64; in float32 the Abramowitz & Stegun 7.1.26 formula.

    Deviation: scipy's erf is a scalar loop (about 15 ns per element, more than all the GEMMs of a
    BERT layer); in float32 we use  erf(|x|) = 1 - (a1 t + a2 t^2 + a3 t^3 + a4 t^4 + a5 t^5) exp(-x^2),
    t = 1 / (1 + p |x|), whose absolute error is below 1.5e-7 (evaluated in float32, below 5e-7: a few
    float32 ulps of values near 1), and which runs on vectorised exp. Float64 stays exact.
    """
    if x.dtype != np.float32:
        return erf(x)
    # In-place steps: three temporaries for the whole computation (these arrays are (B, T, F) big).
    a = np.abs(x)
    t = a * np.float32(0.3275911)
    t += 1.0
    np.reciprocal(t, out=t)
    y = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):  # Horner: a5 t + a4, then * t + a3, ...
        y += np.float32(c)
        y *= t
    np.multiply(a, a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    y *= a  # poly(t) * exp(-x^2)
    np.subtract(1.0, y, out=y)
    return np.copysign(y, x, out=y)


class Gelu(Function):
    """GELU (Hendrycks2016).

    Exact ("none"):  y = x * Phi(x),  Phi(x) = (1 + erf(x / sqrt 2)) / 2;   dx = g * (Phi(x) + x * phi(x)),
                     phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
    Tanh ("tanh"):   y = x/2 * (1 + t),  t = tanh(u),  u = sqrt(2/pi) (x + 0.044715 x^3);
                     dx = g * (1/2 (1 + t) + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)).
    Convention: BERT's "gelu" is the exact form; "gelu_new" / "gelu_pytorch_tanh" (and the original
    adapter-bert code) use the tanh form.
    """

    @staticmethod
    def forward(ctx, x, approximate="none"):
        if approximate == "none":
            y = 0.5 * x * (1.0 + _erf(x / _SQRT_2))
        elif approximate == "tanh":
            y = 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3)))
        else:
            raise ValueError(f"gelu approximate must be 'none' or 'tanh', got {approximate!r}")
        ctx.save_for_backward(x)
        return y.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        if ctx.options.get("approximate", "none") == "none":
            cdf = 0.5 * (1.0 + _erf(x / _SQRT_2))
            pdf = np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
            return (g * (cdf + x * pdf)).astype(x.dtype, copy=False)
        t = np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3))
        du = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x * x)
        return (g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)).astype(x.dtype, copy=False)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    return Gelu.apply(x, approximate=approximate)


class Silu(Function):
    """SiLU / swish: y = x * s,  s = sigmoid(x).   dx = g * s * (1 + x (1 - s))."""

    @staticmethod
    def forward(ctx, x):
        s = 1.0 / (1.0 + np.exp(-x))
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx, g):
        x, s = ctx.saved
        return g * s * (1.0 + x * (1.0 - s))


def silu(x: Tensor) -> Tensor:
    return Silu.apply(x)


def tanh(x: Tensor) -> Tensor:
    return x.tanh()


class Softmax(Function):
    """y = exp(x - max) / sum(exp(x - max)) along `axis`.   dx = y * (g - sum(g * y, axis)).

    Subtracting the row max changes nothing mathematically and keeps exp() from overflowing; a row
    masked with a large finite negative number (BERT's additive mask) stays finite, never NaN.
    """

    @staticmethod
    def forward(ctx, x, axis=-1):
        y = x - x.max(axis=axis, keepdims=True)
        np.exp(y, out=y)  # in place: attention scores are (B, H, T, T), the largest arrays in BERT
        y /= y.sum(axis=axis, keepdims=True)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return y * (g - (g * y).sum(axis=ctx.options.get("axis", -1), keepdims=True))


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return Softmax.apply(x, axis=axis)


def _log_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


class LogSoftmax(Function):
    """y = x - logsumexp(x) along `axis`.   dx = g - exp(y) * sum(g, axis)."""

    @staticmethod
    def forward(ctx, x, axis=-1):
        y = _log_softmax(x, axis)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return g - np.exp(y) * g.sum(axis=ctx.options.get("axis", -1), keepdims=True)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return LogSoftmax.apply(x, axis=axis)


class CrossEntropy(Function):
    """loss = -(1/n) sum_i log softmax(logits_i)[t_i] over the n rows whose target is not ignore_index.

    logits (..., C), targets (...) ints.   dlogits = g * (softmax(logits) - onehot(t)) / n on kept rows, 0 on
    ignored ones.
    Convention: as torch.nn.functional.cross_entropy with reduction="mean": if every target is ignored
    the loss is NaN (0 / 0).
    """

    @staticmethod
    def forward(ctx, logits, targets, ignore_index=-100):
        logp = _log_softmax(logits, -1).reshape(-1, logits.shape[-1])  # (N, C)
        t = targets.reshape(-1)
        keep = t != ignore_index
        safe_t = np.where(keep, t, 0)
        picked = logp[np.arange(len(t)), safe_t] * keep  # (N,)
        n = keep.sum()
        ctx.save_for_backward(logp, safe_t, keep, n, logits.shape)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(-picked.sum() / n, dtype=logits.dtype)

    @staticmethod
    def backward(ctx, g):
        logp, t, keep, n, shape = ctx.saved
        d = np.exp(logp)
        d[np.arange(len(t)), t] -= 1.0
        d *= (keep / n)[:, None] if n else 0.0
        return (g * d).reshape(shape), None


def cross_entropy(logits: Tensor, targets, ignore_index: int = -100) -> Tensor:
    """Mean cross-entropy of logits (..., C) against integer targets (...), skipping ignore_index."""
    targets = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
    if not np.issubdtype(targets.dtype, np.integer):
        raise TypeError(f"cross_entropy targets must be integers, got dtype {targets.dtype}")
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"targets shape {targets.shape} does not match logits shape {logits.shape} "
                         "without its last (class) axis")
    n_classes = logits.shape[-1]
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= n_classes))
    if bad.any():
        raise IndexError(f"target {int(targets[bad][0])} out of range for {n_classes} classes")
    return CrossEntropy.apply(logits, Tensor(targets), ignore_index=ignore_index)


class LayerNorm(Function):
    """y = (x - mu) / sqrt(var + eps) * w + b over the last axis (Ba2016), var the biased variance.

    With xhat = (x - mu) * rstd, rstd = 1 / sqrt(var + eps), gx = g * w:
    dx = rstd * (gx - mean(gx) - xhat * mean(gx * xhat)),   dw = sum(g * xhat),   db = sum(g)
    (means over the last axis, sums over all leading axes).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-12):
        mu = x.mean(axis=-1, keepdims=True)
        xc = x - mu
        var = (xc * xc).mean(axis=-1, keepdims=True)
        rstd = 1.0 / np.sqrt(var + eps)
        xhat = xc * rstd
        ctx.save_for_backward(xhat, rstd, weight)
        return xhat * weight + bias

    @staticmethod
    def backward(ctx, g):
        xhat, rstd, weight = ctx.saved
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            gx = g * weight
            dx = rstd * (gx - gx.mean(-1, keepdims=True) - xhat * (gx * xhat).mean(-1, keepdims=True))
        if ctx.needs_input_grad[1]:
            dw = unbroadcast(g * xhat, weight.shape)
        if ctx.needs_input_grad[2]:
            db = unbroadcast(g, weight.shape)
        return dx, dw, db


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-12) -> Tensor:
    return LayerNorm.apply(x, weight, bias, eps=eps)


def dropout(x: Tensor, p: float, training: bool, rng: np.random.Generator | None = None) -> Tensor:
    """Inverted dropout: in training, zero each element with probability p and scale the rest by 1/(1-p).

    Identity in eval mode or with p = 0. `rng` makes the mask reproducible; without it a fresh
    generator is used.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    rng = rng if rng is not None else np.random.default_rng()
    keep = rng.random(x.shape) >= p
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    return x * Tensor((keep * scale).astype(x.dtype))


def mse_loss(input: Tensor, target) -> Tensor:
    """mean((input - target)^2)."""
    diff = input - target
    return (diff * diff).mean()
