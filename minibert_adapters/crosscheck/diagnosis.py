"""Name the likely bug behind a failing cross-check, from the pattern of the differences.

Codes (docs/crosscheck.md):

| code             | the bug                                                  | found by                      |
|------------------|----------------------------------------------------------|-------------------------------|
| placement        | adapter after the LayerNorm, on the residual sum, or fed | a variant layer; the count    |
|                  | the other input; adapters where the placement puts none  |                               |
| skip-connection  | the adapter's internal skip (the `h +`) is missing       | a variant layer               |
| non-linearity    | another f than the claimed one                           | a variant layer               |
| init-scale       | init not the claimed distribution, or not near identity | init/ tensors                 |
| trainable-set    | a parameter trains that the policy freezes, or reverse   | `trainable`, grad/ tensors    |
| missing-modules  | adapters absent from some sub-layers or layers           | count, gradients, a variant   |
| base-mismatch    | differs without adapters: weights, LayerNorm eps, GELU   | the embeddings, a variant     |
|                  | form, attention mask                                     |                               |
| backward         | forward agrees, gradients do not; names where they stop  | grad/ tensors, layer by layer |
|                  | agreeing, walking back from the loss                     | and stage by stage            |
| tied-weights     | one module shared by several places (identical tensors)  | the tensors, when gradients   |
|                  |                                                          | differ                        |
| precision        | a float64 case that agrees only to float32 level        | the float32 row of the table  |

Each kind adds its own (`AdapterKind.codes`): `scale` and `bottleneck-size` (bottleneck), `scale` and `merge`
(LoRA), `scaled-side` and `merge` ((IA)^3), `target-modules` (both), `prefix-layout`, `prefix-mask` and
`prefix-positions` (prefix); docs/crosscheck.md lists them all.

Method. A hidden state that differs makes every later one differ, so the numbers alone do not say where a bug
is. Each encoder layer is therefore run *alone*, fed the candidate's own input to it (its hidden state i - 1),
first as this project computes it, then as each of a set of known-wrong variants would (`variants`). Where the
correct layer does not reproduce the candidate's hidden state i but a variant does, to the tolerance of the
table, the variant names the bug and the layer and sub-layer name where it is. Embeddings have no adapter, so a
difference there is a base mismatch by itself. Counts, the trainable set and the init are compared directly.
A correct implementation gets an empty diagnosis.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

import autograd.functional as F
from adapters.kinds import Variant as KindVariant
from adapters.kinds import kind_of
from adapters.names import adapter_key, adapter_parameter_name
from autograd import Tensor, nn, no_grad
from minibert.modeling import additive_mask
from minibert_adapters.crosscheck.tolerances import TOLERANCES, hidden_error, relative_error

SENTENCES = {
    "placement": "The adapter is not where the claimed placement puts it (after dense + dropout, before the "
                 "residual add and the LayerNorm)",
    "skip-connection": "The adapter's internal skip connection is missing: it returns its branch A(h) instead of "
                       "h + A(h)",
    "non-linearity": "The adapter applies another non-linearity than the claimed one",
    "init-scale": "The adapter's init is not the claimed distribution, or not near identity",
    "trainable-set": "The parameters that train are not the ones the claimed config's policy trains",
    "missing-modules": "Adapters are absent from some sub-layers or layers",
    "base-mismatch": "The model already differs where no adapter is involved (weights, LayerNorm eps, GELU form or "
                     "attention mask)",
    "backward": "The forward agrees but the gradients do not: the backward computes something else than the "
                "derivative of the forward",
    "tied-weights": "One module is shared by several places, its tensors written out under each: each place's "
                    "gradient is then the sum over them",
    "precision": "The case is float64 but agrees only to float32 level: part of it was computed in float32",
}
CODES = tuple(SENTENCES)


@dataclass(frozen=True)
class Variant:
    """This project's encoder layer with one thing changed: the adapter in some sub-layers (`adapter`, one of the
    claimed kind's `adapters.kinds.Variant`s) or the base model (LayerNorm eps, feed-forward activation, mask)."""

    code: str
    description: str
    adapter: KindVariant | None = None  # the kind's wrong version of its adapter, in the sub-layers of its scope
    layer_norm_eps: float | None = None  # replaces every LayerNorm's eps
    hidden_act: str | None = None       # replaces the feed-forward activation
    mask: str = "correct"               # "wrong-sign" (+ instead of -), "inverted" (masks real tokens), "ignored"


