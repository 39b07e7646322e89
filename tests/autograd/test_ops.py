"""The primitives of autograd/ops.py: forward values against NumPy, gradients against central differences in
float64 on Hypothesis-drawn shapes (broadcasting included), reflected operators with a constant on the left,
and the conventions (max ties, scatter-add)."""

import math

import numpy as np
import pytest
from autograd_helpers import away_from_zero, check_grads, distinct, leaf, nonscalar_shapes, seeds, shapes
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from autograd import Tensor, concatenate, stack, where

broadcast_pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=4)


# ---- elementwise binary, with broadcasting ------------------------------------------------------------------
BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
}


@pytest.mark.parametrize("name", BINARY)
@given(shapes=broadcast_pairs, seed=seeds)
def test_binary_op_broadcasts_values_and_gradients(name, shapes, seed):
    op, reference = BINARY[name]
    rng = np.random.default_rng(seed)
    (sa, sb) = shapes.input_shapes
    a, b = leaf(rng.standard_normal(sa)), leaf(away_from_zero(rng, sb))  # b is a divisor: keep it off 0
    out = op(a, b)
    assert out.shape == shapes.result_shape
    np.testing.assert_array_equal(out.data, reference(a.data, b.data))
    check_grads(op, a, b)


@pytest.mark.parametrize("name", BINARY)
def test_binary_op_with_constant_on_either_side(name):
    op, reference = BINARY[name]
    rng = np.random.default_rng(0)
    x, c = leaf(away_from_zero(rng, (3, 2))), away_from_zero(rng, (2,))
    np.testing.assert_array_equal(op(x, c).data, reference(x.data, c))
    np.testing.assert_array_equal(op(c, x).data, reference(c, x.data))
    check_grads(lambda x: op(x, c), x)
    check_grads(lambda x: op(c, x), x)


# ---- matmul -------------------------------------------------------------------------------------------------
@given(batch=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3),
       nkm=st.tuples(*[st.integers(1, 4)] * 3), seed=seeds)
def test_matmul_batched_with_broadcast_batch_axes(batch, nkm, seed):
    n, k, m = nkm
    rng = np.random.default_rng(seed)
    a = leaf(rng.standard_normal(batch.input_shapes[0] + (n, k)))
    b = leaf(rng.standard_normal(batch.input_shapes[1] + (k, m)))
    np.testing.assert_allclose((a @ b).data, np.matmul(a.data, b.data), rtol=1e-12, atol=0)
    check_grads(lambda a, b: a @ b, a, b)


@pytest.mark.parametrize("shape_a, shape_b", [
    ((3,), (3,)),          # (K,) @ (K,) -> ()
    ((3,), (3, 4)),        # (K,) @ (K, M) -> (M,)
    ((2, 3), (3,)),        # (N, K) @ (K,) -> (N,)
    ((3,), (2, 3, 4)),     # (K,) @ (B, K, M) -> (B, M)
    ((2, 5, 3), (3,)),     # (B, N, K) @ (K,) -> (B, N)
])
def test_matmul_one_dimensional_operands(shape_a, shape_b):
    rng = np.random.default_rng(1)
    a, b = leaf(rng.standard_normal(shape_a)), leaf(rng.standard_normal(shape_b))
    np.testing.assert_allclose((a @ b).data, np.matmul(a.data, b.data), rtol=1e-12, atol=0)
    check_grads(lambda a, b: a @ b, a, b)


# ---- elementwise unary ----------------------------------------------------------------------------------------
UNARY = {  # name: (op, NumPy reference, input domain)
    "neg": (lambda x: -x, np.negative, "any"),
    "exp": (lambda x: x.exp(), np.exp, "any"),
    "log": (lambda x: x.log(), np.log, "positive"),
    "sqrt": (lambda x: x.sqrt(), np.sqrt, "positive"),
    "tanh": (lambda x: x.tanh(), np.tanh, "any"),
}


@pytest.mark.parametrize("name", UNARY)
@given(shape=shapes, seed=seeds)
def test_unary_op_values_and_gradients(name, shape, seed):
    op, reference, domain = UNARY[name]
    rng = np.random.default_rng(seed)
    x = leaf(rng.uniform(0.3, 3.0, shape) if domain == "positive" else rng.uniform(-2, 2, shape))
    np.testing.assert_array_equal(op(x).data, reference(x.data))
    check_grads(op, x)


@given(shape=shapes, exponent=st.sampled_from([-2.0, -1.0, -0.5, 0.5, 2.0, 3.0, 1.7]), seed=seeds)
def test_pow_by_constant(shape, exponent, seed):
    x = leaf(np.random.default_rng(seed).uniform(0.3, 2.0, shape))  # positive: fractional powers are real
    np.testing.assert_allclose((x**exponent).data, x.data**exponent, rtol=1e-15, atol=0)
    check_grads(lambda x: x**exponent, x)


