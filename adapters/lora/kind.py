"""The LoRA kind: which Linears it adapts (PEFT's target_modules), what it counts, what its init claims."""

from __future__ import annotations

import math

import numpy as np

from adapters.kinds import AdapterKind, Claim, Variant, register_kind
from adapters.lora.config import LoraConfig
from adapters.lora.module import LoraLinear, lora_parameters
from adapters.targets import count_matches, linears, matches


def targets(config: LoraConfig, name: str) -> bool:
    """Does the config's target_modules name the module called `name` (PEFT's rule, adapters.targets)?"""
    return matches(config.target_modules, name)


def _shape(bert_config, place):
    """(d_in, d_out) of the Linear at `place` (the model's width when no place is given)."""
    if place is None:
        return bert_config.hidden_size, bert_config.hidden_size
    return place[2].in_features, place[2].out_features


class LoraKind(AdapterKind):
    name = "lora"
    config_class = LoraConfig
    formula_text = "r (d_in + d_out)"
    size_field = "r"
    size_fields = ("r",)
    identity_text = "B = 0"
    peft_type = "LORA"

    def all_slots(self, bert):
        """Every Linear of the base model (not those inside adapter modules), labelled by its name."""
        return linears(bert)

    def slots(self, bert, config):
        return [s for s in self.all_slots(bert) if targets(config, s[0])]

    def build(self, name, config, bert_config, dtype, rng, place=None) -> LoraLinear:
        d_in, d_out = _shape(bert_config, place)
        return LoraLinear(d_in, d_out, config.r, config.scaling, config.dropout, config.init, dtype=dtype, rng=rng,
                          name=name)

    def fit_problems(self, config, bert_config, places) -> list:
        """r at most min(d_in, d_out) of every adapted Linear: B A has rank at most that, so a larger r only adds
        parameters that cannot change the update."""
        if not places:
            return []
        narrowest = min(places, key=lambda place: min(_shape(bert_config, place)))
        d_in, d_out = _shape(bert_config, narrowest)
        if config.r > min(d_in, d_out):
            return [f"r {config.r} is larger than min(d_in, d_out) = {min(d_in, d_out)} of {narrowest[0]} ({d_in} -> "
                    f"{d_out}; hidden size {bert_config.hidden_size}): the update B A has rank at most "
                    f"{min(d_in, d_out)} there"]
        return []

    def formula(self, config, bert_config, place=None) -> int:
        return lora_parameters(*_shape(bert_config, place), config.r)

    def sizes(self, config, bert_config, place=None) -> dict:
        if place is None:
            return {"r": config.r}
        d_in, d_out = _shape(bert_config, place)
        return {"d_in": d_in, "d_out": d_out, "r": config.r}

    def expected_modules(self, config, bert_config) -> int:
        return count_matches(config.target_modules, bert_config.num_hidden_layers)

    def leaves(self, config) -> tuple:
        return ("lora_A.weight", "lora_B.weight")

    codes = {"scale": "The update is scaled by another factor than the claimed s",
             "target-modules": "The Linears adapted are not the ones the claimed target_modules names",
             "merge": "The merged weights disagree with the unmerged model (W + s B A, the bias unchanged)"}
    misplaced_code = "target-modules"

    def variants(self, config) -> list:
        """The update scaled by the classic wrong factors (alpha for alpha / r, the other of alpha / r and
        alpha / sqrt(r), none at all), or absent, in every adapted Linear of a layer at once."""
        labels = tuple(sorted({label for _, label, _ in self.slots_by_name(config)}))
        out = []
        for text, factor in self._wrong_factors(config.scaling, config.r, config.alpha).items():
            out.append(Variant("scale", f"the update scaled by {text} = {factor:g} instead of s = "
                                        f"{config.scaling:g}", labels,
                               lambda m, f=factor: (lambda x, affine: affine(x) + m.lora_B(m.lora_A(x)) * f)))
        out.append(Variant("missing-modules", "no update in the layer's adapted Linears", labels, lambda m: None))
        return out

    merge_text = "W + s B A"
    backward_stages = (("lora_B.", "s B^T"), ("lora_A.", "A^T"))

    def merged(self, module, weight, bias):
        """W + s B A; the bias is unchanged (Hu2021 §4.1: "W = W0 + BA" at deployment)."""
        return np.asarray(weight, np.float64) + module.delta(), None if bias is None else np.asarray(bias, np.float64)

    def merge_variants(self, config, module, weight, bias) -> list:
        """The update merged with the classic wrong factors, subtracted, or transposed (a square Linear)."""
        W, b = np.asarray(weight, np.float64), None if bias is None else np.asarray(bias, np.float64)
        BA = module.lora_B.weight.data.astype(np.float64) @ module.lora_A.weight.data.astype(np.float64)
        s, r = module.scaling, module.r
        out = []
        for text, factor in self._wrong_factors(s, r, config.alpha).items():
            out.append((f"merged with the update scaled by {text} = {factor:g} instead of s = {s:g}",
                        (W + factor * BA, b)))
        out.append(("merged with the update subtracted (W - s B A)", (W - s * BA, b)))
        if BA.shape[0] == BA.shape[1]:
            out.append(("merged with the update transposed (W + s (B A)^T)", (W + s * BA.T, b)))
        return out

    @staticmethod
    def _wrong_factors(s, r, alpha) -> dict:
        """{description: factor} of the classic wrong scalings, those that differ from s."""
        factors = {"alpha (not divided by r)": alpha, "alpha / r": alpha / r, "alpha / sqrt(r)": alpha / r ** 0.5,
                   "1 (no scaling)": 1.0, "2 s": 2 * s, "s / 2": s / 2}
        return {t: f for t, f in factors.items() if abs(f - s) > 1e-12 * max(1.0, abs(s))}

    def slots_by_name(self, config):
        """(path, label, None) of the Linears of one BERT layer and the pooler that target_modules names."""
        from adapters.targets import LAYER_LINEARS

        names = [f"encoder.layer.0.{n}" for n in LAYER_LINEARS] + ["pooler.dense"]
        return [(n, n.rsplit(".", 1)[-1], None) for n in names if matches(config.target_modules, n)]

    def identity_config(self, config):
        """B = 0 whatever the init of A: the update is zero, the model exactly the base."""
        return config

    def init_text(self, config) -> str:
        return {"kaiming_uniform": "A Kaiming-uniform, B = 0", "gaussian": "A ~ N(0, 1/r^2), B = 0"}[config.init]

    def describe(self, config) -> str:
        scaling = f"alpha / sqrt(r) = {config.scaling:g}" if config.use_rslora else f"alpha / r = {config.scaling:g}"
        return f"LoRA r = {config.r} on {config.target_modules}, s = {scaling}, init {self.init_text(config)}"

    def init_claims(self, config, bert_config, place=None) -> dict:
        d_in, _ = _shape(bert_config, place)
        a = Claim("normal", std=1.0 / config.r) if config.init == "gaussian" else \
            Claim("uniform", bound=1.0 / math.sqrt(d_in))
        return {"lora_A.weight": a, "lora_B.weight": Claim("zeros")}

    def expected_init_change(self, config, bert_config) -> float:
        return 0.0  # B = 0

    # ---- PEFT's vocabulary (LoraConfig, adapter_model.safetensors) --------------------------------------------
    peft_leaves = {"lora_A.weight": "lora_A.weight", "lora_B.weight": "lora_B.weight"}  # PEFT's -> ours (the same)

    def config_from_peft(self, peft: dict, bert_config) -> LoraConfig:
        """Our LoraConfig for PEFT's; ValueError naming each field that changes what PEFT computes and is not
        reproduced here."""
        refused = {"use_dora": False, "bias": "none", "fan_in_fan_out": False, "lora_bias": False,
                   "layers_to_transform": None, "exclude_modules": None, "rank_pattern": {}, "alpha_pattern": {},
                   "modules_to_save": None, "layer_replication": None, "target_parameters": None,
                   "use_qalora": False, "use_bdlora": None, "trainable_token_indices": None}
        problems = [f"{k}={peft[k]!r}" for k, ok in refused.items() if peft.get(k) not in (ok, None, {}, [], False)]
        init = peft.get("init_lora_weights", True)
        if init not in (True, "gaussian"):
            problems.append(f"init_lora_weights={init!r}")
        if problems:
            raise ValueError("PEFT LoRA config not reproduced here: " + "; ".join(problems))
        targets_ = peft.get("target_modules")
        targets_ = sorted(targets_) if isinstance(targets_, (list, tuple, set)) else targets_
        return LoraConfig(r=peft["r"], alpha=float(peft.get("lora_alpha", 8)), target_modules=targets_,
                          dropout=float(peft.get("lora_dropout", 0.0)), use_rslora=bool(peft.get("use_rslora", False)),
                          init="gaussian" if init == "gaussian" else "kaiming_uniform", train_layer_norms=False,
                          train_head=True)

    def config_to_peft(self, config: LoraConfig) -> dict:
        return {"peft_type": "LORA", "task_type": None, "r": config.r, "lora_alpha": config.alpha,
                "target_modules": config.target_modules, "lora_dropout": config.dropout,
                "use_rslora": config.use_rslora, "init_lora_weights": True if config.init == "kaiming_uniform"
                else "gaussian", "bias": "none", "fan_in_fan_out": False, "use_dora": False, "modules_to_save": None,
                "inference_mode": True}

    def from_peft(self, leaf, array, config, place):
        return array

    def to_peft(self, leaf, array, config, place):
        return array

    def config_strategy(self, st, bert_config=None, sizes=(1, 6), policies: bool = True, avoid=frozenset()):
        """Rank, alpha, rsLoRA, the targets (lists of names, or a pattern), and what else trains."""
        low, high = (max(2, sizes[0]), max(sizes[1], 2) + len(avoid)) if avoid else sizes
        # r <= min(d_in, d_out) of every Linear it may adapt (fit_problems): D and F; 1 when no other r is left
        widest = min(bert_config.hidden_size, bert_config.intermediate_size) if bert_config is not None else high
        rank = st.sampled_from([r for r in range(low, high + 1) if r not in avoid and r <= widest] or [1])
        target = st.sampled_from([["query", "value"], ["query", "key", "value"], ["dense"], ["value", "output.dense"],
                                  r".*\.attention\.self\.(query|value)"])
        policy = st.booleans() if policies else st.just(False)
        return st.builds(LoraConfig, r=rank, alpha=st.sampled_from([1.0, 8.0, 16.0, 32.0]), target_modules=target,
                         use_rslora=st.booleans(), train_layer_norms=policy, train_head=st.booleans() if policies
                         else st.just(True))


LORA = register_kind(LoraKind())
