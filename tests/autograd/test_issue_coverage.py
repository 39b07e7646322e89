"""Tests the issue requires that the per-module files did not yet have: Hypothesis-drawn gradchecks for the ops
that only had fixed cases, the checker's contract (defaults, messages, random upstream, classic mistakes, memory,
leaving its inputs alone), frozen inputs computing nothing, determinism and dtypes end to end on a small model,
and the remaining API (nn layers, optimizer resume, schedule)."""

import inspect
import math
import tracemalloc

import numpy as np
import pytest
from autograd_helpers import Cube, away_from_zero, check_grads, leaf, nonscalar_shapes, seeds, shapes
from conftest import TOL
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import autograd.functional as F
from autograd import Function, Tensor, concatenate, nn, no_grad, optim, stack, where
from autograd.gradcheck import GradcheckError, gradcheck

broadcast_pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=4)


def normalised_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    return tuple(sorted(a % ndim for a in ((axis,) if isinstance(axis, int) else axis)))


# ---- primitives that only had fixed cases, now on drawn shapes ---------------------------------------------------
@given(shape=nonscalar_shapes, seed=seeds, data=st.data())
def test_swapaxes_on_drawn_shapes(shape, seed, data):
    a, b = (data.draw(st.integers(-len(shape), len(shape) - 1), label=f"axis{i}") for i in (1, 2))
    x = leaf(np.random.default_rng(seed).standard_normal(shape))
    np.testing.assert_array_equal(x.swapaxes(a, b).data, np.swapaxes(x.data, a, b))
    check_grads(lambda x: x.swapaxes(a, b), x)


@given(shape=shapes, seed=seeds, data=st.data())
def test_reshape_to_any_compatible_shape(shape, seed, data):
    target = list(data.draw(st.permutations(shape), label="sizes"))
    target.insert(data.draw(st.integers(0, len(target)), label="where 1"), 1)
    target[data.draw(st.integers(0, len(target) - 1), label="which -1")] = -1
    x = leaf(np.random.default_rng(seed).standard_normal(shape))
    np.testing.assert_array_equal(x.reshape(*target).data, x.data.reshape(target))
    np.testing.assert_array_equal(x.reshape(tuple(target)).data, x.data.reshape(target))
    check_grads(lambda x: x.reshape(*target), x)


def scatter_add_reference(shape, index, g):
    """dx for y = x[index] with integer arrays only, one element at a time (no np.add.at)."""
    dx = np.zeros(shape)
    index = np.broadcast_arrays(*index)
    for pos in np.ndindex(g.shape):
        dx[tuple(int(i[pos]) for i in index)] += g[pos]
    return dx


@given(shape=nonscalar_shapes, seed=seeds, data=st.data())
def test_getitem_integer_arrays_scatter_add_repeated_indices(shape, seed, data):
    index = data.draw(hnp.integer_array_indices(shape, result_shape=hnp.array_shapes(max_dims=2, max_side=6)),
                      label="index")  # negative indices and repeats included
    rng = np.random.default_rng(seed)
    x = leaf(rng.standard_normal(shape))
    y = x[index]
    np.testing.assert_array_equal(y.data, x.data[index])
    g = rng.standard_normal(y.shape)
    y.backward(g)
    np.testing.assert_allclose(x.grad, scatter_add_reference(shape, index, g), rtol=1e-14, atol=1e-15)
    check_grads(lambda x: x[index], x)


@given(shape=nonscalar_shapes, seed=seeds, data=st.data())
def test_getitem_integer_array_on_one_axis_between_slices(shape, seed, data):
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    n = shape[axis]
    ids = data.draw(hnp.arrays(np.int64, hnp.array_shapes(max_dims=2, max_side=5), elements=st.integers(-n, n - 1)),
                    label="ids")
    index = (slice(None),) * axis + (ids,)
    x = leaf(np.random.default_rng(seed).standard_normal(shape))
    np.testing.assert_array_equal(x[index].data, x.data[index])
    check_grads(lambda x: x[index], x)


