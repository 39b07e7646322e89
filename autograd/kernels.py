"""Fast kernels: the formulas of `functional.py` and `ops.py`, arranged for speed, and the threads they run on.

Each Function shows its reference formula in plain NumPy and calls the blocked kernels here only when its arrays
are float32; float64 (gradient checks, parity tests) and every other dtype run the reference formula as written.
Two pieces serve every dtype, because they change no formula: `matmul` (a @ b with its rows split over the
threads) and `map_blocks` (an elementwise function by blocks, the same bits). Every kernel states why it exists
and, where it approximates, how far it may be off. tests/autograd/test_kernels.py checks each one against its
reference formula evaluated in float64; `python bench/kernels.py` times the blocked ones against their formulas.

Why blocks: a NumPy expression such as `0.5 * x * (1 + erf(x / sqrt 2))` runs one operation at a time over
the whole array, each writing a full-size temporary. For a (B, T, F) activation those temporaries do not fit
in the CPU caches, so every step streams the whole array through main memory. The kernels below run the same
steps on one block of about BLOCK elements at a time, small enough for a block and its temporaries to stay in
cache, and write each result straight into its output array (`out=`) instead of a new temporary.

Threads: one pool runs the blocks and the parts of every large product (see `for_each` and `matmul`). The engine
is meant to be driven from one Python thread at a time: two threads computing at once would share the pool and
the process-wide BLAS thread setting.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

BLOCK = 1 << 18  # elements per block: 1 MB per float32 temporary, so a block and its temporaries stay in L2

_SQRT_2 = float(np.sqrt(2.0))  # Python floats: NumPy keeps a float32 array float32
_SQRT_2PI = float(np.sqrt(2.0 * np.pi))


def flat_blocks(*arrays) -> list:
    """Matching flat blocks of equally shaped arrays. An output must be C-contiguous (np.empty) so that its
    flattened blocks are views that the kernel writes into, not copies."""
    flat = [a.reshape(-1) for a in arrays]
    return [tuple(f[start:start + BLOCK] for f in flat) for start in range(0, flat[0].size, BLOCK)]


def leading_blocks(x):
    """Slices of x's first axis holding about BLOCK elements each (at least one row): blocks for a kernel that
    reduces along a later axis, so that every reduction sees whole rows."""
    step = max(1, BLOCK // max(1, x[0].size)) if len(x) else 1
    return [slice(i, i + step) for i in range(0, len(x), step)]


# ---- blocks over threads --------------------------------------------------------------------------------------
def _default_threads() -> int:
    """The BLAS thread budget when the environment sets one, else the cores this process may run on.
    Convention: the first of OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS that is set, so that
    `OPENBLAS_NUM_THREADS=1` (or the runner's --threads 1) means one thread everywhere."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_threads = _default_threads()
_pool, _pool_size = None, 0
_pool_lock = threading.Lock()


def set_threads(n: int):
    """Run the kernels' blocks and matrix products on n threads (1: in the calling thread, with BLAS's own
    threads for products). Default: see `_default_threads`."""
    global _threads
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"threads must be an integer >= 1, got {n!r}")
    _threads = n


def get_threads() -> int:
    return _threads


def _get_pool() -> ThreadPoolExecutor:
    """The pool for the current thread count; a pool of another size is shut down when replaced."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool_size != _threads:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool, _pool_size = ThreadPoolExecutor(_threads, thread_name_prefix="autograd-kernels"), _threads
        return _pool


def _forget_pool():
    """In a forked child the pool's threads do not exist: start a new pool on first use."""
    global _pool, _pool_size, _pool_lock
    _pool, _pool_size, _pool_lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def for_each(work, blocks):
    """work(block) for every block, spread over `get_threads()` threads.

    Why threads help: NumPy releases the GIL inside each ufunc and reduction loop, so two blocks really run
    at the same time on two cores; only the Python lines between the NumPy calls take turns. Each block
    writes its own part of the output, computed exactly as in one thread, so the result does not depend on
    the thread count. `work` must not call `for_each` itself (the pool's threads would wait for each other).
    """
    if _threads == 1 or len(blocks) <= 1:
        for block in blocks:
            work(block)
        return
    for _ in _get_pool().map(work, blocks):  # re-raises the first error of any block
        pass


