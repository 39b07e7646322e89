"""The primitives: one `Function` per operation, forward and backward side by side.

Notation in every docstring: `g` is the upstream gradient dL/dy, and `da`, `db`, `dx` are the gradients
returned for the inputs `a`, `b`, `x`. Binary ops broadcast like NumPy and send each gradient through
`unbroadcast`, so it has its input's shape again. A gradient is only computed when
`ctx.needs_input_grad` says the input wants it.
"""

from __future__ import annotations

import numpy as np

from autograd import kernels
from autograd.tensor import Function, Tensor, unbroadcast


class Cast(Function):
    """y = x as `dtype`.   dx = g cast back to x's dtype."""

    @staticmethod
    def forward(ctx, x, dtype):
        ctx.save_for_backward(x.dtype)
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        (dtype,) = ctx.saved
        return g.astype(dtype)


# ---- elementwise binary ------------------------------------------------------------------------------
class Add(Function):
    """y = a + b.   da = g,   db = g."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a.shape, b.shape)
        return a + b

    @staticmethod
    def backward(ctx, g):
        a_shape, b_shape = ctx.saved
        da = unbroadcast(g, a_shape) if ctx.needs_input_grad[0] else None
        db = unbroadcast(g, b_shape) if ctx.needs_input_grad[1] else None
        return da, db


class Sub(Function):
    """y = a - b.   da = g,   db = -g."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a.shape, b.shape)
        return a - b

    @staticmethod
    def backward(ctx, g):
        a_shape, b_shape = ctx.saved
        da = unbroadcast(g, a_shape) if ctx.needs_input_grad[0] else None
        db = unbroadcast(-g, b_shape) if ctx.needs_input_grad[1] else None
        return da, db


class Mul(Function):
    """y = a * b.   da = g * b,   db = g * a."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        da = unbroadcast(g * b, a.shape) if ctx.needs_input_grad[0] else None
        db = unbroadcast(g * a, b.shape) if ctx.needs_input_grad[1] else None
        return da, db


class Div(Function):
    """y = a / b.   da = g / b,   db = -g * a / b**2 = -g * y / b."""

    @staticmethod
    def forward(ctx, a, b):
        y = a / b
        ctx.save_for_backward(a.shape, b, y)
        return y

    @staticmethod
    def backward(ctx, g):
        a_shape, b, y = ctx.saved
        da = unbroadcast(g / b, a_shape) if ctx.needs_input_grad[0] else None
        db = unbroadcast(-g * y / b, b.shape) if ctx.needs_input_grad[1] else None
        return da, db


class MatMul(Function):
    """y = a @ b, batched over leading axes like np.matmul.   da = g @ b^T,   db = a^T @ g.

    A 1-D operand is treated as a row (a) or column (b) vector, as NumPy does, and its gradient is
    reshaped back. Every product `a @ b` is written `kernels.matmul(a, b)`: the same product, split over the
    kernel threads.
    """

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return kernels.matmul(a, b)  # a @ b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        a2 = a[None, :] if a.ndim == 1 else a  # (K,) -> (1, K)
        b2 = b[:, None] if b.ndim == 1 else b  # (K,) -> (K, 1)
        # g gets back the axis NumPy dropped for each 1-D operand (a reshape to a2.shape[:-1] + ... would
        # drop the batch axes when a is 1-D and b is batched).
        g2 = g[..., None] if b.ndim == 1 else g  # (..., N) -> (..., N, 1)
        g2 = g2[..., None, :] if a.ndim == 1 else g2  # (..., M) -> (..., 1, M)
        da = db = None
        if ctx.needs_input_grad[0]:
            da = unbroadcast(kernels.matmul(g2, np.swapaxes(b2, -1, -2)), a2.shape).reshape(a.shape)  # (.., N, K)
        if ctx.needs_input_grad[1]:
            db = unbroadcast(kernels.matmul(np.swapaxes(a2, -1, -2), g2), b2.shape).reshape(b.shape)  # (.., K, M)
        return da, db


# ---- elementwise unary -------------------------------------------------------------------------------
class Neg(Function):
    """y = -x.   dx = -g."""

    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, g):
        return -g


class Pow(Function):
    """y = x ** p for a constant p (a number or an array broadcast against x).   dx = g * p * x ** (p - 1),
    and 0 where p == 0 (y = 1 is constant; the formula would give 0 * 0 ** -1 = NaN at x = 0)."""

    @staticmethod
    def forward(ctx, x, exponent):
        ctx.save_for_backward(x)
        return x ** np.asarray(exponent, dtype=x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        p = np.asarray(ctx.options["exponent"], dtype=x.dtype)
        with np.errstate(divide="ignore", invalid="ignore"):
            dx = g * p * x ** (p - 1)
        # an array exponent may have broadcast x: the gradient is summed back to x's shape
        return unbroadcast(np.where(p == 0, np.zeros((), dtype=dx.dtype), dx), x.shape)


class Exp(Function):
    """y = exp(x).   dx = g * y."""

    @staticmethod
    def forward(ctx, x):
        y = np.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return g * y


class Log(Function):
    """y = log(x).   dx = g / x."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.log(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        return g / x