def variants(bert_config, config) -> list:
    """The known-wrong variants of the reference for a claimed BERT config and adapter config (None: no adapter):
    the kind's own (`AdapterKind.variants`) and the base model's."""
    out = []
    if config is not None:
        out += [Variant(v.code, v.description, adapter=v) for v in kind_of(config).variants(config)]
    for eps in (1e-5, 1e-6, 1e-12):
        if eps != bert_config.layer_norm_eps:
            out.append(Variant("base-mismatch", f"LayerNorm eps {eps:g} instead of {bert_config.layer_norm_eps:g}",
                               layer_norm_eps=eps))
    claimed_act = "gelu_new" if bert_config.hidden_act == "gelu_pytorch_tanh" else bert_config.hidden_act
    for act in ("gelu", "gelu_new"):
        if act != claimed_act:
            out.append(Variant("base-mismatch", f"feed-forward activation {act} instead of {claimed_act}",
                               hidden_act=act))
    out += [Variant("base-mismatch", "attention mask with the wrong sign (padding favoured)", mask="wrong-sign"),
            Variant("base-mismatch", "attention mask inverted (real tokens masked)", mask="inverted"),
            Variant("base-mismatch", "attention mask ignored", mask="ignored")]
    return out


def variant_mask(attention_mask, dtype, kind: str):
    """The additive attention mask (B, 1, 1, T) a variant uses; None adds nothing."""
    m = np.asarray(attention_mask)[:, None, None, :].astype(dtype)
    if kind == "correct":
        return None if m.all() else additive_mask(attention_mask, dtype)
    if kind == "wrong-sign":
        return None if m.all() else -additive_mask(attention_mask, dtype)
    if kind == "inverted":
        return m * np.finfo(dtype).min
    return None  # ignored


@contextlib.contextmanager
def as_variant(layer, v: Variant, slots: list, modules: dict):
    """Encoder layer `layer` (this project's own) changed into variant `v` for the duration: slot hooks, LayerNorm
    eps and the feed-forward activation are swapped, and put back afterwards, so the layer's forward is the one
    that runs (eval mode: dropout is the identity).

    slots: (path, sublayer, slot) of this layer; modules: {path: the case's adapter module there}."""
    saved_hooks = [(slot, slot.hook) for _, _, slot in slots]
    replaced = []  # slots whose whole forward the variant replaces (an instance attribute, removed afterwards)
    norms = [m for _, m in layer.named_modules() if isinstance(m, nn.LayerNorm)]
    saved_eps = [(m, m.eps) for m in norms]
    saved_act = layer.intermediate.act
    try:
        for path, sublayer, slot in slots:
            module = modules.get(path)
            if module is None:
                slot.hook = None
            elif v.adapter is not None and sublayer in v.adapter.scope and v.adapter.sublayer is not None:
                slot.forward = v.adapter.sublayer(module, slot)
                replaced.append(slot)
            elif v.adapter is not None and sublayer in v.adapter.scope:
                slot.hook = v.adapter.hook(module)
            else:
                slot.hook = module.forward
        if v.layer_norm_eps is not None:
            for m in norms:
                m.eps = v.layer_norm_eps
        if v.hidden_act:
            layer.intermediate.act = F.activation(v.hidden_act)
        yield layer
    finally:
        for slot, hook in saved_hooks:
            slot.hook = hook
        for slot in replaced:
            del slot.forward
        for m, eps in saved_eps:
            m.eps = eps
        layer.intermediate.act = saved_act


def layer_slots(ref, i: int) -> tuple:
    """(slots, modules) of encoder layer i: every place the claimed kind can go in it, and the case's adapter
    module in each place the case has one."""
    if ref.config is None:
        return [], {}
    prefix = f"encoder.layer.{i}."
    slots = [s for s in kind_of(ref.config).all_slots(ref.model) if s[0].startswith(prefix)]
    named = {path: slot for path, _, slot in ref.slots}
    modules = {path: named[path].adapters[ref.name] for path, _, _ in slots if path in named and path in ref.present}
    return slots, modules


