"""`minibert check`: the paper's three facts, measured on a real pretrained BERT.

1. Parameter count: every adapter module has the parameters its kind's formula gives (bottleneck adapters:
   2MD + D + M, Houlsby2019 §2.1).
2. (Near-)identity at init: with the kind's identity init (bottleneck: W_up = 0) the adapted model equals the
   base model bit for bit; with the preset's small init the final hidden states move only slightly (Houlsby2019
   §2.1: "near-identity"). How slightly depends on the preset (std 1e-3, 1e-2, 0.02; truncated or not), so it is
   judged against the preset's own claim (the kind's `init_claims`, judged by minibert_adapters.facts.init_stats): the
   drawn weights have the claimed distribution, and the output moves no more than ten times what the claim
   predicts.
3. Gradients reach only what trains: after train_adapter, one backward sets .grad on exactly the
   parameters the policy trains, and the adapter gradients agree with float64 central differences.
"""

from __future__ import annotations

import re

import numpy as np

from adapters import (
    Policy,
    adapter_summary,
    add_adapter,
    kind_of,
    parameter_roles,
    preset_config,
    remove_adapter,
    set_active_adapter,
    train_adapter,
)
from adapters.policy import trainable_names
from autograd import no_grad
from minibert_adapters.facts.init_stats import CHANGE_FACTOR, judge_modules

SENTENCES = ["the movie was a delight from start to finish .",
             "a tedious , overlong mess with nothing to say .",
             "Adapters add a few parameters per task and keep the base model frozen."]
LABELS = [1, 0, 1]


def size_override(preset: str) -> str:
    """The config field a command's `--size` sets for `preset`: its kind's `size_field`."""
    field = kind_of(preset_config(preset)).size_field
    if field is None:
        raise ValueError(f"--size: preset {preset!r} is of a kind with no size")
    return field


