"""Model files and outputs: a damaged or foreign model file is one line naming it; NaN
or Inf outputs are an error naming the model and the micrographs, never a category; a
malicious pickle runs nothing."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import pytest
import timm
import torch

from miffi.classify.models import save_checkpoint
from miffi.preprocess.config import PreprocessConfig
from tests.support.micrographs import structured_image, write_mrc
from tests.support.models import save_torchscript
from tests.support.runners import cli, one_error_line


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two preprocessed micrographs and their table."""
    root = tmp_path_factory.mktemp("model_inputs")
    mics = [write_mrc(root / f"m{i}.mrc", structured_image((512, 512), i), pixel_size=1.2) for i in range(2)]
    from miffi.cli import main

    table = root / "ds.micrographs.tsv"
    assert main(["intake", *map(str, mics), "--out", str(table)]) == 0
    assert main(["preprocess", str(table), "--out", str(root / "cache"), "--no-progress"]) == 0
    return table, root / "cache"


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    module = timm.create_model("convnext_atto", pretrained=False, in_chans=2, num_classes=11).eval()
    files = {
        "state_dict": folder / "good.pth",
        "torchscript": folder / "good.pt",
        "checkpoint": folder / "good.safetensors",
    }
    torch.save(module.state_dict(), files["state_dict"])
    save_torchscript(module, files["torchscript"])
    save_checkpoint(module, files["checkpoint"], "convnext_atto", PreprocessConfig())
    for value, name in ((float("nan"), "nan"), (float("inf"), "inf")):
        broken = timm.create_model("convnext_atto", pretrained=False, in_chans=2, num_classes=11).eval()
        with torch.no_grad():
            broken.head.fc.bias[3] = value
        files[f"{name}_state_dict"] = folder / f"{name}.pth"
        torch.save(broken.state_dict(), files[f"{name}_state_dict"])
        files[f"{name}_checkpoint"] = folder / f"{name}.safetensors"
        save_checkpoint(broken, files[f"{name}_checkpoint"], "convnext_atto", PreprocessConfig())
    return files


def _infer(capsys, dataset, model: Path, tmp_path: Path):
    table, cache = dataset
    out = tmp_path / "predictions.tsv"
    outcome = cli(
        capsys,
        "infer",
        table,
        "--cache",
        cache,
        "--model",
        model,
        "--arch",
        "convnext_atto",
        "--device",
        "cpu",
        "--out",
        out,
        "--no-progress",
    )
    return outcome, out


@pytest.mark.parametrize("kind", ["nan_state_dict", "inf_state_dict", "nan_checkpoint", "inf_checkpoint"])
def test_non_finite_outputs_are_an_error_naming_the_model(capsys, dataset, model_files, tmp_path, kind):
    outcome, out = _infer(capsys, dataset, model_files[kind], tmp_path)
    line = one_error_line(outcome.err)
    assert outcome.code == 2
    assert str(model_files[kind]) in line and "non-finite outputs (NaN/Inf) for 2 of 2 squares" in line, line
    assert "m0, m1" in line and not out.exists()


def _safetensors_with(metadata: dict[str, str] | None, header_extra: bytes = b"") -> bytes:
    header = {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode() + header_extra
    return struct.pack("<Q", len(text)) + text + b"\x00" * 4


class _Payload:
    """A pickle that would create a marker file if anything unpickled it unrestricted."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _damaged(name: str, good: dict[str, Path], folder: Path) -> tuple[Path, str]:
    path = folder / name
    if name == "empty.pt":
        path.write_bytes(b"")
        return path, "not a model file"
    if name == "random.pt":
        path.write_bytes(os.urandom(5000))
        return path, "not a model file"
    if name == "text.pth":
        path.write_text("this is not a model\n")
        return path, "not a model file"
    if name == "folder.pt":
        path.mkdir()
        return path, "model file not found"
    if name.startswith("truncated"):
        source = good[
            {"truncated.pt": "torchscript", "truncated.pth": "state_dict", "truncated.safetensors": "checkpoint"}[name]
        ].read_bytes()
        path.write_bytes(source[: len(source) // 2])
        return path, {"truncated.safetensors": "damaged safetensors file"}.get(name, "not a model file")
    metadata = {
        "no_metadata.safetensors": None,
        "bad_json.safetensors": {"miffi": "{not json"},
        "list_metadata.safetensors": {"miffi": "[1, 2]"},
        "no_arch.safetensors": {"miffi": json.dumps({"labels": {}, "preprocess": {}})},
        "wrong_types.safetensors": {"miffi": json.dumps({"arch": 3, "labels": [], "preprocess": "x"})},
        "bad_preprocess.safetensors": {
            "miffi": json.dumps(
                {
                    "arch": "convnext_atto",
                    "labels": {
                        "film": ["no_film", "minor_film", "major_film", "film"],
                        "drift": ["no_crack_drift", "crack_drift_empty"],
                        "crystallinity": ["not_crystalline", "minor_crystalline", "major_crystalline"],
                        "contamination": ["minor_contamination", "major_contamination"],
                    },
                    "preprocess": {"no_such_setting": 1},
                }
            )
        },
    }[name]
    path.write_bytes(_safetensors_with(metadata))
    expected = {
        "no_metadata.safetensors": "without miffi metadata",
        "bad_json.safetensors": "not valid JSON",
        "list_metadata.safetensors": "is not a mapping",
        "no_arch.safetensors": "lacks arch",
        "wrong_types.safetensors": "of the wrong type",
        "bad_preprocess.safetensors": "preprocessing config is not usable",
    }[name]
    return path, expected


DAMAGED = [
    "empty.pt",
    "random.pt",
    "text.pth",
    "folder.pt",
    "truncated.pt",
    "truncated.pth",
    "truncated.safetensors",
    "no_metadata.safetensors",
    "bad_json.safetensors",
    "list_metadata.safetensors",
    "no_arch.safetensors",
    "wrong_types.safetensors",
    "bad_preprocess.safetensors",
]


@pytest.mark.parametrize("name", DAMAGED)
def test_damaged_model_file_is_one_line_naming_it(capsys, dataset, model_files, tmp_path, name):
    path, expected = _damaged(name, model_files, tmp_path)
    outcome, out = _infer(capsys, dataset, path, tmp_path)
    line = one_error_line(outcome.err)
    assert outcome.code == 2 and str(path) in line and expected in line, line
    assert not out.exists()


def test_malicious_pickle_runs_nothing(capsys, dataset, tmp_path):
    marker = tmp_path / "MARKER"
    model = tmp_path / "evil.pth"
    model.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}))
    outcome, _ = _infer(capsys, dataset, model, tmp_path)
    assert outcome.code == 2 and str(model) in one_error_line(outcome.err)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["state_dict", "torchscript", "checkpoint"])
def test_good_models_still_load(capsys, dataset, model_files, tmp_path, kind):
    outcome, out = _infer(capsys, dataset, model_files[kind], tmp_path)
    assert outcome.code == 0, outcome.err
    assert out.is_file()
