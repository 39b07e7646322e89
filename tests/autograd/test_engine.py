"""The engine in autograd/tensor.py: wrapping, constants (as_tensor), graph recording, no_grad, backward
(accumulation, freeing, deep graphs, determinism), frozen inputs computing nothing, and dtypes, also end to end
on a small model."""

import math
import weakref

import numpy as np
import pytest
from autograd_helpers import away_from_zero

import autograd
import autograd.functional as F
from autograd import (
    Function,
    Tensor,
    as_tensor,
    concatenate,
    is_grad_enabled,
    nn,
    no_grad,
    optim,
    stack,
    unbroadcast,
    where,
)
from autograd.ops import Add


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_trainable_tensor_also_wraps_without_copy(dtype):
    a = np.ones((2, 3), dtype=dtype)
    t = Tensor(a, requires_grad=True)
    assert t.data is a and t.numpy() is a and t.dtype == dtype and t.shape == (2, 3) and t.requires_grad


def test_detach_shares_the_array_and_cuts_the_graph():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x * 3.0
    d = y.detach()
    assert d.data is y.data and not d.requires_grad and d.is_leaf and d.grad is None
    (d * x).sum().backward()  # d is a constant: x's gradient is d, not d + 3 x (which it would be through y)
    np.testing.assert_array_equal(x.grad, [3.0, 6.0])


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


# ---- constants: as_tensor ------------------------------------------------------------------------------------
def test_as_tensor_returns_a_tensor_unchanged():
    x = Tensor(np.ones(2, dtype=np.float32), requires_grad=True)
    assert as_tensor(x) is x and as_tensor(x, like=Tensor(np.ones(2))) is x  # a Tensor is never cast
    assert autograd.as_tensor is as_tensor


@pytest.mark.parametrize("value", [2, 0.5, [1.0, 2.0], np.arange(3.0), np.float64(1.5), np.arange(3)])
@pytest.mark.parametrize("like_dtype", [np.float32, np.float64, np.int64, None])
def test_as_tensor_wraps_a_constant_in_the_floating_dtype_of_like(value, like_dtype):
    like = None if like_dtype is None else Tensor(np.ones(2, dtype=like_dtype))
    t = as_tensor(value, like)
    assert isinstance(t, Tensor) and not t.requires_grad and t.is_leaf
    floating = like_dtype in (np.float32, np.float64)
    assert t.dtype == (like_dtype if floating else np.asarray(value).dtype)  # an integer `like` casts nothing
    np.testing.assert_array_equal(t.data, np.asarray(value))


def test_function_apply_wraps_numbers_and_arrays_like_its_first_tensor_input():
    only_constants = Recorder.apply(np.arange(3.0))  # no Tensor input: wrapped as it is
    assert only_constants.dtype == np.float64 and not only_constants.requires_grad
    x32 = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    assert Add.apply(x32, 2.0).dtype == np.float32
    y = Add.apply(np.full(3, 0.5), x32)  # the float64 constant comes first; the float32 tensor decides
    assert y.dtype == np.float32 and y.requires_grad
    fn, ctx, inputs = y._node
    assert inputs[0].dtype == np.float32 and not inputs[0].requires_grad
    y.backward(np.ones(3, dtype=np.float32))
    np.testing.assert_array_equal(x32.grad, np.ones(3))


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


class Spy(Function):
    """y = 3 x; counts its backward calls."""

    calls = 0

    @staticmethod
    def forward(ctx, x):
        return 3 * x

    @staticmethod
    def backward(ctx, g):
        Spy.calls += 1
        return 3 * g


def test_a_branch_of_frozen_tensors_is_never_backpropagated():
    frozen, w = Tensor(np.ones(3)), Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    Spy.calls = 0
    h = Spy.apply(frozen)  # nothing here needs a gradient: no node, so nothing to run backward on
    assert h._node is None and not h.requires_grad
    (h * w).sum().backward()
    assert Spy.calls == 0 and frozen.grad is None and h.grad is None
    np.testing.assert_array_equal(w.grad, 3.0)
    (Spy.apply(w) * frozen).sum().backward()  # control: the spy does count when its input is trainable
    assert Spy.calls == 1


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


