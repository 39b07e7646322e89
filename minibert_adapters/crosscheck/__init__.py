"""Judge another implementation against this project: the case format (`case`), the comparison (`judge`), the
diagnosis of a failing case (`diagnosis`) and the tolerance table (`tolerances`).

    from minibert_adapters.crosscheck import crosscheck
    report = crosscheck("my_model.safetensors")     # or a Case
    report["ok"], report["diagnosis"]               # e.g. False, ["skip-connection"]
"""

from minibert_adapters.crosscheck.case import Case, CaseError, read_case
from minibert_adapters.crosscheck.judge import crosscheck

__all__ = ["crosscheck", "Case", "CaseError", "read_case"]
