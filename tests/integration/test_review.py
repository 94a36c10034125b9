"""``miffi label`` and ``miffi curate`` in real headless Chromium against the real server
process: keyboard labelling that survives reloads and kill -9, the uncertain-first order,
overrides that change the exports, no console errors or network loads, and the token."""

from __future__ import annotations

import os
import signal
import socket
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pandas as pd
import pytest
import starfile
from cryosparc.dataset import Dataset
from PIL import Image

from miffi.classify.combine import CATEGORIES
from miffi.cli import main
from miffi.evaluate.label_files import read_labels
from miffi.labels import GROUPS
from miffi.simulate.config import parse_detector
from miffi.simulate.dataset import simulate_dataset
from tests.support.browser import chromium_path, open_page
from tests.support.models import tiny_model
from tests.support.runners import miffi, serving

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A ``miffi run`` with a model on 8 simulated micrographs: results, predictions, cache."""
    root = tmp_path_factory.mktemp("review")
    simulate_dataset(root / "sim", 8, parse_detector("640x512@1.2"), seed=5, progress=False, workers=1)
    model = tiny_model(root / "model.pt")
    argv = ["run", "--input", root / "sim" / "micrographs.star", "--model", model, "--outdir", root / "run",
            "--device", "cpu", "--no-progress", "-q"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    return root / "run"


def local(url: str) -> tuple[str, ...]:
    """What a page of the server at ``url`` may load: the server itself, and data: URLs."""
    parts = urlsplit(url)
    return (f"{parts.scheme}://{parts.netloc}/", "data:")


def shown(page, micrograph: str) -> None:
    page.wait_for_function("name => document.getElementById('name').textContent === name", arg=micrograph)


def saved(page) -> None:
    page.wait_for_function("document.getElementById('state').textContent === 'saved'")


def test_labels_by_keyboard_survive_a_reload_and_kill_9(run, tmp_path):
    labels = tmp_path / "labels.csv"
    argv = ("label", run / "results.tsv", "--labels", labels, "--order", "acquisition", "--port", "0")
    with serving(*argv) as (server, url), open_page(url, local=local(url)) as page:
        second = miffi(*argv)  # another server on the same file would overwrite this one's labels
        assert second.returncode == 2
        assert "labels.csv: is in use by another miffi label or curate: stop that one first" in second.stderr
        shown(page, "sim_00000")
        for key in ("2", "w", "a", "z", "Enter"):  # minor film, a crack, not crystalline, minor: save, go on
            page.keyboard.press(key)
        shown(page, "sim_00001")
        saved(page)
        page.keyboard.press("g")  # all good
        shown(page, "sim_00002")
        saved(page)
        page.reload()
        shown(page, "sim_00002")  # resumes at the first unlabelled micrograph
        page.keyboard.press("ArrowLeft")
        shown(page, "sim_00001")
        page.keyboard.press("ArrowLeft")
        shown(page, "sim_00000")
        # the saved labels are marked (each button reads label + key)
        saved_buttons = page.locator("#decide button.saved").all_inner_texts()
        assert saved_buttons == ["minor_film2", "crack_drift_emptyw", "not_crystallinea", "minor_contaminationz"]
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        shown(page, "sim_00002")
        for key in ("1", "q", "d", "x", "Enter"):  # no film, no crack, major crystalline, major contamination
            page.keyboard.press(key)
        shown(page, "sim_00003")
        saved(page)
        assert page.errors == []
        os.kill(server.pid, signal.SIGKILL)  # nothing said was saved may be lost
        server.wait()
    table = read_labels(labels).set_index("micrograph")
    assert table.index.tolist() == ["sim_00000", "sim_00001", "sim_00002"]
    assert table.loc["sim_00000", list(GROUPS)].tolist() == [
        "minor_film", "crack_drift_empty", "not_crystalline", "minor_contamination"
    ]  # fmt: skip
    assert table.loc["sim_00002", ["crystallinity", "contamination"]].tolist() == [
        "major_crystalline",
        "major_contamination",
    ]
    assert table["good"].tolist() == [False, True, False]
    with serving(*argv) as (server, url), open_page(url, local=local(url)) as page:
        shown(page, "sim_00003")  # a restart resumes too
        assert page.locator("#progress").inner_text() == "3 labelled of 8"
        assert page.errors == []


def expected_uncertain_order(run) -> list[str]:
    """Most uncertain first, worked out here from the run's files: 1 - confidence, plus 1
    where the weight-free classifier disagrees, plus the share of squares whose call in a
    group is not the micrograph's majority's, averaged over the groups."""
    results = pd.read_csv(run / "results.tsv", sep="\t")
    predictions = pd.read_csv(run / "predictions.tsv", sep="\t")
    doubt = {}
    for _, row in results.iterrows():
        squares = predictions[predictions["micrograph"] == row["micrograph"]]
        spread = 0.0
        for labels in GROUPS.values():
            calls = squares[list(labels)].idxmax(axis=1)
            spread += 1 - calls.value_counts().iloc[0] / len(calls)
        doubt[row["micrograph"]] = 1 - row["confidence"] + (row["wf_category"] != row["category"]) + spread / 4
    return sorted(doubt, key=lambda m: (-doubt[m], list(results["micrograph"]).index(m)))


def test_curate_shows_the_most_uncertain_first_and_overrides_change_the_exports(run, tmp_path):
    overrides = tmp_path / "overrides.tsv"
    expected = expected_uncertain_order(run)
    results = pd.read_csv(run / "results.tsv", sep="\t").set_index("micrograph")
    moved, was = expected[0], results.loc[expected[0], "category"]
    target = "good" if was != "good" else "bad_multiple"  # an override that changes the category
    with serving("curate", run / "results.tsv", "--overrides", overrides, "--port", "0") as (_, url):
        with open_page(url, local=local(url)) as page:
            shown(page, expected[0])
            order = page.evaluate(
                "fetch('/api/order?order=uncertain', {headers: {'X-Miffi-Token': CONFIG.token}}).then(r => r.json())"
            )
            names = pd.read_csv(run / "results.tsv", sep="\t")["micrograph"].tolist()
            assert [names[row] for row in order["rows"]] == expected
            page.keyboard.press(str(CATEGORIES.index(target) + 1))  # the number key of the category
            shown(page, expected[1])
            saved(page)
            page.keyboard.press("Enter")  # confirms the run's call
            shown(page, expected[2])
            saved(page)
            assert page.errors == []
    decided = pd.read_csv(overrides, sep="\t")
    assert decided["micrograph"].tolist() == expected[:2]
    assert decided["override_source"].str.startswith("manual:").all()
    assert decided["category_override"].tolist() == [target, results.loc[expected[1], "category"]]

    out = tmp_path / "exports"
    done = miffi("export", run / "results.tsv", "--overrides", overrides, "--outdir", out)
    assert done.returncode == 0, done.stderr
    star = starfile.read(out / "relion" / f"{target}.star", always_dict=True)["micrographs"]
    assert f"micrographs/{moved}.mrc" in set(star["rlnMicrographName"])
    assert any(moved in line for line in (out / "lists" / f"{target}.txt").read_text().splitlines())
    exposures = Dataset.load(str(out / "cryosparc" / f"{target}.cs"))
    assert any(moved in str(path) for path in exposures["micrograph_blob/path"])
    before = out / "lists" / f"{was}.txt"
    assert not before.exists() or moved not in before.read_text()

    rerun = tmp_path / "rerun"
    argv = ["run", "--input", run.parent / "sim" / "micrographs.star", "--model", run.parent / "model.pt",
            "--outdir", rerun, "--cache", run / "cache", "--device", "cpu", "--no-progress", "-q",
            "--overrides", overrides]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    recorded = pd.read_csv(rerun / "results.tsv", sep="\t").set_index("micrograph")
    assert recorded.loc[moved, "category_override"] == target
    assert recorded.loc[moved, "category"] == was  # the run's own call is kept beside it
    assert recorded["override_source"].notna().sum() == 2
    assert (rerun / "lists" / f"{target}.txt").read_text() == (out / "lists" / f"{target}.txt").read_text()


def outside_address() -> str | None:
    """This machine's address on a network (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def status(url: str, **headers: str) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_token_is_required_from_outside(run, tmp_path):
    address = outside_address()
    if address is None:
        pytest.skip("this machine has no network address besides loopback")
    argv = ("curate", run / "results.tsv", "--overrides", tmp_path / "o.tsv", "--host", "0.0.0.0", "--port", "0")
    with serving(*argv) as (_, url):
        parts = urlsplit(url)
        token = parts.query.removeprefix("token=")
        outside = f"http://{address}:{parts.port}"
        assert status(f"{outside}/") == 403
        assert status(f"{outside}/api/order") == 403
        assert status(f"{outside}/picture/0/image.png") == 403
        assert status(f"{outside}/?token=wrong") == 403
        assert status(f"{outside}/?token={token}") == 200
        assert status(f"{outside}/api/order", **{"X-Miffi-Token": token}) == 200
        assert status(f"http://127.0.0.1:{parts.port}/api/order") == 403  # loopback needs it too
        # a change needs the header, not only the cookie a browser would send cross-site
        body = b'{"rows": [0], "category": "good"}'
        request = urllib.request.Request(
            f"{outside}/api/overrides", data=body, headers={"Cookie": f"miffi_token={token}"}, method="POST"
        )
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(request, timeout=30)
    assert not (tmp_path / "o.tsv").exists()


