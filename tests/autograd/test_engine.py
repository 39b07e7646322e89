"""The engine in autograd/tensor.py: wrapping, graph recording, no_grad, backward (accumulation, freeing,
deep graphs, determinism), frozen inputs and dtypes."""

import numpy as np
import pytest

import autograd.functional as F
from autograd import Function, Tensor, concatenate, is_grad_enabled, no_grad, stack, unbroadcast, where


class Recorder(Function):
    """y = 2 x, keeping its Context so a test can look at what was saved."""

    contexts = []

    @staticmethod
    def forward(ctx, x):
        Recorder.contexts.append(ctx)
        ctx.save_for_backward(x)
        return 2 * x

    @staticmethod
    def backward(ctx, g):
        return 2 * g


# ---- Tensor basics -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_tensor_wraps_without_copy_and_keeps_dtype(dtype):
    a = np.arange(6, dtype=dtype).reshape(2, 3)
    t = Tensor(a)
    assert t.data is a and t.dtype == dtype
    assert t.grad is None and t.is_leaf and not t.requires_grad


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(np.arange(3), requires_grad=True)


def test_comparisons_return_plain_bool_arrays():
    x, y = Tensor(np.array([1.0, 2.0, 3.0])), Tensor(np.array([3.0, 2.0, 1.0]))
    for result, expected in [(x < y, [1, 0, 0]), (x <= 2.0, [1, 1, 0]), (x > y, [0, 0, 1]), (x >= y, [0, 1, 1]),
                             (x == y, [0, 1, 0]), (x != 2.0, [1, 0, 1])]:
        assert type(result) is np.ndarray and result.dtype == bool
        np.testing.assert_array_equal(result, np.array(expected, dtype=bool))


def test_tensor_stays_hashable_by_identity():
    a, b = Tensor(np.zeros(2)), Tensor(np.zeros(2))
    assert len({a, b, a}) == 2


def test_unbroadcast_sums_added_and_stretched_axes():
    g = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(unbroadcast(g, (3, 1)), g.sum(axis=1, keepdims=True))
    np.testing.assert_array_equal(unbroadcast(g, (4,)), g.sum(axis=0))
    np.testing.assert_array_equal(unbroadcast(g, ()), g.sum())
    assert unbroadcast(g, (3, 4)) is g


# ---- graph recording and no_grad ---------------------------------------------------------------------------
def test_no_input_requiring_grad_builds_no_graph():
    y = (Tensor(np.ones(3)) * 2.0).exp().sum()
    assert not y.requires_grad and y._node is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_frozen_input_gets_no_grad():
    x, w = Tensor(np.ones((2, 3)), requires_grad=True), Tensor(np.full((3, 2), 0.5))
    (x @ w).sum().backward()
    assert w.grad is None
    np.testing.assert_array_equal(x.grad, np.ones((2, 3)))


def test_no_grad_records_nothing_and_saves_nothing():
    x = Tensor(np.ones(3), requires_grad=True)
    Recorder.contexts.clear()
    with no_grad():
        assert not is_grad_enabled()
        y = Recorder.apply(x)
        z = (y * x).tanh()
    assert not y.requires_grad and y._node is None
    assert not z.requires_grad and z._node is None
    assert Recorder.contexts[0].saved == ()  # forward asked to save x, the context kept nothing
    assert is_grad_enabled()
    w = Recorder.apply(x)  # grad mode is back
    assert w.requires_grad and w._node is not None and Recorder.contexts[1].saved[0] is x.data


def test_nested_no_grad_restores_each_level_even_after_an_error():
    with no_grad():
        with no_grad():
            assert not is_grad_enabled()
        assert not is_grad_enabled()
        with pytest.raises(ZeroDivisionError):
            with no_grad():
                1 / 0  # noqa: B018
        assert not is_grad_enabled()
    assert is_grad_enabled()


# ---- backward ----------------------------------------------------------------------------------------------
def test_leaf_gradients_accumulate_across_backward_calls():
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    (x * x).sum().backward()
    (3 * x).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * x.data + 3)


