"""`minibert embed`: sentence embeddings as sentence-transformers computes them for all-MiniLM-L6-v2."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np

from minibert_adapters.commands.arguments import EXIT_CODES, check_max_length, positive_int, writable_file


def register(sub):
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
    p.set_defaults(func=run)



def run(args) -> int:
    from autograd import no_grad
    from minibert import BertModel, Tokenizer, sentence_embeddings

    texts = list(args.text)
    if args.file:
        texts += _read_lines(args.file)
    if not texts:
        raise ValueError("give at least one TEXT (or --file)")
    out_file = None
    if args.out is not None and (not str(args.out).strip() or Path(args.out).is_dir()):
        raise ValueError(f"--out {args.out!r}: give a file name" + (" (that is a folder)" if str(args.out).strip()
                                                                     else ""))
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
        from minibert_adapters.training.checkpoints import write_or_clean_up

        def save(tmp):
            # Through memory, then Python's own write: np.save into a real file goes through C stdio, and a write
            # cut short there (`ulimit -f`) left a truncated .npy and no error at all.
            buffer = io.BytesIO()
            np.save(buffer, emb)
            tmp.write_bytes(buffer.getvalue())
        write_or_clean_up(out_file, save)  # a full disk leaves no half-written .npy, and the error names it
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
