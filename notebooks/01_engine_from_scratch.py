# %% [markdown]
# # 1. The engine from scratch
#
# Houlsby et al. (2019, §1) define adapter tuning as training a new function whose old parameters stay
# fixed:
#
# > "For adapter tuning, a new function, ψ_{w,v}(x), is defined, where parameters w are copied over from
# > pre-training. [...] During training, only v are tuned."
#
# Tuning v needs dL/dv for every one of v's numbers, and nothing for w. Reverse-mode differentiation gives
# exactly that: one backward pass from the loss, skipping whatever needs no gradient. This notebook builds
# it twice:
#
# 1. by hand on a scalar graph, then as a small scalar `Value` class written here (the lesson, after
#    micrograd, Karpathy2020);
# 2. with this project's `autograd` package: one primitive's forward and backward, the topological sort,
#    `unbroadcast`, and `gradcheck`, which must also catch a wrong backward.
#
# Sources open in Jupyter with jupytext, or run as a plain script: `python notebooks/01_engine_from_scratch.py`.

# %%
import inspect

import matplotlib.pyplot as plt
import numpy as np

from autograd import Function, Tensor, unbroadcast
from autograd.gradcheck import GradcheckError, gradcheck
from autograd.ops import Mul
from autograd.tensor import Context

plt.rcParams.update({"figure.dpi": 80, "font.size": 9})
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1.1 A scalar graph, backward by hand
#
# Take `L = tanh(a * b + b)` at a = 0.5, b = 0.4. Name every intermediate: e = a·b, d = e + b, L = tanh(d).
# The chain rule, applied from L back to the inputs, multiplies local derivatives:
#
# - dL/dd = 1 − tanh(d)² (the derivative of tanh),
# - d = e + b gives dd/de = 1 and dd/db = 1,
# - e = a·b gives de/da = b and de/db = a.
#
# b is used twice (in e and in d), so its gradient is the **sum** over both paths.

# %%
a, b = 0.5, 0.4
e = a * b
d = e + b
L = np.tanh(d)

dL_dd = 1 - L**2          # tanh' = 1 - tanh^2
dL_de = dL_dd * 1.0       # d = e + b
dL_db = dL_dd * 1.0       # first path to b: d = e + b
dL_da = dL_de * b         # e = a * b
dL_db += dL_de * a        # second path to b: e = a * b. Paths add up.
print(f"forward:  e = {e:.4f}, d = {d:.4f}, L = {L:.6f}")
print(f"backward: dL/da = {dL_da:.6f}, dL/db = {dL_db:.6f}")

# Central finite differences: (L(x + h) - L(x - h)) / 2h, error O(h^2).
h = 1e-6
fd_a = (np.tanh((a + h) * b + b) - np.tanh((a - h) * b + b)) / (2 * h)
fd_b = (np.tanh(a * (b + h) + (b + h)) - np.tanh(a * (b - h) + (b - h))) / (2 * h)
print(f"numeric:  dL/da = {fd_a:.6f}, dL/db = {fd_b:.6f}")
assert abs(fd_a - dL_da) < 1e-8 and abs(fd_b - dL_db) < 1e-8

# %% [markdown]
# ## 1.2 The same graph as data: a scalar `Value`
#
# Doing this by hand does not scale. The engine records, for every result, the operation and the inputs
# that made it, and a rule that pushes the result's gradient to those inputs. `backward()` then visits
# the nodes so that a node is processed only after **every** node that uses it: the reverse of a
# topological order.
#
# Two choices follow the project's style notes: the parents are a tuple (a fixed order, so gradients are
# summed in the same order every run), and the topological sort is an iterative depth-first search (no
# recursion limit on deep graphs).

# %%
class Value:
    """A scalar, its gradient, and how it was made (the operation and its inputs)."""

    def __init__(self, data, parents=(), op="", name=""):
        self.data, self.grad = float(data), 0.0
        self.parents, self.op, self.name = parents, op, name
        self.push_grad = lambda: None  # sends self.grad to the parents (set by the operation)

    def __add__(self, other):
        out = Value(self.data + other.data, (self, other), "+")

        def push_grad():  # y = a + b:  da += g,  db += g
            self.grad += out.grad
            other.grad += out.grad
        out.push_grad = push_grad
        return out

    def __mul__(self, other):
        out = Value(self.data * other.data, (self, other), "*")

        def push_grad():  # y = a * b:  da += g * b,  db += g * a
            self.grad += out.grad * other.data
            other.grad += out.grad * self.data
        out.push_grad = push_grad
        return out

    def tanh(self):
        y = np.tanh(self.data)
        out = Value(y, (self,), "tanh")

        def push_grad():  # y = tanh(x):  dx += g * (1 - y^2)
            self.grad += out.grad * (1 - y * y)
        out.push_grad = push_grad
        return out

    def backward(self):
        self.grad = 1.0
        for node in reversed(topological_order(self)):
            node.push_grad()