def case_ids(case) -> tuple:
    """(input_ids, token_type_ids, position_ids) of the case as a plain BERT takes them (types 0 if not given)."""
    ids = case.input_ids
    types = case.token_type_ids if case.token_type_ids is not None else np.zeros_like(ids)
    return ids, types, np.broadcast_to(np.arange(ids.shape[1]), ids.shape)


def layer_past(ref, case):
    """The past keys and values each encoder layer attends to (a method that supplies them through the
    embeddings' hook, as prefix tuning), or None."""
    ids, types, positions = case_ids(case)
    with no_grad():
        return ref.model.embeddings.prepare(ids, types, positions)[2]


def real_only(h, real):
    """h with what is not finite at padded positions zeroed: a correct model never reads them (their keys are
    masked), but a NaN left there would spread through 0 * NaN in attention. Finite values stay, for the mask
    variants, which do read them."""
    return np.where(real[..., None] | np.isfinite(h), h, 0.0)


def fit_layer(ref, case, i: int, candidates: list, tol: float, first=()) -> list:
    """[(error, variant)] for encoder layer i fed the candidate's hidden state i, best first.

    first: variants to try before the others; when one of them fits, the others are not tried (a bug that
    reproduces one layer usually reproduces the next, and each variant costs a layer's forward pass)."""
    layer = ref.model.encoder.layer[i]
    real = case.attention_mask.astype(bool)
    x = Tensor(real_only(case.hidden_states[i], real).astype(np.float64))
    slots, modules = layer_slots(ref, i)
    past = layer_past(ref, case)
    supplier = ref.model.embeddings.adapters[ref.name] if past is not None else None  # the module behind the past
    results = []
    with no_grad():
        for group in (list(first), [v for v in candidates if v not in first]):
            for v in group:
                mask = variant_mask(case.attention_mask, np.float64, v.mask)
                pair = None if past is None else past[i]
                if past is not None:  # the past keys stay visible, as in the model
                    B, T = case.attention_mask.shape
                    mask = np.zeros((B, 1, 1, T)) if mask is None else mask
                    mask = np.concatenate([np.zeros((B, 1, 1, past[0][0].shape[2])), mask], axis=-1)
                    if v.adapter is not None and v.adapter.attend is not None:
                        pair, mask = v.adapter.attend(supplier, i, past, mask)
                with as_variant(layer, v, slots, modules):
                    out = layer(x, None if mask is None else Tensor(mask), pair).data
                results.append((hidden_error(case.hidden_states[i + 1], out, real), v))
            if any(err <= tol for err, _ in results):
                break
    return sorted(results, key=lambda r: r[0])


def fit_embeddings(ref, case) -> list:
    """[(error, what)] of the embeddings computed with one part of them wrong, best first: another LayerNorm eps,
    the token types ignored (all 0), the positions counted from 1, or no position embeddings."""
    emb = ref.model.embeddings
    ids, types, positions = case_ids(case)
    real = case.attention_mask.astype(bool)
    eps = ref.model.config.layer_norm_eps
    tries = [(f"LayerNorm eps {e:g} instead of {eps:g}", types, positions, e) for e in (1e-5, 1e-6, 1e-12)
             if e != eps]
    tries += [("the token types ignored (all 0)", np.zeros_like(types), positions, eps),
              ("the positions counted from 1, not 0", types, positions + 1, eps)]
    results = []
    with no_grad():
        for what, t, pos, e in tries:
            if pos.max() >= emb.position_embeddings.weight.shape[0] or (what.startswith("the token") and
                                                                        not types.any()):
                continue  # no such position; no token types to ignore
            x = emb.word_embeddings(ids) + emb.position_embeddings(pos) + emb.token_type_embeddings(t)
            out = F.layer_norm(x, emb.LayerNorm.weight, emb.LayerNorm.bias, e).data
            results.append((hidden_error(case.hidden_states[0], out, real), what))
        x = emb.word_embeddings(ids) + emb.token_type_embeddings(types)
        out = F.layer_norm(x, emb.LayerNorm.weight, emb.LayerNorm.bias, eps).data
        results.append((hidden_error(case.hidden_states[0], out, real), "no position embeddings"))
    return sorted(results, key=lambda r: r[0])