def test_pow_with_tensor_exponent_and_constant_base():
    rng = np.random.default_rng(2)
    a, b = leaf(rng.uniform(0.5, 2.0, (2, 3))), leaf(rng.standard_normal((3,)))
    np.testing.assert_allclose((a**b).data, a.data**b.data, rtol=1e-13)
    np.testing.assert_allclose((2.5**b).data, 2.5**b.data, rtol=1e-13)
    check_grads(lambda a, b: a**b, a, b)
    check_grads(lambda b: 2.5**b, b)


# ---- reductions -------------------------------------------------------------------------------------------------
def axes_for(shape):
    """None, one axis (negative ones included) or a tuple of distinct axes (possibly negative)."""
    nd = len(shape)
    return st.one_of(st.none(), st.integers(-nd, nd - 1), hnp.valid_tuple_axes(nd, min_size=1))


@pytest.mark.parametrize("name", ["sum", "mean"])
@given(data=st.data(), shape=nonscalar_shapes, keepdims=st.booleans(), seed=seeds)
def test_sum_and_mean_over_axes(name, data, shape, keepdims, seed):
    axis = data.draw(axes_for(shape), label="axis")
    x = leaf(np.random.default_rng(seed).standard_normal(shape))
    op = lambda x: getattr(x, name)(axis=axis, keepdims=keepdims)  # noqa: E731
    expected = getattr(np, name)(x.data, axis=axis, keepdims=keepdims)
    assert op(x).shape == expected.shape
    np.testing.assert_allclose(op(x).data, expected, rtol=1e-12, atol=1e-15)
    check_grads(op, x)


@given(data=st.data(), shape=nonscalar_shapes, keepdims=st.booleans(), seed=seeds)
def test_max_over_axes_without_ties(data, shape, keepdims, seed):
    axis = data.draw(axes_for(shape), label="axis")
    x = leaf(distinct(np.random.default_rng(seed), shape))  # gaps of 0.1 >> eps: no tie, no kink
    np.testing.assert_array_equal(x.max(axis=axis, keepdims=keepdims).data,
                                  np.max(x.data, axis=axis, keepdims=keepdims))
    check_grads(lambda x: x.max(axis=axis, keepdims=keepdims), x)


def test_max_splits_gradient_evenly_between_ties():
    x = leaf([[1.0, 3.0, 3.0, 0.0],
              [2.0, 2.0, 2.0, 2.0]])
    g = np.array([0.7, -1.3])  # a random-ish upstream gradient, one per row
    x.max(axis=1).backward(g)
    expected = np.array([[0, 0.35, 0.35, 0],
                         [-0.325, -0.325, -0.325, -0.325]])
    np.testing.assert_allclose(x.grad, expected, rtol=1e-15)

    x.grad = None
    x.max().backward(np.array(2.0))  # over everything: the two 3.0s share it
    np.testing.assert_array_equal(x.grad, np.where(x.data == 3.0, 1.0, 0.0))


# ---- shapes and indexing ------------------------------------------------------------------------------------
@given(shape=shapes, seed=seeds, data=st.data())
def test_reshape_and_transpose(shape, seed, data):
    x = leaf(np.random.default_rng(seed).standard_normal(shape))
    perm = data.draw(st.permutations(range(len(shape))), label="perm")
    negative = [a - len(shape) if flip else a for a, flip in zip(perm, data.draw(st.lists(
        st.booleans(), min_size=len(shape), max_size=len(shape)), label="negative"))]
    np.testing.assert_array_equal(x.transpose(*negative).data, np.transpose(x.data, negative))
    np.testing.assert_array_equal(x.T.data, x.data.T)
    np.testing.assert_array_equal(x.reshape(-1).data, x.data.reshape(-1))
    check_grads(lambda x: x.transpose(*negative), x)
    check_grads(lambda x: x.reshape(x.size, 1), x)


@pytest.mark.parametrize("axes", [(0, -1, 1), (-1, 0, 1), (2, -3, -2), (-2, -1, -3)])
def test_transpose_with_negative_axes(axes):
    x = leaf(np.random.default_rng(3).standard_normal((2, 3, 4)))
    np.testing.assert_array_equal(x.transpose(axes).data, np.transpose(x.data, axes))
    check_grads(lambda x: x.transpose(*axes), x)


@pytest.mark.parametrize("a, b", [(0, 1), (-1, 0), (-1, -3), (1, 1)])
def test_swapaxes(a, b):
    x = leaf(np.random.default_rng(3).standard_normal((2, 3, 4)))
    np.testing.assert_array_equal(x.swapaxes(a, b).data, np.swapaxes(x.data, a, b))
    check_grads(lambda x: x.swapaxes(a, b), x)


