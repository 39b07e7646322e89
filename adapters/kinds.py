"""Adapter kinds: the one interface a parameter-efficient method implements to plug into minibert.

A kind is a subclass of `AdapterKind`, registered once with `register_kind(MyKind())`. It answers, for its
own method, everything the rest of the project asks:

    where it goes     slots(bert, config) -> [(path, sublayer, slot module)];  all_slots(bert) (any config)
    what it builds    build(name, config, bert_config, dtype, rng, place) -> AdapterModule, one per place
                      (a place is one (path, label, slot module) of `slots`); fit_problems(...) first says
                      what of the config the model cannot take (a rank above a Linear's width)
    what it counts    formula(config, bert_config) (per module, by arithmetic); formula_text; expected_modules
    its init          identity_config(config) (exactly the base model at init, or None); init_claims(...)
                      (the distribution each tensor claims); expected_init_change(config, bert_config)
    other spellings   foreign_leaves ({other library's leaf name: ours}); sized_like(config, tensors)
    its known bugs    variants(config): the wrong versions the cross-check diagnosis tries
    merging           merged(module, W, b): the Linear's weights with the module folded in (None: it does not
                      merge); merge_variants(config, module, W, b): the known-wrong merges

A *slot* is a module of the model with a `hook` attribute (minibert's `SublayerOutput`, its residual and norm).
`AdapterSet` does the rest for every kind alike: it registers the built modules under `<slot>.adapters.<name>`
(so their parameters get dotted names), points `slot.hook` at the active one, decides what trains
(`adapters.policy`, by module type: every AdapterModule is an adapter), counts, saves and loads. A new kind is
one module (or package) defining its config (a `adapters.configs.KindConfig`), its AdapterModule and its
AdapterKind; docs/architecture.md shows a whole one.
"""

from __future__ import annotations

from dataclasses import dataclass

from autograd import nn


class AdapterModule(nn.Module):
    """Base class of every adapter module; `name` is the adapter (task) it belongs to.

    Being an AdapterModule is what makes a parameter an adapter parameter (`adapters.policy`): the rule is
    by type, never by parameter-name strings. `forward` has the signature of its slot's hook.
    """

    def __init__(self, name: str | None = None):
        super().__init__()
        self.name = name

    def num_formula_parameters(self) -> int:
        """The parameter count the method's paper gives for this module (compared with the count in `check`)."""
        raise NotImplementedError

    def shape_info(self) -> dict:
        """The sizes that enter the formula, for reports (e.g. {"D": 384, "M": 64})."""
        return {}


@dataclass(frozen=True)
class Claim:
    """The distribution one adapter tensor claims at init: "zeros", "ones", "normal", "truncated_normal" (cut at
    `bound` std) or "uniform" (on [-bound, bound]); `std` for the normals."""

    distribution: str
    std: float = 0.0
    bound: float = 0.0


@dataclass(frozen=True)
class Variant:
    """A known-wrong version of a kind, for the cross-check diagnosis: in the sub-layers of `scope`, the slot's hook
    becomes `hook(module)` (None: no adapter there) instead of the module itself. A kind whose module sits in the
    embeddings' hook (it hands every layer past keys and values) says instead what the wrong version hands them:
    `attend` for an encoder layer, `embed` for the embeddings."""

    code: str                 # the diagnosis code it stands for (e.g. "placement", "skip-connection")
    description: str          # what is wrong, in a few words, naming the sub-layers
    scope: tuple = ()         # the sub-layer labels (slots' second field) whose hook is replaced
    hook: object = None       # (module) -> a hook function, or None for "no adapter"
    attend: object = None     # (module, i, past, mask) -> ((keys, values), mask) that layer i gets: past is every
                              # layer's correct pair, mask the additive (B, 1, 1, P + T) one over its keys
    embed: object = None      # (module, token_type_ids, position_ids) -> (token_type_ids, position_ids) the
                              # embeddings look up
    sublayer: object = None   # (module, slot) -> a replacement for the slot's whole forward (h, x) -> y, in the
                              # sub-layers of `scope`: for a bug the slot's hook cannot express (before the dense)


