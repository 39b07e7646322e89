"""autograd/kernels.py: each float32 kernel against its reference formula evaluated in float64 on the same float32
inputs, on shapes that end blocks mid-row and mid-array; and which Function uses which kernel for which dtype.

Every tolerance below is an error bound derived from the kernel's arithmetic, element by element, with its reason.
Units: EPS32 = 2^-23; one float32 rounding is off by at most EPS32 / 2 of the rounded value. A float32 sum of n
terms is off by at most n / 2 * EPS32 of the sum of the terms' magnitudes when added one after the other (NumPy
along an axis that is not the last one), and by at most about (n / 16 + 2) EPS32 along the contiguous last axis
(NumPy adds 8 interleaved partial sums there, pairwise above 128 terms).
"""

import numpy as np
import pytest
from scipy.special import erf, erfc

import autograd.functional as F
from autograd import Tensor, kernels

EPS32 = float(np.finfo(np.float32).eps)
TINY32 = float(np.finfo(np.float32).tiny)  # below this float32 is subnormal: absolute, not relative, precision
# Abramowitz & Stegun 7.1.26 is within 1.5e-7 of erfc for every a >= 0; evaluated in float32, about ten roundings
# of values <= 1 come on top (Horner steps, exp, the product of the two factors).
ERFC_TOL = 1.5e-7 + 10 * EPS32 / 2


def assert_within(got, ref, bound):
    """|got - ref| <= bound element by element (float64), reporting the worst element relative to its bound."""
    err = np.abs(np.asarray(got, dtype=np.float64) - ref)
    bad = ~(err <= bound)  # NaN counts as bad
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err / np.maximum(bound, 1e-300), 0)), err.shape)
        pytest.fail(f"{bad.sum()} elements out of bound; worst at {i}: got {got[i]!r}, reference {ref[i]!r}, "
                    f"error {err[i]:.3g} > bound {bound[i]:.3g}")


@pytest.fixture
def block(request, monkeypatch):
    """kernels.BLOCK for one test: None keeps the real one, a number sets a small one (blocks end everywhere)."""
    if request.param is not None:
        monkeypatch.setattr(kernels, "BLOCK", request.param)
    return kernels.BLOCK


CASES = [  # (block size, shape): small blocks on small arrays, the real BLOCK = 2^17 on arrays larger than it
    (None, (3, 5, 8)),  # all in one block
    (None, (5, 200, 300)),  # 300,000 elements: rows [0:2], [2:4], [4:5]; flat blocks end mid-row
    (None, (2, (1 << 17) + 5)),  # one row is more than a block: one row per block, flat blocks of 2^17 + a rest
    (1, (4, 3, 2)),  # blocks of one element, one row
    (7, (3, 5, 8)),  # 7 divides neither a row (8) nor the array (120)
    (64, (37,)),  # one axis only
]
case_ids = [f"block={b or 'BLOCK'}-{'x'.join(map(str, s))}" for b, s in CASES]


