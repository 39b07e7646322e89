"""`minibert crosscheck CASE [--json] [--json-out FILE] [--base FOLDER] [--rtol R]`: judge another implementation's
case file against this project.

Exit status: 0 when the case agrees, 1 when it does not (the report names the likely bug), 2 when the case file
cannot be judged (one line naming the file and what is wrong; with --json also a JSON object with "error").
docs/crosscheck.md describes the case format.
"""

from __future__ import annotations

import json
from pathlib import Path

from minibert_adapters.commands.arguments import writable_file
from minibert_adapters.facts.check import _grouped


def register(sub):
    p = sub.add_parser("crosscheck", help="judge another implementation's case file (docs/crosscheck.md) against "
                                          "this project and name the likely bug")
    p.add_argument("case", help="a case file: safetensors with param/, input/, output/, grad/ tensors")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout (a case "
                                                         "that cannot be judged too: {\"ok\": null, \"error\": ...})")
    p.add_argument("--json-out", metavar="FILE", help="also write the JSON report to FILE, while the text is printed "
                                                      "(one run for both)")
    p.add_argument("--base", metavar="FOLDER", action="append",
                   help="a model folder (config.json, model.safetensors) where a base the case names by its digest is "
                        "looked for (repeatable; default: the embedded all-MiniLM-L6-v2)")
    p.add_argument("--rtol", type=float, default=None,
                   help="relative tolerance for hidden states and gradients instead of the table's row for the "
                        "case's dtype (minibert_adapters/crosscheck/tolerances.py); the report records it")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from minibert_adapters.crosscheck import crosscheck

    json_out_ok = False
    try:
        if args.json_out:
            writable_file(args.json_out, "--json-out")  # before the work, not after it
            json_out_ok = True
        if args.rtol is not None and not 0 < args.rtol < float("inf"):
            raise ValueError(f"--rtol must be a positive finite number, got {args.rtol}")
        for folder in args.base or []:
            if not (Path(folder) / "config.json").is_file() or not (Path(folder) / "model.safetensors").is_file():
                raise ValueError(f"--base {folder}: not a model folder (config.json and model.safetensors)")
        report = crosscheck(args.case, rtol=args.rtol, bases=args.base)
    except (ValueError, TypeError, KeyError, OSError) as e:
        # the command's one-line error goes to stderr (exit 2); a JSON reader still gets one object
        failure = {"case": args.case, "ok": None, "error": str(e.args[0]) if isinstance(e, KeyError) else str(e)}
        if args.json:
            print(json.dumps(failure, indent=2))
        if json_out_ok:
            _write_json(args.json_out, failure)
        raise
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    if args.json_out:
        _write_json(args.json_out, report)
    return 0 if report["ok"] else 1


