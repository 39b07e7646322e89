"""The bottleneck kind: where its adapters go, what they count, what their init claims, and their known bugs.

Placement (Houlsby2019 §2.1, Fig. 2; adapter-bert's `adapter_fn`): in every encoder layer, after the attention
output projection ("attention") and after the feed-forward output projection ("ffn"), each after dense + dropout
and before the residual add and LayerNorm: minibert's `SublayerOutput.hook`.
"""

from __future__ import annotations

import dataclasses
import math

import autograd.functional as F
from adapters.bottleneck.adapterhub import config_from_hub, config_to_hub
from adapters.bottleneck.config import BottleneckConfig
from adapters.bottleneck.module import BottleneckAdapter, bottleneck_parameters
from adapters.kinds import AdapterKind, Claim, Variant, register_kind

SUBLAYERS = ("attention", "ffn")
TRUNCATION = 2.0  # adapter-bert: TF's truncated_normal redraws values beyond 2 std
# f'(0) of each non-linearity: the slope with which a small W_down a passes through f. ReLU: 1/2 on average.
SLOPE_AT_ZERO = {"gelu": 0.5, "gelu_new": 0.5, "gelu_pytorch_tanh": 0.5, "silu": 0.5, "relu": 0.5, "tanh": 1.0}
NON_LINEARITIES = ("gelu_new", "gelu", "relu", "silu", "tanh")


def _sublayers(config) -> tuple:
    return {"both": SUBLAYERS, "attention": ("attention",), "ffn": ("ffn",)}[config.placement]


def _before_dense(m, slot):
    """The sub-layer with the adapter on its input: y = LayerNorm(x + Dropout(Dense(h + A(h))))."""
    return lambda h, x: slot.LayerNorm(x + slot.dropout(slot.dense(h + m.adapt(h))))


# The factors a wrongly scaled adapter output is tried with (a doubled or halved branch, a flipped sign, ...).
SCALE_FACTORS = (2.0, 0.5, 4.0, 0.25, -1.0)


def _variant_output(m, a, x, norm, f=None, skip=True, feed="own", where="slot", factor=1.0):
    """One sub-layer's output with adapter module `m` computed wrongly in one or two ways (eval mode).

    f: another non-linearity ("identity": none); skip=False drops the adapter's own skip; feed="other" gives it
    the other input (x for a sequential adapter, a for a parallel one); where="after-layernorm" puts it after
    the sub-layer's LayerNorm, where="on-sum" on the residual sum x + a before it; factor scales its output."""
    fn = None if f is None else (lambda z: z) if f == "identity" else F.activation(f)

    def adapt(h):
        out = m.adapt(h, f=fn)
        return out if factor == 1.0 else out * factor

    if where == "after-layernorm":
        y = norm(x + a)
        return y + adapt(y)
    if where == "on-sum":
        s = x + a
        return norm(s + adapt(s))
    if m.parallel:
        h = a if feed == "other" else x
        return norm(x + (a + adapt(h)) if skip else x + adapt(h))
    residual, h = a, (x if feed == "other" else a)
    if m.original_ln_before and feed != "other":
        h = x + a
        if m.residual_before_ln == "post_add":
            residual = h
        h = norm(h)
    if m.residual_before_ln is False:
        residual = h
    out = residual + adapt(h) if skip else adapt(h)
    return norm(x + out) if m.original_ln_after else out


