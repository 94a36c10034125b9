"""The published Miffi models as data (timm-style registry): the one home of their facts.

Each :class:`PublishedModel` says where the model comes from (Zenodo record 8342009,
its file name there), what it is (timm architecture, input channels) and how its inputs
are made (a :class:`~miffi.preprocess.config.PreprocessConfig`). ``miffi download``
fetches the registry's files; ``load_classifier``, ``miffi run --model`` and the
workflow's ``model:`` accept a registry name and find its downloaded file in the
models folder.

The models folder: ``$MIFFI_MODELS`` when set, else ``models/`` relative to the current
directory (the default folder of ``miffi download --dir``).

Checksums: the record's API states each file's md5 and ``miffi download`` verifies every
download against it. An entry's ``md5`` pins that value when it is known; download then
also refuses a record whose checksum differs from the pinned one. The three entries are
not pinned yet (``None``: the record's checksum is used); pin them from
``miffi download --list`` output once a download has been checked by hand. Resolving a
name only checks that the file is there; its checksum is download's business.

Free of torch at import (the workflow imports it while it parses the config).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from miffi.errors import ModelError, SettingError
from miffi.preprocess.config import PreprocessConfig

#: The Zenodo record of the published models (its API URL).
ZENODO_RECORD = 8342009
RECORD_URL = f"https://zenodo.org/api/records/{ZENODO_RECORD}"
#: timm architecture of the published models, and the default for state dicts.
DEFAULT_ARCH = "convnext_small"
#: Environment variable naming the folder of downloaded models; and its default.
MODELS_ENV = "MIFFI_MODELS"
DEFAULT_MODELS_DIR = Path("models")


@dataclass(frozen=True)
class PublishedModel:
    """One published model: its record file, what it is and how its inputs are made."""

    name: str
    key: str  # file name in the Zenodo record (and in the models folder)
    md5: str | None  # pinned checksum; None: the record's checksum is trusted
    arch: str
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    pretrained: str | None = None  # the ImageNet weights training started from
    description: str = ""

    @property
    def channels(self) -> int:
        return self.preprocess.channels

    @property
    def record_url(self) -> str:
        return RECORD_URL


MODELS: dict[str, PublishedModel] = {
    m.name: m
    for m in (
        PublishedModel(
            "miffi_v1",
            "miffi_v1.pt",
            None,
            DEFAULT_ARCH,
            PreprocessConfig(power_spectrum=True),
            "convnext_small.in12k",
            "image + power spectrum, fine-tuned from ImageNet-12k",
        ),
        PublishedModel(
            "miffi_no_ps_v1",
            "miffi_no_ps_v1.pt",
            None,
            DEFAULT_ARCH,
            PreprocessConfig(power_spectrum=False),
            "convnext_small.in12k",
            "image only, fine-tuned from ImageNet-12k",
        ),
        PublishedModel(
            "miffi_no_pretrain_no_ps_v1",
            "miffi_no_pretrain_no_ps_v1.pt",
            None,
            DEFAULT_ARCH,
            PreprocessConfig(power_spectrum=False),
            None,
            "image only, trained from scratch",
        ),
    )
}
#: What ``miffi download`` fetches without ``--models``/``--all``.
DEFAULT_MODELS = ("miffi_v1",)


def list_models() -> list[str]:
    """The registry's model names (timm's ``list_models``)."""
    return list(MODELS)


def get_model(name: str) -> PublishedModel:
    """The entry of a published model, or a :class:`SettingError` naming the known ones."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise SettingError(f"unknown model {name!r}; published models: {', '.join(MODELS)}") from None


def by_file_name(name: str) -> PublishedModel | None:
    """The entry whose record file is called ``name`` (e.g. ``miffi_v1.pt``), if any."""
    return next((m for m in MODELS.values() if m.key == name), None)


def is_model_name(model: str | os.PathLike[str] | None) -> bool:
    """Whether ``model`` (a str or a Path, as a ``--model`` option gives it) is a bare
    registry name: no folder part, and no file of that name in the current directory
    (a file that exists always means itself)."""
    if model is None:
        return False
    text = os.fspath(model)
    return text in MODELS and not Path(text).is_file()


def models_dir() -> Path:
    """The folder of downloaded models: ``$MIFFI_MODELS``, else ``models/``."""
    return Path(os.environ.get(MODELS_ENV) or DEFAULT_MODELS_DIR)


def model_file(name: str, directory: str | os.PathLike[str] | None = None) -> Path:
    """Where the downloaded file of ``name`` is (or will be): ``<models folder>/<key>``."""
    return Path(directory if directory is not None else models_dir()) / get_model(name).key


def download_hint(name: str, directory: str | os.PathLike[str] | None = None) -> str:
    return f"miffi download --dir {Path(directory if directory is not None else models_dir())} --models {name}"


def resolve_model(model: str | os.PathLike[str], directory: str | os.PathLike[str] | None = None) -> Path:
    """A model option as a file: a registry name becomes its downloaded file (which must be
    there: a :class:`ModelError` otherwise, naming where it looked and the download
    command); anything else is a path and is returned as it is."""
    if not is_model_name(model):
        return Path(model)
    name = os.fspath(model)
    path = model_file(name, directory)
    if not path.is_file():
        if directory is not None:
            where = f"looked in {path.parent}"
        elif os.environ.get(MODELS_ENV):
            where = f"looked in {os.path.abspath(path.parent)}, from ${MODELS_ENV}"
        else:
            where = f"looked in {os.path.abspath(path.parent)}, the default folder; set ${MODELS_ENV} for another"
        raise ModelError(
            path,
            f"published model {name!r} is not downloaded ({where}); "
            f"download it with `{download_hint(name, directory)}`",
        )
    return path