def _write_json(path, obj) -> None:
    from minibert.weights import write_atomically

    write_atomically(Path(path), lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8"))


MARK = {True: "PASS", False: "FAIL"}


def _formula(value) -> str:
    """The count per module: one number, or the several a kind's modules of different shapes have."""
    return ", ".join(f"{v:,}" for v in value) if isinstance(value, list) else f"{value:,}"


def format_report(report: dict) -> str:
    """The report as readable text: one block per comparison, then the diagnosis, one sentence per code."""
    tol = report["tolerance"]
    lines = [f"case: {report['case']}" + (f"  (producer: {report['producer']})" if report["producer"] else ""),
             f"dtype {report['dtype']}: hidden states within {tol['hidden']:g} (relative to max(1, |h|)), gradients "
             f"within {tol['gradient']:g} relative + {tol['gradient_floor']:g} x the largest gradient"]
    if report["adapter"]:
        c = report["adapter_config"]
        layer_norms = "train" if c["train_layer_norms"] else "frozen"
        lines.append(f"adapter {report['adapter']!r}: {report['adapter_description']}, LayerNorms {layer_norms}")
    forward = report["forward"]
    lines += ["", f"[{MARK[forward['ok']]}] forward: each hidden state, and each layer alone fed the candidate's own "
                  "input to it",
              f"    {'hidden state':<14} {'error':>10} {'layer alone':>12}"]
    for row in forward["layers"]:
        label = "embeddings" if row["index"] == 0 else f"layer {row['index'] - 1}"
        local = "" if row["index"] == 0 else f"{row['local_error']:>12.2e}"
        flag = "" if row["ok"] else "DIFFERS"
        lines.append(f"    {row['index']:>2} {label:<11} {row['error']:>10.2e} {local:>12}  {flag}")
    if "reference_float32_error" in forward:
        lines.append(f"    (this project's own float32 run differs from its float64 run by "
                     f"{forward['reference_float32_error']:.2e})")
    grads = report["gradients"]
    bad = [g for g in grads["parameters"] if not g["ok"]]
    worst = max((g["relative"] for g in grads["parameters"]), default=0.0)
    lines += ["", f"[{MARK[grads['ok'] and not grads['unexpected'] and not grads['missing']]}] gradients: "
                  f"{len(grads['parameters'])} parameters compared, largest relative error {worst:.2e}"]
    lines += [f"      DIFFERS:              {p}" for p in _grouped(g["name"] for g in bad)]
    lines += [f"      FROZEN BUT HAS GRAD:  {p}" for p in _grouped(grads["unexpected"])]
    lines += [f"      TRAINED, NO GRAD:     {p}" for p in _grouped(grads["missing"])]
    counts = report["counts"]
    if counts.get("modules"):
        lines += ["", f"[{MARK[counts['ok'] and not counts['missing_modules']]}] parameter counts: "
                      f"{counts['formula_text']} = "
                      f"{_formula(counts['formula'])} per module, {counts['expected_per_layer']} modules per layer; "
                      f"found per layer: {counts['modules_per_layer']}"]
        lines += [f"      {r['module']}: {r['counted']:,}" for r in counts["modules"] if not r["ok"]]
        lines += [f"      NOT IN THE PLACEMENT: {m}" for m in counts["extra_modules"]]
    trainable = report["trainable"]
    if report["adapter"]:
        lines += ["", f"[{MARK[trainable['ok']]}] trainable set against the claimed config's policy"]
        lines += [f"      TRAINS, POLICY FREEZES: {p}" for p in _grouped(trainable["extra"])]
        lines += [f"      FROZEN, POLICY TRAINS:  {p}" for p in _grouped(trainable["missing"])]
        lines += [f"      ABSENT FROM THE CASE:   {p}" for p in _grouped(trainable.get("absent", []))]
    init = report["init"]
    if init.get("given"):
        lines += ["", f"[{MARK[init['ok']]}] init against the claimed distribution"]
        for leaf, e in init["leaves"].items():
            detail = f"std {e['measured_std']:.3e} (expected {e.get('expected_std', 0.0):.3e})" \
                if "measured_std" in e else f"max |value| {e['max_abs']:.2e}"
            lines.append(f"    {leaf:<12} {e['claim']:<17} {detail}  {MARK[e['ok']]}")
        ch = init["output_change"]
        lines.append(f"    output change at init {ch['candidate']:.2e}, this project's own init {ch['ours']:.2e}  "
                     f"{MARK[ch['ok']]}")
    merge = report["merge"]
    if merge.get("given"):
        lines += ["", f"[{MARK[merge['ok']]}] merge: the merged model against the case's unmerged one, error "
                      f"{merge['output_error']:.2e}"]
        departs = [r["name"] for r in merge["tensors"] if not r["claimed"]]
        lines.append(f"    {len(merge['tensors']) - len(departs)} of {len(merge['tensors'])} merged tensors as the "
                     "claimed merge makes them" + (f"; not: {', '.join(departs[:3])}" if departs else ""))
    lines.append("")
    if report["explanations"]:
        lines.append("DIAGNOSIS: " + (", ".join(report["diagnosis"]) or "none of the known patterns"))
        lines += [f"  - {e['code'] or 'other'}: {e['sentence']}" for e in report["explanations"]]
        lines.append("")
    lines.append("AGREES" if report["ok"] else "DISAGREES")
    return "\n".join(lines)
