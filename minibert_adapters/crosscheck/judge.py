"""`crosscheck`: judge another implementation's case (minibert_adapters.crosscheck.case) against this project.

    from minibert_adapters.crosscheck import crosscheck
    report = crosscheck("my_model.safetensors")     # or a Case
    report["ok"], report["diagnosis"]               # e.g. False, ["skip-connection"]

The case's weights are loaded into this project's model (`reference_model`), which recomputes everything in
float64 (and, for a float32 case, in float32 too, to show this project's own rounding at that precision). Then,
each judged by the one tolerance table (minibert_adapters.crosscheck.tolerances):

- forward: every hidden state, over real tokens; and each layer *alone*, fed the candidate's own input to that
  layer ("local" error), so a difference is found where it starts instead of everywhere after it;
- gradients: every parameter the candidate gave one; gradients on parameters the claimed policy freezes; missing
  gradients on parameters it trains;
- parameter counts: the kind's formula per module (2MD + D + M for bottleneck adapters, Houlsby2019 §2.1),
  modules per layer;
- the trainable set against the claimed config's policy (adapters.policy);
- the init against the claimed distribution (minibert_adapters.facts.init_stats), when the case has init/ tensors;
- the merge, when the case has merged/ tensors: the merged model (no adapter) against the case's own unmerged
  outputs; and each merged tensor against the claimed kind's merge of the case's unmerged tensors
  (`AdapterKind.merged`: W + s B A for LoRA), to say what a wrong merge did.

minibert_adapters.crosscheck.diagnosis then names the likely bug from the pattern of differences.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from adapters import KindConfig, Policy, add_adapter, remove_adapter, set_active_adapter
from adapters.kinds import kind_of
from adapters.names import adapter_key, adapter_parameter_name
from adapters.policy import trainable_names
from autograd import Tensor, no_grad
from autograd.nn import StateDictError, check_state
from minibert import BertModel
from minibert.modeling import encoder_mask
from minibert_adapters.crosscheck.case import (
    Case,
    CaseError,
    case_from_tensors,
    parse_adapter_config,
    parse_bert_config,
    read_case,
)
from minibert_adapters.crosscheck.diagnosis import diagnose, layer_past, real_only
from minibert_adapters.crosscheck.tolerances import TOLERANCES, hidden_error, relative_error, tolerance_for
from minibert_adapters.facts.init_stats import judge_modules


@dataclasses.dataclass
class Reference:
    """This project's model loaded with a case's weights, and what the loading found."""

    model: BertModel
    config: KindConfig | None          # the claimed adapter config (sizes as the case's tensors have them)
    claimed: KindConfig | None         # the claimed adapter config as written
    name: str | None                   # the adapter's name
    slots: list                        # (path, sublayer, slot module) the claimed placement names
    present: dict                      # slot path -> {leaf: array} of the case's adapter tensors there
    extra_slots: list                  # sub-layer outputs with adapter tensors the placement does not name


def reference_model(case: Case, dtype=np.float64) -> Reference:
    """Build this project's BertModel with the case's configs and copy its parameters in (in `dtype`).

    Adapter modules the claimed placement names but the case lacks are kept as exact identities (the kind's
    `identity_config`, e.g. W_up = 0 and b_up = 0), so the rest can still be compared; the count reports them
    missing.
    """
    where = case.source
    bert_config = parse_bert_config(case.bert_config, where)
    has_pooler = "pooler.dense.weight" in case.params
    model = BertModel(bert_config, dtype=dtype, seed=0, add_pooling_layer=has_pooler).eval()
    base = {k: v for k, v in case.params.items() if k in model.checkpoint_names}
    others = {k: v for k, v in case.params.items() if k not in model.checkpoint_names}
    try:
        check_state({k: p.shape for k, p in model.named_parameters()}, base, what=f"{where}: param/ tensors",
                    allow_unexpected=True)
    except StateDictError as e:
        raise CaseError(_one_line(e)) from None
    model.load_state_dict(base, strict=False)
    if case.adapter_config is None:
        if others:
            raise CaseError(f"{where}: unknown parameter names (no BertModel parameter): {sorted(others)[:5]}")
        return Reference(model, None, None, None, [], {}, [])

    claimed = parse_adapter_config(case.adapter_config, where, bert_config)
    kind = kind_of(claimed)
    name = case.adapter_name
    present, unknown = {}, []
    places = {path for path, _, _ in kind.all_slots(model)}
    for key, value in others.items():
        slot, _, leaf = adapter_key(key) or (None, None, None)
        if slot not in places:
            unknown.append(key)
        else:
            present.setdefault(slot, {})[leaf] = value
    if unknown:
        raise CaseError(f"{where}: unknown parameter names (neither a BertModel parameter nor a {kind.name} adapter "
                        f"in a place it can go): {sorted(unknown)[:5]}")
    check_not_transposed(kind, claimed, model, present, where, name)
    # The sizes the case's tensors have, if they agree; the count compares them with the claimed ones.
    config = kind.sized_like(claimed, present, bert_config)
    identity = kind.identity_config(config) or config
    add_adapter(model, name, identity, seed=0)  # a module the case lacks stays an exact identity
    slots = list(kind.slots(model, config))
    named = {path for path, _, _ in slots}
    own = {k: p for k, p in model.named_parameters() if k not in model.checkpoint_names}
    expected_shapes = {k: p.shape for k, p in own.items()}
    tensors = {}
    for path, _, slot in slots:
        if path not in present:
            continue
        for leaf, p in slot.adapters[name].named_parameters():
            if leaf in present[path]:
                tensors[adapter_parameter_name(path, name, leaf)] = present[path][leaf]
            else:  # a missing tensor of a present module: zero (the count reports it)
                p.data[...] = 0.0
    try:
        check_state(expected_shapes, tensors, what=f"{where}: adapter tensors", required=())
    except StateDictError as e:
        raise CaseError(_one_line(e)) from None
    for k, v in tensors.items():
        own[k].data = np.array(v, dtype=dtype)
    set_active_adapter(model, name)
    model.eval()  # the adapter modules added above too: a case is computed with dropout off (LoRA's lora_dropout)
    extra = sorted(set(present) - named)
    return Reference(model, config, claimed, name, slots, present, extra)


def check_not_transposed(kind, claimed, model, present: dict, where: str, name: str) -> None:
    """CaseError for an adapter matrix whose shape is the transpose of the claimed one ((in, out), as TensorFlow
    and JAX keep a Dense kernel, where (out, in) is meant), before its sizes are read from it."""
    for place in kind.slots(model, claimed):
        path = place[0]
        if path not in present:
            continue
        module = kind.build("claimed", claimed, model.config, np.float64, np.random.default_rng(0), place)
        for leaf, p in module.named_parameters():
            got = np.shape(present[path].get(leaf))
            if len(got) == 2 and got != p.shape and got == p.shape[::-1]:
                sizes = ", ".join(f"{k} = {v}" for k, v in kind.sizes(claimed, model.config, place).items())
                raise CaseError(f"{where}: {adapter_parameter_name(path, name, leaf)} has shape {got}; the claimed "
                                f"config ({sizes}) gives {p.shape}: stored transposed ((in, out), as TensorFlow "
                                "and JAX keep a Dense kernel)? Write it as (out, in)")


def _one_line(error, most: int = 3) -> str:
    """check_state lists one problem per line; the command reports a bad case in one line, its first problems."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    head, problems = lines[:1], lines[1:]
    shown = problems[:most] + ([f"and {len(problems) - most} more"] if len(problems) > most else [])
    return "; ".join(head + shown)


