"""Facility inputs and exports, checked with the real consumers: RELION 3.1's own
relion_star_handler reads every star we write (its *output* is compared, row by row) and
cryosparc-tools loads every .cs. Inputs: a micrographs star, a particles star, a .csg, a
.cs, a list and a folder of the same simulated micrographs; star kinds from real RELION
files."""

from __future__ import annotations

import logging
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import starfile
import yaml
from cryosparc.dataset import Dataset
from cryosparc.tools import get_import_signatures

from miffi.cli import main
from miffi.errors import InputError
from miffi.intake import read_micrographs
from miffi.simulate.config import parse_detector
from miffi.simulate.dataset import simulate_dataset
from tests.support.consumers import relion_reads

#: Particles per simulated micrograph in the particles star (12 in all).
PARTICLES = [1, 2, 3, 1, 2, 3]
#: The fields cryoSPARC's own exposures have (micrograph_blob, mscope_params) and, with a CTF fit, ctf.
EXPOSURE_FIELDS = {
    "micrograph_blob/path": "O",
    "micrograph_blob/idx": "<u4",
    "micrograph_blob/shape": "<u4",
    "micrograph_blob/psize_A": "<f4",
    "micrograph_blob/format": "O",
    "micrograph_blob/is_background_subtracted": "<u4",
    "micrograph_blob/vmin": "<f4",
    "micrograph_blob/vmax": "<f4",
    "micrograph_blob/import_sig": "<u8",
    "mscope_params/accel_kv": "<f4",
    "mscope_params/cs_mm": "<f4",
    "mscope_params/exp_group_id": "<u4",
}
CTF_FIELDS = {
    "ctf/type",
    "ctf/exp_group_id",
    "ctf/accel_kv",
    "ctf/cs_mm",
    "ctf/amp_contrast",
    "ctf/df1_A",
    "ctf/df2_A",
    "ctf/df_angle_rad",
    "ctf/phase_shift_rad",
    "ctf/scale",
    "ctf/anisomag",
    "ctf/bfactor",
}

needs_relion = pytest.mark.skipif(
    not shutil.which("relion_star_handler"), reason="RELION is not installed (scripts/install-system-tools.sh)"
)


