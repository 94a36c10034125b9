"""Micrograph → network input tensor, the ``miffi_v1`` recipe.

Per square: ``rfft2`` → Fourier crop to ``D`` → real-space image (``irfft2`` of the
cropped transform) and power-spectrum image (amplitudes of the *same* cropped
transform, no second FFT) → bilinear antialiased resize → robust normalisation.
The exact order and conventions are those of the published models (see
docs/preprocessing.md); tests compare against a literal transcription of that recipe.

On the CPU the forward transform and the columns' inverse run in scipy, by default with
one worker per available core (preprocessing runs several micrographs at once instead,
each with its share of the cores), and the image rows' inverse in torch; on a GPU all
run in torch. Only the forward crop and the columns' inverse differ between the two.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F

from miffi.device import available_cores
from miffi.errors import MicrographError
from miffi.mrc import MrcHeader, map_micrograph
from miffi.preprocess.config import PreprocessConfig
from miffi.preprocess.metric_names import micrograph_metrics
from miffi.preprocess.metrics import (
    SpectralSums,
    block_means_along,
    coarse_grid,
    coarse_metrics,
    spectral_metrics_from,
    spectral_sums,
)
from miffi.preprocess.squares import SquareLayout, layout_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedMicrograph:
    """A micrograph opened for the transforms.

    Its data stay in the file (memory-mapped) until the transforms read them, square
    rows at a time on the CPU: a copy of the squares is as large as the file and, made
    afresh for each micrograph, costs the kernel's zeroing of every page. For a GPU the
    reader extracts them at once into ``pinned`` (page-locked) memory.
    """

    path: str
    data: np.ndarray  # the 2D image as stored, read-only (a memory map)
    offset: float  # subtracted from every value taken from ``data``
    layout: SquareLayout
    header: MrcHeader
    pinned: torch.Tensor | None = None  # [k, n, n] float32, the squares minus ``offset``

    @property
    def _source(self) -> np.ndarray:
        """The data with the squares' side along the rows (transposed where tall)."""
        return self.data.T if self.layout.transposed else self.data

    def square_rows(self, rows: slice, out: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (a slice of step 1) of every square, minus the offset, written into
        ``out`` ([k, rows, n])."""
        first, last, _ = rows.indices(self.layout.side)
        for i, (start, stop) in enumerate(self.layout.columns):
            # (in float32 whatever the file's type: float16 would round the offset away)
            if self.layout.transposed:
                # Strips of the file's rows, each transposed once it is in the cache: taken
                # along the transposed array's rows, the file is read one value per row
                # (a K3 square's forward transform: 181 → 111 ms on one core).
                for at in range(first, last, ROW_BLOCK):
                    part = slice(at, min(at + ROW_BLOCK, last))
                    strip = np.subtract(self.data[start:stop, part], self.offset, dtype=np.float32, casting="unsafe")
                    out[i, at - first : part.stop - first] = strip.T
            else:
                np.subtract(self.data[rows, start:stop], self.offset, out=out[i], dtype=np.float32, casting="unsafe")
        return out

    def each_square(self) -> list[LoadedMicrograph]:
        """This micrograph as one micrograph per square (the same map, one square each)."""
        return [
            dataclasses.replace(
                self,
                layout=dataclasses.replace(self.layout, columns=(columns,)),
                pinned=None if self.pinned is None else self.pinned[i : i + 1],
            )
            for i, columns in enumerate(self.layout.columns)
        ]

    def squares(self) -> np.ndarray:
        """All squares, minus the offset: ``[k, n, n]`` float32 (a copy)."""
        layout = self.layout
        out = np.empty((layout.count, layout.side, layout.side), dtype=np.float32)
        return self.square_rows(slice(None), out)

    def finite(self) -> bool:
        """Whether the squares hold only finite values."""
        return all(bool(np.isfinite(self._source[:, start:stop]).all()) for start, stop in self.layout.columns)


def estimate_offset(data: np.ndarray) -> float:
    """A value near the micrograph's mean, from a sparse sample (cheap on a memory map)."""
    step = max(1, min(data.shape) // 64)
    with np.errstate(invalid="ignore", over="ignore"):
        offset = float(np.mean(data[::step, ::step], dtype=np.float64))
    return offset if np.isfinite(offset) else 0.0  # NaN/Inf data is reported later


def load_squares(
    path: str | Path, pixel_size: float | None, config: PreprocessConfig, pin: bool = False
) -> LoadedMicrograph:
    """Open a micrograph and lay out its squares; with ``pin`` (for a GPU), extract them
    into page-locked memory now.

    ``pixel_size`` (from metadata or the user) wins over the header's value. Subtracting
    a constant near the mean (the offset) keeps float32 FFTs accurate on micrographs with
    a large mean (detector counts of thousands): see :func:`cropped_transform`.
    """
    data, header = map_micrograph(path)
    apix = pixel_size if pixel_size is not None else header.pixel_size
    if apix is None:
        raise MicrographError(path, "no pixel size in the header or the metadata; give --pixel-size")
    try:
        layout = layout_for(data.shape, apix, config.target_pixel_size, config.max_squares)
    except ValueError as exc:
        raise MicrographError(path, str(exc)) from None
    loaded = LoadedMicrograph(str(path), data, estimate_offset(data), layout, header)
    if not pin:
        return loaded
    try:
        pinned = torch.empty((layout.count, layout.side, layout.side), dtype=torch.float32, pin_memory=True)
    except RuntimeError as exc:  # (a locked-memory limit, say): the copy to the device waits instead
        log.warning("cannot pin host memory for %s (%s): copying it to the device from pageable memory", path, exc)
        return loaded
    loaded.square_rows(slice(None), pinned.numpy())
    return dataclasses.replace(loaded, pinned=pinned)


#: Rows per FFT worker in each call of the row transforms (of the squares given at once;
#: in the CPU's preprocessing, one). Only the kept columns of their transforms are
#: stored, so the full half-spectrum is never held. A worker's share this small (1 MB of
#: a K3 square) stays in its core's cache from its reading to its transform: one K3
#: square's forward transform took 99 ms in calls of 512 rows, 90 ms in calls of 64
#: (2-core Xeon, one worker); a K3 micrograph's two squares 139-151 ms in calls of 512
#: rows, 122-125 ms in calls of 128 (two workers).
ROW_BLOCK = 64

#: Rows ``rows`` of every square, ``[k, rows, n]`` (a view, or a block reused for each call).
SquareRows = Callable[[slice], np.ndarray]


def _cropped_rfft2_cpu(
    rows_of: SquareRows, count: int, side: int, crop: int, dtype: np.dtype, workers: int
) -> np.ndarray:
    # Row transforms first, a block of rows at a time, keeping the D/2+1 kept columns;
    # then the column FFT (in place) and the kept rows, moved up in place. Each row's
    # transform is computed on its own, so blocks of rows give the same values as one call.
    half = crop // 2
    spectrum = np.empty((count, side, half + 1), dtype=np.result_type(dtype, np.complex64))
    for start in range(0, side, ROW_BLOCK * workers):
        rows = slice(start, min(start + ROW_BLOCK * workers, side))
        spectrum[:, rows] = scipy.fft.rfft(rows_of(rows), axis=-1, workers=workers)[..., : half + 1]
    transformed: np.ndarray = scipy.fft.fft(spectrum, axis=-2, workers=workers, overwrite_x=True)
    if side > crop:  # (numpy copies through a buffer where the ranges overlap)
        transformed[:, half:crop] = transformed[:, side - half :]
    return transformed[:, :crop]


def _cropped_rfft2_torch(squares: torch.Tensor, crop: int) -> torch.Tensor:
    half = crop // 2
    side = squares.shape[-1]
    spectrum = torch.fft.fft(torch.fft.rfft(squares, dim=-1)[..., : half + 1], dim=-2)
    return torch.cat([spectrum[..., :half, :], spectrum[..., side - half :, :]], dim=-2)


Squares = np.ndarray | torch.Tensor | Sequence[LoadedMicrograph]


def cropped_spectrum(squares: Squares, crop: int, device: torch.device, workers: int | None = None) -> torch.Tensor:
    """``Fc``: the ``rfft2`` of each ``[n, n]`` square, Fourier-cropped to ``D = crop``
    (``[k, D, D/2+1]`` complex, on ``device``).

    ``squares``: an array ``[k, n, n]``, or micrographs whose squares are taken in turn.
    ``workers``: threads of the CPU's FFTs (default: every available core).
    """
    workers = workers or available_cores()
    if isinstance(squares, (np.ndarray, torch.Tensor)):
        if device.type == "cpu":
            host = squares.numpy() if isinstance(squares, torch.Tensor) else squares
            count, side = host.shape[0], host.shape[-1]
            spectrum = _cropped_rfft2_cpu(lambda rows: host[:, rows], count, side, crop, host.dtype, workers)
            return torch.from_numpy(spectrum)
        return _cropped_rfft2_torch(torch.as_tensor(squares).to(device, non_blocking=True), crop)
    counts = np.cumsum([0, *(m.layout.count for m in squares)])
    side = squares[0].layout.side
    if device.type == "cpu":
        block = np.empty((int(counts[-1]), min(ROW_BLOCK * workers, side), side), dtype=np.float32)

        def rows_of(rows: slice) -> np.ndarray:
            out = block[:, : len(range(side)[rows])]
            for loaded, start, stop in zip(squares, counts[:-1], counts[1:]):
                loaded.square_rows(rows, out[start:stop])
            return out

        return torch.from_numpy(_cropped_rfft2_cpu(rows_of, int(counts[-1]), side, crop, np.dtype(np.float32), workers))
    stacked = torch.empty((int(counts[-1]), side, side), dtype=torch.float32, device=device)
    for loaded, start, stop in zip(squares, counts[:-1], counts[1:]):
        source = loaded.pinned if loaded.pinned is not None else torch.from_numpy(loaded.squares())
        stacked[start:stop].copy_(source, non_blocking=True)
    return _cropped_rfft2_torch(stacked, crop)


@dataclass(frozen=True)
class Planes:
    """What the transforms give of each square: the real-space image at the network's
    size, its 12 Å block means (for the metrics), and the amplitudes ``|Fc|``."""

    image: torch.Tensor  # [k, size, size] float32
    coarse: torch.Tensor | None  # [k, D // step, D // step] float32, where asked for
    amplitude: torch.Tensor  # [k, D, D/2+1]

    def __getitem__(self, part: slice) -> Planes:
        coarse = None if self.coarse is None else self.coarse[part]
        return Planes(self.image[part], coarse, self.amplitude[part])


def amplitudes(fc: torch.Tensor, offset: float | np.ndarray, side: int) -> torch.Tensor:
    """``|Fc|`` of squares that had ``offset`` (one value, or one per square) subtracted:
    the offset only changes the DC term, so it is added back there (in float64)."""
    # numpy's complex abs is ~10x torch's on the CPU
    amplitude = torch.from_numpy(np.abs(fc.numpy())) if fc.device.type == "cpu" else fc.abs()
    shift = torch.as_tensor(offset, dtype=torch.float64, device=fc.device) * (side * side)
    amplitude[..., 0, 0] = (fc[..., 0, 0].to(torch.complex128) + shift).abs().to(amplitude.dtype)
    return amplitude


def _resize_rows(planes: torch.Tensor, size: int) -> torch.Tensor:
    """``[k, H, W]`` → ``[k, size, W]`` along the rows only, with the weights of
    :func:`_resize` (its column pass is then the identity, exactly)."""
    resized = F.interpolate(
        planes[:, None], size=(size, planes.shape[-1]), mode="bilinear", antialias=True, align_corners=False
    )
    return resized[:, 0]


def image_views(
    fc: torch.Tensor, size: int, step: int | None = None, workers: int | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The real-space image ``irfft2(Fc)`` resized to ``size × size`` (:func:`_resize`)
    and, with ``step``, in ``step × step`` block means, without the full image:
    ``[k, size, size]`` and ``[k, D // step, D // step]`` float32. On the CPU ``fc`` is
    overwritten; ``workers``: threads of the columns' inverse FFT there (scipy; the rows'
    inverse runs in torch, with torch's threads).

    The inverse transform, the resize and the block means are all linear and separable,
    so the rows are reduced right after the column transform, and only the reduced rows
    go through the row transform (a quarter of them for a K3 square): the values are
    those of the full image up to float32 rounding (~1e-6 relative).
    """
    crop = fc.shape[-2]
    workers = workers or available_cores()
    if fc.device.type == "cpu":
        columns = torch.from_numpy(scipy.fft.ifft(fc.numpy(), axis=-2, workers=workers, overwrite_x=True))
    else:
        columns = torch.fft.ifft(fc, dim=-2)
    # The rows as real numbers, each complex value a (real, imaginary) pair of columns:
    # the row reductions treat every column alike.
    parts = torch.view_as_real(columns).flatten(-2)  # [k, D, 2 (D/2+1)]
    reduced = [_resize_rows(parts, size)] + ([] if step is None else [block_means_along(parts, step, -2)])
    joined = torch.view_as_complex(torch.cat(reduced, dim=-2).unflatten(-1, (-1, 2)))
    # (torch here on the CPU too: its irfft of a slow length such as 2264 = 8·283 takes
    # half of scipy's time, 14 vs 25 ms for a K3 micrograph's rows on one core)
    rows = torch.fft.irfft(joined, n=crop, dim=-1).to(torch.float32)  # (float64 squares give float64)
    image = _resize(rows[:, :size], size)[:, 0]
    return image, None if step is None else block_means_along(rows[:, size:], step, -1)


def cropped_transform(
    squares: Squares,
    crop: int,
    device: torch.device,
    offset: float | np.ndarray,
    size: int,
    step: int | None = None,
    workers: int | None = None,
) -> Planes:
    """The :class:`Planes` of ``[k, n, n]`` squares that had ``offset`` subtracted (one
    value, or one per square: squares of several micrographs at once), Fourier-cropped
    to ``D = crop``, on ``device``: the image at ``size`` and, with ``step``, its block
    means (``workers``: as for :func:`cropped_spectrum`).

    The image is left without the offset: a constant shift does not change the image
    channel after the (shift-invariant) resize and robust normalisation; the metrics
    add it back to the block means.
    """
    side = squares[0].layout.side if isinstance(squares, Sequence) else squares.shape[-1]
    fc = cropped_spectrum(squares, crop, device, workers)
    amplitude = amplitudes(fc, offset, side)  # (first: on the CPU the image views overwrite fc)
    image, coarse = image_views(fc, size, step, workers)
    return Planes(image, coarse, amplitude)


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


def planes_to_tensor(planes: Planes, config: PreprocessConfig) -> torch.Tensor:
    """The resized image and the amplitudes → ``[k, channels, size, size]`` normalised float32."""
    channels = [planes.image[:, None]]
    if config.power_spectrum:
        # Resized in float32 with torch, exactly as Miffi does: the spectrum image is
        # point-symmetric, so every value, its maximum (DC) included, has a twin, and
        # whether float32 rounding splits a twin pair decides whether the normalisation
        # (values strictly inside (min, max)) keeps the DC twin. Doing this step as Miffi
        # does reproduces its choice; see tests/reference/test_miffi_reference.py.
        channels.append(_resize(power_spectrum_image(planes.amplitude).to(torch.float32), config.size))
    resized = torch.cat(channels, dim=1)
    return robust_normalise(resized, config.norm_iterations, config.norm_nsigma, config.clip)


def squares_to_tensor(
    squares: np.ndarray | torch.Tensor,
    crop: int,
    config: PreprocessConfig,
    device: torch.device,
    offset: float = 0.0,
) -> torch.Tensor:
    """``[k, n, n]`` squares (minus ``offset``) → ``[k, channels, size, size]`` float32 on ``device``."""
    return planes_to_tensor(cropped_transform(squares, crop, device, offset, config.size), config)


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


def coarse_step(layout: SquareLayout) -> int:
    """The block size of the metrics' coarse image of a cropped square (about 12 Å)."""
    return coarse_grid(layout.output_pixel_size, (layout.crop, layout.crop))[0]


def square_sums(planes: Planes, layout: SquareLayout) -> list[SquareSums]:
    """The :class:`SquareSums` of one micrograph's :class:`Planes`, reduced on their
    device (two copies back)."""
    assert planes.coarse is not None  # (made for the metrics: transform_batch asks for it)
    amplitude = planes.amplitude
    rows = spectral_sums(amplitude, layout.output_pixel_size).cpu().numpy()
    spectral = SpectralSums.split(rows, (amplitude.shape[1], amplitude.shape[2]), layout.output_pixel_size)
    return [SquareSums(s, c) for s, c in zip(spectral, planes.coarse.cpu().numpy())]


@dataclass(frozen=True)
class Transformed:
    """One micrograph after the transforms, before its metrics: the cached array, and the
    reductions of its cropped planes that the metrics need.

    ``sums`` gives those reductions. On a GPU they were made there and only they came
    back; on the CPU they are made when called, from the amplitudes (in host memory of
    their own: many of these wait for the metrics), in :meth:`finish`, which a pipeline
    runs beside the transforms of the next micrographs.
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


def batch_key(loaded: LoadedMicrograph) -> tuple[int, int, int]:
    """Micrographs with equal keys (square side, crop, coarse block) can be transformed
    as one batch."""
    return loaded.layout.side, loaded.layout.crop, coarse_step(loaded.layout)


def _sums(planes: list[Planes], layout: SquareLayout) -> Callable[[], list[SquareSums]]:
    """:attr:`Transformed.sums` of one micrograph's planes (in parts, each of its own):
    reduced now on a GPU, later on the CPU."""

    def reduce() -> list[SquareSums]:
        return [sums for part in planes for sums in square_sums(part, layout)]

    if planes[0].amplitude.device.type != "cpu":
        made = reduce()
        return lambda: made
    return reduce


#: One micrograph's transforms: its planes (in parts), its cached array and, per square,
#: whether that is finite.
_Made = tuple[list[Planes], np.ndarray, np.ndarray]


def _transform_each(
    batch: Sequence[LoadedMicrograph], config: PreprocessConfig, device: torch.device, workers: int | None
) -> list[_Made]:
    """The transforms of ``batch`` (sharing one :func:`batch_key`), for each micrograph.

    On a GPU all squares of the batch go through one set of kernels. On the CPU they go
    one square at a time: the transforms' arrays are then those of one square (about
    100 MB for a K3 one instead of 200 MB for both), which is no slower there and spares
    the kernel's zeroing of fresh pages where several micrographs are transformed side
    by side (8 K3 micrographs, 2 at a time on 2 cores: 0.8-1.5 s → 0.3-0.4 s of system
    time). Each square's values are the same either way (its transforms are its own).
    """
    _, crop, step = batch_key(batch[0])

    def transform(squares: Sequence[LoadedMicrograph]) -> tuple[Planes, torch.Tensor]:
        offsets = np.repeat([m.offset for m in squares], [m.layout.count for m in squares]).astype(np.float64)
        planes = cropped_transform(squares, crop, device, offsets, config.size, step, workers)
        return planes, planes_to_tensor(planes, config)

    def finite(tensor: torch.Tensor) -> np.ndarray:
        return np.asarray(torch.isfinite(tensor).flatten(1).all(dim=1).cpu().numpy())

    if device.type == "cpu":
        made: list[_Made] = []
        for loaded in batch:
            parts = [transform([square]) for square in loaded.each_square()]
            tensor = torch.cat([t for _, t in parts])
            made.append(([p for p, _ in parts], tensor.numpy(), finite(tensor)))
        return made
    planes, tensor = transform(batch)
    host, usable = tensor.cpu().numpy(), finite(tensor)
    own = np.array if len(batch) > 1 else np.asarray  # (a copy, so the batch's arrays can go)
    bounds = np.cumsum([0, *(m.layout.count for m in batch)])
    return [([planes[a:b]], own(host[a:b]), usable[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def transform_batch(
    batch: Sequence[LoadedMicrograph], config: PreprocessConfig, device: torch.device, workers: int | None = None
) -> list[Transformed | MicrographError]:
    """The transforms of micrographs sharing one :func:`batch_key` (on a GPU: one set of
    kernels for all their squares). Each micrograph gets its own result, or the
    :class:`MicrographError` that says why it has none (NaN/Inf in the file, or a square
    without contrast); the tensors are those of one-by-one transforms. ``workers``:
    threads of the CPU's FFTs (default: every available core).
    """
    if len({batch_key(m) for m in batch}) != 1:
        raise ValueError("transform_batch: the micrographs of a batch must share square side, crop and coarse block")
    results: list[Transformed | MicrographError] = []
    for loaded, (planes, tensor, finite) in zip(batch, _transform_each(batch, config, device, workers)):
        if finite.all():
            results.append(Transformed(loaded.layout, loaded.offset, tensor, _sums(planes, loaded.layout)))
        elif not loaded.finite():
            results.append(MicrographError(loaded.path, "contains NaN or Inf values"))
        else:
            bad = int(np.flatnonzero(~finite)[0])
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