def test_a_hand_edited_results_table_is_honoured_or_refused(run, tmp_path):
    for name in ("results.tsv", "results.parquet"):
        (tmp_path / name).write_bytes((run / name).read_bytes())
    table = pd.read_csv(tmp_path / "results.tsv", sep="\t", dtype=str, keep_default_na=False)
    first = table["micrograph"].iloc[0]
    was = table["category"].iloc[0]
    table.loc[0, "category"] = "good" if was != "good" else "bad_drift"
    table.to_csv(tmp_path / "results.tsv", sep="\t", index=False)
    done = miffi("export", tmp_path / "results.tsv", "--outdir", tmp_path / "x", "--formats", "lists")
    assert done.returncode == 0, done.stderr
    assert "results.tsv was edited after miffi wrote it: the edited table is used" in done.stderr
    now = table.loc[0, "category"]
    assert any(first in line for line in (tmp_path / "x" / "lists" / f"{now}.txt").read_text().splitlines())

    table.loc[0, "category"] = "goood"
    table.to_csv(tmp_path / "results.tsv", sep="\t", index=False)
    done = miffi("export", tmp_path / "results.tsv", "--outdir", tmp_path / "y", "--formats", "lists")
    assert done.returncode == 2
    assert f"results.tsv: micrograph '{first}': category 'goood' is not a category (categories: good," in done.stderr
    assert not (tmp_path / "y").exists()


def test_png_writes_the_models_view_per_category(run, tmp_path):
    done = miffi("png", run / "results.tsv", "--out", tmp_path / "png", "--no-progress")
    assert done.returncode == 0, done.stderr
    results = pd.read_csv(run / "results.tsv", sep="\t")
    written = sorted(p.relative_to(tmp_path / "png").as_posix() for p in (tmp_path / "png").rglob("*.png"))
    assert written == sorted(f"{c}/{m}.png" for c, m in zip(results["category"], results["micrograph"]))
    with Image.open(next((tmp_path / "png").rglob("*.png"))) as picture:  # image and spectrum, squares side by side
        assert picture.mode == "L" and picture.size == (4 * 384 + 3 * 4, 384)
