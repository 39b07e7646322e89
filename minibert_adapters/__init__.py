"""The application on top of the three library packages: fine-tuning, checkpoints, data readers, `check`,
and the `minibert` command.

Layers (imports run one way; tests/test_architecture.py enforces it):

    autograd  <-  minibert  <-  adapters  <-  minibert_adapters

`autograd` is the engine, `minibert` the model (it knows nothing of adapters beyond one generic hook),
`adapters` the method. This package is named after the distribution (`minibert-adapters`) and owns the
`minibert` console command; nothing below it imports it.
"""