@given(shape=nonscalar_shapes, n=st.integers(2, 3), seed=seeds, data=st.data())
def test_concatenate_equal_parts_get_their_own_slice_back(shape, n, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    rng = np.random.default_rng(seed)
    parts = [leaf(rng.standard_normal(shape)) for _ in range(n)]  # same shapes: a swapped slice would fit
    y = concatenate(parts, axis)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    for part, expected in zip(parts, np.split(g, n, axis=axis)):
        np.testing.assert_array_equal(part.grad, expected)
    check_grads(lambda *ps: concatenate(ps, axis), *parts)


@given(shape=shapes, seed=seeds)
def test_cast_round_trip(shape, seed):
    rng = np.random.default_rng(seed)
    x, w = leaf(rng.standard_normal(shape)), rng.standard_normal(shape)
    check_grads(lambda x: (x.astype(np.longdouble) * w).astype(np.float64), x)
    y = x.astype(np.float32).astype(np.float64)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y.data, x.data.astype(np.float32).astype(np.float64))
    g = rng.standard_normal(shape)
    y.backward(g)
    np.testing.assert_array_equal(x.grad, g.astype(np.float32).astype(np.float64))  # rounded through float32


@given(shapes=broadcast_pairs, seed=seeds)
def test_pow_tensor_exponent_and_constant_base_broadcast(shapes, seed):
    sa, sb = shapes.input_shapes
    rng = np.random.default_rng(seed)
    a, b, c = leaf(rng.uniform(0.3, 3.0, sa)), leaf(rng.uniform(-2.0, 2.0, sb)), rng.uniform(0.3, 3.0, sa)
    np.testing.assert_allclose((a**b).data, np.power(a.data, b.data), rtol=1e-13)
    np.testing.assert_allclose((c**b).data, np.power(c, b.data), rtol=1e-13)
    np.testing.assert_allclose((2.5**b).data, np.power(2.5, b.data), rtol=1e-13)
    check_grads(lambda a, b: a**b, a, b)
    check_grads(lambda b: c**b, b)
    check_grads(lambda b: 2.5**b, b)


@given(shapes=broadcast_pairs, seed=seeds)
def test_pow_by_a_constant_array_of_exponents(shapes, seed):
    sx, se = shapes.input_shapes
    rng = np.random.default_rng(seed)
    x = leaf(away_from_zero(rng, sx, low=0.3, high=2.0))  # either sign: integer exponents
    e = rng.integers(-2, 4, se).astype(np.float64)
    assert (x**e).shape == shapes.result_shape
    # pow is not correctly rounded, and NumPy's loops for broadcast (stride 0) and contiguous operands can
    # differ in the last bit (seen: 2.1e-16 relative), so a few ulps rather than bit equality.
    np.testing.assert_allclose((x**e).data, np.power(x.data, e), rtol=4 * np.finfo(np.float64).eps, atol=0)
    check_grads(lambda x: x**e, x)
    xp, ef = leaf(np.abs(x.data)), rng.uniform(-2.0, 2.0, se)  # positive base: fractional exponents
    np.testing.assert_allclose((xp**ef).data, np.power(xp.data, ef), rtol=4 * np.finfo(np.float64).eps, atol=0)
    check_grads(lambda x: x**ef, xp)


REFLECTED = {  # the constant is on the left, so Python (or NumPy, deferring) calls Tensor.__r*__
    "radd": (lambda c, x: c + x, np.add), "rsub": (lambda c, x: c - x, np.subtract),
    "rmul": (lambda c, x: c * x, np.multiply), "rdiv": (lambda c, x: c / x, np.divide),
}


@pytest.mark.parametrize("name", REFLECTED)
@given(shapes=broadcast_pairs, seed=seeds, python_number=st.booleans())
def test_reflected_operators_with_a_number_or_an_array_on_the_left(name, shapes, seed, python_number):
    op, reference = REFLECTED[name]
    sc, sx = shapes.input_shapes
    rng = np.random.default_rng(seed)
    c = float(rng.standard_normal()) if python_number else rng.standard_normal(sc)
    x = leaf(away_from_zero(rng, sx))
    out = op(c, x)
    assert isinstance(out, Tensor)  # not a NumPy object array: NumPy deferred to the Tensor
    np.testing.assert_array_equal(out.data, reference(c, x.data))
    check_grads(lambda x: op(c, x), x)