def run_reference(ref: Reference, case: Case):
    """(hidden states, {name: gradient or None}) of the reference model on the case's inputs, every parameter
    differentiated, loss = sum(last_hidden_state * cotangent)."""
    model = ref.model
    for p in model.parameters():
        p.requires_grad = True
        p.grad = None
    out = model(case.input_ids, case.attention_mask, case.token_type_ids, output_hidden_states=True)
    loss = (out.last_hidden_state * Tensor(case.cotangent.astype(model.dtype))).sum()
    loss.backward()
    grads = {k: (None if p.grad is None else p.grad.copy()) for k, p in model.named_parameters()}
    return [h.data.copy() for h in out.hidden_states], grads


def local_errors(ref: Reference, case: Case) -> list:
    """Each encoder layer alone, fed the candidate's own input to it: error of its output against the candidate's."""
    model, real = ref.model, case.attention_mask.astype(bool)
    past = layer_past(ref, case)
    mask = encoder_mask(case.attention_mask, past, model.dtype)
    errors = []
    with no_grad():
        for i, layer in enumerate(model.encoder.layer):
            out = layer(Tensor(real_only(case.hidden_states[i], real).astype(model.dtype)), mask,
                        None if past is None else past[i]).data
            errors.append(hidden_error(case.hidden_states[i + 1], out, real))
    return errors


