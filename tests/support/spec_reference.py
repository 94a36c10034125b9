"""A literal, slow transcription of the miffi_v1 recipe (as docs/preprocessing.md states it).

Written line by line from the text, independently of ``miffi.preprocess.recipe``, so the
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


def reference_normalise(x: np.ndarray, keep_max_twin: bool = False, keep_min_twin: bool = False) -> np.ndarray:
    """Robust normalisation; ``keep_*_twin``: in the first iteration only one of the
    equal extreme values is left out (as when rounding has split a twin pair)."""
    lo, hi = x.min(), x.max()
    for iteration in range(3):
        inside = (x > lo) & (x < hi)
        if iteration == 0:
            for keep, extreme in ((keep_max_twin, hi), (keep_min_twin, lo)):
                where = np.flatnonzero(x == extreme)
                if keep and where.size > 1:
                    inside.flat[where[1:]] = True
        vals = x[inside]
        mean = vals.mean()
        std = vals.std(ddof=1)
        lo, hi = mean - 3 * std, mean + 3 * std
    return np.clip((x - mean) / std, -2.5, 2.5)


def resize(plane: np.ndarray) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(plane))[None, None]
    out = torch.nn.functional.interpolate(tensor, size=(384, 384), mode="bilinear", antialias=True, align_corners=False)
    return out[0, 0].numpy().astype(np.float64)


def reference_variants(image: np.ndarray, apix: float, power_spectrum: bool = True) -> np.ndarray:
    """``[squares, variants, channels, 384, 384]``: the recipe's result for every way of
    settling the power spectrum's twin extremes.

    The power-spectrum image P is point-symmetric, and so is the resize grid: in exact
    arithmetic every value has a twin, the extremes (DC, the minimum) included. Float32
    rounding in the resize may or may not split a twin pair, which decides whether the
    normalisation's "strictly inside (min, max)" leaves out one value or both. The
    result can differ by a few 1e-3 between the choices, and which one a float32
    implementation makes depends on its arithmetic. This reference computes the exact
    (symmetric) spectrum in float64 and all four choices (image channel: one, repeated).
    """
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
        image_channel = reference_normalise(resize(real))
        if not power_spectrum:
            out.append(image_channel[None, None])
            continue
        A = np.abs(Fc)
        P = np.zeros((D, D))
        P[D // 2 :, D // 2 :] = A[0 : D // 2, 0 : D // 2]
        P[0 : D // 2, D // 2 :] = A[D // 2 : D, 0 : D // 2]
        P[:, 0 : D // 2] = np.flip(P[:, D // 2 :], axis=(0, 1))
        R = resize(P)
        R = 0.5 * (R + R[::-1, ::-1])  # exact symmetry (float64 rounding removed)
        variants = [
            np.stack([image_channel, reference_normalise(R, keep_max, keep_min)])
            for keep_max in (False, True)
            for keep_min in (False, True)
        ]
        out.append(np.stack(variants))
    return np.stack(out).astype(np.float32)


def max_difference(ours: np.ndarray, variants: np.ndarray) -> float:
    """Largest difference of ``ours`` (``[squares, channels, ...]``) from the closest variant, per square."""
    return max(float(min(np.abs(ours[s] - v).max() for v in variants[s])) for s in range(len(ours)))
