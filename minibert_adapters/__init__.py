"""The application on top of the three library packages: fine-tuning, checkpoints, data readers, `check`,
and the `minibert` command.

Layers (imports run one way; tests/test_architecture.py enforces it):

    autograd  <-  minibert  <-  adapters  <-  minibert_adapters

`autograd` is the engine, `minibert` the model (it knows nothing of adapters beyond one generic hook),
`adapters` the method. This package is named after the distribution (`minibert-adapters`) and owns the
`minibert` console command; nothing below it imports it.
"""

# Another package named `adapters` (AdapterHub's import name) or `autograd` (HIPS autograd) in this environment would
# be imported instead of this project's: say so here, in one error, rather than deep inside the other package.
from minibert.environment import check_packages  # noqa: E402

check_packages(("autograd", "minibert", "adapters"))
