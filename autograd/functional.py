"""Neural-network functions (import as `F`), with fused closed-form backwards where they pay.

Fused: `linear` (a frozen weight skips its gradient matmul), `dropout`, `softmax`, `log_softmax`, `cross_entropy`
(log-softmax + NLL), `layer_norm`, `gelu`, `silu`. Each is tested against the same formula built from
primitives in `ops.py` and against finite differences. The others are compositions of primitives.

Each Function's forward and backward show the reference formula in plain NumPy. Where a float32 kernel in
`kernels.py` computes the same thing faster, the Function calls it for float32 arrays only; every other
dtype (float64 for gradient checks and parity tests) runs the formula as written.

Activations are also looked up by name (`activation("gelu_new")`), in Hugging Face's vocabulary, with aliases
for other vocabularies: see `ACTIVATIONS` and `ACTIVATION_ALIASES`.

Weights follow the Hugging Face / PyTorch layout: `Linear.weight` is (out, in) and y = x @ W^T + b.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from scipy.special import erf

from autograd import kernels
from autograd.ops import GetItem
from autograd.tensor import Function, Tensor, is_grad_enabled, unbroadcast

_SQRT_2 = float(np.sqrt(2.0))  # Python floats: NumPy keeps a float32 array float32
_SQRT_2PI = float(np.sqrt(2.0 * np.pi))
_SQRT_2_OVER_PI = float(np.sqrt(2.0 / np.pi))


class Linear(Function):
    """y = x @ W^T + b with x (..., I), W (O, I), b (O,).

    dx = g @ W,   dW = g^T x summed over all leading axes,   db = g summed over all leading axes.
    Why fused: written as `x @ W.T` the weight gradient would be a batched (B, I, O) product summed
    afterwards; here it is one (O, N) @ (N, I) matmul with N = all leading axes flattened, and it is
    skipped entirely when W is frozen. Every product `a @ b` is written `kernels.matmul(a, b)`: the same product,
    with its rows split over the kernel threads.
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        ctx.save_for_backward(x, weight)
        # Flattening the leading axes makes this one large GEMM instead of one small GEMM per batch row.
        y = kernels.matmul(x.reshape(-1, x.shape[-1]), weight.T)  # x2 @ W^T: (N, I) @ (I, O) -> (N, O)
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
            dx = kernels.matmul(g2, weight).reshape(x.shape)  # g2 @ W: (N, O) @ (O, I) -> (N, I) -> (..., I)
        if needs[1]:
            dw = kernels.matmul(g2.T, x.reshape(-1, x.shape[-1]))  # g2^T @ x2: (O, N) @ (N, I) -> (O, I)
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


def _erf(u: np.ndarray) -> np.ndarray:
    """scipy's erf(u) in u's dtype; float64 blocks over the kernel threads (`kernels.map_blocks`, same bits)."""
    if u.dtype == np.float64:
        return kernels.map_blocks(erf, u)
    return erf(u).astype(u.dtype, copy=False)