@pytest.mark.parametrize("shape_c, shape_x", [((3,), (3, 4)), ((2, 3), (3,)), ((2, 5, 3), (3, 4)), ((3,), (3,))])
def test_reflected_matmul_with_an_array_on_the_left(shape_c, shape_x):
    rng = np.random.default_rng(20)
    c, x = rng.standard_normal(shape_c), leaf(rng.standard_normal(shape_x))
    out = c @ x
    assert isinstance(out, Tensor)
    np.testing.assert_allclose(out.data, c @ x.data, rtol=1e-14)
    check_grads(lambda x: c @ x, x)


@given(data=st.data(), shape=nonscalar_shapes, keepdims=st.booleans(), seed=seeds)
def test_max_ties_split_evenly_on_drawn_shapes(data, shape, keepdims, seed):
    nd = len(shape)
    axis = data.draw(st.one_of(st.none(), st.integers(-nd, nd - 1), hnp.valid_tuple_axes(nd, min_size=1)))
    rng = np.random.default_rng(seed)
    x = leaf(rng.integers(0, 3, shape).astype(np.float64))  # three values only: ties everywhere
    y = x.max(axis=axis, keepdims=keepdims)
    np.testing.assert_array_equal(y.data, x.data.max(axis=axis, keepdims=keepdims))
    g = rng.standard_normal(y.shape)
    y.backward(g)
    # Reference: reduced axes moved last and flattened; each output's g shared equally by the tied maxima.
    red = normalised_axes(axis, nd)
    kept = tuple(a for a in range(nd) if a not in red)
    rows = np.transpose(x.data, kept + red).reshape(-1, math.prod(shape[a] for a in red))
    expected = np.zeros_like(rows)
    for r, gr in enumerate(g.reshape(-1)):
        ties = rows[r] == rows[r].max()
        expected[r, ties] = gr / ties.sum()
    expected = np.transpose(expected.reshape([shape[a] for a in kept + red]), np.argsort(kept + red))
    np.testing.assert_allclose(x.grad, expected, rtol=1e-15, atol=0)


@given(shape=nonscalar_shapes, p=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]), seed=seeds)
def test_dropout_on_drawn_shapes(shape, p, seed):
    rng = np.random.default_rng(seed)
    x = leaf(rng.standard_normal(shape))
    y = F.dropout(x, p, True, np.random.default_rng(seed))
    if p == 0.0:
        assert y is x
    else:
        keep = np.random.default_rng(seed).random(shape) >= p  # the documented draw
        expected = np.zeros(shape) if p == 1.0 else np.where(keep, x.data / (1 - p), 0.0)
        np.testing.assert_allclose(y.data, expected, rtol=1e-15, atol=0)
    assert F.dropout(x, p, False, rng) is x
    check_grads(lambda x: F.dropout(x, p, True, np.random.default_rng(seed)), x)


def test_gelu_rejects_an_unknown_approximation():
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(leaf(np.ones(2)), approximate="sigmoid")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mask_value", [-1e4, -1e9, "min"])
def test_softmax_row_fully_masked_by_a_large_negative_additive_mask(dtype, mask_value):
    rng = np.random.default_rng(21)
    scores = Tensor((4 * rng.standard_normal((2, 5))).astype(dtype), requires_grad=True)
    big = np.finfo(dtype).min if mask_value == "min" else mask_value
    mask = np.zeros((2, 5), dtype=dtype)
    mask[0] = big  # row 0 fully masked
    mask[1, 3:] = big  # row 1 partly masked
    for fn in (F.softmax, F.log_softmax):
        scores.grad = None
        y = fn(scores + mask)
        y.backward(rng.standard_normal(y.shape).astype(dtype))
        assert np.isfinite(y.data).all() and np.isfinite(scores.grad).all() and y.dtype == dtype
    p = F.softmax(scores + mask).data
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)
    assert (p[1, 3:] == 0).all()


# ---- the gradient checker ------------------------------------------------------------------------------------------
@pytest.fixture
def cube():
    yield Cube
    Cube.wrong_at = None


def test_gradcheck_signature_defaults():
    params = inspect.signature(gradcheck).parameters
    assert list(params)[:6] == ["fn", "inputs", "eps", "atol", "rtol", "fast"]
    assert {k: params[k].default for k in ("eps", "atol", "rtol", "fast")} == dict(
        eps=1e-6, atol=1e-5, rtol=1e-3, fast=None)
    assert TOL["gradcheck"] == dict(eps=1e-6, atol=1e-5, rtol=1e-3)  # the tests use the documented defaults


