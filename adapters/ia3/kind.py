"""The (IA)^3 kind: which Linears it rescales (PEFT's target_modules and feedforward_modules), what it counts."""

from __future__ import annotations

import numpy as np

from adapters.ia3.config import IA3Config
from adapters.ia3.module import IA3Scale
from adapters.kinds import AdapterKind, Claim, Variant, register_kind
from adapters.targets import count_matches, linears, matches


class IA3Kind(AdapterKind):
    name = "ia3"
    config_class = IA3Config
    formula_text = "d_out, or d_in where the input is scaled"
    identity_text = "l = 1"
    peft_type = "IA3"

    def all_slots(self, bert):
        return linears(bert)

    def slots(self, bert, config):
        return [s for s in self.all_slots(bert) if matches(config.target_modules, s[0])]

    def input_scaled(self, config, place) -> bool:
        """Is the Linear at `place` one of the feed-forward modules, scaled at its input?"""
        return matches(config.feedforward_modules, place[0])

    def build(self, name, config, bert_config, dtype, rng, place=None) -> IA3Scale:
        linear = place[2]
        return IA3Scale(linear.in_features, linear.out_features, self.input_scaled(config, place), dtype=dtype,
                        name=name)

    def formula(self, config, bert_config, place=None) -> int:
        if place is None:
            return bert_config.hidden_size
        return place[2].in_features if self.input_scaled(config, place) else place[2].out_features

    def sizes(self, config, bert_config, place=None) -> dict:
        if place is None:
            return {}
        return {"d_in": place[2].in_features, "d_out": place[2].out_features,
                "scales": "input" if self.input_scaled(config, place) else "output"}

    def expected_modules(self, config, bert_config) -> int:
        return count_matches(config.target_modules, bert_config.num_hidden_layers)

    def leaves(self, config) -> tuple:
        return ("ia3_l",)

    codes = {"scaled-side": "The learned vector scales the other side of a Linear than the claimed "
                            "feedforward_modules say (its input instead of its output, or the reverse)",
             "target-modules": "The Linears rescaled are not the ones the claimed target_modules names",
             "merge": "The merged weights disagree with the unmerged model (the rows of W and b scaled by l, or the "
                      "columns of W for an input-scaled Linear)"}
    misplaced_code = "target-modules"

    def variants(self, config) -> list:
        """Each rescaled Linear of a layer with its vector on the other side (a feed-forward module scaled at its
        output, an output-scaled one at its input, where the sizes allow), or with no vector at all."""
        def other_side(m):
            if m.feedforward:  # l has d_in entries; at the output it fits only a square Linear
                return lambda x, affine: affine(x) * m.ia3_l if m.d_in == m.d_out else affine(x * m.ia3_l)
            return lambda x, affine: affine(x * m.ia3_l) if m.d_in == m.d_out else affine(x) * m.ia3_l

        from adapters.targets import LAYER_LINEARS

        labels = sorted({n.rsplit(".", 1)[-1] for n in LAYER_LINEARS if matches(config.target_modules, n)})
        out = [Variant("scaled-side", f"the {label} vectors on the other side of their Linear", (label,), other_side)
               for label in labels]
        return out + [Variant("missing-modules", "no rescaling in the layer", tuple(labels), lambda m: None)]

    merge_text = "diag(l) W and l * b, or W diag(l) where the input is scaled"

    def merged(self, module, weight, bias):
        """l * (W x + b) = (diag(l) W) x + l * b: rows and bias scaled; W (l * x) = (W diag(l)) x: columns."""
        W, b = np.asarray(weight, np.float64), None if bias is None else np.asarray(bias, np.float64)
        l = module.ia3_l.data.astype(np.float64)
        if module.feedforward:
            return W * l[None, :], b
        return W * l[:, None], None if b is None else b * l

    def merge_variants(self, config, module, weight, bias) -> list:
        """An output-scaled Linear merged without scaling its bias (l multiplies W x + b, the bias too), or with l
        on the other side of W (a square Linear)."""
        W, b = np.asarray(weight, np.float64), None if bias is None else np.asarray(bias, np.float64)
        l = module.ia3_l.data.astype(np.float64)
        out = []
        if not module.feedforward and b is not None:
            out.append(("merged with the rows of W scaled but not the bias", (W * l[:, None], b)))
        if W.shape[0] == W.shape[1]:
            other = (W * l[:, None], b if b is None or not module.feedforward else b * l) if module.feedforward \
                else (W * l[None, :], b)
            out.append(("merged with l on the other side of W", other))
        return out

    def identity_config(self, config):
        return config  # l = 1: exactly the base model

    def init_text(self, config) -> str:
        return "l = 1"

    def describe(self, config) -> str:
        return f"(IA)^3 on {config.target_modules}, input-scaled {config.feedforward_modules}"

    def init_claims(self, config, bert_config, place=None) -> dict:
        return {"ia3_l": Claim("ones")}

    def expected_init_change(self, config, bert_config) -> float:
        return 0.0

    # ---- PEFT's vocabulary (IA3Config, adapter_model.safetensors) ---------------------------------------------
    peft_leaves = {"ia3_l": "ia3_l"}

    def config_from_peft(self, peft: dict, bert_config) -> IA3Config:
        problems = [f"{k}={peft[k]!r}" for k in ("fan_in_fan_out", "modules_to_save", "exclude_modules",
                                                  "layers_to_transform") if peft.get(k) not in (None, False, [])]
        if peft.get("init_ia3_weights", True) is not True:
            problems.append(f"init_ia3_weights={peft['init_ia3_weights']!r}")
        if problems:
            raise ValueError("PEFT (IA)^3 config not reproduced here: " + "; ".join(problems))

        def listed(v):
            return sorted(v) if isinstance(v, (list, tuple, set)) else v

        return IA3Config(target_modules=listed(peft.get("target_modules")),
                         feedforward_modules=listed(peft.get("feedforward_modules") or []), train_layer_norms=False,
                         train_head=True)

    def config_to_peft(self, config: IA3Config) -> dict:
        return {"peft_type": "IA3", "task_type": None, "target_modules": config.target_modules,
                "feedforward_modules": config.feedforward_modules, "init_ia3_weights": True, "fan_in_fan_out": False,
                "modules_to_save": None, "inference_mode": True}

    def from_peft(self, leaf, array, config, place):
        """PEFT keeps l as (1, d_in) for an input-scaled Linear, (d_out, 1) otherwise; ours is a vector."""
        return np.asarray(array).reshape(-1)

    def to_peft(self, leaf, array, config, place):
        return array.reshape(1, -1) if self.input_scaled(config, place) else array.reshape(-1, 1)

    def config_strategy(self, st, bert_config=None, policies: bool = True, avoid=frozenset(), **_):
        """PEFT's BERT defaults, output scaling only, or an input-scaled intermediate."""
        pairs = st.sampled_from([(["key", "value", "output.dense"], ["output.dense"]), (["query", "value"], []),
                                 (["intermediate.dense", "value"], ["intermediate.dense"])])
        policy = st.booleans() if policies else st.just(False)
        return pairs.flatmap(lambda p: st.builds(IA3Config, target_modules=st.just(list(p[0])),
                                                 feedforward_modules=st.just(list(p[1])), train_layer_norms=policy))


IA3 = register_kind(IA3Kind())