def topological_order(root):
    """Every node that leads to root, each after all of its parents (iterative depth-first search)."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in reversed(node.parents) if id(p) not in seen)
    return order


va, vb = Value(0.5, name="a"), Value(0.4, name="b")
ve = va * vb
ve.name = "e"
vd = ve + vb
vd.name = "d"
vL = vd.tanh()
vL.name = "L"
vL.backward()
print("topological order:", [n.name for n in topological_order(vL)])
print(f"Value:   dL/da = {va.grad:.6f}, dL/db = {vb.grad:.6f}")
print(f"by hand: dL/da = {dL_da:.6f}, dL/db = {dL_db:.6f}")
assert va.grad == dL_da and vb.grad == dL_db  # the same operations in the same order: bit for bit

# %% [markdown]
# ### A drawing of the graph
#
# Each box is a node: its name or operation, its value (`data`) and, after `backward()`, its gradient.
# Arrows run forward (input to result); the backward pass walks them in reverse. Columns are depths:
# a node sits one column right of its deepest input.

# %%
def draw_graph(ax, root, parents_of, label_of, color_of=lambda n: "#dde8f5"):
    """Lay out the graph that ends in `root` by depth and draw boxes and arrows with matplotlib."""
    order = topological_order_generic(root, parents_of)
    depth = {}
    for n in order:
        depth[id(n)] = 1 + max((depth[id(p)] for p in parents_of(n)), default=-1)
    columns = {}
    for n in order:
        columns.setdefault(depth[id(n)], []).append(n)
    pos = {}
    for col, nodes in columns.items():
        for row, n in enumerate(nodes):
            pos[id(n)] = (col * 3.0, (len(nodes) - 1) / 2 - row)
    for n in order:
        for p in parents_of(n):
            skips = depth[id(n)] - depth[id(p)] > 1  # an edge over a column bends around it
            ax.annotate("", xy=pos[id(n)], xytext=pos[id(p)],
                        arrowprops=dict(arrowstyle="->", color="0.4", shrinkA=28, shrinkB=28,
                                        connectionstyle="arc3,rad=0.35" if skips else "arc3"))
    for n in order:
        ax.text(*pos[id(n)], label_of(n), ha="center", va="center", fontsize=8, family="monospace",
                bbox=dict(boxstyle="round", fc=color_of(n), ec="0.3"))
    xs, ys = zip(*pos.values())
    ax.set_xlim(min(xs) - 1.5, max(xs) + 1.5)
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    ax.axis("off")


def topological_order_generic(root, parents_of):
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in reversed(parents_of(node)) if id(p) not in seen)
    return order


fig, ax = plt.subplots(figsize=(7, 2.6))
draw_graph(ax, vL, lambda n: n.parents,
           lambda n: f"{n.name or n.op}{' (' + n.op + ')' if n.name and n.op else ''}\n"
                     f"data {n.data:+.4f}\ngrad {n.grad:+.4f}")
ax.set_title("L = tanh(a*b + b): forward values and gradients after backward()")
fig.tight_layout()

# %% [markdown]
# ## 1.3 One primitive in the package: `Mul`
#
# The `autograd` package does the same with NumPy arrays. Every primitive is one `Function` with a
# `forward` on raw arrays, which saves what `backward` needs, and a `backward` that turns the upstream
# gradient `g` into one gradient per input. Here is `Mul`, as it is in `autograd/ops.py`:

# %%
print(inspect.getsource(Mul))

# %% [markdown]
# Calling the two halves by hand, as `Tensor.backward` does. `ctx` is the record of one call;
# `needs_input_grad` says which inputs want a gradient (a frozen weight says False, and its gradient is
# never computed: the "only v are tuned" of the quote). Shapes: a is (3, 1), b is (4,), so y is (3, 4).

# %%
a_arr = rng.standard_normal((3, 1))
b_arr = rng.standard_normal(4)
ctx = Context(needs_input_grad=(True, False), saving=True)  # b is "frozen"
y = Mul.forward(ctx, a_arr, b_arr)
g = np.ones_like(y)  # upstream gradient dL/dy for L = sum(y)
da, db = Mul.backward(ctx, g)
print("y:", y.shape, " da:", da.shape, " db:", db)
print("da = sum over the 4 columns of g * b:", np.allclose(da, (g * b_arr).sum(axis=1, keepdims=True)))

# %% [markdown]
# ## 1.4 The topological sort in the package
#
# `Tensor.backward` visits the graph in reverse topological order, found by the same iterative search as
# `topological_order` above. Each result tensor keeps `(Function, ctx, inputs)` in `_node`; leaves keep
# None. (`_node` and `_topological_order` are internals, read here to look inside.) A backward pass lets each
# node drop its inputs once it has used them, so that memory is freed as the pass goes; `retain_graph=True`
# keeps them, here so that the graph can still be drawn afterwards.

# %%
print(inspect.getsource(Tensor._topological_order))

ta = Tensor(np.array(0.5), requires_grad=True)
tb = Tensor(np.array(0.4), requires_grad=True)
tL = (ta * tb + tb).tanh()
names = {id(ta): "a", id(tb): "b"}
print("order:", [names.get(id(t), t._node[0].__name__ if t._node else "?") for t in tL._topological_order()])
tL.backward(retain_graph=True)
print(f"package: dL/da = {ta.grad.item():.6f}, dL/db = {tb.grad.item():.6f}   (by hand {dL_da:.6f}, {dL_db:.6f})")
assert np.isclose(ta.grad.item(), dL_da) and np.isclose(tb.grad.item(), dL_db)

# %%
fig, ax = plt.subplots(figsize=(7, 2.4))
draw_graph(ax, tL, lambda t: list(t._node[2]) if t._node else [],
           lambda t: (names.get(id(t)) or t._node[0].__name__) + f"\nshape {t.shape}\n"
                     + ("grad None" if t.grad is None else f"grad {float(t.grad):+.4f}"),
           color_of=lambda t: "#e3f1dd" if t._node is None else "#dde8f5")
ax.set_title("The same graph recorded by autograd.Tensor (leaves green; intermediate tensors keep no .grad)")
fig.tight_layout()

# %% [markdown]
# ## 1.5 `unbroadcast`: why a broadcast input's gradient is a sum
#
# NumPy broadcasting stretches a (3, 1) array across 4 columns and puts a (4,) array in front of 3 rows.
# In `y = a + b` each element of `a` is then used 4 times and each element of `b` 3 times. By the rule of
# section 1.1 (a value used several times gets the sum of its paths), the gradient of `a` is `g` summed
# over the stretched axis, and that of `b` is `g` summed over the added axis. Every binary op ends with
# `unbroadcast`, which does exactly this:

# %%
print(inspect.getsource(unbroadcast))
g = np.arange(12.0).reshape(3, 4)  # an upstream gradient of shape (3, 4)
print("g =\n", g)
print("unbroadcast(g, (3, 1)) =", unbroadcast(g, (3, 1)).ravel(), " (row sums)")
print("unbroadcast(g, (4,))   =", unbroadcast(g, (4,)), " (column sums)")
print("unbroadcast(g, (1, 1)) =", unbroadcast(g, (1, 1)).ravel(), " (everything)")

# %% [markdown]
# ## 1.6 `gradcheck`: finite differences judge a backward
#
# `gradcheck(fn, inputs)` compares the analytic Jacobian (one backward per output element) with central
# differences (f(x + εe_j) − f(x − εe_j)) / 2ε, column by column, in float64, and raises `GradcheckError`
# naming the first disagreeing element. For large inputs it compares random projections vᵀJu instead.
# On `Mul` with broadcasting shapes (3, 1) × (4,):

# %%
ta = Tensor(rng.standard_normal((3, 1)), requires_grad=True)
tb = Tensor(rng.standard_normal(4), requires_grad=True)
print("gradcheck(a * b):", gradcheck(lambda a, b: a * b, [ta, tb]))

# %% [markdown]
# Now a deliberately wrong backward: the two gradients swapped (`da = g * a` instead of `g * b`). The
# shapes still work out after `unbroadcast`, so only the values are wrong. `gradcheck` must reject it.

# %%
class WrongMul(Function):
    """y = a * b with a bug: da = g * a (should be g * b), db = g * b (should be g * a)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        return unbroadcast(g * a, a.shape), unbroadcast(g * b, b.shape)


