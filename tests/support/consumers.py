"""The real consumers of our exports, as the tests ask them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path


def relion_reads(star: Path, block: str) -> dict:
    """The blocks of ``star`` as RELION itself reads and writes them back
    (``relion_star_handler``), checked to hold as many ``block`` rows as RELION reports."""
    import starfile

    out = star.with_name(star.stem + "_relion_check.star")
    command = ["relion_star_handler", "--i", str(star), "--o", str(out), "--select", "rlnOpticsGroup",
               "--minval", "-1e9", "--maxval", "1e9"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0, f"RELION wrote an empty file: {result.stdout}{result.stderr}"
    rewritten = starfile.read(out, always_dict=True)
    out.unlink()
    assert re.search(rf"with {len(rewritten[block])} item", result.stdout), result.stdout
    return rewritten