def compare_gradients(ref: Reference, case: Case, ref_grads: dict, tol) -> dict:
    """Every candidate gradient against ours; which gradients should exist by the claimed policy."""
    G = max((float(np.abs(g).max()) for g in ref_grads.values() if g is not None), default=0.0)
    rows = []
    for name, g in case.grads.items():
        r = ref_grads.get(name)
        r = np.zeros_like(g, dtype=np.float64) if r is None else r.astype(np.float64)
        err = float(np.abs(g.astype(np.float64) - r).max())
        scale = float(np.abs(r).max())
        bound = tol.gradient * scale + tol.gradient_floor * G
        rows.append({"name": name, "max_abs_error": err, "max_abs_reference": scale,
                     "relative": err / scale if scale else (0.0 if err == 0 else float("inf")), "ok": err <= bound})
    if ref.claimed is None:  # a plain BERT claims no policy: any parameter may train, or not
        return {"parameters": rows, "scale": G, "unexpected": [], "missing": [], "ok": all(r["ok"] for r in rows)}
    policy = set(trainable_names(ref.model, Policy.for_adapter(ref.name, ref.claimed)))
    absent = set(missing_module_parameters(ref))
    reaches_loss = {k for k, g in ref_grads.items() if g is not None and np.any(g != 0)}
    given = {k for k, g in case.grads.items() if np.any(g != 0)}  # an all-zero gradient is no gradient
    return {"parameters": rows, "scale": G,
            "unexpected": sorted(given - policy), "missing": sorted((policy & reaches_loss) - set(case.grads) - absent),
            "ok": all(r["ok"] for r in rows)}


def missing_module_parameters(ref: Reference) -> list:
    """Our names of the parameters of modules the claimed placement names but the case lacks."""
    out = []
    for path, _, slot in ref.slots:
        if path not in ref.present:
            leaves = [leaf for leaf, _ in slot.adapters[ref.name].named_parameters()]
            out += [adapter_parameter_name(path, ref.name, leaf) for leaf in leaves]
    return out


def count_parameters(ref: Reference) -> dict:
    """The kind's formula per module with the claimed sizes, modules per layer, against the case's tensors."""
    if ref.claimed is None:
        return {"modules": [], "ok": True}
    bert = ref.model.config
    kind = kind_of(ref.claimed)
    rows = []
    for place in ref.slots:
        path, sublayer, _ = place
        counted = sum(int(np.size(v)) for v in ref.present.get(path, {}).values())
        formula = kind.formula(ref.claimed, bert, place)
        rows.append({"module": path, "sublayer": sublayer, **kind.sizes(ref.claimed, bert, place), "formula": formula,
                     "counted": counted,
                     "present": path in ref.present, "ok": counted == formula})
    per_layer = kind.expected_modules(ref.claimed, bert) // bert.num_hidden_layers
    layers = [sum(1 for r in rows if r["present"] and r["module"].startswith(f"encoder.layer.{i}."))
              for i in range(bert.num_hidden_layers)]
    formulas = sorted({r["formula"] for r in rows})
    return {"modules": rows, "formula": formulas[0] if len(formulas) == 1 else formulas,
            "formula_text": kind.formula_text,
            "modules_per_layer": layers, "expected_per_layer": per_layer,
            "extra_modules": ref.extra_slots, "missing_modules": [r["module"] for r in rows if not r["present"]],
            "ok": all(r["ok"] for r in rows) and not ref.extra_slots}