def test_gradcheck_default_mode_on_small_input_is_the_full_jacobian_and_reports_the_values(cube):
    x = leaf([[0.5, 1.25, -0.75], [1.5, -1.1, 0.9]])
    cube.wrong_at = 5  # element (1, 2)
    with pytest.raises(GradcheckError) as err:
        gradcheck(Cube.apply, [x])  # fast omitted: 6 x 6 is small, so the full Jacobian, element by element
    message = str(err.value)
    assert "input 0 (shape (2, 3)), element (1, 2), output element 5" in message
    analytic, numeric = (float(message.split(word)[1].split()[0]) for word in ("analytic ", "numeric "))
    assert analytic == pytest.approx(2 * 0.9**2, rel=1e-9)  # what the wrong backward said
    assert numeric == pytest.approx(3 * 0.9**2, rel=1e-6)  # what finite differences measured


class IgnoresUpstream(Function):
    """y = x^2 with a backward that forgets to multiply by g: right only when g is all ones."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        return 2 * x


@pytest.mark.parametrize("fast", [False, True])
def test_gradcheck_uses_a_non_uniform_upstream_gradient(fast):
    x = leaf(np.random.default_rng(22).uniform(0.5, 1.5, (3, 2)))
    check_grads(lambda x: x * x, x)  # control: the right backward passes
    with pytest.raises(GradcheckError):  # all-ones upstream (sum of outputs) would let this through
        gradcheck(IgnoresUpstream.apply, [x], fast=fast)


class AssignNotScatterAdd(Function):
    """x[index] whose backward assigns (dx[index] = g): a repeated index keeps only its last gradient."""

    @staticmethod
    def forward(ctx, x, index):
        ctx.save_for_backward(x.shape)
        return x[index]

    @staticmethod
    def backward(ctx, g):
        (shape,) = ctx.saved
        dx = np.zeros(shape)
        dx[ctx.options["index"]] = g
        return dx


class MatMulUntransposed(Function):
    """a @ b with da = g @ b (should be g @ b^T): shapes agree for square b, values do not."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(b)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        (b,) = ctx.saved
        return g @ b, None


