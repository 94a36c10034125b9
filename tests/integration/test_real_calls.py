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
from miffi.preprocess.metric_names import METRICS
from miffi.preprocess.metrics import realspace_metrics
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
    """The classifier's calls from real-space metrics alone (spectra unknown), with the
    metrics."""
    metrics = {}
    for name, (path, pixel_size) in paths_and_sizes.items():
        square = dict.fromkeys(METRICS, math.nan)
        square.update(realspace_metrics(grey(path), pixel_size))
        metrics[name] = [square]
    calls = categorise(combine(predict_metrics(metrics))).set_index("micrograph")
    return calls.join(pd.DataFrame({name: squares[0] for name, squares in metrics.items()}).T)


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


CONTAMINATION = "2Contamination_Aggregate_Crack_Breaking_Drifting/"
#: The real images found to have a support-film (hole) edge across the view, each one by
#: eye too, and the film labels expected (None: film, or no film without confidence). The
#: first two are the EPU thumbnails, the others MicAssess examples of their classes.
FILM_EDGES: dict[str, tuple[str, ...] | None] = {
    "FoilHole_9015883_Data_9017354_6_20250108_154918.jpg": ("minor_film",),  # carbon in a corner
    # a faint edge, its intensity step no stronger than the particles' gradients: found by
    # the finer texture of the carbon in the top-left corner
    "FoilHole_9015883_Data_9017347_6_20250108_154915.jpg": ("minor_film",),
    "1Decent/18apr26h_grid4e_00123gr_00009sq_00022hl_00010en-a.png": ("major_film",),  # two fifths
    # a strip of carbon that is lighter than the hole's ice: the darker-side rule reads it
    # the wrong way round (hence weightfree.SIDE_SUREST)
    CONTAMINATION + "20feb12b_hexFK__00028gr_00028sq_v01_00002hl_v01_00004en-a.png": None,
    # thick film that reads as dark contamination, which explains the edge away
    "3Empty_no_ice/19apr30a_grid1_00056gr_00011sq_00003hl_00003en-a.png": None,
    # an empty hole with carbon in its top-left corner (found by its texture): minor film,
    # a good film label; the bright fringe along the edge, read as a crack, explains the
    # edge away, so it may read no film, the other good one
    "3Empty_no_ice/19aug17a_grid5_00090gr_00048sq_00002hl_00012en-a.png": ("minor_film", "no_film"),
    "4Crystalline_ice/19aug14a_grid5_00086gr_00036sq_00005hl_00002en-a.png": ("minor_film",),
}


def real_images(realdata) -> dict[str, tuple[object, float | None]]:
    """Every coarse real image (EPU thumbnails at 11.9 Å, MicAssess PNGs without a scale)."""
    images: dict[str, tuple[object, float | None]] = {
        p.name: (p, 11.9) for p in sorted((realdata / "epu_thumbnails").glob("*.jpg"))
    }
    images.update(
        {f"{p.parent.name}/{p.name}": (p, None) for p in sorted((realdata / "micassess_labeled_png").rglob("*.png"))}
    )
    return images


@pytest.fixture(scope="module")
def coarse(realdata) -> pd.DataFrame:
    """The classifier's calls on every coarse real image, with their metrics."""
    return coarse_calls(real_images(realdata))


def test_every_coarse_real_image_is_called(coarse):
    assert len(coarse) == 2 + 30 and coarse["category"].notna().all()


def test_support_film_edges_are_found_where_the_real_images_show_them(coarse):
    """A film edge (a line of strong gradient, or a straight step in texture) is found on
    the real images listed (each a hole edge by eye) and on no other, and it splits the
    view into film and hole: minor film where carbon covers a corner."""
    found = set(coarse.index[coarse["film_edge"] > 0.3])
    assert found == set(FILM_EDGES), found
    for name, expected in FILM_EDGES.items():
        row = coarse.loc[name]
        if expected:
            assert row["film"] in expected, (name, row["film"], row["film_side_fraction"])
        else:  # film, or not known
            assert row["film"] != "no_film" or row["film_confidence"] < 0.7, (name, row["film_confidence"])


def test_no_real_good_micrograph_is_called_bad_with_confidence(coarse, run):
    """MicAssess' Great/Decent and the CryoPPP micrographs are good, except the "Decent"
    view whose support film covers two fifths of it: major film by Miffi's labels (MicAssess
    judged usable particles, not film). None is called bad at 0.9 or more."""
    good = [name for name in coarse.index if name.startswith(GOOD_CLASSES)]
    calls = pd.concat([coarse.loc[good], run.loc[["cryoppp_10028", "cryoppp_10059"]]])
    assert len(calls) == 12
    confident_bad = calls[(calls["category"] != "good") & (calls["confidence"] >= 0.9)]
    assert confident_bad.empty, confident_bad[["category", "confidence"]]
    film_views = [name for name in calls.index if FILM_EDGES.get(name) == ("major_film",)]
    assert len(film_views) == 1 and calls.loc[film_views[0], "category"] == "bad_film"
    assert (calls.drop(index=film_views)["category"] == "good").all(), calls["category"]


def test_coarse_images_are_never_called_with_confidence_from_what_they_cannot_show(coarse):
    """At 11.9 Å per pixel (EPU thumbnails) or an unknown scale (MicAssess), crystalline
    ice and drift cannot be seen in a spectrum: crystallinity stays uncertain everywhere,
    and the only confident crack/drift/empty calls are those an image shows in real space
    (a bright area without ice), all of them in MicAssess' classes of cracks and of empty
    holes."""
    assert (coarse["crystallinity_confidence"] < 0.7).all()
    sure_drift = coarse[(coarse["drift"] == "crack_drift_empty") & (coarse["drift_confidence"] >= 0.7)]
    cracked = (CONTAMINATION, "3Empty_no_ice/")
    assert len(sure_drift) and all(name.startswith(cracked) for name in sure_drift.index)