try:
    gradcheck(lambda a, b: WrongMul.apply(a, b), [ta, tb])
    raise RuntimeError("gradcheck accepted a wrong backward")
except GradcheckError as err:
    print("GradcheckError:", err)

# %% [markdown]
# A backward that forgets `unbroadcast` returns a (3, 4) gradient for a (3, 1) input. That one never
# reaches `gradcheck`: `Tensor.backward` asserts that each gradient has its input's shape.

# %%
class NoUnbroadcastMul(WrongMul):
    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        return g * b, g * a  # shapes (3, 4): wrong for a (3, 1) and b (4,)


try:
    NoUnbroadcastMul.apply(ta, tb).sum().backward()
    raise RuntimeError("a gradient of the wrong shape was accepted")
except AssertionError as err:
    print("AssertionError:", err)

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell holding an answer (the committed version holds a correct one: replace its body
# with your own) and a cell that judges it. The judge prints `correct` or raises with the reason.
#
# 1. **Softplus.** y = log(1 + exp(x)). Write `backward` (hint: dy/dx = 1 / (1 + exp(−x))).
# 2. **A broadcasting binary op.** y = (a − b)². Write `backward` for both inputs; a is (3, 1) and b is (4,),
#    so each gradient needs `unbroadcast`.
# 3. **Extend the scalar engine.** Write `value_exp(x)`, a `Value` for exp(x) with its `push_grad`.

# %%
def check(exercise, test):
    """Run `test`; print 'correct', or print why not and re-raise."""
    try:
        test()
    except Exception as err:
        print(f"{exercise}: not yet. {type(err).__name__}: {err}")
        raise
    print(f"{exercise}: correct")


# %%
class Softplus(Function):
    """y = log(1 + exp(x)), computed as logaddexp(0, x) (no overflow for large x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.logaddexp(0.0, x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        return g / (1 + np.exp(-x))  # your answer: dx


# %%
check("Exercise 1", lambda: gradcheck(lambda x: Softplus.apply(x),
                                      [Tensor(rng.standard_normal((3, 4)) * 3, requires_grad=True)]))


# %%
class SquaredDifference(Function):
    """y = (a - b)**2, broadcasting like NumPy."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return (a - b) ** 2

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        da = unbroadcast(2 * g * (a - b), a.shape)  # your answer: da
        db = unbroadcast(-2 * g * (a - b), b.shape)  # your answer: db
        return da, db


# %%
check("Exercise 2", lambda: gradcheck(lambda a, b: SquaredDifference.apply(a, b),
                                      [Tensor(rng.standard_normal((3, 1)), requires_grad=True),
                                       Tensor(rng.standard_normal(4), requires_grad=True)]))


# %%
def value_exp(x: Value) -> Value:
    y = np.exp(x.data)
    out = Value(y, (x,), "exp")

    def push_grad():  # your answer: y = exp(x), dx += g * y
        x.grad += out.grad * y
    out.push_grad = push_grad
    return out


# %%
def judge_value_exp():
    for a0, b0 in [(0.5, 0.4), (-1.2, 0.7), (2.0, -0.3)]:
        a, b = Value(a0), Value(b0)
        L = value_exp(a * b + b) * a  # exp used inside a larger graph, a used twice
        L.backward()
        f = lambda a, b: np.exp(a * b + b) * a  # noqa: E731
        h = 1e-6
        num_a = (f(a0 + h, b0) - f(a0 - h, b0)) / (2 * h)
        num_b = (f(a0, b0 + h) - f(a0, b0 - h)) / (2 * h)
        assert np.isclose(L.data, f(a0, b0)), f"forward: {L.data} vs {f(a0, b0)}"
        assert np.isclose(a.grad, num_a, rtol=1e-6) and np.isclose(b.grad, num_b, rtol=1e-6), \
            f"at a={a0}, b={b0}: grads ({a.grad:.6f}, {b.grad:.6f}) vs numeric ({num_a:.6f}, {num_b:.6f})"


check("Exercise 3", judge_value_exp)
