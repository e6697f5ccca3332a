#!/usr/bin/env python3
"""Fits the coefficients of `2^f` on `0 <= f < 1` that crates/codegen/src/kernels/vmath.rs
holds as EXP2_COEFFICIENTS: a polynomial of the given degree (default 6) with its constant
held at 1, fitted to the relative error (a Lawson iteration of weighted least squares), then
rounded to f32. Prints its error in exact arithmetic and evaluated in f32 with FMAs (Horner's
scheme, each step rounded once), and the coefficients as f32 literals.

    target/bench-venv/bin/python scripts/fit_exp2.py [DEGREE]
"""
import sys

import numpy as np


def main() -> None:
    degree = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    f = np.linspace(0.0, 1.0, 20001)
    y = 2.0**f
    # p(f) = 1 + sum c_i f^i; the relative error (p - y) / y is linear in the c_i.
    a = np.stack([f**i for i in range(1, degree + 1)], axis=1) / y[:, None]
    b = (y - 1.0) / y
    w = np.full_like(f, 1.0 / len(f))
    for _ in range(400):
        sw = np.sqrt(w)
        c, *_ = np.linalg.lstsq(a * sw[:, None], b * sw, rcond=None)
        w = w * np.abs(a @ c - b)
        w /= w.sum()
    coefficients = np.concatenate([[1.0], c])
    exact = np.max(np.abs(np.polyval(coefficients[::-1], f) - y) / y)
    c32 = coefficients.astype(np.float32)
    x = np.random.default_rng(0).random(2_000_000).astype(np.float32)
    acc = np.full_like(x, c32[-1])
    for ci in c32[-2::-1]:
        acc = (acc.astype(np.float64) * x + np.float64(ci)).astype(np.float32)
    rel = np.abs(acc.astype(np.float64) - 2.0 ** x.astype(np.float64)) / 2.0 ** x.astype(np.float64)
    print(f"degree {degree}: exact arithmetic {exact:.2e}, f32 with FMAs {rel.max():.2e}"
          f" ({rel.max() / 2.0**-24:.2f} * 2^-24)")
    print("[" + ", ".join(str(v) for v in c32) + "]")


if __name__ == "__main__":
    main()
