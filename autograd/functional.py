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
from autograd.tensor import Function, Tensor, is_grad_enabled, unbroadcast

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


# Float32 elementwise kernels (erf, GELU, softmax, LayerNorm) run block by block: a block and its temporaries
# stay in the CPU caches, instead of every NumPy step streaming a whole (B, T, F) array through memory.
_BLOCK = 1 << 17  # elements per block: 512 KB per float32 temporary (measured: 2^16 to 2^18 are equally good)


def _flat_blocks(*arrays):
    """Matching flat blocks of equally shaped arrays; an output must be C-contiguous (np.empty) to be a view."""
    flat = [a.reshape(-1) for a in arrays]
    for start in range(0, flat[0].size, _BLOCK):
        yield tuple(f[start:start + _BLOCK] for f in flat)


def _leading_blocks(x):
    """Slices of x's first axis holding about _BLOCK elements each (at least one row)."""
    step = max(1, _BLOCK // max(1, x[0].size))
    return [slice(i, i + step) for i in range(0, len(x), step)]


def _records(ctx) -> bool:
    """True when this call is recorded for backward (grad mode on and some input wants a gradient)."""
    return is_grad_enabled() and any(ctx.needs_input_grad)


def _may_overwrite(ctx, x, inplace) -> bool:
    """True when an op asked for `inplace` may write its result into x: nothing is recorded (no backward will
    read x) and x is a writeable C-contiguous array (so flat blocks of x are views, not copies)."""
    return inplace and not _records(ctx) and x.flags.c_contiguous and x.flags.writeable


def _erfc_f32(a: np.ndarray, scale: float = 1.0):
    """erfc(a) = 1 - erf(a) = poly(t) * exp(-a^2) for a >= 0 (one float32 block), by Abramowitz & Stegun 7.1.26
    (see `_erf`). Returns the two factors (scale * poly(t), exp(-a^2)): GELU's backward reuses the second, and
    `scale` is folded into the coefficients (one pass fewer than multiplying afterwards)."""
    t = a * np.float32(0.3275911)
    t += 1.0
    np.divide(1.0, t, out=t)  # t = 1 / (1 + p a); divide is vectorised, np.reciprocal is not
    poly = t * np.float32(1.061405429 * scale)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):  # Horner: a5 t + a4, then * t + a3, ...
        poly += np.float32(c * scale)
        poly *= t
    np.multiply(a, a, out=t)
    np.negative(t, out=t)
    return poly, np.exp(t, out=t)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf(x): exact (scipy) in float64; in float32 the Abramowitz & Stegun 7.1.26 formula.

    Deviation: scipy's erf is a scalar loop (about 15 ns per element, more than all the GEMMs of a
    BERT layer); in float32 we use  erf(|x|) = 1 - (a1 t + a2 t^2 + a3 t^3 + a4 t^4 + a5 t^5) exp(-x^2),
    t = 1 / (1 + p |x|), whose absolute error is below 1.5e-7 (evaluated in float32, below 5e-7: a few
    float32 ulps of values near 1), and which runs on vectorised exp. Float64 stays exact.
    """
    if x.dtype != np.float32:
        return erf(x)
    y = np.empty(x.shape, x.dtype)
    for xb, yb in _flat_blocks(x, y):
        poly, e = _erfc_f32(np.abs(xb))
        e *= poly
        np.subtract(1.0, e, out=yb)  # erf(|x|)
        np.copysign(yb, xb, out=yb)  # erf is odd
    return y


def _abs_u_f32(xb: np.ndarray) -> np.ndarray:
    """|u| = |x| / sqrt 2, the erf argument of exact GELU, clamped at 10 (erfc(10) underflows float32 anyway;
    the clamp keeps gelu(inf) = inf instead of inf * 0 = NaN)."""
    a = np.abs(xb)
    a *= np.float32(1 / _SQRT_2)
    return np.minimum(a, 10.0, out=a)


def _gelu_f32(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Exact GELU in float32, block by block:  y = max(x, 0) - |x|/2 erfc(|x| / sqrt 2).

    This is x Phi(x) rewritten with erfc(|u|) = 1 - erf(|u|) (erf is odd), which also avoids the cancellation
    in 1 + erf(u) for negative x; erfc comes from the same A&S formula as `_erf`. `out` may be x itself.
    """
    y = np.empty(x.shape, x.dtype) if out is None else out
    for xb, yb in _flat_blocks(x, y):
        a = _abs_u_f32(xb)
        poly, e = _erfc_f32(a, scale=-1 / _SQRT_2)
        e *= poly
        e *= a  # -|x|/2 erfc(|u|) = -|u| erfc(|u|) / sqrt 2
        np.maximum(xb, 0.0, out=yb)
        yb += e
    return y


