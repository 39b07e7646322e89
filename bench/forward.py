"""Benchmark: MiniLM forward and forward+backward at batch 32 x 128 tokens, float32, ours vs PyTorch.

    python bench/forward.py [--batch 32] [--tokens 128] [--threads 2] [--repeats 3]

Prints the best of `repeats` wall-clock times (after one warm-up call) and, when torch + transformers are
installed (pip install torch==2.13.0 "transformers~=4.57.6"), the same measurements for transformers' BertModel
(eager attention) with the same thread count, and the ratios ours / torch. The backward pass is a full
fine-tuning one (every parameter gets a gradient) of loss = sum(last_hidden_state * R).

Environment note (not set by this script or the library): glibc's malloc gives large freed blocks back to the
OS, and NumPy's next large array page-faults them in again (torch keeps its own cache). Setting BOTH
MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 keeps them: on the 2-core reference machine
forward+backward got about 4% faster and forward did not change. Setting only one of the two disables glibc's
adaptive threshold and made everything about 50% slower.
"""

from __future__ import annotations

import argparse
import os
import sys

from _timing import best_of, pin_threads


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--model", help="Hugging Face folder (default: embedded all-MiniLM-L6-v2)")
    return p.parse_args()



def main():
    args = parse()
    pin_threads(args.threads)  # before NumPy / torch load their BLAS
    import numpy as np

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from autograd import no_grad
    from minibert import BertModel
    from minibert.pretrained import resolve_model_dir

    folder = resolve_model_dir(args.model)
    rng = np.random.default_rng(0)
    model = BertModel.from_pretrained(folder, dtype=np.float32)
    B, T = args.batch, args.tokens
    ids = rng.integers(1000, model.config.vocab_size, size=(B, T))
    mask = np.ones((B, T), dtype=np.int64)
    R = rng.standard_normal((B, T, model.config.hidden_size)).astype(np.float32)

    def ours_forward():
        with no_grad():
            model(ids, mask)

    def ours_backward():
        model.zero_grad()
        out = model(ids, mask).last_hidden_state
        (out * R).sum().backward()

    rows = [("forward", best_of(ours_forward, args.repeats)),
            ("forward+backward", best_of(ours_backward, args.repeats))]
    # Rough: 2 flops per encoder weight per token (embedding lookups and attention scores excluded).
    flops = 2 * B * T * model.encoder.num_parameters()
    print(f"MiniLM {B}x{T} float32, {args.threads} threads, best of {args.repeats}")
    malloc = [v for v in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_") if v in os.environ]
    print(f"  (malloc tuning: {', '.join(malloc) if malloc else 'none'}; see the note in this file's docstring)")
    try:
        import torch
        from transformers import BertModel as HFBert
    except ImportError:
        for name, t in rows:
            print(f"  ours  {name:<17} {t:7.3f} s")
        print("  (torch/transformers not installed: no comparison)")
        return
    torch.set_num_threads(args.threads)
    hf = HFBert.from_pretrained(str(folder), attn_implementation="eager").eval()
    t_ids, t_mask, t_R = torch.tensor(ids), torch.tensor(mask), torch.tensor(R)

    def torch_forward():
        with torch.no_grad():
            hf(input_ids=t_ids, attention_mask=t_mask)

    def torch_backward():
        hf.zero_grad()
        (hf(input_ids=t_ids, attention_mask=t_mask).last_hidden_state * t_R).sum().backward()

    theirs = [best_of(torch_forward, args.repeats), best_of(torch_backward, args.repeats)]
    for (name, t), t_torch in zip(rows, theirs):
        print(f"  {name:<17} ours {t:7.3f} s   torch {t_torch:7.3f} s   ratio {t / t_torch:5.2f}x")
    print(f"  ours forward: about {flops / rows[0][1] / 1e9:.0f} GFLOP/s on the dense layers")


if __name__ == "__main__":
    main()