class BroadcastTakesFirst(Function):
    """a * b (b broadcast over rows) with db = (g * a)[0] instead of the sum over the broadcast axis."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a)
        return a * b

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return None, (g * a)[0]


class SoftmaxMissingTerm(Function):
    """softmax with dx = y * g, the diagonal of the Jacobian only."""

    @staticmethod
    def forward(ctx, x):
        y = np.exp(x - x.max(-1, keepdims=True))
        y /= y.sum(-1, keepdims=True)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return y * g


_rng = np.random.default_rng(23)
_a, _b = _rng.standard_normal((3, 3)), _rng.standard_normal((3,))
MISTAKES = {
    "scatter by assignment": lambda x: AssignNotScatterAdd.apply(x, index=np.array([1, 1, 0])),
    "matmul gradient not transposed": lambda x: MatMulUntransposed.apply(x, Tensor(_a)),
    "broadcast axis not summed": lambda x: BroadcastTakesFirst.apply(Tensor(_a), x[0]),
    "softmax Jacobian diagonal only": SoftmaxMissingTerm.apply,
}


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("mistake", MISTAKES)
def test_gradcheck_rejects_classic_backward_mistakes(mistake, fast):
    x = leaf(np.random.default_rng(24).standard_normal((3, 3)))
    with pytest.raises(GradcheckError):
        gradcheck(MISTAKES[mistake], [x], fast=fast)


@pytest.mark.parametrize("fast", [False, True])
def test_gradcheck_gives_back_the_same_array_object_and_the_previous_grad(cube, fast):
    a = np.random.default_rng(25).uniform(0.5, 1.5, (2, 3))
    x = Tensor(a, requires_grad=True)
    previous = np.full((2, 3), 7.0)
    x.grad = previous
    assert gradcheck(Cube.apply, [x], fast=fast)
    assert x.data is a and x.grad is previous and np.array_equal(a, np.random.default_rng(25).uniform(0.5, 1.5, (2, 3)))
    cube.wrong_at = 0
    with pytest.raises(GradcheckError):
        gradcheck(Cube.apply, [x], fast=fast)
    assert x.data is a and x.grad is previous  # also after a failure


def test_gradcheck_full_mode_memory_does_not_grow_with_the_output_squared():
    # 1 input element, 2000 outputs: full mode (2000 <= 20,000); an identity matrix of the output size per
    # backward pass would be 2000^2 floats = 32 MB. One-hot vectors need kilobytes.
    x, c = leaf(np.array(0.7)), np.random.default_rng(26).standard_normal(2000)
    tracemalloc.start()
    try:
        assert gradcheck(lambda x: x * c, [x])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000, f"peak {peak / 1e6:.1f} MB"


# ---- frozen inputs: no .grad, and their gradient is not computed ---------------------------------------------------
FROZEN_CASES = {  # name: (op, input shapes); each input in turn is the frozen one
    "add": (lambda a, b: a + b, [(2, 3), (3,)]),
    "sub": (lambda a, b: a - b, [(2, 3), (2, 1)]),
    "mul": (lambda a, b: a * b, [(2, 3), (3,)]),
    "div": (lambda a, b: a / b, [(2, 3), (2, 3)]),
    "matmul": (lambda a, b: a @ b, [(2, 3), (3, 4)]),
    "where": (lambda a, b: where(np.array([True, False, True]), a, b), [(2, 3), (3,)]),
    "concatenate": (lambda a, b: concatenate([a, b], axis=1), [(2, 3), (2, 2)]),
    "stack": (lambda a, b: stack([a, b], axis=0), [(2, 3), (2, 3)]),
    "linear": (F.linear, [(2, 3), (4, 3), (4,)]),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, w, b, 1e-5), [(2, 3), (3,), (3,)]),
}


@pytest.mark.parametrize("name", FROZEN_CASES)
def test_backward_returns_none_and_computes_nothing_for_frozen_inputs(name):
    op, in_shapes = FROZEN_CASES[name]
    rng = np.random.default_rng(27)
    arrays = [away_from_zero(rng, s) for s in in_shapes]
    for frozen in range(len(arrays)):
        inputs = [Tensor(a, requires_grad=i != frozen) for i, a in enumerate(arrays)]
        out = op(*inputs)
        fn, ctx, node_inputs = out._node
        grads = fn.backward(ctx, rng.standard_normal(out.shape))  # the op's own backward, not the engine's loop
        for x, g in zip(node_inputs, grads):
            assert (g is None) == (not x.requires_grad), f"{name}: input frozen={not x.requires_grad}"
        out.backward(rng.standard_normal(out.shape))
        assert inputs[frozen].grad is None
        assert all(x.grad is not None for i, x in enumerate(inputs) if i != frozen)


def test_frozen_layers_in_a_model_skip_their_weight_gradients(monkeypatch):
    """Adapter-style training: base layers frozen, one layer trainable. A spy on the fused linear backward shows
    which gradients each call computed: the first layer (no trainable input) is never even called."""
    calls, original = [], F.Linear.backward

    def spy(ctx, g):
        grads = original(ctx, g)
        calls.append((ctx.needs_input_grad, tuple(gr is not None for gr in grads)))
        return grads

    monkeypatch.setattr(F.Linear, "backward", staticmethod(spy))
    rng = np.random.default_rng(28)
    model = nn.Sequential(nn.Linear(4, 5, rng=rng, dtype=np.float64), nn.Linear(5, 6, rng=rng, dtype=np.float64),
                          nn.Linear(6, 3, rng=rng, dtype=np.float64))
    model.requires_grad_(False)
    model[1].requires_grad_(True)
    assert model.num_parameters(trainable_only=True) == 5 * 6 + 6
    loss = F.cross_entropy(model(Tensor(rng.standard_normal((2, 4)))), np.array([0, 2]))
    loss.backward()
    assert calls == [((True, False, False), (True, False, False)),  # layer 2: dx only, no dW / db
                     ((False, True, True), (False, True, True))]  # layer 1: dW and db, no dx (input frozen)
    for i, layer in enumerate(model):
        assert (layer.weight.grad is not None) == (i == 1) and (layer.bias.grad is not None) == (i == 1)


# ---- determinism and dtypes end to end, on a small model -----------------------------------------------------------
class TinyClassifier(nn.Module):
    """Embedding -> attention-like softmax mixing -> Linear -> GELU -> LayerNorm -> Dropout -> Linear."""

    def __init__(self, dtype, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.embed = nn.Embedding(11, 6, dtype=dtype, init_std=0.5, rng=rng)
        self.dense = nn.Linear(6, 7, dtype=dtype, init_std=0.5, rng=rng)
        self.norm = nn.LayerNorm(7, dtype=dtype)
        self.drop = nn.Dropout(0.2, rng=np.random.default_rng(seed + 1))
        self.head = nn.Linear(7, 3, dtype=dtype, init_std=0.5, rng=rng)

    def forward(self, ids):
        h = self.embed(ids)  # (B, T, 6)
        scores = (h @ h.swapaxes(-1, -2)) / math.sqrt(6)  # (B, T, T)
        h = F.softmax(scores, -1) @ h
        h = self.drop(self.norm(F.gelu(self.dense(h))))
        return self.head(h.mean(axis=1))  # (B, 3)


IDS, LABELS = np.array([[1, 4, 4, 9], [0, 2, 10, 3]]), np.array([2, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_input_gives_bit_identical_gradients(dtype):
    runs = []
    for _ in range(2):
        model = TinyClassifier(dtype)
        F.cross_entropy(model(IDS), LABELS).backward()
        runs.append([p.grad for p in model.parameters()])
    for g0, g1 in zip(*runs):
        assert np.array_equal(g0, g1)
    model = TinyClassifier(dtype)  # and the same model twice, gradients reset in between
    grads = []
    for _ in range(2):
        model.zero_grad()
        model.drop.rng = np.random.default_rng(1)
        F.cross_entropy(model(IDS), LABELS).backward()
        grads.append([p.grad for p in model.parameters()])
    assert all(np.array_equal(a, b) for a, b in zip(*grads))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_model_keeps_its_dtype_end_to_end(dtype):
    model = TinyClassifier(dtype)
    decay = [p for n, p in model.named_parameters() if "norm" not in n and not n.endswith("bias")]
    rest = [p for n, p in model.named_parameters() if "norm" in n or n.endswith("bias")]
    opt = optim.AdamW([{"params": decay}, {"params": rest, "weight_decay": 0.0}], lr=1e-2, eps=1e-6)
    for _ in range(2):
        opt.zero_grad()
        loss = F.cross_entropy(model(IDS), LABELS)
        assert loss.dtype == dtype
        assert all(node.dtype == dtype for node in loss._topological_order())  # every intermediate value
        loss.backward()
        assert all(p.grad.dtype == dtype for p in model.parameters())
        optim.clip_grad_norm_(model.parameters(), max_norm=0.1)
        assert all(p.grad.dtype == dtype for p in model.parameters())
        opt.step()
    assert all(p.dtype == dtype for p in model.parameters())
    assert all(s["exp_avg"].dtype == dtype and s["exp_avg_sq"].dtype == dtype for s in opt.state.values())
    with no_grad():
        assert model.eval()(IDS).dtype == dtype


# ---- nn API --------------------------------------------------------------------------------------------------------
def test_embedding_layer_norm_and_sequential_modules():
    rng = np.random.default_rng(29)
    emb = nn.Embedding(5, 3, dtype=np.float64, rng=rng)
    ids = np.array([[4, 0], [4, 4]])
    np.testing.assert_array_equal(emb(ids).data, emb.weight.data[ids])
    check_grads(lambda w: F.embedding(ids, w), emb.weight)

    norm = nn.LayerNorm(3, eps=1e-5, dtype=np.float64)
    assert norm.weight.shape == norm.bias.shape == (3,) and norm.eps == 1e-5
    x = rng.standard_normal((2, 3))
    xc = x - x.mean(-1, keepdims=True)
    np.testing.assert_allclose(norm(Tensor(x)).data, xc / np.sqrt((xc**2).mean(-1, keepdims=True) + 1e-5),
                               rtol=1e-12, atol=1e-14)

    seq = nn.Sequential(nn.Linear(3, 4, rng=rng, dtype=np.float64), nn.Linear(4, 2, rng=rng, dtype=np.float64))
    expected = (x @ seq[0].weight.data.T + seq[0].bias.data) @ seq[1].weight.data.T + seq[1].bias.data
    np.testing.assert_allclose(seq(Tensor(x)).data, expected, rtol=1e-12)
    assert seq.parameters() == [p for _, p in seq.named_parameters()]
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert all(type(v) is np.ndarray for v in seq.state_dict().values())
    assert seq.requires_grad_(False) is seq and seq.num_parameters(trainable_only=True) == 0


def test_module_astype_round_trip_keeps_values():
    layer = nn.Linear(3, 2, rng=np.random.default_rng(30))
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    layer.astype(np.float64).astype(np.float32)
    for k, v in layer.state_dict().items():
        assert v.dtype == np.float32 and np.array_equal(v, before[k])


# ---- optim API -----------------------------------------------------------------------------------------------------
def make_params(seed=0):
    rng = np.random.default_rng(seed)
    return [nn.Parameter(rng.standard_normal(s)) for s in [(3, 2), (2,), (4,)]]


def step_with(opt, params, t):
    for p in params:
        p.grad = np.random.default_rng(1000 + t).standard_normal(p.shape)
    opt.step()


def test_adamw_defaults_match_the_reference_update_rule():
    params = make_params()
    p0 = params[0].data.copy()
    opt = optim.AdamW(params)  # lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01, as torch
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for t in range(1, 7):
        step_with(opt, params, t)
        g = params[0].grad
        p = p * (1 - 1e-3 * 0.01)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        p = p - 1e-3 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    np.testing.assert_allclose(params[0].data, p, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls", [optim.Adam, optim.AdamW, optim.SGD])
def test_one_checkpoint_resumes_two_optimizers_identically(cls):
    """Loading must copy the saved state: if two optimizers shared the checkpoint's arrays, the first one's
    in-place moment updates would leak into the second."""
    params = make_params()
    opt = cls(params, lr=1e-2, **({"momentum": 0.9} if cls is optim.SGD else {}))
    for t in range(3):
        step_with(opt, params, t)
    checkpoint = opt.state_dict()
    saved = {i: {k: np.copy(v) for k, v in s.items()} for i, s in checkpoint["state"].items()}
    copies = []
    for _ in range(2):
        ps = [nn.Parameter(p.data.copy()) for p in params]
        fresh = cls(ps, lr=0.5)
        fresh.load_state_dict(checkpoint)
        assert fresh.param_groups[0]["lr"] == 1e-2
        for t in range(3, 6):
            step_with(fresh, ps, t)
        copies.append(ps)
    for t in range(3, 6):
        step_with(opt, params, t)
    for p, q, r in zip(params, *copies):
        assert np.array_equal(p.data, q.data) and np.array_equal(p.data, r.data)
    for i, s in checkpoint["state"].items():
        assert all(np.array_equal(np.asarray(v), saved[i][k]) for k, v in s.items())


@pytest.mark.parametrize("total", [100, 37, 1000])
def test_linear_warmup_decay_at_start_end_of_warmup_middle_and_last_step(total):
    warmup = int(total * 0.1)
    schedule = [optim.linear_warmup_decay(step, total, warmup_fraction=0.1) for step in range(total + 1)]
    assert schedule[0] == 0.0
    assert schedule[warmup] == 1.0 and max(schedule) == 1.0
    assert schedule[warmup // 2] == pytest.approx((warmup // 2) / warmup, abs=1e-15)
    middle = (warmup + total) // 2
    assert schedule[middle] == pytest.approx((total - middle) / (total - warmup), abs=1e-15)
    assert schedule[total - 1] == pytest.approx(1 / (total - warmup), abs=1e-15)  # last training step
    assert schedule[total] == 0.0
    assert all(a <= b for a, b in zip(schedule[:warmup], schedule[1:warmup + 1]))  # rises, then falls
    assert all(a >= b for a, b in zip(schedule[warmup:], schedule[warmup + 1:]))


def test_module_level_zero_grad():
    params = make_params()
    for p in params:
        p.grad = np.ones(p.shape)
    optim.zero_grad(params)
    assert all(p.grad is None for p in params)

