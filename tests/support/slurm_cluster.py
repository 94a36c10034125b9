"""A real single-node SLURM cluster for tests (root only; daemons started and stopped here).

Settings follow the shared ENVIRONMENT.md notes: the node is this host (short name,
127.0.0.1), cons_tres with per-CPU memory so jobs share the node, a fake GPU (gres on
/dev/null) for scheduling tests, no accounting (so status via squeue). Partitions: `debug`
(the default), and `cpu` and `gpu`, the names the shipped profiles/slurm/partitions.yaml
uses, so the shipped workflow profile runs here unchanged (all three hold the one node).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "scontrol")
CONF = Path("/etc/slurm")


def available() -> str | None:
    """Why no cluster can be started here, or None."""
    if os.geteuid() != 0:
        return "needs root to start slurmctld/slurmd"
    missing = [d for d in DAEMONS if shutil.which(d) is None and not Path(f"/usr/sbin/{d}").exists()]
    if missing:
        return f"SLURM not installed (missing {', '.join(missing)}; scripts/install-system-tools.sh)"
    if (CONF / "slurm.conf").exists() and not (CONF / "slurm.conf").is_symlink():
        return f"{CONF / 'slurm.conf'} exists and is not ours"
    return None


def _conf(folder: Path, host: str, cpus: int, memory_mb: int) -> str:
    return f"""ClusterName=miffitest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MailProg=/bin/true
MinJobAge=600
ReturnToService=2
SlurmdParameters=config_overrides
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
PartitionName=cpu Nodes={host} MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={host} MaxTime=INFINITE State=UP
"""


def _stop(pid_file: Path) -> None:
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)


@contextlib.contextmanager
def cluster(folder: Path) -> Iterator[str]:
    """Start munge, slurmctld and slurmd; yield the partition name; stop them again."""
    host = socket.gethostname().split(".")[0]
    # The node claims at least 16 CPUs and 64 GB (config_overrides: slurmd reports the
    # configured sizes, not the machine's), so the shipped profile's requests (12 CPUs,
    # 32 GB for training) fit on a 2-core CI machine; nothing enforces them (task/none).
    cpus = max(16, os.cpu_count() or 1)
    memory = max(64000, int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20) - 1000)
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "slurm.conf").write_text(_conf(folder, host, cpus, memory))
    (folder / "gres.conf").write_text(f"AutoDetect=off\nNodeName={host} Name=gpu File=/dev/null\n")
    CONF.mkdir(parents=True, exist_ok=True)
    links = []
    for name in ("slurm.conf", "gres.conf"):
        link = CONF / name
        link.unlink(missing_ok=True)
        link.symlink_to(folder / name)
        links.append(link)
    munge_pid = None
    try:
        if not Path("/etc/munge/munge.key").exists():
            subprocess.run(["mungekey", "--create"], check=True)
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        munge = subprocess.run(["pgrep", "-x", "munged"], capture_output=True, text=True)
        if munge.returncode != 0:
            subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
            munge_pid = subprocess.run(["pgrep", "-x", "munged"], capture_output=True, text=True).stdout.split()
        subprocess.run(["slurmctld", "-c"], check=True)
        subprocess.run(["slurmd"], check=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"SLURM node did not become idle (state {state!r}); see {folder}")
        yield "debug"
    finally:
        _stop(folder / "slurmd.pid")
        _stop(folder / "slurmctld.pid")
        for pid in munge_pid or []:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGTERM)
        for link in links:
            link.unlink(missing_ok=True)