def map_blocks(fn, x: np.ndarray) -> np.ndarray:
    """fn(x) for an elementwise ufunc `fn`, computed block by block over the kernel threads: the same values bit
    for bit, in x's dtype. Why: scipy's erf is a scalar loop; the float64 GELU of the reference formula spends
    most of its time there, and two cores halve it."""
    y = np.empty(x.shape, x.dtype)

    def block(b):
        xb, yb = b
        fn(xb, out=yb)

    for_each(block, flat_blocks(x, y))
    return y


# ---- memory ---------------------------------------------------------------------------------------------------
def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks for reuse instead of giving them back to the OS; True if it could.

    Why: a training step allocates and frees hundreds of activation arrays of several MB. By default glibc serves
    each from fresh memory-mapped pages and unmaps them on free, so the next step's arrays page-fault in again (a
    cost of the first write to every 4 KB page). PyTorch avoids this with its own caching allocator; here the
    same effect comes from malloc settings: M_TRIM_THRESHOLD and M_MMAP_THRESHOLD at 1 GiB (keep and reuse), and
    M_ARENA_MAX at 1, so that the kernels' threads draw from the same pool of freed blocks as the main thread
    (with an arena per thread, one process in three ran a training step a third slower than the others). The
    process then keeps its peak memory until it exits. It changes the whole process, so the engine never calls
    it on its own: the `minibert` command does, and a program can. Does nothing (False) where malloc is not
    glibc's.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8  # glibc's malloc.h
    return all([mallopt(m_trim_threshold, 1 << 30), mallopt(m_mmap_threshold, 1 << 30), mallopt(m_arena_max, 1)])


# ---- matrix products ---------------------------------------------------------------------------------------------
_blas = None
MIN_SPLIT = 1 << 22  # multiply-adds below which a product runs whole: a thread hand-off costs more than it saves


