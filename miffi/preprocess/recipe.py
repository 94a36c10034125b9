"""Micrograph → network input tensor, the ``miffi_v1`` recipe.

Per square: ``rfft2`` → Fourier crop to ``D`` → real-space image (``irfft2`` of the
cropped transform) and power-spectrum image (amplitudes of the *same* cropped
transform, no second FFT) → bilinear antialiased resize → robust normalisation.
The exact order and conventions are those of the published models (see
docs/preprocessing.md); tests compare against a literal transcription of that recipe.

On the CPU the FFTs run in scipy with one worker per available core; on a GPU they run
in torch. Only the forward crop and the inverse transform differ between the two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F

from miffi.device import available_cores
from miffi.errors import MicrographError
from miffi.mrc import MrcHeader, open_micrograph
from miffi.preprocess.config import PreprocessConfig
from miffi.preprocess.metric_names import micrograph_metrics
from miffi.preprocess.metrics import (
    SpectralSums,
    block_means,
    coarse_grid,
    coarse_metrics,
    spectral_metrics_from,
    spectral_sums,
)
from miffi.preprocess.squares import SquareLayout, layout_for


@dataclass(frozen=True)
class LoadedMicrograph:
    """Squares of one micrograph read from disk, ready for the transform."""

    path: str
    squares: np.ndarray  # [k, n, n] float32, with ``offset`` subtracted
    offset: float
    layout: SquareLayout
    header: MrcHeader


def estimate_offset(data: np.ndarray) -> float:
    """A value near the micrograph's mean, from a sparse sample (cheap on a memory map)."""
    step = max(1, min(data.shape) // 64)
    with np.errstate(invalid="ignore", over="ignore"):
        offset = float(np.mean(data[::step, ::step], dtype=np.float64))
    return offset if np.isfinite(offset) else 0.0  # NaN/Inf data is reported later


def extract_squares(data: np.ndarray, layout: SquareLayout, offset: float = 0.0) -> np.ndarray:
    """Copy the squares of a 2D micrograph, minus ``offset``, into one ``[k, n, n]`` float32 array.

    Subtracting a constant near the mean keeps float32 FFTs accurate on micrographs
    with a large mean (detector counts of thousands): see :func:`cropped_transform`.
    """
    source = data.T if layout.transposed else data
    out = np.empty((layout.count, layout.side, layout.side), dtype=np.float32)
    for i, (start, stop) in enumerate(layout.columns):
        np.subtract(source[:, start:stop], offset, out=out[i], casting="unsafe")
    return out


def load_squares(path: str | Path, pixel_size: float | None, config: PreprocessConfig) -> LoadedMicrograph:
    """Read a micrograph and cut it into squares.

    ``pixel_size`` (from metadata or the user) wins over the header's value.
    """
    with open_micrograph(path) as (data, header):
        apix = pixel_size if pixel_size is not None else header.pixel_size
        if apix is None:
            raise MicrographError(path, "no pixel size in the header or the metadata; give --pixel-size")
        try:
            layout = layout_for(data.shape, apix, config.target_pixel_size, config.max_squares)
        except ValueError as exc:
            raise MicrographError(path, str(exc)) from None
        offset = estimate_offset(data)
        squares = extract_squares(data, layout, offset)
    return LoadedMicrograph(str(path), squares, offset, layout, header)


#: Rows per call of the row transforms (of all squares at once): only their kept columns
#: are stored, so the full half-spectrum (as large as the squares) is never held.
ROW_BLOCK = 512


def _cropped_rfft2_cpu(squares: np.ndarray, crop: int) -> np.ndarray:
    # Row transforms first, then only the D/2+1 kept columns go through the column FFT
    # (in place). Each row's transform is computed on its own, so blocks of rows give the
    # same values as one call.
    half = crop // 2
    side = squares.shape[-1]
    workers = available_cores()
    spectrum = np.empty((*squares.shape[:-1], half + 1), dtype=np.result_type(squares.dtype, np.complex64))
    for start in range(0, squares.shape[-2], ROW_BLOCK):
        rows = slice(start, start + ROW_BLOCK)
        spectrum[..., rows, :] = scipy.fft.rfft(squares[..., rows, :], axis=-1, workers=workers)[..., : half + 1]
    spectrum = scipy.fft.fft(spectrum, axis=-2, workers=workers, overwrite_x=True)
    return np.concatenate([spectrum[..., :half, :], spectrum[..., side - half :, :]], axis=-2)


def _cropped_rfft2_torch(squares: torch.Tensor, crop: int) -> torch.Tensor:
    half = crop // 2
    side = squares.shape[-1]
    spectrum = torch.fft.fft(torch.fft.rfft(squares, dim=-1)[..., : half + 1], dim=-2)
    return torch.cat([spectrum[..., :half, :], spectrum[..., side - half :, :]], dim=-2)


def cropped_transform(
    squares: np.ndarray | torch.Tensor, crop: int, device: torch.device, offset: float | np.ndarray = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fourier-crop ``[k, n, n]`` squares (that had ``offset`` subtracted) to ``D = crop``.

    ``offset``: one value, or one per square (squares of several micrographs at once).

    Returns the real-space image ``irfft2(Fc)`` (``[k, D, D]``) and the amplitude
    ``|Fc|`` of the cropped half-spectrum (``[k, D, D/2+1]``), both on ``device``.

    The offset only changes the DC term, so it is added back there (in float64) for
    the amplitudes. The image is left without it: a constant shift does not change
    the image channel after the (shift-invariant) resize and robust normalisation.
    """
    side = squares.shape[-1]
    if device.type == "cpu":
        host = squares.numpy() if isinstance(squares, torch.Tensor) else squares
        host_fc = _cropped_rfft2_cpu(host, crop)
        image = torch.from_numpy(scipy.fft.irfft2(host_fc, s=(crop, crop), workers=available_cores()))
        amplitude = torch.from_numpy(np.abs(host_fc))  # numpy's complex abs is ~10x torch's on the CPU
        dc = torch.from_numpy(host_fc[..., 0, 0])
    else:
        fc = _cropped_rfft2_torch(torch.as_tensor(squares).to(device, non_blocking=True), crop)
        image = torch.fft.irfft2(fc, s=(crop, crop))
        amplitude = fc.abs()
        dc = fc[..., 0, 0]
    shift = torch.as_tensor(offset, dtype=torch.float64, device=dc.device) * (side * side)
    amplitude[..., 0, 0] = (dc.to(torch.complex128) + shift).abs().to(amplitude.dtype)
    return image, amplitude


def power_spectrum_image(amplitude: torch.Tensor) -> torch.Tensor:
    """The ``D × D`` power-spectrum image of the ``miffi_v1`` recipe, DC at ``(D/2, D/2)``.

    ``amplitude`` is ``|Fc|`` (``[..., D, D/2+1]``). The right half holds it (Nyquist
    column dropped) with its rows shifted by ``D/2``; the left half is the right half
    flipped along both axes.
    """
    half = amplitude.shape[-2] // 2
    out = amplitude.new_empty((*amplitude.shape[:-1], 2 * half))
    right = out[..., half:]
    right[..., half:, :] = amplitude[..., :half, :half]
    right[..., :half, :] = amplitude[..., half:, :half]
    out[..., :half] = right.flip(-1, -2)
    return out


def robust_normalise(
    x: torch.Tensor,
    iterations: int = PreprocessConfig.norm_iterations,
    nsigma: float = PreprocessConfig.norm_nsigma,
    clip: float = PreprocessConfig.clip,
) -> torch.Tensor:
    """Normalise every ``[H, W]`` plane of ``x`` by a robust mean and std, then clip.

    Bounds start at the plane's (min, max); each iteration takes the values strictly
    inside the bounds, their mean and unbiased std, and moves the bounds to
    mean ± nsigma·std. A constant plane gives NaN (std 0), which callers report.
    """
    flat = x.reshape(-1, x.shape[-2] * x.shape[-1])
    mean = flat.mean(dim=1, keepdim=True)
    std = flat.std(dim=1, keepdim=True)
    low = flat.amin(dim=1, keepdim=True)
    high = flat.amax(dim=1, keepdim=True)
    for _ in range(iterations):
        inside = (flat > low) & (flat < high)
        count = inside.sum(dim=1, keepdim=True)
        mean = torch.where(inside, flat, 0.0).sum(dim=1, keepdim=True) / count
        deviation = torch.where(inside, flat - mean, 0.0)
        std = (deviation.square().sum(dim=1, keepdim=True) / (count - 1)).sqrt()
        low, high = mean - nsigma * std, mean + nsigma * std
    return ((flat - mean) / std).clamp(-clip, clip).reshape(x.shape)


def _resize(planes: torch.Tensor, size: int) -> torch.Tensor:
    """``[k, D, D]`` → ``[k, 1, size, size]``, torchvision ``Resize(antialias=True)`` semantics."""
    return F.interpolate(planes[:, None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def planes_to_tensor(image: torch.Tensor, amplitude: torch.Tensor, config: PreprocessConfig) -> torch.Tensor:
    """Cropped image and amplitudes → ``[k, channels, size, size]`` normalised float32."""
    # Resize each plane on its own: stacking the full-size planes first costs a copy.
    planes = [_resize(image.to(torch.float32), config.size)]
    if config.power_spectrum:
        # Resized in float32 with torch, exactly as Miffi does: the spectrum image is
        # point-symmetric, so every value, its maximum (DC) included, has a twin, and
        # whether float32 rounding splits a twin pair decides whether the normalisation
        # (values strictly inside (min, max)) keeps the DC twin. Doing this step as Miffi
        # does reproduces its choice; see tests/reference/test_miffi_reference.py.
        planes.append(_resize(power_spectrum_image(amplitude).to(torch.float32), config.size))
    resized = torch.cat(planes, dim=1)
    return robust_normalise(resized, config.norm_iterations, config.norm_nsigma, config.clip)


def squares_to_tensor(
    squares: np.ndarray | torch.Tensor,
    crop: int,
    config: PreprocessConfig,
    device: torch.device,
    offset: float = 0.0,
) -> torch.Tensor:
    """``[k, n, n]`` squares (minus ``offset``) → ``[k, channels, size, size]`` float32 on ``device``."""
    return planes_to_tensor(*cropped_transform(squares, crop, device, offset), config)


@dataclass(frozen=True)
class Preprocessed:
    """The cached array of one micrograph and the metrics of each of its squares."""

    tensor: np.ndarray  # [squares, channels, size, size] float32
    square_metrics: list[dict[str, float]]

    @property
    def metrics(self) -> dict[str, float]:
        return micrograph_metrics(self.square_metrics)


@dataclass(frozen=True)
class SquareSums:
    """What the metrics need of one square's cropped planes (:mod:`miffi.preprocess.metrics`)."""

    spectral: SpectralSums
    coarse: np.ndarray  # the real-space image in blocks of about 12 Å, offset-free


def square_sums(image: torch.Tensor, amplitude: torch.Tensor, layout: SquareLayout) -> list[SquareSums]:
    """The :class:`SquareSums` of ``[k, D, D]`` images and ``[k, D, D/2+1]`` amplitudes,
    reduced on their device (two copies back per micrograph)."""
    step, _ = coarse_grid(layout.output_pixel_size, tuple(image.shape[-2:]))
    coarse = block_means(image.to(torch.float32), step).cpu().numpy()
    rows = spectral_sums(amplitude, layout.output_pixel_size).cpu().numpy()
    spectral = SpectralSums.split(rows, (amplitude.shape[1], amplitude.shape[2]), layout.output_pixel_size)
    return [SquareSums(s, c) for s, c in zip(spectral, coarse)]


@dataclass(frozen=True)
class Transformed:
    """One micrograph after the transforms, before its metrics: the cached array, and the
    reductions of its cropped planes that the metrics need.

    ``sums`` gives those reductions. On a GPU they were made there and only they came
    back; on the CPU they are made when called, from the planes (in host memory of their
    own: many of these wait for the metrics), in :meth:`finish`, which a pipeline runs
    beside the transforms of the next micrographs.
    """

    layout: SquareLayout
    offset: float
    tensor: np.ndarray  # [squares, channels, size, size] float32
    sums: Callable[[], list[SquareSums]]

    def finish(self) -> Preprocessed:
        """The metrics of each square (CPU work: on the CPU the reductions too)."""
        layout = self.layout
        scale = (layout.crop / layout.side) ** 2  # back to input intensity units per pixel
        _, coarse_apix = coarse_grid(layout.output_pixel_size, (layout.crop, layout.crop))
        shape = (layout.crop, layout.crop // 2 + 1)
        metrics = [
            {
                **spectral_metrics_from(sums.spectral, shape, layout.output_pixel_size),
                **coarse_metrics(sums.coarse * scale + self.offset, coarse_apix),
            }
            for sums in self.sums()
        ]
        return Preprocessed(self.tensor, metrics)


def batch_key(loaded: LoadedMicrograph) -> tuple[int, int]:
    """Micrographs with equal keys (square side, crop) can be transformed as one batch."""
    return loaded.layout.side, loaded.layout.crop


def _stacked(batch: Sequence[LoadedMicrograph], device: torch.device) -> np.ndarray | torch.Tensor:
    """The squares of ``batch`` in one array; for a GPU in pinned memory, so that the copy
    to the device is one fast transfer."""
    if len(batch) == 1 and device.type == "cpu":
        return batch[0].squares
    shape = (sum(m.layout.count for m in batch), *batch[0].squares.shape[1:])
    out = torch.empty(shape, dtype=torch.float32, pin_memory=device.type == "cuda")
    np.concatenate([m.squares for m in batch], out=out.numpy())
    return out


def _sums(
    image: torch.Tensor, amplitude: torch.Tensor, layout: SquareLayout, shared: bool
) -> Callable[[], list[SquareSums]]:
    """:attr:`Transformed.sums` of one micrograph's planes: reduced now on a GPU, later on
    the CPU (from copies of its own where the planes are ``shared`` with a batch's)."""
    if image.device.type != "cpu":
        made = square_sums(image, amplitude, layout)
        return lambda: made
    if shared:  # (so that the batch's arrays can go)
        image, amplitude = image.clone(), amplitude.clone()
    return lambda: square_sums(image, amplitude, layout)


def transform_batch(
    batch: Sequence[LoadedMicrograph], config: PreprocessConfig, device: torch.device
) -> list[Transformed | MicrographError]:
    """The transforms of micrographs sharing one :func:`batch_key`, as one pass over their
    stacked squares (on a GPU: one set of kernels for them all). Each micrograph gets its
    own result, or the :class:`MicrographError` that says why it has none (NaN/Inf in the
    file, or a square without contrast); the tensors are those of one-by-one transforms.
    """
    if len({batch_key(m) for m in batch}) != 1:
        raise ValueError("transform_batch: the micrographs of a batch must share square side and crop")
    counts = [m.layout.count for m in batch]
    offsets = np.repeat(np.array([m.offset for m in batch], dtype=np.float64), counts)
    image, amplitude = cropped_transform(_stacked(batch, device), batch[0].layout.crop, device, offsets)
    tensor = planes_to_tensor(image, amplitude, config)
    finite = torch.isfinite(tensor).flatten(1).all(dim=1).cpu().numpy()
    tensors = tensor.cpu().numpy()
    own = np.array if len(batch) > 1 else np.asarray  # (a copy, so the batch's arrays can go)
    results: list[Transformed | MicrographError] = []
    start = 0
    for loaded, count in zip(batch, counts):
        part = slice(start, start + count)
        start += count
        if finite[part].all():
            results.append(
                Transformed(
                    loaded.layout,
                    loaded.offset,
                    own(tensors[part]),
                    _sums(image[part], amplitude[part], loaded.layout, len(batch) > 1),
                )
            )
        elif not np.isfinite(loaded.squares).all():
            results.append(MicrographError(loaded.path, "contains NaN or Inf values"))
        else:
            bad = int(np.flatnonzero(~finite[part])[0])
            results.append(MicrographError(loaded.path, f"square {bad} has constant values (no contrast)"))
    return results


def preprocess_loaded(loaded: LoadedMicrograph, config: PreprocessConfig, device: torch.device) -> Preprocessed:
    """The cached array ``[squares, channels, size, size]`` (float32) and metrics of one micrograph.

    Raises
    ------
    MicrographError
        When the result is not finite: NaN/Inf in the file, or a square without contrast.
    """
    (result,) = transform_batch([loaded], config, device)
    if isinstance(result, MicrographError):
        raise result
    return result.finish()