def _gelu_grad_f32(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Exact GELU's dx = g * (Phi(x) + x phi(x)) in float32, block by block; exp(-x^2 / 2) is computed once,
    for both erfc (inside Phi) and phi."""
    dx = np.empty(x.shape, x.dtype)
    for xb, gb, db in _flat_blocks(x, g, dx):
        poly, e = _erfc_f32(_abs_u_f32(xb))  # e = exp(-u^2) = exp(-x^2 / 2)
        poly *= e
        np.subtract(1.0, poly, out=poly)
        np.copysign(poly, xb, out=poly)  # erf(u)
        poly += 1.0
        poly *= 0.5  # Phi(x)
        e *= xb
        e *= np.float32(1 / np.sqrt(2 * np.pi))  # x phi(x)
        e += poly
        np.multiply(gb, e, out=db)
    return dx


class Gelu(Function):
    """GELU (Hendrycks2016).

    Exact ("none"):  y = x * Phi(x),  Phi(x) = (1 + erf(x / sqrt 2)) / 2;   dx = g * (Phi(x) + x * phi(x)),
                     phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
    Tanh ("tanh"):   y = x/2 * (1 + t),  t = tanh(u),  u = sqrt(2/pi) (x + 0.044715 x^3);
                     dx = g * (1/2 (1 + t) + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)).
    Convention: BERT's "gelu" is the exact form; "gelu_new" / "gelu_pytorch_tanh" (and the original
    adapter-bert code) use the tanh form. Exact float32 runs the fused block kernels `_gelu_f32` and
    `_gelu_grad_f32`; with `inplace` and nothing recorded it writes y into x's array.
    """

    @staticmethod
    def forward(ctx, x, approximate="none", inplace=False):
        if approximate == "none" and x.dtype == np.float32:
            y = _gelu_f32(x, out=x if _may_overwrite(ctx, x, inplace) else None)
        elif approximate == "none":
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
        if ctx.options.get("approximate", "none") == "none" and x.dtype == np.float32 and g.dtype == np.float32:
            return _gelu_grad_f32(x, g)
        if ctx.options.get("approximate", "none") == "none":
            cdf = 0.5 * (1.0 + _erf(x / _SQRT_2))
            pdf = np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
            return (g * (cdf + x * pdf)).astype(x.dtype, copy=False)
        t = np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3))
        du = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x * x)
        return (g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)).astype(x.dtype, copy=False)


def gelu(x: Tensor, approximate: str = "none", inplace: bool = False) -> Tensor:
    """GELU; `inplace=True` allows overwriting x's array when no graph is recorded (x must not be used again):
    it saves allocating, and page-faulting in, a (B, T, F) array per layer at inference."""
    return Gelu.apply(x, approximate=approximate, inplace=inplace)


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
    """y = exp(z - max) / sum(exp(z - max)) along `axis`, z = x + mask.   dx = y * (g - sum(g * y, axis)).

    Subtracting the row max changes nothing mathematically and keeps exp() from overflowing; a row
    masked with a large finite negative number (BERT's additive mask) stays finite, never NaN.
    Convention: `mask` is an optional constant array (no gradient) broadcast against x and added first, as
    `softmax(x + mask)`; fused here it saves one pass over the (B, H, T, T) attention scores. With `inplace`
    and nothing recorded, y is written into x's array.
    """

    @staticmethod
    def forward(ctx, x, axis=-1, mask=None, inplace=False):
        y = x if _may_overwrite(ctx, x, inplace) else np.empty(x.shape, x.dtype)
        m = np.broadcast_to(mask, x.shape) if mask is not None else None
        axis = axis % max(1, x.ndim)
        # Block by block along axis 0 (the whole array at once when the softmax runs along axis 0).
        for rows in _leading_blocks(x) if axis != 0 else [...]:
            yb = y[rows]  # a view: every step below writes into y
            zb = x[rows] if m is None else np.add(x[rows], m[rows], out=yb)
            np.subtract(zb, zb.max(axis=axis, keepdims=True), out=yb)
            np.exp(yb, out=yb)
            yb /= yb.sum(axis=axis, keepdims=True)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        axis = ctx.options.get("axis", -1) % max(1, y.ndim)
        dx = np.empty(y.shape, y.dtype)
        for rows in _leading_blocks(y) if axis != 0 else [...]:
            db, yb = dx[rows], y[rows]
            np.multiply(g[rows], yb, out=db)
            s = db.sum(axis=axis, keepdims=True)
            np.subtract(g[rows], s, out=db)
            db *= yb  # y * (g - sum(g * y))
        return dx


def softmax(x: Tensor, axis: int = -1, mask=None, inplace: bool = False) -> Tensor:
    """Softmax along `axis`; `mask` (optional constant, cast to x's dtype) is added to x first, e.g. an additive
    attention mask (B, 1, 1, T) for scores (B, H, T, T). `inplace=True` allows overwriting x's array when no
    graph is recorded (x must not be used again)."""
    if mask is not None:
        mask = np.asarray(mask.data if isinstance(mask, Tensor) else mask, dtype=x.dtype)
    return Softmax.apply(x, axis=axis, mask=mask, inplace=inplace)


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
        y = np.empty(x.shape, np.result_type(x, weight, bias))
        keep = _records(ctx)  # xhat and rstd are kept whole only when backward will need them
        xhat = np.empty(x.shape, x.dtype) if keep else None
        rstd = np.empty(x.shape[:-1] + (1,), x.dtype) if keep else None
        for rows in _leading_blocks(x) if x.ndim > 1 else [...]:  # blocks of rows, each in cache
            xb = x[rows]
            xc = xb - xb.mean(axis=-1, keepdims=True)
            rb = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)  # 1 / sqrt(var + eps)
            xc *= rb  # xhat
            np.multiply(xc, weight, out=y[rows])
            y[rows] += bias
            if keep:
                xhat[rows], rstd[rows] = xc, rb
        ctx.save_for_backward(xhat, rstd, weight)
        return y

    @staticmethod
    def backward(ctx, g):
        xhat, rstd, weight = ctx.saved
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = np.empty(xhat.shape, np.result_type(g, weight, xhat))
            for rows in _leading_blocks(xhat) if xhat.ndim > 1 else [...]:  # blocks of rows, each in cache
                gx, xb = g[rows] * weight, xhat[rows]
                dxb = gx - gx.mean(-1, keepdims=True)
                gx *= xb
                dxb -= xb * gx.mean(-1, keepdims=True)
                np.multiply(rstd[rows], dxb, out=dx[rows])  # rstd * (gx - mean(gx) - xhat * mean(gx * xhat))
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


ACTIVATIONS = {"gelu": lambda x: gelu(x, "none"), "gelu_new": lambda x: gelu(x, "tanh"),
               "gelu_pytorch_tanh": lambda x: gelu(x, "tanh"), "relu": relu, "silu": silu, "tanh": tanh}
ACTIVATION_ALIASES = {"swish": "silu", "gelu_tanh": "gelu_new", "gelu_orig": "gelu"}


def canonical_activation(name: str) -> str:
    name = ACTIVATION_ALIASES.get(name, name)
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}")
    return name


def activation(name: str):
    return ACTIVATIONS[canonical_activation(name)]