def compare_trainable(ref: Reference, case: Case) -> dict:
    if ref.claimed is None:
        return {"ok": True, "extra": [], "missing": []}
    policy = set(trainable_names(ref.model, Policy.for_adapter(ref.name, ref.claimed)))
    claimed = set(case.trainable)
    absent_modules = set(missing_module_parameters(ref))
    # a tensor the case does not have is absent (the count says so), not frozen
    absent = {n for n in policy if n not in case.params} - absent_modules
    extra, missing = sorted(claimed - policy), sorted(policy - claimed - absent_modules - absent)
    return {"policy": sorted(policy), "extra": extra, "missing": missing, "absent": sorted(absent),
            "ok": not extra and not missing}


def judge_case_init(ref: Reference, case: Case) -> dict:
    """The case's init/ tensors against the claimed distribution, and their output change against ours."""
    if not case.init or ref.claimed is None:
        return {"given": False, "ok": True}
    by_slot = {}
    for name, value in case.init.items():
        slot, _, leaf = adapter_key(name)
        by_slot.setdefault(slot, {})[leaf] = value
    places = {place[0]: place for place in kind_of(ref.claimed).all_slots(ref.model)}
    report = {"given": True, **judge_modules(kind_of(ref.claimed), ref.claimed, ref.model.config,
                                              [(places[path], leaves) for path, leaves in by_slot.items()])}
    report["output_change"] = init_output_change(ref, case)
    report["ok"] = report["ok"] and report["output_change"]["ok"]
    return report


def merge_expected(ref: Reference) -> dict:
    """{base parameter name: (array as the claimed merge makes it, path of its adapted Linear)} for every Linear
    the case adapts; CaseError when the claimed kind does not merge."""
    kind = kind_of(ref.claimed)
    if not kind.merge_text:
        raise CaseError(f"merged/ tensors, but a {kind.name} adapter does not merge into the weights")
    out = {}
    for path, _, slot in ref.slots:
        if path not in ref.present:
            continue
        bias = None if slot.bias is None else slot.bias.data
        merged = kind.merged(slot.adapters[ref.name], slot.weight.data, bias)
        out[f"{path}.weight"] = (merged[0], path)
        if bias is not None:
            out[f"{path}.bias"] = (merged[1], path)
    return out


def judge_merge(ref: Reference, case: Case, tol) -> dict:
    """Does the case's merge agree with its own unmerged model? The merged model (this project's BERT with the
    case's merged/ tensors and no adapter) against the case's own last hidden state, by the table's hidden-state
    measure: that is the verdict. Beside it, each merged tensor against the claimed merge of the case's unmerged
    tensors (a tensor not given is the merge leaving it as it was), which the diagnosis uses to say what the merge
    did."""
    if not case.merged:
        return {"given": False, "ok": True}
    try:
        expected = merge_expected(ref)
    except CaseError as e:
        raise CaseError(f"{case.source}: {e}") from None
    rows = []
    for name in sorted(set(expected) | set(case.merged)):
        want = expected[name][0] if name in expected else case.params[name]
        got = case.merged.get(name, case.params[name])
        err = relative_error(got, want)
        rows.append({"name": name, "adapted": name in expected, "given": name in case.merged, "error": err,
                     "claimed": err <= tol.hidden})
    model, real = ref.model, case.attention_mask.astype(bool)
    own = dict(model.named_parameters())
    kept = {name: own[name].data for name in case.merged}
    try:
        for name, value in case.merged.items():
            own[name].data = value.astype(model.dtype)
        set_active_adapter(model, None)
        with no_grad():
            last = model(case.input_ids, case.attention_mask, case.token_type_ids).last_hidden_state.data
    finally:
        for name, value in kept.items():
            own[name].data = value
        set_active_adapter(model, ref.name)
    output_error = hidden_error(last, case.hidden_states[-1], real)
    return {"given": True, "tensors": rows, "output_error": output_error, "ok": output_error <= tol.hidden}


CHANGE_RATIO_LIMIT = 10.0  # the candidate's output change at init may differ from ours by this factor


