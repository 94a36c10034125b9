"""Batched inference on cached tensors: per-square probabilities of the 11 Miffi labels.

Squares of many micrographs share batches; the model is loaded once by the caller;
tensors are read from the cache in a background thread while the model runs.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from queue import Empty, Queue

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


def group_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax within each label group of ``[N, 11]`` logits."""
    return torch.cat([torch.softmax(logits[:, part].float(), dim=1) for part in SLICES.values()], dim=1)


def check_compatible(classifier: Classifier, cache: TensorCache) -> None:
    if classifier.config != cache.config:
        raise MiffiError(
            f"model {classifier.path} expects inputs preprocessed with {classifier.config.to_dict()}, "
            f"but cache {cache.directory} holds {cache.config.to_dict()}"
        )


def _read_ahead(
    cache: TensorCache, micrographs: Sequence[str], sources: Sequence[str] | None = None, depth: int = 8
) -> Iterator[tuple[str, np.ndarray]]:
    """Cached tensors in order (each checked to be made from its source, when given),
    loaded by a background thread a few micrographs ahead."""
    queue: Queue[tuple[str, np.ndarray] | BaseException | None] = Queue(maxsize=depth)  # None: done
    stop = threading.Event()

    def work() -> None:
        try:
            for i, micrograph in enumerate(micrographs):
                if stop.is_set():
                    return
                queue.put(
                    (
                        micrograph,
                        np.ascontiguousarray(cache.load(micrograph, sources[i] if sources is not None else None)),
                    )
                )
        except BaseException as exc:  # handed to the consumer
            queue.put(exc)
        queue.put(None)

    thread = threading.Thread(target=work, name="miffi-cache-read", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:  # unblock the reader if the consumer stopped early, then let it finish
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(Empty):
                queue.get(timeout=0.1)


def _run(module: torch.nn.Module, batch: np.ndarray, device: torch.device, bf16: bool, pad_to: int) -> np.ndarray:
    """Probabilities for one batch. On a GPU batches are padded to ``pad_to`` squares, so
    that every call has the same shape (no re-tuning, no TorchScript re-specialisation)."""
    count = len(batch)
    inputs = torch.from_numpy(batch).to(device, non_blocking=True)
    if device.type == "cuda" and count < pad_to:
        inputs = torch.cat([inputs, inputs.new_zeros((pad_to - count, *inputs.shape[1:]))])
    # TorchScript's profiling executor re-optimises for every new shape and dtype, which
    # costs more than it gains for a convolutional network run a few times per shape.
    with (
        torch.inference_mode(),
        torch.jit.optimized_execution(False),
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16),
    ):
        logits = module(inputs)[:count]
    if logits.ndim != 2 or logits.shape[1] != NUM_OUTPUTS:
        raise MiffiError(f"model output has shape {tuple(logits.shape)}; expected [batch, {NUM_OUTPUTS}]")
    return group_softmax(logits).cpu().numpy()


def predict(
    classifier: Classifier,
    cache: TensorCache,
    micrographs: Sequence[str],
    device: torch.device,
    batch_size: int = 16,
    bf16: bool = False,
    progress: bool = True,
    sources: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per-square probabilities: columns ``micrograph``, ``square`` and the 11 labels.

    ``sources`` (the micrographs' files, in the same order) makes every cached tensor be
    checked to be made from its file.

    Raises
    ------
    MiffiError
        When the cache was made with another preprocessing config than the model's, or
        the model's outputs are not finite (named with the micrographs concerned).
    """
    check_compatible(classifier, cache)
    names: list[str] = []
    squares: list[int] = []
    probabilities: list[np.ndarray] = []
    pending = np.zeros((0, classifier.channels, classifier.config.size, classifier.config.size), np.float32)

    def run_batches(rest: np.ndarray, final: bool) -> np.ndarray:
        """Run every full batch of ``rest`` (and the remainder when ``final``); return what is left."""
        while len(rest) >= batch_size or (final and len(rest)):
            probabilities.append(_run(classifier.module, rest[:batch_size], device, bf16, batch_size))
            rest = rest[batch_size:]
        return rest

    with tqdm(total=len(micrographs), desc="infer", unit="mic", disable=not progress) as bar:
        for micrograph, tensor in _read_ahead(cache, micrographs, sources):
            names += [micrograph] * len(tensor)
            squares += list(range(len(tensor)))
            pending = run_batches(np.concatenate([pending, tensor]), final=False)
            bar.update(1)
        run_batches(pending, final=True)
    table = pd.DataFrame({"micrograph": names, "square": squares})
    values = np.concatenate(probabilities) if probabilities else np.zeros((0, NUM_OUTPUTS), np.float32)
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
