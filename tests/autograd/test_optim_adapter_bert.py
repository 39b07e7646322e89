"""adapter-bert's optimizer and schedule (docs/conventions.md §2, variant A) against its update rule written
out here in float64, step by step, and against the table of schedule values in that section."""

import numpy as np
import pytest

from autograd import nn, optim

STEPS = 6


def make_params(seed=0):
    rng = np.random.default_rng(seed)
    return [nn.Parameter(rng.standard_normal(s)) for s in [(3, 2), (4,)]]


def grads_for(step, params):
    rng = np.random.default_rng(200 + step)
    return [rng.standard_normal(p.shape) for p in params]


def reference_adam_weight_decay(p, m, v, g, lr, b1, b2, eps, wd):
    """One step of AdamWeightDecayOptimizer.apply_gradients (adapter-bert optimization.py), in float64."""
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    update = m / (np.sqrt(v) + eps) + wd * p
    return p - lr * update, m, v


def test_adam_weight_decay_matches_adapter_berts_update_at_every_step():
    params = make_params()
    groups = [{"params": params[:1], "weight_decay": 0.01}, {"params": params[1:], "weight_decay": 0.0}]
    opt = optim.AdamWeightDecay(groups, lr=1e-2, betas=(0.9, 0.999), eps=1e-6)
    ref = [(p.data.copy(), np.zeros(p.shape), np.zeros(p.shape)) for p in params]
    for t in range(STEPS):
        grads = grads_for(t, params)
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        ref = [reference_adam_weight_decay(p, m, v, g, 1e-2, 0.9, 0.999, 1e-6, wd)
               for (p, m, v), g, wd in zip(ref, grads, (0.01, 0.0))]
        for p, (expected, _, _) in zip(params, ref):
            # The same operations in the same order: equal to the last few ulps.
            np.testing.assert_allclose(p.data, expected, rtol=1e-13, atol=1e-15)


def test_adam_weight_decay_takes_larger_first_steps_than_adamw():
    # No bias correction: the first update is lr (1 - b1) g / (sqrt(1 - b2) |g| + eps), about 0.1 / sqrt(0.001)
    # = 3.16 times AdamW's first step lr g / |g| (R(1) in docs/conventions.md §2), in every coordinate.
    a, b = make_params(), make_params()
    start = a[0].data.copy()
    for opt, params in ((optim.AdamWeightDecay(a, lr=1e-3, weight_decay=0.0), a),
                        (optim.AdamW(b, lr=1e-3, eps=1e-6, weight_decay=0.0), b)):
        for p, g in zip(params, grads_for(0, params)):
            p.grad = g
        opt.step()
    ratio = np.abs(a[0].data - start) / np.abs(b[0].data - start)
    np.testing.assert_allclose(ratio, 0.1 / np.sqrt(0.001), rtol=1e-3)


def test_adam_weight_decay_state_dict_resumes_bit_identically():
    a, b = make_params(), make_params()
    opt_a = optim.AdamWeightDecay(a, lr=1e-2)
    for t in range(3):
        for p, g in zip(a, grads_for(t, a)):
            p.grad = g
        opt_a.step()
    for p, q in zip(b, a):
        p.data = q.data.copy()
    opt_b = optim.AdamWeightDecay(b, lr=1e-2)
    opt_b.load_state_dict(opt_a.state_dict())
    for t in range(3, 6):
        for params, opt in ((a, opt_a), (b, opt_b)):
            for p, g in zip(params, grads_for(t, params)):
                p.grad = g
            opt.step()
    assert all(np.array_equal(p.data, q.data) for p, q in zip(a, b))


# docs/conventions.md §2, difference 4: T = 1000, W = 100, the multiplier of variant A and of variant B.
SCHEDULE_TABLE = [(0, 0.0, 0.0), (1, 0.01, 0.01), (99, 0.99, 0.99), (100, 0.9, 1.0), (101, 0.899, 0.99888888888),
                  (500, 0.5, 0.5555555555), (999, 0.001, 0.0011111111)]


@pytest.mark.parametrize("step, from_start, from_peak", SCHEDULE_TABLE)
def test_both_schedules_give_the_documented_values(step, from_start, from_peak):
    assert optim.linear_warmup_decay(step, 1000, 0.1, decay_from_start=True) == pytest.approx(from_start, abs=1e-9)
    assert optim.linear_warmup_decay(step, 1000, 0.1) == pytest.approx(from_peak, abs=1e-9)


def test_decay_from_start_without_warmup_is_the_plain_linear_decay():
    assert [optim.linear_warmup_decay(t, 4, 0.0, decay_from_start=True) for t in range(5)] == [1, 0.75, 0.5, 0.25, 0]


def test_scheduler_applies_the_decay_from_start_variant_and_keeps_it_on_reload():
    params = make_params()
    opt = optim.AdamWeightDecay(params, lr=2.0)
    schedule = optim.LinearWarmupDecay(opt, total=10, warmup_fraction=0.2, decay_from_start=True)
    for _ in range(2):
        schedule.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(2.0 * (1 - 2 / 10))  # 1.6, not AdamW's peak 2.0
    again = optim.LinearWarmupDecay(opt, total=10, warmup_fraction=0.2, decay_from_start=True)
    again.load_state_dict(schedule.state_dict())
    assert opt.param_groups[0]["lr"] == pytest.approx(1.6)