def fit_embedding_variants(ref, case) -> list:
    """[(error, variant)] of the embeddings looked up as each of the claimed kind's `embed` variants would (a
    module in the embeddings' hook that shifts the positions or drops the token types), best first."""
    if ref.config is None or ref.name not in getattr(ref.model.embeddings, "adapters", {}):
        return []
    emb, module = ref.model.embeddings, ref.model.embeddings.adapters[ref.name]
    ids, types, positions = case_ids(case)
    real = case.attention_mask.astype(bool)
    results = []
    with no_grad():
        for v in variants(ref.model.config, ref.config):
            if v.adapter is not None and v.adapter.embed is not None:
                out = emb(ids, *v.adapter.embed(module, types, positions)).data
                results.append((hidden_error(case.hidden_states[0], out, real), v))
    return sorted(results, key=lambda r: r[0])


def explain_merge(ref, case, merge: dict, tol: float) -> list:
    """What the case's merge did, module by module: one of the kind's known-wrong merges (`merge_variants`), a
    Linear changed that carries no adapter, or a difference no known merge explains."""
    kind = kind_of(ref.config)
    slots = {path: slot for path, _, slot in ref.slots}
    bad = [r for r in merge["tensors"] if not r["claimed"]]
    found, texts = {}, []
    for path in dict.fromkeys(r["name"].rsplit(".", 1)[0] for r in bad if r["adapted"]):
        slot = slots[path]
        weight, bias = slot.weight.data, None if slot.bias is None else slot.bias.data
        got_w = case.merged.get(f"{path}.weight", case.params[f"{path}.weight"])
        got_b = None if bias is None else case.merged.get(f"{path}.bias", case.params[f"{path}.bias"])

        def close(a, b):
            return a is None or relative_error(a, b) <= tol

        match = next((text for text, (w, b) in kind.merge_variants(ref.config, slot.adapters[ref.name], weight, bias)
                      if close(got_w, w) and close(got_b, b)), None)
        if match:
            found.setdefault(match, []).append(path)
        else:
            worst = max(r["error"] for r in bad if r["name"].startswith(path + "."))
            texts.append(f"the merged {path} differs from the claimed {kind.merge_text} by {worst:.1e}, as no known "
                         "wrong merge does")
    texts = [f"{_names(paths)} {text}" for text, paths in found.items()] + texts
    changed = [r["name"] for r in bad if not r["adapted"]]
    if changed:
        texts.append(f"the merge changed {_names(changed)}, which no adapter adapts")
    if not bad:
        texts.append(f"every merged tensor is the claimed {kind.merge_text}, yet the merged model differs from the "
                     f"case's unmerged one by {merge['output_error']:.1e}: the unmerged model departs from the claim")
    return texts


def _within_float32(report) -> bool:
    """Does everything agree to the float32 row, gradients included?"""
    t = TOLERANCES["float32"]
    layers = report["forward"]["layers"]
    grads = report["gradients"]
    return all(r["error"] <= t.hidden and r["local_error"] <= t.hidden for r in layers) and all(
        g["max_abs_error"] <= t.gradient * g["max_abs_reference"] + t.gradient_floor * grads["scale"]
        for g in grads["parameters"])


def locate_backward(ref, kind, bad: list) -> str:
    """Where the gradients stop agreeing, walking back from the loss: the module of the last parameter (in forward
    order) whose gradient differs, and inside an adapter module, the first of its stages (`backward_stages`, from
    its output back) that differs, so the sentence names what lies between the last stage that agrees and it."""
    # the model's parameters are in forward order (a sub-layer's adapter after its dense and LayerNorm), so the
    # last one that differs is where the gradients stop agreeing, walking back from the loss
    order = {name: k for k, name in enumerate(dict(ref.model.named_parameters()))}
    last = max(bad, key=lambda n: order.get(n, -1))
    module = adapter_key(last)[0] if adapter_key(last) is not None else last.rsplit(".", 1)[0]
    here = [n for n in bad if (adapter_key(n)[0] if adapter_key(n) is not None else n.rsplit(".", 1)[0]) == module]
    text = f"walking back from the loss, the gradients first differ in {module}: {_names(here)}"
    stages = kind.backward_stages if kind is not None else ()
    modules = {}
    for n in here:
        if adapter_key(n) is not None:
            modules.setdefault(adapter_key(n)[0], []).append(adapter_key(n)[2])
    for path, leaves in modules.items():
        wrong = [any(leaf.startswith(prefix) for leaf in leaves) for prefix, _ in stages]
        if wrong and wrong[0]:
            text += (f"; in {path} already the {stages[0][0].rstrip('.')} gradients differ: its own backward, or the "
                     "gradient that reaches the module from the sub-layer")
        elif any(wrong):
            k = wrong.index(True)
            text += (f"; in {path} the {stages[k - 1][0].rstrip('.')} gradients agree and the "
                     f"{stages[k][0].rstrip('.')} ones do not: the backward between them ({stages[k - 1][1]}) is wrong")
    return text


