"""`minibert check`: the paper's three facts on a real pretrained BERT (minibert_adapters.facts.check)."""

from __future__ import annotations

import argparse
import json

from minibert_adapters.commands.arguments import EXIT_CODES, non_negative_int, positive_int


def register(sub):
    from adapters import PRESETS

    presets = "\n".join(f"  {name:<24} {spec['doc']}" for name, spec in PRESETS.items())
    p = sub.add_parser("check", help="prove the three adapter facts on a real pretrained BERT",
                       description="Insert adapters into a real BERT (float64) and measure the paper's three facts: "
                                   "each module's parameter count by its kind's formula, identity at init, gradients "
                                   "only where the policy trains (and agreeing with central differences).",
                       epilog=f"presets:\n{presets}\n\n{EXIT_CODES}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="Hugging Face folder (config.json + model.safetensors); default: embedded MiniLM")
    p.add_argument("--preset", default="houlsby", metavar="PRESET",
                   help="adapter preset (default: houlsby, the original code; see below)")
    p.add_argument("--size", type=positive_int, help="adapter size, its kind's size field (M for Houlsby "
                                                    "adapters; default: the preset's)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--fd-samples", type=positive_int, default=6,
                   help="adapter-gradient entries checked by finite differences (default 6)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="adapter and head initialisation (default 0)")
    p.set_defaults(func=run)



def run(args) -> int:
    from minibert_adapters.facts.check import format_report, run_check

    report = run_check(args.model, preset=args.preset, size=args.size, n_fd=args.fd_samples, seed=args.seed)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["ok"] else 1