class Sqrt(Function):
    """y = sqrt(x).   dx = g / (2 y)."""

    @staticmethod
    def forward(ctx, x):
        y = np.sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return g / (2 * y)


class Tanh(Function):
    """y = tanh(x).   dx = g * (1 - y**2)."""

    @staticmethod
    def forward(ctx, x):
        y = np.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return g * (1 - y * y)


# ---- reductions --------------------------------------------------------------------------------------
def _expand_reduced(g, shape, axis, keepdims):
    """Give a reduced gradient its reduced axes back (size 1), so it broadcasts against the input."""
    if keepdims:
        return g
    if axis is None:
        return g.reshape((1,) * len(shape))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return np.expand_dims(g, tuple(a % len(shape) for a in axes))


class Sum(Function):
    """y = sum of x over `axis`.   dx = g broadcast back over the summed axes."""

    @staticmethod
    def forward(ctx, x, axis=None, keepdims=False):
        ctx.save_for_backward(x.shape)
        return np.asarray(x.sum(axis=axis, keepdims=keepdims))

    @staticmethod
    def backward(ctx, g):
        (shape,) = ctx.saved
        g = _expand_reduced(g, shape, ctx.options.get("axis"), ctx.options.get("keepdims", False))
        return np.broadcast_to(g, shape).copy()


class Max(Function):
    """y = max of x over `axis`.   dx = g where x equals the max, else 0.

    Convention: when several elements tie for the maximum the gradient is split evenly between them
    (the subgradient NumPy-based references such as HIPS autograd use; PyTorch's `amax` does the same).
    """

    @staticmethod
    def forward(ctx, x, axis=None, keepdims=False):
        y = np.asarray(x.max(axis=axis, keepdims=keepdims))
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved
        axis, keepdims = ctx.options.get("axis"), ctx.options.get("keepdims", False)
        is_max = x == _expand_reduced(y, x.shape, axis, keepdims)
        count = is_max.sum(axis=axis, keepdims=True).astype(x.dtype)  # ties share g evenly; keep x's dtype
        return is_max * (_expand_reduced(g, x.shape, axis, keepdims) / count)


# ---- shapes and indexing -------------------------------------------------------------------------------
class Reshape(Function):
    """y = x reshaped.   dx = g reshaped back."""

    @staticmethod
    def forward(ctx, x, shape):
        ctx.save_for_backward(x.shape)
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        (shape,) = ctx.saved
        return g.reshape(shape)


class Transpose(Function):
    """y = x with axes permuted by `axes`.   dx = g permuted by the inverse permutation."""

    @staticmethod
    def forward(ctx, x, axes):
        return np.transpose(x, axes)

    @staticmethod
    def backward(ctx, g):
        return np.transpose(g, np.argsort([a % g.ndim for a in ctx.options["axes"]]))  # negative axes too


def _scatter_add_rows(g, index, shape, dtype):
    """zeros(shape) with the rows of g added at rows `index` of axis 0, for y = x[index] with an integer array.

    Why: np.add.at handles one element at a time, slowly for whole rows (an embedding's backward); the same sums,
    in the same order, are a product with the sparse one-hot matrix S (rows of x, n), S[index[j], j] = 1.
    """
    from scipy.sparse import csr_array  # imported on first use

    rows = index.reshape(-1) % shape[0]  # negative indices count from the end, as in x[index]
    n = rows.size
    onehot = csr_array((np.ones(n, dtype=dtype), (rows, np.arange(n))), shape=(shape[0], n))
    g2 = g.reshape(n, int(np.prod(shape[1:])))  # index.shape + row shape -> (n, row size)
    return np.asarray(onehot @ g2, dtype=dtype).reshape(shape)


class GetItem(Function):
    """y = x[index] (slices, integers, integer arrays, masks).   dx = zeros with g scatter-added at index.

    Scatter-add (np.add.at) and not assignment, so an index that appears twice (x[[0, 0]]) receives
    the sum of both gradients. A single integer array (row lookup, as an embedding) takes the faster
    `_scatter_add_rows`.
    """

    @staticmethod
    def forward(ctx, x, index):
        ctx.save_for_backward(x.shape, x.dtype)
        return x[index]

    @staticmethod
    def backward(ctx, g):
        shape, dtype = ctx.saved
        index = ctx.options["index"]
        if isinstance(index, np.ndarray) and index.dtype.kind in "iu" and len(shape) > 0:
            return _scatter_add_rows(g, index, shape, dtype)
        dx = np.zeros(shape, dtype=dtype)
        np.add.at(dx, index, g)
        return dx


