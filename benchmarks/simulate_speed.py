"""Time ``miffi simulate`` rendering per micrograph (median of several) for a few detectors.

Usage: python benchmarks/simulate_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from miffi.device import available_cores, retain_freed_memory
from miffi.simulate.config import SimulationConfig, parse_detector
from miffi.simulate.scene import draw_scene, render


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    retain_freed_memory()
    print(f"CPU cores: {available_cores()}; labels drawn from the default mix")
    for name in ("1024x1024@1.0", "k2", "k3"):
        detector = parse_detector(name)
        times = []
        for seed in range(args.repeats + 1):
            scene = draw_scene("bench", seed, detector, SimulationConfig())
            start = time.perf_counter()
            render(scene)
            times.append(time.perf_counter() - start)
        print(
            f"{name:>14}: median {statistics.median(times[1:]):.2f} s per micrograph "
            f"(max {max(times[1:]):.2f} s; first, with warm-up, {times[0]:.2f} s)"
        )


if __name__ == "__main__":
    main()
