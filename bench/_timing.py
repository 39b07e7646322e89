"""What every bench script shares: fixing the BLAS thread count before NumPy loads, and best-of-n timing."""

import os
import time


def pin_threads(n: int):
    """Fix the BLAS / OpenMP thread count; must run before NumPy (or torch) is first imported."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def best_of(fn, repeats: int, warmup: int = 1) -> float:
    """The fastest of `repeats` timed calls, after `warmup` untimed ones: first-call costs (lazy imports, first
    page faults, an allocator growing to its working size) are not what we measure."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