def draw(seed, shape):
    """float32 normals scaled element by element by 1, 3 or 30: the bulk near 0 and tails beyond |x| = 100."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * rng.choice([1.0, 3.0, 30.0], size=shape)).astype(np.float32)


# ---- erfc -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1.0, -1 / np.sqrt(2.0)])
def test_erfc_factors_stay_within_the_abramowitz_stegun_bound(scale):
    a = np.concatenate([np.linspace(0, 12, 200_001), [20.0, 1e3, 1e19, np.inf]]).astype(np.float32)
    poly, e = kernels.erfc_factors(a, scale)
    assert poly.dtype == e.dtype == np.float32
    got = poly.astype(np.float64) * e.astype(np.float64)
    assert_within(got, scale * erfc(a.astype(np.float64)), abs(scale) * np.full(a.shape, ERFC_TOL))


def test_float32_erf_from_the_erfc_factors_stays_within_its_stated_error():
    x = np.linspace(-6, 6, 100_001).astype(np.float32)
    poly, e = kernels.erfc_factors(np.abs(x))
    approx = np.copysign(1.0 - poly * e, x)  # erf(x) = sign(x) (1 - erfc(|x|)), in float32 as gelu_grad_f32 does
    assert approx.dtype == np.float32
    np.testing.assert_allclose(approx, erf(x.astype(np.float64)), rtol=0, atol=ERFC_TOL)


# ---- exact GELU ---------------------------------------------------------------------------------------------------
def gelu_reference(x):
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


@pytest.mark.parametrize("block, shape", CASES, ids=case_ids, indirect=["block"])
def test_gelu_f32_against_exact_gelu_in_float64(block, shape):
    x = draw(1, shape)
    x64 = x.astype(np.float64)
    ref = gelu_reference(x64)
    y = kernels.gelu_f32(x)
    assert y.dtype == np.float32 and y.shape == shape
    # y = max(x, 0) - |x|/2 erfc(|x| / sqrt 2): |x|/2 times erfc's error, plus two roundings in forming the
    # erfc argument and the product (2 EPS32, relative to |x|/2), plus rounding the sum y itself.
    assert_within(y, ref, 0.5 * np.abs(x64) * (ERFC_TOL + 2 * EPS32) + EPS32 * np.abs(ref))


def test_gelu_f32_at_huge_and_infinite_x():
    x = np.array([np.inf, -np.inf, 1e30, -1e30, 1e4, -1e4, 0.0, -0.0], dtype=np.float32)
    y = kernels.gelu_f32(x)
    assert y[0] == np.inf  # the erfc argument is clamped at 10: no inf * 0 = NaN
    np.testing.assert_array_equal(y[[2, 4]], x[[2, 4]])
    np.testing.assert_allclose(y[[1, 3, 5, 6, 7]], 0.0, rtol=0, atol=1e-40)  # erfc(10) * 10: float32 subnormal


@pytest.mark.parametrize("block, shape", CASES, ids=case_ids, indirect=["block"])
def test_gelu_grad_f32_against_exact_gelu_gradient_in_float64(block, shape):
    x, g = draw(2, shape), draw(3, shape)
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    cdf, xpdf = 0.5 * (1.0 + erf(x64 / np.sqrt(2.0))), x64 * np.exp(-0.5 * x64 * x64) / np.sqrt(2.0 * np.pi)
    ref = g64 * (cdf + xpdf)
    dx = kernels.gelu_grad_f32(x, g)
    assert dx.dtype == np.float32 and dx.shape == shape
    # Phi = (1 + erf) / 2 carries half of erfc's error plus about four roundings of values <= 2; x phi(x) rounds
    # its exp argument -x^2/2 (relative error x^2/2 EPS32 after exp) plus about four more; g * (...) rounds once.
    per_unit_g = ERFC_TOL / 2 + 4 * EPS32 + np.abs(xpdf) * (0.5 * x64 * x64 + 4) * EPS32
    assert_within(dx, ref, np.abs(g64) * per_unit_g + EPS32 * np.abs(ref))


# ---- GELU, tanh form -----------------------------------------------------------------------------------------------
def _tanh_form(x64):
    c, k = np.sqrt(2.0 / np.pi), 0.044715
    u = c * (x64 + k * x64**3)
    t = np.tanh(u)
    return u, t, c * (1.0 + 3 * k * x64 * x64)


def _tanh_error(u, t):
    """Bound on |t32 - tanh(u)|: u carries four roundings (relative 2 EPS32 |u|), which tanh scales by its slope
    1 - t^2, and float32 tanh is within two ulps (2 EPS32 for |t| <= 1)."""
    return (1.0 - t * t) * 2 * EPS32 * np.abs(u) + 2 * EPS32


@pytest.mark.parametrize("block, shape", CASES, ids=case_ids, indirect=["block"])
def test_gelu_tanh_f32_against_the_tanh_formula_in_float64(block, shape):
    x = draw(4, shape)
    x64 = x.astype(np.float64)
    u, t, _ = _tanh_form(x64)
    ref = 0.5 * x64 * (1.0 + t)
    y = kernels.gelu_tanh_f32(x)
    assert y.dtype == np.float32 and y.shape == shape
    # x/2 times t's error, then three roundings of y's steps (1 + t, times x, times 1/2: exact)
    assert_within(y, ref, 0.5 * np.abs(x64) * (_tanh_error(u, t) + 2 * EPS32 * (1.0 + t)) + EPS32 * np.abs(ref))


@pytest.mark.parametrize("block, shape", CASES, ids=case_ids, indirect=["block"])
def test_gelu_tanh_grad_f32_against_the_tanh_formula_in_float64(block, shape):
    x, g = draw(5, shape), draw(6, shape)
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    u, t, du = _tanh_form(x64)
    a, b = 0.5 * (1.0 + t), 0.5 * x64 * (1.0 - t * t) * du
    ref = g64 * (a + b)
    dx = kernels.gelu_tanh_grad_f32(x, g)
    assert dx.dtype == np.float32 and dx.shape == shape
    # t's error moves (1 + t)/2 by half of it and 1 - t^2 by 2|t| times it (plus one rounding of t^2, EPS32 / 2);
    # x/2 du carries four roundings; every other step one each (relative to the terms' magnitudes).
    dt = _tanh_error(u, t)
    per_unit_g = 0.5 * dt + 0.5 * np.abs(x64) * du * (2 * np.abs(t) * dt + EPS32 / 2) + 4 * EPS32 * (a + np.abs(b))
    assert_within(dx, ref, np.abs(g64) * per_unit_g + EPS32 * np.abs(ref))


# ---- softmax with an additive mask ------------------------------------------------------------------------------
def softmax_reference(z, axis):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_bound(z, ref, axis):
    """Error bound for float32 softmax of z = x + mask against the float64 reference on the same inputs.

    Rounding z = x + mask and z - max(z) to float32 moves exp's argument by up to (|z| + |z - max|) EPS32 / 2
    (so an additive mask of -1e4 leaves x about 1e-3 absolute precision); exp adds up to 3 ulps, the sum of n
    positive terms n / 2 EPS32 (any axis) plus the worst argument error among its non-zero terms, the division
    half an ulp. Entries that underflow (masked ones, exactly 0 in both) get TINY32, float32's subnormal range,
    as an absolute slack.
    """
    shift = np.abs(z) + np.abs(z - z.max(axis=axis, keepdims=True))
    worst = np.where(ref > 0, shift, 0.0).max(axis=axis, keepdims=True)
    n = z.shape[axis]
    return ref * EPS32 * (4 + n / 2 + 0.5 * shift + 0.5 * worst) + TINY32


def padding_mask(seed, shape, axis, big):
    """0 for kept entries, `big` (negative) for padding: about 20% padded, and the first row along axis fully."""
    keep = np.random.default_rng(seed).random(shape) > 0.2
    first_row = [0] * len(shape)
    first_row[axis] = slice(None)
    keep[tuple(first_row)] = False
    return np.where(keep, 0.0, big).astype(np.float32)


@pytest.mark.parametrize("axis", [-1, 1, 0])
@pytest.mark.parametrize("big", [None, -1e4, "min"], ids=["no mask", "mask -1e4", "mask min"])
@pytest.mark.parametrize("block, shape", CASES[:5], ids=case_ids[:5], indirect=["block"])  # all with an axis 1
def test_softmax_f32_against_float64(block, shape, big, axis):
    x = draw(4, shape)
    mask = None if big is None else padding_mask(5, shape, axis, np.finfo(np.float32).min if big == "min" else big)
    z = x.astype(np.float64) + (0.0 if mask is None else mask.astype(np.float64))
    ref = softmax_reference(z, axis)
    y = kernels.softmax_f32(x, axis, mask)
    assert y.dtype == np.float32 and y.shape == shape
    assert_within(y, ref, softmax_bound(z, ref, axis))


def test_softmax_f32_with_bert_attention_mask_through_f_softmax():
    """Scores (B, H, T, T) with the additive mask (B, 1, 1, T) as BertSelfAttention passes it: padded keys get 0."""
    B, H, T = 3, 4, 130
    scores = draw(6, (B, H, T, T))
    keep = np.ones((B, 1, 1, T), dtype=bool)
    keep[1, ..., 100:] = False  # padding at the end of sequence 1
    mask = np.where(keep, 0.0, np.finfo(np.float32).min).astype(np.float32)
    y = F.softmax(Tensor(scores), axis=-1, mask=mask).data
    z = scores.astype(np.float64) + mask.astype(np.float64)
    ref = softmax_reference(z, -1)
    assert y.dtype == np.float32
    assert (y[1, ..., 100:] == 0).all()
    assert_within(y, ref, softmax_bound(z, ref, -1))


@pytest.mark.parametrize("axis", [-1, 1, 0])
@pytest.mark.parametrize("block, shape", CASES[:5], ids=case_ids[:5], indirect=["block"])  # all with an axis 1
def test_softmax_grad_f32_against_float64(block, shape, axis):
    y = softmax_reference(draw(7, shape).astype(np.float64), axis).astype(np.float32)
    g = draw(8, shape)
    y64, g64 = y.astype(np.float64), g.astype(np.float64)
    s = (g64 * y64).sum(axis=axis, keepdims=True)
    ref = y64 * (g64 - s)
    dx = kernels.softmax_grad_f32(y, g, axis)
    assert dx.dtype == np.float32 and dx.shape == shape
    # s = sum(g * y): the products round once and the sum of n terms n / 2 EPS32 (any axis), both relative to
    # sum |g * y|; g - s rounds once, and the product with y once more.
    n = shape[axis]
    sum_err = (n / 2 + 1) * np.abs(g64 * y64).sum(axis=axis, keepdims=True)
    assert_within(dx, ref, y64 * EPS32 * (sum_err + np.abs(g64 - s)) + EPS32 * np.abs(ref) + TINY32)


# ---- LayerNorm ----------------------------------------------------------------------------------------------------
def layer_norm_inputs(seed, shape):
    """Rows offset by 0 or 1000 and scaled by 0.01, 1 or 10 (large |x| with a small spread: cancellation)."""
    rng = np.random.default_rng(seed)
    rows = shape[:-1] + (1,)
    x = rng.choice([0.0, 1000.0], size=rows) + rng.standard_normal(shape) * rng.choice([0.01, 1.0, 10.0], size=rows)
    w, b = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    return x.astype(np.float32), w.astype(np.float32), b.astype(np.float32)


def layer_norm_reference(x, w, b, eps):
    xc = x - x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)
    return xc * rstd * w + b, xc * rstd, rstd


@pytest.mark.parametrize("block, shape", CASES, ids=case_ids, indirect=["block"])
def test_layer_norm_f32_against_float64(block, shape):
    x, w, b = layer_norm_inputs(9, shape)
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    ref, xhat_ref, rstd_ref = layer_norm_reference(x64, w64, b64, 1e-12)
    y, xhat, rstd = kernels.layer_norm_f32(x, w, b, 1e-12, keep=True)
    assert y.dtype == xhat.dtype == rstd.dtype == np.float32 and rstd.shape == shape[:-1] + (1,)
    # The mean is off by up to k EPS32 max|x| (k = D / 16 + 2: the sum, the division), and x - mean carries that
    # error, amplified by 1 / std in xhat: cond = max|x| * rstd per row. Each xhat also has about k roundings of
    # its own size (subtract, square, mean, sqrt, divide, multiply); y = xhat w + b two more.
    k = shape[-1] / 16 + 2
    cond = np.abs(x64).max(axis=-1, keepdims=True) * rstd_ref
    assert_within(rstd, rstd_ref, k * EPS32 * cond * rstd_ref)
    assert_within(xhat, xhat_ref, k * EPS32 * (cond + np.abs(xhat_ref)))
    assert_within(y, ref, EPS32 * (np.abs(w64) * k * (cond + np.abs(xhat_ref)) + np.abs(xhat_ref * w64) + np.abs(b64)))
    y_only, no_xhat, no_rstd = kernels.layer_norm_f32(x, w, b, 1e-12, keep=False)
    assert no_xhat is None and no_rstd is None
    np.testing.assert_array_equal(y_only, y)


@pytest.mark.parametrize("block, shape", CASES, ids=case_ids, indirect=["block"])
def test_layer_norm_grad_f32_against_float64(block, shape):
    x, w, _ = layer_norm_inputs(10, shape)
    _, xhat, rstd = kernels.layer_norm_f32(x, w, np.zeros_like(w), 1e-12, keep=True)
    g = draw(11, shape)
    xhat64, rstd64, w64, g64 = (a.astype(np.float64) for a in (xhat, rstd, w, g))
    gx = g64 * w64
    ref = rstd64 * (gx - gx.mean(axis=-1, keepdims=True) - xhat64 * (gx * xhat64).mean(axis=-1, keepdims=True))
    dx = kernels.layer_norm_grad_f32(xhat, rstd, w, g)
    assert dx.dtype == np.float32 and dx.shape == shape
    # Two means of D terms (D / 16 + 2 roundings of their magnitudes each), the products and differences around
    # them (a few roundings of each term), then rstd * (...) once more.
    k = shape[-1] / 16 + 2
    terms = np.abs(gx) + np.abs(gx).mean(axis=-1, keepdims=True) + \
        np.abs(xhat64) * np.abs(gx * xhat64).mean(axis=-1, keepdims=True)
    assert_within(dx, ref, rstd64 * EPS32 * k * terms + EPS32 * np.abs(ref))


# ---- dropout -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("block, shape", CASES, ids=case_ids, indirect=["block"])
def test_masked_scale_f32_is_exactly_x_times_scale_then_mask(block, shape):
    rng = np.random.default_rng(15)
    x, keep = draw(15, shape), rng.random(shape) >= 0.3
    y = kernels.masked_scale_f32(x, keep, 1 / 0.7)
    # one float32 rounding of x * s, then an exact multiplication by 0 or 1: the float32 formula bit for bit
    np.testing.assert_array_equal(y, np.where(keep, x * np.float32(1 / 0.7), np.float32(0)))
    assert y.dtype == np.float32


def test_map_blocks_gives_the_ufuncs_own_bits(monkeypatch):
    monkeypatch.setattr(kernels, "BLOCK", 100)
    x = draw(21, (7, 300)).astype(np.float64)
    before = kernels.get_threads()
    try:
        for n in (1, 2):
            kernels.set_threads(n)
            np.testing.assert_array_equal(kernels.map_blocks(erf, x), erf(x))
    finally:
        kernels.set_threads(before)


# ---- matrix products ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape_a, shape_b", [
    ((200, 40), (40, 9)),  # rows split unevenly
    ((9, 37), (37, 4)),
    ((3, 4, 33, 8), (3, 4, 8, 33)),  # attention's q @ k^T
    ((5, 7, 3), (3, 2)),  # a 2-D b shared by every batch entry
    ((7, 3), (4, 3, 6)),  # a 2-D a shared
    ((1, 6, 5), (4, 5, 2)),  # a broadcast batch axis of size 1
    ((2, 3), (3, 4)),  # no more rows than threads
    ((1, 4, 33, 8), (1, 4, 8, 33)),  # a batch of one: cut along the heads
    ((1, 1, 33, 8), (8, 5)),  # no batch axis of 2 or more: cut along the rows
    ((1, 5), (5, 7)),  # one row: whole
])
@pytest.mark.parametrize("layout", ["C order", "transposed views"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_is_a_at_b_within_the_gemm_bound_and_repeatable(shape_a, shape_b, layout, dtype, monkeypatch):
    monkeypatch.setattr(kernels, "MIN_SPLIT", 1)  # split even these small products
    rng = np.random.default_rng(22)
    if layout == "C order":
        a, b = rng.standard_normal(shape_a).astype(dtype), rng.standard_normal(shape_b).astype(dtype)
    else:  # strided operands, as g2.T and k.swapaxes(-1, -2) are
        a = rng.standard_normal(shape_a[:-2] + shape_a[:-3:-1]).astype(dtype).swapaxes(-1, -2)
        b = rng.standard_normal(shape_b[:-2] + shape_b[:-3:-1]).astype(dtype).swapaxes(-1, -2)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    eps = float(np.finfo(dtype).eps)
    before = kernels.get_threads()
    try:
        for n in (1, 2, 3):
            kernels.set_threads(n)
            y = kernels.matmul(a, b)
            assert y.dtype == dtype and y.shape == (a @ b).shape
            # K roundings of the sum of |a_ik b_kj|, whatever order BLAS sums in
            assert_within(y, a64 @ b64, shape_a[-1] * eps * (np.abs(a64) @ np.abs(b64)))
            np.testing.assert_array_equal(kernels.matmul(a, b), y)  # the same thread count: the same bits
    finally:
        kernels.set_threads(before)


def test_matmul_runs_blas_on_one_thread_while_it_splits(monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    monkeypatch.setattr(kernels, "MIN_SPLIT", 1)
    seen = []
    real = np.matmul

    def spy(*args, **kwargs):
        seen.append({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})
        return real(*args, **kwargs)

    monkeypatch.setattr(np, "matmul", spy)
    before = kernels.get_threads()
    try:
        kernels.set_threads(2)
        with threadpool_limits(2, user_api="blas"):  # whatever the environment set, BLAS has 2 threads here
            kernels.matmul(np.ones((8, 3), np.float32), np.ones((3, 5), np.float32))
    finally:
        kernels.set_threads(before)
    assert len(seen) == 2 and all(threads == {1} for threads in seen)  # two parts, each on one BLAS thread


# ---- threads -------------------------------------------------------------------------------------------------------
def test_kernels_give_the_same_bits_on_any_thread_count(monkeypatch):
    monkeypatch.setattr(kernels, "BLOCK", 64)  # many blocks, so several threads really share the work
    x, g = draw(16, (6, 5, 40)), draw(17, (6, 5, 40))
    w, b = draw(18, (40,)), draw(19, (40,))
    keep = np.random.default_rng(20).random(x.shape) >= 0.5
    mask = np.where(np.arange(40) < 30, 0.0, -1e30).astype(np.float32) + np.zeros_like(x)

    def everything():
        y, xhat, rstd = kernels.layer_norm_f32(x, w, b, 1e-12, True)
        sm = kernels.softmax_f32(x, -1, mask)
        return [kernels.gelu_f32(x), kernels.gelu_grad_f32(x, g), kernels.gelu_tanh_f32(x),
                kernels.gelu_tanh_grad_f32(x, g), sm, kernels.softmax_grad_f32(sm, g, -1),
                y, xhat, rstd, kernels.layer_norm_grad_f32(xhat, rstd, w, g), kernels.masked_scale_f32(x, keep, 2.0)]

    before = kernels.get_threads()
    try:
        kernels.set_threads(1)
        one = everything()
        kernels.set_threads(3)
        three = everything()
    finally:
        kernels.set_threads(before)
    for a, b in zip(one, three):
        np.testing.assert_array_equal(a, b)


def test_a_kernel_thread_count_must_be_a_positive_integer():
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(ValueError, match="threads"):
            kernels.set_threads(bad)


# ---- which Function uses which kernel ---------------------------------------------------------------------------
def _ln(x):
    d = x.shape[-1]
    return F.layer_norm(x, Tensor(np.linspace(0.5, 1.5, d).astype(x.dtype)), Tensor(np.zeros(d, x.dtype)))


DISPATCH = {  # name: (call on x of shape (2, 3, 4, 4), the kernels its forward and backward use for float32)
    "gelu": (F.gelu, {"gelu_f32", "gelu_grad_f32"}),
    "gelu tanh": (lambda x: F.gelu(x, "tanh"), {"gelu_tanh_f32", "gelu_tanh_grad_f32"}),
    "softmax": (lambda x: F.softmax(x, -1, mask=np.array([0.0, 0.0, 0.0, -1e9])), {"softmax_f32", "softmax_grad_f32"}),
    "layer_norm": (_ln, {"layer_norm_f32", "layer_norm_grad_f32"}),
    "dropout": (lambda x: F.dropout(x, 0.5, True, np.random.default_rng(0)), {"masked_scale_f32"}),
}
KERNELS = ["gelu_f32", "gelu_grad_f32", "softmax_f32", "softmax_grad_f32", "layer_norm_f32", "layer_norm_grad_f32",
           "masked_scale_f32", "gelu_tanh_f32", "gelu_tanh_grad_f32"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", DISPATCH)
def test_functions_use_the_kernels_for_float32_only(name, dtype, monkeypatch):
    called = set()

    def spy(name, kernel):
        def counted(*args, **kwargs):
            called.add(name)
            return kernel(*args, **kwargs)
        return counted

    for k in KERNELS:
        monkeypatch.setattr(kernels, k, spy(k, getattr(kernels, k)))
    fn, expected = DISPATCH[name]
    rng = np.random.default_rng(13)
    x = Tensor(rng.standard_normal((2, 3, 4, 4)).astype(dtype), requires_grad=True)
    y = fn(x)
    y.backward(rng.standard_normal(y.shape).astype(dtype))
    assert y.dtype == x.grad.dtype == dtype
    assert called == (expected if dtype == np.float32 else set())


def test_float64_gelu_is_the_exact_formula_with_scipy_erf():
    x = draw(14, (1000,)).astype(np.float64)
    np.testing.assert_array_equal(F.gelu(Tensor(x)).data, gelu_reference(x))


def test_keep_freed_memory_sets_glibcs_malloc_where_there_is_one():
    import ctypes
    import subprocess
    import sys

    try:
        has_mallopt = hasattr(ctypes.CDLL("libc.so.6"), "mallopt")
    except OSError:
        has_mallopt = False
    # In a process of its own: the setting is process-wide, and this test process should keep glibc's defaults.
    done = subprocess.run([sys.executable, "-c", "from autograd import kernels; print(kernels.keep_freed_memory())"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(has_mallopt)
