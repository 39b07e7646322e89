"""The LoRA kind: which Linears it adapts (PEFT's target_modules), what it counts, what its init claims."""

from __future__ import annotations

import math
import re

from adapters.kinds import AdapterKind, Claim, register_kind
from adapters.lora.config import LoraConfig
from adapters.lora.module import LoraLinear, lora_parameters
from autograd import nn

# The Linears of one BERT encoder layer, by their names inside it, and the pooler's: the names target_modules
# is matched against (Devlin2019's architecture, Hugging Face's names).
LAYER_LINEARS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                 "intermediate.dense", "output.dense")


def targets(config: LoraConfig, name: str) -> bool:
    """Does `target_modules` name the module called `name` (relative to the BertModel)? As PEFT decides: a string
    is a regular expression the whole name must match; a list matches a name equal to an entry or ending in
    "." + an entry."""
    if isinstance(config.target_modules, str):
        return re.fullmatch(config.target_modules, name) is not None
    return any(name == t or name.endswith("." + t) for t in config.target_modules)


def _shape(config, bert_config, slot):
    """(d_in, d_out) of the Linear in `slot` (the model's width when no slot is given)."""
    if slot is None:
        return bert_config.hidden_size, bert_config.hidden_size
    return slot.in_features, slot.out_features


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
        for path, module in bert.named_modules():
            if isinstance(module, nn.Linear) and ".adapters." not in f".{path}." and path:
                yield path, path.rsplit(".", 1)[-1], module

    def slots(self, bert, config):
        return [s for s in self.all_slots(bert) if targets(config, s[0])]

    def build(self, name, config, bert_config, dtype, rng, slot=None) -> LoraLinear:
        d_in, d_out = _shape(config, bert_config, slot)
        return LoraLinear(d_in, d_out, config.r, config.scaling, config.dropout, config.init, dtype=dtype, rng=rng,
                          name=name)

    def formula(self, config, bert_config, slot=None) -> int:
        return lora_parameters(*_shape(config, bert_config, slot), config.r)

    def sizes(self, config, bert_config, slot=None) -> dict:
        if slot is None:
            return {"r": config.r}
        d_in, d_out = _shape(config, bert_config, slot)
        return {"d_in": d_in, "d_out": d_out, "r": config.r}

    def expected_modules(self, config, bert_config) -> int:
        names = [f"encoder.layer.{i}.{n}" for i in range(bert_config.num_hidden_layers) for n in LAYER_LINEARS]
        return sum(targets(config, n) for n in names + ["pooler.dense"])

    def leaves(self, config) -> tuple:
        return ("lora_A.weight", "lora_B.weight")

    def identity_config(self, config):
        """B = 0 whatever the init of A: the update is zero, the model exactly the base."""
        return config

    def init_text(self, config) -> str:
        return {"kaiming_uniform": "A Kaiming-uniform, B = 0", "gaussian": "A ~ N(0, 1/r^2), B = 0"}[config.init]

    def describe(self, config) -> str:
        scaling = f"alpha / sqrt(r) = {config.scaling:g}" if config.use_rslora else f"alpha / r = {config.scaling:g}"
        return f"LoRA r = {config.r} on {config.target_modules}, s = {scaling}, init {self.init_text(config)}"

    def init_claims(self, config, bert_config, slot=None) -> dict:
        d_in, _ = _shape(config, bert_config, slot)
        a = Claim("normal", std=1.0 / config.r) if config.init == "gaussian" else \
            Claim("uniform", bound=1.0 / math.sqrt(d_in))
        return {"lora_A.weight": a, "lora_B.weight": Claim("zeros")}

    def expected_init_change(self, config, bert_config) -> float:
        return 0.0  # B = 0

    def config_strategy(self, st, bert_config=None, sizes=(1, 6), policies: bool = True, avoid=frozenset()):
        """Rank, alpha, rsLoRA, the targets (lists of names, or a pattern), and what else trains."""
        rank = st.integers(*sizes)
        if avoid:
            rank = st.integers(max(2, sizes[0]), max(sizes[1], 2) + len(avoid)).filter(lambda r: r not in avoid)
        target = st.sampled_from([["query", "value"], ["query", "key", "value"], ["dense"], ["value", "output.dense"],
                                  r".*\.attention\.self\.(query|value)"])
        policy = st.booleans() if policies else st.just(False)
        return st.builds(LoraConfig, r=rank, alpha=st.sampled_from([1.0, 8.0, 16.0, 32.0]), target_modules=target,
                         use_rslora=st.booleans(), train_layer_norms=policy, train_head=st.booleans() if policies
                         else st.just(True))


LORA = register_kind(LoraKind())
