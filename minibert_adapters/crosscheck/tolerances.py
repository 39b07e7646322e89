"""The one tolerance table: how close two implementations of the same BERT + adapter must agree.

`minibert crosscheck` judges a case by it, and the project's own tests read it too (tests/helpers.py `TOL`), so a
number here is the same promise everywhere. Each row is for the precision the case was computed in (its tensors'
dtype); the numbers are set from measurements, with a margin, never to make a failing comparison pass:

- float64: a PyTorch Houlsby adapter on transformers 4.57.6's BertModel with the real all-MiniLM-L6-v2, trained
  five steps and written by tools/write_case_torch.py, agrees with this project to 1.7e-15 on hidden states and
  1.8e-14 on gradients (relative to each tensor's largest entry; tests/crosscheck/test_torch_writer.py). The row
  leaves five to six orders of magnitude for another order of summation, and stays far below float32 rounding
  (6e-8), so a float64 case computed partly in float32 fails it (diagnosed `precision`).
- float32: the same case in float32 agrees to 3.9e-7 on hidden states and 3.4e-6 on gradients (this project's own
  float32 run differs from its float64 run by 9.4e-7 there). A float32 case is judged against this project's
  float64 run on the case's own float32 weights, so the error measured is the candidate's float32 rounding
  alone. The row leaves about a hundred times that, for longer sequences and larger models; the variants that
  `minibert_adapters.crosscheck.diagnosis` tells apart differ by 1e-3 or more there.

How a tensor is judged:

    hidden state i:  max |h - h_ref| / max(1, max |h_ref|)  <= hidden       over real (unpadded) tokens
    gradient of p:   max |g - g_ref| <= gradient * max |g_ref| + gradient_floor * G

where G is the largest |g_ref| over every parameter of the case. The floor is what a gradient that is (nearly)
zero is allowed: rounding in a long chain leaves absolute noise of the order of the case's gradient scale times
the precision, which a relative test on a near-zero tensor would call a difference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    hidden: float          # hidden states: max |difference| / max(1, max |reference|)
    gradient: float        # gradients: relative to the tensor's largest |reference| entry
    gradient_floor: float  # plus this times G, the largest |reference gradient| of the whole case

    def to_dict(self) -> dict:
        return asdict(self)


TOLERANCES = {
    "float64": Tolerance(hidden=1e-10, gradient=1e-8, gradient_floor=1e-12),
    "float32": Tolerance(hidden=5e-5, gradient=5e-4, gradient_floor=1e-5),
}

# Central differences in float64, as torch.autograd.gradcheck's defaults (autograd.gradcheck).
GRADCHECK = dict(eps=1e-6, atol=1e-5, rtol=1e-3)


def tolerance_for(dtype) -> Tolerance:
    """The row for a NumPy dtype (float64 or float32)."""
    import numpy as np

    name = np.dtype(dtype).name
    if name not in TOLERANCES:
        raise ValueError(f"no tolerance for dtype {name}; cases are float64 or float32")
    return TOLERANCES[name]


def hidden_error(h, ref, real) -> float:
    """max |h - ref| / max(1, max |ref|) over the real tokens (the tolerance table's measure)."""
    return relative_error(np.asarray(h, dtype=np.float64)[real], np.asarray(ref, dtype=np.float64)[real])


def relative_error(a, ref) -> float:
    """max |a - ref| / max(1, max |ref|): the hidden-state measure, for any two arrays (merged weights too)."""
    a, ref = np.asarray(a, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.abs(a - ref).max() / max(1.0, float(np.abs(ref).max())))
