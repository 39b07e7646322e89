"""autograd.optim against update rules written out here in float64, plus state round trips, clipping and the
learning-rate schedule."""

import math

import numpy as np
import pytest

from autograd import nn, optim

STEPS = 5


def make_params(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [nn.Parameter(rng.standard_normal(s).astype(dtype)) for s in [(3, 2), (2,), (4,)]]


def grads_for(step, params):
    """A different random gradient for every step and parameter (deterministic)."""
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(p.shape).astype(p.dtype) for p in params]


def run(optimizer, params, steps=STEPS, start=0):
    for t in range(start, start + steps):
        for p, g in zip(params, grads_for(t, params)):
            p.grad = g
        optimizer.step()


def reference_adam(p0, grads, lr, b1, b2, eps, wd, decoupled):
    """Kingma & Ba with bias correction; weight decay as L2 (added to g) or decoupled (Loshchilov & Hutter)."""
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p - lr * wd * p
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


# Same formula as the optimizer, rearranged (lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)): a few ulps per step.
ADAM_TOL = dict(rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls, decoupled", [(optim.AdamW, True), (optim.Adam, False)])
def test_adam_variants_match_the_update_rule_with_two_groups(cls, decoupled):
    params = make_params()
    start = [p.data.copy() for p in params]
    groups = [{"params": params[:2], "weight_decay": 0.1}, {"params": params[2:], "weight_decay": 0.0, "lr": 3e-2}]
    run(cls(groups, lr=1e-2, betas=(0.8, 0.95), eps=1e-6), params)
    for i, p in enumerate(params):
        lr, wd = (1e-2, 0.1) if i < 2 else (3e-2, 0.0)
        grads = [grads_for(t, params)[i] for t in range(STEPS)]
        expected = reference_adam(start[i], grads, lr, 0.8, 0.95, 1e-6, wd, decoupled)
        np.testing.assert_allclose(p.data, expected, **ADAM_TOL)


def test_adam_and_adamw_differ_when_decaying():
    a, b = make_params(), make_params()
    run(optim.Adam(a, lr=1e-2, weight_decay=0.1), a)
    run(optim.AdamW(b, lr=1e-2, weight_decay=0.1), b)
    assert not np.allclose(a[0].data, b[0].data, rtol=1e-6)


def test_sgd_with_momentum_and_weight_decay_matches_the_update_rule():
    params = make_params()
    start = [p.data.copy() for p in params]
    run(optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01), params)
    for i, p in enumerate(params):
        w, buf = start[i].copy(), None
        for t in range(STEPS):
            g = grads_for(t, params)[i] + 0.01 * w
            buf = g if buf is None else 0.9 * buf + g
            w = w - 0.1 * buf
        np.testing.assert_allclose(p.data, w, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.AdamW])
def test_parameter_without_grad_is_untouched(cls):
    params = make_params()
    frozen = params[1]
    before = frozen.data.copy()
    opt = cls(params, lr=0.1, weight_decay=0.1)
    for t in range(3):
        for p, g in zip(params, grads_for(t, params)):
            p.grad = None if p is frozen else g
        opt.step()
    assert np.array_equal(frozen.data, before)
    assert not np.array_equal(params[0].data, make_params()[0].data)


@pytest.mark.parametrize("cls, kwargs", [(optim.AdamW, dict(lr=1e-2)), (optim.SGD, dict(lr=0.1, momentum=0.9))])
def test_state_dict_round_trip_continues_bit_identically(cls, kwargs):
    params = make_params(dtype=np.float32)
    groups = [{"params": params[:1]}, {"params": params[1:], "weight_decay": 0.0}]
    opt = cls(groups, **kwargs)
    run(opt, params, steps=3)
    checkpoint, copies = opt.state_dict(), [nn.Parameter(p.data.copy()) for p in params]
    run(opt, params, steps=4, start=3)  # the checkpoint is a snapshot: these steps must not change it
    fresh = cls([{"params": copies[:1]}, {"params": copies[1:], "weight_decay": 0.5}], **kwargs)
    fresh.load_state_dict(checkpoint)
    assert fresh.param_groups[1]["weight_decay"] == 0.0  # hyper-parameters come back too
    run(fresh, copies, steps=4, start=3)
    for p, q in zip(params, copies):
        assert np.array_equal(p.data, q.data)


