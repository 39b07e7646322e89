"""Benchmark: each float32 kernel of autograd/kernels.py against its reference formula, on MiniLM-sized arrays.

    python bench/kernels.py [--batch 32] [--tokens 128] [--threads 2] [--repeats 5]

The reference is the formula a Function runs for other dtypes, evaluated here in float32 (scipy's erf for
exact GELU), so each row shows what the kernel saves. Shapes are those of one BERT layer of MiniLM
(D = 384, H = 12, F = 1536). Also prints exact GELU's forward for several block sizes.
Prints the best of `repeats` wall-clock times after one warm-up call.
"""

from __future__ import annotations

import argparse
import os
import sys

from _timing import best_of, pin_threads


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    return p.parse_args()



def main():
    args = parse()
    pin_threads(args.threads)  # before NumPy / torch load their BLAS
    import numpy as np
    from scipy.special import erf

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from autograd import kernels

    rng = np.random.default_rng(0)
    B, T, D, H, F = args.batch, args.tokens, 384, 12, 1536

    def f32(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    h, g_h = f32(B, T, F), f32(B, T, F)  # GELU input (B, T, F)
    s, g_s = f32(B, H, T, T), f32(B, H, T, T)  # attention scores (B, H, T, T)
    mask = np.zeros((B, 1, 1, T), np.float32)
    mask[:, ..., T - T // 4:] = np.finfo(np.float32).min  # a quarter of the keys padded
    mask_full = np.broadcast_to(mask, s.shape)
    x, g_x, w, b = f32(B, T, D), f32(B, T, D), f32(D), f32(D)  # LayerNorm input (B, T, D)
    keep = rng.random(h.shape, dtype=np.float32) >= 0.1  # a dropout mask on (B, T, F)
    sqrt2, sqrt2pi = float(np.sqrt(2.0)), float(np.sqrt(2.0 * np.pi))

    def gelu_ref():
        return 0.5 * h * (1.0 + erf(h / sqrt2))

    def gelu_grad_ref():
        cdf = 0.5 * (1.0 + erf(h / sqrt2))
        return g_h * (cdf + h * np.exp(-0.5 * h * h) / sqrt2pi)

    c = float(np.sqrt(2.0 / np.pi))

    def gelu_tanh_ref():
        return 0.5 * h * (1.0 + np.tanh(c * (h + 0.044715 * h**3)))

    def softmax_ref():
        z = s + mask_full
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    y_s = softmax_ref()

    def softmax_grad_ref():
        return y_s * (g_s - (g_s * y_s).sum(axis=-1, keepdims=True))

    def layer_norm_ref():
        xc = x - x.mean(axis=-1, keepdims=True)
        rstd = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + 1e-12)
        return xc * rstd * w + b, xc * rstd, rstd

    _, xhat, rstd = layer_norm_ref()

    def layer_norm_grad_ref():
        gx = g_x * w
        return rstd * (gx - gx.mean(axis=-1, keepdims=True) - xhat * (gx * xhat).mean(axis=-1, keepdims=True))

    rows = [
        ("erf (B, T, F)", lambda: erf(h), lambda: kernels.erfc_factors(np.abs(h))),
        ("gelu (B, T, F)", gelu_ref, lambda: kernels.gelu_f32(h)),
        ("gelu backward", gelu_grad_ref, lambda: kernels.gelu_grad_f32(h, g_h)),
        ("gelu tanh form (B, T, F)", gelu_tanh_ref, lambda: kernels.gelu_tanh_f32(h)),
        ("dropout mask x scale (B, T, F)", lambda: h * np.float32(1 / 0.9) * keep,
         lambda: kernels.masked_scale_f32(h, keep, 1 / 0.9)),
        ("softmax + mask (B, H, T, T)", softmax_ref, lambda: kernels.softmax_f32(s, -1, mask_full)),
        ("softmax backward", softmax_grad_ref, lambda: kernels.softmax_grad_f32(y_s, g_s, -1)),
        ("layer_norm (B, T, D)", layer_norm_ref, lambda: kernels.layer_norm_f32(x, w, b, 1e-12, keep=True)),
        ("layer_norm backward", layer_norm_grad_ref, lambda: kernels.layer_norm_grad_f32(xhat, rstd, w, g_x)),
    ]
    print(f"float32 kernels, B={B} T={T} (MiniLM layer sizes), {args.threads} threads, best of {args.repeats}")
    print(f"  {'':<28} {'reference':>10} {'kernel':>10} {'ratio':>7}")
    for name, ref, kernel in rows:
        t_ref, t_kernel = best_of(ref, args.repeats), best_of(kernel, args.repeats)
        print(f"  {name:<28} {t_ref * 1e3:8.2f} ms {t_kernel * 1e3:7.2f} ms {t_ref / t_kernel:6.2f}x")
    print("  (erf's kernel row is erfc_factors)")

    print("exact GELU forward by block size (kernels.BLOCK, elements)")
    default = kernels.BLOCK
    for log2 in range(14, 21):
        kernels.BLOCK = 1 << log2
        mark = "  (default)" if kernels.BLOCK == default else ""
        print(f"  2^{log2:<3} {best_of(lambda: kernels.gelu_f32(h), args.repeats) * 1e3:7.2f} ms{mark}")
    kernels.BLOCK = default


if __name__ == "__main__":
    main()