@given(shape=nonscalar_shapes, seed=seeds, data=st.data())
def test_getitem_basic_indices(shape, seed, data):
    index = data.draw(hnp.basic_indices(shape, allow_newaxis=True), label="index")
    x = leaf(np.random.default_rng(seed).standard_normal(shape))
    np.testing.assert_array_equal(x[index].data, x.data[index])
    assume(x.data[index].size > 0)
    check_grads(lambda x: x[index], x)


def test_getitem_repeated_integer_indices_scatter_add():
    x = leaf(np.arange(12.0).reshape(4, 3))
    g = np.random.default_rng(4).standard_normal((5, 3))
    x[np.array([2, 0, 2, 2, 3])].backward(g)
    expected = np.zeros((4, 3))
    expected[0] = g[1]
    expected[2] = g[0] + g[2] + g[3]  # three uses: the sum, not the last one
    expected[3] = g[4]
    np.testing.assert_array_equal(x.grad, expected)
    check_grads(lambda x: x[[1, 1, 3], [0, 0, 2]], x)  # two integer arrays, a repeated pair
    check_grads(lambda x: x[:, [2, 2, 0]], x)


def test_getitem_boolean_mask():
    rng = np.random.default_rng(5)
    x = leaf(rng.standard_normal((3, 4)))
    mask = rng.random((3, 4)) > 0.4
    np.testing.assert_array_equal(x[mask].data, x.data[mask])
    check_grads(lambda x: x[mask], x)
    check_grads(lambda x: x[np.array([True, False, True])], x)


def test_getitem_with_tensor_index():
    x = leaf(np.arange(6.0))
    x[Tensor(np.array([5, 1, 5]))].backward(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(x.grad, [0, 2, 0, 0, 0, 4])


# ---- joining and selecting ----------------------------------------------------------------------------------
@given(shape=nonscalar_shapes, sizes=st.lists(st.integers(1, 3), min_size=1, max_size=3), seed=seeds, data=st.data())
def test_concatenate(shape, sizes, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    rng = np.random.default_rng(seed)
    parts = [leaf(rng.standard_normal(shape[:axis % len(shape)] + (n,) + shape[axis % len(shape) + 1:]))
             for n in sizes]
    np.testing.assert_array_equal(concatenate(parts, axis).data, np.concatenate([p.data for p in parts], axis))
    check_grads(lambda *ps: concatenate(ps, axis), *parts)


@given(shape=shapes, n=st.integers(1, 3), seed=seeds, data=st.data())
def test_stack(shape, n, seed, data):
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)), label="axis")
    rng = np.random.default_rng(seed)
    parts = [leaf(rng.standard_normal(shape)) for _ in range(n)]
    np.testing.assert_array_equal(stack(parts, axis).data, np.stack([p.data for p in parts], axis))
    check_grads(lambda *ps: stack(ps, axis), *parts)


def test_concatenate_and_stack_with_a_constant():
    x, c = leaf(np.ones((2, 2))), np.zeros((1, 2))
    check_grads(lambda x: concatenate([c, x, c]), x)
    check_grads(lambda x: stack([x, np.ones((2, 2))], axis=-1), x)


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=4), seed=seeds)
def test_where(shapes, seed):
    rng = np.random.default_rng(seed)
    s_cond, s_a, s_b = shapes.input_shapes
    cond = rng.random(s_cond) > 0.5
    a, b = leaf(rng.standard_normal(s_a)), leaf(rng.standard_normal(s_b))
    np.testing.assert_array_equal(where(cond, a, b).data, np.where(cond, a.data, b.data))
    check_grads(lambda a, b: where(cond, a, b), a, b)
    check_grads(lambda a: where(Tensor(cond), a, 0.0), a)


def test_cast_gradient_comes_back_in_the_input_dtype():
    x = leaf(np.random.default_rng(6).standard_normal((2, 3)))
    w = np.random.default_rng(7).standard_normal((2, 3))
    # Through extended precision and back: exact for float64 values, so finite differences stay float64-sharp.
    check_grads(lambda x: (x.astype(np.longdouble) * w).astype(np.float64), x)
    x32 = Tensor(x.data.astype(np.float32), requires_grad=True)
    y = x32.astype(np.float64)
    assert y.dtype == np.float64
    y.backward(w)
    assert x32.grad.dtype == np.float32
    np.testing.assert_array_equal(x32.grad, w.astype(np.float32))


def test_pow_zero_has_zero_gradient_even_at_zero():
    """d/dx x**0 = 0 everywhere; the general formula p * x**(p-1) would give 0 * inf = NaN at x = 0."""
    z = Tensor(np.array([0.0, 1.0, -2.0]), requires_grad=True)
    (z ** 0).sum().backward()
    np.testing.assert_array_equal(z.grad, [0.0, 0.0, 0.0])


# ---- drawn shapes for the cases above, reflected operators, max ties -----------------------------------------
def normalised_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    return tuple(sorted(a % ndim for a in ((axis,) if isinstance(axis, int) else axis)))


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