def test_load_state_dict_rejects_a_different_layout():
    opt = optim.SGD(make_params(), lr=0.1)
    other = optim.SGD(make_params()[:2], lr=0.1)
    with pytest.raises(ValueError, match="number of groups or parameters"):
        other.load_state_dict(opt.state_dict())


def test_optimizer_keeps_the_parameter_dtype():
    params = make_params(dtype=np.float32)
    run(optim.AdamW(params, lr=1e-2), params)
    assert all(p.dtype == np.float32 for p in params)


# ---- clipping --------------------------------------------------------------------------------------------------
def test_clip_grad_norm_returns_the_norm_before_and_clips_to_max_norm():
    params = make_params()
    for p, g in zip(params, grads_for(0, params)):
        p.grad = 10 * g
    expected = math.sqrt(sum(float(np.sum(p.grad**2)) for p in params))
    directions = [p.grad / expected for p in params]
    norm = optim.clip_grad_norm_(params, max_norm=1.0)
    assert norm == pytest.approx(expected, rel=1e-12)
    clipped = math.sqrt(sum(float(np.sum(p.grad**2)) for p in params))
    assert clipped == pytest.approx(1.0, rel=1e-6)
    for p, d in zip(params, directions):  # same direction, only shorter
        np.testing.assert_allclose(p.grad, d, rtol=1e-5)


def test_clip_grad_norm_leaves_small_gradients_alone_and_skips_missing_ones():
    params = make_params()
    params[0].grad = np.full((3, 2), 0.01)
    before = params[0].grad.copy()
    assert optim.clip_grad_norm_(params, max_norm=1.0) == pytest.approx(0.01 * math.sqrt(6))
    assert np.array_equal(params[0].grad, before) and params[1].grad is None
    assert optim.clip_grad_norm_([params[1]], max_norm=1.0) == 0.0


def test_clip_grad_norm_accepts_a_generator():
    params = make_params()
    for p in params:
        p.grad = np.full(p.shape, 10.0)
    optim.clip_grad_norm_((p for p in params), max_norm=1.0)
    assert math.sqrt(sum(float(np.sum(p.grad**2)) for p in params)) == pytest.approx(1.0, rel=1e-6)


# ---- schedule and groups -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("step, factor", [(0, 0.0), (5, 0.5), (10, 1.0), (55, 0.5), (100, 0.0), (120, 0.0)])
def test_linear_warmup_decay(step, factor):
    assert optim.linear_warmup_decay(step, total=100, warmup_fraction=0.1) == pytest.approx(factor, abs=1e-15)


def test_scheduler_sets_every_group_lr():
    params = make_params()
    opt = optim.AdamW([{"params": params[:1]}, {"params": params[1:], "lr": 4e-3}], lr=2e-3)
    sched = optim.LinearWarmupDecay(opt, total=100, warmup_fraction=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.0, 0.0]
    for _ in range(5):
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3, 2e-3])
    resumed = optim.LinearWarmupDecay(opt, total=100, warmup_fraction=0.1)
    resumed.load_state_dict(sched.state_dict())
    resumed.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1.2e-3, 2.4e-3])


def test_parameter_groups_are_validated():
    params = make_params()
    with pytest.raises(ValueError, match="more than one"):
        optim.AdamW([{"params": params[:2]}, {"params": params[1:]}])
    with pytest.raises(ValueError, match="more than one"):
        optim.SGD([params[0], params[0]])
    with pytest.raises(ValueError, match="unknown option.*momentum"):
        optim.AdamW([{"params": params, "momentum": 0.9}])
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([])


def test_zero_grad_clears_every_parameter():
    params = make_params()
    for p in params:
        p.grad = np.ones(p.shape)
    optim.AdamW(params).zero_grad()
    assert all(p.grad is None for p in params)


# ---- defaults, resuming from one checkpoint twice, schedule end points, module-level zero_grad -------------
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