def test_backward_releases_saved_activations():
    x = Tensor(np.array([[0.5, -1.0], [2.0, 0.1]]), requires_grad=True)
    y = F.layer_norm(F.gelu(x @ x), x[0], x[1]).exp().sum()
    contexts = [node._node[1] for node in y._topological_order() if node._node is not None]
    assert len(contexts) >= 5 and any(ctx.saved for ctx in contexts)  # matmul, gelu, indexing, layer norm, exp, sum
    y.backward()
    assert all(ctx.saved is None for ctx in contexts)  # nothing kept alive once used


def test_backward_frees_intermediate_results_nobody_holds():
    x = Tensor(np.array([[0.5, -1.0], [2.0, 0.1]]), requires_grad=True)
    h = F.gelu(x @ x)
    alive = weakref.ref(h)
    y = h.exp().sum()
    del h  # only the graph holds it now
    assert alive() is not None
    y.backward()
    assert alive() is None  # y is still referenced, but no longer keeps the graph behind it
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_backward_releases_constant_options_such_as_a_dropout_mask():
    x = Tensor(np.ones((4, 5)), requires_grad=True)
    y = F.dropout(x, 0.5, True, np.random.default_rng(0))
    ctx = y._node[1]
    assert ctx.options["keep"].shape == (4, 5)
    y.sum().backward()
    assert ctx.saved is None and not ctx.options


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
    "x-scalar": lambda x: x - 0.5, "array-x": lambda x: np.ones(4) - x, "array*x": lambda x: np.full(4, 2.0) * x,
    "array/x": lambda x: np.ones(4) / x, "x@array": lambda x: x @ np.ones((4, 2)),
    "array@x": lambda x: np.ones((2, 3)) @ x, "x**array": lambda x: x ** np.array([1.0, 2.0, 3.0, 0.5]),
    "array**x": lambda x: np.full(4, 2.0) ** x, "x**x": lambda x: x**x, "max_all": lambda x: x.max(),
    "mean_all": lambda x: x.mean(), "getitem_slice": lambda x: x[1:, ::-2], "transpose": lambda x: x.transpose(1, 0),
    "where_tensors": lambda x: where(x.data > 1, x, x * x), "np.float64*x": lambda x: np.float64(2.0) * x,
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


@pytest.mark.parametrize("name", list(OPS))
def test_every_backward_computes_in_float32_without_the_engines_cast(name):
    """Each node's own backward, called directly, must return float32 for float32 inputs (and each intermediate
    value must be float32): the engine's cast of every gradient would otherwise hide a float64 detour."""
    rng = np.random.default_rng(2)
    x = Tensor(rng.uniform(0.5, 2.0, (3, 4)).astype(np.float32), requires_grad=True)
    y = OPS[name](x)
    nodes = [node for node in y._topological_order() if node._node is not None]
    assert nodes
    for node in nodes:
        fn, ctx, inputs = node._node
        assert node.dtype == np.float32, f"{fn.__name__} forward gives {node.dtype}"
        grads = fn.backward(ctx, rng.standard_normal(node.shape).astype(np.float32))
        grads = grads if isinstance(grads, tuple) else (grads,)
        for inp, g in zip(inputs, grads):
            if inp.requires_grad:
                assert g.dtype == np.float32, f"{fn.__name__}.backward gives {g.dtype}"


@pytest.mark.parametrize("name", OPS)
def test_no_grad_saves_nothing_in_any_op(name, monkeypatch):
    """A spy on every Context: under no_grad each op still runs, but keeps no graph and no activation."""
    import autograd.tensor

    contexts = []

    class SpyContext(autograd.tensor.Context):
        __slots__ = ()

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            contexts.append(self)

    monkeypatch.setattr(autograd.tensor, "Context", SpyContext)
    x = Tensor(np.random.default_rng(3).uniform(0.5, 2.0, (3, 4)), requires_grad=True)
    with no_grad():
        y = OPS[name](x)
    assert contexts and all(ctx.saved == () for ctx in contexts)
    assert y._node is None and not y.requires_grad
    contexts.clear()
    OPS[name](x)  # control: with grad enabled the same ops do record (and those that need it save)
    assert contexts and all(ctx._saving for ctx in contexts)


# ---- frozen inputs: no .grad, and their gradient is not computed -------------------------------------------
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