def test_backward_twice_needs_retain_graph():
    x = Tensor(np.array([0.5, 1.5]), requires_grad=True)
    y = (x * x).exp().sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()

    x.grad = None
    y = (x * x).exp().sum()
    y.backward(retain_graph=True)
    first = x.grad.copy()
    y.backward()
    np.testing.assert_array_equal(x.grad, 2 * first)


def test_backward_checks_its_upstream_gradient():
    y = Tensor(np.ones(3), requires_grad=True) * 2.0
    with pytest.raises(RuntimeError, match="non-scalar"):
        y.backward()
    with pytest.raises(ValueError, match="expected"):
        y.backward(np.ones(4))


def test_deep_chain_of_100k_ops_has_no_recursion_error():
    x = Tensor(np.array([0.5, -1.0]), requires_grad=True)
    y = x
    for i in range(100_000):
        y = y * 1.00001 if i % 2 else y + 0.001  # d y / d x = 1.00001 ** 50_000
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 1.00001**50_000, rtol=1e-9)


def fan_out_fan_in(x):
    """x feeds many branches that meet again; the order of accumulation decides the low bits."""
    total = x * 0.0
    for k in range(1, 40):
        total = total + (x * (0.1 * k)).tanh() * x + (x @ x.T).sum() / k
    return (total + x[[0, 1, 0, 2]].sum()).sum()


def test_fan_out_fan_in_gradients_are_bit_identical_across_runs():
    data = np.random.default_rng(0).standard_normal((3, 3))
    grads = []
    for _ in range(2):
        x = Tensor(data.copy(), requires_grad=True)
        fan_out_fan_in(x).backward()
        grads.append(x.grad)
    assert np.array_equal(grads[0], grads[1])


# ---- dtypes --------------------------------------------------------------------------------------------------
OPS = {
    "scalar*x": lambda x: 2.0 * x, "x*scalar": lambda x: x * 2.0, "x/int": lambda x: x / 3,
    "int/x": lambda x: 3 / x, "x**2": lambda x: x**2, "x**0.5": lambda x: x**0.5, "2**x": lambda x: 2.0**x,
    "x+int": lambda x: x + 1, "int-x": lambda x: 1 - x, "array+x": lambda x: np.ones(4) + x, "neg": lambda x: -x,
    "exp": lambda x: x.exp(), "log": lambda x: x.log(), "sqrt": lambda x: x.sqrt(), "tanh": lambda x: x.tanh(),
    "sum": lambda x: x.sum(axis=0), "mean": lambda x: x.mean(axis=(0, -1), keepdims=True), "max": lambda x: x.max(1),
    "reshape": lambda x: x.reshape(4, 3), "T": lambda x: x.T, "swapaxes": lambda x: x.swapaxes(0, 1),
    "getitem": lambda x: x[[0, 0], 1:], "matmul": lambda x: x @ x.T, "concatenate": lambda x: concatenate([x, x]),
    "stack": lambda x: stack([x, x], -1), "where": lambda x: where(x.data > 1, x, 0.0),
    "linear": lambda x: F.linear(x, x[:2], x[0, :2]), "relu": F.relu, "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, "tanh"), "silu": F.silu, "softmax": F.softmax, "log_softmax": F.log_softmax,
    "cross_entropy": lambda x: F.cross_entropy(x, np.array([0, 3, -100])),
    "layer_norm": lambda x: F.layer_norm(x, x[0], x[1]), "dropout": lambda x: F.dropout(x, 0.5, True),
    "mse_loss": lambda x: F.mse_loss(x, np.zeros((3, 4))),
    "embedding": lambda x: F.embedding(np.array([2, 0, 2]), x),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", OPS)
def test_every_op_keeps_the_dtype_of_values_and_gradients(name, dtype):
    rng = np.random.default_rng(1)
    x = Tensor(rng.uniform(0.5, 2.0, (3, 4)).astype(dtype), requires_grad=True)
    y = OPS[name](x)
    assert y.dtype == dtype, f"{name}: {y.dtype}"
    y.backward(rng.standard_normal(y.shape).astype(dtype))
    assert x.grad.dtype == dtype, f"{name}: grad {x.grad.dtype}"
