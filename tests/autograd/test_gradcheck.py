"""The gradient checker itself: it accepts a right backward and rejects a wrong one, in both modes, and names
what disagreed; it refuses float32; it leaves its inputs as it found them."""

import numpy as np
import pytest
from autograd_helpers import Cube
from conftest import TOL

from autograd import Tensor
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
