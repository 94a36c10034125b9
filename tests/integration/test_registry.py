"""The registry of published models: its facts, resolving a name to its downloaded file
(library, ``miffi run --model NAME``, the workflow's ``model: NAME``), and download's use of it."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from miffi.classify import download, registry
from miffi.classify.download import RemoteFile, download_models
from miffi.classify.models import load_classifier
from miffi.errors import MiffiError, ModelError
from miffi.pipeline import RunOptions, method_name
from miffi.preprocess.config import PreprocessConfig
from miffi.simulate.config import parse_detector
from miffi.simulate.dataset import simulate_dataset
from tests.support.models import tiny_model
from tests.support.runners import ENV, needs_snakemake
from tests.support.runners import snakemake as run_snakemake


@pytest.fixture
def models(tmp_path, monkeypatch):
    """An empty models folder named by $MIFFI_MODELS."""
    folder = tmp_path / "models_here"
    folder.mkdir()
    monkeypatch.setenv(registry.MODELS_ENV, str(folder))
    return folder


def test_registry_holds_the_published_models():
    assert registry.list_models() == ["miffi_v1", "miffi_no_ps_v1", "miffi_no_pretrain_no_ps_v1"]
    for name in registry.list_models():
        entry = registry.get_model(name)
        assert entry.name == name and entry.key == f"{name}.pt"
        assert RemoteFile(entry.key, "url", "0" * 32, None).model == name  # download's name for the file
        assert entry.arch == registry.DEFAULT_ARCH == "convnext_small"
        assert entry.md5 is None or (len(entry.md5) == 32 and int(entry.md5, 16) >= 0)
        assert registry.by_file_name(entry.key) is entry
    assert registry.get_model("miffi_v1").preprocess == PreprocessConfig(power_spectrum=True)
    assert registry.get_model("miffi_v1").channels == 2
    assert registry.get_model("miffi_no_ps_v1").channels == 1
    assert registry.get_model("miffi_no_pretrain_no_ps_v1").channels == 1
    assert registry.get_model("miffi_no_pretrain_no_ps_v1").pretrained is None
    # download has no list of its own
    assert download.DEFAULT_MODELS is registry.DEFAULT_MODELS
    assert download.RECORD_URL == registry.RECORD_URL == "https://zenodo.org/api/records/8342009"
    with pytest.raises(MiffiError, match="unknown model 'miffi_v2'.*miffi_v1, miffi_no_ps_v1"):
        registry.get_model("miffi_v2")


def test_download_writes_the_file_resolution_looks_for(tmp_path, monkeypatch, zenodo):
    [path] = download_models(tmp_path, ["miffi_v1"], zenodo.record_url, progress=False)
    monkeypatch.setenv(registry.MODELS_ENV, str(tmp_path))
    assert registry.resolve_model("miffi_v1") == path
    # a pinned checksum is checked against the record's before anything is fetched
    good = hashlib.md5(zenodo.files["miffi_no_ps_v1.pt"]).hexdigest()
    entry = registry.MODELS["miffi_no_ps_v1"]
    monkeypatch.setitem(registry.MODELS, "miffi_no_ps_v1", dataclasses.replace(entry, md5=good))
    download_models(tmp_path, ["miffi_no_ps_v1"], zenodo.record_url, progress=False)
    assert (tmp_path / "miffi_no_ps_v1.pt").read_bytes() == zenodo.files["miffi_no_ps_v1.pt"]
    (tmp_path / "miffi_no_ps_v1.pt").unlink()
    monkeypatch.setitem(registry.MODELS, "miffi_no_ps_v1", dataclasses.replace(entry, md5="f" * 32))
    with pytest.raises(MiffiError, match="registry pins f{32}"):
        download_models(tmp_path, ["miffi_no_ps_v1"], zenodo.record_url, progress=False)
    assert not list(tmp_path.glob("miffi_no_ps_v1.pt*"))
    assert len(zenodo.downloads("miffi_no_ps_v1.pt")) == 1  # only the first, pinned-and-matching one


def test_a_downloaded_model_is_found_by_name(models):
    tiny_model(models / "miffi_no_ps_v1.pt", channels=1)
    for given in ("miffi_no_ps_v1", Path("miffi_no_ps_v1")):  # the CLI's --model is a Path
        classifier = load_classifier(given)
        assert Path(classifier.path) == models / "miffi_no_ps_v1.pt"
        assert classifier.kind == "torchscript" and classifier.arch == "convnext_small"
        assert classifier.config == registry.get_model("miffi_no_ps_v1").preprocess
    # the file by its path gets the registry's config as well
    assert load_classifier(models / "miffi_no_ps_v1.pt").config == PreprocessConfig(power_spectrum=False)
    assert RunOptions(model=Path("miffi_no_ps_v1")).model == models / "miffi_no_ps_v1.pt"
    assert method_name("miffi_no_ps_v1") == method_name(models / "miffi_no_ps_v1.pt") == "model:miffi_no_ps_v1.pt"


def test_a_file_that_is_not_the_published_model_is_refused(models):
    tiny_model(models / "miffi_v1.pt", channels=1)  # miffi_v1 takes two channels
    with pytest.raises(ModelError, match=r"miffi_v1\.pt: takes 1 input channel.*'miffi_v1' takes 2"):
        load_classifier("miffi_v1")


def test_a_missing_download_names_the_folder_and_the_command(models, tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="not downloaded") as error:
        load_classifier("miffi_v1")
    message = str(error.value)
    assert str(models / "miffi_v1.pt") in message and str(models) in message and "$MIFFI_MODELS" in message
    assert f"miffi download --dir {models} --models miffi_v1" in message
    # without $MIFFI_MODELS: models/ of the current directory, as `miffi download`'s default
    monkeypatch.delenv(registry.MODELS_ENV)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ModelError,
        match=r"^models/miffi_v1\.pt: .*the default folder.*"
        r"`miffi download --dir models --models miffi_v1`",
    ):
        registry.resolve_model("miffi_v1")
    tiny_model(tmp_path / "models" / "miffi_v1.pt", channels=2)
    assert registry.resolve_model("miffi_v1") == Path("models/miffi_v1.pt")
    # a path is a path, even one that looks like a name elsewhere
    assert registry.resolve_model("elsewhere/miffi_v1") == Path("elsewhere/miffi_v1")
    assert not registry.is_model_name("models/miffi_v1.pt") and not registry.is_model_name(None)


@pytest.fixture(scope="module")
def micrographs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim")
    simulate_dataset(folder, 2, parse_detector("512x512@1.2"), seed=3, progress=False, workers=1)
    return sorted((folder / "micrographs").glob("*.mrc"))


def test_miffi_run_resolves_a_model_name(models, micrographs, tmp_path, capsys):
    from miffi.cli import main

    argv = [
        "run",
        "--input",
        *map(str, micrographs),
        "--model",
        "miffi_v1",
        "--device",
        "cpu",
        "--outdir",
        str(tmp_path / "out"),
        "--no-progress",
    ]
    assert main(argv) == 2
    assert "miffi download --dir" in capsys.readouterr().err
    tiny_model(models / "miffi_v1.pt", channels=2)
    assert main(argv) == 0, capsys.readouterr().err
    results = pd.read_csv(tmp_path / "out" / "results.tsv", sep="\t")
    assert len(results) == 2 and set(results["classifier"]) == {"model:miffi_v1.pt"}


def snakemake(workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    """A workflow run that finds models only in its own models/ folder (no $MIFFI_MODELS)."""
    env = {k: v for k, v in ENV.items() if k != registry.MODELS_ENV}
    return run_snakemake(workdir, *extra, cores=1, env=env, timeout=600)


@needs_snakemake
def test_workflow_plans_with_the_downloaded_file(tmp_path, micrographs):
    (tmp_path / "mics.txt").write_text("".join(f"{p}\n" for p in micrographs))

    def configure(**dataset):
        config = {"outdir": "out", "datasets": {"ds": {"input": ["mics.txt"], "chunks": 1, "device": "cpu", **dataset}}}
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))

    configure(model="miffi_no_ps_v1")
    missing = snakemake(tmp_path, "-n")
    assert missing.returncode != 0
    assert "miffi download --dir models --models miffi_no_ps_v1" in missing.stdout + missing.stderr
    tiny_model(tmp_path / "models" / "miffi_no_ps_v1.pt", channels=1)
    intake = snakemake(tmp_path, "out/ds/micrographs.micrographs.tsv")  # the checkpoint, so the chunks are known
    assert intake.returncode == 0, intake.stderr[-3000:]
    plan = snakemake(tmp_path, "-n", "-p")
    assert plan.returncode == 0, plan.stderr[-3000:]
    text = plan.stdout + plan.stderr
    assert "--model=models/miffi_no_ps_v1.pt" in text
    assert "--channels=1" in text and "--channels=2" not in text  # the model's, not the default
    configure(model="miffi_no_ps_v1", channels=2)
    conflict = snakemake(tmp_path, "-n")
    assert conflict.returncode != 0
    assert "datasets.ds.channels: 2 does not fit model 'miffi_no_ps_v1'" in conflict.stdout + conflict.stderr
