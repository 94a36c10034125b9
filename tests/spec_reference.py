"""A literal, slow transcription of the miffi_v1 recipe (shared MIFFI-COMPAT.md).

Written line by line from the text, independently of ``miffi.preprocess``, so the
tests can check the fast implementation against it. It computes in float64 after
reading the float32 input (the FFTs, the normalisation), so it is close to the exact
result, except for the power spectrum's resize, done as the recipe does it (float32 torch).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def reference_squares(image: np.ndarray, apix: float) -> tuple[list[tuple[int, int]], int, bool]:
    ds = 1.5
    if apix > ds:
        ds = apix
    transposed = image.shape[0] > image.shape[1]
    if transposed:
        image = image.T
    n, L = image.shape
    D = round(n * apix / ds) // 2 * 2
    k = math.ceil(L / n)
    cols = []
    for i in range(k):
        if i == math.ceil(L / n) - 1:
            cols.append((L - n, L))
        else:
            cols.append((i * n, (i + 1) * n))
    return cols, D, transposed


def reference_normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(), x.max()
    for _ in range(3):
        vals = x[(x > lo) & (x < hi)]
        mean = vals.mean()
        std = vals.std(ddof=1)
        lo, hi = mean - 3 * std, mean + 3 * std
    return np.clip((x - mean) / std, -2.5, 2.5)


def resize(plane: np.ndarray) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(plane))[None, None]
    out = torch.nn.functional.interpolate(tensor, size=(384, 384), mode="bilinear", antialias=True,
                                          align_corners=False)
    return out[0, 0].numpy().astype(np.float64)


def reference_tensor(image: np.ndarray, apix: float, power_spectrum: bool = True) -> np.ndarray:
    cols, D, transposed = reference_squares(image, apix)
    if transposed:
        image = image.T
    n = image.shape[0]
    out = []
    for a, b in cols:
        square = image[:, a:b].astype(np.float64)
        F = np.fft.rfft2(square)
        Fc = np.concatenate([F[0 : D // 2], F[n - D // 2 : n]], axis=0)[:, : D // 2 + 1]
        real = np.fft.irfft2(Fc)
        A = np.abs(Fc)
        P = np.zeros((D, D))
        P[D // 2 :, D // 2 :] = A[0 : D // 2, 0 : D // 2]
        P[0 : D // 2, D // 2 :] = A[D // 2 : D, 0 : D // 2]
        P[:, 0 : D // 2] = np.flip(P[:, D // 2 :], axis=(0, 1))
        # The power spectrum is resized as the recipe does it, torch in float32: P is
        # point-symmetric, and float32 rounding here decides which DC twin the
        # normalisation keeps. The image is resized in float64.
        planes = [resize(real)] + ([resize(P.astype(np.float32))] if power_spectrum else [])
        out.append(np.stack([reference_normalise(c) for c in planes]))
    return np.stack(out).astype(np.float32)
