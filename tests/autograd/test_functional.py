"""autograd.functional: forward values against NumPy / SciPy formulas, gradients against central differences,
the fused closed-form backwards against the same formula built from primitives, masking, frozen weights, inputs
left untouched, and activations looked up by name. The float32 kernels are tested in test_kernels.py."""

import numpy as np
import pytest
from autograd_helpers import away_from_zero, check_grads, leaf, nonscalar_shapes, seeds
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import erf, expit
from scipy.special import log_softmax as sp_log_softmax
from scipy.special import softmax as sp_softmax

import autograd.functional as F
from autograd import Function, Tensor, no_grad, ops

# Fused against composite in float64: the same formula evaluated in a different order, O(1) values.
FUSED_TOL = dict(rtol=1e-12, atol=1e-12)
batch_shapes = hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3)


def axis_of(data, shape):
    return data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")


# ---- gradients against finite differences, on drawn shapes ----------------------------------------------------
@given(batch=batch_shapes, io=st.tuples(st.integers(1, 4), st.integers(1, 4)), bias=st.booleans(), seed=seeds)
def test_linear(batch, io, bias, seed):
    (i, o), rng = io, np.random.default_rng(seed)
    x, w, b = leaf(rng.standard_normal(batch + (i,))), leaf(rng.standard_normal((o, i))), leaf(rng.standard_normal(o))
    expected = x.data @ w.data.T + (b.data if bias else 0.0)
    if bias:
        np.testing.assert_allclose(F.linear(x, w, b).data, expected, rtol=1e-12, atol=1e-14)
        check_grads(F.linear, x, w, b)
    else:
        np.testing.assert_allclose(F.linear(x, w).data, expected, rtol=1e-12, atol=1e-14)
        check_grads(F.linear, x, w)


def test_linear_rejects_a_transposed_weight():
    with pytest.raises(ValueError, match=r"\(out, in\)"):
        F.linear(Tensor(np.ones((2, 3))), Tensor(np.ones((3, 4))))


@given(ids_shape=batch_shapes, seed=seeds)
def test_embedding_scatter_adds_into_the_rows_used(ids_shape, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 3, ids_shape)  # 3 of 5 rows at most: repeats are likely, rows 3 and 4 unused
    w = leaf(rng.standard_normal((5, 2)))
    np.testing.assert_array_equal(F.embedding(ids, w).data, w.data[ids])
    check_grads(lambda w: F.embedding(ids, w), w)
    with pytest.raises(IndexError, match="out of range"):
        F.embedding(np.array([0, 5]), w)


ELEMENTWISE = {  # name: (fused op, reference formula on float64 arrays)
    "relu": (F.relu, lambda x: np.maximum(x, 0.0)),
    "gelu": (F.gelu, lambda x: x * 0.5 * (1.0 + erf(x / np.sqrt(2.0)))),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"),
                  lambda x: 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))),
    "silu": (F.silu, lambda x: x * expit(x)),
    "tanh": (F.tanh, np.tanh),
}


@pytest.mark.parametrize("name", ELEMENTWISE)
@given(shape=nonscalar_shapes, seed=seeds)
def test_elementwise_activation(name, shape, seed):
    op, reference = ELEMENTWISE[name]
    x = leaf(away_from_zero(np.random.default_rng(seed), shape, low=0.05, high=4.0))  # relu's kink at 0 avoided
    np.testing.assert_allclose(op(x).data, reference(x.data), rtol=1e-14, atol=1e-15)
    check_grads(op, x)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(shape=nonscalar_shapes, seed=seeds, data=st.data())
def test_softmax_and_log_softmax(name, shape, seed, data):
    axis = axis_of(data, shape)
    op, reference = getattr(F, name), {"softmax": sp_softmax, "log_softmax": sp_log_softmax}[name]
    x = leaf(3 * np.random.default_rng(seed).standard_normal(shape))
    np.testing.assert_allclose(op(x, axis).data, reference(x.data, axis=axis), rtol=1e-12, atol=1e-15)
    check_grads(lambda x: op(x, axis), x)