def _relative_change(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def run_check(model_path=None, preset: str = "houlsby", size: int | None = None, n_fd: int = 6, seed: int = 0,
              **overrides) -> dict:
    """Load the model in float64, insert adapters and measure the three facts. Returns a JSON-able report."""
    from minibert import BertForSequenceClassification, Tokenizer
    from minibert.pretrained import resolve_model_dir

    folder = resolve_model_dir(model_path)
    if size is not None:
        overrides[size_override(preset)] = size
    config = preset_config(preset, **overrides)
    kind = kind_of(config)
    tok = Tokenizer.from_pretrained(folder)
    enc = tok(SENTENCES, padding=True, truncation=True, max_length=32)
    batch = dict(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], token_type_ids=enc["token_type_ids"])
    model = BertForSequenceClassification.from_pretrained(folder, dtype=np.float64, num_labels=2, seed=seed)
    model.eval()
    bert = model.bert
    report = {"model": {"path": str(folder), "hidden_size": bert.config.hidden_size,
                        "num_hidden_layers": bert.config.num_hidden_layers,
                        "base_parameters": bert.num_parameters()},
              "preset": preset, "kind": kind.name, "config": config.to_dict(), "facts": {}}
    facts = report["facts"]

    # -- 2. identity at init (measured first, on the frozen base in eval mode) --------------------------------
    with no_grad():
        base = bert(**batch).last_hidden_state.data
        identity = kind.identity_config(config)
        if identity is not None:
            add_adapter(model, "zero_init", identity, seed=seed)
            zero = bert(**batch).last_hidden_state.data
            remove_adapter(model, "zero_init")
        else:  # a kind with no exact identity (prefix tuning): the near-identity below is all it claims
            zero = base
        add_adapter(model, "check", config, seed=seed)
        near = bert(**batch).last_hidden_state.data
    mask = batch["attention_mask"].astype(bool)
    rel = _relative_change(near[mask], base[mask])
    # the adapter's tensors as add_adapter drew them, module by module
    drawn = [(place, {leaf: p.data.copy() for leaf, p in place[2].adapters["check"].named_parameters()})
             for place in kind.slots(bert, config)]
    distribution = judge_modules(kind, config, bert.config, drawn)
    expected = kind.expected_init_change(config, bert.config)
    facts["identity"] = {
        "identity_init": kind.identity_text, "init_text": kind.init_text(config),
        "zero_init_bit_identical": bool(np.array_equal(zero, base)),
        "zero_init_max_abs_diff": float(np.abs(zero - base).max()),
        "init": getattr(config, "init", None), "init_std": getattr(config, "init_std", None),
        "init_distribution": distribution,
        "std_init_relative_change": rel, "expected_relative_change": expected, "change_factor": CHANGE_FACTOR,
    }
    facts["identity"]["ok"] = (facts["identity"]["zero_init_bit_identical"] and distribution["ok"]
                               and rel <= CHANGE_FACTOR * expected)

    # -- 1. parameter count ------------------------------------------------------------------------------------
    summary = adapter_summary(model, "check")
    d, n_layers = bert.config.hidden_size, bert.config.num_hidden_layers
    # What the config says should train, as arithmetic on the sizes (independent of the model's names):
    # the adapters' formulas, 2D per base LayerNorm (embeddings + two per layer), the head, the pooler.
    expected = (sum(r["formula"] for r in summary["modules"])
                + (2 * d * (2 * n_layers + 1) if config.train_layer_norms else 0)
                + ((d + 1) * model.config.num_labels if config.train_head else 0)
                + (d * d + d if config.train_pooler else 0))
    facts["parameter_count"] = {
        "modules": summary["modules"],
        "formula_text": kind.formula_text,
        "expected_modules": kind.expected_modules(config, bert.config),
        "adapter_parameters": summary["adapter_parameters"], "layer_norm_parameters": summary["layer_norm_parameters"],
        "head_parameters": summary["head_parameters"], "pooler_parameters": summary["pooler_parameters"],
        "trainable_parameters": summary["trainable_parameters"], "expected_trainable_parameters": expected,
        "base_parameters": summary["base_parameters"], "percent_of_base": summary["percent_of_base"],
    }
    facts["parameter_count"]["ok"] = (
        all(r["formula"] == r["counted"] for r in summary["modules"])
        and len(summary["modules"]) == facts["parameter_count"]["expected_modules"]
        and summary["trainable_parameters"] == expected)

    # -- 3. gradients only where they belong ---------------------------------------------------------------------
    trainable = set(train_adapter(model, "check"))
    model.eval()  # no dropout, so the finite differences see the same function
    loss = model(**batch, labels=np.array(LABELS)).loss
    loss.backward()
    params = dict(model.named_parameters())
    with_grad = {k for k, p in params.items() if p.grad is not None}
    # What the policy trains, from the one rule (adapters.policy); train_adapter must have applied exactly it.
    should_train = set(trainable_names(model, Policy.for_adapter("check", config)))
    facts["gradients"] = {
        "loss": float(loss.data), "trainable": len(trainable), "with_grad": len(with_grad),
        "frozen_without_grad": sum(1 for k in params if k not in should_train and params[k].grad is None),
        "frozen": len(params) - len(should_train),
        "with_grad_names": sorted(with_grad), "frozen_with_grad": sorted(with_grad - should_train),
        "trainable_without_grad": sorted(should_train - with_grad),
        "policy_mismatch": sorted(trainable ^ should_train), "should_train": len(should_train),
        "without_grad_names": sorted(set(params) - with_grad),
    }
    facts["gradients"]["ok"] = with_grad == should_train == trainable

    # -- 3b. finite differences on a sample of adapter-gradient entries (float64) ---------------------------------
    rng = np.random.default_rng(seed)
    roles = parameter_roles(model)
    adapter_names = [k for k in sorted(trainable) if roles[k][0].adapter == "check"]
    # Tensors whose gradient is not zero everywhere first: at an init with B = 0 (LoRA) or W_up = 0, the other
    # factor's gradient is exactly zero, and comparing 0 with 0 would test nothing.
    moving = [k for k in adapter_names if np.any(params[k].grad)]
    adapter_names = moving if len(moving) >= min(n_fd, len(adapter_names)) else adapter_names
    chosen = rng.choice(len(adapter_names), size=min(n_fd, len(adapter_names)), replace=False)
    picks = [adapter_names[i] for i in chosen]
    # atol: float64 central differences on a loss of order 1 carry ~1e-16 / eps = 1e-10 of rounding noise, and
    # adapter gradients at init are small (~1e-6), so gradcheck's usual atol of 1e-5 would pass a zero gradient.
    eps, atol, rtol, entries = 1e-6, 1e-9, 1e-3, []

    def loss_value():
        with no_grad():
            return float(model(**batch, labels=np.array(LABELS)).loss.data)

    for name in picks:
        p = params[name]
        # The entry with the largest |gradient| in that tensor: where a wrong backward shows most.
        idx = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(p.grad)), p.shape))
        analytic = float(p.grad[idx])
        old = p.data[idx]
        p.data[idx] = old + eps
        plus = loss_value()
        p.data[idx] = old - eps
        minus = loss_value()
        p.data[idx] = old
        numeric = (plus - minus) / (2 * eps)
        ok = abs(analytic - numeric) <= atol + rtol * abs(numeric)
        entries.append({"parameter": name, "index": list(idx), "analytic": analytic, "numeric": numeric, "ok": ok})
    facts["finite_differences"] = {"eps": eps, "atol": atol, "rtol": rtol, "entries": entries,
                                   "ok": bool(entries) and all(e["ok"] for e in entries)}
    set_active_adapter(model, "check")
    report["ok"] = all(f["ok"] for f in facts.values())
    return report


