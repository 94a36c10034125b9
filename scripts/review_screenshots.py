"""Screenshots of the labelling and curation views for the README (docs/label.jpg,
docs/curate.jpg): a simulated dataset run by ``miffi run``, then ``miffi label`` and
``miffi curate`` on its results in headless Chromium, a few decisions made by keyboard.

Usage: python scripts/review_screenshots.py [--out docs]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.browser import open_page  # noqa: E402
from tests.support.runners import BIN, serving  # noqa: E402


def shoot(argv: list[object], keys: str, out: Path) -> None:
    with (
        serving(*argv, "--port", "0") as (_, url),
        open_page(url, 1400, 940, (url.split("/?")[0] + "/", "data:")) as page,
    ):
        page.wait_for_function("document.getElementById('name').textContent.length > 0")
        for key in keys.split():
            page.keyboard.press(key)
            page.wait_for_timeout(400)
        page.wait_for_function("document.getElementById('state').textContent === 'saved'")
        page.screenshot(path=str(out), type="jpeg", quality=80)
        print(f"{out}: {page.errors or 'no console errors'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    miffi = str(BIN / "miffi")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([miffi, "simulate", "--out", work / "sim", "--n", "12", "--detector", "2048x1024@1.0",
                        "--seed", "3", "--no-progress", "-q"], check=True)  # fmt: skip
        subprocess.run([miffi, "run", "--input", work / "sim" / "micrographs.star", "--outdir", work / "run",
                        "--device", "cpu", "--no-progress", "-q"], check=True)  # fmt: skip
        results = work / "run" / "results.tsv"
        shoot(
            ["label", results, "--labels", work / "labels.csv", "--order", "acquisition"],
            "g g 2 w",
            args.out / "label.jpg",
        )
        shoot(["curate", results, "--order", "uncertain"], "Enter 2 ArrowLeft", args.out / "curate.jpg")


if __name__ == "__main__":
    main()
