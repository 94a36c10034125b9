"""What the CPU can do fast: native bfloat16 from its flags, the precision --fast picks,
the batch size by device, memory reuse across threads, and imports out of the garbage
collector's sight."""

from __future__ import annotations

import logging
import platform
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

from miffi.classify.inference import choose_bf16, default_batch_size
from miffi.device import native_bf16

X86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 fma {extra}\n\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd sha2 {extra}\nCPU implementer\t: 0x41\n"


@pytest.mark.parametrize(
    ("text", "native"),
    [
        (X86.format(extra="avx512f avx512bw"), False),  # AVX-512 alone emulates bfloat16
        (X86.format(extra="avx512f avx512_bf16"), True),
        (X86.format(extra="amx_tile amx_bf16"), True),
        (ARM.format(extra="i8mm"), False),
        (ARM.format(extra="bf16 i8mm"), True),
    ],
)
def test_native_bf16_from_the_cpu_flags(tmp_path, text, native):
    (tmp_path / "cpuinfo").write_text(text)
    assert native_bf16(tmp_path / "cpuinfo") is native


def test_native_bf16_without_cpu_flags_is_false(tmp_path):
    assert native_bf16(tmp_path / "missing") is False


def test_this_machine(tmp_path):
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    words = set(cpuinfo.read_text().split())
    assert native_bf16() is bool(words & {"avx512_bf16", "amx_bf16", "bf16"})


def test_fast_picks_bf16_only_where_it_is_fast(caplog):
    assert choose_bf16("cuda", bf16=False, fast=True, native=False)
    assert choose_bf16("cpu", bf16=False, fast=True, native=True)
    assert not choose_bf16("cpu", bf16=False, fast=True, native=False)  # emulated: float32 is faster
    assert not choose_bf16("cpu", bf16=False, fast=False, native=True)  # the default stays float32
    assert not caplog.records


def test_bf16_on_a_cpu_without_it_is_honoured_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        assert choose_bf16("cpu", bf16=True, fast=False, native=False)
    assert "slower than float32" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert choose_bf16("cpu", bf16=True, fast=False, native=True)
        assert choose_bf16("cuda", bf16=True, fast=False, native=False)
    assert not caplog.records


def test_small_batches_on_a_cpu_and_large_ones_on_a_gpu():
    assert default_batch_size(torch.device("cpu")) < default_batch_size(torch.device("cuda"))


#: Allocates and frees a K3 micrograph's squares (134 MB) four times in a reader-like
#: thread and prints the page faults of the last three: reused memory faults no pages.
THREAD_ALLOCATIONS = """
import resource, sys, threading
import numpy as np
from miffi.device import retain_freed_memory

if sys.argv[1] == "retain":
    assert retain_freed_memory()
faults = []

def work():
    for _ in range(4):
        out = np.empty((2, 4092, 4092), np.float32)
        out.fill(1.0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
        del out

thread = threading.Thread(target=work)
thread.start()
thread.join()
print(faults[-1] - faults[0])
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_threads_reuse_freed_memory_once_it_is_retained():
    def faults(mode: str) -> int:
        run = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(THREAD_ALLOCATIONS), mode],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(run.stdout)

    pages = 3 * 2 * 4092 * 4092 * 4 // (2 << 20)  # three arrays, in 2 MB huge pages at the fewest
    assert faults("default") >= pages  # a thread's arena maps each large array afresh
    assert faults("retain") < pages // 10


def test_frozen_imports_collect_nothing_inside_and_freeze_what_was_made():
    import gc

    from miffi.device import frozen_imports

    class Cycle:
        pass

    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    try:
        with frozen_imports():
            assert not gc.isenabled()
            made = [Cycle() for _ in range(1000)]
            for item in made:
                item.me = item  # (garbage in cycles, were it dropped)
        assert gc.isenabled()
        assert gc.get_freeze_count() == frozen  # (nothing was imported: nothing frozen)
        with frozen_imports():
            sys.modules["miffi_test_imported_now"] = types.ModuleType("miffi_test_imported_now")
            made = [Cycle() for _ in range(1000)]
        assert gc.get_freeze_count() >= frozen + len(made)
        with pytest.raises(ImportError), frozen_imports():
            raise ImportError("no such module")
        assert gc.isenabled()  # (also after a failed import)
        gc.disable()
        with frozen_imports():
            pass
        assert not gc.isenabled()  # (left as it was)
    finally:
        sys.modules.pop("miffi_test_imported_now", None)
        gc.enable()
        gc.unfreeze()