def _grouped(names) -> list:
    """Parameter names with the layer index folded: 'encoder.layer.{0-5}.output.dense.weight  (x6)'."""
    groups = {}
    for name in names:
        m = re.match(r"^(.*?layer\.)(\d+)(\..*)$", name)
        key = (m.group(1), m.group(3)) if m else (name, "")
        groups.setdefault(key, []).append(int(m.group(2)) if m else None)
    out = []
    for (head, tail), layers in groups.items():
        if layers == [None]:
            out.append(head)
        else:
            layers = sorted(layers)
            span = f"{layers[0]}-{layers[-1]}" if layers == list(range(layers[0], layers[-1] + 1)) else \
                ",".join(map(str, layers))
            out.append(f"{head}{{{span}}}{tail}  (x{len(layers)})")
    return out


def format_report(report: dict) -> str:
    """The report as a readable text table."""
    f = report["facts"]
    pc, ident, grads, fd = f["parameter_count"], f["identity"], f["gradients"], f["finite_differences"]
    mark = {True: "PASS", False: "FAIL"}
    m = report["model"]
    lines = [f"model: {m['path']}  (D={m['hidden_size']}, L={m['num_hidden_layers']}, "
             f"{m['base_parameters']:,} base parameters)",
             f"adapter preset: {report['preset']}  "
             + ", ".join(f"{k}={v}" for k, v in report["config"].items()), "",
             f"[{mark[pc['ok']]}] 1. parameter count: {pc['formula_text']} per module"]
    not_sizes = {"module", "sublayer", "formula", "counted"}
    sizes = [k for k in (pc["modules"][0] if pc["modules"] else {}) if k not in not_sizes]  # the kind's shape_info
    formula = pc["formula_text"].replace(" ", "")
    lines.append(f"    {'module':<58} " + "".join(f"{k:>5} " for k in sizes) + f"{formula:>9} {'counted':>9}")
    for r in pc["modules"]:
        lines.append(f"    {r['module']:<58} " + "".join(f"{r[k]:>5} " for k in sizes)
                     + f"{r['formula']:>9,} {r['counted']:>9,}")
    lines += [f"    {len(pc['modules'])} modules (expected {pc['expected_modules']}), "
              f"adapters {pc['adapter_parameters']:,}"
              f" + LayerNorms {pc['layer_norm_parameters']:,} + head {pc['head_parameters']:,}"
              f" + pooler {pc['pooler_parameters']:,} = {pc['trainable_parameters']:,} trainable"
              f" (the config's policy: {pc['expected_trainable_parameters']:,})"
              f" = {pc['percent_of_base']:.2f}% of {pc['base_parameters']:,}", "",
              f"[{mark[ident['ok']]}] 2. identity at init",
              f"    {ident['identity_init']}: outputs bit-identical to the base model: "
              f"{ident['zero_init_bit_identical']} (max |diff| {ident['zero_init_max_abs_diff']:.3g})",
              f"    {ident['init_text']}: relative change of final hidden states "
              f"{ident['std_init_relative_change']:.3e} (the claimed init predicts "
              f"{ident['expected_relative_change']:.1e}; allowed {ident['change_factor']:g}x that)"]
    for leaf, e in ident["init_distribution"]["leaves"].items():
        detail = f"measured std {e['measured_std']:.3e}, expected {e.get('expected_std', 0.0):.3e}" \
            if "measured_std" in e else f"max |value| {e['max_abs']:.1e}"
        lines.append(f"    {leaf:<12} {e['claim']:<17} {detail}  {mark[e['ok']]}")
    lines += ["",
              f"[{mark[grads['ok']]}] 3. gradients only where the policy trains (one backward, loss "
              f"{grads['loss']:.4f})",
              f"    {grads['with_grad']} parameters with .grad; the policy trains {grads['should_train']}, "
              f"train_adapter made {grads['trainable']} trainable; {grads['frozen_without_grad']} of "
              f"{grads['frozen']} frozen have .grad None"]
    lines += [f"      with .grad:    {pattern}" for pattern in _grouped(grads["with_grad_names"])]
    lines += [f"      .grad is None: {pattern}" for pattern in _grouped(grads["without_grad_names"])]
    for name in grads["policy_mismatch"]:
        lines.append(f"      TRAIN_ADAPTER DISAGREES WITH THE POLICY: {name}")
    for name in grads["frozen_with_grad"]:
        lines.append(f"      FROZEN BUT HAS GRAD: {name}")
    for name in grads["trainable_without_grad"]:
        lines.append(f"      TRAINABLE WITHOUT GRAD: {name}")
    lines += ["", f"[{mark[fd['ok']]}] 3b. float64 central differences (eps {fd['eps']:g}) on adapter gradients"]
    for e in fd["entries"]:
        lines.append(f"    {e['parameter']}{e['index']}: analytic {e['analytic']:+.8e} numeric {e['numeric']:+.8e}"
                     f"  {mark[e['ok']]}")
    lines += ["", "ALL FACTS HOLD" if report["ok"] else "SOME FACT FAILED"]
    return "\n".join(lines)