def particles_star(micrographs_star, path, image_pixel_size=2.4, original_pixel_size=1.2):
    """A RELION 3.1 particles star of the simulated micrographs: particles extracted at
    ``image_pixel_size`` (binned), the optics group stating only the movies' pixel size."""
    source = starfile.read(micrographs_star, always_dict=True)
    optics = (
        source["optics"]
        .drop(columns=["rlnMicrographPixelSize"])
        .assign(
            rlnMicrographOriginalPixelSize=original_pixel_size,
            rlnImagePixelSize=image_pixel_size,
            rlnImageSize=64,
            rlnImageDimensionality=2,
        )
    )
    rows = []
    for count, (_, micrograph) in zip(PARTICLES, source["micrographs"].iterrows()):
        for k in range(count):
            rows.append(
                {
                    "rlnCoordinateX": 100.0 + 50 * k,
                    "rlnCoordinateY": 200.0,
                    "rlnImageName": f"{k + 1:06d}@Extract/job007/{micrograph['rlnMicrographName']}s",
                    "rlnMicrographName": micrograph["rlnMicrographName"],
                    "rlnOpticsGroup": 1,
                    "rlnDefocusU": micrograph["rlnDefocusU"],
                    "rlnDefocusV": micrograph["rlnDefocusV"],
                    "rlnDefocusAngle": micrograph["rlnDefocusAngle"],
                    "rlnAngleRot": 10.0 * len(rows),
                }
            )
    starfile.write({"optics": optics, "particles": pd.DataFrame(rows)}, path, overwrite=True)
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Six simulated micrographs (1.2 Å) with their star, .cs/.csg, a particles star and a list."""
    root = tmp_path_factory.mktemp("facility")
    simulate_dataset(root / "data", 6, parse_detector("640x512@1.2"), seed=4, progress=False, workers=1)
    particles_star(root / "data" / "micrographs.star", root / "data" / "particles.star")
    paths = sorted((root / "data" / "micrographs").glob("*.mrc"))
    (root / "data" / "micrographs.txt").write_text("".join(f"{p}\n" for p in paths))
    return root


def run(project, tmp_path, source, *extra):
    inputs = {
        "star": "micrographs.star",
        "particles": "particles.star",
        "csg": "exposures.csg",
        "cs": "exposures.cs",
        "list": "micrographs.txt",
        "folder": "micrographs",
    }
    out = tmp_path / "out"
    code = main(
        [
            "run",
            "--input",
            str(project / "data" / inputs[source]),
            "--outdir",
            str(out),
            "--cache",
            str(project / "cache"),
            "--device",
            "cpu",
            "--no-progress",
            *extra,
        ]
    )
    assert code == 0
    return out, pd.read_csv(out / "results.tsv", sep="\t")


def members(results, name):
    """The micrographs of an export collection."""
    single = results["category"].str.startswith("bad_") & (results["category"] != "bad_multiple")
    return results.loc[single if name == "bad_single" else results["category"] == name, "micrograph"]


@pytest.mark.parametrize(
    "name, problem",
    [
        ("micrographs_ctf.star", None),
        ("corrected_micrographs.star", None),
        ("topaz_empiar10025_ctf_params.star", None),
        ("autopick.star", "lists particle coordinate files: give the micrographs star"),
        ("20170629_00049_frameImage_autopick.star", "holds the particle coordinates of one micrograph"),
        ("movie_frameImage.star", "lists movies, not micrographs: motion-correct them first"),
        ("mtf_k2_200kV.star", "no data block with a rlnMicrographName column"),
    ],
)
def test_star_kinds_of_real_relion_files(realdata, tmp_path, name, problem):
    star = realdata / "relion_star" / name
    if problem is None:
        table = read_micrographs([star], project_dir=tmp_path)
        assert len(table) == len(starfile.read(star, always_dict=True).get("micrographs", table))
        assert (table["pixel_size_source"] == "metadata").all()
    else:
        with pytest.raises(InputError, match=re.escape(problem)) as error:
            read_micrographs([star], project_dir=tmp_path)
        assert str(star) in str(error.value)


def test_a_particles_star_reads_as_its_micrographs_at_the_micrograph_pixel_size(project):
    table = read_micrographs([project / "data" / "particles.star"])
    assert len(table) == 6 and table["particles"].tolist() == PARTICLES
    assert table["pixel_size"].tolist() == [1.2] * 6  # the micrographs', never rlnImagePixelSize 2.4
    assert table["input_block"].unique().tolist() == ["particles"]


def test_binned_micrographs_take_the_header_pixel_size_with_a_warning(project, tmp_path, caplog):
    star = particles_star(
        project / "data" / "micrographs.star", tmp_path / "particles.star", original_pixel_size=0.6
    )  # super-resolution movies, binned 2× in motion correction
    with caplog.at_level(logging.WARNING):
        table = read_micrographs([star], project_dir=project / "data")
    assert np.allclose(table["pixel_size"], 1.2) and set(table["pixel_size_source"]) == {"header"}
    assert "gives only the movies' pixel size (0.6 Å" in caplog.text and "headers say 1.2 Å" in caplog.text


@needs_relion
def test_particles_star_export_keeps_every_particle_and_block(project, tmp_path):
    out, results = run(project, tmp_path, "particles", "--formats", "relion,cryosparc")
    source = starfile.read(project / "data" / "particles.star", always_dict=True)
    exported = 0
    for star in sorted((out / "relion").glob("*.star")):
        blocks = starfile.read(star, always_dict=True)
        assert list(blocks) == ["optics", "particles"]
        pd.testing.assert_frame_equal(blocks["optics"], source["optics"])
        names = {f"micrographs/{m}.mrc" for m in members(results, star.stem)}
        expected = source["particles"][source["particles"]["rlnMicrographName"].isin(names)].reset_index(drop=True)
        pd.testing.assert_frame_equal(blocks["particles"], expected)
        assert len(relion_reads(star, "particles")["particles"]) == len(expected)
        exported += len(expected) if star.stem != "bad_single" else 0
    assert exported == sum(PARTICLES)  # every particle is in exactly one category
    cs = Dataset.load(str(out / "cryosparc" / f"{results['category'].iloc[0]}.cs"))
    assert set(EXPOSURE_FIELDS) | CTF_FIELDS <= set(cs.fields())
    assert set(cs["micrograph_blob/psize_A"]) == {np.float32(1.2)}


@needs_relion
@pytest.mark.parametrize("source", ["star", "csg", "cs", "list", "folder"])
def test_relion_and_cryosparc_read_every_export(project, tmp_path, source, caplog):
    extra = ["--voltage", "200", "--cs", "2.0", "--amplitude-contrast", "0.07"] if source == "list" else []
    with caplog.at_level(logging.WARNING):
        out, results = run(project, tmp_path, source, "--cryosparc-project-dir", str(project), *extra)
    micrographs = starfile.read(project / "data" / "micrographs.star", always_dict=True)["micrographs"]
    micrographs.index = [name.split("/")[-1][:-4] for name in micrographs["rlnMicrographName"]]
    stars = sorted((out / "relion").glob("*.star"))
    assert {s.stem for s in stars} == {c for c in [*results["category"], "bad_single"] if len(members(results, c))}
    for star in stars:
        wanted = list(members(results, star.stem))
        read = relion_reads(star, "micrographs")
        assert len(read["micrographs"]) == len(wanted)
        optics = read["optics"].iloc[0]
        if source == "list":  # the user's optics
            assert (optics["rlnVoltage"], optics["rlnSphericalAberration"], optics["rlnAmplitudeContrast"]) == (
                200,
                2.0,
                0.07,
            )
        else:  # the input's, or for a folder the stated defaults
            assert (optics["rlnVoltage"], optics["rlnSphericalAberration"], optics["rlnAmplitudeContrast"]) == (
                300,
                2.7,
                0.1,
            )
        assert optics["rlnMicrographPixelSize"] == pytest.approx(1.2)
        if source in ("star", "csg", "cs"):  # the CTF fit travels with the micrographs
            fit = read["micrographs"]
            stems = [name.split("/")[-1][:-4] for name in fit["rlnMicrographName"]]
            assert sorted(stems) == sorted(wanted)
            assert fit["rlnDefocusU"].to_numpy() == pytest.approx(micrographs.loc[stems, "rlnDefocusU"], rel=1e-5)
            assert fit["rlnDefocusAngle"].to_numpy() == pytest.approx(
                micrographs.loc[stems, "rlnDefocusAngle"], abs=1e-3
            )
        cs = Dataset.load(str(out / "cryosparc" / f"{star.stem}.cs"))
        assert len(cs) == len(wanted)
        if source not in ("csg", "cs"):
            for field, dtype in EXPOSURE_FIELDS.items():
                assert np.dtype(cs[field].dtype).str.replace("|", "") == dtype.replace("|", ""), field
            assert (CTF_FIELDS <= set(cs.fields())) == (source == "star")
            absolute = [str(project / p) for p in cs["micrograph_blob/path"]]
            assert all(not p.startswith("/") for p in cs["micrograph_blob/path"])  # relative to the project
            assert list(cs["micrograph_blob/import_sig"]) == get_import_signatures(absolute)
            assert set(cs["micrograph_blob/format"]) == {"MRC/2"}
            assert (cs["micrograph_blob/vmax"] > cs["micrograph_blob/vmin"]).all()
        group = yaml.safe_load((out / "cryosparc" / f"{star.stem}.csg").read_text())
        assert re.fullmatch(r"v\d+\.\d+.*|miffi-simulate-.*", group["version"])
        assert {entry["num_items"] for entry in group["results"].values()} == {len(wanted)}
    if source == "folder":
        assert "the exports say --voltage 300 kV, --cs 2.7 mm, --amplitude-contrast 0.1" in caplog.text


def test_cryosparc_exposures_without_a_ctf_fit_read_back_through_intake(project, tmp_path):
    """A .cs we write from a list is itself an input: read back, it names the same micrographs."""
    out, results = run(project, tmp_path, "list", "--formats", "cryosparc")
    written = sorted((out / "cryosparc").glob("*.csg"))
    table = read_micrographs([str(p) for p in written if p.stem != "bad_single"], project_dir=project)
    assert sorted(table["micrograph"]) == sorted(results["micrograph"])
    assert np.allclose(table["pixel_size"], 1.2) and set(table["pixel_size_source"]) == {"metadata"}


def test_microscope_options_are_checked(project, tmp_path, capsys):
    code = main(["export", "x.tsv", "--outdir", str(tmp_path), "--voltage", "-5"])
    assert code == 2 and "voltage -5" in capsys.readouterr().err