def _one_blas_thread():
    """A context in which BLAS runs on the calling thread only (threadpoolctl; a few microseconds)."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController().select(user_api="blas")
    return _blas.limit(limits=1)


def _split_axis(shape) -> int | None:
    """The output axis `matmul` cuts: the first batch axis with at least 2 entries, else the rows (axis -2);
    None when there are fewer than 2 rows too."""
    for axis, n in enumerate(shape[:-1]):
        if n >= 2:
            return axis
    return None


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b (np.matmul's rules), with the work of a large product split over the kernel threads.

    With one thread, and for a product of fewer than MIN_SPLIT multiply-adds, this is a @ b with BLAS's own
    threads. Otherwise the output is cut along one axis (the first batch axis with 2 or more entries, else the
    rows) into one part per thread, each computed by a one-thread BLAS call into its part of the output; an
    operand without that axis (or with size 1 there) is shared by every part.
    Why: OpenBLAS leaves its worker threads spinning for a while after every product, so a kernel that runs on
    two threads right after a BLAS call finds the second core busy and gains nothing; with one pool of threads
    for products and kernels alike (as PyTorch's OpenMP), no thread spins while another works.
    Convention: the cut never crosses the summed axis, so each output element is the same K products summed by
    BLAS, within the rounding bound of the whole product; but BLAS may order the sum differently for a part than
    for the whole, so the last bits can differ between thread counts (as between BLAS's own thread counts).
    With the same thread count they are the same on every run.
    """
    if _threads == 1 or a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        return a @ b
    try:
        shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
    except ValueError:
        return a @ b  # NumPy raises its own error for batch axes that do not broadcast
    axis = _split_axis(shape)
    if axis is None or np.prod(shape, dtype=np.float64) * a.shape[-1] < MIN_SPLIT:
        return a @ b
    y = np.empty(shape, np.result_type(a, b))

    def cut(m, rows, rows_of):
        """m's part for output rows `rows` of `axis` (m aligned to the right, as broadcasting aligns it)."""
        if axis == len(shape) - 2:  # the rows: a's rows are cut, b is shared
            return m[..., rows, :] if rows_of == "a" else m
        j = axis - (len(shape) - m.ndim)
        if j < 0 or m.shape[j] != shape[axis]:
            return m  # no such axis, or size 1: broadcast to every part
        return m[(slice(None),) * j + (rows,)]

    def part(rows):
        out = y[(slice(None),) * axis + (rows,)]
        np.matmul(cut(a, rows, "a"), cut(b, rows, "b"), out=out)

    step = -(-shape[axis] // _threads)
    with _one_blas_thread():
        for_each(part, [slice(i, i + step) for i in range(0, shape[axis], step)])
    return y


# ---- erfc and exact GELU ------------------------------------------------------------------------------------
_P = 0.3275911  # Abramowitz & Stegun 7.1.26: p and a1 ... a5
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erfc_factors(a: np.ndarray, scale: float = 1.0):
    """scale * erfc(a) as two factors (poly, e), for a >= 0 in float32, by Abramowitz & Stegun 7.1.26:

        erfc(a) = (a1 t + a2 t^2 + a3 t^3 + a4 t^4 + a5 t^5) * exp(-a^2),   t = 1 / (1 + p a).

    Why: scipy's erf is a scalar loop, one C call per element; this formula runs on NumPy's vectorised divide,
    multiply and exp. Accuracy: the formula's absolute error is below 1.5e-7 for every a >= 0; evaluated in
    float32, about ten roundings of values <= 1 (each at most eps32 / 2 = 6e-8) come on top.
    GELU's backward reuses e = exp(-a^2); `scale` is folded into the coefficients (one pass fewer than
    multiplying afterwards). `a` is one block (see `flat_blocks`).
    """
    t = a * np.float32(_P)
    t += 1.0
    np.divide(1.0, t, out=t)  # t = 1 / (1 + p a); divide is vectorised, np.reciprocal is not
    poly = t * np.float32(_A[4] * scale)
    for c in reversed(_A[:4]):  # Horner: ((((a5 t + a4) t + a3) t + a2) t + a1) t
        poly += np.float32(c * scale)
        poly *= t
    np.multiply(a, a, out=t)
    np.negative(t, out=t)
    return poly, np.exp(t, out=t)


def _abs_u(xb: np.ndarray) -> np.ndarray:
    """|u| = |x| / sqrt 2, the erf argument of exact GELU, clamped at 10: erfc(10) underflows float32 anyway,
    and the clamp keeps gelu(inf) = inf instead of inf * 0 = NaN."""
    a = np.abs(xb)
    a *= np.float32(1 / _SQRT_2)
    return np.minimum(a, 10.0, out=a)


def gelu_f32(x: np.ndarray) -> np.ndarray:
    """Exact GELU y = x Phi(x) in float32, block by block, written as  y = max(x, 0) - |x|/2 erfc(|x| / sqrt 2).

    This is x (1 + erf(u)) / 2 with erf(u) = sign(u) (1 - erfc(|u|)); it avoids the cancellation in 1 + erf(u)
    for negative x. Why: blocks stay in cache, and erfc comes from `erfc_factors` instead of scipy's scalar erf.
    Accuracy: |x|/2 times erfc's error (1.5e-7 absolute, plus float32 rounding), plus a few roundings of y.
    """
    y = np.empty(x.shape, x.dtype)

    def block(b):
        xb, yb = b
        a = _abs_u(xb)
        poly, e = erfc_factors(a, scale=-1 / _SQRT_2)
        e *= poly
        e *= a  # -|x|/2 erfc(|u|) = -|u| erfc(|u|) / sqrt 2
        np.maximum(xb, 0.0, out=yb)
        yb += e

    for_each(block, flat_blocks(x, y))
    return y


def gelu_grad_f32(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Exact GELU's dx = g * (Phi(x) + x phi(x)) in float32, block by block.

    Why: blocks stay in cache, and exp(-x^2 / 2) is computed once for both Phi (inside erfc) and phi.
    Accuracy: Phi carries half of erfc's error (below 0.75e-7 plus float32 rounding), x phi(x) a few roundings.
    """
    dx = np.empty(x.shape, x.dtype)

    def block(b):
        xb, gb, db = b
        poly, e = erfc_factors(_abs_u(xb))  # e = exp(-u^2) = exp(-x^2 / 2)
        poly *= e
        np.subtract(1.0, poly, out=poly)
        np.copysign(poly, xb, out=poly)  # erf(u)
        poly += 1.0
        poly *= 0.5  # Phi(x)
        e *= xb
        e *= np.float32(1 / _SQRT_2PI)  # x phi(x)
        e += poly
        np.multiply(gb, e, out=db)

    for_each(block, flat_blocks(x, g, dx))
    return dx


# ---- GELU, tanh form ----------------------------------------------------------------------------------------------
_C = float(np.sqrt(2.0 / np.pi))
_K = 0.044715


def gelu_tanh_f32(x: np.ndarray) -> np.ndarray:
    """y = x/2 (1 + t),  t = tanh(u),  u = c x (1 + k x^2),  c = sqrt(2/pi), k = 0.044715, in float32, by blocks.

    Why: the reference formula makes seven full-size temporaries (x**3 among them, a slow power); here a block
    goes through them in cache, written into y. Accuracy: u carries about four roundings, tanh two ulps; see
    tests/autograd/test_kernels.py for the bound.
    """
    y = np.empty(x.shape, x.dtype)

    def block(b):
        xb, yb = b
        np.multiply(xb, xb, out=yb)
        yb *= np.float32(_C * _K)
        yb += np.float32(_C)
        yb *= xb  # u
        np.tanh(yb, out=yb)
        yb += 1.0
        yb *= xb
        yb *= 0.5

    for_each(block, flat_blocks(x, y))
    return y


def gelu_tanh_grad_f32(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dx = g * ((1 + t)/2 + x/2 (1 - t^2) du),  du = c (1 + 3 k x^2), t as in `gelu_tanh_f32`, by blocks."""
    dx = np.empty(x.shape, x.dtype)

    def block(b):
        xb, gb, db = b
        x2 = xb * xb
        t = x2 * np.float32(_C * _K)
        t += np.float32(_C)
        t *= xb
        np.tanh(t, out=t)
        x2 *= np.float32(3 * _C * _K)
        x2 += np.float32(_C)  # du
        x2 *= xb
        x2 *= 0.5  # x/2 du
        np.multiply(t, t, out=db)
        np.subtract(1.0, db, out=db)  # 1 - t^2
        db *= x2
        t += 1.0
        t *= 0.5
        db += t
        db *= gb

    for_each(block, flat_blocks(x, g, dx))
    return dx


# ---- dropout ----------------------------------------------------------------------------------------------------
def masked_scale_f32(x: np.ndarray, keep: np.ndarray, scale: float) -> np.ndarray:
    """x * keep * scale in float32 (dropout's forward and backward), block by block.

    Why: written as one expression it makes a float32 temporary for the scaled x and a second pass to apply the
    boolean mask over the whole array; here both passes run on a cached block, straight into the output.
    Accuracy: the reference formula itself, in float32.
    """
    y = np.empty(x.shape, x.dtype)
    s = np.float32(scale)

    def block(b):
        xb, kb, yb = b
        np.multiply(xb, s, out=yb)
        yb *= kb

    for_each(block, flat_blocks(x, keep, y))
    return y


# ---- softmax with a fused additive mask -----------------------------------------------------------------------
def softmax_f32(x: np.ndarray, axis: int, mask: np.ndarray | None = None) -> np.ndarray:
    """y = exp(z - max z) / sum exp(z - max z) along `axis`, z = x + mask, in float32, by blocks of leading rows.

    Why: the attention scores (B, H, T, T) are the largest array of a BERT layer; each block of rows goes
    through add-mask, subtract-max, exp and normalise while in cache, all written into y, and the mask costs no
    pass and no temporary of its own. `mask` is None or broadcast to x's shape. Accuracy: the reference formula
    itself, in float32.
    """
    y = np.empty(x.shape, x.dtype)
    axis = axis % max(1, x.ndim)

    def block(rows):
        yb = y[rows]  # a view: every step below writes into y
        zb = x[rows] if mask is None else np.add(x[rows], mask[rows], out=yb)
        np.subtract(zb, zb.max(axis=axis, keepdims=True), out=yb)
        np.exp(yb, out=yb)
        yb /= yb.sum(axis=axis, keepdims=True)

    for_each(block, leading_blocks(x) if axis != 0 else [...])  # the whole array when reducing along axis 0
    return y


def softmax_grad_f32(y: np.ndarray, g: np.ndarray, axis: int) -> np.ndarray:
    """dx = y * (g - sum(g * y, axis)) in float32, by blocks of leading rows (why: as `softmax_f32`)."""
    dx = np.empty(y.shape, y.dtype)
    axis = axis % max(1, y.ndim)

    def block(rows):
        db, yb = dx[rows], y[rows]
        np.multiply(g[rows], yb, out=db)
        s = db.sum(axis=axis, keepdims=True)
        np.subtract(g[rows], s, out=db)
        db *= yb

    for_each(block, leading_blocks(y) if axis != 0 else [...])
    return dx


# ---- LayerNorm --------------------------------------------------------------------------------------------------
def layer_norm_f32(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float, keep: bool):
    """y = xhat * w + b, xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps) over the last axis, in float32,
    by blocks of rows. Returns (y, xhat, rstd), the last two None unless `keep`.

    Why: each block of rows is centred, scaled and shifted while in cache; xhat and rstd are only kept whole
    when a backward pass will need them (`keep`), so inference allocates nothing but y.
    Accuracy: the reference formula itself, in float32.
    """
    y = np.empty(x.shape, x.dtype)
    xhat = np.empty(x.shape, x.dtype) if keep else None
    rstd = np.empty(x.shape[:-1] + (1,), x.dtype) if keep else None

    def block(rows):
        xb = x[rows]
        xc = xb - xb.mean(axis=-1, keepdims=True)
        rb = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)
        xc *= rb  # xhat
        np.multiply(xc, weight, out=y[rows])
        y[rows] += bias
        if keep:
            xhat[rows], rstd[rows] = xc, rb

    for_each(block, leading_blocks(x) if x.ndim > 1 else [...])
    return y, xhat, rstd


def layer_norm_grad_f32(xhat: np.ndarray, rstd: np.ndarray, weight: np.ndarray, g: np.ndarray) -> np.ndarray:
    """LayerNorm's dx = rstd * (gx - mean(gx) - xhat * mean(gx * xhat)), gx = g * w, in float32, by blocks of
    rows (why: as `layer_norm_f32`)."""
    dx = np.empty(xhat.shape, xhat.dtype)

    def block(rows):
        gx, xb = g[rows] * weight, xhat[rows]
        dxb = gx - gx.mean(-1, keepdims=True)
        gx *= xb
        dxb -= xb * gx.mean(-1, keepdims=True)
        np.multiply(rstd[rows], dxb, out=dx[rows])

    for_each(block, leading_blocks(xhat) if xhat.ndim > 1 else [...])
    return dx
