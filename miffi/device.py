"""Explicit device choice: ``auto`` uses a visible GPU, ``cuda`` insists, ``cpu`` never uses one."""

from __future__ import annotations

import os

import torch

from miffi.errors import MiffiError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """Turn ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` into a :class:`torch.device`.

    Raises
    ------
    MiffiError
        When a GPU is requested but none is visible, or the name is unknown.
    """
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise MiffiError(
                f"device {name!r} was requested but no CUDA GPU is visible "
                "(use --device auto or cpu to run on the CPU)"
            )
        return torch.device(name)
    raise MiffiError(f"unknown device {name!r} (choose from {', '.join(DEVICE_CHOICES)} or cuda:N)")


def available_cores() -> int:
    """CPU cores this process may use (respects SLURM/cgroup affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