@given(batch=hnp.array_shapes(min_dims=0, max_dims=2, max_side=4), classes=st.integers(1, 5), seed=seeds)
def test_cross_entropy_against_manual_log_softmax_pick(batch, classes, seed):
    rng = np.random.default_rng(seed)
    logits = leaf(2 * rng.standard_normal(batch + (classes,)))
    targets = rng.integers(0, classes, batch)
    targets[rng.random(batch) < 0.3] = -100  # some ignored rows
    keep = targets != -100
    loss = F.cross_entropy(logits, targets)
    if not keep.any():  # Convention: every row ignored -> NaN (0 / 0), as torch; and no gradient
        assert np.isnan(loss.item())
        loss.backward()
        np.testing.assert_array_equal(logits.grad, 0.0)
        return
    logp = sp_log_softmax(logits.data, axis=-1)
    picked = np.take_along_axis(logp, np.where(keep, targets, 0)[..., None], axis=-1)[..., 0]  # logp[..., t]
    np.testing.assert_allclose(loss.item(), -np.mean(picked[keep]), rtol=1e-12)
    check_grads(lambda z: F.cross_entropy(z, targets), logits)


def test_cross_entropy_custom_ignore_index_gives_ignored_rows_no_gradient():
    rng = np.random.default_rng(8)
    logits, targets = leaf(rng.standard_normal((4, 3))), np.array([2, 0, 0, 1])
    loss = F.cross_entropy(logits, targets, ignore_index=0)
    expected = -np.mean(sp_log_softmax(logits.data, axis=-1)[[0, 3], [2, 1]])
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-12)
    loss.backward()
    np.testing.assert_array_equal(logits.grad[1:3], 0.0)
    check_grads(lambda z: F.cross_entropy(z, targets, ignore_index=0), logits)


@given(batch=batch_shapes, d=st.integers(2, 5), seed=seeds)
def test_layer_norm_against_manual_formula(batch, d, seed):
    rng = np.random.default_rng(seed)
    x = leaf(rng.standard_normal(batch + (d,)))
    w, b = leaf(rng.standard_normal(d)), leaf(rng.standard_normal(d))
    xc = x.data - x.data.mean(-1, keepdims=True)
    expected = xc / np.sqrt((xc**2).mean(-1, keepdims=True) + 1e-5) * w.data + b.data
    np.testing.assert_allclose(F.layer_norm(x, w, b, 1e-5).data, expected, rtol=1e-12, atol=1e-13)
    check_grads(lambda x, w, b: F.layer_norm(x, w, b, 1e-5), x, w, b)


def test_dropout_gradient_is_the_mask_scaling():
    x = leaf(np.random.default_rng(9).standard_normal((4, 5)))
    g = np.random.default_rng(10).standard_normal((4, 5))
    y = F.dropout(x, 0.3, training=True, rng=np.random.default_rng(11))
    mask = (np.random.default_rng(11).random((4, 5)) >= 0.3) / 0.7  # the same draw, as the docstring says
    assert 0 < (mask == 0).sum() < mask.size
    np.testing.assert_array_equal(y.data, x.data * mask)
    y.backward(g)
    np.testing.assert_array_equal(x.grad, g * mask)
    check_grads(lambda x: F.dropout(x, 0.3, True, np.random.default_rng(11)), x)
    assert F.dropout(x, 0.3, training=False) is x


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4), seed=seeds)
def test_mse_loss(shapes, seed):
    rng = np.random.default_rng(seed)
    a, t = leaf(rng.standard_normal(shapes.input_shapes[0])), leaf(rng.standard_normal(shapes.input_shapes[1]))
    np.testing.assert_allclose(F.mse_loss(a, t).item(), np.mean((a.data - t.data) ** 2), rtol=1e-12)
    check_grads(F.mse_loss, a, t)


