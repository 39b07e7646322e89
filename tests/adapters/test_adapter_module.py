"""BottleneckAdapter alone: its formula with each non-linearity, its size, its initialisation, its gradients."""

import math

import numpy as np
import pytest
from adapter_helpers import NP_ACT, inside_norm, np_adapter
from helpers import TOL
from hypothesis import given
from hypothesis import strategies as st

from adapters import BottleneckAdapter
from adapters.bottleneck import truncated_normal
from autograd import Tensor, no_grad
from autograd.gradcheck import gradcheck

B, T, D, M = 2, 7, 12, 5


def make(non_linearity="gelu_new", init="truncated_normal", init_std=0.5, parallel=False, layer_norm=False, seed=0,
         d=D, m=M):
    """A float64 adapter with random (not zero) biases, so every term of the formula shows in its output."""
    rng = np.random.default_rng(seed)
    adapter = BottleneckAdapter(d, m, non_linearity, init, init_std, parallel, layer_norm, dtype=np.float64, rng=rng)
    adapter.down.bias.data = rng.normal(0, 0.5, m)
    adapter.up.bias.data = rng.normal(0, 0.5, d)
    if layer_norm:
        adapter.layer_norm.weight.data = rng.normal(1, 0.3, d)
        adapter.layer_norm.bias.data = rng.normal(0, 0.3, d)
    return adapter


def inputs(seed=1, d=D):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1.5, (B, T, d)), rng.normal(0, 1.5, (B, T, d))  # a (sub-layer output), x (its input)


@pytest.mark.parametrize("name", ["gelu_new", "gelu", "relu", "silu", "tanh"])
def test_each_non_linearity_matches_its_numpy_formula(name):
    adapter = make(name)
    a, x = inputs()
    with no_grad():
        got = inside_norm(adapter, a, x)
    Wd, bd, Wu, bu = adapter.down.weight.data, adapter.down.bias.data, adapter.up.weight.data, adapter.up.bias.data
    want = a + NP_ACT[name](a @ Wd.T + bd) @ Wu.T + bu  # Houlsby2019 §2.1
    assert got.shape == (B, T, D)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # the five functions really differ on these inputs, so a swapped table entry would fail
    others = [n for n in NP_ACT if n != name]
    for other in others:
        wrong = a + NP_ACT[other](a @ Wd.T + bd) @ Wu.T + bu
        assert np.abs(wrong - got).max() > 1e-6, other


def test_gelu_forms_are_the_tanh_and_erf_ones():
    x = np.array([-3.0, -1.0, -0.3, 0.0, 0.7, 2.0])
    # reference values of GELU(x) = x Phi(x) (erf form) and its tanh approximation
    np.testing.assert_allclose(NP_ACT["gelu"](x), x * 0.5 * (1 + np.vectorize(math.erf)(x / 2**0.5)),
                               rtol=0, atol=1e-15)
    assert abs(NP_ACT["gelu_new"](np.array([1.0]))[0] - 0.8411919906082768) < 1e-15
    assert abs(NP_ACT["gelu"](np.array([1.0]))[0] - 0.8413447460685429) < 1e-15


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_sequential_reads_a_and_parallel_reads_x(parallel, layer_norm):
    adapter = make("gelu_new", parallel=parallel, layer_norm=layer_norm)
    a, x = inputs()
    with no_grad():
        got = inside_norm(adapter, a, x)
    np.testing.assert_allclose(got, np_adapter(adapter, a, x), rtol=0, atol=1e-12)
    Wd, bd, Wu, bu = adapter.down.weight.data, adapter.down.bias.data, adapter.up.weight.data, adapter.up.bias.data
    h = x if parallel else a
    if not layer_norm:
        np.testing.assert_allclose(got, a + NP_ACT["gelu_new"](h @ Wd.T + bd) @ Wu.T + bu, rtol=0, atol=1e-12)
    # the residual is always a; the branch reads the other input only in the other form
    h_wrong = a if parallel else x
    assert np.abs(got - (a + NP_ACT["gelu_new"](h_wrong @ Wd.T + bd) @ Wu.T + bu)).max() > 1e-3


