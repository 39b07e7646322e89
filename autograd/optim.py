"""Optimizers (SGD, Adam, AdamW, BERT's original AdamWeightDecay), gradient clipping and the linear warmup /
decay schedule (in both the transformers and the original TensorFlow BERT variant).

Parameters are given as a list, or as parameter groups: a list of dicts `{"params": [...], **options}`
whose options override the defaults (e.g. `weight_decay=0.0` for LayerNorm weights and biases).
Updates happen in place on `p.data`, in the parameter's own dtype. Parameters whose `.grad` is None
(frozen, or not reached by the backward pass) are skipped, so a frozen weight never moves.
"""

from __future__ import annotations

import copy
import math

import numpy as np


class Optimizer:
    defaults: dict = {}

    def __init__(self, params, **defaults):
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        seen = set()
        for group in groups:
            unknown = set(group) - set(defaults) - {"params"}
            if unknown:
                raise ValueError(f"unknown option(s) in parameter group: {sorted(unknown)}")
            group = {**defaults, **group, "params": list(group["params"])}
            for p in group["params"]:
                if id(p) in seen:
                    raise ValueError("a parameter appears in more than one parameter group")
                seen.add(id(p))
            self.param_groups.append(group)
        self.state = {}  # id(param) -> per-parameter state

    def _params(self):
        for group in self.param_groups:
            for p in group["params"]:
                yield group, p

    def zero_grad(self):
        for _, p in self._params():
            p.grad = None

    def step(self):
        for group, p in self._params():
            if p.grad is not None:
                self._update(group, p, p.grad, self.state.setdefault(id(p), {}))

    def _update(self, group, p, g, state):
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Hyper-parameters and per-parameter state, parameters referred to by position (as PyTorch)."""
        index = {id(p): i for i, (_, p) in enumerate(self._params())}
        groups, start = [], 0
        for group in self.param_groups:
            n = len(group["params"])
            options = {k: v for k, v in group.items() if k != "params"}
            groups.append({**options, "params": list(range(start, start + n))})
            start += n
        state = {index[pid]: copy.deepcopy(s) for pid, s in self.state.items() if pid in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict):
        groups = state_dict["param_groups"]
        if [len(g["params"]) for g in groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("optimizer state_dict has a different number of groups or parameters per group")
        params = [p for _, p in self._params()]
        for own, saved in zip(self.param_groups, groups):
            own.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {id(params[int(i)]): copy.deepcopy(s) for i, s in state_dict["state"].items()}


class SGD(Optimizer):
    """p <- p - lr * v,  v = momentum * v + (g + weight_decay * p)   (v = g without momentum)."""

    def __init__(self, params, lr=1e-2, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def _update(self, group, p, g, state):
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        if group["momentum"]:
            buf = state.get("momentum_buffer")
            state["momentum_buffer"] = g.copy() if buf is None else group["momentum"] * buf + g
            g = state["momentum_buffer"]
        p.data -= group["lr"] * g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction, written as torch.optim.Adam computes it.

    t <- t + 1;  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    Adam adds weight_decay * p to g (L2 regularisation); AdamW instead decays p directly.
    """

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def _update(self, group, p, g, state):
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if wd and self.decoupled:
            p.data *= 1 - lr * wd
        elif wd:
            g = g + wd * p.data
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(p.data), exp_avg_sq=np.zeros_like(p.data))
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        step_size = lr / (1 - b1**t)
        denom = np.sqrt(v) / math.sqrt(1 - b2**t) + eps
        p.data -= step_size * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as torch.optim.AdamW:
    p <- p * (1 - lr * weight_decay) before the Adam step.

    Convention: defaults follow torch (weight_decay=0.01); the BERT / Houlsby protocol uses eps=1e-6 and
    excludes LayerNorm weights and biases from decay through a parameter group with weight_decay=0.
    """

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class AdamWeightDecay(Optimizer):
    """AdamWeightDecayOptimizer of BERT's original TensorFlow code (google-research/bert optimization.py, kept
    as is by the code of later papers built on it): Adam without bias correction, decay in the update.

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    u <- m / (sqrt(v) + eps) + weight_decay * p          (the decay term only where weight_decay != 0)
    p <- p - lr * u
    Without bias correction the early steps are up to ~6.6x larger than AdamW's at the same lr
    (docs/conventions.md §2 works out by how much). "step" counts updates, as Adam's state does, so
    checkpoints look the same.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def _update(self, group, p, g, state):
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(p.data), exp_avg_sq=np.zeros_like(p.data))
        state["step"] += 1
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        update = m / (np.sqrt(v) + eps)
        if wd:
            update = update + wd * p.data
        p.data -= lr * update


def clip_grad_norm_(params, max_norm: float) -> float:
    """Scale all gradients by max_norm / (norm + 1e-6) when their global L2 norm exceeds max_norm.

    Returns the norm before clipping. Convention: the 1e-6 in the denominator is PyTorch's.
    """
    params = list(params)  # a generator would be exhausted by the norm and nothing would be clipped
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    total = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for p in params:
            if p.grad is not None:
                p.grad = p.grad * np.asarray(coef, dtype=p.grad.dtype)
    return total


def zero_grad(params):
    for p in params:
        p.grad = None


def linear_warmup_decay(step: int, total: int, warmup_fraction: float = 0.1, decay_from_start: bool = False) -> float:
    """Learning-rate multiplier: 0 -> 1 linearly over the first warmup_fraction of `total` steps, then
    linearly back to 0 at step `total`.

    decay_from_start=False (transformers' get_linear_schedule_with_warmup): W = int(fraction T);
        t / max(1, W) for t < W, then max(0, (T - t) / max(1, T - W))   (1 right after warm-up).
    decay_from_start=True (BERT's original TF code, a polynomial decay from step 0 that warm-up
        overrides): t / W for W > 0 and t < W, then 1 - min(t, T) / T   (0.9 right after a 10% warm-up).
    """
    if total <= 0:
        raise ValueError(f"total steps must be positive, got {total}")
    warmup = int(total * warmup_fraction)
    if decay_from_start:
        return step / warmup if warmup and step < warmup else 1.0 - min(step, total) / total
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


class LinearWarmupDecay:
    """Sets each group's lr to base_lr * linear_warmup_decay(step, total, ...) on every `step()`."""

    def __init__(self, optimizer: Optimizer, total: int, warmup_fraction: float = 0.1, decay_from_start=False):
        self.optimizer, self.total, self.warmup_fraction = optimizer, total, warmup_fraction
        self.decay_from_start = decay_from_start
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.last_step = 0
        self._apply()

    def _apply(self):
        factor = linear_warmup_decay(self.last_step, self.total, self.warmup_fraction, self.decay_from_start)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor

    def step(self):
        self.last_step += 1
        self._apply()

    def state_dict(self):
        return {"last_step": self.last_step, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state):
        self.last_step, self.base_lrs = state["last_step"], list(state["base_lrs"])
        self._apply()
