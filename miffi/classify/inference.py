"""Batched inference on cached tensors: per-square probabilities of the 11 Miffi labels.

Squares of many micrographs share batches; the model is loaded once by the caller.
A background thread reads the cached tensors and assembles the batches (in pinned
memory for a GPU) while the model runs; on a GPU the probabilities stay on the device
until the end, so batches follow one another without waiting.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from queue import Empty, Queue
from typing import TypeVar

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from miffi.classify.models import NUM_OUTPUTS, Classifier
from miffi.device import native_bf16
from miffi.errors import MiffiError, ModelError
from miffi.labels import LABELS, SLICES
from miffi.preprocess.cache import TensorCache

log = logging.getLogger(__name__)

T = TypeVar("T")


def choose_bf16(device_type: str, bf16: bool, fast: bool, native: bool) -> bool:
    """Whether the model runs under bfloat16 autocast: when asked (``--bf16``), or when
    ``--fast`` finds it fast — on a GPU, and on a CPU only with ``native`` bfloat16
    (emulated, it is slower than float32). ``--bf16`` on such a CPU is honoured, with a
    warning."""
    if bf16 and device_type == "cpu" and not native:
        log.warning(
            "--bf16 on a CPU without native bfloat16 (no avx512_bf16, amx_bf16 or bf16 flag): emulated, "
            "it is slower than float32 (5.7x slower measured on an AMD EPYC); --fast picks float32 here"
        )
    return bf16 or (fast and (device_type != "cpu" or native))


def inference_bf16(device: torch.device, bf16: bool, fast: bool) -> bool:
    """:func:`choose_bf16` for ``device`` on this machine."""
    return choose_bf16(device.type, bf16, fast, native_bf16() if device.type == "cpu" else False)


#: Squares per batch by default. On a CPU small batches are faster: the activations of
#: a batch of 16 fill the caches and fault in fresh pages on every call (measured on a
#: 2-core Xeon with AMX, convnext_small at 384²: 32 squares in 8.1-8.5 s at 4, 9.0-9.9 s at
#: 8, 10.8 s at 16 in float32; 2.9-3.2 s at 4 or 8, 4.3 s at 16 in bfloat16).
CPU_BATCH_SIZE, GPU_BATCH_SIZE = 4, 16


def default_batch_size(device: torch.device) -> int:
    return GPU_BATCH_SIZE if device.type == "cuda" else CPU_BATCH_SIZE


def group_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax within each label group of ``[N, 11]`` logits."""
    return torch.cat([torch.softmax(logits[:, part].float(), dim=1) for part in SLICES.values()], dim=1)


def check_compatible(classifier: Classifier, cache: TensorCache) -> None:
    if classifier.config != cache.config:
        raise MiffiError(
            f"model {classifier.path} expects inputs preprocessed with {classifier.config.to_dict()}, "
            f"but cache {cache.directory} holds {cache.config.to_dict()}"
        )


