"""Write a cross-check case (docs/crosscheck.md) from an AdapterHub model (`adapters` 1.x, a Houlsby bottleneck
adapter on transformers' BertModel). Needs torch, transformers, AdapterHub's `adapters`, numpy, safetensors.

AdapterHub's import name is `adapters`, like this project's package, so the two never share an environment: write
the case in AdapterHub's environment (from a folder outside this repository, so that `import adapters` finds
AdapterHub), judge it with `minibert crosscheck` in this project's.

    import adapters, transformers
    from write_case_adapterhub import write_case            # this file, copied or on sys.path

    model = transformers.BertModel.from_pretrained(path, attn_implementation="eager")
    adapters.init(model)
    model.add_adapter("demo", config=adapters.DoubleSeqBnConfig())
    model.train_adapter("demo")                             # ... and train it
    enc = tokenizer(["a sentence", "another, longer sentence"], padding=True, return_tensors="pt")
    write_case("demo.safetensors", model, "demo", enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    # then, in this project's environment: minibert crosscheck demo.safetensors

The adapter's AdapterHub config is translated into this project's (the `adapterhub-houlsby` preset with the size,
non-linearity, placement and init it has); parameter names stay AdapterHub's, which a case accepts.

    python tools/write_case_adapterhub.py demo OUT_DIR [--model-dir DIR]

writes the cases of a Houlsby adapter trained five steps with AdapterHub (a tiny BERT by default; all-MiniLM-L6-v2
with --model-dir), float32 and float64: tests/fixtures/crosscheck/ holds the tiny ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
# `import adapters` must find AdapterHub, never this repository's package of the same name.
sys.path[:] = [p for p in sys.path if p not in ("", ".") and Path(p or ".").resolve() != REPO_ROOT]
sys.path.insert(0, str(HERE))  # write_case_torch, beside this file

import write_case_torch  # noqa: E402

# AdapterHub's bottleneck-config fields that this project's Houlsby adapter can reproduce, and their values.
HOULSBY_FORM = {"original_ln_before": False, "original_ln_after": True, "residual_before_ln": True,
                "is_parallel": False, "ln_before": False, "ln_after": False, "use_gating": False}
INITS = {"bert": {"init": "normal", "init_std": 0.02}, "houlsby": {"init": "truncated_normal", "init_std": 1e-2}}


def adapter_config(model, name: str) -> dict:
    """This project's AdapterConfig (as a case's adapter_config) for AdapterHub adapter `name` of `model`."""
    hub = dict(model.adapters_config.get(name))
    wrong = {k: hub.get(k) for k, v in HOULSBY_FORM.items() if hub.get(k, v) != v}
    if wrong or hub.get("scaling", 1.0) != 1.0 or hub.get("dropout", 0.0) != 0.0:
        raise ValueError(f"adapter {name!r} is not a Houlsby bottleneck adapter this project reproduces: {wrong}")
    downs = [p for n, p in model.named_parameters() if f".adapters.{name}.adapter_down.0.weight" in n]
    placement = {(True, True): "both", (True, False): "attention", (False, True): "ffn"}[
        (bool(hub["mh_adapter"]), bool(hub["output_adapter"]))]
    config = {"preset": "adapterhub-houlsby", "bottleneck_size": int(downs[0].shape[0]),
              "non_linearity": hub["non_linearity"], "placement": placement}
    config.update(INITS.get(hub.get("init_weights"), {}))
    return config


def write_case(path, model, name: str, input_ids, attention_mask, token_type_ids=None, init=None, **kwargs):
    """write_case_torch.write_case for AdapterHub adapter `name` (active, and trained as `train_adapter` leaves it).
    init: the adapter at init, write_case_torch.snapshot(model) right after add_adapter."""
    import adapters

    return write_case_torch.write_case(
        path, model, input_ids, attention_mask, token_type_ids, adapter_config=adapter_config(model, name),
        adapter_name=name, init=init, producer=f"tools/write_case_adapterhub.py, adapters {adapters.__version__}",
        **kwargs)


def demo(out: Path, model_dir=None):
    """A Houlsby adapter trained five steps with AdapterHub, written as float32 and float64 cases."""
    import numpy as np
    import torch
    import transformers

    import adapters

    torch.manual_seed(0)
    torch.set_num_threads(1)
    if model_dir:
        model = transformers.BertModel.from_pretrained(model_dir, attn_implementation="eager")
        size = "minilm"
    else:  # the tiny BERT of tools/adapterhub_roundtrip.py, all sizes distinct
        config = transformers.BertConfig(vocab_size=99, hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
                                         intermediate_size=37, max_position_embeddings=16, hidden_act="gelu",
                                         attn_implementation="eager")
        model = transformers.BertModel(config)
        size = "tiny"
    adapters.init(model)
    model.add_adapter("demo", config=adapters.DoubleSeqBnConfig(reduction_factor=model.config.hidden_size / 5))
    init = write_case_torch.snapshot(model)
    model.train_adapter("demo")
    model.eval()  # no dropout: deterministic steps
    rng = np.random.default_rng(0)
    ids = torch.from_numpy(rng.integers(1, model.config.vocab_size, size=(3, 8)))
    mask = torch.ones(3, 8, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 7:] = 0
    ids = ids * mask
    types = torch.zeros(3, 8, dtype=torch.long)
    types[:, 4:] = 1
    target = torch.from_numpy(rng.standard_normal((3, 8, model.config.hidden_size))).float()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05, weight_decay=0.0)
    for _ in range(5):
        opt.zero_grad()
        ((model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state - target) ** 2)\
            .mean().backward()
        opt.step()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for dtype in (torch.float32, torch.float64):
        model.to(dtype)
        path = out / f"adapterhub_{size}_{str(dtype)[6:]}.safetensors"
        write_case(path, model, "demo", ids, mask, types, init=init)
        written.append(path.name)
    meta = {"written_by": "tools/write_case_adapterhub.py demo", "versions": {
        "adapters": adapters.__version__, "transformers": transformers.__version__, "torch": torch.__version__},
        "adapter": "DoubleSeqBnConfig(reduction_factor=D / 5): M = 5, swish, 'bert' init; train_adapter, five AdamW "
                   "steps (lr 0.05) on a squared error, then cast to each dtype", "files": written}
    (out / f"adapterhub_{size}.json").write_text(json.dumps(meta, indent=2) + "\n")
    print("wrote", ", ".join(written), "to", out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("demo",))
    ap.add_argument("out", help="output folder")
    ap.add_argument("--model-dir", help="a BERT folder (e.g. all-MiniLM-L6-v2) instead of the tiny random BERT")
    args = ap.parse_args(argv)
    demo(Path(args.out).resolve(), args.model_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
