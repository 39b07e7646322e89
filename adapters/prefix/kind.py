"""The prefix-tuning kind: one module in the embeddings' hook, what it counts, what its init claims, PEFT's names."""

from __future__ import annotations

import math

import numpy as np

from adapters.kinds import AdapterKind, Claim, Variant, register_kind
from adapters.prefix.config import PrefixConfig
from adapters.prefix.module import PrefixEncoder, prefix_parameters

SLOT = "embeddings"                    # where the one module goes (relative to the BertModel)
PEFT_SAVED = "prompt_embeddings"       # the one tensor PEFT's save_pretrained writes, with no module path
PROJECTION_LEAVES = ("embedding.weight", "transform.0.weight", "transform.0.bias", "transform.2.weight",
                     "transform.2.bias")


class PrefixKind(AdapterKind):
    name = "prefix"
    config_class = PrefixConfig
    formula_text = "2LDP; MLP: PD + (D+1)E + (E+1)2LD"
    size_field = "num_virtual_tokens"
    size_fields = ("num_virtual_tokens", "encoder_hidden_size")
    identity_text = "no identity init (prefix tuning moves the output at init; base compared with itself)"
    peft_type = "PREFIX_TUNING"

    def all_slots(self, bert):
        """One place: the embeddings' hook, which renumbers the positions, zeroes the token types and hands every
        layer its keys and values. Convention: one module, not one per layer, because the projection's MLP is
        shared by all layers (PEFT's PrefixEncoder); so `set_active_adapter(..., layers=...)` cannot keep the
        prefix of some layers only (the slot is in no layer: with `layers` given, there is no prefix at all)."""
        return [(SLOT, "embeddings", bert.embeddings)]

    def slots(self, bert, config):
        return self.all_slots(bert)

    def build(self, name, config, bert_config, dtype, rng, place=None) -> PrefixEncoder:
        return PrefixEncoder(config.num_virtual_tokens, bert_config.num_hidden_layers,
                             bert_config.num_attention_heads, bert_config.head_dim,
                             bert_config.max_position_embeddings, config.prefix_projection,
                             config.width(bert_config.hidden_size) if config.prefix_projection else None,
                             dtype=dtype, rng=rng, name=name)

    def fit_problems(self, config, bert_config, places) -> list:
        """The P virtual tokens take the first P positions (PEFT's convention, see PrefixConfig): P must leave at
        least one of the model's max_position_embeddings to the text."""
        if config.num_virtual_tokens >= bert_config.max_position_embeddings:
            return [f"num_virtual_tokens {config.num_virtual_tokens} leaves no position for the text: the model "
                    f"has max_position_embeddings {bert_config.max_position_embeddings}, and the text's positions "
                    "follow the virtual tokens'"]
        return []

    def formula(self, config, bert_config, place=None) -> int:
        return prefix_parameters(config.num_virtual_tokens, bert_config.num_hidden_layers, bert_config.hidden_size,
                                 config.prefix_projection, config.width(bert_config.hidden_size))

    def sizes(self, config, bert_config, place=None) -> dict:
        sizes = {"P": config.num_virtual_tokens, "L": bert_config.num_hidden_layers, "D": bert_config.hidden_size}
        return {**sizes, "E": config.width(bert_config.hidden_size)} if config.prefix_projection else sizes

    def expected_modules(self, config, bert_config) -> int:
        return 1

    def leaves(self, config) -> tuple:
        return PROJECTION_LEAVES if config.prefix_projection else ("prompt_embeddings",)

    codes = {"prefix-layout": "The prefix table is read in another layout than PEFT's (row p of E as (2L, H, Dh), "
                              "layer-major, key before value)",
             "prefix-mask": "The attention mask is not extended over the prefix as claimed (every token may attend to "
                            "the P virtual keys, put before the real ones)",
             "prefix-positions": "The embeddings are not looked up as PEFT's prefix has them (real tokens at positions "
                                 "P .. P + T - 1, token types 0)"}

    def variants(self, config) -> list:
        """The classic misreadings of the table (keys and values swapped; all keys first, then all values; heads
        and head dims transposed), the mask not extended over the prefix (the prefix masked out like padding, or
        its visible block put after the real tokens' mask instead of before), and the embeddings looked up without
        the prefix's shift (positions from 0, token types kept)."""
        def table(module, batch):  # E (B, P, 2L, H, Dh) as PEFT lays it out
            m = module
            return m.rows(batch).data.reshape(batch, m.num_virtual_tokens, 2 * m.num_layers, m.num_heads, m.head_dim)

        def swapped(module, i, past, mask):
            return (past[i][1], past[i][0]), mask

        def keys_first(module, i, past, mask):
            kv = table(module, mask.shape[0]).transpose(2, 0, 3, 1, 4)  # (2L, B, H, P, Dh)
            return (kv[i], kv[module.num_layers + i]), mask

        def heads_transposed(module, i, past, mask):
            m, B = module, mask.shape[0]
            rows = m.rows(B).data.reshape(B, m.num_virtual_tokens, 2 * m.num_layers, m.head_dim, m.num_heads)
            kv = rows.transpose(2, 0, 4, 1, 3)  # (2L, B, H, P, Dh) from a (Dh, H) split
            return (kv[2 * i], kv[2 * i + 1]), mask

        def masked_out(module, i, past, mask):
            P = module.num_virtual_tokens
            out = mask.copy()
            out[..., :P] = np.finfo(mask.dtype).min
            return past[i], out

        def mask_after(module, i, past, mask):
            P = module.num_virtual_tokens
            return past[i], np.concatenate([mask[..., P:], mask[..., :P]], axis=-1)  # [tokens' mask ; visible]

        return [Variant("prefix-layout", "prefix keys and values swapped", attend=swapped),
               Variant("prefix-layout", "the table read as every layer's key, then every layer's value (2, L) "
                                        "instead of (L, 2)", attend=keys_first),
               Variant("prefix-layout", "each layer's width split as (Dh, H) instead of (H, Dh)",
                       attend=heads_transposed),
               Variant("prefix-mask", "the prefix masked out (its keys take no attention)", attend=masked_out),
               Variant("prefix-mask", "the prefix's visible block put after the real tokens' mask, not before",
                       attend=mask_after),
               Variant("prefix-positions", "real tokens at positions 0 .. T - 1, not shifted by P",
                       embed=lambda m, types, positions: (np.zeros_like(types), positions)),
               Variant("prefix-positions", "token types kept (PEFT's prefix drops them)",
                       embed=lambda m, types, positions: (types, positions + m.num_virtual_tokens))]

    def identity_config(self, config):
        """None: no init of prefix tuning gives the base model (even a zero table adds P keys that take attention)."""
        return None

    def init_text(self, config) -> str:
        if config.prefix_projection:
            return "embedding ~ N(0, 1), MLP Linears ~ U(+-1/sqrt(fan_in)) (torch's default)"
        return "prompt_embeddings ~ N(0, 1)"

    def describe(self, config) -> str:
        how = f"an MLP of width {config.encoder_hidden_size or 'D'}" if config.prefix_projection else "a table"
        return f"prefix tuning, {config.num_virtual_tokens} virtual tokens from {how}"

    def init_claims(self, config, bert_config, place=None) -> dict:
        if not config.prefix_projection:
            return {"prompt_embeddings": Claim("normal", std=1.0)}
        d, e = bert_config.hidden_size, config.width(bert_config.hidden_size)
        return {"embedding.weight": Claim("normal", std=1.0),
                "transform.0.weight": Claim("uniform", bound=1 / math.sqrt(d)),
                "transform.0.bias": Claim("uniform", bound=1 / math.sqrt(d)),
                "transform.2.weight": Claim("uniform", bound=1 / math.sqrt(e)),
                "transform.2.bias": Claim("uniform", bound=1 / math.sqrt(e))}

    def expected_init_change(self, config, bert_config) -> float:
        """2: a bound, not a small number. Prefix tuning has no near-identity init (N(0, 1) keys and values take a
        share of every query's attention from the first step), so what its init promises is only what any change
        of a post-LN BERT can do.

        Proof. Every final hidden state is a LayerNorm output h = gamma * n + beta, n = (x - mean) / sqrt(var + eps)
        with zero mean and |n|^2 = D var / (var + eps) <= D. So for the same token with and without the prefix,
        |n' - n| <= |n'| + |n| <= 2 sqrt(D), about 2 |n|: the normalised states change by at most 2 relative (and
        h by at most 2 sqrt(D) max|gamma| per token, which tests/adapters/test_prefix.py checks on MiniLM). Measured
        on MiniLM (check's sentences, float64): 0.52-0.57 for the "prefix" preset over seeds 0-4, 0.40-0.42 for
        "prefix-projection"; 0.41-0.43 with P = 1, 0.66-0.69 with P = 20.
        """
        return 2.0

    # ---- PEFT's vocabulary (PrefixTuningConfig, adapter_model.safetensors) -------------------------------------
    peft_leaves = {PEFT_SAVED: "prompt_embeddings"}  # PEFT's saved name -> our leaf (a plain table)

    def config_from_peft(self, peft: dict, bert_config) -> PrefixConfig:
        """Our config for the PrefixTuningConfig PEFT saved; ValueError naming each field not reproduced here.

        Convention: a saved projection is loaded as a plain table. PEFT saves only `prompt_embeddings`, the MLP's
        output on arange(P), not the MLP, and reloads it so too (inference_mode builds an Embedding(P, 2LD) even
        with prefix_projection=True); the function is the same, the MLP's weights are not in the file.
        init_weights and inference_mode are not read: they change how PEFT starts or whether it trains, not what a
        saved prefix computes.
        """
        problems = []
        model = {"num_layers": bert_config.num_hidden_layers, "token_dim": bert_config.hidden_size,
                 "num_attention_heads": bert_config.num_attention_heads, "num_transformer_submodules": 1}
        for field, ours in model.items():
            if peft.get(field) not in (None, ours):
                problems.append(f"{field}={peft[field]!r} (this model: {ours})")
        if peft.get("modules_to_save"):
            problems.append(f"modules_to_save={peft['modules_to_save']!r}")
        if not isinstance(peft.get("num_virtual_tokens"), int) or isinstance(peft.get("num_virtual_tokens"), bool):
            problems.append(f"num_virtual_tokens={peft.get('num_virtual_tokens')!r}")
        if problems:
            raise ValueError("PEFT prefix-tuning config not reproduced here: " + "; ".join(problems))
        return PrefixConfig(num_virtual_tokens=peft["num_virtual_tokens"], prefix_projection=False,
                            encoder_hidden_size=peft.get("encoder_hidden_size"), train_layer_norms=False,
                            train_head=True)

    def config_to_peft(self, config: PrefixConfig) -> dict:
        """PEFT's fields for our config. The model's own sizes (num_layers, token_dim, num_attention_heads) are left
        out: PEFT fills them from the model's config when it loads the folder (_prepare_prompt_learning_config),
        and encoder_hidden_size None becomes token_dim there. task_type FEATURE_EXTRACTION: a bare BertModel
        needs it (with None PEFT cannot build a prompt-learning model)."""
        return {"peft_type": "PREFIX_TUNING", "task_type": "FEATURE_EXTRACTION",
                "num_virtual_tokens": config.num_virtual_tokens, "prefix_projection": config.prefix_projection,
                "encoder_hidden_size": config.encoder_hidden_size, "num_transformer_submodules": 1,
                "init_weights": None, "modules_to_save": None, "inference_mode": True}

    def peft_key(self, key: str):
        """(module path, PEFT leaf) of a key of adapter_model.safetensors: PEFT writes the one `prompt_embeddings`,
        with no "base_model.model." module path; it goes to our module in the embeddings' hook."""
        return (SLOT, PEFT_SAVED) if key == PEFT_SAVED else (None, None)

    def peft_state(self, bert, name, config) -> dict:
        """What PEFT's save_pretrained writes: {"prompt_embeddings": E (P, 2LD)}, for a projection the MLP's output."""
        return {PEFT_SAVED: np.ascontiguousarray(bert.embeddings.adapters[name].table().data)}

    def from_peft(self, leaf, array, config, place):
        return array

    def to_peft(self, leaf, array, config, place):
        return array

    def config_strategy(self, st, bert_config=None, sizes=(1, 6), policies: bool = True, avoid=frozenset(), **_):
        """P, the projection and its width (drawn apart from the model's axis sizes), and what else trains."""
        tokens = st.integers(*sizes)
        width = st.integers(2, 9 + len(avoid)).filter(lambda e: e not in avoid)
        if avoid:
            tokens = st.integers(max(2, sizes[0]), max(sizes[1], 2) + len(avoid)).filter(lambda p: p not in avoid)
        if bert_config is not None:  # P leaves the text a position (fit_problems)
            tokens = tokens.filter(lambda p: p < bert_config.max_position_embeddings)
        policy = st.booleans() if policies else st.just(False)
        return st.builds(PrefixConfig, num_virtual_tokens=tokens, prefix_projection=st.booleans(),
                         encoder_hidden_size=st.one_of(st.none(), width), train_layer_norms=policy,
                         train_head=st.booleans() if policies else st.just(True))


PREFIX = register_kind(PrefixKind())
