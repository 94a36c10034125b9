"""This machine: explicit device choice (``auto`` uses a visible GPU, ``cuda`` insists,
``cpu`` never uses one), its cores and CPU features, and process-wide tuning for the
command line's long runs."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from miffi.errors import MiffiError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """Turn ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` into a :class:`torch.device`.

    Raises
    ------
    MiffiError
        When a GPU is requested but none is visible, or the name is unknown.
    """
    import torch  # here, so that commands which never touch a device start without torch

    if name == "cpu":
        return torch.device("cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise MiffiError(
                f"device {name!r} was requested but no CUDA GPU is visible (use --device auto or cpu to run on the CPU)"
            )
        return torch.device(name)
    raise MiffiError(f"unknown device {name!r} (choose from {', '.join(DEVICE_CHOICES)} or cuda:N)")


def available_cores() -> int:
    """CPU cores this process may use (respects SLURM/cgroup affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: CPU flags of native bfloat16 arithmetic: x86 AVX512-BF16 and AMX, Arm's BF16 extension.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bfloat16 natively (flags in ``cpuinfo``).

    Without it, PyTorch emulates bfloat16 on the CPU, which is slower than float32
    (measured 5.7× slower per K3 micrograph on an AMD EPYC without it). False where the
    flags cannot be read (not Linux).
    """
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, Arm
            flags.update(value.split())
    return bool(flags & NATIVE_BF16_FLAGS)


def retain_freed_memory() -> bool:
    """Have glibc serve large arrays from one heap and keep freed memory for reuse.

    Preprocessing allocates and frees arrays of ~100 MB per micrograph. By default glibc
    maps and unmaps each one, and the kernel zeroes fresh pages on every first touch,
    which measured about a third of the CPU time on a K3 micrograph. Threads other than
    the main one (the readers and finishers of preprocessing) allocate from arenas of at
    most 64 MB, which map anything larger afresh whatever the thresholds, so all threads
    share the main arena (preprocessing 8 K3 micrographs: 22,000 → 12,000 page faults
    in the first pass, 8,000 → 4,000 after; 2-core Xeon). This changes the whole
    process, so only entry points (the CLI, benchmarks) call it, before any thread
    allocates. Returns False where it does not apply (not glibc).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    return (
        bool(libc.mallopt(m_mmap_threshold, 1 << 30))
        and bool(libc.mallopt(m_trim_threshold, (1 << 31) - 1))
        and bool(libc.mallopt(m_arena_max, 1))
    )


@contextlib.contextmanager
def frozen_imports() -> Iterator[None]:
    """Import a command's libraries with Python's cyclic garbage collector off, then move
    every object they made out of its sight (``gc.freeze``) and turn it back on.

    Importing torch, pandas and scipy makes hundreds of thousands of objects that live as
    long as the process. The collector scans them all in every full collection, during
    the imports and afterwards (measured on a 2-core Xeon: the imports 1.33 → 1.10 s;
    preprocessing 8 K3 micrographs, in a process that had frozen its imports, 0.3 s less
    CPU time). Garbage that the imports leave in reference cycles is frozen too: about
    7,600 objects for ``miffi run``, with no measurable memory. Where nothing new was
    imported (a second command in one process), nothing is frozen.
    """
    enabled, loaded = gc.isenabled(), len(sys.modules)
    gc.disable()
    try:
        yield
    finally:
        if len(sys.modules) > loaded:  # (imported nothing: nothing new to freeze, e.g. a second main())
            gc.freeze()
        if enabled:
            gc.enable()