def tied_modules(ref) -> list:
    """[(leaves, paths)]: tensors of the case's adapter that are identical, and not constant, in several places (one
    module shared by them, written out under each: their gradient is then the sum over the places)."""
    groups = {}
    for path, leaves in ref.present.items():
        for leaf, value in leaves.items():
            if value.size > 1 and np.ptp(value) > 0:
                groups.setdefault((leaf, value.shape, value.tobytes()), []).append(path)
    shared = {}
    for (leaf, _, _), paths in groups.items():
        if len(paths) > 1:
            shared.setdefault(tuple(sorted(paths)), []).append(leaf)
    return [(leaves, list(paths)) for paths, leaves in shared.items()]


def _names(names, n=3) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def diagnose(ref, case, report) -> tuple:
    """(codes, [{"code", "sentence"}]) for a report of minibert_adapters.crosscheck; empty when it agrees."""
    evidence = {}
    kind = kind_of(ref.config) if ref.config is not None else None

    def note(code, text):
        evidence.setdefault(code, []).append(text)

    tol = report["tolerance"]["hidden"]
    forward, grads = report["forward"], report["gradients"]
    unexplained, embeddings_differ = [], None
    if not forward["ok"]:
        layers = forward["layers"]
        if layers[0]["error"] > tol:
            found = [v for e, v in fit_embedding_variants(ref, case) if e <= tol]
            for v in found:
                note(v.code, f"the embeddings are reproduced by: {v.description}")
            err, what = fit_embeddings(ref, case)[0] if not found else (None, None)
            if not found and err <= tol:
                note("base-mismatch", f"the embeddings are reproduced with {what}")
            elif not found:  # no adapter is involved there: a base mismatch, unless it is all float32 rounding
                embeddings_differ = f"the embeddings (hidden state 0, before any adapter) differ by " \
                                    f"{layers[0]['error']:.1e}"
        everything, previous = variants(ref.model.config, ref.config), []
        # two bugs in one module are tried only where no single one explains the layer
        singles = [v for v in everything if "+" not in v.code]
        pairs = [v for v in everything if "+" in v.code]
        for row in layers[1:]:
            if row["local_error"] <= tol:
                continue
            i = row["index"] - 1
            fits = fit_layer(ref, case, i, singles, tol, first=[v for v in previous if v in singles])
            found = [v for err, v in fits if err <= tol]
            if not found and pairs:
                fits = sorted(fits + fit_layer(ref, case, i, pairs, tol, first=[v for v in previous if v in pairs]),
                              key=lambda r: r[0])
                found = [v for err, v in fits if err <= tol]
            previous = found or previous
            for v in found:
                for code in v.code.split("+"):  # a variant with two bugs in one module names both
                    note(code, f"layer {i} is reproduced by: {v.description}")
            if not found:
                err, closest = fits[0]
                # a lead only if it explains most of the difference; otherwise it would mislead
                lead = f" (closest: {closest.description}, {err:.1e})" if err < 0.5 * row["local_error"] else ""
                unexplained.append(f"layer {i} differs by {row['local_error']:.1e} fed its own input, and no known "
                                   f"variant reproduces it{lead}")
    elif not grads["ok"]:
        tied = tied_modules(ref)
        for leaves, paths in tied:
            note("tied-weights", f"the trained {', '.join(leaves)} are identical in {_names(paths)}")
        # a gradient on a parameter the policy freezes is the trainable set's business, not the backward's
        bad = [g["name"] for g in grads["parameters"] if not g["ok"] and g["name"] not in set(grads["unexpected"])]
        if not tied and bad:
            note("backward", locate_backward(ref, kind, bad))
    if (unexplained or embeddings_differ) and report["dtype"] == "float64" and _within_float32(report):
        worst = max(r["local_error"] for r in forward["layers"])
        note("precision", f"every difference is within the float32 row (largest hidden-state error {worst:.1e})")
        unexplained, embeddings_differ = [], None
    if embeddings_differ:
        note("base-mismatch", embeddings_differ)
    evidence["unexplained"] = unexplained

    counts = report["counts"]
    if counts.get("missing_modules"):
        note("missing-modules", f"no adapter tensors in {_names(counts['missing_modules'])} "
                                f"(the claimed placement has {counts['expected_per_layer']} per layer)")
    if counts.get("extra_modules"):
        note(kind.misplaced_code if kind else "placement",
             f"adapter tensors in {_names(counts['extra_modules'])}, which the claimed config does not name")
    wrong_size = [r["module"] for r in counts.get("modules", []) if r["present"] and not r["ok"]]
    if wrong_size and kind.size_code and ref.config != ref.claimed:
        sizes = ", ".join(f"{k} = {v}" for k, v in kind.sizes(ref.config, ref.model.config).items())
        claimed = ", ".join(f"{k} = {v}" for k, v in kind.sizes(ref.claimed, ref.model.config).items())
        note(kind.size_code, f"the tensors have {sizes}; the claim says {claimed}")
    elif wrong_size:
        evidence["unexplained"].append(f"{_names(wrong_size)}: {counts['modules'][0]['formula']} parameters by "
                                       f"{counts['formula_text']}, another number in the case")
    trainable = report["trainable"]
    if trainable["extra"]:
        note("trainable-set", f"trained but frozen by the policy: {_names(trainable['extra'])}")
    if trainable["missing"]:
        note("trainable-set", f"frozen but trained by the policy: {_names(trainable['missing'])}")
    if trainable.get("absent"):
        evidence["unexplained"].append(f"{_names(trainable['absent'])} absent from the case (a module without them, "
                                       "or a writer that left them out?)")
    if grads["unexpected"]:
        note("trainable-set", f"gradients on parameters the policy freezes: {_names(grads['unexpected'])}")
    # A module none of whose parameters got a gradient is not in the computation at all: a missing module.
    missing_grads = set(grads["missing"])
    never_called = [path for path, _, slot in ref.slots if path in ref.present and all(
        adapter_parameter_name(path, ref.name, leaf) in missing_grads for leaf, _ in
        slot.adapters[ref.name].named_parameters())]
    if never_called:
        note("missing-modules", f"the adapters in {_names(never_called)} get no gradient at all: they are never "
                                "called")
    called = [n for n in grads["missing"] if not any(adapter_key(n)[0] == p for p in never_called
                                                      if adapter_key(n) is not None)]
    if called:
        note("trainable-set", f"no gradient on parameters the policy trains: {_names(called)}")
    init = report["init"]
    if init.get("given") and not init["ok"]:
        bad = [f"{leaf} ({e['claim']}: std {e.get('measured_std', 0):.2e} vs {e.get('expected_std', 0):.2e} "
               f"expected, max |value| {e['max_abs']:.2e})" for leaf, e in init["leaves"].items() if not e["ok"]]
        change = init["output_change"]
        if not change["ok"]:
            bad.append(f"output change at init {change['candidate']:.1e} vs {change['ours']:.1e} for this project's "
                       "init of the same config")
        note("init-scale", "; ".join(bad))

    if report["merge"].get("given") and not report["merge"]["ok"]:
        for text in explain_merge(ref, case, report["merge"], tol):
            note("merge", text)

    sentences = {**SENTENCES, **(kind.codes if kind else {})}
    codes = [c for c in sentences if evidence.get(c)]
    explanations = [{"code": c, "sentence": sentences[c] + ": " + "; ".join(dict.fromkeys(evidence[c])) + "."}
                    for c in codes]
    if evidence["unexplained"]:
        explanations.append({"code": None, "sentence": "Not one of the known patterns: "
                             + "; ".join(evidence["unexplained"]) + "."})
    return codes, explanations
