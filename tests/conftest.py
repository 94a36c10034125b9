"""Fixtures every test folder shares.

The suite is split by what a test exercises: ``unit/`` (one module's behaviour in this
process), ``integration/`` (the command line, real consumers such as RELION and
cryosparc-tools, the browser, the GPU), ``workflow/`` (real Snakemake and SLURM runs) and
``reference/`` (agreement with Miffi 1.0.1 and the paper). Whole folders of workflow and
reference runs are marked ``slow``: ``pytest -m "not slow"`` is the quick loop.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.support.zenodo import FakeZenodo

TESTS = Path(__file__).resolve().parent
REALDATA = Path(os.environ.get("MIFFI_REALDATA", TESTS.parent.parent / "shared" / "realdata"))
SLOW_FOLDERS = ("workflow", "reference")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.path).parent.name in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"real test data not found at {REALDATA} (set MIFFI_REALDATA)")
    return REALDATA


@pytest.fixture(scope="session")
def cuda() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    return torch.device("cuda")


@pytest.fixture
def zenodo() -> Iterator[FakeZenodo]:
    server = FakeZenodo()
    yield server
    server.httpd.shutdown()