# ---- fused against composite ------------------------------------------------------------------------------------
class Erf(Function):
    """erf as a primitive, for the composite exact GELU:  y = erf(x),  dx = g * 2 / sqrt(pi) * exp(-x^2)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return erf(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        return g * 2.0 / np.sqrt(np.pi) * np.exp(-x * x)


def composite_softmax(x, axis=1):
    e = (x - x.max(axis=axis, keepdims=True)).exp()
    return e / e.sum(axis=axis, keepdims=True)


def composite_log_softmax(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - shifted.exp().sum(axis=axis, keepdims=True).log()


def composite_cross_entropy(logits, targets, ignore_index=-100):
    logp = composite_log_softmax(logits).reshape(-1, logits.shape[-1])  # (N, C)
    t = targets.reshape(-1)
    rows = np.flatnonzero(t != ignore_index)
    return -logp[rows, t[rows]].mean()


def composite_layer_norm(x, w, b, eps):
    xc = x - x.mean(axis=-1, keepdims=True)
    return xc / ((xc * xc).mean(axis=-1, keepdims=True) + eps).sqrt() * w + b


COMPOSITE = {  # name: (fused, composite, input shapes)
    "softmax": (lambda x: F.softmax(x, 1), composite_softmax, [(2, 5, 3)]),
    "log_softmax": (F.log_softmax, composite_log_softmax, [(3, 6)]),
    "cross_entropy": (lambda z: F.cross_entropy(z, np.array([[1, -100, 4], [0, 2, 2]])),
                      lambda z: composite_cross_entropy(z, np.array([[1, -100, 4], [0, 2, 2]])), [(2, 3, 5)]),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, w, b, 1e-12), lambda x, w, b: composite_layer_norm(x, w, b, 1e-12),
                   [(2, 3, 7), (7,), (7,)]),
    "gelu": (F.gelu, lambda x: x * 0.5 * (1.0 + Erf.apply(x / np.sqrt(2.0))), [(4, 5)]),
    "gelu_tanh": (lambda x: F.gelu(x, "tanh"),
                  lambda x: 0.5 * x * (1.0 + (np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)).tanh()), [(4, 5)]),
    "silu": (F.silu, lambda x: x / (1.0 + (-x).exp()), [(4, 5)]),
}


@pytest.mark.parametrize("name", COMPOSITE)
def test_fused_matches_composite_values_and_gradients(name):
    fused, composite, in_shapes = COMPOSITE[name]
    rng = np.random.default_rng(12)
    arrays = [2 * rng.standard_normal(s) for s in in_shapes]
    grads = []
    for fn in (fused, composite):
        inputs = [leaf(a) for a in arrays]
        out = fn(*inputs)
        out.backward(np.random.default_rng(99).standard_normal(out.shape))  # the same random upstream, twice
        grads.append((out.data, [x.grad for x in inputs]))
    (y_fused, g_fused), (y_comp, g_comp) = grads
    np.testing.assert_allclose(y_fused, y_comp, **FUSED_TOL)
    for gf, gc in zip(g_fused, g_comp):
        np.testing.assert_allclose(gf, gc, **FUSED_TOL)


def test_erf_primitive_used_by_the_composite_gelu():
    check_grads(Erf.apply, leaf(np.linspace(-2, 2, 7)))


# ---- masking and frozen weights ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_fully_masked_row_gives_no_nan(name, dtype):
    rng = np.random.default_rng(13)
    scores = rng.standard_normal((2, 3, 4)).astype(dtype)
    mask = np.ones((2, 3, 4), dtype=bool)
    mask[0, 1, :] = False  # one row fully masked
    mask[1, 2, 1:] = False  # one row partly masked
    x = Tensor(scores, requires_grad=True)
    y = getattr(F, name)(x + np.where(mask, 0.0, np.finfo(dtype).min).astype(dtype))
    y.backward(rng.standard_normal(y.shape).astype(dtype))
    assert not np.isnan(y.data).any() and not np.isnan(x.grad).any()
    if name == "softmax":
        np.testing.assert_allclose(y.data[0, 1], 0.25, rtol=1e-6)  # all equal after the shift: uniform
        assert (y.data[1, 2, 1:] == 0).all() and y.data[1, 2, 0] == 1


class CountingArray(np.ndarray):
    """An ndarray that counts the matmuls it takes part in (`@` dispatches to the np.matmul ufunc)."""

    matmuls = 0

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc is np.matmul:
            CountingArray.matmuls += 1
        inputs = tuple(i.view(np.ndarray) if isinstance(i, CountingArray) else i for i in inputs)
        return getattr(ufunc, method)(*inputs, **kwargs)


@pytest.mark.parametrize("op", [F.linear, lambda x, w: ops.MatMul.apply(x, w.T)])
@pytest.mark.parametrize("weight_trainable, expected_matmuls", [(False, 1), (True, 2)])
def test_frozen_weight_skips_its_gradient_matmul(op, weight_trainable, expected_matmuls):
    rng = np.random.default_rng(14)
    x = Tensor(rng.standard_normal((2, 3, 4)).view(CountingArray), requires_grad=True)
    w = Tensor(rng.standard_normal((5, 4)).view(CountingArray), requires_grad=weight_trainable)
    y = op(x, w)
    CountingArray.matmuls = 0
    y.backward(rng.standard_normal(y.shape))
    assert CountingArray.matmuls == expected_matmuls  # dx always; dW only when W is trainable
    assert x.grad is not None and (w.grad is not None) == weight_trainable


# ---- inputs are never overwritten -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["gelu", "gelu_tanh", "softmax", "softmax_masked", "layer_norm"])
def test_functions_leave_their_input_array_untouched_at_inference(name, dtype):
    fn = {"gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, "tanh"), "softmax": F.softmax,
          "softmax_masked": lambda x: F.softmax(x, mask=np.array([0.0, -1e9, 0.0, 0.0, 0.0])),
          "layer_norm": lambda x: F.layer_norm(x, Tensor(np.ones(5, dtype)), Tensor(np.zeros(5, dtype)))}[name]
    a = np.random.default_rng(15).standard_normal((3, 4, 5)).astype(dtype)
    before = a.copy()
    with no_grad():
        y = fn(Tensor(a))
    assert y.data is not a and not np.shares_memory(y.data, a)
    np.testing.assert_array_equal(a, before)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_keeps_a_float16_input_float16(approximate):
    x = Tensor(np.linspace(-3, 3, 7).astype(np.float16), requires_grad=True)
    y = F.gelu(x, approximate)
    assert y.dtype == np.float16
    fn, ctx, _ = y._node
    assert fn.backward(ctx, np.ones(7, np.float16)).dtype == np.float16  # the op's own backward, before any cast
    reference = ELEMENTWISE["gelu" if approximate == "none" else "gelu_tanh"][1](x.data.astype(np.float64))
    # float16 rounds to 2^-11 relative: a few roundings of y (rtol), and 1 + erf (or 1 + tanh) rounded to 2^-11
    # absolute, times |x|/2 <= 1.5 (atol)
    np.testing.assert_allclose(y.data, reference, rtol=4 * 2.0**-11, atol=1.5 * 2.0**-11 + 2.0**-11)


def test_softmax_mask_must_broadcast_to_the_scores():
    with pytest.raises(ValueError):
        F.softmax(Tensor(np.zeros((3, 4))), mask=np.zeros((2, 3, 4)))  # would enlarge the scores


# ---- activations by name ------------------------------------------------------------------------------------------
SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)
ACTIVATION_FORMULAS = {  # canonical name: reference formula on float64 arrays
    "gelu": lambda x: x * 0.5 * (1.0 + erf(x / np.sqrt(2.0))),
    "gelu_new": lambda x: 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x**3))),
    "gelu_pytorch_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x**3))),
    "relu": lambda x: np.maximum(x, 0.0),
    "silu": lambda x: x * expit(x),
    "tanh": np.tanh,
}


def test_activation_registry_uses_hugging_face_names_with_aliases():
    assert list(F.ACTIVATIONS) == ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "tanh"]
    assert F.ACTIVATION_ALIASES == {"swish": "silu", "gelu_tanh": "gelu_new", "gelu_orig": "gelu"}


@pytest.mark.parametrize("name", list(ACTIVATION_FORMULAS) + ["swish", "gelu_tanh", "gelu_orig"])
def test_activation_by_name_computes_its_formula(name):
    canonical = F.canonical_activation(name)
    assert canonical == F.ACTIVATION_ALIASES.get(name, name)
    assert F.activation(name) is F.ACTIVATIONS[canonical]
    x = leaf(away_from_zero(np.random.default_rng(16), (4, 5), low=0.05, high=4.0))
    np.testing.assert_allclose(F.activation(name)(x).data, ACTIVATION_FORMULAS[canonical](x.data),
                               rtol=1e-14, atol=1e-15)
    check_grads(F.activation(name), x)


def test_exact_and_tanh_gelu_are_told_apart_by_name():
    x = Tensor(np.array([1.0]))
    assert F.activation("gelu")(x).item() == pytest.approx(0.8413447460685429, abs=1e-15)  # x Phi(x)
    assert F.activation("gelu_new")(x).item() == pytest.approx(0.8411919906082768, abs=1e-15)  # tanh form
    assert F.activation("gelu_orig")(x).item() == F.activation("gelu")(x).item()


def test_unknown_activation_names_itself_the_choices_and_the_aliases():
    with pytest.raises(ValueError) as err:
        F.canonical_activation("gelu_fast")
    message = str(err.value)
    for word in ["'gelu_fast'", *F.ACTIVATIONS, *F.ACTIVATION_ALIASES]:
        assert word in message, word
    with pytest.raises(ValueError, match="gelu_fast"):
        F.activation("gelu_fast")


# ---- dropout on drawn shapes, bad options, large negative masks ---------------------------------------------
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


def test_float32_dropout_draws_float32_uniforms_and_keeps_float32():
    x = Tensor(np.random.default_rng(3).standard_normal((6, 7)).astype(np.float32), requires_grad=True)
    y = F.dropout(x, 0.25, True, np.random.default_rng(4))
    keep = np.random.default_rng(4).random((6, 7), dtype=np.float32) >= 0.25  # the documented draw
    assert 0 < keep.sum() < keep.size
    np.testing.assert_array_equal(y.data, np.where(keep, x.data * np.float32(1 / 0.75), 0))
    y.backward(np.ones((6, 7), np.float32))
    assert y.dtype == x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, np.where(keep, np.float32(1 / 0.75), 0))


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
