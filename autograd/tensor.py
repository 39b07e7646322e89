"""The core of the engine: `Tensor`, `Function`, `as_tensor`, `unbroadcast`, `no_grad` and reverse-mode `backward`.

A `Tensor` wraps a NumPy array. Every differentiable operation is a `Function` subclass (see `ops.py`
and `functional.py`) whose `forward` computes the value on raw arrays and saves what `backward` needs,
and whose `backward` turns the upstream gradient `g` into one gradient per input. `Function.apply`
records the call in the graph; `Tensor.backward` walks that graph in reverse topological order.

Convention: gradients of leaf tensors accumulate across `backward` calls (as in PyTorch); call
`optimizer.zero_grad()` or set `.grad = None` between steps.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

_state = threading.local()


def is_grad_enabled() -> bool:
    """True unless inside a `no_grad()` block."""
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def no_grad():
    """Inside this block operations build no graph and save no activations (inference mode)."""
    previous = is_grad_enabled()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = previous


def unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum `g` over the axes that broadcasting added or stretched, so it gets `shape` back.

    If forward computed `a + b` with `a.shape == (3, 1)` and `b.shape == (4,)`, the output is (3, 4);
    `a`'s gradient sums over axis 1 (stretched from 1) and `b`'s over axis 0 (added in front).
    """
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if stretched:
        g = g.sum(axis=stretched, keepdims=True)
    return g.reshape(shape)


def as_tensor(x, like=None) -> Tensor:
    """x as a Tensor: a Tensor is returned unchanged; a number or array is wrapped as a constant (no gradient).

    Convention: when `like` is a floating-point Tensor, the constant is cast to its dtype, so that a Python
    number or a float64 array never silently turns a float32 graph into a float64 one.
    """
    if isinstance(x, Tensor):
        return x
    x = np.asarray(x)
    if like is not None and np.issubdtype(like.dtype, np.floating) and x.dtype != like.dtype:
        x = x.astype(like.dtype)
    return Tensor(x)


class Context:
    """What one call of a Function remembers between forward and backward."""

    __slots__ = ("needs_input_grad", "saved", "options", "_saving")

    def __init__(self, needs_input_grad: tuple, saving: bool):
        self.needs_input_grad = needs_input_grad  # one bool per positional input
        self.saved = ()
        self.options = {}
        self._saving = saving

    def save_for_backward(self, *values):
        # Under no_grad (or when no input needs a gradient) nothing is kept alive.
        if self._saving:
            self.saved = values


class Function:
    """One differentiable primitive: `forward(ctx, *arrays, **options)` and `backward(ctx, g)`.

    Positional inputs are Tensors (differentiable); a number or array among them is wrapped by `as_tensor` as
    a constant of the first Tensor input's floating dtype. Keyword options are plain values (axes, indices,
    constants). `backward` returns one gradient per positional input, or None where
    `ctx.needs_input_grad[i]` is False, and never computes a gradient nobody needs.
    """

    @staticmethod
    def forward(ctx, *args, **options):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, g):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **options):
        like = next((x for x in inputs if isinstance(x, Tensor)), None)
        inputs = tuple(as_tensor(x, like) for x in inputs)
        needs = tuple(x.requires_grad for x in inputs)
        track = is_grad_enabled() and any(needs)
        ctx = Context(needs, saving=track)
        ctx.options = options
        out = cls.forward(ctx, *(x.data for x in inputs), **options)
        result = Tensor(out, requires_grad=track)
        if track:
            result._node = (cls, ctx, inputs)
        return result


