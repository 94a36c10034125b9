"""How fast the labelling app shows the next micrograph on a 20,000-micrograph dataset.

Simulates and runs (``miffi run``, weight-free) a few dozen micrographs whose tensors are
in the cache, then makes a results table of ``--n`` micrographs from them (the other rows
stand for micrographs never shown: what grows with a dataset is its table, the orders,
the labels file rewritten at every label, not the one picture shown). Half the dataset is
already labelled, so the app resumes in the middle. In real headless Chromium it presses
``g`` (label all good, save, next) ``--labels`` times and prints, from the page's own
clock, the time from the key to the next micrograph's image and spectrum shown, and to
its label saved on disk; and how long the server takes to start and to order the dataset
most-uncertain-first.

Usage: python benchmarks/review_latency.py [--n 20000] [--labels 40] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from miffi.pipeline import read_results, write_table  # noqa: E402
from miffi.review.decisions import LABEL_COLUMNS  # noqa: E402
from tests.support.browser import open_page  # noqa: E402
from tests.support.runners import serving  # noqa: E402

BIN = Path(sys.executable).parent


def big_results(run: Path, n: int, shown: int) -> pd.DataFrame:
    """``n`` rows: the ``shown`` real micrographs in the middle, stand-ins around them."""
    real = read_results(run / "results.tsv")
    template = real.iloc[[0]]
    fillers = pd.concat([template] * (n - shown), ignore_index=True)
    fillers["micrograph"] = [f"stand_in_{i:06d}" for i in range(len(fillers))]
    fillers["path"] = [f"/absent/stand_in_{i:06d}.mrc" for i in range(len(fillers))]
    half = (n - shown) // 2
    return pd.concat([fillers.iloc[:half], real.iloc[:shown], fillers.iloc[half:]], ignore_index=True)


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered):6.1f} ms   p95 {p95:6.1f} ms   max {ordered[-1]:6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000, help="micrographs in the dataset")
    parser.add_argument("--labels", type=int, default=40, help="micrographs labelled while timed")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    shown = args.labels + 4  # (the page fetches the next two ahead)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        miffi = str(BIN / "miffi")
        quiet = ["--no-progress", "-q"]
        subprocess.run([miffi, "simulate", "--out", work / "sim", "--n", str(shown), "--detector", "2048x1024@1.0",
                        "--workers", "2", *quiet], check=True)  # fmt: skip
        subprocess.run([miffi, "run", "--input", work / "sim" / "micrographs.star", "--outdir", work / "run",
                        "--device", "cpu", "--formats", "lists", *quiet], check=True)  # fmt: skip
        table = big_results(work / "run", args.n, shown)
        (work / "big").mkdir()
        write_table(table, work / "big" / "results.tsv")
        labelled = table["micrograph"].iloc[: (args.n - shown) // 2]
        good = {"film": "no_film", "drift": "no_crack_drift", "crystallinity": "not_crystalline",
                "contamination": "minor_contamination", "labelled_at": "2026-01-01T00:00:00+00:00"}  # fmt: skip
        labels = work / "labels.csv"
        pd.DataFrame([{"micrograph": m, **good} for m in labelled], columns=LABEL_COLUMNS).to_csv(labels, index=False)

        started = time.perf_counter()
        argv = ["label", work / "big" / "results.tsv", "--labels", labels, "--cache", work / "run" / "cache",
                "--order", "acquisition", "--port", "0"]  # fmt: skip
        with serving(*argv) as (_, url):
            ready = time.perf_counter() - started
            origin = url.split("/?")[0] + "/"
            with open_page(url, 1400, 1000, local=(origin, "data:")) as page:
                page.wait_for_function("document.getElementById('name').textContent.length > 0")
                first = page.locator("#name").inner_text()
                assert not first.startswith("stand_in"), first
                order_ms = page.evaluate(
                    """async () => { const t = performance.now();
                    await fetch('/api/order?order=uncertain', {headers: {'X-Miffi-Token': CONFIG.token}});
                    return performance.now() - t; }"""
                )
                for i in range(args.labels):
                    page.keyboard.press("g")
                    page.wait_for_function(f"window.miffiTimings.length > {i} && window.miffiSaves.length > {i}")
                shown_ms = page.evaluate("window.miffiTimings")
                saved_ms = page.evaluate("window.miffiSaves")
                errors = list(page.errors)
        rows = len(pd.read_csv(labels))
    print(f"review app on {args.n} micrographs ({len(labelled)} labelled before; CPU: {cpu_name()})")
    print(f"server start to URL: {ready:.1f} s;  most-uncertain-first order of the dataset: {order_ms:.0f} ms")
    print(f"key → next micrograph shown ({len(shown_ms)}):  {summary(shown_ms)}")
    print(f"key → label saved on disk  ({len(saved_ms)}):  {summary(saved_ms)}")
    print(f"labels file: {rows} rows; page errors: {errors or 'none'}")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
