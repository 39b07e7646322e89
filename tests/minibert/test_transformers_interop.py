"""transformers itself loads what `save_pretrained` writes, and computes what we compute (optional: runs only
where torch + transformers are installed, `pip install torch==2.13.0 "transformers~=4.57.6"`; the same proof on
the real MiniLM is `python tools/make_fixtures.py --check-saved DIR`)."""

import numpy as np
import pytest
from helpers import tiny_config, tiny_inputs

from minibert import BertModel

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new"])
def test_transformers_loads_our_save_pretrained(tmp_path, dtype, tol, hidden_act):
    ours = BertModel(tiny_config(hidden_act=hidden_act), dtype=dtype, seed=3).eval()
    ours.save_pretrained(tmp_path)
    theirs = transformers.BertModel.from_pretrained(tmp_path, attn_implementation="eager",
                                                    torch_dtype=torch.float64 if dtype == np.float64 else torch.float32)
    theirs.eval()
    assert sorted(theirs.state_dict()) == sorted(k for k in ours.state_dict())
    ids, mask, types = tiny_inputs()
    with torch.no_grad():
        ref = theirs(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                     token_type_ids=torch.from_numpy(types))
    out = ours(ids, attention_mask=mask, token_type_ids=types)
    real = mask.astype(bool)
    assert np.abs(out.last_hidden_state.data[real] - ref.last_hidden_state.numpy()[real]).max() < tol
    assert np.abs(out.pooler_output.data - ref.pooler_output.numpy()).max() < tol