class Tensor:
    """An `np.ndarray` (`.data`) plus what reverse-mode differentiation needs.

    `Tensor(array)` wraps `array` without copying and without changing its dtype. `.grad` is None until a
    backward pass reaches this tensor (leaf tensors only). `requires_grad=True` marks a leaf whose gradient
    is wanted; results of operations require a gradient when any of their inputs does.
    """

    __array_priority__ = 100  # so `ndarray + Tensor` calls Tensor.__radd__, not NumPy's broadcasting

    def __init__(self, data, requires_grad: bool = False):
        self.data = data if isinstance(data, np.ndarray) else np.asarray(data)
        if requires_grad and not np.issubdtype(self.data.dtype, np.floating):
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._node = None  # (Function class, Context, input tensors) for results of operations

    # ---- basic properties -------------------------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def T(self):
        return self.transpose()

    @property
    def is_leaf(self):
        return self._node is None

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=20)}, dtype={self.dtype}{grad})"

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self):
        return self.data.item()

    def detach(self) -> Tensor:
        """The same array, cut from the graph."""
        return Tensor(self.data)

    # ---- reverse mode -----------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False):
        """Accumulate d(self)/d(leaf) . grad into `.grad` of every leaf that requires a gradient.

        `grad` defaults to 1 for a single-element tensor. Nodes are visited in reverse topological order
        found by an iterative depth-first search (no recursion limit); parents are visited in argument
        order, so the order of accumulation, and hence every bit of the result, is deterministic.
        Unless `retain_graph`, each node lets go of its saved activations and of its inputs as soon as its
        backward has run, so intermediate results nobody else holds are freed during the pass, not after it.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (no input required grad, "
                               "or it was computed under no_grad())")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() needs `grad` for a non-scalar tensor of shape {self.shape}")
            grad = np.ones_like(self.data)
        grad = grad.data if isinstance(grad, Tensor) else np.asarray(grad, dtype=self.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"grad has shape {grad.shape}, expected {self.shape}")

        grads = {id(self): grad}
        order = self._topological_order()
        while order:
            node = order.pop()  # reverse topological order; popped, so the list keeps nothing alive
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._node is None:  # a leaf: accumulate
                node.grad = g.copy() if node.grad is None else node.grad + g
                continue
            fn, ctx, inputs = node._node
            if ctx.saved is None:
                raise RuntimeError("backward through a graph a second time; use backward(retain_graph=True)")
            input_grads = fn.backward(ctx, g)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            if not retain_graph:
                ctx.saved, ctx.options = None, {}  # options may hold constant arrays (dropout's mask)
                node._node = (fn, ctx, ())  # keeps the "second time" error; frees inputs nobody else holds
            for x, gx in zip(inputs, input_grads):
                if gx is None or not x.requires_grad:
                    continue
                assert gx.shape == x.shape, f"{fn.__name__}.backward: grad {gx.shape} for input {x.shape}"
                gx = gx.astype(x.dtype, copy=False)
                grads[id(x)] = gx if id(x) not in grads else grads[id(x)] + gx

    def _topological_order(self):
        """Every tensor that leads to self and requires grad, each after all of its inputs."""
        order, expanded = [], set()
        stack = [(self, False)]
        while stack:
            node, inputs_done = stack.pop()
            if inputs_done:
                order.append(node)
                continue
            if id(node) in expanded:
                continue
            expanded.add(id(node))
            stack.append((node, True))
            if node._node is not None:
                for x in reversed(node._node[2]):
                    if x.requires_grad and id(x) not in expanded:
                        stack.append((x, False))
        return order

    # ---- operators --------------------------------------------------------------------------------
    # +, -, *, /, @, **, sum, reshape, exp, ... are each one Function of ops.py, and are defined there, beside the
    # Function they apply (`ops.TensorOperators`), so that this module needs nothing of ops.py.

    # Comparisons give plain boolean arrays: they have no gradient.
    def _raw(self, other):
        return other.data if isinstance(other, Tensor) else other

    def __lt__(self, other):
        return self.data < self._raw(other)

    def __le__(self, other):
        return self.data <= self._raw(other)

    def __gt__(self, other):
        return self.data > self._raw(other)

    def __ge__(self, other):
        return self.data >= self._raw(other)

    def __eq__(self, other):
        return self.data == self._raw(other)

    def __ne__(self, other):
        return self.data != self._raw(other)

    __hash__ = object.__hash__  # tensors stay usable as dict keys and set members (by identity)
