"""The gradient checker itself: it accepts a right backward and rejects a wrong one, in both modes, and names
what disagreed (with the values); it refuses float32; it leaves its inputs as it found them; its defaults, its
random upstream gradient, the classic backward mistakes it catches, and its memory in full mode."""

import inspect
import tracemalloc

import numpy as np
import pytest
from autograd_helpers import Cube, check_grads, leaf
from helpers import TOL

from autograd import Function, Tensor
from autograd.gradcheck import GradcheckError, gradcheck


@pytest.fixture
def cube():
    yield Cube
    Cube.wrong_at = None


def inputs(shape=(2, 3), seed=0):
    """A constant first, so the checked tensor is input 1 (the error must name it by position)."""
    rng = np.random.default_rng(seed)
    return [Tensor(rng.standard_normal(shape)), Tensor(rng.uniform(0.5, 1.5, shape), requires_grad=True)]


def fn(c, x):
    return Cube.apply(x) * c


@pytest.mark.parametrize("fast", [False, True])
def test_right_backward_passes(cube, fast):
    assert gradcheck(fn, inputs(), fast=fast, **TOL["gradcheck"])


def test_full_mode_names_the_input_and_the_element(cube):
    cube.wrong_at = 4  # flat index 4 of a (2, 3) input is element (1, 1)
    with pytest.raises(GradcheckError, match=r"input 1 \(shape \(2, 3\)\), element \(1, 1\), output element 4"):
        gradcheck(fn, inputs(), fast=False, **TOL["gradcheck"])


def test_fast_mode_names_the_input(cube):
    cube.wrong_at = "all"
    with pytest.raises(GradcheckError, match=r"input 1 \(shape \(2, 3\)\): random projection"):
        gradcheck(fn, inputs(), fast=True, **TOL["gradcheck"])


def test_large_inputs_choose_fast_mode_and_still_catch_a_wrong_gradient(cube):
    cube.wrong_at = "all"
    with pytest.raises(GradcheckError, match="random projection"):  # 200 x 200 > 20,000: projections
        gradcheck(fn, inputs(shape=(200,)), **TOL["gradcheck"])


def test_refuses_float32_inputs():
    x = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda x: x * x, [x])


def test_refuses_nothing_to_check_and_non_tensor_outputs():
    with pytest.raises(ValueError, match="requires_grad"):
        gradcheck(lambda x: x * x, [Tensor(np.ones(3))])
    with pytest.raises(TypeError, match="must return a Tensor"):
        gradcheck(lambda x: x.data, [Tensor(np.ones(3), requires_grad=True)])


@pytest.mark.parametrize("fast", [False, True])
def test_leaves_inputs_and_grads_as_it_found_them(cube, fast):
    args = inputs()
    before = [a.data.copy() for a in args]
    gradcheck(fn, args, fast=fast, **TOL["gradcheck"])
    for a, b in zip(args, before):
        assert np.array_equal(a.data, b)
    assert args[1].grad is None


# ---- its contract: defaults, reported values, random upstream, classic mistakes, memory ----------------------
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
