"""Write tests/fixtures/adapter_written_by_fb55466/: an adapter saved by an earlier version of this project
(commit fb55466, before adapters owned their state in AdapterSet and before the activation names were
unified), and the logits that version computed with it. The test that loads it with today's code proves
that adapter files saved before still load and compute the same function.

    git worktree add --detach /tmp/old fb55466
    cd /tmp/old && PYTHONPATH=/tmp/old python /path/to/this/repo/tools/make_adapter_compat_fixture.py OUT_DIR
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path.cwd() / "tests"))  # the old checkout's tests/conftest.py: tiny_config, tiny_inputs

from conftest import tiny_config, tiny_inputs  # noqa: E402

from adapters import add_adapter, save_adapter  # noqa: E402  (the old checkout's, through PYTHONPATH)
from minibert import BertForSequenceClassification  # noqa: E402

out = Path(sys.argv[1])
model = BertForSequenceClassification(tiny_config(num_labels=3), dtype=np.float64, seed=0)
add_adapter(model, "sst2", "houlsby", seed=1)
rng = np.random.default_rng(5)
for name, p in model.named_parameters():  # as if trained: the adapters, LayerNorms and head moved
    if ".adapters." in name or "LayerNorm" in name or name.startswith("classifier"):
        p.data = p.data + 0.05 * rng.standard_normal(p.shape)
save_adapter(model, "sst2", out)
model.eval()
ids, mask, types = tiny_inputs()
np.save(out / "logits_by_fb55466.npy", model(ids, mask, types).logits.data)