class Concatenate(Function):
    """y = concatenate(xs, axis).   dx_i = the slice of g that x_i filled."""

    @staticmethod
    def forward(ctx, *xs, axis=0):
        ctx.save_for_backward(np.cumsum([x.shape[axis] for x in xs])[:-1])
        return np.concatenate(xs, axis=axis)

    @staticmethod
    def backward(ctx, g):
        (splits,) = ctx.saved
        parts = np.split(g, splits, axis=ctx.options.get("axis", 0))
        return tuple(p if need else None for p, need in zip(parts, ctx.needs_input_grad))


class Stack(Function):
    """y = stack(xs, axis).   dx_i = g taken at position i along `axis`."""

    @staticmethod
    def forward(ctx, *xs, axis=0):
        return np.stack(xs, axis=axis)

    @staticmethod
    def backward(ctx, g):
        axis = ctx.options.get("axis", 0)
        return tuple(np.take(g, i, axis=axis) if need else None for i, need in enumerate(ctx.needs_input_grad))


class Where(Function):
    """y = a where cond else b (cond is a constant boolean array).   da = g * cond,   db = g * ~cond."""

    @staticmethod
    def forward(ctx, a, b, cond):
        ctx.save_for_backward(a.shape, b.shape)
        return np.where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        a_shape, b_shape = ctx.saved
        cond = ctx.options["cond"]
        da = unbroadcast(np.where(cond, g, 0), a_shape) if ctx.needs_input_grad[0] else None
        db = unbroadcast(np.where(cond, 0, g), b_shape) if ctx.needs_input_grad[1] else None
        return da, db


# ---- module-level functions ----------------------------------------------------------------------------
# A number or array among the inputs is wrapped as a constant by Function.apply (see `as_tensor`).
def concatenate(tensors, axis=0) -> Tensor:
    """Join tensors along an existing axis (np.concatenate)."""
    return Concatenate.apply(*tensors, axis=axis)


def stack(tensors, axis=0) -> Tensor:
    """Join tensors along a new axis (np.stack)."""
    return Stack.apply(*tensors, axis=axis)


def where(cond, a, b) -> Tensor:
    """Elementwise `a if cond else b`; `cond` is a boolean array (or Tensor) and gets no gradient."""
    cond = np.asarray(cond.data if isinstance(cond, Tensor) else cond, dtype=bool)
    return Where.apply(a, b, cond=cond)


# ---- Tensor's operators -------------------------------------------------------------------------------------
class TensorOperators:
    """The operators of `Tensor` (tensor.py), each one Function of this module; copied onto Tensor below.

    They live here, beside the Functions they apply, so that the two modules import one way (tensor.py needs
    nothing of this one). A number or array operand becomes a constant of self's dtype in Function.apply
    (see `as_tensor`).
    """

    def astype(self, dtype) -> Tensor:
        return Cast.apply(self, dtype=np.dtype(dtype))

    def __add__(self, other):
        return Add.apply(self, other)

    def __radd__(self, other):
        return Add.apply(other, self)

    def __sub__(self, other):
        return Sub.apply(self, other)

    def __rsub__(self, other):
        return Sub.apply(other, self)

    def __mul__(self, other):
        return Mul.apply(self, other)

    def __rmul__(self, other):
        return Mul.apply(other, self)

    def __truediv__(self, other):
        return Div.apply(self, other)

    def __rtruediv__(self, other):
        return Div.apply(other, self)

    def __matmul__(self, other):
        return MatMul.apply(self, other)

    def __rmatmul__(self, other):
        return MatMul.apply(other, self)

    def __neg__(self):
        return Neg.apply(self)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            # a ** b = exp(b log a), for a > 0
            return (exponent * self.log()).exp()
        # a constant: a number, or an array broadcast against x (Pow's backward unbroadcasts)
        return Pow.apply(self, exponent=float(exponent) if np.ndim(exponent) == 0 else np.asarray(exponent))

    def __rpow__(self, base):
        # c ** x = exp(x log c), for a constant c > 0 (a number or an array, cast to self's dtype)
        return (self * np.log(base)).exp()

    # ---- reductions, shapes, elementwise --------------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        return Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        # mean = sum / n, with n the number of elements reduced into each output element
        total = self.sum(axis=axis, keepdims=keepdims)
        return total / (self.data.size // max(1, total.data.size))

    def max(self, axis=None, keepdims=False):
        return Max.apply(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return Reshape.apply(self, shape=tuple(shape))

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return Transpose.apply(self, axes=tuple(axes) if axes else tuple(reversed(range(self.ndim))))

    def swapaxes(self, a, b):
        axes = list(range(self.ndim))
        axes[a], axes[b] = axes[b], axes[a]
        return self.transpose(*axes)

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        if isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        return GetItem.apply(self, index=index)

    def exp(self):
        return Exp.apply(self)

    def log(self):
        return Log.apply(self)

    def sqrt(self):
        return Sqrt.apply(self)

    def tanh(self):
        return Tanh.apply(self)




for _name, _method in vars(TensorOperators).items():
    if callable(_method):
        setattr(Tensor, _name, _method)
