"""`minibert convert`: a PyTorch checkpoint to safetensors (needs torch, only here)."""

from __future__ import annotations

from minibert_adapters.commands.arguments import EXIT_CODES


def register(sub):
    p = sub.add_parser("convert", help="convert pytorch_model.bin to model.safetensors (needs torch, only here)",
                       description="Convert a PyTorch checkpoint to safetensors without unpickling arbitrary "
                                   "objects (torch.load with weights_only=True). bfloat16 tensors become float32.",
                       epilog=EXIT_CODES)
    p.add_argument("src", help="a pytorch_model.bin or a folder holding one")
    p.add_argument("dst", help="output folder (or a .safetensors file)")
    p.set_defaults(func=run)


def run(args) -> int:
    from minibert.weights import convert_pytorch_checkpoint

    dst, notes = convert_pytorch_checkpoint(args.src, args.dst)
    for note in notes:
        print(f"note: {note}")
    print(f"wrote {dst}")
    return 0
