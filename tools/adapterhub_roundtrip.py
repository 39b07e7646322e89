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
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ADAPTER = "roundtrip"
MODEL_NAME = "minibert-tiny-roundtrip"  # recorded by AdapterHub as model_name; no hub is ever asked
TINY = dict(vocab_size=99, hidden_size=12, num_hidden_layers=2, num_attention_heads=3, intermediate_size=37,
            max_position_embeddings=16, hidden_act="gelu")
M = 5


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=("export", "load"))
    ap.add_argument("folder", help="working folder shared by the two stages")
    ap.add_argument("--fixture", default="tests/fixtures/adapterhub_export",
                    help="where `load` writes AdapterHub's files (relative to the repo root)")
    args = ap.parse_args(argv)
    folder = Path(args.folder).resolve()
    if args.stage == "export":
        export(folder)
    else:
        fixture = Path(args.fixture)
        load(folder, fixture if fixture.is_absolute() else REPO_ROOT / fixture)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