def init_output_change(ref: Reference, case: Case) -> dict:
    """Relative change of the last hidden state that the candidate's init makes, against this project's own init of
    the same config, on the reference model (float64). Leaves the reference as it was."""
    model, real = ref.model, case.attention_mask.astype(bool)

    def last(active):
        set_active_adapter(model, active)
        with no_grad():
            return model(case.input_ids, case.attention_mask, case.token_type_ids).last_hidden_state.data[real]

    add_adapter(model, "ours_at_init", ref.config, seed=0, set_active=False)
    add_adapter(model, "theirs_at_init", ref.config, seed=1, set_active=False)  # overwritten with the case's init
    own = dict(model.named_parameters())
    for name, value in case.init.items():
        slot, _, leaf = adapter_key(name)
        target = adapter_parameter_name(slot, "theirs_at_init", leaf)
        if target in own:  # init of a module the claim does not name: the count reports it, not the init
            own[target].data = value.astype(np.float64)
    try:
        plain, ours, theirs = last(None), last("ours_at_init"), last("theirs_at_init")
    finally:
        remove_adapter(model, "ours_at_init")
        remove_adapter(model, "theirs_at_init")
        set_active_adapter(model, ref.name)
    change_ours = float(np.linalg.norm(ours - plain) / np.linalg.norm(plain))
    change_theirs = float(np.linalg.norm(theirs - plain) / np.linalg.norm(plain))
    ratio = change_theirs / change_ours if change_ours else (1.0 if change_theirs == 0 else float("inf"))
    ok = (change_theirs == 0.0) if change_ours == 0.0 else (1 / CHANGE_RATIO_LIMIT <= ratio <= CHANGE_RATIO_LIMIT)
    return {"candidate": change_theirs, "ours": change_ours, "ratio": ratio, "limit": CHANGE_RATIO_LIMIT, "ok": ok}


def crosscheck(case, rtol: float | None = None, bases=None) -> dict:
    """Judge a case (a Case or the path of a case file). Returns a JSON-able report with "ok" and "diagnosis".

    rtol: a relative tolerance for hidden states and gradients instead of the table's (the command's --rtol).
    bases: model folders where a base named by digest is looked for (default: the embedded MiniLM).
    Raises CaseError for a case that cannot be judged.
    """
    # A Case built in memory gets the same checks and name normalisation as one read from a file.
    case = case_from_tensors(case.tensors(), case.metadata(), case.source) if isinstance(case, Case) else \
        read_case(case, bases)
    dtype_name = str(case.dtype)
    tol = tolerance_for(case.dtype)
    if rtol is not None:
        tol = dataclasses.replace(tol, hidden=rtol, gradient=rtol)
    ref = reference_model(case, np.float64)
    hidden, grads = run_reference(ref, case)
    real = case.attention_mask.astype(bool)
    layers = [{"index": i, "error": hidden_error(h, r, real)}
              for i, (h, r) in enumerate(zip(case.hidden_states, hidden))]
    local = local_errors(ref, case)
    for row in layers:
        row["local_error"] = row["error"] if row["index"] == 0 else local[row["index"] - 1]
        row["ok"] = row["local_error"] <= tol.hidden and row["error"] <= tol.hidden
    forward = {"layers": layers, "ok": all(r["ok"] for r in layers)}
    report = {
        "case": case.source, "producer": case.producer, "dtype": dtype_name, "tolerance": tol.to_dict(),
        "tolerance_table": {k: v.to_dict() for k, v in TOLERANCES.items()},
        "adapter": ref.name, "adapter_config": ref.claimed.to_dict() if ref.claimed else None,
        "adapter_kind": kind_of(ref.claimed).name if ref.claimed else None,
        "adapter_description": kind_of(ref.claimed).describe(ref.claimed) if ref.claimed else None,
        "forward": forward, "gradients": compare_gradients(ref, case, grads, tol),
        "counts": count_parameters(ref), "trainable": compare_trainable(ref, case),
        "init": judge_case_init(ref, case), "merge": judge_merge(ref, case, tol),
    }
    report["ok"] = all(report[k]["ok"] for k in ("forward", "gradients", "counts", "trainable", "init", "merge")) \
        and not report["gradients"]["unexpected"] and not report["gradients"]["missing"]
    report["diagnosis"], report["explanations"] = diagnose(ref, case, report)
    if dtype_name == "float32":  # this project's own float32 rounding at this case, for scale (forward only)
        with no_grad():
            ours32 = ref.model.astype(np.float32)(case.input_ids, case.attention_mask, case.token_type_ids,
                                                  output_hidden_states=True).hidden_states
        forward["reference_float32_error"] = max(hidden_error(a.data, b, real) for a, b in zip(ours32, hidden))
    return report
