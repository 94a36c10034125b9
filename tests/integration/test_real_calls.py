"""The weight-free classifier on every real image of ../shared/realdata.

Images with a usable pixel size go through ``miffi run`` (the default without a model):
the UCSF micrograph (a header without a pixel size: read as 1.0 Å, so its spectra are
not trusted) and the two CryoPPP micrographs (≈ 5.4 Å). The EPU thumbnails (≈ 11.9 Å) and
the MicAssess PNGs (no pixel size) are coarser than preprocessing takes; their real-space
metrics go to the same classifier, their spectra unknown. Expected: contamination where
there is contamination, Thon rings where they are visible, and no good micrograph called
bad with confidence — nothing called at 0.9 or more from evidence the classifier cannot
have.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from miffi.classify.combine import categorise, combine
from miffi.classify.weightfree import predict_metrics
from miffi.cli import main
from miffi.preprocess.metrics import METRICS, realspace_metrics
from tests.support.micrographs import write_mrc

GOOD_CLASSES = ("0Great", "1Decent")


def grey(path) -> np.ndarray:
    """An 8-bit image as float32, rows flipped to MRC's bottom-up order."""
    return np.ascontiguousarray(np.asarray(Image.open(path).convert("L"), dtype=np.float32)[::-1])


@pytest.fixture(scope="module")
def run(realdata, tmp_path_factory):
    """``miffi run`` (weight-free) on the real images that have a pixel size."""
    folder = tmp_path_factory.mktemp("real")
    (folder / "mics").mkdir()
    (folder / "mics" / "ucsf.mrc").write_bytes((realdata / "micrographs" / "Ucsf_stack_1142_DW.mrc").read_bytes())
    for path in sorted((realdata / "cryoppp_png").glob("*.png")):
        write_mrc(folder / "mics" / f"cryoppp_{path.stem[-5:]}.mrc", grey(path), pixel_size=5.4)
    argv = ["run", "--input", folder / "mics", "--outdir", folder / "run", "--device", "cpu", "--no-progress", "-q"]
    assert main([str(a) for a in argv]) == 0
    return pd.read_csv(folder / "run" / "results.tsv", sep="\t").set_index("micrograph")


def coarse_calls(paths_and_sizes: dict[str, tuple[object, float | None]]) -> pd.DataFrame:
    """The classifier's calls from real-space metrics alone (spectra unknown)."""
    metrics = {}
    for name, (path, pixel_size) in paths_and_sizes.items():
        square = dict.fromkeys(METRICS, math.nan)
        square.update(realspace_metrics(grey(path), pixel_size))
        metrics[name] = [square]
    return categorise(combine(predict_metrics(metrics))).set_index("micrograph")


def test_the_contaminated_micrograph_is_called_contaminated(run):
    ucsf = run.loc["ucsf"]
    assert ucsf["pixel_size_source"] == "header_default"
    assert ucsf["contamination"] == "major_contamination" and ucsf["category"] == "bad_contamination"
    # its spectra are at an unknown scale: no call is drawn from them, none is confident
    assert ucsf["drift"] == "no_crack_drift" and ucsf["crystallinity"] == "not_crystalline"
    assert ucsf["drift_confidence"] < 0.7


def test_good_cryoppp_micrographs_are_good_with_their_thon_rings(run):
    for name in ("cryoppp_10028", "cryoppp_10059"):
        row = run.loc[name]
        assert row["category"] == "good", row.to_dict()
        assert row["thon_rings"] > 0.6  # the Thon rings anyone sees in them
        assert 5000 < row["thon_defocus"] < 50000


def test_no_real_good_micrograph_is_called_bad_with_confidence(realdata, run):
    good = {
        f"{path.parent.name}/{path.name}": (path, None)
        for name in GOOD_CLASSES
        for path in sorted((realdata / "micassess_labeled_png" / name).glob("*.png"))
    }
    calls = pd.concat([coarse_calls(good), run.loc[["cryoppp_10028", "cryoppp_10059"]]])
    assert len(calls) == 12
    confident_bad = calls[(calls["category"] != "good") & (calls["confidence"] >= 0.9)]
    assert confident_bad.empty, confident_bad[["category", "confidence"]]
    assert (calls["category"] == "good").all(), calls["category"]


def test_coarse_images_are_never_called_with_confidence_from_what_they_cannot_show(realdata):
    """At 11.9 Å per pixel (EPU thumbnails) or an unknown scale (MicAssess), crystalline
    ice and drift cannot be seen in a spectrum: crystallinity stays uncertain everywhere,
    and the only confident crack/drift/empty calls are those an image shows in real space
    (a bright area without ice), all of them in MicAssess' classes of cracks and of empty
    holes."""
    images = {p.name: (p, 11.9) for p in sorted((realdata / "epu_thumbnails").glob("*.jpg"))}
    images.update(
        {f"{p.parent.name}/{p.name}": (p, None) for p in sorted((realdata / "micassess_labeled_png").rglob("*.png"))}
    )
    calls = coarse_calls(images)
    assert len(calls) == 2 + 30
    assert (calls["crystallinity_confidence"] < 0.7).all()
    sure_drift = calls[(calls["drift"] == "crack_drift_empty") & (calls["drift_confidence"] >= 0.7)]
    cracked = ("2Contamination_Aggregate_Crack_Breaking_Drifting/", "3Empty_no_ice/")
    assert len(sure_drift) and all(name.startswith(cracked) for name in sure_drift.index)