class AdapterKind:
    """The interface; each method's docstring says what the project asks of a kind."""

    name = ""                  # stored in adapter_config.json as "kind"
    config_class = None        # a adapters.configs.KindConfig subclass
    formula_text = ""          # the count per module as the paper writes it, e.g. "2MD + D + M"
    size_field = None          # the config field the `--size` of the commands sets (e.g. "bottleneck_size")
    size_fields = ()           # every field that only gives a size (loading compares the sizes, not these)
    foreign_leaves: dict = {}  # leaf names other libraries give its tensors -> ours

    def slots(self, bert, config):
        """(path relative to bert, sublayer label, slot module) for every place `config` puts a module."""
        raise NotImplementedError

    def all_slots(self, bert):
        """Every place a module of this kind can go, whatever the config (to tell a misplaced tensor from an
        unknown one)."""
        raise NotImplementedError

    def build(self, name, config, bert_config, dtype, rng, place=None) -> AdapterModule:
        """The module for `place`, one (path, label, slot module) of `slots` (its shape may decide the module's)."""
        raise NotImplementedError

    def fit_problems(self, config, bert_config, places) -> list:
        """What keeps `config` from fitting a model of `bert_config` at `places` (its `slots`), one sentence each
        naming the field, its value and the model's size (a bottleneck wider than the layer); add_adapter refuses
        such a config before it builds anything. Sizes a config can check alone are its `problems`."""
        return []

    def formula(self, config, bert_config, place=None) -> int:
        """Parameters of the module at `place` ((path, label, slot) of `slots`), by the method's formula."""
        raise NotImplementedError

    def sizes(self, config, bert_config, place=None) -> dict:
        """The sizes in the formula ({"D": 384, "M": 64}), of the module at `place` (None: those of the config)."""
        return {}

    def expected_modules(self, config, bert_config) -> int:
        """How many modules `config` places in a model of `bert_config`, by arithmetic."""
        raise NotImplementedError

    def leaves(self, config) -> tuple:
        """Our names of a module's parameters under `config` ("down.weight", ...)."""
        raise NotImplementedError

    identity_text = "identity init"  # how the kind's identity init reads in a report ("W_up = 0")

    def describe(self, config) -> str:
        """The config in one line, for reports."""
        return f"{self.name} adapter"

    def init_text(self, config) -> str:
        """The claimed init in a few words, for reports ("truncated_normal std 0.001")."""
        return ""

    def identity_config(self, config):
        """A config of the same shapes whose init is exactly the base model (check's bit-identity), or None."""
        return None

    def init_claims(self, config, bert_config, place=None) -> dict:
        """{leaf: Claim} for every tensor of the module at `place` at init."""
        raise NotImplementedError

    def expected_init_change(self, config, bert_config) -> float:
        """The relative change of the final hidden states that the claimed init predicts (to a small factor)."""
        raise NotImplementedError

    def sized_like(self, config, tensors: dict, bert_config):
        """`config` with the sizes the tensors have ({slot path: {leaf: array}}), for a case whose tensors
        disagree with its claimed size; `config` itself if they agree or say nothing."""
        return config

    def variants(self, config) -> list:
        """Known-wrong versions (Variant) for the cross-check diagnosis."""
        return []

    def module_alone(self, module, h):
        """The module by itself on its input h (for references below the model: a property test of one module),
        e.g. h + A(h) for a sequential bottleneck adapter; NotImplementedError for a kind with no such form."""
        raise NotImplementedError(f"adapter kind {self.name!r} has no module-alone form")

    merge_text = ""    # the merge as the paper writes it, e.g. "W + s B A" (empty: the kind does not merge)

    def merged(self, module, weight, bias):
        """(weight, bias) of the Linear that `module` adapts with the module folded in, so that the Linear alone
        computes what the adapted one does, in float64; None for a kind that is no change of a Linear's weights
        (and whose `merge_text` is empty)."""
        return None

    def merge_variants(self, config, module, weight, bias) -> list:
        """Known-wrong merges [(description, (weight, bias))] of `module` (of `config`), for the diagnosis's
        `merge` code."""
        return []

    codes: dict = {}                # the diagnosis codes the kind's variants add: {code: sentence}
    size_code = None                # the code for tensors of other sizes than claimed (`sized_like`), if any
    # For the `backward` diagnosis: a module's tensors from its output back to its input, as [(leaf prefix, what
    # the backward goes through from there to the next)], e.g. [("up.", "W_up^T and f'"), ("down.", "")].
    backward_stages: tuple = ()
    misplaced_code = "placement"    # the code for tensors where the claimed config puts no module

    hub_architecture = None    # AdapterHub's "architecture" for this kind's configs, if AdapterHub has it

    def config_from_hub(self, hub: dict, bert_config, tensors: dict):
        """Our config for an AdapterHub config dict; tensors: {slot path: {our leaf: array}} of the adapter."""
        raise ValueError(f"adapter kind {self.name!r} has no AdapterHub form")

    def config_to_hub(self, config, bert_config) -> dict:
        """AdapterHub's config dict for ours (what its save_adapter would write under "config")."""
        raise ValueError(f"adapter kind {self.name!r} has no AdapterHub form")

    def config_strategy(self, st, bert_config=None, **options):
        """A Hypothesis strategy of configs (`st` is hypothesis.strategies), for minibert_adapters.testing."""
        raise NotImplementedError


KINDS: dict[str, AdapterKind] = {}


def register_kind(kind: AdapterKind) -> AdapterKind:
    if not isinstance(kind, AdapterKind):
        raise TypeError(f"register_kind takes an AdapterKind instance, got {type(kind).__name__}")
    KINDS[kind.name] = kind
    return kind


def kind_of(config) -> AdapterKind:
    """The kind whose config class `config` is an instance of."""
    for kind in KINDS.values():
        if isinstance(config, kind.config_class):
            return kind
    raise TypeError(f"no adapter kind takes a {type(config).__name__}; kinds: {', '.join(KINDS)}")


def kind_named(name: str) -> AdapterKind:
    if name not in KINDS:
        raise ValueError(f"unknown adapter kind {name!r}; known kinds: {', '.join(KINDS)}")
    return KINDS[name]


def foreign_leaf(leaf: str) -> str:
    """Our name for a leaf another library wrote (any kind's `foreign_leaves`), else the leaf itself."""
    for kind in KINDS.values():
        if leaf in kind.foreign_leaves:
            return kind.foreign_leaves[leaf]
    return leaf