def _in_background(items: Iterator[T], depth: int = 4) -> Iterator[T]:
    """The items of ``items``, produced by a background thread up to ``depth`` ahead of
    the consumer; the producer's exception is raised in the consumer."""
    queue: Queue[T | _Raised | None] = Queue(maxsize=depth)  # None: done
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                queue.put(item)
        except BaseException as exc:  # handed to the consumer
            queue.put(_Raised(exc))
        queue.put(None)

    thread = threading.Thread(target=work, name="miffi-batches", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not None:
            if isinstance(item, _Raised):
                raise item.exception
            yield item
    finally:  # unblock the producer if the consumer stopped early, then let it finish
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(Empty):
                queue.get(timeout=0.1)


@dataclass(frozen=True)
class _Raised:
    exception: BaseException


@dataclass
class Batch:
    """Squares of consecutive micrographs for one call of the model."""

    inputs: torch.Tensor  # [batch_size, channels, size, size]; rows past ``count`` unused
    micrographs: list[str] = field(default_factory=list)  # one per square
    squares: list[int] = field(default_factory=list)
    finished: int = 0  # micrographs whose last square is in this batch

    @property
    def count(self) -> int:
        return len(self.micrographs)


def batches(tensors: Iterable[tuple[str, np.ndarray]], batch_size: int, pin: bool = False) -> Iterator[Batch]:
    """Cut the squares of ``(micrograph, [squares, C, S, S])`` into batches of
    ``batch_size`` (the last one short), each assembled in its own buffer — in pinned
    memory with ``pin``, so that the copy to a GPU is asynchronous."""
    batch: Batch | None = None
    for micrograph, tensor in tensors:
        for square, plane in enumerate(tensor):
            if batch is None:
                batch = Batch(torch.empty((batch_size, *plane.shape), dtype=torch.float32, pin_memory=pin))
            batch.inputs[batch.count] = torch.from_numpy(plane)
            batch.micrographs.append(micrograph)
            batch.squares.append(square)
            batch.finished += square == len(tensor) - 1
            if batch.count == batch_size:
                yield batch
                batch = None
    if batch is not None:
        batch.inputs[batch.count :] = 0  # (a GPU runs the whole buffer)
        yield batch


def _run(module: torch.nn.Module, batch: Batch, device: torch.device, bf16: bool) -> torch.Tensor:
    """Probabilities for one batch, left on ``device`` (reading them back would wait for
    the model; the caller does it once at the end). On a GPU the whole buffer goes
    through the model, so that every call has the same shape (no re-tuning, no
    TorchScript re-specialisation)."""
    inputs = batch.inputs if device.type == "cuda" else batch.inputs[: batch.count]
    inputs = inputs.to(device, non_blocking=True)
    # TorchScript's profiling executor re-optimises for every new shape and dtype, which
    # costs more than it gains for a convolutional network run a few times per shape.
    with (
        torch.inference_mode(),
        torch.jit.optimized_execution(False),
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16),
    ):
        logits = module(inputs)[: batch.count]
    if logits.ndim != 2 or logits.shape[1] != NUM_OUTPUTS:
        raise MiffiError(f"model output has shape {tuple(logits.shape)}; expected [batch, {NUM_OUTPUTS}]")
    return group_softmax(logits)


def predict(
    classifier: Classifier,
    cache: TensorCache,
    micrographs: Sequence[str],
    device: torch.device,
    batch_size: int | None = None,
    bf16: bool = False,
    progress: bool = True,
    sources: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per-square probabilities: columns ``micrograph``, ``square`` and the 11 labels.

    ``sources`` (the micrographs' files, in the same order) makes every cached tensor be
    checked to be made from its file. ``batch_size``: squares per call of the model
    (default: :func:`default_batch_size` of ``device``).

    Raises
    ------
    MiffiError
        When the cache was made with another preprocessing config than the model's, or
        the model's outputs are not finite (named with the micrographs concerned).
    """
    check_compatible(classifier, cache)
    batch_size = batch_size or default_batch_size(device)
    files = sources if sources is not None else [None] * len(micrographs)
    tensors = ((m, cache.load(m, source)) for m, source in zip(micrographs, files))
    names: list[str] = []
    squares: list[int] = []
    outputs: list[torch.Tensor] = []
    with tqdm(total=len(micrographs), desc="infer", unit="mic", disable=not progress) as bar:
        for batch in _in_background(batches(tensors, batch_size, pin=device.type == "cuda")):
            outputs.append(_run(classifier.module, batch, device, bf16))
            names += batch.micrographs
            squares += batch.squares
            bar.update(batch.finished)
    table = pd.DataFrame({"micrograph": names, "square": squares})
    values = torch.cat(outputs).cpu().numpy() if outputs else np.zeros((0, NUM_OUTPUTS), np.float32)
    broken = np.asarray(~np.isfinite(values).all(axis=1))  # (an array: values is 2-D)
    if broken.any():
        where = list(dict.fromkeys(table.loc[broken, "micrograph"]))
        raise ModelError(
            classifier.path,
            f"gives non-finite outputs (NaN/Inf) for {int(broken.sum())} of "
            f"{len(values)} squares, of {len(where)} micrograph(s): "
            f"{', '.join(where[:5])}{' ...' if len(where) > 5 else ''}",
        )
    return pd.concat([table, pd.DataFrame(values, columns=list(LABELS))], axis=1)