class BottleneckKind(AdapterKind):
    name = "bottleneck"
    config_class = BottleneckConfig
    formula_text = "2MD + D + M"
    size_field = "bottleneck_size"
    size_fields = ("bottleneck_size", "reduction_factor")
    # AdapterHub (adapters 1.x): adapter_down is Sequential(Linear, activation), hence the `.0`.
    foreign_leaves = {"adapter_down.0.weight": "down.weight", "adapter_down.0.bias": "down.bias",
                      "adapter_up.weight": "up.weight", "adapter_up.bias": "up.bias"}

    def slots(self, bert, config):
        """(path, sublayer, slot) for every sub-layer output the placement names: "attention" and/or "ffn"."""
        for path, sublayer, slot in self.all_slots(bert):
            if sublayer in _sublayers(config):
                yield path, sublayer, slot

    def all_slots(self, bert):
        for i, layer in enumerate(bert.encoder.layer):
            yield f"encoder.layer.{i}.attention.output", "attention", layer.attention.output
            yield f"encoder.layer.{i}.output", "ffn", layer.output

    def build(self, name, config, bert_config, dtype, rng, place=None) -> BottleneckAdapter:
        d = bert_config.hidden_size
        return BottleneckAdapter(d, config.size_for(d), config.non_linearity, config.init, config.init_std,
                                 config.parallel, config.layer_norm, bert_config.layer_norm_eps, dtype=dtype, rng=rng,
                                 name=name, scaling=config.scaling, original_ln_before=config.original_ln_before,
                                 original_ln_after=config.original_ln_after,
                                 residual_before_ln=config.residual_before_ln)

    def fit_problems(self, config, bert_config, places) -> list:
        problem = config.size_problem(bert_config.hidden_size)
        return [] if problem is None else [problem]

    def formula(self, config, bert_config, place=None) -> int:
        d = bert_config.hidden_size
        return bottleneck_parameters(d, config.size_for(d), config.layer_norm)

    def sizes(self, config, bert_config, place=None) -> dict:
        return {"D": bert_config.hidden_size, "M": config.size_for(bert_config.hidden_size)}

    def expected_modules(self, config, bert_config) -> int:
        return bert_config.num_hidden_layers * len(_sublayers(config))

    def leaves(self, config) -> tuple:
        inner = ("layer_norm.weight", "layer_norm.bias") if config.layer_norm else ()
        return ("down.weight", "down.bias", "up.weight", "up.bias") + inner

    identity_text = "W_up = 0"

    def describe(self, config) -> str:
        form = "parallel" if config.parallel else "fed LN(x + a)" if config.original_ln_before else "sequential"
        scaling = f", scaling {config.scaling:g}" if config.scaling != 1.0 else ""
        return (f"{config.placement} placement ({form}{scaling}), f = {config.non_linearity}, "
                f"init {self.init_text(config)}")

    def init_text(self, config) -> str:
        return config.init if config.init == "mam_adapter" else f"{config.init} std {config.init_std:g}"

    def identity_config(self, config):
        """W_up = 0 and b_up = 0: A(h) = 0, so y = norm(x + a) wherever the adapter's skip is a."""
        return dataclasses.replace(config, init="zeros")

    def init_claims(self, config, bert_config, place=None) -> dict:
        if config.init == "mam_adapter":
            down = Claim("uniform", bound=1.0 / math.sqrt(bert_config.hidden_size))
        elif config.init == "normal":
            down = Claim("normal", std=float(config.init_std))
        else:
            down = Claim("truncated_normal", std=float(config.init_std), bound=TRUNCATION)
        up = Claim("zeros") if config.init in ("zeros", "mam_adapter") else down
        claims = {"down.weight": down, "down.bias": Claim("zeros"), "up.weight": up, "up.bias": Claim("zeros")}
        if config.layer_norm:
            claims.update({"layer_norm.weight": Claim("ones"), "layer_norm.bias": Claim("zeros")})
        return claims

    def expected_init_change(self, config, bert_config) -> float:
        """One adapter adds s W_up f(W_down h) to a; with weights of std s_d and s_u and f'(0) = k, each token
        changes by about k s_d s_u sqrt(M D) s times |h|, and |h| is about the size of the residual sum. Over the
        n sub-layers with adapters the changes add up to about sqrt(n) times that."""
        claims = self.init_claims(config, bert_config)

        def std(claim):
            return claim.bound / math.sqrt(3) if claim.distribution == "uniform" else claim.std

        d, m = bert_config.hidden_size, config.size_for(bert_config.hidden_size)
        per_sublayer = (SLOPE_AT_ZERO.get(config.non_linearity, 1.0) * std(claims["down.weight"])
                        * std(claims["up.weight"]) * math.sqrt(m * d) * abs(config.scaling))
        return per_sublayer * math.sqrt(self.expected_modules(config, bert_config))

    def sized_like(self, config, tensors: dict, bert_config):
        sizes = {v["down.weight"].shape[0] for v in tensors.values() if "down.weight" in v}
        if len(sizes) == 1 and next(iter(sizes)) != config.size_for(bert_config.hidden_size):
            return dataclasses.replace(config, bottleneck_size=next(iter(sizes)), reduction_factor=None)
        return config

    def variants(self, config) -> list:
        """Misplaced (after the LayerNorm, on the residual sum, fed the other input), without its skip, absent,
        or with another non-linearity: in one sub-layer kind, or in both."""
        sublayers = _sublayers(config)
        out = []
        scopes = [(s,) for s in sublayers] + ([tuple(sublayers)] if len(sublayers) > 1 else [])
        for scope in scopes:
            where = " and ".join(("after attention" if s == "attention" else "after the FFN") for s in scope)
            other = "sub-layer output a (sequential)" if config.parallel else "sub-layer input x (parallel)"

            def hook(**how):
                return lambda m: (lambda a, x, norm: _variant_output(m, a, x, norm, **how))

            out += [Variant("placement", f"adapter after the LayerNorm ({where})", scope,
                            hook(where="after-layernorm")),
                    Variant("placement", f"adapter on the residual sum x + a, before the LayerNorm ({where})", scope,
                            hook(where="on-sum")),
                    Variant("placement", f"adapter fed the {other} ({where})", scope, hook(feed="other")),
                    Variant("skip-connection", f"adapter without its skip connection ({where})", scope,
                            hook(skip=False)),
                    Variant("missing-modules", f"no adapter {where}", scope, lambda m: None)]
            for f in NON_LINEARITIES + ("identity",):
                if f != config.non_linearity:
                    out.append(Variant("non-linearity", f"adapter non-linearity {f} instead of {config.non_linearity} "
                                                        f"({where})", scope, hook(f=f)))
            if scope == ("attention",) and not config.parallel:  # the context h is D-wide only there
                out.append(Variant("placement", "adapter applied to the attention context, before "
                                                "attention.output.dense", scope, sublayer=_before_dense))
            for factor in SCALE_FACTORS:
                out.append(Variant("scale", f"adapter output scaled by {factor:g} ({where})", scope,
                                   hook(factor=factor)))
        # two bugs in one module, tried after every single one: no skip and another non-linearity
        for scope in scopes:
            where = " and ".join(("after attention" if s == "attention" else "after the FFN") for s in scope)
            for f in NON_LINEARITIES + ("identity",):
                if f != config.non_linearity:
                    out.append(Variant("skip-connection+non-linearity", f"adapter without its skip connection and "
                                       f"with non-linearity {f} instead of {config.non_linearity} ({where})", scope,
                                       hook(f=f, skip=False)))
        return out

    def module_alone(self, module, h):
        """h + A(h), or A(h) alone for a parallel adapter. Convention: the module's own skip is part of it
        (adapter-bert's `adapter` returns input + net)."""
        branch = module.adapt(h)
        return branch if module.parallel else h + branch

    codes = {"scale": "The adapter's output is scaled by another factor than the claimed scaling",
             "bottleneck-size": "The adapter's tensors have another bottleneck size than the claimed one"}
    size_code = "bottleneck-size"
    backward_stages = (("up.", "W_up^T and the non-linearity's derivative f'"), ("down.", "W_down^T"))

    hub_architecture = "bottleneck"

    def config_from_hub(self, hub: dict, bert_config, tensors: dict):
        """AdapterHub's BnConfig in our terms; M from the weights when they have it. Without a config file (a bare
        state dict) the weights say which sub-layers have adapters."""
        downs = [v["down.weight"] for v in tensors.values() if "down.weight" in v]
        if "mh_adapter" not in hub and "output_adapter" not in hub:
            hub = {**hub, "mh_adapter": any(p.endswith(".attention.output") for p in tensors),
                   "output_adapter": any(not p.endswith(".attention.output") for p in tensors)}
        return config_from_hub(hub, bert_config.hidden_size, int(downs[0].shape[0]) if downs else None)

    def config_to_hub(self, config, bert_config) -> dict:
        return config_to_hub(config, bert_config.hidden_size)

    def config_strategy(self, st, bert_config=None, sizes=(1, 6), ablations: bool = True, policies: bool = True,
                        avoid=frozenset(), plain: bool = False):
        """Bottleneck size, non-linearity, placement; with `ablations` also the parallel and inner-LayerNorm
        variants (plain=True: none of them, the paper's adapter only); with `policies` every combination of what
        trains. M avoids the sizes in `avoid` (at least 2 then), and with `bert_config` is at most its hidden
        size."""
        ablations = ablations and not plain
        low, high = (max(2, sizes[0]), max(sizes[1], 2) + len(avoid)) if avoid else sizes
        widest = bert_config.hidden_size if bert_config is not None else high  # M <= D: fit_problems
        # 1 when no other M is left (a narrow D whose other axes take the rest): no axis of a distinct config is 1
        size = st.sampled_from([m for m in range(low, high + 1) if m not in avoid and m <= widest] or [1])
        flag = st.booleans() if ablations else st.just(False)
        policy = st.booleans() if policies else st.just(True)
        return st.builds(BottleneckConfig, bottleneck_size=size, non_linearity=st.sampled_from(NON_LINEARITIES),
                         placement=st.sampled_from(("both", "attention", "ffn")), parallel=flag, layer_norm=flag,
                         train_layer_norms=policy, train_head=policy,
                         train_pooler=st.booleans() if policies else st.just(False))


BOTTLENECK = register_kind(BottleneckKind())