@given(d=st.integers(1, 40), m=st.integers(1, 40), layer_norm=st.booleans())
def test_parameter_count_is_2md_plus_d_plus_m(d, m, layer_norm):
    adapter = BottleneckAdapter(d, m, layer_norm=layer_norm, dtype=np.float64, rng=np.random.default_rng(0))
    shapes = {k: p.shape for k, p in adapter.named_parameters()}
    core = {"down.weight": (m, d), "down.bias": (m,), "up.weight": (d, m), "up.bias": (d,)}
    assert shapes == ({**core, "layer_norm.weight": (d,), "layer_norm.bias": (d,)} if layer_norm else core)
    by_hand = m * d + m + d * m + d
    assert by_hand == 2 * m * d + d + m
    assert adapter.num_parameters() == by_hand + (2 * d if layer_norm else 0)
    assert sum(int(np.prod(s)) for s in shapes.values()) == adapter.num_parameters()


def test_minilm_module_size():
    """all-MiniLM-L6-v2 shape arithmetic: D=384, M=64 -> 49,600 per module, 595,200 for 12."""
    adapter = BottleneckAdapter(384, 64, dtype=np.float32, rng=np.random.default_rng(0))
    assert adapter.num_parameters() == 2 * 64 * 384 + 384 + 64 == 49_600
    assert 12 * adapter.num_parameters() == 595_200


def test_truncated_normal_init_is_cut_at_two_std_with_the_right_spread():
    std = 1e-3
    adapter = BottleneckAdapter(384, 256, init="truncated_normal", init_std=std, dtype=np.float64,
                                rng=np.random.default_rng(0))
    for w in (adapter.down.weight.data, adapter.up.weight.data):
        assert np.abs(w).max() <= 2 * std
        assert np.abs(w).max() > 1.9 * std  # the tails are there, just cut
        # a normal cut at +-2 sigma has std sigma * 0.8796 (1 - 2 * 2 phi(2) / (2 Phi(2) - 1) = 0.7737..., sqrt)
        assert abs(w.std() / std - 0.8796) < 0.01
        assert abs(w.mean()) < 0.01 * std
    assert not adapter.down.bias.data.any() and not adapter.up.bias.data.any()


def test_truncated_normal_redraws_until_inside():
    x = truncated_normal(np.random.default_rng(3), 0.5, (400, 300), np.float64)
    assert x.shape == (400, 300) and x.dtype == np.float64
    assert np.abs(x).max() <= 1.0
    # same draw with a wider bound is a plain normal, which has values beyond 2 std
    y = truncated_normal(np.random.default_rng(3), 0.5, (400, 300), np.float64, bound=100.0)
    assert np.abs(y).max() > 1.0


def test_normal_and_zero_inits():
    std = 0.02
    normal = BottleneckAdapter(384, 256, init="normal", init_std=std, dtype=np.float64, rng=np.random.default_rng(0))
    w = normal.up.weight.data
    assert np.abs(w).max() > 2.5 * std  # not truncated
    assert abs(w.std() / std - 1) < 0.01
    zeros = BottleneckAdapter(12, 5, init="zeros", init_std=1e-3, dtype=np.float64, rng=np.random.default_rng(0))
    assert not zeros.up.weight.data.any() and not zeros.up.bias.data.any() and not zeros.down.bias.data.any()
    assert np.abs(zeros.down.weight.data).max() <= 2e-3 and zeros.down.weight.data.any()  # W_down still random
    a, x = inputs()
    with no_grad():
        assert np.array_equal(zeros(Tensor(a), Tensor(x), lambda t: t).data, x + a)  # norm(x + a), exactly


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(dtype):
    adapter = BottleneckAdapter(12, 5, dtype=dtype, rng=np.random.default_rng(0))
    assert {p.dtype for p in adapter.parameters()} == {np.dtype(dtype)}


@pytest.mark.parametrize("name", ["gelu_new", "gelu", "silu", "tanh", "relu"])
@pytest.mark.parametrize("parallel, layer_norm", [(False, False), (True, True)])
def test_gradcheck_adapter_alone(name, parallel, layer_norm):
    adapter = make(name, parallel=parallel, layer_norm=layer_norm, d=6, m=3)
    a_np, x_np = inputs(d=6)
    a, x = Tensor(a_np, requires_grad=True), Tensor(x_np, requires_grad=True)
    weights = np.random.default_rng(5).standard_normal((B, T, 6))
    assert gradcheck(lambda a, x, *ps: adapter(a, x, lambda t: t) * Tensor(weights), [a, x, *adapter.parameters()],
                     **TOL["gradcheck"])