class Gelu(Function):
    """GELU: the exact form (approximate="none") or its tanh approximation (approximate="tanh").

    Exact:  y = x * cdf = x/2 * (1 + erf(x / sqrt 2)),  cdf = Phi(x), the standard normal CDF;
            dx = g * (cdf + x * pdf),  pdf = phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
    Tanh:   y = x/2 * (1 + t),  t = tanh(sqrt(2/pi) (x + 0.044715 x^3));
            dx = g * ((1 + t) / 2 + x/2 * (1 - t^2) * du),  du = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    Ref: Hendrycks2016.
    Convention: BERT's "gelu" is the exact form; "gelu_new" / "gelu_pytorch_tanh" (and Houlsby2019's
    original code) use the tanh form.
    Float32: the exact form runs `kernels.gelu_f32` / `kernels.gelu_grad_f32` (erfc by Abramowitz & Stegun,
    absolute error below 1.5e-7), the tanh form `kernels.gelu_tanh_f32` / `kernels.gelu_tanh_grad_f32`; every
    other dtype runs the formulas above, the exact form with scipy's erf (cast back to x's dtype: scipy computes
    a float16 erf in float32).
    """

    @staticmethod
    def forward(ctx, x, approximate="none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu approximate must be 'none' or 'tanh', got {approximate!r}")
        ctx.save_for_backward(x)
        if approximate == "tanh":
            if x.dtype == np.float32:
                return kernels.gelu_tanh_f32(x)
            t = np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3))
            return 0.5 * x * (1.0 + t)
        if x.dtype == np.float32:
            return kernels.gelu_f32(x)
        return 0.5 * x * (1.0 + _erf(x / _SQRT_2))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        if ctx.options.get("approximate", "none") == "tanh":
            if x.dtype == g.dtype == np.float32:
                return kernels.gelu_tanh_grad_f32(x, g)
            t = np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3))
            du = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x * x)
            return g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)
        if x.dtype == g.dtype == np.float32:
            return kernels.gelu_grad_f32(x, g)
        cdf = 0.5 * (1.0 + _erf(x / _SQRT_2))
        pdf = np.exp(-0.5 * x * x) / _SQRT_2PI
        return g * (cdf + x * pdf)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU: exact (erf) with approximate="none", the tanh form with approximate="tanh"."""
    return Gelu.apply(x, approximate=approximate)


class Silu(Function):
    """SiLU / swish: y = x * s,  s = sigmoid(x) = 1 / (1 + exp(-x)).   dx = g * s * (1 + x (1 - s)).

    Ref: Hendrycks2016 (where it is named SiLU).
    """

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


# ---- activations by name ------------------------------------------------------------------------------------
ACTIVATIONS = {  # Hugging Face's names (a config's `hidden_act`) -> function Tensor -> Tensor
    "gelu": gelu,  # exact (erf) form, as BERT
    "gelu_new": partial(gelu, approximate="tanh"),
    "gelu_pytorch_tanh": partial(gelu, approximate="tanh"),
    "relu": relu,
    "silu": silu,
    "tanh": tanh,
}
ACTIVATION_ALIASES = {  # names from other vocabularies -> the canonical name above
    "swish": "silu",
    "gelu_tanh": "gelu_new",  # the tanh form under a descriptive name (Houlsby2019's original code uses it)
    "gelu_orig": "gelu",  # the exact form, as some PyTorch libraries call it
}


def canonical_activation(name: str) -> str:
    """The canonical (Hugging Face) name for an activation name or alias; ValueError for an unknown name."""
    if name in ACTIVATIONS:
        return name
    if name in ACTIVATION_ALIASES:
        return ACTIVATION_ALIASES[name]
    aliases = ", ".join(f"{alias} -> {canonical}" for alias, canonical in ACTIVATION_ALIASES.items())
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)} (aliases: {aliases})")


def activation(name: str):
    """The function (Tensor -> Tensor) an activation name or alias stands for."""
    return ACTIVATIONS[canonical_activation(name)]


class Softmax(Function):
    """y = e / sum(e, axis),  e = exp(z - max(z, axis)),  z = x + mask.   dx = y * (g - sum(g * y, axis)).

    Subtracting the row max changes nothing mathematically and keeps exp() from overflowing; a row
    masked with a large finite negative number (BERT's additive mask) stays finite, never NaN.
    Convention: `mask` is an optional constant array (no gradient) of x's shape, added first, as
    `softmax(x + mask)`.
    Float32: runs `kernels.softmax_f32` / `kernels.softmax_grad_f32`, the same formula by blocks of rows with
    the mask added in the first pass.
    """

    @staticmethod
    def forward(ctx, x, axis=-1, mask=None):
        if x.dtype == np.float32:
            y = kernels.softmax_f32(x, axis, mask)
        else:
            z = x if mask is None else x + mask
            e = np.exp(z - z.max(axis=axis, keepdims=True))
            y = e / e.sum(axis=axis, keepdims=True)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        axis = ctx.options.get("axis", -1)
        if y.dtype == g.dtype == np.float32:
            return kernels.softmax_grad_f32(y, g, axis)
        return y * (g - (g * y).sum(axis=axis, keepdims=True))


def softmax(x: Tensor, axis: int = -1, mask=None) -> Tensor:
    """Softmax along `axis`; `mask` (optional constant, cast to x's dtype) is added to x first, e.g. an additive
    attention mask (B, 1, 1, T) for scores (B, H, T, T). The mask must broadcast to x's shape."""
    if mask is not None:
        mask = np.asarray(mask.data if isinstance(mask, Tensor) else mask, dtype=x.dtype)
        mask = np.broadcast_to(mask, x.shape)  # raises if the mask would enlarge x
    return Softmax.apply(x, axis=axis, mask=mask)


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
    """y = xhat * w + b,  xhat = (x - mean(x)) * rstd,  rstd = 1 / sqrt(var + eps), over the last axis, with var
    the biased variance mean((x - mean(x))^2).

    With gx = g * w:  dx = rstd * (gx - mean(gx) - xhat * mean(gx * xhat)),  dw = sum(g * xhat),  db = sum(g)
    (means over the last axis, sums over all leading axes).
    Ref: Ba2016.
    Convention: eps inside the square root, as BERT and PyTorch.
    Float32: runs `kernels.layer_norm_f32` / `kernels.layer_norm_grad_f32`, the same formula by blocks of rows.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-12):
        if x.dtype == weight.dtype == bias.dtype == np.float32:
            keep = is_grad_enabled() and any(ctx.needs_input_grad)  # will backward need xhat and rstd?
            y, xhat, rstd = kernels.layer_norm_f32(x, weight, bias, eps, keep)
        else:
            xc = x - x.mean(axis=-1, keepdims=True)
            rstd = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)
            xhat = xc * rstd
            y = xhat * weight + bias
        ctx.save_for_backward(xhat, rstd, weight)
        return y

    @staticmethod
    def backward(ctx, g):
        xhat, rstd, weight = ctx.saved
        dx = dw = db = None
        if ctx.needs_input_grad[0] and xhat.dtype == weight.dtype == g.dtype == np.float32:
            dx = kernels.layer_norm_grad_f32(xhat, rstd, weight, g)
        elif ctx.needs_input_grad[0]:
            gx = g * weight
            dx = rstd * (gx - gx.mean(axis=-1, keepdims=True) - xhat * (gx * xhat).mean(axis=-1, keepdims=True))
        if ctx.needs_input_grad[1]:
            dw = unbroadcast(g * xhat, weight.shape)
        if ctx.needs_input_grad[2]:
            db = unbroadcast(g, weight.shape)
        return dx, dw, db


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-12) -> Tensor:
    return LayerNorm.apply(x, weight, bias, eps=eps)


class Dropout(Function):
    """y = x * keep * s,  s = 1 / (1 - p), with `keep` a boolean mask drawn once per call.   dx = g * keep * s.

    Ref: Srivastava2014 (inverted dropout: the scale is applied in training, so eval is the identity).
    The mask is a constant option: `dropout` draws it, this Function only applies it and saves it (one byte per
    element) for backward.
    Convention: p = 1 passes s = 0 (every element dropped, a zero gradient), where 1 / (1 - p) is undefined.
    """

    @staticmethod
    def forward(ctx, x, keep=None, scale=1.0):
        ctx.save_for_backward(keep)
        if x.dtype == np.float32:
            return kernels.masked_scale_f32(x, keep, scale)
        return x * scale * keep

    @staticmethod
    def backward(ctx, g):
        (keep,) = ctx.saved
        scale = ctx.options["scale"]
        if g.dtype == np.float32:
            return kernels.masked_scale_f32(g, keep, scale)
        return g * scale * keep


def dropout(x: Tensor, p: float, training: bool, rng: np.random.Generator | None = None) -> Tensor:
    """Inverted dropout: in training, zero each element with probability p and scale the rest by 1/(1-p).

    Identity in eval mode or with p = 0. `rng` makes the mask reproducible; without it a fresh generator is
    used. The mask is `rng.random(x.shape, dtype) >= p`.
    Convention: the uniform numbers are drawn in x's dtype when it is float32 or float64 (else float64): a
    float32 model draws float32 numbers, which are cheaper to draw and to compare than float64 ones.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    rng = rng if rng is not None else np.random.default_rng()
    draw = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
    keep = rng.random(x.shape, dtype=draw) >= p
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    return Dropout.apply(x, keep=keep, scale=scale)


def mse_loss(input: Tensor, target) -> Tensor:
    """mean((input - target)^2)."""
    diff = input - target
    return (diff * diff).mean()

