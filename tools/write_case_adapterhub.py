"""Write a cross-check case (docs/crosscheck.md) from an AdapterHub bottleneck adapter (SeqBn, DoubleSeqBn, ParBn).

AdapterHub is `adapters` 1.x, the model transformers' BertModel. Needs torch, transformers, AdapterHub's `adapters`,
numpy, safetensors.

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

The adapter's AdapterHub config is translated into this project's: the preset of its family (DoubleSeqBnConfig ->
`adapterhub-houlsby`, SeqBnConfig -> `pfeiffer`, ParBnConfig -> `adapterhub-parallel`; a plain BnConfig, e.g. one
loaded from a saved adapter, by its form), with every field that decides the function written out explicitly
(bottleneck_size, non_linearity, placement, parallel, original_ln_before, original_ln_after, residual_before_ln,
scaling, init, init_std), so the claim does not depend on the preset's defaults. tools/ADAPTERHUB_NOTES.md says what
each AdapterHub field computes. Parameter names stay AdapterHub's, which a case accepts.

    python tools/write_case_adapterhub.py demo OUT_DIR [--config houlsby|seq_bn] [--model-dir DIR]

writes the cases of an adapter trained five steps with AdapterHub (a tiny BERT by default; all-MiniLM-L6-v2 with
--model-dir), float32 and float64: `--config houlsby` (the default: DoubleSeqBnConfig, adapterhub_<size>_*) or
`--config seq_bn` (SeqBnConfig, adapterhub_seqbn_<size>_*). tests/fixtures/crosscheck/ holds the tiny ones, written
with /work/venv-hub/bin/python (see tools/make_adapterhub_family_fixture.py for that environment).
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

# AdapterHub bottleneck-config fields this project has no counterpart for, and the only value it reproduces.
NOT_REPRODUCED = {"ln_before": False, "ln_after": False, "use_gating": False, "phm_layer": False, "inv_adapter": None,
                  "dropout": 0.0, "stochastic_depth": 0.0}
# AdapterHub's init_weights -> this project's init and init_std ("mam_adapter": W_down ~ U(+-1/sqrt(D)), W_up and
# the biases zero; it has no std parameter, so 0.0 as in the adapterhub-parallel preset).
INITS = {"bert": {"init": "normal", "init_std": 0.02}, "houlsby": {"init": "truncated_normal", "init_std": 1e-2},
         "mam_adapter": {"init": "mam_adapter", "init_std": 0.0}}
# AdapterHub config class -> the preset of this project that names that family.
PRESETS = {"DoubleSeqBnConfig": "adapterhub-houlsby", "SeqBnConfig": "pfeiffer", "ParBnConfig": "adapterhub-parallel"}
# AdapterHub lower-cases the name and treats "leakyrelu" itself (torch's leaky_relu, slope 0.01).
NON_LINEARITY_ALIASES = {"leakyrelu": "leaky_relu"}


def _preset(hub_config, hub: dict) -> str:
    """The preset for an AdapterHub config: by class, else (a plain BnConfig, e.g. loaded from a saved adapter) by
    form. Every field that decides the function is written explicitly anyway; the preset supplies the rest (the
    training policy: adapters + head, LayerNorms frozen, which `train_adapter` does for all three)."""
    if type(hub_config).__name__ in PRESETS:
        return PRESETS[type(hub_config).__name__]
    if hub["is_parallel"]:
        return "adapterhub-parallel"
    return "pfeiffer" if hub["original_ln_before"] else "adapterhub-houlsby"


def adapter_config(model, name: str) -> dict:
    """This project's AdapterConfig (as a case's adapter_config) for AdapterHub bottleneck adapter `name` of `model`:
    {"preset": ..., every field that decides the function}. ValueError for what this project does not reproduce."""
    hub_config = model.adapters_config.get(name)
    if hub_config is None:
        raise ValueError(f"model has no adapter {name!r}")
    if getattr(hub_config, "architecture", None) is not None:  # lora, prefix_tuning, union, ...
        raise ValueError(f"adapter {name!r} is a {hub_config.architecture!r} adapter, not a bottleneck adapter")
    hub = dict(hub_config)
    wrong = {k: hub.get(k) for k, v in NOT_REPRODUCED.items() if hub.get(k, v) != v}
    scaling, rbl = hub.get("scaling", 1.0), hub.get("residual_before_ln", True)
    if isinstance(scaling, bool) or not isinstance(scaling, (int, float)):
        wrong["scaling"] = scaling  # "learned" / "channel": a trained scaling parameter
    if rbl not in (True, False, "post_add"):
        wrong["residual_before_ln"] = rbl
    elif rbl == "post_add" and not hub.get("original_ln_before", False) and not hub.get("is_parallel", False):
        wrong["residual_before_ln"] = "post_add without original_ln_before (AdapterHub itself fails on it)"
    if str(hub.get("non_linearity")).lower() in ("prelu", "xielu"):
        wrong["non_linearity"] = hub["non_linearity"]  # an activation with trained parameters of its own
    if hub.get("leave_out"):
        wrong["leave_out"] = hub["leave_out"]
    if hub.get("init_weights") not in INITS:
        wrong["init_weights"] = hub.get("init_weights")
    if wrong:
        raise ValueError(f"adapter {name!r} is not a bottleneck adapter this project reproduces: {wrong}")
    sizes = {int(p.shape[0]) for n, p in model.named_parameters() if f".adapters.{name}.adapter_down.0.weight" in n}
    if len(sizes) != 1:
        raise ValueError(f"adapter {name!r}: one bottleneck size expected, found {sorted(sizes) or 'no module'}")
    placement = {(True, True): "both", (True, False): "attention", (False, True): "ffn"}.get(
        (bool(hub["mh_adapter"]), bool(hub["output_adapter"])))
    if placement is None:
        raise ValueError(f"adapter {name!r} has neither mh_adapter nor output_adapter")
    non_linearity = hub["non_linearity"].lower()
    config = {"preset": _preset(hub_config, hub), "bottleneck_size": sizes.pop(),
              "non_linearity": NON_LINEARITY_ALIASES.get(non_linearity, non_linearity), "placement": placement,
              "parallel": bool(hub["is_parallel"]), "original_ln_before": bool(hub["original_ln_before"]),
              "original_ln_after": bool(hub["original_ln_after"]),
              "residual_before_ln": rbl if rbl == "post_add" else bool(rbl), "scaling": float(scaling)}
    config.update(INITS[hub["init_weights"]])
    return config


def write_case(path, model, name: str, input_ids, attention_mask, token_type_ids=None, init=None, **kwargs):
    """write_case_torch.write_case for AdapterHub adapter `name` (active, and trained as `train_adapter` leaves it).
    init: the adapter at init, write_case_torch.snapshot(model) right after add_adapter."""
    import adapters

    return write_case_torch.write_case(
        path, model, input_ids, attention_mask, token_type_ids, adapter_config=adapter_config(model, name),
        adapter_name=name, init=init, producer=f"tools/write_case_adapterhub.py, adapters {adapters.__version__}",
        **kwargs)


# demo --config: AdapterHub config class, file-name prefix, description for the .json beside the cases.
DEMOS = {
    "houlsby": ("DoubleSeqBnConfig", "adapterhub", "DoubleSeqBnConfig(reduction_factor=D / 5): M = 5, swish, 'bert' "
                "init; train_adapter, five AdamW steps (lr 0.05) on a squared error, then cast to each dtype"),
    "seq_bn": ("SeqBnConfig", "adapterhub_seqbn", "SeqBnConfig(reduction_factor=D / 5): M = 5, after the FFN only, "
               "fed LN(a + x) (original_ln_before), relu, 'bert' init; train_adapter, five AdamW steps (lr 0.05) on a "
               "squared error, then cast to each dtype"),
}


def demo(out: Path, model_dir=None, config_name: str = "houlsby"):
    """An adapter (DEMOS[config_name]) trained five steps with AdapterHub, written as float32 and float64 cases."""
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
    cls_name, prefix, description = DEMOS[config_name]
    adapters.init(model)
    model.add_adapter("demo", config=getattr(adapters, cls_name)(reduction_factor=model.config.hidden_size / 5))
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
        path = out / f"{prefix}_{size}_{str(dtype)[6:]}.safetensors"
        write_case(path, model, "demo", ids, mask, types, init=init)
        written.append(path.name)
    meta = {"written_by": "tools/write_case_adapterhub.py demo"
                          + ("" if config_name == "houlsby" else f" --config {config_name}"),
            "versions": {"adapters": adapters.__version__, "transformers": transformers.__version__,
                         "torch": torch.__version__},
            "adapter": description, "files": written}
    if config_name != "houlsby":  # the Houlsby demo's .json stays as it was
        meta["adapter_config"] = adapter_config(model, "demo")
    (out / f"{prefix}_{size}.json").write_text(json.dumps(meta, indent=2) + "\n")
    print("wrote", ", ".join(written), "to", out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("demo",))
    ap.add_argument("out", help="output folder")
    ap.add_argument("--model-dir", help="a BERT folder (e.g. all-MiniLM-L6-v2) instead of the tiny random BERT")
    ap.add_argument("--config", choices=tuple(DEMOS), default="houlsby",
                    help="the demo adapter: houlsby (DoubleSeqBnConfig, the default) or seq_bn (SeqBnConfig)")
    args = ap.parse_args(argv)
    demo(Path(args.out).resolve(), args.model_dir, args.config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
